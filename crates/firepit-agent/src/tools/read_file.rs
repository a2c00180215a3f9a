//! `read_file`: a file's lines, numbered, optionally a range of them.

use serde::Deserialize;
use serde_json::json;

use super::ToolContext;
use crate::message::ToolDef;

/// At most this many bytes of a file are read (line ranges apply within them).
const MAX_READ: u64 = 8 << 20;

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "read_file",
        description: "Read a text file. Lines are prefixed with their number and a tab (the prefix is not part of the file). Use start_line/end_line (1-based, inclusive) for big files.",
        schema: json!({"type": "object", "properties": {
            "path": {"type": "string"},
            "start_line": {"type": "integer", "minimum": 1},
            "end_line": {"type": "integer", "minimum": 1}
        }, "required": ["path"]}),
    }
}

#[derive(Deserialize)]
pub(super) struct Args {
    path: String,
    start_line: Option<usize>,
    end_line: Option<usize>,
}

pub(super) async fn run(ctx: &ToolContext, a: Args) -> Result<String, String> {
    let path = ctx.path(&a.path);
    let mut r = ctx
        .guest
        .read_file(&path)
        .await
        .map_err(|e| format!("reading {path}: {e}"))?;
    let mut data = Vec::new();
    while let Some(chunk) = r
        .next_chunk()
        .await
        .map_err(|e| format!("reading {path}: {e}"))?
    {
        data.extend_from_slice(&chunk);
        if data.len() as u64 >= MAX_READ {
            break;
        }
    }
    if data.iter().take(8000).any(|b| *b == 0) {
        return Err(format!("{path} is a binary file ({} bytes)", r.size()));
    }
    let text = String::from_utf8_lossy(&data);
    let lines: Vec<&str> = text.lines().collect();
    let total = lines.len();
    let start = a.start_line.unwrap_or(1).max(1);
    let end = a.end_line.unwrap_or(total).min(total);
    if total == 0 {
        return Ok(format!("{path} is empty"));
    }
    if start > total {
        return Err(format!(
            "{path} has {total} lines; start_line {start} is past the end"
        ));
    }
    let mut out = String::new();
    if start > 1 || end < total {
        out.push_str(&format!("[{path}: lines {start}-{end} of {total}]\n"));
    }
    for (i, l) in lines[start - 1..end.max(start - 1)].iter().enumerate() {
        out.push_str(&format!("{:>6}\t{l}\n", start + i));
    }
    Ok(out)
}
