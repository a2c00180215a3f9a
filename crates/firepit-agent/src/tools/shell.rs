//! `shell`, `shell_read`, `shell_input`: commands typed into the shared `main` PTY, so
//! the person watching sees them run.
//!
//! A command is typed as
//! `printf '__FP_%s_<nonce>\n' START; { <command>\n}; printf '\n__FP_%s_<nonce>_%s\n' DONE $?`.
//! The echo of that line never contains `__FP_START_<nonce>` or `__FP_DONE_<nonce>_`
//! (the words come from `%s`), so the output is what lies between the two markers and
//! the number after the second is the exit status. A reader task keeps appending the
//! PTY's output to a buffer; a command that has not printed its end marker after the
//! wait (a server, a prompt) is reported as still running, and `shell_read` /
//! `shell_input` go on with it.
//!
//! One attachment both reads and types (the reader task owns the [`Pty`], the tools type
//! through its [`PtyInput`]): an attachment nobody reads would fall behind the shell's
//! output and be detached by the guest. The buffer keeps the last [`BUFFER_CAP`] bytes.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use firepit_guest_client::{ErrorKind, Pty, PtyCreate, PtyEvent, PtyInput};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;

use super::{ToolContext, quote};
use crate::message::ToolDef;

/// Output kept in the buffer; older bytes are dropped.
const BUFFER_CAP: usize = 4 << 20;

#[derive(Default)]
struct Buffer {
    /// Bytes dropped from the front.
    base: usize,
    data: Vec<u8>,
    /// Why the attachment ended, once it has.
    closed: Option<String>,
}

impl Buffer {
    fn end(&self) -> usize {
        self.base + self.data.len()
    }

    fn from(&self, pos: usize) -> &[u8] {
        &self.data[pos.saturating_sub(self.base).min(self.data.len())..]
    }
}

struct Shared {
    buf: StdMutex<Buffer>,
    notify: Notify,
}

struct Running {
    nonce: String,
    command: String,
    /// Where the command's output begins (absolute), once its start marker was seen.
    start: Option<usize>,
    /// Where the typed line was written (absolute).
    written: usize,
    /// How far the agent has read (absolute).
    read: usize,
}

/// The agent's attachment to the shared shell.
#[derive(Default)]
pub(super) struct Shell {
    writer: Option<PtyInput>,
    shared: Option<Arc<Shared>>,
    reader: Option<tokio::task::JoinHandle<()>>,
    running: Option<Running>,
    /// Attached anew: the next command first changes to the working directory.
    fresh: bool,
}

impl Drop for Shell {
    fn drop(&mut self) {
        if let Some(r) = &self.reader {
            r.abort();
        }
    }
}

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "shell",
        description: "Type a command into the shared terminal the person watches (bash; cwd and environment persist between calls) and return its output and exit status. Waits up to wait_secs (default 30); a command still running then (a server, a prompt) keeps running: use shell_read for more output and shell_input to answer or interrupt it. Prefer service_start for servers and exec for long quiet jobs.",
        schema: json!({"type": "object", "properties": {
            "command": {"type": "string"},
            "wait_secs": {"type": "integer", "minimum": 1, "maximum": 600}
        }, "required": ["command"]}),
    }
}

pub(super) fn def_read() -> ToolDef {
    ToolDef {
        name: "shell_read",
        description: "Wait up to wait_secs (default 5) for more output of the command still running in the shared terminal, and return the output since the last read.",
        schema: json!({"type": "object", "properties": {
            "wait_secs": {"type": "integer", "minimum": 0, "maximum": 600}
        }}),
    }
}

pub(super) fn def_input() -> ToolDef {
    ToolDef {
        name: "shell_input",
        description: "Send input to the command running in the shared terminal: text (followed by Enter unless enter is false), or ctrl_c to interrupt it. Returns the output that follows within a few seconds.",
        schema: json!({"type": "object", "properties": {
            "text": {"type": "string"},
            "enter": {"type": "boolean"},
            "ctrl_c": {"type": "boolean"}
        }}),
    }
}

#[derive(Deserialize)]
pub(super) struct RunArgs {
    command: String,
    wait_secs: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct ReadArgs {
    wait_secs: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct InputArgs {
    text: Option<String>,
    enter: Option<bool>,
    #[serde(default)]
    ctrl_c: bool,
}

/// Removes terminal escape sequences, turns `\r\n` into `\n` and keeps, of a line
/// rewritten with `\r` (progress bars), its last version.
pub fn clean_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut line = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek() {
                Some('[') => {
                    chars.next();
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if ('@'..='~').contains(&n) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ESC \.
                    while let Some(n) = chars.next() {
                        if n == '\u{7}' || (n == '\u{1b}' && chars.peek() == Some(&'\\')) {
                            if n == '\u{1b}' {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                _ => {
                    chars.next();
                }
            },
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    continue;
                }
                if chars.peek().is_some() {
                    line.clear();
                }
            }
            '\n' => {
                out.push_str(&line);
                out.push('\n');
                line.clear();
            }
            '\u{8}' => {
                line.pop();
            }
            c if c.is_control() && c != '\t' => {}
            c => line.push(c),
        }
    }
    out.push_str(&line);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What the buffer says about the running command.
enum Seen {
    /// Output so far (from `read`), still running.
    Running(String, usize),
    /// Output (from `read`) and the exit status.
    Done(String, i32),
}

fn scan(buf: &Buffer, r: &mut Running) -> Seen {
    if r.start.is_none() {
        let marker = format!("__FP_START_{}", r.nonce);
        let hay = buf.from(r.written);
        if let Some(i) = find(hay, marker.as_bytes()) {
            let mut s = r.written.max(buf.base) + i + marker.len();
            let rest = buf.from(s);
            if rest.starts_with(b"\r\n") {
                s += 2;
            } else if rest.starts_with(b"\n") {
                s += 1;
            }
            r.start = Some(s);
            r.read = r.read.max(s);
        } else {
            return Seen::Running(String::new(), r.read);
        }
    }
    let from = r.read.max(buf.base);
    let hay = buf.from(from);
    let marker = format!("__FP_DONE_{}_", r.nonce);
    if let Some(i) = find(hay, marker.as_bytes()) {
        let after = &hay[i + marker.len()..];
        let digits: Vec<u8> = after
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        if !digits.is_empty() && after.len() > digits.len() {
            let code = String::from_utf8_lossy(&digits).parse().unwrap_or(-1);
            let mut out = &hay[..i];
            // The newline printed before the marker.
            if out.ends_with(b"\r\n") {
                out = &out[..out.len() - 2];
            } else if out.ends_with(b"\n") {
                out = &out[..out.len() - 1];
            }
            return Seen::Done(String::from_utf8_lossy(out).into_owned(), code);
        }
        // The marker is not complete yet: hand out what precedes it.
        return Seen::Running(String::from_utf8_lossy(&hay[..i]).into_owned(), from + i);
    }
    // Keep back a possible partial marker at the end.
    let keep = hay.len().saturating_sub(marker.len() + 12);
    Seen::Running(
        String::from_utf8_lossy(&hay[..keep]).into_owned(),
        from + keep,
    )
}

async fn attach(ctx: &ToolContext, sh: &mut Shell) -> Result<(), String> {
    if sh.writer.is_some()
        && sh
            .shared
            .as_ref()
            .is_some_and(|s| s.buf.lock().unwrap().closed.is_none())
    {
        return Ok(());
    }
    if let Some(r) = sh.reader.take() {
        r.abort();
    }
    sh.running = None;
    let create = PtyCreate {
        cwd: Some(ctx.workdir.clone()),
        cols: Some(200),
        ..Default::default()
    };
    let mut reader: Pty = ctx
        .guest
        .pty_attach("main", Some(create))
        .await
        .map_err(|e| format!("attaching to the shared terminal: {e}"))?;
    let writer = reader.input_half();
    let shared = Arc::new(Shared {
        buf: StdMutex::new(Buffer::default()),
        notify: Notify::new(),
    });
    let s2 = shared.clone();
    sh.reader = Some(tokio::spawn(async move {
        loop {
            match reader.next_event().await {
                Ok(Some(PtyEvent::Output(b))) => {
                    let mut buf = s2.buf.lock().unwrap();
                    buf.data.extend_from_slice(&b);
                    if buf.data.len() > BUFFER_CAP {
                        let drop = buf.data.len() - BUFFER_CAP / 2;
                        buf.data.drain(..drop);
                        buf.base += drop;
                    }
                }
                end => {
                    let why = match end {
                        Err(e) if e.kind() == ErrorKind::Overrun => {
                            "the shell printed faster than it could be followed, so this view of it was detached; the command may still run (shell_input with ctrl_c stops it)".to_owned()
                        }
                        Err(e) => format!("the shell ended ({e})"),
                        _ => "the shell ended".to_owned(),
                    };
                    s2.buf.lock().unwrap().closed = Some(why);
                    s2.notify.notify_waiters();
                    return;
                }
            }
            s2.notify.notify_waiters();
        }
    }));
    sh.writer = Some(writer);
    sh.shared = Some(shared);
    sh.fresh = true;
    // Let the scrollback arrive, and start in the working directory.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// Waits up to `wait` for the running command to end; returns the new output and the
/// exit status if it ended.
async fn collect(sh: &mut Shell, wait: Duration) -> Result<(String, Option<i32>), String> {
    let shared = sh.shared.clone().ok_or("not attached to the shell")?;
    let r = sh
        .running
        .as_mut()
        .ok_or("no command is running in the shell")?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notified = shared.notify.notified();
        let (seen, closed) = {
            let buf = shared.buf.lock().unwrap();
            (scan(&buf, r), buf.closed.clone())
        };
        match seen {
            Seen::Done(out, code) => {
                sh.running = None;
                return Ok((clean_terminal(&out), Some(code)));
            }
            Seen::Running(out, upto) => {
                if closed.is_some() || tokio::time::Instant::now() >= deadline {
                    r.read = upto;
                    if let Some(why) = closed {
                        sh.running = None;
                        return Err(format!("{why}; output:\n{}", clean_terminal(&out)));
                    }
                    return Ok((clean_terminal(&out), None));
                }
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

fn report(command: &str, out: String, code: Option<i32>, waited: Duration) -> String {
    match code {
        Some(c) => format!("exit status {c}\n{out}"),
        None => format!(
            "{out}\n[`{command}` is still running after {}s (a server, or waiting for input). Use shell_read to see more, shell_input to type or send ctrl_c; run servers with service_start.]",
            waited.as_secs()
        ),
    }
}

pub(super) async fn run(ctx: &ToolContext, a: RunArgs) -> Result<String, String> {
    let mut sh = ctx.shell.lock().await;
    attach(ctx, &mut sh).await?;
    if sh.running.is_some() {
        let (_, code) = collect(&mut sh, Duration::ZERO).await?;
        if code.is_none()
            && let Some(r) = &sh.running
        {
            return Err(format!(
                "the previous command `{}` is still running in the shell; use shell_read to see its output, shell_input with ctrl_c to stop it, or use exec / service_start",
                r.command
            ));
        }
    }
    let nonce = format!("{:016x}", rand::random::<u64>());
    let cd = if std::mem::take(&mut sh.fresh) {
        format!("cd {} 2>/dev/null; ", quote(&ctx.workdir))
    } else {
        String::new()
    };
    let line = format!(
        "{cd}printf '__FP_%s_{nonce}\\n' START; {{ {}\n}}; printf '\\n__FP_%s_{nonce}_%s\\n' DONE $?\n",
        a.command
    );
    let written = sh
        .shared
        .as_ref()
        .map(|s| s.buf.lock().unwrap().end())
        .unwrap_or(0);
    sh.running = Some(Running {
        nonce,
        command: a.command.clone(),
        start: None,
        written,
        read: written,
    });
    let w = sh.writer.as_ref().ok_or("not attached")?;
    w.input(Bytes::from(line))
        .await
        .map_err(|e| format!("typing into the shell: {e}"))?;
    let wait = a
        .wait_secs
        .map(Duration::from_secs)
        .unwrap_or(ctx.shell_wait);
    let (out, code) = collect(&mut sh, wait).await?;
    Ok(report(&a.command, out, code, wait))
}

pub(super) async fn read(ctx: &ToolContext, a: ReadArgs) -> Result<String, String> {
    let mut sh = ctx.shell.lock().await;
    let Some(command) = sh.running.as_ref().map(|r| r.command.clone()) else {
        return Ok("no command of yours is running in the shell".into());
    };
    let wait = Duration::from_secs(a.wait_secs.unwrap_or(5));
    let (out, code) = collect(&mut sh, wait).await?;
    Ok(report(&command, out, code, wait))
}

pub(super) async fn input(ctx: &ToolContext, a: InputArgs) -> Result<String, String> {
    let mut sh = ctx.shell.lock().await;
    attach(ctx, &mut sh).await?;
    let mut data = String::new();
    if a.ctrl_c {
        data.push('\u{3}');
    }
    if let Some(t) = &a.text {
        data.push_str(t);
        if a.enter.unwrap_or(true) {
            data.push('\n');
        }
    }
    if data.is_empty() {
        return Err("give text to type, or ctrl_c: true".into());
    }
    let w = sh.writer.as_ref().ok_or("not attached")?;
    w.input(Bytes::from(data))
        .await
        .map_err(|e| format!("typing into the shell: {e}"))?;
    let Some(command) = sh.running.as_ref().map(|r| r.command.clone()) else {
        return Ok("sent (no command of yours was running)".into());
    };
    let wait = Duration::from_secs(3);
    let (out, code) = collect(&mut sh, wait).await?;
    Ok(report(&command, out, code, wait))
}

/// Sends Ctrl-C to the agent's running command, if any.
pub(super) async fn interrupt(ctx: &ToolContext) {
    let Ok(mut sh) = ctx.shell.try_lock() else {
        // A shell tool holds it; it is being cancelled and the command may still run.
        return;
    };
    if sh.running.take().is_some()
        && let Some(w) = &sh.writer
    {
        let _ = w.input(Bytes::from_static(b"\x03")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_escapes_and_carriage_returns() {
        assert_eq!(
            clean_terminal("\u{1b}[1;32mok\u{1b}[0m\r\nnext"),
            "ok\nnext"
        );
        assert_eq!(clean_terminal("10%\r50%\r100%\n"), "100%\n");
        assert_eq!(clean_terminal("\u{1b}]0;title\u{7}$ ls\r\n"), "$ ls\n");
    }

    #[test]
    fn scans_markers_not_the_echo() {
        let nonce = "abc";
        let echo = "printf '__FP_%s_abc\\n' START; { python3 hello.py\r\n> }; printf '\\n__FP_%s_abc_%s\\n' DONE $?\r\n";
        let mut buf = Buffer::default();
        let mut r = Running {
            nonce: nonce.into(),
            command: "x".into(),
            start: None,
            written: 0,
            read: 0,
        };
        buf.data.extend_from_slice(echo.as_bytes());
        assert!(matches!(scan(&buf, &mut r), Seen::Running(ref s, _) if s.is_empty()));
        buf.data
            .extend_from_slice(b"__FP_START_abc\r\nhello\r\n\r\n__FP_DONE_ab");
        // A possible partial marker is held back.
        match scan(&buf, &mut r) {
            Seen::Running(s, upto) => {
                assert_eq!(s, "");
                r.read = upto;
            }
            _ => panic!(),
        }
        buf.data.extend_from_slice(b"c_3\r\n$ ");
        match scan(&buf, &mut r) {
            Seen::Done(s, code) => assert_eq!((s.as_str(), code), ("hello\r\n", 3)),
            _ => panic!(),
        }
    }
}
