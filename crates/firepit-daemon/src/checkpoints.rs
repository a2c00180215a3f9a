//! Checkpoints of sessions: made, listed, removed, restored and forked through
//! the machine backend ([`firepit_machine::Backend::checkpoint`] and its
//! kin), with events in the session's log.
//!
//! Every operation takes the session's lifecycle lock, so a checkpoint, a
//! restore, a fork, a start, a stop and a create of one session happen one
//! after another (a second restore waits for the first; a checkpoint asked
//! while the session is being made waits until it is made). The backend keeps
//! the checkpoints and their records with the machine's files, so they outlive
//! daemon restarts and go when the session is destroyed; the store keeps
//! nothing of them but the events.
//!
//! A restore stops the machine, swaps its files and starts it again: the
//! daemon drops what it ran for the session (watchers, guest connection,
//! agent, previews, browser, broker) first, and afterwards connects again,
//! starts the watchers, the broker and the services that ran before with
//! their specs, with the session's kept services (`services.rs`, the same
//! path a start takes). If the backend fails, the machine has kept its files and its
//! state (the backend's promise) and the session is brought back in line
//! with it.
//!
//! A checkpoint of a running session first makes the session's files the
//! Changes view's baseline (`workspace.rs`), so the checkpoint holds the
//! baseline that matches it and a restore or a fork brings it back; when
//! the checkpoint then fails, the baseline before is put back. That costs
//! one run of `git` in the machine, which hashes only what changed since
//! the last baseline.
//!
//! **Decision (automatic checkpoints, prune policy):** the agent makes a
//! checkpoint (`made_by: agent`) before each turn whose tools can change
//! files ([`AGENT_KEEP`] and [`AGENT_KEEP_BYTES`] bound them): after each one,
//! the oldest agent checkpoints of the session go while there are more than
//! [`AGENT_KEEP`], or while together they hold more than [`AGENT_KEEP_BYTES`]
//! (the newest one is always kept). Checkpoints a person made are never
//! pruned.

use firepit_machine::{CheckpointId, NewCheckpoint};
use firepit_wire::api::{Session, SessionState};
use firepit_wire::checkpoint::Checkpoint;
use firepit_wire::events::EventKind;

use crate::sessions::{is_valid_id, new_id};
use crate::{App, Error, machines, watchers};
use firepit_util::now;

/// Agent checkpoints a session keeps at most.
pub const AGENT_KEEP: usize = 20;
/// Bytes agent checkpoints of a session may hold together before the oldest go.
pub const AGENT_KEEP_BYTES: u64 = 2 << 30;

/// `made_by` of checkpoints made through the API or the CLI.
pub const BY_USER: &str = "user";
/// `made_by` of the agent's checkpoints.
pub const BY_AGENT: &str = "agent";

fn wire(session: &str, c: firepit_machine::Checkpoint) -> Checkpoint {
    Checkpoint {
        id: c.id.to_string(),
        session: session.to_owned(),
        name: c.name,
        created_at_ms: c.created_at_ms,
        size_bytes: c.size_bytes,
        made_by: c.made_by,
        parent: c.parent.map(|p| p.to_string()),
        running: c.running,
    }
}

/// A checkpoint id from the API, or a 400 saying what ids look like.
pub fn checkpoint_id(id: &str) -> Result<CheckpointId, Error> {
    CheckpointId::new(id).map_err(|e| Error::BadRequest(e.to_string()))
}

/// A backend that cannot checkpoint this session says so as a conflict.
fn unsupported(e: Error) -> Error {
    match e {
        Error::Machine(e @ firepit_machine::Error::Unsupported(_)) => Error::NoCheckpoints(e),
        e => e,
    }
}

fn fresh_id() -> CheckpointId {
    CheckpointId::new(format!("cp-{}", new_id())).expect("a valid id")
}

impl App {
    /// The session, or 404: also for ids that could be no session's.
    fn checked_session(&self, id: &str) -> Result<Session, Error> {
        if !is_valid_id(id) {
            return Err(Error::SessionNotFound(id.to_owned()));
        }
        self.store().session(id)
    }

    /// Makes a checkpoint of session `id`'s files.
    pub async fn checkpoint_session(
        &self,
        id: &str,
        name: Option<String>,
        made_by: &str,
    ) -> Result<Checkpoint, Error> {
        self.checked_session(id)?;
        let lock = self.sessions().lock_for(id);
        let _guard = lock.lock().await;
        self.checkpoint_locked(id, name, made_by).await
    }

    async fn checkpoint_locked(
        &self,
        id: &str,
        name: Option<String>,
        made_by: &str,
    ) -> Result<Checkpoint, Error> {
        // Gone while this waited for the lock?
        let session = self.store().session(id)?;
        if session.state == SessionState::Creating {
            // Only after a crash mid-create (a create holds the lock).
            return Err(Error::SessionNotRunning(id.to_owned()));
        }
        let new = NewCheckpoint {
            id: fresh_id(),
            name,
            made_by: made_by.to_owned(),
        };
        new.validate()
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        // The changes' baseline first, so the checkpoint holds it.
        let label = new.name.clone().unwrap_or_else(|| new.id.to_string());
        let baseline =
            session.state == SessionState::Running && self.checkpoint_baseline(id, &label).await;
        let made = self
            .machine(id, move |b, m| b.checkpoint(m, &new))
            .await
            .map_err(unsupported);
        if made.is_err() && baseline {
            self.undo_checkpoint_baseline(id).await;
        }
        let made = made?;
        let cp = wire(id, made);
        self.events().append(
            id,
            EventKind::CheckpointMade {
                checkpoint: cp.id.clone(),
                name: cp.name.clone(),
                made_by: cp.made_by.clone(),
                size_bytes: cp.size_bytes,
            },
        )?;
        tracing::info!(session = %id, checkpoint = %cp.id, by = %cp.made_by, bytes = cp.size_bytes, "checkpoint made");
        Ok(cp)
    }

    /// The agent's checkpoint before a step that can change files, then the
    /// prune (see the module docs). `None` where the session's files cannot
    /// be checkpointed (a backend without checkpoints): the agent goes on
    /// without. A session without a disk pool gets copies, which cost what
    /// it changed each time.
    pub async fn agent_checkpoint(
        &self,
        id: &str,
        name: String,
    ) -> Result<Option<Checkpoint>, Error> {
        self.checked_session(id)?;
        let lock = self.sessions().lock_for(id);
        let _guard = lock.lock().await;
        let cp = match self.checkpoint_locked(id, Some(name), BY_AGENT).await {
            Ok(cp) => cp,
            Err(Error::NoCheckpoints(why)) => {
                tracing::debug!(session = %id, %why, "no agent checkpoint");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let all = self.machine(id, |b, m| b.checkpoints(m)).await?;
        for old in prune_plan(&all, AGENT_KEEP, AGENT_KEEP_BYTES) {
            let gone = old.clone();
            self.machine(id, move |b, m| b.remove_checkpoint(m, &gone))
                .await?;
            self.events().append(
                id,
                EventKind::CheckpointRemoved {
                    checkpoint: old.to_string(),
                },
            )?;
        }
        Ok(Some(cp))
    }

    /// Session `id`'s checkpoints, oldest first.
    pub async fn session_checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, Error> {
        self.checked_session(id)?;
        let all = self.machine(id, |b, m| b.checkpoints(m)).await?;
        Ok(all.into_iter().map(|c| wire(id, c)).collect())
    }

    /// Removes one of session `id`'s checkpoints.
    pub async fn remove_session_checkpoint(&self, id: &str, checkpoint: &str) -> Result<(), Error> {
        self.checked_session(id)?;
        let cp = checkpoint_id(checkpoint)?;
        let lock = self.sessions().lock_for(id);
        let _guard = lock.lock().await;
        self.store().session(id)?;
        let gone = cp.clone();
        self.machine(id, move |b, m| b.remove_checkpoint(m, &gone))
            .await?;
        self.events().append(
            id,
            EventKind::CheckpointRemoved {
                checkpoint: cp.to_string(),
            },
        )?;
        Ok(())
    }

    /// Returns session `id`'s files to one of its checkpoints; a running
    /// session runs again afterwards, with the services it ran.
    pub async fn restore_session(&self, id: &str, checkpoint: &str) -> Result<Session, Error> {
        self.checked_session(id)?;
        let cp = checkpoint_id(checkpoint)?;
        let lock = self.sessions().lock_for(id);
        let _guard = lock.lock().await;
        let session = self.store().session(id)?;
        if session.state == SessionState::Creating {
            return Err(Error::SessionNotRunning(id.to_owned()));
        }
        // Unknown checkpoints are refused before anything stops.
        let wanted = cp.clone();
        let known = self.machine(id, |b, m| b.checkpoints(m)).await?;
        if !known.iter().any(|c| c.id == wanted) {
            return Err(Error::Machine(firepit_machine::Error::CheckpointNotFound {
                machine: id.to_owned(),
                checkpoint: cp.to_string(),
            }));
        }
        let services = match session.state {
            SessionState::Running => match self.guest(id).await {
                Ok(g) => g
                    .service_list()
                    .await
                    .map(|l| {
                        l.into_iter()
                            .filter(|s| s.state == firepit_wire::api::ServiceState::Running)
                            .map(|s| s.spec)
                            .collect()
                    })
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            },
            _ => Vec::new(),
        };
        crate::scrollback::keep(self, id).await;
        self.end_live(id).await;
        let restored = self
            .machine(id, move |b, m| b.restore(m, &cp))
            .await
            .map_err(unsupported);
        // Whatever happened, the session follows the machine.
        let info = self.machine(id, |b, m| b.inspect(m)).await?;
        let running = machines::is_running(&info);
        let mut started = Vec::new();
        let mut live_guest = None;
        if running {
            let guest = self.connect_guest(id).await?;
            live_guest = Some(guest.clone());
            started = self.bring_back_services(id, &guest, services).await;
        }
        watchers::close_known_ports(self, id)?;
        let state = if running {
            SessionState::Running
        } else {
            SessionState::Stopped
        };
        let now_state = self.store().session(id)?.state;
        self.store().set_state(id, state, None)?;
        if now_state != state {
            self.log_state(id, state, None)?;
        }
        if running {
            self.start_relay(id).await;
            self.go_live(id, live_guest).await;
            if let Err(e) = self.start_broker(id).await {
                tracing::warn!(session = %id, error = %crate::error::chain(&e), "could not start the forge broker");
            }
        }
        restored?;
        self.events().append(
            id,
            EventKind::Restored {
                checkpoint: checkpoint.to_owned(),
                services: started,
            },
        )?;
        tracing::info!(session = %id, checkpoint, "session restored");
        self.store().session(id)
    }

    /// Makes image `name` of session `id`'s files (at checkpoint `from`, or
    /// now): its image with the session's files over it, which new
    /// sessions can be made from.
    pub async fn save_image(
        &self,
        id: &str,
        name: &str,
        from: Option<&str>,
    ) -> Result<firepit_wire::api::Image, Error> {
        self.checked_session(id)?;
        let from = from.map(checkpoint_id).transpose()?;
        let lock = self.sessions().lock_for(id);
        let _guard = lock.lock().await;
        let session = self.store().session(id)?;
        let images = self.images().clone();
        let base_name = session.image.clone();
        let (backend, mid, name_owned) =
            (self.backend().clone(), machines::id(id), name.to_owned());
        let builder = format!("firepit image save {id}");
        let image = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            if images.get(&name_owned).is_ok() {
                return Err(Error::ImageExists(name_owned));
            }
            let base = images.get(&base_name)?;
            let mut failed = None;
            let made = images.save(&name_owned, &base, &builder, |rootfs| {
                backend.export(&mid, from.as_ref(), rootfs).map_err(|e| {
                    let text = crate::error::chain(&e);
                    failed = Some(e);
                    text
                })
            });
            match (made, failed) {
                (Ok(image), _) => Ok(image),
                (Err(_), Some(e)) => Err(unsupported(Error::Machine(e))),
                (Err(e), None) => Err(Error::Image(e)),
            }
        })
        .await??;
        self.events().append(
            id,
            EventKind::Note {
                text: format!("image {} saved from this session", image.name),
            },
        )?;
        tracing::info!(session = %id, image = %image.name, "image saved");
        Ok(machines::api_image(&image))
    }

    /// Makes a new session whose files start as one of session `id`'s
    /// checkpoints (`from`), or as its files now; it runs beside its parent,
    /// with a copy of the services the parent keeps (those wanted running
    /// started, as a start does).
    pub async fn fork_session(&self, id: &str, from: Option<&str>) -> Result<Session, Error> {
        let parent = self.checked_session(id)?;
        let from = from.map(checkpoint_id).transpose()?;
        let lock = self.sessions().lock_for(id);
        let _guard = lock.lock().await;
        let parent_now = self.store().session(id)?;
        if parent_now.state == SessionState::Creating {
            return Err(Error::SessionNotRunning(id.to_owned()));
        }
        let child = Session {
            id: new_id(),
            image: parent.image.clone(),
            state: SessionState::Creating,
            limits: parent.limits,
            network: parent.network,
            created_at: now(),
            error: None,
            // A fork runs until it is stopped: the parent's timeout is the parent's.
            stop_at: None,
            // It keeps the parent's name and labels, so it is found with it.
            name: parent.name.clone(),
            labels: parent.labels.clone(),
        };
        let child_lock = self.sessions().lock_for(&child.id);
        let _child_guard = child_lock.lock().await;
        // The child keeps the parent's services, and starts those wanted running.
        self.store().insert_fork(&child, id)?;
        self.log_state(&child.id, SessionState::Creating, None)?;
        let child_mid = machines::id(&child.id);
        let source = from.clone();
        let made = self
            .machine(id, move |b, m| b.fork(m, source.as_ref(), &child_mid))
            .await
            .map_err(unsupported);
        if let Err(e) = made {
            self.forget_session(&child.id)?;
            return Err(e);
        }
        let guest = match self.connect_guest(&child.id).await {
            Ok(g) => g,
            Err(e) => {
                let _ = self.machine(&child.id, |b, m| b.destroy(m)).await;
                self.forget_session(&child.id)?;
                return Err(e);
            }
        };
        self.store()
            .set_state(&child.id, SessionState::Running, None)?;
        self.log_state(&child.id, SessionState::Running, None)?;
        self.start_relay(&child.id).await;
        self.go_live(&child.id, Some(guest.clone())).await;
        // After the watchers, as a start: their events show the services' ports.
        self.bring_back_services(&child.id, &guest, Vec::new())
            .await;
        let event = EventKind::Forked {
            parent: id.to_owned(),
            child: child.id.clone(),
            checkpoint: from.map(|c| c.to_string()),
        };
        self.events().append(&child.id, event.clone())?;
        self.events().append(id, event)?;
        tracing::info!(session = %id, child = %child.id, "session forked");
        self.store().session(&child.id)
    }
}

/// The agent checkpoints to remove so that at most `keep` of them, holding
/// at most `keep_bytes` together, are left; oldest first, never the newest
/// and never one a person made.
pub fn prune_plan(
    all: &[firepit_machine::Checkpoint],
    keep: usize,
    keep_bytes: u64,
) -> Vec<CheckpointId> {
    let mut agent: Vec<_> = all.iter().filter(|c| c.made_by == BY_AGENT).collect();
    agent.sort_by_key(|c| (c.created_at_ms, c.id.clone()));
    let mut count = agent.len();
    let mut bytes: u64 = agent.iter().map(|c| c.size_bytes).sum();
    let mut out = Vec::new();
    for c in &agent {
        if count <= 1 || (count <= keep && bytes <= keep_bytes) {
            break;
        }
        out.push(c.id.clone());
        count -= 1;
        bytes -= c.size_bytes;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(id: &str, at: u64, size: u64, by: &str) -> firepit_machine::Checkpoint {
        firepit_machine::Checkpoint {
            id: CheckpointId::new(id).unwrap(),
            machine: firepit_machine::MachineId::new("m").unwrap(),
            name: None,
            created_at_ms: at,
            size_bytes: size,
            made_by: by.into(),
            parent: None,
            running: true,
        }
    }

    #[test]
    fn prune_takes_the_oldest_agent_checkpoints_only() {
        let all = vec![
            cp("u1", 0, 10, BY_USER),
            cp("a1", 1, 10, BY_AGENT),
            cp("a2", 2, 10, BY_AGENT),
            cp("a3", 3, 10, BY_AGENT),
            cp("u2", 4, 10, BY_USER),
        ];
        let ids = |v: Vec<CheckpointId>| v.into_iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(prune_plan(&all, 2, 1000)), ["a1"]);
        assert_eq!(ids(prune_plan(&all, 5, 1000)), Vec::<String>::new());
        // By bytes: 30 > 15, so the oldest two go.
        assert_eq!(ids(prune_plan(&all, 5, 15)), ["a1", "a2"]);
        // The newest stays, whatever its size.
        assert_eq!(ids(prune_plan(&all, 5, 0)), ["a1", "a2"]);
    }
}
