//! envd's `process.Process` service over the guest's exec and ptys.
//!
//! Each process started here is kept in a table per sandbox (by pid, the
//! process's pid in the machine) until it ends, so a client can reconnect
//! (`Connect`), list, type into, resize and signal it. One task per process
//! (its *pump*) owns the guest's handle and passes each output chunk to every
//! stream attached to it, waiting for each: an attached client that reads
//! slowly slows the process down (the guest stops reading its pipes), so no
//! output piles up in the daemon. With nothing attached, output is dropped,
//! as envd does. A pty's output does not wait (the guest's ptys never do):
//! an attachment that falls far behind ends with `aborted`.
//!
//! A process started as `user` (`Authorization: Basic`, see
//! [`crate::users`]) runs through the guest's `--run-as user`, in the
//! account's home unless the call names a directory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use firepit_guest_client::{
    ExecControl, ExecEvent, ExecRequest, GuestClient, PtyCreate, PtyEvent, PtyInput,
};
use firepit_wire::guest::{Command, ExitStatus};
use tokio::sync::mpsc;

use crate::connect::{self, Code, Item, StreamOptions};
use crate::proto::{
    DataEvent, EndEvent, ListResponse, ProcessConfig, ProcessEvent, ProcessEventMessage,
    ProcessInfo, ProcessSelector, SelectRequest, SendInputRequest, SendSignalRequest, Signal,
    StartRequest, StreamInputRequest, UpdateRequest,
};
use crate::users::Who;
use crate::{E2b, Error, Sandbox, abs_path, acting_as, home_of, sandbox_of};

/// Most processes one sandbox keeps through envd at once.
const MAX_PROCESSES: usize = 4096;
/// Messages a stream holds before its process waits for the client.
const STREAM_QUEUE: usize = 16;

/// How a process is driven besides its output.
enum Control {
    Exec(ExecControl),
    Pty {
        name: String,
        input: PtyInput,
        guest: GuestClient,
    },
}

/// A process started through envd.
pub struct Proc {
    pid: u32,
    tag: Option<String>,
    config: ProcessConfig,
    stdin: bool,
    control: Control,
    subs: Mutex<Vec<mpsc::Sender<Item>>>,
}

/// The processes of every sandbox.
#[derive(Default)]
pub struct Processes {
    map: Mutex<HashMap<String, HashMap<u32, Arc<Proc>>>>,
}

impl Processes {
    fn insert(&self, sandbox: &str, p: Arc<Proc>) -> Result<(), Error> {
        let mut map = self.map.lock().expect("processes");
        let procs = map.entry(sandbox.to_owned()).or_default();
        if procs.len() >= MAX_PROCESSES {
            return Err(Error::Relayed {
                code: Code::ResourceExhausted,
                message: format!(
                    "sandbox {sandbox} already runs {MAX_PROCESSES} processes through envd"
                ),
            });
        }
        procs.insert(p.pid, p);
        Ok(())
    }

    fn remove(&self, sandbox: &str, pid: u32) {
        let mut map = self.map.lock().expect("processes");
        if let Some(procs) = map.get_mut(sandbox) {
            procs.remove(&pid);
            if procs.is_empty() {
                map.remove(sandbox);
            }
        }
    }

    fn list(&self, sandbox: &str) -> Vec<Arc<Proc>> {
        let map = self.map.lock().expect("processes");
        let mut v: Vec<_> = map
            .get(sandbox)
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|p| p.pid);
        v
    }

    fn find(&self, sandbox: &str, sel: Option<&ProcessSelector>) -> Result<Arc<Proc>, Error> {
        let sel =
            sel.ok_or_else(|| Error::BadRequest("name the process: a pid or a tag".into()))?;
        let map = self.map.lock().expect("processes");
        let procs = map.get(sandbox);
        let found = match (sel.pid, &sel.tag) {
            (Some(pid), _) => procs.and_then(|p| p.get(&pid)).cloned(),
            (None, Some(tag)) => procs.and_then(|p| {
                p.values()
                    .find(|proc| proc.tag.as_deref() == Some(tag.as_str()))
                    .cloned()
            }),
            (None, None) => {
                return Err(Error::BadRequest("name the process: a pid or a tag".into()));
            }
        };
        found.ok_or_else(|| {
            Error::Missing(match (sel.pid, &sel.tag) {
                (Some(pid), _) => format!("process with pid {pid} not found"),
                (_, tag) => format!("process with tag {tag:?} not found"),
            })
        })
    }

    /// Forgets a sandbox's processes (it stopped; their pumps end with its guest).
    pub fn forget(&self, sandbox: &str) {
        self.map.lock().expect("processes").remove(sandbox);
    }
}

impl Proc {
    /// Passes one item to every attached stream, waiting for each; streams
    /// whose client went away are dropped.
    async fn fanout(&self, item: impl Fn() -> Item) {
        let subs: Vec<_> = self.subs.lock().expect("subs").clone();
        let mut gone = Vec::new();
        for tx in &subs {
            if tx.send(item()).await.is_err() {
                gone.push(tx.clone());
            }
        }
        if !gone.is_empty() {
            self.subs
                .lock()
                .expect("subs")
                .retain(|t| !gone.iter().any(|g| g.same_channel(t)));
        }
    }

    fn info(&self) -> ProcessInfo {
        ProcessInfo {
            config: self.config.clone(),
            pid: self.pid,
            tag: self.tag.clone(),
        }
    }
}

fn event(e: ProcessEvent) -> Bytes {
    connect::message(&ProcessEventMessage { event: e })
}

/// The end event of an exit status, as envd words it.
fn end_event(st: &ExitStatus) -> EndEvent {
    match (st.code, st.signal) {
        (Some(code), _) => EndEvent {
            exit_code: code,
            exited: true,
            status: format!("exit status {code}"),
            error: None,
        },
        (None, Some(sig)) => EndEvent {
            exit_code: -1,
            exited: false,
            status: format!(
                "signal: {}",
                match sig {
                    9 => "killed".to_owned(),
                    15 => "terminated".to_owned(),
                    2 => "interrupt".to_owned(),
                    1 => "hangup".to_owned(),
                    n => format!("signal {n}"),
                }
            ),
            error: None,
        },
        (None, None) => EndEvent {
            exit_code: -1,
            exited: false,
            status: "unknown".to_owned(),
            error: Some("the process ended without a status".into()),
        },
    }
}

fn stream_opts(headers: &HeaderMap) -> StreamOptions {
    StreamOptions {
        keepalive: connect::keepalive(headers)
            .map(|every| (every, event(ProcessEvent::Keepalive {}))),
        deadline: connect::deadline(headers),
    }
}

/// Why a pump ended, as each attached stream is told.
fn relay(sandbox: &str, e: &firepit_guest_client::Error) -> (Code, String) {
    let err = Error::Guest(clone_guest_error(e));
    match err.code() {
        Code::Unavailable => (
            Code::Unavailable,
            Error::NotRunning(sandbox.to_owned()).message(),
        ),
        code => (code, err.message()),
    }
}

fn clone_guest_error(e: &firepit_guest_client::Error) -> firepit_guest_client::Error {
    use firepit_guest_client::Error as G;
    match e {
        G::Guest(w) => G::Guest(w.clone()),
        G::Closed => G::Closed,
        other => G::Protocol(other.to_string()),
    }
}

/// `POST /process.Process/{method}`.
pub async fn call(State(e2b): State<E2b>, Path(method): Path<String>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let streaming = matches!(method.as_str(), "Start" | "Connect");
    let sandbox = match sandbox_of(&headers, &e2b) {
        Ok(s) => s,
        Err(e) if streaming => return connect::stream_error(&e),
        Err(e) => return connect::unary_error(&e),
    };
    if method == "StreamInput" {
        return match stream_input(&e2b, &sandbox, &headers, body).await {
            Ok(()) => client_stream_answer(Ok(())),
            Err(e) => client_stream_answer(Err(&e)),
        };
    }
    let bytes = match axum::body::to_bytes(body, connect::MAX_MESSAGE).await {
        Ok(b) => b,
        Err(_) => {
            let e = Error::BadRequest("the request is larger than the message limit".into());
            return if streaming {
                connect::stream_error(&e)
            } else {
                connect::unary_error(&e)
            };
        }
    };
    match method.as_str() {
        "Start" => match start(&e2b, &sandbox, &headers, &bytes).await {
            Ok(r) => r,
            Err(e) => connect::stream_error(&e),
        },
        "Connect" => match attach(&e2b, &sandbox, &headers, &bytes).await {
            Ok(r) => r,
            Err(e) => connect::stream_error(&e),
        },
        "List" => connect::unary(Ok::<_, Error>(ListResponse {
            processes: e2b
                .procs()
                .list(&sandbox.id)
                .iter()
                .map(|p| p.info())
                .collect(),
        })),
        "SendInput" => connect::unary(send_input(&e2b, &sandbox, &headers, &bytes).await),
        "SendSignal" => connect::unary(send_signal(&e2b, &sandbox, &headers, &bytes).await),
        "Update" => connect::unary(update(&e2b, &sandbox, &headers, &bytes).await),
        "CloseStdin" => connect::unary(close_stdin(&e2b, &sandbox, &headers, &bytes).await),
        _ => connect::unary_error(&Error::Relayed {
            code: Code::Unimplemented,
            message: format!("process.Process/{method} is not a method firepit serves"),
        }),
    }
}

fn client_stream_answer(r: Result<(), &Error>) -> Response {
    let mut body = Vec::new();
    if r.is_ok() {
        body.extend_from_slice(&connect::envelope(0, b"{}"));
    }
    body.extend_from_slice(&connect::end_envelope(r));
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(connect::STREAM_JSON),
    );
    resp
}

async fn start(
    e2b: &E2b,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, Error> {
    let req: StartRequest = connect::stream_request(headers, bytes)?;
    let config = req
        .process
        .ok_or_else(|| Error::BadRequest("the request names no process".into()))?;
    if config.cmd.is_empty() {
        return Err(Error::BadRequest("the process has no cmd".into()));
    }
    let who = Who::of_headers(headers)?;
    let guest = sandbox.guest(e2b).await?;
    let account = acting_as(e2b, sandbox, &guest, who).await?;
    let mut envs = sandbox.kept.envs.clone();
    envs.extend(config.envs.clone());
    // The account's USER, LOGNAME and HOME first: the sandbox's and the
    // call's own variables come after them, so they win.
    let mut env: Vec<(String, String)> = account.as_ref().map(|a| a.env()).unwrap_or_default();
    env.extend(envs);
    let home = home_of(account.as_ref());
    let cwd = match config.cwd.as_deref() {
        Some(c) => Some(abs_path(c, home)?),
        None => account.as_ref().map(|a| a.home.clone()),
    };
    let mut argv = vec![config.cmd.clone()];
    argv.extend(config.args.iter().cloned());
    if let Some(a) = &account {
        argv = a.wrap(argv);
    }
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let opts = stream_opts(headers);
    if let Some(pty) = req.pty {
        let size = pty.size.unwrap_or_default();
        let name = pty_name();
        let create = PtyCreate {
            argv: Some(argv),
            cols: (size.cols > 0).then(|| size.cols.min(u32::from(u16::MAX)) as u16),
            rows: (size.rows > 0).then(|| size.rows.min(u32::from(u16::MAX)) as u16),
            env,
            cwd,
        };
        let pty = guest.pty_attach(&name, Some(create)).await?;
        let pid = pty.info().pid;
        let proc = Arc::new(Proc {
            pid,
            tag: req.tag,
            config,
            stdin: true,
            control: Control::Pty {
                name,
                input: pty.input_half(),
                guest,
            },
            subs: Mutex::new(vec![tx.clone()]),
        });
        let _ = tx
            .send(Item::Message(event(ProcessEvent::Start { pid })))
            .await;
        if let Err(e) = e2b.procs().insert(&sandbox.id, proc.clone()) {
            if let Control::Pty { name, guest, .. } = &proc.control {
                let _ = guest.pty_close(name).await;
            }
            return Err(e);
        }
        tokio::spawn(pump_pty(e2b.clone(), sandbox.id.clone(), proc, pty));
    } else {
        let stdin = req.stdin.unwrap_or(false);
        let exec = guest
            .exec(ExecRequest {
                command: Command::Argv(argv),
                env,
                cwd,
                stdin,
                timeout_ms: None,
            })
            .await?;
        let pid = exec.pid();
        let proc = Arc::new(Proc {
            pid,
            tag: req.tag,
            config,
            stdin,
            control: Control::Exec(exec.control()),
            subs: Mutex::new(vec![tx.clone()]),
        });
        let _ = tx
            .send(Item::Message(event(ProcessEvent::Start { pid })))
            .await;
        // On refusal the exec is dropped here, which kills it.
        e2b.procs().insert(&sandbox.id, proc.clone())?;
        tokio::spawn(pump_exec(e2b.clone(), sandbox.id.clone(), proc, exec));
    }
    Ok(connect::stream_response(rx, opts))
}

fn pty_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("e2b-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn finish(e2b: &E2b, sandbox: &str, proc: &Proc, end: Result<ExitStatus, (Code, String)>) {
    e2b.procs().remove(sandbox, proc.pid);
    match end {
        Ok(st) => {
            let msg = event(ProcessEvent::End(end_event(&st)));
            proc.fanout(|| Item::Message(msg.clone())).await;
            proc.fanout(|| Item::End(Ok(()))).await;
        }
        Err((code, message)) => {
            proc.fanout(|| {
                Item::End(Err(Error::Relayed {
                    code,
                    message: message.clone(),
                }))
            })
            .await;
        }
    }
}

async fn pump_exec(
    e2b: E2b,
    sandbox: String,
    proc: Arc<Proc>,
    mut exec: firepit_guest_client::Exec,
) {
    let end = loop {
        match exec.next_event().await {
            Ok(Some(ExecEvent::Stdout(b))) => {
                let m = event(ProcessEvent::Data(DataEvent::Stdout(b)));
                proc.fanout(|| Item::Message(m.clone())).await;
            }
            Ok(Some(ExecEvent::Stderr(b))) => {
                let m = event(ProcessEvent::Data(DataEvent::Stderr(b)));
                proc.fanout(|| Item::Message(m.clone())).await;
            }
            Ok(Some(ExecEvent::Exit(st))) => break Ok(st),
            Ok(None) => {
                break Err((
                    Code::Internal,
                    "the process ended without a status".to_owned(),
                ));
            }
            Err(e) => break Err(relay(&sandbox, &e)),
        }
    };
    finish(&e2b, &sandbox, &proc, end).await;
}

async fn pump_pty(e2b: E2b, sandbox: String, proc: Arc<Proc>, mut pty: firepit_guest_client::Pty) {
    let end = loop {
        match pty.next_event().await {
            Ok(Some(PtyEvent::Output(b))) => {
                let m = event(ProcessEvent::Data(DataEvent::Pty(b)));
                proc.fanout(|| Item::Message(m.clone())).await;
            }
            Ok(Some(PtyEvent::Exit(st))) => break Ok(st),
            Ok(None) => {
                break Err((
                    Code::Internal,
                    "the terminal ended without a status".to_owned(),
                ));
            }
            Err(e) => break Err(relay(&sandbox, &e)),
        }
    };
    finish(&e2b, &sandbox, &proc, end).await;
}

async fn attach(
    e2b: &E2b,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, Error> {
    let req: SelectRequest = connect::stream_request(headers, bytes)?;
    let proc = e2b.procs().find(&sandbox.id, req.process.as_ref())?;
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let _ = tx
        .send(Item::Message(event(ProcessEvent::Start { pid: proc.pid })))
        .await;
    proc.subs.lock().expect("subs").push(tx);
    Ok(connect::stream_response(rx, stream_opts(headers)))
}

async fn write_input(proc: &Proc, input: crate::proto::ProcessInput) -> Result<(), Error> {
    if let Some(data) = input.stdin {
        match &proc.control {
            Control::Exec(c) if proc.stdin => c.stdin_write(data).await?,
            Control::Exec(_) => {
                return Err(Error::Conflict(format!(
                    "process {} was started without stdin (start it with stdin=True)",
                    proc.pid
                )));
            }
            Control::Pty { input, .. } => input.input(data).await?,
        }
    }
    if let Some(data) = input.pty {
        match &proc.control {
            Control::Pty { input, .. } => input.input(data).await?,
            Control::Exec(_) => {
                return Err(Error::Conflict(format!(
                    "process {} has no terminal",
                    proc.pid
                )));
            }
        }
    }
    Ok(())
}

async fn send_input(
    e2b: &E2b,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<serde_json::Value, Error> {
    let req: SendInputRequest = connect::unary_request(headers, bytes)?;
    let proc = e2b.procs().find(&sandbox.id, req.process.as_ref())?;
    write_input(&proc, req.input.unwrap_or_default()).await?;
    Ok(serde_json::json!({}))
}

async fn stream_input(
    e2b: &E2b,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), Error> {
    let mut reader = connect::EnvelopeReader::new(headers, body)?;
    let mut proc = None;
    while let Some(msg) = reader.next::<StreamInputRequest>().await? {
        if let Some(start) = msg.start {
            proc = Some(e2b.procs().find(&sandbox.id, start.process.as_ref())?);
        }
        if let Some(data) = msg.data {
            let p = proc
                .as_ref()
                .ok_or_else(|| Error::BadRequest("input came before the start message".into()))?;
            write_input(p, data.input.unwrap_or_default()).await?;
        }
    }
    Ok(())
}

async fn send_signal(
    e2b: &E2b,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<serde_json::Value, Error> {
    let req: SendSignalRequest = connect::unary_request(headers, bytes)?;
    let proc = e2b.procs().find(&sandbox.id, req.process.as_ref())?;
    let signal = match req.signal {
        Signal::Kill => 9,
        Signal::Term => 15,
        Signal::Unspecified => {
            return Err(Error::BadRequest(
                "name the signal: SIGNAL_SIGTERM or SIGNAL_SIGKILL".into(),
            ));
        }
    };
    match &proc.control {
        Control::Exec(c) => c.kill(signal).await?,
        Control::Pty { name, guest, .. } => guest.pty_close(name).await?,
    }
    Ok(serde_json::json!({}))
}

async fn update(
    e2b: &E2b,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<serde_json::Value, Error> {
    let req: UpdateRequest = connect::unary_request(headers, bytes)?;
    let proc = e2b.procs().find(&sandbox.id, req.process.as_ref())?;
    let size = req.pty.and_then(|p| p.size).unwrap_or_default();
    match &proc.control {
        Control::Pty { input, .. } if size.cols > 0 && size.rows > 0 => {
            let clamp = |n: u32| n.min(u32::from(u16::MAX)) as u16;
            input.resize(clamp(size.cols), clamp(size.rows)).await?;
        }
        Control::Pty { .. } => {
            return Err(Error::BadRequest(
                "give the terminal's cols and rows".into(),
            ));
        }
        Control::Exec(_) => {
            return Err(Error::Conflict(format!(
                "process {} has no terminal",
                proc.pid
            )));
        }
    }
    Ok(serde_json::json!({}))
}

async fn close_stdin(
    e2b: &E2b,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<serde_json::Value, Error> {
    let req: SelectRequest = connect::unary_request(headers, bytes)?;
    let proc = e2b.procs().find(&sandbox.id, req.process.as_ref())?;
    match &proc.control {
        Control::Exec(c) if proc.stdin => c.stdin_close().await?,
        Control::Exec(_) => {
            return Err(Error::Conflict(format!(
                "process {} was started without stdin",
                proc.pid
            )));
        }
        Control::Pty { .. } => {
            return Err(Error::Conflict(
                "a terminal's stdin is not closed: send Ctrl-D (0x04) instead".into(),
            ));
        }
    }
    Ok(serde_json::json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_worded_as_envd_words_them() {
        let e = end_event(&ExitStatus {
            code: Some(3),
            signal: None,
            timed_out: false,
        });
        assert_eq!(
            (e.exit_code, e.exited, e.status.as_str()),
            (3, true, "exit status 3")
        );
        let e = end_event(&ExitStatus {
            code: None,
            signal: Some(9),
            timed_out: false,
        });
        assert_eq!((e.exit_code, e.status.as_str()), (-1, "signal: killed"));
    }
}
