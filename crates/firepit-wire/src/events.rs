//! The session event log's types: what happened in a session, in order.
//!
//! Every event has a per-session sequence number (1, 2, 3 …) assigned when it
//! is appended to the store, before anyone sees it. Clients subscribe from a
//! cursor (`since`: the last `seq` they saw) and get every later event exactly
//! once, across reconnects and daemon restarts.

use serde::{Deserialize, Serialize};

use crate::api::SessionState;
use crate::guest::ExitStatus;

/// One event of a session's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Event {
    /// Position in the session's log, from 1, without gaps.
    pub seq: u64,
    /// The session.
    pub session: String,
    /// When it was appended, unix milliseconds.
    pub time_ms: i64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Serialised with a `type` tag next to the event's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum EventKind {
    /// The session's state changed.
    SessionState {
        /// The new state.
        state: SessionState,
        /// Why, when it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A TCP port started listening inside the machine.
    PortOpened {
        /// Port number.
        port: u16,
        /// Address it listens on inside the machine.
        addr: String,
        /// Its preview URL.
        url: String,
    },
    /// A TCP port stopped listening.
    PortClosed {
        /// Port number.
        port: u16,
        /// Address it listened on.
        addr: String,
    },
    /// A service started (or was restarted).
    ServiceStarted {
        /// Service name.
        name: String,
        /// Pid of its process inside the machine.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// A service's process exited.
    ServiceExited {
        /// Service name.
        name: String,
        /// How it ended.
        status: ExitStatus,
    },
    /// A share link for a preview port was made.
    ShareCreated {
        /// The share's id (for revoking it).
        id: String,
        /// Port it opens.
        port: u16,
        /// Unix seconds after which it no longer works.
        expires_at: i64,
    },
    /// A share link was revoked.
    ShareRevoked {
        /// The share's id.
        id: String,
    },
    /// One item of the agent's transcript: messages, tool calls and results,
    /// usage, run boundaries.
    Agent {
        /// The item.
        item: crate::agent::TranscriptItem,
    },
    /// Anything else a component wants in the log (the agent uses its own
    /// variants; this one carries free-form notes).
    Note {
        /// The text.
        text: String,
    },
    /// An error the closed loop recognised in a service's log, the browser
    /// or a test run. Repeats are folded: the same problem is logged the
    /// first time and again when `count` reaches 10, 100, 1000, ….
    Problem {
        /// `service:<name>`, `browser` or `test`.
        source: String,
        /// What it is (`python_exception`, `js_exception`, `http_5xx`, …).
        kind: String,
        /// One line.
        summary: String,
        /// The trace and its context (at most 4 KiB).
        detail: String,
        /// How often it was seen so far.
        count: u64,
    },
    /// A session artifact was made (a screenshot, say):
    /// `GET /v1/sessions/{id}/artifacts/{name}` returns it.
    Artifact {
        /// Its name.
        name: String,
        /// Its content type.
        content_type: String,
        /// Its size.
        bytes: u64,
    },
    /// The project's tests ran (the agent's `test` tool).
    TestRun {
        /// The command.
        command: String,
        /// Whether they passed.
        ok: bool,
        /// Tests passed, when the runner said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passed: Option<u64>,
        /// Tests failed.
        failed: u64,
        /// The failing tests' names (at most 50).
        #[serde(default)]
        failures: Vec<String>,
        /// The exit code (none: killed at the time limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// How long it took.
        duration_ms: u64,
        /// One line: `3 passed, 1 failed`.
        summary: String,
    },
    /// A checkpoint of the session's files was made.
    CheckpointMade {
        /// Its id.
        checkpoint: String,
        /// Its name, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// What made it (`user`, `agent`).
        made_by: String,
        /// Bytes its files hold above the image.
        size_bytes: u64,
    },
    /// A checkpoint was removed (by hand, or pruned).
    CheckpointRemoved {
        /// Its id.
        checkpoint: String,
    },
    /// The session's files were returned to a checkpoint; its processes
    /// started again.
    Restored {
        /// The checkpoint.
        checkpoint: String,
        /// The services started again with their specs.
        #[serde(default)]
        services: Vec<String>,
    },
    /// A session was forked: logged in the parent and in the new session.
    Forked {
        /// The session forked from.
        parent: String,
        /// The new session.
        child: String,
        /// The checkpoint it started from; absent: the parent's files then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkpoint: Option<String>,
    },
    /// The session's closed-loop settings changed.
    ClosedLoop {
        /// Whether a recognised problem wakes the idle agent.
        wake_agent: bool,
        /// Whether the preview's pages report their errors (absent in
        /// events older than the setting: on).
        #[serde(default = "crate::api::on")]
        preview_reports: bool,
    },
    /// Entries of directories in the machine were made, removed, renamed or
    /// written (the file watch of the machine's working directory; at most
    /// two a second).
    FilesChanged {
        /// The directories, sorted (at most 64).
        dirs: Vec<String>,
        /// More changed than `dirs` names: anything under the watched
        /// directory may have changed.
        #[serde(default)]
        overflow: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_flat_with_a_type_tag() {
        let e = Event {
            seq: 3,
            session: "abc".into(),
            time_ms: 5,
            kind: EventKind::PortOpened {
                port: 8000,
                addr: "127.0.0.1".into(),
                url: "http://x/".into(),
            },
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "port_opened");
        assert_eq!(json["seq"], 3);
        assert_eq!(json["port"], 8000);
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }
}
