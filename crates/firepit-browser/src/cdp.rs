//! A Chrome DevTools Protocol client over one WebSocket.
//!
//! The protocol: the client sends `{"id": N, "method": "Domain.verb",
//! "params": {…}}`; Chromium answers `{"id": N, "result": {…}}` or
//! `{"id": N, "error": {"message": …}}`, and sends events
//! `{"method": "Domain.event", "params": {…}}` at any time. One connection
//! speaks to one target (a page); the targets it attaches to in flat mode
//! (its workers and out-of-process frames) are reached over the same socket
//! by a `sessionId` on commands and events.
//!
//! The WebSocket runs over a stream the caller made (a socket the machine
//! backend dialed inside the machine), which is why this client exists rather
//! than a crate that dials by URL itself. A reader task resolves answers by
//! id and broadcasts events; when the socket closes every pending command
//! fails with [`Error::Closed`] and [`Cdp::closed`] completes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::Error;

/// Largest message accepted (a full-page screenshot is the largest).
const MAX_MESSAGE: usize = 64 << 20;
/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_BUFFER: usize = 1024;

/// An event Chromium sent.
#[derive(Debug, Clone)]
pub struct CdpEvent {
    /// `Domain.event`.
    pub method: String,
    /// Its parameters.
    pub params: Value,
    /// The attached target it came from; `None`: the connection's own page.
    pub session: Option<String>,
}

type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>>;

/// A connection to one DevTools target. Cheap to clone.
#[derive(Clone)]
pub struct Cdp {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    events: broadcast::Sender<CdpEvent>,
    closed: watch::Receiver<Option<String>>,
}

impl Cdp {
    /// Opens the WebSocket at `url` (`ws://127.0.0.1:PORT/devtools/page/ID`)
    /// over `stream`.
    pub async fn connect<S>(stream: S, url: &str) -> Result<Cdp, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
        let (mut sink, mut source) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (closed_tx, closed) = watch::channel(None);
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let (p, ev) = (pending.clone(), events.clone());
        tokio::spawn(async move {
            let reason = loop {
                match source.next().await {
                    Some(Ok(Message::Text(t))) => dispatch(&p, &ev, t.as_str()),
                    Some(Ok(Message::Binary(b))) => dispatch(&p, &ev, &String::from_utf8_lossy(&b)),
                    Some(Ok(Message::Close(_))) | None => break "the connection closed".to_owned(),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                }
            };
            let waiting = p.lock().expect("cdp pending").take().unwrap_or_default();
            for (_, tx) in waiting {
                let _ = tx.send(Err(format!("closed: {reason}")));
            }
            let _ = closed_tx.send(Some(reason));
        });
        Ok(Cdp {
            out,
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
            events,
            closed,
        })
    }

    /// Sends `method` with `params` and waits up to `timeout` for the answer.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        self.call_in(None, method, params, timeout).await
    }

    /// [`Cdp::call`] to an attached target's session (`None`: the page itself).
    pub async fn call_in(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().expect("cdp pending");
            let Some(map) = p.as_mut() else {
                return Err(Error::Closed(self.close_reason()));
            };
            map.insert(id, tx);
        }
        let msg = command(id, session, method, params);
        if self.out.send(Message::text(msg)).is_err() {
            return Err(Error::Closed(self.close_reason()));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(message))) if message.starts_with("closed: ") => {
                Err(Error::Closed(message["closed: ".len()..].to_owned()))
            }
            Ok(Ok(Err(message))) => Err(Error::Protocol {
                method: method.to_owned(),
                message,
            }),
            Ok(Err(_)) => Err(Error::Closed(self.close_reason())),
            Err(_) => {
                if let Some(map) = self.pending.lock().expect("cdp pending").as_mut() {
                    map.remove(&id);
                }
                Err(Error::Timeout {
                    method: method.to_owned(),
                    secs: timeout.as_secs().max(1),
                })
            }
        }
    }

    /// Sends `method` without waiting for its answer.
    pub fn send(&self, method: &str, params: Value) {
        self.send_in(None, method, params);
    }

    /// [`Cdp::send`] to an attached target's session. Commands to one session
    /// are carried out in the order they are sent.
    pub fn send_in(&self, session: Option<&str>, method: &str, params: Value) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = command(id, session, method, params);
        let _ = self.out.send(Message::text(msg));
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<CdpEvent> {
        self.events.subscribe()
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Completes when the connection is gone, with the reason.
    pub async fn closed(&self) -> String {
        let mut rx = self.closed.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_default(),
            Err(_) => "the connection closed".to_owned(),
        }
    }

    fn close_reason(&self) -> String {
        self.closed
            .borrow()
            .clone()
            .unwrap_or_else(|| "the connection closed".to_owned())
    }
}

/// A command's text.
fn command(id: u64, session: Option<&str>, method: &str, params: Value) -> String {
    match session {
        Some(s) => json!({"id": id, "method": method, "params": params, "sessionId": s}),
        None => json!({"id": id, "method": method, "params": params}),
    }
    .to_string()
}

fn dispatch(pending: &Pending, events: &broadcast::Sender<CdpEvent>, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        tracing::debug!("a DevTools message that is not JSON");
        return;
    };
    if let Some(id) = v.get("id").and_then(Value::as_u64) {
        let tx = pending
            .lock()
            .expect("cdp pending")
            .as_mut()
            .and_then(|m| m.remove(&id));
        if let Some(tx) = tx {
            let r = match v.get("error") {
                Some(e) => Err(e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned()
                    + &e.get("data")
                        .and_then(Value::as_str)
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()),
                None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            };
            let _ = tx.send(r);
        }
    } else if let Some(method) = v.get("method").and_then(Value::as_str) {
        let _ = events.send(CdpEvent {
            method: method.to_owned(),
            params: v.get("params").cloned().unwrap_or(Value::Null),
            session: v
                .get("sessionId")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DevTools stand-in on the other end of a duplex pipe: answers
    /// `Echo.me` with its params, `Where.me` with the session it was sent
    /// to, `Fail.me` with an error, sends an event first, never answers
    /// `Hang.me`, and closes on `Close.me`.
    async fn stand_in() -> Cdp {
        let (a, b) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut ws = tokio_tungstenite::accept_async(b).await.unwrap();
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                let id = v["id"].clone();
                match v["method"].as_str().unwrap() {
                    "Echo.me" => {
                        let ev = json!({"method": "Echo.seen", "params": {"n": 1}});
                        ws.send(Message::text(ev.to_string())).await.unwrap();
                        let ans = json!({"id": id, "result": v["params"]});
                        ws.send(Message::text(ans.to_string())).await.unwrap();
                    }
                    "Fail.me" => {
                        let ans =
                            json!({"id": id, "error": {"code": -32000, "message": "no such node"}});
                        ws.send(Message::text(ans.to_string())).await.unwrap();
                    }
                    "Where.me" => {
                        let ev = json!({"method": "Where.seen", "params": {}, "sessionId": v["sessionId"]});
                        ws.send(Message::text(ev.to_string())).await.unwrap();
                        let ans = json!({"id": id, "result": {"session": v["sessionId"]}, "sessionId": v["sessionId"]});
                        ws.send(Message::text(ans.to_string())).await.unwrap();
                    }
                    "Close.me" => return,
                    _ => {}
                }
            }
        });
        Cdp::connect(a, "ws://127.0.0.1:1/devtools/page/x")
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn answers_errors_events_timeouts_and_close() {
        let cdp = stand_in().await;
        let mut events = cdp.events();
        let t = Duration::from_secs(5);
        assert_eq!(
            cdp.call("Echo.me", json!({"a": 1}), t).await.unwrap(),
            json!({"a": 1})
        );
        let ev = events.recv().await.unwrap();
        assert_eq!((ev.method.as_str(), ev.session), ("Echo.seen", None));
        assert_eq!(
            cdp.call_in(Some("S1"), "Where.me", json!({}), t)
                .await
                .unwrap(),
            json!({"session": "S1"})
        );
        let ev = events.recv().await.unwrap();
        assert_eq!(
            (ev.method.as_str(), ev.session.as_deref()),
            ("Where.seen", Some("S1"))
        );
        let e = cdp.call("Fail.me", json!({}), t).await.unwrap_err();
        assert!(e.to_string().contains("no such node"), "{e}");
        let e = cdp
            .call("Hang.me", json!({}), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        let hang = cdp.call("Hang.me", json!({}), Duration::from_secs(3600));
        let close = cdp.call("Close.me", json!({}), t);
        let (hang, close) = tokio::join!(hang, close);
        assert!(matches!(hang, Err(Error::Closed(_))), "{hang:?}");
        assert!(matches!(close, Err(Error::Closed(_))), "{close:?}");
        assert!(cdp.is_closed());
        cdp.closed().await;
        assert!(matches!(
            cdp.call("Echo.me", json!({}), t).await,
            Err(Error::Closed(_))
        ));
    }
}
