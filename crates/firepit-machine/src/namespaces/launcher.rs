//! The launcher: a short-lived, single-threaded process that starts one
//! machine, so that clone/unshare/mount never run in the multithreaded daemon.
//!
//! Protocol: the backend runs `<launcher> <args..>` with a JSON
//! [`LaunchRequest`] on stdin; the launcher answers one JSON [`LaunchReply`]
//! on stdout and exits (0 when started).
//!
//! Steps, in the launcher:
//! 1. join the machine's cgroups (so the child's cgroup namespace is rooted
//!    there), unshare a private mount namespace of its own, mount the image
//!    idmapped onto the machine's uid range (`super::idmap`; not for
//!    machines made before ranges were per machine), a fork's layer likewise
//!    (from the range its files are stored in), the overlay root over
//!    it and the read-only guest — host mounts never see them, and they
//!    vanish with the machine; bind the guest's socket in the machine's
//!    run dir, a root-only host dir the machine never sees;
//! 2. clone the child into new user, mount, pid, net, uts, ipc and cgroup
//!    namespaces; write its uid/gid maps and its OOM score (-1000 for the
//!    guest, a floor of 0 for everything it starts); create
//!    its veth (peer straight into the child's netns); release the child;
//! 3. wait until the child execs the guest (its error pipe closes) or reports
//!    a failure, and answer with the child's pid and start time.
//!
//! The launcher enters the machine's root (its working directory) before the
//! clone, which carries it into the child's mount namespace: the child never
//! resolves a host path to reach its root, so the host dirs above it stay
//! root-only (the child is an unprivileged uid on the host).
//!
//! In the child: become root of the user namespace, set the hostname, mount
//! /proc (with the kernel's more revealing files masked and its knobs
//! read-only, [`MASKED_PATHS`], [`READ_ONLY_PATHS`]), /sys (read-only), a
//! minimal /dev, /tmp and /run, move the root onto `/` and chroot into it
//! (see [`mount_filesystems`]), configure lo and eth0, write
//! /etc/hostname, /etc/hosts and /etc/resolv.conf, listen on the guest
//! socket, drop capabilities, set no_new_privs, install seccomp, and exec
//! `/.firepit/guest --listen-fd N`.
//!
//! Every path below the machine's root is resolved with [`resolve`]: the
//! launcher runs as host root with the host's files in view, and the upper
//! layer is the machine's to fill with symlinks. Mount points are made real
//! directories (or files) and mounted on through their fds; the /etc files
//! are written only once the machine is in its root, as its root, where a link
//! can lead nowhere but into the machine.
//!
//! The guest's socket is bound by the launcher (host root) at a path in a
//! root-only dir and handed to the guest as an inherited fd; the machine's
//! init calls `listen`, so the peer credentials a client reads
//! (`SO_PEERCRED`) are the init's pid and the machine's root.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::confine;
use super::idmap::{self, IdmapPlan, LayerMap};
use super::netlink::{Netlink, if_index};
use super::procfs;
use super::resolve::{self, Kind};
use super::trust;

/// The `argv[1]` by which the `firepit` binary recognizes a launcher run.
pub const LAUNCH_ARG: &str = "__machine-launch";

/// Where the guest is mounted inside machines.
pub const GUEST_PATH: &str = "/.firepit/guest";

/// The machine's end of its network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NetPlan {
    /// The host end of the machine's veth.
    pub host_if: String,
    /// The machine's address (a `/32` on its `eth0`).
    pub address: Ipv4Addr,
    /// The MAC address of the machine's `eth0`.
    pub mac: [u8; 6],
    /// The gateway's address, on the host end too.
    pub gateway: Ipv4Addr,
    /// The MAC address of the host end.
    pub gateway_mac: [u8; 6],
    /// The nftables tables (`inet` and `arp`) of the backend.
    pub table: String,
}

/// What the backend asks the launcher to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LaunchRequest {
    pub hostname: String,
    pub image: PathBuf,
    /// Layers stacked below `image`, topmost first (see `MachineSpec::layers`).
    #[serde(default)]
    pub layers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub rootfs: PathBuf,
    pub guest: PathBuf,
    /// Where to bind the guest's socket (in a dir only host root reaches).
    pub socket: PathBuf,
    pub log: PathBuf,
    /// The machine's /etc/hosts and /etc/resolv.conf.
    pub hosts: String,
    pub resolv_conf: String,
    /// Host uid of root inside: the machine's own range.
    pub uid_base: u32,
    /// Maps the image onto the machine's range; `None`: the image is the
    /// lower layer as it is (a machine in the image's own range).
    pub idmap: Option<IdmapPlan>,
    /// Maps a fork's layer onto the machine's range; `upper` and `work` are
    /// below its mount point then. `None`: the layer is in the machine's
    /// own range already.
    #[serde(default)]
    pub layer_map: Option<LayerMap>,
    /// Files to write "0" into to join the machine's cgroups.
    pub cgroup_join: Vec<PathBuf>,
    pub net: Option<NetPlan>,
    /// Appended to the guest's command line.
    #[serde(default)]
    pub guest_args: Vec<String>,
    /// Extra CA certificates (PEM) for the machine's trust (`super::trust`).
    #[serde(default)]
    pub extra_ca: Option<String>,
    /// Set in the guest's environment, which everything it starts inherits.
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// The launcher's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LaunchReply {
    Started { pid: i32, start_time: u64 },
    Failed { stage: String, message: String },
}

struct Failure {
    stage: &'static str,
    error: String,
}

trait Stage<T> {
    fn at(self, stage: &'static str) -> Result<T, Failure>;
}

impl<T, E: std::fmt::Display> Stage<T> for Result<T, E> {
    fn at(self, stage: &'static str) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            stage,
            error: e.to_string(),
        })
    }
}

/// Runs the launcher: reads a request on stdin, starts the machine, answers
/// on stdout, exits. Call it from `main` before anything starts threads.
pub fn launcher_main() -> ! {
    let reply = match read_request() {
        Ok(req) => match launch(&req) {
            Ok((pid, start_time)) => LaunchReply::Started { pid, start_time },
            Err(f) => LaunchReply::Failed {
                stage: f.stage.into(),
                message: f.error,
            },
        },
        Err(f) => LaunchReply::Failed {
            stage: f.stage.into(),
            message: f.error,
        },
    };
    let ok = matches!(reply, LaunchReply::Started { .. });
    let mut out = io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, &reply);
    let _ = out.flush();
    std::process::exit(if ok { 0 } else { 1 })
}

fn read_request() -> Result<LaunchRequest, Failure> {
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .at("reading the request")?;
    serde_json::from_str(&text).at("parsing the request")
}

fn cstr(p: impl AsRef<Path>) -> CString {
    CString::new(p.as_ref().as_os_str().as_bytes()).expect("paths have no NUL")
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) fn mount(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(cstr);
    let dst_c = cstr(dst);
    let fstype = fstype.map(|s| CString::new(s).expect("no NUL"));
    let data = data.map(|s| CString::new(s).expect("no NUL"));
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: all pointers are NUL-terminated strings that outlive the call, or null.
    let r = unsafe {
        libc::mount(
            ptr(&src),
            dst_c.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    check(r).map_err(|e| annotate(e, "mount", dst))
}

fn annotate(e: io::Error, what: &str, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn launch(req: &LaunchRequest) -> Result<(i32, u64), Failure> {
    let program = confine::seccomp_program().at("building the seccomp filter")?;
    for file in &req.cgroup_join {
        // "0": the writer. On v1 that is a `tasks` file: moving one thread
        // (all this process has) skips the global threadgroup lock, whose
        // RCU grace period would cost milliseconds.
        fs::write(file, "0").at("joining the machine's cgroup")?;
    }
    // SAFETY: unshare(2) affects only this single-threaded process.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) }).at("unsharing the mount namespace")?;
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .at("making mounts private")?;
    let mut stack: Vec<&Path> = vec![&req.image];
    stack.extend(req.layers.iter().map(PathBuf::as_path));
    let lowers = match &req.idmap {
        Some(plan) => {
            idmap::mount_layers(&stack, plan, req.uid_base, crate::spec::UID_COUNT)
                .at("mapping the image into the machine's uid range")?;
            // Short names relative to the lower dir, as the overlay's options must fit in
            // a page: the mount resolves them from the working directory.
            std::env::set_current_dir(&plan.lower).at("entering the machine's lower dir")?;
            (0..stack.len()).map(|n| n.to_string()).collect::<Vec<_>>()
        }
        None => stack.iter().map(|p| p.display().to_string()).collect(),
    };
    if let Some(map) = &req.layer_map {
        idmap::mount_layer(map, req.uid_base, crate::spec::UID_COUNT)
            .at("mapping the layer into the machine's uid range")?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        req.upper.display(),
        req.work.display()
    );
    mount(
        Some(Path::new("overlay")),
        &req.rootfs,
        Some("overlay"),
        0,
        Some(&opts),
    )
    .at("mounting the root overlay")?;
    mount_guest(req).at("mounting the guest")?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&req.log)
        .at("opening the guest log")?;
    let listener = bind_socket(&req.socket).at("binding the guest socket")?;
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .at("opening /dev/null")?;
    let (go_r, go_w) = pipe().at("creating pipes")?;
    let (err_r, err_w) = pipe().at("creating pipes")?;
    // The child's way to its root (see the module docs).
    std::env::set_current_dir(&req.rootfs).at("entering the machine's root")?;

    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP;
    // SAFETY: a fork-like clone (no new stack) of a single-threaded process.
    let child = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if child < 0 {
        return Err(io::Error::last_os_error()).at("cloning the machine's init");
    }
    if child == 0 {
        drop(go_w);
        drop(err_r);
        child_main(req, go_r, err_w, &log, &null, &listener, &program);
    }
    let child = child as i32;
    drop(go_r);
    drop(err_w);
    let kill = |f: Failure| {
        // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        f
    };
    prepare_child(req, child).map_err(kill)?;
    let mut go_w = fs::File::from(go_w);
    go_w.write_all(&[1])
        .at("releasing the machine's init")
        .map_err(kill)?;
    drop(go_w);
    let mut report = String::new();
    fs::File::from(err_r)
        .read_to_string(&mut report)
        .at("waiting for the machine's init")
        .map_err(kill)?;
    if !report.is_empty() {
        let (stage, error) = report.split_once('\n').unwrap_or(("machine init", &report));
        let stage: &'static str = match stage {
            s if s.starts_with("mount") => "mounting the machine's filesystems",
            s if s.starts_with("net") => "configuring the machine's network",
            s if s.starts_with("exec") => "starting the guest",
            _ => "setting up the machine's init",
        };
        return Err(kill(Failure {
            stage,
            error: error.to_string(),
        }));
    }
    drop(listener);
    let start_time = procfs::start_time(child)
        .ok_or_else(|| io::Error::other("the guest exited right away; see its log"))
        .at("starting the guest")
        .map_err(kill)?;
    Ok((child, start_time))
}

/// Mounts the guest read-only at [`GUEST_PATH`] in the overlay root, on a
/// file made there for it (whatever the machine left at `/.firepit` or
/// `/.firepit/guest` that is not a directory and a file is removed).
fn mount_guest(req: &LaunchRequest) -> io::Result<()> {
    let root = resolve::open_dir(&req.rootfs)?;
    let owner = Some(req.uid_base);
    let dir = resolve::ensure(root.as_fd(), ".firepit", Kind::Dir, 0o755, owner)
        .map_err(|e| annotate(e, "make", Path::new("/.firepit")))?;
    let target = resolve::ensure(dir.as_fd(), "guest", Kind::File, 0o755, owner)
        .map_err(|e| annotate(e, "make", Path::new(GUEST_PATH)))?;
    let target_path = resolve::fd_path(target.as_fd());
    mount(Some(&req.guest), &target_path, None, libc::MS_BIND, None)?;
    // The read-only remount applies to the bind mount itself: its root,
    // reached by walking into the mount point again.
    let bound = resolve::open_at(dir.as_fd(), "guest", libc::O_PATH, resolve::NO_LINKS)?;
    let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    mount(None, &resolve::fd_path(bound.as_fd()), None, ro, None)
}

/// A unix stream socket bound at `path` (not listening yet: the machine's
/// init listens, so that it is the peer its clients see).
fn bind_socket(path: &Path) -> io::Result<OwnedFd> {
    // SAFETY: sockaddr_un is plain data; zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is longer than a socket path may be ({} bytes)",
                path.display(),
                addr.sun_path.len() - 1
            ),
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    // SAFETY: a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // SAFETY: a valid socket and address of the size passed.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    })
    .map_err(|e| annotate(e, "bind", path))?;
    Ok(fd)
}

fn prepare_child(req: &LaunchRequest, child: i32) -> Result<(), Failure> {
    let map = format!("0 {} {}\n", req.uid_base, crate::spec::UID_COUNT);
    fs::write(format!("/proc/{child}/uid_map"), &map).at("writing the uid map")?;
    fs::write(format!("/proc/{child}/gid_map"), &map).at("writing the gid map")?;
    protect_from_oom(child)?;
    if let Some(net) = &req.net {
        let nl = Netlink::open().at("creating the veth pair")?;
        // A veth of a machine that just died may linger while its netns is torn down.
        nl.delete_link(&net.host_if).at("creating the veth pair")?;
        nl.create_veth(&net.host_if, net.gateway_mac, "eth0", net.mac, child)
            .at("creating the veth pair")?;
        let host = if_index(&net.host_if).at("creating the veth pair")?;
        // No IPv6 on the host end: nothing a machine sends there (router
        // advertisements) configures the host. The firewall drops it too;
        // a host without IPv6 has no such file.
        match fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", net.host_if),
            "1",
        ) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => r.at("turning IPv6 off on the veth")?,
        }
        nl.add_address(host, net.gateway, 32)
            .at("routing to the machine")?;
        nl.add_host_route(host, net.address)
            .at("routing to the machine")?;
        nl.add_neighbour(host, net.address, net.mac)
            .at("routing to the machine")?;
        super::firewall::admit(&net.table, &net.host_if, net.address)
            .at("admitting the machine's address to the firewall")?;
    }
    Ok(())
}

/// Shields the guest, and only the guest, from the OOM killer.
///
/// Writing `oom_score_adj` as host root (`CAP_SYS_RESOURCE` in the initial
/// user namespace) also sets the floor below which the process may not go
/// by itself (`oom_score_adj_min`): 0 here. The legacy `oom_adj` then lowers
/// the guest alone to -1000 (`-17`) without moving the floor. Children
/// inherit value and floor; the guest raises each child to 0 before it
/// execs; and only `CAP_SYS_RESOURCE` in the initial user namespace goes
/// below the floor, which nothing in a machine has.
///
/// Best effort where the launcher lacks `CAP_SYS_RESOURCE` (some container
/// hosts): then the guest keeps the launcher's score, the floor is not
/// moved, and the OOM killer still picks the biggest process of the
/// machine's cgroup, which is not the guest.
fn protect_from_oom(child: i32) -> Result<(), Failure> {
    let stage = "protecting the guest from the OOM killer";
    for (file, value) in [("oom_score_adj", "0"), ("oom_adj", "-17")] {
        match fs::write(format!("/proc/{child}/{file}"), value) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(()),
            r => r.at(stage)?,
        }
    }
    Ok(())
}

/// The child: sets the machine up and execs the guest; never returns.
fn child_main(
    req: &LaunchRequest,
    go: OwnedFd,
    err: OwnedFd,
    log: &fs::File,
    null: &fs::File,
    listener: &OwnedFd,
    program: &seccompiler::BpfProgram,
) -> ! {
    let mut byte = [0u8; 1];
    let mut go = fs::File::from(go);
    if !matches!(go.read(&mut byte), Ok(1)) {
        // The launcher gave up on us.
        // SAFETY: _exit ends this process without running the parent's destructors.
        unsafe { libc::_exit(1) };
    }
    let result = setup(
        req,
        log.as_raw_fd(),
        null.as_raw_fd(),
        listener.as_raw_fd(),
        program,
    );
    let (stage, e) = match result {
        Ok(never) => match never {},
        Err(x) => x,
    };
    let mut err = fs::File::from(err);
    let _ = write!(err, "{stage}\n{e}");
    // SAFETY: as above.
    unsafe { libc::_exit(1) }
}

enum Never {}

fn setup(
    req: &LaunchRequest,
    log: RawFd,
    null: RawFd,
    listener: RawFd,
    program: &seccompiler::BpfProgram,
) -> Result<Never, (&'static str, io::Error)> {
    let at = |stage: &'static str| move |e: io::Error| (stage, e);
    // SAFETY: plain id syscalls; the maps were written by the launcher.
    unsafe {
        check(libc::setresgid(0, 0, 0)).map_err(at("ids"))?;
        check(libc::setgroups(0, std::ptr::null())).map_err(at("ids"))?;
        check(libc::setresuid(0, 0, 0)).map_err(at("ids"))?;
    }
    let host = req.hostname.as_bytes();
    // SAFETY: the buffer is valid for its length.
    check(unsafe { libc::sethostname(host.as_ptr().cast(), host.len()) })
        .map_err(at("hostname"))?;
    enter_root().map_err(at("mount"))?;
    mount_filesystems(Path::new(".")).map_err(at("mount"))?;
    network(req.net.as_ref()).map_err(|e| ("net", io::Error::other(e.to_string())))?;
    // SAFETY: setsid/dup2/close_range on descriptors this process owns.
    unsafe {
        libc::setsid();
        check(libc::dup2(null, 0)).map_err(at("stdio"))?;
        check(libc::dup2(log, 1)).map_err(at("stdio"))?;
        check(libc::dup2(log, 2)).map_err(at("stdio"))?;
    }
    write_etc(req);
    let trusted = req
        .extra_ca
        .as_deref()
        .is_some_and(|pem| trust::install(pem).trust_dir);
    // SAFETY: listen/close_range/fcntl on descriptors this process owns; the
    // listener alone stays open across exec.
    unsafe {
        check(libc::listen(listener, 1024)).map_err(at("listen"))?;
        check(libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) as libc::c_int)
        .map_err(at("stdio"))?;
        check(libc::fcntl(listener, libc::F_SETFD, 0)).map_err(at("listen"))?;
    }
    confine::confine(program).map_err(at("confine"))?;
    let path = CString::new(GUEST_PATH).expect("no NUL");
    let mut args = vec![
        path.clone(),
        CString::new("--listen-fd").expect("no NUL"),
        CString::new(listener.to_string()).expect("no NUL"),
    ];
    for a in &req.guest_args {
        let a = CString::new(a.as_str()).map_err(|_| {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                "a NUL byte in a guest argument",
            );
            ("exec", e)
        })?;
        args.push(a);
    }
    let env = guest_env(req, trusted).map_err(|e| ("exec", e))?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are null-terminated arrays of valid C strings.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(("exec", io::Error::last_os_error()))
}

/// The guest's environment: the basics, the daemon's (`req.env`), and,
/// when the extra CAs were installed, the variables that point tools at them.
fn guest_env(req: &LaunchRequest, trusted: bool) -> io::Result<Vec<CString>> {
    let mut env: Vec<(&str, &str)> = vec![
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOME", "/root"),
        ("TERM", "xterm-256color"),
        ("LANG", "C.UTF-8"),
    ];
    env.extend(req.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if trusted {
        env.extend(trust::env());
    }
    env.into_iter()
        .map(|(k, v)| {
            if k.is_empty() || k.contains('=') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{k:?} is not an environment variable's name"),
                ));
            }
            CString::new(format!("{k}={v}")).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a NUL byte in the environment variable {k}"),
                )
            })
        })
        .collect()
}

/// Binds the working directory (the machine's root, as the launcher left it)
/// onto itself and moves into the bind. The overlay came from the launcher's
/// (more privileged) mount namespace, so it is locked here and cannot be
/// moved; a bind of it can. Done with `open_tree` and `move_mount` so
/// that no path leads there: the new mount is reached through its descriptor.
fn enter_root() -> io::Result<()> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let dot = cstr(".");
    let empty = cstr("");
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
    // SAFETY: open_tree on a NUL-terminated path; the result is checked.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, dot.as_ptr(), flags) };
    if tree < 0 {
        return Err(annotate(
            io::Error::last_os_error(),
            "open_tree",
            Path::new("."),
        ));
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    // SAFETY: move_mount of our detached tree onto the working directory;
    // the strings are NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dot.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(r as libc::c_int).map_err(|e| annotate(e, "move_mount", Path::new(".")))?;
    // SAFETY: fchdir to a directory descriptor we own.
    check(unsafe { libc::fchdir(tree.as_raw_fd()) })
        .map_err(|e| annotate(e, "fchdir", Path::new(".")))
}

/// Mounts the machine's file systems under `root` and enters it.
/// `root` is relative to the working directory the machine's root is.
/// Kernel files no machine reads (Docker's masked paths, under the new
/// root): the kernel's memory, keyrings, timers and scheduler internals,
/// firmware and power-capping (energy counters leak what other tenants
/// compute). Files get `/dev/null` bound over them, directories an empty
/// read-only tmpfs; those this kernel lacks are skipped.
pub(crate) const MASKED_PATHS: &[&str] = &[
    "proc/asound",
    "proc/acpi",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Kernel files a machine reads but never writes (Docker's read-only paths):
/// bound over themselves read-only.
pub(crate) const READ_ONLY_PATHS: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// Masks [`MASKED_PATHS`] and makes [`READ_ONLY_PATHS`] read-only under
/// `root`, whose /proc and /sys are mounted. The machine cannot undo either:
/// unmounting needs `CAP_SYS_ADMIN`, which it gives up.
fn mask_kernel_files(root: &Path) -> io::Result<()> {
    use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT};
    for rel in MASKED_PATHS {
        let path = root.join(rel);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(annotate(e, "stat", &path)),
            Ok(m) if m.is_dir() => mount(
                Some(Path::new("tmpfs")),
                &path,
                Some("tmpfs"),
                MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                Some("size=4k,nr_inodes=1,mode=555"),
            )?,
            Ok(_) => mount(Some(Path::new("/dev/null")), &path, None, MS_BIND, None)?,
        }
    }
    for rel in READ_ONLY_PATHS {
        let path = root.join(rel);
        if !path.exists() {
            continue;
        }
        mount(Some(&path), &path, None, MS_BIND | MS_REC, None)?;
        mount(
            None,
            &path,
            None,
            MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            None,
        )?;
    }
    Ok(())
}

fn mount_filesystems(root: &Path) -> io::Result<()> {
    use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};
    // Mount points are real directories of the root, mounted on by fd: a
    // symlink the machine left at /proc or /tmp would otherwise carry a mount
    // wherever it points.
    let root_fd = resolve::open_dir(root)?;
    let point = |name: &str| {
        resolve::ensure(root_fd.as_fd(), name, Kind::Dir, 0o755, None)
            .map(|fd| (resolve::fd_path(fd.as_fd()), fd))
            .map_err(|e| annotate(e, "mkdir", &root.join(name)))
    };
    let (proc_, _proc_fd) = point("proc")?;
    let (sys, _sys_fd) = point("sys")?;
    let (dev_point, _dev_fd) = point("dev")?;
    let (tmp, _tmp_fd) = point("tmp")?;
    let (run, _run_fd) = point("run")?;
    mount(
        Some(Path::new("proc")),
        &proc_,
        Some("proc"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    )?;
    // Without CAP_NET_RAW, `ping` needs ICMP datagram sockets, which this
    // machine-local (per network namespace) knob allows for every group;
    // written before /proc/sys turns read-only. Best effort: a host whose
    // /proc/sys is read-only here keeps ping broken.
    let _ = fs::write(root.join("proc/sys/net/ipv4/ping_group_range"), "0 65535");
    mount(
        Some(Path::new("sysfs")),
        &sys,
        Some("sysfs"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
        None,
    )?;
    mask_kernel_files(root)?;
    mount(
        Some(Path::new("tmpfs")),
        &dev_point,
        Some("tmpfs"),
        MS_NOSUID | MS_NOEXEC,
        Some("mode=755,size=1m"),
    )?;
    // The new tmpfs, entered through its (real) mount point.
    let dev_fd = resolve::open_at(
        root_fd.as_fd(),
        "dev",
        libc::O_PATH | libc::O_DIRECTORY,
        resolve::NO_LINKS,
    )?;
    let dev = resolve::fd_path(dev_fd.as_fd());
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        fs::File::create(&target).map_err(|e| annotate(e, "create", &target))?;
        mount(
            Some(&Path::new("/dev").join(node)),
            &target,
            None,
            MS_BIND,
            None,
        )?;
    }
    let pts = dev.join("pts");
    fs::create_dir(&pts).map_err(|e| annotate(e, "mkdir", &pts))?;
    mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MS_NOSUID | MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let shm = dev.join("shm");
    fs::create_dir(&shm).map_err(|e| annotate(e, "mkdir", &shm))?;
    mount(
        Some(Path::new("shm")),
        &shm,
        Some("tmpfs"),
        MS_NOSUID | MS_NODEV,
        Some("mode=1777"),
    )?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link))
            .map_err(|e| annotate(e, "symlink", &dev.join(link)))?;
    }
    mount(
        Some(Path::new("tmpfs")),
        &tmp,
        Some("tmpfs"),
        MS_NOSUID | MS_NODEV,
        Some("mode=1777"),
    )?;
    mount(
        Some(Path::new("tmpfs")),
        &run,
        Some("tmpfs"),
        MS_NOSUID | MS_NODEV,
        Some("mode=755"),
    )?;
    // The root is moved onto `/` and entered with chroot, not pivoted to:
    // `pivot_root` visits every thread on the host (to move those whose root
    // or working directory is the old root), so with a thousand machines it
    // alone cost a millisecond of each create. Moved onto `/`, the root is
    // the top of the mount stack there, so `..` from it, or from a chroot
    // below it, ends in it again, never in what lies beneath (the copy of
    // the launcher's mounts, which `/proc/self/mountinfo` does not show
    // either, being outside the root); and nothing in the machine can
    // unmount or move it (mount calls are refused by the seccomp filter,
    // nested user namespaces too, and the copied mounts are locked).
    // Test: `security::chroot_and_dotdot_never_leave_the_machine`. The cost:
    // each machine's namespace keeps its copy of the host's mounts (a few
    // KB, charged to the machine), so a file system the host unmounts stays
    // alive until the machines started before are stopped.
    let root_c = cstr(root);
    let dot = cstr(".");
    let slash = cstr("/");
    // SAFETY: path arguments are valid C strings.
    unsafe {
        check(libc::chdir(root_c.as_ptr())).map_err(|e| annotate(e, "chdir", root))?;
        check(libc::mount(
            dot.as_ptr(),
            slash.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        ))
        .map_err(|e| annotate(e, "move the root onto /", root))?;
        check(libc::chroot(dot.as_ptr())).map_err(|e| annotate(e, "chroot", root))?;
        check(libc::chdir(slash.as_ptr())).map_err(|e| annotate(e, "chdir", Path::new("/")))?;
    }
    Ok(())
}

/// Writes /etc/hostname, /etc/hosts and /etc/resolv.conf from inside the
/// machine: once it is in its root, as its root, so a symlink at /etc or at any
/// of these files leads only to a place in the machine (links to /proc and
/// other mounts, and magic links, are refused). Each file is replaced, not
/// written through. Best effort: a machine whose /etc cannot take them
/// still starts, and the guest log says what was not written.
fn write_etc(req: &LaunchRequest) {
    let files = [
        ("hostname", format!("{}\n", req.hostname)),
        ("hosts", req.hosts.clone()),
        ("resolv.conf", req.resolv_conf.clone()),
    ];
    let etc = resolve::open_dir(Path::new("/")).and_then(|root| {
        resolve::open_at(
            root.as_fd(),
            "etc",
            libc::O_PATH | libc::O_DIRECTORY,
            resolve::IN_ROOT | libc::RESOLVE_NO_XDEV,
        )
    });
    let etc = match etc {
        Ok(etc) => etc,
        Err(e) => {
            eprintln!(
                "firepit: /etc is not a directory of the machine's root ({e}); /etc/hostname, /etc/hosts and /etc/resolv.conf were not written"
            );
            return;
        }
    };
    for (name, body) in files {
        if let Err(e) = resolve::replace_file(etc.as_fd(), name, body.as_bytes(), 0o644) {
            eprintln!("firepit: /etc/{name} was not written: {e}");
        }
    }
}

fn network(net: Option<&NetPlan>) -> Result<(), crate::Error> {
    let nl = Netlink::open()?;
    nl.link_up(if_index("lo")?)?;
    if let Some(net) = net {
        let eth0 = if_index("eth0")?;
        nl.add_address(eth0, net.address, 32)?;
        nl.link_up(eth0)?;
        nl.add_default_route(eth0, net.gateway)?;
    }
    Ok(())
}
