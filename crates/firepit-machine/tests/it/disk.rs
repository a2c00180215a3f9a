//! Disk limits (the pool) and the host-side permissions of machines' files.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use firepit_machine::namespaces::NamespacesBackend;
use firepit_machine::{Backend, Network};

use crate::harness::{
    Machine, POOL_DIR, POOL_IMAGE, RUN_DIR, STATE_DIR, backend, config, exclusive, shared, spec,
};

fn limited(id: &str, disk: u64) -> firepit_machine::MachineSpec {
    let mut s = spec(id, Network::None);
    s.limits.disk_bytes = Some(disk);
    s
}

/// Bytes of a file inside a machine.
fn size(m: &Machine, path: &str) -> u64 {
    m.ok(&format!("stat -c %s {path}")).parse().unwrap()
}

#[test]
fn writes_past_the_disk_limit_fail_inside_while_other_machines_still_write() {
    let _g = shared();
    let small = Machine::create(limited("it-disk-small", 64 << 20));
    let other = Machine::create(limited("it-disk-other", 1 << 30));
    let layer = Path::new(POOL_DIR).join("it-disk-small");
    assert!(layer.join("upper").is_dir(), "the layer is in the pool");

    let (code, out) = small.sh("dd if=/dev/zero of=/root/big bs=1M count=100 2>&1");
    assert_ne!(code, 0, "dd wrote 100 MiB under a 64 MiB limit: {out}");
    assert!(
        out.contains("Disk quota exceeded") || out.contains("No space left on device"),
        "{out}"
    );
    let written = size(&small, "/root/big");
    assert!(written <= 64 << 20, "{written} bytes written");
    // Small files fail too: the limit is the layer's, not one file's.
    let (code, _) = small.sh("dd if=/dev/zero of=/root/more bs=1M count=2 2>&1");
    assert_ne!(code, 0);

    // Another machine, and the host, keep their space.
    other.ok("dd if=/dev/zero of=/root/big bs=1M count=80 2>&1");
    assert_eq!(size(&other, "/root/big"), 80 << 20);

    // Deleting gives the space back.
    small.ok("rm /root/big /root/more; sync");
    small.ok("dd if=/dev/zero of=/root/again bs=1M count=32 2>&1");

    // The limit holds across a stop and start, and the files stay.
    backend().stop(&small.id).unwrap();
    backend().start(&small.id).unwrap();
    small.wait_ready();
    assert_eq!(size(&small, "/root/again"), 32 << 20);
    let (code, out) = small.sh("dd if=/dev/zero of=/root/big bs=1M count=100 2>&1");
    assert_ne!(code, 0, "{out}");

    backend().destroy(&small.id).unwrap();
    assert!(!layer.exists(), "destroy leaves the layer behind");
    assert!(!Path::new(STATE_DIR).join("it-disk-small").exists());
}

/// Runs `argv` as `nobody` on the host; returns whether it succeeded and what it said.
fn as_nobody(argv: &[&str]) -> (bool, String) {
    // setpriv keeps its capabilities until it execs, so its own exec would
    // still pass root's permission checks: a shell, running as nobody with
    // none, runs `argv`.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["/bin/sh", "-c", "exec \"$@\"", "sh"])
        .args(argv)
        .output()
        .expect("setpriv runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_setuid_file_written_in_a_machine_is_out_of_host_users_reach() {
    let _g = shared();
    let limited = Machine::create(limited("it-disk-suid", 256 << 20));
    let unlimited = Machine::create(spec("it-disk-suid-old", Network::None));
    for (m, upper) in [
        (&limited, Path::new(POOL_DIR).join("it-disk-suid/upper")),
        (
            &unlimited,
            Path::new(STATE_DIR).join("it-disk-suid-old/upper"),
        ),
    ] {
        m.ok("cp /bin/sh /root/suid-sh && chmod 4755 /root/suid-sh");
        let file = upper.join("root/suid-sh");
        // It is there, setuid, owned by the machine's root: a way up for
        // anyone who could run it.
        let meta = fs::metadata(&file).unwrap();
        assert_ne!(meta.mode() & 0o4000, 0, "{}", file.display());
        let file = file.to_str().unwrap();
        let (ok, out) = as_nobody(&["stat", file]);
        assert!(!ok, "a host user reached {file}: {out}");
        assert!(out.contains("Permission denied"), "{out}");
        let (ok, out) = as_nobody(&[file, "-c", "id -u"]);
        assert!(!ok, "a host user ran {file}: {out}");
        // The machine itself is untouched by the modes above it.
        assert_eq!(m.ok("/root/suid-sh -c 'echo ran'"), "ran");
    }
    for dir in [STATE_DIR, RUN_DIR, POOL_DIR] {
        let mode = fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{dir}");
    }
    let mode = fs::metadata(Path::new(STATE_DIR).join("it-disk-suid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

fn pool_mounts() -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(POOL_DIR))
        .count()
}

#[test]
fn a_restarted_backend_adopts_the_mounted_pool_and_its_machines() {
    let _g = exclusive();
    let m = Machine::create(limited("it-disk-restart", 128 << 20));
    m.ok("echo kept > /root/kept");
    assert_eq!(pool_mounts(), 1);
    let mount = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(POOL_DIR))
        .unwrap()
        .to_owned();
    assert!(mount.contains(" - btrfs "), "{mount}");
    let opts = mount.split(' ').nth(5).unwrap();
    assert!(opts.contains("nosuid") && opts.contains("nodev"), "{mount}");
    assert_eq!(
        fs::metadata(POOL_IMAGE).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A second backend on the same dirs (a daemon restart): the pool is
    // not mounted twice, the machine runs on.
    let fresh = NamespacesBackend::new(config()).unwrap();
    assert_eq!(pool_mounts(), 1);
    let found = fresh.recover().unwrap();
    assert!(found.iter().any(|i| i.id == m.id));
    assert_eq!(m.ok("cat /root/kept"), "kept");
    let (code, _) = m.sh("dd if=/dev/zero of=/root/big bs=1M count=200 2>&1");
    assert_ne!(code, 0, "the limit went away with the restart");

    // A layer left by a destroy cut off halfway is removed by recover.
    fresh.stop(&m.id).unwrap();
    fs::remove_file(Path::new(STATE_DIR).join("it-disk-restart/spec.json")).unwrap();
    fresh.recover().unwrap();
    assert!(!Path::new(POOL_DIR).join("it-disk-restart").exists());
    assert!(!Path::new(STATE_DIR).join("it-disk-restart").exists());

    // A pool dir that something else is mounted on is not taken for the pool.
    let other = Path::new(POOL_DIR).with_file_name("not-a-pool");
    fs::create_dir_all(&other).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(mounted.success());
    let err = NamespacesBackend::new(firepit_machine::namespaces::Config {
        disk: Some(firepit_machine::namespaces::PoolConfig {
            image: Path::new(POOL_IMAGE).with_file_name("not-a-pool.img"),
            dir: other.clone(),
            size_bytes: 1 << 30,
        }),
        ..config()
    })
    .err()
    .expect("a tmpfs is no pool")
    .to_string();
    Command::new("umount").arg(&other).status().unwrap();
    assert!(err.contains("is a mount of tmpfs"), "{err}");
    assert!(
        !Path::new(POOL_IMAGE)
            .with_file_name("not-a-pool.img")
            .exists()
    );

    // Without a pool, a disk limit is refused, with a reason.
    let no_pool = NamespacesBackend::new(firepit_machine::namespaces::Config {
        disk: None,
        ..config()
    })
    .unwrap();
    let err = no_pool
        .create(&limited("it-disk-nopool", 64 << 20))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no disk pool"), "{err}");
    assert!(!Path::new(STATE_DIR).join("it-disk-nopool").exists());
}
