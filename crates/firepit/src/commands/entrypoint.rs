//! `firepit new --entrypoint`: the image's entrypoint (an OCI image's `Entrypoint` and
//! `Cmd`) started as the session's service `entrypoint`, through the public API: the run
//! configuration is read from the machine (`/.firepit/config.json`), the service started
//! with the image's working directory (its environment is already every process's) as the
//! image's `User`.

use anyhow::{Context, Result, bail};
use firepit_wire::guest::{Command, ServiceSpec};
use firepit_wire::image_config::{self, ImageConfig};
use reqwest::Method;

use crate::client::Client;

/// Starts the entrypoint of session `id`'s image as the service `entrypoint`.
pub async fn start(client: &Client, id: &str, image: &str) -> Result<()> {
    let resp = client
        .send(
            client
                .request(Method::GET, &format!("/v1/sessions/{id}/files"))
                .query(&[("path", image_config::PATH)]),
        )
        .await
        .with_context(|| format!("image {image} has no run configuration (not an OCI image?)"))?;
    let bytes = resp
        .bytes()
        .await
        .context("reading the run configuration")?;
    let config: ImageConfig =
        serde_json::from_slice(&bytes).context("the image's run configuration does not parse")?;
    let argv = config.argv();
    if argv.is_empty() {
        bail!("image {image} has neither Entrypoint nor Cmd to start");
    }
    let spec = ServiceSpec {
        name: "entrypoint".into(),
        command: Command::Argv(firepit_oci::build::as_user(config.user.as_deref(), &argv)),
        env: Vec::new(),
        cwd: config.cwd.clone(),
        restart: Default::default(),
    };
    client
        .send(
            client
                .request(Method::POST, &format!("/v1/sessions/{id}/services"))
                .json(&spec),
        )
        .await
        .context("starting the entrypoint")?;
    eprintln!(
        "firepit: started the entrypoint as service `entrypoint`: {}",
        argv.join(" ")
    );
    Ok(())
}
