//! `firepit image build NAME -f Dockerfile [CONTEXT]`: a Dockerfile built into an image of
//! the store, each `RUN` in a firepit machine of its own (made with the namespaces backend
//! under `<data-dir>/build`, with names apart from the daemon's), its output on standard
//! error, its changes taken from the machine's upper layer once it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use firepit_guest_client::{ExecEvent, GuestClient};
use firepit_image::ImageStore;
use firepit_machine::namespaces::{Config, NamespacesBackend};
use firepit_machine::{Backend, GuestAddress, Limits, MachineId, MachineSpec, Network};
use firepit_oci::build::{BuildRequest, Runner, StepEvent};
use firepit_wire::guest::ExecRequest;

/// What `image build -f` was given.
pub struct BuildArgs {
    /// The image to make.
    pub name: String,
    /// The Dockerfile.
    pub file: PathBuf,
    /// The build context (default: the Dockerfile's directory).
    pub context: Option<PathBuf>,
    /// `--build-arg NAME=value`.
    pub build_args: Vec<String>,
    /// `--target STAGE`.
    pub target: Option<String>,
    /// Directory of images, if not `<data-dir>/images`.
    pub images_dir: Option<PathBuf>,
}

/// Runs `RUN` steps in machines.
struct MachineRunner {
    /// Held for the whole build: builds of one data dir share the backend's names and
    /// state dir, so they run one at a time (a second one would take the first's machines
    /// for leftovers).
    _lock: std::fs::File,
    backend: NamespacesBackend,
    state_dir: PathBuf,
    guest: PathBuf,
    handle: tokio::runtime::Handle,
}

impl MachineRunner {
    fn new(data_dir: &Path, handle: tokio::runtime::Handle) -> Result<MachineRunner> {
        std::fs::create_dir_all(data_dir.join("build"))
            .with_context(|| format!("creating {}", data_dir.join("build").display()))?;
        let lock_path = data_dir.join("build/lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                eprintln!("firepit: another image build runs; waiting for it");
                // SAFETY: as above.
                if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                    anyhow::bail!(
                        "locking {}: {}",
                        lock_path.display(),
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
        let state_dir = data_dir.join("build/machines");
        let launcher = std::env::current_exe().context("finding the firepit executable")?;
        let mut c = Config::new(&state_dir, data_dir.join("build/run"), launcher);
        c.cgroup_parent = "firepit-build".into();
        c.nft_table = "firepit_build".into();
        c.bridge = "fpb-build".into();
        c.veth_prefix = "fvbuild-".into();
        c.gateway = std::net::Ipv4Addr::new(10, 97, 0, 1);
        c.prefix = 24;
        c.stop_grace = Duration::from_secs(2);
        let backend = NamespacesBackend::new(c).context("starting the build machines' backend")?;
        for m in backend
            .recover()
            .context("recovering earlier build machines")?
        {
            let _ = backend.destroy(&m.id);
        }
        // The guest this binary carries, written once beside the build's machines.
        let guest = data_dir.join("build/firepit-guest");
        if std::fs::read(&guest).ok().as_deref() != Some(firepit_guest_bin::GUEST) {
            let tmp = guest.with_extension("tmp");
            std::fs::write(&tmp, firepit_guest_bin::GUEST)
                .with_context(|| format!("writing {}", tmp.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
            std::fs::rename(&tmp, &guest)?;
        }
        Ok(MachineRunner {
            _lock: lock,
            backend,
            state_dir,
            guest,
            handle,
        })
    }

    fn run_in(
        &self,
        id: &MachineId,
        lowers: &[PathBuf],
        uid_base: u32,
        req: ExecRequest,
        layer: &mut std::fs::File,
    ) -> Result<()> {
        let spec = MachineSpec {
            id: id.clone(),
            image: lowers[0].clone(),
            layers: lowers[1..].to_vec(),
            uid_base,
            limits: Limits {
                memory_bytes: 4 << 30,
                cpus: 2.0,
                pids: 4096,
                disk_bytes: None,
            },
            network: Network::Nat,
            guest: self.guest.clone(),
        };
        self.backend
            .create(&spec)
            .context("making the build machine")?;
        let GuestAddress::Unix { path, pid } = self.backend.guest_address(id)?;
        let status = self.handle.block_on(async {
            let client = match pid {
                Some(pid) => GuestClient::connect_unix_peer(&path, pid).await,
                None => GuestClient::connect_unix(&path).await,
            }
            .context("connecting to the build machine's guest")?;
            let mut exec = client.exec(req).await.context("starting the command")?;
            use std::io::Write as _;
            let mut err = std::io::stderr();
            while let Some(ev) = exec.next_event().await? {
                match ev {
                    ExecEvent::Stdout(b) | ExecEvent::Stderr(b) => {
                        let _ = err.write_all(&b);
                    }
                    ExecEvent::Exit(status) => return Ok::<_, anyhow::Error>(status),
                }
            }
            anyhow::bail!("the command's output ended without an exit status")
        })?;
        if status.code != Some(0) {
            anyhow::bail!(
                "the command failed ({})",
                match (status.code, status.signal) {
                    (Some(c), _) => format!("exit code {c}"),
                    (None, Some(s)) => format!("killed by signal {s}"),
                    _ => "no exit status".into(),
                }
            );
        }
        self.backend
            .stop(id)
            .context("stopping the build machine")?;
        let dir = self.state_dir.join(id.as_str());
        #[derive(serde::Deserialize)]
        struct Ids {
            uid_base: u32,
        }
        let ids: Ids = serde_json::from_slice(
            &std::fs::read(dir.join("ids.json")).context("reading the machine's uid range")?,
        )?;
        firepit_oci::diff::upper_to_tar(&dir.join("upper"), ids.uid_base, layer)?;
        Ok(())
    }
}

impl Runner for MachineRunner {
    fn run(
        &mut self,
        lowers: &[PathBuf],
        uid_base: u32,
        argv: &[String],
        env: &[(String, String)],
        cwd: &str,
        layer: &mut std::fs::File,
    ) -> std::result::Result<(), String> {
        let id = MachineId::new(format!("build-{:08x}", rand::random::<u32>()))
            .map_err(|e| e.to_string())?;
        let mut req = ExecRequest::argv(argv.iter().cloned());
        req.env = env.to_vec();
        req.cwd = Some(cwd.to_owned());
        let result = self.run_in(&id, lowers, uid_base, req, layer);
        let _ = self.backend.destroy(&id);
        result.map_err(|e| format!("{e:#}"))
    }
}

/// `firepit image build NAME -f Dockerfile [CONTEXT]`
pub fn build(data_dir: &Path, args: BuildArgs, handle: tokio::runtime::Handle) -> Result<()> {
    crate::commands::image::refuse_if_in_use(data_dir, &args.name)?;
    let dir = args
        .images_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("images"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let store = ImageStore::open(&dir)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let context = args.context.clone().unwrap_or_else(|| {
        args.file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_owned)
    });
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("--build-arg {a}: use NAME=value"))?;
        build_args.insert(k.to_owned(), v.to_owned());
    }
    let mut runner = MachineRunner::new(data_dir, handle)?;
    let req = BuildRequest {
        name: &args.name,
        dockerfile: &args.file,
        context: &context,
        build_args,
        target: args.target.as_deref(),
    };
    let (mut cached, mut made) = (0, 0);
    let image = firepit_oci::build::build(&store, &text, &req, &mut runner, &mut |e| match e {
        StepEvent::Start { line, text } => eprintln!("firepit: line {line}: {text}"),
        StepEvent::Cached { line } => {
            cached += 1;
            eprintln!("firepit: line {line}: cached")
        }
        StepEvent::Made { line, layer } => {
            made += 1;
            eprintln!("firepit: line {line}: layer {}", layer.short())
        }
    })?;
    println!(
        "built image {} ({} MiB): {made} layers made, {cached} from the cache",
        image.name,
        image.manifest.size_bytes >> 20
    );
    Ok(())
}
