//! `/v1/sessions/{id}/services`: named background processes and their logs,
//! kept with the session (see `crate::services`): start a spec, start, stop,
//! restart a kept one by name, forget one, read and clear a log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use firepit_wire::api::{LogLine, ServiceInfo, ServiceSpec};
use firepit_wire::guest::OutputStream;
use serde::Deserialize;

use super::{JsonBody, QueryArgs, ndjson, valid};
use crate::{App, Error};

pub(super) async fn list(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Vec<ServiceInfo>>, Error> {
    Ok(Json(app.list_services(&id).await?))
}

pub(super) async fn start(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(spec): JsonBody<ServiceSpec>,
) -> Result<(StatusCode, Json<ServiceInfo>), Error> {
    valid::service_name(&spec.name)?;
    valid::command(&spec.command)?;
    valid::env(&spec.env)?;
    valid::cwd(spec.cwd.as_deref())?;
    let info = app.start_service(&id, spec).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StopQuery {
    #[serde(default)]
    forget: bool,
}

pub(super) async fn stop(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
    QueryArgs(q): QueryArgs<StopQuery>,
) -> Result<StatusCode, Error> {
    valid::service_name(&name)?;
    if q.forget {
        app.forget_service(&id, &name).await?;
    } else {
        app.stop_service(&id, &name).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn start_kept(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Json<ServiceInfo>, Error> {
    valid::service_name(&name)?;
    Ok(Json(app.start_stored_service(&id, &name).await?))
}

pub(super) async fn restart(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Json<ServiceInfo>, Error> {
    valid::service_name(&name)?;
    Ok(Json(app.restart_service(&id, &name).await?))
}

pub(super) async fn clear_log(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    valid::service_name(&name)?;
    app.clear_service_log(&id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsQuery {
    #[serde(default)]
    tail: Option<u64>,
    #[serde(default)]
    follow: bool,
}

pub(super) async fn logs(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
    QueryArgs(q): QueryArgs<LogsQuery>,
) -> Result<Response, Error> {
    valid::service_name(&name)?;
    let logs = app
        .guest(&id)
        .await?
        .service_logs(&name, q.tail, q.follow)
        .await
        .map_err(Error::Guest)?;
    let stream = futures::stream::unfold(logs, |mut logs| async move {
        match logs.next().await {
            Ok(Some(chunk)) => Some((
                LogLine {
                    stream: match chunk.stream {
                        OutputStream::Stdout => "stdout".into(),
                        OutputStream::Stderr => "stderr".into(),
                    },
                    text: String::from_utf8_lossy(&chunk.data).into_owned(),
                },
                logs,
            )),
            _ => None,
        }
    });
    Ok(ndjson(stream))
}
