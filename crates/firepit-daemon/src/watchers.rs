//! One watcher task per running session: it turns the guest's port, service
//! and file watches into events of the session's log (the file watch:
//! [`crate::workspace::watch_files`]).
//!
//! Ports are compared with what the log says is open ([`crate::Store::open_ports`]),
//! so a watcher that starts again (after a daemon restart or a session start)
//! records only real changes: ports that closed meanwhile as `port_closed`, new
//! ones as `port_opened`, and nothing twice. The task is part of the session's
//! runtime ([`crate::live`]), started and stopped with it.
//!
//! Port and service events count against the session's rate limit
//! ([`crate::events::EventLog::append_limited`]). When a port event is
//! dropped, the log's idea of the open ports is behind: the watcher compares
//! it with the guest's again a second later (and every second after that
//! while drops go on), so the log ends up right.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use firepit_guest_client::{PortEvent, ServiceEvent};
use firepit_wire::events::EventKind;
use tokio::task::JoinHandle;

use crate::{App, Error, preview};

/// How long after a dropped port event the log is compared with the ports again.
const RESYNC: Duration = Duration::from_secs(1);

/// Starts watching session `id`: the task the session's runtime keeps
/// ([`crate::live`]).
pub(crate) fn start(app: &App, id: &str) -> JoinHandle<()> {
    tokio::spawn(watch(app.clone(), id.to_owned()))
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
    // The file watch ends alone where the guest has none (an older guest).
    let files = async {
        if let Err(e) = crate::workspace::watch_files(&app, &id).await {
            tracing::debug!(session = %id, error = %crate::error::chain(&e), "the file watch ended");
        }
    };
    tokio::join!(ports, closed_loop, files);
}

/// Appends to the log what differs between the ports it says are open and
/// `open`, the guest's. Returns whether all of it passed the rate limit.
fn sync_ports(app: &App, id: &str, open: &BTreeSet<(IpAddr, u16)>) -> Result<bool, Error> {
    let logged = app.store().open_ports(id)?;
    let mut all = true;
    for &(addr, port) in logged.difference(open) {
        all &= app
            .events()
            .append_limited(id, closed(addr, port))?
            .is_some();
    }
    for &(addr, port) in open.difference(&logged) {
        all &= app
            .events()
            .append_limited(id, opened(app, id, addr, port))?
            .is_some();
    }
    Ok(all)
}

async fn watch_session(app: &App, id: &str) -> Result<(), Error> {
    let guest = app.guest(id).await?;
    let mut services = guest.watch_services().await.map_err(Error::Guest)?;
    let mut ports = guest.watch_ports().await.map_err(Error::Guest)?;
    // The ports open in the guest (firepit's own left out).
    let mut open: BTreeSet<(IpAddr, u16)> = ports
        .initial()
        .iter()
        .filter(|p| !preview::is_firepit_port(app, id, p.port))
        .map(|p| (p.addr, p.port))
        .collect();
    // When the log is behind `open` (a port event was dropped): when to sync.
    let mut resync = (!sync_ports(app, id, &open)?).then(|| tokio::time::Instant::now() + RESYNC);
    loop {
        let due = resync.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            change = ports.next() => {
                let passed = match change.map_err(Error::Guest)? {
                    Some(PortEvent::Opened(p)) => {
                        // The forge broker's and the browser's sockets are firepit's, not the app's.
                        if !preview::is_firepit_port(app, id, p.port) && open.insert((p.addr, p.port)) {
                            app.events().append_limited(id, opened(app, id, p.addr, p.port))?.is_some()
                        } else {
                            true
                        }
                    }
                    Some(PortEvent::Closed(p)) => {
                        if open.remove(&(p.addr, p.port)) {
                            app.events().append_limited(id, closed(p.addr, p.port))?.is_some()
                        } else {
                            true
                        }
                    }
                    None => return Ok(()),
                };
                if !passed && resync.is_none() {
                    resync = Some(tokio::time::Instant::now() + RESYNC);
                }
            }
            event = services.next() => match event.map_err(Error::Guest)? {
                Some(ServiceEvent::Started { name, pid }) => {
                    app.events().append_limited(id, EventKind::ServiceStarted { name, pid: Some(pid) })?;
                }
                Some(ServiceEvent::Exited { name, status }) => {
                    app.events().append_limited(id, EventKind::ServiceExited { name, status })?;
                }
                None => return Ok(()),
            },
            () = tokio::time::sleep_until(due), if resync.is_some() => {
                resync = (!sync_ports(app, id, &open)?).then(|| tokio::time::Instant::now() + RESYNC);
            }
        }
    }
}
