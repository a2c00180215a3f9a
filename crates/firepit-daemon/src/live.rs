//! The runtime of a live session: everything the daemon runs for a session
//! while its machine runs, owned by one [`LiveSession`].
//!
//! A session is live from the moment its machine runs (create, start, a
//! daemon restart that finds it running) until it stops, is destroyed or its
//! machine ends on its own. While live it has:
//! - its guest connection (made again when it closes);
//! - its watcher task ([`crate::watchers`], with the closed loop inside it);
//! - the closed loop's state: repeats folded, the closed-loop settings read once;
//! - its agent, made on first use ([`crate::agents`]);
//! - its browser, made on first use ([`crate::browsers`]);
//! - its forge broker, when it has repositories ([`crate::forge`]).
//!
//! [`App::go_live`] is the one place a runtime is made and
//! [`App::end_live`] the one place it ends: it is taken out of the registry
//! and [`LiveSession::shutdown`] stops every part, then the preview proxy's
//! idle upstream sockets of the session are let go. A runtime that ended takes
//! no new part (a request that raced the stop gets
//! [`Error::SessionNotRunning`]). Dropping the last handle of a runtime that
//! was not shut down stops what it still runs as well (tasks aborted, the
//! agent's run stopped).
//!
//! Whether a session is live is also what the preview proxy asks before it
//! forwards a request (no store read per request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use firepit_browser::Browser;
use firepit_guest_client::GuestClient;
use firepit_problems::Folder;
use tokio::task::JoinHandle;

use crate::agents::SessionAgent;
use crate::{App, Error};

/// The live sessions, by id.
#[derive(Default)]
pub struct LiveSessions {
    by_id: Mutex<HashMap<String, Arc<LiveSession>>>,
}

impl LiveSessions {
    /// Session `id`'s runtime, if it is live.
    pub fn get(&self, id: &str) -> Option<Arc<LiveSession>> {
        self.by_id.lock().expect("live").get(id).cloned()
    }

    /// Whether session `id` is live.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.lock().expect("live").contains_key(id)
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.by_id.lock().expect("live").len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One live session's runtime.
pub struct LiveSession {
    id: String,
    parts: Mutex<Parts>,
    /// Problems seen, folded (see [`crate::closed_loop`]).
    pub(crate) folder: Mutex<Folder>,
    /// The session's closed-loop settings, once read from its log.
    pub(crate) closed_loop: Mutex<Option<firepit_wire::api::ClosedLoopSettings>>,
}

/// What a live session runs; taken whole by [`LiveSession::shutdown`].
#[derive(Default)]
struct Parts {
    /// Set by shutdown: no part is taken any more.
    ended: bool,
    guest: Option<GuestClient>,
    watcher: Option<JoinHandle<()>>,
    agent: Option<SessionAgent>,
    browser: Option<Arc<Browser>>,
    broker: Option<BrokerRun>,
}

/// The forge broker: its port inside the machine, known before it is bound
/// (so no watcher takes it for the app's), and its task once it serves.
struct BrokerRun {
    port: u16,
    task: Option<JoinHandle<()>>,
}

impl Parts {
    /// Stops what can be stopped without waiting; returns the tasks to wait for.
    fn stop(&mut self) -> Vec<JoinHandle<()>> {
        self.ended = true;
        self.guest = None;
        self.browser = None;
        if let Some(agent) = self.agent.take() {
            agent.stop();
        }
        let mut tasks = Vec::new();
        if let Some(w) = self.watcher.take() {
            w.abort();
            tasks.push(w);
        }
        if let Some(task) = self.broker.take().and_then(|b| b.task) {
            task.abort();
            tasks.push(task);
        }
        tasks
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        // Shut down already, or the daemon let go of it without: either way
        // nothing of it runs on.
        let parts = self.parts.get_mut().unwrap_or_else(|e| e.into_inner());
        drop(parts.stop());
    }
}

impl LiveSession {
    fn new(id: &str) -> LiveSession {
        LiveSession {
            id: id.to_owned(),
            parts: Mutex::default(),
            folder: Mutex::default(),
            closed_loop: Mutex::default(),
        }
    }

    /// The session's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn parts(&self) -> std::sync::MutexGuard<'_, Parts> {
        self.parts.lock().expect("live session")
    }

    /// Whether the runtime was shut down.
    pub fn ended(&self) -> bool {
        self.parts().ended
    }

    /// The guest connection, if one is open.
    pub fn guest(&self) -> Option<GuestClient> {
        self.parts().guest.clone().filter(|g| !g.is_closed())
    }

    /// Keeps `guest` as the session's connection (not once ended).
    pub(crate) fn set_guest(&self, guest: GuestClient) {
        let mut parts = self.parts();
        if !parts.ended {
            parts.guest = Some(guest);
        }
    }

    /// The agent, if one was made.
    pub fn agent(&self) -> Option<SessionAgent> {
        self.parts().agent.clone()
    }

    /// Keeps `agent` unless another was kept meanwhile; returns the kept one.
    pub(crate) fn keep_agent(&self, agent: SessionAgent) -> Result<SessionAgent, Error> {
        let mut parts = self.parts();
        if parts.ended {
            return Err(Error::SessionNotRunning(self.id.clone()));
        }
        Ok(parts.agent.get_or_insert(agent).clone())
    }

    /// The browser, if one was made.
    pub fn browser(&self) -> Option<Arc<Browser>> {
        self.parts().browser.clone()
    }

    /// The browser, made by `make` if there is none; `None` once ended.
    pub(crate) fn browser_or(&self, make: impl FnOnce() -> Arc<Browser>) -> Option<Arc<Browser>> {
        let mut parts = self.parts();
        if parts.ended {
            return None;
        }
        Some(parts.browser.get_or_insert_with(make).clone())
    }

    /// The port of the forge broker (or of the one about to be bound).
    pub fn broker_port(&self) -> Option<u16> {
        self.parts().broker.as_ref().map(|b| b.port)
    }

    /// Ends the broker, if any, and reserves `port` for the next one.
    pub(crate) fn reserve_broker(&self, port: u16) -> Result<(), Error> {
        let mut parts = self.parts();
        if parts.ended {
            return Err(Error::SessionNotRunning(self.id.clone()));
        }
        if let Some(task) = parts.broker.take().and_then(|b| b.task) {
            task.abort();
        }
        parts.broker = Some(BrokerRun { port, task: None });
        Ok(())
    }

    /// Gives up a reservation that was not bound.
    pub(crate) fn unreserve_broker(&self, port: u16) {
        let mut parts = self.parts();
        if parts
            .broker
            .as_ref()
            .is_some_and(|b| b.port == port && b.task.is_none())
        {
            parts.broker = None;
        }
    }

    /// Keeps the broker serving on the reserved `port`; aborted at once if
    /// the runtime ended or reserved another port meanwhile.
    pub(crate) fn keep_broker(&self, port: u16, task: JoinHandle<()>) -> Result<(), Error> {
        let mut parts = self.parts();
        let ended = parts.ended;
        match &mut parts.broker {
            Some(b) if !ended && b.port == port && b.task.is_none() => {
                b.task = Some(task);
                Ok(())
            }
            _ => {
                task.abort();
                Err(Error::SessionNotRunning(self.id.clone()))
            }
        }
    }

    /// Whether the broker's task runs (tests).
    pub fn broker_running(&self) -> bool {
        self.parts()
            .broker
            .as_ref()
            .and_then(|b| b.task.as_ref())
            .is_some_and(|t| !t.is_finished())
    }

    /// Keeps the watcher task (replacing one it had).
    fn keep_watcher(&self, task: JoinHandle<()>) {
        let mut parts = self.parts();
        if parts.ended {
            task.abort();
            return;
        }
        if let Some(old) = parts.watcher.replace(task) {
            old.abort();
        }
    }

    /// Stops every part; once this returns, the watcher appends nothing more
    /// and the broker's socket is closed. Called from inside the watcher (the
    /// machine ended under it), it does not wait for the watcher itself.
    pub async fn shutdown(&self) {
        let tasks = self.parts().stop();
        let me = tokio::task::try_id();
        for task in tasks {
            if Some(task.id()) != me {
                let _ = task.await;
            }
        }
    }

    /// Stops every part without waiting for its tasks to end: for callers
    /// that may run inside one of them.
    fn abort(&self) {
        drop(self.parts().stop());
    }
}

impl App {
    /// The live sessions.
    pub fn live(&self) -> &LiveSessions {
        &self.0.live
    }

    /// Makes session `id` live, with `guest` if a connection is open, and
    /// starts its watcher. A runtime it still had is shut down first.
    pub(crate) async fn go_live(&self, id: &str, guest: Option<GuestClient>) -> Arc<LiveSession> {
        let live = Arc::new(LiveSession::new(id));
        if let Some(g) = guest {
            live.set_guest(g);
        }
        let old = self
            .live()
            .by_id
            .lock()
            .expect("live")
            .insert(id.to_owned(), live.clone());
        if let Some(old) = old {
            old.shutdown().await;
        }
        live.keep_watcher(crate::watchers::start(self, id));
        live
    }

    /// Ends session `id`'s runtime, if it is live: every part stopped, and
    /// the preview proxy's idle upstream sockets of the session closed.
    pub(crate) async fn end_live(&self, id: &str) {
        let live = self.live().by_id.lock().expect("live").remove(id);
        self.previews().forget(id);
        // The proxy relay (kept apart, by `proxy_relay`) ends with the runtime.
        self.relays().stop(id);
        if let Some(live) = live {
            live.shutdown().await;
            // A request that was in flight may have given a socket back meanwhile.
            self.previews().forget(id);
        }
    }

    /// Ends session `id`'s runtime at once, without waiting for its tasks
    /// (they end at their next await): for callers that may be one of them,
    /// such as the closed loop noticing that the machine ended.
    pub(crate) fn end_live_now(&self, id: &str) {
        let live = self.live().by_id.lock().expect("live").remove(id);
        if let Some(live) = live {
            live.abort();
        }
        self.previews().forget(id);
        self.relays().stop(id);
    }

    /// Session `id`'s runtime, or [`Error::SessionNotRunning`].
    pub(crate) fn live_session(&self, id: &str) -> Result<Arc<LiveSession>, Error> {
        self.live()
            .get(id)
            .ok_or_else(|| Error::SessionNotRunning(id.to_owned()))
    }
}
