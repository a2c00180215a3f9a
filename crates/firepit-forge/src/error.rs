//! The forge's errors. Messages never carry the token: whatever text comes
//! from the forge passes through [`crate::redact`] first.

/// What can go wrong talking to the forge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No token is configured.
    #[error("{}", crate::config::CONFIGURE_HELP)]
    NoToken,
    /// A repository name is not `owner/name`.
    #[error("{0:?} is not a repository name; give it as owner/name")]
    BadRepoName(String),
    /// A base URL is not an http(s) URL.
    #[error("{0:?} is not an http(s) URL")]
    BadUrl(String),
    /// The daemon's allow list does not name the repository.
    #[error("the repository {repo} is not allowed here (FIREPIT_GITHUB_ALLOW: {allowed})")]
    NotAllowed {
        /// The repository asked for.
        repo: String,
        /// The allow list.
        allowed: String,
    },
    /// The forge refused the token.
    #[error("the forge refused the GitHub token (401): it is wrong, expired or revoked")]
    BadToken,
    /// The token lacks a scope the request needs.
    #[error(
        "the GitHub token lacks the scope {needed:?} needed to {what} (it has: {have}); give it that scope"
    )]
    MissingScope {
        /// What firepit was doing.
        what: String,
        /// Scopes the forge said the request accepts.
        needed: String,
        /// Scopes the token has.
        have: String,
    },
    /// Not there, or not visible to the token.
    #[error("{what}: not found, or the GitHub token cannot see it")]
    NotFound {
        /// What firepit was looking for.
        what: String,
    },
    /// The forge's rate limit held for longer than firepit waits.
    #[error(
        "GitHub's rate limit: {what} may be retried in {retry_after_secs} s, longer than firepit waits; try again later"
    )]
    RateLimited {
        /// What firepit was doing.
        what: String,
        /// Seconds the forge asked to wait.
        retry_after_secs: u64,
    },
    /// The forge refused the request (validation and the like).
    #[error("{what}: the forge answered {status}: {message}")]
    Refused {
        /// What firepit was doing.
        what: String,
        /// HTTP status.
        status: u16,
        /// The forge's message (redacted).
        message: String,
    },
    /// The forge could not be reached or answered nonsense.
    #[error("{what}: {message}")]
    Transport {
        /// What firepit was doing.
        what: String,
        /// The cause (redacted).
        message: String,
    },
}

impl Error {
    /// Whether the forge said the thing does not exist (or is hidden).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}
