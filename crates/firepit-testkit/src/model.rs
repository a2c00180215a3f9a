//! Stand-in model servers: scripted replies in Anthropic's or OpenAI's streaming format.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};

/// One scripted reply.
pub enum Reply {
    /// 200 with these SSE chunks, then the end of the body.
    Sse(Vec<String>),
    /// 200 with these chunks, then nothing ever again.
    SseThenHang(Vec<String>),
    /// An error status with headers and a body.
    Status(u16, Vec<(&'static str, String)>, String),
    /// Never answers.
    Hang,
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A running stand-in.
pub struct StandIn {
    pub url: String,
    script: Script,
}

impl StandIn {
    pub async fn start(replies: Vec<Reply>) -> StandIn {
        let script = Script::default();
        script.replies.lock().unwrap().extend(replies);
        let app = axum::Router::new()
            .route("/v1/messages", post(handle))
            .route("/chat/completions", post(handle))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { url, script }
    }

    pub fn push(&self, r: Reply) {
        self.script.replies.lock().unwrap().push_back(r);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }
}

async fn handle(State(s): State<Script>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.seen.lock().unwrap().push(Seen { headers, body });
    let reply = s.replies.lock().unwrap().pop_front();
    let sse = |chunks: Vec<String>, hang: bool| {
        let stream = futures::stream::iter(chunks)
            .then(|c| async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok::<_, Infallible>(Bytes::from(c))
            })
            .chain(futures::stream::once(async move {
                if hang {
                    futures::future::pending::<()>().await;
                }
                Ok(Bytes::new())
            }));
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap()
    };
    match reply {
        Some(Reply::Sse(c)) => sse(c, false),
        Some(Reply::SseThenHang(c)) => sse(c, true),
        Some(Reply::Status(code, hs, body)) => {
            let mut r = Response::builder().status(StatusCode::from_u16(code).unwrap());
            for (k, v) in hs {
                r = r.header(k, v);
            }
            r.body(Body::from(body)).unwrap()
        }
        Some(Reply::Hang) => {
            futures::future::pending::<()>().await;
            unreachable!()
        }
        None => Response::builder()
            .status(500)
            .body(Body::from("script exhausted"))
            .unwrap(),
    }
}

fn ev(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// Splits a string in two (at a char boundary), to stream it in fragments.
fn halves(s: &str) -> (String, String) {
    let mut m = s.len() / 2;
    while !s.is_char_boundary(m) {
        m -= 1;
    }
    (s[..m].to_owned(), s[m..].to_owned())
}

/// An Anthropic turn: text, then tool calls `(id, name, raw JSON arguments)`.
pub fn anthropic(text: &str, calls: &[(&str, &str, &str)]) -> Vec<String> {
    let mut out = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "m", "role": "assistant", "content": [], "usage": {"input_tokens": 100, "output_tokens": 1}}}),
        ),
        ": keep-alive comment\n\n".to_owned(),
        ev("ping", json!({"type": "ping"})),
    ];
    let mut index = 0;
    if !text.is_empty() {
        let (a, b) = halves(text);
        out.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
        for t in [a, b] {
            out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})));
        }
        out.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        index = 1;
    }
    for (id, name, args) in calls {
        out.push(ev("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})));
        let (a, b) = halves(args);
        for p in [a, b] {
            out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": p}})));
        }
        out.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    let stop = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    out.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 50}})));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    // Chunk boundaries anywhere: re-cut the whole stream into 7-byte pieces.
    let all: String = out.concat();
    all.as_bytes().chunks(7).map(ascii_string).collect()
}

/// A chunk of the stream as a String (the stand-ins only send ASCII, so any cut is valid).
fn ascii_string(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("ASCII stream")
}

/// An OpenAI turn: text, then tool calls, each in fragments, then usage
/// (80 tokens in, 20 out) and `[DONE]`.
pub fn openai(text: &str, calls: &[(&str, &str, &str)]) -> Vec<String> {
    openai_usage(text, calls, 80, 20)
}

/// [`openai`] with the usage it reports: `prompt` tokens in, `completion` out.
pub fn openai_usage(
    text: &str,
    calls: &[(&str, &str, &str)],
    prompt: u64,
    completion: u64,
) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if !text.is_empty() {
        let (a, b) = halves(text);
        out.push(chunk(json!({"content": a}), Value::Null));
        out.push(chunk(json!({"content": b}), Value::Null));
    }
    for (i, (id, name, args)) in calls.iter().enumerate() {
        let (a, b) = halves(args);
        out.push(chunk(json!({"tool_calls": [{"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": a}}]}), Value::Null));
        out.push(chunk(
            json!({"tool_calls": [{"index": i, "function": {"arguments": b}}]}),
            Value::Null,
        ));
    }
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    out.push(chunk(json!({}), json!(finish)));
    out.push(format!("data: {}\n\n", json!({"id": "c", "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})));
    out.push("data: [DONE]\n\n".into());
    out
}
