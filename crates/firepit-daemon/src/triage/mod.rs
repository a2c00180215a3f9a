//! Triage jobs: a repository's open issues turned into pull requests, in the
//! daemon, so the work goes on while the person's laptop is closed.
//!
//! A job lists the open issues (with a label, at most `max`) and the open
//! pull requests; an issue whose branch `firepit/issue-<n>` already has an
//! open pull request is skipped. The others are worked on, `parallel` at a
//! time, each on its own: a session made from the repository, the branch,
//! the agent given the issue's text and comments, the tests run, a commit,
//! one atomic push, a pull request that closes the issue and says what
//! changed and which tests ran, and a comment on the issue. A failure ends
//! that issue alone, before anything is pushed; a pull request that cannot
//! be opened takes its pushed branch back with it.
//!
//! The job and its progress lines live in the store (`store/forge.rs`); a
//! daemon restart marks a running job interrupted (its sessions stay).
//!
//! `text` writes what the job says (the agent's task, the pull request),
//! `job` runs a job and its issues, `record` keeps the job's record and
//! progress lines.

mod job;
mod record;
pub mod text;

use std::collections::HashMap;
use std::sync::Mutex;

use firepit_wire::forge::{CreateTriage, TriageJob, TriageProgress, TriageState};

pub use self::text::{branch, pull_body, task};
use crate::{App, Error};

/// Issues per job when the request names no maximum.
pub(super) const DEFAULT_MAX: u32 = 10;
/// Largest `max`.
const MAX_MAX: u32 = 100;
/// Issues at once when the request does not say.
pub(super) const DEFAULT_PARALLEL: u32 = 2;
/// Largest `parallel`.
const MAX_PARALLEL: u32 = 8;

/// The jobs that run in this daemon.
pub struct Jobs {
    /// Serialises read-modify-write of job records.
    write: Mutex<()>,
    /// Bumped on every change, so progress streams wake.
    changed: tokio::sync::watch::Sender<u64>,
    tasks: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs {
            write: Mutex::new(()),
            changed: tokio::sync::watch::channel(0).0,
            tasks: Mutex::new(HashMap::new()),
        }
    }
}

impl Jobs {
    /// A receiver that sees every change to any job.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

pub(super) use firepit_util::now;

impl App {
    fn jobs(&self) -> &Jobs {
        &self.0.triage
    }

    /// Starts a triage job; it runs in the daemon until every issue has an outcome.
    pub async fn start_triage(&self, req: CreateTriage) -> Result<TriageJob, Error> {
        let max = req.max.unwrap_or(DEFAULT_MAX);
        let parallel = req.parallel.unwrap_or(DEFAULT_PARALLEL);
        if !(1..=MAX_MAX).contains(&max) {
            return Err(Error::BadRequest(format!("max must be 1 to {MAX_MAX}")));
        }
        if !(1..=MAX_PARALLEL).contains(&parallel) {
            return Err(Error::BadRequest(format!(
                "parallel must be 1 to {MAX_PARALLEL}"
            )));
        }
        if let Some(l) = &req.label
            && (crate::api::valid::blank(l) || l.chars().count() > 100)
        {
            return Err(Error::BadRequest(
                "the label must be 1 to 100 characters".into(),
            ));
        }
        if self.agents().model().is_none() {
            return Err(Error::NoModel);
        }
        let repo = self.check_repo(&req.repo).await?;
        let job = TriageJob {
            id: format!("tr{}", crate::sessions::new_id()),
            request: CreateTriage {
                repo: repo.to_string(),
                max: Some(max),
                parallel: Some(parallel),
                ..req
            },
            state: TriageState::Running,
            created_at: now(),
            finished_at: None,
            error: None,
            issues: Vec::new(),
        };
        self.store().put_triage_job(&job)?;
        let app = self.clone();
        let id = job.id.clone();
        let task = tokio::spawn(async move {
            app.run_job(&id, repo).await;
            app.jobs().tasks.lock().expect("tasks").remove(&id);
        });
        self.jobs()
            .tasks
            .lock()
            .expect("tasks")
            .insert(job.id.clone(), task.abort_handle());
        Ok(job)
    }

    /// A triage job.
    pub fn triage_job(&self, id: &str) -> Result<TriageJob, Error> {
        self.store()
            .triage_job(id)?
            .ok_or_else(|| Error::TriageNotFound(id.to_owned()))
    }

    /// A triage job's progress after `since`, and whether the job has ended.
    pub fn triage_progress(
        &self,
        id: &str,
        since: u64,
    ) -> Result<(Vec<TriageProgress>, bool), Error> {
        // Read the state first: a line appended after it is caught next time.
        let ended = self.triage_job(id)?.state != TriageState::Running;
        Ok((self.store().triage_progress(id, since)?, ended))
    }

    /// Waits for any change to any job.
    pub fn triage_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.jobs().watch()
    }

    /// After a restart: jobs that were running are interrupted.
    pub(crate) fn interrupt_triage(&self) -> Result<(), Error> {
        for id in self.store().interrupt_triage_jobs()? {
            self.progress(&id, None, "the daemon restarted: this job was interrupted");
        }
        Ok(())
    }
}
