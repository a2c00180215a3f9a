//! `firepit-bench-mcp` (`cargo xtask bench-mcp`): an exec round trip through
//! MCP next to the same exec through the HTTP API, in one run.
//!
//! One daemon (served on 127.0.0.1 by `firepit_daemon::serve`, as `up`
//! does) and one machine from the `minimal` image. Each round runs
//! `echo ready` once as `POST /v1/sessions/{id}/exec` (reading the NDJSON
//! answer to its end) and once as an MCP `tools/call` of `exec` over the
//! streamable HTTP transport at `/mcp` (one initialized MCP session, reading
//! the answer to its end), alternating, so both see the same machine and the
//! same noise. Budget: the MCP path's p50 within 1.5× of the API's.
//!
//! Needs root and `FIREPIT_TEST_IMAGES` with a `minimal` image (set and
//! built by `cargo xtask bench-mcp`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use firepit_wire::api::{CreateSession, NetworkMode};
use serde_json::{Value, json};

/// Warm-up rounds (not counted), then measured ones.
const WARMUP: usize = 20;
const ROUNDS: usize = 300;
/// The budget: the MCP round trip's p50 over the API's.
const BUDGET: f64 = 1.5;

fn main() -> ExitCode {
    firepit_bench::main_async("firepit-bench-mcp", run)
}

fn pct(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

async fn run() -> Result<()> {
    let images = std::env::var_os("FIREPIT_TEST_IMAGES")
        .map(PathBuf::from)
        .context("FIREPIT_TEST_IMAGES is not set; run `cargo xtask bench-mcp`")?;
    let (_dir, app) = firepit_bench::throwaway_daemon(images, "minimal", "bm").await?;
    let session = app
        .create_session(CreateSession {
            network: NetworkMode::None,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(firepit_daemon::serve(listener, app.clone(), async {
        let _ = stopped.await;
    }));
    let result = measure(&base, app.token(), &session.id).await;
    let _ = app.destroy_session(&session.id).await;
    let _ = stop.send(());
    let _ = server.await;
    result
}

struct Mcp {
    http: reqwest::Client,
    url: String,
    token: String,
    session: String,
    version: String,
    next: u64,
}

impl Mcp {
    async fn open(http: &reqwest::Client, base: &str, token: &str) -> Result<Mcp> {
        let url = format!("{base}/mcp");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "firepit-bench-mcp", "version": "1"}}});
        let resp = http
            .post(&url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await?;
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .context("initialize gave no Mcp-Session-Id")?
            .to_owned();
        let answer = message(&resp.text().await?)?;
        let version = answer["result"]["protocolVersion"]
            .as_str()
            .context("initialize gave no protocol version")?
            .to_owned();
        let mcp = Mcp {
            http: http.clone(),
            url,
            token: token.to_owned(),
            session,
            version,
            next: 1,
        };
        mcp.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?
            .text()
            .await?;
        Ok(mcp)
    }

    async fn post(&self, body: &Value) -> Result<reqwest::Response> {
        Ok(self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", &self.version)
            .json(body)
            .send()
            .await?)
    }

    /// One `tools/call`: its result.
    async fn call(&mut self, name: &str, args: Value) -> Result<Value> {
        self.next += 1;
        let body = json!({"jsonrpc": "2.0", "id": self.next, "method": "tools/call",
            "params": {"name": name, "arguments": args}});
        let text = self.post(&body).await?.text().await?;
        let m = message(&text)?;
        if m["result"]["isError"] == true || m.get("error").is_some() {
            bail!("{name} failed: {m}");
        }
        Ok(m["result"].clone())
    }
}

/// The JSON-RPC message of an answer: JSON, or the last `data:` of an SSE body.
fn message(body: &str) -> Result<Value> {
    if let Ok(v) = serde_json::from_str(body) {
        return Ok(v);
    }
    let data = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|d| !d.is_empty())
        .with_context(|| format!("no message in {body:?}"))?;
    Ok(serde_json::from_str(data)?)
}

async fn api_exec(http: &reqwest::Client, base: &str, token: &str, id: &str) -> Result<()> {
    let body = http
        .post(format!("{base}/v1/sessions/{id}/exec"))
        .bearer_auth(token)
        .json(&json!({"command": {"shell": "echo ready"}}))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    if !body.contains("exit") {
        bail!("the exec did not end: {body}");
    }
    Ok(())
}

async fn measure(base: &str, token: &str, id: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let mut mcp = Mcp::open(&http, base, token).await?;
    let args = json!({"session": id, "command": "echo ready"});
    let mut api = Vec::new();
    let mut over_mcp = Vec::new();
    for round in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        api_exec(&http, base, token, id).await?;
        let a = t.elapsed();
        let t = Instant::now();
        let r = mcp.call("exec", args.clone()).await?;
        let m = t.elapsed();
        if !r["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("ready"))
        {
            bail!("the MCP exec did not print: {r}");
        }
        if round >= WARMUP {
            api.push(ms(a));
            over_mcp.push(ms(m));
        }
    }
    let (a50, a95) = (pct(&mut api, 50.0), pct(&mut api, 95.0));
    let (m50, m95) = (pct(&mut over_mcp, 50.0), pct(&mut over_mcp, 95.0));
    let ratio = m50 / a50;
    println!(
        "MCP benchmark: `echo ready` in one `minimal` machine, {ROUNDS} rounds (after {WARMUP} warm-up), alternating"
    );
    println!();
    println!("| path | p50 | p95 |");
    println!("|---|---|---|");
    println!("| HTTP API `POST /v1/sessions/{{id}}/exec` (NDJSON) | {a50:.2} ms | {a95:.2} ms |");
    println!("| MCP `tools/call` exec over streamable HTTP | {m50:.2} ms | {m95:.2} ms |");
    println!();
    println!(
        "MCP / API at p50: {ratio:.2}× (budget {BUDGET}×): {}",
        if ratio <= BUDGET { "within" } else { "OVER" }
    );
    if ratio > BUDGET {
        bail!("the MCP round trip is {ratio:.2}× the API's, over the {BUDGET}× budget");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
