//! The client's error type.

use std::path::PathBuf;

use firepit_wire::guest::{ErrorKind, WireError};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The guest refused or failed the operation.
    #[error("{0}")]
    Guest(WireError),
    /// The socket could not be reached.
    #[error("connecting to the guest at {}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The socket answered, but not from the guest's process.
    #[error(
        "the socket at {} is served by pid {}, not by the guest (pid {expected}); not using it",
        path.display(),
        found.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    )]
    WrongPeer {
        /// The socket path.
        path: PathBuf,
        /// The guest's pid.
        expected: u32,
        /// The peer's pid, if the kernel knows it.
        found: Option<i32>,
    },
    /// The connection ended (the guest exited, the machine stopped).
    #[error("the guest connection is closed")]
    Closed,
    /// The guest said something this client does not understand, or broke the protocol
    /// (then its connection is closed).
    #[error("guest protocol error: {0}")]
    Protocol(String),
    /// What was asked for is larger than the caller's limit.
    #[error("larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
}

impl Error {
    /// The stable class of the error (for mapping onto HTTP statuses).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Guest(e) => e.kind,
            Error::Connect { .. } | Error::WrongPeer { .. } | Error::Closed => ErrorKind::Closed,
            Error::Protocol(_) => ErrorKind::Protocol,
            Error::TooLarge { .. } => ErrorKind::InvalidInput,
        }
    }
}
