//! `/v1/sessions/{id}/shares`: signed, expiring, revocable links to one
//! preview port; `/v1/preview-auth`: the owner's cookie handshake (see
//! [`crate::preview`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use firepit_preview::PreviewHost;
use firepit_preview::token::{Claims, Kind};
use firepit_wire::api::{CreateShare, Share};
use firepit_wire::events::EventKind;
use rand::Rng;
use serde::Deserialize;

use super::{JsonBody, QueryArgs};
use crate::store::shares::ShareRow;
use crate::{App, Error, preview};

/// A share's life when the request gives none.
const DEFAULT_TTL: u64 = 3600;
/// The longest a share may live.
const MAX_TTL: u64 = 30 * 24 * 3600;

/// The port the daemon is reached on, for links: the one preview URLs name
/// (`Config::public_port`), as in the port list.
fn daemon_port(app: &App) -> Option<u16> {
    Some(app.config().public_port)
}

fn to_api(app: &App, row: &ShareRow, port: Option<u16>) -> Share {
    let token = app.previews().signer().sign(&Claims {
        kind: Kind::Share,
        session: row.session.clone(),
        port: row.port,
        expires_at: row.expires_at,
        share: row.id.clone(),
    });
    let host = PreviewHost {
        port: row.port,
        session: row.session.clone(),
    };
    Share {
        id: row.id.clone(),
        session: row.session.clone(),
        port: row.port,
        url: if row.path == "/" {
            format!(
                "{}/__firepit/share?token={}",
                preview::preview_origin(app, &host, port),
                preview::encode(&token)
            )
        } else {
            format!(
                "{}/__firepit/share?token={}&next={}",
                preview::preview_origin(app, &host, port),
                preview::encode(&token),
                preview::encode(&row.path)
            )
        },
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked: row.revoked,
        path: row.path.clone(),
    }
}

/// Appends to the session's event log; the share is made (or revoked)
/// whether or not that works, so a failure is logged, not returned.
fn record(app: &App, session: &str, kind: EventKind) {
    if let Err(e) = app.events().append(session, kind) {
        tracing::warn!(session, error = %crate::error::chain(&e), "recording a share event failed");
    }
}

pub(super) async fn create(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CreateShare>,
) -> Result<(StatusCode, Json<Share>), Error> {
    Ok((StatusCode::CREATED, Json(create_share(&app, &id, req)?)))
}

/// Makes a share link (the API's and the MCP server's one way to).
pub(crate) fn create_share(app: &App, id: &str, req: CreateShare) -> Result<Share, Error> {
    let id = id.to_owned();
    app.store().session(&id)?;
    if req.port == 0 {
        return Err(Error::BadRequest("port must be 1 to 65535".into()));
    }
    let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TTL);
    if !(1..=MAX_TTL).contains(&ttl) {
        return Err(Error::BadRequest(format!(
            "ttl_seconds must be 1 to {MAX_TTL} (30 days), not {ttl}"
        )));
    }
    let path = req.path.unwrap_or_else(|| "/".into());
    super::valid::share_path(&path)?;
    let now = firepit_preview::token::now();
    let row = ShareRow {
        id: rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(12)
            .map(|b| char::from(b).to_ascii_lowercase())
            .collect(),
        session: id.clone(),
        port: req.port,
        created_at: now,
        expires_at: now + ttl as i64,
        revoked: false,
        path,
    };
    app.store().insert_share(&row)?;
    record(
        app,
        &id,
        EventKind::ShareCreated {
            id: row.id.clone(),
            port: row.port,
            expires_at: row.expires_at,
        },
    );
    tracing::info!(session = %id, share = %row.id, port = row.port, "share link made");
    Ok(to_api(app, &row, daemon_port(app)))
}

pub(super) async fn list(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Share>>, Error> {
    app.store().session(&id)?;
    let port = daemon_port(&app);
    Ok(Json(
        app.store()
            .shares(&id)?
            .iter()
            .map(|r| to_api(&app, r, port))
            .collect(),
    ))
}

pub(super) async fn revoke(
    State(app): State<App>,
    Path((id, share)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    app.store().session(&id)?;
    if !app.store().revoke_share(&id, &share)? {
        return Err(Error::ShareNotFound { session: id, share });
    }
    tracing::info!(session = %id, share = %share, "share link revoked");
    record(&app, &id, EventKind::ShareRevoked { id: share });
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthArgs {
    next: String,
}

pub(super) async fn preview_auth(
    State(app): State<App>,
    QueryArgs(args): QueryArgs<AuthArgs>,
) -> Result<Response, Error> {
    // The form is the document's (`pattern: "^https?://"`: previews are on
    // the public origin's scheme); whether the URL is a preview of this
    // firepit depends on its domain: 404 when not.
    let pattern = app
        .config()
        .preview_url("<session>", 8000)
        .replacen("8000", "<port>", 1);
    if !(args.next.starts_with("http://") || args.next.starts_with("https://")) {
        return Err(Error::BadRequest(format!(
            "next must be a preview URL of this firepit ({pattern}…)"
        )));
    }
    let to = preview::handshake_url(&app, &args.next).ok_or_else(|| Error::NotAPreview {
        next: args.next.clone(),
        pattern,
    })?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, to),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response())
}
