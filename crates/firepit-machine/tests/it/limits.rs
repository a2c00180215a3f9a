//! cgroup limits: processes and memory.

use std::process::Command;
use std::time::{Duration, Instant};

use firepit_machine::{Backend, Limits, Network};

use crate::harness::{Machine, backend, shared, spec};

#[test]
fn fork_bomb_is_stopped_by_the_pids_limit_and_the_host_stays_responsive() {
    let _g = shared();
    let mut s = spec("it-forkbomb", Network::None);
    s.limits = Limits {
        pids: 64,
        ..s.limits
    };
    let m = Machine::create(s);
    m.ok("(sh -c 'b() { b | b & }; b' >/dev/null 2>&1 &) ; echo started");
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    let out = Command::new("/bin/true").status().unwrap();
    assert!(out.success());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "host spawn took {:?}",
        t.elapsed()
    );
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .parse::<u32>()
                .is_ok()
        })
        .count();
    assert!(pids < 5000, "{pids} processes on the host");
    let t = Instant::now();
    backend().destroy(&m.id).unwrap();
    assert!(t.elapsed() < Duration::from_secs(15));
}

#[test]
fn memory_hog_is_killed_and_the_guest_lives() {
    let _g = shared();
    let mut s = spec("it-memhog", Network::None);
    s.limits = Limits {
        memory_bytes: 64 << 20,
        ..s.limits
    };
    let m = Machine::create(s);
    let (code, out) = m.sh("python3 -c \"x = [b'x' * (1 << 20) for _ in range(400)]\"");
    // -9: killed by SIGKILL; 137: the shell that ran it says so.
    assert!(
        code == -9 || code == 137,
        "the hog was not killed: {code} {out}"
    );
    assert_eq!(m.ok("echo alive"), "alive");
    assert_eq!(backend().inspect(&m.id).unwrap().pid, Some(m.pid));
}
