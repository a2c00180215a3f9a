//! The agent loop's own cost per step, model and tool time taken out.
//!
//! A stand-in OpenAI-compatible server (axum on 127.0.0.1:0, in this process)
//! answers every request at once: `steps` turns that each stream a little text,
//! one `read_file` call of a tiny file and usage, then a final text turn. The
//! tools act through the real guest, run as a plain process on a temporary
//! socket (no machine), and the loop is the real [`Agent`] with a real
//! [`Model`] (reqwest, SSE parsing) and a [`Transcript`] sink.
//!
//! A step is the time between two consecutive requests reaching the stand-in.
//! Its model time is the stand-in's, from the request (body read) to the moment
//! it handed the last chunk to the HTTP server; its tool time runs from the end
//! of recording `tool_started` to the start of recording `tool_result`. What is
//! left is the loop's own: SSE parsing, recording items (the sink included),
//! history, context trimming, building and sending the next request. Two sinks:
//! a `Vec` behind a mutex, and the daemon's own event log ([`EventLog::append`],
//! SQLite in WAL mode on a file, as `SessionTranscript` does).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use firepit_agent::{
    Agent, AgentSettings, Model, ModelConfig, ProviderKind, ToolContext, Transcript, TranscriptItem,
};
use firepit_daemon::Store;
use firepit_daemon::events::EventLog;
use firepit_guest_client::GuestClient;
use firepit_wire::api::{Limits, NetworkMode, Session, SessionState};
use firepit_wire::events::EventKind;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::stats::Summary;

/// Budget: the loop's own time per step (model and tool excluded), p95, ms.
pub const OVERHEAD_P95_MS: f64 = 5.0;

/// Longest a whole run may take before the bench gives up.
const RUN_GUARD: Duration = Duration::from_secs(120);

/// The figures of one sink.
#[derive(Debug, Serialize)]
pub struct SinkFigures {
    /// Which sink.
    pub sink: &'static str,
    /// Request → next request.
    pub step: Summary,
    /// The stand-in's time per request.
    pub model: Summary,
    /// `tool_started` recorded → `tool_result` recorded.
    pub tool: Summary,
    /// Step − model − tool.
    pub overhead: Summary,
    /// Size of the last request body (the whole history), bytes.
    pub last_request_bytes: usize,
}

/// What the agent measurement found.
#[derive(Debug, Serialize)]
pub struct AgentFigures {
    /// Tool-call steps per run.
    pub steps: usize,
    /// One per sink.
    pub sinks: Vec<SinkFigures>,
}

/// Measures `steps` tool-call steps with each sink, on a runtime of its own
/// (multi-threaded, like the daemon's).
pub fn measure(steps: usize) -> Result<AgentFigures> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure_async(steps))
}

async fn measure_async(steps: usize) -> Result<AgentFigures> {
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("work");
    std::fs::create_dir(&work)?;
    std::fs::write(work.join("hello.txt"), "hello from firepit\nsecond line\n")?;
    let guest = GuestProcess::start(dir.path(), &work).await?;
    let server = StandIn::start(steps).await?;
    let workdir = work.to_str().context("temp dir is not UTF-8")?.to_owned();

    let mut sinks = Vec::new();
    let memory = Sink::Memory(Arc::default());
    eprintln!("agent: {steps} steps, in-memory sink");
    sinks.push(run_once(&server, &guest.client, &workdir, memory, steps).await?);

    let store = Store::open(&dir.path().join("firepit.db")).context("opening the store")?;
    store
        .insert_session(&Session {
            id: "bench".into(),
            image: "minimal".into(),
            state: SessionState::Running,
            limits: Limits::default(),
            network: NetworkMode::None,
            created_at: 0,
            error: None,
            stop_at: None,
            name: None,
            labels: Default::default(),
        })
        .context("adding the session")?;
    let log = Sink::EventLog {
        log: EventLog::new(Arc::new(store)),
        session: "bench".into(),
    };
    eprintln!("agent: {steps} steps, daemon event log sink");
    sinks.push(run_once(&server, &guest.client, &workdir, log, steps).await?);
    Ok(AgentFigures { steps, sinks })
}

// --- The stand-in model server ---

/// One request the stand-in served.
#[derive(Debug, Clone, Copy)]
struct Served {
    received: Instant,
    written: Option<Instant>,
    bytes: usize,
}

struct Script {
    steps: usize,
    served: Mutex<Vec<Served>>,
}

struct StandIn {
    url: String,
    script: Arc<Script>,
}

impl StandIn {
    async fn start(steps: usize) -> Result<StandIn> {
        let script = Arc::new(Script {
            steps,
            served: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/chat/completions", post(handle))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(StandIn { url, script })
    }

    fn take(&self) -> Vec<Served> {
        std::mem::take(&mut *self.script.served.lock().expect("stand-in"))
    }
}

async fn handle(State(s): State<Arc<Script>>, body: Bytes) -> Response {
    // The extractor has read the whole body: the request is complete.
    let received = Instant::now();
    let index = {
        let mut served = s.served.lock().expect("stand-in");
        served.push(Served {
            received,
            written: None,
            bytes: body.len(),
        });
        served.len() - 1
    };
    let chunks = if index < s.steps {
        let args = json!({"path": "hello.txt"}).to_string();
        openai_turn(
            "Reading it.",
            Some((&format!("call_{index}"), "read_file", &args)),
        )
    } else {
        openai_turn("Done: it says hello.", None)
    };
    let done = s.clone();
    let stream = futures::stream::iter(chunks)
        .map(|c| Ok::<_, std::convert::Infallible>(Bytes::from(c)))
        .chain(futures::stream::once(async move {
            // Polled once the last chunk went to the HTTP server.
            if let Some(r) = done.served.lock().expect("stand-in").get_mut(index) {
                r.written = Some(Instant::now());
            }
            Ok(Bytes::new())
        }));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("response")
}

/// An OpenAI streaming turn: text in two deltas, an optional tool call in two
/// fragments, the finish reason, usage and `[DONE]`, one SSE event per chunk.
fn openai_turn(text: &str, call: Option<(&str, &str, &str)>) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let (a, b) = text.split_at(text.len() / 2);
    let mut out = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": a}), Value::Null),
        chunk(json!({"content": b}), Value::Null),
    ];
    if let Some((id, name, args)) = call {
        let (a, b) = args.split_at(args.len() / 2);
        out.push(chunk(json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": a}}]}), Value::Null));
        out.push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
            Value::Null,
        ));
    }
    let finish = if call.is_some() { "tool_calls" } else { "stop" };
    out.push(chunk(json!({}), json!(finish)));
    out.push(format!(
        "data: {}\n\n",
        json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100}})
    ));
    out.push("data: [DONE]\n\n".into());
    out
}

// --- The guest, as a plain process ---

/// The real guest on a temporary socket; SIGTERM on drop.
struct GuestProcess {
    child: Child,
    client: GuestClient,
}

impl GuestProcess {
    async fn start(dir: &Path, work: &Path) -> Result<GuestProcess> {
        let socket: PathBuf = dir.join("g.sock");
        // read_file needs no main PTY.
        let mut child = Command::new(firepit_guest_bin::GUEST_BUILD_PATH)
            .arg("--socket")
            .arg(&socket)
            .arg("--no-main-pty")
            .current_dir(work)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", firepit_guest_bin::GUEST_BUILD_PATH))?;
        match connect(&socket).await {
            Ok(client) => Ok(GuestProcess { child, client }),
            Err(e) => {
                stop(&mut child);
                Err(e)
            }
        }
    }
}

fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: signalling our own child, which is not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let _ = child.wait();
}

async fn connect(socket: &Path) -> Result<GuestClient> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match GuestClient::connect_unix(socket).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("the guest's socket never answered");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

impl Drop for GuestProcess {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

// --- The transcript sinks ---

/// When one item was recorded: on entering the sink and on leaving it.
#[derive(Debug, Clone)]
struct Mark {
    kind: &'static str,
    entered: Instant,
    left: Instant,
    /// What went wrong, for `error` items and failed tool results.
    problem: Option<String>,
}

/// Where items go.
#[derive(Clone)]
enum Sink {
    /// A `Vec` behind a mutex, timestamped.
    Memory(Arc<Mutex<Vec<(Instant, TranscriptItem)>>>),
    /// The daemon's session event log, as `SessionTranscript` appends to it.
    EventLog { log: EventLog, session: String },
}

impl Sink {
    fn name(&self) -> &'static str {
        match self {
            Sink::Memory(_) => "in-memory sink",
            Sink::EventLog { .. } => "daemon event log (SQLite)",
        }
    }

    fn put(&self, item: TranscriptItem) {
        match self {
            Sink::Memory(v) => v.lock().expect("sink").push((Instant::now(), item)),
            Sink::EventLog { log, session } => {
                if let Err(e) = log.append(session, EventKind::Agent { item }) {
                    eprintln!("agent: could not record an item: {e}");
                }
            }
        }
    }
}

/// A sink that notes when each item came and went.
#[derive(Clone)]
struct Timed {
    sink: Sink,
    marks: Arc<Mutex<Vec<Mark>>>,
}

impl Transcript for Timed {
    async fn record(&self, item: TranscriptItem) {
        let entered = Instant::now();
        let kind = kind(&item);
        let problem = match &item {
            TranscriptItem::Error { message } => Some(message.clone()),
            TranscriptItem::ToolResult {
                output,
                is_error: true,
                ..
            } => Some(output.clone()),
            TranscriptItem::RunFinished { reason } if reason != "done" => Some(reason.clone()),
            _ => None,
        };
        self.sink.put(item);
        let left = Instant::now();
        self.marks.lock().expect("marks").push(Mark {
            kind,
            entered,
            left,
            problem,
        });
    }
}

fn kind(item: &TranscriptItem) -> &'static str {
    match item {
        TranscriptItem::ToolStarted { .. } => "tool_started",
        TranscriptItem::ToolResult { .. } => "tool_result",
        TranscriptItem::RunFinished { .. } => "run_finished",
        TranscriptItem::RunStopped => "run_stopped",
        TranscriptItem::Error { .. } => "error",
        _ => "other",
    }
}

// --- One run ---

async fn run_once(
    server: &StandIn,
    guest: &GuestClient,
    workdir: &str,
    sink: Sink,
    steps: usize,
) -> Result<SinkFigures> {
    let name = sink.name();
    let timed = Timed {
        sink,
        marks: Arc::default(),
    };
    let cfg = ModelConfig::new(ProviderKind::OpenAiCompatible, &server.url, None, "bench");
    let tools = ToolContext::new(
        guest.clone(),
        workdir,
        Arc::new(|p| format!("http://127.0.0.1:{p}/")),
    );
    let settings = AgentSettings {
        max_steps: steps + 1,
        ..AgentSettings::default()
    };
    let agent = Agent::new(Model::new(cfg), tools, timed.clone(), settings, &[]);
    agent.send(format!("Read hello.txt {steps} times.")).await;
    if tokio::time::timeout(RUN_GUARD, agent.wait_idle())
        .await
        .is_err()
    {
        agent.stop();
        bail!("the agent run did not end within {RUN_GUARD:?}");
    }
    let served = server.take();
    let marks = std::mem::take(&mut *timed.marks.lock().expect("marks"));
    if let Some(p) = marks.iter().find_map(|m| m.problem.as_deref()) {
        bail!("the agent run went wrong ({name}): {p}");
    }
    ensure!(
        marks.last().is_some_and(|m| m.kind == "run_finished"),
        "the agent run did not finish ({name})"
    );
    split(name, &served, &marks, steps)
}

/// Cuts the run into steps and each step into model, tool and the rest.
fn split(
    name: &'static str,
    served: &[Served],
    marks: &[Mark],
    steps: usize,
) -> Result<SinkFigures> {
    ensure!(
        served.len() == steps + 1,
        "the stand-in served {} requests, not {}",
        served.len(),
        steps + 1
    );
    let started: Vec<&Mark> = marks.iter().filter(|m| m.kind == "tool_started").collect();
    let results: Vec<&Mark> = marks.iter().filter(|m| m.kind == "tool_result").collect();
    ensure!(
        started.len() == steps && results.len() == steps,
        "{} tool calls started and {} answered, not {steps}",
        started.len(),
        results.len()
    );
    let (mut step, mut model, mut tool, mut overhead) = (vec![], vec![], vec![], vec![]);
    for i in 0..steps {
        let (begin, end) = (served[i].received, served[i + 1].received);
        let written = served[i]
            .written
            .context("the stand-in never finished a reply")?;
        let (s, r) = (started[i], results[i]);
        ensure!(
            begin <= s.left && r.entered <= end,
            "tool call {i} lies outside its step"
        );
        let st = end - begin;
        let m = written - begin;
        let t = r.entered - s.left;
        step.push(st);
        model.push(m);
        tool.push(t);
        overhead.push(st.saturating_sub(m + t));
    }
    let summary = |v: &[Duration]| Summary::of(v).context("no steps");
    Ok(SinkFigures {
        sink: name,
        step: summary(&step)?,
        model: summary(&model)?,
        tool: summary(&tool)?,
        overhead: summary(&overhead)?,
        last_request_bytes: served.last().map_or(0, |s| s.bytes),
    })
}
