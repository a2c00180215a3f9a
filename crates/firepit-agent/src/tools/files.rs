//! `list_files` and `find_files`: a directory's entries, and files by name pattern.

use std::time::Duration;

use firepit_guest_client::FileKind;
use serde::Deserialize;
use serde_json::json;

use super::{ToolContext, quote};
use crate::message::ToolDef;

pub(super) fn def_list() -> ToolDef {
    ToolDef {
        name: "list_files",
        description: "List a directory's entries (directories end with /), with sizes.",
        schema: json!({"type": "object", "properties": {
            "path": {"type": "string", "description": "Default the repository."}
        }}),
    }
}

pub(super) fn def_find() -> ToolDef {
    ToolDef {
        name: "find_files",
        description: "Find files whose name matches a glob (e.g. '*.ex', 'router.ex') under a directory, skipping .git, node_modules, _build and deps. At most 500 results.",
        schema: json!({"type": "object", "properties": {
            "pattern": {"type": "string"},
            "path": {"type": "string", "description": "Default the repository."}
        }, "required": ["pattern"]}),
    }
}

#[derive(Deserialize)]
pub(super) struct ListArgs {
    path: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct FindArgs {
    pattern: String,
    path: Option<String>,
}

pub(super) async fn list(ctx: &ToolContext, a: ListArgs) -> Result<String, String> {
    let path = ctx.path(a.path.as_deref().unwrap_or(""));
    let entries = ctx
        .guest
        .list_dir(&path)
        .await
        .map_err(|e| format!("listing {path}: {e}"))?;
    if entries.is_empty() {
        return Ok(format!("{path} is empty"));
    }
    let mut out = format!("{path}:\n");
    for e in entries {
        match e.kind {
            FileKind::Dir => out.push_str(&format!("{}/\n", e.name)),
            FileKind::Symlink => out.push_str(&format!("{}@\n", e.name)),
            _ => out.push_str(&format!("{}\t{} bytes\n", e.name, e.size)),
        }
    }
    Ok(out)
}

pub(super) async fn find(ctx: &ToolContext, a: FindArgs) -> Result<String, String> {
    let path = ctx.path(a.path.as_deref().unwrap_or(""));
    let line = format!(
        "find {} \\( -name .git -o -name node_modules -o -name _build -o -name deps \\) -prune -o -name {} -print | head -n 500",
        quote(&path),
        quote(&a.pattern)
    );
    let (_, out, err) = ctx.sh(line, Duration::from_secs(60)).await?;
    if out.trim().is_empty() {
        return Ok(format!(
            "no files named {:?} under {path}{}",
            a.pattern,
            if err.is_empty() {
                String::new()
            } else {
                format!("\n{err}")
            }
        ));
    }
    Ok(out)
}
