//! `exec`: a separate, non-interactive process with a timeout (not in the shared shell).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::ToolContext;
use crate::message::ToolDef;

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "exec",
        description: "Run a shell command as a separate non-interactive process (stdin is empty) and return its exit code, stdout and stderr. Use for builds, tests and inspection; it is killed after timeout_secs. The person does not see it: use `shell` for commands they should watch.",
        schema: json!({"type": "object", "properties": {
            "command": {"type": "string", "description": "A /bin/sh command line."},
            "cwd": {"type": "string", "description": "Working directory; default the repository."},
            "timeout_secs": {"type": "integer", "minimum": 1, "maximum": 3600, "description": "Default 120."}
        }, "required": ["command"]}),
    }
}

#[derive(Deserialize)]
pub(super) struct Args {
    command: String,
    cwd: Option<String>,
    timeout_secs: Option<u64>,
}

pub(super) async fn run(ctx: &ToolContext, a: Args) -> Result<String, String> {
    let timeout = Duration::from_secs(a.timeout_secs.unwrap_or(120).clamp(1, 3600));
    let line = match &a.cwd {
        Some(d) => format!("cd {} && {}", super::quote(&ctx.path(d)), a.command),
        None => a.command,
    };
    let (code, out, err) = ctx.sh(line, timeout).await?;
    let mut s = match code {
        Some(c) => format!("exit code {c}\n"),
        None => "killed by a signal\n".to_owned(),
    };
    if !out.is_empty() {
        s.push_str("--- stdout ---\n");
        s.push_str(&out);
        if !out.ends_with('\n') {
            s.push('\n');
        }
    }
    if !err.is_empty() {
        s.push_str("--- stderr ---\n");
        s.push_str(&err);
    }
    Ok(s)
}
