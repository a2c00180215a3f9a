//! Dialing inside a machine's network namespace.
//!
//! Each namespace gets one long-lived thread that entered it with
//! `setns(CLONE_NEWNET)` once; it makes and connects sockets there and hands
//! them back, non-blocking, to tokio. A socket stays in the namespace it was
//! made in, so a server bound to the machine's 127.0.0.1 answers, and a dial
//! costs a channel round trip and a loopback `connect()`, no thread spawn and
//! no `setns`.
//!
//! The thread holds the machine's init as a pidfd and checks it before every
//! dial and every two seconds while idle: once the init is gone (the machine
//! stopped) the thread ends, letting the namespace go, and the next dial
//! finds the namespace anew.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::Error;

/// How long one `connect()` inside a machine may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle dialer checks that its machine still runs.
const IDLE_CHECK: Duration = Duration::from_secs(2);

struct Job {
    addrs: Vec<SocketAddr>,
    reply: oneshot::Sender<Result<std::net::TcpStream, Error>>,
}

struct Entry {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
}

/// The dialer threads, one per machine network namespace, keyed by session.
#[derive(Default)]
pub struct Dialers {
    by_session: Mutex<HashMap<String, Entry>>,
}

impl Dialers {
    /// Connects to the first of `addrs` that accepts, from inside the network
    /// namespace of `session`. `netns` finds the namespace's path
    /// (`/proc/<pid>/ns/net`) when no live dialer is cached; `None` means the
    /// machine does not run.
    pub async fn dial(
        &self,
        session: &str,
        netns: impl FnOnce() -> Option<PathBuf>,
        addrs: Vec<SocketAddr>,
    ) -> Result<tokio::net::TcpStream, Error> {
        let port = addrs.first().map_or(0, SocketAddr::port);
        let mut netns = Some(netns);
        // Twice at most: a cached dialer may have found its machine gone.
        for _ in 0..2 {
            let jobs = self.jobs_for(session, &mut netns)?;
            let (reply, rx) = oneshot::channel();
            let job = Job {
                addrs: addrs.clone(),
                reply,
            };
            if jobs.send(job).is_err() {
                self.forget(session);
                continue;
            }
            match rx.await {
                Ok(Ok(stream)) => {
                    return tokio::net::TcpStream::from_std(stream)
                        .map_err(|source| Error::Connect { port, source });
                }
                Ok(Err(Error::NetnsGone)) | Err(_) => self.forget(session),
                Ok(Err(e)) => return Err(e),
            }
        }
        Err(Error::NetnsGone)
    }

    /// Drops the cached dialer of `session` (its thread ends when idle).
    pub fn forget(&self, session: &str) {
        self.by_session.lock().expect("dialers").remove(session);
    }

    /// The job queue of `session`'s dialer, starting one if none is cached.
    fn jobs_for(
        &self,
        session: &str,
        netns: &mut Option<impl FnOnce() -> Option<PathBuf>>,
    ) -> Result<mpsc::Sender<Job>, Error> {
        if let Some(e) = self.by_session.lock().expect("dialers").get(session) {
            return Ok(e.jobs.clone());
        }
        let path = netns.take().and_then(|f| f()).ok_or(Error::NetnsGone)?;
        let jobs = start(session, &path)?;
        self.by_session.lock().expect("dialers").insert(
            session.to_owned(),
            Entry {
                path,
                jobs: jobs.clone(),
            },
        );
        Ok(jobs)
    }

    /// The namespace path a session's cached dialer lives in, if any.
    pub fn cached_path(&self, session: &str) -> Option<PathBuf> {
        self.by_session
            .lock()
            .expect("dialers")
            .get(session)
            .map(|e| e.path.clone())
    }
}

/// Starts the dialer thread for the namespace at `path`; returns once it has
/// entered the namespace.
fn start(session: &str, path: &Path) -> Result<mpsc::Sender<Job>, Error> {
    let netns_err = |source| Error::Netns {
        path: path.display().to_string(),
        source,
    };
    let ns = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NetnsGone
        } else {
            netns_err(e)
        }
    })?;
    let pidfd = pid_of(path).and_then(pidfd_open);
    let (jobs, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(format!("fp-dial-{session}"))
        .spawn(move || {
            // SAFETY: setns on this thread only, with a valid namespace fd;
            // the thread never leaves the namespace and never runs other code.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if r != 0 {
                let _ = ready_tx.send(Err(std::io::Error::last_os_error()));
                return;
            }
            drop(ns);
            let _ = ready_tx.send(Ok(()));
            serve(pidfd, rx);
        })
        .map_err(netns_err)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(jobs),
        Ok(Err(e)) => Err(netns_err(e)),
        Err(_) => Err(Error::NetnsGone),
    }
}

/// The dialer thread's loop, inside the namespace.
fn serve(pidfd: Option<OwnedFd>, jobs: mpsc::Receiver<Job>) {
    loop {
        match jobs.recv_timeout(IDLE_CHECK) {
            Ok(job) => {
                if !alive(pidfd.as_ref()) {
                    let _ = job.reply.send(Err(Error::NetnsGone));
                    return;
                }
                let _ = job.reply.send(connect_any(&job.addrs));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !alive(pidfd.as_ref()) {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Connects to the first address that accepts; non-blocking, no delay.
fn connect_any(addrs: &[SocketAddr]) -> Result<std::net::TcpStream, Error> {
    use std::io::ErrorKind::{AddrNotAvailable, ConnectionRefused, NetworkUnreachable};
    let port = addrs.first().map_or(0, SocketAddr::port);
    let mut other = None;
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                let ready = s.set_nonblocking(true).and_then(|()| s.set_nodelay(true));
                return match ready {
                    Ok(()) => Ok(s),
                    Err(source) => Err(Error::Connect { port, source }),
                };
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ConnectionRefused | AddrNotAvailable | NetworkUnreachable
                ) => {}
            Err(e) => other = Some(e),
        }
    }
    match other {
        Some(source) => Err(Error::Connect { port, source }),
        None => Err(Error::Refused(port)),
    }
}

/// The pid in `/proc/<pid>/ns/net`.
fn pid_of(path: &Path) -> Option<libc::pid_t> {
    let mut parts = path.strip_prefix("/proc").ok()?.components();
    parts.next()?.as_os_str().to_str()?.parse().ok()
}

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process behind `pidfd` still runs (a pidfd becomes readable
/// when it exits). Without a pidfd, assume so.
fn alive(pidfd: Option<&OwnedFd>) -> bool {
    let Some(fd) = pidfd else { return true };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_come_from_proc_paths() {
        assert_eq!(pid_of(Path::new("/proc/123/ns/net")), Some(123));
        assert_eq!(pid_of(Path::new("/run/netns/x")), None);
    }

    #[test]
    fn a_live_process_is_alive() {
        let fd = pidfd_open(std::process::id() as i32);
        assert!(alive(fd.as_ref()));
    }

    #[tokio::test]
    async fn dials_in_our_own_namespace_and_reports_refusals() {
        // Our own netns stands in for a machine's: the thread enters it
        // (allowed only with CAP_SYS_ADMIN; skip otherwise).
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let d = Dialers::default();
        let path = PathBuf::from(format!("/proc/{}/ns/net", std::process::id()));
        let p = path.clone();
        d.dial("s", move || Some(p), vec![addr]).await.unwrap();
        assert_eq!(d.cached_path("s"), Some(path));
        // The second dial reuses the thread (the resolver is not called).
        d.dial("s", || panic!("cached"), vec![addr]).await.unwrap();
        drop(listener);
        assert!(matches!(
            d.dial("s", || None, vec![addr]).await,
            Err(Error::Refused(_))
        ));
        assert!(matches!(
            d.dial("t", || None, vec![addr]).await,
            Err(Error::NetnsGone)
        ));
    }
}
