//! Resolves command-line arguments and the environment into what commands use:
//! where the daemon is and its token, and parsed machine options.

use std::path::Path;

use anyhow::{Context, Result, bail};
use firepit_wire::api::{CreateSession, Limits, NetworkMode};

use crate::cli::{MachineArgs, Network};

/// File in the data dir where `firepit up` records its URL.
pub const DAEMON_FILE: &str = "daemon.json";

/// How to reach the daemon.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL, e.g. `http://127.0.0.1:7777`.
    pub url: String,
    /// API token.
    pub token: String,
}

/// Finds the daemon: FIREPIT_URL and FIREPIT_TOKEN, else the data dir.
pub fn target(data_dir: &Path) -> Result<Target> {
    let url = match std::env::var("FIREPIT_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            let path = data_dir.join(DAEMON_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no running daemon recorded in {}; start one with `firepit up`, or set FIREPIT_URL and FIREPIT_TOKEN",
                    path.display()
                )
            })?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            v["url"].as_str().map(str::to_owned).with_context(|| {
                format!(
                    "{} has no `url`; restart the daemon with `firepit up`",
                    path.display()
                )
            })?
        }
    };
    let token = match std::env::var("FIREPIT_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => {
            let path = data_dir.join("token");
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "cannot read the API token from {}; set FIREPIT_TOKEN",
                        path.display()
                    )
                })?
                .trim()
                .to_owned()
        }
    };
    Ok(Target {
        url: url.trim_end_matches('/').to_owned(),
        token,
    })
}

/// Parses a size such as `512M`, `2G`, `1.5GiB` or `1048576` into bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size like 512M or 2G"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => bail!("unknown size unit {other:?} in {s:?}; use K, M, G or T"),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        bail!("{s:?} is not a usable size");
    }
    Ok(bytes as u64)
}

/// Parses a duration such as `90s`, `30m`, `1h`, `2d` or `45` (seconds) into seconds.
pub fn parse_duration(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 90s, 30m, 1h or 2d"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => bail!("unknown duration unit {other:?} in {s:?}; use s, m, h or d"),
    };
    match value.checked_mul(mult) {
        Some(secs) if secs > 0 => Ok(secs),
        _ => bail!("{s:?} is not a usable duration"),
    }
}

/// A repository as a person types it (`owner/name`, perhaps with `.git` or
/// spaces) in the exact `owner/name` form the API takes.
pub fn repo_name(typed: &str) -> Result<String> {
    let name: firepit_forge::RepoName =
        typed.parse().with_context(|| format!("--repo {typed:?}"))?;
    Ok(name.to_string())
}

/// Labels as typed (`key=value`, repeatable) as the API takes them; the
/// daemon checks the keys and values.
pub fn labels(typed: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for l in typed {
        let Some((k, v)) = l.split_once('=') else {
            bail!("--label {l:?} is not key=value");
        };
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            bail!("--label {k:?} is given twice");
        }
    }
    Ok(out)
}

/// The create request for these machine options.
pub fn create_request(m: &MachineArgs) -> Result<CreateSession> {
    Ok(CreateSession {
        image: m.image.clone(),
        limits: Limits {
            memory_bytes: m.memory.as_deref().map(parse_size).transpose()?,
            cpus: m.cpus,
            pids: m.pids,
            disk_bytes: m.disk.as_deref().map(parse_size).transpose()?,
        },
        network: match m.network {
            Network::Nat => NetworkMode::Nat,
            Network::None => NetworkMode::None,
        },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_key_value_pairs() {
        let l = labels(&["team=web".into(), "note=a=b".into(), "empty=".into()]).unwrap();
        assert_eq!(l["team"], "web");
        assert_eq!(l["note"], "a=b");
        assert_eq!(l["empty"], "");
        assert!(labels(&["team".into()]).is_err());
        assert!(labels(&["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("1h").unwrap(), 3600);
        assert_eq!(parse_duration("2d").unwrap(), 172_800);
        assert_eq!(parse_duration("45").unwrap(), 45);
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("2X").is_err());
        assert!(parse_size("0").is_err());
    }
}
