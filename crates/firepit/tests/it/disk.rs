//! Disk limits end to end, and what other host users can reach of the data dir.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::Daemon;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The `DISK` column of a session in `firepit ls`.
fn ls_disk(d: &Daemon, id: &str) -> String {
    let out = d.ok(&["ls"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let col = header
        .iter()
        .position(|h| *h == "DISK")
        .expect("a DISK column");
    let row = lines
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{id} not in:\n{out}"));
    row.split_whitespace().nth(col).unwrap().to_owned()
}

#[test]
fn a_sessions_disk_limit_is_kept_by_the_kernel_and_shown() {
    let d = Daemon::start("dk1");
    let small = d.new_session(&["--disk", "64M"]);
    let other = d.new_session(&[]);
    assert_eq!(ls_disk(&d, &small), "64M");
    assert_eq!(ls_disk(&d, &other), "10G", "the daemon's default");
    let info = d.get_json(&format!("/v1/sessions/{small}"));
    assert_eq!(info["limits"]["disk_bytes"], 64 << 20, "{info}");

    let out = d.run(&[
        "exec",
        &small,
        "--",
        "dd",
        "if=/dev/zero",
        "of=/root/big",
        "bs=1M",
        "count=100",
    ]);
    assert!(!out.status.success(), "100 MiB fit in 64 MiB: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Disk quota exceeded"), "{err}");
    // Another session writes on.
    d.sh(
        &other,
        "dd if=/dev/zero of=/root/big bs=1M count=80 2>/dev/null",
    );
    assert_eq!(d.sh(&other, "stat -c %s /root/big").trim(), "83886080");
    // The full one recovers once it deletes.
    d.sh(&small, "rm /root/big && echo ok > /root/note");
    assert_eq!(d.sh(&small, "cat /root/note"), "ok\n");

    // Nothing of the data dir is for other host users; the machines' files
    // (a setuid program among them) are out of their reach.
    let data = d.data_dir();
    for dir in ["", "machines", "layers", "run", "artifacts"] {
        assert_eq!(mode(&data.join(dir)), 0o700, "{dir:?}");
    }
    for file in [
        "token",
        "preview.key",
        "firepit.db",
        "daemon.json",
        "layers.img",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&crate::harness::images_dir()), 0o700, "the images dir");
    d.sh(&small, "cp /bin/sh /root/sh && chmod 4755 /root/sh");
    let suid = data.join("layers").join(&small).join("upper/root/sh");
    assert_ne!(
        std::fs::metadata(&suid).unwrap().permissions().mode() & 0o4000,
        0
    );
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["/bin/sh", "-c", "stat \"$0\" || exec \"$0\" -c 'id -u'"])
        .arg(&suid)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "nobody reached {}: {out:?}",
        suid.display()
    );
}
