//! The crate's error: what the stdio bridge can fail at. Everything a client
//! sends wrong is answered inside the protocol, never as this.

/// What `firepit mcp` (the stdio bridge) can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading standard input or writing standard output failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token cannot be sent in a header.
    #[error("the API token has characters a header cannot carry")]
    BadToken,
    /// The HTTP client could not be made.
    #[error("could not make the HTTP client")]
    Client(#[source] reqwest::Error),
}
