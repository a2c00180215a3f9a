//! `git_status`, `git_diff`, `git_commit`: git in the working directory.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{ToolContext, quote};
use crate::message::ToolDef;

pub(super) fn def_status() -> ToolDef {
    ToolDef {
        name: "git_status",
        description: "git status of the repository (short format, with the branch).",
        schema: json!({"type": "object", "properties": {}}),
    }
}

pub(super) fn def_diff() -> ToolDef {
    ToolDef {
        name: "git_diff",
        description: "git diff of the repository: unstaged changes, or staged ones with staged=true; optionally of one path.",
        schema: json!({"type": "object", "properties": {
            "staged": {"type": "boolean"},
            "path": {"type": "string"}
        }}),
    }
}

pub(super) fn def_commit() -> ToolDef {
    ToolDef {
        name: "git_commit",
        description: "Stage every change (git add -A) and commit it with a message.",
        schema: json!({"type": "object", "properties": {
            "message": {"type": "string"}
        }, "required": ["message"]}),
    }
}

#[derive(Deserialize)]
pub(super) struct DiffArgs {
    #[serde(default)]
    staged: bool,
    path: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct CommitArgs {
    message: String,
}

async fn git(ctx: &ToolContext, line: String) -> Result<String, String> {
    let (code, out, err) = ctx.sh(line, Duration::from_secs(60)).await?;
    if code != Some(0) {
        return Err(format!("git failed (exit {code:?}):\n{err}{out}"));
    }
    Ok(format!("{out}{err}"))
}

pub(super) async fn status(ctx: &ToolContext) -> Result<String, String> {
    git(ctx, "git status --short --branch".into()).await
}

pub(super) async fn diff(ctx: &ToolContext, a: DiffArgs) -> Result<String, String> {
    let staged = if a.staged { " --staged" } else { "" };
    let path = a
        .path
        .map(|p| format!(" -- {}", quote(&p)))
        .unwrap_or_default();
    let out = git(ctx, format!("git --no-pager diff --no-color{staged}{path}")).await?;
    Ok(if out.is_empty() {
        "no changes".into()
    } else {
        out
    })
}

pub(super) async fn commit(ctx: &ToolContext, a: CommitArgs) -> Result<String, String> {
    git(
        ctx,
        format!(
            "name=$(git config user.name || echo 'firepit agent'); email=$(git config user.email || echo 'agent@firepit.invalid'); \
             git add -A && git -c user.name=\"$name\" -c user.email=\"$email\" commit -q -m {} && git log --oneline -1",
            quote(&a.message)
        ),
    )
    .await
}
