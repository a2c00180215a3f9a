//! Wire types of the forge routes: triage jobs (`/v1/triage`), which turn a
//! repository's open issues into pull requests while nobody watches.

use serde::{Deserialize, Serialize};

/// `POST /v1/triage`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTriage {
    /// The repository, `owner/name`.
    pub repo: String,
    /// Only issues with this label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// At most this many issues (default 10).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::whole::option"
    )]
    pub max: Option<u32>,
    /// Issues worked on at once (default 2).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::whole::option"
    )]
    pub parallel: Option<u32>,
    /// Image of the sessions (the daemon's default if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// How a triage job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriageState {
    /// Working.
    Running,
    /// Every issue has an outcome.
    Finished,
    /// The job could not list the issues (see `error`).
    Failed,
    /// The daemon stopped while it ran; issues without an outcome were not finished.
    Interrupted,
}

/// What became of one issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueOutcome {
    /// Not started yet.
    Pending,
    /// Being worked on.
    Working,
    /// A pull request was opened.
    Opened,
    /// Left alone: an open firepit pull request exists already.
    Skipped,
    /// Something failed; nothing was pushed.
    Failed,
}

/// One issue of a triage job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageIssue {
    /// Issue number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Outcome so far.
    pub outcome: IssueOutcome,
    /// The session that works on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The branch (`firepit/issue-<n>`).
    pub branch: String,
    /// The pull request opened (or the open one that made it skip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_url: Option<String>,
    /// The test command and how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<String>,
    /// What happened, in a sentence (why it failed or was skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A triage job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageJob {
    /// Job id.
    pub id: String,
    /// The request.
    pub request: CreateTriage,
    /// How it stands.
    pub state: TriageState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// Why the job failed as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The issues, in the order they were listed.
    pub issues: Vec<TriageIssue>,
}

/// One progress line of a triage job (`GET /v1/triage/{id}/progress`, NDJSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageProgress {
    /// Position in the job's progress, from 1.
    pub seq: u64,
    /// Unix milliseconds.
    pub time_ms: i64,
    /// The issue it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<u64>,
    /// What happened.
    pub text: String,
}
