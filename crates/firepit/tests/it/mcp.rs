//! MCP end to end, with real clients nobody here wrote: the official Python
//! SDK (`mcp` from PyPI, driven by `mcp_client.py`) and the inspector's CLI
//! (`@modelcontextprotocol/inspector-cli` from npm), each over streamable
//! HTTP (`/mcp` with the token as a bearer) and over stdio (`firepit mcp`,
//! which bridges to `/mcp`), against a daemon with real machines.
//!
//! Both are installed (pinned, in `xtask`) by `cargo xtask test` into
//! `$FIREPIT_CACHE/venv-mcp` and `$FIREPIT_CACHE/mcp-inspector`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Daemon, FIREPIT};

/// A run is stopped (and fails) if it takes longer: a hang guard, not a
/// speed budget.
const HANG_GUARD: Duration = Duration::from_secs(15 * 60);

fn cache() -> PathBuf {
    std::env::var_os("FIREPIT_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/firepit"), PathBuf::from)
}

fn python() -> PathBuf {
    let bin = cache().join("venv-mcp/bin/python");
    assert!(
        bin.is_file(),
        "the MCP Python SDK is not installed at {}: run the tests with `cargo xtask test` (as root), \
         which installs it into $FIREPIT_CACHE/venv-mcp",
        bin.display()
    );
    bin
}

fn browser_image() -> String {
    std::env::var("FIREPIT_TEST_BROWSER_IMAGE").unwrap_or_default()
}

/// Runs `cmd` to its end within [`HANG_GUARD`].
fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

fn python_client(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/mcp_client.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).args(args);
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "the Python MCP client failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// The Python SDK over streamable HTTP: every step of `mcp_client.py`,
/// the browser's included.
#[test]
fn python_sdk_over_http() {
    let d = Daemon::start("mcph");
    let url = format!("{}/mcp", d.url);
    let out = python_client(&["http", &url, &d.token, &browser_image()]);
    assert!(
        out.contains("passed: browser_screenshot returns an image") || browser_image().is_empty(),
        "{out}"
    );
    assert!(
        out.contains("passed: the fork has the checkpoint's files")
            && out.contains("passed: the files are the checkpoint's again"),
        "{out}"
    );
}

/// Without the token (or with the login cookie alone) `/mcp` answers 401.
#[test]
fn http_needs_the_bearer_token() {
    let d = Daemon::start("mcpa");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        let post = |auth: Option<(&str, String)>| {
            let mut r = reqwest::Client::new()
                .post(format!("{}/mcp", d.url))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(init);
            if let Some((k, v)) = auth {
                r = r.header(k, v);
            }
            r.send()
        };
        assert_eq!(post(None).await.unwrap().status(), 401);
        let wrong = post(Some(("authorization", "Bearer nope".into()))).await.unwrap();
        assert_eq!(wrong.status(), 401);
        assert!(wrong.headers().contains_key("www-authenticate"));
        let cookie = post(Some(("cookie", format!("firepit_token={}", d.token))))
            .await
            .unwrap();
        assert_eq!(cookie.status(), 401, "the login cookie is not enough for /mcp");
        let ok = post(Some(("authorization", format!("Bearer {}", d.token))))
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert!(ok.headers().contains_key("mcp-session-id"));
    });
}

/// The Python SDK over stdio: `firepit mcp` bridging to the daemon.
#[test]
fn python_sdk_over_stdio() {
    let d = Daemon::start("mcps");
    let data_dir = d.data_dir().to_str().unwrap().to_owned();
    let out = python_client(&["stdio", FIREPIT, &data_dir, &browser_image()]);
    assert!(
        out.contains("passed: the file reads as a resource"),
        "{out}"
    );
}

/// How the inspector's CLI reaches the daemon.
enum Via<'a> {
    Http(&'a Daemon),
    Stdio(&'a Daemon),
}

/// Runs the inspector's CLI once (it connects, calls `args`, disconnects)
/// and returns what it printed as JSON.
fn inspector(via: &Via, args: &[&str]) -> serde_json::Value {
    let dir = cache().join("mcp-inspector/node_modules/@modelcontextprotocol/inspector-cli/build");
    assert!(
        dir.join("index.js").is_file(),
        "the MCP inspector's CLI is not installed in {}: run the tests with `cargo xtask test` \
         (as root), which installs it into $FIREPIT_CACHE/mcp-inspector",
        dir.display()
    );
    let mut cmd = Command::new("node");
    // It finds its own package.json relative to the working directory.
    cmd.current_dir(&dir).arg("index.js");
    match via {
        Via::Http(d) => {
            cmd.arg(format!("{}/mcp", d.url))
                .args(["--transport", "http", "--header"])
                .arg(format!("Authorization: Bearer {}", d.token))
                .args(args);
        }
        Via::Stdio(d) => {
            cmd.arg(FIREPIT)
                .args(["--transport", "stdio"])
                .args(args)
                .args(["--", "--data-dir"])
                .arg(d.data_dir())
                .arg("mcp");
        }
    }
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the inspector failed ({}) on {args:?}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The text of a tool result, after checking it is not an error.
fn ok_text(v: &serde_json::Value) -> String {
    assert_eq!(v["isError"], false, "{v}");
    v["content"][0]["text"].as_str().unwrap().to_owned()
}

fn call(via: &Via, tool: &str, args: &[String]) -> serde_json::Value {
    let mut a = vec!["--method", "tools/call", "--tool-name", tool];
    if !args.is_empty() {
        a.push("--tool-arg");
        a.extend(args.iter().map(String::as_str));
    }
    inspector(via, &a)
}

/// The inspector's steps: list the tools, make a session, run a command,
/// write and read a file, open a served page in the browser, its snapshot
/// and a screenshot, a checkpoint restored after a change, destroy.
fn inspector_steps(via: &Via) {
    let tools = inspector(via, &["--method", "tools/list"]);
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for n in [
        "session_create",
        "exec",
        "write_file",
        "browser_snapshot",
        "checkpoint_create",
        "checkpoint_restore",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let image = browser_image();
    let created = if image.is_empty() {
        call(via, "session_create", &[])
    } else {
        call(via, "session_create", &[format!("image={image}")])
    };
    let text = ok_text(&created);
    let session: serde_json::Value = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let s = format!("session={}", session["id"].as_str().unwrap());
    let out = ok_text(&call(
        via,
        "exec",
        &[s.clone(), "command=echo inspected; uname -s".into()],
    ));
    assert!(out.contains("inspected") && out.contains("Linux"), "{out}");
    let page = "<title>Inspected</title><h1>Seen by the inspector</h1><a href=/x>a link</a>";
    ok_text(&call(
        via,
        "write_file",
        &[
            s.clone(),
            "path=/root/site/index.html".into(),
            format!("content={page}"),
        ],
    ));
    let read = ok_text(&call(
        via,
        "read_file",
        &[s.clone(), "path=/root/site/index.html".into()],
    ));
    assert!(read.contains("Seen by the inspector"), "{read}");
    let id = session["id"].as_str().unwrap();
    let res = inspector(
        via,
        &[
            "--method",
            "resources/read",
            "--uri",
            &format!("firepit://sessions/{id}/files/root/site/index.html"),
        ],
    );
    assert_eq!(res["contents"][0]["text"], page, "{res}");
    if !image.is_empty() {
        ok_text(&call(
            via,
            "service_start",
            &[
                s.clone(),
                "name=site".into(),
                "command=python3 -m http.server 8000 --bind 127.0.0.1".into(),
                "cwd=/root/site".into(),
            ],
        ));
        let opened = ok_text(&call(
            via,
            "browser_open",
            &[s.clone(), "url=http://localhost:8000/".into()],
        ));
        assert!(opened.contains("Inspected"), "{opened}");
        let snap = ok_text(&call(via, "browser_snapshot", std::slice::from_ref(&s)));
        assert!(
            snap.contains("Seen by the inspector") && snap.contains("ref="),
            "{snap}"
        );
        let shot = call(via, "browser_screenshot", std::slice::from_ref(&s));
        let img = shot["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "image")
            .unwrap_or_else(|| panic!("no image in {shot}"));
        assert_eq!(img["mimeType"], "image/png");
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(img["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
    // A checkpoint, a change, the checkpoint back.
    let made = ok_text(&call(
        via,
        "checkpoint_create",
        &[s.clone(), "name=inspected".into()],
    ));
    let cp = made
        .split_whitespace()
        .nth(1)
        .filter(|w| w.starts_with("cp-"))
        .unwrap_or_else(|| panic!("no checkpoint id in {made}"))
        .to_owned();
    ok_text(&call(
        via,
        "exec",
        &[s.clone(), "command=rm /root/site/index.html".into()],
    ));
    let listed = ok_text(&call(via, "checkpoint_list", std::slice::from_ref(&s)));
    assert!(
        listed.contains(&cp) && listed.contains("inspected"),
        "{listed}"
    );
    ok_text(&call(
        via,
        "checkpoint_restore",
        &[s.clone(), format!("checkpoint={cp}")],
    ));
    let read = ok_text(&call(
        via,
        "read_file",
        &[s.clone(), "path=/root/site/index.html".into()],
    ));
    assert!(read.contains("Seen by the inspector"), "{read}");
    let unknown = call(
        via,
        "checkpoint_restore",
        &[s.clone(), "checkpoint=cp-nothing".into()],
    );
    assert_eq!(unknown["isError"], true, "{unknown}");

    let bad = call(
        via,
        "exec",
        &["session=nosuchsession".into(), "command=true".into()],
    );
    assert_eq!(bad["isError"], true, "{bad}");
    ok_text(&call(via, "session_destroy", std::slice::from_ref(&s)));
    let list = ok_text(&call(via, "session_list", &[]));
    assert!(!list.contains(id), "{list}");
}

#[test]
fn inspector_over_http() {
    let d = Daemon::start("mcpih");
    inspector_steps(&Via::Http(&d));
}

#[test]
fn inspector_over_stdio() {
    let d = Daemon::start("mcpis");
    inspector_steps(&Via::Stdio(&d));
}
