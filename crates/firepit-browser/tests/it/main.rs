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

/// A page that raises `case C run N` in the way `c` names: from a timer
/// that many ms after load, a rejected promise, a worker, after a
/// client-side navigation, or inside a cross-site (out-of-process) frame.
const RAISER: &str = r#"<!doctype html><title>raiser</title><body><script>
const q = new URLSearchParams(location.search), c = q.get('c');
const msg = `case ${c}${q.has('in') ? ' in ' + q.get('in') : ''} run ${q.get('n')}`;
if (c === 'reject') addEventListener('load', () => Promise.reject(new Error(msg)));
else if (c === 'worker') new Worker('/w.js?' + q);
else if (c === 'spa') addEventListener('load', () => setTimeout(() => {
  history.pushState({}, '', '/next?' + q);
  setTimeout(() => { throw new Error(msg) }, 20);
}, 20));
else if (c === 'frame') {
  const f = document.createElement('iframe');
  f.src = `http://localhost:${location.port}/t?c=0&n=${q.get('n')}&in=frame`;
  document.body.appendChild(f);
}
else addEventListener('load', () => setTimeout(() => { throw new Error(msg) }, Number(c)));
</script>"#;

const WORKER: &str = "const q = new URLSearchParams(self.location.search);\n\
                      throw new Error(`case ${q.get('c')} run ${q.get('n')}`);\n";

/// A server answering [`RAISER`] at `/t?…` and [`WORKER`] at `/w.js?…`.
async fn raisers() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let (status, kind, body) = if head.starts_with("GET /t?") {
                    ("200 OK", "text/html", RAISER)
                } else if head.starts_with("GET /w.js?") {
                    ("200 OK", "text/javascript", WORKER)
                } else {
                    ("404 Not Found", "text/plain", "not here")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// The closed loop's promise: whatever a page raises, whenever it raises
/// it, reaches the agent, once. For each way of raising, 20 loads in a row;
/// the errors are read the way the agent's tools read them (one cursor,
/// looked at right after the load and then until it shows), and each run's
/// error must be read exactly once: none lost, none repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_raised_at_any_moment_reach_the_reader_once() {
    const RUNS: usize = 20;
    let devtools = free_port();
    let _chromium = chromium(devtools);
    let app = raisers().await;
    let dial: Dial = Arc::new(|port| TcpStream::connect(("127.0.0.1", port)).boxed());
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        match attach(&dial, devtools).await {
            Ok(p) => break p,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("Chromium's DevTools never answered: {e}"),
        }
    };
    let mut read: Vec<String> = Vec::new();
    for case in ["0", "50", "500", "reject", "worker", "spa", "frame"] {
        for n in 0..RUNS {
            let url = format!("http://127.0.0.1:{app}/t?c={case}&n={n}");
            page.open(&url, Duration::from_secs(15)).await.unwrap();
            // Raised by this load: the frame's page raises as case 0.
            let want = match case {
                "frame" => format!("case 0 in frame run {n}"),
                c => format!("case {c} run {n}"),
            };
            let until = Instant::now() + Duration::from_secs(10);
            loop {
                read.extend(page.undelivered_errors().iter().map(Report::line));
                if read.iter().any(|l| l.contains(&want)) || Instant::now() > until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let times = read
                .iter()
                .filter(|l| l.contains(&format!("{want}\n")) || l.ends_with(&want))
                .count();
            assert_eq!(
                times, 1,
                "{case}, run {n}: {want:?} read {times} times in {read:#?}"
            );
        }
    }
    // Nothing comes again later.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(page.undelivered_errors().is_empty());
}

/// A page whose button opens a popup, and the popup, which throws every
/// 50 ms (up to 200 times), so some of its errors come after it is attached
/// however slow the machine.
const OPENER: &str = r#"<!doctype html><title>opener</title>
<button id="open" onclick="window.open('/pop', '_blank')">Open</button>
<a id="blank" href="/pop?link" target="_blank">Link</a>"#;
const POPUP: &str = r#"<!doctype html><title>popup</title><script>
let n = 0;
const t = setInterval(() => { if (++n > 200) clearInterval(t); else throw new Error('boom in the popup ' + location.search); }, 50);
</script>"#;

/// A server answering [`OPENER`] at `/` and [`POPUP`] at `/pop`.
async fn opener() -> u16 {
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
                    ("200 OK", OPENER)
                } else if head.starts_with("GET /pop") {
                    ("200 OK", POPUP)
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

/// Popups the page opens (`window.open`, a `target=_blank` link) are
/// collected like the page: the reader hears that one opened, and its
/// errors, marked as the popup's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popups_errors_reach_the_reader() {
    let devtools = free_port();
    let _chromium = chromium(devtools);
    let app = opener().await;
    let dial: Dial = Arc::new(|port| TcpStream::connect(("127.0.0.1", port)).boxed());
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        match attach(&dial, devtools).await {
            Ok(p) => break p,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("Chromium's DevTools never answered: {e}"),
        }
    };
    page.open(&format!("http://127.0.0.1:{app}/"), Duration::from_secs(15))
        .await
        .unwrap();
    for (button, search) in [
        ("#open", "boom in the popup \n"),
        ("#blank", "boom in the popup ?link"),
    ] {
        page.click(None, Some(button)).await.unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        let mut read = Vec::new();
        let (mut opened, mut thrown) = (false, false);
        while !(opened && thrown) && Instant::now() < until {
            for r in page.undelivered_errors() {
                opened |= matches!(&r, Report::Popup { .. });
                thrown |= matches!(&r, Report::Exception { text, .. }
                    if text.starts_with("[popup ") && format!("{text}\n").contains(search));
                read.push(r.line());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(opened, "{button}: no popup reported: {read:#?}");
        assert!(
            thrown,
            "{button}: the popup's error was not read: {read:#?}"
        );
    }
    // The first page is still the one the tools drive.
    assert!(page.location().0.ends_with(&format!("{app}/")));
}
