//! What the browser and test tools need from the session beyond its guest:
//! its browser, a place for artifacts, and the event log for test runs; and
//! the checkpoints the loop makes before tools that can change files; the
//! services the session keeps (the project's run command among them). The
//! daemon implements it; without hooks those tools say they are unavailable
//! and no checkpoints are made.

use std::sync::Arc;

use firepit_problems::tests::TestSummary;

/// A finished run of the project's tests.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// The command that ran.
    pub command: String,
    /// Its exit code (`None`: killed, e.g. at the time limit).
    pub exit_code: Option<i32>,
    /// What the output said.
    pub summary: TestSummary,
    /// How long it took.
    pub duration_ms: u64,
    /// The end of its output (bounded).
    pub output_tail: String,
}

/// The session's side of the browser and test tools.
pub trait SessionHooks: Send + Sync {
    /// The session's browser (started on first use by the tools).
    fn browser(&self) -> Arc<firepit_browser::Browser>;
    /// The page of the session's browser if one runs now, starting nothing
    /// (the agent asks at every step whether the page raised errors).
    fn current_page(&self) -> Option<firepit_browser::Page> {
        None
    }
    /// Stores an artifact of the session; returns its name as stored.
    fn save_artifact(
        &self,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<String, String>;
    /// Records a test run (an event, and a problem when it failed).
    fn test_ran(&self, run: &TestRun);
    /// Makes a checkpoint of the session's files named `name`; its id, or
    /// `None` where the session has none (no disk pool).
    fn checkpoint(
        &self,
        name: String,
    ) -> futures::future::BoxFuture<'static, Result<Option<String>, String>> {
        let _ = name;
        Box::pin(async { Ok(None) })
    }
    /// The spec of the session's kept service `name` (the project's run
    /// command is the one named `run`), if the session keeps one.
    fn kept_service(&self, name: &str) -> Option<firepit_guest_client::ServiceSpec> {
        let _ = name;
        None
    }
    /// A service the agent started, so the session keeps it as it keeps one
    /// a person started: it comes back when the session starts again.
    fn service_started(&self, spec: &firepit_guest_client::ServiceSpec) {
        let _ = spec;
    }
    /// A service the agent stopped: kept, but no longer started with the session.
    fn service_stopped(&self, name: &str) {
        let _ = name;
    }
}

/// The tools that can change the machine's files: a turn that calls one gets
/// a checkpoint first.
pub const CHANGE_FILES: &[&str] = &[
    "shell",
    "shell_input",
    "exec",
    "write_file",
    "edit_file",
    "service_start",
    "service_stop",
    "git_commit",
    "test",
];
