//! The web surface against a browser's attackers and a hostile machine, end
//! to end: a page on another localhost port, in real headless Chromium with
//! the owner signed in, cannot open the shared shell or stop a session; an
//! app cannot set firepit's cookies or cookies for the UI's domain through
//! its preview; `git http-backend` replaced inside the machine cannot set
//! cookies or serve a page on the daemon's origin.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::{Daemon, serve_on_thread};
use crate::preview::{bearer, get, host, port, put_file, send_raw, spawn_in, wait_for};

/// Longest the attacking page may take to report that it is done.
const PAGE_LIMIT: Duration = Duration::from_secs(120);

/// Chromium, ended when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Opens `url` in a fresh headless Chromium that reaches nothing but
    /// loopback by itself (no background networking).
    fn open(url: &str) -> Browser {
        let exe = std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(&exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-component-update",
                "--disable-breakpad",
                "--disable-domain-reliability",
                "--metrics-recording-only",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} is missing ({e}): this test drives Debian's chromium package (`cargo xtask test` installs it)",
                    exe.to_string_lossy()
                )
            });
        Browser {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The attacking page: the owner signed in to the daemon earlier in this
/// browser (the login URL's answer sets the cookie for the daemon's host),
/// then the page tries the shell's WebSocket and `POST …/stop`, each
/// with that cookie attached by the browser, and reports to its own server.
fn attack_page(daemon_port: u16, id: &str, token: &str) -> String {
    format!(
        r#"<!doctype html><meta charset=utf-8><title>another app</title><body><script>
const daemon = "localhost:{daemon_port}";
const report = (what) => fetch("/report?" + new URLSearchParams(what)).catch(() => {{}});
(async () => {{
  await fetch(`http://${{daemon}}/?token={token}`, {{ mode: "no-cors", credentials: "include" }});
  await report({{ step: "signed-in" }});
  const ws = await new Promise((done) => {{
    const s = new WebSocket(`ws://${{daemon}}/v1/sessions/{id}/pty/main`);
    s.binaryType = "arraybuffer";
    s.onopen = () => {{
      s.send(new TextEncoder().encode("touch /tmp/pwned\r"));
      done("open");
    }};
    s.onerror = () => done("error");
    s.onclose = (e) => done("closed " + e.code);
  }});
  await report({{ step: "ws", result: ws }});
  let stop;
  try {{
    await fetch(`http://${{daemon}}/v1/sessions/{id}/stop`, {{ method: "POST", mode: "no-cors", credentials: "include" }});
    stop = "sent";
  }} catch (e) {{
    stop = "failed " + e;
  }}
  await report({{ step: "stop", result: stop }});
  await report({{ step: "done" }});
}})();
</script>"#
    )
}

#[test]
fn a_page_on_another_localhost_port_cannot_use_the_owners_cookie() {
    let d = Daemon::start("w1");
    let id = d.new_session(&[]);
    let daemon_port = port(&d);

    let (tx, rx) = mpsc::channel::<String>();
    let page = attack_page(daemon_port, &id, &d.token);
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || {
                let page = page.clone();
                async move { axum::response::Html(page) }
            }),
        )
        .route(
            "/report",
            axum::routing::get(move |axum::extract::RawQuery(q): axum::extract::RawQuery| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(q.unwrap_or_default());
                    "ok"
                }
            }),
        );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let page_port = listener.local_addr().unwrap().port();
    serve_on_thread(listener, app);

    // `localhost:<page port>` and `localhost:<daemon port>` are one site, so
    // the browser attaches the `SameSite=Lax` login cookie to both requests.
    let _browser = Browser::open(&format!("http://localhost:{page_port}/"));
    let mut reports = Vec::new();
    loop {
        match rx.recv_timeout(PAGE_LIMIT) {
            Ok(r) if r == "step=done" => break,
            Ok(r) => reports.push(r),
            Err(_) => panic!(
                "the page did not finish; it reported {reports:?}\ndaemon log:\n{}",
                d.log()
            ),
        }
    }
    assert!(
        reports.iter().any(|r| r.starts_with("step=ws&result=")),
        "{reports:?}"
    );
    assert!(
        !reports.iter().any(|r| r == "step=ws&result=open"),
        "the page opened the shell: {reports:?}"
    );

    // The daemon saw both requests, with the cookie (the refusal is only for
    // requests that carry it), and refused them for their origin.
    let log = without_colours(&d.log());
    let page_origin = format!("http://localhost:{page_port}");
    for path in [
        format!("/v1/sessions/{id}/pty/main"),
        format!("/v1/sessions/{id}/stop"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("refused a cross-site browser request")
                    && l.contains(&format!("path={path} "))
                    && l.contains(&page_origin)),
            "no refusal of {path} from {page_origin} in the daemon log:\n{log}\nreports: {reports:?}"
        );
    }
    // The session still runs, and nothing was typed into its shell.
    assert_eq!(
        d.sh(&id, "test -e /tmp/pwned && echo typed || echo untouched")
            .trim(),
        "untouched"
    );
}

/// `log` without ANSI colour sequences (`ESC [ … m`).
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An app that sets cookies: its own, firepit's, and ones for the UI's domain.
const COOKIE_APP: &str = r#"
import http.server as h, sys
own = sys.argv[1]
class H(h.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        for c in ["app=1; Path=/", "firepit_token=planted; Path=/",
                  "__Host-firepit_token=planted; Secure; Path=/",
                  "firepit_preview=planted; Path=/", "wide=1; Domain=localhost; Path=/",
                  "dotted=1; Domain=.LocalHost", "own=1; Domain=" + own]:
            self.send_header("Set-Cookie", c)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
h.ThreadingHTTPServer(("127.0.0.1", 8200), H).serve_forever()
"#;

#[test]
fn previews_cannot_set_firepits_cookies_or_the_uis_domain() {
    let d = Daemon::start("w2");
    let id = d.new_session(&[]);
    let own = format!("8200-{id}.localhost");
    put_file(&d, &id, "/root/cookies.py", COOKIE_APP);
    spawn_in(&d, &id, &format!("python3 /root/cookies.py {own}"));
    wait_for(&d, &id, 8200, "/");
    let h = host(&d, 8200, &id);
    // The fast path (HTTP/1.1) and the full one (HTTP/1.0 falls back to it).
    let fast = get(&d, &h, "/", &[bearer(&d)]);
    let full = send_raw(
        &d,
        format!("GET / HTTP/1.0\r\nHost: {h}\r\n{}\r\n\r\n", bearer(&d)).as_bytes(),
    );
    for (path, r) in [("fast", fast), ("full", full)] {
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let cookies: Vec<String> = r
            .head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.trim().to_owned())
            .collect();
        assert_eq!(
            cookies,
            ["app=1; Path=/".to_owned(), format!("own=1; Domain={own}")],
            "{path}: {r:?}"
        );
    }
}

/// A `git` that answers as a hostile machine's root would make it.
const HOSTILE_GIT: &str = "#!/bin/sh\ncat >/dev/null\n\
printf 'Status: 200 OK\\r\\nContent-Type: text/html\\r\\nSet-Cookie: firepit_token=planted; Path=/\\r\\n\
Access-Control-Allow-Origin: *\\r\\nX-Planted: 1\\r\\nCache-Control: no-cache\\r\\n\\r\\n\
<script>document.title=\"ran\"</script>'\n";

#[test]
fn a_hostile_git_cannot_set_cookies_or_serve_a_page_on_the_daemons_origin() {
    let d = Daemon::start("w3");
    let id = d.new_session(&[]);
    put_file(&d, &id, "/usr/local/sbin/git", HOSTILE_GIT);
    d.sh(
        &id,
        "chmod 755 /usr/local/sbin/git && mkdir -p /workspace/.git",
    );
    let r = get(
        &d,
        &format!("127.0.0.1:{}", port(&d)),
        &format!("/git/{id}/info/refs?service=git-upload-pack"),
        &[bearer(&d)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.text().contains("<script>"), "the body passes: {r:?}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/octet-stream"),
        "{r:?}"
    );
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        r.header("content-security-policy").as_deref(),
        Some("default-src 'none'; sandbox")
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    for gone in ["set-cookie", "access-control-allow-origin", "x-planted"] {
        assert_eq!(r.header(gone), None, "{gone}: {r:?}");
    }
}
