//! Extra CAs and the proxy, end to end: `firepit up --ca-file` (here
//! `FIREPIT_CA_FILE`) and `--proxy` (`FIREPIT_PROXY`) reach machines.
//!
//! The CA and the server certificate are made by the test with `openssl`.
//! The HTTPS server runs inside each machine on its own 127.0.0.1 (Python's
//! `ssl`), serving a file, a simple package index and a git repository over
//! git's dumb HTTP protocol; the clients are the image's curl, Python
//! `urllib`, git, pip and Node.js (the `default` image has them all; the
//! `git` image, used where the suite did not build `default`, has no pip or
//! Node.js, and the test says so). Each must fail in a machine of a daemon
//! without the CA and succeed with it.
//!
//! The proxy is a stand-in on the test's 127.0.0.1: machines reach it only
//! through the daemon's relay; it records what it is asked and answers
//! itself, so nothing leaves the host.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::harness::Daemon;

/// The test's CA and a server certificate it signed for 127.0.0.1 and
/// localhost, in `dir`: `ca.pem`, `server.pem`, `server.key`.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (the tests need the openssl command)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=firepit test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// The HTTPS server the machines run: the files under /srv/www.
const SERVER: &str = r#"import http.server, os, ssl
os.chdir("/srv/www")
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 8443), Quiet)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/srv/server.pem", "/srv/server.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

/// Makes /srv/www (a file, a package index with one wheel, a bare git
/// repository served dumb) and starts the server; waits until it listens.
const SETUP: &str = r#"set -e
mkdir -p /srv/www/simple/tinypkg /srv/www/files
echo trusted > /srv/www/hello.txt
python3 - <<'PY'
import zipfile
name = "tinypkg-1.0-py3-none-any.whl"
with zipfile.ZipFile("/srv/www/files/" + name, "w") as z:
    z.writestr("tinypkg/__init__.py", "")
    z.writestr("tinypkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n")
    z.writestr("tinypkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("tinypkg-1.0.dist-info/RECORD", "")
open("/srv/www/simple/tinypkg/index.html", "w").write('<a href="../../files/%s">%s</a>\n' % (name, name))
open("/srv/www/simple/index.html", "w").write('<a href="tinypkg/">tinypkg</a>\n')
PY
if command -v git >/dev/null; then
  rm -rf /tmp/src && mkdir /tmp/src && cd /tmp/src && git init -q
  echo hi > README && git add README
  git -c user.name=t -c user.email=t@t.invalid commit -qm one
  git clone -q --bare /tmp/src /srv/www/repo.git && git -C /srv/www/repo.git update-server-info
fi
setsid -f python3 /srv/serve.py >/srv/server.log 2>&1
for i in $(seq 200); do
  python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8443))' 2>/dev/null && exit 0
  sleep 0.05
done
cat /srv/server.log; exit 1
"#;

/// The clients, each a shell line that succeeds only over TLS that checks.
const CLIENTS: &[(&str, &str)] = &[
    ("curl", "curl -sSf https://127.0.0.1:8443/hello.txt"),
    (
        "python3",
        "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"https://127.0.0.1:8443/hello.txt\").read().decode())'",
    ),
    (
        "git",
        "rm -rf /tmp/clone && git clone -q https://127.0.0.1:8443/repo.git /tmp/clone && cat /tmp/clone/README",
    ),
    // By name: pip's truststore refuses an IP literal before any
    // certificate is looked at ("check_hostname requires server_hostname").
    (
        "pip",
        "rm -rf /tmp/dl && python3 -m pip download --no-deps --disable-pip-version-check -q -d /tmp/dl --index-url https://localhost:8443/simple tinypkg && ls /tmp/dl",
    ),
    (
        "node",
        "node -e 'require(\"https\").get(\"https://127.0.0.1:8443/hello.txt\", r => r.on(\"data\", d => process.stdout.write(d))).on(\"error\", e => { console.error(e.message); process.exit(1) })'",
    ),
];

/// Whether `tool` is in the session's image (pip: Python's module).
fn has(d: &Daemon, id: &str, tool: &str) -> bool {
    let probe = match tool {
        "pip" => "python3 -m pip --version >/dev/null 2>&1".to_owned(),
        t => format!("command -v {t} >/dev/null"),
    };
    d.run(&["exec", id, "--", "sh", "-c", &probe])
        .status
        .success()
}

/// The image the clients run in: `default` (curl, Python with pip, git,
/// Node.js) where `cargo xtask test` built it, else `git` (no pip, no Node.js).
fn client_image() -> String {
    std::env::var("FIREPIT_TEST_DEFAULT_IMAGE").unwrap_or_else(|_| "git".into())
}

/// A session on [`client_image`] with the server up.
fn serving_session(d: &Daemon, certs: &Path) -> String {
    let id = d.new_session(&["--image", &client_image(), "--memory", "1G"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("serve.py"), SERVER).unwrap();
    std::fs::write(dir.path().join("setup.sh"), SETUP).unwrap();
    for (from, to) in [
        (certs.join("server.pem"), "/srv/server.pem"),
        (certs.join("server.key"), "/srv/server.key"),
        (dir.path().join("serve.py"), "/srv/serve.py"),
        (dir.path().join("setup.sh"), "/srv/setup.sh"),
    ] {
        d.ok(&["cp", from.to_str().unwrap(), &format!("{id}:{to}")]);
    }
    d.sh(&id, "sh /srv/setup.sh");
    id
}

/// What `up` printed, once it printed its last line (`network: …`, after
/// the file the harness waits for).
fn printed(d: &Daemon) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = d.log();
        if log.contains("network: ") || std::time::Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn daemon(instance: &str, env: &[(&str, &str)]) -> Daemon {
    let mut all = vec![("FIREPIT_NO_HOST_CA", "true"), ("FIREPIT_PROXY", "off")];
    all.extend_from_slice(env);
    Daemon::start_with(instance, &all)
}

#[test]
fn machines_trust_the_extra_ca_and_only_with_it() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.pem");
    let with = daemon("trca", &[("FIREPIT_CA_FILE", ca.to_str().unwrap())]);
    let without = daemon("trno", &[]);
    let said = printed(&with);
    assert!(
        said.contains("trust: machines trust 1 extra CA from"),
        "{said}"
    );
    let said = printed(&without);
    assert!(
        said.contains("machines trust their images' CAs alone"),
        "{said}"
    );

    let a = serving_session(&with, certs.path());
    let b = serving_session(&without, certs.path());
    let mut missing = Vec::new();
    for (tool, line) in CLIENTS {
        if !has(&with, &a, tool) {
            missing.push(*tool);
            continue;
        }
        let out = with.run(&["exec", &a, "--", "sh", "-c", line]);
        assert!(
            out.status.success(),
            "{tool} with the CA: {}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            with.guest_logs()
        );
        let out = without.run(&["exec", &b, "--", "sh", "-c", line]);
        assert!(
            !out.status.success(),
            "{tool} trusted the test's CA without the setting: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Said, never skipped silently: the `git` image has no pip or Node.js.
    if !missing.is_empty() {
        assert_eq!(client_image(), "git", "{missing:?} missing in the image");
        eprintln!("note: not in the git test image, so not checked: {missing:?}");
    }

    // Services and the shared shell inherit the same environment as exec.
    let spec = serde_json::json!({
        "name": "fetch",
        "command": {"argv": ["sh", "-c", "curl -sSf https://127.0.0.1:8443/hello.txt > /tmp/svc.part && mv /tmp/svc.part /tmp/svc.out"]},
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        with.http()
            .post(format!("{}/v1/sessions/{a}/services", with.url))
            .json(&spec)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !with
        .run(&["exec", &a, "--", "test", "-f", "/tmp/svc.out"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not fetch: {}",
            with.ok(&["logs", &a, "fetch"])
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(with.sh(&a, "cat /tmp/svc.out"), "trusted\n");
    let shell = with.sh(
        &a,
        "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = bash ] \
         && tr '\\0' '\\n' < $p/environ | grep '^SSL_CERT_FILE='; done; true",
    );
    assert!(
        shell.contains("SSL_CERT_FILE=/run/firepit/trust/ca-certificates.crt"),
        "the shared shell's environment: {shell:?}"
    );

    // The system store has it too (curl's own default, without the variables).
    with.sh(
        &a,
        "env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -sSf https://127.0.0.1:8443/hello.txt",
    );
    // The trust dir is read-only, even to the machine's root.
    let out = with.run(&[
        "exec",
        &a,
        "--",
        "sh",
        "-c",
        "echo x >> /run/firepit/trust/ca-certificates.crt || touch /run/firepit/trust/x",
    ]);
    assert!(!out.status.success(), "the trust dir took a write");

    // The system bundle stays the machine's own file: Debian's tool rewrites
    // it (as package installs do), and the variables' bundle still trusts.
    with.sh(&a, "update-ca-certificates >/dev/null 2>&1");
    with.sh(&a, "curl -sSf https://127.0.0.1:8443/hello.txt");

    // A machine that edits its own store changes no other machine's trust.
    with.sh(&a, "echo > /etc/ssl/certs/ca-certificates.crt");
    let out = with.run(&[
        "exec",
        &a,
        "--",
        "sh",
        "-c",
        "env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -sSf https://127.0.0.1:8443/hello.txt",
    ]);
    assert!(!out.status.success(), "the emptied store still trusted");
    let c = serving_session(&with, certs.path());
    with.sh(
        &c,
        "env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -sSf https://127.0.0.1:8443/hello.txt",
    );
    let image_bundle = crate::harness::images_dir()
        .join(client_image())
        .join("rootfs/etc/ssl/certs/ca-certificates.crt");
    let text = std::fs::read_to_string(&image_bundle).unwrap();
    assert!(
        !text.contains("firepit: extra trust anchors"),
        "the image was changed"
    );

    // A restart writes the block again, once, into what the machine left.
    with.ok(&["stop", &a]);
    with.ok(&["start", &a]);
    let count = with.sh(
        &a,
        "grep -c 'firepit: extra trust anchors (begin)' /etc/ssl/certs/ca-certificates.crt",
    );
    assert_eq!(count.trim(), "1");

    // Links at the bundles lead the next start's rewrite nowhere outside.
    let canary = with.data_dir().join("canary.pem");
    std::fs::write(&canary, "host file\n").unwrap();
    with.sh(
        &a,
        &format!(
            "ln -sf {} /etc/ssl/certs/ca-certificates.crt && ln -sf ../../../../../../{} /etc/ssl/cert.pem",
            canary.display(),
            canary.display()
        ),
    );
    with.ok(&["stop", &a]);
    with.ok(&["start", &a]);
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host file\n");
    with.sh(
        &a,
        "test -f /etc/ssl/certs/ca-certificates.crt && test ! -L /etc/ssl/certs/ca-certificates.crt \
         && grep -q 'firepit: extra trust anchors (begin)' /etc/ssl/certs/ca-certificates.crt",
    );
    // A bundle behind a link (Fedora's `tls/certs/ca-bundle.crt` into
    // `ca-trust/extracted`) is rewritten where the link leads, once.
    with.sh(
        &a,
        "mkdir -p /etc/pki/ca-trust/extracted/pem /etc/pki/tls/certs \
         && cp /etc/ssl/certs/ca-certificates.crt /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem \
         && ln -sf /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem /etc/pki/tls/certs/ca-bundle.crt",
    );
    with.ok(&["stop", &a]);
    with.ok(&["start", &a]);
    let count = with.sh(
        &a,
        "test -L /etc/pki/tls/certs/ca-bundle.crt \
         && grep -c 'firepit: extra trust anchors (begin)' /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    );
    assert_eq!(count.trim(), "1");

    let out = with.sh(&a, "cat /run/firepit/trust/extra.pem");
    let ca_text = std::fs::read_to_string(&ca).unwrap();
    let first_line = ca_text.lines().nth(1).unwrap();
    assert!(out.contains(first_line), "{out}");
}

/// A stand-in proxy on the test's loopback: records each request head and
/// answers every request itself with 200 and "proxied".
fn stand_in_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(1) => head.push(b[0]),
                        _ => return,
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nproxied\n",
                );
            });
        }
    });
    (port, seen)
}

#[test]
fn machines_reach_the_proxy_through_the_daemon_without_its_credentials() {
    let (port, seen) = stand_in_proxy();
    let url = format!("http://user:s3cret@127.0.0.1:{port}");
    let d = Daemon::start_with(
        "trpx",
        &[("FIREPIT_NO_HOST_CA", "true"), ("FIREPIT_PROXY", &url)],
    );
    let said = printed(&d);
    assert!(
        said.contains(&format!(
            "network: proxy http://127.0.0.1:{port} (with credentials) (from --proxy)"
        )),
        "{said}"
    );
    assert!(!said.contains("s3cret"), "{said}");
    let id = d.new_session(&[]);
    // Told the relay, never the proxy or its credentials.
    let env = d.sh(&id, "env");
    assert!(env.contains("HTTPS_PROXY=http://127.0.0.1:3128"), "{env}");
    assert!(env.contains("no_proxy=localhost,127.0.0.1,::1"), "{env}");
    assert!(
        !env.contains("s3cret") && !env.contains(&port.to_string()),
        "{env}"
    );

    // A documentation address: the stand-in answers it without going there.
    let body = d.sh(&id, "curl -sSf http://203.0.113.7/hello");
    assert_eq!(body, "proxied\n");
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("GET http://203.0.113.7/hello HTTP/1.1\r\n"),
        "{heads:?}"
    );
    // base64("user:s3cret"), added outside the machine.
    assert!(
        heads[0].contains("Proxy-Authorization: Basic dXNlcjpzM2NyZXQ="),
        "{heads:?}"
    );

    // TLS goes as a tunnel: the proxy is asked to CONNECT (the stand-in
    // answers with a page rather than a tunnel, so curl's TLS then fails).
    let _ = d.run(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "curl -sS https://203.0.113.7/",
    ]);
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(
        heads[1].starts_with("CONNECT 203.0.113.7:443 HTTP/1.1\r\n"),
        "{heads:?}"
    );
    assert!(
        heads[1].contains("Proxy-Authorization: Basic dXNlcjpzM2NyZXQ="),
        "{heads:?}"
    );

    // The host's own addresses are refused before the proxy is asked.
    let out = d.run(&[
        "exec", &id, "--", "sh", "-c",
        "curl -sS -o /dev/null -w '%{http_code}' --noproxy '' -x http://127.0.0.1:3128 http://127.0.0.1:7777/",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    assert_eq!(seen.lock().unwrap().len(), 2);

    // The relay's port is firepit's: no port entry, no preview.
    let ports = d.ok(&["ports", &id]);
    assert!(!ports.contains("3128"), "{ports}");

    // A machine without a network gets no relay: no way out through it.
    let offline = d.new_session(&["--network", "none"]);
    let out = d.run(&[
        "exec",
        &offline,
        "--",
        "sh",
        "-c",
        "curl -sS http://203.0.113.7/",
    ]);
    assert!(!out.status.success());
    assert_eq!(seen.lock().unwrap().len(), 2);
}
