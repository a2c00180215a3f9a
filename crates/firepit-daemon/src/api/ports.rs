//! `GET /v1/sessions/{id}/ports`: TCP ports listening inside the machine, with
//! their preview URLs.

use axum::Json;
use axum::extract::{Path, State};
use firepit_wire::api::Port;

use crate::{App, Error};

pub(super) async fn list(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Port>>, Error> {
    let ports = app
        .guest(&id)
        .await?
        .list_ports()
        .await
        .map_err(Error::Guest)?;
    Ok(Json(
        ports
            .into_iter()
            .filter(|p| !crate::preview::is_firepit_port(&app, &id, p.port))
            .map(|p| Port {
                port: p.port,
                addr: p.addr,
                url: app.config().preview_url(&id, p.port),
            })
            .collect(),
    ))
}
