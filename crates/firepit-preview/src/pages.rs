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

/// A page with `status`, a title and a body of already-escaped HTML.
pub fn page(status: StatusCode, title: &str, body_html: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t} · firepit</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}\
         code{{background:#f3f3f3;padding:0 .3em}}</style></head>\
         <body><h1>{t}</h1>\n{body_html}\n<p><small>firepit preview · {code}</small></p></body></html>\n",
        t = escape(title),
        code = status.as_u16(),
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(html))
        .expect("static response parts")
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
