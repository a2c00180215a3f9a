//! Context management: bounding one tool output, trimming old outputs when the history
//! outgrows its budget, and compacting (dropping older turns with a note) when trimming
//! is not enough.
//!
//! Sizes are in bytes of text (about four per token). The policy, in order:
//! 1. Every tool output is cut to [`bound_output`]'s limit (head and tail kept, with a
//!    note of what was cut) before anyone sees it.
//! 2. [`trim`]: while over budget, the oldest tool outputs (all but the last
//!    [`KEEP_RECENT`] messages) are replaced by their first lines and a note. This is a
//!    view for the request; the history keeps the full (bounded) outputs.
//! 3. [`compaction`]: if still over budget, the oldest messages are dropped, at a clean
//!    boundary (never between a call and its result), and replaced by a note listing what
//!    the person asked for in them.

use crate::message::{Message, Part, Role};

/// Messages at the end of the history whose tool outputs are never trimmed.
pub const KEEP_RECENT: usize = 4;
/// What is left of a trimmed tool output.
const TRIMMED_KEEP: usize = 300;

/// Cuts `text` to at most about `limit` bytes: its head and tail, with a note of how much
/// was cut in between. Output that was already cut where it was collected (a command's
/// output is kept as head and tail, [`firepit_guest_client::Captured`]) carries such a
/// note; one that falls in the part cut now is counted in the new note, so the count
/// stays that of the original output.
pub fn bound_output(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let head_len = floor_boundary(text, limit * 2 / 3);
    let tail_start = ceil_boundary(text, text.len() - (limit - head_len.min(limit)));
    let tail_start = tail_start.max(head_len);
    let middle = &text[head_len..tail_start];
    let mut cut = middle.len() as u64;
    let mut cut_lines = middle.matches('\n').count() as u64;
    for (len, bytes, lines) in cut_notes(middle) {
        cut = cut - len as u64 + bytes;
        cut_lines += lines;
    }
    format!(
        "{}\n{}\n{}",
        &text[..head_len],
        firepit_guest_client::cut_note(cut, cut_lines),
        &text[tail_start..]
    )
}

/// The cut notes in `s` ([`firepit_guest_client::cut_note`]): each one's length and the
/// bytes and lines it stands for.
fn cut_notes(s: &str) -> Vec<(usize, u64, u64)> {
    const OPEN: &str = "[… ";
    const MID: &str = " bytes (";
    const CLOSE: &str = " lines) cut from the middle of this output …]";
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let mut found = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(OPEN) {
        let at = &rest[i + OPEN.len()..];
        rest = at;
        let n = digits(at);
        let Some(after) = at[n..].strip_prefix(MID) else {
            continue;
        };
        let m = digits(after);
        if n == 0 || m == 0 || !after[m..].starts_with(CLOSE) {
            continue;
        }
        let (Ok(bytes), Ok(lines)) = (at[..n].parse(), after[..m].parse()) else {
            continue;
        };
        found.push((OPEN.len() + n + MID.len() + m + CLOSE.len(), bytes, lines));
        rest = &after[m + CLOSE.len()..];
    }
    found
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Total size of `messages`.
pub fn size(messages: &[Message]) -> usize {
    messages.iter().map(Message::size).sum()
}

/// The history to send: old tool outputs trimmed, oldest first, until it fits `budget`
/// (or nothing more can be trimmed).
pub fn trim(messages: &[Message], budget: usize) -> Vec<Message> {
    let mut out = messages.to_vec();
    let mut total = size(&out);
    if total <= budget {
        return out;
    }
    let protected = out.len().saturating_sub(KEEP_RECENT);
    for m in &mut out[..protected] {
        for p in &mut m.parts {
            if total <= budget {
                return out;
            }
            if let Part::ToolResult { output, .. } = p
                && output.len() > TRIMMED_KEEP + 100
            {
                let keep = floor_boundary(output, TRIMMED_KEEP);
                let new = format!(
                    "{}\n[… older output trimmed to save context ({} bytes removed); run the tool again if you need it …]",
                    &output[..keep],
                    output.len() - keep
                );
                total = total - output.len() + new.len();
                *output = new;
            }
        }
    }
    out
}

/// When `messages` (already trimmed) exceed `budget`: how many messages to drop from the
/// start and the note to put in their place, so the rest fits in about three quarters of
/// the budget. `None` when it fits or no clean cut exists.
pub fn compaction(messages: &[Message], budget: usize) -> Option<(usize, String)> {
    if size(messages) <= budget || messages.len() < 3 {
        return None;
    }
    let target = budget * 3 / 4;
    let mut rest = size(messages);
    let mut cut = None;
    // Keep at least the last two messages.
    for k in 1..messages.len() - 1 {
        rest -= messages[k - 1].size();
        let clean = match messages[k].role {
            Role::Assistant => true,
            Role::User => !messages[k].is_tool_results(),
        };
        if clean {
            cut = Some(k);
            if rest <= target {
                break;
            }
        }
    }
    let k = cut?;
    let asks: Vec<String> = messages[..k]
        .iter()
        .filter(|m| m.role == Role::User && !m.is_tool_results())
        .flat_map(|m| &m.parts)
        .filter_map(|p| match p {
            Part::Text { text } if !text.starts_with("[Earlier conversation") => {
                Some(format!("- {}", bound_output(text, 400).replace('\n', " ")))
            }
            Part::Text { text } => Some(bound_output(text, 2000)),
            _ => None,
        })
        .collect();
    let mut note = format!(
        "[Earlier conversation ({k} messages) was dropped to keep the context small. What the person asked for in it:\n{}\nThe files on the machine still hold the work done; look at them (and git) when you need details.]",
        asks.join("\n")
    );
    note = bound_output(&note, 6000);
    Some((k, note))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ToolCall;

    #[test]
    fn bound_keeps_head_and_tail() {
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        let b = bound_output(&text, 16 * 1024);
        assert!(b.len() < 16 * 1024 + 200, "{}", b.len());
        assert!(b.starts_with("line 0\n"));
        assert!(b.ends_with("line 9999\n"));
        assert!(b.contains("bytes ("), "{b}");
        assert_eq!(bound_output("short", 100), "short");
        // Multi-byte characters at the cut points do not panic.
        let wide = "é".repeat(5000);
        let b = bound_output(&wide, 1001);
        assert!(b.contains("cut from the middle"));
    }

    #[test]
    fn a_cut_of_a_cut_counts_the_original_output() {
        let mut c = firepit_guest_client::Captured::new(100_000);
        let line = "0123456789abcdefghijklmnopqrstuvwxyz\n";
        for _ in 0..100_000 {
            c.push(line.as_bytes());
        }
        let total = 100_000 * line.len() as u64;
        let b = bound_output(&c.text(), 16 * 1024);
        assert!(b.len() < 16 * 1024 + 200, "{}", b.len());
        assert_eq!(b.matches("cut from the middle").count(), 1, "{b}");
        let shown = b.len() as u64 - firepit_guest_client::cut_note(0, 0).len() as u64;
        let (_, bytes, lines) = cut_notes(&b)[0];
        // Every byte is shown or counted, within the few newlines the notes add.
        assert!(
            bytes + shown >= total && bytes + shown <= total + 40,
            "{bytes} {shown}"
        );
        assert!(lines > 99_000 && lines <= 100_000, "{lines}");
        assert!(
            cut_notes("[… 12 bytes (x lines) cut from the middle of this output …]").is_empty()
        );
    }

    fn turn(i: usize, out: usize) -> Vec<Message> {
        vec![
            Message {
                role: Role::Assistant,
                parts: vec![Part::ToolCall(ToolCall {
                    id: format!("c{i}"),
                    name: "exec".into(),
                    arguments: "{}".into(),
                })],
            },
            Message {
                role: Role::User,
                parts: vec![Part::ToolResult {
                    id: format!("c{i}"),
                    output: "x".repeat(out),
                    is_error: false,
                }],
            },
        ]
    }

    #[test]
    fn trimming_and_compaction_keep_history_under_budget() {
        let mut h = vec![Message::user("build the app")];
        for i in 0..50 {
            h.extend(turn(i, 10_000));
        }
        let budget = 60_000;
        let t = trim(&h, budget);
        assert_eq!(t.len(), h.len());
        assert!(size(&t) <= budget, "{}", size(&t));
        // The newest outputs are intact.
        assert_eq!(t.last(), h.last());
        // Too many turns even trimmed: compaction.
        let mut h = vec![Message::user("build the app")];
        for i in 0..400 {
            h.extend(turn(i, 1_000));
        }
        let t = trim(&h, budget);
        assert!(size(&t) > budget);
        let (k, note) = compaction(&t, budget).unwrap();
        assert!(note.contains("build the app"));
        let mut rest = vec![Message::user(note)];
        rest.extend_from_slice(&t[k..]);
        assert!(size(&rest) <= budget, "{}", size(&rest));
        assert_eq!(rest[1].role, Role::Assistant, "cut at a clean boundary");
    }
}
