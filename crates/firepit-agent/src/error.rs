//! The crate's one error type.

use std::time::Duration;

/// Why a model call or an agent run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 401/403: the key is wrong, expired or lacks access.
    #[error("the API key was refused by {provider} (HTTP {status}); check {key_var}")]
    Auth {
        /// The provider's name.
        provider: &'static str,
        /// The HTTP status.
        status: u16,
        /// The environment variable that holds the key.
        key_var: &'static str,
    },
    /// 404 or a "model not found" answer.
    #[error(
        "{provider} does not know the model {model:?} (HTTP {status}: {message}); set FIREPIT_MODEL to a model it serves"
    )]
    UnknownModel {
        /// The provider's name.
        provider: &'static str,
        /// The model asked for.
        model: String,
        /// The HTTP status.
        status: u16,
        /// What the provider said.
        message: String,
    },
    /// Any other refusal (400, or a retryable status after the last try).
    #[error("{provider} answered HTTP {status} after {tries} tries: {message}")]
    Http {
        /// The provider's name.
        provider: &'static str,
        /// The HTTP status.
        status: u16,
        /// How many requests were made.
        tries: u32,
        /// What the provider said.
        message: String,
    },
    /// The provider could not be reached (after the last try).
    #[error("could not reach {provider} at {url} after {tries} tries")]
    Connect {
        /// The provider's name.
        provider: &'static str,
        /// The URL.
        url: String,
        /// How many requests were made.
        tries: u32,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The provider sent nothing for too long (before answering or mid-stream).
    #[error("{provider} sent nothing for {}s; gave up on the response", .idle.as_secs_f32())]
    Idle {
        /// The provider's name.
        provider: &'static str,
        /// The idle limit.
        idle: Duration,
    },
    /// The stream ended before the message was complete.
    #[error("{provider} ended the stream before the message was complete")]
    Truncated {
        /// The provider's name.
        provider: &'static str,
    },
    /// Reading the stream failed half-way.
    #[error("reading the stream from {provider} failed")]
    Stream {
        /// The provider's name.
        provider: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The provider reported an error inside the stream.
    #[error("{provider} reported an error: {message}")]
    Provider {
        /// The provider's name.
        provider: &'static str,
        /// What it said.
        message: String,
    },
    /// The stream did not follow the protocol.
    #[error("malformed stream from {provider}: {message}")]
    Protocol {
        /// The provider's name.
        provider: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The run was stopped.
    #[error("stopped by the user")]
    Cancelled,
    /// An operation on the machine failed.
    #[error("the machine's guest failed")]
    Guest(#[from] firepit_guest_client::Error),
}
