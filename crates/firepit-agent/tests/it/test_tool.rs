//! The `test` tool against a real guest: the command found from the project
//! or given, the failures summarised, every run handed to the session's hooks;
//! and the browser tools' answers to calls they cannot make.

use std::sync::{Arc, Mutex};

use firepit_agent::tools::{self, hooks::SessionHooks};
use firepit_agent::{TestRun, ToolCall};
use serde_json::json;

use crate::{Guest, guard};

/// Hooks that keep test runs; the browser dials nowhere.
struct Fake {
    guest: firepit_guest_client::GuestClient,
    runs: Mutex<Vec<TestRun>>,
}

impl SessionHooks for Fake {
    fn browser(&self) -> Arc<firepit_browser::Browser> {
        let dial: firepit_browser::Dial = Arc::new(|_| {
            Box::pin(async { Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)) })
        });
        firepit_browser::Browser::new(firepit_browser::Launcher::new(self.guest.clone(), dial))
    }
    fn save_artifact(&self, _: &str, _: &str, _: Vec<u8>) -> Result<String, String> {
        Err("no artifacts here".into())
    }
    fn test_ran(&self, run: &TestRun) {
        self.runs.lock().unwrap().push(run.clone());
    }
}

async fn call(
    ctx: &firepit_agent::ToolContext,
    name: &str,
    args: serde_json::Value,
) -> (String, bool) {
    let c = ToolCall {
        id: "c".into(),
        name: name.into(),
        arguments: args.to_string(),
    };
    let out = guard(tools::call(ctx, &c)).await;
    (out.output, out.is_error)
}

const FAILING: &str = "import unittest\n\nclass T(unittest.TestCase):\n    def test_ok(self):\n        self.assertEqual(1, 1)\n\n    def test_bad(self):\n        self.assertEqual(1, 2)\n";

#[tokio::test]
async fn the_test_tool_finds_runs_summarises_and_records() {
    let g = Guest::start().await;
    let hooks = Arc::new(Fake {
        guest: g.client.clone(),
        runs: Mutex::default(),
    });
    let ctx = g.tools().with_hooks(hooks.clone());

    // Nothing to find: a clear error, and no run recorded.
    let (out, err) = call(&ctx, "test", json!({})).await;
    assert!(err && out.contains("found no test setup"), "{out}");
    assert!(hooks.runs.lock().unwrap().is_empty());

    // A given command: the failures are named and the run is recorded.
    std::fs::write(g.workdir().join("test_app.py"), FAILING).unwrap();
    let (out, err) = call(&ctx, "test", json!({"command": "python3 -m unittest"})).await;
    assert!(!err, "{out}");
    assert!(out.contains("FAILED — 1 passed, 1 failed"), "{out}");
    assert!(out.contains("- test_bad (test_app.T"), "{out}");
    assert!(out.contains("AssertionError: 1 != 2"), "{out}");
    {
        let runs = hooks.runs.lock().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].command, "python3 -m unittest");
        assert!(!runs[0].summary.ok);
        assert_eq!(runs[0].summary.failed, 1);
        assert_eq!(runs[0].exit_code, Some(1));
    }

    // Found from the project: a mix.exs means `mix test` (not installed here,
    // so the run fails with the shell's answer, and says so).
    std::fs::write(
        g.workdir().join("mix.exs"),
        "defmodule App.MixProject do end\n",
    )
    .unwrap();
    let (out, _) = call(&ctx, "test", json!({"timeout_s": 30})).await;
    assert!(out.starts_with("`mix test`: FAILED"), "{out}");
    assert_eq!(
        hooks.runs.lock().unwrap().last().unwrap().command,
        "mix test"
    );

    // A run past its limit is killed and recorded as failed.
    let (out, _) = call(&ctx, "test", json!({"command": "sleep 30", "timeout_s": 1})).await;
    assert!(
        out.contains("FAILED") && out.contains("timed out after 1s"),
        "{out}"
    );
    assert_eq!(hooks.runs.lock().unwrap().last().unwrap().exit_code, None);
}

#[tokio::test]
async fn browser_tools_refuse_bad_calls_before_starting_anything() {
    let g = Guest::start().await;
    let hooks = Arc::new(Fake {
        guest: g.client.clone(),
        runs: Mutex::default(),
    });
    let ctx = g.tools().with_hooks(hooks);
    // Bad arguments are refused before anything starts.
    let (out, err) = call(&ctx, "browser_click", json!({"ref": 3})).await;
    assert!(
        err && out.contains("wrong arguments for browser_click"),
        "{out}"
    );

    // Without hooks the tools say they are unavailable.
    let (out, err) = call(&g.tools(), "browser_snapshot", json!({})).await;
    assert!(err && out.contains("not available"), "{out}");
}
