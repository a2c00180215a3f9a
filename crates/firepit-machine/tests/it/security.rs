//! What the machine's processes may not do, checked from inside.

use firepit_machine::Network;

use crate::harness::{Machine, shared, spec};

#[test]
fn processes_are_confined() {
    let _g = shared();
    let m = Machine::create(spec("it-confined", Network::None));
    let status = m.ok("grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let bnd = status.lines().find(|l| l.starts_with("CapBnd")).unwrap();
    let bnd = u64::from_str_radix(bnd.split_whitespace().nth(1).unwrap(), 16).unwrap();
    for cap in [16, 17, 22, 25, 39] {
        assert_eq!(bnd & (1 << cap), 0, "cap {cap} in the bounding set {bnd:x}");
    }
    assert_ne!(
        bnd & (1 << 21),
        0,
        "CAP_SYS_ADMIN (in the machine's own namespace) is kept"
    );

    // Denied system calls fail with EPERM.
    let (code, out) = m.sh("python3 -c \"import ctypes,os; l=ctypes.CDLL(None,use_errno=True); r=l.syscall(103, 2, 0, 0); print(r, ctypes.get_errno())\"");
    assert_eq!((code, out.trim()), (0, "-1 1"), "syslog(2) was not denied");
    // The host's files and processes are out of sight.
    assert_eq!(
        m.ok("cat /proc/1/cmdline | tr '\\0' ' '"),
        "/usr/bin/python3 /.firepit/guest --socket /.firepit/run/guest.sock"
    );
    let (code, _) = m.sh("touch /sys/x 2>&1");
    assert_ne!(code, 0, "/sys is writable");
    let (code, _) = m.sh("touch /.firepit/guest");
    assert_ne!(code, 0, "the guest is writable");
    // Namespaces inside (Chromium's sandbox) still work.
    assert_eq!(
        m.ok("unshare -U -r -p -f --mount-proc sh -c 'echo $$'"),
        "1"
    );
    // A pty works.
    m.ok("python3 -c 'import pty,os; m,s=os.openpty(); print(os.ttyname(s))'");
    assert_eq!(
        m.ok("ls /dev | tr '\\n' ' '"),
        "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"
    );
}
