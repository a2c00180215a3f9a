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
//! Answers go to a callback on the namespace's thread
//! ([`Backend::dial_then`](crate::Backend::dial_then)), so an async caller
//! waits on a channel of its own without a blocking thread in between; the
//! blocking calls wait on such a channel.
//!
//! The thread holds the machine's init as a pidfd and checks it before every
//! job; it sleeps on its job queue and wakes for nothing else, so an idle
//! machine costs the host no wake-ups. It ends when its queue closes: the
//! backend forgets a machine's thread when it stops the machine
//! ([`Threads::forget`]), and a caller that finds the cached thread's init
//! gone drops it (a machine that ended on its own), letting the namespace go.
//! Callers check the same pidfd before they hand a job to a cached thread, so
//! the first job after a restart finds the machine's namespace anew (a
//! restarted machine has a new init).

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

/// A machine's init: its pid and start time (which tells it from a later
/// process that reuses the pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Init {
    pub(crate) pid: i32,
    pub(crate) start_time: u64,
}

/// Where a job's answer goes (called on the namespace's thread).
pub(crate) type Reply<T> = Box<dyn FnOnce(Result<T, Error>) + Send>;

/// What a namespace thread is asked to do.
enum Job {
    Connect {
        addrs: Vec<SocketAddr>,
        reply: Reply<TcpStream>,
    },
    Listen {
        addr: SocketAddr,
        reply: Reply<TcpListener>,
    },
}

impl Job {
    /// Answers that the machine is gone.
    fn gone(self, id: &MachineId) {
        let e = || Error::NotRunning(id.to_string());
        match self {
            Job::Connect { reply, .. } => reply(Err(e())),
            Job::Listen { reply, .. } => reply(Err(e())),
        }
    }
}

/// A running machine's thread: its job queue, and its machine's init.
struct Entry {
    jobs: mpsc::Sender<Job>,
    pidfd: Arc<OwnedFd>,
}

/// The namespace threads of running machines, by machine.
#[derive(Default)]
pub(crate) struct Threads {
    by_machine: Mutex<HashMap<MachineId, Entry>>,
}

impl Threads {
    /// Connects to the first of `addrs` that accepts, from inside machine
    /// `id`'s network namespace, and hands the result to `done` on the
    /// namespace's thread. `init` finds the machine's running init when no
    /// live thread is cached (`None`: the machine does not run). Waits for
    /// nothing but, the first time, the thread's start.
    pub(crate) fn dial_then(
        &self,
        id: &MachineId,
        init: impl Fn() -> Option<Init>,
        addrs: Vec<SocketAddr>,
        done: Reply<TcpStream>,
    ) {
        self.send(id, init, Job::Connect { addrs, reply: done });
    }

    /// [`Threads::dial_then`], waiting for the result.
    pub(crate) fn dial(
        &self,
        id: &MachineId,
        init: impl Fn() -> Option<Init>,
        addrs: &[SocketAddr],
    ) -> Result<TcpStream, Error> {
        wait(id, |reply| self.dial_then(id, init, addrs.to_vec(), reply))
    }

    /// Binds `addr` inside machine `id`'s network namespace. Blocks.
    pub(crate) fn listen(
        &self,
        id: &MachineId,
        init: impl Fn() -> Option<Init>,
        addr: SocketAddr,
    ) -> Result<TcpListener, Error> {
        wait(id, |reply| self.send(id, init, Job::Listen { addr, reply }))
    }

    /// Ends `id`'s thread, if it has one (its machine stopped): its queue
    /// closes, so it ends once the jobs already queued are answered.
    pub(crate) fn forget(&self, id: &MachineId) {
        let entry = self
            .by_machine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        drop(entry);
    }

    /// How many machines have a thread (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_machine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Hands `job` to `id`'s thread, or answers it when there is none.
    fn send(&self, id: &MachineId, init: impl Fn() -> Option<Init>, job: Job) {
        match self.jobs_for(id, &init) {
            Ok(jobs) => {
                if let Err(mpsc::SendError(job)) = jobs.send(job) {
                    job.gone(id);
                }
            }
            Err(e) => match job {
                Job::Connect { reply, .. } => reply(Err(e)),
                Job::Listen { reply, .. } => reply(Err(e)),
            },
        }
    }

    /// The job queue of `id`'s thread: the cached one while its machine's
    /// init lives (a stopped or restarted machine gets a new thread), else a
    /// new one.
    fn jobs_for(
        &self,
        id: &MachineId,
        init: &impl Fn() -> Option<Init>,
    ) -> Result<mpsc::Sender<Job>, Error> {
        {
            let mut map = self.by_machine.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(id) {
                Some(e) if alive(&e.pidfd) => return Ok(e.jobs.clone()),
                Some(_) => drop(map.remove(id)),
                None => {}
            }
        }
        let init = init().ok_or_else(|| Error::NotRunning(id.to_string()))?;
        let entry = start(id, init)?;
        let jobs = entry.jobs.clone();
        self.by_machine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), entry);
        Ok(jobs)
    }
}

/// Runs `send` with a reply that it waits for.
fn wait<T: Send + 'static>(id: &MachineId, send: impl FnOnce(Reply<T>)) -> Result<T, Error> {
    let (tx, rx) = mpsc::sync_channel(1);
    send(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv()
        .unwrap_or_else(|_| Err(Error::NotRunning(id.to_string())))
}

/// Starts the thread for `init`'s network namespace; returns once it has
/// entered it.
fn start(id: &MachineId, init: Init) -> Result<Entry, Error> {
    let gone = || Error::NotRunning(id.to_string());
    // The pidfd first: while it shows the process alive with the start time
    // it had, the pid is that process's, and so is the namespace opened here.
    let pidfd = Arc::new(pidfd_open(init.pid).ok_or_else(gone)?);
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
    let held = pidfd.clone();
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
            serve(&machine, &held, &rx);
        })
        .map_err(Error::sys("starting a network namespace thread"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Entry { jobs, pidfd }),
        Ok(Err(e)) => Err(Error::io("entering the machine's network namespace", path)(
            e,
        )),
        Err(_) => Err(gone()),
    }
}

/// The thread's loop, inside the namespace: sleeps until a job comes or
/// the queue closes.
fn serve(id: &MachineId, pidfd: &OwnedFd, jobs: &mpsc::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        match job {
            job if !alive(pidfd) => return job.gone(id),
            Job::Connect { addrs, reply } => reply(connect_any(&addrs)),
            Job::Listen { addr, reply } => reply(bind(addr)),
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
    fn a_machine_whose_init_ended_gets_a_new_thread() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        // Children share our netns and stand in for a machine's init, one
        // before a restart and one after.
        let init_of = |c: &std::process::Child| {
            let pid = c.id() as i32;
            Init {
                pid,
                start_time: procfs::start_time(pid).unwrap(),
            }
        };
        let mut first = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let id = MachineId::new("restarted").unwrap();
        let t = Threads::default();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = [l.local_addr().unwrap()];
        let a = init_of(&first);
        t.dial(&id, || Some(a), &addr).unwrap();
        first.kill().unwrap();
        first.wait().unwrap();
        let mut second = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let b = init_of(&second);
        t.dial(&id, || Some(b), &addr).unwrap();
        // Stopped: no init, no dial.
        second.kill().unwrap();
        second.wait().unwrap();
        assert!(matches!(
            t.dial(&id, || None, &addr),
            Err(Error::NotRunning(_))
        ));
        assert_eq!(t.len(), 0, "the dead machine's thread was kept");
    }

    #[test]
    fn a_forgotten_machine_has_no_thread() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let id = MachineId::new("forgotten").unwrap();
        let t = Threads::default();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = [l.local_addr().unwrap()];
        t.dial(&id, own, &addr).unwrap();
        assert_eq!(t.len(), 1);
        t.forget(&id);
        assert_eq!(t.len(), 0);
        // The next job starts a new thread.
        t.dial(&id, own, &addr).unwrap();
        assert_eq!(t.len(), 1);
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
        // Without waiting: the answer comes to the callback.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (tx, rx) = mpsc::channel();
        t.dial_then(
            &id,
            || panic!("the thread is cached"),
            vec![l.local_addr().unwrap()],
            Box::new(move |r| tx.send(r.is_ok()).unwrap()),
        );
        assert!(rx.recv().unwrap());
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
