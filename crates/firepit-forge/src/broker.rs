//! The forge broker: what a machine's git and REST calls reach instead of the
//! forge.
//!
//! The daemon listens inside the machine's network namespace (see
//! [`crate::netns`]) on `127.0.0.1:<port>` and serves each connection here.
//! Two kinds of request pass, and only for the repositories the session was
//! given:
//!
//! - git smart HTTP: `GET /<owner>/<name>[.git]/info/refs?service=…` and
//!   `POST …/git-upload-pack` / `…/git-receive-pack`, forwarded to
//!   `<web_url>/<owner>/<name>.git/…`;
//! - the REST API: `/api/repos/<owner>/<name>[/…]`, forwarded to
//!   `<api_url>/repos/<owner>/<name>[/…]`; any read, and writes only to
//!   issues, comments, pull requests, check runs and statuses.
//!
//! The machine's root writes every byte of the request, so the target is
//! canonicalized and checked before anything is decided, and the upstream URL
//! is built from checked parts and checked again as it will be sent (see
//! [`crate::route`]). The broker adds the token on the way out and drops
//! every request header but a few harmless ones (`Authorization` and
//! `Cookie` among those dropped); a 401 from the forge becomes a 403, so git
//! in the machine never asks for credentials. REST write bodies must be JSON
//! of at most [`Limits::rest_body`] bytes and go out as `application/json`.
//!
//! Each broker serves at most [`Limits::connections`] connections at once
//! (more get a 503), closes connections whose headers take longer than
//! [`Limits::header_read`] or that move no byte for [`Limits::idle`], bounds
//! a REST call to [`Limits::rest_total`] and a git request body to
//! [`Limits::git_body`] (streamed, never held whole).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use reqwest::Url;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Semaphore;

use crate::route::{self, Refusal, Target};
use crate::{ForgeConfig, RepoName};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// Request headers passed on to the forge's git endpoints.
const PASS_GIT: &[&str] = &[
    "accept",
    "content-type",
    "content-encoding",
    "git-protocol",
    "user-agent",
];
/// Request headers passed on to the forge's REST API (the content type is
/// set by the broker).
const PASS_API: &[&str] = &["accept", "user-agent", "x-github-api-version"];
/// Response headers passed back to the machine.
const PASS_RESPONSE: &[&str] = &[
    "content-type",
    "content-encoding",
    "cache-control",
    "expires",
    "pragma",
    "link",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// A broker's bounds on what one machine can hold of the daemon.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more are answered 503 and closed.
    pub connections: usize,
    /// Longest time for a request's headers (also the longest a kept-alive
    /// connection waits for its next request).
    pub header_read: Duration,
    /// A connection that moves no byte either way for this long is closed.
    pub idle: Duration,
    /// Largest REST request body.
    pub rest_body: usize,
    /// Longest REST call, from reading the machine's body to the end of the
    /// forge's answer.
    pub rest_total: Duration,
    /// Largest git request body (a push's pack), streamed through.
    pub git_body: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 32,
            header_read: Duration::from_secs(30),
            idle: Duration::from_secs(300),
            rest_body: 1 << 20,
            rest_total: Duration::from_secs(120),
            // GitHub refuses pushes over 2 GiB itself.
            git_body: 2 << 30,
        }
    }
}

/// One session's broker: the forge and the repositories it may reach.
pub struct Broker {
    config: ForgeConfig,
    repos: Vec<RepoName>,
    http: reqwest::Client,
    limits: Limits,
    /// The parsed bases; `None` when the configuration holds no http(s) URL.
    bases: Option<(Url, Url)>,
    /// Connection slots.
    slots: Arc<Semaphore>,
    /// Slots for connections being told 503.
    refusals: Arc<Semaphore>,
}

impl Broker {
    /// A broker for `repos` on the forge `config` describes, with the
    /// default [`Limits`].
    pub fn new(config: ForgeConfig, repos: Vec<RepoName>) -> Broker {
        Broker::with_limits(config, repos, Limits::default())
    }

    /// A broker with `limits`.
    pub fn with_limits(config: ForgeConfig, repos: Vec<RepoName>, limits: Limits) -> Broker {
        let http = reqwest::Client::builder()
            .user_agent(concat!("firepit-broker/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let parse = |u: &str| {
            Url::parse(u)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        };
        let bases = parse(&config.api_url).zip(parse(&config.web_url));
        Broker {
            config,
            repos,
            http,
            slots: Arc::new(Semaphore::new(limits.connections.max(1))),
            refusals: Arc::new(Semaphore::new(limits.connections.max(1))),
            limits,
            bases,
        }
    }

    /// The repositories this broker serves.
    pub fn repos(&self) -> &[RepoName] {
        &self.repos
    }

    /// Serves connections accepted on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "broker accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let broker = self.clone();
                    tokio::spawn(async move {
                        broker.connection(stream).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    // Told 503 while there is room for that, else just closed.
                    if let Ok(permit) = self.refusals.clone().try_acquire_owned() {
                        let max = self.limits.connections;
                        tokio::spawn(async move {
                            busy(stream, max).await;
                            drop(permit);
                        });
                    }
                }
            }
        }
    }

    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = hyper_util::rt::TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let idle = self.limits.idle;
        let header_read = self.limits.header_read;
        let broker = self;
        let service = hyper::service::service_fn(move |req| {
            let broker = broker.clone();
            async move { Ok::<_, Infallible>(broker.handle(req).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_read)
            .max_header_size(64 * 1024)
            .max_headers(64);
        let conn = builder.serve_connection(io, service);
        tokio::select! {
            r = conn => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "broker connection ended");
                }
            }
            () = activity.expired(idle) => {
                tracing::debug!("broker connection idle; closed");
            }
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        match self.forward(req).await {
            Ok(r) => r,
            Err(refusal) => {
                tracing::debug!(status = %refusal.status, why = %refusal.why, "broker refused");
                text(refusal.status, &refusal.why)
            }
        }
    }

    async fn forward(&self, req: Request<Incoming>) -> Result<Response<Body>, Refusal> {
        let refuse = |status, why: &str| Refusal {
            status,
            why: why.to_owned(),
        };
        if req.uri().authority().is_some() || req.uri().scheme().is_some() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "absolute request targets are refused; send the path only",
            ));
        }
        let method = req.method().clone();
        let target = route::parse(&method, req.uri().path(), req.uri().query(), &self.repos)?;
        let Some(token) = self.config.token.as_ref() else {
            return Err(refuse(StatusCode::FORBIDDEN, crate::config::CONFIGURE_HELP));
        };
        let Some((api, web)) = &self.bases else {
            return Err(refuse(
                StatusCode::BAD_GATEWAY,
                "the daemon's forge URL is not an http(s) URL",
            ));
        };
        let up = route::upstream(&target, api, web)?;
        tracing::debug!(method = %method, url = %up.url, "broker forwards");
        let resp = match &target {
            Target::Api { .. } => {
                route::api_write_allowed(&method, &up.rest)?;
                let deadline = tokio::time::Instant::now() + self.limits.rest_total;
                let timed_out = || {
                    refuse(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the REST call took longer than the broker allows",
                    )
                };
                let mut out = self
                    .http
                    .request(method.clone(), up.url)
                    .timeout(self.limits.rest_total)
                    .header("authorization", format!("Bearer {}", token.expose()));
                for name in PASS_API {
                    for v in req.headers().get_all(*name) {
                        out = out.header(*name, v.clone());
                    }
                }
                let body = tokio::time::timeout_at(deadline, self.rest_body(req))
                    .await
                    .map_err(|_| timed_out())??;
                if matches!(method, Method::POST | Method::PATCH) && !body.is_empty() {
                    out = out.header("content-type", "application/json").body(body);
                }
                tokio::time::timeout_at(deadline, out.send())
                    .await
                    .map_err(|_| timed_out())?
            }
            Target::Git { .. } => {
                let mut out = self
                    .http
                    .request(method.clone(), up.url)
                    .header("authorization", token.basic_auth());
                for name in PASS_GIT {
                    for v in req.headers().get_all(*name) {
                        out = out.header(*name, v.clone());
                    }
                }
                if method == Method::POST {
                    let max = self.limits.git_body;
                    let mut seen = 0u64;
                    let body = req.into_body().into_data_stream().map(move |chunk| {
                        let chunk = chunk.map_err(|e| Box::new(e) as BoxError)?;
                        seen += chunk.len() as u64;
                        if seen > max {
                            return Err(BoxError::from(format!(
                                "the git request body is larger than {max} bytes"
                            )));
                        }
                        Ok(chunk)
                    });
                    out = out.body(reqwest::Body::wrap_stream(body));
                }
                out.send().await
            }
        };
        let resp = resp.map_err(|e| {
            let msg = crate::redact(&crate::error_chain(&e), Some(token));
            let status = if e.is_timeout() {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            refuse(status, &format!("the forge could not be reached: {msg}"))
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "the forge refused firepit's GitHub token; the daemon's owner must fix it",
            ));
        }
        let mut builder = Response::builder().status(status.as_u16());
        for name in PASS_RESPONSE {
            for v in resp.headers().get_all(*name) {
                builder = builder.header(*name, v.clone());
            }
        }
        let stream = resp
            .bytes_stream()
            .map_ok(Frame::data)
            .map_err(|e| Box::new(e) as BoxError);
        Ok(builder
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "the forge's answer was malformed")))
    }

    /// A REST request's body: at most [`Limits::rest_body`] bytes, and JSON
    /// when there is one (so no form body can carry a method override).
    async fn rest_body(&self, req: Request<Incoming>) -> Result<Bytes, Refusal> {
        let max = self.limits.rest_body;
        let too_large = || Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            why: format!("REST request bodies are limited to {max} bytes"),
        };
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let body = Limited::new(req.into_body(), max)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    Refusal {
                        status: StatusCode::BAD_REQUEST,
                        why: "the request body could not be read".into(),
                    }
                }
            })?
            .to_bytes();
        if !body.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                why: "REST request bodies must be JSON".into(),
            });
        }
        Ok(body)
    }
}

/// Tells a connection over the cap so, then waits (briefly) for it to close,
/// so the answer is read rather than lost to a reset.
async fn busy(mut stream: tokio::net::TcpStream, max: usize) {
    let body = format!(
        "firepit forge broker: this machine has {max} connections to the broker open already; close some and try again\n"
    );
    let msg = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(msg.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// When a connection last moved a byte.
struct Activity {
    start: tokio::time::Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `idle`.
    async fn expired(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that notes each byte read or written in its [`Activity`].
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
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

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(format!("firepit forge broker: {msg}\n")))
        .map_err(|never| match never {})
        .boxed();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn activity_expires_only_after_a_quiet_spell() {
        let a = Arc::new(Activity::new());
        let idle = Duration::from_secs(10);
        tokio::time::advance(Duration::from_secs(6)).await;
        a.touch();
        let watcher = tokio::spawn({
            let a = a.clone();
            async move { a.expired(idle).await }
        });
        tokio::time::advance(Duration::from_secs(6)).await;
        tokio::task::yield_now().await;
        assert!(!watcher.is_finished(), "touched 6 s ago, idle after 10 s");
        tokio::time::advance(Duration::from_secs(5)).await;
        watcher.await.unwrap();
    }
}
