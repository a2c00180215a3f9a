//! `ports`: the listening TCP ports and their preview URLs.

use serde_json::json;

use super::ToolContext;
use crate::message::ToolDef;

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "ports",
        description: "List the TCP ports listening in the machine, each with the preview URL the person can open (servers must listen on 0.0.0.0 to be reachable).",
        schema: json!({"type": "object", "properties": {}}),
    }
}

pub(super) async fn run(ctx: &ToolContext) -> Result<String, String> {
    let ports = ctx
        .guest
        .list_ports()
        .await
        .map_err(|e| format!("listing ports: {e}"))?;
    if ports.is_empty() {
        return Ok("no TCP port is listening".into());
    }
    let mut out = String::new();
    for p in ports {
        let note = if p.addr.is_loopback() {
            " (loopback only: not reachable from the preview; listen on 0.0.0.0)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{} on {} → {}{note}\n",
            p.port,
            p.addr,
            (ctx.preview_url)(p.port)
        ));
    }
    Ok(out)
}
