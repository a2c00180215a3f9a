//! The daemon's side of the E2B door (`firepit-e2b`): sessions and guests
//! given to it through its [`firepit_e2b::Host`] trait, and the door opened
//! once per daemon (its kept state under `<data dir>/e2b`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use firepit_e2b::{Error as E2bError, HostErrorKind, SessionView};
use firepit_guest_client::GuestClient;
use firepit_wire::api::{CreateSession, Session, SessionState};
use futures::future::BoxFuture;

use crate::{App, Error};

/// The daemon as the E2B door sees it.
struct Door(App);

fn view(s: &Session) -> SessionView {
    SessionView {
        id: s.id.clone(),
        image: s.image.clone(),
        running: s.state == SessionState::Running,
        created_at: s.created_at,
        cpus: s.limits.cpus,
        memory_bytes: s.limits.memory_bytes,
        disk_bytes: s.limits.disk_bytes,
        stop_at: s.stop_at,
    }
}

fn host_error(e: Error) -> E2bError {
    let kind = match (&e, e.status_and_code().0) {
        (Error::SessionNotRunning(_), _) => HostErrorKind::NotRunning,
        (_, StatusCode::NOT_FOUND) => HostErrorKind::NotFound,
        (_, StatusCode::BAD_REQUEST) => HostErrorKind::BadRequest,
        _ => HostErrorKind::Internal,
    };
    E2bError::Host {
        kind,
        message: crate::error::chain(&e),
    }
}

impl firepit_e2b::Host for Door {
    fn token(&self) -> &str {
        self.0.token()
    }

    fn state_dir(&self) -> PathBuf {
        self.0.config().data_dir.join("e2b")
    }

    fn max_upload_bytes(&self) -> u64 {
        self.0.config().max_upload_bytes
    }

    fn sandbox_domain(&self, headers: &HeaderMap) -> String {
        let config = self.0.config();
        match (&config.public_origin, crate::preview::host_port(headers)) {
            (Some(p), _) => format!("{}{}", config.domain, p.port_suffix()),
            (None, Some(port)) => format!("{}:{port}", config.domain),
            (None, None) => config.domain.clone(),
        }
    }

    fn create(
        &self,
        image: Option<String>,
        timeout_secs: u64,
    ) -> BoxFuture<'_, Result<SessionView, E2bError>> {
        Box::pin(async move {
            if let Some(i) = &image {
                crate::api::valid::image(i).map_err(host_error)?;
            }
            let req = CreateSession {
                image,
                limits: Default::default(),
                network: Default::default(),
                repo: None,
                branch: None,
                timeout_secs: Some(timeout_secs),
                ..Default::default()
            };
            self.0
                .create_session(req)
                .await
                .map(|s| view(&s))
                .map_err(host_error)
        })
    }

    fn set_stop_at(&self, id: &str, stop_at: Option<i64>) -> Result<(), E2bError> {
        self.0.set_stop_at(id, stop_at).map_err(host_error)
    }

    fn session(&self, id: &str) -> Result<SessionView, E2bError> {
        self.0
            .store()
            .session(id)
            .map(|s| view(&s))
            .map_err(host_error)
    }

    fn sessions(&self) -> Result<Vec<SessionView>, E2bError> {
        Ok(self
            .0
            .store()
            .sessions()
            .map_err(host_error)?
            .iter()
            .map(view)
            .collect())
    }

    fn stop<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), E2bError>> {
        Box::pin(async move { self.0.stop_session(id).await.map(drop).map_err(host_error) })
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), E2bError>> {
        Box::pin(async move { self.0.start_session(id).await.map(drop).map_err(host_error) })
    }

    fn destroy<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), E2bError>> {
        Box::pin(async move {
            self.0.destroy_session(id).await.map_err(host_error)?;
            self.0.store().delete_shares(id).map_err(host_error)
        })
    }

    fn guest<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<GuestClient, E2bError>> {
        Box::pin(async move { self.0.guest(id).await.map_err(host_error) })
    }
}

impl App {
    /// The E2B door, opened on first use; `None`, logged, when its state
    /// dir cannot be opened.
    pub fn e2b(&self) -> Option<firepit_e2b::E2b> {
        if let Some(e) = self.0.e2b.get() {
            return Some(e.clone());
        }
        match firepit_e2b::E2b::open(Arc::new(Door(self.clone()))) {
            Ok(e) => Some(self.0.e2b.get_or_init(|| e).clone()),
            Err(e) => {
                tracing::error!(error = %e, "the E2B API is off: its state dir could not be opened");
                None
            }
        }
    }
}
