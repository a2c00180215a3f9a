//! firepit-guest: the process that runs as PID 1 inside every firepit machine.
//!
//! It serves the guest protocol ([`firepit_wire::guest`]) on any byte stream
//! ([`serve_connection`]), reaps orphans ([`process`]), and owns the machine's ptys,
//! execs, files, port watching (told of every `listen()` by [`listen_notify`]) and
//! services. The binary (`main.rs`) adds the PID 1 duties: environment, signals,
//! the `listen()` filter, shutdown.
#![warn(missing_docs)]

pub mod conn;
mod error;
pub mod exec;
pub mod files;
pub mod image_config;
pub mod listen_notify;
pub mod ops;
pub mod ports;
pub mod process;
pub mod pty;
pub mod run_as;
pub mod services;
pub mod watch;

use std::sync::Arc;
use std::time::Instant;

use firepit_wire::guest::{GuestInfo, PROTOCOL_VERSION};
use tokio::net::UnixListener;

pub use conn::serve_connection;
pub use error::Error;

/// State shared by every connection of one guest.
pub struct Guest {
    started: Instant,
    /// The pty sessions.
    pub ptys: pty::Ptys,
    /// The supervised services.
    pub services: services::Services,
}

impl Guest {
    /// A guest with no ptys and no services yet.
    pub fn new() -> Arc<Guest> {
        Arc::new(Guest {
            started: Instant::now(),
            ptys: pty::Ptys::default(),
            services: services::Services::default(),
        })
    }

    /// What `info` answers.
    pub fn info(&self) -> GuestInfo {
        GuestInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, serving each in a task.
pub async fn serve(listener: UnixListener, guest: Arc<Guest>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            conn = listener.accept() => {
                if let Ok((stream, _)) = conn {
                    tokio::spawn(serve_connection(stream, guest.clone()));
                }
            }
        }
    }
}
