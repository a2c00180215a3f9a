//! Recognising errors in a service's log, line by line.
//!
//! A trace spans lines, so the scanner keeps the block it is in and emits it
//! when a line that does not continue it arrives (or on [`LogScanner::flush`],
//! which the caller calls when the log goes quiet). Colour codes are taken
//! out first; every line and every block is bounded.

use crate::{Problem, cut};

/// Longest line looked at, in bytes.
const LINE_LIMIT: usize = 2000;
/// Most lines one block keeps; a longer one is emitted as it stands.
const BLOCK_LINES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Python,
    Elixir,
    Node,
    RustPanic,
    RustCompile,
    Go,
}

#[derive(Debug)]
struct Pending {
    block: Block,
    lines: Vec<String>,
    summary: Option<String>,
}

/// Reads one log and recognises errors in it.
#[derive(Debug)]
pub struct LogScanner {
    source: String,
    pending: Option<Pending>,
}

impl LogScanner {
    /// A scanner for the log of `source` (`service:<name>`, say).
    pub fn new(source: impl Into<String>) -> LogScanner {
        LogScanner {
            source: source.into(),
            pending: None,
        }
    }

    /// The source its problems name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Feeds a chunk of log text (whole lines; a partial last line is taken
    /// as a line). Returns what it completed.
    pub fn push(&mut self, text: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        for line in text.lines() {
            out.extend(self.push_line(line));
        }
        out
    }

    /// Feeds one line. Returns the problems it completed.
    pub fn push_line(&mut self, raw: &str) -> Vec<Problem> {
        let line = strip_ansi(&cut(raw.trim_end_matches(['\r', '\n']), LINE_LIMIT));
        let mut out = Vec::new();
        if let Some(p) = &mut self.pending {
            match continues(p, &line) {
                Step::Continue => {
                    p.lines.push(line);
                    if p.lines.len() >= BLOCK_LINES {
                        out.extend(self.flush());
                    }
                    return out;
                }
                Step::End => {
                    p.lines.push(line.clone());
                    if p.block == Block::Python {
                        p.summary = Some(line);
                    }
                    out.extend(self.flush());
                    return out;
                }
                Step::Break => out.extend(self.flush()),
            }
        }
        out.extend(self.start(line));
        out
    }

    /// Whether a block is in progress, which [`LogScanner::flush`] would
    /// emit: a reader needs to flush when the log goes quiet only then.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Emits the block in progress, if any (the log went quiet or ended).
    pub fn flush(&mut self) -> Vec<Problem> {
        let Some(p) = self.pending.take() else {
            return Vec::new();
        };
        let detail = p.lines.join("\n");
        let first = p.lines.first().cloned().unwrap_or_default();
        let (kind, summary) = match p.block {
            Block::Python => ("python_exception", p.summary.unwrap_or(first)),
            Block::Elixir => ("elixir_exception", p.summary.unwrap_or(first)),
            Block::Node => {
                let has_frames = p
                    .lines
                    .iter()
                    .skip(1)
                    .any(|l| l.trim_start().starts_with("at "));
                (
                    if has_frames {
                        "node_exception"
                    } else {
                        "error_line"
                    },
                    first,
                )
            }
            Block::RustPanic => {
                // Since Rust 1.73 the message is on the line after "panicked at …:".
                let s = match p.lines.get(1) {
                    Some(msg) if first.ends_with(':') && !msg.starts_with("note:") => {
                        format!("{first} {msg}")
                    }
                    _ => first,
                };
                ("rust_panic", s)
            }
            Block::RustCompile => ("rust_compile_error", first),
            Block::Go => ("go_panic", first),
        };
        vec![Problem::new(&self.source, kind, &summary, &detail)]
    }

    fn start(&mut self, line: String) -> Vec<Problem> {
        let t = line.trim_start();
        let block = if t.starts_with("Traceback (most recent call last)") {
            Some(Block::Python)
        } else if t.starts_with("** (") || is_elixir_error(&line) {
            Some(Block::Elixir)
        } else if t.starts_with("thread '") && t.contains("' panicked at") {
            Some(Block::RustPanic)
        } else if t.starts_with("error[E") {
            Some(Block::RustCompile)
        } else if t.starts_with("panic: ") || t.starts_with("fatal error: ") {
            Some(Block::Go)
        } else if line == t && is_error_name_line(t) {
            Some(Block::Node)
        } else {
            None
        };
        if let Some(block) = block {
            let summary = (block == Block::Elixir)
                .then(|| elixir_summary(t))
                .flatten();
            self.pending = Some(Pending {
                block,
                lines: vec![line],
                summary,
            });
            return Vec::new();
        }
        if let Some(summary) = http_5xx(t) {
            return vec![Problem::new(&self.source, "http_5xx", &summary, &line)];
        }
        if is_error_line(t) {
            return vec![Problem::new(&self.source, "error_line", t, &line)];
        }
        Vec::new()
    }
}

enum Step {
    /// The line belongs to the block.
    Continue,
    /// The line belongs to the block and ends it.
    End,
    /// The line does not belong to the block (the block ends before it).
    Break,
}

fn indented(line: &str) -> bool {
    line.starts_with([' ', '\t'])
}

fn continues(p: &mut Pending, line: &str) -> Step {
    let t = line.trim_start();
    match p.block {
        Block::Python => {
            if indented(line) || line.is_empty() {
                Step::Continue
            } else if p.lines.len() == 1 {
                Step::Break
            } else {
                Step::End
            }
        }
        Block::Elixir => {
            let header = ["Server:", "Request:", "** ", "Last message", "State:"]
                .iter()
                .any(|h| t.starts_with(h));
            if (indented(line) && !t.is_empty()) || header {
                if let Some(s) = elixir_summary(t) {
                    p.summary = Some(s);
                }
                Step::Continue
            } else {
                Step::Break
            }
        }
        Block::Node => {
            if indented(line) && t.starts_with("at ") {
                Step::Continue
            } else {
                Step::Break
            }
        }
        Block::RustPanic => {
            if t.starts_with("note:") {
                Step::End
            } else if line.is_empty() {
                Step::Break
            } else {
                Step::Continue
            }
        }
        Block::RustCompile => {
            if line.is_empty() {
                Step::Break
            } else {
                Step::Continue
            }
        }
        Block::Go => {
            if t.starts_with("exit status ") {
                Step::End
            } else if line.is_empty()
                || indented(line)
                || t.starts_with("goroutine ")
                || t.starts_with("[signal ")
                || t.starts_with("created by ")
                || t.ends_with(')')
            {
                Step::Continue
            } else {
                Step::Break
            }
        }
    }
}

/// `** (RuntimeError) boom` → that line; `** (exit) …` wraps the real one.
fn elixir_summary(t: &str) -> Option<String> {
    let t = t.trim_start();
    (t.starts_with("** (") && !t.starts_with("** (exit)")).then(|| t.to_owned())
}

/// Logger's `[error]` level, with or without a time before it.
fn is_elixir_error(line: &str) -> bool {
    line.starts_with("[error]")
        || line.split_once(" [error] ").is_some_and(|(time, _)| {
            time.len() <= 30
                && time
                    .chars()
                    .all(|c| c.is_ascii_digit() || ":.-T ".contains(c))
        })
}

/// `TypeError: …`, `Error: …`, `Uncaught …`, `UnhandledPromiseRejection…`.
fn is_error_name_line(t: &str) -> bool {
    if t.starts_with("Uncaught ") || t.starts_with("UnhandledPromiseRejection") {
        return true;
    }
    let Some((name, rest)) = t.split_once(": ") else {
        return false;
    };
    let name = name.split_once(" [").map_or(name, |(n, _)| n);
    !rest.trim().is_empty()
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && (name.ends_with("Error") || name.ends_with("Exception"))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
}

/// Generic error lines of common loggers.
fn is_error_line(t: &str) -> bool {
    t.starts_with("ERROR:")
        || t.starts_with("ERROR ")
        || t.starts_with("FATAL")
        || t.starts_with("[ERROR]")
        || t.contains(" level=error ")
        || t.contains(" ERROR ")
        || t.contains("\"level\":\"error\"")
}

/// A 5xx in an access-log line: common/combined log format
/// (`"GET / HTTP/1.1" 500 …`), Phoenix (`Sent 500 in 3ms`), and the
/// `METHOD /path STATUS` form (morgan, many dev servers).
fn http_5xx(t: &str) -> Option<String> {
    let is_5xx =
        |s: &str| s.len() == 3 && s.starts_with('5') && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(i) = t.find("\" ") {
        let before = &t[..i];
        if let Some(q) = before.rfind('"') {
            let request = &before[q + 1..];
            if request.contains(" HTTP/") {
                let status = t[i + 2..].split_whitespace().next().unwrap_or("");
                if is_5xx(status) {
                    let mut parts = request.split_whitespace();
                    let (m, p) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    return Some(format!("{m} {p} answered {status}"));
                }
                return None;
            }
        }
    }
    if let Some(rest) = t.split_once("Sent ").map(|(_, r)| r) {
        let mut w = rest.split_whitespace();
        if let (Some(s), Some("in")) = (w.next(), w.next())
            && is_5xx(s)
        {
            return Some(format!("the server answered {s}"));
        }
    }
    let w: Vec<&str> = t.split_whitespace().take(3).collect();
    const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    if w.len() == 3 && METHODS.contains(&w[0]) && w[1].starts_with('/') && is_5xx(w[2]) {
        return Some(format!("{} {} answered {}", w[0], w[1], w[2]));
    }
    None
}

/// Takes out ANSI escape sequences (`ESC [ … letter`) and other ESC pairs.
fn strip_ansi(s: &str) -> String {
    if !s.contains('\u{1b}') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Vec<Problem> {
        let mut s = LogScanner::new("service:web");
        let mut out = s.push(text);
        out.extend(s.flush());
        out
    }

    /// (log, expected problems as (kind, summary)).
    const CASES: &[(&str, &[(&str, &str)])] = &[
        (
            "Serving on 8000\n----------------------------------------\nException occurred during processing of request from ('127.0.0.1', 40000)\nTraceback (most recent call last):\n  File \"/usr/lib/python3.11/socketserver.py\", line 317, in _handle\n    self.process_request(request, client_address)\n  File \"/root/app/server.py\", line 9, in do_GET\n    x = 1 / 0\n        ~~^~~\nZeroDivisionError: division by zero\n----------------------------------------\n",
            &[("python_exception", "ZeroDivisionError: division by zero")],
        ),
        (
            "[info] GET /\n[debug] Processing with AppWeb.PageController.home/2\n[info] Sent 500 in 12ms\n[error] #PID<0.512.0> running AppWeb.Endpoint (connection #PID<0.511.0>, stream id 1) terminated\nServer: localhost:4000 (http)\nRequest: GET /\n** (exit) an exception was raised:\n    ** (RuntimeError) boom\n        (app 0.1.0) lib/app_web/controllers/page_controller.ex:5: AppWeb.PageController.home/2\n        (phoenix 1.7.14) lib/phoenix/router.ex:484: Phoenix.Router.__call__/5\n[info] GET /about\n",
            &[
                ("http_5xx", "the server answered 500"),
                ("elixir_exception", "** (RuntimeError) boom"),
            ],
        ),
        (
            "\u{1b}[31m14:02:11.123 [error] GenServer App.Worker terminating\n** (ArithmeticError) bad argument in arithmetic expression\n    (app 0.1.0) lib/app/worker.ex:12: App.Worker.handle_info/2\nLast message: :tick\n\u{1b}[0m",
            &[(
                "elixir_exception",
                "** (ArithmeticError) bad argument in arithmetic expression",
            )],
        ),
        (
            "listening on 3000\n/root/app/server.js:5\n    throw new TypeError('x is not a function');\n    ^\n\nTypeError: x is not a function\n    at Server.<anonymous> (/root/app/server.js:5:11)\n    at Server.emit (node:events:519:28)\n\nNode.js v20.11.0\n",
            &[("node_exception", "TypeError: x is not a function")],
        ),
        (
            "thread 'main' panicked at src/main.rs:4:5:\nindex out of bounds: the len is 3 but the index is 7\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
            &[(
                "rust_panic",
                "thread 'main' panicked at src/main.rs:4:5: index out of bounds: the len is 3 but the index is 7",
            )],
        ),
        (
            "   Compiling app v0.1.0\nerror[E0425]: cannot find value `y` in this scope\n --> src/main.rs:2:20\n  |\n2 |     println!(\"{}\", y);\n  |                    ^ not found in this scope\n\nerror: could not compile `app` (bin \"app\") due to 1 previous error\n",
            &[(
                "rust_compile_error",
                "error[E0425]: cannot find value `y` in this scope",
            )],
        ),
        (
            "starting\npanic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n\t/root/app/main.go:8 +0x1d\nexit status 2\nafter\n",
            &[(
                "go_panic",
                "panic: runtime error: index out of range [5] with length 3",
            )],
        ),
        (
            "127.0.0.1 - - [01/Jan/2026 10:00:00] \"GET /boom HTTP/1.1\" 500 -\n127.0.0.1 - - [01/Jan/2026 10:00:00] \"GET / HTTP/1.1\" 200 -\n",
            &[("http_5xx", "GET /boom answered 500")],
        ),
        (
            "GET /api/items 502 3.123 ms - 20\nGET / 200 1.0 ms - 5\n",
            &[("http_5xx", "GET /api/items answered 502")],
        ),
        (
            "ERROR:root:could not open the database\nINFO:root:fine\n",
            &[("error_line", "ERROR:root:could not open the database")],
        ),
        (
            "time=1 level=error msg=\"db down\"\n",
            &[("error_line", "time=1 level=error msg=\"db down\"")],
        ),
        (
            "Error: listen EADDRINUSE: address already in use :::3000\n",
            &[(
                "error_line",
                "Error: listen EADDRINUSE: address already in use :::3000",
            )],
        ),
        // Ordinary output is not a problem.
        (
            "Compiling 3 files (.ex)\n[info] Running AppWeb.Endpoint with Bandit 1.5 at 127.0.0.1:4000 (http)\n[info] GET /\n[info] Sent 200 in 1ms\n\"GET / HTTP/1.1\" 200 12\nno errors found\n0 errors\n",
            &[],
        ),
    ];

    #[test]
    fn recognises_the_table() {
        for (log, want) in CASES {
            let got: Vec<(String, String)> =
                scan(log).into_iter().map(|p| (p.kind, p.summary)).collect();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, s)| ((*k).to_owned(), (*s).to_owned()))
                .collect();
            assert_eq!(got, want, "for the log:\n{log}");
        }
    }

    #[test]
    fn detail_holds_the_trace() {
        let p = &scan(CASES[0].0)[0];
        assert!(p.detail.starts_with("Traceback"), "{}", p.detail);
        assert!(p.detail.contains("server.py\", line 9"), "{}", p.detail);
        assert_eq!(p.source, "service:web");
    }

    #[test]
    fn a_block_in_progress_is_pending_until_flushed() {
        let mut s = LogScanner::new("service:web");
        assert!(!s.has_pending());
        assert!(s.push("GET / 200\n").is_empty());
        assert!(!s.has_pending(), "a plain line leaves nothing to flush");
        s.push("Traceback (most recent call last):\n  File \"a.py\", line 1\n");
        assert!(s.has_pending());
        assert_eq!(s.flush().len(), 1);
        assert!(!s.has_pending());
    }

    #[test]
    fn a_block_in_two_chunks_is_one_problem() {
        let mut s = LogScanner::new("service:web");
        assert!(
            s.push("Traceback (most recent call last):\n  File \"a.py\", line 1\n")
                .is_empty()
        );
        let got = s.push("KeyError: 'x'\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].summary, "KeyError: 'x'");
    }

    #[test]
    fn endless_traces_and_lines_are_bounded() {
        let mut s = LogScanner::new("service:web");
        let mut text = String::from("Traceback (most recent call last):\n");
        for _ in 0..10_000 {
            text.push_str(&format!("  {}\n", "x".repeat(10_000)));
        }
        let mut got = s.push(&text);
        got.extend(s.flush());
        assert!(!got.is_empty());
        assert!(
            got.iter()
                .all(|p| p.detail.len() < crate::DETAIL_LIMIT + 64)
        );
    }
}
