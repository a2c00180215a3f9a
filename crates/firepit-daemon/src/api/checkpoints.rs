//! `/v1/sessions/{id}/checkpoints`, `/v1/sessions/{id}/fork` and
//! `/v1/sessions/{id}/image`: keep a session's files, list and remove what was
//! kept, return to it, branch from it, make an image of it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use firepit_wire::api::Session;
use firepit_wire::checkpoint::{Checkpoint, CreateCheckpoint, ForkSession, SaveImage};

use super::{JsonBody, valid};
use crate::checkpoints::BY_USER;
use crate::{App, Error};

pub(super) async fn create(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CreateCheckpoint>,
) -> Result<(StatusCode, Json<Checkpoint>), Error> {
    if let Some(name) = &req.name {
        valid::checkpoint_name(name)?;
    }
    let cp = app.checkpoint_session(&id, req.name, BY_USER).await?;
    Ok((StatusCode::CREATED, Json(cp)))
}

pub(super) async fn list(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Checkpoint>>, Error> {
    Ok(Json(app.session_checkpoints(&id).await?))
}

pub(super) async fn remove(
    State(app): State<App>,
    Path((id, checkpoint)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    valid::checkpoint_id(&checkpoint)?;
    app.remove_session_checkpoint(&id, &checkpoint).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn restore(
    State(app): State<App>,
    Path((id, checkpoint)): Path<(String, String)>,
) -> Result<Json<Session>, Error> {
    valid::checkpoint_id(&checkpoint)?;
    Ok(Json(app.restore_session(&id, &checkpoint).await?))
}

pub(super) async fn fork(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ForkSession>,
) -> Result<(StatusCode, Json<Session>), Error> {
    if let Some(from) = &req.from {
        valid::checkpoint_id(from)?;
    }
    let child = app.fork_session(&id, req.from.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(child)))
}

pub(super) async fn save_image(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SaveImage>,
) -> Result<(StatusCode, Json<firepit_wire::api::Image>), Error> {
    valid::image(&req.name)?;
    if let Some(from) = &req.from {
        valid::checkpoint_id(from)?;
    }
    let image = app.save_image(&id, &req.name, req.from.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(image)))
}
