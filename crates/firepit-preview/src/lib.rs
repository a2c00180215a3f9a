//! The preview proxy engine: `http://<port>-<session>.<domain>/` reaches a
//! port listening inside a session's machine.
//!
//! - [`host`]: which Host headers are preview hosts, and which are refused.
//! - [`token`]: HMAC-SHA256 signed tokens (auth tickets, owner cookies, share
//!   links) with an expiry.
//! - [`dial`]: opens the upstream socket *inside* a machine's network
//!   namespace, from one long-lived thread per namespace, so servers bound to
//!   the machine's 127.0.0.1 answer without a forwarder.
//! - [`proxy`]: forwards one HTTP/1.1 request (streamed bodies both ways,
//!   `Upgrade`/WebSocket spliced after a 101), rewriting headers on the way.
//! - [`fast`]: the fast path for plain requests: heads parsed in place and
//!   forwarded as bytes, everything else handed to [`proxy`].
//! - [`pages`]: the HTML pages a browser gets when something is wrong.
//!
//! The crate knows nothing of the daemon: who may see which preview, and
//! which sessions exist, are the daemon's to decide.

#![warn(missing_docs)]

pub mod dial;
pub mod fast;
pub mod host;
pub mod pages;
pub mod proxy;
pub mod token;

pub use crate::dial::Dialers;
pub use crate::host::{HostKind, PreviewHost};
pub use crate::proxy::Body;
pub use crate::token::{Claims, Kind, Signer};

/// Everything that can go wrong in the preview engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the signing key failed.
    #[error("{what}")]
    Key {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A token is not one this firepit made, or is damaged.
    #[error("the link or cookie is not valid (forged or damaged)")]
    BadToken,
    /// A token was valid but has expired.
    #[error("the link or cookie has expired")]
    Expired,
    /// The machine's network namespace is gone (the machine stopped).
    #[error("the machine's network is gone; is the session running?")]
    NetnsGone,
    /// Entering the machine's network namespace failed.
    #[error("entering the machine's network namespace {path}")]
    Netns {
        /// The namespace's path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Nothing listens on the port (every address refused the connection).
    #[error("nothing is listening on port {0}")]
    Refused(u16),
    /// Connecting to the upstream failed otherwise.
    #[error("connecting to port {port} inside the machine")]
    Connect {
        /// The port.
        port: u16,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The upstream HTTP exchange failed.
    #[error("the app's server failed to answer")]
    Upstream(#[source] hyper::Error),
}
