//! `firepit agent ID "message"`: sends the session's agent a message and
//! streams what it does (its text as it is written, tool calls and their
//! results) until the run ends. `--follow` watches without sending; `--stop`
//! stops the run. Ctrl-C stops watching, not the agent.

use std::io::Write;

use anyhow::{Context, Result, bail};
use firepit_wire::api::{AgentMessage, AgentSent, AgentStatus, AgentStopped};
use reqwest::Method;
use serde_json::Value;

use crate::cli::AgentArgs;
use crate::client::Client;
use crate::commands::events::{Flow, follow_log};

/// Longest tool argument or result line shown.
const SHOWN: usize = 160;

/// `firepit agent`; returns the exit code (1 when the run ended in an error).
pub async fn agent(client: &Client, args: &AgentArgs) -> Result<i32> {
    let base = format!("/v1/sessions/{}/agent", args.id);
    if args.stop {
        let resp = client
            .send(client.request(Method::POST, &format!("{base}/stop")))
            .await?;
        let stopped: AgentStopped = resp.json().await?;
        println!(
            "{}",
            if stopped.stopped {
                "stopped"
            } else {
                "the agent was not running"
            }
        );
        return Ok(0);
    }
    let resp = client.send(client.request(Method::GET, &base)).await?;
    let status: AgentStatus = resp.json().await.context("reading the agent's status")?;
    let (message, until_done) = match (&args.message, args.follow) {
        (Some(m), _) => (Some(m.clone()), !args.follow),
        (None, true) => (None, false),
        (None, false) => bail!("give a message, or --follow to watch, or --stop"),
    };
    if !status.configured {
        bail!(
            "{}",
            status
                .help
                .unwrap_or_else(|| "no model is configured".into())
        );
    }
    if let Some(message) = message {
        let resp = client
            .send(
                client
                    .request(Method::POST, &base)
                    .json(&AgentMessage { message }),
            )
            .await?;
        let sent: AgentSent = resp.json().await?;
        if sent.status == "interjected" {
            eprintln!("firepit: the agent is busy; your message reaches it at its next step");
        }
    }
    let mut view = View::default();
    let watched = {
        let mut show = |e: &Value| view.show(e, until_done);
        let follow = follow_log(client, &args.id, status.last_seq, &mut show);
        tokio::select! {
            r = follow => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    };
    match watched {
        Some(r) => r?,
        None => {
            eprintln!(
                "\nfirepit: stopped watching; the agent goes on (`firepit agent {} --stop` stops it)",
                args.id
            );
            return Ok(130);
        }
    }
    Ok(if view.failed { 1 } else { 0 })
}
/// Renders agent events as a conversation.
#[derive(Default)]
struct View {
    /// The cursor is in the middle of streamed assistant text.
    mid_text: bool,
    failed: bool,
}

impl View {
    fn show(&mut self, e: &Value, until_done: bool) -> Result<Flow> {
        if e["type"] != "agent" {
            return Ok(Flow::Continue);
        }
        let item = &e["item"];
        let mut out = std::io::stdout().lock();
        match item["type"].as_str().unwrap_or("") {
            "assistant_delta" => {
                write!(out, "{}", item["text"].as_str().unwrap_or(""))?;
                self.mid_text = true;
            }
            "assistant_message" => {
                self.end_text(&mut out)?;
                for call in item["tool_calls"].as_array().into_iter().flatten() {
                    let name = call["name"].as_str().unwrap_or("?");
                    let args = one_line(call["arguments"].as_str().unwrap_or(""));
                    writeln!(out, "→ {name} {args}")?;
                }
            }
            "tool_result" => {
                let output = item["output"].as_str().unwrap_or("");
                let mark = if item["is_error"] == true {
                    "✗"
                } else {
                    "←"
                };
                writeln!(
                    out,
                    "  {mark} {} ({} bytes)",
                    one_line(output),
                    output.len()
                )?;
            }
            "user_message" if item["interjection"] == true => {
                self.end_text(&mut out)?;
                writeln!(out, "» {}", one_line(item["text"].as_str().unwrap_or("")))?;
            }
            "error" => {
                self.end_text(&mut out)?;
                writeln!(
                    out,
                    "agent error: {}",
                    item["message"].as_str().unwrap_or("")
                )?;
            }
            "run_finished" | "run_stopped" => {
                self.end_text(&mut out)?;
                let reason = item["reason"].as_str().unwrap_or("stopped");
                self.failed = reason == "error";
                writeln!(out, "— {reason}")?;
                out.flush()?;
                if until_done {
                    return Ok(Flow::Stop);
                }
            }
            _ => {}
        }
        out.flush()?;
        Ok(Flow::Continue)
    }

    fn end_text(&mut self, out: &mut impl Write) -> Result<()> {
        if self.mid_text {
            writeln!(out)?;
            self.mid_text = false;
        }
        Ok(())
    }
}

/// The first line of `s`, cut to [`SHOWN`] characters.
fn one_line(s: &str) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() > SHOWN {
        format!("{}…", line.chars().take(SHOWN).collect::<String>())
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_cuts() {
        assert_eq!(one_line("\n  hello\nworld"), "hello");
        assert_eq!(one_line(&"x".repeat(500)).chars().count(), SHOWN + 1);
    }

    #[test]
    fn a_run_ends_the_view_when_asked() {
        let mut v = View::default();
        let done = serde_json::json!({"type": "agent", "item": {"type": "run_finished", "reason": "error"}});
        assert!(matches!(v.show(&done, true).unwrap(), Flow::Stop));
        assert!(v.failed);
        assert!(matches!(v.show(&done, false).unwrap(), Flow::Continue));
        let other = serde_json::json!({"type": "port_opened"});
        assert!(matches!(v.show(&other, true).unwrap(), Flow::Continue));
    }
}
