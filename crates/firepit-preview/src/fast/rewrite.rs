//! Writing heads as bytes: the request head for the app and the response
//! head for the client, their fields passed through [`crate::rules`] (the
//! same rules as the full path's) straight from `httparse`'s slices into
//! the bytes to send. The framing of a response (its length, chunks, or
//! the connection's end) is read here, as the fast path copies bodies as
//! they are.

use super::framing::{Chunks, Framing};
use super::parse::{Plan, RequestHead};
use crate::rules::{self, Policy};

/// Writes the request head for the app.
pub(super) fn write_request_head(out: &mut Vec<u8>, head: &RequestHead<'_>, policy: &Policy<'_>) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    rules::request(head.fields(), policy, |name, value| {
        push_header(out, name, value);
    });
    out.extend_from_slice(b"\r\n");
}

/// How the response goes on, once its head is sent on.
#[derive(Debug)]
pub(super) struct Sent {
    /// The app's status code.
    pub(super) status: u16,
    pub(super) framing: Framing,
    pub(super) upstream_reusable: bool,
    pub(super) client_close: bool,
}

/// The rewritten response head, its length in the buffer, and how the
/// response goes on (`None` for a 1xx head, which another head follows).
pub(super) type ResponseHead = (Vec<u8>, usize, Option<Sent>);

/// Rewrites a response head for the client; `None` when it cannot be
/// forwarded (a 101 nobody asked for, a framing that could be read two ways).
pub(super) fn rewrite_response(
    resp: &httparse::Response<'_, '_>,
    head_len: usize,
    plan: &Plan,
    policy: &Policy<'_>,
) -> Option<ResponseHead> {
    use std::io::Write;
    let code = resp.code?;
    let reason = resp.reason.unwrap_or("");
    let fields = resp.headers.iter().map(|h| (h.name, h.value));
    let mut out = Vec::with_capacity(head_len + 96);
    let _ = write!(out, "HTTP/1.1 {code} {reason}\r\n");
    if (100..200).contains(&code) {
        if code == 101 {
            return None;
        }
        rules::response(code, fields, policy, |name, value| {
            push_header(&mut out, name, value);
        });
        out.extend_from_slice(b"\r\n");
        return Some((out, head_len, None));
    }
    let mut chunked = None;
    let mut length = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last_chunked = h
                .value
                .split(|&b| b == b',')
                .next_back()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !last_chunked || chunked.is_some() {
                return None;
            }
            chunked = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    let framing = if plan.head_only || code == 204 || code == 304 {
        Framing::Empty
    } else if chunked.is_some() {
        Framing::Chunked(Chunks::new())
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let upstream_close = resp.version != Some(1)
        || rules::connection_has(fields.clone(), "close")
        || framing == Framing::UntilClose;
    let client_close = plan.client_close || framing == Framing::UntilClose;
    rules::response(code, fields, policy, |name, value| {
        // Chunks pass through as they are: their length beside them goes
        // (the client would ignore it), their coding is written below.
        if chunked.is_none() || !name.eq_ignore_ascii_case("content-length") {
            push_header(&mut out, name, value);
        }
    });
    if let Some(coding) = chunked {
        push_header(&mut out, "transfer-encoding", coding);
    }
    if client_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some((
        out,
        head_len,
        Some(Sent {
            status: code,
            framing,
            upstream_reusable: !upstream_close,
            client_close,
        }),
    ))
}

#[inline]
fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::MAX_HEADERS;
    use super::super::parse::{Step, plan_request};
    use super::super::tests::gate;
    use super::*;

    fn response(raw: &str, head_only: bool) -> Option<(String, Option<Sent>)> {
        let g = gate();
        let peer = "10.1.2.3:5555".parse().unwrap();
        let req = b"GET / HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n";
        let Step::Forward(mut p) = plan_request(&g, req, peer, true) else {
            panic!("not planned");
        };
        p.head_only = head_only;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = resp.parse(raw.as_bytes()) else {
            panic!("bad test response {raw:?}");
        };
        let policy = p.to.policy(peer.ip(), &["firepit_token"], "sekrit");
        let (out, len, sent) = rewrite_response(&resp, n, &p, &policy)?;
        assert_eq!(len, n);
        Some((String::from_utf8(out).unwrap(), sent))
    }

    #[test]
    fn heads_pass_through_the_rules() {
        let (out, sent) = response(
            "HTTP/1.1 200 OK\r\nX-Frame-Options: DENY\r\nConnection: close\r\n\
             Set-Cookie: firepit_token=x\r\nContent-Length: 2\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\
             content-security-policy: frame-ancestors http://localhost:7777\r\n\r\n"
        );
        let sent = sent.unwrap();
        assert_eq!(sent.framing, Framing::Length(2));
        assert!(!sent.upstream_reusable);
        assert!(!sent.client_close);
        let (out, sent) = response(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nSet-Cookie: a=1; Domain=localhost\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(sent.is_none());
        assert_eq!(out, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n");
    }

    #[test]
    fn response_framing() {
        let framing = |raw: &str, head: bool| response(raw, head).unwrap().1.unwrap().framing;
        let chunked =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n";
        assert_eq!(framing(chunked, false), Framing::Chunked(Chunks::new()));
        let (out, _) = response(chunked, false).unwrap();
        assert!(
            out.contains("transfer-encoding: gzip, chunked\r\n"),
            "{out}"
        );
        assert!(!out.contains("Content-Length"));
        assert_eq!(framing(chunked, true), Framing::Empty);
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", false),
            Framing::Empty
        );
        assert_eq!(
            framing(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
                false
            ),
            Framing::Empty
        );
        let (out, sent) = response("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        let sent = sent.unwrap();
        assert_eq!(sent.framing, Framing::UntilClose);
        assert!(sent.client_close && !sent.upstream_reusable);
        assert!(out.ends_with("connection: close\r\n\r\n"));
        let (_, sent) = response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap();
        assert!(!sent.unwrap().upstream_reusable);
        let (out, sent) = response("HTTP/1.1 100 Continue\r\n\r\n", false).unwrap();
        assert!(sent.is_none());
        assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
        for bad in [
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(response(bad, false).is_none(), "{bad:?}");
        }
    }
}
