//! Error recognition for the closed loop, as pure code: no I/O, no clocks.
//!
//! - [`LogScanner`] reads a service's log line by line and recognises stack
//!   traces and error lines of Elixir/Phoenix, Python, Node, Rust and Go, and
//!   HTTP 5xx responses in access logs.
//! - [`ShellScanner`] reads a terminal's output as it streams (escapes taken
//!   out, the shell's marks read to name the command a problem came from, a
//!   command killed by a crash signal reported).
//! - [`tests::summarize`] reads a test runner's output (mix test, pytest,
//!   cargo test, go test, npm test with jest/mocha/node:test) and says what
//!   failed.
//! - [`Folder`] folds repeats: the same problem (same source, kind and
//!   summary once numbers, addresses and pids are taken out) is reported the
//!   first time and then only when its count reaches 10, 100, 1000, …, so a
//!   crash loop is one event (and a few count updates), not a thousand.
#![warn(missing_docs)]

mod fold;
mod logs;
mod shell;
pub mod tests;

pub use fold::{Folder, fingerprint};
pub use logs::LogScanner;
pub use shell::ShellScanner;

/// Longest `detail` kept, in bytes (the trace and its context).
pub const DETAIL_LIMIT: usize = 4096;
/// Longest `summary` kept, in bytes.
pub const SUMMARY_LIMIT: usize = 300;

/// An error recognised in a session: what the `problem` event carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// Where it came from: `service:<name>`, `shell:<pty>`, `browser` or `test`.
    pub source: String,
    /// What it is: `python_exception`, `elixir_exception`, `node_exception`,
    /// `rust_panic`, `rust_compile_error`, `go_panic`, `error_line`, `http_5xx`,
    /// `js_exception`, `console_error`, `request_failed`, `test_failure`,
    /// `browser_crash`, `shell_crash`, ….
    pub kind: String,
    /// One line.
    pub summary: String,
    /// The trace and its context, bounded by [`DETAIL_LIMIT`].
    pub detail: String,
}

impl Problem {
    /// A problem with its summary and detail cut to their limits.
    pub fn new(
        source: impl Into<String>,
        kind: impl Into<String>,
        summary: &str,
        detail: &str,
    ) -> Problem {
        let summary = summary.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        Problem {
            source: source.into(),
            kind: kind.into(),
            summary: cut(summary.trim(), SUMMARY_LIMIT),
            detail: cut_tail(detail, DETAIL_LIMIT),
        }
    }
}

/// `s` cut to at most `max` bytes on a char boundary, with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `s` cut to at most `max` bytes keeping its head and its tail (a trace's
/// most useful parts).
pub fn cut_tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let half = max / 2 - 16;
    let mut a = half;
    while !s.is_char_boundary(a) {
        a -= 1;
    }
    let mut b = s.len() - half;
    while !s.is_char_boundary(b) {
        b += 1;
    }
    format!("{}\n[… {} bytes cut …]\n{}", &s[..a], b - a, &s[b..])
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn limits_hold() {
        let p = Problem::new("browser", "x", &"é".repeat(400), &"line\n".repeat(5000));
        assert!(p.summary.len() <= SUMMARY_LIMIT);
        assert!(p.detail.len() <= DETAIL_LIMIT + 40);
        assert!(p.detail.contains("bytes cut"));
        assert_eq!(
            Problem::new("b", "k", "\n\n  first\nsecond", "").summary,
            "first"
        );
    }
}
