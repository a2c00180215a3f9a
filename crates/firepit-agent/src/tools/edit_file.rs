//! `edit_file`: exact string replacement, refusing absent or ambiguous old text.

use bytes::Bytes;
use firepit_guest_client::WriteOptions;
use serde::Deserialize;
use serde_json::json;

use super::ToolContext;
use crate::message::ToolDef;

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "edit_file",
        description: "Replace old_text with new_text in a file. old_text must match the file exactly (whitespace included, without read_file's line-number prefixes) and exactly once, unless replace_all is true.",
        schema: json!({"type": "object", "properties": {
            "path": {"type": "string"},
            "old_text": {"type": "string"},
            "new_text": {"type": "string"},
            "replace_all": {"type": "boolean", "description": "Replace every match. Default false."}
        }, "required": ["path", "old_text", "new_text"]}),
    }
}

#[derive(Deserialize)]
pub(super) struct Args {
    path: String,
    old_text: String,
    new_text: String,
    #[serde(default)]
    replace_all: bool,
}

/// Replaces `old` by `new` in `content`: exactly one match, or every match with
/// `replace_all`. The error says what was wrong (no match, how many matches).
pub fn apply_edit(
    content: &str,
    old: &str,
    new: &str,
    replace_all: bool,
) -> Result<(String, usize), String> {
    if old.is_empty() {
        return Err(
            "old_text is empty; give the exact text to replace (use write_file to create a file)"
                .into(),
        );
    }
    let n = content.matches(old).count();
    match n {
        0 => {
            let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            let hint = if squash(content).contains(&squash(old)) {
                " (it matches if whitespace is ignored: check indentation and line breaks)"
            } else {
                ""
            };
            Err(format!(
                "old_text was not found{hint}; read the file again and copy the text exactly"
            ))
        }
        1 => Ok((content.replacen(old, new, 1), 1)),
        n if replace_all => Ok((content.replace(old, new), n)),
        n => Err(format!(
            "old_text matches {n} places; include more surrounding lines to make it unique, or set replace_all to true"
        )),
    }
}

/// The largest file `edit_file` edits (it holds the file, and the edited copy, whole).
const MAX_EDIT: u64 = 16 << 20;

pub(super) async fn run(ctx: &ToolContext, a: Args) -> Result<String, String> {
    let path = ctx.path(&a.path);
    let data = ctx
        .guest
        .read_file_all(&path, MAX_EDIT)
        .await
        .map_err(|e| match e {
            firepit_guest_client::Error::TooLarge { limit } => format!(
                "{path} is larger than {} MiB, too large for edit_file; change it with exec (sed, a script)",
                limit >> 20
            ),
            e => format!("reading {path}: {e}"),
        })?;
    let content =
        String::from_utf8(data.to_vec()).map_err(|_| format!("{path} is not UTF-8 text"))?;
    let (new, n) = apply_edit(&content, &a.old_text, &a.new_text, a.replace_all)
        .map_err(|e| format!("{path}: {e}"))?;
    let mode = ctx.guest.stat(&path).await.ok().map(|s| s.mode & 0o7777);
    ctx.guest
        .write_file_all(
            &path,
            Bytes::from(new),
            WriteOptions {
                create_parents: false,
                mode,
            },
        )
        .await
        .map_err(|e| format!("writing {path}: {e}"))?;
    Ok(format!(
        "replaced {n} occurrence{} in {path}",
        if n == 1 { "" } else { "s" }
    ))
}

#[cfg(test)]
mod tests {
    use super::apply_edit;

    #[test]
    fn matching() {
        assert_eq!(
            apply_edit("a b a", "b", "c", false).unwrap(),
            ("a c a".into(), 1)
        );
        let e = apply_edit("a b a", "a", "c", false).unwrap_err();
        assert!(e.contains("matches 2 places"), "{e}");
        assert_eq!(
            apply_edit("a b a", "a", "c", true).unwrap(),
            ("c b c".into(), 2)
        );
        let e = apply_edit("fn x() {\n    y\n}", "fn x() {\n  y\n}", "", false).unwrap_err();
        assert!(e.contains("not found") && e.contains("whitespace"), "{e}");
        let e = apply_edit("abc", "zzz", "", false).unwrap_err();
        assert!(e.contains("not found") && !e.contains("whitespace"), "{e}");
        assert!(apply_edit("abc", "", "x", false).is_err());
    }
}
