//! The CLI's commands and their errors, end to end.

use crate::harness::{Daemon, FIREPIT};

#[test]
fn exec_streams_output_and_exits_with_the_commands_code() {
    let d = Daemon::start("t1");
    let id = d.new_session(&[]);
    assert_eq!(
        d.ok(&["exec", &id, "--", "echo", "hello", "world"]),
        "hello world\n"
    );
    assert_eq!(
        d.sh(&id, "hostname").trim(),
        id,
        "the hostname is the session id"
    );
    assert_eq!(d.sh(&id, "id -u").trim(), "0", "root inside");
    assert_eq!(
        d.sh(&id, "cat /proc/self/oom_score_adj").trim(),
        "0",
        "commands can be OOM-killed even where the guest is shielded"
    );

    let out = d.run(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    let out = d.run(&["exec", &id, "--", "no-such-command-here"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "a clear error: {err}");

    let out = d.run(&[
        "exec",
        &id,
        "--timeout",
        "0.5",
        "--",
        "sh",
        "-c",
        "sleep 30 & sleep 30",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
    // The timeout killed the whole tree: no sleep is left.
    assert_eq!(
        d.sh(&id, "ps -e -o comm= | grep -c '^sleep$' || true")
            .trim(),
        "0"
    );

    let out = d
        .cli()
        .args(["exec", "-i", &id, "--", "tr", "a-z", "A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = out.unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\n");
}

#[test]
fn bad_input_gets_clear_errors() {
    let d = Daemon::start("t2");
    let out = d.run(&["exec", "nosuchsession", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no session"),
        "{out:?}"
    );

    let out = d.run(&["new", "--image", "no-such-image"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("firepit image build"),
        "says what to do: {err}"
    );

    for bad in [
        ["--memory", "1K"],
        ["--cpus", "0"],
        ["--memory", "lots"],
        ["--pids", "1"],
        ["--disk", "1M"],
        ["--disk", "lots"],
    ] {
        let out = d.run(&["new", bad[0], bad[1]]);
        assert!(!out.status.success(), "{bad:?} was accepted");
    }
    // Nothing was left half-made.
    assert_eq!(d.ok(&["ls"]).lines().count(), 1, "only the header");

    // A daemon that is not running.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(FIREPIT)
        .env("FIREPIT_DATA_DIR", dir.path())
        .env("FIREPIT_URL", "http://127.0.0.1:1")
        .env("FIREPIT_TOKEN", "x")
        .args(["ls"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("firepit up"),
        "{out:?}"
    );
}

#[test]
fn run_makes_and_removes_a_session() {
    let d = Daemon::start("t3");
    let out = d.run(&[
        "run",
        "--network",
        "none",
        "--",
        "sh",
        "-c",
        "ip -o link | wc -l; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "only loopback without a network"
    );
    assert_eq!(d.ok(&["ls"]).lines().count(), 1, "the session is gone");
}

#[test]
fn sessions_are_named_labelled_and_renamed() {
    let d = Daemon::start("clin");
    let id = d
        .ok(&[
            "new",
            "--name",
            "checkout page",
            "--label",
            "team=web",
            "--label",
            "ticket=42",
        ])
        .trim()
        .to_owned();
    let ls = d.ok(&["ls"]);
    let row = ls.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.ends_with("checkout page [team=web ticket=42]"), "{ls}");
    assert!(ls.lines().next().unwrap().ends_with("NAME"), "{ls}");
    // A new name keeps the labels; new labels replace them all.
    assert_eq!(
        d.ok(&["rename", &id, "shop"]).trim(),
        format!("{id} shop [team=web ticket=42]")
    );
    assert_eq!(
        d.ok(&["rename", &id, "--label", "team=api"]).trim(),
        format!("{id} shop [team=api]")
    );
    assert_eq!(
        d.ok(&["rename", &id, "", "--no-labels"]).trim(),
        format!("{id} -")
    );
    // Bad input is refused with what would do, and nothing changes.
    for (args, says) in [
        (vec!["rename", &id, "--label", "Team=x"], "label key"),
        (vec!["rename", &id, "--label", "team"], "not key=value"),
        (vec!["rename", &id], "give a new name"),
        (vec!["new", "--name", "a\tb"], "control characters"),
    ] {
        let out = d.run(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(d.ok(&["ls"]).lines().count(), 2, "no session was half made");
}
