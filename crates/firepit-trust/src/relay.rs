//! The proxy relay: what a machine's `HTTP_PROXY` names.
//!
//! The daemon listens inside the machine (on its `127.0.0.1:`
//! [`RELAY_PORT`](crate::proxy::RELAY_PORT), through the backend's
//! `listen`) and runs [`Relay::serve`] on it. Each connection carries one
//! request, read by its head (at most [`MAX_HEAD`] bytes, within
//! [`HEAD_TIMEOUT`]):
//!
//! - `CONNECT host:port` (TLS, and anything else tunnelled): the head goes to
//!   the proxy, then bytes flow both ways untouched;
//! - a plain HTTP request in absolute form (`GET http://host/…`): the head
//!   goes to the proxy with `Connection: close`, then exactly the body its
//!   `Content-Length` names (a chunked body is refused), then the answer
//!   comes back until the proxy closes. One request per connection, so
//!   every request's target is checked.
//!
//! The relay drops the machine's `Proxy-Authorization` and hop-by-hop
//! proxy headers and adds the daemon's credentials, if the proxy has any:
//! they never enter the machine.
//!
//! **Targets refused** (403, before the proxy is asked): the host's
//! loopback, unspecified and link-local addresses (`localhost`, `127/8`,
//! `::1`, `0/8`, `169.254/16` with cloud metadata, `fe80::/10`), named or
//! as literals, and names that resolve there on the host: the proxy runs
//! on the host, and what it reaches there is the host's, which no machine
//! may reach. A name the host cannot resolve is left to the proxy (it may
//! resolve what the host cannot); a name that resolves elsewhere here and
//! to the host's loopback at the proxy (DNS rebinding) is the proxy's to
//! refuse. Private ranges pass: a proxy is how machines reach the internal
//! mirrors its network allows.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::proxy::Upstream;

/// The longest request head a machine may send.
pub const MAX_HEAD: usize = 64 << 10;
/// How long a machine has to send a request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to the proxy, or resolving a target, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How many connections one machine may have through the relay at once.
pub const MAX_CONNECTIONS: usize = 256;

/// One machine's relay to the daemon's proxy.
#[derive(Debug)]
pub struct Relay {
    upstream: Upstream,
    slots: Arc<Semaphore>,
}

/// Why a request was not relayed: the status and text the machine gets.
struct Refusal {
    status: &'static str,
    text: String,
}

fn refuse(status: &'static str, text: impl Into<String>) -> Refusal {
    Refusal {
        status,
        text: text.into(),
    }
}

impl Relay {
    /// A relay to `upstream`.
    pub fn new(upstream: Upstream) -> Relay {
        Relay {
            upstream,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }

    /// Accepts on `listener` until the task is dropped or aborted; each
    /// connection on a task of its own.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (conn, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "proxy relay: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                // Over the limit: the machine's connection is closed at once.
                continue;
            };
            let relay = self.clone();
            tokio::spawn(async move {
                relay.handle(conn).await;
                drop(permit);
            });
        }
    }

    async fn handle(&self, mut client: TcpStream) {
        let _ = client.set_nodelay(true);
        match self.relay(&mut client).await {
            Ok(()) => {}
            Err(r) => {
                let body = format!("firepit: {}\n", r.text);
                let answer = format!(
                    "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    r.status,
                    body.len()
                );
                let _ = client.write_all(answer.as_bytes()).await;
                let _ = client.shutdown().await;
            }
        }
    }

    async fn relay(&self, client: &mut TcpStream) -> Result<(), Refusal> {
        let (buf, head_len) = tokio::time::timeout(HEAD_TIMEOUT, read_head(client))
            .await
            .map_err(|_| refuse("408 Request Timeout", "no request head in time"))??;
        let request = Request::parse(&buf[..head_len])?;
        check_target(&request.host, request.port).await?;
        let mut upstream =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.upstream.addr()))
                .await
                .map_err(|_| refuse("504 Gateway Timeout", "the proxy did not answer in time"))?
                .map_err(|e| refuse("502 Bad Gateway", format!("the proxy refused: {e}")))?;
        let _ = upstream.set_nodelay(true);
        let head = request.head_for_proxy(self.upstream.authorization());
        let body = &buf[head_len..];
        upstream
            .write_all(&head)
            .await
            .map_err(|e| refuse("502 Bad Gateway", format!("writing to the proxy: {e}")))?;
        if request.connect {
            // What the machine sent after the head is the tunnel's.
            let _ = upstream.write_all(body).await;
            let _ = tokio::io::copy_bidirectional(client, &mut upstream).await;
            return Ok(());
        }
        let length = request.content_length as usize;
        let first = body.len().min(length);
        let _ = upstream.write_all(&body[..first]).await;
        let rest = (length - first) as u64;
        let (mut from_client, mut to_client) = client.split();
        let (mut from_proxy, mut to_proxy) = upstream.split();
        let up = async {
            let _ = tokio::io::copy(&mut (&mut from_client).take(rest), &mut to_proxy).await;
        };
        let down = async {
            let _ = tokio::io::copy(&mut from_proxy, &mut to_client).await;
            let _ = to_client.shutdown().await;
        };
        tokio::join!(up, down);
        Ok(())
    }
}

/// Reads until the end of the head; returns what was read and the head's
/// length (the rest is the body's, or the tunnel's).
async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> Result<(Vec<u8>, usize), Refusal> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = r
            .read(&mut chunk)
            .await
            .map_err(|e| refuse("400 Bad Request", format!("reading the request: {e}")))?;
        if n == 0 {
            return Err(refuse(
                "400 Bad Request",
                "the request ended within its head",
            ));
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok((buf, from + i + 4));
        }
        if buf.len() > MAX_HEAD {
            return Err(refuse(
                "431 Request Header Fields Too Large",
                format!("a request head may have {MAX_HEAD} bytes"),
            ));
        }
    }
}

/// A request's head as the relay needs it.
#[derive(Debug)]
struct Request {
    connect: bool,
    host: String,
    port: u16,
    /// The request line.
    line: String,
    /// The headers it passes on.
    headers: Vec<(String, Vec<u8>)>,
    content_length: u64,
}

/// Headers the relay never passes on: the machine's credentials for the
/// proxy, and hop-by-hop ones the relay sets itself.
const DROPPED: &[&str] = &[
    "proxy-authorization",
    "proxy-connection",
    "connection",
    "keep-alive",
];

impl Request {
    fn parse(head: &[u8]) -> Result<Request, Refusal> {
        let bad = |why: &str| refuse("400 Bad Request", why.to_owned());
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut slots);
        match req.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(bad("an incomplete request head")),
            Err(e) => return Err(bad(&format!("a malformed request head: {e}"))),
        }
        let method = req.method.unwrap_or_default();
        let target = req.path.unwrap_or_default();
        let connect = method.eq_ignore_ascii_case("CONNECT");
        let (host, port) = if connect {
            split_authority(target, None).ok_or_else(|| bad("CONNECT takes host:port"))?
        } else {
            let rest = target
                .strip_prefix("http://")
                .or_else(|| target.strip_prefix("HTTP://"))
                .ok_or_else(|| {
                    bad("a proxy request names an http:// URL (use CONNECT for https)")
                })?;
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
            split_authority(authority, Some(80)).ok_or_else(|| bad("the URL names no host"))?
        };
        let mut headers = Vec::new();
        let mut content_length: Option<u64> = None;
        for h in req.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            if name == "transfer-encoding" && !connect {
                return Err(refuse(
                    "501 Not Implemented",
                    "a chunked request body cannot go through the proxy relay; send a Content-Length",
                ));
            }
            if name == "content-length" {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| bad("a bad Content-Length"))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(bad("two Content-Lengths"));
                }
                content_length = Some(n);
            }
            if DROPPED.contains(&name.as_str()) {
                continue;
            }
            headers.push((h.name.to_owned(), h.value.to_owned()));
        }
        Ok(Request {
            connect,
            host,
            port,
            line: format!("{method} {target} HTTP/1.{}", req.version.unwrap_or(1)),
            headers,
            content_length: if connect {
                0
            } else {
                content_length.unwrap_or(0)
            },
        })
    }

    fn head_for_proxy(&self, authorization: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(self.line.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(auth) = authorization {
            out.extend_from_slice(b"Proxy-Authorization: ");
            out.extend_from_slice(auth.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !self.connect {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// `host[:port]` or `[v6][:port]`; the host lower-cased, brackets off.
fn split_authority(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        None => default_port?,
    };
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    ok.then(|| (host.to_ascii_lowercase(), port))
}

/// Whether `ip` is the host's own (loopback, unspecified) or link-local.
pub fn forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_unspecified() || v4.is_link_local() || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_ip(IpAddr::V4(v4));
            }
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Whether `host` is an address in a form `inet_aton` takes besides the
/// dotted quad (`2130706433`, `127.1`, `0x7f.1`): resolvers turn these into
/// addresses without asking anyone.
fn inet_aton_form(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() <= 4
        && parts.iter().all(|p| {
            let hex = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"));
            match hex {
                Some(h) => h.bytes().all(|b| b.is_ascii_hexdigit()),
                None => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
            }
        })
}

/// Refuses a target on the host's loopback or link-local (see the module
/// docs).
async fn check_target(host: &str, port: u16) -> Result<(), Refusal> {
    let forbidden = || {
        refuse(
            "403 Forbidden",
            format!("{host} is the host's own or link-local; machines do not reach it"),
        )
    };
    let lower = host.to_ascii_lowercase();
    let name = lower.trim_end_matches('.');
    if name == "localhost" || name.ends_with(".localhost") {
        return Err(forbidden());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if forbidden_ip(ip) {
            Err(forbidden())
        } else {
            Ok(())
        };
    }
    // Integer and short forms (`2130706433`, `127.1`) that resolvers accept.
    if inet_aton_form(name) {
        return Err(refuse(
            "403 Forbidden",
            format!("{host} is not a host name or a dotted-quad address"),
        ));
    }
    let resolved =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((name, port))).await;
    if let Ok(Ok(addrs)) = resolved {
        let addrs: Vec<SocketAddr> = addrs.collect();
        if addrs.iter().any(|a| forbidden_ip(a.ip())) {
            return Err(forbidden());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_and_cleaned() {
        let r = Request::parse(
            b"GET http://Example.test:8080/a?b HTTP/1.1\r\nHost: example.test\r\nProxy-Authorization: Basic bWU=\r\nProxy-Connection: keep-alive\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap_or_else(|r| panic!("{}", r.text));
        assert!(!r.connect);
        assert_eq!(
            (r.host.as_str(), r.port, r.content_length),
            ("example.test", 8080, 3)
        );
        let head = String::from_utf8(r.head_for_proxy(Some("Basic c2VjcmV0"))).unwrap();
        assert!(
            head.starts_with("GET http://Example.test:8080/a?b HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            !head.contains("bWU=") && !head.contains("Proxy-Connection"),
            "{head}"
        );
        assert!(
            head.contains("Proxy-Authorization: Basic c2VjcmV0\r\n"),
            "{head}"
        );
        assert!(head.ends_with("Connection: close\r\n\r\n"), "{head}");

        let c = Request::parse(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap_or_else(|r| panic!("{}", r.text));
        assert!(c.connect);
        assert_eq!((c.host.as_str(), c.port), ("::1", 443));
        let head = String::from_utf8(c.head_for_proxy(None)).unwrap();
        assert!(!head.contains("Connection: close"), "{head}");
    }

    #[test]
    fn bad_heads_are_refused() {
        for (head, status) in [
            (&b"GET /relative HTTP/1.1\r\n\r\n"[..], "400"),
            (b"GET https://x/ HTTP/1.1\r\n\r\n", "400"),
            (b"CONNECT x HTTP/1.1\r\n\r\n", "400"),
            (b"CONNECT x:0 HTTP/1.1\r\n\r\n", "400"),
            (
                b"POST http://x/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "501",
            ),
            (
                b"POST http://x/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "400",
            ),
            (b"GET http://a b/ HTTP/1.1\r\n\r\n", "400"),
        ] {
            let e = Request::parse(head).unwrap_err();
            assert!(
                e.status.starts_with(status),
                "{head:?}: {} {}",
                e.status,
                e.text
            );
        }
    }

    #[tokio::test]
    async fn the_hosts_own_addresses_are_refused() {
        for host in [
            "localhost",
            "LOCALHOST.",
            "app.localhost",
            "127.0.0.1",
            "127.8.9.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "fe80::1",
            "2130706433",
            "127.1",
            "0x7f000001",
        ] {
            assert!(check_target(host, 80).await.is_err(), "{host}");
        }
        for host in ["10.1.2.3", "192.168.0.1", "203.0.113.5", "2001:db8::1"] {
            assert!(check_target(host, 80).await.is_ok(), "{host}");
        }
    }
}
