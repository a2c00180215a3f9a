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
            Error::Connect { .. } | Error::Closed => ErrorKind::Closed,
            Error::Protocol(_) => ErrorKind::Protocol,
            Error::TooLarge { .. } => ErrorKind::InvalidInput,
        }
    }
}
