//! `service_start`, `service_stop`, `service_logs`: named long-running processes (the
//! app server) supervised by the guest.
//!
//! The session keeps the services the agent starts, as it keeps the person's
//! ([`SessionHooks::kept_service`](super::hooks::SessionHooks::kept_service)):
//! they come back when the session starts again. The service named `run` is
//! the project's run command (the UI's Run button restarts it): started
//! without a command, the kept spec runs.

use std::collections::BTreeMap;
use std::time::Duration;

use firepit_guest_client::{Command, ErrorKind, RestartPolicy, ServiceSpec};
use serde::Deserialize;
use serde_json::json;

use super::ToolContext;
use crate::message::ToolDef;

pub(super) fn def_start() -> ToolDef {
    ToolDef {
        name: "service_start",
        description: "Start a named long-running process (an app server, a watcher) in the background; it is not restarted on exit, and it starts again when the session does. Returns its first second of logs. Stop it before starting it again. The service named 'run' is the project's run command (the person's Run button restarts it): give it the command that runs the app; without a command, 'run' starts the one the session keeps.",
        schema: json!({"type": "object", "properties": {
            "name": {"type": "string", "description": "e.g. 'web', or 'run' for the project's run command"},
            "command": {"type": "string", "description": "A /bin/sh command line, e.g. 'mix phx.server'. May be left out to start the kept service of this name."},
            "cwd": {"type": "string", "description": "Default the repository."},
            "env": {"type": "object", "additionalProperties": {"type": "string"}}
        }, "required": ["name"]}),
    }
}

pub(super) fn def_stop() -> ToolDef {
    ToolDef {
        name: "service_stop",
        description: "Stop a named service (SIGTERM, then SIGKILL).",
        schema: json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
    }
}

pub(super) fn def_logs() -> ToolDef {
    ToolDef {
        name: "service_logs",
        description: "The end of a service's output (stdout and stderr) and its state.",
        schema: json!({"type": "object", "properties": {
            "name": {"type": "string"},
            "tail_bytes": {"type": "integer", "minimum": 1, "description": "Default 8000."}
        }, "required": ["name"]}),
    }
}

#[derive(Deserialize)]
pub(super) struct StartArgs {
    name: String,
    command: Option<String>,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
pub(super) struct NameArgs {
    name: String,
}

#[derive(Deserialize)]
pub(super) struct LogsArgs {
    name: String,
    tail_bytes: Option<u64>,
}

pub(super) async fn start(ctx: &ToolContext, a: StartArgs) -> Result<String, String> {
    let spec = match a.command {
        Some(command) => ServiceSpec {
            name: a.name.clone(),
            command: Command::Shell(command),
            env: a.env.into_iter().collect(),
            cwd: Some(ctx.path(a.cwd.as_deref().unwrap_or(""))),
            restart: RestartPolicy::Never,
        },
        None => ctx
            .hooks
            .as_ref()
            .and_then(|h| h.kept_service(&a.name))
            .ok_or_else(|| {
                format!(
                    "the session keeps no service named {:?}: give its command",
                    a.name
                )
            })?,
    };
    let info = match ctx.guest.service_start(spec.clone()).await {
        Ok(i) => i,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(format!(
                "a service named {:?} exists already; service_stop it first (or read service_logs)",
                a.name
            ));
        }
        Err(e) => return Err(format!("starting {}: {e}", a.name)),
    };
    if let Some(h) = &ctx.hooks {
        h.service_started(&spec);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let logs = tail(ctx, &a.name, 4000).await.unwrap_or_default();
    Ok(format!(
        "started service {:?} (pid {}). Its output so far:\n{logs}",
        a.name,
        info.pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "?".into())
    ))
}

pub(super) async fn stop(ctx: &ToolContext, a: NameArgs) -> Result<String, String> {
    ctx.guest
        .service_stop(&a.name)
        .await
        .map_err(|e| format!("stopping {}: {e}", a.name))?;
    if let Some(h) = &ctx.hooks {
        h.service_stopped(&a.name);
    }
    Ok(format!("stopped service {:?}", a.name))
}

async fn tail(ctx: &ToolContext, name: &str, bytes: u64) -> Result<String, String> {
    let out = ctx
        .guest
        .service_logs(name, Some(bytes), false)
        .await
        .map_err(|e| format!("reading the logs of {name}: {e}"))?
        .read_tail(usize::try_from(bytes).unwrap_or(usize::MAX).min(1 << 20))
        .await
        .map_err(|e| format!("reading the logs of {name}: {e}"))?;
    Ok(super::clean_terminal(&String::from_utf8_lossy(&out)))
}

pub(super) async fn logs(ctx: &ToolContext, a: LogsArgs) -> Result<String, String> {
    let services = ctx
        .guest
        .service_list()
        .await
        .map_err(|e| format!("listing services: {e}"))?;
    let Some(info) = services.iter().find(|s| s.name == a.name) else {
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "no service named {:?}; the services are: {names:?}",
            a.name
        ));
    };
    let log = tail(ctx, &a.name, a.tail_bytes.unwrap_or(8000)).await?;
    Ok(format!(
        "service {:?}: {:?}{}\n{log}",
        a.name,
        info.state,
        info.last_exit
            .map(|e| format!(", last exit {:?}", e.code))
            .unwrap_or_default()
    ))
}
