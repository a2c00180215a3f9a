//! The isolation checker (`isolation_check.py`) runs inside a machine and tries
//! to get out: host files, processes and network, the daemon API, another
//! session, another session's uid range, dangerous system calls (x32
//! numbers, io_uring and nested user namespaces among them), capabilities,
//! device nodes, raw sockets, kernel knobs and masked kernel files, the OOM
//! floor, the guest's memory, and another machine's address or a MAC change.
//! Every attempt must fail. A second test makes links and `..` in a
//! machine that point at host files, and has the daemon stop, start, copy
//! and destroy through them: no host file may change.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;

use crate::harness::Daemon;

const CHECKER: &str = include_str!("isolation_check.py");

#[test]
fn nothing_gets_out_of_a_machine() {
    let d = Daemon::start("t6");
    // Bait on the host: a file, a marker in our own command line's neighbour
    // (a sleeping process), and a service on every address.
    let marker = format!("firepit-bait-{}", std::process::id());
    let host_file = format!("/tmp/{marker}");
    std::fs::write(&host_file, "host secret").unwrap();
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = listener.local_addr().unwrap().port();
    let sleeper = Sleeper(
        std::process::Command::new("sleep")
            .arg(format!("1000.{}", std::process::id()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let daemon_port: u16 = d.url.rsplit(':').next().unwrap().parse().unwrap();

    let other = d.new_session(&[]);
    d.ok(&[
        "exec",
        &other,
        "--",
        "sh",
        "-c",
        "nohup python3 -m http.server 9000 >/dev/null 2>&1 &",
    ]);
    let other_ip = d
        .sh(
            &other,
            "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1",
        )
        .trim()
        .to_owned();
    assert!(!other_ip.is_empty(), "the other machine has an address");
    // The other machine does serve: from inside itself.
    d.sh(&other, "for i in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:9000/ && exit 0; sleep 0.1; done; exit 1");

    let id = d.new_session(&[]);
    let gateway = d
        .sh(&id, "ip -4 route show default | awk '{print $3}'")
        .trim()
        .to_owned();
    assert!(!gateway.is_empty(), "the machine has a default route");

    // Each machine has a uid range of its own, apart from the image's: a
    // file of the other machine is owned by its range, not this one's.
    let (own_base, other_base) = (uid_base(&d, &id), uid_base(&d, &other));
    let image_base = image_uid_base();
    assert_ne!(own_base, other_base);
    for base in [own_base, other_base] {
        assert!(base.abs_diff(image_base) >= RANGE, "{base} {image_base}");
    }
    assert!(own_base.abs_diff(other_base) >= RANGE);
    d.sh(
        &other,
        "echo secret > /root/other-secret && chmod 600 /root/other-secret",
    );
    // The writable layer is in the disk pool (or, without one, the state dir).
    let layer = [d.data_dir().join("layers"), d.data_dir().join("machines")]
        .into_iter()
        .map(|dir| dir.join(&other))
        .find(|dir| dir.join("upper").is_dir())
        .expect("the other machine's writable layer");
    let secret = layer.join("upper/root/other-secret");
    let meta = std::fs::metadata(&secret).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (other_base, other_base));
    let bait = serde_json::json!({
        "host_file": host_file,
        "host_pid": sleeper.0.id(),
        "host_marker": format!("1000.{}", std::process::id()),
        "host_port": host_port,
        "daemon_port": daemon_port,
        "gateway": gateway,
        "other_machine": other_ip,
        "other_port": 9000,
        "own_uid_base": own_base,
        "other_uid_base": other_base,
        "image_uid_base": image_base,
        "range": RANGE,
    });
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("isolation_check.py");
    std::fs::write(&script, CHECKER).unwrap();
    d.ok(&[
        "cp",
        script.to_str().unwrap(),
        &format!("{id}:/root/isolation_check.py"),
    ]);
    let out = d.ok(&[
        "exec",
        &id,
        "--",
        "python3",
        "/root/isolation_check.py",
        &bait.to_string(),
    ]);
    let results: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let escaped: Vec<_> = results
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["escaped"].as_bool() != Some(false))
        .map(|(name, r)| format!("{name}: {}", r["detail"]))
        .collect();
    assert!(
        escaped.is_empty(),
        "ways out of the machine:\n{}",
        escaped.join("\n")
    );
    assert!(
        results.as_object().unwrap().len() > 30,
        "the checker ran all its checks: {results}"
    );
    for check in [
        "uid map is the machine's own range",
        "gid range shared with another machine or the image",
        "id 65536 outside the map by setresuid",
    ] {
        assert!(
            results.get(check).is_some(),
            "{check} did not run: {results}"
        );
    }

    // Nothing reached the host's listener.
    listener.set_nonblocking(true).unwrap();
    if let Ok((mut s, peer)) = listener.accept() {
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        panic!("the host listener was reached from {peer}");
    }
    let _ = std::fs::remove_file(&host_file);
}

/// How many ids a machine's range holds.
const RANGE: u32 = 65536;

/// The host uid of root in a session's machine, from its init's uid map.
fn uid_base(d: &Daemon, session: &str) -> u32 {
    let init = d
        .data_dir()
        .join("machines")
        .join(session)
        .join("init.json");
    let init: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(init).unwrap()).unwrap();
    let pid = init["pid"].as_u64().unwrap();
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "one range: {map}");
    assert_eq!((fields[0], fields[2]), ("0", "65536"), "{map}");
    fields[1].parse().unwrap()
}

/// The owner base of the test image's files.
fn image_uid_base() -> u32 {
    let manifest = crate::harness::images_dir().join("minimal/image.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    manifest["uid_base"].as_u64().unwrap() as u32
}

/// A host process the checker must not see; killed however the test ends.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `firepit up --allow-net` (here through its environment variable) opens
/// exactly the ranges named (overlaps merged), in the instance's own firewall table; the
/// private ranges stay dropped. Nothing is sent to them.
#[test]
fn opened_ranges_reach_the_firewall() {
    let d = Daemon::start_with(
        "t62",
        &[(
            "FIREPIT_ALLOW_NET",
            "198.51.100.0/24,198.51.100.128/25,203.0.113.7",
        )],
    );
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", "firepit_t62"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let allowed = table
        .split("set allowed4")
        .nth(1)
        .and_then(|s| s.split('}').next())
        .unwrap_or_else(|| panic!("no allowed set in {table}\n{}", d.log()));
    assert!(allowed.contains("198.51.100.0/24"), "{table}");
    assert!(allowed.contains("203.0.113.7"), "{table}");
    assert!(table.contains("192.168.0.0/16"), "{table}");
}

/// Everything about the entries of a host dir: names, owners, modes, bytes.
fn snapshot(dir: &std::path::Path) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let body = if meta.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            let name = e.file_name().into_string().unwrap();
            (name, meta.uid(), meta.gid(), meta.mode(), body)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn links_a_machine_makes_never_lead_the_daemon_to_host_files() {
    let d = Daemon::start("t63");
    // Host files that stand in for the host's /etc.
    let host = tempfile::Builder::new()
        .prefix("firepit-canaries")
        .tempdir_in("/tmp")
        .unwrap();
    let c = host.path().to_str().unwrap().to_owned();
    for f in ["hostname", "hosts", "resolv.conf", "x"] {
        std::fs::write(host.path().join(f), format!("host's own {f}\n")).unwrap();
    }
    let before = snapshot(host.path());
    let untouched = |after: &str| {
        assert_eq!(
            snapshot(host.path()),
            before,
            "{after}: a host file was written, added or removed"
        );
    };
    let id = d.new_session(&["--network", "none"]);
    let restart = || {
        d.ok(&["stop", &id]);
        d.ok(&["start", &id]);
    };

    // Stop and start write /etc/hostname, hosts and resolv.conf: through
    // links at them, and through /etc as a link, absolute or by `..`.
    d.sh(
        &id,
        &format!(
            "ln -sf {c}/hostname /etc/hostname && ln -sf {c}/hosts /etc/hosts && \
             ln -sf {c}/resolv.conf /etc/resolv.conf"
        ),
    );
    restart();
    untouched("links at the /etc files, stop and start");
    assert_eq!(d.sh(&id, "cat /etc/hostname").trim(), id);
    for link in [c.clone(), format!("../../../../../../..{c}")] {
        d.sh(&id, &format!("mv /etc /etc.orig && ln -s {link} /etc"));
        restart();
        untouched(&format!("/etc -> {link}, stop and start"));
        d.sh(&id, "rm /etc && mv /etc.orig /etc");
    }

    // `cp` both ways, through links to the host's paths.
    d.sh(&id, &format!("ln -s {c} /root/out && ln -s {c}/x /root/in"));
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src");
    std::fs::write(&src, "from the host\n").unwrap();
    for target in ["/root/out/x", "/root/out/new"] {
        let up = d.run(&["cp", src.to_str().unwrap(), &format!("{id}:{target}")]);
        assert!(!up.status.success(), "cp into {target} went somewhere");
        untouched(&format!("cp into {target}"));
    }
    let dst = local.path().join("dst");
    let down = d.run(&["cp", &format!("{id}:/root/in"), dst.to_str().unwrap()]);
    assert!(!down.status.success(), "cp out of /root/in read something");
    assert!(!dst.exists(), "cp out of /root/in wrote {}", dst.display());
    // A link to the machine's own file is that file.
    d.sh(
        &id,
        "echo mine > /root/own && ln -s /root/own /root/own-link",
    );
    d.ok(&["cp", &format!("{id}:/root/own-link"), dst.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), "mine\n");

    // Destroying a machine full of links and a tree deeper than a path may
    // be long touches nothing outside it (mounts of its own are refused
    // inside, which the last command checks).
    d.sh(
        &id,
        &format!(
            "mkdir -p /root/l && ln -s {c} /root/l/dir && ln -s {c}/x /root/l/file && \
             ln -s ../../../../../../../..{c} /root/l/up && \
             mv /etc /etc.orig && ln -s {c} /etc && \
             ! mount -t tmpfs none /tmp 2>/dev/null"
        ),
    );
    d.ok(&[
        "exec",
        &id,
        "--",
        "python3",
        "-c",
        "import os\nos.chdir('/root')\nfor _ in range(3000):\n    os.mkdir('d'); os.chdir('d')",
    ]);
    d.ok(&["rm", &id]);
    untouched("destroy");
    assert!(!d.data_dir().join("machines").join(&id).exists());
}
