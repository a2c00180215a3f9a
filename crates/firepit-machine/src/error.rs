//! The crate's error type.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong with a machine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The machine id is not short lowercase `[a-z0-9-]`.
    #[error(
        "invalid machine id {0:?}: use 1-40 characters of a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    InvalidId(String),
    /// A limit or field of the spec makes no sense.
    #[error("invalid machine spec: {0}")]
    InvalidSpec(String),
    /// A machine with this id exists already.
    #[error("machine {0} exists already")]
    Exists(String),
    /// No machine with this id exists.
    #[error("no machine {0}")]
    NotFound(String),
    /// The host lacks something the backend needs.
    #[error("host not supported: {0}")]
    Unsupported(String),
    /// A network range (`--allow-net`) is not an IPv4 range.
    #[error("invalid network range {0}")]
    InvalidNet(String),
    /// All machine addresses are in use.
    #[error("no free machine address left in the pool")]
    AddressesExhausted,
    /// Every machine uid range is in use (or blocked by `/etc/subuid`,
    /// `/etc/subgid` or this process's own id maps).
    #[error("no free uid range left for a machine")]
    UidRangesExhausted,
    /// A machine's recorded uid range is registered to another machine.
    #[error("uid range {base} is registered to another machine ({})", owner.display())]
    UidRangeTaken {
        /// The range's first id.
        base: u32,
        /// The state dir of the machine that holds it.
        owner: PathBuf,
    },
    /// The launcher process failed to start the machine.
    #[error("launching machine failed at {stage}: {message}")]
    Launch {
        /// The step that failed.
        stage: String,
        /// What the launcher reported.
        message: String,
    },
    /// A system call or file operation failed.
    #[error("{what} {}", path.as_ref().map(|p| p.display().to_string()).unwrap_or_default())]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The file it was about, if any.
        path: Option<PathBuf>,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A state file could not be read or written.
    #[error("machine state file {path}")]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A netlink request was refused.
    #[error("netlink: {what}")]
    Netlink {
        /// The request.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The firewall could not be set up.
    #[error("setting up the firewall (nft): {0}")]
    Firewall(String),
    /// The seccomp filter could not be built.
    #[error("building the seccomp filter")]
    Seccomp(#[source] seccompiler::BackendError),
    /// A checkpoint id or label is not acceptable.
    #[error("{0}")]
    InvalidCheckpoint(String),
    /// The machine has no checkpoint with this id.
    #[error("machine {machine} has no checkpoint {checkpoint}")]
    CheckpointNotFound {
        /// The machine.
        machine: String,
        /// The checkpoint asked for.
        checkpoint: String,
    },
    /// The machine has a checkpoint with this id already.
    #[error("machine {machine} has a checkpoint {checkpoint} already")]
    CheckpointExists {
        /// The machine.
        machine: String,
        /// The checkpoint.
        checkpoint: String,
    },
    /// The disk pool (or the machine's share of it), or the disk that holds
    /// a machine's copied checkpoints, has no room left.
    #[error("{what}: no space left (the disk pool, or the disk of the state dir, is full)")]
    DiskFull {
        /// What needed the room.
        what: &'static str,
    },
    /// The machine does not run, so its network is gone.
    #[error("machine {0} is not running")]
    NotRunning(String),
    /// Nothing listens on the port inside the machine: every address
    /// dialed refused the connection.
    #[error("nothing is listening on port {0} inside the machine")]
    Refused(u16),
    /// Connecting or listening inside the machine failed otherwise.
    #[error("{what} {addr} inside the machine")]
    Net {
        /// What was being done.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] about a path.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            what,
            path: Some(path),
            source,
        }
    }

    /// An [`Error::Io`] about no path.
    pub(crate) fn sys(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io {
            what,
            path: None,
            source,
        }
    }
}
