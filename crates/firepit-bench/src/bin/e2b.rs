//! `firepit-bench-e2b` (`cargo xtask bench-e2b`): the E2B SDK's
//! `Sandbox.create()` → first `commands.run` output, next to firepit's own
//! API doing the same (what `firepit new` and `firepit exec` send), in one
//! run against one daemon.
//!
//! - SDK: one Python process (the pinned `e2b` in
//!   `$FIREPIT_CACHE/venv-e2b-<version>`) runs [`RUNS`] times
//!   `Sandbox.create()` then `commands.run("echo hi", on_stdout=…)`, timed
//!   from before the create to the first stdout callback; each sandbox is
//!   killed untimed. One warm-up run is left out.
//! - firepit: `POST /v1/sessions` then `POST /v1/sessions/{id}/exec`, timed
//!   to the first stdout line of the NDJSON answer.
//!
//! Budget (DESIGN.md): SDK p50 ≤ 50 ms. Needs root and `FIREPIT_TEST_IMAGES`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Timed runs of each.
const RUNS: usize = 30;
/// The SDK release measured (as `cargo xtask test` installs it).
const SDK: &str = "2.63.0";

fn main() -> ExitCode {
    firepit_bench::main_async("firepit-bench-e2b", run)
}

fn pct(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

const SCRIPT: &str = r#"
import json, sys, time
from e2b import Sandbox
runs = int(sys.argv[1])
out = []
for i in range(runs + 1):
    first = []
    t0 = time.perf_counter()
    sbx = Sandbox.create()
    sbx.commands.run("echo hi", on_stdout=lambda s: first or first.append(time.perf_counter()))
    if i > 0:
        out.append((first[0] - t0) * 1000.0)
    sbx.kill()
print(json.dumps(out))
"#;

async fn run() -> Result<()> {
    let images = std::env::var_os("FIREPIT_TEST_IMAGES")
        .map(PathBuf::from)
        .context("FIREPIT_TEST_IMAGES is not set; run `cargo xtask bench-e2b`")?;
    let cache = std::env::var_os("FIREPIT_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/firepit"), PathBuf::from);
    let python = cache.join(format!("venv-e2b-{SDK}/bin/python"));
    if !python.is_file() {
        bail!(
            "the e2b SDK is not installed at {}; `cargo xtask bench-e2b` installs it",
            python.display()
        );
    }
    let (_dir, app) = firepit_bench::throwaway_daemon(images, "minimal", "be").await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let token = app.token().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(firepit_daemon::serve(listener, app.clone(), async {
        let _ = stopped.await;
    }));

    eprintln!("firepit-bench-e2b: {RUNS} runs through the e2b SDK {SDK}");
    let sdk = tokio::process::Command::new(&python)
        .args(["-c", SCRIPT, &RUNS.to_string()])
        .env("E2B_API_URL", &url)
        .env("E2B_SANDBOX_URL", &url)
        .env("E2B_API_KEY", &token)
        .env_remove("E2B_DOMAIN")
        .output()
        .await?;
    if !sdk.status.success() {
        bail!(
            "the SDK run failed: {}",
            String::from_utf8_lossy(&sdk.stderr)
        );
    }
    let mut sdk_ms: Vec<f64> =
        serde_json::from_slice(&sdk.stdout).context("the SDK run's figures")?;

    eprintln!("firepit-bench-e2b: {RUNS} runs through firepit's own API");
    let client = reqwest::Client::new();
    let mut api_ms = Vec::new();
    for i in 0..=RUNS {
        let t0 = Instant::now();
        let s: serde_json::Value = client
            .post(format!("{url}/v1/sessions"))
            .bearer_auth(&token)
            .json(&serde_json::json!({}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = s["id"].as_str().context("a session id")?.to_owned();
        let mut resp = client
            .post(format!("{url}/v1/sessions/{id}/exec"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"command": {"argv": ["echo", "hi"]}}))
            .send()
            .await?
            .error_for_status()?;
        let mut seen = String::new();
        let mut first = None;
        while let Some(chunk) = resp.chunk().await? {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\"stdout\"") {
                first = Some(t0.elapsed());
                break;
            }
        }
        drop(resp);
        let first = first.context("the exec printed nothing")?;
        if i > 0 {
            api_ms.push(ms(first));
        }
        client
            .delete(format!("{url}/v1/sessions/{id}"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
    }
    let _ = stop.send(());
    let _ = server.await;

    println!("create → first command output, {RUNS} runs each, one daemon:");
    println!("| path | p50 ms | p95 ms |");
    println!("|---|---|---|");
    println!(
        "| e2b SDK {SDK}: Sandbox.create() + commands.run | {:.1} | {:.1} |",
        pct(&mut sdk_ms, 50.0),
        pct(&mut sdk_ms, 95.0)
    );
    println!(
        "| firepit API: POST /v1/sessions + exec | {:.1} | {:.1} |",
        pct(&mut api_ms, 50.0),
        pct(&mut api_ms, 95.0)
    );
    println!("budget: SDK p50 ≤ 50 ms (E2B's cloud: about 440 ms)");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
