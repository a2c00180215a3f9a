//! OpenAI's Chat Completions API (and every server that speaks it):
//! `POST {base}/chat/completions` with `stream: true` and usage in the stream.
//!
//! The stream is SSE of `data:` chunks: `choices[0].delta.content` carries text and
//! `choices[0].delta.tool_calls[]` carries fragments of calls keyed by `index` (the
//! first fragment has the `id` and `function.name`, all carry pieces of
//! `function.arguments`); `choices[0].finish_reason` ends the message, a last chunk
//! without choices carries `usage`, and `data: [DONE]` ends the stream.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

use super::ModelConfig;
use crate::message::{ModelRequest, Part, Role, StreamEvent, ToolCall};
use crate::sse::SseEvent;

/// The URL and JSON body of `req`.
pub(super) fn request(cfg: &ModelConfig, req: &ModelRequest) -> (String, Value) {
    let mut messages = vec![json!({"role": "system", "content": req.system})];
    for m in &req.messages {
        match m.role {
            Role::Assistant => {
                let text: String = m
                    .parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                let calls: Vec<Value> = m
                    .tool_calls()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
                let mut msg = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            Role::User => {
                let mut text = String::new();
                for p in &m.parts {
                    match p {
                        Part::ToolResult { id, output, .. } => messages
                            .push(json!({"role": "tool", "tool_call_id": id, "content": output})),
                        Part::Text { text: t } => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(t);
                        }
                        Part::ToolCall(_) => {}
                    }
                }
                if !text.is_empty() {
                    messages.push(json!({"role": "user", "content": text}));
                }
            }
        }
    }
    let tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            json!({"type": "function",
                   "function": {"name": t.name, "description": t.description, "parameters": t.schema}})
        })
        .collect();
    let mut body = json!({
        "model": cfg.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    (format!("{}/chat/completions", cfg.base_url), body)
}

/// Adds the bearer key.
pub(super) fn headers(rb: reqwest::RequestBuilder, cfg: &ModelConfig) -> reqwest::RequestBuilder {
    match &cfg.api_key {
        Some(k) => rb.bearer_auth(k),
        None => rb,
    }
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// The stream's state.
#[derive(Default)]
pub(super) struct Decoder {
    calls: BTreeMap<u64, PartialCall>,
    finish_reason: Option<String>,
    usage: Option<(u64, u64)>,
    done: bool,
}

impl Decoder {
    pub(super) fn event(
        &mut self,
        ev: SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.end(out);
            return Ok(());
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| format!("a chunk that is not JSON ({e}): {data:.200}"))?;
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            let msg = e["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| e.to_string());
            return Err(format!("provider: {msg}"));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some((
                u["prompt_tokens"].as_u64().unwrap_or(0),
                u["completion_tokens"].as_u64().unwrap_or(0),
            ));
        }
        let Some(choice) = v["choices"].get(0) else {
            return Ok(());
        };
        let delta = &choice["delta"];
        if let Some(t) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            out.push_back(StreamEvent::TextDelta(t.to_owned()));
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            for (n, c) in calls.iter().enumerate() {
                let index = c["index"].as_u64().unwrap_or(n as u64);
                let call = self.calls.entry(index).or_default();
                if let Some(id) = c["id"].as_str() {
                    call.id.push_str(id);
                }
                if let Some(name) = c["function"]["name"].as_str() {
                    call.name.push_str(name);
                }
                if let Some(a) = c["function"]["arguments"].as_str() {
                    call.arguments.push_str(a);
                }
            }
        }
        if let Some(r) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(r.to_owned());
        }
        Ok(())
    }

    fn end(&mut self, out: &mut VecDeque<StreamEvent>) {
        self.done = true;
        for (i, c) in std::mem::take(&mut self.calls) {
            out.push_back(StreamEvent::ToolCall(ToolCall {
                id: if c.id.is_empty() {
                    format!("call_{i}")
                } else {
                    c.id
                },
                name: c.name,
                arguments: if c.arguments.trim().is_empty() {
                    "{}".into()
                } else {
                    c.arguments
                },
            }));
        }
        let (input, output) = self.usage.unwrap_or((0, 0));
        out.push_back(StreamEvent::Usage { input, output });
        out.push_back(StreamEvent::Done {
            stop_reason: self.finish_reason.take().unwrap_or_else(|| "stop".into()),
        });
    }

    /// A server that closes after the finish reason without `[DONE]` is accepted.
    pub(super) fn finish(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), ()> {
        if self.done {
            return Ok(());
        }
        if self.finish_reason.is_some() {
            self.end(out);
            return Ok(());
        }
        Err(())
    }
}
