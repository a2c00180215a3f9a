//! Session timeouts: `firepit new --timeout` stops the session at its
//! deadline (files kept), `ls` shows when, and the deadline outlives a
//! daemon restart.

use std::time::{Duration, Instant};

use crate::harness::Daemon;

/// A hang guard for waits, not a speed budget.
const GUARD: Duration = Duration::from_secs(120);

#[test]
fn a_session_stops_at_its_timeout_and_ls_shows_when() {
    let mut d = Daemon::start("tmo");
    let long = d.new_session(&["--timeout", "1h"]);
    let ls = d.ok(&["ls"]);
    let line = ls.lines().find(|l| l.starts_with(&long)).unwrap();
    assert!(
        line.contains(" in 59m ") || line.contains(" in 1h "),
        "{ls}"
    );
    let stop_at = d.get_json(&format!("/v1/sessions/{long}"))["stop_at"]
        .as_i64()
        .unwrap();

    let short = d.new_session(&["--timeout", "2s"]);
    d.sh(&short, "echo kept > /root/kept");
    d.restart(nix::sys::signal::Signal::SIGTERM as i32);
    let start = Instant::now();
    loop {
        let s = d.get_json(&format!("/v1/sessions/{short}"));
        if s["state"] == "stopped" {
            assert!(
                s.get("stop_at").is_none(),
                "a stopped session keeps no timeout: {s}"
            );
            break;
        }
        assert!(start.elapsed() < GUARD, "never stopped: {s}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The other deadline survived the restart, and its session still runs.
    let s = d.get_json(&format!("/v1/sessions/{long}"));
    assert_eq!(
        (s["state"].as_str(), s["stop_at"].as_i64()),
        (Some("running"), Some(stop_at))
    );
    // Started again, the stopped one has its files and no timeout.
    d.ok(&["start", &short]);
    assert_eq!(d.sh(&short, "cat /root/kept"), "kept\n");
    assert!(
        d.get_json(&format!("/v1/sessions/{short}"))
            .get("stop_at")
            .is_none()
    );

    let bad = d.run(&["new", "--timeout", "0"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--timeout"));
}
