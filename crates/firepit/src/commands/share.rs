//! `firepit share` and `firepit unshare`: signed, expiring links to a
//! session's preview port.

use anyhow::{Context, Result, bail};
use firepit_wire::api::{CreateShare, Share};
use reqwest::Method;

use crate::cli::ShareArgs;
use crate::client::Client;

/// `firepit share ID PORT [--ttl 1h]`: prints the link, then its id and expiry on stderr.
pub async fn share(client: &Client, args: &ShareArgs) -> Result<()> {
    let ttl = parse_ttl(&args.ttl)?;
    let resp = client
        .send(
            client
                .request(Method::POST, &format!("/v1/sessions/{}/shares", args.id))
                .json(&CreateShare {
                    port: args.port,
                    ttl_seconds: Some(ttl),
                    path: args.path.clone(),
                }),
        )
        .await?;
    let share: Share = resp.json().await.context("reading the share")?;
    println!("{}", share.url);
    eprintln!(
        "share {} works for {}; `firepit unshare {} {}` revokes it",
        share.id, args.ttl, share.session, share.id
    );
    Ok(())
}

/// `firepit unshare ID SHARE`
pub async fn unshare(client: &Client, id: &str, share: &str) -> Result<()> {
    client
        .send(client.request(Method::DELETE, &format!("/v1/sessions/{id}/shares/{share}")))
        .await?;
    println!("share {share} revoked");
    Ok(())
}

/// `90`, `90s`, `30m`, `1h`, `7d` → seconds.
fn parse_ttl(text: &str) -> Result<u64> {
    let text = text.trim();
    let (num, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("--ttl {text:?} is not a duration like 90s, 30m, 1h or 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("--ttl {text:?} is not a duration like 90s, 30m, 1h or 7d"),
    };
    Ok(n.saturating_mul(unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("90s").unwrap(), 90);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("7d").unwrap(), 604800);
        for bad in ["", "h", "1y", "1.5h", "-1h"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
