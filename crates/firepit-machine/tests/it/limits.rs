//! cgroup limits: processes, memory and CPU, each proven by what the kernel
//! counted in the machine's cgroup (v1 or v2, whichever the host has;
//! `cargo xtask test-cgroup2` runs them on a v2-only kernel).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use firepit_machine::{Backend, Limits, MachineId, Network};

use crate::harness::{Machine, backend, cgroup_dirs, shared, spec};

/// A file of the machine's cgroup of `controller`: in that controller's
/// hierarchy on v1 (`cgroup_dirs` lists cpu, memory, pids), in the one
/// group on v2.
fn cgroup_file(id: &MachineId, controller: &str, file: &str) -> PathBuf {
    let dirs = cgroup_dirs();
    let parent = match (dirs.len(), controller) {
        (1, _) => &dirs[0],
        (_, "cpu") => &dirs[0],
        (_, "memory") => &dirs[1],
        (_, "pids") => &dirs[2],
        _ => panic!("no {controller} hierarchy"),
    };
    parent.join(id.as_str()).join(file)
}

/// The number after `key` in a flat-keyed cgroup file (`key value` lines).
fn counter(path: &PathBuf, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

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
    // The kernel counts each fork refused at the limit in pids.events.
    let events = cgroup_file(&m.id, "pids", "pids.events");
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter(&events, "max").unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "the fork bomb never met the pids limit ({})",
            events.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let current: u64 = std::fs::read_to_string(cgroup_file(&m.id, "pids", "pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        current <= 64,
        "{current} processes in a machine limited to 64"
    );
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
    // Killed by the OOM killer of the machine's cgroup, not of the host.
    let v2 = cgroup_file(&m.id, "memory", "memory.events");
    let v1 = cgroup_file(&m.id, "memory", "memory.oom_control");
    let kills = counter(&v2, "oom_kill").or_else(|| counter(&v1, "oom_kill"));
    assert!(
        kills.unwrap_or(0) >= 1,
        "no OOM kill counted in the machine's cgroup: {kills:?}"
    );
    assert_eq!(m.ok("echo alive"), "alive");
    assert_eq!(backend().inspect(&m.id).unwrap().pid, Some(m.pid));
}

/// Two busy processes for two seconds of wall time, then their CPU time
/// and the wall time they ran in, in seconds.
const BUSY: &str = "python3 -c \"
import os, time
t = time.monotonic()
ps = []
for _ in range(2):
    p = os.fork()
    if p == 0:
        end = time.monotonic() + 2
        while time.monotonic() < end:
            pass
        os._exit(0)
    ps.append(p)
for p in ps:
    os.waitpid(p, 0)
c = os.times()
print(c.children_user + c.children_system, time.monotonic() - t)
\"";

#[test]
fn cpu_quota_holds() {
    let _g = shared();
    let mut s = spec("it-cpu", Network::None);
    s.limits = Limits {
        cpus: 0.25,
        ..s.limits
    };
    let m = Machine::create(s);
    let out = m.ok(BUSY);
    let (cpu, wall) = out.split_once(' ').expect("cpu and wall time");
    let (cpu, wall): (f64, f64) = (cpu.parse().unwrap(), wall.parse().unwrap());
    // The kernel held the group back at its quota...
    let stat = cgroup_file(&m.id, "cpu", "cpu.stat");
    let throttled = counter(&stat, "nr_throttled");
    assert!(
        throttled.unwrap_or(0) > 0,
        "never throttled ({}: {throttled:?})",
        stat.display()
    );
    // ...so that two busy processes got a quarter of a CPU between them:
    // at most 0.25 s per second they ran, plus a period's slack. Without
    // the quota they get up to two CPUs' worth. (A busy host can only lower
    // what they got.)
    assert!(
        cpu <= 0.25 * wall + 0.2,
        "{cpu:.2} s of CPU in {wall:.2} s at a quota of 0.25 CPU"
    );
}

/// A running machine's usage is its cgroup's counters, read when asked: CPU
/// time that grows with work, memory, processes; a stopped one has none.
#[test]
fn usage_counts_the_machines_cpu_memory_and_processes() {
    let _g = shared();
    let m = Machine::create(spec("it-usage", Network::None));
    let before = backend().usage(&m.id).unwrap();
    assert!(before.memory_bytes.is_some_and(|b| b > 0), "{before:?}");
    assert!(before.pids.is_some_and(|p| p >= 1), "{before:?}");
    let cpu_before = before.cpu_usec.expect("CPU time is counted");
    m.ok("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done");
    let after = backend().usage(&m.id).unwrap();
    assert!(
        after.cpu_usec.unwrap() > cpu_before,
        "{before:?} then {after:?}"
    );
    backend().stop(&m.id).unwrap();
    let stopped = backend().usage(&m.id).unwrap();
    assert_eq!(
        (stopped.cpu_usec, stopped.memory_bytes, stopped.pids),
        (None, None, None),
        "{stopped:?}"
    );
}
