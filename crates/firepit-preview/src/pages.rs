//! The HTML pages a person sees when a preview cannot be shown: what went
//! wrong, and what to do about it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode, header};

use crate::proxy::Body;

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The headers of every page (besides its length).
const PAGE_HEADERS: [(&str, &str); 2] = [
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
];

/// The HTML of a page with `status`, a title and a body of already-escaped HTML.
fn html(status: StatusCode, title: &str, body_html: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t} · firepit</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}\
         code{{background:#f3f3f3;padding:0 .3em}}</style></head>\
         <body><h1>{t}</h1>\n{body_html}\n<p><small>firepit preview · {code}</small></p></body></html>\n",
        t = escape(title),
        code = status.as_u16(),
    )
}

/// A page with `status`, a title and a body of already-escaped HTML.
pub fn page(status: StatusCode, title: &str, body_html: &str) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (name, value) in PAGE_HEADERS {
        b = b.header(name, value);
    }
    b.body(full(html(status, title, body_html)))
        .expect("static response parts")
}

/// The same page as the bytes of an HTTP/1.1 response that ends its
/// connection, for the fast path, which writes bytes.
pub fn page_bytes(status: StatusCode, title: &str, body_html: &str) -> Vec<u8> {
    use std::io::Write;
    let html = html(status, title, body_html);
    let mut out = Vec::with_capacity(html.len() + 200);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in PAGE_HEADERS {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(
        out,
        "content-length: {}\r\nconnection: close\r\n\r\n{html}",
        html.len()
    );
    out
}

/// What the app-failed page says.
fn app_failed_html(port: u16, session: &str) -> String {
    format!(
        "<p>Port {port} in session <code>{}</code> closed the connection or answered with \
         something that is not HTTP.</p>",
        escape(session)
    )
}

/// The app broke off an exchange: closed its connection before answering,
/// or answered with something that is not HTTP (502).
pub fn app_failed(port: u16, session: &str) -> Response<Body> {
    page(
        StatusCode::BAD_GATEWAY,
        APP_FAILED,
        &app_failed_html(port, session),
    )
}

/// [`app_failed`] as bytes ([`page_bytes`]).
pub fn app_failed_bytes(port: u16, session: &str) -> Vec<u8> {
    page_bytes(
        StatusCode::BAD_GATEWAY,
        APP_FAILED,
        &app_failed_html(port, session),
    )
}

const APP_FAILED: &str = "The app did not answer";

/// Nothing listens on `port` in `session`'s machine (502); `open` are the
/// ports that do.
pub fn nothing_listening(port: u16, session: &str, open: &[u16]) -> Response<Body> {
    let open = if open.is_empty() {
        "<p>No port is open in this session yet.</p>".to_owned()
    } else {
        let links: Vec<String> = open.iter().map(|n| format!("<li>{n}</li>")).collect();
        format!(
            "<p>Ports open in this session:</p><ul>{}</ul>",
            links.concat()
        )
    };
    page(
        StatusCode::BAD_GATEWAY,
        "Nothing is listening yet",
        &format!(
            "<p>Nothing is listening on {port} yet in session <code>{s}</code>. Start your app's server \
             (for example <code>python3 -m http.server {port}</code>) and reload.</p>{open}",
            s = escape(session),
        ),
    )
}

/// `session` is stopped (409).
pub fn stopped(session: &str) -> Response<Body> {
    page(
        StatusCode::CONFLICT,
        "This session is stopped",
        &format!(
            "<p>Session <code>{s}</code> is stopped — start it with <code>firepit start {s}</code>.</p>",
            s = escape(session)
        ),
    )
}

/// A page for one line of plain text.
pub fn text_page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    page(status, title, &format!("<p>{}</p>", escape(text)))
}

/// A body of bytes in the proxy's body type.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A redirect (302) to `location`, with extra headers (cookies).
pub fn redirect(location: &str, set_cookie: Option<&str>) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(c) = set_cookie {
        b = b.header(header::SET_COOKIE, c);
    }
    b.body(full(Bytes::new())).unwrap_or_else(|_| {
        text_page(
            StatusCode::BAD_REQUEST,
            "Bad redirect",
            "the address to go back to is not valid",
        )
    })
}
