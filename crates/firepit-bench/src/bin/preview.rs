//! `firepit-bench-preview` (`cargo xtask bench-preview`): the preview proxy
//! against its budgets, in one run.
//!
//! - Throughput: one machine (the test image) runs an upstream, nginx
//!   answering `return 200` on 127.0.0.1:8000 *inside the machine's network
//!   namespace*. `wrk` runs in that namespace too and loads, in turn, the real
//!   daemon (an `App` serving a second listener made inside the namespace, so
//!   requests go through Host dispatch, the access check, the session lookup,
//!   the backend's dial and the proxy exactly as in production) and an nginx
//!   reverse proxy (upstream keepalive on, like firepit's connection reuse)
//!   listening there as well. Same upstream, same loopback, same CPUs; the
//!   figures are requests/s and p99. Budget: firepit ≥ 0.9 × nginx.
//! - bind() → preview URL answering: a listener is bound inside the machine
//!   on a fresh port, then the preview URL is polled through the daemon's
//!   host listener until it answers. Budget: p95 ≤ 20 ms.
//!
//! - Keystroke → echo over the terminal WebSocket: single characters typed
//!   into the shared `main` shell through the daemon's PTY WebSocket, each
//!   timed until its echo comes back. Budget: p50 ≤ 2 ms.
//!
//! Needs root, `wrk` and `nginx` (`apt-get install wrk nginx`), and
//! `FIREPIT_TEST_IMAGES` (set by `cargo xtask bench-preview`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use firepit_daemon::{App, Config};
use firepit_machine::MachineId;
use firepit_wire::api::{CreateSession, NetworkMode};

/// Port of the upstream inside the machine.
const UPSTREAM: u16 = 8000;
/// Port of the daemon's listener inside the machine's namespace.
const FIREPIT_IN_NS: u16 = 7000;
/// Port of the nginx reverse proxy inside the machine's namespace.
const NGINX_IN_NS: u16 = 9000;
/// bind() → answering samples.
const BIND_RUNS: usize = 100;

fn main() -> ExitCode {
    firepit_bench::main_async("firepit-bench-preview", run)
}

fn need(tool: &str) -> Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{tool} is not installed: `apt-get install wrk nginx`")
}

/// Processes this bench started; ended (SIGTERM, by pid) when dropped.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: signalling a child we spawned, by its pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

fn nginx_conf(dir: &Path, name: &str, workers: usize, server: &str) -> Result<PathBuf> {
    let prefix = dir.join(name);
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf = format!(
        "worker_processes {workers};\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n access_log off;\n client_body_temp_path {p}/body;\n proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fcgi;\n uwsgi_temp_path {p}/uwsgi;\n scgi_temp_path {p}/scgi;\n{server}\n}}\n",
        p = prefix.display()
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

fn in_netns(netns: &Path, program: &Path) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", netns.display())).arg(program);
    c
}

/// Waits until `addr` inside the machine accepts (dialed by the backend).
fn wait_listening(app: &App, id: &MachineId, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if app.backend().dial(id, &[addr]).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing came to listen on {addr} inside the machine");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A blocking listener on `port` of the machine's loopback (bound by the
/// backend).
fn listen_in(app: &App, id: &MachineId, port: u16) -> Result<TcpListener> {
    let l = app
        .backend()
        .listen(id, SocketAddr::from(([127, 0, 0, 1], port)))
        .with_context(|| format!("listening on port {port} inside the machine"))?;
    l.set_nonblocking(false)?;
    Ok(l)
}

/// Requests/s and p99 latency (ms) of one wrk run.
struct Wrk {
    rps: f64,
    p99_ms: f64,
}

fn wrk(netns: &Path, wrk: &Path, url: &str, headers: &[String], secs: u32) -> Result<Wrk> {
    let mut c = in_netns(netns, wrk);
    c.args(["-t2", "-c64", &format!("-d{secs}s"), "--latency"]);
    for h in headers {
        c.args(["-H", h]);
    }
    c.arg(url);
    let out = c.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.contains("Non-2xx") {
        bail!(
            "wrk against {url} failed or got errors:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .with_context(|| format!("no 99% latency in wrk's output:\n{text}"))?;
    Ok(Wrk {
        rps,
        p99_ms: parse_wrk_time(p99)?,
    })
}

fn parse_wrk_time(t: &str) -> Result<f64> {
    let (num, mul) = if let Some(v) = t.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = t.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1e3)
    } else {
        bail!("odd wrk time {t:?}")
    };
    Ok(num.parse::<f64>().context("wrk time")? * mul)
}

/// One GET through the daemon's host listener; the status code.
fn get_status(daemon: SocketAddr, host: &str, token: &str) -> Option<u16> {
    let mut s = TcpStream::connect(daemon).ok()?;
    s.set_nodelay(true).ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

async fn run() -> Result<()> {
    let wrk_bin = need("wrk")?;
    let nginx_bin = need("nginx")?;
    need("nsenter")?;
    let images = std::env::var_os("FIREPIT_TEST_IMAGES")
        .map(PathBuf::from)
        .context("FIREPIT_TEST_IMAGES is not set; run `cargo xtask bench-preview`")?;
    let dir = tempfile::Builder::new().prefix("fpbp").tempdir_in("/tmp")?;
    let guest = dir.path().join("firepit-guest");
    std::fs::write(&guest, firepit_guest_bin::GUEST)?;
    std::fs::set_permissions(&guest, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let mut config = Config::new(dir.path().join("data"), std::env::current_exe()?, guest);
    config.images_dir = images;
    config.default_image = "minimal".into();
    config.instance = Some("bp".into());
    // A throwaway data dir: no disk pool to mount (and leave mounted) in it.
    config.disk_pool = firepit_daemon::config::DiskPool::Off;
    config.default_limits.disk_bytes = None;
    let host_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let daemon_addr = host_listener.local_addr()?;
    config.public_port = daemon_addr.port();
    let app = App::open(config)
        .await
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    let session = app
        .create_session(CreateSession {
            image: None,
            limits: Default::default(),
            network: NetworkMode::None,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    let id = session.id.clone();
    let result = measure(
        &app,
        &id,
        dir.path(),
        daemon_addr,
        host_listener,
        &wrk_bin,
        &nginx_bin,
    )
    .await;
    let _ = app.destroy_session(&id).await;
    result
}

async fn measure(
    app: &App,
    id: &str,
    dir: &Path,
    daemon_addr: SocketAddr,
    host_listener: tokio::net::TcpListener,
    wrk_bin: &Path,
    nginx_bin: &Path,
) -> Result<()> {
    let mid = MachineId::new(id).context("session id")?;
    // wrk and nginx run in the machine's network namespace (this bench is
    // the namespaces backend's): entered by nsenter through its init.
    let pid = app
        .backend()
        .inspect(&mid)?
        .pid
        .context("the machine does not run")?;
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let never = std::future::pending::<()>;
    tokio::spawn(firepit_daemon::serve(host_listener, app.clone(), never()));
    // The daemon's second listener, made inside the machine.
    let inside = listen_in(app, &mid, FIREPIT_IN_NS)?;
    inside.set_nonblocking(true)?;
    tokio::spawn(firepit_daemon::serve(
        tokio::net::TcpListener::from_std(inside)?,
        app.clone(),
        never(),
    ));

    let up = nginx_conf(
        dir,
        "upstream",
        1,
        &format!(
            " server {{ listen 127.0.0.1:{UPSTREAM}; keepalive_requests 100000; \
             location / {{ return 200 \"hello from the upstream\\n\"; }} }}"
        ),
    )?;
    let proxy = nginx_conf(
        dir,
        "proxy",
        2,
        &format!(
            " upstream app {{ server 127.0.0.1:{UPSTREAM}; keepalive 64; }}\n \
             server {{ listen 127.0.0.1:{NGINX_IN_NS}; keepalive_requests 100000; location / {{\n  \
             proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";\n  \
             proxy_set_header Host $http_host; proxy_set_header X-Forwarded-For $remote_addr;\n  \
             proxy_buffering off; }} }}"
        ),
    )?;
    let mut procs = Procs(Vec::new());
    for conf in [&up, &proxy] {
        let child = in_netns(&netns, nginx_bin)
            .args(["-e", "stderr", "-c"])
            .arg(conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        procs.0.push(child);
    }
    wait_listening(app, &mid, ([127, 0, 0, 1], UPSTREAM).into())?;
    wait_listening(app, &mid, ([127, 0, 0, 1], NGINX_IN_NS).into())?;

    let host = format!("{UPSTREAM}-{id}.localhost:{FIREPIT_IN_NS}");
    let headers = [
        format!("Host: {host}"),
        format!("Authorization: Bearer {}", app.token()),
    ];
    let fp_url = format!("http://127.0.0.1:{FIREPIT_IN_NS}/");
    let ng_url = format!("http://127.0.0.1:{NGINX_IN_NS}/");
    eprintln!("preview bench: warming up");
    wrk(&netns, wrk_bin, &fp_url, &headers, 2)?;
    wrk(&netns, wrk_bin, &ng_url, &headers, 2)?;
    // Alternate, twice each, and keep each one's best run.
    let mut fp = Vec::new();
    let mut ng = Vec::new();
    for round in 1..=2 {
        eprintln!("preview bench: wrk round {round} (firepit, then nginx)");
        fp.push(wrk(&netns, wrk_bin, &fp_url, &headers, 10)?);
        ng.push(wrk(&netns, wrk_bin, &ng_url, &headers, 10)?);
    }
    let best = |v: &[Wrk]| {
        v.iter()
            .max_by(|a, b| a.rps.total_cmp(&b.rps))
            .map(|w| Wrk {
                rps: w.rps,
                p99_ms: w.p99_ms,
            })
            .expect("two runs")
    };
    let (fp, ng) = (best(&fp), best(&ng));
    drop(procs);

    // bind() inside → the preview URL answers through the host listener.
    eprintln!("preview bench: bind() → answering, {BIND_RUNS} ports");
    let mut lat = Vec::with_capacity(BIND_RUNS);
    for i in 0..BIND_RUNS {
        let port = 20000 + i as u16;
        let listener = listen_in(app, &mid, port)?;
        let bound = Instant::now();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        let h = format!("{port}-{id}.localhost:{}", daemon_addr.port());
        let token = app.token().to_owned();
        let took = tokio::task::spawn_blocking(move || {
            loop {
                if get_status(daemon_addr, &h, &token) == Some(200) {
                    return Some(bound.elapsed());
                }
                if bound.elapsed() > Duration::from_secs(5) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .await?
        .with_context(|| format!("port {port} never answered through its preview URL"))?;
        let _ = server.join();
        lat.push(took.as_secs_f64() * 1e3);
    }
    let p50 = percentile(&mut lat, 50.0);
    let p95 = percentile(&mut lat, 95.0);

    eprintln!("preview bench: keystroke → echo, {KEYSTROKES} keys");
    let mut echo = echo_latency(daemon_addr, id, app.token()).await?;
    let echo_p50 = percentile(&mut echo, 50.0);
    let echo_p95 = percentile(&mut echo, 95.0);

    let ratio = fp.rps / ng.rps;
    let verdict = |ok: bool| if ok { "ok" } else { "OVER BUDGET" };
    println!(
        "preview proxy (wrk -t2 -c64 -d10s inside the machine's netns; upstream nginx `return 200` on its 127.0.0.1)"
    );
    println!("  {:<24} {:>12} {:>10}", "", "requests/s", "p99");
    println!(
        "  {:<24} {:>12.0} {:>8.2}ms",
        "firepit daemon", fp.rps, fp.p99_ms
    );
    println!(
        "  {:<24} {:>12.0} {:>8.2}ms",
        "nginx reverse proxy", ng.rps, ng.p99_ms
    );
    println!(
        "  firepit / nginx = {ratio:.2} (budget ≥ 0.90): {}",
        verdict(ratio >= 0.9)
    );
    println!(
        "bind() → preview URL answering ({} ports): p50 {p50:.2} ms, p95 {p95:.2} ms (budget p95 ≤ 20 ms): {}",
        lat.len(),
        verdict(p95 <= 20.0)
    );
    println!(
        "keystroke → echo over the terminal WebSocket ({} keys): p50 {echo_p50:.2} ms, p95 {echo_p95:.2} ms (budget p50 ≤ 2 ms): {}",
        echo.len(),
        verdict(echo_p50 <= 2.0)
    );
    Ok(())
}

/// Keystrokes timed by [`echo_latency`].
const KEYSTROKES: usize = 300;

/// Types single characters into the session's `main` shell over the daemon's
/// PTY WebSocket and times each one until its echo arrives; in milliseconds.
async fn echo_latency(daemon: SocketAddr, id: &str, token: &str) -> Result<Vec<f64>> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut req = format!("ws://{daemon}/v1/sessions/{id}/pty/main").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .context("attaching to main")?;
    // Let the scrollback and the prompt arrive, then start from a quiet line.
    let quiet = Duration::from_millis(300);
    while let Ok(Some(_)) = tokio::time::timeout(quiet, ws.next()).await {}
    let mut samples = Vec::with_capacity(KEYSTROKES);
    for i in 0..KEYSTROKES {
        if i % 50 == 49 {
            // Ctrl-U clears the typed line; wait for the terminal to settle.
            ws.send(Message::binary(b"\x15".to_vec())).await?;
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), ws.next()).await
            {
            }
        }
        let sent = Instant::now();
        ws.send(Message::binary(b"x".to_vec())).await?;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .context("a keystroke's echo never came")?
                .context("the terminal closed")??;
            if let Message::Binary(b) = msg
                && b.contains(&b'x')
            {
                break;
            }
        }
        samples.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    ws.send(Message::binary(b"\x15".to_vec())).await?;
    Ok(samples)
}
