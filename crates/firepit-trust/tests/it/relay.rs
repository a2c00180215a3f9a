//! A stand-in proxy records each request head and answers; a client plays
//! the machine. No traffic leaves 127.0.0.1: the targets are documentation
//! addresses the stand-in never dials.

use std::sync::{Arc, Mutex};

use firepit_trust::proxy::Upstream;
use firepit_trust::relay::Relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The stand-in proxy: records heads; answers CONNECT with 200 and then
/// echoes, anything else with a small body, then closes.
async fn stand_in() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                log.lock().unwrap().push(head.clone());
                if head.starts_with("CONNECT") {
                    s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .unwrap();
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                } else {
                    // The body, if any, came after the head.
                    let body = head.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    s.write_all(answer.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (port, seen)
}

async fn relay_to(upstream: &str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let relay = Arc::new(Relay::new(Upstream::parse(upstream, "test").unwrap()));
    tokio::spawn(relay.serve(l));
    port
}

async fn exchange(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn requests_reach_the_proxy_with_the_daemons_credentials_only() {
    let (proxy, seen) = stand_in().await;
    let relay = relay_to(&format!("http://user:secret@127.0.0.1:{proxy}")).await;

    let answer = exchange(
        relay,
        b"POST http://203.0.113.5/upload HTTP/1.1\r\nHost: 203.0.113.5\r\nProxy-Authorization: Basic bWFjaGluZQ==\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    let head = seen.lock().unwrap()[0].clone();
    assert!(
        head.starts_with("POST http://203.0.113.5/upload HTTP/1.1\r\n"),
        "{head}"
    );
    // base64("user:secret"), and not the machine's own.
    assert!(
        head.contains("Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n"),
        "{head}"
    );
    assert!(!head.contains("bWFjaGluZQ=="), "{head}");
    assert!(head.contains("Connection: close\r\n"), "{head}");

    // A tunnel: the head to the proxy, then bytes both ways.
    let mut s = TcpStream::connect(("127.0.0.1", relay)).await.unwrap();
    s.write_all(b"CONNECT 203.0.113.5:443 HTTP/1.1\r\nHost: 203.0.113.5:443\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 39];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200 Connection established\r\n\r\n");
    s.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    let heads = seen.lock().unwrap().clone();
    assert!(
        heads[1].starts_with("CONNECT 203.0.113.5:443 HTTP/1.1\r\n"),
        "{heads:?}"
    );
    assert!(
        heads[1].contains("Proxy-Authorization: Basic dXNlcjpzZWNyZXQ="),
        "{heads:?}"
    );
}

#[tokio::test]
async fn the_hosts_own_addresses_never_reach_the_proxy() {
    let (proxy, seen) = stand_in().await;
    let relay = relay_to(&format!("http://127.0.0.1:{proxy}")).await;
    for request in [
        &b"CONNECT 127.0.0.1:7777 HTTP/1.1\r\n\r\n"[..],
        b"CONNECT localhost:22 HTTP/1.1\r\n\r\n",
        b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n",
        b"GET http://[::1]:7777/v1/sessions HTTP/1.1\r\n\r\n",
        b"GET http://user@2130706433:7777/ HTTP/1.1\r\n\r\n",
    ] {
        let answer = exchange(relay, request).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    }
    let answer = exchange(relay, b"GET /relative HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_proxy_that_is_down_is_a_502() {
    // A port nothing listens on: bound, then closed.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let relay = relay_to(&format!("http://127.0.0.1:{port}")).await;
    let answer = exchange(relay, b"CONNECT 203.0.113.5:443 HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
}
