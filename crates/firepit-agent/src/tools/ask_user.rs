//! `ask_user`: hands the turn to the person with a question; the run ends after it.

use serde::Deserialize;
use serde_json::json;

use crate::message::ToolDef;

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: super::ASK_USER,
        description: "Ask the person a question when you need a decision or information only they have. The run pauses until they answer.",
        schema: json!({"type": "object", "properties": {
            "question": {"type": "string", "description": "The question, self-contained."}
        }, "required": ["question"]}),
    }
}

#[derive(Deserialize)]
pub(super) struct Args {
    question: String,
}

pub(super) fn run(a: Args) -> Result<String, String> {
    Ok(format!(
        "The question was shown to the person: {:?}. Stop now; their answer comes as the next message.",
        a.question
    ))
}
