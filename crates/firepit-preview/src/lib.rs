//! The preview proxy engine: `http://<port>-<session>.<domain>/` reaches a
//! port listening inside a session's machine.
//!
//! - [`host`]: which Host headers are preview hosts, and which are refused.
//! - [`token`]: HMAC-SHA256 signed tokens (auth tickets, owner cookies, share
//!   links) with an expiry.
//! - [`rules`]: what a request and its response lose, keep and gain on the
//!   way (hop-by-hop headers, firepit's cookies and token, `X-Forwarded-*`,
//!   `Set-Cookie`s an app may not send, `frame-ancestors`), written once and
//!   applied by both paths.
//! - [`pool`]: upstream connections kept alive between requests, one pool
//!   for both paths.
//! - [`fast`]: the fast path for plain requests: heads parsed in place and
//!   forwarded as bytes, everything else handed to [`proxy`].
//! - [`proxy`]: the full path, on hyper: any HTTP/1.1 request (streamed
//!   bodies both ways, `Upgrade`/WebSocket spliced after a 101).
//! - [`pages`]: the HTML pages a browser gets when something is wrong.
//! - [`report`]: the script that reports a page's errors back to the
//!   daemon, and how it goes into the app's HTML pages.
//! - [`frame`]: the page the UI frames a preview through, which tells the UI
//!   where the app is and takes back and forward.
//!
//! The crate knows nothing of the daemon nor of machines: who may see which
//! preview and which sessions exist are the daemon's to decide, and both
//! paths reach a machine's port through a dial function the daemon gives
//! them (the machine backend's `dial`).

#![warn(missing_docs)]

pub mod fast;
pub mod frame;
pub mod host;
pub mod pages;
pub mod pool;
pub mod proxy;
pub mod report;
pub mod rules;
pub mod token;

pub use crate::host::{HostKind, PreviewHost};
pub use crate::pool::Pool;
pub use crate::proxy::Body;
pub use crate::token::{Claims, Kind, Signer};

/// Where an admitted preview request goes, and what its answers may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The session.
    pub session: String,
    /// The port inside its machine.
    pub port: u16,
    /// The origin allowed to frame the response (`http://localhost:7777`).
    pub frame_ancestor: String,
    /// The preview's host name (`8000-abc.localhost`): the only `Domain` a
    /// cookie the app sets may name.
    pub cookie_host: String,
}

impl Route {
    /// The rules' view of a request on this route from `client`, with
    /// firepit's cookie names and API token.
    pub fn policy<'a>(
        &'a self,
        client: std::net::IpAddr,
        private_cookies: &'a [&'a str],
        api_token: &'a str,
    ) -> rules::Policy<'a> {
        rules::Policy {
            client,
            frame_ancestor: &self.frame_ancestor,
            cookie_host: &self.cookie_host,
            private_cookies,
            api_token,
        }
    }
}

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
    /// The machine does not run (it stopped, or was never started).
    #[error("the machine does not run; is the session running?")]
    NotRunning,
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
