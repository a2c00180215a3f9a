//! The agent's browser and the closed loop, end to end: Chromium inside a
//! real machine from the `browser` image, driven by the agent's browser tools
//! (scripted by the stand-in model), the live view, screenshots as
//! artifacts, bad pages, a browser that goes away, and a server error that
//! wakes the idle agent, which fixes it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::agent::{Script, stand_in, turn};
use crate::harness::Daemon;

/// The image with Chromium, which `cargo xtask test` builds into the images dir.
fn browser_image() -> String {
    std::env::var("FIREPIT_TEST_BROWSER_IMAGE").unwrap_or_else(|_| {
        panic!(
            "FIREPIT_TEST_BROWSER_IMAGE is not set: run the tests with `cargo xtask test` (as root), \
             which builds the `browser` image and sets it"
        )
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn with_model(instance: &str, script: &Script) -> Daemon {
    let url = stand_in(script.clone());
    Daemon::start_with(
        instance,
        &[
            ("FIREPIT_MODEL_URL", url.as_str()),
            ("FIREPIT_MODEL", "stand-in"),
        ],
    )
}

/// The result the model was given for tool call `id`, from the last request.
fn result(script: &Script, id: &str) -> String {
    let requests = script.lock().unwrap().1.clone();
    let last = requests.last().expect("the model was called");
    last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == id)
        .map(|m| m["content"].as_str().unwrap_or("").to_owned())
        .unwrap_or_else(|| panic!("no result for {id} in {last}"))
}

/// The session's events, as JSON.
async fn events(d: &Daemon, id: &str) -> Vec<Value> {
    d.http()
        .get(format!(
            "{}/v1/sessions/{id}/events?since=0&limit=10000",
            d.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

fn call(id: &str, name: &str, args: Value) -> Vec<String> {
    turn("", &[(id, name, args)])
}

const GREETER: &str = r#"<!doctype html><title>Greeter</title>
<h1>Greeter</h1>
<label>Name <input id="name"></label>
<button id="greet" onclick="document.getElementById('out').textContent = 'Hello, ' + document.getElementById('name').value">Greet</button>
<button id="boom" onclick="throw new Error('boom from the button')">Throw</button>
<select id="color"><option>Red</option><option>Blue</option></select>
<p id="out"></p>
<script>console.error('startup warning: no config')</script>
"#;

use crate::harness::Ws;

async fn live_view(d: &Daemon, id: &str) -> Ws {
    d.websocket(&format!("/v1/sessions/{id}/browser/live"))
        .await
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(120), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).unwrap(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("the live view ended: {other:?}"),
        }
    }
}

#[test]
fn the_agent_drives_a_real_page_and_the_person_watches() {
    let script: Script = Default::default();
    script.lock().unwrap().0.extend([
        call("c1", "service_start", json!({"name": "site", "command": "python3 -m http.server 8000 --bind 127.0.0.1", "cwd": "/root/site"})),
        call("c2", "browser_open", json!({"url": "localhost:8000/"})),
        call("c3", "browser_snapshot", json!({})),
        call("c4", "browser_type", json!({"ref": "e1", "text": "Ada"})),
        call("c5", "browser_click", json!({"ref": "e2"})),
        call("c6", "browser_eval", json!({"expression": "document.querySelector('#out').textContent"})),
        call("c7", "browser_click", json!({"ref": "e3"})),
        call("c8", "browser_console", json!({})),
        call("c9", "browser_select", json!({"ref": "e4", "value": "Blue"})),
        call("c10", "browser_snapshot", json!({})),
        call("c11", "browser_screenshot", json!({})),
        call("c12", "browser_eval", json!({"expression": "nosuchthing.x"})),
        turn("The page works; its Throw button throws.", &[]),
    ]);
    let d = with_model("t50", &script);
    let image = browser_image();
    let id = d.new_session(&["--image", &image, "--memory", "2G"]);
    d.sh(&id, "mkdir -p /root/site");
    std::fs::write(d.data_dir().join("index.html"), GREETER).unwrap();
    let src = d.data_dir().join("index.html");
    d.ok(&[
        "cp",
        src.to_str().unwrap(),
        &format!("{id}:/root/site/index.html"),
    ]);

    let rt = rt();
    // The live view opens before any browser runs: it says so and waits.
    let mut ws = rt.block_on(live_view(&d, &id));
    let first = rt.block_on(next_json(&mut ws));
    assert_eq!(first, json!({"type": "closed", "reason": "not started"}));
    let watcher = rt.spawn(async move {
        let mut seen = Vec::new();
        loop {
            let m = next_json(&mut ws).await;
            let done = m["type"] == "frame" && m["url"].as_str().unwrap_or("").contains(":8000/");
            seen.push(m);
            if done {
                return seen;
            }
        }
    });

    let out = d.ok(&["agent", &id, "check the greeter page"]);
    assert!(out.contains("— done"), "{out}");

    let opened = result(&script, "c2");
    assert!(
        opened.contains("HTTP 200") && opened.contains("\"Greeter\""),
        "{opened}"
    );
    assert!(
        opened.contains("console.error: startup warning: no config"),
        "{opened}"
    );
    let snap = result(&script, "c3");
    for want in [
        "- heading 1 \"Greeter\"",
        "textbox \"Name\" [ref=e1] value=\"\"",
        "button \"Greet\" [ref=e2]",
        "button \"Throw\" [ref=e3]",
        "[ref=e4] options=[*Red | Blue]",
    ] {
        assert!(
            snap.contains(want),
            "{want:?} is not in the snapshot:\n{snap}"
        );
    }
    assert_eq!(result(&script, "c6").trim(), "\"Hello, Ada\"");
    let thrown = result(&script, "c7");
    assert!(
        thrown.contains("uncaught exception: Error: boom from the button"),
        "{thrown}"
    );
    let console = result(&script, "c8");
    assert!(
        console.contains("uncaught exception: Error: boom from the button"),
        "{console}"
    );
    assert!(
        console.contains("console.error: startup warning"),
        "{console}"
    );
    let snap = result(&script, "c10");
    assert!(
        snap.contains("value=\"Ada\"") && snap.contains("options=[Red | *Blue]"),
        "{snap}"
    );
    let shot = result(&script, "c11");
    assert!(shot.contains("screenshot-1.png"), "{shot}");
    let bad = result(&script, "c12");
    assert!(bad.contains("nosuchthing is not defined"), "{bad}");

    rt.block_on(async {
        // The screenshot is an artifact with its content type.
        let resp = d
            .http()
            .get(format!(
                "{}/v1/sessions/{id}/artifacts/screenshot-1.png",
                d.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "image/png");
        let png = resp.bytes().await.unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let missing = d
            .http()
            .get(format!("{}/v1/sessions/{id}/artifacts/..%2Ftoken", d.url))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);

        // The browser's DevTools port is never previewed.
        let port = d.url.rsplit(':').next().unwrap().to_owned();
        let devtools = d
            .http()
            .get(format!("{}/json/list", d.url))
            .header("host", format!("9223-{id}.localhost:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(devtools.status(), 403);

        let ev = events(&d, &id).await;
        let art = of_type(&ev, "artifact");
        assert_eq!(art.len(), 1, "{ev:?}");
        assert_eq!(art[0]["name"], "screenshot-1.png");
        assert_eq!(art[0]["content_type"], "image/png");
        assert_eq!(art[0]["bytes"], png.len() as u64);
        // The thrown error is a problem of the session, once.
        let problems = of_type(&ev, "problem");
        let js: Vec<_> = problems
            .iter()
            .filter(|p| p["kind"] == "js_exception")
            .collect();
        assert_eq!(js.len(), 1, "{problems:?}");
        assert_eq!(js[0]["source"], "browser");
        assert!(
            js[0]["summary"]
                .as_str()
                .unwrap()
                .contains("boom from the button")
        );

        // The person saw the agent's page live.
        let seen = tokio::time::timeout(Duration::from_secs(120), watcher)
            .await
            .expect("a frame of the page arrived")
            .unwrap();
        let frame = seen.last().unwrap();
        use base64::Engine;
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(frame["data"].as_str().unwrap())
            .unwrap();
        assert!(jpeg.starts_with(&[0xff, 0xd8]), "not a JPEG");
        assert_eq!(frame["format"], "jpeg");
        assert!(frame["width"].as_u64().unwrap() > 0);
        assert!(
            seen.iter().any(|m| m["type"] == "page"),
            "no page message: {seen:?}"
        );
    });
}

/// A page that never loads, endless alerts, a huge DOM, and a browser that
/// goes away: every answer comes in bounded time and size.
#[test]
fn bad_pages_and_a_lost_browser_get_bounded_clear_answers() {
    const SERVER: &str = r#"import http.server, socketserver, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            self.send_response(200); self.send_header("content-type", "text/html"); self.end_headers()
            self.wfile.write(b"<p>first part</p>"); self.wfile.flush()
            time.sleep(3600)
        elif self.path == "/alerts":
            body = b"<p>alerting</p><script>for (let i = 0; i < 1000; i++) alert('again'); setInterval(() => alert('again'), 0)</script>"
        elif self.path == "/huge":
            body = b"<body><script>for (let i = 0; i < 50000; i++) { const b = document.createElement('button'); b.textContent = 'button ' + i; document.body.appendChild(b); }</script>"
        else:
            body = b"<p>home</p>"
        self.send_response(200); self.send_header("content-type", "text/html"); self.end_headers()
        self.wfile.write(body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(("127.0.0.1", 8001), H).serve_forever()
"#;
    let script: Script = Default::default();
    script.lock().unwrap().0.extend([
        call(
            "c1",
            "write_file",
            json!({"path": "/root/bad/server.py", "content": SERVER}),
        ),
        call(
            "c2",
            "service_start",
            json!({"name": "bad", "command": "python3 -u server.py", "cwd": "/root/bad"}),
        ),
        call(
            "c3",
            "browser_open",
            json!({"url": "http://127.0.0.1:8001/slow", "timeout_s": 3}),
        ),
        call("c4", "browser_snapshot", json!({})),
        call(
            "c5",
            "browser_open",
            json!({"url": "http://127.0.0.1:8001/alerts"}),
        ),
        call("c6", "browser_snapshot", json!({})),
        call("c7", "browser_console", json!({})),
        call(
            "c8",
            "browser_open",
            json!({"url": "http://127.0.0.1:8001/huge", "timeout_s": 60}),
        ),
        call("c8b", "browser_console", json!({})),
        call("c9", "browser_snapshot", json!({"max_chars": 4000})),
        call(
            "c10",
            "browser_eval",
            json!({"expression": "while (true) {}", "timeout_s": 2}),
        ),
        call(
            "c11",
            "browser_eval",
            json!({"expression": "document.querySelectorAll('button').length"}),
        ),
        call("c12", "browser_open", json!({"url": "http://127.0.0.1:1/"})),
        call("c13", "service_stop", json!({"name": "chromium"})),
        call(
            "c14",
            "browser_open",
            json!({"url": "http://127.0.0.1:8001/"}),
        ),
        call("c15", "browser_click", json!({"ref": "e999"})),
        call("c16", "browser_click", json!({})),
        turn("Checked the bad pages.", &[]),
    ]);
    let d = with_model("t51", &script);
    let image = browser_image();
    let id = d.new_session(&["--image", &image, "--memory", "2G"]);
    let out = d.ok(&["agent", &id, "try the bad pages"]);
    assert!(out.contains("— done"), "{out}");

    let slow = result(&script, "c3");
    assert!(slow.contains("did not finish loading within 3s"), "{slow}");
    assert!(result(&script, "c4").contains("first part"));
    let alerts = result(&script, "c6");
    assert!(
        alerts.contains("alerting"),
        "the page still answers: {alerts}"
    );
    let console = result(&script, "c7");
    let dismissed = console.matches("alert dialog dismissed: again").count();
    assert!((1..=5).contains(&dismissed), "{console}");
    // Dialogs never block the page; past five they are reported once more, at 20.
    let later = result(&script, "c8b");
    assert!(
        format!("{console}{later}").contains("the page keeps opening dialogs"),
        "{console}\n{later}"
    );
    assert!(
        result(&script, "c8").contains("at http://127.0.0.1:8001/huge"),
        "{}",
        result(&script, "c8")
    );
    let huge = result(&script, "c9");
    assert!(huge.len() < 5000, "{} bytes", huge.len());
    assert!(
        !huge.starts_with("error"),
        "{huge}\nopen: {}\nconsole: {}",
        result(&script, "c8"),
        result(&script, "c7")
    );
    assert!(huge.contains("[the page is larger"), "{huge}");
    let looped = result(&script, "c10");
    assert!(looped.contains("did not finish within 2s"), "{looped}");
    assert_eq!(
        result(&script, "c11").trim(),
        "50000",
        "the page answers after the endless script"
    );
    let refused = result(&script, "c12");
    assert!(
        refused.contains("could not open http://127.0.0.1:1/: net::"),
        "{refused}"
    );
    let back = result(&script, "c14");
    assert!(back.starts_with("note: the browser had stopped"), "{back}");
    assert!(
        back.contains("\"\"") || back.contains("at http://127.0.0.1:8001/"),
        "{back}"
    );
    let stale = result(&script, "c15");
    assert!(stale.contains("ref e999 is not on the page"), "{stale}");
    let none = result(&script, "c16");
    assert!(none.contains("give the element's ref"), "{none}");

    let rt = rt();
    rt.block_on(async {
        let ev = events(&d, &id).await;
        let crashes: Vec<_> = of_type(&ev, "problem")
            .into_iter()
            .filter(|p| p["kind"] == "browser_crash")
            .collect();
        assert_eq!(crashes.len(), 1, "{ev:?}");
    });
}

/// The closed loop: a route of the app raises; the traceback in the service
/// log becomes one `problem` event (however often it repeats); the idle
/// agent wakes with it, reads the log, fixes the file, restarts the app and
/// runs the tests; the page then works.
#[test]
fn a_server_error_wakes_the_idle_agent_which_fixes_it() {
    const APP: &str = r#"import http.server


def total(items):
    return sum(items) / len(items)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("average: %s" % total([])).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    http.server.HTTPServer(("127.0.0.1", 8000), Handler).serve_forever()
"#;
    const TEST: &str = r#"import unittest
from server import total


class T(unittest.TestCase):
    def test_empty(self):
        self.assertEqual(total([]), 0)

    def test_two(self):
        self.assertEqual(total([1, 3]), 2)
"#;
    let script: Script = Default::default();
    script.lock().unwrap().0.extend([
        // The person's request.
        call("c1", "write_file", json!({"path": "/root/app/server.py", "content": APP})),
        call("c2", "write_file", json!({"path": "/root/app/test_server.py", "content": TEST})),
        call("c3", "service_start", json!({"name": "web", "command": "python3 -u server.py", "cwd": "/root/app"})),
        turn("The app runs on port 8000.", &[]),
        // Woken by the problem.
        call("c4", "service_logs", json!({"name": "web"})),
        call("c5", "edit_file", json!({"path": "/root/app/server.py", "old_text": "    return sum(items) / len(items)\n", "new_text": "    return sum(items) / len(items) if items else 0\n"})),
        call("c6", "service_stop", json!({"name": "web"})),
        call("c7", "service_start", json!({"name": "web", "command": "python3 -u server.py", "cwd": "/root/app"})),
        call("c8", "test", json!({"command": "python3 -m unittest -v", "cwd": "/root/app"})),
        turn("Fixed: an empty list averaged to a division by zero.", &[]),
    ]);
    let d = with_model("t52", &script);
    let id = d.new_session(&[]);
    let out = d.ok(&["agent", &id, "write a small app that shows an average"]);
    assert!(out.contains("— done"), "{out}");

    let rt = rt();
    rt.block_on(async {
        let port = d.url.rsplit(':').next().unwrap().to_owned();
        let page = || async {
            d.http()
                .get(format!("{}/", d.url))
                .header("host", format!("8000-{id}.localhost:{port}"))
                .send()
                .await
        };
        // The route raises: the connection closes without an answer. Three
        // requests; the first is sure to fail (the woken agent may have fixed
        // the app before the others).
        for i in 0..3 {
            let r = page().await;
            let failed = r.is_err() || !r.unwrap().status().is_success();
            assert!(failed || i > 0, "the broken route answered");
        }
        // The agent wakes, fixes it and finishes (bounded: the script is short).
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let n = script.lock().unwrap().1.len();
            let status: Value = d
                .http()
                .get(format!("{}/v1/sessions/{id}/agent", d.url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if n >= 10 && status["running"] == false {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not finish: {n} model calls\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let resp = page().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "average: 0");

        let ev = events(&d, &id).await;
        let problems: Vec<_> = of_type(&ev, "problem")
            .into_iter()
            .filter(|p| p["source"] == "service:web")
            .collect();
        assert_eq!(problems.len(), 1, "three crashes, one event: {problems:?}");
        assert_eq!(problems[0]["kind"], "python_exception");
        assert_eq!(
            problems[0]["summary"],
            "ZeroDivisionError: division by zero"
        );
        assert!(
            problems[0]["detail"]
                .as_str()
                .unwrap()
                .contains("server.py")
        );
        let runs = of_type(&ev, "test_run");
        assert_eq!(runs.len(), 1, "{ev:?}");
        assert_eq!(runs[0]["ok"], true, "{:?}", runs[0]);
        assert_eq!(
            runs[0]["passed"],
            2,
            "{:?} {}",
            runs[0],
            result(&script, "c8")
        );
    });
    // The wake message carried the problem, and the agent read the log.
    let requests = script.lock().unwrap().1.clone();
    let woke = requests[4]["messages"].to_string();
    assert!(
        woke.contains("ZeroDivisionError: division by zero"),
        "{woke}"
    );
    assert!(woke.contains("service:web"), "{woke}");
    assert!(result(&script, "c4").contains("Traceback"));
    assert!(
        result(&script, "c8").contains("passed"),
        "{}",
        result(&script, "c8")
    );
}

/// The wake setting: off, a problem is logged but the idle agent sleeps.
#[test]
fn with_waking_off_a_problem_is_logged_and_the_agent_sleeps() {
    let script: Script = Default::default();
    script.lock().unwrap().0.extend([
        call("c1", "service_start", json!({"name": "crash", "command": "while [ ! -e /tmp/go ]; do sleep 0.05; done; python3 -c 'import nosuchmodule'"})),
        turn("Started.", &[]),
    ]);
    let d = with_model("t53", &script);
    let id = d.new_session(&[]);
    let rt = rt();
    rt.block_on(async {
        let url = format!("{}/v1/sessions/{id}/closed-loop", d.url);
        let s: Value = d
            .http()
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            s,
            json!({"wake_agent": true, "preview_reports": true}),
            "on by default"
        );
        let r = d
            .http()
            .put(&url)
            .json(&json!({"wake_agent": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A change names what changes; the rest stays.
        let r = d
            .http()
            .put(&url)
            .json(&json!({"preview_reports": false}))
            .send()
            .await
            .unwrap();
        let s: Value = r.json().await.unwrap();
        assert_eq!(s, json!({"wake_agent": false, "preview_reports": false}));
        let r = d
            .http()
            .put(&url)
            .json(&json!({"wake": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    });
    d.ok(&["agent", &id, "start the crash service"]);
    d.sh(&id, "touch /tmp/go");
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ev = events(&d, &id).await;
            let p = of_type(&ev, "problem");
            if let Some(p) = p.first() {
                assert_eq!(p["kind"], "python_exception", "{p}");
                assert!(
                    p["summary"].as_str().unwrap().contains("nosuchmodule"),
                    "{p}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "no problem event: {ev:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The setting survives a restart (it is in the log), and nobody woke the agent.
    let mut d = d;
    d.restart(15);
    rt.block_on(async {
        let url = format!("{}/v1/sessions/{id}/closed-loop", d.url);
        let s: Value = d
            .http()
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(s, json!({"wake_agent": false, "preview_reports": false}));
    });
    assert_eq!(
        script.lock().unwrap().1.len(),
        2,
        "only the person's run called the model"
    );
}

/// A running agent gets a new problem of the session's services at its next
/// step, as a message from firepit.
#[test]
fn a_running_agent_gets_new_problems_at_its_next_step() {
    let script: Script = Default::default();
    script.lock().unwrap().0.extend([
        call("c1", "service_start", json!({"name": "worker", "command": "while [ ! -e /tmp/go ]; do sleep 0.05; done; python3 -c 'import nosuchmodule'"})),
        call("c2", "exec", json!({"command": "touch /tmp/go; while [ ! -e /tmp/release ]; do sleep 0.05; done; echo released"})),
        turn("Noted the worker's crash.", &[]),
    ]);
    let d = with_model("t54", &script);
    let id = d.new_session(&[]);
    let rt = rt();
    std::thread::scope(|s| {
        let run = s.spawn(|| d.ok(&["agent", &id, "start the worker"]));
        // While c2 holds the run, the worker crashes and the problem is logged.
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            while of_type(&events(&d, &id).await, "problem").is_empty() {
                assert!(Instant::now() < deadline, "no problem event");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        d.sh(&id, "touch /tmp/release");
        let out = run.join().unwrap();
        assert!(out.contains("— done"), "{out}");
    });
    let requests = script.lock().unwrap().1.clone();
    assert_eq!(requests.len(), 3, "one run, three model calls");
    let third = requests[2]["messages"].to_string();
    assert!(third.contains("[firepit noticed a problem"), "{third}");
    assert!(third.contains("nosuchmodule"), "{third}");
    assert!(third.contains("service:worker"), "{third}");
}

/// Every error a page raises reaches the model, whenever it is raised: from
/// a timer 0, 50 and 500 ms after load, a rejected promise, a worker, after a
/// client-side navigation. The agent opens the page, reads it and its
/// console at once and ends; an error raised after its last look reaches it
/// at its next step: it wakes the idle agent when it is the first of its
/// kind, and otherwise waits for the next run (a page that keeps throwing
/// the same error does not wake the agent again and again). 20 runs in a
/// row and one more: none lost.
#[test]
fn every_error_a_page_raises_reaches_the_model() {
    const PAGE: &str = r#"<!doctype html><title>raiser</title><body><script>
const q = new URLSearchParams(location.search), c = q.get('c'), msg = `case ${c} run ${q.get('n')}`;
if (c === 'reject') addEventListener('load', () => Promise.reject(new Error(msg)));
else if (c === 'worker') new Worker('/w.js?' + q);
else if (c === 'spa') addEventListener('load', () => setTimeout(() => {
  history.pushState({}, '', '/next?' + q);
  setTimeout(() => { throw new Error(msg) }, 20);
}, 20));
else addEventListener('load', () => setTimeout(() => { throw new Error(msg) }, Number(c)));
</script>"#;
    const WORKER: &str = "const q = new URLSearchParams(self.location.search);\n\
                          throw new Error(`case ${q.get('c')} run ${q.get('n')}`);\n";
    const CASES: [&str; 6] = ["0", "50", "500", "reject", "worker", "spa"];
    const RUNS: usize = 20;
    let script: Script = Default::default();
    script.lock().unwrap().0.extend([
        call("s1", "service_start", json!({"name": "site", "command": "python3 -m http.server 8000 --bind 127.0.0.1", "cwd": "/root/site"})),
        turn("The site runs.", &[]),
    ]);
    let d = with_model("t55", &script);
    let id = d.new_session(&["--image", &browser_image(), "--memory", "2G"]);
    d.sh(&id, "mkdir -p /root/site");
    for (name, body) in [("t.html", PAGE), ("w.js", WORKER)] {
        let src = d.data_dir().join(name);
        std::fs::write(&src, body).unwrap();
        d.ok(&[
            "cp",
            src.to_str().unwrap(),
            &format!("{id}:/root/site/{name}"),
        ]);
    }
    d.ok(&["agent", &id, "start the site"]);
    let rt = rt();
    let idle = || {
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let status: Value = d
                    .http()
                    .get(format!("{}/v1/sessions/{id}/agent", d.url))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if status["running"] == false {
                    return;
                }
                assert!(Instant::now() < deadline, "the agent never finished");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let seen = || -> String {
        let requests = script.lock().unwrap().1.clone();
        requests
            .iter()
            .flat_map(|r| r["messages"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m["content"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for n in 0..RUNS {
        let case = CASES[n % CASES.len()];
        let url = format!("localhost:8000/t.html?c={case}&n={n}");
        script.lock().unwrap().0.extend([
            call(&format!("o{n}"), "browser_open", json!({ "url": url })),
            call(&format!("s{n}"), "browser_snapshot", json!({})),
            call(&format!("c{n}"), "browser_console", json!({})),
            turn("Looked.", &[]),
        ]);
        idle();
        d.ok(&["agent", &id, &format!("look at run {n}")]);
        // Let the page raise (the next run navigates away): it did once the
        // model heard of it (the first of its kind wakes the agent), or
        // after the slowest raiser's 500 ms.
        let want = format!("case {case} run {n}\n");
        let deadline = Instant::now() + Duration::from_secs(1);
        while !seen().contains(&want) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        idle();
    }
    d.ok(&["agent", &id, "anything new?"]);
    idle();
    let seen = seen();
    let lost: Vec<String> = (0..RUNS)
        .map(|n| format!("case {} run {n}\n", CASES[n % CASES.len()]))
        .filter(|want| !seen.contains(want.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "never reached the model: {lost:?}\n{}",
        d.log()
    );
}

/// The shared shell is watched like a service's log: an app the agent
/// started in the `main` terminal that raises on a request becomes a problem
/// naming the command, which wakes the idle agent; the same app answering
/// cleanly raises none, and neither does a command that merely fails.
#[test]
fn an_app_in_the_shared_shell_that_raises_wakes_the_idle_agent() {
    const APP: &str = r#"import http.server


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/boom":
            raise RuntimeError("the shell app broke on " + self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"fine")


http.server.HTTPServer(("127.0.0.1", 8000), Handler).serve_forever()
"#;
    let script: Script = Default::default();
    script.lock().unwrap().0.extend([
        call(
            "c1",
            "write_file",
            json!({"path": "/root/app/server.py", "content": APP}),
        ),
        call("c2", "shell", json!({"command": "ls /nonexistent"})),
        call(
            "c3",
            "shell",
            json!({"command": "cd /root/app && python3 -u server.py", "wait_secs": 1}),
        ),
        turn("The app runs in the terminal.", &[]),
        // Woken by the problem.
        turn("Seen.", &[]),
    ]);
    let d = with_model("t56", &script);
    let id = d.new_session(&[]);
    let out = d.ok(&["agent", &id, "start the app in the terminal"]);
    assert!(out.contains("— done"), "{out}");
    let rt = rt();
    rt.block_on(async {
        let port = d.url.rsplit(':').next().unwrap().to_owned();
        let get = |path: &'static str| {
            let (d, id, port) = (&d, &id, &port);
            async move {
                d.http()
                    .get(format!("{}{path}", d.url))
                    .header("host", format!("8000-{id}.localhost:{port}"))
                    .send()
                    .await
            }
        };
        let shell_problems = |ev: &[Value]| -> Vec<Value> {
            of_type(ev, "problem")
                .into_iter()
                .filter(|p| p["source"] == "shell:main")
                .cloned()
                .collect()
        };
        for _ in 0..3 {
            let r = get("/").await.unwrap();
            assert_eq!(r.text().await.unwrap(), "fine");
        }
        // A clean app (and a command that failed) raise nothing, however long one looks.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(shell_problems(&events(&d, &id).await), Vec::<Value>::new());
        let _ = get("/boom").await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let problem = loop {
            if let Some(p) = shell_problems(&events(&d, &id).await).first() {
                break p.clone();
            }
            assert!(Instant::now() < deadline, "no problem from the shell\n{}", d.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(problem["kind"], "python_exception");
        assert_eq!(
            problem["summary"],
            "RuntimeError: the shell app broke on /boom (from `cd /root/app && python3 -u server.py` in the shell)"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains("Traceback"),
            "{problem}"
        );
        // It woke the agent, with the traceback.
        let deadline = Instant::now() + Duration::from_secs(60);
        while script.lock().unwrap().1.len() < 5 {
            assert!(Instant::now() < deadline, "the agent was not woken\n{}", d.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let requests = script.lock().unwrap().1.clone();
    let woke = requests[4]["messages"].to_string();
    assert!(woke.contains("shell:main"), "{woke}");
    assert!(woke.contains("the shell app broke on /boom"), "{woke}");
}

/// A 5xx the app answers the person's preview with is a problem of the
/// session (`source=preview`), on both of the proxy's paths; 2xx and 4xx
/// answers are not.
#[test]
fn a_5xx_the_preview_serves_is_a_problem() {
    const APP: &str = r#"import http.server


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if self.path.startswith("/fail") else 404 if self.path == "/missing" else 200
        self.send_response(code)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


http.server.HTTPServer(("127.0.0.1", 8000), Handler).serve_forever()
"#;
    let d = Daemon::start("t57");
    let id = d.new_session(&[]);
    let src = d.data_dir().join("app.py");
    std::fs::write(&src, APP).unwrap();
    d.ok(&["cp", src.to_str().unwrap(), &format!("{id}:/root/app.py")]);
    let rt = rt();
    rt.block_on(async {
        let r = d
            .http()
            .post(format!("{}/v1/sessions/{id}/services", d.url))
            .json(&json!({"name": "web", "command": {"argv": ["python3", "-u", "/root/app.py"]}}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
        let port = d.url.rsplit(':').next().unwrap().to_owned();
        let host = format!("8000-{id}.localhost:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        // Up: the app answers.
        loop {
            let r = d
                .http()
                .get(format!("{}/", d.url))
                .header("host", &host)
                .send()
                .await;
            if r.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the app never answered\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for path in ["/missing", "/", "/fail/one?x=1"] {
            let r = d
                .http()
                .get(format!("{}{path}", d.url))
                .header("host", &host)
                .send()
                .await
                .unwrap();
            let _ = r.bytes().await;
        }
        // The full path (a request the fast path hands on: a body of unknown length).
        let r = d
            .http()
            .post(format!("{}/fail/two", d.url))
            .header("host", &host)
            .header("transfer-encoding", "chunked")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 501, "python answers an unknown method 501");
        let deadline = Instant::now() + Duration::from_secs(30);
        let found = loop {
            let ev = events(&d, &id).await;
            let found: Vec<Value> = of_type(&ev, "problem")
                .into_iter()
                .filter(|p| p["source"] == "preview")
                .cloned()
                .collect();
            if found.len() >= 2 || Instant::now() > deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let summaries: Vec<&str> = found
            .iter()
            .map(|p| p["summary"].as_str().unwrap())
            .collect();
        assert_eq!(
            summaries,
            [
                "GET /fail/one?x=1 answered 500 in the preview of port 8000",
                "POST /fail/two answered 501 in the preview of port 8000"
            ],
            "{found:?}"
        );
        assert!(found.iter().all(|p| p["kind"] == "http_5xx"));
    });
}

/// A popup the agent's page opens (`window.open` from a click) is collected
/// like the page: the model hears that it opened, and the error it throws,
/// marked as the popup's (it throws every 50 ms, up to 200 times, so some
/// throws come after it is attached however slow the machine).
#[test]
fn a_popups_error_reaches_the_model() {
    const OPENER: &str = r#"<!doctype html><title>opener</title>
<button id="open" onclick="window.open('/pop.html', '_blank')">Open</button>"#;
    const POPUP: &str = r#"<!doctype html><title>popup</title><script>
let n = 0;
const t = setInterval(() => { if (++n > 200) clearInterval(t); else throw new Error('boom in the popup'); }, 50);
</script>"#;
    let script: Script = Default::default();
    script.lock().unwrap().0.extend([
        call("s1", "service_start", json!({"name": "site", "command": "python3 -m http.server 8000 --bind 127.0.0.1", "cwd": "/root/site"})),
        call("o1", "browser_open", json!({"url": "localhost:8000/opener.html"})),
        call("c1", "browser_click", json!({"selector": "#open"})),
        turn("Clicked.", &[]),
        turn("Seen.", &[]),
    ]);
    let d = with_model("lp2", &script);
    let id = d.new_session(&["--image", &browser_image(), "--memory", "2G"]);
    d.sh(&id, "mkdir -p /root/site");
    for (name, body) in [("opener.html", OPENER), ("pop.html", POPUP)] {
        let src = d.data_dir().join(name);
        std::fs::write(&src, body).unwrap();
        d.ok(&[
            "cp",
            src.to_str().unwrap(),
            &format!("{id}:/root/site/{name}"),
        ]);
    }
    d.ok(&["agent", &id, "open the page and press Open"]);
    let seen = || -> String {
        let requests = script.lock().unwrap().1.clone();
        requests
            .iter()
            .flat_map(|r| r["messages"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m["content"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = seen();
        if s.contains("the page opened a popup: ") && s.contains("] Error: boom in the popup") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the model never heard of the popup:\n{s}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = seen();
    assert!(
        s.contains("[popup http://localhost:8000/pop.html] Error: boom in the popup"),
        "{s}"
    );
}
