//! The header and cookie rules of previews, written once for both paths.
//!
//! On the way in (to the app):
//! - hop-by-hop headers go, and so do those `Connection` names; an upgrade
//!   request keeps `Connection: upgrade` and its `Upgrade`;
//! - firepit's cookies never reach the app: every `Cookie` header is read,
//!   firepit's pairs left out, and what is left sent as one `Cookie` (none
//!   when nothing is left);
//! - an `Authorization` that carries the API token (`Bearer`, any case)
//!   never reaches the app; the app's own credentials pass;
//! - the original `Host` stays (dev servers check it); the client's
//!   `X-Forwarded-For`, `-Proto` and `-Host` are replaced by firepit's.
//!
//! On the way out (to the browser):
//! - hop-by-hop headers go (not on a `101`, which needs its `Upgrade`);
//! - a `Set-Cookie` that names one of firepit's cookies, or a `Domain`
//!   other than the preview's own host, goes ([`set_cookie_allowed`]), so
//!   an app can neither set nor shadow the UI's cookies or another
//!   preview's;
//! - unless the app's policy has a `frame-ancestors` already, its first
//!   `Content-Security-Policy` gets `frame-ancestors <firepit UI>` appended
//!   (or the response gets one that says only that), and `X-Frame-Options`
//!   goes: only firepit's UI can frame a preview.
//!
//! Both paths feed header fields as `(name, value bytes)` pairs, the fast
//! path from `httparse`'s slices, the full path from a `HeaderMap`, and get
//! the fields to send through an `emit` callback, in order. Framing
//! (`Content-Length`, chunked, `Connection: close`) stays each path's own.

use std::io::Write;
use std::net::IpAddr;

/// What the rules need to know about one request.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// The client's address (`X-Forwarded-For`).
    pub client: IpAddr,
    /// The origin allowed to frame the preview (`http://localhost:7777`).
    pub frame_ancestor: &'a str,
    /// The preview's host name (`8000-abc.localhost`): the only `Domain` a
    /// cookie the app sets may name.
    pub cookie_host: &'a str,
    /// Cookie names that are firepit's.
    pub private_cookies: &'a [&'a str],
    /// The API token.
    pub api_token: &'a str,
}

/// Header fields of one message as either path has them: names and value
/// bytes, in order, readable more than once.
pub trait Fields<'h>: Iterator<Item = (&'h str, &'h [u8])> + Clone {}

impl<'h, T: Iterator<Item = (&'h str, &'h [u8])> + Clone> Fields<'h> for T {}

/// Headers that belong to one connection, never forwarded as they are.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is a hop-by-hop header.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether a comma-separated list (`Connection`) holds `token`.
pub fn list_has(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether any `Connection` field names `token`.
pub fn connection_has<'h>(fields: impl Fields<'h>, token: &str) -> bool {
    fields
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .any(|(_, v)| list_has(v, token))
}

/// Whether a request asks to switch protocols (`Upgrade`, and
/// `Connection: upgrade`).
pub fn is_upgrade<'h>(fields: impl Fields<'h>) -> bool {
    fields
        .clone()
        .any(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
        && connection_has(fields, "upgrade")
}

/// Whether any `Connection` field names a header that is not hop-by-hop
/// anyway (`Connection: keep-alive`, `close` or `upgrade` do not): only then
/// must each field be looked up among its names.
fn names_more<'h>(fields: impl Fields<'h>) -> bool {
    fields
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case(b"close")
                && std::str::from_utf8(t).map_or(true, |t| !is_hop_by_hop(t))
        })
}

/// Whether a field is the connection's own: hop-by-hop, or named by a
/// `Connection` field (`named`: whether one names more than hop-by-hop
/// headers, so that most messages skip the search). `Content-Length` is
/// framing and never the connection's: dropping it while the body goes on
/// would let the next hop read the body as another message.
fn connection_only<'h>(name: &str, fields: &impl Fields<'h>, named: bool) -> bool {
    is_hop_by_hop(name)
        || (named
            && !name.eq_ignore_ascii_case("content-length")
            && connection_has(fields.clone(), name))
}

/// Rewrites a request's fields for the app: `emit` gets every field to send,
/// in order (see the module docs).
pub fn request<'h>(fields: impl Fields<'h>, p: &Policy<'_>, mut emit: impl FnMut(&str, &[u8])) {
    let mut has_connection = false;
    let mut cookies = 0;
    let mut host = None;
    for (name, value) in fields.clone() {
        if name.eq_ignore_ascii_case("connection") {
            has_connection = true;
        } else if name.eq_ignore_ascii_case("cookie") {
            cookies += 1;
        } else if host.is_none() && name.eq_ignore_ascii_case("host") {
            host = Some(value);
        }
    }
    let upgrade = has_connection && is_upgrade(fields.clone());
    let named = has_connection && names_more(fields.clone());
    let mut cookie_sent = false;
    for (name, value) in fields.clone() {
        if connection_only(name, &fields, named)
            || name.eq_ignore_ascii_case("x-forwarded-for")
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
        {
            continue;
        }
        if name.eq_ignore_ascii_case("cookie") {
            // One `Cookie` with the app's pairs of all of them, where the
            // first one stood.
            if !cookie_sent {
                cookie_sent = true;
                if cookies == 1 && !has_private_pair(value, p.private_cookies) {
                    emit(name, value);
                } else if let Some(kept) = kept_cookies(fields.clone(), p.private_cookies) {
                    emit("cookie", &kept);
                }
            }
            continue;
        }
        if name.eq_ignore_ascii_case("authorization") && carries_token(value, p.api_token) {
            continue;
        }
        emit(name, value);
    }
    if upgrade {
        emit("connection", b"upgrade");
        for (name, value) in fields.clone() {
            if name.eq_ignore_ascii_case("upgrade") {
                emit("upgrade", value);
            }
        }
    }
    let mut ip = [0u8; 64];
    let len = write_ip(&mut ip, p.client);
    emit("x-forwarded-for", &ip[..len]);
    emit("x-forwarded-proto", b"http");
    if let Some(h) = host {
        emit("x-forwarded-host", h);
    }
}

/// Writes `ip` as text into `buf`; its length (this runs for every request).
fn write_ip(buf: &mut [u8; 64], ip: IpAddr) -> usize {
    let IpAddr::V4(v4) = ip else {
        let mut w = &mut buf[..];
        let _ = write!(w, "{ip}");
        return 64 - w.len();
    };
    let mut at = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[at] = b'.';
            at += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            buf[at] = b'0' + d;
            at += 1;
        }
    }
    at
}

/// Rewrites the fields of a response with `status` for the browser: `emit`
/// gets every field to send, in order (see the module docs).
pub fn response<'h>(
    status: u16,
    fields: impl Fields<'h>,
    p: &Policy<'_>,
    mut emit: impl FnMut(&str, &[u8]),
) {
    let switching = status == 101;
    let informational = status < 200;
    let mut has_connection = false;
    let mut framed = false;
    for (name, value) in fields.clone() {
        if name.eq_ignore_ascii_case("connection") {
            has_connection = true;
        } else if name.eq_ignore_ascii_case("content-security-policy") {
            framed |= has_frame_ancestors(value);
        }
    }
    // Where the app's policy says nothing of framing, firepit's UI may frame.
    let add_frame_ancestors = !informational && !framed;
    let named = has_connection && names_more(fields.clone());
    let mut policy_sent = false;
    for (name, value) in fields.clone() {
        if !switching && connection_only(name, &fields, named) {
            continue;
        }
        if name.eq_ignore_ascii_case("set-cookie")
            && !set_cookie_allowed(value, p.cookie_host, p.private_cookies)
        {
            continue;
        }
        if add_frame_ancestors {
            if name.eq_ignore_ascii_case("x-frame-options") {
                continue;
            }
            if !policy_sent && name.eq_ignore_ascii_case("content-security-policy") {
                policy_sent = true;
                with_frame_ancestors(value, p.frame_ancestor, |v| emit(name, v));
                continue;
            }
        }
        emit(name, value);
    }
    if add_frame_ancestors && !policy_sent {
        with_frame_ancestors(b"", p.frame_ancestor, |v| {
            emit("content-security-policy", v);
        });
    }
}

/// Calls `f` with `policy` that has `frame-ancestors <ancestor>` as its last
/// directive (made on the stack when it fits: this runs for every response).
fn with_frame_ancestors(policy: &[u8], ancestor: &str, f: impl FnOnce(&[u8])) {
    let policy = policy.trim_ascii();
    let policy = policy.strip_suffix(b";").unwrap_or(policy).trim_ascii_end();
    let sep: &[u8] = if policy.is_empty() { b"" } else { b"; " };
    let parts = [policy, sep, b"frame-ancestors ", ancestor.as_bytes()];
    let len = parts.iter().map(|p| p.len()).sum();
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let out = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap[..]
    };
    let mut at = 0;
    for p in parts {
        out[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    f(out);
}

/// Whether a policy has a `frame-ancestors` directive.
fn has_frame_ancestors(policy: &[u8]) -> bool {
    policy.split(|&b| b == b';').any(|d| {
        d.trim_ascii()
            .split(|b| b.is_ascii_whitespace())
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case(b"frame-ancestors"))
    })
}

/// The `name=value` pairs of a `Cookie` value, trimmed, empty ones left out.
fn cookie_pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|kv| !kv.is_empty())
}

/// A cookie pair's name.
fn pair_name(kv: &[u8]) -> &[u8] {
    let name = match kv.iter().position(|&b| b == b'=') {
        Some(i) => &kv[..i],
        None => kv,
    };
    name.trim_ascii()
}

fn has_private_pair(value: &[u8], private: &[&str]) -> bool {
    cookie_pairs(value).any(|kv| is_private_cookie(pair_name(kv), private))
}

/// The app's cookie pairs of every `Cookie` field, joined by `; `; `None`
/// when none is left.
fn kept_cookies<'h>(fields: impl Fields<'h>, private: &[&str]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for (_, value) in fields.filter(|(n, _)| n.eq_ignore_ascii_case("cookie")) {
        for kv in cookie_pairs(value).filter(|kv| !is_private_cookie(pair_name(kv), private)) {
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(kv);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a cookie `name` is one of firepit's (`private`), also under a
/// `__Host-` or `__Secure-` prefix, in any case.
fn is_private_cookie(name: &[u8], private: &[&str]) -> bool {
    let name = unprefixed(name);
    private
        .iter()
        .any(|p| unprefixed(p.as_bytes()).eq_ignore_ascii_case(name))
}

/// A cookie name without a `__Host-` or `__Secure-` prefix.
fn unprefixed(name: &[u8]) -> &[u8] {
    for prefix in [&b"__host-"[..], b"__secure-"] {
        if name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return &name[prefix.len()..];
        }
    }
    name
}

/// Whether an `Authorization` value is `Bearer <token>` (the scheme in any
/// case). Compared in constant time: a share link's holder must not learn
/// the token from how long the comparison takes.
fn carries_token(value: &[u8], token: &str) -> bool {
    let value = value.trim_ascii();
    let Some((scheme, rest)) = value.split_at_checked(6) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer")
        && rest.first().is_some_and(u8::is_ascii_whitespace)
        && constant_time_eq(rest.trim_ascii(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a `Set-Cookie` the app at `host` (the preview's host name, no
/// port) sends may reach the browser. Not when it names one of firepit's
/// cookies (`private`, also under a `__Host-` or `__Secure-` prefix, in any
/// case), nor when it has a `Domain` other than `host` itself: a cookie for
/// a parent domain would reach the UI, where it could shadow firepit's own,
/// and every other session's previews. Works on bytes: a value that is not
/// text is judged the same way.
pub fn set_cookie_allowed(value: &[u8], host: &str, private: &[&str]) -> bool {
    let mut parts = value.split(|&b| b == b';');
    if is_private_cookie(pair_name(parts.next().unwrap_or_default()), private) {
        return false;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    parts.all(|attr| {
        let Some(i) = attr.iter().position(|&b| b == b'=') else {
            return true;
        };
        if !attr[..i].trim_ascii().eq_ignore_ascii_case(b"domain") {
            return true;
        }
        let domain = attr[i + 1..].trim_ascii();
        let domain = domain.strip_prefix(b".").unwrap_or(domain);
        let domain = domain.strip_suffix(b".").unwrap_or(domain);
        domain.eq_ignore_ascii_case(host.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: &[&str] = &[
        "firepit_token",
        "__Host-firepit_token",
        "firepit_preview",
        "firepit_share",
    ];

    fn policy() -> Policy<'static> {
        Policy {
            client: "10.1.2.3".parse().unwrap(),
            frame_ancestor: "http://localhost:7777",
            cookie_host: "8000-abc.localhost",
            private_cookies: PRIVATE,
            api_token: "sekrit",
        }
    }

    fn fields<'a>(raw: &'a [(&'a str, &'a str)]) -> impl Fields<'a> {
        raw.iter().map(|(n, v)| (*n, v.as_bytes()))
    }

    fn run_request(raw: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        request(fields(raw), &policy(), |n, v| {
            out.push((n.to_owned(), String::from_utf8(v.to_vec()).unwrap()));
        });
        out
    }

    fn run_response(status: u16, raw: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        response(status, fields(raw), &policy(), |n, v| {
            out.push((n.to_owned(), String::from_utf8(v.to_vec()).unwrap()));
        });
        out
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn requests_lose_hop_by_hop_and_firepit_credentials() {
        let out = run_request(&[
            ("Host", "8000-abc.localhost:7777"),
            ("Connection", "keep-alive, x-private"),
            ("X-Private", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Cookie", "a=1; firepit_token=sekrit"),
            ("Accept", "*/*"),
            ("Cookie", "FIREPIT_PREVIEW=x;b=2"),
            ("Authorization", "bearer  sekrit "),
            ("X-Forwarded-For", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
        ]);
        assert_eq!(
            out,
            pairs(&[
                ("Host", "8000-abc.localhost:7777"),
                ("cookie", "a=1; b=2"),
                ("Accept", "*/*"),
                ("x-forwarded-for", "10.1.2.3"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "8000-abc.localhost:7777"),
            ])
        );
    }

    #[test]
    fn the_apps_own_credentials_and_upgrades_pass() {
        let out = run_request(&[
            ("host", "8000-abc.localhost"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("authorization", "Bearer apps-own"),
            ("cookie", "firepit_share=x"),
            ("cookie", "app=1"),
        ]);
        assert_eq!(
            out,
            pairs(&[
                ("host", "8000-abc.localhost"),
                ("authorization", "Bearer apps-own"),
                ("cookie", "app=1"),
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("x-forwarded-for", "10.1.2.3"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "8000-abc.localhost"),
            ])
        );
        // `Connection` cannot take the framing away.
        let out = run_request(&[
            ("Content-Length", "5"),
            ("Connection", "content-length, close"),
        ]);
        assert_eq!(out[0], ("Content-Length".into(), "5".into()));
        // Only firepit's cookies: no `Cookie` at all. A token with more
        // after it is not the token.
        let out = run_request(&[
            ("Cookie", "firepit_preview=x"),
            ("Authorization", "Bearer sekrit2"),
            ("Authorization", "Bearersekrit"),
        ]);
        assert_eq!(
            out,
            pairs(&[
                ("Authorization", "Bearer sekrit2"),
                ("Authorization", "Bearersekrit"),
                ("x-forwarded-for", "10.1.2.3"),
                ("x-forwarded-proto", "http"),
            ])
        );
    }

    #[test]
    fn addresses_are_written_as_text() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "127.0.0.1",
            "255.255.255.255",
            "192.168.100.9",
            "::1",
            "fe80::1:2",
        ] {
            let mut buf = [0u8; 64];
            let len = write_ip(&mut buf, ip.parse().unwrap());
            assert_eq!(&buf[..len], ip.as_bytes());
        }
    }

    #[test]
    fn responses_may_be_framed_by_firepit_only() {
        let fa = "frame-ancestors http://localhost:7777";
        assert_eq!(
            run_response(
                200,
                &[
                    ("X-Frame-Options", "DENY"),
                    ("Connection", "close, x-drop"),
                    ("x-drop", "1")
                ]
            ),
            pairs(&[("content-security-policy", fa)])
        );
        assert_eq!(
            run_response(
                200,
                &[
                    ("Content-Security-Policy", "default-src 'self' ;"),
                    ("content-security-policy", "img-src *"),
                ]
            ),
            pairs(&[
                (
                    "Content-Security-Policy",
                    &format!("default-src 'self'; {fa}")
                ),
                ("content-security-policy", "img-src *"),
            ])
        );
        let theirs = [
            ("content-security-policy", "img-src *"),
            (
                "Content-Security-Policy",
                "default-src 'self'; Frame-Ancestors 'none'",
            ),
            ("X-Frame-Options", "DENY"),
        ];
        assert_eq!(run_response(200, &theirs), pairs(&theirs));
        // Informational heads get no policy; a 101 keeps its upgrade headers.
        assert_eq!(
            run_response(103, &[("Link", "</a.css>"), ("Connection", "x")]),
            pairs(&[("Link", "</a.css>")])
        );
        assert_eq!(
            run_response(101, &[("Connection", "upgrade"), ("Upgrade", "websocket")]),
            pairs(&[("Connection", "upgrade"), ("Upgrade", "websocket")])
        );
    }

    #[test]
    fn apps_cannot_set_firepits_cookies_or_cookies_beyond_their_host() {
        const HOST: &str = "8000-abc.localhost";
        for ok in [
            "a=1",
            "a=1; Path=/; HttpOnly",
            "a=1; Domain=8000-abc.localhost",
            "a=1; domain=.8000-ABC.localhost.",
            "__Host-a=1; Secure; Path=/",
            "firepit_tokenx=1",
            "a=1; Domain",
            "",
        ] {
            assert!(set_cookie_allowed(ok.as_bytes(), HOST, PRIVATE), "{ok:?}");
        }
        for bad in [
            "firepit_token=x",
            " firepit_token =x; Path=/",
            "FIREPIT_TOKEN=x",
            "__Host-firepit_token=x; Secure; Path=/",
            "__secure-firepit_preview=x",
            "firepit_token",
            "a=1; Domain=localhost",
            "a=1; Domain=.localhost",
            "a=1; domain = LocalHost",
            "a=1; Domain=8001-abc.localhost",
            "a=1; Domain=8000-abc.localhost; Domain=localhost",
            "a=1; Domain=",
            "a=1; Domain=x.8000-abc.localhost",
        ] {
            assert!(
                !set_cookie_allowed(bad.as_bytes(), HOST, PRIVATE),
                "{bad:?}"
            );
        }
        assert!(!set_cookie_allowed(
            b"a=\xff; Domain=localhost",
            HOST,
            PRIVATE
        ));
        let out = run_response(
            101,
            &[
                ("set-cookie", "a=1"),
                ("Set-Cookie", "firepit_token=x; Path=/"),
                ("set-cookie", "b=2; Domain=localhost"),
                ("set-cookie", "c=3; Domain=8000-abc.localhost"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                ("set-cookie", "a=1"),
                ("set-cookie", "c=3; Domain=8000-abc.localhost"),
            ])
        );
    }
}
