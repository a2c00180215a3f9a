//! The daemon's side of the proxy relay (`firepit_trust::relay`).
//!
//! With a proxy configured (`Config::proxy`), every running session whose
//! machine has a network gets a relay: the daemon listens inside the machine
//! on `127.0.0.1:`[`RELAY_PORT`] (`Backend::listen`, as for the forge
//! broker) and forwards to the proxy, adding its credentials. The machine's
//! `HTTP_PROXY`/`HTTPS_PROXY` name that address (set in every guest's
//! environment by the backend), so the machine never reaches the host, the
//! host's loopback or the proxy itself, and never holds the credentials.
//! A machine without a network (`none`) gets no relay: the proxy would be
//! a way out. The relay's port is firepit's: no preview, no `ports` entry,
//! no event.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use firepit_trust::proxy::RELAY_PORT;
use firepit_trust::relay::Relay;
use firepit_wire::api::NetworkMode;

use crate::{App, machines};

/// The relays of running sessions.
#[derive(Default)]
pub struct Relays {
    tasks: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Sessions whose relay is (or is about to be) listening: known before
    /// the socket exists, so no watcher takes the port for the app's.
    claimed: Mutex<HashSet<String>>,
}

impl Relays {
    /// Ends session `id`'s relay, if it has one.
    pub fn stop(&self, id: &str) {
        self.claimed.lock().expect("relays").remove(id);
        if let Some(task) = self.tasks.lock().expect("relays").remove(id) {
            task.abort();
        }
    }

    /// Whether `port` in session `id`'s machine is its relay's.
    pub fn is_relay_port(&self, id: &str, port: u16) -> bool {
        port == RELAY_PORT && self.claimed.lock().expect("relays").contains(id)
    }
}

impl App {
    /// Starts session `id`'s relay when a proxy is configured and its
    /// machine has a network; a relay already running is replaced. A relay
    /// that cannot start is logged: the session runs on, and its proxied
    /// requests are refused inside the machine.
    pub async fn start_relay(&self, id: &str) {
        let Some(proxy) = &self.config().proxy else {
            return;
        };
        match self.store().session(id) {
            Ok(s) if s.network == NetworkMode::Nat => {}
            _ => return,
        }
        self.relays().stop(id);
        self.relays()
            .claimed
            .lock()
            .expect("relays")
            .insert(id.to_owned());
        let backend = self.backend().clone();
        let mid = machines::id(id);
        let bound = tokio::task::spawn_blocking(move || {
            backend.listen(&mid, SocketAddr::from(([127, 0, 0, 1], RELAY_PORT)))
        })
        .await;
        let listener = match bound {
            Ok(Ok(l)) => tokio::net::TcpListener::from_std(l),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(e) => Err(std::io::Error::other(e)),
        };
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                self.relays().claimed.lock().expect("relays").remove(id);
                tracing::warn!(session = %id, error = %e, "could not start the proxy relay");
                return;
            }
        };
        let relay = Arc::new(Relay::new(proxy.upstream.clone()));
        let task = tokio::spawn(relay.serve(listener)).abort_handle();
        self.relays()
            .tasks
            .lock()
            .expect("relays")
            .insert(id.to_owned(), task);
        tracing::debug!(session = %id, "proxy relay started");
    }
}
