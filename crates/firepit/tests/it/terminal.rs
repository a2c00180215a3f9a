//! The shared shell over WebSocket, services with logs, and ports.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Daemon, Ws};

/// Attaches to session `id`'s shared `main` PTY.
pub(crate) async fn attach(d: &Daemon, id: &str) -> Ws {
    d.websocket(&format!("/v1/sessions/{id}/pty/main")).await
}

/// Reads the socket until `needle` shows up in what it received.
pub(crate) async fn read_until(ws: &mut Ws, needle: &str) -> String {
    let mut seen = String::new();
    let wait = async {
        while let Some(msg) = ws.next().await {
            if let Message::Binary(b) = msg.unwrap() {
                seen.push_str(&String::from_utf8_lossy(&b));
                if seen.contains(needle) {
                    return;
                }
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .is_err()
    {
        panic!("{needle:?} never arrived; got {seen:?}");
    }
    seen
}

#[tokio::test]
async fn two_terminals_share_one_shell_and_a_late_one_gets_the_scrollback() {
    let d = Daemon::start("t10");
    let id = d.new_session(&[]);
    let mut a = attach(&d, &id).await;
    let mut b = attach(&d, &id).await;
    // $((6*7)) keeps the typed line apart from its output.
    a.send(Message::binary(b"echo shared-$((6*7))\r".to_vec()))
        .await
        .unwrap();
    read_until(&mut a, "shared-42").await;
    read_until(&mut b, "shared-42").await;
    b.send(Message::text(r#"{"type":"resize","cols":100,"rows":30}"#))
        .await
        .unwrap();
    b.send(Message::binary(b"stty size\r".to_vec()))
        .await
        .unwrap();
    read_until(&mut a, "30 100").await;
    let mut late = attach(&d, &id).await;
    read_until(&mut late, "shared-42").await;
    // A garbage control frame does not break the terminal.
    late.send(Message::text("{nonsense")).await.unwrap();
    late.send(Message::binary(b"echo still-$((1+1))\r".to_vec()))
        .await
        .unwrap();
    read_until(&mut late, "still-2").await;
}

#[tokio::test]
async fn services_log_and_ports_appear() {
    let d = Daemon::start("t11");
    let id = d.new_session(&[]);
    let http = d.http();
    let base = format!("{}/v1/sessions/{id}", d.url);
    let spec = serde_json::json!({
        "name": "web",
        "command": {"argv": ["python3", "-u", "-m", "http.server", "8000", "--bind", "127.0.0.1"]},
        "cwd": "/",
        "restart": "on_failure",
    });
    let resp = http
        .post(format!("{base}/services"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let found = async {
        loop {
            let ports: serde_json::Value = http
                .get(format!("{base}/ports"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if ports
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["port"] == 8000 && p["addr"] == "127.0.0.1")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), found)
        .await
        .expect("port 8000 never appeared");
    d.sh(&id, "curl -fsS http://127.0.0.1:8000/ >/dev/null");
    let logs = http
        .get(format!("{base}/services/web/logs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        logs.contains("GET / HTTP/1.1"),
        "the access log is in the service log: {logs}"
    );
    let list: serde_json::Value = http
        .get(format!("{base}/services"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["state"], "running");
    let resp = http
        .delete(format!("{base}/services/web"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = http
        .delete(format!("{base}/services/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
