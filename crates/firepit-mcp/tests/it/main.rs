//! The MCP server and the stdio bridge over a stand-in [`Host`] (no machines,
//! no root): the protocol as a client sees it over streamable HTTP, the
//! errors a model gets, notifications, and `firepit mcp`'s bridge. The
//! machine tools end to end, with real clients, are in
//! `crates/firepit/tests/it/mcp.rs`.

use std::sync::{Arc, Mutex};

use firepit_agent::ToolContext;
use firepit_mcp::{Host, HostError, HostErrorKind};
use firepit_wire::api::{CreateSession, Session, SessionState, Share};
use firepit_wire::checkpoint::Checkpoint;
use firepit_wire::events::{Event, EventKind};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::broadcast;

/// Sessions in memory; no machine behind any of them.
struct Stand {
    sessions: Mutex<Vec<Session>>,
    checkpoints: Mutex<Vec<Checkpoint>>,
    live: broadcast::Sender<Event>,
}

fn not_found(id: &str) -> HostError {
    HostError {
        kind: HostErrorKind::NotFound,
        message: format!("no session {id:?}"),
    }
}

impl Stand {
    fn get(&self, id: &str) -> Result<Session, HostError> {
        self.sessions
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    fn set(&self, id: &str, state: SessionState) -> Result<Session, HostError> {
        let mut list = self.sessions.lock().unwrap();
        let s = list
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| not_found(id))?;
        s.state = state;
        Ok(s.clone())
    }
}

impl Host for Stand {
    async fn create_session(&self, req: CreateSession) -> Result<Session, HostError> {
        if req.image.as_deref() == Some("bad image") {
            return Err(HostError {
                kind: HostErrorKind::BadRequest,
                message: "image names are letters, digits and -".into(),
            });
        }
        let mut list = self.sessions.lock().unwrap();
        let s = Session {
            id: format!("s{}", list.len() + 1),
            image: req.image.unwrap_or_else(|| "minimal".into()),
            state: SessionState::Running,
            limits: req.limits,
            network: req.network,
            created_at: 0,
            error: None,
            stop_at: None,
            name: req.name,
            labels: req.labels,
        };
        list.push(s.clone());
        Ok(s)
    }

    fn sessions(&self) -> Result<Vec<Session>, HostError> {
        Ok(self.sessions.lock().unwrap().clone())
    }

    async fn stop_session(&self, id: &str) -> Result<Session, HostError> {
        self.set(id, SessionState::Stopped)
    }

    async fn start_session(&self, id: &str) -> Result<Session, HostError> {
        self.set(id, SessionState::Running)
    }

    async fn destroy_session(&self, id: &str) -> Result<(), HostError> {
        self.get(id)?;
        self.sessions.lock().unwrap().retain(|s| s.id != id);
        Ok(())
    }

    async fn tools(&self, id: &str) -> Result<ToolContext, HostError> {
        self.get(id)?;
        Err(HostError {
            kind: HostErrorKind::NotRunning,
            message: format!("session {id} has no machine here"),
        })
    }

    fn share(&self, id: &str, port: u16, ttl_seconds: Option<u64>) -> Result<Share, HostError> {
        self.get(id)?;
        Ok(Share {
            id: "sh1".into(),
            session: id.into(),
            port,
            url: format!("http://{port}-{id}.localhost/__firepit/share?token=t"),
            created_at: 0,
            expires_at: ttl_seconds.unwrap_or(3600) as i64,
            revoked: false,
            path: "/".into(),
        })
    }

    fn events(&self, id: &str, since: u64, _limit: usize) -> Result<Vec<Event>, HostError> {
        self.get(id)?;
        let problem = Event {
            seq: 3,
            session: id.into(),
            time_ms: 0,
            kind: EventKind::Problem {
                source: "service:web".into(),
                kind: "python_exception".into(),
                summary: "ZeroDivisionError: division by zero".into(),
                detail: "Traceback (most recent call last): …".into(),
                count: 1,
            },
        };
        Ok(if since < 3 { vec![problem] } else { Vec::new() })
    }

    async fn checkpoint(&self, id: &str, name: Option<String>) -> Result<Checkpoint, HostError> {
        let s = self.get(id)?;
        if s.image == "nopool" {
            return Err(HostError {
                kind: HostErrorKind::Conflict,
                message: format!("session {id} has no disk pool layer"),
            });
        }
        let mut list = self.checkpoints.lock().unwrap();
        let cp = Checkpoint {
            id: format!("cp-{}", list.len() + 1),
            session: id.into(),
            name,
            created_at_ms: 0,
            size_bytes: 4096,
            made_by: "user".into(),
            parent: None,
            running: true,
        };
        list.push(cp.clone());
        Ok(cp)
    }

    async fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, HostError> {
        self.get(id)?;
        Ok(self
            .checkpoints
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.session == id)
            .cloned()
            .collect())
    }

    async fn restore(&self, id: &str, checkpoint: &str) -> Result<Session, HostError> {
        if !self
            .checkpoints(id)
            .await?
            .iter()
            .any(|c| c.id == checkpoint)
        {
            return Err(HostError {
                kind: HostErrorKind::NotFound,
                message: format!("checkpoint {checkpoint} of session {id} not found"),
            });
        }
        self.get(id)
    }

    async fn fork(&self, id: &str, from: Option<&str>) -> Result<Session, HostError> {
        if let Some(from) = from {
            self.restore(id, from).await?;
        }
        let parent = self.get(id)?;
        self.create_session(CreateSession {
            image: Some(parent.image),
            ..Default::default()
        })
        .await
    }

    fn follow(&self, id: &str) -> Result<BoxStream<'static, Event>, HostError> {
        self.get(id)?;
        let id = id.to_owned();
        let rx = tokio_stream_of(self.live.subscribe());
        Ok(rx
            .filter(move |e| std::future::ready(e.session == id))
            .boxed())
    }
}

fn tokio_stream_of(rx: broadcast::Receiver<Event>) -> BoxStream<'static, Event> {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((e, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// Serves the MCP endpoint over a stand-in host; its URL and the host.
async fn serve() -> (String, Arc<Stand>) {
    let host = Arc::new(Stand {
        sessions: Mutex::new(Vec::new()),
        checkpoints: Mutex::new(Vec::new()),
        live: broadcast::channel(16).0,
    });
    let svc = firepit_mcp::http::service(host.clone(), Default::default());
    let app = axum::Router::new().nest_service("/mcp", svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, host)
}

/// One MCP session over raw HTTP.
struct Client {
    http: reqwest::Client,
    url: String,
    session: String,
    next: u64,
}

/// The JSON-RPC message of an answer: JSON, or the last `data:` of SSE.
fn message(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| {
        let data = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .rfind(|d| !d.is_empty())
            .unwrap_or_else(|| panic!("no message in {body:?}"));
        serde_json::from_str(data).unwrap()
    })
}

impl Client {
    async fn open(url: &str) -> Client {
        let http = reqwest::Client::new();
        let resp = http
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .json(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"}}}),
            )
            .send()
            .await
            .unwrap();
        let session = resp.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let init = message(&resp.text().await.unwrap());
        assert_eq!(init["result"]["serverInfo"]["name"], "firepit", "{init}");
        assert!(
            init["result"]["instructions"]
                .as_str()
                .unwrap()
                .contains("session_create")
        );
        let c = Client {
            http,
            url: url.into(),
            session,
            next: 0,
        };
        c.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        c
    }

    async fn post(&self, body: Value) -> String {
        self.http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        message(
            &self
                .post(
                    json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params}),
                )
                .await,
        )
    }

    async fn call(&mut self, name: &str, args: Value) -> (bool, String) {
        let m = self
            .request("tools/call", json!({"name": name, "arguments": args}))
            .await;
        let r = &m["result"];
        assert!(r.is_object(), "{m}");
        (
            r["isError"] == true,
            r["content"][0]["text"].as_str().unwrap().to_owned(),
        )
    }
}

#[tokio::test]
async fn tools_and_the_errors_a_model_gets() {
    let (url, _host) = serve().await;
    let mut c = Client::open(&url).await;
    let tools = c.request("tools/list", json!({})).await;
    let tools = tools["result"]["tools"].as_array().unwrap();
    let exec = tools.iter().find(|t| t["name"] == "exec").unwrap();
    assert_eq!(exec["inputSchema"]["required"][0], "session");
    assert!(tools.iter().all(|t| t["name"] != "ask_user"));

    let (err, text) = c
        .call(
            "session_create",
            json!({"memory_mb": 512, "network": "none"}),
        )
        .await;
    assert!(!err, "{text}");
    assert!(
        text.contains("\"memory_bytes\": 536870912") && text.contains("\"none\""),
        "{text}"
    );
    let (_, list) = c.call("session_list", json!({})).await;
    assert!(list.contains("\"s1\""), "{list}");

    // A name and labels reach the session made, and show in the list.
    let create = tools
        .iter()
        .find(|t| t["name"] == "session_create")
        .unwrap();
    let props = &create["inputSchema"]["properties"];
    assert_eq!(props["name"]["type"], "string", "{create}");
    assert_eq!(props["labels"]["type"], "object", "{create}");
    let (err, text) = c
        .call(
            "session_create",
            json!({"name": "api work", "labels": {"team": "api", "env": "dev"}}),
        )
        .await;
    assert!(!err, "{text}");
    assert!(
        text.contains("\"name\": \"api work\"") && text.contains("\"team\": \"api\""),
        "{text}"
    );
    let (_, list) = c.call("session_list", json!({})).await;
    assert!(
        list.contains("\"api work\"") && list.contains("\"env\": \"dev\""),
        "{list}"
    );
    // Labels are a map of strings.
    let (err, text) = c
        .call("session_create", json!({"labels": ["team=api"]}))
        .await;
    assert!(err && text.contains("expected a map"), "{text}");

    // What a model can act on: each is a result with isError and a way out.
    let (err, text) = c
        .call("exec", json!({"session": "s9", "command": "true"}))
        .await;
    assert!(
        err && text.contains("no session") && text.contains("session_list"),
        "{text}"
    );
    let (err, text) = c.call("exec", json!({"command": "true"})).await;
    assert!(err && text.contains("needs `session`"), "{text}");
    let (err, text) = c
        .call("exec", json!({"session": 5, "command": "true"}))
        .await;
    assert!(err && text.contains("must be a session id"), "{text}");
    let (err, text) = c
        .call("exec", json!({"session": "s1", "command": "true"}))
        .await;
    assert!(err && text.contains("session_start"), "{text}");
    let (err, text) = c.call("session_create", json!({"memory": 5})).await;
    assert!(
        err && text.contains("unknown field") && text.contains("memory_mb"),
        "{text}"
    );
    let (err, text) = c
        .call("session_create", json!({"image": "bad image"}))
        .await;
    assert!(err && text.contains("letters, digits"), "{text}");
    let (err, text) = c
        .call("share_link", json!({"session": "s1", "port": 0}))
        .await;
    assert!(err && text.contains("1 to 65535"), "{text}");
    let m = c
        .request("tools/call", json!({"name": "rm_rf", "arguments": {}}))
        .await;
    assert_eq!(m["error"]["code"], -32602, "{m}");
    assert!(
        m["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session_create")
    );
    let m = c.request("tools/call", json!({"name": "exec"})).await;
    assert_eq!(m["result"]["isError"], true, "{m}");

    // Share links and problems.
    let (err, text) = c
        .call("share_link", json!({"session": "s1", "port": 8000}))
        .await;
    assert!(!err && text.contains("8000-s1.localhost"), "{text}");
    let (err, text) = c.call("problems", json!({"session": "s1"})).await;
    assert!(
        !err && text.contains("ZeroDivisionError") && text.contains("service:web"),
        "{text}"
    );
    let (_, text) = c
        .call("problems", json!({"session": "s1", "since": 3}))
        .await;
    assert!(text.contains("no problems"), "{text}");

    // Resources.
    let templates = c.request("resources/templates/list", json!({})).await;
    assert_eq!(
        templates["result"]["resourceTemplates"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let listed = c.request("resources/list", json!({})).await;
    assert_eq!(
        listed["result"]["resources"][0]["uri"],
        "firepit://sessions/s1/problems"
    );
    let read = c
        .request(
            "resources/read",
            json!({"uri": "firepit://sessions/s1/problems"}),
        )
        .await;
    assert!(
        read["result"]["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("ZeroDivisionError")
    );
    let bad = c
        .request(
            "resources/read",
            json!({"uri": "firepit://sessions/s1/files/../etc/passwd"}),
        )
        .await;
    assert_eq!(bad["error"]["code"], -32002, "{bad}");

    // Lifecycle.
    let (err, text) = c.call("session_stop", json!({"session": "s1"})).await;
    assert!(!err && text.contains("stopped"), "{text}");
    let (err, _) = c.call("session_destroy", json!({"session": "s1"})).await;
    assert!(!err);
    let (err, text) = c.call("session_destroy", json!({"session": "s1"})).await;
    assert!(err && text.contains("session_create"), "{text}");
}

#[tokio::test]
async fn checkpoint_tools_and_their_errors() {
    let (url, _host) = serve().await;
    let mut c = Client::open(&url).await;
    let tools = c.request("tools/list", json!({})).await;
    let names: Vec<_> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    for n in [
        "checkpoint_create",
        "checkpoint_list",
        "checkpoint_restore",
        "session_fork",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing: {names:?}");
    }
    c.call("session_create", json!({})).await;
    let (err, text) = c.call("checkpoint_list", json!({"session": "s1"})).await;
    assert!(!err && text.contains("no checkpoints"), "{text}");
    let (err, text) = c
        .call(
            "checkpoint_create",
            json!({"session": "s1", "name": "before"}),
        )
        .await;
    assert!(
        !err && text.contains("checkpoint cp-1 made") && text.contains("checkpoint_restore"),
        "{text}"
    );
    let (err, text) = c.call("checkpoint_list", json!({"session": "s1"})).await;
    assert!(!err && text.contains("\"before\""), "{text}");
    let (err, text) = c
        .call(
            "checkpoint_restore",
            json!({"session": "s1", "checkpoint": "cp-1"}),
        )
        .await;
    assert!(!err && text.contains("files of cp-1 again"), "{text}");
    let (err, text) = c
        .call("session_fork", json!({"session": "s1", "from": "cp-1"}))
        .await;
    assert!(!err && text.contains("\"s2\""), "{text}");

    // The errors say what to do next.
    let (err, text) = c
        .call(
            "checkpoint_restore",
            json!({"session": "s1", "checkpoint": "cp-9"}),
        )
        .await;
    assert!(err && text.contains("checkpoint_list"), "{text}");
    let (err, text) = c.call("checkpoint_restore", json!({"session": "s1"})).await;
    assert!(err && text.contains("missing field `checkpoint`"), "{text}");
    let (err, text) = c.call("checkpoint_create", json!({"session": "s7"})).await;
    assert!(err && text.contains("session_list"), "{text}");
    c.call("session_create", json!({"image": "nopool"})).await;
    let (err, text) = c.call("checkpoint_create", json!({"session": "s3"})).await;
    assert!(
        err && text.contains("no disk pool") && text.contains("cannot be checkpointed"),
        "{text}"
    );
}

#[tokio::test]
async fn a_port_opening_in_a_session_in_use_is_notified() {
    let (url, host) = serve().await;
    let mut c = Client::open(&url).await;
    c.call("session_create", json!({})).await;
    // The server's own stream: what it sends by itself.
    let mut stream = c
        .http
        .get(&c.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &c.session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap()
        .bytes_stream();
    // Another session's port is not this client's business; its own is.
    let port = |session: &str, port: u16| Event {
        seq: 9,
        session: session.into(),
        time_ms: 0,
        kind: EventKind::PortOpened {
            port,
            addr: "0.0.0.0".into(),
            url: format!("http://{port}-{session}.localhost/"),
        },
    };
    let mut seen = String::new();
    for _ in 0..200 {
        host.live.send(port("other", 1111)).ok();
        host.live.send(port("s1", 8000)).ok();
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(std::time::Duration::from_millis(100), stream.next()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("port_opened") {
                break;
            }
        }
    }
    assert!(
        seen.contains("notifications/message") && seen.contains("8000-s1.localhost"),
        "{seen}"
    );
    assert!(!seen.contains("1111"), "{seen}");

    // A subscribed resource hears of its change.
    let sub = c
        .request(
            "resources/subscribe",
            json!({"uri": "firepit://sessions/s1/problems"}),
        )
        .await;
    assert!(sub["result"].is_object(), "{sub}");
    let bad = c
        .request(
            "resources/subscribe",
            json!({"uri": "firepit://sessions/s9/problems"}),
        )
        .await;
    assert_eq!(bad["error"]["code"], -32002, "{bad}");
    let problem = Event {
        seq: 10,
        session: "s1".into(),
        time_ms: 0,
        kind: EventKind::Problem {
            source: "browser".into(),
            kind: "js_exception".into(),
            summary: "TypeError: x is undefined".into(),
            detail: String::new(),
            count: 1,
        },
    };
    seen.clear();
    for _ in 0..200 {
        host.live.send(problem.clone()).ok();
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(std::time::Duration::from_millis(100), stream.next()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("resources/updated") {
                break;
            }
        }
    }
    assert!(
        seen.contains("notifications/resources/updated")
            && seen.contains("firepit://sessions/s1/problems"),
        "{seen}"
    );
    assert!(seen.contains("TypeError"), "{seen}");
}

#[tokio::test]
async fn the_stdio_bridge_passes_messages_and_survives_bad_lines() {
    let (url, _host) = serve().await;
    let (client_end, bridge_end) = tokio::io::duplex(1 << 20);
    let (bridge_in, bridge_out) = tokio::io::split(bridge_end);
    let target = firepit_mcp::bridge::Target {
        url: url.clone(),
        token: "unused".into(),
    };
    let bridge = tokio::spawn(firepit_mcp::bridge::run(target, bridge_in, bridge_out));
    let (r, mut w) = tokio::io::split(client_end);
    let mut lines = BufReader::new(r).lines();
    let mut send = async |v: &str| {
        w.write_all(v.as_bytes()).await.unwrap();
        w.write_all(b"\n").await.unwrap();
    };
    send("this is not json").await;
    let e: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(e["error"]["code"], -32700, "{e}");
    send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#).await;
    let init: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["serverInfo"]["name"], "firepit");
    send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"session_create","arguments":{}}}"#).await;
    let made: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(made["id"], 2);
    assert!(
        made["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("\"s1\"")
    );
    send(
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope","arguments":{}}}"#,
    )
    .await;
    let bad: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(bad["id"], 3);
    assert_eq!(bad["error"]["code"], -32602);
    send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#).await;
    let list: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(list["id"], 4);
    assert!(list["result"]["tools"].as_array().unwrap().len() > 20);
    w.shutdown().await.unwrap();
    bridge.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_bridge_says_when_the_daemon_is_not_there() {
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    drop(l);
    let (client_end, bridge_end) = tokio::io::duplex(1 << 16);
    let (bridge_in, bridge_out) = tokio::io::split(bridge_end);
    let target = firepit_mcp::bridge::Target {
        url,
        token: "t".into(),
    };
    let bridge = tokio::spawn(firepit_mcp::bridge::run(target, bridge_in, bridge_out));
    let (r, mut w) = tokio::io::split(client_end);
    let mut lines = BufReader::new(r).lines();
    w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"initialize\",\"params\":{}}\n")
        .await
        .unwrap();
    let e: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(e["id"], 7);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("firepit up"),
        "{e}"
    );
    w.shutdown().await.unwrap();
    bridge.await.unwrap().unwrap();
}
