//! Previews on the daemon's side: who may see `<port>-<session>.<domain>`,
//! and the seam between the proxy engine (`firepit-preview`) and sessions.
//!
//! The daemon's listener serves both the API and previews: its front door
//! ([`crate::front_door`]) sends a request here (`handle`) when its Host is
//! a preview host, refuses hosts that pretend to be one (400), and gives
//! everything else to the API router.
//!
//! Previews are private. A request gets through with any of:
//! - `Authorization: Bearer <API token>` (curl, the CLI);
//! - the owner cookie `firepit_preview`, made by a handshake: a browser
//!   without it is sent to `/v1/preview-auth?next=<preview URL>` on the
//!   daemon's own host (where it has the `firepit_token` cookie), which sends
//!   it back to `/__firepit/auth?ticket=<signed, one minute>&next=<path>` on
//!   the preview host, which sets the cookie (HttpOnly, SameSite=Lax, that
//!   host only) and redirects to the path. The same value also goes in
//!   `firepit_preview_framed` (`SameSite=None; Secure; Partitioned`), the one
//!   a browser keeps and sends inside the UI's iframe, where the preview host
//!   is a third party; browsers take a `Secure` cookie over plain HTTP only
//!   from `localhost` names, so elsewhere framing needs HTTPS in front;
//! - the share cookie `firepit_share`, set by opening a share link
//!   `/__firepit/share?token=…`, while the share is neither expired nor revoked.
//!
//! Tokens are signed with a key made on first run (`<data dir>/preview.key`).
//!
//! An app's answers cannot set firepit's cookies, nor any cookie for a
//! `Domain` beyond its own preview host (it would reach the UI and the other
//! previews): the proxy drops such `Set-Cookie`s on both paths
//! ([`firepit_preview::rules::set_cookie_allowed`]). Behind a TLS front proxy
//! (`--public-url https://…`) the UI's login cookie is `__Host-`, which no
//! other host can set or shadow at all, and previews may be framed by the
//! public origin.
//!
//! `/__firepit/report.js` and `/__firepit/report` on every preview host are
//! the page reports' ([`crate::preview_reports`]): the script the app's
//! pages get, and where it posts; neither reaches the app.
//!
//! Both paths reach the app through `dial_in` (the machine backend's
//! `dial_then`) and keep upstream connections in one pool, which
//! [`Previews::forget`] empties when a session stops.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use firepit_preview::token::{self, Claims, Kind, Signer};
use firepit_preview::{HostKind, Pool, PreviewHost, Route};
use firepit_preview::{fast, pages, proxy};
use firepit_wire::api::SessionState;
use hyper::body::Incoming;

use crate::{App, auth};

/// The owner's cookie on a preview host.
pub const OWNER_COOKIE: &str = "firepit_preview";
/// The owner's cookie on a preview host framed by the UI (a third-party context).
pub const FRAMED_OWNER_COOKIE: &str = "firepit_preview_framed";
/// The cookie a share link sets.
pub const SHARE_COOKIE: &str = "firepit_share";
/// Cookies that are firepit's and never reach an app.
const PRIVATE_COOKIES: &[&str] = &[
    auth::COOKIE,
    auth::HOST_COOKIE,
    OWNER_COOKIE,
    SHARE_COOKIE,
    FRAMED_OWNER_COOKIE,
];
/// How long a handshake ticket works.
const TICKET_TTL: i64 = 60;
/// How long the owner's cookie works.
const OWNER_TTL: i64 = 7 * 24 * 3600;
/// The preview state: the signing key, idle upstream connections. Whether
/// a session runs is whether it is live ([`crate::live`]).
pub struct Previews {
    signer: Signer,
    /// Upstream connections of both paths.
    pool: Arc<Pool>,
    /// How many page reports each session may still send.
    reports: crate::preview_reports::Limits,
}

impl Previews {
    /// Previews whose tokens `signer` signs.
    pub fn new(signer: Signer) -> Previews {
        Previews {
            signer,
            pool: Arc::default(),
            reports: Default::default(),
        }
    }

    /// The token signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Forgets what is kept for `session` (it stopped): its idle upstream
    /// connections (of both paths), all the proxy keeps per session.
    pub fn forget(&self, session: &str) {
        self.pool.forget(session);
        self.reports.forget(session);
    }

    /// How many page reports each session may still send.
    pub fn reports(&self) -> &crate::preview_reports::Limits {
        &self.reports
    }

    /// How many idle upstream connections `session` has (tests).
    pub fn idle(&self, session: &str) -> usize {
        self.pool.idle(session)
    }
}

/// The daemon's side of the proxy's fast path ([`fast`]): it takes
/// requests to running sessions that carry the API token or a valid owner
/// cookie. Everything else (sign-in, share links, refusals, error pages)
/// goes through the front door's `dispatch` to `handle`.
pub struct FastGate {
    app: App,
}

impl FastGate {
    /// The gate for `app`'s previews.
    pub fn new(app: App) -> FastGate {
        FastGate { app }
    }

    /// Serves a connection: on the fast path while it can, then on `full`.
    pub async fn serve(&self, stream: tokio::net::TcpStream, client: SocketAddr) -> fast::Outcome {
        fast::serve(self, &self.app.previews().pool, stream, client).await
    }
}

/// Reports a 5xx the app answered a preview request with (the person saw
/// it) as a problem of the session: `source=preview`.
fn app_error(app: &App, session: &str, port: u16, request: &str, status: u16) {
    let p = firepit_problems::Problem::new(
        "preview",
        "http_5xx",
        &format!("{request} answered {status} in the preview of port {port}"),
        &format!(
            "A request through the preview of port {port} (the person's, or a share link's) got {status} from the app.\nrequest: {request}"
        ),
    );
    let (app, session) = (app.clone(), session.to_owned());
    tokio::spawn(async move { crate::closed_loop::report(&app, &session, p).await });
}

impl fast::Gate for FastGate {
    fn app_error(&self, to: &Route, request: &str, status: u16) {
        app_error(&self.app, &to.session, to.port, request, status);
    }

    fn claims(&self, host: &[u8]) -> bool {
        std::str::from_utf8(host).is_ok_and(|h| {
            let domain = &self.app.config().domain;
            // envd's host under `E2B_DOMAIN` is the E2B door's, not a preview.
            !firepit_e2b::is_domain_host(h, domain)
                && matches!(
                    firepit_preview::host::classify(h, domain),
                    HostKind::Preview(_)
                )
        })
    }

    fn admit(&self, head: &fast::RequestHead<'_>) -> Option<Route> {
        let app = &self.app;
        let HostKind::Preview(p) = firepit_preview::host::classify(head.host, &app.config().domain)
        else {
            return None;
        };
        if head.target.starts_with("/__firepit/")
            || is_firepit_port(app, &p.session, p.port)
            || firepit_e2b::is_domain_host(head.host, &app.config().domain)
        {
            return None;
        }
        let bearer = head
            .header("authorization")
            .and_then(|v| v.strip_prefix(b"Bearer "))
            .is_some_and(|t| auth::constant_time_eq(t.trim_ascii(), app.token().as_bytes()));
        let owner = || {
            [OWNER_COOKIE, FRAMED_OWNER_COOKIE].iter().any(|name| {
                head.cookie(name).is_some_and(|c| {
                    app.previews()
                        .signer
                        .verify(c, token::now())
                        .is_ok_and(|claims| claims.opens(Kind::Owner, &p.session, p.port))
                })
            })
        };
        if !bearer && !owner() {
            return None;
        }
        if !app.live().contains(&p.session) && check_running(app, &p).is_some() {
            return None;
        }
        // A page that gets the error-reporting script: the full path's.
        if firepit_preview::report::is_document(head.method, |n| head.header(n))
            && app.preview_reports(&p.session)
        {
            return None;
        }
        let daemon_port = head
            .host
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok());
        Some(Route {
            frame_ancestor: framed_by(app, daemon_port),
            cookie_host: cookie_host(app, &p),
            session: p.session,
            port: p.port,
        })
    }

    fn dial<'a>(&'a self, to: &'a Route) -> fast::Dialing<'a> {
        Box::pin(async move {
            let p = PreviewHost {
                port: to.port,
                session: to.session.clone(),
            };
            dial(&self.app, &p).await
        })
    }

    fn private_cookies(&self) -> &[&str] {
        PRIVATE_COOKIES
    }

    fn api_token(&self) -> &str {
        self.app.token()
    }
}

/// The port the daemon is reached on, as the client named it in `Host`.
pub fn host_port(headers: &HeaderMap) -> Option<u16> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let (_, port) = host.rsplit_once(':')?;
    port.parse().ok()
}

/// The daemon's (and the UI's) origin: the public origin when one is set,
/// else `http://<domain>[:port]` (see [`crate::Config::ui_origin`]).
pub fn daemon_origin(app: &App, port: Option<u16>) -> String {
    app.config().ui_origin(port)
}

/// `http://<port>-<session>.<domain>[:daemon port]`, or on the public
/// origin's scheme and port: a preview's origin.
pub fn preview_origin(app: &App, p: &PreviewHost, daemon_port: Option<u16>) -> String {
    app.config().preview_origin(&p.label(), daemon_port)
}

/// A preview's host name, `<port>-<session>.<domain>`: the only `Domain`
/// the app's cookies may name.
fn cookie_host(app: &App, p: &PreviewHost) -> String {
    format!("{}.{}", p.label(), app.config().domain.to_ascii_lowercase())
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A local path to redirect to: `/…`, never `//host` or a backslash trick.
fn safe_path(next: Option<String>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.bytes().any(|b| b.is_ascii_control()) =>
        {
            p
        }
        _ => "/".into(),
    }
}

/// The value of cookie `name`, from any `Cookie` header.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    cookies(headers, name).next()
}

/// Every value of cookie `name` (a browser sends several when cookies of
/// one name were set for several domains or paths), from any `Cookie` header.
pub(crate) fn cookies<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn set_cookie(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}")
}

pub(crate) type Resp = Response<Body>;
/// A request refused with a response (boxed: responses are large).
type Refused = Box<Resp>;

fn html(r: Response<firepit_preview::Body>) -> Resp {
    r.map(Body::new)
}

pub(crate) fn bad_request(why: &str) -> Resp {
    html(pages::text_page(
        StatusCode::BAD_REQUEST,
        "Bad request",
        why,
    ))
}

/// Answers for a session that does not exist or does not run; `None` when it runs.
fn check_running(app: &App, p: &PreviewHost) -> Option<Resp> {
    match app.store().session(&p.session) {
        Err(crate::Error::SessionNotFound(_)) => Some(html(pages::page(
            StatusCode::NOT_FOUND,
            "No such session",
            &format!(
                "<p>There is no session <code>{}</code>; <code>firepit ls</code> lists sessions.</p>",
                pages::escape(&p.session)
            ),
        ))),
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "preview: reading the session");
            Some(html(pages::text_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "the session store failed; see the daemon's log",
            )))
        }
        Ok(s) if s.state != SessionState::Running => Some(stopped(p)),
        Ok(_) => None,
    }
}

/// Answers one request to a preview host.
pub(crate) async fn handle(
    app: &App,
    p: PreviewHost,
    client: SocketAddr,
    mut req: Request<Incoming>,
) -> Resp {
    let daemon_port = host_port(req.headers());
    let now = token::now();
    let previews = app.previews();
    let query = req.uri().query();
    match req.uri().path() {
        "/__firepit/auth" => {
            let ticket = query_param(query, "ticket").unwrap_or_default();
            let next = safe_path(query_param(query, "next"));
            return match previews.signer.verify(&ticket, now) {
                Ok(c) if c.opens(Kind::Ticket, &p.session, p.port) => {
                    let owner = previews.signer.sign(&Claims {
                        kind: Kind::Owner,
                        session: p.session.clone(),
                        port: p.port,
                        expires_at: now + OWNER_TTL,
                        share: String::new(),
                    });
                    let mut resp = html(pages::redirect(
                        &next,
                        Some(&set_cookie(OWNER_COOKIE, &owner, OWNER_TTL)),
                    ));
                    let framed = format!(
                        "{FRAMED_OWNER_COOKIE}={owner}; Path=/; HttpOnly; SameSite=None; Secure; Partitioned; Max-Age={OWNER_TTL}"
                    );
                    if let Ok(v) = header::HeaderValue::from_str(&framed) {
                        resp.headers_mut().append(header::SET_COOKIE, v);
                    }
                    resp
                }
                Ok(_) => forbidden("This sign-in ticket is for another preview."),
                Err(e) => forbidden(&format!("Signing in to this preview failed: {e}.")),
            };
        }
        "/__firepit/share" => {
            let tok = query_param(query, "token").unwrap_or_default();
            return match check_share(app, &p, &tok, now) {
                Ok(c) => html(pages::redirect(
                    &safe_path(query_param(query, "next")),
                    Some(&set_cookie(SHARE_COOKIE, &tok, c.expires_at - now)),
                )),
                Err(resp) => *resp,
            };
        }
        firepit_preview::report::SCRIPT_PATH => return crate::preview_reports::script(),
        _ => {}
    }
    if let Err(resp) = check_access(app, &p, &req, daemon_port, now) {
        return *resp;
    }
    if req.uri().path() == "/__firepit/frame" {
        return frame(app, daemon_port, query);
    }
    if !app.live().contains(&p.session)
        && let Some(resp) = check_running(app, &p)
    {
        return resp;
    }
    if req.uri().path() == firepit_preview::report::REPORT_PATH {
        return crate::preview_reports::take(app, &p, req).await;
    }
    if p.port == firepit_browser::DEVTOOLS_PORT {
        // The agent's browser is driven by the daemon alone; the person watches it live.
        return html(pages::page(
            StatusCode::FORBIDDEN,
            "Not previewed",
            &format!(
                "<p>Port {} is the DevTools port of the agent's browser; it is not previewed. The live view shows the browser.</p>",
                p.port
            ),
        ));
    }
    let route = Route {
        frame_ancestor: framed_by(app, daemon_port),
        cookie_host: cookie_host(app, &p),
        session: p.session.clone(),
        port: p.port,
    };
    let policy = route.policy(client.ip(), PRIVATE_COOKIES, app.token());
    let request = {
        let target = req.uri().path_and_query().map_or("/", |t| t.as_str());
        format!("{} {}", req.method(), firepit_problems::cut(target, 300))
    };
    let inject = crate::preview_reports::wanted(app, &p.session, &req);
    if inject {
        firepit_preview::report::ask_identity(&mut req);
    }
    let result = proxy::forward(&previews.pool, &route, &policy, req, || dial(app, &p)).await;
    match result {
        Ok(resp) => {
            if resp.status().is_server_error() {
                app_error(app, &p.session, p.port, &request, resp.status().as_u16());
            }
            if inject {
                return html(firepit_preview::report::into_page(resp).await);
            }
            html(resp)
        }
        Err(firepit_preview::Error::Refused(_)) => nothing_listening(app, &p).await,
        Err(firepit_preview::Error::NotRunning) => stopped(&p),
        Err(e) => {
            tracing::debug!(session = %p.session, port = p.port, error = %crate::error::chain(&e), "preview failed");
            html(pages::app_failed(p.port, &p.session))
        }
    }
}

/// Who may frame a preview's answers: the UI's origin, and the preview's
/// own (the frame page the UI shows the app through, one level up).
fn framed_by(app: &App, daemon_port: Option<u16>) -> String {
    format!("{} 'self'", daemon_origin(app, daemon_port))
}

/// The frame page the UI's Preview tab shows the app through (see
/// [`firepit_preview::frame`]), for a browser that may see the preview.
fn frame(app: &App, daemon_port: Option<u16>, query: Option<&str>) -> Resp {
    let path = safe_path(query_param(query, "path"));
    html(firepit_preview::frame::page(
        &daemon_origin(app, daemon_port),
        &path,
    ))
}

/// Whether `port` in `session`'s machine is firepit's own rather than the
/// app's: the forge broker's, or the agent's browser's DevTools port. Such
/// ports are never listed, announced by events, or previewed.
pub fn is_firepit_port(app: &App, session: &str, port: u16) -> bool {
    port == firepit_browser::DEVTOOLS_PORT
        || app.is_broker_port(session, port)
        || app.relays().is_relay_port(session, port)
}

/// Connects to the app: the machine's loopback first (IPv4, then IPv6),
/// then any other address the guest sees the port listening on.
async fn dial(app: &App, p: &PreviewHost) -> Result<tokio::net::TcpStream, firepit_preview::Error> {
    // The forge broker listens in the machine too; it is never a preview.
    if app.is_broker_port(&p.session, p.port) || app.relays().is_relay_port(&p.session, p.port) {
        return Err(firepit_preview::Error::Refused(p.port));
    }
    let loopback = vec![
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p.port),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), p.port),
    ];
    match dial_in(app, &p.session, loopback).await {
        Err(firepit_preview::Error::Refused(port)) => {
            let others: Vec<SocketAddr> = open_ports(app, &p.session)
                .await
                .into_iter()
                .filter(|a| a.port() == port && !a.ip().is_unspecified() && !a.ip().is_loopback())
                .collect();
            if others.is_empty() {
                return Err(firepit_preview::Error::Refused(port));
            }
            dial_in(app, &p.session, others).await
        }
        other => other,
    }
}

/// Connects to the first of `addrs` that accepts, inside a session's
/// machine: the backend's `dial_then`, its answer awaited here.
pub(crate) async fn dial_in(
    app: &App,
    session: &str,
    addrs: Vec<SocketAddr>,
) -> Result<tokio::net::TcpStream, firepit_preview::Error> {
    use firepit_preview::Error as E;
    let port = addrs.first().map_or(0, SocketAddr::port);
    let Ok(mid) = firepit_machine::MachineId::new(session) else {
        return Err(E::NotRunning);
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.backend().clone().dial_then(
        mid,
        addrs,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    let stream = match rx.await {
        Ok(Ok(s)) => s,
        Ok(Err(firepit_machine::Error::NotRunning(_))) | Err(_) => return Err(E::NotRunning),
        Ok(Err(firepit_machine::Error::Refused(p))) => return Err(E::Refused(p)),
        Ok(Err(e)) => {
            return Err(E::Connect {
                port,
                source: std::io::Error::other(crate::error::chain(&e)),
            });
        }
    };
    tokio::net::TcpStream::from_std(stream).map_err(|source| E::Connect { port, source })
}

/// Connects to `port` on a session's machine loopback (the browser's
/// DevTools port), inside the machine.
pub(crate) async fn dial_loopback(
    app: &App,
    session: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, firepit_preview::Error> {
    let addr = vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)];
    dial_in(app, session, addr).await
}

/// The ports listening in a session's machine, as the guest sees them.
async fn open_ports(app: &App, session: &str) -> Vec<SocketAddr> {
    let Ok(guest) = app.guest(session).await else {
        return Vec::new();
    };
    match guest.list_ports().await {
        Ok(ports) => ports
            .into_iter()
            .map(|p| SocketAddr::new(p.addr, p.port))
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn nothing_listening(app: &App, p: &PreviewHost) -> Resp {
    let mut ports: Vec<u16> = open_ports(app, &p.session)
        .await
        .iter()
        .map(SocketAddr::port)
        .filter(|&port| !is_firepit_port(app, &p.session, port))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    html(pages::nothing_listening(p.port, &p.session, &ports))
}

fn stopped(p: &PreviewHost) -> Resp {
    html(pages::stopped(&p.session))
}

fn forbidden(text: &str) -> Resp {
    html(pages::text_page(
        StatusCode::FORBIDDEN,
        "Access refused",
        text,
    ))
}

/// The claims of a share token for this preview, if it still works.
fn check_share(app: &App, p: &PreviewHost, tok: &str, now: i64) -> Result<Claims, Refused> {
    let c = match app.previews().signer.verify(tok, now) {
        Ok(c) => c,
        Err(firepit_preview::Error::Expired) => {
            return Err(Box::new(forbidden(
                "This share link has expired; ask for a new one.",
            )));
        }
        Err(_) => {
            return Err(Box::new(forbidden(
                "This share link is not valid (forged or damaged).",
            )));
        }
    };
    if !c.opens(Kind::Share, &p.session, p.port) {
        return Err(Box::new(forbidden(
            "This share link is for another preview.",
        )));
    }
    match app.store().share(&p.session, &c.share) {
        Ok(Some(s)) if !s.revoked => Ok(c),
        Ok(_) => Err(Box::new(forbidden("This share link was revoked."))),
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "preview: reading a share");
            Err(Box::new(forbidden(
                "This share link cannot be checked now; try again.",
            )))
        }
    }
}

/// Lets the request through, or answers it: a redirect to sign in, or 401/403.
fn check_access(
    app: &App,
    p: &PreviewHost,
    req: &Request<Incoming>,
    daemon_port: Option<u16>,
    now: i64,
) -> Result<(), Refused> {
    let headers = req.headers();
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        && auth::constant_time_eq(v.trim().as_bytes(), app.token().as_bytes())
    {
        return Ok(());
    }
    for name in [OWNER_COOKIE, FRAMED_OWNER_COOKIE] {
        if let Some(c) = cookie(headers, name) {
            match app.previews().signer.verify(c, now) {
                Ok(claims) if claims.opens(Kind::Owner, &p.session, p.port) => return Ok(()),
                Err(firepit_preview::Error::Expired) => {}
                _ => {
                    return Err(Box::new(forbidden(
                        "Your preview cookie is not valid for this preview. Clear this site's cookies and open the preview from firepit again.",
                    )));
                }
            }
        }
    }
    if let Some(c) = cookie(headers, SHARE_COOKIE) {
        return check_share(app, p, c, now).map(|_| ());
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let next = format!("{}{path}", preview_origin(app, p, daemon_port));
        let to = format!(
            "{}/v1/preview-auth?next={}",
            daemon_origin(app, daemon_port),
            encode(&next)
        );
        return Err(Box::new(html(pages::redirect(&to, None))));
    }
    Err(Box::new(html(pages::text_page(
        StatusCode::UNAUTHORIZED,
        "Sign in first",
        "This preview is private: open it in a browser signed in to firepit, or send the API token as `Authorization: Bearer`.",
    ))))
}

/// Where `/v1/preview-auth` sends the browser: the preview host's handshake
/// with a fresh ticket, or `None` if `next` is not a preview URL of this firepit.
pub fn handshake_url(app: &App, next: &str) -> Option<String> {
    let scheme = app
        .config()
        .public_origin
        .as_ref()
        .map_or("http", |p| p.scheme());
    let rest = next.strip_prefix(scheme)?.strip_prefix("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let HostKind::Preview(p) = firepit_preview::host::classify(authority, &app.config().domain)
    else {
        return None;
    };
    if authority.contains('@') {
        return None;
    }
    let ticket = app.previews().signer.sign(&Claims {
        kind: Kind::Ticket,
        session: p.session.clone(),
        port: p.port,
        expires_at: token::now() + TICKET_TTL,
        share: String::new(),
    });
    Some(format!(
        "{scheme}://{authority}/__firepit/auth?ticket={}&next={}",
        encode(&ticket),
        encode(&safe_path(Some(path.to_owned())))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_redirect_targets() {
        for ok in ["/", "/a?b=c", "/x/y#z"] {
            assert_eq!(safe_path(Some(ok.into())), ok);
        }
        for bad in [
            "//evil.com",
            "http://evil.com",
            "/\\evil.com",
            "",
            "a",
            "/a\r\nb",
        ] {
            assert_eq!(safe_path(Some(bad.into())), "/", "{bad:?}");
        }
        assert_eq!(safe_path(None), "/");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; firepit_preview=tok".parse().unwrap());
        assert_eq!(cookie(&h, OWNER_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, SHARE_COOKIE), None);
    }
}
