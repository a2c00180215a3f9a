//! `/v1/images`: the images machines can be made from.

use axum::Json;
use axum::extract::State;
use firepit_wire::api::Image;

use crate::{App, Error};

pub(super) async fn list(State(app): State<App>) -> Result<Json<Vec<Image>>, Error> {
    let images = app.images().clone();
    let found = tokio::task::spawn_blocking(move || images.list()).await??;
    Ok(Json(found.iter().map(crate::machines::api_image).collect()))
}
