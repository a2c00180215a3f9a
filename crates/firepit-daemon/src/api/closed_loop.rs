//! `GET`/`PUT /v1/sessions/{id}/closed-loop`: whether problems the session
//! recognises wake its idle agent, and whether its preview's pages report
//! their errors (see [`crate::closed_loop`] and [`crate::preview`]).

use axum::Json;
use axum::extract::{Path, State};
use firepit_wire::api::{ClosedLoopChange, ClosedLoopSettings};

use super::JsonBody;
use crate::{App, Error};

pub(super) async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<ClosedLoopSettings>, Error> {
    app.store().session(&id)?;
    Ok(Json(app.closed_loop(&id)?))
}

pub(super) async fn put(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ClosedLoopChange>,
) -> Result<Json<ClosedLoopSettings>, Error> {
    app.store().session(&id)?;
    Ok(Json(app.change_closed_loop(&id, &req)?))
}
