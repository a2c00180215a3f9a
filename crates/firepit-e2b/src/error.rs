//! The crate's one error type and how it answers in E2B's two shapes: the
//! control plane's REST `{"code": <status>, "message"}` and envd's Connect
//! errors `{"code": "not_found", "message"}` (see [`crate::connect`]).
//!
//! The SDK turns statuses and codes into its own exceptions (404 →
//! `NotFoundException`, 401 → `AuthenticationException`, a 502 or
//! `unavailable` whose message says "was not found" →
//! `SandboxNotRunningException`, `deadline_exceeded` → `TimeoutException`),
//! so each variant picks the one that makes the SDK raise the right one.

use axum::http::StatusCode;
use firepit_wire::guest::ErrorKind;

use crate::connect::Code;

/// Everything that can go wrong serving E2B's API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such sandbox (session).
    #[error("sandbox {0:?} was not found")]
    NotFound(String),
    /// The sandbox exists but is paused (stopped).
    #[error("sandbox {0} was not found running: it is paused; resume it or Sandbox.connect to it")]
    NotRunning(String),
    /// The sandbox is in a state the operation does not fit.
    #[error("{0}")]
    Conflict(String),
    /// The request made no sense.
    #[error("{0}")]
    BadRequest(String),
    /// No API key, or not the firepit token.
    #[error("the API key is missing or wrong: give the firepit token as E2B_API_KEY")]
    Unauthorized,
    /// No access token on sandbox traffic, or not the sandbox's.
    #[error("the sandbox's access token (X-Access-Token) is missing or wrong")]
    BadAccessToken,
    /// The process, watcher or path named does not exist.
    #[error("{0}")]
    Missing(String),
    /// The request's deadline passed.
    #[error("the request's deadline passed")]
    DeadlineExceeded,
    /// What firepit does not offer.
    #[error("{0} is not supported by firepit")]
    Unsupported(&'static str),
    /// An upload is larger than the daemon accepts.
    #[error("the upload is larger than the limit of {} MiB", limit >> 20)]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// An error already classed, passed on to each client of a process.
    #[error("{message}")]
    Relayed {
        /// Its code.
        code: Code,
        /// Its message.
        message: String,
    },
    /// The guest refused or went away.
    #[error("the sandbox refused: {0}")]
    Guest(#[from] firepit_guest_client::Error),
    /// The sandbox's kept state (access token, metadata, timeout) could not be written.
    #[error("the state of sandbox {id} could not be kept")]
    State {
        /// The sandbox.
        id: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The daemon failed at what it was asked (make, stop, start, destroy a session).
    #[error("{message}")]
    Host {
        /// How the daemon classed it.
        kind: HostErrorKind,
        /// Its message, safe to send.
        message: String,
    },
}

/// How the daemon classes a failure it reports through [`crate::Host`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostErrorKind {
    /// The session or image does not exist.
    NotFound,
    /// The request was refused as malformed.
    BadRequest,
    /// The session is not running.
    NotRunning,
    /// Anything else.
    Internal,
}

impl Error {
    /// The HTTP status of this error on the control plane and on `/files`.
    pub fn status(&self) -> StatusCode {
        if let Error::Conflict(_) = self {
            return StatusCode::CONFLICT;
        }
        match self.code() {
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Unavailable => StatusCode::BAD_GATEWAY,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Connect code of this error on envd's RPCs.
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) | Error::Missing(_) => Code::NotFound,
            Error::NotRunning(_) => Code::Unavailable,
            Error::Conflict(_) => Code::FailedPrecondition,
            Error::BadRequest(_) => Code::InvalidArgument,
            Error::Unauthorized | Error::BadAccessToken => Code::Unauthenticated,
            Error::DeadlineExceeded => Code::DeadlineExceeded,
            Error::Unsupported(_) => Code::Unimplemented,
            Error::TooLarge { .. } => Code::ResourceExhausted,
            Error::Guest(e) => match e.kind() {
                ErrorKind::NotFound => Code::NotFound,
                ErrorKind::InvalidInput => Code::InvalidArgument,
                ErrorKind::PermissionDenied => Code::PermissionDenied,
                ErrorKind::AlreadyExists => Code::AlreadyExists,
                ErrorKind::NotADirectory | ErrorKind::DirectoryNotEmpty => Code::FailedPrecondition,
                ErrorKind::Unsupported => Code::Unimplemented,
                ErrorKind::Overrun => Code::Aborted,
                ErrorKind::Closed => Code::Unavailable,
                ErrorKind::Io | ErrorKind::Protocol => Code::Internal,
            },
            Error::State { .. } => Code::Internal,
            Error::Relayed { code, .. } => *code,
            Error::Host { kind, .. } => match kind {
                HostErrorKind::NotFound => Code::NotFound,
                HostErrorKind::BadRequest => Code::InvalidArgument,
                HostErrorKind::NotRunning => Code::Unavailable,
                HostErrorKind::Internal => Code::Internal,
            },
        }
    }

    /// The message sent to the client: this error and its causes, except
    /// for internal failures, which are logged and named only.
    pub fn message(&self) -> String {
        match self {
            Error::State { .. } => {
                tracing::warn!(error = %chain(self), "keeping sandbox state failed");
                self.to_string()
            }
            Error::Guest(e) if e.kind() == ErrorKind::Closed => {
                "the sandbox was not found running: its machine went away".to_owned()
            }
            _ => chain(self),
        }
    }
}

/// An error and its sources, joined by `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

impl axum::response::IntoResponse for Error {
    /// The control plane's (and `/files`') shape: `{"code": <status>, "message"}`.
    fn into_response(self) -> axum::response::Response {
        let status = self.status();
        let body = serde_json::json!({ "code": status.as_u16(), "message": self.message() });
        (status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_make_the_sdk_raise_the_right_exception() {
        assert_eq!(Error::NotFound("x".into()).status(), StatusCode::NOT_FOUND);
        assert_eq!(Error::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        // A paused sandbox's traffic: 502 whose message says "was not found".
        let e = Error::NotRunning("abc".into());
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(e.message().contains("was not found"));
        assert_eq!(Error::DeadlineExceeded.code().as_str(), "deadline_exceeded");
    }
}
