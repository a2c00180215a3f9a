//! `GET /v1/sessions/{id}/artifacts/{name}`: a session artifact (a
//! screenshot, say). `artifact` events name them.
//!
//! Artifacts are made from what a machine (a hostile one, possibly) shows
//! the agent, and are served from the UI's origin, so nothing in one may run
//! there: the type comes from a fixed list of inert ones
//! ([`crate::browsers::artifact_type`], else `application/octet-stream`,
//! sent as an attachment), `nosniff` keeps browsers from guessing another,
//! and `Content-Security-Policy: default-src 'none'; sandbox` leaves a
//! document nothing to run or load should one be opened anyway.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::{App, Error};

/// The policy every artifact (and every answer of the session git
/// endpoint) is served with: a document gets nothing to run or load.
pub(super) const INERT_CSP: &str = "default-src 'none'; sandbox";

pub(super) async fn get(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, Error> {
    app.store().session(&id)?;
    let (bytes, content_type) = app.artifact(&id, &name)?;
    // `name` passed the artifact name check: letters, digits, `.`, `_`, `-`.
    let disposition = if content_type == "application/octet-stream" {
        format!("attachment; filename=\"{name}\"")
    } else {
        "inline".to_owned()
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CONTENT_SECURITY_POLICY, INERT_CSP.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::HeaderName::from_static("cross-origin-resource-policy"),
                "same-origin".to_owned(),
            ),
            (header::CACHE_CONTROL, "private, no-cache".to_owned()),
        ],
        bytes,
    )
        .into_response())
}
