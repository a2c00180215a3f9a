//! `firepit mcp`: MCP over stdio for local clients, bridged to the daemon's
//! streamable HTTP endpoint (see `firepit_mcp::bridge`). Standard output
//! carries MCP messages only; logs go to standard error.

use anyhow::{Context, Result};

use crate::settings::Target;

/// `firepit mcp`
pub async fn mcp(target: Target) -> Result<()> {
    let target = firepit_mcp::bridge::Target {
        url: format!("{}/mcp", target.url),
        token: target.token,
    };
    firepit_mcp::bridge::run(target, tokio::io::stdin(), tokio::io::stdout())
        .await
        .context("serving MCP over stdio")
}
