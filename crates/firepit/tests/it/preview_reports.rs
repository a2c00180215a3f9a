//! The preview's page reports end to end: an app in a real machine, its
//! pages loaded in the person's Chromium (on the host, signed in as the UI
//! signs a person in) through the preview proxy; the script the proxy puts
//! into them reports the page's uncaught exception, and the proxy the 5xx a
//! route answers: both become problems. The HTML itself, read raw: the tag
//! after `<head>`, at the start of a page without one, in a gzip page the
//! app sends whatever it was asked, never in JSON; with the session setting
//! off, pages are byte for byte what the app sent. The report endpoint's
//! bounds: an oversized report is refused, a flood is rate limited.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firepit_browser::{Dial, attach, launch};
use futures::FutureExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::Daemon;

const APP: &str = r#"import gzip, http.server

PAGE = b"<!doctype html><html><head><title>shop</title></head><body><h1>Shop</h1><script>fetch('/api/fail'); throw new Error('the shop page broke')</script></body></html>"
NOHEAD = b"<p>no head here</p><script>throw new Error('the headless page broke')</script>"
ZIPPED = gzip.compress(PAGE, mtime=0)
open("/root/zipped.gz", "wb").write(ZIPPED)
open("/root/page.html", "wb").write(PAGE)


class Handler(http.server.BaseHTTPRequestHandler):
    def send(self, code, kind, body, encoding=None):
        self.send_response(code)
        self.send_header("content-type", kind)
        if encoding:
            self.send_header("content-encoding", encoding)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        if self.path == "/api/fail":
            self.send(500, "application/json", b'{"error": "db down"}')
        elif self.path == "/data.json":
            self.send(200, "application/json", b'{"html": "<head>"}')
        elif self.path == "/zipped":
            # Gzip whatever the request asked for.
            self.send(200, "text/html", ZIPPED, "gzip")
        elif self.path == "/nohead":
            self.send(200, "text/html", NOHEAD)
        else:
            self.send(200, "text/html; charset=utf-8", PAGE)


http.server.HTTPServer(("127.0.0.1", 8000), Handler).serve_forever()
"#;

const TAG: &str = r#"<script src="/__firepit/report.js"></script>"#;

/// Chromium on the host, ended when dropped (its profile with it).
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

fn chromium(port: u16) -> Chromium {
    let exe = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
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
    let child = Command::new(&exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{exe} (Debian's chromium, which `cargo xtask test` installs): {e}")
        });
    Chromium {
        child,
        _profile: profile,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One raw request to the daemon (`Connection: close`); the answer's head
/// (lowercase) and body.
async fn raw(d: &Daemon, request: &str) -> (String, Vec<u8>) {
    let addr = d.url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (
            format!("no whole head: {:?}", String::from_utf8_lossy(&all)),
            Vec::new(),
        );
    };
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    (head, all[end + 4..].to_vec())
}

/// A document load of `path` from the preview, as a browser sends it.
async fn document(d: &Daemon, host: &str, method: &str, path: &str) -> (String, Vec<u8>) {
    raw(
        d,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate, br\r\n\
             Sec-Fetch-Dest: document\r\nConnection: close\r\n\r\n",
            d.token
        ),
    )
    .await
}

async fn post_report(d: &Daemon, host: &str, body: &str) -> u16 {
    let (head, _) = raw(
        d,
        &format!(
            "POST /__firepit/report HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            d.token,
            body.len()
        ),
    )
    .await;
    head[9..12].parse().unwrap()
}

async fn preview_problems(d: &Daemon, id: &str) -> Vec<Value> {
    let ev: Vec<Value> = d
        .http()
        .get(format!(
            "{}/v1/sessions/{id}/events?since=0&limit=10000",
            d.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ev.into_iter()
        .filter(|e| e["type"] == "problem" && e["source"] == "preview")
        .collect()
}

/// Waits until a preview problem whose summary contains each of `wanted`
/// was logged; all preview problems then.
async fn wait_problems(d: &Daemon, id: &str, wanted: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = preview_problems(d, id).await;
        let all = wanted.iter().all(|w| {
            found
                .iter()
                .any(|p| p["summary"].as_str().unwrap_or("").contains(w))
        });
        if all {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no problems {wanted:?} in {found:#?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn preview_pages_report_their_errors_and_the_setting_turns_it_off() {
    let d = Daemon::start("lp1");
    let id = d.new_session(&[]);
    let src = d.data_dir().join("app.py");
    std::fs::write(&src, APP).unwrap();
    d.ok(&["cp", src.to_str().unwrap(), &format!("{id}:/root/app.py")]);
    let out = d.ok(&["closed-loop", &id]);
    assert_eq!(out, "wake-agent       on\npreview-reports  on\n");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = d
            .http()
            .post(format!("{}/v1/sessions/{id}/services", d.url))
            .json(&json!({"name": "web", "command": {"argv": ["python3", "-u", "/root/app.py"]}}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
        let port = d
            .url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        let host = format!("8000-{id}.localhost:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (head, _) = document(&d, &host, "GET", "/data.json").await;
            if head.get(9..12) == Some("200") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the app never answered: {head}\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let fetch = |name: &str| {
            let local = d.data_dir().join(name);
            d.ok(&["cp", &format!("{id}:/root/{name}"), local.to_str().unwrap()]);
            std::fs::read(local).unwrap()
        };
        let page = fetch("page.html");
        let zipped = fetch("zipped.gz");
        let page_s = String::from_utf8(page.clone()).unwrap();
        let with_tag = page_s.replacen("<head>", &format!("<head>{TAG}"), 1);

        // The HTML, read raw: the tag after <head>, its length counted.
        let (head, body) = document(&d, &host, "GET", "/").await;
        assert_eq!(
            String::from_utf8_lossy(&body),
            with_tag,
            "{head}\n{}",
            d.log()
        );
        assert!(
            head.contains(&format!("content-length: {}\r\n", with_tag.len())),
            "{head}"
        );
        // A gzip page (the app ignores what it was asked): unpacked, with the tag.
        let (head, body) = document(&d, &host, "GET", "/zipped").await;
        assert_eq!(String::from_utf8_lossy(&body), with_tag, "{head}");
        assert!(!head.contains("content-encoding"), "{head}");
        // No head: at the start.
        let (_, body) = document(&d, &host, "GET", "/nohead").await;
        assert!(String::from_utf8_lossy(&body).starts_with(&format!("{TAG}<p>no head here")));
        // Not HTML, and HEAD: untouched.
        let (_, body) = document(&d, &host, "GET", "/data.json").await;
        assert_eq!(body, br#"{"html": "<head>"}"#);
        let (head, body) = document(&d, &host, "HEAD", "/").await;
        assert!(body.is_empty());
        assert!(
            head.contains(&format!("content-length: {}\r\n", page.len())),
            "{head}"
        );
        // The script, on the preview's own origin.
        let (head, body) = document(&d, &host, "GET", "/__firepit/report.js").await;
        assert!(head.contains("content-type: text/javascript"), "{head}");
        assert!(String::from_utf8_lossy(&body).contains("sendBeacon"));

        // The person's Chromium, signed in the way the UI signs a person in.
        let devtools = free_port();
        let _chromium = chromium(devtools);
        let dial: Dial = Arc::new(|port| TcpStream::connect(("127.0.0.1", port)).boxed());
        let deadline = Instant::now() + Duration::from_secs(30);
        let browser = loop {
            match attach(&dial, devtools).await {
                Ok(p) => break p,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("Chromium's DevTools never answered: {e}"),
            }
        };
        let limit = Duration::from_secs(30);
        browser
            .open(
                &format!("http://localhost:{port}/?token={}", d.token),
                limit,
            )
            .await
            .unwrap();
        browser
            .open(&format!("http://{host}/"), limit)
            .await
            .unwrap();
        let found = wait_problems(
            &d,
            &id,
            &["the shop page broke", "GET /api/fail answered 500"],
        )
        .await;
        let thrown: Vec<&Value> = found
            .iter()
            .filter(|p| {
                p["summary"]
                    .as_str()
                    .unwrap()
                    .contains("the shop page broke")
            })
            .collect();
        assert_eq!(thrown.len(), 1, "{found:#?}");
        assert_eq!(thrown[0]["kind"], "js_exception");
        assert!(
            thrown[0]["detail"].as_str().unwrap().contains("page: /"),
            "{found:#?}"
        );
        // The same-origin 500 is the proxy's to report, once.
        let failed: Vec<&Value> = found
            .iter()
            .filter(|p| p["summary"].as_str().unwrap().contains("/api/fail"))
            .collect();
        assert_eq!(failed.len(), 1, "{found:#?}");
        assert_eq!(failed[0]["kind"], "http_5xx");
        browser
            .open(&format!("http://{host}/nohead"), limit)
            .await
            .unwrap();
        wait_problems(&d, &id, &["the headless page broke"]).await;

        // The report endpoint's bounds: too large, then a flood.
        let big = format!(r#"{{"kind":"error","message":"{}"}}"#, "x".repeat(20_000));
        assert_eq!(post_report(&d, &host, &big).await, 413);
        assert_eq!(post_report(&d, &host, "not json").await, 400);
        let before = preview_problems(&d, &id).await.len();
        let started = Instant::now();
        let mut taken = 0;
        for n in 0..60 {
            let body = format!(r#"{{"kind":"error","message":"flood {n}"}}"#);
            match post_report(&d, &host, &body).await {
                204 => taken += 1,
                429 => {}
                other => panic!("report {n}: {other}"),
            }
        }
        let secs = started.elapsed().as_secs() as usize;
        assert!(taken < 60, "no report was refused");
        assert!(taken <= 20 + secs + 1, "{taken} reports in {secs} s");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let flood = preview_problems(&d, &id).await.len() - before;
        assert!(flood <= taken, "{flood} problems of {taken} reports");

        // The setting off (the CLI): pages are what the app sent, byte for byte.
        let out = d.ok(&["closed-loop", &id, "--preview-reports", "off"]);
        assert_eq!(out, "wake-agent       on\npreview-reports  off\n");
        let (head, body) = document(&d, &host, "GET", "/").await;
        assert_eq!(body, page, "{head}");
        assert!(
            head.contains(&format!("content-length: {}\r\n", page.len())),
            "{head}"
        );
        let (head, body) = document(&d, &host, "GET", "/zipped").await;
        assert_eq!(body, zipped, "{head}");
        assert!(head.contains("content-encoding: gzip"), "{head}");
        let (_, body) = document(&d, &host, "GET", "/nohead").await;
        assert!(body.starts_with(b"<p>no head here"));
        let settings: Value = d
            .http()
            .get(format!("{}/v1/sessions/{id}/closed-loop", d.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            settings,
            json!({"wake_agent": true, "preview_reports": false})
        );
    });
}
