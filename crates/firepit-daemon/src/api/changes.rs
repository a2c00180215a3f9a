//! `GET /v1/sessions/{id}/changes?path=DIR&since=start|checkpoint`: what
//! differs in `DIR` (or the git repository it is in) from the session's
//! start or its last checkpoint (the default; the start before the first
//! one), per file ([`crate::workspace::changes`], whose module says
//! how the baseline is kept).

use axum::Json;
use axum::extract::{Path, State};
use firepit_wire::api::Changes;
use serde::Deserialize;

use super::{QueryArgs, valid};
use crate::workspace::Since;
use crate::{App, Error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangesQuery {
    path: String,
    since: Option<String>,
}

pub(super) async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<ChangesQuery>,
) -> Result<Json<Changes>, Error> {
    valid::path("path", &q.path)?;
    let since = match q.since.as_deref() {
        Some(s) => Since::parse(s)?,
        None => Since::default(),
    };
    let guest = app.guest(&id).await?;
    Ok(Json(
        crate::workspace::changes(&guest, &q.path, since).await?,
    ))
}
