//! The agent end to end: a stand-in model server speaking OpenAI's streaming
//! Chat Completions, the daemon's agent loop, tools acting on a real machine,
//! the transcript in the event log, and `firepit agent` streaming it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::harness::Daemon;

pub(crate) type Script = Arc<Mutex<(VecDeque<Vec<String>>, Vec<Value>)>>;

/// One streamed assistant turn: optional text, then tool calls; 50 tokens
/// in and 10 out.
pub(crate) fn turn(text: &str, calls: &[(&str, &str, Value)]) -> Vec<String> {
    let args: Vec<String> = calls.iter().map(|(_, _, a)| a.to_string()).collect();
    let calls: Vec<(&str, &str, &str)> = calls
        .iter()
        .zip(&args)
        .map(|((id, name, _), a)| (*id, *name, a.as_str()))
        .collect();
    firepit_testkit::model::openai_usage(text, &calls, 50, 10)
}

async fn reply(State(script): State<Script>, body: axum::body::Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = script.lock().unwrap();
    s.1.push(request);
    let chunks =
        s.0.pop_front()
            .unwrap_or_else(|| turn("(the script is over)", &[]));
    sse(chunks)
}

/// Starts the stand-in on a thread of its own; returns its base URL.
pub(crate) fn stand_in(script: Script) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(reply))
        .with_state(script);
    crate::harness::serve_on_thread(listener, app);
    url
}

/// A streamed (SSE) model answer of `chunks`.
pub(crate) fn sse(chunks: Vec<String>) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(chunks.concat()))
        .unwrap()
}

#[test]
fn the_agent_writes_a_file_runs_it_in_the_shared_shell_and_reports() {
    let script: Script = Arc::default();
    script.lock().unwrap().0.extend([
        turn(
            "I will write the script.",
            &[(
                "call_1",
                "write_file",
                json!({"path": "/root/hello.py", "content": "print('hello from the agent')\n"}),
            )],
        ),
        turn(
            "",
            &[(
                "call_2",
                "shell",
                json!({"command": "python3 /root/hello.py"}),
            )],
        ),
        turn("Done: hello.py prints its greeting.", &[]),
    ]);
    let url = stand_in(script.clone());
    let d = Daemon::start_with(
        "t40",
        &[
            ("FIREPIT_MODEL_URL", url.as_str()),
            ("FIREPIT_MODEL", "stand-in"),
        ],
    );
    let id = d.new_session(&[]);

    let out = d.ok(&["agent", &id, "write hello.py and run it"]);
    assert!(out.contains("→ write_file"), "{out}");
    assert!(out.contains("→ shell"), "{out}");
    assert!(
        out.contains("hello from the agent"),
        "the shell's output came back: {out}"
    );
    assert!(out.contains("Done: hello.py prints its greeting."), "{out}");
    assert!(out.contains("— done"), "{out}");

    // The tool really acted on the machine.
    assert_eq!(
        d.sh(&id, "cat /root/hello.py"),
        "print('hello from the agent')\n"
    );

    // The model saw the tool results, and the key never went anywhere but the daemon.
    let requests = script.lock().unwrap().1.clone();
    assert_eq!(requests.len(), 3, "three model calls");
    let last = requests[2]["messages"].to_string();
    assert!(
        last.contains("hello from the agent"),
        "the shell result reached the model: {last}"
    );

    // The transcript is in the event log, in order, and survives a restart.
    let mut d = d;
    d.restart(15);
    let events = d.ok(&["events", &id]);
    let agent_lines: Vec<&str> = events.lines().filter(|l| l.contains(" agent ")).collect();
    assert!(agent_lines.len() >= 8, "{events}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status: Value = rt.block_on(async {
        let url = format!("{}/v1/sessions/{id}/agent", d.url);
        d.http()
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(status["configured"], true, "{status}");
    assert_eq!(status["running"], false, "{status}");
    assert_eq!(
        status["input_tokens"], 150,
        "usage of three requests, from the log: {status}"
    );
    assert_eq!(status["output_tokens"], 30, "{status}");
}

#[test]
fn without_a_model_the_agent_says_how_to_configure_one() {
    let d = Daemon::start("t41");
    let id = d.new_session(&[]);
    let out = d.run(&["agent", &id, "hello"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ANTHROPIC_API_KEY") && err.contains("FIREPIT_MODEL_URL"),
        "{err}"
    );
    // The daemon says so when it starts, too.
    assert!(d.log().contains("FIREPIT_MODEL_URL"), "{}", d.log());
}

/// The scenario of the issue: the scripted model writes a small web app with a
/// bug, starts it as a service, reads the error in its log, fixes the file,
/// restarts it, and checks it in the shared shell; the preview URL then answers.
#[test]
fn the_agent_fixes_a_crashing_app_and_its_preview_answers() {
    const APP: &str = r#"import http.server
import missing_helper


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"todo app ok")


http.server.HTTPServer(("127.0.0.1", 8000), Handler).serve_forever()
"#;
    let script: Script = Arc::default();
    script.lock().unwrap().0.extend([
        turn("Writing the app.", &[("c1", "write_file", json!({"path": "/root/app/server.py", "content": APP}))]),
        turn("", &[("c2", "service_start", json!({"name": "web", "command": "python3 -u server.py", "cwd": "/root/app"}))]),
        turn("", &[("c3", "service_logs", json!({"name": "web"}))]),
        turn(
            "The log shows a missing module; removing the import.",
            &[("c4", "edit_file", json!({"path": "/root/app/server.py", "old_text": "import missing_helper\n", "new_text": ""}))],
        ),
        turn("", &[("c5", "service_stop", json!({"name": "web"}))]),
        turn("", &[("c6", "service_start", json!({"name": "web", "command": "python3 -u server.py", "cwd": "/root/app"}))]),
        turn(
            "",
            &[("c7", "shell", json!({"command": "curl -s -o /dev/null -w 'status=%{http_code}\\n' http://127.0.0.1:8000/"}))],
        ),
        turn("The app answers now.", &[]),
    ]);
    let url = stand_in(script.clone());
    let d = Daemon::start_with(
        "t42",
        &[
            ("FIREPIT_MODEL_URL", url.as_str()),
            ("FIREPIT_MODEL", "stand-in"),
        ],
    );
    let id = d.new_session(&[]);
    let out = d.ok(&["agent", &id, "build a tiny web app on port 8000"]);
    assert!(out.contains("— done"), "{out}");

    // What the model was shown: the crash in the log, then the working app.
    let requests = script.lock().unwrap().1.clone();
    assert_eq!(requests.len(), 8, "{out}");
    let after_logs = requests[3]["messages"].to_string();
    assert!(
        after_logs.contains("ModuleNotFoundError"),
        "the log reached the model: {after_logs}"
    );
    let after_shell = requests[7]["messages"].to_string();
    assert!(
        after_shell.contains("status=200"),
        "the shell saw the app answer: {after_shell}"
    );

    // The transcript holds every step, in order.
    let events = d.ok(&["events", &id]);
    let mut at = 0;
    for tool in [
        "write_file",
        "service_start",
        "service_logs",
        "edit_file",
        "service_stop",
        "service_start",
        "shell",
    ] {
        let found = events[at..]
            .find(&format!("name={tool}"))
            .or_else(|| events[at..].find(tool));
        let pos = found
            .unwrap_or_else(|| panic!("{tool} is not in the log after position {at}:\n{events}"));
        at += pos + tool.len();
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The preview URL answers 200 with the app's page.
        let port = d.url.rsplit(':').next().unwrap().to_owned();
        let resp = d
            .http()
            .get(format!("{}/", d.url))
            .header("host", format!("8000-{id}.localhost:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "todo app ok");

        // The shell command ran in the shared `main` PTY, where a person sees it.
        let mut ws = crate::terminal::attach(&d, &id).await;
        let screen = crate::terminal::read_until(&mut ws, "status=200").await;
        assert!(
            screen.contains("curl -s"),
            "the main PTY's scrollback lacks the agent's command: {screen:?}"
        );
    });
}
