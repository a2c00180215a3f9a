//! Services and terminals in the web UI end to end, in Debian's Chromium
//! driven by `ui/e2e/services.mjs` (see `ui.rs` for how the script's
//! dependencies and the browser are found): a service started from the UI,
//! the Run button, a cleared log, copy and paste in the terminal, a second
//! terminal, and a session stop and start after which the service, its port
//! and `main`'s history are back; screenshots at 1440x900 and 390x844 in
//! `<target dir>/tmp/ui-services-e2e/`.

use crate::harness::Daemon;
use crate::ui::{file_names, run_script};

#[test]
fn services_and_terminals_work_in_chromium() {
    let d = Daemon::start("uis1");
    let (_, shots) = run_script(
        &d,
        "services.mjs",
        "ui-services-e2e",
        &[],
        &[
            "open-session",
            "service-from-the-ui",
            "run-button-and-clear-log",
            "terminal-copy-and-paste",
            "second-terminal",
            "stop-and-start-keeps-services-and-history",
            "narrow-390x844",
        ],
    );
    let shot_names = file_names(&shots);
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
