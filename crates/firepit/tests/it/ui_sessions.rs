//! Sessions' names, labels, limits and usage, the New session dialog and the
//! Preview tab, end to end in headless Chromium (`ui/e2e/sessions.mjs`, the
//! same runner pieces as `ui.rs`): the dialog refuses more memory than the
//! host has and lists every image once; a session made with a name and
//! labels, its usage in its header, renamed, found in the list by label and
//! name; the preview's URL bar following links and `pushState`, back and
//! forward; a share of the page shown with a chosen lifetime, listed and
//! revoked; a signed-out preview's sign-in page, which signs in and goes on.
//!
//! Screenshots of every step at 1440x900 and 390x844 are kept in
//! `<target dir>/tmp/ui-sessions-e2e/`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::Daemon;
use crate::ui::{chromium, deps, e2e_dir};

/// Longest the browser script may take before it counts as hung.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn sessions_names_usage_and_preview_work_in_chromium() {
    let d = Daemon::start("uis1");
    // The UI's origin is the preview domain's (`localhost`), as `up` prints it.
    let port = d.url.rsplit(':').next().unwrap().trim_end_matches('/');
    let url = format!("http://localhost:{port}");
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-sessions-e2e");
    let _ = std::fs::remove_dir_all(&shots);
    let out_path = d.data_dir().join("e2e.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new("node")
        .arg(e2e_dir().join("sessions.mjs"))
        .env("FIREPIT_URL", &url)
        .env("FIREPIT_TOKEN", &d.token)
        .env("E2E_DEPS", deps())
        .env("E2E_SHOTS", &shots)
        .env("CHROMIUM", chromium())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
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
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let report = format!(
        "output:\n{out}\nscreenshots: {}\ndaemon log:\n{}",
        shots.display(),
        d.log()
    );
    let status = status.unwrap_or_else(|| panic!("the browser script hung:\n{report}"));
    assert!(
        status.success(),
        "the browser script failed ({status}):\n{report}"
    );
    for step in [
        "login",
        "dialog-refuses-too-much-memory",
        "create-with-name-and-labels",
        "usage-shown",
        "rename",
        "list-search",
        "preview-url-follows",
        "back-forward",
        "share-with-lifetime",
        "shares-listed-and-revoked",
        "signed-out-sign-in-page",
    ] {
        assert!(
            out.contains(&format!(" {step}: ok")),
            "step {step} did not pass:\n{report}"
        );
        for size in ["", "-390"] {
            assert!(
                std::fs::read_dir(&shots)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .any(|e| e
                        .file_name()
                        .to_string_lossy()
                        .ends_with(&format!("-{step}{size}.png"))),
                "no screenshot of {step}{size}:\n{report}"
            );
        }
    }
}
