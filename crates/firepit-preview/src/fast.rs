//! The fast path: plain HTTP/1.1 requests forwarded as bytes.
//!
//! Most preview traffic is ordinary requests, one after another on
//! kept-alive connections. For those, [`serve`] parses each request head in
//! place (`httparse`), asks the [`Gate`] whether it may pass and where to,
//! writes the rewritten head and the body to an upstream connection kept
//! alive in a [`Pool`], and copies the response back with its head rewritten
//! the same way, framing bodies by `Content-Length` or by scanning chunked
//! encoding without decoding it. No header map is built and nothing is
//! allocated per header: this is what takes the proxy's cost per request
//! near nginx's.
//!
//! Anything else goes to the full proxy ([`crate::proxy`], on hyper): the
//! connection, with the bytes already read, is handed back as
//! [`Outcome::Fallback`] *before* any of the request is consumed, so the full
//! path sees the request as the client sent it. That covers upgrades
//! (WebSocket), chunked or `Expect: 100-continue` uploads, HTTP/1.0, absolute
//! targets, malformed or oversized heads (the full path answers 400/431),
//! requests the gate does not admit (sign-in, share links, stopped sessions:
//! the full path answers them), and an upstream that cannot be dialed (the
//! full path renders the "nothing is listening" page).
//!
//! The rewriting is the full proxy's (see [`crate::proxy`]'s module docs):
//! hop-by-hop headers dropped, firepit's cookies and API token kept from the
//! app, `X-Forwarded-*` set, `frame-ancestors` added to responses, and
//! `Set-Cookie`s the app may not send ([`crate::proxy::set_cookie_allowed`])
//! dropped.
//!
//! Framing is strict, so that the app never reads a request differently
//! from firepit (no smuggling): a request with `Transfer-Encoding`, more than
//! one `Content-Length` or `Host`, or a length that is not a plain number,
//! is the full path's, which refuses what it must.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::Error;

/// Longest request or response head taken (longer ones: the full path).
pub const MAX_HEAD: usize = 64 << 10;
/// How long a client may take to finish a request head it has begun.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Headers parsed per message (more: the full path).
const MAX_HEADERS: usize = 100;
/// Idle upstream connections kept per session and port.
const MAX_IDLE: usize = 64;
/// Read buffer size.
const CHUNK: usize = 16 << 10;

/// A request head as the gate sees it.
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a str,
    /// The target, origin-form (`/path?query`).
    pub target: &'a str,
    /// The one `Host` header.
    pub host: &'a str,
    headers: &'a [httparse::Header<'a>],
}

impl<'a> RequestHead<'a> {
    /// The first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The value of cookie `name`, from any `Cookie` header.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    }
}

/// Where an admitted request goes.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The session.
    pub session: String,
    /// The port inside its machine.
    pub port: u16,
    /// The origin allowed to frame the response (`http://localhost:7777`).
    pub frame_ancestor: String,
    /// The preview's host name (`8000-abc.localhost`): the only `Domain` a
    /// cookie the app sets may name.
    pub cookie_host: String,
}

/// A future that dials an upstream.
pub type Dialing<'a> = Pin<Box<dyn Future<Output = Result<TcpStream, Error>> + Send + 'a>>;

/// The daemon's side of the fast path: who passes, and how to reach them.
pub trait Gate: Send + Sync {
    /// Where the request goes, or `None` for the full path to answer it.
    fn admit(&self, head: &RequestHead<'_>) -> Option<Admitted>;
    /// Connects to the admitted request's port inside its machine.
    fn dial<'a>(&'a self, to: &'a Admitted) -> Dialing<'a>;
    /// Cookie names that are firepit's and never reach an app.
    fn private_cookies(&self) -> &[&str];
    /// The API token: `Authorization: Bearer <it>` never reaches an app.
    fn api_token(&self) -> &str;
}

/// How [`serve`] ended.
pub enum Outcome {
    /// The connection is finished (closed by either side, or failed).
    Done,
    /// The full path takes the connection over: `read` holds bytes already
    /// read from it, the next request's head first.
    Fallback(TcpStream, BytesMut),
}

/// One idle upstream connection.
struct Idle {
    stream: TcpStream,
}

/// Kept-alive upstream connections of the fast path, by session and port.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, HashMap<u16, Vec<Idle>>>>,
}

impl Pool {
    fn take(&self, session: &str, port: u16) -> Option<TcpStream> {
        let mut idle = self.idle.lock().expect("pool");
        idle.get_mut(session)?
            .get_mut(&port)?
            .pop()
            .map(|i| i.stream)
    }

    fn put(&self, session: &str, port: u16, stream: TcpStream) {
        let mut idle = self.idle.lock().expect("pool");
        let list = match idle.get_mut(session) {
            Some(ports) => ports.entry(port).or_default(),
            None => idle
                .entry(session.to_owned())
                .or_default()
                .entry(port)
                .or_default(),
        };
        if list.len() < MAX_IDLE {
            list.push(Idle { stream });
        }
    }

    /// Drops the idle connections of `session` (it stopped).
    pub fn forget(&self, session: &str) {
        self.idle.lock().expect("pool").remove(session);
    }
}

/// What a parsed request needs after its head is gone from the buffer.
struct Plan {
    to: Admitted,
    head_len: usize,
    body_len: u64,
    head_only: bool,
    client_close: bool,
    out: Vec<u8>,
}

/// What to do with the bytes at the front of the buffer.
enum Step {
    /// The head is not complete yet.
    More,
    /// Forward it.
    Forward(Box<Plan>),
    /// The full path's.
    Fallback,
}

/// Serves `client` on the fast path until it closes, fails, or sends a
/// request that is the full path's.
pub async fn serve<G: Gate>(
    gate: &G,
    pool: &Pool,
    mut client: TcpStream,
    peer: SocketAddr,
) -> Outcome {
    let mut buf = BytesMut::with_capacity(CHUNK);
    let mut up_buf = BytesMut::with_capacity(CHUNK);
    let mut held = Held { pool, conn: None };
    loop {
        // The next request head.
        let mut deadline = None;
        let plan = loop {
            if !buf.is_empty() {
                match plan_request(gate, &buf, peer) {
                    Step::Forward(plan) => break plan,
                    Step::Fallback => return Outcome::Fallback(client, buf),
                    Step::More if buf.len() >= MAX_HEAD => {
                        return Outcome::Fallback(client, buf);
                    }
                    Step::More => {}
                }
            }
            buf.reserve(CHUNK);
            let read = match deadline {
                None if buf.is_empty() => client.read_buf(&mut buf).await,
                _ => {
                    let d =
                        *deadline.get_or_insert_with(|| tokio::time::Instant::now() + HEAD_TIMEOUT);
                    match tokio::time::timeout_at(d, client.read_buf(&mut buf)).await {
                        Ok(r) => r,
                        Err(_) => return Outcome::Done,
                    }
                }
            };
            match read {
                Ok(0) | Err(_) => return Outcome::Done,
                Ok(_) => {}
            }
        };
        // An upstream connection: an idle one, else a new one (dialing
        // errors are the full path's to explain).
        let idle = match held.take_for(&plan.to.session, plan.to.port) {
            Some(s) => Some(s),
            None => pool.take(&plan.to.session, plan.to.port),
        };
        let (mut up, mut reused) = match idle {
            Some(s) => (s, true),
            None => match gate.dial(&plan.to).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    (s, false)
                }
                Err(_) => return Outcome::Fallback(client, buf),
            },
        };
        buf.advance(plan.head_len);
        let resp = loop {
            let private = gate.private_cookies();
            match exchange(&mut client, &mut buf, &mut up, &mut up_buf, &plan, private).await {
                Ok(r) => break r,
                // A kept-alive connection the app had closed: a request
                // without a body is sent again over a new one.
                Err(Failed::Stale) if reused && plan.body_len == 0 => {
                    up_buf.clear();
                    match gate.dial(&plan.to).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            up = s;
                            reused = false;
                        }
                        Err(_) => {
                            let _ = client.write_all(&bad_gateway()).await;
                            return Outcome::Done;
                        }
                    }
                }
                Err(Failed::Stale | Failed::Upstream) => {
                    let _ = client.write_all(&bad_gateway()).await;
                    return Outcome::Done;
                }
                Err(Failed::Client) => return Outcome::Done,
            }
        };
        match copy_body(&mut client, &mut up, &mut up_buf, resp.framing).await {
            Ok(()) => {}
            Err(_) => return Outcome::Done,
        }
        if resp.upstream_reusable && up_buf.is_empty() {
            held.keep(plan.to.session, plan.to.port, up);
        }
        up_buf.clear();
        if resp.client_close {
            let _ = client.shutdown().await;
            return Outcome::Done;
        }
    }
}

/// The upstream connection a client connection used last, kept for its
/// next request (most go to the same port: no pool lock, no lookup); back to
/// the pool when the next request goes elsewhere or the client is gone.
struct Held<'p> {
    pool: &'p Pool,
    conn: Option<(String, u16, TcpStream)>,
}

impl Held<'_> {
    /// The held connection if it goes to `port` of `session`; any other one
    /// goes back to the pool.
    fn take_for(&mut self, session: &str, port: u16) -> Option<TcpStream> {
        match self.conn.take() {
            Some((s, p, up)) if s == session && p == port => Some(up),
            Some((s, p, up)) => {
                self.pool.put(&s, p, up);
                None
            }
            None => None,
        }
    }

    fn keep(&mut self, session: String, port: u16, up: TcpStream) {
        if let Some((s, p, old)) = self.conn.replace((session, port, up)) {
            self.pool.put(&s, p, old);
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some((s, p, up)) = self.conn.take() {
            self.pool.put(&s, p, up);
        }
    }
}

/// Why an exchange failed.
enum Failed {
    /// The upstream closed or failed before sending anything.
    Stale,
    /// The upstream failed or sent something that is not HTTP.
    Upstream,
    /// The client went away.
    Client,
}

/// How the response went, once its head is sent on.
struct Sent {
    framing: Framing,
    upstream_reusable: bool,
    client_close: bool,
}

/// Sends the request (head and body) and the response's head on.
async fn exchange(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    up: &mut TcpStream,
    up_buf: &mut BytesMut,
    plan: &Plan,
    private: &[&str],
) -> Result<Sent, Failed> {
    // The head, with as much of the body as is here, in one write.
    let here = (buf.len() as u64).min(plan.body_len) as usize;
    let mut first = Vec::with_capacity(plan.out.len() + here);
    first.extend_from_slice(&plan.out);
    first.extend_from_slice(&buf[..here]);
    if up.write_all(&first).await.is_err() {
        return Err(Failed::Stale);
    }
    buf.advance(here);
    let mut left = plan.body_len - here as u64;
    while left > 0 {
        buf.reserve(CHUNK);
        match client.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Failed::Client),
            Ok(_) => {}
        }
        let n = (buf.len() as u64).min(left) as usize;
        up.write_all(&buf[..n])
            .await
            .map_err(|_| Failed::Upstream)?;
        buf.advance(n);
        left -= n as u64;
    }
    // The response head (after any 1xx heads, passed on as they come).
    let mut got_any = false;
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(up_buf) {
                Ok(httparse::Status::Complete(len)) => {
                    Some(rewrite_response(&resp, len, plan, private).ok_or(Failed::Upstream)?)
                }
                Ok(httparse::Status::Partial) => None,
                Err(_) => return Err(Failed::Upstream),
            }
        };
        match parsed {
            Some((out, head_len, Some(mut sent))) => {
                up_buf.advance(head_len);
                let mut first = out;
                let body_here = sent.framing.consume(up_buf).ok_or(Failed::Upstream)?;
                first.extend_from_slice(&up_buf[..body_here]);
                client.write_all(&first).await.map_err(|_| Failed::Client)?;
                up_buf.advance(body_here);
                return Ok(sent);
            }
            Some((out, head_len, None)) => {
                // 1xx: on to the client, then the real head.
                up_buf.advance(head_len);
                client.write_all(&out).await.map_err(|_| Failed::Client)?;
                got_any = true;
                continue;
            }
            None if up_buf.len() >= MAX_HEAD => return Err(Failed::Upstream),
            None => {}
        }
        up_buf.reserve(CHUNK);
        match up.read_buf(up_buf).await {
            Ok(0) | Err(_) if up_buf.is_empty() && !got_any => return Err(Failed::Stale),
            Ok(0) | Err(_) => return Err(Failed::Upstream),
            Ok(_) => got_any = true,
        }
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// This many bytes (left).
    Length(u64),
    /// Chunked encoding, scanned.
    Chunked(Chunks),
    /// Until the app closes the connection.
    UntilClose,
}

impl Framing {
    /// How many of the bytes at the front of `bytes` belong to the body,
    /// counting them as gone by; `None` when they break chunked encoding.
    fn consume(&mut self, bytes: &[u8]) -> Option<usize> {
        Some(match self {
            Framing::Empty => 0,
            Framing::Length(left) => {
                let used = (bytes.len() as u64).min(*left);
                *left -= used;
                used as usize
            }
            Framing::Chunked(c) => c.scan(bytes)?.0,
            Framing::UntilClose => bytes.len(),
        })
    }

    fn done(&self) -> bool {
        match self {
            Framing::Empty => true,
            Framing::Length(n) => *n == 0,
            Framing::Chunked(c) => c.done(),
            Framing::UntilClose => false,
        }
    }
}

/// Copies the rest of a response body from the app to the client.
async fn copy_body(
    client: &mut TcpStream,
    up: &mut TcpStream,
    up_buf: &mut BytesMut,
    mut framing: Framing,
) -> std::io::Result<()> {
    let broken = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    while !framing.done() {
        up_buf.clear();
        up_buf.reserve(CHUNK);
        let n = up.read_buf(up_buf).await?;
        if n == 0 {
            return match framing {
                Framing::UntilClose => client.shutdown().await,
                _ => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            };
        }
        let used = framing.consume(up_buf).ok_or_else(broken)?;
        client.write_all(&up_buf[..used]).await?;
        up_buf.advance(used);
    }
    Ok(())
}

/// Where a chunked body's scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line: the size so far, whether a digit was seen,
    /// whether in an extension.
    Size { size: u64, digits: bool, ext: bool },
    /// After the size line's CR.
    SizeLf { size: u64 },
    /// In chunk data: bytes left.
    Data(u64),
    /// After chunk data: expecting CR.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// In the trailer section: at the start of a line or not.
    Trailer { line_start: bool },
    /// Expecting LF after a trailer line's CR; whether that line was empty.
    TrailerLf { empty: bool },
    /// The body ended.
    Done,
}

/// A scanner that finds where a chunked body ends, without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunks {
    state: ChunkState,
}

impl Chunks {
    fn new() -> Chunks {
        Chunks {
            state: ChunkState::Size {
                size: 0,
                digits: false,
                ext: false,
            },
        }
    }

    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Scans `bytes`; how many belong to the body and whether it ended
    /// there, or `None` when they are not chunked encoding.
    fn scan(&mut self, bytes: &[u8]) -> Option<(usize, bool)> {
        use ChunkState::*;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                Done => return Some((i, true)),
                Size { size, digits, ext } => match b {
                    b'\r' if digits => SizeLf { size },
                    _ if ext => Size { size, digits, ext },
                    b';' | b' ' | b'\t' if digits => Size {
                        size,
                        digits,
                        ext: true,
                    },
                    _ => {
                        let d = (b as char).to_digit(16)? as u64;
                        Size {
                            size: size.checked_mul(16)?.checked_add(d)?,
                            digits: true,
                            ext,
                        }
                    }
                },
                SizeLf { size } if b == b'\n' => {
                    if size == 0 {
                        Trailer { line_start: true }
                    } else {
                        Data(size)
                    }
                }
                SizeLf { .. } => return None,
                Data(left) => {
                    let n = ((bytes.len() - i) as u64).min(left);
                    i += n as usize;
                    self.state = if n == left { DataCr } else { Data(left - n) };
                    continue;
                }
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => Size {
                    size: 0,
                    digits: false,
                    ext: false,
                },
                DataCr | DataLf => return None,
                Trailer { line_start } => match b {
                    b'\r' => TrailerLf { empty: line_start },
                    _ => Trailer { line_start: false },
                },
                TrailerLf { empty } if b == b'\n' => {
                    if empty {
                        Done
                    } else {
                        Trailer { line_start: true }
                    }
                }
                TrailerLf { .. } => return None,
            };
            i += 1;
        }
        Some((i, self.state == Done))
    }
}

/// Headers of one connection, never forwarded as they are.
fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether a comma-separated header list (`Connection`) holds `token`.
fn list_has(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether any `Connection` header among `headers` names `name`.
fn named_by_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| list_has(h.value, name))
}

/// Parses the request at the front of `buf` and decides its way.
fn plan_request<G: Gate>(gate: &G, buf: &[u8], peer: SocketAddr) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Step::More,
        Err(_) => return Step::Fallback,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Step::Fallback;
    };
    if !target.starts_with('/') || method.eq_ignore_ascii_case("CONNECT") {
        return Step::Fallback;
    }
    let mut host = None;
    let mut length = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Step::Fallback;
            }
            host = std::str::from_utf8(h.value).ok();
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            if length.is_some() || n.is_none() {
                return Step::Fallback;
            }
            length = n;
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Step::Fallback;
        }
    }
    let Some(host) = host else {
        return Step::Fallback;
    };
    let head = RequestHead {
        method,
        target,
        host,
        headers: req.headers,
    };
    let Some(to) = gate.admit(&head) else {
        return Step::Fallback;
    };
    let client_close = named_by_connection(req.headers, "close");
    let mut out = Vec::with_capacity(head_len + 128);
    write_request_head(&mut out, &head, gate, peer);
    Step::Forward(Box::new(Plan {
        to,
        head_len,
        body_len: length.unwrap_or(0),
        head_only: method == "HEAD",
        client_close,
        out,
    }))
}

/// Writes the request head for the app (see the module docs).
fn write_request_head<G: Gate>(
    out: &mut Vec<u8>,
    head: &RequestHead<'_>,
    gate: &G,
    peer: SocketAddr,
) {
    use std::io::Write;
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in head.headers {
        let name = h.name;
        if is_hop_by_hop(name)
            || named_by_connection(head.headers, name)
            || name.eq_ignore_ascii_case("x-forwarded-for")
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
        {
            continue;
        }
        if name.eq_ignore_ascii_case("cookie") {
            write_kept_cookies(out, h.value, gate.private_cookies());
            continue;
        }
        if name.eq_ignore_ascii_case("authorization")
            && h.value
                .strip_prefix(b"Bearer ")
                .is_some_and(|t| t.trim_ascii() == gate.api_token().as_bytes())
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(
        out,
        "x-forwarded-for: {}\r\nx-forwarded-proto: http\r\nx-forwarded-host: {}\r\n\r\n",
        peer.ip(),
        head.host
    );
}

/// Writes a `Cookie` header with firepit's own cookies left out (none if
/// nothing is left).
fn write_kept_cookies(out: &mut Vec<u8>, value: &[u8], private: &[&str]) {
    let mut first = true;
    for kv in value.split(|&b| b == b';') {
        let kv = kv.trim_ascii();
        if kv.is_empty() {
            continue;
        }
        let name = kv
            .iter()
            .position(|&b| b == b'=')
            .map_or(kv, |i| &kv[..i])
            .trim_ascii();
        if private.iter().any(|p| p.as_bytes() == name) {
            continue;
        }
        out.extend_from_slice(if first { b"cookie: " } else { b"; " });
        out.extend_from_slice(kv);
        first = false;
    }
    if !first {
        out.extend_from_slice(b"\r\n");
    }
}

/// The rewritten response head, its length in the buffer, and how the
/// response goes on (`None` for a 1xx head, which another head follows).
type ResponseHead = (Vec<u8>, usize, Option<Sent>);

/// Rewrites a response head for the client; `None` when it cannot be
/// forwarded (a 101 nobody asked for, a bad length). `private` are
/// firepit's cookie names.
fn rewrite_response(
    resp: &httparse::Response<'_, '_>,
    head_len: usize,
    plan: &Plan,
    private: &[&str],
) -> Option<ResponseHead> {
    use std::io::Write;
    let code = resp.code?;
    let reason = resp.reason.unwrap_or("");
    let mut out = Vec::with_capacity(head_len + 96);
    let _ = write!(out, "HTTP/1.1 {code} {reason}\r\n");
    if (100..200).contains(&code) {
        if code == 101 {
            return None;
        }
        for h in resp.headers.iter() {
            if !h.name.eq_ignore_ascii_case("set-cookie") {
                push_header(&mut out, h.name, h.value);
            }
        }
        out.extend_from_slice(b"\r\n");
        return Some((out, head_len, None));
    }
    let mut chunked = false;
    let mut length = None;
    let mut csp_frame_ancestors = false;
    let mut csp: Option<&[u8]> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .split(|&b| b == b',')
                .next_back()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                return None;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("content-security-policy") {
            // As in the full proxy: the first policy gets `frame-ancestors`
            // (and stands for all) unless one has it already.
            csp_frame_ancestors |= has_frame_ancestors(h.value);
            csp = csp.or(Some(h.value));
        }
    }
    let framing = if plan.head_only || code == 204 || code == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked(Chunks::new())
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let upstream_close = resp.version != Some(1)
        || named_by_connection(resp.headers, "close")
        || framing == Framing::UntilClose;
    let client_close = plan.client_close || framing == Framing::UntilClose;
    for h in resp.headers.iter() {
        let name = h.name;
        // Chunks pass through as they are, so their framing header stays
        // (and a length beside it goes, as the client would ignore it).
        let keep_te = chunked && name.eq_ignore_ascii_case("transfer-encoding");
        if !keep_te && (is_hop_by_hop(name) || named_by_connection(resp.headers, name)) {
            continue;
        }
        if chunked && name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        if name.eq_ignore_ascii_case("set-cookie")
            && !crate::proxy::set_cookie_allowed(h.value, &plan.to.cookie_host, private)
        {
            continue;
        }
        if !csp_frame_ancestors
            && (name.eq_ignore_ascii_case("x-frame-options")
                || name.eq_ignore_ascii_case("content-security-policy"))
        {
            continue;
        }
        push_header(&mut out, name, h.value);
    }
    if !csp_frame_ancestors {
        out.extend_from_slice(b"content-security-policy: ");
        if let Some(p) = csp {
            let p = p.trim_ascii();
            let p = p.strip_suffix(b";").unwrap_or(p);
            if !p.is_empty() {
                out.extend_from_slice(p);
                out.extend_from_slice(b"; ");
            }
        }
        out.extend_from_slice(b"frame-ancestors ");
        out.extend_from_slice(plan.to.frame_ancestor.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if client_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some((
        out,
        head_len,
        Some(Sent {
            framing,
            upstream_reusable: !upstream_close,
            client_close,
        }),
    ))
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a policy has a `frame-ancestors` directive.
fn has_frame_ancestors(policy: &[u8]) -> bool {
    policy.split(|&b| b == b';').any(|d| {
        d.trim_ascii()
            .split(|b| b.is_ascii_whitespace())
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case(b"frame-ancestors"))
    })
}

/// The answer when the app failed mid-exchange.
fn bad_gateway() -> Vec<u8> {
    let body = "<!doctype html><title>The app did not answer</title>\
                <p>The app's server closed the connection or sent something that is not HTTP.</p>\n";
    format!(
        "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A connection with bytes already read from it put back in front, for the
/// full path to read again.
pub struct Prefixed {
    read: BytesMut,
    inner: TcpStream,
}

impl Prefixed {
    /// `inner`, which reads `read` first.
    pub fn new(read: BytesMut, inner: TcpStream) -> Prefixed {
        Prefixed { read, inner }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(out.remaining());
            out.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    struct TestGate {
        upstream: SocketAddr,
    }

    impl Gate for TestGate {
        fn admit(&self, head: &RequestHead<'_>) -> Option<Admitted> {
            (head.host.starts_with("8000-abc.") && !head.target.starts_with("/__firepit/")).then(
                || Admitted {
                    session: "abc".into(),
                    port: 8000,
                    frame_ancestor: "http://localhost:7777".into(),
                    cookie_host: "8000-abc.localhost".into(),
                },
            )
        }

        fn dial<'a>(&'a self, _to: &'a Admitted) -> Dialing<'a> {
            Box::pin(async move {
                TcpStream::connect(self.upstream)
                    .await
                    .map_err(|source| Error::Connect { port: 8000, source })
            })
        }

        fn private_cookies(&self) -> &[&str] {
            &["firepit_token", "firepit_preview", "firepit_share"]
        }

        fn api_token(&self) -> &str {
            "sekrit"
        }
    }

    fn gate() -> TestGate {
        TestGate {
            upstream: "127.0.0.1:9".parse().unwrap(),
        }
    }

    fn plan(raw: &str) -> Option<Plan> {
        match plan_request(&gate(), raw.as_bytes(), "10.1.2.3:5555".parse().unwrap()) {
            Step::Forward(p) => Some(*p),
            Step::Fallback => None,
            Step::More => panic!("incomplete: {raw:?}"),
        }
    }

    #[test]
    fn requests_lose_hop_by_hop_and_firepit_credentials() {
        let p = plan(
            "GET /a/b?c=d HTTP/1.1\r\nHost: 8000-abc.localhost:7777\r\n\
             Connection: keep-alive, x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
             Cookie: a=1; firepit_token=sekrit\r\nCookie: firepit_preview=x;b=2\r\n\
             Authorization: Bearer sekrit\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "GET /a/b?c=d HTTP/1.1\r\nHost: 8000-abc.localhost:7777\r\ncookie: a=1\r\ncookie: b=2\r\n\
             Accept: */*\r\nx-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: 8000-abc.localhost:7777\r\n\r\n"
        );
        assert_eq!(p.body_len, 0);
        assert!(!p.client_close);
        let p = plan(
            "POST /x HTTP/1.1\r\nHost: 8000-abc.localhost\r\nContent-Length: 5\r\n\
             Authorization: Bearer apps-own\r\nConnection: close\r\n\r\nhello",
        )
        .unwrap();
        assert_eq!(p.body_len, 5);
        assert!(p.client_close);
        let out = String::from_utf8(p.out).unwrap();
        assert!(out.contains("Authorization: Bearer apps-own\r\n"), "{out}");
        assert!(out.contains("Content-Length: 5\r\n"), "{out}");
        assert!(!out.to_ascii_lowercase().contains("connection"), "{out}");
    }

    #[test]
    fn what_the_fast_path_does_not_take_falls_back() {
        for raw in [
            "GET / HTTP/1.0\r\nHost: 8000-abc.localhost\r\n\r\n",
            "GET http://8000-abc.localhost/ HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: 8000-abc.localhost\r\nHost: 8001-abc.localhost\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: localhost:7777\r\n\r\n",
            "GET /__firepit/auth HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: 8000-abc.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: 8000-abc.localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: 8000-abc.localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: 8000-abc.localhost\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: 8000-abc.localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            "CONNECT 8000-abc.localhost:80 HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n",
            "GET / HTTP/1.1\r\nHost 8000-abc.localhost\r\n\r\n",
        ] {
            assert!(plan(raw).is_none(), "{raw:?}");
        }
    }

    fn response(raw: &str, head_only: bool) -> Option<(String, Option<Sent>)> {
        let mut p = plan("GET / HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n").unwrap();
        p.head_only = head_only;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = resp.parse(raw.as_bytes()) else {
            panic!("bad test response {raw:?}");
        };
        let (out, len, sent) = rewrite_response(&resp, n, &p, gate().private_cookies())?;
        assert_eq!(len, n);
        Some((String::from_utf8(out).unwrap(), sent))
    }

    #[test]
    fn responses_may_be_framed_by_firepit_only() {
        let (out, sent) = response(
            "HTTP/1.1 200 OK\r\nX-Frame-Options: DENY\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\
             content-security-policy: frame-ancestors http://localhost:7777\r\n\r\n"
        );
        let sent = sent.unwrap();
        assert_eq!(sent.framing, Framing::Length(2));
        assert!(!sent.upstream_reusable);
        assert!(!sent.client_close);

        let (out, _) = response(
            "HTTP/1.1 200 OK\r\nContent-Security-Policy: default-src 'self';\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(out.contains(
            "content-security-policy: default-src 'self'; frame-ancestors http://localhost:7777\r\n"
        ));
        assert_eq!(out.matches("ontent-security-policy").count(), 1, "{out}");

        let (out, _) = response(
            "HTTP/1.1 200 OK\r\nContent-Security-Policy: default-src 'self'; Frame-Ancestors 'none'\r\n\
             X-Frame-Options: DENY\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(out.contains("Frame-Ancestors 'none'\r\n"));
        assert!(out.contains("X-Frame-Options: DENY\r\n"));
    }

    #[test]
    fn apps_cannot_set_firepits_cookies_or_cookies_beyond_their_host() {
        let (out, _) = response(
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: firepit_token=x; Path=/\r\n\
             set-cookie: b=2; Domain=localhost\r\nSet-Cookie: c=3; Domain=8000-abc.localhost\r\n\
             Content-Length: 0\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(out.contains("Set-Cookie: a=1\r\n"), "{out}");
        assert!(
            out.contains("Set-Cookie: c=3; Domain=8000-abc.localhost\r\n"),
            "{out}"
        );
        assert!(!out.contains("firepit_token"), "{out}");
        assert!(!out.contains("b=2"), "{out}");
        let (out, sent) = response(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nSet-Cookie: a=1; Domain=localhost\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(sent.is_none());
        assert_eq!(out, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n");
    }

    #[test]
    fn response_framing() {
        let framing = |raw: &str, head: bool| response(raw, head).unwrap().1.unwrap().framing;
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n";
        assert_eq!(framing(chunked, false), Framing::Chunked(Chunks::new()));
        let (out, _) = response(chunked, false).unwrap();
        assert!(out.contains("Transfer-Encoding: chunked\r\n"));
        assert!(!out.contains("Content-Length"));
        assert_eq!(framing(chunked, true), Framing::Empty);
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", false),
            Framing::Empty
        );
        assert_eq!(
            framing(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
                false
            ),
            Framing::Empty
        );
        let (out, sent) = response("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        let sent = sent.unwrap();
        assert_eq!(sent.framing, Framing::UntilClose);
        assert!(sent.client_close && !sent.upstream_reusable);
        assert!(out.ends_with("connection: close\r\n\r\n"));
        let (_, sent) = response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap();
        assert!(!sent.unwrap().upstream_reusable);
        let (out, sent) = response("HTTP/1.1 100 Continue\r\n\r\n", false).unwrap();
        assert!(sent.is_none());
        assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
        for bad in [
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert!(response(bad, false).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn chunked_bodies_end_where_they_end() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - 4;
        let mut c = Chunks::new();
        assert_eq!(c.scan(body), Some((end, true)));
        // Byte by byte, the same end.
        let mut c = Chunks::new();
        for (i, b) in body.iter().enumerate() {
            let (used, done) = c.scan(std::slice::from_ref(b)).unwrap();
            if i < end {
                assert_eq!((used, done), (1, i == end - 1), "byte {i}");
            } else {
                assert_eq!((used, done), (0, true));
            }
        }
        let mut c = Chunks::new();
        assert_eq!(c.scan(b"0\r\n\r\n"), Some((5, true)));
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"\r\n",
            b"0\rX",
            b"ffffffffffffffffff\r\n",
        ] {
            assert_eq!(
                Chunks::new().scan(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// An app that answers each request on a connection with a canned
    /// response, echoing the request's body length, and counts connections.
    async fn app(
        close_after_first: bool,
    ) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for conn in 0.. {
                let (mut s, _) = l.accept().await.unwrap();
                let tx = tx.clone();
                tx.send(format!("connection {conn}")).unwrap();
                tokio::spawn(async move {
                    let mut buf = BytesMut::new();
                    loop {
                        let (len, body) = loop {
                            let mut h = [httparse::EMPTY_HEADER; 32];
                            let mut r = httparse::Request::new(&mut h);
                            if let Ok(httparse::Status::Complete(n)) = r.parse(&buf) {
                                let body = r
                                    .headers
                                    .iter()
                                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                                    .map_or(0, |h| {
                                        std::str::from_utf8(h.value).unwrap().parse().unwrap()
                                    });
                                let path = r.path.unwrap().to_owned();
                                tx.send(String::from_utf8_lossy(&buf[..n]).into_owned())
                                    .unwrap();
                                break (n, (path, body));
                            }
                            if s.read_buf(&mut buf).await.unwrap() == 0 {
                                return;
                            }
                        };
                        while buf.len() < len + body.1 {
                            s.read_buf(&mut buf).await.unwrap();
                        }
                        buf.advance(len + body.1);
                        let resp = match body.0.as_str() {
                            "/chunked" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                                           3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                                .to_owned(),
                            _ => format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ngot{:03}",
                                body.1
                            ),
                        };
                        s.write_all(resp.as_bytes()).await.unwrap();
                        if close_after_first {
                            return;
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    async fn client_pair() -> (TcpStream, TcpStream, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, peer) = l.accept().await.unwrap();
        (c, s, peer)
    }

    async fn read_until(c: &mut TcpStream, buf: &mut Vec<u8>, needle: &str) {
        read_times(c, buf, needle, 1).await;
    }

    async fn read_times(c: &mut TcpStream, buf: &mut Vec<u8>, needle: &str, times: usize) {
        while String::from_utf8_lossy(buf).matches(needle).count() < times {
            let mut b = [0u8; 4096];
            let n = c.read(&mut b).await.unwrap();
            assert!(
                n > 0,
                "closed before {needle:?}: {:?}",
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&b[..n]);
        }
    }

    #[tokio::test]
    async fn requests_on_a_kept_alive_connection_reuse_one_upstream() {
        let (upstream, mut seen) = app(false).await;
        let gate = TestGate { upstream };
        let pool = Pool::default();
        let (mut c, s, peer) = client_pair().await;
        let served = tokio::spawn(async move {
            let pool = pool;
            matches!(serve(&gate, &pool, s, peer).await, Outcome::Done)
        });
        // Two requests in one write (pipelined), a body in two writes, chunked.
        c.write_all(
            b"GET /a HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n\
              GET /b HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n",
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        read_times(&mut c, &mut got, "got000", 2).await;
        c.write_all(
            b"POST /c HTTP/1.1\r\nHost: 8000-abc.localhost\r\nContent-Length: 12\r\n\r\nhello",
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.write_all(b" world!").await.unwrap();
        read_until(&mut c, &mut got, "got012").await;
        c.write_all(
            b"GET /chunked HTTP/1.1\r\nHost: 8000-abc.localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).await.unwrap();
        let rest = String::from_utf8(rest).unwrap();
        assert!(rest.contains("connection: close\r\n"), "{rest}");
        assert!(rest.ends_with("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "{rest}");
        assert!(served.await.unwrap());
        let mut heads = Vec::new();
        while let Ok(h) = seen.try_recv() {
            heads.push(h);
        }
        // One upstream connection for all four.
        assert_eq!(heads.len(), 5, "{heads:?}");
        assert_eq!(heads[0], "connection 0");
        assert!(heads[3].contains("Content-Length: 12"));
        assert!(
            heads[1..]
                .iter()
                .all(|h| h.contains("x-forwarded-for: 127.0.0.1"))
        );
    }

    #[tokio::test]
    async fn a_closed_idle_upstream_is_replaced_for_a_request_without_body() {
        let (upstream, mut seen) = app(true).await;
        let gate = TestGate { upstream };
        let pool = Pool::default();
        let (mut c, s, peer) = client_pair().await;
        tokio::spawn(async move {
            let pool = pool;
            serve(&gate, &pool, s, peer).await
        });
        let mut got = Vec::new();
        for i in 0..3 {
            c.write_all(b"GET / HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n")
                .await
                .unwrap();
            read_times(&mut c, &mut got, "got000", i + 1).await;
            // Let the app's close arrive.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut heads = Vec::new();
        while let Ok(h) = seen.try_recv() {
            heads.push(h);
        }
        // Three requests, three connections.
        assert_eq!(heads.len(), 6, "{heads:?}");
        assert_eq!(heads[4], "connection 2");
    }

    #[tokio::test]
    async fn the_full_path_gets_the_request_untouched() {
        let (upstream, _seen) = app(false).await;
        let gate = TestGate { upstream };
        let pool = Pool::default();
        let (mut c, s, peer) = client_pair().await;
        let served = tokio::spawn(async move {
            let pool = pool;
            serve(&gate, &pool, s, peer).await
        });
        let raw = "GET /ws HTTP/1.1\r\nHost: 8000-abc.localhost\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nxyz";
        c.write_all(raw.as_bytes()).await.unwrap();
        let Outcome::Fallback(s, read) = served.await.unwrap() else {
            panic!("served on the fast path");
        };
        let mut p = Prefixed::new(read, s);
        let mut back = vec![0u8; raw.len()];
        p.read_exact(&mut back).await.unwrap();
        assert_eq!(back, raw.as_bytes());
        p.write_all(b"ok").await.unwrap();
        let mut two = [0u8; 2];
        c.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ok");
    }

    #[tokio::test]
    async fn an_app_that_breaks_off_gets_a_502() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            s.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
        });
        let gate = TestGate { upstream };
        let pool = Pool::default();
        let (mut c, s, peer) = client_pair().await;
        tokio::spawn(async move {
            let pool = pool;
            serve(&gate, &pool, s, peer).await
        });
        c.write_all(b"GET / HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n")
            .await
            .unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).await.unwrap();
        assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 502 "));
    }
}
