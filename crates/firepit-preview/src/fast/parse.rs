//! Reading a request head in place: whether the fast path takes it, and
//! the plan to forward it.
//!
//! The first request of a connection is looked at by its `Host` line alone
//! before anything is parsed: a request to another host than a preview's
//! (the API, the UI) leaves the connection to the full path at once, which
//! then parses it, once. The rest are parsed with `httparse`, strictly: a
//! request whose framing could be read two ways (`Transfer-Encoding`,
//! several `Content-Length`s or `Host`s, a length that is not a plain
//! number) is the full path's, which refuses what it must.

use std::net::SocketAddr;

use super::rewrite::write_request_head;
use super::{Gate, MAX_HEADERS};
use crate::Route;

/// A request head as the gate sees it.
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a str,
    /// The target, origin-form (`/path?query`).
    pub target: &'a str,
    /// The one `Host` header.
    pub host: &'a str,
    pub(super) headers: &'a [httparse::Header<'a>],
}

impl<'a> RequestHead<'a> {
    /// The first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The value of cookie `name`, from any `Cookie` header.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    }

    /// The fields as the rules read them.
    pub(super) fn fields(&self) -> impl crate::rules::Fields<'a> + use<'a> {
        self.headers.iter().map(|h| (h.name, h.value))
    }
}

/// What a parsed request needs after its head is gone from the buffer.
pub(super) struct Plan {
    pub(super) to: Route,
    pub(super) head_len: usize,
    pub(super) body_len: u64,
    pub(super) head_only: bool,
    pub(super) client_close: bool,
    /// The head as the app gets it.
    pub(super) out: Vec<u8>,
}

/// What to do with the bytes at the front of the buffer.
pub(super) enum Step {
    /// The head is not complete yet.
    More,
    /// Forward it.
    Forward(Box<Plan>),
    /// The full path's.
    Fallback,
}

/// Decides the way of the request at the front of `buf`. `first`: the
/// connection's first request, which is looked at by its `Host` line before
/// it is parsed.
pub(super) fn plan_request<G: Gate>(gate: &G, buf: &[u8], peer: SocketAddr, first: bool) -> Step {
    if first {
        match first_host(buf) {
            Some(Some(host)) if !gate.claims(host) => return Step::Fallback,
            Some(None) => return Step::Fallback,
            _ => {}
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Step::More,
        Err(_) => return Step::Fallback,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Step::Fallback;
    };
    if !target.starts_with('/') || method.eq_ignore_ascii_case("CONNECT") {
        return Step::Fallback;
    }
    let mut host = None;
    let mut length = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Step::Fallback;
            }
            host = std::str::from_utf8(h.value).ok();
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            if length.is_some() || n.is_none() {
                return Step::Fallback;
            }
            length = n;
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Step::Fallback;
        }
    }
    let Some(host) = host else {
        return Step::Fallback;
    };
    let head = RequestHead {
        method,
        target,
        host,
        headers: req.headers,
    };
    let Some(to) = gate.admit(&head) else {
        return Step::Fallback;
    };
    let client_close = crate::rules::connection_has(head.fields(), "close");
    let mut out = Vec::with_capacity(head_len + 128);
    let policy = to.policy(peer.ip(), gate.private_cookies(), gate.api_token());
    write_request_head(&mut out, &head, &policy);
    Step::Forward(Box::new(Plan {
        to,
        head_len,
        body_len: length.unwrap_or(0),
        head_only: method == "HEAD",
        client_close,
        out,
    }))
}

/// The value of the first `Host` line of the head at the front of `buf`:
/// `Some(None)` when the head ended without one, `None` when `buf` holds
/// neither yet. Only a first look: what it finds decides nothing but
/// whether the head is parsed at all.
fn first_host(buf: &[u8]) -> Option<Option<&[u8]>> {
    let mut lines = buf.split_inclusive(|&b| b == b'\n').skip(1);
    lines.find_map(|line| {
        let line = line.strip_suffix(b"\n")?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Some(None);
        }
        let (name, value) = line.split_at_checked(5)?;
        name.eq_ignore_ascii_case(b"host:")
            .then(|| Some(value.trim_ascii()))
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::gate;
    use super::*;

    fn plan(raw: &str) -> Option<Plan> {
        match plan_request(
            &gate(),
            raw.as_bytes(),
            "10.1.2.3:5555".parse().unwrap(),
            true,
        ) {
            Step::Forward(p) => Some(*p),
            Step::Fallback => None,
            Step::More => panic!("incomplete: {raw:?}"),
        }
    }

    #[test]
    fn requests_lose_hop_by_hop_and_firepit_credentials() {
        let p = plan(
            "GET /a/b?c=d HTTP/1.1\r\nHost: 8000-abc.localhost:7777\r\n\
             Connection: keep-alive, x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
             Cookie: a=1; firepit_token=sekrit\r\nCookie: firepit_preview=x;b=2\r\n\
             Authorization: Bearer sekrit\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "GET /a/b?c=d HTTP/1.1\r\nHost: 8000-abc.localhost:7777\r\ncookie: a=1; b=2\r\n\
             Accept: */*\r\nx-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: 8000-abc.localhost:7777\r\n\r\n"
        );
        assert_eq!(p.body_len, 0);
        assert!(!p.client_close);
        let p = plan(
            "POST /x HTTP/1.1\r\nHost: 8000-abc.localhost\r\nContent-Length: 5\r\n\
             Authorization: Bearer apps-own\r\nConnection: close\r\n\r\nhello",
        )
        .unwrap();
        assert_eq!(p.body_len, 5);
        assert!(p.client_close);
        let out = String::from_utf8(p.out).unwrap();
        assert!(out.contains("Authorization: Bearer apps-own\r\n"), "{out}");
        assert!(out.contains("Content-Length: 5\r\n"), "{out}");
        assert!(!out.to_ascii_lowercase().contains("connection"), "{out}");
    }

    #[test]
    fn what_the_fast_path_does_not_take_falls_back() {
        for raw in [
            "GET / HTTP/1.0\r\nHost: 8000-abc.localhost\r\n\r\n",
            "GET http://8000-abc.localhost/ HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: 8000-abc.localhost\r\nHost: 8001-abc.localhost\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: localhost:7777\r\n\r\n",
            "GET /__firepit/auth HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: 8000-abc.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: 8000-abc.localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: 8000-abc.localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: 8000-abc.localhost\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: 8000-abc.localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            "CONNECT 8000-abc.localhost:80 HTTP/1.1\r\nHost: 8000-abc.localhost\r\n\r\n",
            "GET / HTTP/1.1\r\nHost 8000-abc.localhost\r\n\r\n",
        ] {
            assert!(plan(raw).is_none(), "{raw:?}");
        }
    }

    #[test]
    fn the_host_line_is_found_before_the_head_is_complete() {
        assert_eq!(first_host(b"GET / HTTP/1.1\r\nAccept: x\r\n"), None);
        assert_eq!(
            first_host(b"GET / HTTP/1.1\r\nHOST:  a.b \r\nX"),
            Some(Some(&b"a.b"[..]))
        );
        assert_eq!(first_host(b"GET / HTTP/1.1\r\nA: b\n\r\n"), Some(None));
        assert_eq!(first_host(b"GET / HTTP/1.1\r\nHos"), None);
        // An API request leaves at once, before its head is even complete;
        // a preview host's head is waited for.
        let g = gate();
        let peer = "10.1.2.3:5555".parse().unwrap();
        assert!(matches!(
            plan_request(
                &g,
                b"GET /v1/x HTTP/1.1\r\nHost: localhost:7777\r\n",
                peer,
                true
            ),
            Step::Fallback
        ));
        assert!(matches!(
            plan_request(
                &g,
                b"GET / HTTP/1.1\r\nHost: 8000-abc.localhost\r\n",
                peer,
                true
            ),
            Step::More
        ));
    }
}
