//! `GET`/`PUT /v1/sessions/{id}/closed-loop`: whether problems the session
//! recognises wake its idle agent (see [`crate::closed_loop`]).

use axum::Json;
use axum::extract::{Path, State};
use firepit_wire::api::ClosedLoopSettings;

use super::JsonBody;
use crate::{App, Error};

pub(super) async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<ClosedLoopSettings>, Error> {
    app.store().session(&id)?;
    Ok(Json(ClosedLoopSettings {
        wake_agent: app.wake_agent(&id)?,
    }))
}

pub(super) async fn put(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ClosedLoopSettings>,
) -> Result<Json<ClosedLoopSettings>, Error> {
    app.store().session(&id)?;
    app.set_wake_agent(&id, req.wake_agent)?;
    Ok(Json(req))
}
