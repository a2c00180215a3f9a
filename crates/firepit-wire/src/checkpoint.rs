//! Checkpoints of a session's files, restore and fork (`/v1/sessions/{id}/checkpoints`,
//! `/v1/sessions/{id}/fork`, `/v1/sessions/{id}/image`).

use serde::{Deserialize, Serialize};

/// `POST /v1/sessions/{id}/checkpoints`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct CreateCheckpoint {
    /// A name for people (at most 200 characters, no control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A checkpoint: the session's files as they were at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Checkpoint {
    /// Its id (`cp-…`), unique in the session.
    pub id: String,
    /// The session it is of.
    pub session: String,
    /// Its name, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was made, unix milliseconds.
    pub created_at_ms: u64,
    /// Bytes its files hold above the image.
    pub size_bytes: u64,
    /// What made it: `user` (the API or CLI) or `agent` (before a step that
    /// can change files).
    pub made_by: String,
    /// The checkpoint the session's files came from when it was made (the
    /// last one made or restored before it): checkpoints form a tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Whether the machine was running (its processes frozen for the moment).
    pub running: bool,
}

/// `POST /v1/sessions/{id}/fork`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ForkSession {
    /// The checkpoint to start from; absent: the session's files now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// `POST /v1/sessions/{id}/image`: an image made of the session's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SaveImage {
    /// The new image's name (an image of that name must not exist).
    pub name: String,
    /// The checkpoint to make it of; absent: the session's files now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}
