//! The fast path: plain HTTP/1.1 requests forwarded as bytes.
//!
//! Most preview traffic is ordinary requests, one after another on
//! kept-alive connections. For those, [`serve`] parses each request head in
//! place (`parse`), asks the [`Gate`] whether it may pass and where to,
//! writes the rewritten head (`rewrite`, through the same
//! [`crate::rules`] as the full path) and the body to an upstream connection
//! from the shared [`Pool`], and copies the response back with its head
//! rewritten the same way (`forward`), framing bodies by `Content-Length`
//! or by scanning chunked encoding without decoding it (`framing`). No
//! header map is built: this is what takes the proxy's cost per request
//! near nginx's.
//!
//! Anything else goes to the full path ([`crate::proxy`], on hyper): the
//! connection, with the bytes already read, is handed back as
//! [`Outcome::Fallback`] *before* any of the request is consumed, so the full
//! path sees the request as the client sent it. That covers connections
//! whose first request is not to a preview host (the API, the UI: they leave
//! unparsed), upgrades (WebSocket), chunked or `Expect: 100-continue`
//! uploads, HTTP/1.0, absolute targets, malformed or oversized heads (the
//! full path answers 400/431), requests the gate does not admit (sign-in,
//! share links, stopped sessions: the full path answers them), and an
//! upstream that cannot be dialed (the full path renders the "nothing is
//! listening" page).

mod forward;
mod framing;
mod parse;
mod prefixed;
mod rewrite;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use self::forward::{Failed, copy_body, exchange};
pub use self::parse::RequestHead;
use self::parse::{Step, plan_request};
pub use self::prefixed::Prefixed;
use crate::pool::Pool;
use crate::{Error, Route, pages};

/// Longest request or response head taken (longer ones: the full path).
pub const MAX_HEAD: usize = 64 << 10;
/// How long a client may take to finish a request head it has begun.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Headers parsed per message (more: the full path).
const MAX_HEADERS: usize = 100;
/// Read buffer size.
const CHUNK: usize = 16 << 10;

/// A future that dials an upstream.
pub type Dialing<'a> = Pin<Box<dyn Future<Output = Result<TcpStream, Error>> + Send + 'a>>;

/// The daemon's side of the fast path: who passes, and how to reach them.
pub trait Gate: Send + Sync {
    /// Whether a request to `host` (a `Host` value) may be the fast path's
    /// at all; asked of a connection's first request before it is parsed,
    /// so that connections to other hosts (the API) go to the full path
    /// unparsed.
    fn claims(&self, host: &[u8]) -> bool;
    /// Where the request goes, or `None` for the full path to answer it.
    fn admit(&self, head: &RequestHead<'_>) -> Option<Route>;
    /// Connects to the admitted request's port inside its machine.
    fn dial<'a>(&'a self, to: &'a Route) -> Dialing<'a>;
    /// Cookie names that are firepit's and never reach an app.
    fn private_cookies(&self) -> &[&str];
    /// The API token: `Authorization: Bearer <it>` never reaches an app.
    fn api_token(&self) -> &str;
    /// The app answered `request` (its request line, `GET /x`) with a 5xx
    /// `status`, which the client got. Called after the head went on; must
    /// not block.
    fn app_error(&self, to: &Route, request: &str, status: u16) {
        let _ = (to, request, status);
    }
}

/// `METHOD TARGET` of a request head as the app got it.
fn request_line(out: &[u8]) -> String {
    let line = out.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = line.strip_suffix(b" HTTP/1.1").unwrap_or(line);
    String::from_utf8_lossy(&line[..line.len().min(300)]).into_owned()
}

/// How [`serve`] ended.
pub enum Outcome {
    /// The connection is finished (closed by either side, or failed).
    Done,
    /// The full path takes the connection over: `read` holds bytes already
    /// read from it, the next request's head first.
    Fallback(TcpStream, BytesMut),
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
    let mut first = true;
    loop {
        // The next request head.
        let mut deadline = None;
        let plan = loop {
            if !buf.is_empty() {
                match plan_request(gate, &buf, peer, first) {
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
        first = false;
        buf.advance(plan.head_len);
        let policy = plan
            .to
            .policy(peer.ip(), gate.private_cookies(), gate.api_token());
        let resp = loop {
            match exchange(&mut client, &mut buf, &mut up, &mut up_buf, &plan, &policy).await {
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
                        Err(_) => return app_failed(&mut client, &plan.to).await,
                    }
                }
                Err(Failed::Stale | Failed::Upstream) => {
                    return app_failed(&mut client, &plan.to).await;
                }
                Err(Failed::Client) => return Outcome::Done,
            }
        };
        if resp.status >= 500 {
            gate.app_error(&plan.to, &request_line(&plan.out), resp.status);
        }
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

/// Answers that the app broke off the exchange (the same page as the full
/// path's), and ends the connection.
async fn app_failed(client: &mut TcpStream, to: &Route) -> Outcome {
    let _ = client
        .write_all(&pages::app_failed_bytes(to.port, &to.session))
        .await;
    Outcome::Done
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::net::TcpListener;

    pub(crate) struct TestGate {
        upstream: SocketAddr,
        /// What [`Gate::app_error`] was told.
        errors: std::sync::Arc<std::sync::Mutex<Vec<(String, u16)>>>,
    }

    impl Gate for TestGate {
        fn claims(&self, host: &[u8]) -> bool {
            host.starts_with(b"8000-abc.")
        }

        fn admit(&self, head: &RequestHead<'_>) -> Option<Route> {
            (head.host.starts_with("8000-abc.") && !head.target.starts_with("/__firepit/")).then(
                || Route {
                    session: "abc".into(),
                    port: 8000,
                    frame_ancestor: "http://localhost:7777".into(),
                    cookie_host: "8000-abc.localhost".into(),
                },
            )
        }

        fn dial<'a>(&'a self, _to: &'a Route) -> Dialing<'a> {
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

        fn app_error(&self, to: &Route, request: &str, status: u16) {
            assert_eq!(to.session, "abc");
            self.errors
                .lock()
                .unwrap()
                .push((request.to_owned(), status));
        }
    }

    pub(crate) fn gate() -> TestGate {
        TestGate {
            upstream: "127.0.0.1:9".parse().unwrap(),
            errors: Default::default(),
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
                            p if p.starts_with("/fail") => {
                                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nfail"
                                    .to_owned()
                            }
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

    /// A client connection served on the fast path (with its own pool)
    /// toward `upstream`, and how that ends.
    async fn serving(upstream: SocketAddr) -> (TcpStream, tokio::task::JoinHandle<Outcome>) {
        serving_with(TestGate {
            upstream,
            errors: Default::default(),
        })
        .await
    }

    async fn serving_with(gate: TestGate) -> (TcpStream, tokio::task::JoinHandle<Outcome>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, peer) = l.accept().await.unwrap();
        let served = tokio::spawn(async move { serve(&gate, &Pool::default(), s, peer).await });
        (c, served)
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
        let (mut c, served) = serving(upstream).await;
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
        assert!(matches!(served.await.unwrap(), Outcome::Done));
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
    async fn the_apps_5xx_answers_are_told_to_the_gate() {
        let (upstream, _seen) = app(false).await;
        let errors = std::sync::Arc::default();
        let gate = TestGate {
            upstream,
            errors: std::sync::Arc::clone(&errors),
        };
        let (mut c, _served) = serving_with(gate).await;
        let mut got = Vec::new();
        c.write_all(b"GET /a HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n")
            .await
            .unwrap();
        read_until(&mut c, &mut got, "got000").await;
        c.write_all(b"POST /fail?x=1 HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n")
            .await
            .unwrap();
        read_until(&mut c, &mut got, "fail").await;
        assert!(String::from_utf8_lossy(&got).contains("HTTP/1.1 503"));
        assert_eq!(
            *errors.lock().unwrap(),
            vec![("POST /fail?x=1".to_owned(), 503)]
        );
    }

    #[tokio::test]
    async fn a_closed_idle_upstream_is_replaced_for_a_request_without_body() {
        let (upstream, mut seen) = app(true).await;
        let (mut c, _served) = serving(upstream).await;
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
        let (mut c, served) = serving(upstream).await;
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
        let (mut c, _served) = serving(upstream).await;
        c.write_all(b"GET / HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n")
            .await
            .unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).await.unwrap();
        assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 502 "));
    }
}
