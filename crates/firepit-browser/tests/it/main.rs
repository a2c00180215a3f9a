//! The browser engine against a real Chromium on the host (Debian's
//! `chromium`, which `cargo xtask test` installs), dialed on 127.0.0.1 the
//! way the daemon dials one inside a machine: the page outline, a click on a
//! button that throws, JavaScript, a failed request, a screenshot.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firepit_browser::{Dial, Report, attach, launch};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PAGE: &str = r#"<!doctype html><title>Shop</title>
<h1>Basket</h1>
<label>Name <input id="name"></label>
<button id="boom" onclick="throw new Error('boom from the button')">Pay</button>
<img src="/missing.png" alt="logo">
"#;

/// Chromium, ended when dropped (its profile directory with it).
struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chromium(port: u16) -> Chromium {
    let exe = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Chromium is not installed: `apt-get install chromium` (cargo xtask test does)");
    let profile = tempfile::tempdir().unwrap();
    let args: Vec<String> = launch::argv(port)
        .into_iter()
        .map(|a| {
            if a.starts_with("--user-data-dir=") {
                format!("--user-data-dir={}", profile.path().display())
            } else {
                a
            }
        })
        .collect();
    let child = Command::new(exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Chromium {
        child,
        _profile: profile,
    }
}

/// A server answering the page at `/` and 404 for anything else.
async fn app() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if head.starts_with("GET / ") {
                    ("200 OK", PAGE)
                } else {
                    ("404 Not Found", "not here")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_page_is_read_driven_and_its_errors_reported() {
    let devtools = free_port();
    let _chromium = chromium(devtools);
    let app = app().await;
    let dial: Dial = Arc::new(|port| TcpStream::connect(("127.0.0.1", port)).boxed());
    // Chromium takes a moment to listen.
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        match attach(&dial, devtools).await {
            Ok(p) => break p,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("Chromium's DevTools never answered: {e}"),
        }
    };
    let limit = Duration::from_secs(15);
    let url = format!("http://127.0.0.1:{app}/");
    page.open(&url, limit).await.unwrap();
    assert_eq!(page.location().0, url);

    let outline = page.snapshot(8000).await.unwrap();
    assert!(outline.contains("Basket"), "{outline}");
    assert!(outline.contains("Pay"), "{outline}");

    page.type_text(None, Some("#name"), "Ann", true, false)
        .await
        .unwrap();
    let typed = page
        .eval("document.querySelector('#name').value", limit)
        .await
        .unwrap();
    assert_eq!(typed, "Ann");
    assert_eq!(page.eval("1 + 2", limit).await.unwrap(), 3);

    page.click(None, Some("#boom")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen.extend(page.take_reports().0);
        let thrown = seen.iter().any(
            |r| matches!(r, Report::Exception { text, .. } if text.contains("boom from the button")),
        );
        let missing = seen.iter().any(|r| r.line().contains("missing.png"));
        if thrown && missing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines: Vec<String> = seen.iter().map(Report::line).collect();
    assert!(
        lines.iter().any(|l| l.contains("boom from the button")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("missing.png")),
        "{lines:#?}"
    );

    let png = page.screenshot(false).await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}
