//! `firepit events ID [--since N] [-f]`: a session's event log, one line per
//! event (seq, time, type, summary). `-f` follows it over Server-Sent Events
//! and reconnects from the last seq it printed if the stream breaks (a daemon
//! restart), so no event is missed or printed twice.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use firepit_wire::api::ErrorBody;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use crate::cli::EventsArgs;
use crate::client::Client;

/// Events asked for per page without `-f`.
const PAGE: usize = 1000;
/// Reconnection attempts (one a second) before `-f` gives up.
const RECONNECTS: u32 = 60;

/// `firepit events`
pub async fn events(client: &Client, args: &EventsArgs) -> Result<()> {
    let mut since = args.since;
    if !args.follow {
        loop {
            let resp = client
                .send(
                    client
                        .request(Method::GET, &format!("/v1/sessions/{}/events", args.id))
                        .query(&[("since", since), ("limit", PAGE as u64)]),
                )
                .await?;
            let events: Vec<Value> = resp.json().await.context("reading the events")?;
            for e in &events {
                since = print(e)?.max(since);
            }
            if events.len() < PAGE {
                return Ok(());
            }
        }
    }
    follow_log(client, &args.id, since, &mut |e| {
        print(e).map(|_| Flow::Continue)
    })
    .await
}

/// What a follower of the log does after an event.
pub enum Flow {
    /// Wait for the next one.
    Continue,
    /// Stop following.
    Stop,
}

/// Follows session `id`'s log from after `since`, handing each event to
/// `handle` until it says stop; reconnects from the last event seen if the
/// stream breaks (a daemon restart).
pub async fn follow_log(
    client: &Client,
    id: &str,
    mut since: u64,
    handle: &mut dyn FnMut(&Value) -> Result<Flow>,
) -> Result<()> {
    let mut failures = 0;
    let mut connected = false;
    loop {
        match follow(client, id, &mut since, &mut connected, handle).await {
            Ok(true) => return Ok(()),
            Ok(false) => failures = 0,
            // The daemon answered with an error (no such session), or was
            // never there: final.
            Err(e) if e.downcast_ref::<Answered>().is_some() || !connected => return Err(e),
            Err(e) => {
                failures += 1;
                if failures > RECONNECTS {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// An error answer from the daemon (its message), as opposed to a broken connection.
#[derive(Debug)]
struct Answered(String);

impl std::fmt::Display for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Answered {}

/// Hands events from the SSE stream to `handle` until it ends (`Ok(false)`) or
/// `handle` says stop (`Ok(true)`); `since` follows the last seq handled, and
/// `connected` becomes true once the daemon accepted the stream.
async fn follow(
    client: &Client,
    id: &str,
    since: &mut u64,
    connected: &mut bool,
    handle: &mut dyn FnMut(&Value) -> Result<Flow>,
) -> Result<bool> {
    let req = client
        .request(Method::GET, &format!("/v1/sessions/{id}/events"))
        .header("accept", "text/event-stream")
        .header("last-event-id", since.to_string());
    let resp = match req.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            let msg = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| format!("the daemon answered {status}: {text}"));
            return Err(Answered(msg).into());
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot reach the firepit daemon at {}",
                client.url()
            )));
        }
    };
    *connected = true;
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut data = String::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.context("the event stream broke off")?);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() {
                    let event: Value =
                        serde_json::from_str(&data).context("reading the event stream")?;
                    data.clear();
                    let seq = event["seq"].as_u64().unwrap_or(0);
                    if seq <= *since {
                        continue;
                    }
                    *since = seq;
                    if let Flow::Stop = handle(&event)? {
                        return Ok(true);
                    }
                }
            } else if let Some(rest) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
            // `id:`, `event:` and `:` comments (keep-alives) need nothing.
        }
    }
    Ok(false)
}

/// Prints one event as a line; returns its seq.
fn print(e: &Value) -> Result<u64> {
    let Some(seq) = e["seq"].as_u64() else {
        bail!("an event without a seq: {e}");
    };
    let kind = e["type"].as_str().unwrap_or("?");
    let line = format!(
        "{seq:>6}  {}  {kind:<15}  {}",
        time(e["time_ms"].as_i64().unwrap_or(0)),
        summary(kind, e)
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", line.trim_end())?;
    out.flush()?;
    Ok(seq)
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC.
fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        ms.rem_euclid(1000)
    )
}

/// A short description of an event's fields.
fn summary(kind: &str, e: &Value) -> String {
    let s = |k: &str| match &e[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    match kind {
        "session_state" => match e["error"].as_str() {
            Some(err) => format!("{}: {err}", s("state")),
            None => s("state"),
        },
        "port_opened" => format!("{}:{} {}", s("addr"), s("port"), s("url")),
        "port_closed" => format!("{}:{}", s("addr"), s("port")),
        "service_started" => match e["pid"].as_u64() {
            Some(pid) => format!("{} (pid {pid})", s("name")),
            None => s("name"),
        },
        "service_exited" => {
            let status = &e["status"];
            let how = match (status["code"].as_i64(), status["signal"].as_i64()) {
                (Some(c), _) => format!("code {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "?".into(),
            };
            format!("{} ({how})", s("name"))
        }
        "note" => s("text"),
        _ => {
            // Types this CLI does not know: their fields as `key=value`.
            let Some(map) = e.as_object() else {
                return String::new();
            };
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "seq" | "session" | "time_ms" | "type"))
                .map(|(k, v)| match v {
                    Value::String(t) => format!("{k}={t}"),
                    v => format!("{k}={v}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00.000");
        assert_eq!(time(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00.000");
    }

    #[test]
    fn summaries_say_what_happened() {
        let e: Value = serde_json::json!({"seq": 1, "type": "port_opened", "port": 8000,
            "addr": "127.0.0.1", "url": "http://8000-a.localhost:7777/"});
        assert_eq!(
            summary("port_opened", &e),
            "127.0.0.1:8000 http://8000-a.localhost:7777/"
        );
        let e: Value = serde_json::json!({"seq": 2, "type": "service_exited", "name": "web",
            "status": {"code": null, "signal": 15}});
        assert_eq!(summary("service_exited", &e), "web (signal 15)");
        let e: Value = serde_json::json!({"seq": 3, "type": "agent_said", "text": "hi"});
        assert_eq!(summary("agent_said", &e), "text=hi");
    }
}
