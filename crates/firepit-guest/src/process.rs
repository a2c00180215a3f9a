//! Spawning children and reaping every process that ends up ours.
//!
//! One place owns `waitpid`: [`reap`] waits for *any* child (`waitpid(-1)`), so orphans that
//! the kernel reparents to the guest (PID 1, or a subreaper) are reaped too. Statuses of
//! processes the guest spawned itself are routed to whoever spawned them through a oneshot
//! channel registered by [`spawn`]. Spawning and reaping take the same lock, so a child that
//! exits at once cannot be reaped before its owner is registered. `tokio::process` is not
//! used: its own reaper would fight this one.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use firepit_wire::guest::{ErrorKind, ExitStatus, WireError};
use tokio::sync::oneshot;

static OWNERS: Mutex<Option<HashMap<i32, oneshot::Sender<ExitStatus>>>> = Mutex::new(None);
static PDEATHSIG: AtomicBool = AtomicBool::new(false);

fn owners() -> MutexGuard<'static, Option<HashMap<i32, oneshot::Sender<ExitStatus>>>> {
    OWNERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes children die with the guest (used when the guest is not PID 1, e.g. in tests).
pub fn set_kill_children_on_exit(on: bool) {
    PDEATHSIG.store(on, Ordering::Relaxed);
}

/// A spawned child: its pid (also its process group and session id) and its exit.
pub struct Spawned {
    /// The std handle (for its pipes); never waited on.
    pub child: Child,
    /// The pid, also the process group id.
    pub pid: i32,
    /// Resolves when the reaper collects the child.
    pub exit: oneshot::Receiver<ExitStatus>,
}

/// Keeps the processes of the machine out of the guest, when it runs as PID 1:
/// the guest becomes non-dumpable, so that nothing without `CAP_SYS_PTRACE` (which no
/// process of a machine has) can ptrace it, read or write its memory through /proc, or
/// take its descriptors with `pidfd_getfd`. Without this, any root process of the
/// machine could run code as the guest, which alone is shielded from the OOM killer.
pub fn protect_guest() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this process is shielded from the OOM killer (a negative `oom_score_adj`),
/// so that its children must leave the shield before they exec.
fn oom_shielded() -> bool {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .is_some_and(|v| v < 0)
}

/// Sets the calling process's `oom_score_adj` to 0. Async-signal-safe: it runs between
/// fork and exec.
fn leave_oom_shield() -> io::Result<()> {
    // SAFETY: open/write/close on a static NUL-terminated path and a static buffer.
    unsafe {
        let fd = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != 1 {
            return Err(err);
        }
    }
    Ok(())
}

/// Spawns `cmd` in a new session (so it leads its own process group) and registers it
/// with the reaper. `ctty` makes stdin the session's controlling terminal (for ptys).
///
/// The guest (PID 1) is shielded from the OOM killer (`oom_score_adj` -1000, set by the
/// launcher with a floor of 0 that children inherit); each child goes back to 0 before
/// it execs, or does not run: a memory hog must stay killable, and below the floor it
/// cannot go again. Children get the guest's capabilities, which are already the
/// machine's whole set (the launcher dropped the rest from the bounding set).
pub fn spawn(cmd: &mut Command, ctty: bool) -> io::Result<Spawned> {
    let pdeathsig = PDEATHSIG.load(Ordering::Relaxed);
    let shielded = oom_shielded();
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (setsid, ioctl, prctl, open, write, close) on a static path.
    unsafe {
        cmd.pre_exec(move || {
            if shielded {
                leave_oom_shield()?;
            }
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if ctty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            if pdeathsig {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            Ok(())
        });
    }
    let mut owners = owners();
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    let (tx, exit) = oneshot::channel();
    owners.get_or_insert_with(HashMap::new).insert(pid, tx);
    Ok(Spawned { child, pid, exit })
}

/// The pids the guest spawned that have not exited yet.
pub fn live_children() -> Vec<i32> {
    owners()
        .as_ref()
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default()
}

/// Collects every exited child, routing statuses of spawned ones to their owners.
pub fn reap() {
    let mut owners = owners();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
        let exit = if libc::WIFEXITED(status) {
            ExitStatus {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
                timed_out: false,
            }
        } else if libc::WIFSIGNALED(status) {
            ExitStatus {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
                timed_out: false,
            }
        } else {
            continue;
        };
        if let Some(tx) = owners.as_mut().and_then(|m| m.remove(&pid)) {
            let _ = tx.send(exit);
        }
    }
}

/// Runs [`reap`] on every SIGCHLD, forever.
pub async fn reaper() {
    let mut sig = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => s,
        Err(_) => return,
    };
    reap();
    while sig.recv().await.is_some() {
        reap();
    }
}

/// Sends `signal` to process group `pgid`; a group that is gone is fine.
pub fn kill_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// The working directory for a child: the one asked for, or the image's, or `/root`, or `/`.
pub fn resolve_cwd(cwd: Option<&str>) -> Result<String, WireError> {
    match cwd {
        Some(dir) => {
            firepit_wire::guest::check_path(dir)?;
            if Path::new(dir).is_dir() {
                Ok(dir.to_string())
            } else {
                Err(WireError::new(
                    ErrorKind::NotFound,
                    format!("no such directory: {dir}"),
                ))
            }
        }
        None => match crate::image_config::cwd() {
            Some(dir) if Path::new(dir).is_dir() => Ok(dir.to_owned()),
            _ if Path::new("/root").is_dir() => Ok("/root".into()),
            _ => Ok("/".into()),
        },
    }
}

/// Turns a spawn failure of `program` into a clear error.
pub fn spawn_error(program: &str, e: &io::Error) -> WireError {
    match e.kind() {
        io::ErrorKind::NotFound => {
            WireError::new(ErrorKind::NotFound, format!("command not found: {program}"))
        }
        io::ErrorKind::PermissionDenied => WireError::new(
            ErrorKind::PermissionDenied,
            format!("permission denied: {program}"),
        ),
        _ => WireError::io(format_args!("starting {program}"), e),
    }
}

/// Sets `O_NONBLOCK` on a descriptor.
pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_errors_are_clear() {
        let e = io::Error::from(io::ErrorKind::NotFound);
        let w = spawn_error("foo", &e);
        assert_eq!(w.kind, ErrorKind::NotFound);
        assert_eq!(w.message, "command not found: foo");
    }

    #[test]
    fn cwd_must_exist_and_be_absolute() {
        assert_eq!(resolve_cwd(Some("/")).unwrap(), "/");
        assert_eq!(
            resolve_cwd(Some("/nonexistent-dir-x")).unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            resolve_cwd(Some("tmp")).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
    }
}
