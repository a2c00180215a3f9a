//! The daemon's error type and how each error answers over HTTP.
//!
//! Every handler returns `Result<_, Error>`. The response carries a status, a
//! stable `code` and a message that says what to do; internals are logged, not
//! sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use firepit_wire::api::{ApiError, ErrorBody};
use firepit_wire::guest::ErrorKind as GuestErrorKind;

/// Everything that can go wrong in the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error("the session store failed")]
    Store(#[source] rusqlite::Error),
    /// The store was written by a newer firepit.
    #[error(
        "the session store has schema version {found}, newer than this firepit knows ({known}); upgrade firepit"
    )]
    StoreTooNew {
        /// Version on disk.
        found: usize,
        /// Newest version this build knows.
        known: usize,
    },
    /// No such session.
    #[error("no session {0:?}; `firepit ls` lists sessions")]
    SessionNotFound(String),
    /// The session has no such share link.
    #[error(
        "session {session} has no share {share:?}; `GET /v1/sessions/{session}/shares` lists them"
    )]
    ShareNotFound {
        /// The session.
        session: String,
        /// The share id asked for.
        share: String,
    },
    /// The preview engine failed (its signing key).
    #[error(transparent)]
    Preview(#[from] firepit_preview::Error),
    /// The session is not running.
    #[error("session {0} is not running; start it with `firepit start {0}`")]
    SessionNotRunning(String),
    /// The request made no sense.
    #[error("{0}")]
    BadRequest(String),
    /// An upload is larger than the daemon accepts.
    #[error("the file is larger than the upload limit of {} MiB", limit >> 20)]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A JSON request body is larger than the daemon reads.
    #[error("the request body is larger than the limit of {} MiB", limit >> 20)]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// No such image.
    #[error(transparent)]
    Image(#[from] firepit_image::Error),
    /// The machine backend failed.
    #[error("the machine backend failed: {0}")]
    Machine(#[source] firepit_machine::Error),
    /// The disk pool (which enforces machines' disk limits) could not be set up.
    #[error(
        "setting up the disk pool for machines' disk limits (to run without them: `firepit up --disk-pool-size off`)"
    )]
    DiskPool(#[source] firepit_machine::Error),
    /// A session has as many artifacts as it may keep.
    #[error(
        "session {session} keeps at most {max_count} artifacts and {} MiB of them; this one would pass that, so it was not kept",
        max_bytes >> 20
    )]
    ArtifactsFull {
        /// The session.
        session: String,
        /// The most artifacts a session keeps.
        max_count: usize,
        /// The most bytes of artifacts a session keeps.
        max_bytes: u64,
    },
    /// The guest answered with an error or went away.
    #[error("{0}")]
    Guest(#[source] firepit_guest_client::Error),
    /// A command to start names a program or working directory the machine
    /// does not have. Not a 404: the session the URL names exists.
    #[error("{0}")]
    NotInMachine(#[source] firepit_guest_client::Error),
    /// No model is configured for the agent.
    #[error("{}", firepit_agent::CONFIGURE_HELP)]
    NoModel,
    /// Authentication is missing or wrong.
    #[error(
        "missing or wrong API token; use the token printed by `firepit up` (or in the data dir's `token` file)"
    )]
    Unauthorized,
    /// A browser request from another origin carried the login cookie
    /// (cross-site request forgery, or a preview reaching for the API).
    #[error(
        "refused: this request comes from {origin}, not from firepit's own page; the API takes browser requests from the firepit UI's origin only (API clients send the token as `Authorization: Bearer` and no cookie)"
    )]
    CrossSite {
        /// The origin the browser named (`null`, or what `Sec-Fetch-Site` said).
        origin: String,
    },
    /// An I/O error in the daemon itself.
    #[error("{what}")]
    Io {
        /// What the daemon was doing.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The forge (GitHub) refused or failed.
    #[error(transparent)]
    Forge(#[from] firepit_forge::Error),
    /// A memory limit larger than the host's memory.
    #[error(
        "a memory limit of {asked} bytes ({} MiB) is more than this host has ({host} bytes, {} MiB); give at most that (`GET /v1/host` says what the host has)",
        asked >> 20,
        host >> 20
    )]
    MoreThanHost {
        /// The limit asked for, bytes.
        asked: u64,
        /// The host's memory, bytes.
        host: u64,
    },
    /// No such triage job.
    #[error("no triage job {0:?}; `GET /v1/triage` lists them")]
    TriageNotFound(String),
    /// The session has no such artifact.
    #[error("session {session} has no artifact {name:?}; its `artifact` events name them")]
    ArtifactNotFound {
        /// The session.
        session: String,
        /// The name asked for.
        name: String,
    },
    /// A WebSocket route was asked without the upgrade.
    #[error(
        "{0}; this route speaks WebSocket only (send `Connection: Upgrade`, `Upgrade: websocket`)"
    )]
    WebSocketRequired(#[source] axum::extract::ws::rejection::WebSocketUpgradeRejection),
    /// `next` of the preview handshake names no preview of this firepit.
    #[error("{next:?} is not a preview URL of this firepit: previews are {pattern}…")]
    NotAPreview {
        /// The URL given.
        next: String,
        /// What this daemon's preview URLs look like.
        pattern: String,
    },
    /// Cloning a well-named repository or branch failed (a branch the
    /// repository does not have, say); the message has git's words.
    #[error("{0}")]
    CloneFailed(String),
    /// The session has no git repository to serve.
    #[error(
        "session {0} has no git repository at /workspace; make the session with --repo, or run `git init /workspace` in it"
    )]
    NoRepository(String),
    /// An image of this name exists already.
    #[error(
        "image {0:?} exists already; remove it first (`firepit image rm {0}`) or choose another name"
    )]
    ImageExists(String),
    /// The session's files cannot be checkpointed (a machine backend
    /// without checkpoints); the backend's words say why.
    #[error("{0}")]
    NoCheckpoints(#[source] firepit_machine::Error),
    /// A session keeps no more services.
    #[error(
        "a session keeps at most {limit} services; forget one first (`firepit service rm ID NAME`)"
    )]
    TooManyServices {
        /// The limit.
        limit: usize,
    },
    /// The session neither runs nor keeps a service of this name.
    #[error("session {session} has no service {name:?}; `firepit service ls {session}` lists them")]
    ServiceNotFound {
        /// The session.
        session: String,
        /// The name asked for.
        name: String,
    },
    /// The shared terminal cannot be closed.
    #[error("the shared terminal `main` cannot be closed; close the other terminals")]
    MainTerminal,
    /// A blocking task panicked or was cancelled.
    #[error("an internal task failed")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    /// The HTTP status and stable code for this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::SessionNotFound(_) => (StatusCode::NOT_FOUND, "session_not_found"),
            Error::ShareNotFound { .. } => (StatusCode::NOT_FOUND, "share_not_found"),
            Error::ArtifactNotFound { .. } => (StatusCode::NOT_FOUND, "artifact_not_found"),
            Error::SessionNotRunning(_) => (StatusCode::CONFLICT, "session_not_running"),
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            // Well formed (the document cannot know the host): a conflict
            // with what the host has.
            Error::MoreThanHost { .. } => (StatusCode::CONFLICT, "more_than_host"),
            Error::TooLarge { .. } | Error::BodyTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            Error::ArtifactsFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "artifacts_full"),
            Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::CrossSite { .. } => (StatusCode::FORBIDDEN, "cross_site"),
            Error::NoModel => (StatusCode::CONFLICT, "no_model"),
            Error::Image(e) if e.is_not_found() => (StatusCode::NOT_FOUND, "image_not_found"),
            Error::Image(firepit_image::Error::InvalidName { .. }) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Error::WebSocketRequired(_) => (StatusCode::UPGRADE_REQUIRED, "websocket_required"),
            Error::NotAPreview { .. } => (StatusCode::NOT_FOUND, "preview_not_found"),
            Error::NoRepository(_) => (StatusCode::CONFLICT, "no_repository"),
            Error::CloneFailed(_) => (StatusCode::CONFLICT, "clone_failed"),
            Error::Machine(
                firepit_machine::Error::InvalidSpec(_) | firepit_machine::Error::InvalidId(_),
            ) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Machine(firepit_machine::Error::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "machine_not_found")
            }
            Error::Machine(e) if checkpoint_status(e).is_some() => {
                checkpoint_status(e).expect("just matched")
            }
            // The API checks a request's form before it reaches the guest
            // (`api::valid`), so what the guest refuses is the machine's
            // state, not a malformed request: a 4xx other than 400. Only a
            // guest that went away or broke the protocol is the server's.
            Error::Guest(e) => match e.kind() {
                GuestErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                GuestErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
                GuestErrorKind::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
                GuestErrorKind::NotADirectory | GuestErrorKind::DirectoryNotEmpty => {
                    (StatusCode::CONFLICT, "conflict")
                }
                GuestErrorKind::InvalidInput => (StatusCode::CONFLICT, "refused"),
                GuestErrorKind::Unsupported => (StatusCode::CONFLICT, "unsupported"),
                GuestErrorKind::Io => (StatusCode::CONFLICT, "io_error"),
                // A client that fell behind a pty's output: attaching again works.
                GuestErrorKind::Overrun => (StatusCode::CONFLICT, "overrun"),
                GuestErrorKind::Protocol | GuestErrorKind::Closed => {
                    (StatusCode::BAD_GATEWAY, "guest_error")
                }
            },
            Error::NotInMachine(_) => (StatusCode::CONFLICT, "not_in_machine"),
            Error::NoCheckpoints(_) => (StatusCode::CONFLICT, "unsupported"),
            Error::ImageExists(_) => (StatusCode::CONFLICT, "image_exists"),
            Error::TooManyServices { .. } => (StatusCode::CONFLICT, "too_many_services"),
            Error::ServiceNotFound { .. } => (StatusCode::NOT_FOUND, "service_not_found"),
            Error::MainTerminal => (StatusCode::CONFLICT, "main_terminal"),
            Error::TriageNotFound(_) => (StatusCode::NOT_FOUND, "triage_not_found"),
            Error::Forge(e) => forge_status(e),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The error as the API's body type.
    pub fn to_api(&self) -> ApiError {
        let (_, code) = self.status_and_code();
        ApiError {
            code: code.to_owned(),
            message: chain(self),
        }
    }
}

impl Error {
    /// A guest error of starting a command: what it names but the machine
    /// lacks is [`Error::NotInMachine`], the rest as any guest error.
    pub fn starting(e: firepit_guest_client::Error) -> Error {
        if e.kind() == GuestErrorKind::NotFound {
            Error::NotInMachine(e)
        } else {
            Error::Guest(e)
        }
    }
}

/// The status and code of a machine error about checkpoints.
fn checkpoint_status(e: &firepit_machine::Error) -> Option<(StatusCode, &'static str)> {
    use firepit_machine::Error as M;
    Some(match e {
        M::CheckpointNotFound { .. } => (StatusCode::NOT_FOUND, "checkpoint_not_found"),
        M::CheckpointExists { .. } => (StatusCode::CONFLICT, "checkpoint_exists"),
        M::InvalidCheckpoint(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        M::DiskFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
        _ => return None,
    })
}

/// The status and code of a forge error.
fn forge_status(e: &firepit_forge::Error) -> (StatusCode, &'static str) {
    use firepit_forge::Error as F;
    match e {
        F::NoToken => (StatusCode::CONFLICT, "no_forge_token"),
        F::BadRepoName(_) | F::BadUrl(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        F::NotAllowed { .. } => (StatusCode::FORBIDDEN, "repo_not_allowed"),
        F::NotFound { .. } => (StatusCode::NOT_FOUND, "repo_not_found"),
        F::MissingScope { .. } => (StatusCode::FORBIDDEN, "forge_missing_scope"),
        F::BadToken => (StatusCode::BAD_GATEWAY, "forge_bad_token"),
        F::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "forge_rate_limited"),
        F::Refused { .. } => (StatusCode::BAD_GATEWAY, "forge_refused"),
        F::Transport { .. } => (StatusCode::BAD_GATEWAY, "forge_unreachable"),
    }
}

/// The error and its causes, one sentence after another.
pub use firepit_util::chain;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %chain(&self), "request failed");
        }
        let mut resp = (
            status,
            Json(ErrorBody {
                error: self.to_api(),
            }),
        )
            .into_response();
        if let Error::WebSocketRequired(_) = self {
            resp.headers_mut().insert(
                axum::http::header::UPGRADE,
                axum::http::HeaderValue::from_static("websocket"),
            );
        }
        resp
    }
}
