//! Provider-neutral conversation types: what the loop keeps as history and sends to a
//! model, and the events a model stream yields.

use serde::{Deserialize, Serialize};

/// Who said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person (and tool results, which go back to the model as the user's turn).
    User,
    /// The model.
    Assistant,
}

pub use firepit_wire::agent::ToolCall;

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A call of a tool (assistant messages only).
    ToolCall(ToolCall),
    /// The result of a tool call (user messages only).
    ToolResult {
        /// The call's id.
        id: String,
        /// The tool's output (bounded).
        output: String,
        /// Whether the tool failed.
        is_error: bool,
    },
}

/// A message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub parts: Vec<Part>,
}

impl Message {
    /// A user message of text.
    pub fn user(text: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            parts: vec![Part::Text { text: text.into() }],
        }
    }

    /// The tool calls in this message.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.parts.iter().filter_map(|p| match p {
            Part::ToolCall(c) => Some(c),
            _ => None,
        })
    }

    /// Whether this message holds tool results only.
    pub fn is_tool_results(&self) -> bool {
        !self.parts.is_empty()
            && self
                .parts
                .iter()
                .all(|p| matches!(p, Part::ToolResult { .. }))
    }

    /// Rough size in characters (the context budget's unit).
    pub fn size(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text { text } => text.len(),
                Part::ToolCall(c) => c.name.len() + c.arguments.len() + c.id.len(),
                Part::ToolResult { output, id, .. } => output.len() + id.len(),
            })
            .sum::<usize>()
            + 16
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDef {
    /// Its name.
    pub name: &'static str,
    /// What it does, for the model.
    pub description: &'static str,
    /// JSON schema of its arguments (an object).
    pub schema: serde_json::Value,
}

/// One request to a model.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// The system prompt.
    pub system: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// The tools.
    pub tools: Vec<ToolDef>,
    /// Most output tokens.
    pub max_tokens: u32,
}

/// What a model stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More of the assistant's text.
    TextDelta(String),
    /// A complete tool call.
    ToolCall(ToolCall),
    /// Tokens used by this request.
    Usage {
        /// Input (prompt) tokens.
        input: u64,
        /// Output (completion) tokens.
        output: u64,
    },
    /// The message ended; the last event.
    Done {
        /// Why (`end_turn`, `tool_use`, `stop`, `tool_calls`, `max_tokens`, …).
        stop_reason: String,
    },
}
