//! The full path: forwarding any HTTP/1.1 request to the app inside a
//! machine, on hyper.
//!
//! It takes what the fast path ([`crate::fast`]) leaves: upgrades, chunked
//! uploads, `Expect`, HTTP/1.0, requests signed in by share links, and the
//! rare rest. Bodies stream both ways (chunked uploads, SSE). Headers pass
//! through the same [`crate::rules`] as on the fast path, and connections
//! come from and go back to the same [`Pool`]: each exchange runs a hyper
//! client connection over a pooled socket, and once the response has been
//! read to its end the socket goes back to the pool for either path. A
//! request that asks for an `Upgrade` (WebSocket: LiveView, Vite HMR) goes on
//! a connection of its own; on `101 Switching Protocols` the two upgraded
//! connections are spliced byte for byte.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::rules::{self, Policy};
use crate::{Error, Pool, Route};

/// The body type of preview responses.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// The fields of a header map, in a form the rules can read twice.
fn fields(headers: &HeaderMap) -> Vec<(&str, &[u8])> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect()
}

/// Appends a field the rules emitted (one that is not a valid header goes).
fn append(headers: &mut HeaderMap, name: &str, value: &[u8]) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value),
    ) {
        headers.append(n, v);
    }
}

/// Whether the request asks to switch protocols (`Connection: upgrade`).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    rules::is_upgrade(fields(req.headers()).into_iter())
}

/// Rewrites a request's headers ([`rules::request`]) and target
/// (origin-form: the path and query) for the app.
pub fn prepare_request<B>(req: &mut Request<B>, p: &Policy<'_>) {
    let old = std::mem::take(req.headers_mut());
    let headers = req.headers_mut();
    rules::request(fields(&old).into_iter(), p, |n, v| append(headers, n, v));
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

/// Rewrites a response's headers for the browser ([`rules::response`]).
pub fn prepare_response<B>(resp: &mut Response<B>, p: &Policy<'_>) {
    let status = resp.status().as_u16();
    let old = std::mem::take(resp.headers_mut());
    let headers = resp.headers_mut();
    rules::response(status, fields(&old).into_iter(), p, |n, v| {
        append(headers, n, v)
    });
}

/// Forwards `req` to `route`'s port: rewritten by the rules, over a pooled
/// connection or a new one from `dial`, its response rewritten too.
pub async fn forward<D, F>(
    pool: &Arc<Pool>,
    route: &Route,
    policy: &Policy<'_>,
    mut req: Request<Incoming>,
    dial: D,
) -> Result<Response<Body>, Error>
where
    D: Fn() -> F,
    F: Future<Output = Result<TcpStream, Error>>,
{
    let upgrade = is_upgrade(&req);
    prepare_request(&mut req, policy);
    let mut resp = if upgrade {
        forward_upgrade(req, dial().await?).await?
    } else {
        match pool.take(&route.session, route.port) {
            Some(stream) => match exchange(pool, route, stream, req).await {
                // The app closed the idle connection before taking the
                // request: it goes again, over a new one.
                Err((Some(req), _)) => exchange(pool, route, dial().await?, req).await,
                r => r,
            },
            None => exchange(pool, route, dial().await?, req).await,
        }
        .map_err(|(_, e)| e)?
    };
    prepare_response(&mut resp, policy);
    Ok(resp)
}

/// A request that failed, given back when it was never sent.
type Failed = (Option<Request<Incoming>>, Error);

/// One exchange over `stream`. The connection is driven by a task of its
/// own, which puts the socket back into the pool once the response has been
/// read to its end, if nothing else is owed on it.
async fn exchange(
    pool: &Arc<Pool>,
    route: &Route,
    stream: TcpStream,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failed> {
    let head_only = req.method() == Method::HEAD;
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(c) => c,
        Err(e) => return Err((Some(req), Error::Upstream(e))),
    };
    let (ended, reusable) = oneshot::channel();
    let (pool, session, port) = (pool.clone(), route.session.clone(), route.port);
    tokio::spawn(async move {
        match conn.without_shutdown().await {
            Ok(parts) => {
                if reusable.await == Ok(true) && parts.read_buf.is_empty() {
                    pool.put(&session, port, parts.io.into_inner());
                }
            }
            Err(e) => tracing::debug!(error = %e, "a preview upstream connection failed"),
        }
    });
    let sent = sender.try_send_request(req);
    // The connection ends (giving its socket back) once this exchange is done.
    drop(sender);
    match sent.await {
        Ok(resp) => {
            let keep = keeps_alive(&resp, head_only);
            Ok(resp.map(|inner| {
                Watched {
                    inner,
                    ended: Some(ended).filter(|_| keep),
                }
                .boxed()
            }))
        }
        Err(mut e) => {
            let req = e.take_message();
            Err((req, Error::Upstream(e.into_error())))
        }
    }
}

/// Whether the connection may carry another exchange after `resp`:
/// HTTP/1.1 without `Connection: close`, and a body whose end its framing
/// says (not one that ends with the connection).
fn keeps_alive<B>(resp: &Response<B>, head_only: bool) -> bool {
    let h = resp.headers();
    let status = resp.status();
    let framed = head_only
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || h.contains_key(hyper::header::CONTENT_LENGTH)
        || h.contains_key(hyper::header::TRANSFER_ENCODING);
    resp.version() == Version::HTTP_11
        && framed
        && !rules::connection_has(fields(h).into_iter(), "close")
}

/// An upstream response body that says, when it ends or is dropped,
/// whether it was read to its end (only then is its connection reused).
struct Watched {
    inner: Incoming,
    ended: Option<oneshot::Sender<bool>>,
}

impl Watched {
    fn end(&mut self, whole: bool) {
        if let Some(tx) = self.ended.take() {
            let _ = tx.send(whole);
        }
    }
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.end(true),
            Poll::Ready(Some(Err(_))) => self.end(false),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // A body nobody polled because it was empty ended all the same.
        let whole = hyper::body::Body::is_end_stream(&self.inner);
        self.end(whole);
    }
}

/// Forwards an upgrade request on its own connection; on 101 splices the
/// client's and the app's upgraded connections.
async fn forward_upgrade(
    mut req: Request<Incoming>,
    stream: TcpStream,
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

    fn policy() -> Policy<'static> {
        Policy {
            client: "10.1.2.3".parse().unwrap(),
            frame_ancestor: "http://localhost:7777",
            cookie_host: "8000-abc.localhost",
            private_cookies: &["firepit_token", "firepit_preview"],
            api_token: "sekrit",
        }
    }

    #[test]
    fn requests_go_in_origin_form_through_the_rules() {
        let mut req = Request::builder()
            .uri("http://8000-abc.localhost:7777/a/b?c=d")
            .header("host", "8000-abc.localhost:7777")
            .header("cookie", "a=1; firepit_token=sekrit")
            .header("te", "trailers")
            .body(())
            .unwrap();
        prepare_request(&mut req, &policy());
        assert_eq!(req.uri(), "/a/b?c=d");
        let h = req.headers();
        assert_eq!(h["cookie"], "a=1");
        assert!(!h.contains_key("te"));
        assert_eq!(h["x-forwarded-host"], "8000-abc.localhost:7777");
    }

    #[test]
    fn responses_go_through_the_rules() {
        let mut r = Response::builder()
            .header("set-cookie", "a=1")
            .header("set-cookie", "firepit_token=x")
            .header("x-frame-options", "DENY")
            .body(())
            .unwrap();
        prepare_response(&mut r, &policy());
        let h = r.headers();
        assert_eq!(h.get_all("set-cookie").iter().count(), 1);
        assert_eq!(
            h["content-security-policy"],
            "frame-ancestors http://localhost:7777"
        );
        assert!(!h.contains_key("x-frame-options"));
    }

    #[test]
    fn only_framed_http11_answers_keep_their_connection() {
        let resp = |version, headers: &[(&str, &str)]| {
            let mut b = Response::builder().version(version);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap()
        };
        assert!(keeps_alive(
            &resp(Version::HTTP_11, &[("content-length", "2")]),
            false
        ));
        assert!(keeps_alive(
            &resp(Version::HTTP_11, &[("transfer-encoding", "chunked")]),
            false
        ));
        assert!(keeps_alive(&resp(Version::HTTP_11, &[]), true));
        assert!(!keeps_alive(&resp(Version::HTTP_11, &[]), false));
        assert!(!keeps_alive(
            &resp(
                Version::HTTP_11,
                &[("content-length", "2"), ("connection", "Close")]
            ),
            false
        ));
        assert!(!keeps_alive(
            &resp(Version::HTTP_10, &[("content-length", "2")]),
            false
        ));
    }
}
