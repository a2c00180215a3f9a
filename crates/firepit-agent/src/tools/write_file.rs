//! `write_file`: creates or replaces a file (parents created).

use bytes::Bytes;
use firepit_guest_client::WriteOptions;
use serde::Deserialize;
use serde_json::json;

use super::ToolContext;
use crate::message::ToolDef;

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "write_file",
        description: "Create or overwrite a file with the given content (parent directories are created). Prefer edit_file for changes to existing files.",
        schema: json!({"type": "object", "properties": {
            "path": {"type": "string", "description": "Absolute, or relative to the repository."},
            "content": {"type": "string"}
        }, "required": ["path", "content"]}),
    }
}

#[derive(Deserialize)]
pub(super) struct Args {
    path: String,
    content: String,
}

pub(super) async fn run(ctx: &ToolContext, a: Args) -> Result<String, String> {
    let path = ctx.path(&a.path);
    let n = a.content.len();
    ctx.guest
        .write_file_all(
            &path,
            Bytes::from(a.content),
            WriteOptions {
                create_parents: true,
                mode: None,
            },
        )
        .await
        .map_err(|e| format!("writing {path}: {e}"))?;
    Ok(format!("wrote {n} bytes to {path}"))
}
