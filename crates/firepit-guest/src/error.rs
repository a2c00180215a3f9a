//! Errors of the guest's own start-up (operation errors travel as `WireError`s).

use std::path::PathBuf;

/// Why the guest could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong.
    #[error("usage: firepit-guest --socket PATH | --listen-fd N ({0})")]
    Usage(String),
    /// The inherited listening socket cannot be used.
    #[error("the listening socket on descriptor {fd}")]
    ListenFd {
        /// The descriptor.
        fd: i32,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The socket could not be bound.
    #[error("binding {}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The guest could not be made non-dumpable.
    #[error("protecting the guest from the machine's processes")]
    Protect(#[source] std::io::Error),
    /// The `listen()` filter is installed but its answering thread could not start
    /// (every `listen()` in the machine would fail).
    #[error("starting the thread that answers listen() notifications")]
    ListenNotify(#[source] std::io::Error),
    /// The async runtime could not be built.
    #[error("starting the runtime")]
    Runtime(#[source] std::io::Error),
}
