//! A triage job's record and progress lines in the store, and the wake-up
//! of everyone who follows them.

use firepit_wire::forge::{TriageIssue, TriageJob};

use crate::App;

impl App {
    pub(super) fn progress(&self, job: &str, issue: Option<u64>, text: &str) {
        if let Err(e) = self.store().append_triage_progress(job, issue, text) {
            tracing::error!(job, error = %crate::error::chain(&e), "could not record triage progress");
        }
        self.jobs().bump();
    }

    pub(super) fn update_job(&self, id: &str, f: impl FnOnce(&mut TriageJob)) {
        let _g = self.jobs().write.lock().expect("triage write");
        match self.store().triage_job(id) {
            Ok(Some(mut job)) => {
                f(&mut job);
                if let Err(e) = self.store().put_triage_job(&job) {
                    tracing::error!(job = id, error = %crate::error::chain(&e), "could not store a triage job");
                }
            }
            _ => tracing::error!(job = id, "a triage job vanished from the store"),
        }
        drop(_g);
        self.jobs().bump();
    }

    pub(super) fn update_issue(&self, id: &str, n: u64, f: impl FnOnce(&mut TriageIssue)) {
        self.update_job(id, |job| {
            if let Some(i) = job.issues.iter_mut().find(|i| i.number == n) {
                f(i);
            }
        });
    }
}
