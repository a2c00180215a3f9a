//! The crate's error type.

use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with OCI images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference that does not parse.
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference {
        /// What was given.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A digest that is not `sha256:` and 64 lowercase hex digits.
    #[error("invalid digest `{0}`: only sha256 digests (sha256:<64 hex digits>) are supported")]
    InvalidDigest(String),
    /// Content whose hash is not the digest it was asked for by.
    #[error("{what} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked (`blob`, `manifest`, `layer content`).
        what: &'static str,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// Content longer than its descriptor said, or than a limit allows.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// What was read.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The registry could not be reached, or the connection broke.
    #[error("{url}")]
    Http {
        /// The URL asked for.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("{url} answered {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Registry {
        /// The URL asked for.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body (the registry's error text).
        body: String,
    },
    /// The registry wants credentials that were not given, or refused them.
    #[error(
        "{registry} refused access to {repository}{}; give credentials with `--user NAME --password-stdin` or `docker login`",
        if *had_credentials { " with the credentials given" } else { "" }
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// Whether credentials were sent.
        had_credentials: bool,
    },
    /// A manifest, index or config the registry or archive sent that is not what the spec says.
    #[error("{what}: {reason}")]
    BadDocument {
        /// Which document.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A manifest list without an image for this host.
    #[error("{reference} has no image for {os}/{arch} (it has: {available})")]
    NoMatchingPlatform {
        /// The reference pulled.
        reference: String,
        /// The host's OS.
        os: String,
        /// The host's architecture (OCI naming).
        arch: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A layer whose content is refused: a path that leaves the root, a link that is not safe
    /// to make, a compression that is not supported.
    #[error("layer {layer}: {reason}")]
    BadLayer {
        /// The layer's digest.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// An archive (`docker save`, OCI layout tarball) that is not one.
    #[error("{path} is not an image archive: {reason}")]
    BadArchive {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A Dockerfile instruction that is malformed or not supported.
    #[error("Dockerfile line {line}: {reason}")]
    Dockerfile {
        /// The instruction's first line, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A build step that failed.
    #[error("Dockerfile line {line}: {reason}")]
    BuildStep {
        /// The instruction's first line, from 1.
        line: usize,
        /// What went wrong.
        reason: String,
    },
    /// An image of the store.
    #[error(transparent)]
    Image(#[from] firepit_image::Error),
    /// A file system operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::BadDocument {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Attach an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
