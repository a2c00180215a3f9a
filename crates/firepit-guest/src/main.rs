//! The `firepit-guest` binary: `firepit-guest (--socket PATH | --listen-fd N)
//! [--no-main-pty] [--port-poll] [--port-rescan-ms N]`.
//!
//! Run as PID 1 of a machine (or as a plain process in tests). Makes itself
//! non-dumpable (so no process of the machine without `CAP_SYS_PTRACE` can
//! ptrace it, read its memory or take its fds), sets the children's
//! environment, binds the socket first (start-up latency matters) or takes the
//! listening socket it inherited (machines: the launcher binds it where the
//! machine cannot reach), installs the `listen()` filter (see `listen_notify`:
//! after the guest's own socket listens, so the guest never waits for its own
//! filter; every process it starts inherits it), starts the reaper and the
//! shared `main` pty, serves connections, and on SIGTERM stops everything.
//!
//! `--port-poll` makes port watches poll every 5 ms without the filter (as they
//! once did: for comparison); `--port-rescan-ms` sets their safety rescan (0:
//! none).

use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use firepit_guest::ports::WatchSettings;
use firepit_guest::{Error, Guest, image_config, listen_notify, ports, process};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

/// Where connections come from.
enum Listen {
    /// Bind this path.
    Socket(PathBuf),
    /// A bound unix stream socket this process inherited.
    Fd(RawFd),
}

/// Resolved command line.
struct Settings {
    listen: Listen,
    main_pty: bool,
    ports: WatchSettings,
}

fn parse_args() -> Result<Settings, Error> {
    let mut listen = None;
    let mut main_pty = true;
    let mut ports = WatchSettings::default();
    let mut args = std::env::args().skip(1);
    let fd = |v: Option<String>| {
        v.and_then(|v| v.parse::<RawFd>().ok())
            .filter(|fd| *fd > 2)
            .map(Listen::Fd)
            .ok_or_else(|| Error::Usage("--listen-fd takes a descriptor number above 2".into()))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--socket" => listen = args.next().map(PathBuf::from).map(Listen::Socket),
            "--listen-fd" => listen = Some(fd(args.next())?),
            "--no-main-pty" => main_pty = false,
            "--port-poll" => ports.poll = true,
            "--port-rescan-ms" => {
                let ms = args
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| Error::Usage("--port-rescan-ms takes a number".into()))?;
                ports.rescan = (ms > 0).then(|| Duration::from_millis(ms));
            }
            other => {
                if let Some(p) = other.strip_prefix("--socket=") {
                    listen = Some(Listen::Socket(PathBuf::from(p)));
                } else if let Some(n) = other.strip_prefix("--listen-fd=") {
                    listen = Some(fd(Some(n.to_owned()))?);
                } else {
                    return Err(Error::Usage(format!("unknown argument {other}")));
                }
            }
        }
    }
    let listen =
        listen.ok_or_else(|| Error::Usage("--socket or --listen-fd is required".into()))?;
    Ok(Settings {
        listen,
        main_pty,
        ports,
    })
}

/// The listener of an inherited descriptor, checked to be a unix stream
/// socket, and no longer inherited by what the guest runs.
fn inherited_listener(fd: RawFd) -> Result<std::os::unix::net::UnixListener, Error> {
    let bad = |what: String| Error::ListenFd {
        fd,
        source: std::io::Error::other(what),
    };
    // SAFETY: fstat/getsockopt/fcntl on a descriptor number only read or set
    // its flags; a number that is not open fails with EBADF.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(Error::ListenFd {
                fd,
                source: std::io::Error::last_os_error(),
            });
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(bad("not a socket".into()));
        }
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        );
        if r != 0 || v != libc::AF_UNIX {
            return Err(bad("not a unix socket".into()));
        }
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            return Err(Error::ListenFd {
                fd,
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: an open unix socket that this process owns from now on.
        let listener = std::os::unix::net::UnixListener::from_raw_fd(fd);
        // A machine's init listened before it exec'd us (this same process,
        // so the peer a client sees does not change); listening again is
        // harmless, and makes a socket that was only bound usable.
        if libc::listen(fd, 1024) != 0 {
            return Err(Error::ListenFd {
                fd,
                source: std::io::Error::last_os_error(),
            });
        }
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::ListenFd { fd, source })?;
        Ok(listener)
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(firepit_guest::pty::NO_SHELL_ARG) {
        return firepit_guest::pty::no_shell_notice();
    }
    if std::env::args().nth(1).as_deref() == Some(firepit_guest::run_as::ARG) {
        let args: Vec<String> = std::env::args().skip(2).collect();
        return firepit_guest::run_as::main(&args);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("firepit-guest: {}", firepit_util::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let settings = parse_args()?;
    // Not dumpable: ptrace, /proc/1/mem and pidfd_getfd need CAP_SYS_PTRACE
    // now, which no process of a machine has. Execs of children reset it.
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let pid1 = std::process::id() == 1;
    for (k, v) in [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOME", "/root"),
        ("TERM", "xterm-256color"),
        ("LANG", "C.UTF-8"),
    ] {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var(k, v) };
    }
    if pid1 && let Some(config) = image_config::read(firepit_wire::image_config::PATH) {
        // SAFETY: no other thread exists yet.
        unsafe { image_config::apply(&config) };
    }
    if pid1 {
        process::protect_guest().map_err(Error::Protect)?;
    }
    if !pid1 {
        // SAFETY: plain prctl. Orphans of our children come to us instead of the host's init.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
        process::set_kill_children_on_exit(true);
    }
    // The guest's own listen(), before the filter that reports every listen().
    let listener = match &settings.listen {
        Listen::Socket(path) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::remove_file(path);
            let bind_error = |source| Error::Bind {
                path: path.clone(),
                source,
            };
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            listener
        }
        Listen::Fd(fd) => inherited_listener(*fd)?,
    };
    ports::configure(settings.ports);
    if !settings.ports.poll {
        // Still one thread: every thread and process from here on inherits the filter.
        match listen_notify::install() {
            Ok(fd) => listen_notify::serve(fd).map_err(Error::ListenNotify)?,
            Err(e) => eprintln!(
                "firepit-guest: listen() calls cannot be reported ({e}); port watches poll every {} ms",
                ports::POLL.as_millis()
            ),
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    rt.block_on(async move {
        let listener =
            UnixListener::from_std(listener).map_err(|source| match &settings.listen {
                Listen::Socket(path) => Error::Bind {
                    path: path.clone(),
                    source,
                },
                Listen::Fd(fd) => Error::ListenFd { fd: *fd, source },
            })?;
        tokio::spawn(process::reaper());
        let guest = Guest::new();
        if settings.main_pty {
            guest.ptys.start_main(&guest);
        }
        firepit_guest::serve(listener, guest.clone(), terminated()).await;
        if let Listen::Socket(path) = &settings.listen {
            let _ = std::fs::remove_file(path);
        }
        guest.ptys.shutdown();
        stop_everything(pid1).await;
        Ok(())
    })
}

async fn terminated() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// SIGTERM to everything (every process as PID 1; our own groups otherwise), up to 2 s of
/// grace while the reaper collects them, then SIGKILL.
async fn stop_everything(pid1: bool) {
    let signal_all = |sig: i32| {
        if pid1 {
            // SAFETY: plain syscall; as PID 1, -1 means every other process.
            unsafe { libc::kill(-1, sig) };
        } else {
            for pid in process::live_children() {
                process::kill_group(pid, sig);
            }
        }
    };
    signal_all(libc::SIGTERM);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        // SAFETY: plain syscall; signal 0 only checks for existence.
        let any = if pid1 {
            (unsafe { libc::kill(-1, 0) }) == 0
        } else {
            !process::live_children().is_empty()
        };
        if !any {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal_all(libc::SIGKILL);
}
