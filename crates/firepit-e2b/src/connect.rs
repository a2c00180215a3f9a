//! The Connect protocol (connectrpc.com/docs/protocol) as envd speaks it to the
//! SDK, JSON codec only, over HTTP/1.1.
//!
//! - Unary: `POST /<package>.<Service>/<Method>`, `Content-Type:
//!   application/json`, the request message as the body. The answer is `200`
//!   with the response message, or an error status with `{"code":
//!   "<code>", "message"}` (codes are Connect's, snake case).
//! - Server streaming (`Start`, `Connect`, `WatchDir`): `Content-Type:
//!   application/connect+json`; request and response bodies are *envelopes*:
//!   one flags byte, a 4-byte big-endian length, the JSON message. The answer
//!   is always `200`; its last envelope has flag `0x02` (end of stream) and
//!   holds `{}` or `{"error": {"code", "message"}}`.
//! - Client streaming (`StreamInput`): the request body is a series of
//!   envelopes; the answer one envelope and the end-of-stream one.
//! - `Connect-Timeout-Ms` bounds a call; a stream past it ends with
//!   `deadline_exceeded`. The SDK's `Keepalive-Ping-Interval` (seconds) asks
//!   for a keepalive message on a quiet stream at that interval.
//!
//! Compressed envelopes (flag `0x01`) and the binary protobuf codec are
//! refused: the SDK sends neither.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::Error;

/// The largest request message read (an input chunk, a path).
pub const MAX_MESSAGE: usize = 4 << 20;
/// The content type of streaming calls.
pub const STREAM_JSON: &str = "application/connect+json";
/// The flag of an envelope that ends a stream.
const END_STREAM: u8 = 0x02;
/// The flag of a compressed envelope.
const COMPRESSED: u8 = 0x01;
/// The shortest keepalive interval a client may ask for.
const MIN_KEEPALIVE: Duration = Duration::from_secs(1);

/// Connect's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Code {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    /// The code as the protocol writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::DataLoss => "data_loss",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status of a unary error with this code (the protocol's table).
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::Canceled => StatusCode::from_u16(499).expect("499 is a status"),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                StatusCode::BAD_REQUEST
            }
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn error_json(e: &Error) -> serde_json::Value {
    serde_json::json!({ "code": e.code().as_str(), "message": e.message() })
}

/// A unary call's error answer.
pub fn unary_error(e: &Error) -> Response {
    (e.code().http_status(), axum::Json(error_json(e))).into_response()
}

/// A unary call's answer.
pub fn unary<T: Serialize>(result: Result<T, Error>) -> Response {
    match result {
        Ok(m) => axum::Json(m).into_response(),
        Err(e) => unary_error(&e),
    }
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or("", |v| v.split(';').next().unwrap_or("").trim())
}

/// Reads a unary request message.
pub fn unary_request<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Error> {
    if !content_type(headers).eq_ignore_ascii_case("application/json") {
        return Err(Error::BadRequest(
            "only Connect's JSON codec is served: send Content-Type: application/json".into(),
        ));
    }
    let body = if body.is_empty() {
        b"{}" as &[u8]
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("the message is not valid: {e}")))
}

/// Splits the first envelope off `buf`: its flags and message, or `None`
/// while it is incomplete.
pub fn take_envelope(buf: &mut BytesMut) -> Result<Option<(u8, Bytes)>, Error> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let flags = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(Error::BadRequest(format!(
            "a message of {len} bytes is larger than the limit of {MAX_MESSAGE}"
        )));
    }
    if flags & COMPRESSED != 0 {
        return Err(Error::BadRequest(
            "compressed messages are not served".into(),
        ));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    let _ = buf.split_to(5);
    Ok(Some((flags, buf.split_to(len).freeze())))
}

/// Reads the one enveloped request message of a server-streaming call.
pub fn stream_request<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Error> {
    if !content_type(headers).eq_ignore_ascii_case(STREAM_JSON) {
        return Err(Error::BadRequest(format!(
            "only Connect's JSON codec is served: send Content-Type: {STREAM_JSON}"
        )));
    }
    let mut buf = BytesMut::from(body);
    match take_envelope(&mut buf)? {
        Some((_, msg)) if buf.is_empty() => {
            let msg: &[u8] = if msg.is_empty() { b"{}" } else { &msg };
            serde_json::from_slice(msg)
                .map_err(|e| Error::BadRequest(format!("the message is not valid: {e}")))
        }
        _ => Err(Error::BadRequest(
            "the request is not one whole envelope".into(),
        )),
    }
}

/// One envelope.
pub fn envelope(flags: u8, message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(flags);
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.freeze()
}

/// The end-of-stream envelope: success or an error.
pub fn end_envelope(result: Result<(), &Error>) -> Bytes {
    let body = match result {
        Ok(()) => serde_json::json!({}),
        Err(e) => serde_json::json!({ "error": error_json(e) }),
    };
    envelope(END_STREAM, body.to_string().as_bytes())
}

/// A message of a stream, serialised.
pub fn message<T: Serialize>(m: &T) -> Bytes {
    envelope(0, &serde_json::to_vec(m).expect("messages serialise"))
}

/// The deadline a call's `Connect-Timeout-Ms` sets.
pub fn deadline(headers: &HeaderMap) -> Option<Instant> {
    let ms: u64 = headers
        .get("connect-timeout-ms")?
        .to_str()
        .ok()
        .filter(|v| v.len() <= 10)?
        .parse()
        .ok()?;
    Some(Instant::now() + Duration::from_millis(ms))
}

/// The keepalive interval the client asked for (`Keepalive-Ping-Interval`, seconds).
pub fn keepalive(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get("keepalive-ping-interval")?
        .to_str()
        .ok()
        .filter(|v| v.len() <= 6)?
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).max(MIN_KEEPALIVE))
}

/// What a stream's producer sends: a message (already an envelope), or its end.
pub enum Item {
    /// A message envelope ([`message`]).
    Message(Bytes),
    /// The end: success or an error.
    End(Result<(), Error>),
}

/// How a streaming answer behaves besides its messages.
pub struct StreamOptions {
    /// The keepalive message and its interval.
    pub keepalive: Option<(Duration, Bytes)>,
    /// When the stream ends with `deadline_exceeded`.
    pub deadline: Option<Instant>,
}

/// A streaming answer fed by `rx`: each message as it comes (the producer
/// waits while the client does not read: the channel is bounded and the body
/// is pulled), keepalives while quiet, then the end envelope. A producer that
/// goes away without an `End` ends the stream with `unavailable`.
pub fn stream_response(rx: mpsc::Receiver<Item>, opts: StreamOptions) -> Response {
    struct State {
        rx: mpsc::Receiver<Item>,
        opts: StreamOptions,
        done: bool,
    }
    let state = State {
        rx,
        opts,
        done: false,
    };
    let body = futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let ping = async {
            match &st.opts.keepalive {
                Some((every, _)) => tokio::time::sleep(*every).await,
                None => std::future::pending().await,
            }
        };
        let deadline = async {
            match st.opts.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let out = tokio::select! {
            item = st.rx.recv() => match item {
                Some(Item::Message(b)) => b,
                Some(Item::End(r)) => {
                    st.done = true;
                    end_envelope(r.as_ref().map(|_| ()))
                }
                None => {
                    st.done = true;
                    end_envelope(Err(&Error::NotRunning("the sandbox".into())))
                }
            },
            () = ping => st.opts.keepalive.as_ref().map(|(_, m)| m.clone()).unwrap_or_default(),
            () = deadline => {
                st.done = true;
                end_envelope(Err(&Error::DeadlineExceeded))
            }
        };
        Some((Ok::<_, std::convert::Infallible>(out), st))
    });
    streaming(Body::from_stream(body))
}

/// A streaming answer that is only its end: an error before any message.
pub fn stream_error(e: &Error) -> Response {
    streaming(Body::from(end_envelope(Err(e))))
}

fn streaming(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(STREAM_JSON));
    r
}

/// Reads a client stream's envelopes one at a time, each within [`MAX_MESSAGE`].
pub struct EnvelopeReader {
    body: axum::body::BodyDataStream,
    buf: BytesMut,
}

impl EnvelopeReader {
    /// Reads `body`, which must be `application/connect+json`.
    pub fn new(headers: &HeaderMap, body: Body) -> Result<EnvelopeReader, Error> {
        if !content_type(headers).eq_ignore_ascii_case(STREAM_JSON) {
            return Err(Error::BadRequest(format!(
                "only Connect's JSON codec is served: send Content-Type: {STREAM_JSON}"
            )));
        }
        Ok(EnvelopeReader {
            body: body.into_data_stream(),
            buf: BytesMut::new(),
        })
    }

    /// The next message, or `None` at the end of the body.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, Error> {
        loop {
            if let Some((flags, msg)) = take_envelope(&mut self.buf)? {
                if flags & END_STREAM != 0 {
                    return Ok(None);
                }
                let msg: &[u8] = if msg.is_empty() { b"{}" } else { &msg };
                return serde_json::from_slice(msg)
                    .map(Some)
                    .map_err(|e| Error::BadRequest(format!("the message is not valid: {e}")));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Err(Error::BadRequest(format!(
                        "reading the request failed: {e}"
                    )));
                }
                None if self.buf.is_empty() => return Ok(None),
                None => {
                    return Err(Error::BadRequest(
                        "the request ended inside a message".into(),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_wait_for_their_end() {
        let e = envelope(0, b"{\"a\":1}");
        let mut buf = BytesMut::from(&e[..4]);
        assert!(take_envelope(&mut buf).unwrap().is_none());
        let mut buf = BytesMut::from(&e[..]);
        let (flags, msg) = take_envelope(&mut buf).unwrap().unwrap();
        assert_eq!((flags, &msg[..]), (0, &b"{\"a\":1}"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_and_compressed_envelopes_are_refused() {
        let mut big = BytesMut::new();
        big.put_u8(0);
        big.put_u32(u32::MAX);
        assert!(take_envelope(&mut big).is_err());
        let mut gz = BytesMut::from(&envelope(COMPRESSED, b"x")[..]);
        assert!(take_envelope(&mut gz).is_err());
    }

    #[test]
    fn the_end_carries_the_error_code() {
        let end = end_envelope(Err(&Error::Missing("no process 7".into())));
        assert_eq!(end[0], END_STREAM);
        let v: serde_json::Value = serde_json::from_slice(&end[5..]).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
    }
}
