//! The page's error reports: a small script the proxy puts into the app's
//! HTML pages, which sends the page's uncaught exceptions, unhandled
//! rejections and failed requests back to the preview's own origin.
//!
//! - The script is `report.js`, served at [`SCRIPT_PATH`] on every preview
//!   host; a page gets it as [`TAG`], an external script (no inline code,
//!   so a `script-src 'self'` policy lets it run; a policy of nonces or
//!   hashes alone blocks it, and the page then reports nothing).
//! - It posts JSON reports ([`REPORT_PATH`], `sendBeacon`, at most 20 per
//!   page load) that the daemon takes (never the app), bounds and turns
//!   into problems.
//! - Only document loads get it ([`is_document`]: `GET`, no `Range`,
//!   `Sec-Fetch-Dest` a document or frame, or without it an `Accept` of
//!   `text/html`), asked of the app unencoded ([`ask_identity`]), and only
//!   answers that are HTML with a body ([`into_page`]): never `HEAD`, 1xx,
//!   204, 205, 206 or 304. The tag goes right after `<head …>` when that
//!   comes within the first 64 KiB before any `<body`, else after a
//!   leading `<!doctype …>`, else first (after a byte order mark).
//! - An identity body streams through with the tag spliced in (its
//!   `Content-Length`, when it has one, grown by the tag's length); a gzip
//!   body (an app that ignores `Accept-Encoding`) of at most 4 MiB, 16 MiB
//!   unpacked, is unpacked, given the tag and sent unencoded; any other
//!   encoding, or a gzip body beyond those bounds or damaged, goes on
//!   exactly as the app sent it, without the tag.

use std::collections::VecDeque;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::proxy::Body;

/// Where the page loads the script from (the proxy answers it).
pub const SCRIPT_PATH: &str = "/__firepit/report.js";
/// Where the script posts its reports (the proxy takes them).
pub const REPORT_PATH: &str = "/__firepit/report";
/// The script.
pub const SCRIPT: &str = include_str!("report.js");
/// What goes into a page.
pub const TAG: &[u8] = b"<script src=\"/__firepit/report.js\"></script>";
/// Longest report body taken.
pub const MAX_REPORT: usize = 16 << 10;
/// How far into a page `<head` is looked for.
const WINDOW: usize = 64 << 10;
/// Longest gzip body unpacked to take the tag.
const MAX_GZIP: usize = 4 << 20;
/// Longest unpacked page.
const MAX_HTML: usize = 16 << 20;

/// Whether a request loads a document the script goes into; `header`
/// gives a request header's value by (lowercase) name.
pub fn is_document<'a>(method: &str, header: impl Fn(&str) -> Option<&'a [u8]>) -> bool {
    if method != "GET" || header("range").is_some() {
        return false;
    }
    match header("sec-fetch-dest") {
        Some(dest) => ["document", "iframe", "frame"]
            .iter()
            .any(|d| dest.trim_ascii().eq_ignore_ascii_case(d.as_bytes())),
        None => header("accept").is_some_and(|a| find(a, b"text/html").is_some()),
    }
}

/// Asks the app for an unencoded answer (a document request the script
/// will go into).
pub fn ask_identity<B>(req: &mut Request<B>) {
    req.headers_mut().insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

/// How a page's body is encoded, when the script can go into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
}

/// Whether the script can go into `resp`, and how its body is encoded.
fn coding<B>(resp: &Response<B>) -> Option<Coding> {
    let s = resp.status();
    if s.is_informational()
        || [
            StatusCode::NO_CONTENT,
            StatusCode::RESET_CONTENT,
            StatusCode::PARTIAL_CONTENT,
            StatusCode::NOT_MODIFIED,
        ]
        .contains(&s)
    {
        return None;
    }
    let h = resp.headers();
    let html = h
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().trim_ascii_start())
        .is_some_and(|v| v.len() >= 9 && v[..9].eq_ignore_ascii_case(b"text/html"));
    if !html || h.contains_key(header::CONTENT_RANGE) {
        return None;
    }
    let mut codings = h.get_all(header::CONTENT_ENCODING).iter();
    match (
        codings.next().map(|v| v.as_bytes().trim_ascii()),
        codings.next(),
    ) {
        (None, _) => Some(Coding::Identity),
        (Some(c), None) if c.is_empty() || c.eq_ignore_ascii_case(b"identity") => {
            Some(Coding::Identity)
        }
        (Some(c), None) if c.eq_ignore_ascii_case(b"gzip") || c.eq_ignore_ascii_case(b"x-gzip") => {
            Some(Coding::Gzip)
        }
        _ => None,
    }
}

/// `resp` (an answer to a document request) with the script's tag in its
/// HTML, or as it was when it is not a page the tag can go into.
pub async fn into_page(resp: Response<Body>) -> Response<Body> {
    match coding(&resp) {
        None => resp,
        Some(Coding::Identity) => {
            let (mut parts, body) = resp.into_parts();
            grow_length(&mut parts.headers);
            Response::from_parts(parts, Splicing::new(body).boxed())
        }
        Some(Coding::Gzip) => unpack(resp).await,
    }
}

/// A `Content-Length` grown by the tag's length (dropped when unreadable).
fn grow_length(h: &mut hyper::HeaderMap) {
    let grown = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(|n| n + TAG.len() as u64);
    match grown {
        Some(n) => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.remove(header::CONTENT_LENGTH);
        }
    }
}

/// A gzip page unpacked, given the tag and sent unencoded; beyond the
/// bounds, or damaged, it goes on as it came.
async fn unpack(resp: Response<Body>) -> Response<Body> {
    let (mut parts, mut body) = resp.into_parts();
    let mut got = VecDeque::new();
    let mut len = 0;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                // Trailers of a gzip page are dropped.
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    got.push_back(data);
                    if len > MAX_GZIP {
                        return Response::from_parts(parts, Replay::rest(got, body).boxed());
                    }
                }
            }
            Some(Err(e)) => return Response::from_parts(parts, Replay::failed(got, e).boxed()),
            None => break,
        }
    }
    let packed: Vec<u8> = got.iter().flat_map(|b| b.iter().copied()).collect();
    let unpacked = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&packed[..])
            .take(MAX_HTML as u64 + 1)
            .read_to_end(&mut out)
            .ok()
            .filter(|_| out.len() <= MAX_HTML)
            .map(|_| out)
    })
    .await
    .ok()
    .flatten();
    let Some(html) = unpacked else {
        return Response::from_parts(parts, Replay::done(got).boxed());
    };
    let page = spliced(&html, place(&html, true).unwrap_or(0));
    parts.headers.remove(header::CONTENT_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(page.len()));
    let body = Full::new(page).map_err(|never| match never {}).boxed();
    Response::from_parts(parts, body)
}

/// `html` with the tag at `at`.
fn spliced(html: &[u8], at: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(html.len() + TAG.len());
    out.extend_from_slice(&html[..at]);
    out.extend_from_slice(TAG);
    out.extend_from_slice(&html[at..]);
    out.freeze()
}

/// Where the tag goes in a page that begins with `buf`, or `None` while
/// more of it is needed to say (`last`: there is no more).
fn place(buf: &[u8], last: bool) -> Option<usize> {
    let mut from = 0;
    let mut pending = false;
    while let Some(i) = find(&buf[from..], b"<head").map(|i| i + from) {
        match buf.get(i + 5) {
            Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') => {
                if let Some(end) = buf[i..].iter().position(|&b| b == b'>') {
                    return Some(i + end + 1);
                }
                pending = true;
                break;
            }
            // `<header`, `<heading`: not the head.
            Some(_) => from = i + 5,
            None => {
                pending = true;
                break;
            }
        }
    }
    if last || buf.len() >= WINDOW || (!pending && find(buf, b"<body").is_some()) {
        return Some(start(buf));
    }
    None
}

/// The start of a page without a head: after a leading `<!doctype …>`
/// (the tag before it would put the page in quirks mode), else after a
/// byte order mark.
fn start(buf: &[u8]) -> usize {
    let bom = if buf.starts_with(b"\xef\xbb\xbf") {
        3
    } else {
        0
    };
    let rest = &buf[bom..];
    let ws = rest
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let doc = &rest[ws..];
    if doc.len() >= 9
        && doc[..9].eq_ignore_ascii_case(b"<!doctype")
        && let Some(end) = doc.iter().position(|&b| b == b'>')
    {
        return bom + ws + end + 1;
    }
    bom
}

/// The first place of `needle` (lowercase ASCII) in `hay`, ignoring ASCII case.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// A page's body with the tag spliced in as it streams: held until the
/// place is known ([`place`]), then passed on frame by frame.
struct Splicing {
    inner: Body,
    held: BytesMut,
    /// The tag went in (everything after passes as it comes).
    spliced: bool,
    /// A frame that came after the held bytes (trailers), owed next.
    owed: Option<Frame<Bytes>>,
    ended: bool,
}

impl Splicing {
    fn new(inner: Body) -> Splicing {
        Splicing {
            inner,
            held: BytesMut::new(),
            spliced: false,
            owed: None,
            ended: false,
        }
    }

    fn splice(&mut self, at: usize) -> Frame<Bytes> {
        self.spliced = true;
        let held = std::mem::take(&mut self.held);
        Frame::data(spliced(&held, at))
    }
}

impl hyper::body::Body for Splicing {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(f) = this.owed.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if this.spliced {
            return Pin::new(&mut this.inner).poll_frame(cx);
        }
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.held.extend_from_slice(&data);
                        if let Some(at) = place(&this.held, false) {
                            return Poll::Ready(Some(Ok(this.splice(at))));
                        }
                    }
                    Err(other) => {
                        this.owed = Some(other);
                        let at = start_or_head(&this.held);
                        return Poll::Ready(Some(Ok(this.splice(at))));
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.ended = true;
                    let at = start_or_head(&this.held);
                    return Poll::Ready(Some(Ok(this.splice(at))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.owed.is_none() && (self.ended || (self.spliced && self.inner.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = if self.ended {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        };
        if !self.spliced {
            hint = grown(&hint, (self.held.len() + TAG.len()) as u64);
        }
        hint
    }
}

/// `hint` grown by `more` bytes.
fn grown(hint: &SizeHint, more: u64) -> SizeHint {
    let mut h = SizeHint::new();
    // The upper first: a lower above the upper is refused.
    if let Some(upper) = hint.upper() {
        h.set_upper(upper.saturating_add(more));
    }
    h.set_lower(hint.lower().saturating_add(more));
    h
}

/// The place of the tag in a whole page.
fn start_or_head(page: &[u8]) -> usize {
    place(page, true).unwrap_or(0)
}

/// Bytes already read, then the rest as it was: a body that goes on
/// untouched.
struct Replay {
    got: VecDeque<Bytes>,
    then: Then,
}

enum Then {
    Rest(Body),
    Failed(Option<hyper::Error>),
    Done,
}

impl Replay {
    fn rest(got: VecDeque<Bytes>, rest: Body) -> Replay {
        Replay {
            got,
            then: Then::Rest(rest),
        }
    }

    fn failed(got: VecDeque<Bytes>, e: hyper::Error) -> Replay {
        Replay {
            got,
            then: Then::Failed(Some(e)),
        }
    }

    fn done(got: VecDeque<Bytes>) -> Replay {
        Replay {
            got,
            then: Then::Done,
        }
    }
}

impl hyper::body::Body for Replay {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(b) = this.got.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        match &mut this.then {
            Then::Rest(body) => Pin::new(body).poll_frame(cx),
            Then::Failed(e) => Poll::Ready(e.take().map(Err)),
            Then::Done => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let got: u64 = self.got.iter().map(|b| b.len() as u64).sum();
        match &self.then {
            Then::Rest(body) => grown(&body.size_hint(), got),
            _ => SizeHint::with_exact(got),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn with_tag(page: &str) -> String {
        let at = place(page.as_bytes(), true).unwrap();
        String::from_utf8(spliced(page.as_bytes(), at).to_vec()).unwrap()
    }

    const T: &str = "<script src=\"/__firepit/report.js\"></script>";

    #[test]
    fn the_tag_goes_after_the_head_or_at_the_start() {
        let cases = [
            (
                "<!doctype html><html><head><title>x</title>",
                format!("<!doctype html><html><head>{T}<title>x</title>"),
            ),
            (
                "<HTML><HEAD lang=\"en\">x",
                format!("<HTML><HEAD lang=\"en\">{T}x"),
            ),
            (
                "<header>a</header><head>b",
                format!("<header>a</header><head>{T}b"),
            ),
            ("<p>no head</p>", format!("{T}<p>no head</p>")),
            (
                "  <!DOCTYPE html>\n<body>x</body>",
                format!("  <!DOCTYPE html>{T}\n<body>x</body>"),
            ),
            ("\u{feff}<p>x", format!("\u{feff}{T}<p>x")),
            ("", T.to_owned()),
        ];
        for (page, want) in cases {
            assert_eq!(with_tag(page), want, "{page:?}");
        }
    }

    #[test]
    fn the_place_waits_for_enough_of_the_page() {
        assert_eq!(place(b"<!doctype html><ht", false), None);
        assert_eq!(place(b"<html><head", false), None);
        assert_eq!(place(b"<html><head ", false), None);
        assert_eq!(place(b"<html><head>", false), Some(12));
        assert_eq!(place(b"<html><body>", false), Some(0));
        let long = vec![b'x'; WINDOW];
        assert_eq!(place(&long, false), Some(0));
    }

    #[test]
    fn only_document_loads_get_the_script() {
        let req = |method: &'static str, h: &'static [(&'static str, &'static str)]| {
            is_document(method, |n| {
                h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_bytes())
            })
        };
        assert!(req("GET", &[("accept", "text/html,application/xhtml+xml")]));
        assert!(req(
            "GET",
            &[("sec-fetch-dest", "document"), ("accept", "*/*")]
        ));
        assert!(req("GET", &[("sec-fetch-dest", "iframe")]));
        assert!(!req(
            "GET",
            &[("sec-fetch-dest", "empty"), ("accept", "text/html")]
        ));
        assert!(!req("GET", &[("accept", "*/*")]));
        assert!(!req("HEAD", &[("accept", "text/html")]));
        assert!(!req("POST", &[("accept", "text/html")]));
        assert!(!req(
            "GET",
            &[("accept", "text/html"), ("range", "bytes=0-9")]
        ));
    }

    fn response(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Response<Body> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed())
            .unwrap()
    }

    async fn body(r: Response<Body>) -> (hyper::HeaderMap, Vec<u8>) {
        let (parts, body) = r.into_parts();
        (
            parts.headers,
            body.collect().await.unwrap().to_bytes().to_vec(),
        )
    }

    #[tokio::test]
    async fn identity_pages_get_the_tag_and_a_longer_length() {
        let page = b"<html><head><title>t</title></head><body>x</body></html>".to_vec();
        let len = page.len().to_string();
        let r = response(
            200,
            &[
                ("content-type", "text/html; charset=utf-8"),
                ("content-length", &len),
            ],
            page.clone(),
        );
        let r = into_page(r).await;
        let hint = hyper::body::Body::size_hint(r.body());
        let (h, got) = body(r).await;
        let want = format!("<html><head>{T}<title>t</title></head><body>x</body></html>");
        assert_eq!(hint.exact(), Some(want.len() as u64));
        assert_eq!(String::from_utf8(got).unwrap(), want);
        assert_eq!(h["content-length"], want.len().to_string());
    }

    #[tokio::test]
    async fn a_page_streamed_in_pieces_gets_one_tag() {
        let frames = [
            "<!doctype html><ht",
            "ml><he",
            "ad><meta charset=utf-8>",
            "<p>rest",
        ];
        let stream = futures_stream(frames.iter().map(|s| Bytes::from_static(s.as_bytes())));
        let r = Response::builder()
            .header("content-type", "text/html")
            .body(stream)
            .unwrap();
        let (h, got) = body(into_page(r).await).await;
        assert!(!h.contains_key("content-length"));
        assert_eq!(
            String::from_utf8(got).unwrap(),
            format!("<!doctype html><html><head>{T}<meta charset=utf-8><p>rest")
        );
    }

    fn futures_stream(chunks: impl Iterator<Item = Bytes>) -> Body {
        let frames: VecDeque<Bytes> = chunks.collect();
        Replay::done(frames).boxed()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[tokio::test]
    async fn gzip_pages_are_unpacked_and_get_the_tag() {
        let packed = gzip(b"<html><head></head><body>zipped</body></html>");
        let r = response(
            200,
            &[
                ("content-type", "text/html"),
                ("content-encoding", "gzip"),
                ("content-length", &packed.len().to_string()),
            ],
            packed,
        );
        let (h, got) = body(into_page(r).await).await;
        let want = format!("<html><head>{T}</head><body>zipped</body></html>");
        assert_eq!(String::from_utf8(got).unwrap(), want);
        assert!(!h.contains_key("content-encoding"));
        assert_eq!(h["content-length"], want.len().to_string());
    }

    #[tokio::test]
    async fn what_the_tag_cannot_go_into_passes_byte_for_byte() {
        let packed = gzip(b"<html><head>");
        let mut damaged = packed.clone();
        let n = damaged.len();
        damaged[n - 5] ^= 0xff;
        let bomb = gzip(&vec![b' '; MAX_HTML + 10]);
        type Case = (u16, Vec<(&'static str, &'static str)>, Vec<u8>);
        let cases: Vec<Case> = vec![
            (
                200,
                vec![("content-type", "application/json")],
                b"{\"a\":1}".to_vec(),
            ),
            (
                200,
                vec![("content-type", "text/plain")],
                b"<head>".to_vec(),
            ),
            (200, vec![], b"<head>".to_vec()),
            (304, vec![("content-type", "text/html")], Vec::new()),
            (204, vec![("content-type", "text/html")], Vec::new()),
            (206, vec![("content-type", "text/html")], b"<head>".to_vec()),
            (
                200,
                vec![("content-type", "text/html"), ("content-encoding", "br")],
                b"\x0b\x02\x80<head>\x03".to_vec(),
            ),
            (
                200,
                vec![("content-type", "text/html"), ("content-encoding", "gzip")],
                damaged,
            ),
            (
                200,
                vec![("content-type", "text/html"), ("content-encoding", "gzip")],
                bomb,
            ),
        ];
        for (status, headers, sent) in cases {
            let r = response(status, &headers, sent.clone());
            let (h, got) = body(into_page(r).await).await;
            assert_eq!(got, sent, "{status} {headers:?}");
            for (k, v) in &headers {
                assert_eq!(h[*k], *v);
            }
        }
    }

    #[test]
    fn the_script_is_small_and_posts_to_the_report_path() {
        assert!(SCRIPT.len() < 4096, "{}", SCRIPT.len());
        assert!(SCRIPT.contains(&format!("\"{REPORT_PATH}\"")));
        assert!(std::str::from_utf8(TAG).unwrap().contains(SCRIPT_PATH));
    }
}
