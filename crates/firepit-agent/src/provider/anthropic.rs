//! Anthropic's Messages API: `POST {base}/v1/messages` with `stream: true`.
//!
//! The stream is SSE: `message_start` (input tokens), then per content block
//! `content_block_start` (`text` or `tool_use` with id and name), `content_block_delta`
//! (`text_delta` or `input_json_delta` fragments) and `content_block_stop`; then
//! `message_delta` (stop reason, output tokens) and `message_stop`. `ping` events are
//! noise; an `error` event ends the stream with the provider's message.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

use super::ModelConfig;
use crate::message::{ModelRequest, Part, Role, StreamEvent, ToolCall};
use crate::sse::SseEvent;

/// The URL and JSON body of `req`.
pub(super) fn request(cfg: &ModelConfig, req: &ModelRequest) -> (String, Value) {
    let mut messages: Vec<Value> = Vec::new();
    let mut last_role = None;
    for m in &req.messages {
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let mut blocks: Vec<Value> = m
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text } if text.is_empty() => None,
                Part::Text { text } => Some(json!({"type": "text", "text": text})),
                Part::ToolCall(c) => {
                    let input = serde_json::from_str::<Value>(&c.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    Some(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}))
                }
                Part::ToolResult {
                    id,
                    output,
                    is_error,
                } => Some(json!({
                    "type": "tool_result", "tool_use_id": id, "content": output, "is_error": is_error
                })),
            })
            .collect();
        if blocks.is_empty() {
            blocks.push(json!({"type": "text", "text": "(empty)"}));
        }
        // Consecutive turns of one role are merged: the API wants them alternating.
        if last_role == Some(role)
            && let Some(prev) = messages.last_mut()
            && let Some(content) = prev["content"].as_array_mut()
        {
            content.extend(blocks);
            continue;
        }
        last_role = Some(role);
        messages.push(json!({"role": role, "content": blocks}));
    }
    let tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.schema}))
        .collect();
    let mut body = json!({
        "model": cfg.model,
        "max_tokens": req.max_tokens,
        "system": req.system,
        "messages": messages,
        "stream": true,
    });
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    (format!("{}/v1/messages", cfg.base_url), body)
}

/// Adds the key and version headers.
pub(super) fn headers(rb: reqwest::RequestBuilder, cfg: &ModelConfig) -> reqwest::RequestBuilder {
    let rb = rb.header("anthropic-version", "2023-06-01");
    match &cfg.api_key {
        Some(k) => rb.header("x-api-key", k),
        None => rb,
    }
}

enum Block {
    Text,
    Tool {
        id: String,
        name: String,
        json: String,
    },
}

/// The stream's state.
#[derive(Default)]
pub(super) struct Decoder {
    blocks: BTreeMap<u64, Block>,
    input_tokens: u64,
    output_tokens: u64,
    stop_reason: Option<String>,
    done: bool,
}

impl Decoder {
    pub(super) fn event(
        &mut self,
        ev: SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<(), String> {
        let v: Value = serde_json::from_str(&ev.data)
            .map_err(|e| format!("an event that is not JSON ({e}): {:.200}", ev.data))?;
        let kind = v["type"]
            .as_str()
            .or(ev.event.as_deref())
            .unwrap_or_default()
            .to_owned();
        let index = v["index"].as_u64().unwrap_or(0);
        match kind.as_str() {
            "message_start" => {
                let u = &v["message"]["usage"];
                self.input_tokens = u["input_tokens"].as_u64().unwrap_or(0)
                    + u["cache_creation_input_tokens"].as_u64().unwrap_or(0)
                    + u["cache_read_input_tokens"].as_u64().unwrap_or(0);
                self.output_tokens = u["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let b = &v["content_block"];
                let block = match b["type"].as_str() {
                    Some("tool_use") => Block::Tool {
                        id: b["id"].as_str().unwrap_or_default().to_owned(),
                        name: b["name"].as_str().unwrap_or_default().to_owned(),
                        json: String::new(),
                    },
                    _ => {
                        if let Some(t) = b["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push_back(StreamEvent::TextDelta(t.to_owned()));
                        }
                        Block::Text
                    }
                };
                self.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match (d["type"].as_str(), self.blocks.get_mut(&index)) {
                    (Some("text_delta"), _) => {
                        let t = d["text"].as_str().unwrap_or_default();
                        if !t.is_empty() {
                            out.push_back(StreamEvent::TextDelta(t.to_owned()));
                        }
                    }
                    (Some("input_json_delta"), Some(Block::Tool { json, .. })) => {
                        json.push_str(d["partial_json"].as_str().unwrap_or_default());
                    }
                    (Some("input_json_delta"), _) => {
                        return Err(format!(
                            "input_json_delta for block {index}, which is not a tool_use"
                        ));
                    }
                    _ => {} // thinking and signature deltas are not used
                }
            }
            "content_block_stop" => {
                if let Some(Block::Tool { id, name, json }) = self.blocks.remove(&index) {
                    out.push_back(StreamEvent::ToolCall(ToolCall {
                        id,
                        name,
                        arguments: if json.trim().is_empty() {
                            "{}".into()
                        } else {
                            json
                        },
                    }));
                }
            }
            "message_delta" => {
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(r.to_owned());
                }
                if let Some(o) = v["usage"]["output_tokens"].as_u64() {
                    self.output_tokens = o;
                }
                if let Some(i) = v["usage"]["input_tokens"].as_u64().filter(|i| *i > 0) {
                    self.input_tokens = self.input_tokens.max(i);
                }
            }
            "message_stop" => {
                self.done = true;
                out.push_back(StreamEvent::Usage {
                    input: self.input_tokens,
                    output: self.output_tokens,
                });
                out.push_back(StreamEvent::Done {
                    stop_reason: self.stop_reason.take().unwrap_or_else(|| "end_turn".into()),
                });
            }
            "error" => {
                let e = &v["error"];
                return Err(format!(
                    "provider: {} ({})",
                    e["message"].as_str().unwrap_or("unknown error"),
                    e["type"].as_str().unwrap_or("error")
                ));
            }
            _ => {} // ping and future event types
        }
        Ok(())
    }

    pub(super) fn finish(&mut self, _out: &mut VecDeque<StreamEvent>) -> Result<(), ()> {
        if self.done { Ok(()) } else { Err(()) }
    }
}
