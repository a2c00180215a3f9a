//! `/git/{id}/…`: the session's own git endpoint. `git clone
//! http://<daemon>/git/<session>` (the API token as the HTTP password, or a
//! bearer header) gives the machine's `/workspace` repository; `git push`
//! lands in it.
//!
//! Each request runs `git http-backend` inside the machine as a CGI program
//! over the guest's exec, so files keep the machine's owners and git's own
//! protocol code does the work. Pushes use
//! `receive.denyCurrentBranch=updateInstead`: a push to the checked-out
//! branch updates the working tree when it is clean, and is refused (with
//! git's message) when it is not.
//!
//! The CGI's answer comes from inside the machine, whose root can replace
//! `git` with anything, and it is served on the daemon's (the UI's) origin:
//! of its headers only those git needs pass ([`CGI_HEADERS`]; `Set-Cookie`
//! and everything else are dropped), its type only when it is one of git's
//! (else `application/octet-stream`), its status only when it is a final
//! one (else 502), and every answer is `nosniff` with a policy that lets a
//! document run nothing. The body is streamed, so hyper frames it.

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use firepit_guest_client::{Captured, ExecEvent};
use firepit_wire::guest::ExecRequest;
use http_body_util::BodyExt;

use crate::{App, Error};

/// Longest the CGI's headers may be.
const MAX_CGI_HEADERS: usize = 64 << 10;
/// Longest one git request may run.
const GIT_TIMEOUT_MS: u64 = 30 * 60 * 1000;
/// Headers of the CGI's answer that reach the client (`Content-Type` is
/// checked besides); the rest are dropped.
const CGI_HEADERS: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::PRAGMA,
    header::LAST_MODIFIED,
];

/// Whether the request carries the API token: a bearer header, or HTTP basic
/// auth with the token as the password (any user name).
fn authorized(app: &App, headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let presented = if let Some(t) = v.strip_prefix("Bearer ") {
        t.trim().to_owned()
    } else if let Some(b) = v.strip_prefix("Basic ") {
        use base64::Engine;
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
            return false;
        };
        let raw = String::from_utf8_lossy(&raw).into_owned();
        match raw.split_once(':') {
            Some((_, pass)) => pass.to_owned(),
            None => return false,
        }
    } else {
        return false;
    };
    crate::auth::constant_time_eq(presented.as_bytes(), app.token().as_bytes())
}

fn unauthorized() -> Response {
    let mut r = Error::Unauthorized.into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"firepit\", charset=\"UTF-8\""),
    );
    r
}

pub(super) async fn info_refs(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    serve(app, id, "/info/refs", query, req).await
}

pub(super) async fn upload_pack(
    State(app): State<App>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    serve(app, id, "/git-upload-pack", None, req).await
}

pub(super) async fn receive_pack(
    State(app): State<App>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    serve(app, id, "/git-receive-pack", None, req).await
}

async fn serve(app: App, id: String, tail: &str, query: Option<String>, req: Request) -> Response {
    if !authorized(&app, req.headers()) {
        return unauthorized();
    }
    match backend(&app, &id, tail, query, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn backend(
    app: &App,
    id: &str,
    tail: &str,
    query: Option<String>,
    req: Request,
) -> Result<Response, Error> {
    let guest = app.guest(id).await?;
    match guest.stat("/workspace/.git").await {
        Ok(_) => {}
        Err(_) => return Err(Error::NoRepository(id.to_owned())),
    }
    let (parts, body) = req.into_parts();
    let limit = app.config().max_upload_bytes;
    let body = http_body_util::Limited::new(body, limit as usize)
        .collect()
        .await
        .map_err(|_| Error::TooLarge { limit })?
        .to_bytes();
    let h = |k: header::HeaderName| {
        parts
            .headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut env: Vec<(String, String)> = vec![
        ("GIT_PROJECT_ROOT".into(), "/".into()),
        ("PATH_INFO".into(), format!("/workspace{tail}")),
        ("REQUEST_METHOD".into(), parts.method.as_str().into()),
        ("QUERY_STRING".into(), query.unwrap_or_default()),
        ("CONTENT_LENGTH".into(), body.len().to_string()),
        ("GIT_HTTP_EXPORT_ALL".into(), "1".into()),
        ("REMOTE_USER".into(), "firepit".into()),
        ("REMOTE_ADDR".into(), "127.0.0.1".into()),
        ("GIT_CONFIG_COUNT".into(), "3".into()),
        (
            "GIT_CONFIG_KEY_0".into(),
            "receive.denyCurrentBranch".into(),
        ),
        ("GIT_CONFIG_VALUE_0".into(), "updateInstead".into()),
        ("GIT_CONFIG_KEY_1".into(), "http.receivepack".into()),
        ("GIT_CONFIG_VALUE_1".into(), "true".into()),
        ("GIT_CONFIG_KEY_2".into(), "safe.directory".into()),
        ("GIT_CONFIG_VALUE_2".into(), "*".into()),
    ];
    if let Some(ct) = h(header::CONTENT_TYPE) {
        env.push(("CONTENT_TYPE".into(), ct));
    }
    if let Some(ce) = h(header::CONTENT_ENCODING) {
        env.push(("HTTP_CONTENT_ENCODING".into(), ce));
    }
    if let Some(p) = parts
        .headers
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
    {
        env.push(("GIT_PROTOCOL".into(), p.to_owned()));
    }
    let mut exec_req = ExecRequest::argv(["git", "http-backend"]);
    exec_req.env = env;
    exec_req.cwd = Some("/".into());
    exec_req.stdin = true;
    exec_req.timeout_ms = Some(GIT_TIMEOUT_MS);
    let mut exec = guest.exec(exec_req).await.map_err(Error::Guest)?;
    for chunk in body.chunks(64 << 10) {
        exec.stdin_write(Bytes::copy_from_slice(chunk))
            .await
            .map_err(Error::Guest)?;
    }
    exec.stdin_close().await.map_err(Error::Guest)?;

    // The CGI's headers, up to the blank line.
    let mut head = BytesMut::new();
    // Only the end of git's complaints is kept, however much it writes.
    let mut stderr = Captured::new(4096);
    let split = loop {
        if let Some(i) = find_blank_line(&head) {
            break i;
        }
        if head.len() > MAX_CGI_HEADERS {
            return Err(Error::BadRequest(
                "git http-backend sent too long a header".into(),
            ));
        }
        match exec.next_event().await.map_err(Error::Guest)? {
            Some(ExecEvent::Stdout(b)) => head.extend_from_slice(&b),
            Some(ExecEvent::Stderr(b)) => stderr.push(&b),
            Some(ExecEvent::Exit(status)) => {
                let why = crate::forge::tail(&stderr.to_bytes(), 1000);
                return Err(Error::BadRequest(format!(
                    "git http-backend ended ({status:?}) without an answer: {why}"
                )));
            }
            None => return Err(Error::BadRequest("git http-backend went away".into())),
        }
    };
    let (header_len, sep_len) = split;
    let rest = head.split_off(header_len + sep_len);
    let (status, headers) = cgi_head(&head[..header_len]);
    let mut resp = Response::builder().status(status);
    if let Some(h) = resp.headers_mut() {
        *h = headers;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let session = id.to_owned();
    tokio::spawn(async move {
        if !rest.is_empty() && tx.send(Ok(rest.freeze())).await.is_err() {
            return;
        }
        loop {
            match exec.next_event().await {
                Ok(Some(ExecEvent::Stdout(b))) => {
                    if tx.send(Ok(b)).await.is_err() {
                        return;
                    }
                }
                Ok(Some(ExecEvent::Stderr(b))) => stderr.push(&b),
                Ok(Some(ExecEvent::Exit(s))) => {
                    if !s.success() {
                        tracing::info!(session = %session, status = ?s, stderr = %crate::forge::tail(&stderr.to_bytes(), 500), "git http-backend failed");
                    }
                    return;
                }
                Ok(None) | Err(_) => {
                    let _ = tx
                        .send(Err(std::io::Error::other("git http-backend went away")))
                        .await;
                    return;
                }
            }
        }
    });
    let stream = tokio_stream_from(rx);
    resp.body(Body::from_stream(stream))
        .map_err(|e| Error::BadRequest(format!("git http-backend's answer is malformed: {e}")))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The status and headers to answer with, from the CGI's header block
/// (see the module docs).
fn cgi_head(block: &[u8]) -> (StatusCode, HeaderMap) {
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in String::from_utf8_lossy(block).lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..=599).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            continue;
        }
        let Ok(name) = header::HeaderName::try_from(k) else {
            continue;
        };
        if !CGI_HEADERS.contains(&name) {
            continue;
        }
        let value = if name == header::CONTENT_TYPE && !is_git_type(v) {
            HeaderValue::from_static("application/octet-stream")
        } else {
            match HeaderValue::try_from(v) {
                Ok(v) => v,
                Err(_) => continue,
            }
        };
        headers.insert(name, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(super::artifacts::INERT_CSP),
    );
    (status, headers)
}

/// Whether `ct` is a type git's smart or dumb HTTP protocol uses.
fn is_git_type(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or_default().trim();
    essence.len() > "application/x-git-".len()
        && essence[.."application/x-git-".len()].eq_ignore_ascii_case("application/x-git-")
        || essence.eq_ignore_ascii_case("text/plain")
        || essence.eq_ignore_ascii_case("application/octet-stream")
}

/// Where the header block ends: (its length, the separator's length).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_headers_end_at_the_first_blank_line() {
        assert_eq!(find_blank_line(b"Status: 200\r\n\r\nbody"), Some((11, 4)));
        assert_eq!(find_blank_line(b"A: b\n\nbody\r\n\r\n"), Some((4, 2)));
        assert_eq!(find_blank_line(b"A: b\r\n"), None);
    }

    #[test]
    fn only_the_headers_git_needs_pass() {
        let (status, h) = cgi_head(
            b"Status: 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\
              Cache-Control: no-cache, max-age=0, must-revalidate\r\nExpires: Fri, 01 Jan 1980 00:00:00 GMT\r\n\
              Pragma: no-cache\r\nSet-Cookie: firepit_token=evil; Path=/\r\nset-cookie: b=2\r\n\
              Location: http://evil.example/\r\nAccess-Control-Allow-Origin: *\r\n\
              Content-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\
              Content-Security-Policy: script-src *\r\nX-Content-Type-Options: sniff",
        );
        assert_eq!(status, StatusCode::OK);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "cache-control",
                "content-security-policy",
                "content-type",
                "expires",
                "pragma",
                "x-content-type-options"
            ]
        );
        assert_eq!(
            h["content-type"],
            "application/x-git-upload-pack-advertisement"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");
    }

    #[test]
    fn a_cgi_cannot_serve_a_page_or_an_odd_status() {
        for (block, status) in [
            (
                &b"Status: 101 Switching Protocols"[..],
                StatusCode::BAD_GATEWAY,
            ),
            (b"Status: 302", StatusCode::FOUND),
            (b"Status: 600", StatusCode::BAD_GATEWAY),
            (b"Status: nope", StatusCode::BAD_GATEWAY),
            (b"Status: 404 Not Found", StatusCode::NOT_FOUND),
            (b"", StatusCode::OK),
        ] {
            assert_eq!(
                cgi_head(block).0,
                status,
                "{}",
                String::from_utf8_lossy(block)
            );
        }
        for (ct, served) in [
            ("text/html", "application/octet-stream"),
            ("image/svg+xml", "application/octet-stream"),
            ("application/x-git-", "application/octet-stream"),
            ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
            (
                "application/x-git-receive-pack-result",
                "application/x-git-receive-pack-result",
            ),
            (
                "application/x-git-packed-objects",
                "application/x-git-packed-objects",
            ),
        ] {
            let (_, h) = cgi_head(format!("Content-Type: {ct}").as_bytes());
            assert_eq!(h["content-type"], served, "{ct}");
        }
    }
}
