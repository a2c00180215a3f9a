//! The broker under attack from the machine, whose root writes every byte of
//! the request: encoded dots and slashes, backslashes, empty segments,
//! over-long targets, other repositories, other methods, query and header
//! tricks. Requests are sent as written (no client normalizes them), and the
//! stand-in forge's record of what reached it is the verdict.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use firepit_forge::broker::{Broker, Limits};
use firepit_forge::{ForgeConfig, Token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Got, S, SECRET, repo, stand_in};

async fn start(limits: Limits) -> (SocketAddr, S) {
    let (url, s) = stand_in();
    let config = ForgeConfig::new(&url, Some(&url), Token::new(SECRET)).unwrap();
    let broker = Arc::new(Broker::with_limits(config, vec![repo("o/app")], limits));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(broker.serve(listener));
    (addr, s)
}

/// A request as written: `METHOD target HTTP/1.1`, `extra` header lines
/// (each ending in `\r\n`), then `body`.
fn request(method: &str, target: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Sends `bytes` on a new connection and reads the answer to its end (a
/// reset after the answer is no error here): the status and the whole text.
async fn send(addr: SocketAddr, bytes: Vec<u8>) -> (u16, String) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = c.split();
    let write = async move {
        let _ = w.write_all(&bytes).await;
    };
    let read = async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    };
    let ((), out) = tokio::join!(write, read);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn seen(s: &S) -> Vec<Got> {
    s.lock().unwrap().requests.clone()
}

#[tokio::test]
async fn nothing_outside_the_repository_and_its_writes_reaches_the_forge() {
    let (addr, s) = start(Limits::default()).await;
    let long = format!("/api/repos/o/app/{}", "a".repeat(5000));
    let many = format!("/api/repos/o/app/{}", "a/".repeat(100));
    let huge = format!("/api/repos/o/app/{}", "a".repeat(80 * 1024));
    let long_query = format!("/api/repos/o/app?q={}", "a".repeat(5000));
    let up = "%2e%2e/%2e%2e/%2e%2e/%2e%2e";
    let json = br#"{"sha":"0000000000000000000000000000000000000000","force":true}"#;
    let attacks: Vec<(&str, String, &str, &[u8])> = vec![
        // Encoded dots, every case and a double encoding: GET /user.
        ("GET", format!("/api/repos/o/app/issues/{up}/user"), "", b""),
        (
            "GET",
            "/api/repos/o/app/issues/%2E%2E/%2E%2E/%2E%2E/%2E%2E/user".into(),
            "",
            b"",
        ),
        (
            "GET",
            "/api/repos/o/app/issues/.%2e/.%2e/.%2e/.%2e/user".into(),
            "",
            b"",
        ),
        (
            "GET",
            "/api/repos/o/app/issues/%2e./%2e./%2e./%2e./user".into(),
            "",
            b"",
        ),
        (
            "GET",
            "/api/repos/o/app/issues/%252e%252e/%252e%252e/%252e%252e/%252e%252e/user".into(),
            "",
            b"",
        ),
        // … and writes through them: another repository's branch, this
        // one's hooks and keys, a new repository.
        (
            "PATCH",
            "/api/repos/o/app/issues/%2e%2e/%2e%2e/%2e%2e/o/app2/git/refs/heads/main".into(),
            "content-type: application/json\r\n",
            json,
        ),
        (
            "POST",
            "/api/repos/o/app/issues/%2e%2e/hooks".into(),
            "content-type: application/json\r\n",
            b"{}",
        ),
        (
            "POST",
            "/api/repos/o/app/issues/%2E%2E/keys".into(),
            "content-type: application/json\r\n",
            b"{}",
        ),
        (
            "POST",
            format!("/api/repos/o/app/pulls/{up}/user/repos"),
            "content-type: application/json\r\n",
            b"{\"name\":\"x\"}",
        ),
        (
            "POST",
            "/api/repos/o/app/issues/%2e%2e/merges".into(),
            "",
            b"{}",
        ),
        // Encoded slashes and backslashes.
        (
            "GET",
            "/api/repos/o/app/issues%2f..%2f..%2f..%2f..%2fuser".into(),
            "",
            b"",
        ),
        (
            "GET",
            "/api/repos/o/app/issues%2F..%2F..%2F..%2F..%2Fuser".into(),
            "",
            b"",
        ),
        (
            "GET",
            "/api/repos/o/app/issues%5c..%5c..%5c..%5c..%5cuser".into(),
            "",
            b"",
        ),
        (
            "GET",
            "/api/repos/o/app/issues%255c..%255cuser".into(),
            "",
            b"",
        ),
        // Literal dots, backslashes, empty segments, path parameters.
        ("GET", "/api/repos/o/app/../../../user".into(), "", b""),
        (
            "GET",
            "/api/repos/o/app/issues\\..\\..\\..\\..\\user".into(),
            "",
            b"",
        ),
        ("GET", "/api/repos/o/app//..//..//user".into(), "", b""),
        ("GET", "//api/repos/o/app".into(), "", b""),
        ("GET", "/api//repos/o/app".into(), "", b""),
        ("GET", "/api/repos/o/app/..;/..;/..;/user".into(), "", b""),
        // Over-long.
        ("GET", long, "", b""),
        ("GET", many, "", b""),
        ("GET", huge, "", b""),
        ("GET", long_query, "", b""),
        // Other repositories, other spellings.
        ("GET", "/api/repos/o/app2".into(), "", b""),
        ("GET", "/api/repos/O/APP2/issues".into(), "", b""),
        ("GET", "/api/repos/o/r".into(), "", b""),
        ("GET", "/api/repos/o%2fapp/x".into(), "", b""),
        ("GET", "/api/repos/o/app%2e%2e".into(), "", b""),
        ("GET", "/api/user".into(), "", b""),
        ("POST", "/api/graphql".into(), "", b"{}"),
        (
            "GET",
            "/o/app2.git/info/refs?service=git-upload-pack".into(),
            "",
            b"",
        ),
        ("POST", "/O/App2/git-receive-pack".into(), "", b"0000"),
        (
            "GET",
            "/o/app.git/info/%2e%2e/%2e%2e/app2.git/info/refs?service=git-upload-pack".into(),
            "",
            b"",
        ),
        // Other methods and writes on this repository.
        ("DELETE", "/api/repos/o/app".into(), "", b""),
        (
            "PATCH",
            "/api/repos/o/app".into(),
            "",
            b"{\"private\":false}",
        ),
        (
            "PUT",
            "/api/repos/o/app/git/refs/heads/main".into(),
            "",
            json,
        ),
        (
            "PATCH",
            "/api/repos/o/app/git/refs/heads/main".into(),
            "",
            json,
        ),
        ("POST", "/api/repos/o/app/git/refs".into(), "", b"{}"),
        ("POST", "/api/repos/o/app/hooks".into(), "", b"{}"),
        ("POST", "/api/repos/o/app/keys".into(), "", b"{}"),
        ("POST", "/api/repos/o/app/merges".into(), "", b"{}"),
        ("POST", "/api/repos/o/app/forks".into(), "", b"{}"),
        ("PUT", "/api/repos/o/app/pulls/1/merge".into(), "", b"{}"),
        ("PUT", "/api/repos/o/app/collaborators/x".into(), "", b"{}"),
        (
            "DELETE",
            "/api/repos/o/app/issues/1/comments".into(),
            "",
            b"",
        ),
        ("OPTIONS", "/api/repos/o/app".into(), "", b""),
        ("TRACE", "/api/repos/o/app".into(), "", b""),
        ("CONNECT", "127.0.0.1:22".into(), "", b""),
        ("PUT", "/o/app.git/git-receive-pack".into(), "", b""),
        ("GET", "/o/app.git/HEAD".into(), "", b""),
        ("GET", "/o/app.git/objects/info/packs".into(), "", b""),
        // Query tricks.
        ("GET", "/api/repos/o/app?/../../../user".into(), "", b""),
        (
            "POST",
            "/api/repos/o/app/issues?_method=DELETE".into(),
            "",
            b"{}",
        ),
        ("GET", "/api/repos/o/app/x%3f/../../user".into(), "", b""),
        (
            "GET",
            "/o/app.git/info/refs?service=git-upload-pack&service=x".into(),
            "",
            b"",
        ),
        (
            "GET",
            "/o/app.git/info/refs?service=../../app2.git/info/refs".into(),
            "",
            b"",
        ),
        (
            "POST",
            "/o/app.git/git-receive-pack?x=1".into(),
            "",
            b"0000",
        ),
        // Absolute targets naming another host.
        ("GET", "http://127.0.0.1:1/user".into(), "", b""),
        ("GET", "http://127.0.0.1:1/api/repos/o/app".into(), "", b""),
        // A form body that could override the method.
        (
            "POST",
            "/api/repos/o/app/issues/1/comments".into(),
            "content-type: application/x-www-form-urlencoded\r\n",
            b"_method=DELETE",
        ),
    ];
    for (method, target, extra, body) in &attacks {
        let (status, text) = send(addr, request(method, target, extra, body)).await;
        let reached: Vec<String> = seen(&s)
            .iter()
            .map(|g| format!("{} {}", g.method, g.target))
            .collect();
        assert!(
            reached.is_empty(),
            "{method} {target} reached the forge as {reached:?}"
        );
        assert!(
            (400..500).contains(&status),
            "{method} {target}: {status}\n{text}"
        );
    }
    assert_eq!(
        seen(&s)
            .iter()
            .map(|g| format!("{} {}", g.method, g.target))
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "refused requests reached the forge"
    );

    // What is allowed arrives, as the session spells the repository, with
    // the daemon's token, the machine's credentials and overrides dropped,
    // and a write's body as JSON.
    let allowed: Vec<(&str, &str, &str, &[u8], &str)> = vec![
        ("GET", "/api/repos/o/app", "", b"", "GET /repos/o/app?"),
        (
            "GET",
            "/api/repos/O/APP/issues?state=open&labels=a%20b",
            "",
            b"",
            "GET /repos/o/app/issues?state=open&labels=a+b",
        ),
        (
            "GET",
            "/api/repos/o/app/contents/x?ref=%2f..%2f..",
            "",
            b"",
            "GET /repos/o/app/contents/x?ref=%2F..%2F..",
        ),
        (
            "POST",
            "/api/repos/o/app/issues/1/comments",
            "content-type: application/x-www-form-urlencoded\r\nauthorization: Bearer mine\r\ncookie: a=b\r\nx-http-method-override: DELETE\r\n",
            b"{\"body\":\"hi\"}",
            "POST /repos/o/app/issues/1/comments?",
        ),
        (
            "GET",
            "/o/app.git/info/refs?service=git-receive-pack",
            "",
            b"",
            "GET /o/app.git/info/refs?service=git-receive-pack",
        ),
        (
            "POST",
            "/o/app/git-receive-pack",
            "content-type: application/x-git-receive-pack-request\r\n",
            b"0000",
            "POST /o/app.git/git-receive-pack?",
        ),
    ];
    for (method, target, extra, body, arrived) in &allowed {
        let (status, text) = send(addr, request(method, target, extra, body)).await;
        assert!(
            !text.contains("firepit forge broker:"),
            "{method} {target}: {status}\n{text}"
        );
        let got = seen(&s).last().cloned().unwrap();
        assert_eq!(format!("{} {}", got.method, got.target), *arrived);
        assert!(
            got.auth
                .contains(if target.contains(".git") || !target.starts_with("/api") {
                    "Basic "
                } else {
                    SECRET
                })
        );
        assert_eq!(got.body, *body);
        for dropped in ["cookie", "x-http-method-override", "content-length-x"] {
            assert!(
                !got.headers.iter().any(|h| h == dropped),
                "{dropped}: {got:?}"
            );
        }
        if *method == "POST" && target.starts_with("/api") {
            assert!(got.headers.iter().any(|h| h == "content-type"));
        }
    }
    assert_eq!(seen(&s).len(), allowed.len());
}

#[tokio::test]
async fn rest_bodies_are_bounded_and_must_be_json() {
    let (addr, s) = start(Limits {
        rest_body: 1024,
        ..Limits::default()
    })
    .await;
    let target = "/api/repos/o/app/issues/1/comments";
    // Declared too large: refused before a byte of it is read.
    let head = format!(
        "POST {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        1 << 20
    );
    let (status, text) = send(addr, head.into_bytes()).await;
    assert_eq!(status, 413, "{text}");
    // Sent too large in chunks, with no length declared.
    let mut chunked = format!(
        "POST {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 600, "a".repeat(600)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = send(addr, chunked).await;
    assert_eq!(status, 413, "{text}");
    // Not JSON.
    let (status, text) = send(addr, request("POST", target, "", b"body=hi")).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("JSON"), "{text}");
    assert!(seen(&s).is_empty(), "{:?}", seen(&s));
    // Within the bound: passes.
    let (status, text) = send(addr, request("POST", target, "", b"{\"body\":\"hi\"}")).await;
    assert_eq!(status, 201, "{text}");
}

#[tokio::test]
async fn a_git_body_over_its_bound_is_cut_off() {
    let (addr, s) = start(Limits {
        git_body: 1000,
        ..Limits::default()
    })
    .await;
    let (status, text) = send(
        addr,
        request("POST", "/o/app.git/git-receive-pack", "", &[b'0'; 4000]),
    )
    .await;
    assert_eq!(status, 502, "{text}");
    // Whatever reached the forge is shorter than the bound.
    for g in seen(&s) {
        assert!(g.body.len() <= 1000, "{} bytes arrived", g.body.len());
    }
}

#[tokio::test]
async fn a_slow_forge_ends_in_a_504() {
    let (addr, _) = start(Limits {
        rest_total: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    let (status, text) = send(addr, request("GET", "/api/repos/o/app/slow", "", b"")).await;
    assert_eq!(status, 504, "{text}");
}

/// Reads until the peer closes; panics if that takes longer than a generous
/// guard (the broker's own bound is a second).
async fn closed_by_peer(c: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 1024];
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the broker closes a silent connection");
    out
}

#[tokio::test]
async fn silent_and_stalled_connections_are_closed() {
    let (addr, s) = start(Limits {
        header_read: Duration::from_secs(1),
        idle: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    // Nothing at all.
    let mut quiet = TcpStream::connect(addr).await.unwrap();
    closed_by_peer(&mut quiet).await;
    // Half a header.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /api/repos/o/app HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    closed_by_peer(&mut half).await;
    // Headers, then a body that stops.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            b"POST /api/repos/o/app/issues HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"ti",
        )
        .await
        .unwrap();
    closed_by_peer(&mut stalled).await;
    assert!(seen(&s).is_empty(), "{:?}", seen(&s));
}

#[tokio::test]
async fn connections_over_the_cap_get_a_503() {
    let (addr, _) = start(Limits {
        connections: 4,
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let (status, text) = send(addr, request("GET", "/api/repos/o/app", "", b"")).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("4 connections"), "{text}");
    // A closed connection frees its slot.
    held.pop();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let (status, _) = send(addr, request("GET", "/api/repos/o/app", "", b"")).await;
            if status == 200 {
                break;
            }
            assert_eq!(status, 503);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a slot comes free");
}
