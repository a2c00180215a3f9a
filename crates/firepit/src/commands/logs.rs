//! `firepit logs ID [SERVICE] [-f]`: a session's services, or one service's log.

use std::io::Write;
use std::ops::ControlFlow;

use anyhow::{Context, Result};
use firepit_wire::api::{LogLine, ServiceInfo, ServiceState};
use reqwest::Method;

use crate::cli::LogsArgs;
use crate::client::{Client, ndjson};

/// `firepit logs`
pub async fn logs(client: &Client, args: &LogsArgs) -> Result<()> {
    match &args.service {
        None => list(client, &args.id).await,
        Some(name) => log(client, &args.id, name, args.follow).await,
    }
}

pub(crate) async fn list(client: &Client, id: &str) -> Result<()> {
    let resp = client
        .send(client.request(Method::GET, &format!("/v1/sessions/{id}/services")))
        .await?;
    let services: Vec<ServiceInfo> = resp.json().await.context("reading the services")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<20} {:<8} {:>7} {:>8} LAST EXIT",
        "SERVICE", "STATE", "PID", "RESTARTS"
    )?;
    for s in services {
        let state = match s.state {
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::Exited => "exited",
            ServiceState::Stopped => "stopped",
        };
        let last_exit = match s.last_exit {
            None => "-".to_owned(),
            Some(e) => match (e.code, e.signal) {
                (Some(c), _) => format!("code {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                (None, None) => "?".to_owned(),
            },
        };
        writeln!(
            out,
            "{:<20} {:<8} {:>7} {:>8} {}",
            s.name,
            state,
            s.pid.map_or("-".to_owned(), |p| p.to_string()),
            s.restarts,
            last_exit
        )?;
    }
    Ok(())
}

pub(crate) async fn log(client: &Client, id: &str, name: &str, follow: bool) -> Result<()> {
    let resp = client
        .send(
            client
                .request(
                    Method::GET,
                    &format!(
                        "/v1/sessions/{id}/services/{}/logs",
                        crate::commands::service::seg(name)
                    ),
                )
                .query(&[("follow", follow)]),
        )
        .await?;
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    ndjson(resp, "log stream", |line: LogLine| {
        let out: &mut dyn Write = if line.stream == "stderr" {
            &mut stderr
        } else {
            &mut stdout
        };
        out.write_all(line.text.as_bytes())?;
        out.flush()?;
        Ok(ControlFlow::<()>::Continue(()))
    })
    .await?;
    Ok(())
}
