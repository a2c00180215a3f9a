//! The isolation checker (`isolation_check.py`) runs inside a machine and tries
//! to get out: host files, processes and network, the daemon API, another
//! session, another session's uid range, dangerous system calls (x32
//! numbers, io_uring and nested user namespaces among them), capabilities,
//! device nodes, raw sockets, kernel knobs and masked kernel files, the OOM
//! floor, the guest's memory, and another machine's address or a MAC change.
//! Every attempt must fail.

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
    let secret = d
        .data_dir()
        .join("machines")
        .join(&other)
        .join("upper/root/other-secret");
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
