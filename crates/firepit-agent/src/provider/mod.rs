//! Model providers: one file per wire protocol, a shared client with retries, idle
//! timeouts and cancellation, and a common stream of [`StreamEvent`]s.
//!
//! A request is retried (up to [`RetryPolicy::max_tries`], exponential backoff with
//! jitter, `retry-after` honoured) on 429, 5xx, connect errors and timeouts before the
//! response began. Once a stream has begun it is never retried: a stream that stalls
//! longer than the idle timeout or ends early is an error.

mod anthropic;
mod config;
mod openai;
mod pricing;

use std::collections::VecDeque;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use config::{
    CONFIGURE_HELP, DEFAULT_ANTHROPIC_MODEL, DEFAULT_OPENAI_MODEL, ModelConfig, ProviderKind,
    RetryPolicy,
};
pub use pricing::cost_usd;

use crate::Error;
use crate::message::{ModelRequest, StreamEvent};
use crate::sse::{SseEvent, SseParser};

/// A protocol's stream decoder: SSE events in, common events out.
enum Decoder {
    Anthropic(anthropic::Decoder),
    OpenAi(openai::Decoder),
}

impl Decoder {
    fn event(&mut self, ev: SseEvent, out: &mut VecDeque<StreamEvent>) -> Result<(), String> {
        match self {
            Decoder::Anthropic(d) => d.event(ev, out),
            Decoder::OpenAi(d) => d.event(ev, out),
        }
    }

    /// At the end of the body: the last events, or `Err` if the message is incomplete.
    fn finish(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), ()> {
        match self {
            Decoder::Anthropic(d) => d.finish(out),
            Decoder::OpenAi(d) => d.finish(out),
        }
    }
}

/// A client of one configured model. Cheap to clone.
#[derive(Clone)]
pub struct Model {
    cfg: ModelConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("kind", &self.cfg.kind)
            .field("base_url", &self.cfg.base_url)
            .field("model", &self.cfg.model)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// A client for `cfg`.
    pub fn new(cfg: ModelConfig) -> Model {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Model { cfg, http }
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn provider(&self) -> &'static str {
        self.cfg.kind.name()
    }

    /// Sends `req` and returns its stream once the provider answered 200. Retries as the
    /// module docs say; returns [`Error::Cancelled`] as soon as `cancel` fires.
    pub async fn stream(
        &self,
        req: &ModelRequest,
        cancel: &CancellationToken,
    ) -> Result<ModelStream, Error> {
        let (url, body) = match self.cfg.kind {
            ProviderKind::Anthropic => anthropic::request(&self.cfg, req),
            _ => openai::request(&self.cfg, req),
        };
        let provider = self.provider();
        let policy = self.cfg.retry;
        let mut tries = 0;
        loop {
            tries += 1;
            let last = tries >= policy.max_tries.max(1);
            let mut rb = self.http.post(&url).json(&body);
            rb = match self.cfg.kind {
                ProviderKind::Anthropic => anthropic::headers(rb, &self.cfg),
                _ => openai::headers(rb, &self.cfg),
            };
            let sent = tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                r = tokio::time::timeout(self.cfg.idle_timeout, rb.send()) => r,
            };
            let resp = match sent {
                Err(_) if last => {
                    return Err(Error::Idle {
                        provider,
                        idle: self.cfg.idle_timeout,
                    });
                }
                Err(_) => {
                    tracing::warn!(
                        provider,
                        tries,
                        "no answer within the idle timeout; retrying"
                    );
                    sleep(backoff(&policy, tries, None), cancel).await?;
                    continue;
                }
                Ok(Err(e)) if last || !(e.is_connect() || e.is_timeout() || e.is_request()) => {
                    return Err(Error::Connect {
                        provider,
                        url: url.clone(),
                        tries,
                        source: e,
                    });
                }
                Ok(Err(e)) => {
                    tracing::warn!(provider, tries, error = %e, "request failed; retrying");
                    sleep(backoff(&policy, tries, None), cancel).await?;
                    continue;
                }
                Ok(Ok(resp)) => resp,
            };
            let status = resp.status().as_u16();
            if status == 200 {
                let decoder = match self.cfg.kind {
                    ProviderKind::Anthropic => Decoder::Anthropic(anthropic::Decoder::default()),
                    _ => Decoder::OpenAi(openai::Decoder::default()),
                };
                return Ok(ModelStream {
                    resp,
                    parser: SseParser::new(),
                    decoder,
                    queue: VecDeque::new(),
                    idle: self.cfg.idle_timeout,
                    provider,
                    ended: false,
                });
            }
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let text = tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                t = tokio::time::timeout(self.cfg.idle_timeout, resp.text()) => {
                    t.ok().and_then(Result::ok).unwrap_or_default()
                }
            };
            let message = error_message(&text);
            let retryable = status == 429 || status >= 500;
            if retryable && !last {
                tracing::warn!(provider, tries, status, "provider busy; retrying");
                sleep(backoff(&policy, tries, retry_after), cancel).await?;
                continue;
            }
            return Err(classify(self, status, message, tries));
        }
    }
}

fn classify(model: &Model, status: u16, message: String, tries: u32) -> Error {
    let provider = model.provider();
    let lower = message.to_lowercase();
    match status {
        401 | 403 => Error::Auth {
            provider,
            status,
            key_var: model.cfg.kind.key_var(),
        },
        404 => Error::UnknownModel {
            provider,
            model: model.cfg.model.clone(),
            status,
            message,
        },
        400 if lower.contains("model")
            && (lower.contains("not found")
                || lower.contains("does not exist")
                || lower.contains("unknown")
                || lower.contains("invalid model")) =>
        {
            Error::UnknownModel {
                provider,
                model: model.cfg.model.clone(),
                status,
                message,
            }
        }
        _ => Error::Http {
            provider,
            status,
            tries,
            message,
        },
    }
}

/// The `error.message` of a JSON error body, else the body (bounded).
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let msg = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
    });
    let mut m = msg.unwrap_or_else(|| body.trim().to_owned());
    if m.len() > 500 {
        let mut cut = 500;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        m.push('…');
    }
    m
}

/// The wait before try `tries + 1`.
fn backoff(p: &RetryPolicy, tries: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(p.max_delay);
    }
    let exp = p.base_delay.saturating_mul(1 << (tries - 1).min(16));
    let jitter = exp.mul_f64(rand::random::<f64>());
    (exp + jitter).min(p.max_delay)
}

async fn sleep(d: Duration, cancel: &CancellationToken) -> Result<(), Error> {
    tokio::select! {
        _ = cancel.cancelled() => Err(Error::Cancelled),
        _ = tokio::time::sleep(d) => Ok(()),
    }
}

/// A response being streamed. Dropping it closes the connection.
pub struct ModelStream {
    resp: reqwest::Response,
    parser: SseParser,
    decoder: Decoder,
    queue: VecDeque<StreamEvent>,
    idle: Duration,
    provider: &'static str,
    ended: bool,
}

impl ModelStream {
    /// The next event; `Ok(None)` after [`StreamEvent::Done`].
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, Error> {
        let provider = self.provider;
        loop {
            if let Some(ev) = self.queue.pop_front() {
                if matches!(ev, StreamEvent::Done { .. }) {
                    self.ended = true;
                }
                return Ok(Some(ev));
            }
            if self.ended {
                return Ok(None);
            }
            let chunk = tokio::time::timeout(self.idle, self.resp.chunk())
                .await
                .map_err(|_| Error::Idle {
                    provider,
                    idle: self.idle,
                })?
                .map_err(|source| Error::Stream { provider, source })?;
            match chunk {
                Some(bytes) => {
                    for ev in self.parser.feed(&bytes) {
                        self.decoder
                            .event(ev, &mut self.queue)
                            .map_err(|message| match message.strip_prefix("provider: ") {
                                Some(m) => Error::Provider {
                                    provider,
                                    message: m.to_owned(),
                                },
                                None => Error::Protocol { provider, message },
                            })?;
                    }
                }
                None => {
                    // Flush a last event not followed by a blank line.
                    for ev in self.parser.feed(b"\n\n") {
                        let _ = self.decoder.event(ev, &mut self.queue);
                    }
                    self.decoder
                        .finish(&mut self.queue)
                        .map_err(|()| Error::Truncated { provider })?;
                    if !self
                        .queue
                        .iter()
                        .any(|e| matches!(e, StreamEvent::Done { .. }))
                    {
                        return Err(Error::Truncated { provider });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let p = RetryPolicy {
            max_tries: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let d1 = backoff(&p, 1, None);
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200));
        let d3 = backoff(&p, 3, None);
        assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
        assert_eq!(backoff(&p, 9, None), Duration::from_secs(1));
        assert_eq!(
            backoff(&p, 1, Some(Duration::from_secs(7))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(r#"{"type":"error","error":{"type":"x","message":"bad key"}}"#),
            "bad key"
        );
        assert_eq!(
            error_message(r#"{"error":"model 'x' not found"}"#),
            "model 'x' not found"
        );
        assert_eq!(error_message("plain"), "plain");
    }
}
