//! The session event log end to end: ports and services become events with
//! the right preview URLs, SSE clients reconnect from a cursor without missing
//! or repeating anything, and the log survives a daemon restart.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::harness::Daemon;

/// Hang guard for anything these tests wait on.
const GUARD: Duration = Duration::from_secs(60);

async fn guard<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting: {what}"))
}

fn base(d: &Daemon, id: &str) -> String {
    format!("{}/v1/sessions/{id}", d.url)
}

async fn start_web(d: &Daemon, id: &str, name: &str, addr: &str, port: u16) {
    let spec = serde_json::json!({
        "name": name,
        "command": {"argv": ["python3", "-u", "-m", "http.server", port.to_string(), "--bind", addr]},
        "cwd": "/",
    });
    let resp = d
        .http()
        .post(format!("{}/services", base(d, id)))
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

async fn events(d: &Daemon, id: &str) -> Vec<Value> {
    let resp = d
        .http()
        .get(format!("{}/events?since=0", base(d, id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Polls the log until `pred` holds; returns the log then.
async fn wait_for(d: &Daemon, id: &str, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    guard(what, async {
        loop {
            let all = events(d, id).await;
            if pred(&all) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn has(all: &[Value], kind: &str, f: impl Fn(&Value) -> bool) -> bool {
    all.iter().any(|e| e["type"] == kind && f(e))
}

fn count(all: &[Value], kind: &str, f: impl Fn(&Value) -> bool) -> usize {
    all.iter().filter(|e| e["type"] == kind && f(e)).count()
}

fn seqs(all: &[Value]) -> Vec<u64> {
    all.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// An SSE connection to a session's events.
struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl Sse {
    async fn open(d: &Daemon, id: &str, last_event_id: Option<u64>) -> Sse {
        let mut req = d
            .http()
            .get(format!("{}/events", base(d, id)))
            .header("accept", "text/event-stream");
        if let Some(last) = last_event_id {
            req = req.header("last-event-id", last.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Sse {
            body: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// The next event: (`id:`, `event:`, parsed `data:`).
    async fn next(&mut self) -> (u64, String, Value) {
        let (mut sse_id, mut kind, mut data) = (None, None, String::new());
        loop {
            while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                let line = String::from_utf8(line).unwrap();
                let line = line.trim_end_matches(['\r', '\n']);
                if line.is_empty() {
                    if !data.is_empty() {
                        return (
                            sse_id.unwrap(),
                            kind.unwrap(),
                            serde_json::from_str(&data).unwrap(),
                        );
                    }
                } else if let Some(v) = line.strip_prefix("id:") {
                    sse_id = Some(v.trim().parse().unwrap());
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            let chunk = self
                .body
                .next()
                .await
                .expect("the SSE stream ended")
                .unwrap();
            self.buf.extend_from_slice(&chunk);
        }
    }
}

fn daemon_port(d: &Daemon) -> String {
    d.url.rsplit(':').next().unwrap().to_owned()
}

#[tokio::test]
async fn ports_and_services_become_events_and_sse_resumes_from_a_cursor() {
    let d = Daemon::start("t20");
    let id = d.new_session(&[]);
    let port = daemon_port(&d);

    // A first subscriber sees the session come up, then goes away.
    let mut first = Sse::open(&d, &id, None).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (seq, kind, data) = guard("the first events", first.next()).await;
        assert_eq!(data["seq"].as_u64(), Some(seq));
        assert_eq!(data["type"], kind.as_str());
        seen.push(seq);
    }
    drop(first);
    let all = events(&d, &id).await;
    assert_eq!(all[0]["type"], "session_state");
    assert_eq!(all[0]["state"], "creating");
    assert_eq!(all[1]["state"], "running");

    // Meanwhile, two servers start (loopback and any address), one stops.
    start_web(&d, &id, "loop", "127.0.0.1", 8000).await;
    start_web(&d, &id, "any", "0.0.0.0", 8001).await;
    let url = |p: u16| format!("http://{p}-{id}.localhost:{port}/");
    let all = wait_for(&d, &id, "both ports open", |all| {
        has(all, "port_opened", |e| {
            e["port"] == 8000 && e["addr"] == "127.0.0.1" && e["url"] == url(8000).as_str()
        }) && has(all, "port_opened", |e| {
            e["port"] == 8001 && e["addr"] == "0.0.0.0" && e["url"] == url(8001).as_str()
        })
    })
    .await;
    assert!(has(&all, "service_started", |e| e["name"] == "loop"
        && e["pid"].is_u64()));
    assert!(has(&all, "service_started", |e| e["name"] == "any"));

    let ports: Value = d
        .http()
        .get(format!("{}/ports", base(&d, &id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == 8001 && p["url"] == url(8001).as_str()),
        "{ports}"
    );
    let resp = d
        .http()
        .delete(format!("{}/services/loop", base(&d, &id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let all = wait_for(&d, &id, "port 8000 closed and its service exited", |all| {
        has(all, "port_closed", |e| {
            e["port"] == 8000 && e["addr"] == "127.0.0.1"
        }) && has(all, "service_exited", |e| e["name"] == "loop")
    })
    .await;
    assert_eq!(seqs(&all), (1..=all.len() as u64).collect::<Vec<_>>());
    assert_eq!(count(&all, "port_opened", |e| e["port"] == 8000), 1);

    // The subscriber comes back from its cursor: everything after it, once,
    // then live events.
    let mut again = Sse::open(&d, &id, seen.last().copied()).await;
    let last = all.len() as u64;
    while seen.last() != Some(&last) {
        let (seq, _, data) = guard("the missed events", again.next()).await;
        assert_eq!(data, all[seq as usize - 1]);
        seen.push(seq);
    }
    assert_eq!(seen, (1..=last).collect::<Vec<_>>());
    start_web(&d, &id, "later", "127.0.0.1", 8002).await;
    let live: Vec<_> = guard("live events", async {
        let mut live = Vec::new();
        while !live
            .iter()
            .any(|(_, k, _): &(u64, String, Value)| k == "port_opened")
        {
            live.push(again.next().await);
        }
        live
    })
    .await;
    assert_eq!(
        live.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(),
        (last + 1..=last + live.len() as u64).collect::<Vec<_>>()
    );

    // The CLI.
    let out = d.ok(&["events", &id]);
    assert!(out.lines().count() >= all.len(), "{out}");
    assert!(
        out.contains("port_opened") && out.contains(&url(8001)),
        "{out}"
    );
    assert!(out.contains("service_exited"), "{out}");
    let out = d.ok(&["events", &id, "--since", &last.to_string()]);
    assert!(!out.contains("creating"), "{out}");
    let out = d.ok(&["ports", &id]);
    assert!(out.contains(&url(8001)) && out.contains("0.0.0.0"), "{out}");
    let out = d.ok(&["logs", &id]);
    assert!(
        out.contains("loop") && out.contains("stopped") && out.contains("running"),
        "{out}"
    );
    let out = d.ok(&["logs", &id, "any"]);
    assert!(out.contains("Serving HTTP"), "{out}");
}

#[tokio::test]
async fn the_log_survives_a_daemon_restart_without_gaps_or_repeats() {
    let mut d = Daemon::start("t21");
    let id = d.new_session(&[]);
    start_web(&d, &id, "web", "0.0.0.0", 8000).await;
    let before = wait_for(&d, &id, "port 8000 open", |all| {
        has(all, "port_opened", |e| e["port"] == 8000)
    })
    .await;

    d.restart(15);
    let after = events(&d, &id).await;
    assert_eq!(&after[..before.len()], &before[..], "the log is kept");

    // The new daemon watches again; the port that stayed open is not opened
    // twice, and new events continue the sequence.
    let resp = d
        .http()
        .delete(format!("{}/services/web", base(&d, &id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let all = wait_for(&d, &id, "port 8000 closed after the restart", |all| {
        has(all, "port_closed", |e| e["port"] == 8000)
    })
    .await;
    assert_eq!(seqs(&all), (1..=all.len() as u64).collect::<Vec<_>>());
    assert_eq!(count(&all, "port_opened", |_| true), 1, "{all:#?}");

    // Stopping and starting the session are events too; its open ports close.
    start_web(&d, &id, "web2", "127.0.0.1", 8001).await;
    wait_for(&d, &id, "port 8001 open", |all| {
        has(all, "port_opened", |e| e["port"] == 8001)
    })
    .await;
    d.ok(&["stop", &id]);
    d.ok(&["start", &id]);
    // web2 is kept with the session: it comes back, and its port with it.
    let all = wait_for(&d, &id, "port 8001 open again after the start", |all| {
        count(all, "port_opened", |e| e["port"] == 8001) == 2
    })
    .await;
    let n = all.len();
    let stopped = all.iter().rposition(|e| e["state"] == "stopped").unwrap();
    assert_eq!(all[stopped + 1]["state"], "running");
    assert_eq!(all[stopped - 1]["type"], "port_closed");
    assert_eq!(all[stopped - 1]["port"], 8001);
    assert_eq!(seqs(&all), (1..=n as u64).collect::<Vec<_>>());
    let kinds: BTreeSet<_> = all
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains("service_exited"), "{kinds:?}");
    let out = d.ok(&["events", &id]);
    assert!(out.lines().count() >= n, "{out}");

    // Destroying the session deletes its log.
    d.ok(&["rm", &id]);
    let resp = d
        .http()
        .get(format!("{}/events", base(&d, &id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
