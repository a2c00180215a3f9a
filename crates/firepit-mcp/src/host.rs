//! [`Host`]: what the MCP server needs of the daemon. The daemon implements
//! it over its own state, so the server holds nothing of its own but the
//! connection's notifications.

use std::future::Future;

use firepit_agent::ToolContext;
use firepit_wire::api::{CreateSession, Session, Share};
use firepit_wire::checkpoint::Checkpoint;
use firepit_wire::events::Event;
use futures::stream::BoxStream;

/// What kind of failure a [`HostError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostErrorKind {
    /// No such session (or other named thing).
    NotFound,
    /// The request is not valid (a limit out of range, a bad image name).
    BadRequest,
    /// The session exists but its machine is not running.
    NotRunning,
    /// The request conflicts with what is there: a session whose machine
    /// cannot keep checkpoints, a name already taken.
    Conflict,
    /// Anything else: the machine, the store, the guest.
    Failed,
}

/// A failure of the daemon, with the message its API would answer (written
/// to be acted on: what was wrong and what to do).
#[derive(Debug, Clone)]
pub struct HostError {
    /// Its kind.
    pub kind: HostErrorKind,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The daemon's side of the MCP server.
pub trait Host: Send + Sync + 'static {
    /// Makes a session (as `POST /v1/sessions`).
    fn create_session(
        &self,
        req: CreateSession,
    ) -> impl Future<Output = Result<Session, HostError>> + Send;
    /// Every session.
    fn sessions(&self) -> Result<Vec<Session>, HostError>;
    /// Stops a session's machine, keeping its files.
    fn stop_session(&self, id: &str) -> impl Future<Output = Result<Session, HostError>> + Send;
    /// Starts a stopped session's machine again.
    fn start_session(&self, id: &str) -> impl Future<Output = Result<Session, HostError>> + Send;
    /// Destroys a session, its machine, files and share links.
    fn destroy_session(&self, id: &str) -> impl Future<Output = Result<(), HostError>> + Send;
    /// The tool context of a running session: the same one firepit's agent
    /// acts through (its guest, working directory, preview URLs, browser).
    fn tools(&self, id: &str) -> impl Future<Output = Result<ToolContext, HostError>> + Send;
    /// Makes a share link to one preview port of a session.
    fn share(&self, id: &str, port: u16, ttl_seconds: Option<u64>) -> Result<Share, HostError>;
    /// Events of a session's log after `since`, at most `limit`.
    fn events(&self, id: &str, since: u64, limit: usize) -> Result<Vec<Event>, HostError>;
    /// A session's events from now on, until the session goes away.
    fn follow(&self, id: &str) -> Result<BoxStream<'static, Event>, HostError>;
    /// Makes a checkpoint of a session's files (as
    /// `POST /v1/sessions/{id}/checkpoints`).
    fn checkpoint(
        &self,
        id: &str,
        name: Option<String>,
    ) -> impl Future<Output = Result<Checkpoint, HostError>> + Send;
    /// A session's checkpoints, oldest first.
    fn checkpoints(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Vec<Checkpoint>, HostError>> + Send;
    /// Returns a session's files to one of its checkpoints (as
    /// `POST /v1/sessions/{id}/checkpoints/{cp}/restore`).
    fn restore(
        &self,
        id: &str,
        checkpoint: &str,
    ) -> impl Future<Output = Result<Session, HostError>> + Send;
    /// Makes a new session from a checkpoint of a session, or from its files
    /// now (as `POST /v1/sessions/{id}/fork`).
    fn fork(
        &self,
        id: &str,
        from: Option<&str>,
    ) -> impl Future<Output = Result<Session, HostError>> + Send;
}
