//! `GET /v1/sessions/{id}/artifacts/{name}`: a session artifact (a
//! screenshot, say) with its content type. `artifact` events name them.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::{App, Error};

pub(super) async fn get(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, Error> {
    app.store().session(&id)?;
    let (bytes, content_type) = app.artifact(&id, &name)?;
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}
