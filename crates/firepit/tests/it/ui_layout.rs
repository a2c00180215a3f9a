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

use crate::agent::{Script, stand_in, turn};
use crate::harness::Daemon;
use crate::ui::{file_names, run_script, ui_origin};

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
    let bare_origin = ui_origin(&bare);
    let (_, shots) = run_script(
        &d,
        "layout.mjs",
        "ui-layout-e2e",
        &[
            ("FIREPIT_URL_NO_MODEL", bare_origin.as_ref()),
            ("FIREPIT_TOKEN_NO_MODEL", bare.token.as_ref()),
        ],
        STEPS,
    );
    let files = file_names(&shots);
    for step in STEPS {
        for width in [1440, 390] {
            assert!(
                files
                    .iter()
                    .any(|f| f.ends_with(&format!("-{step}-{width}.png"))),
                "no {width} px screenshot of {step}: {files:?}"
            );
        }
    }
    // Both turns reached the model: the one seen and the one notified.
    assert_eq!(script.lock().unwrap().1.len(), 2, "two model calls");
}
