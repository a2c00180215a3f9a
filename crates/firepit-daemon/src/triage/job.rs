//! Running a triage job: the issues listed, each worked on in a session of
//! its own (the agent, the tests, a commit, one atomic push, a pull request,
//! a comment), `parallel` at a time.

use std::collections::HashMap;
use std::sync::Arc;

use firepit_forge::{Issue, NewPull, RepoName};
use firepit_guest_client::GuestClient;
use firepit_wire::agent::TranscriptItem;
use firepit_wire::api::CreateSession;
use firepit_wire::events::EventKind;
use firepit_wire::forge::{IssueOutcome, TriageIssue, TriageState};
use firepit_wire::guest::ExecRequest;

use crate::forge::{run, tail};
use crate::{App, Error};

use super::text::{branch, pull_body, task};
use super::{DEFAULT_MAX, DEFAULT_PARALLEL, now};

/// Longest the tests may run.
const TEST_TIMEOUT_MS: u64 = 20 * 60 * 1000;
/// Test output kept for the report and the pull request.
const TEST_TAIL: usize = 3000;

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

impl App {
    pub(super) async fn run_job(&self, id: &str, repo: RepoName) {
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
