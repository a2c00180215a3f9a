//! The API token: made on first run, kept in the data dir (mode 0600), checked
//! on every request.
//!
//! Clients send `Authorization: Bearer <token>`. A browser arrives with the
//! login URL `/?token=…`; the daemon answers with an HttpOnly cookie and a
//! redirect that drops the token from the address bar. When the public
//! origin is `https` the cookie is `__Host-firepit_token` and `Secure`: a
//! browser keeps a `__Host-` cookie only without `Domain`, so no other host
//! (a preview under the same domain) can set or shadow it.
//!
//! A browser attaches that cookie by itself, also to requests other pages
//! make (every `http://localhost:<port>` page and every preview is
//! same-site with the UI, so `SameSite=Lax` does not keep their requests
//! out). [`same_origin_only`] therefore refuses, with 403 `cross_site`, a
//! request that carries credentials a browser attaches by itself (the login
//! cookie, HTTP basic auth) and opens a WebSocket or changes something
//! (any method but GET and HEAD), unless it comes from the UI's own origin:
//! `Origin` is the daemon's host or the public origin, and `Sec-Fetch-Site`,
//! when sent, is `same-origin`. API clients (a bearer token, no cookie) are
//! not browsers and pass.

use std::fs;
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use firepit_preview::HostKind;
use rand::Rng;

use crate::{App, Config, Error};

/// Name of the cookie that carries the token for browsers over plain HTTP.
pub const COOKIE: &str = "firepit_token";
/// Name of that cookie when the public origin is `https`.
pub const HOST_COOKIE: &str = "__Host-firepit_token";

/// The login cookie's name under `config`.
pub fn cookie_name(config: &Config) -> &'static str {
    match &config.public_origin {
        Some(p) if p.https => HOST_COOKIE,
        _ => COOKIE,
    }
}

/// The `Set-Cookie` value that signs a browser in with `token`.
pub fn login_cookie(config: &Config, token: &str) -> String {
    let name = cookie_name(config);
    if name == HOST_COOKIE {
        format!("{name}={token}; HttpOnly; Secure; SameSite=Lax; Path=/")
    } else {
        format!("{name}={token}; HttpOnly; SameSite=Lax; Path=/")
    }
}

/// Reads the token from `path`, making a new one if the file does not exist.
pub fn load_or_create_token(path: &Path) -> Result<String, Error> {
    match fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                what: format!("reading {}", path.display()),
                source,
            });
        }
    }
    let token: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    firepit_util::write_private(path, token.as_bytes()).map_err(|source| Error::Io {
        what: format!("writing {}", path.display()),
        source,
    })?;
    Ok(token)
}

/// Compares in time independent of where the first difference is.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries the token: as `Authorization: Bearer` when
/// it has that header, else in a login cookie. Every cookie of the login
/// cookie's name counts, so one set by another host to shadow it (where
/// browsers allow that) cannot lock the owner out.
fn has_token(app: &App, headers: &HeaderMap) -> bool {
    let token = app.token().as_bytes();
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        return v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token));
    }
    crate::preview::cookies(headers, cookie_name(app.config()))
        .any(|t| constant_time_eq(t.as_bytes(), token))
}

/// Middleware: refuses requests without the right token.
pub async fn require_token(
    State(app): State<App>,
    req: Request,
    next: Next,
) -> Result<Response, Error> {
    if has_token(&app, req.headers()) {
        Ok(next.run(req).await)
    } else if wants_page(req.method(), req.headers()) {
        Ok(sign_in_page(&app, &req))
    } else {
        Err(Error::Unauthorized)
    }
}

/// Whether a request is a browser opening a page (a `GET` that accepts
/// HTML), which gets a page rather than the API's JSON error.
fn wants_page(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().starts_with("text/html")))
}

/// The page a browser that is not signed in gets on an API path, 401: how
/// to sign in, with a form that takes the token to the login URL. On
/// `/v1/preview-auth` (where a private preview sends a signed-out browser)
/// the form carries the preview's URL along, and signing in goes on to it.
fn sign_in_page(app: &App, req: &Request) -> Response {
    // Inside `/v1` the router sees the path without its prefix.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path(), |u| u.0.path());
    let next = (path == "/v1/preview-auth")
        .then(|| {
            req.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "next")
                    .map(|(_, v)| v.into_owned())
            })
        })
        .flatten()
        .filter(|n| crate::preview::handshake_url(app, n).is_some());
    let esc = firepit_preview::pages::escape;
    let (lead, hidden) = match &next {
        Some(n) => (
            format!(
                "<p>The preview <code>{}</code> is private: sign in to firepit to open it.</p>",
                esc(n)
            ),
            format!("<input type=\"hidden\" name=\"next\" value=\"{}\">", esc(n)),
        ),
        None => (
            "<p>This page needs you to be signed in to firepit.</p>".to_owned(),
            String::new(),
        ),
    };
    let body = format!(
        "{lead}<p>Open the login link that <code>firepit up</code> printed \
         (<code>http://…/?token=…</code>), or paste the token (the data dir's \
         <code>token</code> file) here:</p>\
         <form method=\"get\" action=\"/\" id=\"sign-in\"><input type=\"password\" name=\"token\" \
         autocomplete=\"current-password\" aria-label=\"API token\" required> {hidden}\
         <button type=\"submit\">Sign in</button></form>"
    );
    let resp = firepit_preview::pages::page(
        axum::http::StatusCode::UNAUTHORIZED,
        "Sign in to firepit",
        &body,
    );
    resp.map(axum::body::Body::new)
}

/// Middleware on every route of the daemon's host: refuses cross-site
/// browser requests that would act with the owner's credentials (see the
/// module docs).
pub async fn same_origin_only(State(app): State<App>, req: Request, next: Next) -> Response {
    match check_origin(app.config(), req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::warn!(
                method = %req.method(),
                path = %req.uri().path(),
                error = %e,
                "refused a cross-site browser request"
            );
            e.into_response()
        }
    }
}

/// Whether a request may go on as far as where it comes from is concerned;
/// [`Error::CrossSite`] when a browser sends it from another origin with
/// credentials it attached by itself, to open a WebSocket or change something.
pub fn check_origin(config: &Config, method: &Method, headers: &HeaderMap) -> Result<(), Error> {
    let upgrade =
        headers.contains_key(header::UPGRADE) || headers.contains_key(header::SEC_WEBSOCKET_KEY);
    let reads = method == Method::GET || method == Method::HEAD;
    if (reads && !upgrade) || !ambient_credentials(headers) {
        return Ok(());
    }
    let refuse = |origin: String| Err(Error::CrossSite { origin });
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let origin = origins.next();
    let shown = origin.map_or_else(
        || "a page that names no origin".to_owned(),
        // Bounded: it goes into the log and the answer.
        |o| String::from_utf8_lossy(&o.as_bytes()[..o.len().min(200)]).into_owned(),
    );
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return refuse(format!(
            "{shown} (Sec-Fetch-Site: {})",
            String::from_utf8_lossy(site.as_bytes())
        ));
    }
    let Some(origin) = origin else {
        // Not a browser's request, or one from a browser too old to say;
        // the `SameSite` cookie is then all there is.
        return Ok(());
    };
    if origins.next().is_some() {
        return refuse(format!("several origins ({shown}, …)"));
    }
    match origin.to_str() {
        Ok(o) if allowed_origin(config, headers, o) => Ok(()),
        _ => refuse(shown),
    }
}

/// Whether the request carries credentials a browser sends by itself: a
/// login cookie (either name, whichever this daemon uses) or HTTP basic auth.
fn ambient_credentials(headers: &HeaderMap) -> bool {
    let basic = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .any(|v| v.as_bytes().len() >= 6 && v.as_bytes()[..6].eq_ignore_ascii_case(b"basic "));
    basic
        || crate::preview::cookies(headers, COOKIE).next().is_some()
        || crate::preview::cookies(headers, HOST_COOKIE)
            .next()
            .is_some()
}

/// `host` without its port: `example.com`, `[::1]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.split(':').next().unwrap_or(host)
}

/// Whether `origin` is the UI's: the public origin, or `http://<Host>` for
/// a Host that is the daemon's own (not a preview's, and not the public
/// host's name, whose only origin is the public one).
fn allowed_origin(config: &Config, headers: &HeaderMap, origin: &str) -> bool {
    let origin = origin.trim().to_ascii_lowercase();
    if let Some(p) = &config.public_origin
        && origin == p.origin()
    {
        return true;
    }
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase())
    else {
        return false;
    };
    let host = host.strip_suffix(":80").unwrap_or(&host);
    if firepit_preview::host::classify(host, &config.domain) != HostKind::Daemon {
        return false;
    }
    if config
        .public_origin
        .as_ref()
        .is_some_and(|p| host_name(host) == p.host)
    {
        return false;
    }
    origin.strip_prefix("http://") == Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_is_made_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = load_or_create_token(&path).unwrap();
        assert_eq!(first.len(), 40);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create_token(&path).unwrap(), first);
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn config(public: Option<&str>) -> Config {
        let mut c = Config::new("/d".into(), "/l".into(), "/g".into());
        c.public_origin = public.map(|p| crate::config::PublicOrigin::parse(p).unwrap());
        c
    }

    #[test]
    fn browser_requests_with_the_cookie_come_from_the_ui_or_nowhere() {
        let c = config(None);
        let post = Method::POST;
        let ok = |h: &[(&str, &str)]| check_origin(&c, &post, &headers(h)).is_ok();
        let cookie = ("cookie", "firepit_token=t");
        let host = ("host", "localhost:7777");
        assert!(ok(&[cookie, host, ("origin", "http://localhost:7777")]));
        assert!(ok(&[cookie, host, ("origin", "HTTP://LOCALHOST:7777")]));
        assert!(ok(&[cookie, host, ("sec-fetch-site", "same-origin")]));
        assert!(ok(&[cookie, host]), "no Origin: not a browser's request");
        assert!(ok(&[
            cookie,
            ("host", "127.0.0.1:7777"),
            ("origin", "http://127.0.0.1:7777")
        ]));
        for bad in [
            "http://localhost:8000",
            "http://8000-abc.localhost:7777",
            "https://localhost:7777",
            "http://evil.example",
            "null",
            "",
        ] {
            assert!(!ok(&[cookie, host, ("origin", bad)]), "{bad:?}");
        }
        for site in ["same-site", "cross-site", "odd"] {
            let h = [
                cookie,
                host,
                ("origin", "http://localhost:7777"),
                ("sec-fetch-site", site),
            ];
            assert!(!ok(&h), "{site}");
        }
        assert!(!ok(&[
            cookie,
            host,
            ("origin", "http://localhost:7777"),
            ("origin", "http://evil.example")
        ]));
        // Basic auth is attached by browsers too; a bearer is not.
        let evil = ("origin", "http://evil.example");
        assert!(!ok(&[("authorization", "Basic eDp0"), host, evil]));
        assert!(ok(&[("authorization", "Bearer t"), host, evil]));
        assert!(!ok(&[("authorization", "Bearer t"), cookie, host, evil]));
        // The `__Host-` name is a login cookie whatever the daemon uses.
        assert!(!ok(&[("cookie", "__Host-firepit_token=t"), host, evil]));
        // A request to a preview host never is the UI's.
        assert!(!ok(&[
            cookie,
            ("host", "8000-abc.localhost:7777"),
            ("origin", "http://8000-abc.localhost:7777")
        ]));
        // Reads pass; WebSocket upgrades do not.
        let get = |h: &[(&str, &str)]| check_origin(&c, &Method::GET, &headers(h)).is_ok();
        assert!(get(&[cookie, host, evil]));
        assert!(!get(&[cookie, host, evil, ("upgrade", "websocket")]));
        assert!(!get(&[cookie, host, evil, ("sec-websocket-key", "x")]));
        assert!(get(&[
            cookie,
            host,
            ("origin", "http://localhost:7777"),
            ("upgrade", "websocket")
        ]));
    }

    #[test]
    fn the_public_origin_is_the_ui_behind_a_front_proxy() {
        let c = config(Some("https://firepit.example.com"));
        let ok = |h: &[(&str, &str)]| check_origin(&c, &Method::POST, &headers(h)).is_ok();
        let cookie = ("cookie", "__Host-firepit_token=t");
        assert!(ok(&[
            cookie,
            ("host", "127.0.0.1:7777"),
            ("origin", "https://firepit.example.com")
        ]));
        assert!(ok(&[
            cookie,
            ("host", "firepit.example.com"),
            ("origin", "https://firepit.example.com")
        ]));
        assert!(
            !ok(&[
                cookie,
                ("host", "firepit.example.com"),
                ("origin", "http://firepit.example.com")
            ]),
            "plain http on the public name is another origin"
        );
        assert!(!ok(&[
            cookie,
            ("host", "firepit.example.com"),
            ("origin", "https://8000-abc.firepit.example.com")
        ]));
        assert_eq!(cookie_name(&c), HOST_COOKIE);
        let set = login_cookie(&c, "t");
        assert!(set.starts_with("__Host-firepit_token=t;"), "{set}");
        assert!(set.contains("; Secure") && set.contains("Path=/"), "{set}");
        assert!(!set.to_ascii_lowercase().contains("domain"), "{set}");
        let plain = config(None);
        assert_eq!(
            login_cookie(&plain, "t"),
            "firepit_token=t; HttpOnly; SameSite=Lax; Path=/"
        );
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
