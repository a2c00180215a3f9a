//! `firepit-progress` on a real standard error that is not a terminal: this
//! test binary runs itself as a child with stderr piped (as a log or CI
//! would), and the child reports counted work and phases.

use std::process::Command;

use firepit_progress::Progress;

/// Set in the child: run the work instead of checking it.
const CHILD: &str = "FIREPIT_PROGRESS_IT_CHILD";

#[test]
fn a_piped_stderr_gets_plain_occasional_lines() {
    if std::env::var_os(CHILD).is_some() {
        let mut p = Progress::counter("work", 5000);
        for _ in 0..5000 {
            p.inc();
        }
        p.println("a line that stays");
        drop(p);
        let mut phases = Progress::phases("image minimal");
        phases.message("downloading packages");
        phases.message("done");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_piped_stderr_gets_plain_occasional_lines",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let work: Vec<&str> = err.lines().filter(|l| l.starts_with("work")).collect();
    // The start and every tenth, each once (a slow machine may add a line
    // every 5 s, never one per step).
    for k in 0..=10 {
        let want = format!("work: {}/5000 (", k * 500);
        assert_eq!(
            work.iter().filter(|l| l.starts_with(&want)).count(),
            1,
            "{want}: {err}"
        );
    }
    assert!(work.len() < 100, "{err}");
    assert!(
        work.last().unwrap().starts_with("work: 5000/5000 ("),
        "{err}"
    );
    assert!(err.contains("\na line that stays\n"), "{err}");
    assert!(
        err.contains("image minimal: downloading packages\nimage minimal: done\n"),
        "{err}"
    );
}
