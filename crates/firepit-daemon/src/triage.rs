//! Triage jobs: a repository's open issues turned into pull requests, in the
//! daemon, so the work goes on while the person's laptop is closed.
//!
//! A job lists the open issues (with a label, at most `max`) and the open
//! pull requests; an issue whose branch `firepit/issue-<n>` already has an
//! open pull request is skipped. The others are worked on, `parallel` at a
//! time, each on its own: a session made from the repository, the branch,
//! the agent given the issue's text and comments, the tests run, a commit,
//! one atomic push, a pull request that closes the issue and says what
//! changed and which tests ran, and a comment on the issue. A failure ends
//! that issue alone, before anything is pushed; a pull request that cannot
//! be opened takes its pushed branch back with it.
//!
//! The job and its progress lines live in the store (`store/forge.rs`); a
//! daemon restart marks a running job interrupted (its sessions stay).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use firepit_forge::{Issue, NewPull, RepoName};
use firepit_guest_client::GuestClient;
use firepit_wire::agent::TranscriptItem;
use firepit_wire::api::CreateSession;
use firepit_wire::events::EventKind;
use firepit_wire::forge::{
    CreateTriage, IssueOutcome, TriageIssue, TriageJob, TriageProgress, TriageState,
};
use firepit_wire::guest::ExecRequest;

use crate::forge::{run, tail};
use crate::{App, Error};

/// Issues per job when the request names no maximum.
const DEFAULT_MAX: u32 = 10;
/// Largest `max`.
const MAX_MAX: u32 = 100;
/// Issues at once when the request does not say.
const DEFAULT_PARALLEL: u32 = 2;
/// Largest `parallel`.
const MAX_PARALLEL: u32 = 8;
/// The issue's text and comments given to the agent are cut to this.
const TASK_LIMIT: usize = 32 << 10;
/// Longest the tests may run.
const TEST_TIMEOUT_MS: u64 = 20 * 60 * 1000;
/// Test output kept for the report and the pull request.
const TEST_TAIL: usize = 3000;

/// The jobs that run in this daemon.
pub struct Jobs {
    /// Serialises read-modify-write of job records.
    write: Mutex<()>,
    /// Bumped on every change, so progress streams wake.
    changed: tokio::sync::watch::Sender<u64>,
    tasks: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs {
            write: Mutex::new(()),
            changed: tokio::sync::watch::channel(0).0,
            tasks: Mutex::new(HashMap::new()),
        }
    }
}

impl Jobs {
    /// A receiver that sees every change to any job.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// What a finished issue reports.
struct Done {
    pull_url: String,
    tests: String,
    message: Option<String>,
}

/// Why an issue failed, and the tests if they ran.
struct Failed {
    message: String,
    tests: Option<String>,
}

impl From<Error> for Failed {
    fn from(e: Error) -> Failed {
        Failed {
            message: crate::error::chain(&e),
            tests: None,
        }
    }
}

fn failed(message: impl Into<String>) -> Failed {
    Failed {
        message: message.into(),
        tests: None,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The branch of issue `n`.
pub fn branch(n: u64) -> String {
    format!("firepit/issue-{n}")
}

/// The agent's task: the issue's text and comments, and what firepit does
/// after it (so it does not commit or push itself).
pub fn task(repo: &RepoName, issue: &Issue, comments: &[firepit_forge::Comment]) -> String {
    let mut t = format!(
        "Work on issue #{} of {repo}: {}\n\n{}\n",
        issue.number,
        issue.title,
        issue.body.as_deref().unwrap_or("(no description)").trim()
    );
    if !comments.is_empty() {
        t.push_str("\nComments on the issue, oldest first:\n");
        for c in comments {
            t.push_str(&format!("\n@{}:\n{}\n", c.user, c.body.trim()));
        }
    }
    if t.len() > TASK_LIMIT {
        let mut end = TASK_LIMIT;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
        t.push_str("\n[… the issue is longer; this is its start]\n");
    }
    t.push_str(&format!(
        "\nThe repository is cloned at /workspace, on the branch {}. Make the change the issue asks for, \
         run the project's tests, and finish with a short summary of what you changed. Do not commit or push: \
         firepit commits, pushes and opens the pull request when you are done.",
        branch(issue.number)
    ));
    t
}

/// The pull request's description.
pub fn pull_body(
    issue: u64,
    summary: &str,
    diffstat: &str,
    tests: &str,
    test_tail: &str,
) -> String {
    let mut b = format!("Closes #{issue}.\n\n## What changed\n\n");
    b.push_str(if summary.trim().is_empty() {
        "(the agent gave no summary)"
    } else {
        summary.trim()
    });
    if !diffstat.trim().is_empty() {
        b.push_str(&format!("\n\n```\n{}\n```", diffstat.trim_end()));
    }
    b.push_str(&format!("\n\n## Tests\n\n{tests}\n"));
    if !test_tail.trim().is_empty() {
        b.push_str(&format!(
            "\n<details><summary>test output (end)</summary>\n\n```\n{}\n```\n</details>\n",
            test_tail.trim_end()
        ));
    }
    b.push_str("\n---\nOpened by firepit's agent from a triage run.\n");
    b
}

impl App {
    fn jobs(&self) -> &Jobs {
        &self.0.triage
    }

    /// Starts a triage job; it runs in the daemon until every issue has an outcome.
    pub async fn start_triage(&self, req: CreateTriage) -> Result<TriageJob, Error> {
        let max = req.max.unwrap_or(DEFAULT_MAX);
        let parallel = req.parallel.unwrap_or(DEFAULT_PARALLEL);
        if !(1..=MAX_MAX).contains(&max) {
            return Err(Error::BadRequest(format!("max must be 1 to {MAX_MAX}")));
        }
        if !(1..=MAX_PARALLEL).contains(&parallel) {
            return Err(Error::BadRequest(format!(
                "parallel must be 1 to {MAX_PARALLEL}"
            )));
        }
        if let Some(l) = &req.label
            && (crate::api::valid::blank(l) || l.chars().count() > 100)
        {
            return Err(Error::BadRequest(
                "the label must be 1 to 100 characters".into(),
            ));
        }
        if self.agents().model().is_none() {
            return Err(Error::NoModel);
        }
        let repo = self.check_repo(&req.repo).await?;
        let job = TriageJob {
            id: format!("tr{}", crate::sessions::new_id()),
            request: CreateTriage {
                repo: repo.to_string(),
                max: Some(max),
                parallel: Some(parallel),
                ..req
            },
            state: TriageState::Running,
            created_at: now(),
            finished_at: None,
            error: None,
            issues: Vec::new(),
        };
        self.store().put_triage_job(&job)?;
        let app = self.clone();
        let id = job.id.clone();
        let task = tokio::spawn(async move {
            app.run_job(&id, repo).await;
            app.jobs().tasks.lock().expect("tasks").remove(&id);
        });
        self.jobs()
            .tasks
            .lock()
            .expect("tasks")
            .insert(job.id.clone(), task.abort_handle());
        Ok(job)
    }

    /// A triage job.
    pub fn triage_job(&self, id: &str) -> Result<TriageJob, Error> {
        self.store()
            .triage_job(id)?
            .ok_or_else(|| Error::TriageNotFound(id.to_owned()))
    }

    /// A triage job's progress after `since`, and whether the job has ended.
    pub fn triage_progress(
        &self,
        id: &str,
        since: u64,
    ) -> Result<(Vec<TriageProgress>, bool), Error> {
        // Read the state first: a line appended after it is caught next time.
        let ended = self.triage_job(id)?.state != TriageState::Running;
        Ok((self.store().triage_progress(id, since)?, ended))
    }

    /// Waits for any change to any job.
    pub fn triage_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.jobs().watch()
    }

    /// After a restart: jobs that were running are interrupted.
    pub(crate) fn interrupt_triage(&self) -> Result<(), Error> {
        for id in self.store().interrupt_triage_jobs()? {
            self.progress(&id, None, "the daemon restarted: this job was interrupted");
        }
        Ok(())
    }

    fn progress(&self, job: &str, issue: Option<u64>, text: &str) {
        if let Err(e) = self.store().append_triage_progress(job, issue, text) {
            tracing::error!(job, error = %crate::error::chain(&e), "could not record triage progress");
        }
        self.jobs().bump();
    }

    fn update_job(&self, id: &str, f: impl FnOnce(&mut TriageJob)) {
        let _g = self.jobs().write.lock().expect("triage write");
        match self.store().triage_job(id) {
            Ok(Some(mut job)) => {
                f(&mut job);
                if let Err(e) = self.store().put_triage_job(&job) {
                    tracing::error!(job = id, error = %crate::error::chain(&e), "could not store a triage job");
                }
            }
            _ => tracing::error!(job = id, "a triage job vanished from the store"),
        }
        drop(_g);
        self.jobs().bump();
    }

    fn update_issue(&self, id: &str, n: u64, f: impl FnOnce(&mut TriageIssue)) {
        self.update_job(id, |job| {
            if let Some(i) = job.issues.iter_mut().find(|i| i.number == n) {
                f(i);
            }
        });
    }

    async fn run_job(&self, id: &str, repo: RepoName) {
        let Some(job) = self.store().triage_job(id).ok().flatten() else {
            return;
        };
        let req = job.request;
        let label = req.label.as_deref();
        self.progress(
            id,
            None,
            &format!(
                "listing the open issues of {repo}{}",
                label
                    .map(|l| format!(" labelled {l:?}"))
                    .unwrap_or_default()
            ),
        );
        let listed = async {
            let info = self.forge().repo(&repo).await?;
            let issues = self
                .forge()
                .open_issues(&repo, label, req.max.unwrap_or(DEFAULT_MAX) as usize)
                .await?;
            let pulls = self.forge().open_pulls(&repo).await?;
            Ok::<_, firepit_forge::Error>((info, issues, pulls))
        }
        .await;
        let (info, issues, pulls) = match listed {
            Ok(x) => x,
            Err(e) => {
                let msg = crate::error::chain(&e);
                self.progress(id, None, &format!("failed: {msg}"));
                self.update_job(id, |j| {
                    j.state = TriageState::Failed;
                    j.error = Some(msg);
                    j.finished_at = Some(now());
                });
                return;
            }
        };
        let open: HashMap<String, String> = pulls
            .into_iter()
            .map(|p| (p.head.branch, p.html_url))
            .collect();
        let entries: Vec<TriageIssue> = issues
            .iter()
            .map(|i| {
                let b = branch(i.number);
                let existing = open.get(&b).cloned();
                TriageIssue {
                    number: i.number,
                    title: i.title.clone(),
                    outcome: if existing.is_some() {
                        IssueOutcome::Skipped
                    } else {
                        IssueOutcome::Pending
                    },
                    session: None,
                    branch: b,
                    message: existing
                        .as_ref()
                        .map(|_| "an open firepit pull request exists already".to_owned()),
                    pull_url: existing,
                    tests: None,
                }
            })
            .collect();
        self.progress(
            id,
            None,
            &format!(
                "{} open issue(s); {} skipped (an open firepit pull request exists)",
                entries.len(),
                entries
                    .iter()
                    .filter(|e| e.outcome == IssueOutcome::Skipped)
                    .count()
            ),
        );
        for e in entries
            .iter()
            .filter(|e| e.outcome == IssueOutcome::Skipped)
        {
            self.progress(
                id,
                Some(e.number),
                &format!(
                    "skipped: {} is open already",
                    e.pull_url.as_deref().unwrap_or("a pull request")
                ),
            );
        }
        let todo: Vec<Issue> = issues
            .into_iter()
            .filter(|i| !open.contains_key(&branch(i.number)))
            .collect();
        self.update_job(id, |j| j.issues = entries);

        let permits = Arc::new(tokio::sync::Semaphore::new(
            req.parallel.unwrap_or(DEFAULT_PARALLEL) as usize,
        ));
        let mut set = tokio::task::JoinSet::new();
        for issue in todo {
            let (app, id, repo, base) = (
                self.clone(),
                id.to_owned(),
                repo.clone(),
                info.default_branch.clone(),
            );
            let image = req.image.clone();
            let permits = permits.clone();
            set.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                app.run_issue(&id, &repo, &base, image, issue).await;
            });
        }
        while set.join_next().await.is_some() {}

        let mut summary = String::new();
        self.update_job(id, |j| {
            j.state = TriageState::Finished;
            j.finished_at = Some(now());
            let count = |o| j.issues.iter().filter(|i| i.outcome == o).count();
            summary = format!(
                "done: {} pull request(s) opened, {} failed, {} skipped",
                count(IssueOutcome::Opened),
                count(IssueOutcome::Failed),
                count(IssueOutcome::Skipped)
            );
        });
        self.progress(id, None, &summary);
    }

    async fn run_issue(
        &self,
        job: &str,
        repo: &RepoName,
        base: &str,
        image: Option<String>,
        issue: Issue,
    ) {
        let n = issue.number;
        self.update_issue(job, n, |i| i.outcome = IssueOutcome::Working);
        self.progress(job, Some(n), &format!("working on #{n}: {}", issue.title));
        match self.work_on(job, repo, base, image, &issue).await {
            Ok(done) => {
                self.progress(
                    job,
                    Some(n),
                    &format!("pull request opened: {}", done.pull_url),
                );
                self.update_issue(job, n, |i| {
                    i.outcome = IssueOutcome::Opened;
                    i.pull_url = Some(done.pull_url);
                    i.tests = Some(done.tests);
                    i.message = done.message;
                });
            }
            Err(f) => {
                let message =
                    firepit_forge::redact(&f.message, self.forge().config().token.as_ref());
                self.progress(job, Some(n), &format!("failed: {message}"));
                self.update_issue(job, n, |i| {
                    i.outcome = IssueOutcome::Failed;
                    i.message = Some(message);
                    i.tests = f.tests;
                });
            }
        }
    }

    /// Notes a step in the job's progress and the session's event log.
    fn step(&self, job: &str, n: u64, session: &str, text: &str) {
        self.progress(job, Some(n), text);
        let _ = self.events().append(
            session,
            EventKind::Note {
                text: format!("triage #{n}: {text}"),
            },
        );
    }

    async fn work_on(
        &self,
        job: &str,
        repo: &RepoName,
        base: &str,
        image: Option<String>,
        issue: &Issue,
    ) -> Result<Done, Failed> {
        let n = issue.number;
        let br = branch(n);
        let comments = self.forge().comments(repo, n).await.map_err(Error::from)?;
        let session = self
            .create_session(CreateSession {
                image,
                repo: Some(repo.to_string()),
                ..Default::default()
            })
            .await?;
        let sid = session.id.clone();
        self.update_issue(job, n, |i| i.session = Some(sid.clone()));
        self.step(
            job,
            n,
            &sid,
            &format!("session {sid}: {repo} cloned into /workspace"),
        );
        let guest = self.guest(&sid).await?;
        let base_sha = git(&guest, &["checkout", "-q", "-b", &br])
            .await
            .and(git(&guest, &["rev-parse", "HEAD"]).await)
            .map_err(|e| failed(format!("making the branch {br}: {e}")))?;
        let base_sha = base_sha.trim().to_owned();

        // The agent.
        self.step(job, n, &sid, "the agent works on the issue");
        let agent = self.agent(&sid).await?;
        let before = self.transcript(&sid)?.len();
        agent.send(task(repo, issue, &comments)).await;
        agent.wait_idle().await;
        let items = self.transcript(&sid)?;
        let this_run = items.get(before..).unwrap_or_default();
        let mut summary = String::new();
        let mut outcome = None;
        let mut error = None;
        for item in this_run {
            match item {
                TranscriptItem::AssistantMessage { text, .. } if !text.trim().is_empty() => {
                    summary = text.clone();
                }
                TranscriptItem::Error { message } => error = Some(message.clone()),
                TranscriptItem::RunFinished { reason } => outcome = Some(reason.clone()),
                TranscriptItem::RunStopped => outcome = Some("stopped".into()),
                _ => {}
            }
        }
        match outcome.as_deref() {
            Some("done") => {}
            other => {
                return Err(failed(format!(
                    "the agent did not finish ({}){}",
                    other.unwrap_or("no end recorded"),
                    error.map(|e| format!(": {e}")).unwrap_or_default()
                )));
            }
        }

        // Is there a change at all?
        let dirty = git(&guest, &["status", "--porcelain"])
            .await
            .map_err(|e| failed(format!("reading the changes: {e}")))?;
        let ahead = git(
            &guest,
            &["rev-list", "--count", &format!("{base_sha}..HEAD")],
        )
        .await
        .map_err(|e| failed(format!("reading the commits: {e}")))?;
        if dirty.trim().is_empty() && ahead.trim() == "0" {
            return Err(failed("the agent made no change; nothing to push"));
        }

        // The tests.
        let detected = run(
            &guest,
            in_workspace(ExecRequest::shell(firepit_agent::DETECT_TESTS)),
        )
        .await
        .map_err(Failed::from)?;
        let command = detected.stdout.text().trim().to_owned();
        let (tests, test_tail) = if command.is_empty() {
            ("No tests found (no script/test, Makefile test target, package.json, mix.exs, Cargo.toml, go.mod or tests/).".to_owned(), String::new())
        } else {
            self.step(job, n, &sid, &format!("running the tests: {command}"));
            let mut req = in_workspace(ExecRequest::shell(format!("{command} 2>&1")));
            req.timeout_ms = Some(TEST_TIMEOUT_MS);
            let started = std::time::Instant::now();
            let out = run(&guest, req).await.map_err(Failed::from)?;
            let output = tail(&out.stdout.to_bytes(), TEST_TAIL);
            let code = if out.status.timed_out {
                None
            } else {
                out.status.code
            };
            crate::closed_loop::record_test_run(
                self,
                &sid,
                &firepit_agent::TestRun {
                    command: command.clone(),
                    exit_code: code,
                    summary: firepit_problems::tests::summarize(&out.stdout.text(), code),
                    duration_ms: started.elapsed().as_millis() as u64,
                    output_tail: output.clone(),
                },
            );
            if !out.status.success() {
                let tests = format!("`{command}` failed ({})", describe(&out.status));
                return Err(Failed {
                    message: format!(
                        "the tests failed, so nothing was pushed: `{command}`:\n{output}"
                    ),
                    tests: Some(tests),
                });
            }
            (format!("`{command}` passed."), output)
        };

        // Commit and push, all or nothing.
        if !dirty.trim().is_empty() {
            git(&guest, &["add", "-A"])
                .await
                .map_err(|e| failed(format!("staging: {e}")))?;
            let msg = format!("{} (#{n})\n\nWork on #{n} by firepit's agent.", issue.title);
            git(&guest, &["commit", "-q", "-m", &msg])
                .await
                .map_err(|e| failed(format!("committing: {e}")))?;
        }
        let diffstat = git(&guest, &["diff", "--stat", &format!("{base_sha}..HEAD")])
            .await
            .unwrap_or_default();
        self.step(job, n, &sid, &format!("pushing {br}"));
        let refspec = format!("HEAD:refs/heads/{br}");
        git(&guest, &["push", "--atomic", "--quiet", "origin", &refspec])
            .await
            .map_err(|e| Failed {
                message: format!("the push of {br} was rejected: {e}"),
                tests: Some(tests.clone()),
            })?;

        // The pull request, and the comment on the issue.
        let pull = NewPull {
            title: format!("{} (#{n})", issue.title),
            head: br.clone(),
            base: base.to_owned(),
            body: pull_body(n, &summary, &diffstat, &tests, &test_tail),
        };
        let pr = match self.forge().create_pull(repo, &pull).await {
            Ok(pr) => pr,
            Err(e) => {
                // Take the pushed branch back: nothing is left half-done.
                let undone = git(&guest, &["push", "--quiet", "origin", "--delete", &br]).await;
                return Err(Failed {
                    message: format!(
                        "opening the pull request failed ({}){}",
                        crate::error::chain(&e),
                        match undone {
                            Ok(_) => format!("; the branch {br} was deleted again"),
                            Err(u) => format!("; deleting the branch {br} failed too: {u}"),
                        }
                    ),
                    tests: Some(tests),
                });
            }
        };
        let _ = self.events().append(
            &sid,
            EventKind::Note {
                text: format!(
                    "triage #{n}: pull request #{} opened: {}",
                    pr.number, pr.html_url
                ),
            },
        );
        let note = format!(
            "firepit's agent opened {} for this issue.\n\nTests: {tests}",
            if pr.html_url.is_empty() {
                format!("#{}", pr.number)
            } else {
                pr.html_url.clone()
            }
        );
        let message = match self.forge().comment(repo, n, &note).await {
            Ok(_) => None,
            Err(e) => Some(format!(
                "the pull request is open, but commenting on the issue failed: {}",
                crate::error::chain(&e)
            )),
        };
        Ok(Done {
            pull_url: pr.html_url,
            tests,
            message,
        })
    }
}

/// How a command ended, in words.
fn describe(s: &firepit_wire::guest::ExitStatus) -> String {
    if s.timed_out {
        "timed out".into()
    } else if let Some(c) = s.code {
        format!("exit {c}")
    } else if let Some(sig) = s.signal {
        format!("killed by signal {sig}")
    } else {
        "ended".into()
    }
}

fn in_workspace(mut req: ExecRequest) -> ExecRequest {
    req.cwd = Some("/workspace".into());
    req.env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
    req
}

/// Runs git in `/workspace`; its stdout, or its stderr as the error.
async fn git(guest: &GuestClient, args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["git"];
    argv.extend_from_slice(args);
    let out = run(guest, in_workspace(ExecRequest::argv(argv)))
        .await
        .map_err(|e| crate::error::chain(&e))?;
    if out.status.success() {
        Ok(out.stdout.text())
    } else {
        Err(tail(&out.stderr.to_bytes(), 1500))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pull_request_links_the_issue_and_names_the_tests() {
        let b = pull_body(
            7,
            "Fixed the greeting.",
            " a.py | 2 +-",
            "`make test` passed.",
            "ok",
        );
        assert!(b.starts_with("Closes #7."), "{b}");
        assert!(
            b.contains("Fixed the greeting.") && b.contains("a.py | 2 +-"),
            "{b}"
        );
        assert!(b.contains("## Tests\n\n`make test` passed."), "{b}");
        let empty = pull_body(7, " ", "", "No tests found.", "");
        assert!(empty.contains("(the agent gave no summary)"), "{empty}");
        assert!(!empty.contains("<details>"), "{empty}");
    }

    #[test]
    fn the_task_carries_the_issue_and_its_comments_bounded() {
        let repo: RepoName = "o/r".parse().unwrap();
        let issue: Issue = serde_json::from_value(serde_json::json!({
            "number": 3, "title": "Greet", "body": "Say hello"
        }))
        .unwrap();
        let c: firepit_forge::Comment = serde_json::from_value(serde_json::json!({
            "user": {"login": "ann"}, "body": "in French please"
        }))
        .unwrap();
        let t = task(&repo, &issue, &[c]);
        assert!(
            t.contains("issue #3 of o/r: Greet") && t.contains("Say hello"),
            "{t}"
        );
        assert!(t.contains("@ann:\nin French please"), "{t}");
        assert!(t.contains("firepit/issue-3"), "{t}");
        let long: Issue = serde_json::from_value(serde_json::json!({
            "number": 4, "title": "Long", "body": "é".repeat(40_000)
        }))
        .unwrap();
        assert!(task(&repo, &long, &[]).len() < TASK_LIMIT + 1000);
    }
}
