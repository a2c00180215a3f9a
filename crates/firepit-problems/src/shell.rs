//! Recognising errors in a terminal's output (the shared shell), byte by
//! byte as it streams.
//!
//! A terminal is a log with escapes in it: colours, cursor moves, titles,
//! progress bars redrawn with `\r`. The scanner takes those out, hands whole
//! lines to a [`LogScanner`], and reads the shell's own marks (an OSC the
//! terminal ignores, `ESC ] <mark>run;<base64 of the command line> BEL`
//! before a command line runs and `ESC ] <mark>done;<status> BEL` after it)
//! to say which command a problem came from, and to report a command killed
//! by a crash signal (a segfault, an abort). Everything it reads is the
//! machine's text: every buffer is bounded, and marks that do not parse are
//! ignored.

use std::collections::VecDeque;

use base64::Engine;

use crate::{LogScanner, Problem, cut};

/// Longest line kept, in bytes.
const LINE_LIMIT: usize = 2000;
/// Longest escape sequence read, in bytes (a command line in a mark).
const ESCAPE_LIMIT: usize = 8192;
/// Lines of a command's output kept for a crash report.
const TAIL_LINES: usize = 20;
/// Longest command named in a problem.
const COMMAND_LIMIT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// After ESC.
    Escape,
    /// In a CSI (`ESC [`), up to its final byte.
    Csi,
    /// In an OSC (`ESC ]`), up to BEL or `ESC \`.
    Osc,
    /// ESC inside an OSC.
    OscEscape,
}

/// Reads one terminal's output and recognises errors in it.
#[derive(Debug)]
pub struct ShellScanner {
    logs: LogScanner,
    mark: String,
    state: State,
    line: Vec<u8>,
    /// A `\r` was the last byte of text.
    cr: bool,
    escape: Vec<u8>,
    /// The command line running now, as its mark named it.
    command: Option<String>,
    /// The last lines of its output.
    tail: VecDeque<String>,
}

impl ShellScanner {
    /// A scanner for the terminal of `source` (`shell:main`, say) whose
    /// shell marks its commands with the OSC prefix `mark` (`7788;`).
    pub fn new(source: impl Into<String>, mark: &str) -> ShellScanner {
        ShellScanner {
            logs: LogScanner::new(source),
            mark: mark.to_owned(),
            state: State::Text,
            line: Vec::new(),
            cr: false,
            escape: Vec::new(),
            command: None,
            tail: VecDeque::new(),
        }
    }

    /// Feeds terminal output, in chunks split anywhere. Returns the
    /// problems it completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Problem> {
        let mut out = Vec::new();
        for &b in bytes {
            match self.state {
                State::Text => {
                    // A line drawn again from its start (a progress bar):
                    // only its last version counts; `\r\n` ends it as usual.
                    if std::mem::take(&mut self.cr) && b != b'\n' && b != b'\r' {
                        self.line.clear();
                    }
                    match b {
                        0x1b => self.state = State::Escape,
                        b'\n' => out.extend(self.end_line()),
                        b'\r' => self.cr = true,
                        _ if self.line.len() < LINE_LIMIT => self.line.push(b),
                        _ => {}
                    }
                }
                State::Escape => {
                    self.state = match b {
                        b'[' => State::Csi,
                        b']' => {
                            self.escape.clear();
                            State::Osc
                        }
                        _ => State::Text,
                    }
                }
                State::Csi => {
                    if (0x40..=0x7e).contains(&b) {
                        self.state = State::Text;
                    }
                }
                State::Osc => match b {
                    0x07 => {
                        self.state = State::Text;
                        out.extend(self.osc());
                    }
                    0x1b => self.state = State::OscEscape,
                    _ if self.escape.len() < ESCAPE_LIMIT => self.escape.push(b),
                    _ => {}
                },
                State::OscEscape => {
                    self.state = State::Text;
                    if b == b'\\' {
                        out.extend(self.osc());
                    }
                }
            }
        }
        out
    }

    /// Emits the block in progress, if any (the terminal went quiet).
    pub fn flush(&mut self) -> Vec<Problem> {
        let found = self.logs.flush();
        self.attributed(found)
    }

    fn end_line(&mut self) -> Vec<Problem> {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if self.command.is_some() {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line.clone());
        }
        let found = self.logs.push_line(&line);
        self.attributed(found)
    }

    /// A complete OSC: the shell's marks, or something for the terminal.
    fn osc(&mut self) -> Vec<Problem> {
        let body = String::from_utf8_lossy(&self.escape).into_owned();
        self.escape.clear();
        let Some(mark) = body.strip_prefix(self.mark.as_str()) else {
            return Vec::new();
        };
        if let Some(b64) = mark.strip_prefix("run;") {
            // What was written before the command belongs to what ran before it.
            let out = self.flush();
            let line = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
                .filter(|l| !l.is_empty());
            self.command = line.map(|l| cut(&agent_command(&l), COMMAND_LIMIT));
            self.tail.clear();
            out
        } else if let Some(status) = mark.strip_prefix("done;") {
            let mut out = self.flush();
            if let (Some(cmd), Ok(status)) = (&self.command, status.trim().parse::<i32>())
                && let Some(signal) = crash_signal(status)
            {
                let tail: Vec<&str> = self.tail.iter().map(String::as_str).collect();
                out.push(Problem::new(
                    self.logs.source(),
                    "shell_crash",
                    &format!("`{cmd}` in the shell crashed ({signal})"),
                    &format!(
                        "`{cmd}` ended by {signal} (exit status {status}); its last output:\n{}",
                        tail.join("\n")
                    ),
                ));
            }
            self.command = None;
            self.tail.clear();
            out
        } else {
            Vec::new()
        }
    }

    /// Names the command the problems came from, where the shell said.
    fn attributed(&self, mut found: Vec<Problem>) -> Vec<Problem> {
        if let Some(cmd) = &self.command {
            for p in &mut found {
                *p = Problem::new(
                    p.source.clone(),
                    p.kind.clone(),
                    &format!("{} (from `{cmd}` in the shell)", p.summary),
                    &format!("in the shell, while `{cmd}` ran:\n{}", p.detail),
                );
            }
        }
        found
    }
}

/// The command of a line the agent's shell tool typed
/// (`printf '__FP_%s_<nonce>\n' START; { <command>\n}; printf …`, which
/// bash's history keeps as `{ <command>; }; printf …`), else the line.
fn agent_command(line: &str) -> String {
    if line.starts_with("printf '__FP_")
        && let Some(start) = line.find("; { ")
    {
        let rest = &line[start + 4..];
        let end = rest
            .rfind("; }; printf '")
            .or_else(|| rest.rfind("\n}"))
            .unwrap_or(rest.len());
        return rest[..end].trim().to_owned();
    }
    line.to_owned()
}

/// The crash signal an exit status reports, if it is one (a shell reports a
/// process killed by signal N as 128 + N). Interrupts and terminations the
/// person or a tool asked for are not crashes.
fn crash_signal(status: i32) -> Option<&'static str> {
    Some(match status.checked_sub(128)? {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        11 => "SIGSEGV",
        31 => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &str = "7788;";

    fn run(cmd: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("\t {cmd}\n"));
        format!("\x1b]7788;run;{b64}\x07").into_bytes()
    }

    fn done(status: i32) -> Vec<u8> {
        format!("\x1b]7788;done;{status}\x07").into_bytes()
    }

    const TRACE: &str = "Traceback (most recent call last):\r\n  File \"/root/app.py\", line 3, in <module>\r\n    1 / 0\r\nZeroDivisionError: division by zero\r\n";

    #[test]
    fn a_traceback_names_the_command_that_printed_it_whatever_the_chunks() {
        let mut all = Vec::new();
        all.extend(b"\x1b[?2004hroot@m:~# python3 app.py\r\n\x1b[?2004l\r");
        all.extend(run("python3 app.py"));
        all.extend(b"\x1b[31m");
        all.extend(TRACE.as_bytes());
        all.extend(done(1));
        all.extend(b"\x1b]0;title\x07root@m:~# ");
        // Every split of the stream gives the same answer.
        for size in [1, 2, 3, 7, 64, all.len()] {
            let mut s = ShellScanner::new("shell:main", MARK);
            let mut found = Vec::new();
            for chunk in all.chunks(size) {
                found.extend(s.push(chunk));
            }
            found.extend(s.flush());
            assert_eq!(found.len(), 1, "chunks of {size}: {found:?}");
            let p = &found[0];
            assert_eq!(p.source, "shell:main");
            assert_eq!(p.kind, "python_exception");
            assert_eq!(
                p.summary,
                "ZeroDivisionError: division by zero (from `python3 app.py` in the shell)"
            );
            assert!(
                p.detail
                    .starts_with("in the shell, while `python3 app.py` ran:\nTraceback"),
                "{}",
                p.detail
            );
            assert!(!p.detail.contains('\x1b'), "{}", p.detail);
        }
    }

    #[test]
    fn a_crash_signal_is_a_problem_and_a_plain_failure_is_not() {
        let mut s = ShellScanner::new("shell:main", MARK);
        let mut found = Vec::new();
        found.extend(s.push(&run("grep nothing file")));
        found.extend(s.push(&done(1)));
        found.extend(s.push(&run("./server")));
        found.extend(s.push(b"listening on 8000\r\nSegmentation fault (core dumped)\r\n"));
        found.extend(s.push(&done(139)));
        found.extend(s.push(&run("sleep 100")));
        found.extend(s.push(b"^C\r\n"));
        found.extend(s.push(&done(130)));
        found.extend(s.flush());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, "shell_crash");
        assert_eq!(
            found[0].summary,
            "`./server` in the shell crashed (SIGSEGV)"
        );
        assert!(found[0].detail.contains("listening on 8000"), "{found:?}");
    }

    #[test]
    fn the_agents_command_is_named_not_its_markers() {
        let line = "printf '__FP_%s_ab12\\n' START; { python3 -u server.py\n}; printf '\\n__FP_%s_ab12_%s\\n' DONE $?";
        assert_eq!(agent_command(line), "python3 -u server.py");
        // As bash's history keeps it.
        let kept = "printf '__FP_%s_ab12\\n' START; { cd /app && python3 -u server.py; }; printf '\\n__FP_%s_ab12_%s\\n' DONE $?";
        assert_eq!(agent_command(kept), "cd /app && python3 -u server.py");
        let mut s = ShellScanner::new("shell:main", MARK);
        let b64 = base64::engine::general_purpose::STANDARD.encode(line);
        let mut found = s.push(format!("\x1b]7788;run;{b64}\x07").as_bytes());
        found.extend(s.push(TRACE.as_bytes()));
        found.extend(s.flush());
        assert!(
            found[0]
                .summary
                .ends_with("(from `python3 -u server.py` in the shell)"),
            "{found:?}"
        );
    }

    #[test]
    fn hostile_output_is_bounded_and_bad_marks_are_ignored() {
        let mut s = ShellScanner::new("shell:main", MARK);
        // An endless OSC, an endless line, marks that do not decode.
        let mut found = s.push(b"\x1b]");
        found.extend(s.push(&vec![b'x'; 1 << 20]));
        found.extend(s.push(b"\x07"));
        found.extend(s.push(&vec![b'y'; 1 << 20]));
        found.extend(s.push(b"\r\n\x1b]7788;run;!!!\x07\x1b]7788;done;nope\x07"));
        found.extend(s.flush());
        assert!(found.is_empty(), "{found:?}");
        assert!(s.escape.capacity() <= 2 * ESCAPE_LIMIT);
        assert!(s.line.capacity() <= 2 * LINE_LIMIT);
        assert_eq!(s.command, None);
    }

    #[test]
    fn a_redrawn_line_counts_as_its_last_version() {
        let mut s = ShellScanner::new("shell:main", MARK);
        let mut found =
            s.push(b"Traceback (most recent call last):\r\n  File \"a.py\", line 1\r\n");
        found.extend(s.push(b"10%\r50%\rValueError: bad\r\n"));
        found.extend(s.flush());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].summary, "ValueError: bad");
    }

    #[test]
    fn output_without_marks_is_still_read() {
        let mut s = ShellScanner::new("shell:main", MARK);
        let mut found = s.push(TRACE.as_bytes());
        found.extend(s.flush());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].summary, "ZeroDivisionError: division by zero");
    }
}
