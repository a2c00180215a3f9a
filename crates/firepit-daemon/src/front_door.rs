//! The daemon's front door: the one listener's accept loop and what each
//! connection and request is handed to.
//!
//! A connection goes to the preview proxy's fast path first
//! ([`preview::FastGate`]: preview hosts only, requests it admits); the rest
//! of it, from the first request the fast path does not take, is served by
//! hyper-util (64 KiB header limit → 431, 10 s header read timeout), whose
//! [`dispatch`] sends the names the E2B SDK makes from `E2B_DOMAIN`
//! (`api.<domain>`, `49983-<sandbox>.<domain>`) to the E2B door's routes
//! alone, preview hosts to the proxy (`preview::handle`), the daemon's own
//! host to the API router (which serves the UI outside `/v1/`), and refuses
//! duplicate Host headers, absolute-form targets naming another host and
//! hosts that pretend to be previews (400).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Request, header};
use firepit_preview::HostKind;
use hyper::body::Incoming;

use crate::preview::{self, Resp, bad_request};
use crate::{App, Error, api};

/// Longest a request's headers may be (larger ones get 431).
const MAX_HEADER_BYTES: usize = 64 << 10;
/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves the API and previews (routed by Host, see [`preview`]) on
/// `listener` until `shutdown` completes, then waits a little for requests
/// in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let router = api::router(app.clone());
    let e2b = e2b_router(&app);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .max_buf_size(MAX_HEADER_BYTES)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .timer(TokioTimer::new());
    let builder = std::sync::Arc::new(builder);
    let gate = std::sync::Arc::new(preview::FastGate::new(app.clone()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of fds and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, router, e2b, gate) = (app.clone(), router.clone(), e2b.clone(), gate.clone());
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            // Plain preview requests first (see `preview::FastGate`); the
            // rest of the connection, from the first request the fast path
            // does not take, on hyper.
            let (stream, read) = match gate.serve(stream, client).await {
                firepit_preview::fast::Outcome::Done => return,
                firepit_preview::fast::Outcome::Fallback(stream, read) => (stream, read),
            };
            let service = hyper::service::service_fn(move |req| {
                dispatch(app.clone(), router.clone(), e2b.clone(), client, req)
            });
            let io = TokioIo::new(firepit_preview::fast::Prefixed::new(read, stream));
            let conn = builder.serve_connection_with_upgrades(io, service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("shutting down with requests still in flight");
    }
    Ok(())
}

/// The E2B door's routes alone, for the hosts of `E2B_DOMAIN`: nothing of
/// the daemon's API or UI is served on them.
fn e2b_router(app: &App) -> axum::Router {
    async fn not_e2b() -> firepit_e2b::Error {
        firepit_e2b::Error::Missing(
            "this host serves E2B's API only (the sandbox API and envd)".into(),
        )
    }
    app.e2b()
        .map(firepit_e2b::router)
        .unwrap_or_default()
        .fallback(not_e2b)
}

/// The service behind the daemon's listener: E2B's domain hosts, previews
/// by Host, then the API.
pub async fn dispatch(
    app: App,
    router: axum::Router,
    e2b: axum::Router,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Ok(bad_request("the request has more than one Host header"));
    }
    let host = match (&host, req.uri().authority()) {
        (Some(h), Some(a)) => {
            let h = h.to_str().unwrap_or_default();
            if !h.eq_ignore_ascii_case(a.as_str()) {
                return Ok(bad_request(
                    "the request's target names another host than its Host header",
                ));
            }
            Some(h.to_owned())
        }
        (Some(h), None) => match h.to_str() {
            Ok(h) => Some(h.to_owned()),
            Err(_) => return Ok(bad_request("the Host header is not text")),
        },
        (None, Some(a)) => Some(a.as_str().to_owned()),
        (None, None) => None,
    };
    if host
        .as_deref()
        .is_some_and(|h| firepit_e2b::is_domain_host(h, &app.config().domain))
    {
        use tower::ServiceExt;
        return e2b.oneshot(req.map(Body::new)).await;
    }
    let kind = match &host {
        Some(h) => firepit_preview::host::classify(h, &app.config().domain),
        None => HostKind::Daemon,
    };
    match kind {
        HostKind::Preview(p) => Ok(preview::handle(&app, p, client, req).await),
        HostKind::Bad(why) => Ok(bad_request(&why)),
        HostKind::Daemon => {
            use tower::ServiceExt;
            router.oneshot(req.map(Body::new)).await
        }
    }
}
