//! `firepit exec ID -- CMD…`: streams the command's output and exits with its code.

use std::io::{Read, Write};
use std::ops::ControlFlow;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use firepit_wire::api::{Command, ExecEvent, ExecRequest};
use reqwest::Method;

use crate::cli::ExecArgs;
use crate::client::{Client, ndjson};

/// Builds the API request for `argv`.
pub fn request(
    argv: &[String],
    cwd: Option<String>,
    env: &[String],
    timeout: Option<f64>,
) -> Result<ExecRequest> {
    let env = env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--env {kv:?} is not KEY=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    let timeout_ms = match timeout {
        Some(t) if !(t.is_finite() && t > 0.0) => {
            bail!("--timeout must be a positive number of seconds")
        }
        Some(t) => Some((t * 1000.0) as u64),
        None => None,
    };
    Ok(ExecRequest {
        command: Command::Argv(argv.to_vec()),
        env,
        cwd,
        stdin_base64: None,
        timeout_ms,
    })
}

/// `firepit exec`
pub async fn exec(client: &Client, args: &ExecArgs) -> Result<i32> {
    let mut req = request(&args.command, args.cwd.clone(), &args.env, args.timeout)?;
    if args.stdin {
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .context("reading standard input")?;
        req.stdin_base64 = Some(B64.encode(input));
    }
    stream(client, &args.id, &req).await
}

/// Runs `req` in session `id`, copying its output here; returns the exit code
/// (128 + signal when a signal ended it).
pub async fn stream(client: &Client, id: &str, req: &ExecRequest) -> Result<i32> {
    let resp = client
        .send(
            client
                .request(Method::POST, &format!("/v1/sessions/{id}/exec"))
                .json(req),
        )
        .await?;
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let code = ndjson(resp, "exec stream", |event: ExecEvent| {
        Ok(match event {
            ExecEvent::Stdout { data } => {
                stdout.write_all(&B64.decode(data)?)?;
                stdout.flush()?;
                ControlFlow::Continue(())
            }
            ExecEvent::Stderr { data } => {
                stderr.write_all(&B64.decode(data)?)?;
                stderr.flush()?;
                ControlFlow::Continue(())
            }
            ExecEvent::Exit { status } => {
                if status.timed_out {
                    eprintln!("firepit: the command timed out and was killed");
                }
                ControlFlow::Break(match (status.code, status.signal) {
                    (Some(c), _) => c,
                    (None, Some(s)) => 128 + s,
                    (None, None) => 1,
                })
            }
            ExecEvent::Error { error } => bail!("{}", error.message),
        })
    })
    .await?;
    match code {
        Some(code) => Ok(code),
        None => bail!("the daemon ended the exec stream without an exit status"),
    }
}
