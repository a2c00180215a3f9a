//! `test`: runs the project's tests and says what failed.
//!
//! The command is the one given, or found from the project by
//! [`DETECT_TESTS`]: `script/test`, `mix test`, `npm test` (a package.json
//! with a real test script), `make test`, `cargo test`, `go test ./...`, or
//! Python's (pytest when installed, else unittest discovery). The run is
//! recorded through the session's hooks as a `test_run` event.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use super::ToolContext;
use super::hooks::TestRun;
use crate::context::bound_output;
use crate::message::ToolDef;

/// Default and largest time limit of a run.
const DEFAULT_LIMIT: u64 = 600;
const MAX_LIMIT: u64 = 3600;

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "test",
        description: "Run the project's tests (mix test, npm test, pytest, cargo test or go test, found from the project; or the command given) and get a summary of the failures. The run is recorded in the session's log.",
        schema: json!({"type": "object", "properties": {
            "command": {"type": "string", "description": "The test command, when it cannot be found or to run a subset, e.g. 'mix test test/app_test.exs'."},
            "cwd": {"type": "string", "description": "The project's directory; default the repository."},
            "timeout_s": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "Default 600."}
        }}),
    }
}

#[derive(Deserialize)]
pub(super) struct Args {
    command: Option<String>,
    cwd: Option<String>,
    timeout_s: Option<u64>,
}

/// A shell script that prints a project's test command (or nothing), run
/// in the project's directory inside the machine. `script/test` (the
/// "scripts to rule them all" convention) wins; then each ecosystem's usual
/// entry point. The agent's `test` tool and the daemon's triage both use it.
pub const DETECT_TESTS: &str = r#"if [ -x script/test ]; then echo script/test
elif [ -f mix.exs ]; then echo 'mix test'
elif [ -f package.json ] && grep -q '"test"[[:space:]]*:' package.json && ! grep -q 'no test specified' package.json; then echo 'npm test'
elif [ -f Makefile ] && grep -q '^test:' Makefile; then echo 'make test'
elif [ -f Cargo.toml ]; then echo 'cargo test'
elif [ -f go.mod ]; then echo 'go test ./...'
elif [ -f pytest.ini ] || [ -f pyproject.toml ] || [ -f setup.cfg ] || [ -f setup.py ] || [ -f conftest.py ] || [ -d tests ] || [ -d test ] || ls test_*.py >/dev/null 2>&1; then
  if python3 -c 'import pytest' 2>/dev/null; then echo 'python3 -m pytest -q'
  elif [ -f tests/__init__.py ]; then echo 'python3 -m unittest discover -s tests -t .'
  elif [ -d tests ]; then echo 'python3 -m unittest discover -s tests'
  else echo 'python3 -m unittest discover'; fi
fi"#;

pub(super) async fn run(ctx: &ToolContext, a: Args) -> Result<String, String> {
    let cwd = ctx.path(a.cwd.as_deref().unwrap_or(""));
    let in_dir = |line: &str| format!("cd {} && {line}", super::quote(&cwd));
    let command = match a.command.filter(|c| !c.trim().is_empty()) {
        Some(c) => c,
        None => {
            let (_, out, _) = ctx
                .sh(in_dir(DETECT_TESTS), Duration::from_secs(10))
                .await?;
            let found = out.trim().to_owned();
            if found.is_empty() {
                return Err(format!(
                    "found no test setup in {} (no mix.exs, package.json test script, Cargo.toml, go.mod or pytest files); give the command",
                    cwd
                ));
            }
            found
        }
    };
    let limit = Duration::from_secs(a.timeout_s.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT));
    let started = Instant::now();
    let (code, output) = match ctx.sh(in_dir(&format!("{command} 2>&1")), limit).await {
        Ok((code, out, err)) => (code, out + &err),
        Err(e) if e.starts_with("timed out") => (None, e),
        Err(e) => return Err(e),
    };
    let summary = firepit_problems::tests::summarize(&output, code);
    let line = summary.line(code);
    let run = TestRun {
        command: command.clone(),
        exit_code: code,
        summary: summary.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        output_tail: bound_output(&output, 4000),
    };
    if let Some(h) = &ctx.hooks {
        h.test_ran(&run);
    }
    let mut out = format!(
        "`{command}`: {} — {line} in {:.1}s",
        if summary.ok { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if !summary.failures.is_empty() {
        out.push_str("\nfailing:");
        for f in &summary.failures {
            out.push_str("\n- ");
            out.push_str(f);
        }
    }
    if !summary.ok {
        out.push_str("\n\noutput:\n");
        out.push_str(&bound_output(&output, 8000));
    }
    Ok(out)
}
