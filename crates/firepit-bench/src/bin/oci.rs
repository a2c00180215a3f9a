//! `cargo xtask bench-oci`: pulling an OCI image, next to the reference tools, and a
//! machine on the pulled image.
//!
//! The image is made here: three gzip layers of about 100 MB together (a static busybox
//! with `echo` and `sh` in the first, data files of varied content in all three), written as
//! an OCI layout and pushed with `skopeo` to Debian's `docker-registry` on a loopback port.
//! Then, `--runs` times each:
//!
//! - cold pull: `firepit_oci::pull` into an empty image store (download, verify, unpack);
//! - warm pull: the same image again into that store under another name (every layer
//!   present and unpacked already: shared, nothing downloaded or unpacked);
//! - reference: `skopeo copy` from the registry into an empty OCI layout, then
//!   `umoci unpack` of it;
//! - new machine on the pulled image → first output of `echo hi` (the namespaces backend,
//!   no network), then destroy.
//!
//! Budgets (DESIGN.md): a cold pull at most the reference's time; first output p50 ≤ 10 ms.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use firepit_guest_client::{ExecEvent, ExecRequest, GuestClient};
use firepit_image::ImageStore;
use firepit_machine::namespaces::{Config, NamespacesBackend};
use firepit_machine::{Backend, GuestAddress, Limits, MachineId, MachineSpec, Network};
use firepit_oci::digest::Digest;
use firepit_oci::testkit::Registry;
use firepit_oci::{ClientOptions, PullOptions};
use serde_json::json;

/// Command line.
#[derive(Parser)]
struct Args {
    /// How many times each measurement runs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Machines for the first-output measurement.
    #[arg(long, default_value_t = 20)]
    machines: usize,
    /// Size of the image's data in MiB (spread over three layers).
    #[arg(long, default_value_t = 100)]
    mib: usize,
}

fn main() -> ExitCode {
    firepit_bench::main_async("firepit-bench-oci", || async { run(Args::parse()).await })
}

/// Data that compresses about as real files do: runs of pseudo-random bytes and text.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(3) {
            out.extend_from_slice(b"fn main() { println!(\"hello\"); } // some source text\n");
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn tar_layer(files: &[(&str, Vec<u8>, u32)], links: &[(&str, &str)]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _, _) in files {
        let mut p = String::new();
        for c in path
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            p.push_str(c);
            p.push('/');
            dirs.insert(p.clone());
        }
    }
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        b.append_data(&mut h, d, &[][..])?;
    }
    for (path, bytes, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(bytes.len() as u64);
        b.append_data(&mut h, path, &bytes[..])?;
    }
    for (path, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        b.append_link(&mut h, path, target)?;
    }
    Ok(b.into_inner()?)
}

fn put(layout: &Path, bytes: &[u8]) -> Result<(Digest, u64)> {
    let d = Digest::of(bytes);
    std::fs::write(layout.join("blobs/sha256").join(d.hex()), bytes)?;
    Ok((d, bytes.len() as u64))
}

/// The three-layer image, as an OCI layout with tag `t`.
fn make_image(layout: &Path, mib: usize) -> Result<()> {
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let busybox = std::fs::read("/bin/busybox").context("reading /bin/busybox (busybox-static)")?;
    let third = (mib << 20) / 3;
    let layers = [
        tar_layer(
            &[
                ("bin/busybox", busybox, 0o755),
                ("data/a.bin", data(1, third), 0o644),
            ],
            &[("bin/echo", "busybox"), ("bin/sh", "busybox")],
        )?,
        tar_layer(&[("data/b.bin", data(2, third), 0o644)], &[])?,
        tar_layer(&[("data/c.bin", data(3, third), 0o644)], &[])?,
    ];
    let (mut descs, mut diff_ids) = (Vec::new(), Vec::new());
    for l in &layers {
        diff_ids.push(Digest::of(l).to_string());
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(l)?;
        let (d, size) = put(layout, &e.finish()?)?;
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": size}));
    }
    let config = json!({"architecture": firepit_oci::spec::host_platform().0, "os": "linux",
        "config": {"Env": ["PATH=/bin"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (cd, cs) = put(layout, &serde_json::to_vec(&config)?)?;
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cs},
        "layers": descs});
    let (md, ms) = put(layout, &serde_json::to_vec(&manifest)?)?;
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md.to_string(), "size": ms, "annotations": {"org.opencontainers.image.ref.name": "t"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

fn p50(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn sh(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    if args.runs == 0 || args.machines == 0 {
        bail!("--runs and --machines must be at least 1");
    }
    let work = tempfile::Builder::new()
        .prefix("firepit-bench-oci")
        .tempdir_in("/var/tmp")?;
    let layout = work.path().join("layout");
    eprintln!(
        "firepit-bench-oci: making a 3-layer image of {} MiB",
        args.mib
    );
    make_image(&layout, args.mib)?;
    let registry = Registry::start(None);
    registry.push(&layout, "t", "bench");
    let reference = format!("{}/bench:t", registry.addr);
    let options = PullOptions {
        client: ClientOptions {
            insecure: true,
            credentials: None,
        },
        default_registry: None,
    };

    let (mut cold, mut warm, mut refs) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_store = None;
    for i in 0..args.runs {
        let store = ImageStore::open(&work.path().join(format!("images-{i}")))?;
        let t = Instant::now();
        firepit_oci::pull(&store, &reference, Some("cold"), &options, &mut |_| {}).await?;
        cold.push(t.elapsed());
        let t = Instant::now();
        firepit_oci::pull(&store, &reference, Some("warm"), &options, &mut |_| {}).await?;
        warm.push(t.elapsed());

        let dir = work.path().join(format!("ref-{i}"));
        std::fs::create_dir_all(&dir)?;
        let t = Instant::now();
        sh(Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:t", dir.join("layout").display())))?;
        sh(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:t", dir.join("layout").display()))
            .arg(dir.join("bundle")))?;
        refs.push(t.elapsed());
        if let Some(old) = last_store.replace(store) {
            let _ = std::fs::remove_dir_all(old.dir());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let store = last_store.context("no run")?;
    let image = store.get("cold")?;

    // Machines on the pulled image: create → first output of `echo hi`.
    let launcher = std::env::current_exe()?;
    let mut c = Config::new(
        work.path().join("state"),
        "/run/firepit-bench-oci",
        launcher,
    );
    c.cgroup_parent = "firepit-bench-oci".into();
    c.nft_table = "firepit_bench_oci".into();
    c.bridge = "fpb-benchoci".into();
    c.veth_prefix = "fvbo".into();
    c.gateway = std::net::Ipv4Addr::new(10, 96, 0, 1);
    c.prefix = 24;
    let backend = NamespacesBackend::new(c).context("starting the namespaces backend")?;
    let mut first = Vec::new();
    for i in 0..args.machines {
        let id = MachineId::new(format!("bench-oci-{i}"))?;
        let spec = MachineSpec {
            id: id.clone(),
            image: image.rootfs.clone(),
            layers: image.lowers().split_off(1),
            uid_base: image.manifest.uid_base,
            limits: Limits {
                memory_bytes: 256 << 20,
                cpus: 1.0,
                pids: 128,
                disk_bytes: None,
            },
            network: Network::None,
            guest: firepit_guest_bin::GUEST_BUILD_PATH.into(),
        };
        let t = Instant::now();
        backend.create(&spec)?;
        let result = async {
            let GuestAddress::Unix { path, pid } = backend.guest_address(&id)?;
            let client = match pid {
                Some(pid) => GuestClient::connect_unix_peer(&path, pid).await?,
                None => GuestClient::connect_unix(&path).await?,
            };
            let mut exec = client.exec(ExecRequest::argv(["echo", "hi"])).await?;
            while let Some(ev) = exec.next_event().await? {
                if let ExecEvent::Stdout(_) = ev {
                    return Ok::<_, anyhow::Error>(t.elapsed());
                }
            }
            bail!("echo hi wrote nothing")
        }
        .await;
        let _ = backend.destroy(&id);
        first.push(result?);
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (cold, warm, refs, first) = (
        p50(&mut cold),
        p50(&mut warm),
        p50(&mut refs),
        p50(&mut first),
    );
    println!(
        "OCI image pull ({} MiB in 3 gzip layers, registry on loopback), p50 of {} runs:",
        args.mib, args.runs
    );
    println!(
        "  firepit pull, cold (download + verify + unpack)  {:>9.1} ms",
        ms(cold)
    );
    println!(
        "  firepit pull, warm (layers present and shared)   {:>9.1} ms",
        ms(warm)
    );
    println!(
        "  skopeo copy + umoci unpack (reference)           {:>9.1} ms",
        ms(refs)
    );
    println!(
        "  cold pull / reference                            {:>9.2}  (budget ≤ 1.00)",
        cold.as_secs_f64() / refs.as_secs_f64().max(1e-9)
    );
    println!(
        "new machine on the pulled image → first output, p50 of {}: {:.2} ms (budget ≤ 10 ms)",
        args.machines,
        ms(first)
    );
    Ok(())
}
