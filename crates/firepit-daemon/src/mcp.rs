//! The daemon's side of the MCP server (`firepit_mcp`): [`DaemonHost`]
//! implements [`firepit_mcp::Host`] over the daemon's sessions, the agent's
//! tool contexts and the event log, and [`service`] is the streamable HTTP
//! transport `api::router` mounts at `/mcp`.
//!
//! `/mcp` takes the API token as `Authorization: Bearer` only, never the
//! login cookie: a page in a browser can then never act there with the
//! owner's credentials, whatever its origin (`auth::same_origin_only` runs
//! before it as on every route).
//!
//! Each session's [`ToolContext`] is kept while its guest connection lives,
//! so the shared shell's attachment (and what a running command printed)
//! carries from one MCP call to the next, across MCP sessions too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use firepit_agent::ToolContext;
use firepit_mcp::{Host, HostError, HostErrorKind};
use firepit_wire::api::{CreateSession, CreateShare, Session, Share};
use firepit_wire::checkpoint::Checkpoint;
use firepit_wire::events::Event;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::{App, Error};

/// The MCP server's view of the daemon.
pub struct DaemonHost {
    app: App,
    contexts: Mutex<HashMap<String, ToolContext>>,
}

impl DaemonHost {
    /// The host over `app`.
    pub fn new(app: App) -> DaemonHost {
        DaemonHost {
            app,
            contexts: Mutex::new(HashMap::new()),
        }
    }
}

fn host_error(e: Error) -> HostError {
    use axum::http::StatusCode;
    let kind = match (&e, e.status_and_code().0) {
        (Error::SessionNotRunning(_), _) => HostErrorKind::NotRunning,
        (_, StatusCode::NOT_FOUND) => HostErrorKind::NotFound,
        (_, StatusCode::BAD_REQUEST) => HostErrorKind::BadRequest,
        (_, StatusCode::CONFLICT) => HostErrorKind::Conflict,
        _ => HostErrorKind::Failed,
    };
    if kind == HostErrorKind::Failed {
        tracing::warn!(error = %crate::error::chain(&e), "an MCP tool call failed");
    }
    HostError {
        kind,
        message: e.to_api().message,
    }
}

impl Host for DaemonHost {
    async fn create_session(&self, req: CreateSession) -> Result<Session, HostError> {
        // The API's own checks, before anything is made.
        let checked = (|| {
            if let Some(image) = &req.image {
                crate::api::valid::image(image)?;
            }
            if let Some(repo) = &req.repo {
                crate::api::valid::repo(repo)?;
            }
            if let Some(branch) = &req.branch {
                crate::api::valid::branch(branch)?;
            }
            if let Some(name) = &req.name {
                crate::api::valid::session_name(name)?;
            }
            crate::api::valid::labels(&req.labels)?;
            Ok::<_, Error>(())
        })();
        checked.map_err(host_error)?;
        self.app.create_session(req).await.map_err(host_error)
    }

    fn sessions(&self) -> Result<Vec<Session>, HostError> {
        self.app.store().sessions().map_err(host_error)
    }

    async fn stop_session(&self, id: &str) -> Result<Session, HostError> {
        self.forget(id);
        self.app.stop_session(id).await.map_err(host_error)
    }

    async fn start_session(&self, id: &str) -> Result<Session, HostError> {
        self.app.start_session(id).await.map_err(host_error)
    }

    async fn destroy_session(&self, id: &str) -> Result<(), HostError> {
        self.forget(id);
        self.app.destroy_session(id).await.map_err(host_error)?;
        // Its share links go with it, as through the API.
        self.app.store().delete_shares(id).map_err(host_error)
    }

    async fn tools(&self, id: &str) -> Result<ToolContext, HostError> {
        {
            let mut map = self.contexts.lock().expect("contexts");
            map.retain(|_, c| !c.guest.is_closed());
            if let Some(c) = map.get(id) {
                return Ok(c.clone());
            }
        }
        let ctx = self.app.tool_context(id).await.map_err(host_error)?;
        let mut map = self.contexts.lock().expect("contexts");
        // Another call may have made one meanwhile: keep the first.
        Ok(map.entry(id.to_owned()).or_insert(ctx).clone())
    }

    fn share(&self, id: &str, port: u16, ttl_seconds: Option<u64>) -> Result<Share, HostError> {
        crate::api::shares::create_share(
            &self.app,
            id,
            CreateShare {
                port,
                ttl_seconds,
                path: None,
            },
        )
        .map_err(host_error)
    }

    fn events(&self, id: &str, since: u64, limit: usize) -> Result<Vec<Event>, HostError> {
        self.app.store().session(id).map_err(host_error)?;
        self.app.events().list(id, since, limit).map_err(host_error)
    }

    fn follow(&self, id: &str) -> Result<BoxStream<'static, Event>, HostError> {
        self.app.store().session(id).map_err(host_error)?;
        let now = self.app.events().last_seq(id).map_err(host_error)?;
        Ok(self
            .app
            .events()
            .subscribe(id, now)
            .take_while(|e| std::future::ready(e.is_ok()))
            .filter_map(|e| std::future::ready(e.ok()))
            .boxed())
    }

    // The checkpoint tools take the API's own checks and code path
    // (`api/checkpoints.rs`).
    async fn checkpoint(&self, id: &str, name: Option<String>) -> Result<Checkpoint, HostError> {
        if let Some(name) = &name {
            crate::api::valid::checkpoint_name(name).map_err(host_error)?;
        }
        self.app
            .checkpoint_session(id, name, crate::checkpoints::BY_USER)
            .await
            .map_err(host_error)
    }

    async fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, HostError> {
        self.app.session_checkpoints(id).await.map_err(host_error)
    }

    async fn restore(&self, id: &str, checkpoint: &str) -> Result<Session, HostError> {
        crate::api::valid::checkpoint_id(checkpoint).map_err(host_error)?;
        // The restore ends the session's guest connection: the next tool
        // call makes a new context.
        self.forget(id);
        let r = self.app.restore_session(id, checkpoint).await;
        self.forget(id);
        r.map_err(host_error)
    }

    async fn fork(&self, id: &str, from: Option<&str>) -> Result<Session, HostError> {
        if let Some(from) = from {
            crate::api::valid::checkpoint_id(from).map_err(host_error)?;
        }
        self.app.fork_session(id, from).await.map_err(host_error)
    }
}

impl DaemonHost {
    fn forget(&self, id: &str) {
        self.contexts.lock().expect("contexts").remove(id);
    }
}

/// Middleware on `/mcp`: the API token as a bearer, nothing else.
pub async fn bearer_only(State(app): State<App>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| {
            crate::auth::constant_time_eq(t.trim().as_bytes(), app.token().as_bytes())
        });
    if ok {
        next.run(req).await
    } else {
        let mut resp = Error::Unauthorized.into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"firepit\""),
        );
        resp
    }
}

/// The `/mcp` service: the streamable HTTP transport over [`DaemonHost`],
/// behind [`bearer_only`].
pub fn service(app: App) -> axum::routing::Router {
    let host = Arc::new(DaemonHost::new(app.clone()));
    let mcp = firepit_mcp::http::service(host, tokio_util::sync::CancellationToken::new());
    axum::routing::Router::new()
        .fallback_service(mcp)
        .layer(axum::middleware::from_fn_with_state(app, bearer_only))
}
