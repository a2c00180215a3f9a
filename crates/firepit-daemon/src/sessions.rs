//! Sessions: the daemon's view of machines, kept in the store and made real by
//! the machine backend.
//!
//! Lifecycle operations on one session are serialised by a per-session lock;
//! different sessions proceed in parallel. A create that fails at any step
//! undoes the steps before it, so nothing half-made is left behind.
//!
//! Every state change is appended to the session's event log; a running
//! session has a watcher task ([`crate::watchers`]) that logs its ports and
//! services. Destroying a session deletes its events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firepit_guest_client::GuestClient;
use firepit_util::now;
use firepit_wire::api::{CreateSession, Limits, Session, SessionState};
use firepit_wire::events::EventKind;
use rand::Rng;

use crate::watchers;
use crate::{App, Error, machines};

/// Smallest memory limit a machine can work with.
const MIN_MEMORY: u64 = 32 << 20;
/// Smallest process limit a machine can work with (the guest, a shell, a command).
const MIN_PIDS: u64 = 16;
/// Smallest disk limit a machine can work with.
const MIN_DISK: u64 = firepit_machine::MIN_DISK;
/// Most processes a limit may name: the kernel's own ceiling (`PID_MAX_LIMIT`).
const MAX_PIDS: u64 = 4 << 20;
/// Fewest CPUs a limit may name (the backend's smallest CFS quota).
const MIN_CPUS: f64 = 0.01;
/// Most CPUs a limit may name; more than the host has are reduced to its count.
const MAX_CPUS: f64 = 1024.0;
/// How long a new machine's guest may take to answer.
const GUEST_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-session locks.
#[derive(Default)]
pub struct Sessions {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Sessions {
    pub(crate) fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("locks")
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    fn forget(&self, id: &str) {
        self.locks.lock().expect("locks").remove(id);
    }
}

/// Whether connecting failed only because the guest has not bound its socket yet.
fn not_up_yet(e: &firepit_guest_client::Error) -> bool {
    use std::io::ErrorKind::{ConnectionRefused, NotFound};
    matches!(e, firepit_guest_client::Error::Connect { source, .. } if matches!(source.kind(), NotFound | ConnectionRefused))
}

/// Refuses limits that make no sense, saying what would.
pub fn check_limits(limits: &Limits) -> Result<(), Error> {
    if let Some(m) = limits.memory_bytes
        && m < MIN_MEMORY
    {
        return Err(Error::BadRequest(format!(
            "memory limit {m} bytes is too small; give at least {} MiB",
            MIN_MEMORY >> 20
        )));
    }
    if let Some(c) = limits.cpus
        && !(MIN_CPUS..=MAX_CPUS).contains(&c)
    {
        return Err(Error::BadRequest(format!(
            "cpu limit {c} makes no sense; give a number from {MIN_CPUS} to {MAX_CPUS} (more than this host has means all of them)"
        )));
    }
    if let Some(p) = limits.pids
        && !(MIN_PIDS..=MAX_PIDS).contains(&p)
    {
        return Err(Error::BadRequest(format!(
            "process limit {p} is out of range; give {MIN_PIDS} to {MAX_PIDS}"
        )));
    }
    if let Some(d) = limits.disk_bytes
        && d < MIN_DISK
    {
        return Err(Error::BadRequest(format!(
            "disk limit {d} bytes is too small; give at least {} MiB",
            MIN_DISK >> 20
        )));
    }
    Ok(())
}

/// The CPUs a limit gives on this host: more than it has means all of them.
fn cpus_on_host(cpus: Option<f64>) -> Option<f64> {
    let host = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    cpus.map(|c| c.min(host))
}

/// A fresh session id: 10 characters of `[a-z0-9]`, starting with a letter, so it
/// is a DNS label and a hostname.
pub fn new_id() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(10);
    id.push(LETTERS[rng.random_range(0..LETTERS.len())] as char);
    for _ in 1..10 {
        id.push(ALNUM[rng.random_range(0..ALNUM.len())] as char);
    }
    id
}

/// Whether `id` could be a session id (checked before it reaches a path).
pub fn is_valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl App {
    /// Appends a state change to the session's log.
    pub(crate) fn log_state(
        &self,
        id: &str,
        state: SessionState,
        error: Option<&str>,
    ) -> Result<(), Error> {
        self.events().append(
            id,
            EventKind::SessionState {
                state,
                error: error.map(str::to_owned),
            },
        )?;
        Ok(())
    }

    /// Forgets a session's store rows, event streams, lock and artifacts
    /// (its runtime has ended).
    pub(crate) fn forget_session(&self, id: &str) -> Result<(), Error> {
        self.store().delete_session(id)?;
        self.store().delete_session_repos(id)?;
        self.store().delete_services(id)?;
        crate::scrollback::forget(self, id);
        self.events().forget(id);
        self.sessions().forget(id);
        self.remove_artifacts(id);
        Ok(())
    }

    /// Makes a session and starts its machine.
    pub async fn create_session(&self, req: CreateSession) -> Result<Session, Error> {
        let timeout = req.timeout_secs;
        // A repository is checked with the forge before any machine is made.
        let repo = match &req.repo {
            Some(r) => Some(self.check_repo(r).await?),
            None if req.branch.is_some() => {
                return Err(Error::BadRequest("--branch needs --repo".into()));
            }
            None => None,
        };
        let image_name = req
            .image
            .unwrap_or_else(|| self.config().default_image.clone());
        let defaults = &self.config().default_limits;
        let limits = Limits {
            memory_bytes: req.limits.memory_bytes.or(defaults.memory_bytes),
            cpus: req.limits.cpus.or(defaults.cpus),
            pids: req.limits.pids.or(defaults.pids),
            disk_bytes: req.limits.disk_bytes.or(defaults.disk_bytes),
        };
        check_limits(&limits)?;
        if limits.disk_bytes.is_some() && self.config().disk_pool == crate::config::DiskPool::Off {
            return Err(Error::BadRequest(
                "this daemon runs without disk limits (its disk pool is off); leave the disk limit out"
                    .into(),
            ));
        }
        crate::host::check_memory(limits.memory_bytes)?;
        let limits = Limits {
            cpus: cpus_on_host(limits.cpus),
            ..limits
        };
        let images = self.images().clone();
        let name = image_name.clone();
        let image = tokio::task::spawn_blocking(move || images.get(&name)).await??;

        let session = Session {
            id: new_id(),
            image: image_name,
            state: SessionState::Creating,
            limits,
            network: req.network,
            created_at: now(),
            error: None,
            stop_at: None,
            name: req.name.map(|n| n.trim().to_owned()),
            labels: req.labels,
        };
        let lock = self.sessions().lock_for(&session.id);
        let _guard = lock.lock().await;
        self.store().insert_session(&session)?;
        self.log_state(&session.id, SessionState::Creating, None)?;
        let spec = machines::spec(self.config(), &session, &image);
        let backend = self.backend().clone();
        let made = tokio::task::spawn_blocking(move || backend.create(&spec)).await?;
        if let Err(e) = made {
            self.forget_session(&session.id)?;
            return Err(Error::Machine(e));
        }
        let guest = match self.connect_guest(&session.id).await {
            Ok(g) => g,
            Err(e) => {
                let backend = self.backend().clone();
                let id = session.id.clone();
                let _ =
                    tokio::task::spawn_blocking(move || backend.destroy(&machines::id(&id))).await;
                self.forget_session(&session.id)?;
                return Err(e);
            }
        };
        self.store()
            .set_state(&session.id, SessionState::Running, None)?;
        self.log_state(&session.id, SessionState::Running, None)?;
        self.start_relay(&session.id).await;
        self.go_live(&session.id, Some(guest)).await;
        if let Some(repo) = &repo
            && let Err(e) = self
                .attach_repo(&session.id, repo, req.branch.as_deref())
                .await
        {
            self.end_live(&session.id).await;
            let _ = self.machine(&session.id, |b, m| b.destroy(m)).await;
            self.forget_session(&session.id)?;
            return Err(e);
        }
        if let Some(t) = timeout {
            self.set_stop_at(&session.id, Some(now().saturating_add_unsigned(t)))?;
        }
        // The changes' baseline, in the background: it waits for this lock.
        let (app, sid) = (self.clone(), session.id.clone());
        tokio::spawn(async move { app.start_baseline(&sid).await });
        tracing::info!(session = %session.id, image = %session.image, "session created");
        self.store().session(&session.id)
    }

    /// Renames and relabels a session (what `req` gives); an empty name
    /// takes the name away. Checked as at creation.
    pub fn update_session(
        &self,
        id: &str,
        req: firepit_wire::api::UpdateSession,
    ) -> Result<Session, Error> {
        // "" takes the name away; any other name is checked as at creation.
        let name = req.name.as_deref();
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            crate::api::valid::session_name(n)?;
        }
        if let Some(labels) = &req.labels {
            crate::api::valid::labels(labels)?;
        }
        let name = name.map(|n| (!n.is_empty()).then_some(n.trim()));
        let s = self.store().update_session(id, name, req.labels.as_ref())?;
        tracing::info!(session = %id, name = ?s.name, "session renamed or relabelled");
        Ok(s)
    }

    /// Runs `call` on the machine backend for session `id`, on a blocking thread.
    pub(crate) async fn machine<T: Send + 'static>(
        &self,
        id: &str,
        call: impl FnOnce(
            &dyn firepit_machine::Backend,
            &firepit_machine::MachineId,
        ) -> Result<T, firepit_machine::Error>
        + Send
        + 'static,
    ) -> Result<T, Error> {
        let backend = self.backend().clone();
        let mid = machines::id(id);
        tokio::task::spawn_blocking(move || call(backend.as_ref(), &mid))
            .await?
            .map_err(Error::Machine)
    }

    /// Ends a session's processes; its files are kept.
    pub async fn stop_session(&self, id: &str) -> Result<Session, Error> {
        let session = self.store().session(id)?;
        let lock = self.sessions().lock_for(id);
        let _guard = lock.lock().await;
        crate::scrollback::keep(self, id).await;
        self.end_live(id).await;
        self.machine(id, |b, m| b.stop(m)).await?;
        self.store()
            .set_state(&session.id, SessionState::Stopped, None)?;
        // A stopped session has no timeout; `start` runs it without one.
        self.store().set_stop_at(id, None)?;
        watchers::close_known_ports(self, id)?;
        if session.state != SessionState::Stopped {
            self.log_state(id, SessionState::Stopped, None)?;
        }
        self.store().session(id)
    }

    /// Starts a stopped session's machine again, on the same files.
    pub async fn start_session(&self, id: &str) -> Result<Session, Error> {
        let session = self.store().session(id)?;
        let lock = self.sessions().lock_for(id);
        let _guard = lock.lock().await;
        if session.state == SessionState::Running {
            return Ok(session);
        }
        self.machine(id, |b, m| b.start(m)).await?;
        let guest = self.connect_guest(id).await?;
        self.store().set_state(id, SessionState::Running, None)?;
        self.log_state(id, SessionState::Running, None)?;
        self.start_relay(id).await;
        self.go_live(id, Some(guest.clone())).await;
        // After the watchers: their events show the services coming back.
        self.bring_back_services(id, &guest, Vec::new()).await;
        if let Err(e) = self.start_broker(id).await {
            tracing::warn!(session = %id, error = %crate::error::chain(&e), "could not start the forge broker");
        }
        self.store().session(id)
    }

    /// Destroys a session's machine and forgets the session.
    pub async fn destroy_session(&self, id: &str) -> Result<(), Error> {
        self.store().session(id)?;
        let lock = self.sessions().lock_for(id);
        let _guard = lock.lock().await;
        self.end_live(id).await;
        // On the backend's teardown threads: many destroys at once hold
        // none of the runtime's blocking threads.
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.backend().clone().destroy_then(
            machines::id(id),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await
            .map_err(|_| {
                Error::Machine(firepit_machine::Error::Io {
                    what: "destroying the machine",
                    path: None,
                    source: std::io::Error::other("the backend dropped the destroy"),
                })
            })?
            .map_err(Error::Machine)?;
        self.forget_session(id)?;
        tracing::info!(session = %id, "session destroyed");
        Ok(())
    }

    /// The guest of a running session.
    pub async fn guest(&self, id: &str) -> Result<GuestClient, Error> {
        if !is_valid_id(id) {
            return Err(Error::SessionNotFound(id.to_owned()));
        }
        let live = self.live().get(id);
        if let Some(g) = live.as_ref().and_then(|l| l.guest()) {
            return Ok(g);
        }
        let session = self.store().session(id)?;
        if session.state != SessionState::Running {
            return Err(Error::SessionNotRunning(id.to_owned()));
        }
        // No live connection: make sure the machine still runs before waiting
        // for its guest (its init may have died, taking the machine with it).
        let info = self.machine(id, |b, m| b.inspect(m)).await?;
        if info.state != firepit_machine::MachineState::Running {
            // This may run inside one of the session's tasks: they are
            // stopped, not waited for.
            self.end_live_now(id);
            self.store().set_state(id, SessionState::Stopped, None)?;
            watchers::close_known_ports(self, id)?;
            self.log_state(id, SessionState::Stopped, None)?;
            tracing::warn!(session = %id, "the machine ended on its own; the session is stopped");
            return Err(Error::SessionNotRunning(id.to_owned()));
        }
        let guest = self.connect_guest(id).await?;
        if let Some(live) = live {
            live.set_guest(guest.clone());
        }
        Ok(guest)
    }

    /// Connects to a machine's guest, waiting for it to come up.
    pub(crate) async fn connect_guest(&self, id: &str) -> Result<GuestClient, Error> {
        let backend = self.backend().clone();
        let mid = machines::id(id);
        let addr = tokio::task::spawn_blocking(move || backend.guest_address(&mid))
            .await?
            .map_err(Error::Machine)?;
        let deadline = Instant::now() + GUEST_CONNECT_TIMEOUT;
        let mut pause = Duration::from_micros(200);
        let client = loop {
            match machines::connect(&addr).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline && not_up_yet(&e) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(Error::Guest(e)),
            }
        };
        Ok(client)
    }

    /// Brings the store in line with the machines that exist after a restart:
    /// running machines are adopted, ended ones marked stopped, and machines no
    /// session knows are destroyed.
    pub async fn reconcile(&self) -> Result<(), Error> {
        let backend = self.backend().clone();
        let found = tokio::task::spawn_blocking(move || backend.recover())
            .await?
            .map_err(Error::Machine)?;
        let sessions = self.store().sessions()?;
        for m in &found {
            let id = machines::id_str(m);
            match sessions.iter().find(|s| s.id == id) {
                Some(_) => {}
                None => {
                    tracing::warn!(machine = %id, "destroying a machine no session knows");
                    let backend = self.backend().clone();
                    let mid = machines::id(&id);
                    if let Err(e) =
                        tokio::task::spawn_blocking(move || backend.destroy(&mid)).await?
                    {
                        tracing::error!(machine = %id, error = %crate::error::chain(&e), "could not destroy");
                    }
                }
            }
        }
        for s in sessions {
            let running = found
                .iter()
                .any(|m| machines::id_str(m) == s.id && machines::is_running(m));
            let state = match (s.state, running) {
                (_, true) => SessionState::Running,
                (SessionState::Failed, false) => SessionState::Failed,
                (SessionState::Creating, false) => {
                    // The daemon died while making it: the create never
                    // finished, so it is undone.
                    let backend = self.backend().clone();
                    let mid = machines::id(&s.id);
                    let _ = tokio::task::spawn_blocking(move || backend.destroy(&mid)).await?;
                    self.forget_session(&s.id)?;
                    continue;
                }
                (_, false) => SessionState::Stopped,
            };
            if state != s.state {
                self.store().set_state(&s.id, state, s.error.as_deref())?;
                self.log_state(&s.id, state, s.error.as_deref())?;
            }
            if state == SessionState::Running {
                self.start_relay(&s.id).await;
                self.go_live(&s.id, None).await;
            } else {
                watchers::close_known_ports(self, &s.id)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dns_labels() {
        for _ in 0..100 {
            let id = new_id();
            assert_eq!(id.len(), 10);
            assert!(id.as_bytes()[0].is_ascii_lowercase());
            assert!(is_valid_id(&id));
        }
        assert!(!is_valid_id("../etc"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("ABC"));
    }

    #[test]
    fn nonsense_limits_are_refused() {
        let bad = [
            Limits {
                memory_bytes: Some(1),
                ..Default::default()
            },
            Limits {
                cpus: Some(0.0),
                ..Default::default()
            },
            Limits {
                cpus: Some(-1.0),
                ..Default::default()
            },
            Limits {
                cpus: Some(f64::NAN),
                ..Default::default()
            },
            Limits {
                cpus: Some(1e6),
                ..Default::default()
            },
            Limits {
                pids: Some(1),
                ..Default::default()
            },
            Limits {
                disk_bytes: Some(1 << 20),
                ..Default::default()
            },
            Limits {
                pids: Some(MAX_PIDS + 1),
                ..Default::default()
            },
            Limits {
                cpus: Some(0.001),
                ..Default::default()
            },
        ];
        for l in bad {
            assert!(
                matches!(check_limits(&l), Err(Error::BadRequest(_))),
                "{l:?}"
            );
        }
        check_limits(&Limits {
            memory_bytes: Some(1 << 30),
            cpus: Some(0.5),
            pids: Some(100),
            disk_bytes: Some(64 << 20),
        })
        .unwrap();
        // More CPUs than the host has are all of them, not an error.
        check_limits(&Limits {
            cpus: Some(MAX_CPUS),
            ..Default::default()
        })
        .unwrap();
        let host = std::thread::available_parallelism().unwrap().get() as f64;
        assert_eq!(cpus_on_host(Some(MAX_CPUS)), Some(host));
        assert_eq!(cpus_on_host(Some(0.5)), Some(0.5_f64.min(host)));
    }
}
