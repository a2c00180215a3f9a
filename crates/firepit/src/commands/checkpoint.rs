//! `firepit checkpoint`, `checkpoints`, `checkpoint rm`, `restore`, `fork` and
//! `image save`.

use std::io::Write;

use anyhow::{Context, Result, bail};
use firepit_wire::api::Session;
use firepit_wire::checkpoint::{Checkpoint, CreateCheckpoint, ForkSession, SaveImage};
use reqwest::Method;

use crate::cli::{CheckpointArgs, CheckpointCommand, ForkArgs, RestoreArgs};
use crate::client::Client;

/// A checkpoint id as the daemon takes it, checked before it goes into a URL.
fn checked(checkpoint: &str) -> Result<&str> {
    firepit_machine::CheckpointId::new(checkpoint)?;
    Ok(checkpoint)
}

/// `firepit checkpoint ID [--name NAME]` (prints the id) and `firepit checkpoint rm ID CP`.
pub async fn checkpoint(client: &Client, args: CheckpointArgs) -> Result<()> {
    if let Some(CheckpointCommand::Rm { id, checkpoint }) = args.command {
        let checkpoint = checked(&checkpoint)?;
        client
            .send(client.request(
                Method::DELETE,
                &format!("/v1/sessions/{id}/checkpoints/{checkpoint}"),
            ))
            .await?;
        return Ok(());
    }
    let Some(id) = args.id else {
        bail!("give a session id: `firepit checkpoint ID`");
    };
    let resp = client
        .send(
            client
                .request(Method::POST, &format!("/v1/sessions/{id}/checkpoints"))
                .json(&CreateCheckpoint { name: args.name }),
        )
        .await?;
    let cp: Checkpoint = resp.json().await.context("reading the checkpoint")?;
    println!("{}", cp.id);
    Ok(())
}

/// `firepit checkpoints ID`
pub async fn list(client: &Client, id: &str) -> Result<()> {
    let resp = client
        .send(client.request(Method::GET, &format!("/v1/sessions/{id}/checkpoints")))
        .await?;
    let all: Vec<Checkpoint> = resp.json().await.context("reading the checkpoints")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<14} {:<19} {:>8} {:<6} {:<14} NAME",
        "ID", "TIME (UTC)", "SIZE", "BY", "PARENT"
    )?;
    for c in all {
        writeln!(
            out,
            "{:<14} {:<19} {:>8} {:<6} {:<14} {}",
            c.id,
            utc(c.created_at_ms / 1000),
            size(c.size_bytes),
            c.made_by,
            c.parent.as_deref().unwrap_or("-"),
            c.name.as_deref().unwrap_or(""),
        )?;
    }
    Ok(())
}

/// `firepit restore ID CP`
pub async fn restore(client: &Client, args: &RestoreArgs) -> Result<()> {
    checked(&args.checkpoint)?;
    let resp = client
        .send(client.request(
            Method::POST,
            &format!(
                "/v1/sessions/{}/checkpoints/{}/restore",
                args.id, args.checkpoint
            ),
        ))
        .await?;
    let s: Session = resp.json().await.context("reading the session")?;
    eprintln!(
        "firepit: session {} is back at checkpoint {} ({})",
        s.id,
        args.checkpoint,
        s.state.as_str()
    );
    Ok(())
}

/// `firepit fork ID [--from CP]`: prints the new session's id.
pub async fn fork(client: &Client, args: &ForkArgs) -> Result<()> {
    if let Some(from) = &args.from {
        checked(from)?;
    }
    let resp = client
        .send(
            client
                .request(Method::POST, &format!("/v1/sessions/{}/fork", args.id))
                .json(&ForkSession {
                    from: args.from.clone(),
                }),
        )
        .await?;
    let s: Session = resp.json().await.context("reading the new session")?;
    println!("{}", s.id);
    Ok(())
}

/// `firepit image save ID NAME [--from CP]`
pub async fn save_image(client: &Client, id: &str, name: &str, from: Option<String>) -> Result<()> {
    if let Some(cp) = &from {
        checked(cp)?;
    }
    eprintln!("firepit: copying session {id}'s files into image {name}…");
    let resp = client
        .send(
            client
                .request(Method::POST, &format!("/v1/sessions/{id}/image"))
                .json(&SaveImage {
                    name: name.to_owned(),
                    from,
                }),
        )
        .await?;
    let image: firepit_wire::api::Image = resp.json().await.context("reading the image")?;
    println!(
        "saved image {} ({}); `firepit new --image {}` makes sessions from it",
        image.name,
        size(image.size_bytes),
        image.name
    );
    Ok(())
}

/// A size: `512K`, `3.2M`, `1.5G`.
fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    for (unit, name) in UNITS {
        if bytes >= unit {
            let tenths = u128::from(bytes) * 10 / u128::from(unit);
            return format!("{}.{}{name}", tenths / 10, tenths % 10);
        }
    }
    format!("{bytes}B")
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times() {
        assert_eq!(size(100), "100B");
        assert_eq!(size(1536), "1.5K");
        assert_eq!(size(200 << 20), "200.0M");
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_825_600), "2000-02-29 12:00:00");
    }
}
