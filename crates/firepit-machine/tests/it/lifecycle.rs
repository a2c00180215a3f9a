//! Create, stop, start, destroy, recover.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use firepit_machine::namespaces::{Config, NamespacesBackend};
use firepit_machine::{Backend, Error, MachineId, MachineState, Network};

use crate::harness::{
    CGROUP_PARENT, Machine, POOL_DIR, RUN_DIR, STATE_DIR, VETH_PREFIX, backend, cgroup_dirs,
    config, exclusive, shared, spec, uid_base,
};

#[test]
fn machine_runs_with_its_identity_and_keeps_files_across_stop_and_start() {
    let _g = shared();
    let m = Machine::create(spec("it-basic", Network::None));
    assert_eq!(m.ok("hostname"), "it-basic");
    assert_eq!(m.ok("id -u"), "0");
    let status = fs::read_to_string(format!("/proc/{}/status", m.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    // Root inside is the machine's own range outside, not the image's.
    let uid: u32 = uid_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(uid >= 1 << 30 && uid != uid_base(), "{uid_line}");

    m.ok("echo hello > /root/hello && echo x > /it-basic-marker");
    let upper = Path::new(STATE_DIR).join("it-basic/upper");
    assert_eq!(
        fs::read_to_string(upper.join("root/hello")).unwrap(),
        "hello\n"
    );
    assert!(
        !Path::new("/it-basic-marker").exists(),
        "a file written inside is on the host's root"
    );

    backend().stop(&m.id).unwrap();
    let info = backend().inspect(&m.id).unwrap();
    assert_eq!(info.state, MachineState::Stopped);
    assert!(matches!(
        backend().dial(&m.id, &["127.0.0.1:80".parse().unwrap()]),
        Err(firepit_machine::Error::NotRunning(_))
    ));
    backend().stop(&m.id).unwrap();

    let info = backend().start(&m.id).unwrap();
    assert_eq!(info.state, MachineState::Running);
    m.wait_ready();
    assert_eq!(m.ok("cat /root/hello"), "hello");

    backend().destroy(&m.id).unwrap();
    assert!(!Path::new(STATE_DIR).join("it-basic").exists());
    assert!(matches!(
        backend().inspect(&m.id),
        Err(firepit_machine::Error::NotFound(_))
    ));
}

#[test]
fn bad_requests_get_clear_errors() {
    let _g = shared();
    let mut s = spec("it-bad", Network::None);
    s.limits.cpus = 1000.0;
    let err = backend().create(&s).unwrap_err().to_string();
    assert!(err.contains("cpus 1000 is more than the host's"), "{err}");
    s.limits.cpus = 1.0;
    s.limits.memory_bytes = 0;
    assert!(
        backend()
            .create(&s)
            .unwrap_err()
            .to_string()
            .contains("memory limit 0 bytes")
    );
    assert!(!Path::new(STATE_DIR).join("it-bad").exists());

    let unknown = MachineId::new("it-unknown").unwrap();
    for r in [
        backend().stop(&unknown),
        backend().destroy(&unknown),
        backend().start(&unknown).map(|_| ()),
    ] {
        assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    }

    let m = Machine::create(spec("it-twice", Network::None));
    assert!(matches!(
        backend().create(&spec("it-twice", Network::None)),
        Err(Error::Exists(_))
    ));
    assert_eq!(
        backend().start(&m.id).unwrap().pid,
        Some(m.pid),
        "start of a running machine"
    );
}

#[test]
fn failed_creation_leaves_nothing() {
    let _g = shared();
    let mut s = spec("it-fails", Network::Nat);
    s.guest = "/etc/hostname".into(); // not executable
    let err = backend().create(&s).unwrap_err();
    assert!(
        matches!(err, Error::Launch { ref stage, .. } if stage == "starting the guest"),
        "{err}"
    );
    assert!(!Path::new(STATE_DIR).join("it-fails").exists());
    assert!(!Path::new(RUN_DIR).join("it-fails").exists());
    for d in cgroup_dirs() {
        assert!(!d.join("it-fails").exists(), "{}", d.display());
    }
}

#[test]
fn recover_adopts_running_machines_and_cleans_broken_ones() {
    let _g = exclusive();
    let running = Machine::create(spec("it-rec-run", Network::Nat));
    let stopped = Machine::create(spec("it-rec-dead", Network::None));
    // A machine whose init died without a stop, and a creation that never finished.
    let dead_pid = stopped.pid as i32;
    // SAFETY: killing a machine init this test created.
    unsafe { libc::kill(dead_pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    let half = Path::new(STATE_DIR).join("it-rec-half");
    fs::create_dir_all(half.join("upper")).unwrap();

    let fresh = NamespacesBackend::new(config()).unwrap();
    let found = fresh.recover().unwrap();
    let get = |id: &str| found.iter().find(|i| i.id.as_str() == id).cloned();
    let r = get("it-rec-run").expect("running machine found");
    assert_eq!((r.state, r.pid), (MachineState::Running, Some(running.pid)));
    let d = get("it-rec-dead").expect("stopped machine found");
    assert_eq!(d.state, MachineState::Stopped);
    assert!(!Path::new(STATE_DIR).join("it-rec-dead/init.json").exists());
    for c in cgroup_dirs() {
        assert!(!c.join("it-rec-dead").exists());
    }
    assert!(get("it-rec-half").is_none() && !half.exists());
    assert_eq!(running.ok("echo still"), "still");
    fresh.stop(&running.id).unwrap();
    assert_eq!(
        backend().inspect(&running.id).unwrap().state,
        MachineState::Stopped
    );
}

#[derive(Debug, PartialEq)]
struct Counts {
    mounts: usize,
    interfaces: usize,
    cgroups: usize,
    processes: usize,
}

fn counts() -> Counts {
    let me = std::process::id().to_string();
    let processes = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| {
            let status = fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let field = |name: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .map(str::to_string)
            };
            let cgroup = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            cgroup.contains(&format!("/{CGROUP_PARENT}/")) || field("PPid:").as_deref() == Some(&me)
        })
        .count();
    Counts {
        mounts: fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .count(),
        interfaces: fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(VETH_PREFIX))
            })
            .count(),
        cgroups: cgroup_dirs()
            .iter()
            .map(|d| {
                fs::read_dir(d).map_or(0, |r| r.flatten().filter(|e| e.path().is_dir()).count())
            })
            .sum(),
        processes,
    }
}

#[test]
fn many_machines_destroyed_at_once_leave_nothing_behind() {
    let _g = exclusive();
    let backend = std::sync::Arc::new(NamespacesBackend::new(config()).unwrap());
    let before = counts();
    let count = 12;
    let mut ids = Vec::new();
    for i in 0..count {
        let network = if i % 2 == 0 {
            Network::Nat
        } else {
            Network::None
        };
        let mut s = spec(&format!("it-mass-{i}"), network);
        s.guest = firepit_guest_bin::GUEST_BUILD_PATH.into();
        backend.create(&s).unwrap();
        ids.push(s.id);
    }
    // All at once from one thread: each call returns before its destroy ran.
    let (tx, rx) = std::sync::mpsc::channel();
    for id in &ids {
        let tx = tx.clone();
        let done_id = id.clone();
        backend.clone().destroy_then(
            id.clone(),
            Box::new(move |r| tx.send((done_id, r)).unwrap()),
        );
    }
    drop(tx);
    let mut done: Vec<MachineId> = rx
        .iter()
        .map(|(id, r)| {
            r.unwrap_or_else(|e| panic!("destroying {id}: {e}"));
            id
        })
        .collect();
    done.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(done, want, "every destroy answered once");
    for id in &ids {
        assert!(matches!(backend.inspect(id), Err(Error::NotFound(_))));
        assert!(!Path::new(STATE_DIR).join(id.as_str()).exists());
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(counts(), before);
}

#[test]
fn create_destroy_cycles_leave_nothing_behind() {
    let _g = exclusive();
    // A short grace: the guest waits up to 2 s for its shell, which ignores SIGTERM.
    let backend = NamespacesBackend::new(Config {
        stop_grace: Duration::from_millis(100),
        ..config()
    })
    .unwrap();
    let before = counts();
    let mut times = Vec::new();
    for i in 0..50 {
        let network = if i % 2 == 0 {
            Network::Nat
        } else {
            Network::None
        };
        let mut s = spec(&format!("it-cycle-{i}"), network);
        // The real guest: it ends at once on SIGTERM.
        s.guest = firepit_guest_bin::GUEST_BUILD_PATH.into();
        // Half of them with their layer in the disk pool.
        let disk = i % 4 >= 2;
        if disk {
            s.limits.disk_bytes = Some(256 << 20);
        }
        let t = Instant::now();
        backend.create(&s).unwrap();
        times.push((t.elapsed(), network, disk));
        backend.destroy(&s.id).unwrap();
        assert!(!Path::new(POOL_DIR).join(s.id.as_str()).exists());
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(counts(), before);
    for network in [Network::Nat, Network::None] {
        for disk in [false, true] {
            let mut t: Vec<Duration> = times
                .iter()
                .filter(|(_, n, d)| *n == network && *d == disk)
                .map(|(t, _, _)| *t)
                .collect();
            t.sort();
            eprintln!(
                "create() with {network:?}, disk limit {disk}: p50 {:?}, p90 {:?}",
                t[t.len() / 2],
                t[t.len() * 9 / 10]
            );
        }
    }
}
