//! The web UI's Files tab end to end, in real headless Chromium driven by
//! playwright-core from `ui/e2e/files.mjs` (the runner's parts are
//! `ui.rs`'s): create, rename, upload (file input and a drop), download (a
//! file, a folder as tar), delete, a change made in the machine appearing in
//! the tree, editing with Tab, the unsaved-changes guard, search, the Changes
//! view, a problem's traceback path as a link, and the tab at 1440x900 and
//! 390x844. Each step's screenshot is kept in `<target dir>/tmp/ui-files-e2e/`.

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Daemon;
use crate::ui::{chromium, deps, e2e_dir};

/// Longest the whole browser script may take before it counts as hung.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn the_files_tab_works_end_to_end_in_chromium() {
    let d = Daemon::start("t91");
    // The UI's origin is the preview domain's (`localhost`), as `up` prints it.
    let port = d.url.rsplit(':').next().unwrap().trim_end_matches('/');
    let url = format!("http://localhost:{port}");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-files-e2e");
    let _ = std::fs::remove_dir_all(&shots);
    let mut child = Command::new("node")
        .arg(e2e_dir().join("files.mjs"))
        .env("FIREPIT_URL", &url)
        .env("FIREPIT_TOKEN", &d.token)
        .env("E2E_DEPS", deps())
        .env("E2E_SHOTS", &shots)
        .env("E2E_IMAGE", "git")
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node is needed for the UI tests: {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
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
    let out = out.join().unwrap();
    let err = err.join().unwrap();
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
        "open-files",
        "create-file-and-folder",
        "edit-with-tab",
        "rename",
        "upload-file-input",
        "upload-drag-and-drop",
        "download",
        "delete",
        "external-change",
        "unsaved-guard",
        "search",
        "changes",
        "problem-link",
        "wide-1440x900",
        "narrow-390x844",
    ] {
        assert!(
            out.contains(&format!(" {step}: ok")),
            "step {step} did not pass:\n{report}"
        );
        assert!(
            std::fs::read_dir(&shots)
                .unwrap()
                .filter_map(|e| e.ok())
                .any(|e| e
                    .file_name()
                    .to_string_lossy()
                    .ends_with(&format!("-{step}.png"))),
            "no screenshot of {step}:\n{report}"
        );
    }
}
