//! `GET /v1/sessions/{id}/ports`: TCP ports listening inside the machine.

use axum::Json;
use axum::extract::{Path, State};
use firepit_wire::api::PortInfo;

use crate::{App, Error};

pub(super) async fn list(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Vec<PortInfo>>, Error> {
    Ok(Json(
        app.guest(&id)
            .await?
            .list_ports()
            .await
            .map_err(Error::Guest)?,
    ))
}
