//! The HTTP API: routes under `/v1`, one file per resource.
//!
//! Everything but `/v1/health` needs the API token (see [`crate::auth`]);
//! browsers may open WebSockets and change things only from the UI's own
//! origin ([`auth::same_origin_only`], on every route).
//! Errors answer with [`crate::Error`]'s status and a JSON
//! [`firepit_wire::api::ErrorBody`].

mod agent;
mod artifacts;
mod browser;
mod changes;
mod checkpoints;
mod closed_loop;
mod events;
mod exec;
mod files;
mod git;
mod home;
mod images;
mod ports;
mod pty;
mod services;
mod sessions;
pub(crate) mod shares;
mod triage;
mod ui;
pub(crate) mod valid;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use firepit_wire::api::Health;

use crate::{App, auth};

/// Body limit for JSON requests; uploads have their own, larger one. The
/// longest agent message (256 Ki characters) fits even when every character
/// is written as a JSON escape pair (`\ud83d\ude00`, 12 bytes).
const JSON_BODY_LIMIT: usize = 4 << 20;

/// Every route: method and path. `docs/api/openapi.yaml` must list exactly
/// these; a test checks both that and that each one is routed.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("GET", "/v1/images"),
    ("GET", "/v1/host"),
    ("GET", "/v1/sessions"),
    ("POST", "/v1/sessions"),
    ("GET", "/v1/sessions/{id}"),
    ("DELETE", "/v1/sessions/{id}"),
    ("PATCH", "/v1/sessions/{id}"),
    ("GET", "/v1/sessions/{id}/usage"),
    ("GET", "/v1/usage"),
    ("POST", "/v1/sessions/{id}/stop"),
    ("POST", "/v1/sessions/{id}/start"),
    ("POST", "/v1/sessions/{id}/exec"),
    ("GET", "/v1/sessions/{id}/files"),
    ("PUT", "/v1/sessions/{id}/files"),
    ("DELETE", "/v1/sessions/{id}/files"),
    ("GET", "/v1/sessions/{id}/files/list"),
    ("GET", "/v1/sessions/{id}/files/stat"),
    ("POST", "/v1/sessions/{id}/files/mkdir"),
    ("POST", "/v1/sessions/{id}/files/rename"),
    ("GET", "/v1/sessions/{id}/files/archive"),
    ("GET", "/v1/sessions/{id}/files/search"),
    ("GET", "/v1/sessions/{id}/changes"),
    ("GET", "/v1/sessions/{id}/events"),
    ("GET", "/v1/sessions/{id}/events/ws"),
    ("GET", "/v1/sessions/{id}/ports"),
    ("GET", "/v1/sessions/{id}/services"),
    ("POST", "/v1/sessions/{id}/services"),
    ("DELETE", "/v1/sessions/{id}/services/{name}"),
    ("POST", "/v1/sessions/{id}/services/{name}/start"),
    ("POST", "/v1/sessions/{id}/services/{name}/restart"),
    ("GET", "/v1/sessions/{id}/services/{name}/logs"),
    ("DELETE", "/v1/sessions/{id}/services/{name}/logs"),
    ("GET", "/v1/sessions/{id}/pty"),
    ("GET", "/v1/sessions/{id}/pty/{name}"),
    ("DELETE", "/v1/sessions/{id}/pty/{name}"),
    ("GET", "/v1/sessions/{id}/shares"),
    ("POST", "/v1/sessions/{id}/shares"),
    ("DELETE", "/v1/sessions/{id}/shares/{share}"),
    ("GET", "/v1/preview-auth"),
    ("GET", "/v1/sessions/{id}/agent"),
    ("POST", "/v1/sessions/{id}/agent"),
    ("POST", "/v1/sessions/{id}/agent/stop"),
    ("GET", "/v1/triage"),
    ("POST", "/v1/triage"),
    ("GET", "/v1/triage/{id}"),
    ("GET", "/v1/triage/{id}/progress"),
    ("GET", "/git/{id}/info/refs"),
    ("POST", "/git/{id}/git-upload-pack"),
    ("POST", "/git/{id}/git-receive-pack"),
    ("GET", "/v1/sessions/{id}/browser/live"),
    ("GET", "/v1/sessions/{id}/artifacts/{name}"),
    ("GET", "/v1/sessions/{id}/closed-loop"),
    ("PUT", "/v1/sessions/{id}/closed-loop"),
    ("GET", "/v1/sessions/{id}/checkpoints"),
    ("POST", "/v1/sessions/{id}/checkpoints"),
    ("DELETE", "/v1/sessions/{id}/checkpoints/{checkpoint}"),
    ("POST", "/v1/sessions/{id}/checkpoints/{checkpoint}/restore"),
    ("POST", "/v1/sessions/{id}/fork"),
    ("POST", "/v1/sessions/{id}/image"),
];

/// The daemon's router.
pub fn router(app: App) -> Router {
    let session = Router::new()
        .route(
            "/",
            get(sessions::get)
                .delete(sessions::destroy)
                .patch(sessions::update),
        )
        .route("/usage", get(sessions::usage))
        .route("/stop", post(sessions::stop))
        .route("/start", post(sessions::start))
        .route("/exec", post(exec::exec))
        .route(
            "/files",
            get(files::read)
                .put(files::write)
                .delete(files::remove)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/files/list", get(files::list))
        .route("/files/stat", get(files::stat))
        .route("/files/mkdir", post(files::mkdir))
        .route("/files/rename", post(files::rename))
        .route("/files/archive", get(files::archive))
        .route("/files/search", get(files::search))
        .route("/changes", get(changes::get))
        .route("/events", get(events::list))
        .route("/events/ws", get(events::websocket))
        .route("/ports", get(ports::list))
        .route("/services", get(services::list).post(services::start))
        .route("/services/{name}", axum::routing::delete(services::stop))
        .route("/services/{name}/start", post(services::start_kept))
        .route("/services/{name}/restart", post(services::restart))
        .route(
            "/services/{name}/logs",
            get(services::logs).delete(services::clear_log),
        )
        .route("/pty", get(pty::list))
        .route("/pty/{name}", get(pty::attach).delete(pty::close))
        .route("/agent", get(agent::status).post(agent::send))
        .route("/agent/stop", post(agent::stop))
        .route("/shares", get(shares::list).post(shares::create))
        .route("/shares/{share}", axum::routing::delete(shares::revoke))
        .route("/browser/live", get(browser::live))
        .route("/artifacts/{name}", get(artifacts::get))
        .route("/closed-loop", get(closed_loop::get).put(closed_loop::put))
        .route(
            "/checkpoints",
            get(checkpoints::list).post(checkpoints::create),
        )
        .route(
            "/checkpoints/{checkpoint}",
            axum::routing::delete(checkpoints::remove),
        )
        .route(
            "/checkpoints/{checkpoint}/restore",
            post(checkpoints::restore),
        )
        .route("/fork", post(checkpoints::fork))
        .route("/image", post(checkpoints::save_image));
    let v1 = Router::new()
        .route("/images", get(images::list))
        .route("/host", get(sessions::host))
        .route("/usage", get(sessions::usage_list))
        .route("/sessions", get(sessions::list).post(sessions::create))
        .nest("/sessions/{id}", session)
        .route("/preview-auth", get(shares::preview_auth))
        .route("/triage", get(triage::list).post(triage::create))
        .route("/triage/{id}", get(triage::get))
        .route("/triage/{id}/progress", get(triage::progress))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            auth::require_token,
        ))
        .route("/health", get(health));
    // The session git endpoint checks the token itself: git wants a
    // `WWW-Authenticate` challenge and sends the token as a basic password.
    let git = Router::new()
        .route("/info/refs", get(git::info_refs))
        .route("/git-upload-pack", post(git::upload_pack))
        .route("/git-receive-pack", post(git::receive_pack))
        .layer(DefaultBodyLimit::disable());
    // E2B's API (control plane and envd) on paths of its own; it checks its
    // own keys and tokens (headers only, so no cookie reaches it).
    let e2b = app.e2b().map(firepit_e2b::router).unwrap_or_default();
    Router::new()
        .route("/", get(home::home))
        .nest("/git/{id}", git)
        .nest("/v1", v1)
        .nest_service("/mcp", crate::mcp::service(app.clone()))
        .fallback(ui::fallback)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            auth::same_origin_only,
        ))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .with_state(app)
        .merge(e2b)
}

async fn health() -> Json<Health> {
    Json(Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// The WebSocket upgrade of a route, taken as a result so that the handler
/// checks the session and the rest of the request first, and a plain HTTP
/// request gets the API's error (426) rather than axum's text.
pub(crate) type Upgrade = Result<
    axum::extract::ws::WebSocketUpgrade,
    axum::extract::ws::rejection::WebSocketUpgradeRejection,
>;

/// A JSON body extractor whose rejections answer in the API's error shape;
/// the body must be a JSON object.
pub(crate) struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = crate::Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        // Read as JSON first: every body is an object (serde would also
        // take a struct from an array of its fields, which the document
        // does not allow).
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) if !v.is_object() => Err(crate::Error::BadRequest(
                "the body must be a JSON object".into(),
            )),
            Ok(Json(v)) => serde_json::from_value(v)
                .map(JsonBody)
                .map_err(|e| crate::Error::BadRequest(format!("the body is not valid: {e}"))),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(crate::Error::BodyTooLarge {
                    limit: JSON_BODY_LIMIT as u64,
                })
            }
            Err(rejection) => Err(crate::Error::BadRequest(rejection.body_text())),
        }
    }
}

/// Query extractor whose rejections answer in the API's error shape.
pub(crate) struct QueryArgs<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for QueryArgs<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = crate::Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryArgs(v)),
            Err(rejection) => Err(crate::Error::BadRequest(rejection.body_text())),
        }
    }
}

/// Turns a stream of serialisable items into an NDJSON response body.
pub(crate) fn ndjson<S, T>(stream: S) -> axum::response::Response
where
    S: futures::Stream<Item = T> + Send + 'static,
    T: serde::Serialize,
{
    use futures::StreamExt;
    let body = stream.map(|item| {
        let mut line = serde_json::to_vec(&item).expect("API types serialise");
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line))
    });
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from_stream(body))
        .expect("static response parts")
}
