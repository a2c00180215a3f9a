//! exec: run a command in its own session, stream its output, report how it ended.
//!
//! The child leads a new session and process group, so `Kill`, the timeout and a
//! cancelled stream signal the whole group (the command and everything it started in
//! that group). Its exit status comes from the reaper ([`crate::process`]).
//!
//! Output is read from the pipes only while the stream's window is open, and at most as
//! much as the window still takes: when the client reads slowly the pipes fill and the
//! command blocks in `write`, so its output waits inside the machine, never in the
//! daemon. Stdin and control messages are read all the while.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use firepit_wire::guest::{
    DATA_CHUNK, ErrorKind, ExecRequest, ExitStatus, Request, Response, WireError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::conn::{Inbound, Stream};
use crate::process;

/// After the process exits, how long to keep reading output that descendants may still
/// hold pipes open for.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(100);

/// Builds a std command for `argv` with the guest's environment plus `env`.
pub fn command(
    argv: &[String],
    env: &[(String, String)],
    cwd: &str,
) -> Result<std::process::Command, WireError> {
    let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
        return Err(WireError::new(ErrorKind::InvalidInput, "empty command"));
    };
    if argv.iter().any(|a| a.contains('\0'))
        || env
            .iter()
            .any(|(k, v)| k.contains(['\0', '=']) || v.contains('\0'))
    {
        return Err(WireError::new(
            ErrorKind::InvalidInput,
            "argument or environment has a NUL byte",
        ));
    }
    let mut cmd = std::process::Command::new(program);
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd);
    Ok(cmd)
}

fn receiver(fd: Option<impl Into<OwnedFd>>) -> Option<pipe::Receiver> {
    let fd: OwnedFd = fd?.into();
    process::set_nonblocking(&fd).ok()?;
    pipe::Receiver::from_owned_fd_unchecked(fd).ok()
}

async fn read_opt(
    r: &mut Option<pipe::Receiver>,
    buf: &mut BytesMut,
    max: usize,
) -> std::io::Result<usize> {
    match r {
        Some(r) => read_limited(r, buf, max).await,
        None => std::future::pending().await,
    }
}

/// Reads into `buf` after making room.
pub async fn read_into<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    read_limited(r, buf, DATA_CHUNK).await
}

/// Reads at most `max` bytes into `buf`.
pub async fn read_limited<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> std::io::Result<usize> {
    let max = max.max(1);
    buf.reserve(max);
    r.read_buf(&mut (&mut *buf).limit(max)).await
}

/// Runs the exec request on `s`.
pub async fn run(req: ExecRequest, s: &mut Stream) -> Result<Response, WireError> {
    let argv = req.command.to_argv();
    let cwd = process::resolve_cwd(req.cwd.as_deref())?;
    let mut cmd = command(&argv, &req.env, &cwd)?;
    cmd.stdin(if req.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut spawned =
        process::spawn(&mut cmd, false).map_err(|e| process::spawn_error(&argv[0], &e))?;
    let pid = spawned.pid;
    let mut stdout = receiver(spawned.child.stdout.take());
    let mut stderr = receiver(spawned.child.stderr.take());

    // stdin is written by a task of its own, so a child that does not read its input
    // cannot stop us from reading its output.
    let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<Bytes>();
    let mut stdin_tx = Some(stdin_tx);
    if let Some(stdin) = spawned.child.stdin.take() {
        let fd: OwnedFd = stdin.into();
        if process::set_nonblocking(&fd).is_ok()
            && let Ok(mut w) = pipe::Sender::from_owned_fd_unchecked(fd)
        {
            tokio::spawn(async move {
                while let Some(b) = stdin_rx.recv().await {
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                }
            });
        }
    } else {
        stdin_tx = None;
    }

    if !s.send(&Response::Started { pid: pid as u32 }).await {
        process::kill_group(pid, libc::SIGKILL);
    }

    let deadline = req
        .timeout_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let mut timed_out = false;
    let mut status: Option<ExitStatus> = None;
    // After the exit: how long output is still read (time spent waiting for credit does
    // not count), and until when, while it is being read.
    let mut drain_left = DRAIN_AFTER_EXIT;
    let mut drain_until: Option<Instant> = None;
    let mut client_gone = false;
    let mut out_buf = BytesMut::new();
    let mut err_buf = BytesMut::new();
    let mut exit = spawned.exit;
    let credit = s.credit();

    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        // Output is read while the window is open, at most what it still takes; once
        // nobody reads the stream it is read and dropped, so the process can end.
        let readable = client_gone || credit.open() || credit.is_closed();
        let max = if client_gone {
            DATA_CHUNK
        } else {
            usize::try_from(credit.available())
                .unwrap_or(0)
                .clamp(1, DATA_CHUNK)
        };
        if status.is_some() {
            match (readable, drain_until) {
                (true, None) => drain_until = Some(Instant::now() + drain_left),
                (false, Some(at)) => {
                    drain_left = at.saturating_duration_since(Instant::now());
                    drain_until = None;
                }
                _ => {}
            }
        }
        tokio::select! {
            r = read_opt(&mut stdout, &mut out_buf, max), if readable => match r {
                Ok(n) if n > 0 => {
                    let b = out_buf.split().freeze();
                    if !client_gone && !s.data(b).await { client_gone = true; process::kill_group(pid, libc::SIGKILL); }
                }
                _ => stdout = None,
            },
            r = read_opt(&mut stderr, &mut err_buf, max), if readable => match r {
                Ok(n) if n > 0 => {
                    let b = err_buf.split().freeze();
                    if !client_gone && !s.stderr(b).await { client_gone = true; process::kill_group(pid, libc::SIGKILL); }
                }
                _ => stderr = None,
            },
            _ = credit.changed(), if !readable => {}
            msg = s.rx.recv(), if !client_gone => match msg {
                Some(Inbound::Data(b)) => {
                    if let Some(tx) = &stdin_tx { let _ = tx.send(b); }
                }
                Some(Inbound::Control(Request::StdinClose)) => stdin_tx = None,
                Some(Inbound::Control(Request::Kill { signal })) => process::kill_group(pid, signal),
                Some(Inbound::Control(_)) | None => {
                    // Cancelled, or the client is gone: nobody wants the result.
                    client_gone = true;
                    stdin_tx = None;
                    process::kill_group(pid, libc::SIGKILL);
                }
            },
            st = &mut exit, if status.is_none() => {
                status = Some(st.unwrap_or(ExitStatus { code: None, signal: None, timed_out: false }));
            }
            _ = sleep_until(deadline), if !timed_out && status.is_none() => {
                timed_out = true;
                process::kill_group(pid, libc::SIGKILL);
            }
            _ = sleep_until(drain_until), if drain_until.is_some() => {
                break;
            }
        }
    }
    let mut status = status.unwrap_or(ExitStatus {
        code: None,
        signal: None,
        timed_out: false,
    });
    status.timed_out = timed_out;
    if timed_out {
        // The timeout kills the whole group, stragglers included.
        process::kill_group(pid, libc::SIGKILL);
    }
    Ok(Response::Exit(status))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
