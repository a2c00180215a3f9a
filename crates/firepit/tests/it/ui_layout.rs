//! The web UI's layout and global tools end to end, in real headless
//! Chromium driven by playwright-core from `ui/e2e/layout.mjs`: the splitter
//! between the chat and the tabs (dragged, kept over a reload), the chat
//! collapsed and opened, a phone's 390×844 (no horizontal scroll, every
//! control reachable), 1280×720 and 3840×2160, the light and dark themes, the
//! command palette and the shortcut help, the not-found page, Start over a
//! stopped session's terminal, notifications while the page is hidden, and
//! the chat collapsed on a daemon with no model.
//!
//! Each step's screenshots (1440×900 and 390×844) are kept in
//! `<target dir>/tmp/ui-layout-e2e/`. The browser and the script's npm
//! dependency are found as the main UI test finds them (`ui.rs`). With
//! `E2E_DIST` set to a `vite build` output dir, the script serves the page
//! from there instead of the daemon's embedded build (for working on the UI
//! without rebuilding the daemon).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent::{Script, stand_in, turn};
use crate::harness::Daemon;
use crate::ui::{chromium, deps};

/// Longest the whole browser script may take before it counts as hung.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// The steps `layout.mjs` runs, each printed as `step <n> <name>: ok`.
const STEPS: &[&str] = &[
    "login",
    "sessions-list-phone",
    "splitter",
    "collapse",
    "phone-390",
    "desktop-1280",
    "4k-3840",
    "theme",
    "palette",
    "shortcut-help",
    "stopped-terminal-start",
    "notifications",
    "not-found",
    "no-model-collapsed",
];

#[test]
fn the_web_ui_layout_and_tools_work_in_chromium() {
    let script: Script = Default::default();
    script.lock().unwrap().0.extend([
        turn("First turn done.", &[]),
        turn("Second turn done.", &[]),
    ]);
    let model = stand_in(script.clone());
    let d = Daemon::start_with(
        "uil1",
        &[
            ("FIREPIT_MODEL_URL", model.as_str()),
            ("FIREPIT_MODEL", "stand-in"),
        ],
    );
    let bare = Daemon::start("uil2");
    // The UI's origin is the preview domain's (`localhost`), as `up` prints it.
    let origin = |d: &Daemon| {
        format!(
            "http://localhost:{}",
            d.url.rsplit(':').next().unwrap().trim_end_matches('/')
        )
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-layout-e2e");
    let _ = std::fs::remove_dir_all(&shots);

    let mut child = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/e2e/layout.mjs"))
        .env("FIREPIT_URL", origin(&d))
        .env("FIREPIT_TOKEN", &d.token)
        .env("FIREPIT_URL_NO_MODEL", origin(&bare))
        .env("FIREPIT_TOKEN_NO_MODEL", &bare.token)
        .env("E2E_DEPS", deps())
        .env("E2E_SHOTS", &shots)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node is needed for the UI tests: {e}"));
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
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
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
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
    let files: Vec<String> = std::fs::read_dir(&shots)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for step in STEPS {
        assert!(
            out.contains(&format!(" {step}: ok")),
            "step {step} did not pass:\n{report}"
        );
        for width in [1440, 390] {
            assert!(
                files
                    .iter()
                    .any(|f| f.ends_with(&format!("-{step}-{width}.png"))),
                "no {width} px screenshot of {step}:\n{report}"
            );
        }
    }
    // Both turns reached the model: the one seen and the one notified.
    assert_eq!(script.lock().unwrap().1.len(), 2, "two model calls");
}
