//! The `firepit-guest` binary: `firepit-guest --socket PATH [--no-main-pty]
//! [--port-poll] [--port-rescan-ms N]`.
//!
//! Run as PID 1 of a machine (or as a plain process in tests). Sets the children's
//! environment, binds the socket first (start-up latency matters), installs the
//! `listen()` filter (see `listen_notify`: after the guest's own socket listens, so the
//! guest never waits for its own filter; every process it starts inherits it), starts
//! the reaper and the shared `main` pty, serves connections, and on SIGTERM stops
//! everything.
//!
//! `--port-poll` makes port watches poll every 5 ms without the filter (as they once
//! did: for comparison); `--port-rescan-ms` sets their safety rescan (0: none).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use firepit_guest::ports::WatchSettings;
use firepit_guest::{Error, Guest, listen_notify, ports, process};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

/// Resolved command line.
struct Settings {
    socket: PathBuf,
    main_pty: bool,
    ports: WatchSettings,
}

fn parse_args() -> Result<Settings, Error> {
    let mut socket = None;
    let mut main_pty = true;
    let mut ports = WatchSettings::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--socket" => socket = args.next().map(PathBuf::from),
            "--no-main-pty" => main_pty = false,
            "--port-poll" => ports.poll = true,
            "--port-rescan-ms" => {
                let ms = args
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| Error::Usage("--port-rescan-ms takes a number".into()))?;
                ports.rescan = (ms > 0).then(|| Duration::from_millis(ms));
            }
            other => match other.strip_prefix("--socket=") {
                Some(p) => socket = Some(PathBuf::from(p)),
                None => return Err(Error::Usage(format!("unknown argument {other}"))),
            },
        }
    }
    let socket = socket.ok_or_else(|| Error::Usage("--socket is required".into()))?;
    Ok(Settings {
        socket,
        main_pty,
        ports,
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("firepit-guest: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let settings = parse_args()?;
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
    if pid1 {
        process::protect_guest().map_err(Error::Protect)?;
    }
    if !pid1 {
        // SAFETY: plain prctl. Orphans of our children come to us instead of the host's init.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
        process::set_kill_children_on_exit(true);
    }
    // The guest's own listen(), before the filter that reports every listen().
    if let Some(dir) = settings.socket.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(&settings.socket);
    let bind_error = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| Error::Bind { path, source }
    };
    let listener = std::os::unix::net::UnixListener::bind(&settings.socket)
        .map_err(bind_error(&settings.socket))?;
    listener
        .set_nonblocking(true)
        .map_err(bind_error(&settings.socket))?;
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
        let listener = UnixListener::from_std(listener).map_err(bind_error(&settings.socket))?;
        tokio::spawn(process::reaper());
        let guest = Guest::new();
        if settings.main_pty {
            guest.ptys.start_main(&guest);
        }
        firepit_guest::serve(listener, guest.clone(), terminated()).await;
        let _ = std::fs::remove_file(&settings.socket);
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
