//! Reading a test runner's output: how many passed and failed, and which.
//!
//! Understands mix test (ExUnit), pytest, unittest, cargo test, go test, jest, mocha,
//! node's test runner and the plain `N passed, N failed` line. The exit code
//! has the last word: a run that exits non-zero failed even when no count
//! was found.

use serde::{Deserialize, Serialize};

/// Most failure names kept.
const MAX_FAILURES: usize = 50;

/// What a test run said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSummary {
    /// Tests that passed, when the runner said.
    pub passed: Option<u64>,
    /// Tests that failed (as counted by the runner, or the failures named).
    pub failed: u64,
    /// Whether the run succeeded.
    pub ok: bool,
    /// The failing tests, as the runner names them (at most 50).
    pub failures: Vec<String>,
}

impl TestSummary {
    /// One line: `3 passed, 1 failed` (or why it failed without counts).
    pub fn line(&self, code: Option<i32>) -> String {
        match (self.passed, self.ok) {
            (Some(p), _) => format!("{p} passed, {} failed", self.failed),
            (None, true) => "passed".to_owned(),
            (None, false) if self.failed > 0 => format!("{} failed", self.failed),
            (None, false) => match code {
                Some(c) => format!("the test command failed (exit code {c})"),
                None => "the test command was killed".to_owned(),
            },
        }
    }
}

/// The number right before `word` in `line` (`"3 passed"` → 3).
fn count_before(line: &str, words: &[&str]) -> Option<u64> {
    let toks: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '=')
        .filter(|t| !t.is_empty())
        .collect();
    toks.windows(2).find_map(|w| {
        let word = w[1].trim_end_matches(['.', ':']);
        words.contains(&word).then(|| w[0].parse().ok()).flatten()
    })
}

/// The number after `key` in `s` (`failures=2` → 2), or 0.
fn count_after(s: &str, key: &str) -> u64 {
    s.split_once(key)
        .map(|(_, r)| {
            r.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Reads `output` of a test command that exited with `code` (`None`: killed).
pub fn summarize(output: &str, code: Option<i32>) -> TestSummary {
    let mut passed: Option<u64> = None;
    let mut failed: Option<u64> = None;
    let mut failures = Vec::new();
    let mut unittest_total: Option<u64> = None;
    let add = |slot: &mut Option<u64>, n: u64| *slot = Some(slot.unwrap_or(0) + n);
    for raw in output.lines() {
        let line = raw.trim();
        // cargo test: one line per test binary.
        if let Some(rest) = line.strip_prefix("test result: ") {
            if let Some(n) = count_before(rest, &["passed"]) {
                add(&mut passed, n);
            }
            if let Some(n) = count_before(rest, &["failed"]) {
                add(&mut failed, n);
            }
            continue;
        }
        if line.starts_with("test ") && line.ends_with("... FAILED") {
            failures.push(
                line["test ".len()..line.len() - "... FAILED".len()]
                    .trim()
                    .to_owned(),
            );
            continue;
        }
        // pytest: `==== 1 failed, 2 passed in 0.1s ====`.
        if line.starts_with('=') && line.ends_with('=') && line.contains(" in ") {
            passed = count_before(line, &["passed"]).or(passed);
            failed = count_before(line, &["failed"])
                .map(|f| f + count_before(line, &["error", "errors"]).unwrap_or(0))
                .or(failed);
            continue;
        }
        if let Some(name) = line.strip_prefix("FAILED ").filter(|n| !n.starts_with('(')) {
            failures.push(name.to_owned());
            continue;
        }
        // ExUnit: `3 tests, 1 failure` (doctests counted with them).
        if (line.contains(" test, ") || line.contains(" tests, ")) && line.contains(" failure") {
            let total = count_before(line, &["test", "tests"]).unwrap_or(0)
                + count_before(line, &["doctest", "doctests"]).unwrap_or(0);
            let f = count_before(line, &["failure", "failures"]).unwrap_or(0);
            failed = Some(f);
            passed = Some(total.saturating_sub(f));
            continue;
        }
        // jest: `Tests:  1 failed, 2 passed, 3 total`.
        if let Some(rest) = line.strip_prefix("Tests:") {
            passed = count_before(rest, &["passed"]).or(Some(0));
            failed = count_before(rest, &["failed"]).or(Some(0));
            continue;
        }
        if let Some(name) = line.strip_prefix("● ") {
            failures.push(name.to_owned());
            continue;
        }
        // go test.
        if let Some(name) = line.strip_prefix("--- FAIL: ") {
            failures.push(name.split(" (").next().unwrap_or(name).to_owned());
            continue;
        }
        // node --test (TAP): `# pass 2`, `# fail 1`, `not ok 1 - name`.
        if let Some(n) = line.strip_prefix("# pass ").and_then(|n| n.parse().ok()) {
            passed = Some(n);
            continue;
        }
        if let Some(n) = line.strip_prefix("# fail ").and_then(|n| n.parse().ok()) {
            failed = Some(n);
            continue;
        }
        if let Some(rest) = line.strip_prefix("not ok ") {
            let name = rest.split_once(" - ").map_or(rest, |(_, n)| n);
            failures.push(name.to_owned());
            continue;
        }
        // mocha: `2 passing (5ms)`, `1 failing`.
        if let Some(n) = count_before(line, &["passing"]) {
            passed = Some(n);
            continue;
        }
        if let Some(n) = count_before(line, &["failing"]) {
            failed = Some(n);
            continue;
        }
        // ExUnit and mocha name failures as `1) test name (Module)`.
        if let Some((num, name)) = line.split_once(") ")
            && !num.is_empty()
            && num.bytes().all(|b| b.is_ascii_digit())
            && raw.starts_with("  ")
        {
            failures.push(name.trim_end_matches(':').to_owned());
            continue;
        }
        // unittest: `Ran 3 tests in 0.001s`, then `OK` or `FAILED (failures=1, errors=1)`.
        if let Some(rest) = line.strip_prefix("Ran ")
            && let Some(n) = count_before(rest, &["test", "tests"])
        {
            unittest_total = Some(n);
            continue;
        }
        if let Some(rest) = line.strip_prefix("FAILED (") {
            let f = count_after(rest, "failures=") + count_after(rest, "errors=");
            failed = Some(f);
            if let Some(t) = unittest_total {
                passed = Some(t.saturating_sub(f));
            }
            continue;
        }
        if line == "OK" || line.starts_with("OK (") {
            if let Some(t) = unittest_total {
                passed = Some(t);
                failed = Some(0);
            }
            continue;
        }
        if let Some(name) = line
            .strip_prefix("FAIL: ")
            .or_else(|| line.strip_prefix("ERROR: "))
        {
            failures.push(name.to_owned());
            continue;
        }
        // The plain `N passed, N failed` line.
        if line.contains(" passed, ") && line.contains(" failed") {
            passed = count_before(line, &["passed"]).or(passed);
            failed = count_before(line, &["failed"]).or(failed);
        }
    }
    failures.truncate(MAX_FAILURES);
    let failed = failed.unwrap_or(failures.len() as u64);
    TestSummary {
        passed,
        ok: code == Some(0) && failed == 0,
        failed,
        failures,
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    /// (output, exit code, passed, failed, ok, first failure).
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, Option<i32>, Option<u64>, u64, bool, Option<&str>)] = &[
        (
            "..F\n=================================== FAILURES ===================================\n___ test_add ___\n    assert add(1, 2) == 4\nE   assert 3 == 4\n=========================== short test summary info ============================\nFAILED test_app.py::test_add - assert 3 == 4\n========================= 1 failed, 2 passed in 0.03s ==========================\n",
            Some(1),
            Some(2),
            1,
            false,
            Some("test_app.py::test_add - assert 3 == 4"),
        ),
        (
            "============================== 3 passed in 0.01s ===============================\n",
            Some(0),
            Some(3),
            0,
            true,
            None,
        ),
        (
            "running 2 tests\ntest tests::adds ... ok\ntest tests::subtracts ... FAILED\n\nfailures:\n\ntest result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n",
            Some(101),
            Some(1),
            1,
            false,
            Some("tests::subtracts"),
        ),
        (
            "test result: ok. 4 passed; 0 failed; 0 ignored\n\ntest result: ok. 2 passed; 0 failed; 0 ignored\n",
            Some(0),
            Some(6),
            0,
            true,
            None,
        ),
        (
            "--- FAIL: TestAdd (0.00s)\n    main_test.go:8: got 3, want 4\nFAIL\nFAIL\texample.com/app\t0.002s\n",
            Some(1),
            None,
            1,
            false,
            Some("TestAdd"),
        ),
        (
            "ok  \texample.com/app\t0.002s\n",
            Some(0),
            None,
            0,
            true,
            None,
        ),
        (
            "Running ExUnit with seed: 1\n\n  1) test greets the world (AppTest)\n     test/app_test.exs:5\n     Assertion with == failed\n\nFinished in 0.02 seconds (0.00s async, 0.02s sync)\n1 doctest, 3 tests, 1 failure\n",
            Some(2),
            Some(3),
            1,
            false,
            Some("test greets the world (AppTest)"),
        ),
        (
            "Finished in 0.01 seconds\n2 tests, 0 failures\n",
            Some(0),
            Some(2),
            0,
            true,
            None,
        ),
        (
            "FAIL ./sum.test.js\n  ● sum › adds 1 + 2\n\n    expect(received).toBe(expected)\n\nTests:       1 failed, 2 passed, 3 total\n",
            Some(1),
            Some(2),
            1,
            false,
            Some("sum › adds 1 + 2"),
        ),
        (
            "TAP version 13\nnot ok 1 - adds\n  ---\n  ...\nok 2 - subtracts\n# tests 2\n# pass 1\n# fail 1\n",
            Some(1),
            Some(1),
            1,
            false,
            Some("adds"),
        ),
        (
            "  2 passing (5ms)\n  1 failing\n\n  1) Array\n       #indexOf():\n",
            Some(1),
            Some(2),
            1,
            false,
            Some("Array"),
        ),
        (
            "sh: 1: pytest: not found\n",
            Some(127),
            None,
            0,
            false,
            None,
        ),
        (
            "test_a (t.T.test_a) ... ok\ntest_b (t.T.test_b) ... FAIL\n\n======\nFAIL: test_b (t.T.test_b)\n------\nAssertionError: 1 != 2\n\n------\nRan 2 tests in 0.001s\n\nFAILED (failures=1)\n",
            Some(1),
            Some(1),
            1,
            false,
            Some("test_b (t.T.test_b)"),
        ),
        (
            "F.E\n------\nRan 3 tests in 0.001s\n\nFAILED (failures=1, errors=1)\n",
            Some(1),
            Some(1),
            2,
            false,
            None,
        ),
        (
            "....\n------\nRan 4 tests in 0.002s\n\nOK\n",
            Some(0),
            Some(4),
            0,
            true,
            None,
        ),
        (
            "test_empty (test_server.T.test_empty) ... ok\ntest_two (test_server.T.test_two) ... ok\n\n----------------------------------------------------------------------\nRan 2 tests in 0.000s\n\nOK\n",
            Some(0),
            Some(2),
            0,
            true,
            None,
        ),
    ];

    #[test]
    fn reads_the_table() {
        for (out, code, passed, failed, ok, first) in CASES {
            let s = summarize(out, *code);
            assert_eq!(s.passed, *passed, "passed, for:\n{out}");
            assert_eq!(s.failed, *failed, "failed, for:\n{out}");
            assert_eq!(s.ok, *ok, "ok, for:\n{out}");
            assert_eq!(
                s.failures.first().map(String::as_str),
                *first,
                "for:\n{out}"
            );
        }
    }

    #[test]
    fn lines_say_what_happened() {
        let s = summarize("sh: pytest: not found", Some(127));
        assert_eq!(s.line(Some(127)), "the test command failed (exit code 127)");
        let s = summarize("== 1 failed, 2 passed in 1s ==", Some(1));
        assert_eq!(s.line(Some(1)), "2 passed, 1 failed");
    }
}
