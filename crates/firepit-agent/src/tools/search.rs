//! `search`: text search with ripgrep when the image has it, else `grep -rn`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{ToolContext, quote};
use crate::message::ToolDef;

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "search",
        description: "Search file contents for a regular expression (ripgrep syntax if rg is installed, else grep's extended regex). Returns file:line:text, at most 300 lines.",
        schema: json!({"type": "object", "properties": {
            "pattern": {"type": "string"},
            "path": {"type": "string", "description": "File or directory; default the repository."},
            "glob": {"type": "string", "description": "Only files whose name matches, e.g. '*.ex'."},
            "ignore_case": {"type": "boolean"}
        }, "required": ["pattern"]}),
    }
}

#[derive(Deserialize)]
pub(super) struct Args {
    pattern: String,
    path: Option<String>,
    glob: Option<String>,
    #[serde(default)]
    ignore_case: bool,
}

pub(super) async fn run(ctx: &ToolContext, a: Args) -> Result<String, String> {
    let path = quote(&ctx.path(a.path.as_deref().unwrap_or("")));
    let pat = quote(&a.pattern);
    let i = if a.ignore_case { " -i" } else { "" };
    let (rg_glob, grep_glob) = match &a.glob {
        Some(g) => (
            format!(" -g {}", quote(g)),
            format!(" --include={}", quote(g)),
        ),
        None => (String::new(), String::new()),
    };
    let line = format!(
        "if command -v rg >/dev/null 2>&1; then rg -n --no-heading --color never{i}{rg_glob} -e {pat} {path}; \
         else grep -rnIE{i}{grep_glob} --exclude-dir=.git --exclude-dir=node_modules --exclude-dir=_build --exclude-dir=deps -e {pat} {path}; fi | head -n 300"
    );
    let (_, out, err) = ctx.sh(line, Duration::from_secs(60)).await?;
    if out.trim().is_empty() {
        if !err.trim().is_empty() {
            return Err(err);
        }
        return Ok(format!("no matches for {:?}", a.pattern));
    }
    Ok(out)
}
