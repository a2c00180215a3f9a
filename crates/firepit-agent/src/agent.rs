//! The agent loop. One [`Agent`] per session: it takes the person's message, calls the
//! model with the system prompt, the history and the tools, runs the tool calls (the
//! calls of one turn concurrently), feeds the results back, and goes on until the model
//! answers without tool calls, asks the person (`ask_user`), fails, runs out of steps or
//! is stopped.
//!
//! Every step is recorded as a [`TranscriptItem`] and the history is built by applying
//! those same items ([`History::apply`]), so the stored transcript always rebuilds the
//! loop's history. Messages sent while a run goes on are interjections, delivered before
//! the next model call (a run never ends with one undelivered). Stop cancels the model
//! request and the running tools; every call still gets a result ("stopped by the user").

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::context::{compaction, size, trim};
use crate::message::{ModelRequest, StreamEvent, ToolCall};
use crate::provider::{Model, cost_usd};
use crate::tools::{self, ASK_USER, ToolContext, ToolOutput};
use crate::transcript::{History, Transcript, TranscriptItem, rebuild};
use crate::{Error, prompt};

/// Tunables of the loop.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Model calls per run at most.
    pub max_steps: usize,
    /// The history sent to the model is kept under this many bytes (≈ 4 per token).
    pub context_budget: usize,
    /// Extra instructions appended to the system prompt.
    pub extra_instructions: Option<String>,
    /// The manifest of the machine's image: the prompt names the tools it has.
    pub image: Option<firepit_image::Manifest>,
}

impl Default for AgentSettings {
    fn default() -> AgentSettings {
        AgentSettings {
            max_steps: 200,
            context_budget: 400_000,
            extra_instructions: None,
            image: None,
        }
    }
}

/// What [`Agent::send`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// It started a run.
    Started,
    /// A run was going on: it is delivered at its next step.
    Interjected,
}

struct RunCtl {
    cancel: CancellationToken,
    queue: Vec<String>,
}

struct State {
    history: History,
    run: Option<RunCtl>,
}

impl State {
    /// Marks a run as going on; its token cancels it.
    fn begin_run(&mut self) -> CancellationToken {
        let cancel = CancellationToken::new();
        self.run = Some(RunCtl {
            cancel: cancel.clone(),
            queue: Vec::new(),
        });
        cancel
    }
}

struct Inner<T> {
    model: Model,
    tools: ToolContext,
    transcript: T,
    settings: AgentSettings,
    state: Mutex<State>,
    /// Serialises apply-then-record, so the log's order is the history's order.
    recorder: tokio::sync::Mutex<()>,
    running: watch::Sender<bool>,
}

/// A session's agent. Cheap to clone.
pub struct Agent<T: Transcript> {
    inner: Arc<Inner<T>>,
}

impl<T: Transcript> Clone for Agent<T> {
    fn clone(&self) -> Self {
        Agent {
            inner: self.inner.clone(),
        }
    }
}

/// An error with its causes, `: `-separated.
pub(crate) use firepit_util::chain;

impl<T: Transcript> Agent<T> {
    /// An agent whose history is rebuilt from the session's stored transcript (`items`,
    /// empty for a new session). Call [`Agent::resume`] to continue a run that a daemon
    /// restart cut off.
    pub fn new(
        model: Model,
        tools: ToolContext,
        transcript: T,
        settings: AgentSettings,
        items: &[TranscriptItem],
    ) -> Agent<T> {
        Agent {
            inner: Arc::new(Inner {
                model,
                tools,
                transcript,
                settings,
                state: Mutex::new(State {
                    history: rebuild(items),
                    run: None,
                }),
                recorder: tokio::sync::Mutex::new(()),
                running: watch::channel(false).0,
            }),
        }
    }

    /// The history as the model sees it (untrimmed).
    pub fn history(&self) -> History {
        self.inner.state.lock().unwrap().history.clone()
    }

    /// Whether a run goes on.
    pub fn is_running(&self) -> bool {
        self.inner.state.lock().unwrap().run.is_some()
    }

    /// For the closed loop, when the page in the session's browser raised
    /// errors: true when a run goes on, which hears them at its next step
    /// (or, about to end, goes on for one more: see `Inner::finish`); false
    /// when none does, and then [`Agent::hear_browser`] tells the agent.
    pub fn nudge(&self) -> bool {
        self.inner.state.lock().unwrap().run.is_some()
    }

    /// Starts a run about the errors the page raised that the agent has not
    /// been told of, if there are any (none: a tool result told it already).
    pub async fn hear_browser(&self) -> Option<Sent> {
        if self.nudge() {
            return Some(Sent::Interjected);
        }
        let note = self.inner.browser_news()?;
        Some(self.send(browser_message(&note)).await)
    }

    /// Sends the person's message: starts a run, or is delivered to the running one at
    /// its next step.
    pub async fn send(&self, text: String) -> Sent {
        let inner = &self.inner;
        let guard = inner.recorder.lock().await;
        let cancel = {
            let mut st = inner.state.lock().unwrap();
            if let Some(run) = &mut st.run {
                run.queue.push(text);
                return Sent::Interjected;
            }
            st.begin_run()
        };
        inner.running.send_replace(true);
        inner.record_locked(&guard, self.run_started()).await;
        inner
            .record_locked(
                &guard,
                TranscriptItem::UserMessage {
                    text,
                    interjection: false,
                },
            )
            .await;
        drop(guard);
        tokio::spawn(inner.clone().run(cancel));
        Sent::Started
    }

    fn run_started(&self) -> TranscriptItem {
        let cfg = self.inner.model.config();
        TranscriptItem::RunStarted {
            provider: cfg.kind.name().into(),
            model: cfg.model.clone(),
        }
    }

    /// Continues the last run if the transcript says it never ended (a daemon restart).
    /// Returns whether a run was started.
    pub async fn resume(&self) -> bool {
        let inner = &self.inner;
        let guard = inner.recorder.lock().await;
        let cancel = {
            let mut st = inner.state.lock().unwrap();
            if st.run.is_some() || !st.history.unfinished {
                return false;
            }
            st.begin_run()
        };
        inner.running.send_replace(true);
        // A fresh `run_started` closes calls the restart cut off with an "interrupted" result.
        inner.record_locked(&guard, self.run_started()).await;
        drop(guard);
        tokio::spawn(inner.clone().run(cancel));
        true
    }

    /// Stops the run, if one goes on. Returns whether one did.
    pub fn stop(&self) -> bool {
        match &self.inner.state.lock().unwrap().run {
            Some(r) => {
                r.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Waits until no run goes on.
    pub async fn wait_idle(&self) {
        let mut rx = self.inner.running.subscribe();
        let _ = rx.wait_for(|r| !*r).await;
    }
}

enum Turn {
    Done { text: String, calls: Vec<ToolCall> },
    Failed(Error),
}

/// What the agent is told of errors the page raised between its steps.
fn browser_message(note: &str) -> String {
    format!(
        "[firepit noticed a problem — the page in your browser, between your steps]\n{note}\n\nFind the cause (look at the page, its console and the code) and fix it if it comes from the work in this session; then check that it is gone."
    )
}

impl<T: Transcript> Inner<T> {
    /// The errors the session's page raised that the agent has not been
    /// told of, as one note (they count as told from now on).
    fn browser_news(&self) -> Option<String> {
        let page = self.tools.hooks.as_ref()?.current_page()?;
        crate::tools::browser::errors_note(&page)
    }

    /// Whether the session's page raised errors the agent has not been told of.
    fn has_browser_news(&self) -> bool {
        self.tools
            .hooks
            .as_ref()
            .and_then(|h| h.current_page())
            .is_some_and(|page| page.has_undelivered_errors())
    }

    async fn record_locked(&self, _guard: &tokio::sync::MutexGuard<'_, ()>, item: TranscriptItem) {
        self.state.lock().unwrap().history.apply(&item);
        self.transcript.record(item).await;
    }

    async fn record(&self, item: TranscriptItem) {
        let g = self.recorder.lock().await;
        self.record_locked(&g, item).await;
    }

    /// Ends the run with `last`, unless interjections or errors of the page
    /// wait: then returns false and the loop goes on.
    ///
    /// The page's errors are looked at under the state lock, which
    /// [`Agent::nudge`] takes too: the page keeps a report before the closed
    /// loop hears of it, so a report the closed loop found a run for is seen
    /// by this look, and one it found no run for starts a new one
    /// ([`Agent::hear_browser`]). None falls between.
    async fn finish(&self, last: Vec<TranscriptItem>, force: bool) -> bool {
        let g = self.recorder.lock().await;
        {
            let mut st = self.state.lock().unwrap();
            let waiting = st.run.as_ref().is_some_and(|r| !r.queue.is_empty())
                || (!force && self.has_browser_news());
            if waiting && !force {
                return false;
            }
            st.run = None;
        }
        for item in last {
            self.record_locked(&g, item).await;
        }
        self.running.send_replace(false);
        true
    }

    async fn stopped(&self) {
        self.tools.interrupt().await;
        self.finish(vec![TranscriptItem::RunStopped], true).await;
    }

    async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let system = {
            let mut s = prompt::system_prompt(
                &self.tools.guest,
                &self.tools.workdir,
                self.settings.image.as_ref(),
            )
            .await;
            if let Some(extra) = &self.settings.extra_instructions {
                s.push_str("\n\n");
                s.push_str(extra);
            }
            s
        };
        let defs = tools::definitions();
        let mut steps = 0;
        loop {
            if cancel.is_cancelled() {
                return self.stopped().await;
            }
            let queued = {
                let mut st = self.state.lock().unwrap();
                st.run
                    .as_mut()
                    .map(|r| std::mem::take(&mut r.queue))
                    .unwrap_or_default()
            };
            // Errors the page raised while no tool result could tell of them.
            let news = self.browser_news().map(|n| browser_message(&n));
            for text in queued.into_iter().chain(news) {
                self.record(TranscriptItem::UserMessage {
                    text,
                    interjection: true,
                })
                .await;
            }
            if steps >= self.settings.max_steps {
                let msg = format!(
                    "stopped after {steps} model calls (the limit of one run); send a message to continue"
                );
                if self
                    .finish(
                        vec![
                            TranscriptItem::Error { message: msg },
                            TranscriptItem::RunFinished {
                                reason: "max_steps".into(),
                            },
                        ],
                        false,
                    )
                    .await
                {
                    return;
                }
                continue;
            }
            steps += 1;

            let messages = self.context().await;
            let req = ModelRequest {
                system: system.clone(),
                messages,
                tools: defs.clone(),
                max_tokens: self.model.config().max_tokens,
            };
            let (text, calls) = match self.turn(&req, &cancel).await {
                Turn::Done { text, calls } => (text, calls),
                Turn::Failed(Error::Cancelled) => return self.stopped().await,
                Turn::Failed(e) => {
                    self.finish(
                        vec![
                            TranscriptItem::Error { message: chain(&e) },
                            TranscriptItem::RunFinished {
                                reason: "error".into(),
                            },
                        ],
                        true,
                    )
                    .await;
                    return;
                }
            };
            self.record(TranscriptItem::AssistantMessage {
                text,
                tool_calls: calls.clone(),
            })
            .await;
            if calls.is_empty() {
                if self
                    .finish(
                        vec![TranscriptItem::RunFinished {
                            reason: "done".into(),
                        }],
                        false,
                    )
                    .await
                {
                    return;
                }
                continue;
            }
            let outputs = self.run_tools(&calls, &cancel).await;
            if cancel.is_cancelled() {
                return self.stopped().await;
            }
            let asked = calls
                .iter()
                .zip(&outputs)
                .any(|(c, o)| c.name == ASK_USER && !o.is_error);
            if asked
                && self
                    .finish(
                        vec![TranscriptItem::RunFinished {
                            reason: "asked_user".into(),
                        }],
                        false,
                    )
                    .await
            {
                return;
            }
        }
    }

    /// The history to send, trimmed, compacted first if trimming is not enough.
    async fn context(&self) -> Vec<crate::Message> {
        let budget = self.settings.context_budget;
        let messages = self.state.lock().unwrap().history.messages.clone();
        let view = trim(&messages, budget);
        if size(&view) <= budget {
            return view;
        }
        if let Some((dropped, note)) = compaction(&view, budget) {
            self.record(TranscriptItem::Compacted { dropped, note })
                .await;
            let messages = self.state.lock().unwrap().history.messages.clone();
            return trim(&messages, budget);
        }
        view
    }

    /// One model call, streamed into the transcript.
    async fn turn(&self, req: &ModelRequest, cancel: &CancellationToken) -> Turn {
        let mut text = String::new();
        let mut calls = Vec::new();
        let streamed = async {
            let mut stream = self.model.stream(req, cancel).await?;
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => return Err(Error::Cancelled),
                    ev = stream.next() => ev?,
                };
                match ev {
                    Some(StreamEvent::TextDelta(t)) => {
                        text.push_str(&t);
                        self.record(TranscriptItem::AssistantDelta { text: t })
                            .await;
                    }
                    Some(StreamEvent::ToolCall(c)) => calls.push(c),
                    Some(StreamEvent::Usage { input, output }) => self.usage(input, output).await,
                    Some(StreamEvent::Done { .. }) | None => return Ok(()),
                }
            }
        }
        .await;
        match streamed {
            Ok(()) => Turn::Done { text, calls },
            Err(e) => {
                if !text.is_empty() {
                    // What was shown stays in the transcript (and the history), marked.
                    let note = if matches!(e, Error::Cancelled) {
                        "stopped"
                    } else {
                        "cut off"
                    };
                    self.record(TranscriptItem::AssistantMessage {
                        text: format!("{text}\n[{note}]"),
                        tool_calls: Vec::new(),
                    })
                    .await;
                }
                Turn::Failed(e)
            }
        }
    }

    async fn usage(&self, input: u64, output: u64) {
        let model = &self.model.config().model;
        let cost = cost_usd(model, input, output);
        let (ti, to, tc) = self.state.lock().unwrap().history.totals;
        let total_cost = match (tc, cost) {
            (Some(a), Some(b)) => Some(a + b),
            (None, Some(b)) if ti == 0 => Some(b),
            (a, _) => a,
        };
        self.record(TranscriptItem::Usage {
            input_tokens: input,
            output_tokens: output,
            cost_usd: cost,
            total_input_tokens: ti + input,
            total_output_tokens: to + output,
            total_cost_usd: total_cost,
        })
        .await;
    }

    /// A checkpoint before a turn whose calls can change files, recorded in
    /// the transcript. Its failure is the daemon's to log: the turn goes on.
    /// A run stopped first (or while the checkpoint waits, say for a restore
    /// of the session that stops the agent) asks for none: its tools will
    /// not run, and a checkpoint made after the restore would be of files
    /// the run never saw.
    async fn checkpoint_before(&self, calls: &[ToolCall], cancel: &CancellationToken) {
        let Some(hooks) = &self.tools.hooks else {
            return;
        };
        let changing: Vec<&ToolCall> = calls
            .iter()
            .filter(|c| tools::hooks::CHANGE_FILES.contains(&c.name.as_str()))
            .collect();
        let Some(first) = changing.first() else {
            return;
        };
        let more = match changing.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        let name = format!("before {}{more}", first.name);
        if cancel.is_cancelled() {
            return;
        }
        let made = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            made = hooks.checkpoint(name) => made,
        };
        if let Ok(Some(checkpoint)) = made {
            self.record(TranscriptItem::Checkpoint {
                checkpoint,
                tool_call_ids: changing.iter().map(|c| c.id.clone()).collect(),
            })
            .await;
        }
    }

    /// Runs one turn's calls concurrently; each gets a result, also when stopped.
    async fn run_tools(&self, calls: &[ToolCall], cancel: &CancellationToken) -> Vec<ToolOutput> {
        self.checkpoint_before(calls, cancel).await;
        for c in calls {
            self.record(TranscriptItem::ToolStarted {
                id: c.id.clone(),
                name: c.name.clone(),
            })
            .await;
        }
        let runs = calls.iter().map(|c| async move {
            let out = tokio::select! {
                _ = cancel.cancelled() => ToolOutput {
                    output: "stopped by the user".into(),
                    is_error: true,
                    png: None,
                },
                out = tools::call(&self.tools, c) => out,
            };
            self.record(TranscriptItem::ToolResult {
                id: c.id.clone(),
                name: c.name.clone(),
                output: out.output.clone(),
                is_error: out.is_error,
            })
            .await;
            out
        });
        futures::future::join_all(runs).await
    }
}
