//! Checkpoints, restore and fork on real machines in the disk pool.

use std::path::Path;
use std::process::Command;

use firepit_machine::namespaces::NamespacesBackend;
use firepit_machine::{Backend, CheckpointId, Error, MachineId, Network, NewCheckpoint};

use crate::harness::{Machine, POOL_DIR, STATE_DIR, backend, config, exclusive, shared, spec};

fn pooled(id: &str) -> firepit_machine::MachineSpec {
    let mut s = spec(id, Network::None);
    s.limits.disk_bytes = Some(512 << 20);
    s
}

fn cp(id: &str) -> CheckpointId {
    CheckpointId::new(id).unwrap()
}

fn new(id: &str) -> NewCheckpoint {
    NewCheckpoint {
        id: cp(id),
        name: Some(format!("name of {id}")),
        made_by: "test".into(),
    }
}

/// Every path below the dirs a test changes, with its type, mode, owner,
/// group, size, link target and content hash, one line each, sorted.
fn manifest(m: &Machine) -> String {
    m.ok(
        "cd / && find root etc usr/local var/tmp -xdev -printf '%p %y %m %U %G %s %l\\n' | sort; \
         find root etc usr/local var/tmp -xdev -type f -print0 | sort -z | xargs -0 md5sum",
    )
}

/// The files of state `n`: a file, a dir with modes and owners, links, a
/// deleted image file, a fifo.
fn write_state(m: &Machine, n: u32) {
    m.ok(&format!(
        "set -e; rm -rf /root/t; mkdir -p /root/t/d{n}/deep; echo state {n} > /root/t/f; \
         chmod 6{n}0 /root/t/f; chown {n}00:{n}01 /root/t/f; \
         ln -s ../f /root/t/d{n}/rel; ln -s /etc/passwd /root/t/abs{n}; ln /root/t/f /root/t/hard; \
         mkfifo /root/t/fifo; chmod 70{n} /root/t/d{n}; \
         head -c {n}000 /dev/urandom > /root/t/d{n}/deep/bin; \
         if [ {n} = 2 ]; then rm -f /etc/debian_version; else echo {n} > /etc/debian_version; fi; \
         touch /var/tmp/v{n}; sync"
    ));
}

#[test]
fn restore_brings_back_every_path_mode_owner_and_link_in_any_order() {
    restore_round(pooled("it-cp-restore"));
}

/// The same on a machine without a pool layer: its checkpoints are copies.
#[test]
fn copies_restore_the_same_without_the_pool() {
    restore_round(spec("it-cp-copy-restore", Network::None));
}

/// Where a machine's checkpoints are kept.
fn checkpoints_dir(spec: &firepit_machine::MachineSpec) -> std::path::PathBuf {
    match spec.limits.disk_bytes {
        Some(_) => Path::new(POOL_DIR)
            .join(".checkpoints")
            .join(spec.id.as_str()),
        None => Path::new(STATE_DIR)
            .join(spec.id.as_str())
            .join("checkpoints"),
    }
}

/// Where a machine's upper is.
fn upper(spec: &firepit_machine::MachineSpec) -> std::path::PathBuf {
    match spec.limits.disk_bytes {
        Some(_) => Path::new(POOL_DIR).join(spec.id.as_str()).join("upper"),
        None => Path::new(STATE_DIR).join(spec.id.as_str()).join("upper"),
    }
}

fn restore_round(spec: firepit_machine::MachineSpec) {
    let _g = shared();
    let dir = checkpoints_dir(&spec);
    let m = Machine::create(spec);
    let b = backend();
    write_state(&m, 1);
    let s1 = manifest(&m);
    let c1 = b.checkpoint(&m.id, &new("c1")).unwrap();
    assert!(c1.running);
    assert_eq!(c1.parent, None);
    assert!(c1.size_bytes >= 1000, "{c1:?}");
    write_state(&m, 2);
    let s2 = manifest(&m);
    assert_ne!(s1, s2);
    let c2 = b.checkpoint(&m.id, &new("c2")).unwrap();
    assert_eq!(c2.parent, Some(cp("c1")));

    let info = b.restore(&m.id, &cp("c1")).unwrap();
    assert!(info.pid.is_some(), "a running machine runs again");
    m.wait_ready();
    assert_eq!(manifest(&m), s1, "restore of c1");

    // A branch from c1: the tree grows a second child.
    write_state(&m, 3);
    let s3 = manifest(&m);
    // A stopped machine's checkpoint.
    b.stop(&m.id).unwrap();
    let c3 = b.checkpoint(&m.id, &new("c3")).unwrap();
    assert!(!c3.running);
    assert_eq!(c3.parent, Some(cp("c1")));
    // Restoring a stopped machine leaves it stopped.
    let info = b.restore(&m.id, &cp("c2")).unwrap();
    assert!(info.pid.is_none());
    b.start(&m.id).unwrap();
    m.wait_ready();
    assert_eq!(manifest(&m), s2, "restore of c2 after c1 and c3");
    for (c, s) in [("c3", &s3), ("c1", &s1), ("c2", &s2), ("c3", &s3)] {
        b.restore(&m.id, &cp(c)).unwrap();
        m.wait_ready();
        assert_eq!(&manifest(&m), s, "restore of {c}");
    }
    let list: Vec<_> = b.checkpoints(&m.id).unwrap();
    let ids: Vec<_> = list.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
    assert_eq!(list[0].name.as_deref(), Some("name of c1"));

    b.remove_checkpoint(&m.id, &cp("c2")).unwrap();
    assert!(matches!(
        b.restore(&m.id, &cp("c2")),
        Err(Error::CheckpointNotFound { .. })
    ));
    // What was restored from a removed checkpoint keeps its files.
    assert_eq!(manifest(&m), s3);
    b.destroy(&m.id).unwrap();
    assert!(!dir.exists(), "destroy leaves checkpoints behind");
}

#[test]
fn twenty_cycles_lose_and_resurrect_nothing() {
    let _g = shared();
    let m = Machine::create(pooled("it-cp-cycles"));
    let b = backend();
    m.ok("mkdir /root/c");
    for i in 0..20u32 {
        // Each cycle adds a file and deletes the one before last.
        m.ok(&format!(
            "echo {i} > /root/c/f{i}; rm -f /root/c/f{}; sync",
            i.wrapping_sub(2)
        ));
        let want = m.ok("ls /root/c; cat /root/c/*");
        if i % 2 == 1 {
            b.stop(&m.id).unwrap();
        }
        b.checkpoint(&m.id, &new(&format!("k{i}"))).unwrap();
        if i % 2 == 1 {
            b.start(&m.id).unwrap();
            m.wait_ready();
        }
        m.ok(&format!("echo junk > /root/c/junk; rm -f /root/c/f{i}"));
        b.restore(&m.id, &cp(&format!("k{i}"))).unwrap();
        m.wait_ready();
        assert_eq!(m.ok("ls /root/c; cat /root/c/*"), want, "cycle {i}");
    }
    assert_eq!(b.checkpoints(&m.id).unwrap().len(), 20);
    // An early one still holds its moment.
    b.restore(&m.id, &cp("k3")).unwrap();
    m.wait_ready();
    assert_eq!(m.ok("ls /root/c | tr '\\n' ' '"), "f2 f3");
}

#[test]
fn a_fork_runs_beside_its_parent_and_their_changes_never_meet() {
    fork_round(pooled("it-cp-parent"), "it-cp-child");
}

#[test]
fn copies_fork_the_same_without_the_pool() {
    fork_round(spec("it-cp-copy-parent", Network::None), "it-cp-copy-child");
}

fn fork_round(parent: firepit_machine::MachineSpec, child: &str) {
    let _g = shared();
    let copies = parent.limits.disk_bytes.is_none();
    let child_name = child;
    let now_name = format!("{child}-now");
    let with = |id: &str| firepit_machine::MachineSpec {
        id: MachineId::new(id).unwrap(),
        ..parent.clone()
    };
    let uppers = [upper(&parent), upper(&with(child)), upper(&with(&now_name))];
    let parent = Machine::create(parent);
    let b = backend();
    parent.ok("echo one > /root/shared; chown 1234:1235 /root/shared; chmod 4755 /root/shared");
    b.checkpoint(&parent.id, &new("p1")).unwrap();
    parent.ok("echo two > /root/shared; echo later > /root/later");

    let child_id = MachineId::new(child).unwrap();
    let _ = b.destroy(&child_id);
    b.fork(&parent.id, Some(&cp("p1")), &child_id).unwrap();
    let child = Machine {
        id: child_id.clone(),
        pid: 0,
    };
    child.wait_ready();
    assert_eq!(child.ok("cat /root/shared"), "one");
    assert_eq!(
        child.ok("stat -c '%u %g %a' /root/shared"),
        "1234 1235 4755",
        "owners and modes as the parent saw them"
    );
    assert_eq!(child.sh("test -e /root/later").0, 1);
    child.ok("echo child > /root/shared; echo mine > /root/child");
    parent.ok("echo three > /root/shared");
    assert_eq!(parent.ok("cat /root/shared"), "three");
    assert_eq!(parent.sh("test -e /root/child").0, 1);
    assert_eq!(child.ok("cat /root/shared"), "child");

    // A fork of the running parent as it is now.
    let now_id = MachineId::new(now_name.as_str()).unwrap();
    let _ = b.destroy(&now_id);
    b.fork(&parent.id, None, &now_id).unwrap();
    let now = Machine { id: now_id, pid: 0 };
    now.wait_ready();
    assert_eq!(now.ok("cat /root/shared /root/later"), "three\nlater");
    // Each runs in a uid range of its own, and what it writes is its root's.
    let range = |m: &Machine| m.ok("awk '{print $2}' /proc/self/uid_map");
    assert_ne!(range(&parent), range(&child));
    assert_ne!(range(&child), range(&now));
    assert_ne!(range(&parent), range(&now));
    assert_eq!(child.ok("stat -c '%u %g' /root/child"), "0 0");
    let host_uid = |upper: &Path| {
        std::fs::symlink_metadata(upper.join("root/shared"))
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap()
    };
    if copies {
        // A copy's owners are moved into the fork's range on disk.
        assert_ne!(host_uid(&uppers[0]), host_uid(&uppers[1]));
        assert_ne!(host_uid(&uppers[1]), host_uid(&uppers[2]));
    } else {
        // A snapshot's stay in the range its files were stored in, mapped
        // onto the fork's by an idmapped mount: nothing walked them.
        assert_eq!(host_uid(&uppers[0]), host_uid(&uppers[1]));
        assert_eq!(host_uid(&uppers[0]), host_uid(&uppers[2]));
    }

    // A fork of a fork sees the same owners and writes as its own root.
    let grand_id = MachineId::new(format!("{child_name}-g")).unwrap();
    let _ = b.destroy(&grand_id);
    b.fork(&child.id, None, &grand_id).unwrap();
    let grand = Machine {
        id: grand_id,
        pid: 0,
    };
    grand.wait_ready();
    assert_eq!(grand.ok("cat /root/shared /root/child"), "child\nmine");
    // (The child's write cleared the setuid bit, as a write does.)
    let stat = "stat -c '%u %g %a' /root/shared";
    assert_eq!(grand.ok(stat), child.ok(stat));
    assert_eq!(grand.ok(stat), "1234 1235 755");
    grand.ok("echo g > /root/g; mkdir /root/gd; rm /root/child");
    assert_eq!(grand.ok("stat -c '%u %g' /root/g /root/gd"), "0 0\n0 0");
    assert_ne!(range(&grand), range(&child));
    assert_eq!(child.ok("cat /root/child"), "mine");

    // A fork's own checkpoint and restore, its layer mapped again after.
    b.checkpoint(&child.id, &new("c1")).unwrap();
    child.ok("echo after > /root/child; rm /root/shared");
    b.restore(&child.id, &cp("c1")).unwrap();
    child.wait_ready();
    assert_eq!(child.ok("cat /root/child /root/shared"), "mine\nchild");
    assert_eq!(child.ok("stat -c '%u %g' /root/child"), "0 0");
    child.ok("echo again > /root/again");
    assert!(
        !Path::new(POOL_DIR)
            .join(format!(".restore-{child_name}"))
            .exists(),
        "the swapped-out layer is gone"
    );
    // Its files exported as an image's: owners moved from the range they
    // are stored in to the image's.
    let dest = Path::new("/var/tmp/firepit-machine-it").join(format!("export-{child_name}"));
    let _ = std::fs::remove_dir_all(&dest);
    b.export(&child.id, None, &dest).unwrap();
    let owner = |p: &str| {
        let m = std::fs::symlink_metadata(dest.join(p)).unwrap();
        use std::os::unix::fs::MetadataExt;
        (m.uid(), m.gid())
    };
    let image = crate::harness::uid_base();
    assert_eq!(owner("root/again"), (image, image));
    assert_eq!(owner("root/shared"), (image + 1234, image + 1235));
    std::fs::remove_dir_all(&dest).unwrap();

    // Destroying the parent leaves its forks whole.
    drop(parent);
    assert_eq!(child.ok("cat /root/shared /root/child"), "child\nmine");
    assert_eq!(now.ok("cat /root/later"), "later");
}

#[test]
fn bad_requests_are_clear_errors_and_change_nothing() {
    let _g = shared();
    let b = backend();
    let m = Machine::create(pooled("it-cp-bad"));
    let other = Machine::create(pooled("it-cp-bad-other"));
    m.ok("echo kept > /root/k");
    b.checkpoint(&m.id, &new("only")).unwrap();
    assert!(matches!(
        b.checkpoint(&m.id, &new("only")),
        Err(Error::CheckpointExists { .. })
    ));
    // Another machine's checkpoint is not this one's.
    assert!(matches!(
        b.restore(&other.id, &cp("only")),
        Err(Error::CheckpointNotFound { .. })
    ));
    assert!(matches!(
        b.fork(
            &other.id,
            Some(&cp("only")),
            &MachineId::new("it-cp-bad-f").unwrap()
        ),
        Err(Error::CheckpointNotFound { .. })
    ));
    assert!(matches!(
        b.remove_checkpoint(&m.id, &cp("nope")),
        Err(Error::CheckpointNotFound { .. })
    ));
    // A fork onto an existing machine.
    assert!(matches!(
        b.fork(&m.id, None, &other.id),
        Err(Error::Exists(_))
    ));
    assert!(matches!(b.fork(&m.id, None, &m.id), Err(Error::Exists(_))));
    // Bad labels.
    let mut bad = new("x");
    bad.name = Some("a\u{7}b".into());
    assert!(matches!(
        b.checkpoint(&m.id, &bad),
        Err(Error::InvalidCheckpoint(_))
    ));
    // Gone machines.
    let gone = MachineId::new("it-cp-bad-gone").unwrap();
    assert!(matches!(
        b.restore(&gone, &cp("only")),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        b.checkpoint(&gone, &new("a")),
        Err(Error::NotFound(_))
    ));
    // Nothing of this touched the machine.
    assert_eq!(m.ok("cat /root/k"), "kept");
    assert_eq!(b.checkpoints(&m.id).unwrap().len(), 1);
    assert_eq!(b.checkpoints(&other.id).unwrap().len(), 0);
}

fn btrfs(args: &[&str]) {
    let out = Command::new("btrfs").args(args).output().unwrap();
    assert!(out.status.success(), "btrfs {args:?}: {out:?}");
}

#[test]
fn a_restart_removes_what_a_cut_off_checkpoint_or_restore_left() {
    let _g = exclusive();
    let m = Machine::create(pooled("it-cp-crash"));
    let b = backend();
    m.ok("echo before > /root/f");
    b.checkpoint(&m.id, &new("whole")).unwrap();
    m.ok("echo after > /root/f; sync");
    let pool = Path::new(POOL_DIR);
    let layer = pool.join("it-cp-crash");
    let cps = pool.join(".checkpoints/it-cp-crash");
    // A checkpoint cut off before its record, a record whose files are
    // gone, a record being written, and a restore's new layer.
    btrfs(&[
        "subvolume",
        "snapshot",
        "-r",
        layer.to_str().unwrap(),
        cps.join("half").to_str().unwrap(),
    ]);
    std::fs::write(cps.join("orphan.json"), "{}").unwrap();
    std::fs::write(cps.join("w.json.tmp"), "{").unwrap();
    std::fs::write(cps.join("w.tmp"), "{").unwrap();
    // A size that was never written down (cut off after the snapshot).
    let size = b.checkpoints(&m.id).unwrap()[0].size_bytes;
    std::fs::remove_file(cps.join("whole.json")).unwrap();
    let restoring = pool.join(".restore-it-cp-crash");
    btrfs(&[
        "subvolume",
        "snapshot",
        cps.join("whole").to_str().unwrap(),
        restoring.to_str().unwrap(),
    ]);
    // Checkpoints of a machine that is gone.
    let gone = pool.join(".checkpoints/it-cp-crash-gone");
    std::fs::create_dir_all(&gone).unwrap();
    btrfs(&[
        "subvolume",
        "snapshot",
        "-r",
        layer.to_str().unwrap(),
        gone.join("g").to_str().unwrap(),
    ]);

    // A machine with copies: a copy cut off while it was made, a copy
    // without its record, a restore's copy.
    let plain_spec = spec("it-cp-crash-copy", Network::None);
    let copies = checkpoints_dir(&plain_spec);
    let plain = Machine::create(plain_spec);
    plain.ok("echo copied > /root/f");
    b.checkpoint(&plain.id, &new("whole")).unwrap();
    for d in [".tmp-cut", "norecord", "../.restore/upper"] {
        std::fs::create_dir_all(copies.join(d).join("upper/root")).unwrap();
    }

    let fresh = NamespacesBackend::new(config()).unwrap();
    fresh.recover().unwrap();
    for d in [".tmp-cut", "norecord", "../.restore"] {
        assert!(!copies.join(d).exists(), "{d}");
    }
    assert_eq!(fresh.checkpoints(&plain.id).unwrap().len(), 1);
    assert!(!cps.join("half").exists());
    assert!(!cps.join("orphan.json").exists());
    assert!(!cps.join("w.json.tmp").exists());
    assert!(!cps.join("w.tmp").exists());
    assert_eq!(fresh.checkpoints(&m.id).unwrap()[0].size_bytes, size);
    assert!(
        cps.join("whole.json").exists(),
        "the size is written down again"
    );
    assert!(!restoring.exists());
    assert!(!gone.exists());
    let ids: Vec<_> = fresh
        .checkpoints(&m.id)
        .unwrap()
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(ids, ["whole"]);
    // The machine still runs on its own files.
    assert_eq!(m.ok("cat /root/f"), "after");
    fresh.restore(&m.id, &cp("whole")).unwrap();
    m.wait_ready();
    assert_eq!(m.ok("cat /root/f"), "before");
}

/// A shell command in a machine of another backend, through its socket.
fn sh_at(socket: &Path, cmd: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("guest socket");
    s.write_all(cmd.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (code, rest) = out.split_once('\n').unwrap_or((&out, ""));
    assert_eq!(code, "0", "{cmd}: {rest}");
    rest.trim().to_owned()
}

#[test]
fn a_copy_onto_a_full_disk_is_disk_full_and_leaves_nothing_half_made() {
    let _g = exclusive();
    // The state dir on a small file system of its own.
    let tiny = Path::new("/var/tmp/firepit-machine-it/tiny");
    let _ = Command::new("umount").arg(tiny).status();
    std::fs::create_dir_all(tiny).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs"])
        .arg(tiny)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(tiny);
    let mut c = config();
    c.state_dir = tiny.join("state");
    c.disk = None;
    let b = NamespacesBackend::new(c).unwrap();
    let s = spec("it-cp-full", Network::None);
    let id = s.id.clone();
    let _ = b.destroy(&id);
    b.create(&s).unwrap();
    let socket = match b.guest_address(&id).unwrap() {
        firepit_machine::GuestAddress::Unix { path, .. } => path,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(std::time::Instant::now() < deadline, "guest did not listen");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // 24 MiB of the 40: a second copy of it does not fit.
    sh_at(&socket, "head -c 25165824 /dev/urandom > /root/big && sync");
    let sum = sh_at(&socket, "md5sum /root/big");
    let err = b.checkpoint(&id, &new("full")).unwrap_err();
    assert!(matches!(err, Error::DiskFull { .. }), "{err}");
    // Nothing half-made: no copy, no record, no checkpoint listed.
    let state = tiny.join("state").join(id.as_str());
    let left: Vec<_> = std::fs::read_dir(state.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!state.join("checkpoint.json").exists());
    assert!(b.checkpoints(&id).unwrap().is_empty());
    // The machine runs on, its files as they were.
    assert_eq!(sh_at(&socket, "md5sum /root/big"), sum);
    // With room again, a checkpoint and its restore work.
    sh_at(&socket, "rm /root/big; echo small > /root/small; sync");
    b.checkpoint(&id, &new("fits")).unwrap();
    sh_at(&socket, "echo changed > /root/small; sync");
    b.restore(&id, &cp("fits")).unwrap();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(sh_at(&socket, "cat /root/small"), "small");
    b.destroy(&id).unwrap();
}
