//! The agent's transcript items, as stored in the session event log
//! ([`crate::events::EventKind::Agent`]) and replayed by clients and by the
//! agent itself when a run resumes after a daemon restart.

use serde::{Deserialize, Serialize};

/// A tool call as the model made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ToolCall {
    /// The provider's id for the call.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model sent them: JSON text, possibly malformed.
    pub arguments: String,
}

/// One entry of the transcript. Serialised with a `type` tag, snake_case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum TranscriptItem {
    /// A run began.
    RunStarted {
        /// The provider's name.
        provider: String,
        /// The model.
        model: String,
    },
    /// A message from the person (`interjection`: sent while a run was going on).
    UserMessage {
        /// The text.
        text: String,
        /// Delivered in the middle of a run.
        #[serde(default)]
        interjection: bool,
    },
    /// More of the assistant's text, as it streams (not part of the history).
    AssistantDelta {
        /// The new text.
        text: String,
    },
    /// The assistant's complete turn.
    AssistantMessage {
        /// Its text.
        text: String,
        /// The tool calls it made.
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
    },
    /// A tool began (the call itself is in the preceding `assistant_message`).
    ToolStarted {
        /// The call's id.
        id: String,
        /// The tool.
        name: String,
    },
    /// A tool's result (bounded), as the model sees it.
    ToolResult {
        /// The call's id.
        id: String,
        /// The tool.
        name: String,
        /// The output.
        output: String,
        /// Whether it failed.
        is_error: bool,
    },
    /// Older history was dropped to keep the context in budget.
    Compacted {
        /// Messages dropped from the start of the history.
        dropped: usize,
        /// The note that replaces them.
        note: String,
    },
    /// Tokens and cost of one model request, and the session's totals so far.
    Usage {
        /// Input tokens of the request.
        input_tokens: u64,
        /// Output tokens of the request.
        output_tokens: u64,
        /// Its cost in USD, when the model's price is known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
        /// Input tokens of the session so far.
        total_input_tokens: u64,
        /// Output tokens of the session so far.
        total_output_tokens: u64,
        /// Cost of the session so far, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total_cost_usd: Option<f64>,
    },
    /// Something went wrong (the run ends after it unless it says otherwise).
    Error {
        /// What, for the person.
        message: String,
    },
    /// The run ended on its own.
    RunFinished {
        /// Why: `done` (the model stopped), `asked_user`, `error`, `max_steps`.
        reason: String,
    },
    /// The run was stopped by the person.
    RunStopped,
    /// A checkpoint of the session's files made before tools that can change
    /// them ran: restoring it ("rewind to here") undoes what those calls and
    /// everything after them did to the files.
    Checkpoint {
        /// The checkpoint's id.
        checkpoint: String,
        /// The ids of the calls it was made before.
        tool_call_ids: Vec<String>,
    },
}
