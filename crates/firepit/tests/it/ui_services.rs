//! Services and terminals in the web UI end to end, in Debian's Chromium
//! driven by `ui/e2e/services.mjs` (see `ui.rs` for how the script's
//! dependencies and the browser are found): a service started from the UI,
//! the Run button, a cleared log, copy and paste in the terminal, a second
//! terminal, and a session stop and start after which the service, its port
//! and `main`'s history are back; screenshots at 1440x900 and 390x844 in
//! `<target dir>/tmp/ui-services-e2e/`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Daemon;
use crate::ui::{chromium, deps, e2e_dir};

/// Longest the script may take before it counts as hung.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn services_and_terminals_work_in_chromium() {
    let d = Daemon::start("uis1");
    let port = d.url.rsplit(':').next().unwrap().trim_end_matches('/');
    let url = format!("http://localhost:{port}");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-services-e2e");
    let _ = std::fs::remove_dir_all(&shots);
    let out_path = d.data_dir().join("services-e2e.out");
    let mut child = Command::new("node")
        .arg(e2e_dir().join("services.mjs"))
        .env("FIREPIT_URL", &url)
        .env("FIREPIT_TOKEN", &d.token)
        .env("E2E_DEPS", deps())
        .env("E2E_SHOTS", &shots)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node is needed for the UI tests: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let report = format!(
        "stdout:\n{out}\nstderr:\n{err}\nscreenshots: {}\ndaemon log:\n{}",
        shots.display(),
        d.log()
    );
    let status = status.unwrap_or_else(|| panic!("the browser script hung:\n{report}"));
    assert!(
        status.success(),
        "the browser script failed ({status}):\n{report}"
    );
    for step in [
        "open-session",
        "service-from-the-ui",
        "run-button-and-clear-log",
        "terminal-copy-and-paste",
        "second-terminal",
        "stop-and-start-keeps-services-and-history",
        "narrow-390x844",
    ] {
        assert!(
            out.contains(&format!(" {step}: ok")),
            "step {step} did not pass:\n{report}"
        );
    }
    let shot_names: Vec<String> = std::fs::read_dir(&shots)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for shot in [
        "narrow-terminal.png",
        "narrow-services.png",
        "-second-terminal-open.png",
    ] {
        assert!(
            shot_names.iter().any(|n| n.ends_with(shot)),
            "no screenshot {shot}: {shot_names:?}"
        );
    }
}
