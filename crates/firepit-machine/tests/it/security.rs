//! What the machine's processes may not do, checked from inside.

use std::path::Path;

use firepit_machine::Network;

use crate::harness::{Machine, shared, spec};

/// The capabilities a machine keeps (Docker's default set without
/// `CAP_NET_RAW` and `CAP_AUDIT_WRITE`).
const KEPT: &[u32] = &[0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 27, 31];

/// The hex capability set named `field` in a `/proc/PID/status`.
fn caps(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// Runs a raw system call in the machine through python's ctypes; returns
/// "<result> <errno>".
fn syscall(m: &Machine, nr: u64, args: &str) -> String {
    m.ok(&format!(
        "python3 -c \"import ctypes; l=ctypes.CDLL(None,use_errno=True); r=l.syscall({nr}{args}); print(r, ctypes.get_errno())\""
    ))
}

#[test]
fn processes_are_confined() {
    let _g = shared();
    let m = Machine::create(spec("it-confined", Network::None));
    let status = m.ok("cat /proc/self/status");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let kept = KEPT.iter().fold(0u64, |m, c| m | 1 << c);
    // The machine's processes, PID 1 among them, hold these and no more.
    let init = m.ok("cat /proc/1/status");
    for (who, s) in [("a process", &status), ("PID 1", &init)] {
        for field in ["CapBnd", "CapEff", "CapPrm"] {
            assert_eq!(caps(s, field), kept, "{field} of {who}");
        }
        // NET_ADMIN, SYS_MODULE, SYS_RAWIO, SYS_PTRACE, SYS_ADMIN, SYS_BOOT,
        // SYS_TIME, MAC_ADMIN, DAC_READ_SEARCH, NET_RAW, SYS_RESOURCE, BPF.
        for cap in [12, 16, 17, 19, 21, 22, 25, 33, 2, 13, 24, 39] {
            assert_eq!(caps(s, "CapBnd") & (1 << cap), 0, "cap {cap} of {who}");
        }
        assert_eq!(caps(s, "CapInh"), 0, "{who}");
        assert_eq!(caps(s, "CapAmb"), 0, "{who}");
    }

    // Denied system calls fail with EPERM.
    assert_eq!(
        syscall(&m, 103, ", 2, 0, 0"),
        "-1 1",
        "syslog(2) was not denied"
    );
    // The host's files and processes are out of sight.
    assert_eq!(
        m.ok("cat /proc/1/cmdline | tr '\\0' ' '"),
        "/usr/bin/python3 /.firepit/guest --socket /.firepit/run/guest.sock"
    );
    let (code, _) = m.sh("touch /sys/x 2>&1");
    assert_ne!(code, 0, "/sys is writable");
    let (code, _) = m.sh("touch /.firepit/guest");
    assert_ne!(code, 0, "the guest is writable");
    // A pty works.
    m.ok("python3 -c 'import pty,os; m,s=os.openpty(); print(os.ttyname(s))'");
    assert_eq!(
        m.ok("ls /dev | tr '\\n' ' '"),
        "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"
    );
}

#[test]
fn the_kernel_surface_is_closed() {
    let _g = shared();
    let m = Machine::create(spec("it-kernel", Network::None));
    const X32: u64 = 0x4000_0000;
    // x32 numbers: the filter answers EPERM (a kernel without x32 says
    // ENOSYS, so EPERM shows the filter refused them), for an allowed call
    // (getpid, 39) and a denied one (keyctl, 250) alike.
    assert_eq!(syscall(&m, X32 | 39, ""), "-1 1", "x32 getpid");
    assert_eq!(
        syscall(&m, X32 | 250, ", 0, 0, 0, 0, 0"),
        "-1 1",
        "x32 keyctl"
    );
    // io_uring_setup(1, NULL) would say EFAULT if it got through.
    assert_eq!(syscall(&m, 425, ", 1, 0"), "-1 1", "io_uring_setup");
    // unshare(CLONE_NEWUSER), and clone(CLONE_NEWUSER | CLONE_FS), which the
    // kernel itself would refuse with EINVAL.
    assert_eq!(
        syscall(&m, 272, ", 0x10000000"),
        "-1 1",
        "unshare(CLONE_NEWUSER)"
    );
    assert_eq!(
        syscall(&m, 56, ", 0x10000200, 0, 0, 0, 0"),
        "-1 1",
        "clone(CLONE_NEWUSER)"
    );
    // clone3 cannot be filtered by its flags: ENOSYS, and libc falls back.
    assert_eq!(syscall(&m, 435, ", 0, 0"), "-1 38", "clone3");
    let (code, out) = m.sh("unshare -U -r true 2>&1");
    assert_ne!(code, 0, "a nested user namespace was made: {out}");
    let (code, out) = m.sh("unshare -m true 2>&1");
    assert_ne!(
        code, 0,
        "a mount namespace was made without CAP_SYS_ADMIN: {out}"
    );
    // Threads and processes still start (glibc falls back from clone3).
    assert_eq!(
        m.ok("python3 -c 'import threading,subprocess; t=threading.Thread(target=print); t.start(); t.join(); subprocess.run([\"true\"], check=True)'"),
        ""
    );
}

#[test]
fn kernel_files_are_masked_or_read_only() {
    let _g = shared();
    let m = Machine::create(spec("it-procmask", Network::None));
    let mut checked = 0;
    for file in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
    ] {
        if Path::new(file).exists() {
            assert_eq!(m.ok(&format!("wc -c < {file}")), "0", "{file} is readable");
            checked += 1;
        }
    }
    for dir in [
        "/proc/asound",
        "/proc/acpi",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ] {
        if Path::new(dir).exists() {
            assert_eq!(m.ok(&format!("ls -A {dir}")), "", "{dir} is listed");
            let (code, _) = m.sh(&format!("touch {dir}/x"));
            assert_ne!(code, 0, "{dir} is writable");
            checked += 1;
        }
    }
    assert!(checked >= 2, "this host has none of the masked files");
    // /proc/sys is read-only, even the knobs of the machine's own network
    // namespace; what the launcher set before stays.
    let (code, out) = m.sh("echo 1 > /proc/sys/net/ipv4/ip_forward 2>&1");
    assert_ne!(code, 0, "/proc/sys is writable");
    assert!(out.contains("Read-only"), "{out}");
    assert_eq!(m.ok("cat /proc/sys/net/ipv4/ping_group_range"), "0\t65535");
    for path in [
        "/proc/sysrq-trigger",
        "/proc/irq/x",
        "/proc/bus/x",
        "/proc/fs/x",
    ] {
        let (code, _) = m.sh(&format!("echo x > {path}"));
        assert_ne!(code, 0, "{path} is writable");
    }
    // The machine cannot take the masks off.
    let (code, _) = m.sh("umount /proc/keys 2>&1 || umount -l /proc/sys 2>&1");
    assert_ne!(code, 0, "a mask was unmounted");
}

#[test]
fn nothing_but_the_guest_escapes_the_oom_killer() {
    let _g = shared();
    let m = Machine::create(spec("it-oom", Network::None));
    // The guest's children start at 0 and cannot go below it.
    assert_eq!(m.ok("cat /proc/self/oom_score_adj"), "0");
    for (file, value) in [
        ("/proc/self/oom_score_adj", "-1000"),
        ("/proc/self/oom_score_adj", "-1"),
        ("/proc/self/oom_adj", "-17"),
        ("/proc/1/oom_score_adj", "-1000"),
    ] {
        let (code, _) = m.sh(&format!("echo {value} > {file}"));
        assert_ne!(code, 0, "{file} took {value}");
    }
    // Raising stays allowed.
    assert_eq!(
        m.ok("echo 500 > /proc/self/oom_score_adj && cat /proc/self/oom_score_adj"),
        "500"
    );
    // The guest itself is at -1000 where the launcher may put it there
    // (CAP_SYS_RESOURCE in the host's user namespace, which some container
    // hosts lack).
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    if caps(&host, "CapEff") & (1 << 24) != 0 {
        assert_eq!(m.ok("cat /proc/1/oom_score_adj"), "-1000");
    } else {
        eprintln!("this host lacks CAP_SYS_RESOURCE: the guest's -1000 is not checked");
    }
}
