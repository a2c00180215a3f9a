//! Machines for firepit sessions: one isolated Linux machine per session.
//!
//! A machine is created from a [`MachineSpec`] by a [`Backend`]. The backend
//! trait is the seam between the daemon and an isolation technology; the
//! built-in one is [`namespaces::NamespacesBackend`] (Linux namespaces, an
//! overlayfs root over a read-only image, cgroup limits, seccomp, its own
//! network namespace behind NAT). MicroVM and Kubernetes backends implement
//! the same trait later.
//!
//! The binary that owns a backend must run the launcher when asked, before
//! it starts any threads:
//!
//! ```no_run
//! // First thing in `main`:
//! if std::env::args_os().nth(1).is_some_and(|a| a == firepit_machine::LAUNCH_ARG) {
//!     firepit_machine::launcher_main();
//! }
//! // ... then the daemon, which passes `std::env::current_exe()` as
//! // `namespaces::Config::launcher`.
//! ```
//!
//! **API Boundary:** the API is synchronous. The daemon calls it from
//! `spawn_blocking`. Code that calls clone/unshare/mount runs in a separate,
//! single-threaded launcher process (see [`launcher_main`]). Reaching a
//! machine's ports is the backend's job too ([`Backend::dial`],
//! [`Backend::listen`]): callers never learn how a backend gets there (a
//! network namespace, a vsock, a remote node), so the trait names no
//! namespace.
#![warn(missing_docs)]

mod checkpoint;
mod error;
pub mod namespaces;
mod spec;

pub use checkpoint::{Checkpoint, CheckpointId, MAX_LABEL, NewCheckpoint};
pub use error::Error;
pub use namespaces::launcher::{LAUNCH_ARG, launcher_main};
pub use spec::{Limits, MAX_LOWERS, MIN_DISK, MachineId, MachineSpec, Network};

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Whether a machine's processes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineState {
    /// Its init (the guest) runs.
    Running,
    /// No process runs; its files are kept.
    Stopped,
}

/// How the host reaches a machine's guest, and who must answer there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestAddress {
    /// A unix socket on the host (namespaces backend), in a dir only the
    /// host's root can write and the machine never sees.
    Unix {
        /// The socket.
        path: PathBuf,
        /// Host pid of the machine's init, the process that must be the
        /// socket's peer (`SO_PEERCRED`); `None` while the machine is stopped.
        pid: Option<u32>,
    },
}

/// What a backend knows about a machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineInfo {
    /// The machine's id (also its hostname).
    pub id: MachineId,
    /// Running or stopped.
    pub state: MachineState,
    /// Host pid of the machine's init, while it runs.
    pub pid: Option<u32>,
    /// The machine's address on the host bridge, if it has a network.
    pub address: Option<Ipv4Addr>,
    /// Where its guest listens.
    pub guest: GuestAddress,
}

/// Where [`Backend::dial_then`] hands its result.
pub type DialDone = Box<dyn FnOnce(Result<TcpStream, Error>) + Send>;

/// Where [`Backend::destroy_then`] hands its result.
pub type DestroyDone = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// An isolation technology that runs machines.
///
/// All methods but [`Backend::dial_then`] block; call them from a blocking
/// context.
pub trait Backend: Send + Sync + 'static {
    /// Creates a machine and starts it. A failure leaves nothing behind.
    fn create(&self, spec: &MachineSpec) -> Result<MachineInfo, Error>;
    /// Starts a stopped machine on the files it had. Starting a running
    /// machine returns its info.
    fn start(&self, id: &MachineId) -> Result<MachineInfo, Error>;
    /// Ends a machine's processes; its files are kept. Stopping a stopped
    /// machine does nothing.
    fn stop(&self, id: &MachineId) -> Result<(), Error>;
    /// Stops a machine and removes everything it had.
    fn destroy(&self, id: &MachineId) -> Result<(), Error>;
    /// [`Backend::destroy`] for a caller that must not wait, and that may
    /// destroy many machines at once: it returns at once, and `done` gets
    /// the result on a thread of the backend's. The namespaces backend runs
    /// destroys on a few threads of its own; the default runs each on a
    /// thread of its own.
    fn destroy_then(self: Arc<Self>, id: MachineId, done: DestroyDone) {
        let slot = Arc::new(Mutex::new(Some(done)));
        let take = |slot: &Mutex<Option<DestroyDone>>| {
            slot.lock().unwrap_or_else(|e| e.into_inner()).take()
        };
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("fp-destroy".into())
            .spawn(move || {
                let r = self.destroy(&id);
                if let Some(done) = take(&theirs) {
                    done(r);
                }
            });
        if let Err(e) = spawned
            && let Some(done) = take(&slot)
        {
            done(Err(Error::sys("starting a thread to destroy")(e)));
        }
    }
    /// Reports a machine's state.
    fn inspect(&self, id: &MachineId) -> Result<MachineInfo, Error>;
    /// After a restart of the owning process: finds the existing machines,
    /// adopts the running ones and cleans the leftovers of broken ones.
    fn recover(&self) -> Result<Vec<MachineInfo>, Error>;
    /// Where the machine's guest listens.
    fn guest_address(&self, id: &MachineId) -> Result<GuestAddress, Error>;
    /// Connects to the first of `addrs` that accepts, as seen from inside
    /// the running machine: `127.0.0.1` is the machine's own loopback, so a
    /// server bound there answers without a forwarder. The stream is
    /// non-blocking with `TCP_NODELAY` set, ready for an async runtime.
    /// [`Error::NotRunning`] when the machine does not run,
    /// [`Error::Refused`] when every address refused.
    fn dial(&self, id: &MachineId, addrs: &[SocketAddr]) -> Result<TcpStream, Error>;
    /// [`Backend::dial`] for a caller that must not wait (an async
    /// runtime): it returns at once, or once it has started what the
    /// backend needs to reach the machine, and `done` gets the result on a
    /// thread of the backend's. The default dials on a thread of its own.
    fn dial_then(self: Arc<Self>, id: MachineId, addrs: Vec<SocketAddr>, done: DialDone) {
        let slot = Arc::new(Mutex::new(Some(done)));
        let take =
            |slot: &Mutex<Option<DialDone>>| slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("fp-dial".into())
            .spawn(move || {
                let r = self.dial(&id, &addrs);
                if let Some(done) = take(&theirs) {
                    done(r);
                }
            });
        if let Err(e) = spawned
            && let Some(done) = take(&slot)
        {
            done(Err(Error::sys("starting a thread to dial")(e)));
        }
    }
    /// Binds `addr` inside the running machine's network, for the caller to
    /// accept on: the machine reaches it on its own address (`127.0.0.1`),
    /// and nothing listens on the host. Non-blocking. An address in use is
    /// [`Error::Net`] with `AddrInUse`.
    fn listen(&self, id: &MachineId, addr: SocketAddr) -> Result<TcpListener, Error>;

    /// Keeps the machine's files as they are now, as a checkpoint: a
    /// running machine's processes are frozen for the moment it takes.
    /// A backend without checkpoints answers [`Error::Unsupported`].
    fn checkpoint(&self, id: &MachineId, new: &NewCheckpoint) -> Result<Checkpoint, Error> {
        let _ = new;
        Err(no_checkpoints(id))
    }
    /// The machine's checkpoints, oldest first (none where the backend
    /// keeps none).
    fn checkpoints(&self, id: &MachineId) -> Result<Vec<Checkpoint>, Error> {
        let _ = id;
        Ok(Vec::new())
    }
    /// Removes one of the machine's checkpoints (machines restored from it
    /// or forked from it keep their files).
    fn remove_checkpoint(&self, id: &MachineId, checkpoint: &CheckpointId) -> Result<(), Error> {
        let _ = checkpoint;
        Err(no_checkpoints(id))
    }
    /// Returns the machine's files to a checkpoint of its own: stops it,
    /// swaps its writable layer for a copy of the checkpoint's, and starts it
    /// again if it ran. On failure the machine keeps the files it had, in the
    /// state it was in.
    fn restore(&self, id: &MachineId, checkpoint: &CheckpointId) -> Result<MachineInfo, Error> {
        let _ = checkpoint;
        Err(no_checkpoints(id))
    }
    /// Writes the machine's whole root (its image with its files over it, as
    /// of a checkpoint or now) as a new directory `dest`, owned as the image
    /// is (`uid_base + id inside`): the tree of an image made from a session.
    /// `dest` must not exist; its parent is the caller's and trusted. On
    /// failure `dest` may be left half written for the caller to remove.
    fn export(
        &self,
        id: &MachineId,
        from: Option<&CheckpointId>,
        dest: &std::path::Path,
    ) -> Result<(), Error> {
        let _ = (from, dest);
        Err(no_checkpoints(id))
    }
    /// Makes and starts a new machine `child` (the parent's spec, another
    /// id) whose files start as one of the parent's checkpoints, or as the
    /// parent's files now. A failure leaves nothing behind.
    fn fork(
        &self,
        parent: &MachineId,
        from: Option<&CheckpointId>,
        child: &MachineId,
    ) -> Result<MachineInfo, Error> {
        let _ = (from, child);
        Err(no_checkpoints(parent))
    }
    /// What the machine uses now, read when asked (no backend samples in
    /// the background): its cgroup's CPU time, memory and processes while it
    /// runs, and its writable layer's size where the backend can tell. A
    /// backend that cannot tell answers all `None`.
    fn usage(&self, id: &MachineId) -> Result<Usage, Error> {
        let _ = id;
        Ok(Usage::default())
    }
}

/// A machine's use of the host, as [`Backend::usage`] read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of its processes since it started, microseconds.
    pub cpu_usec: Option<u64>,
    /// Memory in use, bytes (page cache included, as the cgroup counts it).
    pub memory_bytes: Option<u64>,
    /// Processes and threads.
    pub pids: Option<u64>,
    /// Bytes its writable layer takes (its qgroup's referenced bytes).
    pub disk_bytes: Option<u64>,
}

fn no_checkpoints(id: &MachineId) -> Error {
    Error::Unsupported(format!("this backend keeps no checkpoints (machine {id})"))
}
