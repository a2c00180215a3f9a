//! E2B's API end to end: the unmodified `e2b` SDK from PyPI (the current
//! release, which uses the v2 routes, and 2.30, which uses the v1 ones) runs
//! `e2b_sdk.py`, and the npm package `e2b_sdk.mjs`, against a daemon with
//! real machines, configured by
//! `E2B_API_URL`, `E2B_SANDBOX_URL` and `E2B_API_KEY` alone; a
//! sandbox's timeout stops it (or, made with `autoPause: false`, destroys
//! it) across a daemon restart; and the hosts the SDK makes from
//! `E2B_DOMAIN` reach the door.
//!
//! The SDKs are installed by `cargo xtask test` into
//! `$FIREPIT_CACHE/venv-e2b-<version>` and `npm-e2b-<version>` (pinned in xtask).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::Daemon;

/// The releases `cargo xtask test` installs: the current one, one with the
/// v1 routes, and the npm package's.
const CURRENT: &str = "2.63.0";
const V1_ROUTES: &str = "2.30.0";
const JS: &str = "2.51.0";

/// A hang guard for waits, not a speed budget.
const GUARD: Duration = Duration::from_secs(120);

fn python(version: &str) -> PathBuf {
    let cache = std::env::var_os("FIREPIT_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/firepit"), PathBuf::from);
    let bin = cache.join(format!("venv-e2b-{version}/bin/python"));
    assert!(
        bin.is_file(),
        "the e2b SDK {version} is not installed at {}: run the tests with `cargo xtask test` \
         (as root), which installs it",
        bin.display()
    );
    bin
}

/// Runs the script with the SDK `version`; `hex_key` gives the token in the
/// `e2b_<hex>` form older SDKs insist on.
fn run_sdk(instance: &str, version: &str, hex_key: bool) {
    let d = Daemon::start(instance);
    let key = if hex_key {
        firepit_e2b::api_key(&d.token)
    } else {
        d.token.clone()
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/e2b_sdk.py");
    let out = Command::new(python(version))
        .arg(&script)
        .env("E2B_API_URL", &d.url)
        .env("E2B_SANDBOX_URL", &d.url)
        .env("E2B_API_KEY", &key)
        .env("FIREPIT_URL", &d.url)
        .env("FIREPIT_TOKEN", &d.token)
        .env_remove("E2B_DOMAIN")
        .env_remove("E2B_DEBUG")
        .env_remove("E2B_ACCESS_TOKEN")
        .env("NO_PROXY", "*")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all steps passed"),
        "the e2b {version} script failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\ndaemon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
}

#[test]
fn python_sdk_current_release() {
    run_sdk("e2bc", CURRENT, false);
}

#[test]
fn python_sdk_with_v1_routes() {
    run_sdk("e2bo", V1_ROUTES, true);
}

#[test]
fn js_sdk() {
    let cache = std::env::var_os("FIREPIT_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/firepit"), PathBuf::from);
    let entry = cache.join(format!("npm-e2b-{JS}/node_modules/e2b/dist/index.mjs"));
    assert!(
        entry.is_file(),
        "the e2b npm package {JS} is not installed at {}: run the tests with `cargo xtask test`, \
         which installs it (Node.js is needed by the tests)",
        entry.display()
    );
    let d = Daemon::start("e2bj");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/e2b_sdk.mjs");
    let out = Command::new("node")
        .arg(&script)
        .env("E2B_JS", &entry)
        .env("E2B_API_URL", &d.url)
        .env("E2B_SANDBOX_URL", &d.url)
        .env("E2B_API_KEY", firepit_e2b::api_key(&d.token))
        .env_remove("E2B_DOMAIN")
        .env_remove("E2B_DEBUG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all steps passed"),
        "the e2b npm script failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\ndaemon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
}

fn call(
    d: &Daemon,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", d.url))
            .header("x-api-key", &d.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    })
}

#[test]
fn a_timeout_stops_the_sandbox_across_a_daemon_restart() {
    let mut d = Daemon::start("e2bt");
    let (status, made) = call(
        &d,
        reqwest::Method::POST,
        "/sandboxes",
        Some(serde_json::json!({"templateID": "base", "timeout": 3600, "metadata": {"k": "v"}})),
    );
    assert_eq!(status, 201, "{made}");
    let id = made["sandboxID"].as_str().unwrap().to_owned();
    assert!(
        made["envdAccessToken"]
            .as_str()
            .is_some_and(|t| t.len() == 64)
    );
    // One to be killed, not paused, at its timeout (the SDK's
    // `lifecycle={"on_timeout": "kill"}`).
    let (status, doomed) = call(
        &d,
        reqwest::Method::POST,
        "/sandboxes",
        Some(serde_json::json!({"templateID": "base", "timeout": 3600, "autoPause": false})),
    );
    assert_eq!(status, 201, "{doomed}");
    let doomed = doomed["sandboxID"].as_str().unwrap().to_owned();
    // Resuming on traffic is refused, not ignored.
    let (status, body) = call(
        &d,
        reqwest::Method::POST,
        "/sandboxes",
        Some(
            serde_json::json!({"templateID": "base", "autoPause": true, "autoResume": {"enabled": true}}),
        ),
    );
    assert!(
        status >= 400 && body["message"].as_str().unwrap().contains("autoResume"),
        "{status} {body}"
    );
    for sandbox in [&id, &doomed] {
        let (status, _) = call(
            &d,
            reqwest::Method::POST,
            &format!("/sandboxes/{sandbox}/timeout"),
            Some(serde_json::json!({"timeout": 4})),
        );
        assert_eq!(status, 204);
    }
    d.restart(nix::sys::signal::Signal::SIGTERM as i32);
    let start = Instant::now();
    loop {
        let (status, info) = call(&d, reqwest::Method::GET, &format!("/sandboxes/{id}"), None);
        assert_eq!(status, 200, "{info}");
        assert_eq!(info["metadata"]["k"], "v", "{info}");
        if info["state"] == "paused" {
            break;
        }
        assert!(
            start.elapsed() < GUARD,
            "the sandbox never stopped: {info}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The session is stopped, not gone: firepit lists it so.
    assert!(d.ok(&["ls"]).contains(&id));
    // The other one is gone, session and all.
    let start = Instant::now();
    loop {
        let (status, info) = call(
            &d,
            reqwest::Method::GET,
            &format!("/sandboxes/{doomed}"),
            None,
        );
        if status == 404 {
            break;
        }
        assert!(
            start.elapsed() < GUARD,
            "the sandbox was never killed: {info}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!d.ok(&["ls"]).contains(&doomed));
    // A wrong key is refused in E2B's shape.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{}/v2/sandboxes", d.url))
            .header("x-api-key", "nope")
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    });
    assert_eq!(
        (status, &body["code"]),
        (401, &serde_json::json!(401)),
        "{body}"
    );
}

/// The names the SDK makes from `E2B_DOMAIN=<preview domain>` (behind a TLS
/// front that keeps the Host header): `api.<domain>` is the control plane
/// and `49983-<sandbox>.<domain>` envd, with nothing of the daemon's own API
/// on them; other ports of the sandbox stay previews.
#[test]
fn e2b_domain_hosts_reach_the_door() {
    let d = Daemon::start("e2bd");
    let port = d.url.rsplit(':').next().unwrap().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let api = format!("api.localhost:{port}");
        let made = c
            .post(format!("{}/sandboxes", d.url))
            .header("host", &api)
            .header("x-api-key", &d.token)
            .json(&serde_json::json!({"templateID": "base", "timeout": 300}))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201);
        let made: serde_json::Value = made.json().await.unwrap();
        let id = made["sandboxID"].as_str().unwrap().to_owned();
        let token = made["envdAccessToken"].as_str().unwrap().to_owned();
        // The SDK builds envd's host from this.
        assert_eq!(made["domain"], format!("localhost:{port}"), "{made}");

        // Only E2B's routes on the API host: not the daemon's API, not the UI.
        for path in ["/v1/sessions", "/"] {
            let r = c
                .get(format!("{}{path}", d.url))
                .header("host", &api)
                .bearer_auth(&d.token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{path}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(body["message"].as_str().unwrap().contains("E2B"), "{body}");
        }

        let envd = format!("49983-{id}.localhost:{port}");
        let with = |r: reqwest::RequestBuilder| {
            r.header("host", &envd)
                .header("e2b-sandbox-id", &id)
                .header("x-access-token", &token)
        };
        let r = with(c.get(format!("{}/health", d.url)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = with(c.post(format!("{}/files?path=/tmp/via-domain", d.url)))
            .header("content-type", "application/octet-stream")
            .body("through the domain")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let r = with(c.get(format!("{}/files?path=/tmp/via-domain", d.url)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "through the domain");
        // Without the sandbox's token, nothing.
        let r = c
            .get(format!("{}/files?path=/tmp/via-domain", d.url))
            .header("host", &envd)
            .header("e2b-sandbox-id", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // Another port of the sandbox is still its preview (which wants the
        // owner's sign-in), not envd.
        let r = with(c.get(format!("{}/health", d.url)))
            .header("host", format!("8000-{id}.localhost:{port}"))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 204);

        let r = c
            .delete(format!("{}/sandboxes/{id}", d.url))
            .header("host", &api)
            .header("x-api-key", &d.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    });
}
