//! The fast path and the full path apply the same rules: each request of a
//! table is sent once through a proxy whose gate admits it to the fast path
//! and once through one whose gate sends everything to the full path
//! (hyper); what reaches the app (the request head: target and header
//! fields) and what reaches the client (status, header fields, body) must
//! be the same, header names compared without case and the headers each
//! path frames with on its own (`Transfer-Encoding`, `Connection`, `Date`)
//! left out. Both take their upstream connections from one pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, BytesMut};
use firepit_preview::fast::{self, Dialing, Gate, Outcome, RequestHead};
use firepit_preview::{Error, Pool, Route, pages, proxy};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const PRIVATE: &[&str] = &[
    "firepit_token",
    "__Host-firepit_token",
    "firepit_preview",
    "firepit_share",
];
const TOKEN: &str = "sekrit";
/// The app's host.
const APP: &str = "8000-abc.localhost";
/// A host whose port nothing listens on.
const NOBODY: &str = "8001-abc.localhost";

/// A head as the app or the client got it: the first line and the fields,
/// names in lower case, sorted, framing left out.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    line: String,
    fields: Vec<(String, String)>,
}

fn head(line: &str, fields: &[httparse::Header<'_>]) -> Head {
    let mut f: Vec<(String, String)> = fields
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .filter(|(n, _)| !matches!(n.as_str(), "transfer-encoding" | "connection" | "date"))
        .collect();
    f.sort();
    Head {
        line: line.to_owned(),
        fields: f,
    }
}

/// What the app answers for a target.
fn answer(target: &str) -> &'static str {
    match target {
        "/set-cookie" => {
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: firepit_token=x; Path=/\r\n\
             Set-Cookie: __Host-firepit_token=y; Secure; Path=/\r\n\
             Set-Cookie: b=2; Domain=localhost\r\nSet-Cookie: c=3; Domain=8000-abc.localhost\r\n\
             Content-Length: 2\r\n\r\nok"
        }
        "/csp" => {
            "HTTP/1.1 200 OK\r\nContent-Security-Policy: default-src 'self';\r\n\
             Content-Security-Policy: img-src *\r\nX-Frame-Options: DENY\r\nContent-Length: 2\r\n\r\nok"
        }
        "/csp-framed" => {
            "HTTP/1.1 200 OK\r\nContent-Security-Policy: default-src 'self'; Frame-Ancestors 'none'\r\n\
             X-Frame-Options: DENY\r\nContent-Length: 2\r\n\r\nok"
        }
        "/hop" => {
            "HTTP/1.1 200 OK\r\nConnection: x-drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Authenticate: Basic\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok"
        }
        "/chunked" => {
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: 1\r\n\r\n\
             3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        }
        "/garbage" => "NOT HTTP AT ALL\r\n\r\n",
        _ => "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    }
}

/// The app: answers each request by its target ([`answer`]) and sends each
/// request head it got, with its body, on `seen`; counts its connections
/// in `conns`.
async fn app(seen: mpsc::UnboundedSender<(Head, Vec<u8>)>, conns: Arc<AtomicUsize>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            conns.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                loop {
                    let Some((h, len, body_len, chunked)) = read_head(&mut s, &mut buf).await
                    else {
                        return;
                    };
                    buf.advance(len);
                    let body = if chunked {
                        read_chunked(&mut s, &mut buf).await
                    } else {
                        while buf.len() < body_len {
                            if s.read_buf(&mut buf).await.unwrap() == 0 {
                                return;
                            }
                        }
                        buf.split_to(body_len).to_vec()
                    };
                    let target = h.line.split(' ').nth(1).unwrap_or("/").to_owned();
                    seen.send((h, body)).unwrap();
                    let a = answer(&target);
                    s.write_all(a.as_bytes()).await.unwrap();
                    if target == "/garbage" {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads a request head: it, its length, its body's length, whether chunked.
async fn read_head(s: &mut TcpStream, buf: &mut BytesMut) -> Option<(Head, usize, usize, bool)> {
    loop {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Request::new(&mut h);
        if let httparse::Status::Complete(n) = r.parse(buf).unwrap() {
            let find = |name: &str| {
                r.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let len = find("content-length").map_or(0, |v| v.parse().unwrap());
            let chunked = find("transfer-encoding").is_some();
            let line = format!(
                "{} {} HTTP/1.{}",
                r.method.unwrap(),
                r.path.unwrap(),
                r.version.unwrap()
            );
            return Some((head(&line, r.headers), n, len, chunked));
        }
        if s.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// Reads a chunked body (no extensions, no trailers: the test's own).
async fn read_chunked(s: &mut TcpStream, buf: &mut BytesMut) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        while !buf.windows(2).any(|w| w == b"\r\n") {
            s.read_buf(buf).await.unwrap();
        }
        let end = buf.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&buf[..end]).unwrap(), 16).unwrap();
        while buf.len() < end + 2 + size + 2 {
            s.read_buf(buf).await.unwrap();
        }
        body.extend_from_slice(&buf[end + 2..end + 2 + size]);
        buf.advance(end + 2 + size + 2);
        if size == 0 {
            return body;
        }
    }
}

/// The test's gate: admits requests to [`APP`] and [`NOBODY`] to the fast
/// path when `fast`; dials the app, or a port nothing listens on.
struct TestGate {
    fast: bool,
    app: SocketAddr,
    nobody: SocketAddr,
}

fn route(host: &str) -> Option<Route> {
    let name = host.split(':').next()?;
    let port = match name {
        APP => 8000,
        NOBODY => 8001,
        _ => return None,
    };
    Some(Route {
        session: "abc".into(),
        port,
        frame_ancestor: "http://localhost:7777".into(),
        cookie_host: name.into(),
    })
}

impl TestGate {
    async fn dial(&self, to: &Route) -> Result<TcpStream, Error> {
        let addr = if to.port == 8000 {
            self.app
        } else {
            self.nobody
        };
        TcpStream::connect(addr).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::ConnectionRefused {
                Error::Refused(to.port)
            } else {
                Error::Connect {
                    port: to.port,
                    source,
                }
            }
        })
    }
}

impl Gate for TestGate {
    fn claims(&self, host: &[u8]) -> bool {
        self.fast && std::str::from_utf8(host).is_ok_and(|h| route(h).is_some())
    }

    fn admit(&self, head: &RequestHead<'_>) -> Option<Route> {
        route(head.host).filter(|_| self.fast)
    }

    fn dial<'a>(&'a self, to: &'a Route) -> Dialing<'a> {
        Box::pin(TestGate::dial(self, to))
    }

    fn private_cookies(&self) -> &[&str] {
        PRIVATE
    }

    fn api_token(&self) -> &str {
        TOKEN
    }
}

/// A proxy as the daemon runs one: each connection on the fast path first,
/// the rest on hyper with the full path, counted in `full`.
struct Proxy {
    addr: SocketAddr,
    full: Arc<AtomicUsize>,
    pool: Arc<Pool>,
}

async fn proxy(fast: bool, app: SocketAddr, nobody: SocketAddr) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let gate = Arc::new(TestGate { fast, app, nobody });
    let pool = Arc::new(Pool::default());
    let full = Arc::new(AtomicUsize::new(0));
    let (counted, shared) = (full.clone(), pool.clone());
    tokio::spawn(async move {
        loop {
            let (s, peer) = l.accept().await.unwrap();
            let (gate, pool, full) = (gate.clone(), shared.clone(), counted.clone());
            tokio::spawn(async move {
                let (s, read) = match fast::serve(&*gate, &pool, s, peer).await {
                    Outcome::Done => return,
                    Outcome::Fallback(s, read) => (s, read),
                };
                let service = hyper::service::service_fn(move |req| {
                    let (gate, pool, full) = (gate.clone(), pool.clone(), full.clone());
                    async move {
                        full.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(full_path(&gate, &pool, peer, req).await)
                    }
                });
                let io = TokioIo::new(fast::Prefixed::new(read, s));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Proxy { addr, full, pool }
}

/// The full path as the daemon takes it, error pages included.
async fn full_path(
    gate: &TestGate,
    pool: &Arc<Pool>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<proxy::Body> {
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let Some(to) = route(host) else {
        return pages::text_page(hyper::StatusCode::NOT_FOUND, "No", "not a preview");
    };
    let policy = to.policy(peer.ip(), PRIVATE, TOKEN);
    match proxy::forward(pool, &to, &policy, req, || gate.dial(&to)).await {
        Ok(resp) => resp,
        Err(Error::Refused(port)) => pages::nothing_listening(port, &to.session, &[]),
        Err(_) => pages::app_failed(to.port, &to.session),
    }
}

/// What the client got: the status line and fields, and the body.
async fn send(proxy: SocketAddr, raw: &str) -> (Head, Vec<u8>) {
    let mut c = TcpStream::connect(proxy).await.unwrap();
    c.write_all(raw.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).await.unwrap();
    let mut h = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut h);
    let n = match r.parse(&all) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "not a response ({other:?}): {:?}",
            String::from_utf8_lossy(&all)
        ),
    };
    let chunked = r
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let line = format!("HTTP/1.1 {}", r.code.unwrap());
    let got = head(&line, r.headers);
    let mut body = all[n..].to_vec();
    if chunked {
        body = dechunk(&body);
    }
    (got, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap(), 16).unwrap();
        out.extend_from_slice(&b[end + 2..end + 2 + size]);
        b = &b[end + 2 + size + 2..];
        if size == 0 {
            return out;
        }
    }
}

/// A request of the table, ended by `Connection: close` (with `extra`
/// connection tokens).
fn request(method: &str, target: &str, host: &str, extra_conn: &str, rest: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close{extra_conn}\r\n{rest}\r\n"
    )
}

#[tokio::test]
async fn both_paths_send_the_same_to_the_app_and_to_the_client() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let app = app(tx, Arc::default()).await;
    let nobody = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let fast = proxy(true, app, nobody).await;
    let full = proxy(false, app, nobody).await;
    let table = [
        // Hop-by-hop headers, and headers `Connection` names.
        request(
            "GET",
            "/",
            APP,
            ", X-Private",
            "X-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
             Proxy-Authorization: Basic eA==\r\nProxy-Connection: x\r\nAccept: */*\r\n",
        ),
        // firepit's cookies mixed with the app's, over two headers.
        request(
            "GET",
            "/a?b=c",
            APP,
            "",
            "Cookie: a=1; firepit_token=sekrit; b=2\r\nAccept: text/html\r\n\
             Cookie: firepit_preview=x;c=3; __Host-firepit_token=y\r\n",
        ),
        // Only firepit's cookies.
        request("GET", "/", APP, "", "Cookie: firepit_share=s\r\n"),
        // The API token, in any case of its scheme, and the app's own credentials.
        request("GET", "/", APP, "", "Authorization: Bearer sekrit\r\n"),
        request("GET", "/", APP, "", "authorization: bearer  sekrit\r\n"),
        request("GET", "/", APP, "", "Authorization: Bearer apps-own\r\n"),
        request("GET", "/", APP, "", "Authorization: Basic c2Vrcml0\r\n"),
        // The client's `X-Forwarded-*` replaced by the proxy's.
        request(
            "GET",
            "/",
            APP,
            "",
            "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nx-forwarded-host: evil\r\n",
        ),
        // A body, and a `Connection` that names the length (it stays).
        format!(
            "POST /form HTTP/1.1\r\nHost: {APP}\r\nConnection: close, Content-Length\r\n\
             Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
        ),
        // Responses: the app's `Set-Cookie`s, policies, hop-by-hop headers, chunks.
        request("GET", "/set-cookie", APP, "", ""),
        request("GET", "/csp", APP, "", ""),
        request("GET", "/csp-framed", APP, "", ""),
        request("GET", "/hop", APP, "", ""),
        request("GET", "/chunked", APP, "", ""),
        request("HEAD", "/", APP, "", ""),
        // The app breaks off: 502, the same page.
        request("GET", "/garbage", APP, "", ""),
        // Nothing listens: 502, the same page (the fast path hands over).
        request("GET", "/", NOBODY, "", ""),
    ];
    for raw in &table {
        let full_before = fast.full.load(Ordering::SeqCst);
        let by_fast = send(fast.addr, raw).await;
        let fast_up = seen.try_recv().ok();
        let by_full = send(full.addr, raw).await;
        let full_up = seen.try_recv().ok();
        assert!(
            seen.try_recv().is_err(),
            "one request reached the app twice"
        );
        // Each went its own way: the full path only where the fast path
        // cannot dial.
        let handed_over = fast.full.load(Ordering::SeqCst) - full_before;
        let nobody_listens = raw.contains(NOBODY);
        assert_eq!(handed_over, usize::from(nobody_listens), "{raw:?}");
        assert_eq!(fast_up.is_some(), !nobody_listens, "{raw:?}");
        assert_eq!(fast_up, full_up, "what the app got differs for {raw:?}");
        assert_eq!(by_fast, by_full, "what the client got differs for {raw:?}");
        let status = &by_fast.0.line;
        let want = if raw.contains("/garbage") || nobody_listens {
            "HTTP/1.1 502"
        } else {
            "HTTP/1.1 200"
        };
        assert_eq!(status, want, "{raw:?}");
    }
    assert_eq!(full.full.load(Ordering::SeqCst), table.len());
}

/// Waits until `pool` holds `n` idle connections of session `abc` (they go
/// back once a response has been read to its end).
async fn idle(pool: &Pool, n: usize) {
    while pool.idle("abc") != n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn both_paths_share_one_pool_and_forgetting_a_session_empties_it() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let conns = Arc::new(AtomicUsize::new(0));
    let app = app(tx, conns.clone()).await;
    let nobody = "127.0.0.1:9".parse().unwrap();
    let p = proxy(true, app, nobody).await;
    // A chunked upload is the full path's; its connection goes to the pool.
    let upload = format!(
        "POST /up HTTP/1.1\r\nHost: {APP}\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    );
    let (got, _) = send(p.addr, &upload).await;
    assert_eq!(got.line, "HTTP/1.1 200");
    assert_eq!(p.full.load(Ordering::SeqCst), 1);
    assert_eq!(seen.try_recv().unwrap().1, b"abc");
    idle(&p.pool, 1).await;
    // The fast path takes it from there, and puts it back.
    let (got, _) = send(p.addr, &request("GET", "/", APP, "", "")).await;
    assert_eq!(got.line, "HTTP/1.1 200");
    assert_eq!(p.full.load(Ordering::SeqCst), 1);
    idle(&p.pool, 1).await;
    // And the full path takes the fast path's back.
    send(p.addr, &upload).await;
    assert_eq!(p.full.load(Ordering::SeqCst), 2);
    idle(&p.pool, 1).await;
    assert_eq!(conns.load(Ordering::SeqCst), 1);
    // A session that stopped keeps nothing: the next request dials anew.
    p.pool.forget("abc");
    assert_eq!(p.pool.idle("abc"), 0);
    send(p.addr, &request("GET", "/", APP, "", "")).await;
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}
