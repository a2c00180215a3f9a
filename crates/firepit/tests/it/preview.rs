//! Preview URLs and share links, end to end: real servers inside real
//! machines answer through `<port>-<session>.localhost`, with WebSocket, SSE
//! and large uploads streaming; private access (the cookie handshake), share
//! links (revoked, expired, forged), and bad Host headers refused.
//!
//! Requests go to 127.0.0.1:<daemon port> with the preview Host header, over
//! raw sockets, so every byte sent is the test's choice.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::Daemon;

/// A response, read to the end of the connection.
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Every `Set-Cookie` of a response head.
fn r_head_cookies(head: &str) -> Vec<String> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n\n{}", self.head, self.text())
    }
}

pub(crate) fn addr(d: &Daemon) -> String {
    d.url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

pub(crate) fn port(d: &Daemon) -> u16 {
    addr(d).rsplit_once(':').unwrap().1.parse().unwrap()
}

pub(crate) fn host(d: &Daemon, port_inside: u16, id: &str) -> String {
    format!("{port_inside}-{id}.localhost:{}", port(d))
}

fn parse(buf: &[u8]) -> Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    Resp {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    }
}

/// Sends `raw` and reads the response until the daemon closes the connection.
pub(crate) fn send_raw(d: &Daemon, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr(d)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

/// `GET path` with `Host: host` and extra header lines.
pub(crate) fn get(d: &Daemon, host: &str, path: &str, extra: &[String]) -> Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    send_raw(d, req.as_bytes())
}

pub(crate) fn bearer(d: &Daemon) -> String {
    format!("Authorization: Bearer {}", d.token)
}

/// Copies `text` into the machine at `path`.
pub(crate) fn put_file(d: &Daemon, id: &str, path: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, text).unwrap();
    d.ok(&["cp", local.to_str().unwrap(), &format!("{id}:{path}")]);
}

/// Starts `cmd` in the background inside the machine.
pub(crate) fn spawn_in(d: &Daemon, id: &str, cmd: &str) {
    d.sh(id, &format!("nohup {cmd} >/tmp/bg.log 2>&1 &"));
}

/// Waits until `port` answers through the preview (with the API token).
pub(crate) fn wait_for(d: &Daemon, id: &str, port_inside: u16, path: &str) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(d, &host(d, port_inside, id), path, &[bearer(d)]);
        if r.status != 502 {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "port {port_inside} never answered: {r:?}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const WS_ECHO: &str = r#"
import base64, hashlib, socket, struct, threading
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def handle(c):
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(4096)
        if not d:
            return
        data += d
    head = data.split(b"\r\n\r\n")[0].decode()
    key = [l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    f = c.makefile("rb")
    while True:
        h = f.read(2)
        if len(h) < 2:
            return
        op, n = h[0] & 15, h[1] & 127
        if n == 126:
            n = struct.unpack(">H", f.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", f.read(8))[0]
        mask = f.read(4) if h[1] & 128 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(f.read(n)))
        if op == 8:
            c.sendall(b"\x88\x00")
            return
        size = bytes([n]) if n < 126 else struct.pack(">BH", 126, n)
        c.sendall(bytes([0x80 | op]) + size + payload)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8765))
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

const APP: &str = r#"
import http.server, socketserver, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("X-Frame-Options", "DENY")
            self.end_headers()
            self.close_connection = True
            for i in range(3):
                self.wfile.write(b"data: tick %d\n\n" % i)
                self.wfile.flush()
                time.sleep(1)
            return
        body = ("host=%s xff=%s auth=%s cookie=%s" % (self.headers.get("Host"),
                self.headers.get("X-Forwarded-For"), self.headers.get("Authorization"),
                self.headers.get("Cookie"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        left = int(self.headers["Content-Length"])
        total = 0
        while left:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            total += len(chunk)
            left -= len(chunk)
        body = b"got %d" % total
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("127.0.0.1", 8100), H).serve_forever()
"#;

/// Writes a masked client frame.
fn ws_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x80 | op, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn servers_inside_answer_through_their_preview_url() {
    let d = Daemon::start("t30");
    let id = d.new_session(&[]);
    // Loopback only, and every address: both answer, with no forwarder.
    spawn_in(
        &d,
        &id,
        "python3 -m http.server 8000 --bind 127.0.0.1 --directory /etc",
    );
    spawn_in(
        &d,
        &id,
        "python3 -m http.server 8001 --bind 0.0.0.0 --directory /etc",
    );
    for p in [8000, 8001] {
        let r = wait_for(&d, &id, p, "/");
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.text().contains("os-release"), "{r:?}");
        assert_eq!(
            r.header("content-security-policy").as_deref(),
            Some(format!("frame-ancestors http://localhost:{} 'self'", port(&d)).as_str())
        );
    }
    // Only on the machine's eth0 address: found through the guest's port list.
    spawn_in(
        &d,
        &id,
        "python3 -c \"import socket,http.server as h; u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); \
         u.connect(('10.255.255.255',1)); a=u.getsockname()[0]; \
         h.ThreadingHTTPServer((a,8002),h.SimpleHTTPRequestHandler).serve_forever()\"",
    );
    let r = wait_for(&d, &id, 8002, "/");
    assert_eq!(r.status, 200, "{r:?}");

    // Headers the app sees: the original Host, X-Forwarded-For, and none of
    // firepit's credentials.
    put_file(&d, &id, "/root/app.py", APP);
    spawn_in(&d, &id, "python3 /root/app.py");
    let h = host(&d, 8100, &id);
    wait_for(&d, &id, 8100, "/");
    let r = get(
        &d,
        &h,
        "/",
        &[
            bearer(&d),
            format!("Cookie: a=1; firepit_token={}", d.token),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let seen = r.text();
    assert!(seen.contains(&format!("host={h} ")), "{seen}");
    assert!(seen.contains("xff=127.0.0.1"), "{seen}");
    assert!(seen.contains("auth=None"), "{seen}");
    assert!(
        seen.contains("cookie=a=1") && !seen.contains(&d.token),
        "{seen}"
    );

    // SSE: the first event arrives long before the response ends.
    let mut s = TcpStream::connect(addr(&d)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    write!(
        s,
        "GET /sse HTTP/1.1\r\nHost: {h}\r\n{}\r\n\r\n",
        bearer(&d)
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("tick 0") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(!head.contains("tick 2"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("x-frame-options"),
        "{head}"
    );
    drop(s);

    // A 20 MB upload streams through.
    let size = 20 << 20;
    let mut s = TcpStream::connect(addr(&d)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /upload HTTP/1.1\r\nHost: {h}\r\n{}\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n",
        bearer(&d)
    )
    .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..20 {
        s.write_all(&chunk).unwrap();
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let r = parse(&buf);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), format!("got {size}"));

    // WebSocket: the upgrade is forwarded and messages round-trip.
    put_file(&d, &id, "/root/ws.py", WS_ECHO);
    spawn_in(&d, &id, "python3 /root/ws.py");
    let wh = host(&d, 8765, &id);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut s = loop {
        let mut s = TcpStream::connect(addr(&d)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /ws HTTP/1.1\r\nHost: {wh}\r\n{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            bearer(&d)
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                s.read(&mut byte).unwrap(),
                1,
                "{}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if head.starts_with("HTTP/1.1 101") {
            assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
            break s;
        }
        assert!(Instant::now() < deadline, "{head}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for msg in ["hello", "again"] {
        s.write_all(&ws_frame(1, msg.as_bytes())).unwrap();
        let mut frame = vec![0u8; 2 + msg.len()];
        s.read_exact(&mut frame).unwrap();
        assert_eq!(frame[0], 0x81);
        assert_eq!(&frame[2..], msg.as_bytes());
    }
    s.write_all(&ws_frame(8, b"")).unwrap();
}

#[test]
fn previews_are_private_and_shares_expire_and_revoke() {
    let d = Daemon::start("t31");
    let id = d.new_session(&[]);
    spawn_in(
        &d,
        &id,
        "python3 -m http.server 8000 --bind 127.0.0.1 --directory /etc",
    );
    wait_for(&d, &id, 8000, "/");
    let h = host(&d, 8000, &id);
    let dp = port(&d);

    // No credentials: a browser is sent to sign in on the daemon's host.
    let r = get(&d, &h, "/hostname?x=1", &[]);
    assert_eq!(r.status, 302, "{r:?}");
    let to = r.header("location").unwrap();
    let prefix = format!("http://localhost:{dp}/v1/preview-auth?next=");
    assert!(to.starts_with(&prefix), "{to}");
    // A non-GET without credentials is refused outright.
    let r = send_raw(
        &d,
        format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 401, "{r:?}");
    // A bad cookie is refused.
    let r = get(
        &d,
        &h,
        "/",
        &["Cookie: firepit_preview=forged.cookie".into()],
    );
    assert_eq!(r.status, 403, "{r:?}");

    // The handshake: the daemon's host (signed in by its cookie) hands back a
    // ticket; the preview host turns it into its own cookie.
    let daemon_host = format!("localhost:{dp}");
    let path = to.trim_start_matches(&format!("http://{daemon_host}"));
    let r = get(&d, &daemon_host, path, &[]);
    assert_eq!(
        r.status, 401,
        "the handshake needs the firepit login: {r:?}"
    );
    let r = get(
        &d,
        &daemon_host,
        path,
        &[format!("Cookie: firepit_token={}", d.token)],
    );
    assert_eq!(r.status, 302, "{r:?}");
    let back = r.header("location").unwrap();
    let back_path = back
        .strip_prefix(&format!("http://{h}"))
        .unwrap_or_else(|| panic!("{back}"));
    assert!(back_path.starts_with("/__firepit/auth?ticket="), "{back}");
    let r = get(&d, &h, back_path, &[]);
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.header("location").as_deref(), Some("/hostname?x=1"));
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let r = get(&d, &h, "/hostname", &[format!("Cookie: {cookie}")]);
    assert_eq!(r.status, 200, "{r:?}");
    // The same handshake sets the cookie a browser sends when the UI frames
    // the preview (a third-party context), and it opens the preview alone.
    let framed = r_head_cookies(&get(&d, &h, back_path, &[]).head)
        .into_iter()
        .find(|c| c.starts_with("firepit_preview_framed="))
        .expect("the framed owner cookie");
    assert!(
        framed.contains("SameSite=None")
            && framed.contains("Secure")
            && framed.contains("Partitioned")
            && framed.contains("HttpOnly"),
        "{framed}"
    );
    let framed_pair = framed.split(';').next().unwrap().to_owned();
    let r = get(&d, &h, "/hostname", &[format!("Cookie: {framed_pair}")]);
    assert_eq!(r.status, 200, "{r:?}");
    // The owner's cookie of one port does not open another.
    let r = get(
        &d,
        &host(&d, 8001, &id),
        "/",
        &[format!("Cookie: {cookie}")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    // A ticket for another preview is refused; so is a garbled one.
    let other = back_path.replace("ticket=", "ticket=x");
    assert_eq!(get(&d, &h, &other, &[]).status, 403);

    // A share link works without any login, until it is revoked.
    let out = d.ok(&["share", &id, "8000", "--ttl", "10m"]);
    let url = out.trim();
    let share_path = url
        .strip_prefix(&format!("http://{h}"))
        .unwrap_or_else(|| panic!("{url}"));
    let r = get(&d, &h, share_path, &[]);
    assert_eq!(r.status, 302, "{r:?}");
    let share_cookie = r.header("set-cookie").unwrap();
    assert!(share_cookie.contains("HttpOnly"), "{share_cookie}");
    let share_cookie = share_cookie.split(';').next().unwrap().to_owned();
    let r = get(&d, &h, "/hostname", &[format!("Cookie: {share_cookie}")]);
    assert_eq!(r.status, 200, "{r:?}");
    // Not for another port, and not with a byte changed.
    let r = get(&d, &host(&d, 8001, &id), share_path, &[]);
    assert_eq!(r.status, 403, "{r:?}");
    let forged = share_path.replacen("token=", "token=A", 1);
    let r = get(&d, &h, &forged, &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.text().contains("not valid"), "{r:?}");

    let r = get(
        &d,
        &format!("localhost:{dp}"),
        &format!("/v1/sessions/{id}/shares"),
        &[bearer(&d)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let shares: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let share_id = shares[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(shares[0]["url"].as_str(), Some(url));
    d.ok(&["unshare", &id, &share_id]);
    let r = get(&d, &h, "/hostname", &[format!("Cookie: {share_cookie}")]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.text().contains("revoked"), "{r:?}");
    assert_eq!(get(&d, &h, share_path, &[]).status, 403);
    assert!(!d.run(&["unshare", &id, "nosuchshare"]).status.success());

    // An expired link is refused.
    let out = d.ok(&["share", &id, "8000", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_secs(2));
    let p = out
        .trim()
        .strip_prefix(&format!("http://{h}"))
        .unwrap()
        .to_owned();
    let r = get(&d, &h, &p, &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.text().contains("expired"), "{r:?}");
}

#[test]
fn bad_hosts_and_bad_requests_are_refused_clearly() {
    let d = Daemon::start("t32");
    let id = d.new_session(&[]);
    let dp = port(&d);
    let h = host(&d, 8000, &id);
    let auth = bearer(&d);

    // Hosts that pretend to be previews of another domain, or are malformed.
    for bad in [
        format!("8000-{id}.localhost.evil:{dp}"),
        format!("x.8000-{id}.localhost:{dp}"),
        format!("0-{id}.localhost:{dp}"),
        format!("70000-{id}.localhost:{dp}"),
    ] {
        let r = get(&d, &bad, "/v1/health", std::slice::from_ref(&auth));
        assert_eq!(r.status, 400, "{bad}: {r:?}");
    }
    // The daemon's own port names the machine's port, never the daemon.
    let r = get(
        &d,
        &host(&d, dp, &id),
        "/v1/health",
        std::slice::from_ref(&auth),
    );
    assert_eq!(r.status, 502, "{r:?}");
    assert!(!r.text().contains("\"ok\""), "{r:?}");
    // An absolute-form target naming another session.
    let r = send_raw(
        &d,
        format!(
            "GET http://8000-other.localhost:{dp}/ HTTP/1.1\r\nHost: {h}\r\n{auth}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400, "{r:?}");
    // Two Host headers.
    let r = send_raw(
        &d,
        format!(
            "GET / HTTP/1.1\r\nHost: {h}\r\nHost: localhost:{dp}\r\n{auth}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400, "{r:?}");
    // Oversized headers.
    let big = format!("X-Big: {}", "a".repeat(100 << 10));
    let r = get(&d, &h, "/", &[auth.clone(), big]);
    assert_eq!(r.status, 431, "{r:?}");

    // Helpful pages: nothing listening (with the open ports), no such
    // session, a stopped session.
    spawn_in(&d, &id, "python3 -m http.server 8001 --bind 127.0.0.1");
    wait_for(&d, &id, 8001, "/");
    let r = get(&d, &h, "/", std::slice::from_ref(&auth));
    assert_eq!(r.status, 502, "{r:?}");
    let text = r.text();
    assert!(text.contains("Nothing is listening on 8000 yet"), "{text}");
    assert!(text.contains(&id) && text.contains("8001"), "{text}");
    let r = get(
        &d,
        &host(&d, 8000, "nosuch"),
        "/",
        std::slice::from_ref(&auth),
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.text().contains("firepit ls"), "{r:?}");
    d.ok(&["stop", &id]);
    let r = get(&d, &host(&d, 8001, &id), "/", std::slice::from_ref(&auth));
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.text().contains(&format!("firepit start {id}")), "{r:?}");

    // A client that never finishes its headers is cut off; others go on.
    let mut slow = TcpStream::connect(addr(&d)).unwrap();
    slow.write_all(format!("GET / HTTP/1.1\r\nHost: {h}\r\n").as_bytes())
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        get(&d, &format!("localhost:{dp}"), "/v1/health", &[]).status,
        200
    );
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
