//! Sessions' names, labels, limits and usage, the New session dialog and the
//! Preview tab, end to end in headless Chromium (`ui/e2e/sessions.mjs`, the
//! same runner pieces as `ui.rs`): the dialog refuses more memory than the
//! host has and lists every image once; a session made with a name and
//! labels, its usage in its header, renamed, found in the list by label and
//! name, every running session's usage read by the list in one request;
//! the preview's URL bar following links and `pushState`, back and forward;
//! the switch for the preview's error reports (read back through the API,
//! the app's page with and without the report script); a share of the page
//! shown with a chosen lifetime, listed and revoked; a signed-out preview's
//! sign-in page, which signs in and goes on.
//!
//! Screenshots of every step at 1440x900 and 390x844 are kept in
//! `<target dir>/tmp/ui-sessions-e2e/`.

use crate::harness::Daemon;
use crate::ui::{file_names, run_script};

/// The steps `sessions.mjs` runs.
const STEPS: &[&str] = &[
    "login",
    "dialog-refuses-too-much-memory",
    "create-with-name-and-labels",
    "usage-shown",
    "rename",
    "list-search",
    "preview-url-follows",
    "back-forward",
    "preview-error-reports-switch",
    "share-with-lifetime",
    "shares-listed-and-revoked",
    "signed-out-sign-in-page",
];

#[test]
fn sessions_names_usage_and_preview_work_in_chromium() {
    let d = Daemon::start("uis2");
    let (_, shots) = run_script(&d, "sessions.mjs", "ui-sessions-e2e", &[], STEPS);
    let shot_names = file_names(&shots);
    for step in STEPS {
        for size in ["", "-390"] {
            assert!(
                shot_names
                    .iter()
                    .any(|n| n.ends_with(&format!("-{step}{size}.png"))),
                "no screenshot of {step}{size}: {shot_names:?}"
            );
        }
    }
}
