//! One watcher task per running session: it turns the guest's port and service
//! watches into events of the session's log.
//!
//! Ports are compared with what the log says is open ([`crate::Store::open_ports`]),
//! so a watcher that starts again (after a daemon restart or a session start)
//! records only real changes: ports that closed meanwhile as `port_closed`, new
//! ones as `port_opened`, and nothing twice. The tasks are started and stopped
//! by the session lifecycle (`sessions.rs`).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;

use firepit_guest_client::{PortEvent, ServiceEvent};
use firepit_wire::events::EventKind;
use tokio::task::JoinHandle;

use crate::{App, Error, preview};

/// The watcher tasks, by session.
#[derive(Default)]
pub struct Watchers {
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Watchers {
    /// Starts watching session `id` (replacing a watcher it had).
    pub fn start(&self, app: &App, id: &str) {
        let task = tokio::spawn(watch(app.clone(), id.to_owned()));
        if let Some(old) = self
            .tasks
            .lock()
            .expect("watchers")
            .insert(id.to_owned(), task)
        {
            old.abort();
        }
    }

    /// Aborts a session's watcher without waiting for it: for callers that
    /// may run inside that watcher (its machine is gone, so it appends nothing
    /// more).
    pub fn abort(&self, id: &str) {
        if let Some(task) = self.tasks.lock().expect("watchers").remove(id) {
            task.abort();
        }
    }

    /// Stops watching session `id`; once this returns its watcher appends nothing more.
    pub async fn stop(&self, id: &str) {
        let task = self.tasks.lock().expect("watchers").remove(id);
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

fn opened(app: &App, id: &str, addr: IpAddr, port: u16) -> EventKind {
    EventKind::PortOpened {
        port,
        addr: addr.to_string(),
        url: app.config().preview_url(id, port),
    }
}

fn closed(addr: IpAddr, port: u16) -> EventKind {
    EventKind::PortClosed {
        port,
        addr: addr.to_string(),
    }
}

/// Records every port the log says is open as closed (the machine stopped).
pub fn close_known_ports(app: &App, id: &str) -> Result<(), Error> {
    for (addr, port) in app.store().open_ports(id)? {
        app.events().append(id, closed(addr, port))?;
    }
    Ok(())
}

async fn watch(app: App, id: String) {
    // The closed loop (problems in logs, the browser, tests) lives and ends with this task.
    let closed_loop = crate::closed_loop::watch(app.clone(), id.clone());
    let ports = async {
        match watch_session(&app, &id).await {
            Ok(()) => tracing::debug!(session = %id, "the guest ended its watches"),
            Err(e) => {
                tracing::warn!(session = %id, error = %crate::error::chain(&e), "watching the session stopped")
            }
        }
    };
    tokio::join!(ports, closed_loop);
}

async fn watch_session(app: &App, id: &str) -> Result<(), Error> {
    let guest = app.guest(id).await?;
    let mut services = guest.watch_services().await.map_err(Error::Guest)?;
    let mut ports = guest.watch_ports().await.map_err(Error::Guest)?;
    let mut open = app.store().open_ports(id)?;
    let now: BTreeSet<(IpAddr, u16)> = ports
        .initial()
        .iter()
        .filter(|p| !preview::is_firepit_port(app, id, p.port))
        .map(|p| (p.addr, p.port))
        .collect();
    for &(addr, port) in open.difference(&now) {
        app.events().append(id, closed(addr, port))?;
    }
    for &(addr, port) in now.difference(&open) {
        app.events().append(id, opened(app, id, addr, port))?;
    }
    open = now;
    loop {
        tokio::select! {
            change = ports.next() => match change.map_err(Error::Guest)? {
                Some(PortEvent::Opened(p)) => {
                    // The forge broker's and the browser's sockets are firepit's, not the app's.
                    if !preview::is_firepit_port(app, id, p.port) && open.insert((p.addr, p.port)) {
                        app.events().append(id, opened(app, id, p.addr, p.port))?;
                    }
                }
                Some(PortEvent::Closed(p)) => {
                    if open.remove(&(p.addr, p.port)) {
                        app.events().append(id, closed(p.addr, p.port))?;
                    }
                }
                None => return Ok(()),
            },
            event = services.next() => match event.map_err(Error::Guest)? {
                Some(ServiceEvent::Started { name, pid }) => {
                    app.events().append(id, EventKind::ServiceStarted { name, pid: Some(pid) })?;
                }
                Some(ServiceEvent::Exited { name, status }) => {
                    app.events().append(id, EventKind::ServiceExited { name, status })?;
                }
                None => return Ok(()),
            },
        }
    }
}
