//! Forwarding one HTTP/1.1 request to the app inside a machine.
//!
//! Bodies stream both ways (chunked uploads, SSE), upstream connections are
//! kept alive and reused per session and port, and a request that asks for an
//! `Upgrade` (WebSocket: LiveView, Vite HMR) is forwarded with its upgrade
//! headers; on `101 Switching Protocols` the two upgraded connections are
//! spliced byte for byte.
//!
//! Headers on the way in: hop-by-hop headers go (those named by `Connection`
//! too), the original `Host` stays (dev servers check it), `X-Forwarded-For`,
//! `-Proto` and `-Host` are set, and firepit's own credentials (its cookies,
//! an `Authorization` carrying the API token) never reach the app. On the way
//! out: `Content-Security-Policy: frame-ancestors <firepit UI>` is added (or
//! appended to the app's policy when it has no `frame-ancestors`), so only
//! firepit's UI can frame a preview, and `X-Frame-Options` then goes; and a
//! `Set-Cookie` that names one of firepit's cookies, or a `Domain` other than
//! the preview's own host, is dropped ([`set_cookie_allowed`]), so an app can
//! neither set nor shadow the UI's cookies or another preview's.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use crate::Error;

/// The body type of preview responses.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Idle upstream connections kept per session and port.
const MAX_IDLE: usize = 64;

/// Headers that belong to one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the proxy needs to know about the request it forwards.
#[derive(Debug, Clone)]
pub struct Forward<'a> {
    /// The client's address (for `X-Forwarded-For`).
    pub client: SocketAddr,
    /// Origin allowed to frame previews (`http://localhost:7777`).
    pub frame_ancestor: &'a str,
    /// Cookie names that are firepit's and never reach the app.
    pub private_cookies: &'a [&'a str],
    /// The API token: an `Authorization: Bearer` carrying it never reaches the app.
    pub api_token: &'a str,
}

/// Whether the request asks to switch protocols (`Connection: upgrade`).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE) && connection_has(req.headers(), "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers, those `Connection` names among them.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Rewrites a request's headers and target for the app (see the module docs).
pub fn prepare_request<B>(req: &mut Request<B>, f: &Forward<'_>) {
    let upgrade = is_upgrade(req)
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten();
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto);
    }
    // firepit's cookies stay with firepit.
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .filter(|kv| {
            let name = kv.split_once('=').map_or(*kv, |(k, _)| k).trim();
            !f.private_cookies.contains(&name)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
    let carries_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == f.api_token);
    if carries_token {
        headers.remove(header::AUTHORIZATION);
    }
    let host = headers.get(header::HOST).cloned();
    if let Ok(v) = HeaderValue::from_str(&f.client.ip().to_string()) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST, h);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    // Origin-form toward the app: the path and query only (most requests
    // are already).
    if req.uri().scheme().is_none() && req.uri().authority().is_none() {
        return;
    }
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    if let Ok(uri) = pq.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
}

/// Whether a `Set-Cookie` the app at `host` (the preview's host name, no
/// port) sends may reach the browser. Not when it names one of firepit's
/// cookies (`private`, also under a `__Host-` or `__Secure-` prefix, in any
/// case), nor when it has a `Domain` other than `host` itself: a cookie for
/// a parent domain would reach the UI, where it could shadow firepit's own,
/// and every other session's previews. Works on bytes: a value that is not
/// text is judged the same way.
pub fn set_cookie_allowed(value: &[u8], host: &str, private: &[&str]) -> bool {
    let mut parts = value.split(|&b| b == b';');
    let pair = parts.next().unwrap_or_default();
    let name = match pair.iter().position(|&b| b == b'=') {
        Some(i) => &pair[..i],
        None => pair,
    };
    let name = unprefixed(name.trim_ascii());
    if private
        .iter()
        .any(|p| unprefixed(p.as_bytes()).eq_ignore_ascii_case(name))
    {
        return false;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    parts.all(|attr| {
        let Some(i) = attr.iter().position(|&b| b == b'=') else {
            return true;
        };
        if !attr[..i].trim_ascii().eq_ignore_ascii_case(b"domain") {
            return true;
        }
        let domain = attr[i + 1..].trim_ascii();
        let domain = domain.strip_prefix(b".").unwrap_or(domain);
        let domain = domain.strip_suffix(b".").unwrap_or(domain);
        domain.eq_ignore_ascii_case(host.as_bytes())
    })
}

/// A cookie name without a `__Host-` or `__Secure-` prefix.
fn unprefixed(name: &[u8]) -> &[u8] {
    for prefix in [&b"__host-"[..], b"__secure-"] {
        if name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return &name[prefix.len()..];
        }
    }
    name
}

/// Rewrites a response's headers for the browser (see the module docs):
/// `cookie_host` is the preview's host name, `private_cookies` firepit's
/// cookie names.
pub fn prepare_response<B>(
    resp: &mut Response<B>,
    frame_ancestor: &str,
    cookie_host: &str,
    private_cookies: &[&str],
) {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    if !switching {
        strip_hop_by_hop(headers);
    }
    // A 101 can set cookies too.
    if let header::Entry::Occupied(e) = headers.entry(header::SET_COOKIE) {
        let (_, all) = e.remove_entry_mult();
        let kept: Vec<HeaderValue> = all
            .filter(|v| set_cookie_allowed(v.as_bytes(), cookie_host, private_cookies))
            .collect();
        for v in kept {
            headers.append(header::SET_COOKIE, v);
        }
    }
    let directive = format!("frame-ancestors {frame_ancestor}");
    let has_frame_ancestors = headers
        .get_all(header::CONTENT_SECURITY_POLICY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|d| {
            d.split_whitespace()
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case("frame-ancestors"))
        });
    if has_frame_ancestors {
        return;
    }
    let merged = match headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
    {
        Some(csp) if !csp.trim().is_empty() => {
            format!("{}; {directive}", csp.trim().trim_end_matches(';'))
        }
        _ => directive,
    };
    if let Ok(v) = HeaderValue::from_str(&merged) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
        headers.remove(header::X_FRAME_OPTIONS);
    }
}

/// An upstream connection's driving half, polled by the request that uses it
/// (no task of its own: one wake per exchange, not three).
type Conn =
    Pin<Box<hyper::client::conn::http1::Connection<TokioIo<tokio::net::TcpStream>, Incoming>>>;

/// How many times in a row a connection woken from inside its own poll is
/// polled again at once before the task is woken instead.
const MAX_REPOLLS: usize = 8;

/// The waker an upstream connection is polled with.
///
/// `SendRequest`, the response and its body talk to the connection over
/// channels that wake whoever polls them, and the request's task polls both
/// ends: each exchange would wake the task from inside its own poll, which
/// tokio takes for a yield (the task goes to the back of the queue and an
/// idle worker is woken to steal it: a futex or eventfd write and a thread
/// switch per request, for nothing). A wake that comes while the task polls
/// the connection is only noted, and the connection polled again at once;
/// any other wake (the socket is ready) is the task's.
struct Relay {
    polling: AtomicBool,
    again: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.again.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst)
            && let Some(w) = &*self.task.lock().expect("relay")
        {
            w.wake_by_ref();
        }
    }
}

/// A [`Relay`] and the waker made of it.
struct Relayed {
    relay: Arc<Relay>,
    waker: Waker,
}

impl Relayed {
    fn new() -> Relayed {
        let relay = Arc::new(Relay {
            polling: AtomicBool::new(false),
            again: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        let waker = Waker::from(relay.clone());
        Relayed { relay, waker }
    }

    /// Runs `f` as if polled from inside (its wakes are noted, not sent).
    fn inside<R>(&self, f: impl FnOnce() -> R) -> R {
        self.relay.polling.store(true, Ordering::SeqCst);
        let r = f();
        self.relay.polling.store(false, Ordering::SeqCst);
        r
    }

    /// Polls `f` for the task of `cx`, again at once while `f` woke itself.
    fn poll<R>(&self, cx: &Context<'_>, mut f: impl FnMut(&mut Context<'_>) -> Poll<R>) -> Poll<R> {
        {
            let mut task = self.relay.task.lock().expect("relay");
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let mut inner = Context::from_waker(&self.waker);
        for _ in 0..MAX_REPOLLS {
            self.relay.again.store(false, Ordering::SeqCst);
            let r = self.inside(|| f(&mut inner));
            if r.is_ready() || !self.relay.again.swap(false, Ordering::SeqCst) {
                return r;
            }
        }
        // Busy (or out of tokio's budget): let other tasks run first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Forgets the task (the connection goes idle).
    fn detach(&self) {
        *self.relay.task.lock().expect("relay") = None;
    }
}

/// One kept-alive upstream connection: its sender and its connection,
/// driven together by whoever holds it.
struct Up {
    sender: SendRequest<Incoming>,
    conn: Conn,
    /// The connection ended (closed or failed); never reused.
    done: bool,
    relayed: Relayed,
}

/// Polls the connection (reading, writing) unless it ended.
fn drive(conn: &mut Conn, done: &mut bool, cx: &mut Context<'_>) {
    if !*done && conn.as_mut().poll(cx).is_ready() {
        *done = true;
    }
}

impl Up {
    fn new(sender: SendRequest<Incoming>, conn: Conn) -> Up {
        Up {
            sender,
            conn,
            done: false,
            relayed: Relayed::new(),
        }
    }

    /// Sends `req` and waits for the response head, driving the connection;
    /// gives `req` back when the connection could not take it.
    async fn exchange(
        &mut self,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, (Option<Request<Incoming>>, Option<hyper::Error>)> {
        let Up {
            sender,
            conn,
            done,
            relayed,
        } = self;
        let ready = std::future::poll_fn(|cx| {
            relayed.poll(cx, |cx| {
                drive(conn, done, cx);
                if *done {
                    return Poll::Ready(false);
                }
                sender.poll_ready(cx).map(|r| r.is_ok())
            })
        })
        .await;
        if !ready {
            return Err((Some(req), None));
        }
        let mut fut = std::pin::pin!(relayed.inside(|| sender.try_send_request(req)));
        let r = std::future::poll_fn(|cx| {
            relayed.poll(cx, |cx| {
                drive(conn, done, cx);
                fut.as_mut().poll(cx)
            })
        })
        .await;
        r.map_err(|mut e| {
            let req = e.take_message();
            (req, Some(e.into_error()))
        })
    }
}

/// Idle connections by session, then port.
type IdleMap = HashMap<String, HashMap<u16, Vec<Up>>>;

/// Upstream connections kept alive between requests, per session and port.
#[derive(Default)]
pub struct Upstreams {
    idle: Arc<Mutex<IdleMap>>,
}

impl Upstreams {
    /// Forwards an already prepared request to `port` of `session`, over an
    /// idle kept-alive connection or a new one from `dial`.
    pub async fn forward<D, F>(
        &self,
        session: &str,
        port: u16,
        mut req: Request<Incoming>,
        dial: D,
    ) -> Result<Response<Body>, Error>
    where
        D: FnOnce() -> F,
        F: Future<Output = Result<tokio::net::TcpStream, Error>>,
    {
        if is_upgrade(&req) {
            return forward_upgrade(req, dial().await?).await;
        }
        // An idle connection first; a request it could not even send (the app
        // closed it meanwhile) comes back and goes over a new one.
        while let Some(mut up) = self.take_idle(session, port) {
            match up.exchange(req).await {
                Ok(resp) => return Ok(self.returning(session, port, up, resp)),
                Err((Some(r), _)) => req = r,
                Err((None, e)) => {
                    return Err(Error::Upstream(e.expect("an unsent request or an error")));
                }
            }
        }
        let stream = dial().await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Error::Upstream)?;
        let mut up = Up::new(sender, Box::pin(conn));
        match up.exchange(req).await {
            Ok(resp) => Ok(self.returning(session, port, up, resp)),
            Err((_, Some(e))) => Err(Error::Upstream(e)),
            Err((_, None)) => Err(Error::Connect {
                port,
                source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            }),
        }
    }

    /// The response, its body driving `up` and handing it back to the idle
    /// ones once read to the end (a body dropped halfway takes its
    /// connection along).
    fn returning(
        &self,
        session: &str,
        port: u16,
        up: Up,
        resp: Response<Incoming>,
    ) -> Response<Body> {
        let back = Back {
            idle: self.idle.clone(),
            session: session.to_owned(),
            port,
            up,
        };
        resp.map(|inner| {
            Pooled {
                inner,
                ended: false,
                back: Some(back),
            }
            .boxed()
        })
    }

    /// An idle connection that has not ended, if any.
    fn take_idle(&self, session: &str, port: u16) -> Option<Up> {
        let mut idle = self.idle.lock().expect("upstreams");
        let list = idle.get_mut(session)?.get_mut(&port)?;
        while let Some(up) = list.pop() {
            if !up.done && !up.sender.is_closed() {
                return Some(up);
            }
        }
        None
    }
}

/// A connection on its way back to the idle ones.
struct Back {
    idle: Arc<Mutex<IdleMap>>,
    session: String,
    port: u16,
    up: Up,
}

impl Back {
    fn put(self) {
        if self.up.done || self.up.sender.is_closed() {
            return;
        }
        self.up.relayed.detach();
        let mut idle = self.idle.lock().expect("upstreams");
        let list = match idle.get_mut(&self.session) {
            Some(ports) => ports.entry(self.port).or_default(),
            None => idle
                .entry(self.session)
                .or_default()
                .entry(self.port)
                .or_default(),
        };
        if list.len() >= MAX_IDLE {
            list.retain(|u| !u.done && !u.sender.is_closed());
        }
        if list.len() < MAX_IDLE {
            list.push(self.up);
        }
    }
}

/// An upstream response body that drives its connection, and puts it back
/// once the body ended.
struct Pooled {
    inner: Incoming,
    ended: bool,
    back: Option<Back>,
}

impl hyper::body::Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let inner = &mut this.inner;
        let r = match &mut this.back {
            Some(b) => {
                let Up {
                    conn,
                    done,
                    relayed,
                    ..
                } = &mut b.up;
                relayed.poll(cx, |cx| {
                    drive(conn, done, cx);
                    Pin::new(&mut *inner).poll_frame(cx)
                })
            }
            None => Pin::new(inner).poll_frame(cx),
        };
        match &r {
            Poll::Ready(None) => {
                this.ended = true;
                if let Some(b) = this.back.take() {
                    b.put();
                }
            }
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(b) = self.back.take()
            && (self.ended || hyper::body::Body::is_end_stream(&self.inner))
        {
            b.put();
        }
    }
}

/// Forwards an upgrade request on its own connection; on 101 splices the
/// client's and the app's upgraded connections.
async fn forward_upgrade(
    mut req: Request<Incoming>,
    stream: tokio::net::TcpStream,
) -> Result<Response<Body>, Error> {
    let downstream = hyper::upgrade::on(&mut req);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Error::Upstream)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "preview upgrade connection ended");
        }
    });
    let mut resp = sender.send_request(req).await.map_err(Error::Upstream)?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (down, up) = tokio::join!(downstream, upstream);
            match (down, up) {
                (Ok(down), Ok(up)) => {
                    let mut down = TokioIo::new(down);
                    let mut up = TokioIo::new(up);
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
                (d, u) => tracing::debug!(
                    client = ?d.err(),
                    app = ?u.err(),
                    "a preview upgrade did not complete"
                ),
            }
        });
    }
    Ok(resp.map(BodyExt::boxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd() -> Forward<'static> {
        Forward {
            client: "10.1.2.3:5555".parse().unwrap(),
            frame_ancestor: "http://localhost:7777",
            private_cookies: &["firepit_token", "firepit_preview", "firepit_share"],
            api_token: "sekrit",
        }
    }

    #[test]
    fn requests_lose_hop_by_hop_and_firepit_credentials() {
        let mut req = Request::builder()
            .uri("http://8000-abc.localhost:7777/a/b?c=d")
            .header("host", "8000-abc.localhost:7777")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("cookie", "a=1; firepit_token=sekrit")
            .header("cookie", "firepit_preview=x;b=2")
            .header("authorization", "Bearer sekrit")
            .header("x-forwarded-for", "6.6.6.6")
            .body(())
            .unwrap();
        prepare_request(&mut req, &fwd());
        let h = req.headers();
        assert_eq!(req.uri(), "/a/b?c=d");
        assert_eq!(h["host"], "8000-abc.localhost:7777");
        for gone in [
            "connection",
            "x-private",
            "keep-alive",
            "te",
            "authorization",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h["cookie"], "a=1; b=2");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "8000-abc.localhost:7777");
    }

    #[test]
    fn the_apps_own_authorization_and_upgrades_pass() {
        let mut req = Request::builder()
            .uri("/ws")
            .header("host", "8000-abc.localhost")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("authorization", "Bearer apps-own")
            .header("cookie", "firepit_share=x")
            .body(())
            .unwrap();
        assert!(is_upgrade(&req));
        prepare_request(&mut req, &fwd());
        let h = req.headers();
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["authorization"], "Bearer apps-own");
        assert!(!h.contains_key("cookie"));
    }

    fn resp(headers: &[(&str, &str)]) -> Response<()> {
        let mut b = Response::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const HOST: &str = "8000-abc.localhost";
    const PRIVATE: &[&str] = &["firepit_token", "__Host-firepit_token", "firepit_preview"];

    #[test]
    fn apps_cannot_set_firepits_cookies_or_cookies_beyond_their_host() {
        for ok in [
            "a=1",
            "a=1; Path=/; HttpOnly",
            "a=1; Domain=8000-abc.localhost",
            "a=1; domain=.8000-ABC.localhost.",
            "__Host-a=1; Secure; Path=/",
            "firepit_tokenx=1",
            "a=1; Domain",
            "",
        ] {
            assert!(set_cookie_allowed(ok.as_bytes(), HOST, PRIVATE), "{ok:?}");
        }
        for bad in [
            "firepit_token=x",
            " firepit_token =x; Path=/",
            "FIREPIT_TOKEN=x",
            "__Host-firepit_token=x; Secure; Path=/",
            "__secure-firepit_preview=x",
            "firepit_token",
            "a=1; Domain=localhost",
            "a=1; Domain=.localhost",
            "a=1; domain = LocalHost",
            "a=1; Domain=8001-abc.localhost",
            "a=1; Domain=8000-abc.localhost; Domain=localhost",
            "a=1; Domain=",
            "a=1; Domain=x.8000-abc.localhost",
        ] {
            assert!(
                !set_cookie_allowed(bad.as_bytes(), HOST, PRIVATE),
                "{bad:?}"
            );
        }
        assert!(!set_cookie_allowed(
            b"a=\xff; Domain=localhost",
            HOST,
            PRIVATE
        ));

        let mut r = resp(&[
            ("set-cookie", "a=1"),
            ("set-cookie", "firepit_token=x; Path=/"),
            ("set-cookie", "b=2; Domain=localhost"),
            ("set-cookie", "c=3; Domain=8000-abc.localhost"),
        ]);
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        prepare_response(&mut r, "http://localhost:7777", HOST, PRIVATE);
        let kept: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(kept, ["a=1", "c=3; Domain=8000-abc.localhost"]);
    }

    #[test]
    fn responses_may_be_framed_by_firepit_only() {
        let mut r = resp(&[("x-frame-options", "DENY"), ("connection", "close")]);
        prepare_response(&mut r, "http://localhost:7777", HOST, PRIVATE);
        assert_eq!(
            r.headers()["content-security-policy"],
            "frame-ancestors http://localhost:7777"
        );
        assert!(!r.headers().contains_key("x-frame-options"));
        assert!(!r.headers().contains_key("connection"));

        let mut r = resp(&[("content-security-policy", "default-src 'self';")]);
        prepare_response(&mut r, "http://localhost:7777", HOST, PRIVATE);
        assert_eq!(
            r.headers()["content-security-policy"],
            "default-src 'self'; frame-ancestors http://localhost:7777"
        );

        let mut r = resp(&[
            (
                "content-security-policy",
                "default-src 'self'; Frame-Ancestors 'none'",
            ),
            ("x-frame-options", "DENY"),
        ]);
        prepare_response(&mut r, "http://localhost:7777", HOST, PRIVATE);
        assert_eq!(
            r.headers()["content-security-policy"],
            "default-src 'self'; Frame-Ancestors 'none'"
        );
        assert_eq!(r.headers()["x-frame-options"], "DENY");
    }
}
