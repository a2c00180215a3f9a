//! Checkpoints: a machine's files kept as they were at one moment, to return
//! to ([`crate::Backend::restore`]) or branch from ([`crate::Backend::fork`]).
//!
//! A checkpoint holds the machine's writable layer (what it changed above its
//! image), not the image, and no process state: a restored machine starts its
//! processes again. Checkpoints form a tree: each names the checkpoint the
//! machine's files came from when it was made ([`Checkpoint::parent`]), the
//! last one made or restored.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, MachineId};

/// The longest checkpoint name and `made_by` label, in characters.
pub const MAX_LABEL: usize = 200;

/// A checkpoint's id, unique among its machine's checkpoints: 1-40
/// characters of `[a-z0-9-]`, not starting or ending with `-` (it is a path
/// component, as a machine id is).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CheckpointId(String);

impl CheckpointId {
    /// Checks and wraps an id.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        match MachineId::new(id.clone()) {
            Ok(_) => Ok(Self(id)),
            Err(_) => Err(Error::InvalidCheckpoint(format!(
                "checkpoint id {id:?}: use 1-40 characters of a-z, 0-9 and '-', not starting or ending with '-'"
            ))),
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CheckpointId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<CheckpointId> for String {
    fn from(id: CheckpointId) -> String {
        id.0
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to call a new checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheckpoint {
    /// Its id (the caller chooses it, so that it can record the id before
    /// the checkpoint exists).
    pub id: CheckpointId,
    /// A name for people, if any.
    pub name: Option<String>,
    /// What made it (`user`, `agent`, …), for people and prune policies.
    pub made_by: String,
}

impl NewCheckpoint {
    /// Checks the labels: at most [`MAX_LABEL`] characters, no control characters.
    pub fn validate(&self) -> Result<(), Error> {
        let label = |what: &str, s: &str| {
            if s.chars().count() > MAX_LABEL || s.chars().any(char::is_control) {
                Err(Error::InvalidCheckpoint(format!(
                    "{what} must be at most {MAX_LABEL} characters without control characters"
                )))
            } else {
                Ok(())
            }
        };
        if let Some(n) = &self.name {
            label("checkpoint name", n)?;
        }
        label("made_by", &self.made_by)?;
        if self.made_by.is_empty() {
            return Err(Error::InvalidCheckpoint("made_by is empty".into()));
        }
        Ok(())
    }
}

/// A checkpoint as the backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Its id.
    pub id: CheckpointId,
    /// The machine it was made of.
    pub machine: MachineId,
    /// Its name, if it was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Bytes its files hold above the image (what the machine had changed).
    pub size_bytes: u64,
    /// What made it.
    pub made_by: String,
    /// The checkpoint the machine's files came from when this one was made
    /// (the last one made or restored before it); `None` for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<CheckpointId>,
    /// Whether the machine was running (and so frozen for the moment of it).
    pub running: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_labels_are_checked() {
        assert!(CheckpointId::new("cp-1").is_ok());
        for bad in ["", "-a", "a/b", "..", "A", &"x".repeat(41)] {
            assert!(CheckpointId::new(bad).is_err(), "{bad:?}");
        }
        let new = |name: Option<&str>, made_by: &str| NewCheckpoint {
            id: CheckpointId::new("c").unwrap(),
            name: name.map(str::to_owned),
            made_by: made_by.into(),
        };
        assert!(new(Some("before the migration"), "user").validate().is_ok());
        assert!(new(Some("a\nb"), "user").validate().is_err());
        assert!(
            new(Some(&"x".repeat(MAX_LABEL + 1)), "user")
                .validate()
                .is_err()
        );
        assert!(new(None, "").validate().is_err());
        let bad: Result<CheckpointId, _> = serde_json::from_str("\"../x\"");
        assert!(bad.is_err());
    }
}
