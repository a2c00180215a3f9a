//! The transcript: everything a run does, as serde items the daemon stores verbatim in
//! the session event log, and the history rebuilt from them.
//!
//! The loop's history is itself built by applying each item it records
//! ([`History::apply`]), so [`rebuild_history`] over the stored items gives exactly the
//! history the loop had, and a run resumes after a daemon restart.

use std::future::Future;

pub use firepit_wire::agent::TranscriptItem;

use crate::message::{Message, Part, Role, ToolCall};

/// The sink the daemon implements: it appends each item to the session's event log.
pub trait Transcript: Send + Sync + 'static {
    /// Records one item, in order.
    fn record(&self, item: TranscriptItem) -> impl Future<Output = ()> + Send;
}

/// The conversation as the model sees it, built from transcript items.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The messages.
    pub messages: Vec<Message>,
    /// Whether the last run neither finished nor was stopped.
    pub unfinished: bool,
    /// Tokens and cost of the session so far.
    pub totals: (u64, u64, Option<f64>),
}

/// The result given to a call that never got one (the daemon restarted mid-tool).
pub const INTERRUPTED: &str =
    "interrupted: the run was cut off before this tool finished (the daemon restarted)";

impl History {
    /// Applies one item.
    pub fn apply(&mut self, item: &TranscriptItem) {
        match item {
            TranscriptItem::RunStarted { .. } => {
                self.close_pending();
                self.unfinished = true;
            }
            TranscriptItem::UserMessage { text, .. } => {
                self.close_pending();
                self.messages.push(Message::user(text.clone()));
            }
            TranscriptItem::AssistantMessage { text, tool_calls } => {
                self.close_pending();
                let mut parts = Vec::new();
                if !text.is_empty() {
                    parts.push(Part::Text { text: text.clone() });
                }
                parts.extend(tool_calls.iter().cloned().map(Part::ToolCall));
                self.messages.push(Message {
                    role: Role::Assistant,
                    parts,
                });
            }
            TranscriptItem::ToolResult {
                id,
                output,
                is_error,
                ..
            } => {
                let part = Part::ToolResult {
                    id: id.clone(),
                    output: output.clone(),
                    is_error: *is_error,
                };
                match self.messages.last_mut() {
                    Some(m) if m.is_tool_results() => m.parts.push(part),
                    _ => self.messages.push(Message {
                        role: Role::User,
                        parts: vec![part],
                    }),
                }
            }
            TranscriptItem::Compacted { dropped, note } => {
                let n = (*dropped).min(self.messages.len());
                self.messages.drain(..n);
                self.messages.insert(0, Message::user(note.clone()));
            }
            TranscriptItem::Usage {
                total_input_tokens,
                total_output_tokens,
                total_cost_usd,
                ..
            } => self.totals = (*total_input_tokens, *total_output_tokens, *total_cost_usd),
            TranscriptItem::RunFinished { .. } | TranscriptItem::RunStopped => {
                self.close_pending();
                self.unfinished = false;
            }
            TranscriptItem::AssistantDelta { .. }
            | TranscriptItem::ToolStarted { .. }
            | TranscriptItem::Checkpoint { .. }
            | TranscriptItem::Error { .. } => {}
        }
    }

    /// The ids of the last assistant turn's calls that have no result yet.
    pub fn pending_calls(&self) -> Vec<ToolCall> {
        let Some(pos) = self
            .messages
            .iter()
            .rposition(|m| m.role == Role::Assistant)
        else {
            return Vec::new();
        };
        let answered: Vec<&str> = self.messages[pos + 1..]
            .iter()
            .flat_map(|m| &m.parts)
            .filter_map(|p| match p {
                Part::ToolResult { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        self.messages[pos]
            .tool_calls()
            .filter(|c| !answered.contains(&c.id.as_str()))
            .cloned()
            .collect()
    }

    /// Gives every call without a result the [`INTERRUPTED`] result, so the history stays
    /// valid for the providers (every tool call answered before anything else).
    fn close_pending(&mut self) {
        for c in self.pending_calls() {
            self.apply(&TranscriptItem::ToolResult {
                id: c.id,
                name: c.name,
                output: INTERRUPTED.into(),
                is_error: true,
            });
        }
    }

    /// Closes pending calls (for a history loaded from a transcript that was cut off).
    pub fn seal(&mut self) {
        self.close_pending();
    }
}

/// The history a stored transcript describes (with cut-off tool calls answered as
/// interrupted). [`History::unfinished`] says whether its last run should be resumed.
pub fn rebuild(items: &[TranscriptItem]) -> History {
    let mut h = History::default();
    for item in items {
        h.apply(item);
    }
    h.seal();
    h
}

/// The messages a stored transcript describes.
pub fn rebuild_history(items: &[TranscriptItem]) -> Vec<Message> {
    rebuild(items).messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_serialise_with_a_type_tag() {
        let v = serde_json::to_value(TranscriptItem::UserMessage {
            text: "hi".into(),
            interjection: false,
        })
        .unwrap();
        assert_eq!(v["type"], "user_message");
        let v = serde_json::to_value(TranscriptItem::RunStopped).unwrap();
        assert_eq!(v, serde_json::json!({"type": "run_stopped"}));
    }

    #[test]
    fn rebuild_answers_cut_off_calls_and_marks_unfinished() {
        let call = ToolCall {
            id: "c1".into(),
            name: "exec".into(),
            arguments: "{}".into(),
        };
        let items = vec![
            TranscriptItem::RunStarted {
                provider: "p".into(),
                model: "m".into(),
            },
            TranscriptItem::UserMessage {
                text: "go".into(),
                interjection: false,
            },
            TranscriptItem::AssistantDelta { text: "ok".into() },
            TranscriptItem::AssistantMessage {
                text: "ok".into(),
                tool_calls: vec![call],
            },
            TranscriptItem::ToolStarted {
                id: "c1".into(),
                name: "exec".into(),
            },
        ];
        let h = rebuild(&items);
        assert!(h.unfinished);
        assert_eq!(h.messages.len(), 3);
        assert!(h.messages[2].is_tool_results());
        let json = serde_json::to_string(&items).unwrap();
        let back: Vec<TranscriptItem> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, items);
    }
}
