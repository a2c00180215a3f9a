//! firepit's agent: model providers, the agent loop that runs in the daemon (so keys
//! never enter a machine), the tools it uses on the machine through the guest, and the
//! transcript it reports everything through.
//!
//! The daemon makes one [`Agent`] per session from a [`Model`] ([`ModelConfig::from_env`]),
//! a [`ToolContext`] (the session's `GuestClient`, working directory and preview URLs) and
//! a [`Transcript`] sink that appends [`TranscriptItem`]s to the session's event log.
#![warn(missing_docs)]

mod agent;
pub mod context;
mod error;
pub mod message;
pub mod prompt;
pub mod provider;
pub mod sse;
pub mod tools;
pub mod transcript;

pub use agent::{Agent, AgentSettings, Sent};
pub use error::Error;
pub use message::{Message, ModelRequest, Part, Role, StreamEvent, ToolCall, ToolDef};
pub use provider::{CONFIGURE_HELP, Model, ModelConfig, ModelStream, ProviderKind, RetryPolicy};
pub use tools::hooks::{SessionHooks, TestRun};
pub use tools::{DETECT_TESTS, PreviewUrl, ToolContext};
pub use transcript::{History, Transcript, TranscriptItem, rebuild, rebuild_history};
