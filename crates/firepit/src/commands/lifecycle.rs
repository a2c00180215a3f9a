//! `firepit new`, `ls`, `rename`, `stop`, `start`, `rm` and `run`.

use std::io::Write;

use anyhow::{Context, Result};
use firepit_wire::api::{Session, UpdateSession};
use reqwest::Method;

use crate::cli::{NewArgs, RenameArgs, RunArgs};
use crate::client::Client;
use crate::settings::{create_request, labels, parse_duration, repo_name};

/// `firepit new`: prints the new session's id.
pub async fn new(client: &Client, args: &NewArgs) -> Result<()> {
    let mut req = create_request(&args.machine)?;
    req.repo = args.repo.as_deref().map(repo_name).transpose()?;
    req.branch = args.branch.clone();
    req.timeout_secs = args
        .timeout
        .as_deref()
        .map(parse_duration)
        .transpose()
        .context("--timeout")?;
    req.name = args.name.clone();
    req.labels = labels(&args.labels)?;
    let session = client.create(&req).await?;
    if args.postgres
        && let Err(e) = crate::commands::postgres::run_service(client, &session.id).await
    {
        // The session stays: its id is what the person needs to look into it.
        println!("{}", session.id);
        return Err(e.context(format!(
            "session {} is made, but PostgreSQL did not start in it",
            session.id
        )));
    }
    println!("{}", session.id);
    if args.entrypoint {
        super::entrypoint::start(client, &session.id, &session.image).await?;
    }
    Ok(())
}

/// Sessions `ls` asks for at a time.
const LS_PAGE: usize = 500;

/// `firepit ls`: every session, read a page at a time (so a daemon with
/// thousands answers each request as fast as one with a few), printed as
/// each page comes.
pub async fn ls(client: &Client) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<12} {:<9} {:<10} {:>8} {:>5} {:>6} {:<7} {:<6} {:<8} NAME",
        "ID", "STATE", "IMAGE", "MEMORY", "CPUS", "DISK", "NETWORK", "AGE", "STOPS"
    )?;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/sessions?limit={LS_PAGE}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let resp = client.send(client.request(Method::GET, &path)).await?;
        let next = resp
            .headers()
            .get("firepit-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let sessions: Vec<Session> = resp.json().await.context("reading sessions")?;
        print_sessions(&mut out, sessions)?;
        match next {
            // A cursor that does not move on would loop for ever.
            Some(n) if cursor.as_deref() != Some(n.as_str()) => cursor = Some(n),
            _ => return Ok(()),
        }
    }
}

fn print_sessions(out: &mut impl Write, sessions: Vec<Session>) -> Result<()> {
    let now = firepit_util::now();
    for s in sessions {
        writeln!(
            out,
            "{:<12} {:<9} {:<10} {:>8} {:>5} {:>6} {:<7} {:<6} {:<8} {}",
            s.id,
            s.state.as_str(),
            s.image,
            s.limits
                .memory_bytes
                .map_or("-".into(), |m| format!("{}M", m >> 20)),
            s.limits.cpus.map_or("-".into(), |c| c.to_string()),
            // `-`: a session made before disk limits, or a daemon without them.
            s.limits.disk_bytes.map_or("-".into(), size),
            format!("{:?}", s.network).to_lowercase(),
            age(now - s.created_at),
            // When its timeout stops it; `-`: no timeout.
            s.stop_at
                .map_or("-".into(), |t| format!("in {}", age(t - now))),
            // The name, then the labels: `web app [team=web]`.
            name_and_labels(&s),
        )?;
    }
    Ok(())
}

/// A session's name and labels as `ls` shows them; `-` when it has neither.
fn name_and_labels(s: &Session) -> String {
    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    match (&s.name, labels.is_empty()) {
        (None, true) => "-".into(),
        (Some(n), true) => n.clone(),
        (None, false) => format!("[{}]", labels.join(" ")),
        (Some(n), false) => format!("{n} [{}]", labels.join(" ")),
    }
}

/// `firepit rename ID [NAME] [--label k=v]… [--no-labels]`: prints the id and its name.
pub async fn rename(client: &Client, args: &RenameArgs) -> Result<()> {
    let labels = if args.no_labels {
        Some(Default::default())
    } else if args.labels.is_empty() {
        None
    } else {
        Some(labels(&args.labels)?)
    };
    if args.name.is_none() && labels.is_none() {
        anyhow::bail!("give a new name, --label key=value or --no-labels");
    }
    let resp = client
        .send(
            client
                .request(Method::PATCH, &format!("/v1/sessions/{}", args.id))
                .json(&UpdateSession {
                    name: args.name.clone(),
                    labels,
                }),
        )
        .await?;
    let s: Session = resp.json().await.context("reading the session")?;
    println!("{} {}", s.id, name_and_labels(&s));
    Ok(())
}

/// A size as `ls` shows it: `10G`, `1.5G`, `64M`.
fn size(bytes: u64) -> String {
    const G: u64 = 1 << 30;
    if bytes >= G {
        // In u128: a limit near u64::MAX (the API allows it) must not overflow.
        let tenths = (u128::from(bytes) * 10 / u128::from(G)) as u64;
        if tenths.is_multiple_of(10) {
            format!("{}G", tenths / 10)
        } else {
            format!("{}.{}G", tenths / 10, tenths % 10)
        }
    } else {
        format!("{}M", bytes >> 20)
    }
}

fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `firepit stop|start ID`
pub async fn transition(client: &Client, id: &str, verb: &str) -> Result<()> {
    let resp = client
        .send(client.request(Method::POST, &format!("/v1/sessions/{id}/{verb}")))
        .await?;
    let s: Session = resp.json().await?;
    println!("{} {}", s.id, s.state.as_str());
    Ok(())
}

/// `firepit rm ID`
pub async fn rm(client: &Client, id: &str) -> Result<()> {
    client.destroy(id).await?;
    println!("{id} destroyed");
    Ok(())
}

/// `firepit run`: new, exec, rm. Returns the command's exit code.
pub async fn run(client: &Client, args: &RunArgs) -> Result<i32> {
    let session = client.create(&create_request(&args.machine)?).await?;
    let req = crate::commands::exec::request(&args.command, None, &[], None)?;
    let result = tokio::select! {
        r = crate::commands::exec::stream(client, &session.id, &req) => r,
        _ = tokio::signal::ctrl_c() => Ok(130),
    };
    let removed = client.destroy(&session.id).await;
    let code = result?;
    removed.with_context(|| format!("destroying session {}", session.id))?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::size(10 << 30), "10G");
        assert_eq!(super::size(3 << 29), "1.5G");
        assert_eq!(super::size(64 << 20), "64M");
        assert_eq!(super::size(u64::MAX), "17179869183.9G");
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(super::age(5), "5s");
        assert_eq!(super::age(120), "2m");
        assert_eq!(super::age(7200), "2h");
        assert_eq!(super::age(-3), "0s");
    }
}
