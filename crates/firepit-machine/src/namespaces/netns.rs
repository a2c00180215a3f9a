//! Reaching into a machine's network namespace: dialing and listening there
//! ([`Backend::dial`](crate::Backend::dial), [`Backend::listen`](crate::Backend::listen)).
//!
//! Each running machine gets one long-lived thread that entered its network
//! namespace once with `setns(CLONE_NEWNET)`; it makes sockets there (connects
//! them, or binds listeners) and hands them back. A socket stays in the
//! namespace it was made in, so a server bound to the machine's 127.0.0.1
//! answers the daemon, and a listener the daemon accepts on is reached by the
//! machine on its own loopback; nothing is forwarded or published on the
//! host. A dial costs a channel round trip and a loopback `connect()`, no
//! thread spawn and no `setns`.
//!
//! The thread holds the machine's init as a pidfd and checks it before every
//! job and every two seconds while idle: once the init is gone (the machine
//! stopped) the thread ends, letting the namespace go, and the next job finds
//! the machine's namespace anew (a restarted machine has a new init).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::procfs;
use crate::{Error, MachineId};

/// How long one `connect()` inside a machine may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle thread checks that its machine still runs.
const IDLE_CHECK: Duration = Duration::from_secs(2);

/// A machine's init: its pid and start time (which tells it from a later
/// process that reuses the pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Init {
    pub(crate) pid: i32,
    pub(crate) start_time: u64,
}

/// What a namespace thread is asked to do.
enum Job {
    Connect {
        addrs: Vec<SocketAddr>,
        reply: mpsc::SyncSender<Result<TcpStream, Error>>,
    },
    Listen {
        addr: SocketAddr,
        reply: mpsc::SyncSender<Result<TcpListener, Error>>,
    },
}

impl Job {
    /// Answers that the machine is gone.
    fn gone(self, id: &MachineId) {
        let e = || Error::NotRunning(id.to_string());
        match self {
            Job::Connect { reply, .. } => drop(reply.send(Err(e()))),
            Job::Listen { reply, .. } => drop(reply.send(Err(e()))),
        }
    }
}

/// The namespace threads of running machines, by machine.
#[derive(Default)]
pub(crate) struct Threads {
    by_machine: Mutex<HashMap<MachineId, Arc<mpsc::Sender<Job>>>>,
}

impl Threads {
    /// Connects to the first of `addrs` that accepts, from inside machine
    /// `id`'s network namespace. `init` finds the machine's running init when
    /// no live thread is cached (`None`: the machine does not run). Blocks.
    pub(crate) fn dial(
        &self,
        id: &MachineId,
        init: impl Fn() -> Option<Init>,
        addrs: &[SocketAddr],
    ) -> Result<TcpStream, Error> {
        self.run(id, init, |reply| Job::Connect {
            addrs: addrs.to_vec(),
            reply,
        })
    }

    /// Binds `addr` inside machine `id`'s network namespace. Blocks.
    pub(crate) fn listen(
        &self,
        id: &MachineId,
        init: impl Fn() -> Option<Init>,
        addr: SocketAddr,
    ) -> Result<TcpListener, Error> {
        self.run(id, init, |reply| Job::Listen { addr, reply })
    }

    /// Hands a job to `id`'s thread and waits for its answer; once more on
    /// a new thread when the cached one found its machine gone (it may have
    /// been restarted).
    fn run<T>(
        &self,
        id: &MachineId,
        init: impl Fn() -> Option<Init>,
        job: impl Fn(mpsc::SyncSender<Result<T, Error>>) -> Job,
    ) -> Result<T, Error> {
        for _ in 0..2 {
            let jobs = self.jobs_for(id, &init)?;
            let (reply, answer) = mpsc::sync_channel(1);
            if jobs.send(job(reply)).is_err() {
                self.forget(id, &jobs);
                continue;
            }
            match answer.recv() {
                Ok(Err(Error::NotRunning(_))) | Err(_) => self.forget(id, &jobs),
                Ok(r) => return r,
            }
        }
        Err(Error::NotRunning(id.to_string()))
    }

    /// Drops `id`'s cached thread if it is still `jobs` (its thread ends when
    /// idle).
    fn forget(&self, id: &MachineId, jobs: &Arc<mpsc::Sender<Job>>) {
        let mut map = self.by_machine.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(id).is_some_and(|j| Arc::ptr_eq(j, jobs)) {
            map.remove(id);
        }
    }

    /// The job queue of `id`'s thread, starting one if none is cached.
    fn jobs_for(
        &self,
        id: &MachineId,
        init: &impl Fn() -> Option<Init>,
    ) -> Result<Arc<mpsc::Sender<Job>>, Error> {
        if let Some(jobs) = self
            .by_machine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(jobs.clone());
        }
        let init = init().ok_or_else(|| Error::NotRunning(id.to_string()))?;
        let jobs = Arc::new(start(id, init)?);
        self.by_machine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), jobs.clone());
        Ok(jobs)
    }
}

/// Starts the thread for `init`'s network namespace; returns once it has
/// entered it.
fn start(id: &MachineId, init: Init) -> Result<mpsc::Sender<Job>, Error> {
    let gone = || Error::NotRunning(id.to_string());
    // The pidfd first: while it shows the process alive with the start time
    // it had, the pid is that process's, and so is the namespace opened here.
    let pidfd = pidfd_open(init.pid).ok_or_else(gone)?;
    let path = PathBuf::from(format!("/proc/{}/ns/net", init.pid));
    let ns = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(gone()),
        Err(e) => {
            return Err(Error::io("opening the machine's network namespace", path)(
                e,
            ));
        }
    };
    if !alive(&pidfd) || procfs::start_time(init.pid) != Some(init.start_time) {
        return Err(gone());
    }
    let (jobs, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let machine = id.clone();
    std::thread::Builder::new()
        .name(format!("fp-net-{id}"))
        .spawn(move || {
            // SAFETY: setns on this thread only, with a valid namespace fd;
            // the thread never leaves the namespace and runs nothing but
            // the jobs below.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if r != 0 {
                let _ = ready_tx.send(Err(io::Error::last_os_error()));
                return;
            }
            drop(ns);
            let _ = ready_tx.send(Ok(()));
            serve(&machine, &pidfd, &rx);
        })
        .map_err(Error::sys("starting a network namespace thread"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(jobs),
        Ok(Err(e)) => Err(Error::io("entering the machine's network namespace", path)(
            e,
        )),
        Err(_) => Err(gone()),
    }
}

/// The thread's loop, inside the namespace.
fn serve(id: &MachineId, pidfd: &OwnedFd, jobs: &mpsc::Receiver<Job>) {
    loop {
        match jobs.recv_timeout(IDLE_CHECK) {
            Ok(job) if !alive(pidfd) => return job.gone(id),
            Ok(Job::Connect { addrs, reply }) => drop(reply.send(connect_any(&addrs))),
            Ok(Job::Listen { addr, reply }) => drop(reply.send(bind(addr))),
            Err(mpsc::RecvTimeoutError::Timeout) if alive(pidfd) => {}
            Err(_) => return,
        }
    }
}

/// Connects to the first address that accepts; non-blocking, no delay.
fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, Error> {
    use io::ErrorKind::{AddrNotAvailable, ConnectionRefused, NetworkUnreachable};
    let port = addrs.first().map_or(0, SocketAddr::port);
    let mut other = None;
    for &addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                return s
                    .set_nonblocking(true)
                    .and_then(|()| s.set_nodelay(true))
                    .map(|()| s)
                    .map_err(|source| Error::Net {
                        what: "connecting to",
                        addr,
                        source,
                    });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ConnectionRefused | AddrNotAvailable | NetworkUnreachable
                ) => {}
            Err(source) => {
                other = Some(Error::Net {
                    what: "connecting to",
                    addr,
                    source,
                });
            }
        }
    }
    Err(other.unwrap_or(Error::Refused(port)))
}

/// Binds a non-blocking listener.
fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| Error::Net {
            what: "listening on",
            addr,
            source,
        })
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process behind `pidfd` still runs (a pidfd becomes readable
/// when it exits).
fn alive(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
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

    fn own() -> Option<Init> {
        let pid = std::process::id() as i32;
        Some(Init {
            pid,
            start_time: procfs::start_time(pid)?,
        })
    }

    #[test]
    fn a_live_process_is_alive() {
        let fd = pidfd_open(std::process::id() as i32).unwrap();
        assert!(alive(&fd));
    }

    #[test]
    fn dials_and_listens_in_our_own_namespace() {
        // Our own netns stands in for a machine's: the thread enters it
        // (allowed only with CAP_SYS_ADMIN; skip otherwise).
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let id = MachineId::new("self").unwrap();
        let t = Threads::default();
        let l = t.listen(&id, own, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        t.dial(&id, || panic!("the thread is cached"), &[addr])
            .unwrap();
        drop(l);
        assert!(matches!(
            t.dial(&id, || None, &[addr]),
            Err(Error::Refused(p)) if p == addr.port()
        ));
        // A listener on a taken address says so.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = t.listen(&id, || None, taken.local_addr().unwrap());
        assert!(
            matches!(&e, Err(Error::Net { source, .. }) if source.kind() == io::ErrorKind::AddrInUse),
            "{e:?}"
        );
        let other = MachineId::new("other").unwrap();
        assert!(matches!(
            t.dial(&other, || None, &[addr]),
            Err(Error::NotRunning(_))
        ));
        // An init that is not the process it claims to be is not entered.
        let stale = Init {
            pid: std::process::id() as i32,
            start_time: 1,
        };
        assert!(matches!(
            t.dial(&other, || Some(stale), &[addr]),
            Err(Error::NotRunning(_))
        ));
    }
}
