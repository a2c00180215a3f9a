//! Session timeouts: a running session with a `stop_at` (set by `timeout_secs`
//! at create, or by the E2B door) is stopped by the daemon at that time; its
//! files are kept. An E2B sandbox made to be killed at its timeout
//! (`autoPause: false`, [`firepit_e2b::E2b::kills_at_timeout`]) is destroyed
//! instead, as E2B does. The time is in the store, so a deadline outlives a
//! restart, and one that passed while the daemon was down is kept at once.
//!
//! One task sleeps until the earliest deadline of a running session and wakes
//! when a deadline changes; nothing polls. Stopping clears the deadline.

use std::sync::{Arc, Weak};

use tokio::sync::Notify;

use crate::{App, Error, Inner};

/// Wakes the deadline task when a deadline changes.
#[derive(Default)]
pub struct Deadlines {
    changed: Arc<Notify>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl App {
    /// Sets (or clears) when a session is stopped.
    pub fn set_stop_at(&self, id: &str, stop_at: Option<i64>) -> Result<(), Error> {
        self.store().set_stop_at(id, stop_at)?;
        self.0.deadlines.changed.notify_one();
        Ok(())
    }

    /// Starts the task that stops sessions at their deadlines; it ends with the daemon.
    pub(crate) fn start_deadlines(&self) {
        let changed = self.0.deadlines.changed.clone();
        tokio::spawn(stop_at_deadlines(Arc::downgrade(&self.0), changed));
    }
}

async fn stop_at_deadlines(app: Weak<Inner>, changed: Arc<Notify>) {
    loop {
        let Some(inner) = app.upgrade() else { return };
        let app = App(inner);
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match app.store().due_to_stop(now()) {
            Ok(due) => {
                for id in due {
                    if let Some(e2b) = app.e2b().filter(|e| e.kills_at_timeout(&id)) {
                        match e2b.kill(&id).await {
                            Ok(()) => {
                                tracing::info!(session = %id, "destroyed at its timeout (an E2B sandbox with on_timeout kill)");
                                continue;
                            }
                            Err(e) => {
                                tracing::warn!(session = %id, error = %e, "destroying at the timeout failed; stopping it instead");
                            }
                        }
                    }
                    match app.stop_session(&id).await {
                        Ok(_) => tracing::info!(session = %id, "stopped at its timeout"),
                        Err(e) => {
                            tracing::warn!(session = %id, error = %crate::error::chain(&e), "stopping at the timeout failed");
                            // Not tried again until the deadline changes.
                            let _ = app.store().set_stop_at(&id, None);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %crate::error::chain(&e), "reading timeouts failed"),
        }
        let next = app.store().next_stop_at().ok().flatten();
        // The task must not keep the daemon's state alive while it waits.
        drop(app);
        match next {
            Some(at) => {
                let wait = std::time::Duration::from_secs(at.saturating_sub(now()).max(0) as u64);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut notified => {}
                }
            }
            None => notified.await,
        }
    }
}
