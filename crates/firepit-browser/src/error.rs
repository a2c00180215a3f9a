//! The browser crate's error.

/// What went wrong driving the browser. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Dialing the DevTools port inside the machine failed.
    #[error("could not reach Chromium's DevTools port {port} in the machine")]
    Dial {
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Chromium did not start.
    #[error("Chromium did not start: {0}")]
    Launch(String),
    /// The guest refused or failed an operation.
    #[error("the machine's guest failed")]
    Guest(#[from] firepit_guest_client::Error),
    /// The DevTools HTTP endpoint answered something unexpected.
    #[error("Chromium's DevTools endpoint: {0}")]
    DevTools(String),
    /// The WebSocket to Chromium failed.
    #[error("the DevTools WebSocket failed")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The connection to the browser is gone (it crashed, was killed or stopped).
    #[error("the browser went away ({0})")]
    Closed(String),
    /// A command took too long.
    #[error("{method} did not answer within {secs}s")]
    Timeout {
        /// The CDP method.
        method: String,
        /// The limit.
        secs: u64,
    },
    /// Chromium answered a command with an error.
    #[error("{method}: {message}")]
    Protocol {
        /// The CDP method.
        method: String,
        /// Chromium's message.
        message: String,
    },
    /// The page's JavaScript threw, or an action could not be done on the page.
    #[error("{0}")]
    Page(String),
}
