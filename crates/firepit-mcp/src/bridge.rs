//! `firepit mcp`: MCP over stdio for local clients, as a bridge to the
//! daemon's streamable HTTP endpoint (`/mcp`), so there is one server (the
//! daemon's) and the stdio side holds no state of its own but the MCP
//! session's id.
//!
//! Each line on standard input is one JSON-RPC message. `initialize` is sent
//! first and waited for (its answer carries the `Mcp-Session-Id` the rest
//! send); notifications and responses are sent in order; requests are sent
//! each on its own task, so a long `exec` does not hold up the next call.
//! An answer is JSON or an SSE stream; every message in it goes to standard
//! output as one line. After `initialize`, a `GET` stream carries what the
//! server sends by itself (notifications) and is opened again when it ends.
//!
//! Nothing a client sends ends the bridge: a line that is not JSON answers a
//! parse error, a daemon that cannot be reached or refuses answers the
//! request with an error saying so. When the daemon forgot the session (it
//! restarted, or the session was idle too long) the bridge replays the
//! client's `initialize` once and sends the request again. End of input ends
//! the MCP session (`DELETE`) and the bridge.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::Error;

/// The longest line (one message) read from standard input.
pub const MAX_LINE: usize = 64 << 20;
/// The longest SSE event taken from the daemon.
const MAX_EVENT: usize = 64 << 20;
/// Header names of the streamable HTTP transport.
const SESSION: &str = "mcp-session-id";
const VERSION: &str = "mcp-protocol-version";

/// Where the daemon's `/mcp` is and its token.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint, e.g. `http://127.0.0.1:7777/mcp`.
    pub url: String,
    /// The API token.
    pub token: String,
}

#[derive(Default)]
struct Session {
    id: Option<String>,
    version: Option<String>,
    /// The client's `initialize`, replayed when the daemon forgot the session.
    initialize: Option<Value>,
}

#[derive(Clone)]
struct Bridge {
    http: reqwest::Client,
    target: Arc<Target>,
    session: Arc<Mutex<Session>>,
    out: mpsc::UnboundedSender<String>,
}

/// Bridges `input` and `output` to the daemon until `input` ends.
pub async fn run(
    target: Target,
    input: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<(), Error> {
    let mut headers = HeaderMap::new();
    let bearer =
        HeaderValue::from_str(&format!("Bearer {}", target.token)).map_err(|_| Error::BadToken)?;
    headers.insert(AUTHORIZATION, bearer);
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(Error::Client)?;
    let (out, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            output.write_all(line.as_bytes()).await?;
            output.write_all(b"\n").await?;
            output.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let bridge = Bridge {
        http,
        target: Arc::new(target),
        session: Arc::default(),
        out,
    };
    let mut lines = BufReader::new(input);
    let mut buf = Vec::new();
    let mut stream: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        buf.clear();
        let n = (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|source| Error::Io {
                what: "reading standard input",
                source,
            })?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_LINE && !buf.ends_with(b"\n") {
            bridge.error(
                Value::Null,
                -32700,
                format!("a message is longer than {MAX_LINE} bytes"),
            );
            // Skip the rest of that line.
            loop {
                buf.clear();
                let n = (&mut lines)
                    .take(1 << 20)
                    .read_until(b'\n', &mut buf)
                    .await
                    .map_err(|source| Error::Io {
                        what: "reading standard input",
                        source,
                    })?;
                if n == 0 || buf.ends_with(b"\n") {
                    break;
                }
            }
            continue;
        }
        let line = String::from_utf8_lossy(&buf);
        if line.trim().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(line.trim()) {
            Ok(v) => v,
            Err(e) => {
                bridge.error(Value::Null, -32700, format!("not JSON: {e}"));
                continue;
            }
        };
        let is_request = msg.get("method").is_some() && msg.get("id").is_some();
        if msg.get("method").and_then(Value::as_str) == Some("initialize") {
            bridge.session.lock().expect("session").initialize = Some(msg.clone());
            bridge.send(msg, false).await;
            let has_session = bridge.session.lock().expect("session").id.is_some();
            if has_session && stream.is_none() {
                let b = bridge.clone();
                stream = Some(tokio::spawn(async move { b.listen().await }));
            }
        } else if is_request {
            let b = bridge.clone();
            tokio::spawn(async move { b.send(msg, true).await });
        } else {
            bridge.send(msg, true).await;
        }
    }
    if let Some(s) = stream {
        s.abort();
    }
    bridge.close().await;
    drop(bridge);
    match writer.await {
        Ok(Ok(())) | Err(_) => Ok(()),
        Ok(Err(source)) => Err(Error::Io {
            what: "writing standard output",
            source,
        }),
    }
}

impl Bridge {
    fn write(&self, msg: &Value) {
        // Compact JSON: one line whatever the daemon's formatting.
        let _ = self.out.send(msg.to_string());
    }

    /// Answers request `id` (if it is one) with a JSON-RPC error.
    fn error(&self, id: Value, code: i64, message: String) {
        if id.is_null() && code != -32700 {
            tracing::warn!("{message}");
            return;
        }
        self.write(
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        );
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let s = self.session.lock().expect("session");
        let mut r = self.http.request(method, &self.target.url);
        if let Some(id) = &s.id {
            r = r.header(SESSION, id);
        }
        if let Some(v) = &s.version {
            r = r.header(VERSION, v);
        }
        r
    }

    /// Posts one message and writes what comes back; `replay`: when the
    /// daemon no longer knows the session, initialize again once and retry.
    async fn send(&self, msg: Value, replay: bool) {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let is_initialize = msg.get("method").and_then(Value::as_str) == Some("initialize");
        let resp = match self.post(&msg).await {
            Ok(r) => r,
            Err(e) => {
                return self.error(
                    id,
                    -32603,
                    format!(
                        "cannot reach the firepit daemon at {}: {e}; is `firepit up` running?",
                        self.target.url
                    ),
                );
            }
        };
        let status = resp.status();
        let had_session = self.session.lock().expect("session").id.is_some();
        if status == StatusCode::NOT_FOUND && had_session && replay && !is_initialize {
            if self.reinitialize().await {
                return Box::pin(self.send(msg, false)).await;
            }
            return self.error(
                id,
                -32603,
                "the firepit daemon forgot this MCP session and did not take a new one; restart the MCP client".into(),
            );
        }
        if is_initialize && status.is_success() {
            let sid = resp
                .headers()
                .get(SESSION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            self.session.lock().expect("session").id = sid;
        }
        self.answer(resp, &id, is_initialize).await;
    }

    async fn post(&self, msg: &Value) -> Result<reqwest::Response, reqwest::Error> {
        self.request(reqwest::Method::POST)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(msg.to_string())
            .send()
            .await
    }

    /// Writes the messages of an answer to standard output.
    async fn answer(&self, resp: reqwest::Response, id: &Value, is_initialize: bool) {
        let status = resp.status();
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return;
        }
        let sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let body = firepit_agent::context::bound_output(&body, 1000);
            let hint = if status == StatusCode::UNAUTHORIZED {
                " (the token is wrong: set FIREPIT_TOKEN or --data-dir to the daemon's)"
            } else {
                ""
            };
            return self.error(
                id.clone(),
                -32603,
                format!("the firepit daemon answered {status}{hint}: {body}"),
            );
        }
        if sse {
            self.events(resp, is_initialize).await;
        } else {
            match resp.json::<Value>().await {
                Ok(v) => self.message(v, is_initialize),
                Err(e) => self.error(
                    id.clone(),
                    -32603,
                    format!("a bad answer from the daemon: {e}"),
                ),
            }
        }
    }

    fn message(&self, v: Value, is_initialize: bool) {
        if is_initialize
            && let Some(version) = v.pointer("/result/protocolVersion").and_then(Value::as_str)
        {
            self.session.lock().expect("session").version = Some(version.to_owned());
        }
        match v {
            Value::Array(batch) => batch.iter().for_each(|m| self.write(m)),
            v => self.write(&v),
        }
    }

    /// Reads an SSE body, writing each event's message.
    async fn events(&self, resp: reqwest::Response, is_initialize: bool) {
        let mut body = resp.bytes_stream();
        let mut line = Vec::new();
        let mut data = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { return };
            for &b in chunk.iter() {
                if b != b'\n' {
                    if line.len() < MAX_EVENT {
                        line.push(b);
                    }
                    continue;
                }
                let l =
                    String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(&line)).into_owned();
                line.clear();
                if l.is_empty() {
                    let event = std::mem::take(&mut data);
                    if !event.trim().is_empty()
                        && let Ok(v) = serde_json::from_str::<Value>(&event)
                    {
                        self.message(v, is_initialize);
                    }
                } else if let Some(d) = l.strip_prefix("data:")
                    && data.len() < MAX_EVENT
                {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
        }
    }

    /// The server's own stream (notifications), opened again when it ends.
    async fn listen(&self) {
        let mut pause = Duration::from_millis(500);
        loop {
            let resp = self
                .request(reqwest::Method::GET)
                .header(ACCEPT, "text/event-stream")
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    pause = Duration::from_millis(500);
                    self.events(r, false).await;
                }
                // The server offers no such stream.
                Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => return,
                _ => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// Initializes again with the client's own `initialize`; whether a new
    /// session was made.
    async fn reinitialize(&self) -> bool {
        let init = {
            let mut s = self.session.lock().expect("session");
            s.id = None;
            s.version = None;
            s.initialize.clone()
        };
        let Some(init) = init else { return false };
        let Ok(resp) = self.post(&init).await else {
            return false;
        };
        if !resp.status().is_success() {
            return false;
        }
        let sid = resp
            .headers()
            .get(SESSION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The answer is the client's old one again: read, not passed on.
        let _ = resp.bytes().await;
        if sid.is_none() {
            return false;
        }
        self.session.lock().expect("session").id = sid;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.post(&note).await.is_ok()
    }

    /// Ends the MCP session.
    async fn close(&self) {
        if self.session.lock().expect("session").id.is_some() {
            let _ = self.request(reqwest::Method::DELETE).send().await;
        }
    }
}
