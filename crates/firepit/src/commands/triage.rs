//! `firepit triage owner/name [--label L] [--max N] [--parallel P]`: starts a
//! triage job in the daemon and follows its progress, then prints a summary
//! of every issue. The job goes on in the daemon if this command ends.
//! Exits 1 when an issue failed or the job did.

use std::io::Write;
use std::ops::ControlFlow;

use anyhow::{Context, Result};
use firepit_wire::forge::{CreateTriage, IssueOutcome, TriageJob, TriageProgress, TriageState};
use reqwest::Method;

use crate::cli::TriageArgs;
use crate::client::{Client, ndjson};

/// `firepit triage`
pub async fn triage(client: &Client, args: &TriageArgs) -> Result<i32> {
    let id = match &args.follow {
        Some(id) => id.clone(),
        None => {
            let req = CreateTriage {
                repo: crate::settings::repo_name(&args.repo)?,
                label: args.label.clone(),
                max: Some(args.max),
                parallel: Some(args.parallel),
                image: args.image.clone(),
            };
            let resp = client
                .send(client.request(Method::POST, "/v1/triage").json(&req))
                .await?;
            let job: TriageJob = resp.json().await.context("reading the new job")?;
            if args.detach {
                println!("{}", job.id);
                return Ok(0);
            }
            println!(
                "triage {} on {}: follow again with `firepit triage {} --follow {}`",
                job.id, job.request.repo, job.request.repo, job.id
            );
            job.id
        }
    };
    let resp = client
        .send(client.request(Method::GET, &format!("/v1/triage/{id}/progress")))
        .await?;
    ndjson(resp, "triage progress", |p: TriageProgress| {
        let mut out = std::io::stdout().lock();
        match p.issue {
            Some(n) => writeln!(out, "#{n:<5} {}", p.text)?,
            None => writeln!(out, "       {}", p.text)?,
        }
        Ok(ControlFlow::<()>::Continue(()))
    })
    .await?;
    let resp = client
        .send(client.request(Method::GET, &format!("/v1/triage/{id}")))
        .await?;
    let job: TriageJob = resp.json().await.context("reading the job")?;
    print_summary(&job)?;
    let failed = job.state != TriageState::Finished
        || job.issues.iter().any(|i| i.outcome == IssueOutcome::Failed);
    Ok(i32::from(failed))
}

fn print_summary(job: &TriageJob) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nsummary of {} ({}):", job.id, job.request.repo)?;
    if let Some(e) = &job.error {
        writeln!(out, "  the job failed: {e}")?;
    }
    if job.state == TriageState::Interrupted {
        writeln!(out, "  the job was interrupted by a daemon restart")?;
    }
    if job.issues.is_empty() && job.error.is_none() {
        writeln!(out, "  no open issues matched")?;
    }
    for i in &job.issues {
        let outcome = match i.outcome {
            IssueOutcome::Opened => "opened",
            IssueOutcome::Skipped => "skipped",
            IssueOutcome::Failed => "FAILED",
            IssueOutcome::Pending => "pending",
            IssueOutcome::Working => "working",
        };
        writeln!(out, "  #{:<5} {outcome:<8} {}", i.number, i.title)?;
        if let Some(url) = &i.pull_url {
            writeln!(out, "         pull request: {url}")?;
        }
        if let Some(t) = &i.tests {
            writeln!(out, "         tests: {t}")?;
        }
        if let Some(s) = &i.session {
            writeln!(out, "         session: {s}")?;
        }
        if let Some(m) = &i.message {
            let first: String = m.lines().take(12).collect::<Vec<_>>().join("\n           ");
            writeln!(out, "         {first}")?;
        }
    }
    Ok(())
}
