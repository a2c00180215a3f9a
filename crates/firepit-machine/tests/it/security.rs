//! What the machine's processes may not do, checked from inside; and what
//! the host does not do for them: follow a link, a `..` or a mount they made
//! in their root out to the host's files, or dial a socket they put in place
//! of their guest's.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use firepit_machine::{Backend, GuestAddress, Network};

use crate::harness::{Machine, STATE_DIR, backend, shared, spec};

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
    let init = m.ok("cat /proc/1/cmdline | tr '\\0' ' '");
    assert!(
        init.starts_with("/usr/bin/python3 /.firepit/guest --listen-fd "),
        "{init}"
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

/// Host files the machine's links point at, with what they held.
struct Canaries {
    dir: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

impl Canaries {
    /// `hostname`, `hosts`, `resolv.conf`, `guest` and `x` in a dir of
    /// their own, as a host's /etc holds them: root's, 0644.
    fn new(name: &str) -> Canaries {
        let dir = Path::new("/var/tmp/firepit-machine-it")
            .join(format!("canaries-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut files = BTreeMap::new();
        for f in ["hostname", "hosts", "resolv.conf", "guest", "x"] {
            let body = format!("host's own {f}\n").into_bytes();
            let path = dir.join(f);
            std::fs::write(&path, &body).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            files.insert(f.to_owned(), body);
        }
        Canaries { dir, files }
    }

    fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Nothing was added, removed, written, chowned or chmodded.
    fn assert_untouched(&self, after: &str) {
        let meta = std::fs::symlink_metadata(&self.dir).unwrap();
        assert!(meta.is_dir(), "{after}: the canary dir was replaced");
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, 0, 0o755),
            "{after}: the canary dir changed"
        );
        let names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let expected: Vec<String> = self.files.keys().cloned().collect();
        assert_eq!(names, expected, "{after}: files appeared or went");
        for (name, body) in &self.files {
            let path = self.dir.join(name);
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert!(meta.is_file(), "{after}: {name} was replaced");
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o7777),
                (0, 0, 0o644),
                "{after}: {name} changed owner or mode"
            );
            assert_eq!(
                &std::fs::read(&path).unwrap(),
                body,
                "{after}: {name} was written"
            );
        }
    }
}

impl Drop for Canaries {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops and starts a machine (where the host used to write into its upper
/// layer), and waits for its guest.
fn restart(m: &Machine) {
    backend().stop(&m.id).unwrap();
    backend().start(&m.id).unwrap();
    m.wait_ready();
}

fn guest_log(m: &Machine) -> String {
    std::fs::read_to_string(Path::new(STATE_DIR).join(m.id.as_str()).join("guest.log"))
        .unwrap_or_default()
}

/// The machine's root is the top of the mount stack at `/`: neither `..` nor
/// the chroot trick (chroot below the working directory, then `..` out of
/// it) reaches what lies beneath, and the machine's mount table shows none
/// of the launcher's mounts.
#[test]
fn chroot_and_dotdot_never_leave_the_machine() {
    let _g = shared();
    let c = Canaries::new("chroot");
    let d = c.path();
    let m = Machine::create(spec("it-chroot-escape", Network::None));
    let script = format!(
        "import os\n\
         os.makedirs('/jail/in', exist_ok=True)\n\
         top = os.open('/', os.O_RDONLY)\n\
         os.chroot('/jail')\n\
         os.fchdir(top)\n\
         for _ in range(64): os.chdir('..')\n\
         os.chroot('.')\n\
         print(os.path.exists('{d}/x'), os.path.exists('/.firepit/guest'), os.path.exists('/jail/in'))\n"
    );
    m.ok(&format!("cat > /root/escape.py <<'EOF'\n{script}EOF"));
    assert_eq!(m.ok("python3 /root/escape.py"), "False True True");
    assert_eq!(
        m.ok("cd / && cd ../../.. && pwd && test -e /.firepit/guest && echo in"),
        "/\nin"
    );
    // The host's own mounts (its cgroup hierarchies, a second `/`) are not
    // in the machine's table.
    let mounts = m.ok("cat /proc/self/mountinfo");
    let points: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    assert_eq!(points.iter().filter(|p| **p == "/").count(), 1, "{mounts}");
    assert!(
        !points.iter().any(|p| p.starts_with("/sys/fs/cgroup")),
        "the machine sees mounts of the host:\n{mounts}"
    );
}

#[test]
fn links_at_etc_never_lead_the_host_out() {
    let _g = shared();
    let c = Canaries::new("etc");
    let d = c.path();
    let m = Machine::create(spec("it-links-etc", Network::None));

    // Each file a link to the host's.
    m.ok(&format!(
        "ln -sf {d}/hostname /etc/hostname && ln -sf {d}/hosts /etc/hosts && \
         ln -sf {d}/resolv.conf /etc/resolv.conf && test -L /etc/hosts"
    ));
    restart(&m);
    c.assert_untouched("links at the /etc files, stop and start");
    // The machine got its own files in their place.
    assert_eq!(m.ok("cat /etc/hostname"), "it-links-etc");
    assert_eq!(
        m.ok("stat -c %F /etc/hostname /etc/hosts /etc/resolv.conf"),
        "regular file\nregular file\nregular file"
    );
    assert!(m.ok("cat /etc/hosts").contains("it-links-etc"));

    // /etc itself a link to the host's dir, absolute and by `..`.
    for link in [d.to_owned(), format!("../../../../../../../../..{d}")] {
        m.ok(&format!(
            "rm -rf /etc.orig; mv /etc /etc.orig && ln -s {link} /etc && test -L /etc"
        ));
        restart(&m);
        c.assert_untouched(&format!("/etc -> {link}, stop and start"));
        // Inside, the link leads nowhere; the machine starts regardless and
        // its log says what it did not write.
        assert!(
            guest_log(&m).contains("were not written"),
            "{}",
            guest_log(&m)
        );
        m.ok("rm /etc && mv /etc.orig /etc");
    }

    // /etc a link within the machine: followed there.
    m.ok("mv /etc /etc.moved && ln -s /etc.moved /etc");
    restart(&m);
    assert_eq!(m.ok("cat /etc.moved/hostname"), "it-links-etc");
    m.ok("rm /etc && mv /etc.moved /etc");

    backend().destroy(&m.id).unwrap();
    c.assert_untouched("destroy");
}

#[test]
fn links_and_mounts_at_the_hosts_mount_points_never_lead_the_host_out() {
    let _g = shared();
    let c = Canaries::new("points");
    let d = c.path();
    let m = Machine::create(spec("it-links-points", Network::None));

    // /.firepit replaced by a dir whose `guest` (the guest's mount point)
    // and `run` are links to the host's files.
    m.ok(&format!(
        "mkdir /fp.new && ln -s {d}/guest /fp.new/guest && ln -s {d} /fp.new/run && \
         mv /.firepit /fp.old && mv /fp.new /.firepit && test -L /.firepit/guest"
    ));
    restart(&m);
    c.assert_untouched("links in /.firepit, stop and start");
    assert_eq!(m.ok("stat -c %F /.firepit/guest"), "regular file");
    let (code, _) = m.sh("touch /.firepit/guest");
    assert_ne!(code, 0, "the guest is writable");

    // /.firepit itself a link.
    m.ok(&format!(
        "mv /.firepit /fp.old2 && ln -s {d} /.firepit && test -L /.firepit"
    ));
    restart(&m);
    c.assert_untouched("/.firepit a link, stop and start");
    assert_eq!(m.ok("stat -c %F /.firepit"), "directory");

    // The mount points of /tmp and /run as links to the host's files. The
    // machine cannot make them itself (its mounts are not its own to undo);
    // the host plants them in its upper layer while it is stopped, as a
    // machine made before that could have left them.
    let (code, _) = m.sh("umount /tmp");
    assert_ne!(code, 0, "the machine unmounted its /tmp");
    backend().stop(&m.id).unwrap();
    let upper = Path::new(STATE_DIR).join(m.id.as_str()).join("upper");
    for name in ["tmp", "run"] {
        let _ = std::fs::remove_dir_all(upper.join(name));
    }
    std::os::unix::fs::symlink(d, upper.join("tmp")).unwrap();
    std::os::unix::fs::symlink(format!("../../../../../../..{d}"), upper.join("run")).unwrap();
    backend().start(&m.id).unwrap();
    m.wait_ready();
    c.assert_untouched("/tmp and /run links, start");
    restart(&m);
    c.assert_untouched("/tmp and /run links, stop and start");
    assert_eq!(
        m.ok("stat -c %F /tmp /run && stat -f -c %T /tmp /run"),
        "directory\ndirectory\ntmpfs\ntmpfs"
    );

    backend().destroy(&m.id).unwrap();
    c.assert_untouched("destroy");
}

#[test]
fn destroying_a_machine_full_of_links_and_mounts_touches_no_host_file() {
    let _g = shared();
    let c = Canaries::new("destroy");
    let d = c.path();
    let m = Machine::create(spec("it-links-destroy", Network::None));
    m.ok(&format!(
        "mkdir -p /root/l && ln -s {d} /root/l/dir && ln -s {d}/x /root/l/file && \
         ln -s ../../../../../../../../..{d} /root/l/up && \
         mv /etc /etc.orig && ln -s {d} /etc && \
         mkdir /root/mnt && ! mount -t tmpfs none /root/mnt 2>/dev/null"
    ));
    // Deeper than any one path may be long.
    m.ok("python3 -c 'import os\nos.chdir(\"/root\")\nfor _ in range(3000):\n    os.mkdir(\"d\"); os.chdir(\"d\")\nopen(\"leaf\", \"w\").close()'");
    backend().destroy(&m.id).unwrap();
    c.assert_untouched("destroy");
    assert!(!Path::new(STATE_DIR).join("it-links-destroy").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("it-links-destroy"),
        "a mount of the machine is in the host's namespace:\n{mounts}"
    );
}

/// Listens on every path it is given and notes each connection in
/// /root/dialed.
const FAKE_GUEST: &str = r#"import select, socket, sys
socks = []
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX)
    s.bind(p)
    s.listen(8)
    socks.append(s)
while True:
    ready, _, _ = select.select(socks, [], [])
    for s in ready:
        s.accept()
        with open("/root/dialed", "a") as f:
            f.write(s.getsockname() + "\n")
"#;

/// The pid and uid of a unix socket's peer.
fn peer(s: &UnixStream) -> (i32, u32) {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket and an out buffer of the size passed.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    (cred.pid, cred.uid)
}

#[test]
fn the_guest_socket_is_out_of_the_machines_reach_and_answered_by_its_init() {
    let _g = shared();
    let a = Machine::create(spec("it-sock-a", Network::None));
    let b = Machine::create(spec("it-sock-b", Network::None));
    let GuestAddress::Unix { path, pid } = backend().guest_address(&a.id).unwrap();
    assert_eq!(pid, Some(a.pid));

    // Only the host's root can change anything on the way to the socket.
    let dir = path.parent().unwrap();
    let meta = std::fs::symlink_metadata(dir).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o700),
        "{}",
        dir.display()
    );
    for p in dir.ancestors().skip(1) {
        let meta = std::fs::symlink_metadata(p).unwrap();
        assert!(
            meta.is_dir() && meta.uid() == 0 && meta.mode() & 0o022 == 0,
            "{} is not root's alone",
            p.display()
        );
    }
    // Its peer is the machine's init, the machine's root.
    let s = UnixStream::connect(&path).unwrap();
    assert_eq!(peer(&s), (a.pid as i32, crate::ranges::mapped_base(a.pid)));
    drop(s);

    // Inside, there is no run dir; sockets put where the guest's once was,
    // and elsewhere, are never dialed while the host talks to the guest.
    assert_eq!(a.ok("ls -A /.firepit"), "guest");
    a.ok(&format!(
        "mkdir -p /.firepit/run && cat > /root/fake.py <<'EOF'\n{FAKE_GUEST}EOF\n\
         (python3 /root/fake.py /.firepit/run/guest.sock /run/guest.sock /tmp/guest.sock \
         /root/guest.sock >/dev/null 2>&1 &); \
         for i in $(seq 100); do test -S /root/guest.sock && exit 0; sleep 0.05; done; exit 1"
    ));
    for _ in 0..5 {
        assert_eq!(a.ok("hostname"), "it-sock-a");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        firepit_guest_client::GuestClient::connect_unix_peer(&path, a.pid)
            .await
            .unwrap();
        // Another machine's socket is refused as A's guest.
        let GuestAddress::Unix { path: b_path, .. } = backend().guest_address(&b.id).unwrap();
        let err = firepit_guest_client::GuestClient::connect_unix_peer(&b_path, a.pid)
            .await
            .err()
            .expect("B's socket does not pass for A's guest");
        assert!(
            matches!(err, firepit_guest_client::Error::WrongPeer { found: Some(p), .. } if p == b.pid as i32),
            "{err}"
        );
    });
    let (code, dialed) = a.sh("cat /root/dialed");
    assert_ne!(
        code, 0,
        "the host dialed a socket the machine made: {dialed}"
    );
    assert_eq!(b.ok("hostname"), "it-sock-b");
}
