//! `firepit ports ID`: the TCP ports listening in a session, with preview URLs.

use std::io::Write;

use anyhow::{Context, Result};
use firepit_wire::api::Port;
use reqwest::Method;

use crate::client::Client;

/// `firepit ports`
pub async fn ports(client: &Client, id: &str) -> Result<()> {
    let resp = client
        .send(client.request(Method::GET, &format!("/v1/sessions/{id}/ports")))
        .await?;
    let ports: Vec<Port> = resp.json().await.context("reading the ports")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<6} {:<24} URL", "PORT", "ADDRESS")?;
    for p in ports {
        writeln!(out, "{:<6} {:<24} {}", p.port, p.addr, p.url)?;
    }
    Ok(())
}
