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
