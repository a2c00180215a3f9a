//! The closed loop: errors in a session's service logs, its browser and its
//! test runs become `problem` events, and reach the agent.
//!
//! One task per running session (started and stopped with the session's
//! watcher, [`crate::watchers`]) follows the log of every service the guest
//! runs (Chromium's own excepted) through a [`LogScanner`], the shared shell's
//! terminal (`main`) through a [`ShellScanner`] (problems with the command
//! that printed them, and commands that crashed), and the pages of
//! the session's browser (uncaught exceptions, console errors, failed and 5xx
//! requests, a browser that went away). Test runs arrive from the agent's
//! `test` tool ([`test_ran`]); the preview's problems (5xx answers it served,
//! the errors its pages' script reports, [`crate::preview_reports`]) from the
//! proxy.
//!
//! Repeats are folded per session (`Folder`, kept by the session's runtime,
//! [`crate::live`], so a machine started again starts afresh): a problem is
//! logged the first time and again at counts 10, 100, 1000 …; only its first sighting is
//! handed to the agent. Delivery:
//! - the agent runs: problems of services and of the person's preview (5xx
//!   answers the proxy served) reach it at its next step (as an
//!   interjection); test and shell problems do not, as the tool results it
//!   is reading already carry them; the page's errors reach it through the
//!   page's one cursor (see [`deliver`]);
//! - the agent is idle: it is woken with the problem when the session's
//!   `wake_agent` setting is on (the default; `PUT /v1/sessions/{id}/closed-loop`)
//!   and the agent has been talked to in this session before, so a session
//!   nobody asked the agent into never starts spending on a model by itself.
//!   The setting is kept in the event log (`closed_loop` events), with
//!   `preview_reports` (whether the preview's pages carry the reporting
//!   script, default on).

use std::collections::HashMap;
use std::time::Duration;

use firepit_agent::TestRun;
use firepit_browser::{Observation, Report};
use firepit_guest_client::{GuestClient, ServiceEvent};
use firepit_problems::{LogScanner, Problem, ShellScanner};
use firepit_wire::api::{ClosedLoopChange, ClosedLoopSettings};
use firepit_wire::events::EventKind;
use tokio::task::JoinSet;

use crate::App;

/// A log that says nothing for this long has its pending trace emitted.
const QUIET: Duration = Duration::from_millis(300);
/// Longest partial line kept while waiting for its end.
const PARTIAL_LIMIT: usize = 64 << 10;
/// Services whose logs one session's closed loop follows at most: the names come from
/// the machine, which may invent any number of them.
const MAX_FOLLOWED: usize = 64;

impl App {
    /// The session's closed-loop settings (read from the log once per
    /// runtime).
    pub fn closed_loop(&self, session: &str) -> Result<ClosedLoopSettings, crate::Error> {
        let live = self.live().get(session);
        if let Some(s) = live
            .as_ref()
            .and_then(|l| l.closed_loop.lock().expect("closed loop").clone())
        {
            return Ok(s);
        }
        let mut settings = ClosedLoopSettings::default();
        let mut since = 0;
        loop {
            let page = self.events().list(session, since, 10_000)?;
            let Some(last) = page.last() else { break };
            since = last.seq;
            for e in &page {
                if let EventKind::ClosedLoop {
                    wake_agent,
                    preview_reports,
                } = e.kind
                {
                    settings = ClosedLoopSettings {
                        wake_agent,
                        preview_reports,
                    };
                }
            }
        }
        if let Some(l) = live {
            *l.closed_loop.lock().expect("closed loop") = Some(settings.clone());
        }
        Ok(settings)
    }

    /// Whether a problem wakes the session's idle agent.
    pub fn wake_agent(&self, session: &str) -> Result<bool, crate::Error> {
        Ok(self.closed_loop(session)?.wake_agent)
    }

    /// Whether the session's preview puts its error-reporting script into
    /// the app's pages (on when the setting cannot be read).
    pub fn preview_reports(&self, session: &str) -> bool {
        self.closed_loop(session)
            .map_or(true, |s| s.preview_reports)
    }

    /// Changes the session's closed-loop settings (logged whole); the
    /// settings now.
    pub fn change_closed_loop(
        &self,
        session: &str,
        change: &ClosedLoopChange,
    ) -> Result<ClosedLoopSettings, crate::Error> {
        let settings = change.apply(self.closed_loop(session)?);
        self.events().append(
            session,
            EventKind::ClosedLoop {
                wake_agent: settings.wake_agent,
                preview_reports: settings.preview_reports,
            },
        )?;
        if let Some(l) = self.live().get(session) {
            *l.closed_loop.lock().expect("closed loop") = Some(settings.clone());
        }
        Ok(settings)
    }
}

/// Records a problem (folded) and hands its first sighting to the agent.
pub async fn report(app: &App, session: &str, p: Problem) {
    // A problem of a session that is no longer live is not news.
    let Some(live) = app.live().get(session) else {
        return;
    };
    let count = live.folder.lock().expect("folder").observe(&p);
    let Some(count) = count else { return };
    let kind = EventKind::Problem {
        source: p.source.clone(),
        kind: p.kind.clone(),
        summary: p.summary.clone(),
        detail: p.detail.clone(),
        count,
    };
    match app.events().append_limited(session, kind) {
        Ok(Some(_)) => {}
        // Over the session's rate limit: counted in the summary of drops,
        // and not handed to the agent either.
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(session, error = %crate::error::chain(&e), "could not record a problem");
            return;
        }
    }
    if count == 1 {
        deliver(app, session, &p).await;
    }
}

/// What the agent is told.
fn message(p: &Problem) -> String {
    format!(
        "[firepit noticed a problem — {} from {}]\n{}\n\n{}\n\nFind the cause (read the log or the page, look at the code) and fix it if it comes from the work in this session; then check that it is gone.",
        p.kind, p.source, p.summary, p.detail
    )
}

async fn deliver(app: &App, session: &str, p: &Problem) {
    if app.agents().model().is_none() {
        return;
    }
    let from_page = from_page(p);
    if let Some(agent) = app.agent_if_made(session) {
        if from_page {
            // A running agent hears the page's errors at its next step, or
            // goes on for one more step when it was about to end.
            if agent.nudge() {
                return;
            }
        } else if agent.is_running() {
            if p.source.starts_with("service:") || p.source == "preview" {
                agent.send(message(p)).await;
            }
            return;
        }
    }
    match app.wake_agent(session) {
        Ok(true) => {}
        _ => return,
    }
    let talked_to = app
        .transcript(session)
        .map(|t| !t.is_empty())
        .unwrap_or(false);
    if !talked_to {
        return;
    }
    match app.agent(session).await {
        Ok(agent) if from_page => {
            agent.hear_browser().await;
        }
        Ok(agent) => {
            agent.send(message(p)).await;
        }
        Err(e) => {
            tracing::warn!(session, error = %crate::error::chain(&e), "could not wake the agent")
        }
    }
}

/// Whether a problem is one the page in the agent's browser reported (not
/// the browser going away): the agent hears those through the page's one
/// cursor of errors, so each reaches it exactly once.
fn from_page(p: &Problem) -> bool {
    p.source == "browser" && p.kind != "browser_crash"
}

/// Records a test run and, when it failed, a problem.
pub fn test_ran(app: &App, session: &str, run: &TestRun) {
    record_test_run(app, session, run);
    let s = &run.summary;
    if !s.ok {
        let line = s.line(run.exit_code);
        let mut summary = format!("`{}`: {line}", run.command);
        if let Some(first) = s.failures.first() {
            summary.push_str(&format!(" ({first}"));
            if s.failures.len() > 1 {
                summary.push_str(&format!(" and {} more", s.failures.len() - 1));
            }
            summary.push(')');
        }
        let p = Problem::new("test", "test_failure", &summary, &run.output_tail);
        let (app, session) = (app.clone(), session.to_owned());
        tokio::spawn(async move { report(&app, &session, p).await });
    }
}

/// Records a test run as a `test_run` event only (triage's own runs: their
/// failure is the job's to report, not a problem for the agent).
pub fn record_test_run(app: &App, session: &str, run: &TestRun) {
    let s = &run.summary;
    let line = s.line(run.exit_code);
    let kind = EventKind::TestRun {
        command: run.command.clone(),
        ok: s.ok,
        passed: s.passed,
        failed: s.failed,
        failures: s.failures.clone(),
        exit_code: run.exit_code,
        duration_ms: run.duration_ms,
        summary: line.clone(),
    };
    if let Err(e) = app.events().append(session, kind) {
        tracing::warn!(session, error = %crate::error::chain(&e), "could not record a test run");
    }
}

/// The problem a browser report is, if it is one.
fn from_report(r: &Report, url: &str) -> Option<Problem> {
    let (kind, summary, detail) = match r {
        Report::Exception { text, stack } => (
            "js_exception",
            text.clone(),
            format!("{text}\n{stack}\npage: {url}"),
        ),
        Report::Console { level, text } if r.is_error() => (
            "console_error",
            text.clone(),
            format!("console.{level}: {text}\npage: {url}"),
        ),
        Report::Request {
            method,
            url: u,
            status,
            error,
        } if r.is_error() => {
            if *status == 0 {
                (
                    "request_failed",
                    format!("{method} {u} failed: {error}"),
                    format!("page: {url}"),
                )
            } else {
                (
                    "http_5xx",
                    format!("{method} {u} answered {status}"),
                    format!("page: {url}"),
                )
            }
        }
        _ => return None,
    };
    Some(Problem::new("browser", kind, &summary, &detail))
}

/// Watches a running session until aborted or its guest goes away.
pub async fn watch(app: App, id: String) {
    let Ok(guest) = app.guest(&id).await else {
        return;
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(watch_browser(app.clone(), id.clone(), guest.clone()));
    tasks.spawn(follow_shell(app.clone(), id.clone(), guest.clone()));
    let Ok(mut services) = guest.watch_services().await else {
        return;
    };
    let mut followers: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    if let Ok(list) = guest.service_list().await {
        for s in list {
            if s.name != firepit_browser::launch::SERVICE {
                // Already running (a daemon restart): only what it writes from now on.
                let h = tasks.spawn(follow(
                    app.clone(),
                    id.clone(),
                    guest.clone(),
                    s.name.clone(),
                    Some(0),
                ));
                followers.insert(s.name, h);
            }
        }
    }
    while let Ok(Some(ev)) = services.next().await {
        if let ServiceEvent::Started { name, .. } = ev {
            if name == firepit_browser::launch::SERVICE {
                continue;
            }
            // Finished followers are let go of, so neither the set nor the map grows.
            while tasks.try_join_next().is_some() {}
            followers.retain(|_, h| !h.is_finished());
            if let Some(old) = followers.remove(&name) {
                old.abort();
            }
            if followers.len() >= MAX_FOLLOWED {
                tracing::debug!(session = %id, service = %name, "too many services to follow their logs");
                continue;
            }
            let h = tasks.spawn(follow(
                app.clone(),
                id.clone(),
                guest.clone(),
                name.clone(),
                None,
            ));
            followers.insert(name, h);
        }
    }
}

/// The shared shell's pty.
const SHELL: &str = "main";

/// Scans the shared shell's output as it is written, attached to its pty
/// like a terminal that never types; attaches again when the shell is
/// restarted or the attachment fell behind. Waits without a timer while the
/// shell is quiet and nothing is pending.
async fn follow_shell(app: App, id: String, guest: GuestClient) {
    let mut scanner = ShellScanner::new(format!("shell:{SHELL}"), firepit_wire::guest::SHELL_MARK);
    let mut failures = 0u32;
    while failures < 5 {
        let Ok(mut pty) = guest.pty_attach(SHELL, None).await else {
            // Not there (yet: restarted a moment ago), or the guest is gone.
            if guest.is_closed() {
                return;
            }
            failures += 1;
            tokio::time::sleep(Duration::from_millis(200 << failures)).await;
            continue;
        };
        failures = 0;
        // What the shell wrote before: seen by an earlier follower, or before the session's
        // closed loop began.
        let mut skip = pty.info().scrollback;
        let mut pending = false;
        loop {
            let next = if pending {
                match tokio::time::timeout(QUIET, pty.next_event()).await {
                    Ok(r) => r,
                    Err(_) => {
                        pending = false;
                        for p in scanner.flush() {
                            report(&app, &id, p).await;
                        }
                        continue;
                    }
                }
            } else {
                pty.next_event().await
            };
            let data = match next {
                Ok(Some(firepit_guest_client::PtyEvent::Output(data))) => data,
                // The shell ended (it is started again) or the attachment fell behind.
                Ok(Some(_)) | Ok(None) | Err(_) => break,
            };
            let data = if skip > 0 {
                let n = skip.min(data.len() as u64) as usize;
                skip -= n as u64;
                data.slice(n..)
            } else {
                data
            };
            if data.is_empty() {
                continue;
            }
            pending = true;
            for p in scanner.push(&data) {
                report(&app, &id, p).await;
            }
        }
        for p in scanner.flush() {
            report(&app, &id, p).await;
        }
        if guest.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Scans one service's log as it is written.
async fn follow(app: App, id: String, guest: GuestClient, name: String, tail: Option<u64>) {
    let Ok(mut logs) = guest.service_logs(&name, tail, true).await else {
        return;
    };
    let mut scanner = LogScanner::new(format!("service:{name}"));
    let mut partial = String::new();
    loop {
        // A quiet log matters only with something to flush: otherwise wait
        // for the next chunk without a timer (an idle service wakes nothing).
        let next = async {
            if partial.is_empty() && !scanner.has_pending() {
                Ok(logs.next().await)
            } else {
                tokio::time::timeout(QUIET, logs.next()).await
            }
        };
        let problems = match next.await {
            Ok(Ok(Some(chunk))) => {
                partial.push_str(&String::from_utf8_lossy(&chunk.data));
                let mut out = Vec::new();
                while let Some(i) = partial.find('\n') {
                    let line: String = partial.drain(..=i).collect();
                    out.extend(scanner.push_line(&line));
                }
                if partial.len() > PARTIAL_LIMIT {
                    out.extend(scanner.push_line(&std::mem::take(&mut partial)));
                }
                out
            }
            Ok(_) => {
                let mut out = scanner.push(&std::mem::take(&mut partial));
                out.extend(scanner.flush());
                for p in out {
                    report(&app, &id, p).await;
                }
                return;
            }
            Err(_) => {
                let mut out = Vec::new();
                if !partial.is_empty() {
                    out.extend(scanner.push_line(&std::mem::take(&mut partial)));
                }
                out.extend(scanner.flush());
                out
            }
        };
        for p in problems {
            report(&app, &id, p).await;
        }
    }
}

/// Turns the browser's error reports and its going away into problems.
async fn watch_browser(app: App, id: String, guest: GuestClient) {
    let browser = app.browser(&id, &guest);
    let mut current = browser.current();
    loop {
        let page = current.borrow_and_update().clone();
        if let Some(page) = page {
            let mut obs = page.observe();
            loop {
                tokio::select! {
                    o = obs.recv() => match o {
                        Ok(Observation::Report(r)) => {
                            if let Some(p) = from_report(&r, &page.location().0) {
                                report(&app, &id, p).await;
                            }
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                    reason = page.closed() => {
                        if !browser.stopped_on_purpose() {
                            let p = Problem::new(
                                "browser",
                                "browser_crash",
                                "the browser went away (it crashed or was killed); the next browser call starts it again",
                                &reason,
                            );
                            report(&app, &id, p).await;
                        }
                        break;
                    }
                }
            }
        }
        if current.changed().await.is_err() {
            return;
        }
    }
}
