//! `/v1/sessions`: create, list, get, stop, start, destroy.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use firepit_wire::api::{CreateSession, Session};

use super::{JsonBody, valid};
use crate::sessions::is_valid_id;
use crate::{App, Error};

fn checked(id: String) -> Result<String, Error> {
    if is_valid_id(&id) {
        Ok(id)
    } else {
        Err(Error::SessionNotFound(id))
    }
}

pub(super) async fn create(
    State(app): State<App>,
    JsonBody(req): JsonBody<CreateSession>,
) -> Result<(StatusCode, Json<Session>), Error> {
    if let Some(image) = &req.image {
        valid::image(image)?;
    }
    if let Some(repo) = &req.repo {
        valid::repo(repo)?;
    }
    if let Some(branch) = &req.branch {
        valid::branch(branch)?;
    }
    if let Some(t) = req.timeout_secs {
        valid::timeout_secs(t)?;
    }
    Ok((StatusCode::CREATED, Json(app.create_session(req).await?)))
}

pub(super) async fn list(State(app): State<App>) -> Result<Json<Vec<Session>>, Error> {
    Ok(Json(app.store().sessions()?))
}

pub(super) async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Session>, Error> {
    Ok(Json(app.store().session(&checked(id)?)?))
}

pub(super) async fn stop(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Session>, Error> {
    Ok(Json(app.stop_session(&checked(id)?).await?))
}

pub(super) async fn start(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Session>, Error> {
    Ok(Json(app.start_session(&checked(id)?).await?))
}

pub(super) async fn destroy(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let id = checked(id)?;
    app.destroy_session(&id).await?;
    // Its share links go with it.
    app.store().delete_shares(&id)?;
    Ok(StatusCode::NO_CONTENT)
}
