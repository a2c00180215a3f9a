//! `firepit-bench-density`: many idle sessions on one host, behind
//! `cargo xtask bench-density`.
//!
//! For N = 1 and then N = `--sessions` (default 1000), each with a daemon of
//! its own (this binary re-executed as `__daemon`, serving the daemon's HTTP
//! API on 127.0.0.1, so its CPU time is its own process's), it:
//!
//! 1. creates N sessions one after another through `POST /v1/sessions`
//!    (NAT, the `minimal` image), timing each: create p50/p95 of the first
//!    and the last 50 (at N = 1, 50 creates each destroyed before the next,
//!    so that the figure every ratio divides by is not one sample);
//! 2. waits for the host to settle, then measures **idle CPU** over a window
//!    (`--window-s`, default 30): the CPU time of every process of every
//!    machine (the run time of every thread in the machines' cgroups,
//!    `/proc/<tid>/schedstat`) and of the daemon's process
//!    (`/proc/<pid>/stat`), as % of one core;
//! 3. **host memory per session**: the memory charged to the machines'
//!    cgroups (their parent's usage) plus the daemon's growth in resident
//!    memory since before the first create, over N; and the fall of the
//!    host's `MemAvailable` over the same time, over N (which counts what
//!    the kernel keeps for each machine outside its cgroup too, and anything
//!    else the host did meanwhile);
//! 4. with all N present: **exec round trip** (`POST .../exec` of `true`,
//!    request to the end of its NDJSON stream) on sessions spread over all
//!    N, p50/p95, and the same session's next exec right after (what an
//!    idle machine's first exec pays over a busy one's); **bind → preview**: a server in a session takes
//!    `CLOCK_MONOTONIC` (the host's: machines have no time namespace), binds
//!    and listens; the bench asks its preview URL every millisecond until
//!    it answers with that time, p50/p95 of the difference;
//! 5. **destroy all**: N `DELETE /v1/sessions/{id}` at once; the time until
//!    all are answered, and the `GET /v1/sessions/{id}` round trips a
//!    client made meanwhile (the API stays responsive), max and p95.
//!
//! It prints a table on stdout and progress on stderr; `--json` writes the
//! figures too. Being over budget is reported, not an error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use firepit_daemon::{App, Config};
use firepit_machine::namespaces::Ipv4Net;
use firepit_wire::api::{CreateSession, ExecEvent, NetworkMode, Session};
use serde::{Deserialize, Serialize};

/// The argument that makes this binary the daemon of a run.
const DAEMON_ARG: &str = "__daemon";
/// The instance name of the bench's daemons (cgroup parent, nft tables,
/// veth prefix), apart from any other daemon's.
const INSTANCE: &str = "bdens";
/// Sessions at each end whose create times are summed up.
const ENDS: usize = 50;

/// Many idle sessions on one host: idle CPU, memory, create, exec, preview
/// and destroy with all of them present, next to the same with one.
#[derive(Debug, Parser)]
#[command(name = "firepit-bench-density")]
struct Args {
    /// Sessions to create (NAT, the minimal image).
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// The idle CPU window, seconds.
    #[arg(long, default_value_t = 30)]
    window_s: u64,
    /// Settling time between the last create and the idle window, seconds.
    #[arg(long, default_value_t = 10)]
    settle_s: u64,
    /// Exec round trips to time (spread over the sessions).
    #[arg(long, default_value_t = 50)]
    execs: usize,
    /// bind → preview samples (spread over the sessions).
    #[arg(long, default_value_t = 20)]
    previews: usize,
    /// The machines' subnet (its size bounds --sessions).
    #[arg(long, default_value = "10.240.0.0/20")]
    subnet: Ipv4Net,
    /// Memory limit of each session, MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: u64,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What a daemon child says once it serves.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    url: String,
    token: String,
}

/// The figures of one run.
#[derive(Debug, Serialize)]
struct Figures {
    sessions: usize,
    create_first: Summary,
    create_last: Summary,
    idle_window_s: u64,
    guests_cpu_percent: f64,
    daemon_cpu_percent: f64,
    host_memory_mib_per_session: f64,
    mem_available_mib_per_session: f64,
    exec: Summary,
    exec_again: Summary,
    bind_to_preview: Summary,
    destroy_all_s: f64,
    api_during_destroy: Summary,
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == DAEMON_ARG) {
        return firepit_bench::main_async("firepit-bench-density daemon", daemon);
    }
    firepit_bench::main_async("firepit-bench-density", run)
}

/// The daemon of a run: `__daemon DATA_DIR SUBNET MEMORY_MIB`, images from
/// `FIREPIT_TEST_IMAGES`. Prints a [`Hello`] line, then serves until killed.
async fn daemon() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let [data, subnet, memory_mib] = args.as_slice() else {
        bail!("usage: {DAEMON_ARG} DATA_DIR SUBNET MEMORY_MIB");
    };
    let images = std::env::var_os("FIREPIT_TEST_IMAGES")
        .map(PathBuf::from)
        .context("FIREPIT_TEST_IMAGES is not set; run `cargo xtask bench-density`")?;
    let data = PathBuf::from(data);
    let guest = data.join("firepit-guest");
    std::fs::create_dir_all(&data)?;
    std::fs::write(&guest, firepit_guest_bin::GUEST)?;
    std::fs::set_permissions(&guest, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let mut config = Config::new(data.join("data"), std::env::current_exe()?, guest);
    config.images_dir = images;
    config.default_image = "minimal".into();
    config.instance = Some(INSTANCE.into());
    config.subnet = Some(subnet.parse().context("the subnet")?);
    // A throwaway data dir: no disk pool to mount (and leave mounted) in it.
    config.disk_pool = firepit_daemon::config::DiskPool::Off;
    config.default_limits.disk_bytes = None;
    config.default_limits.memory_bytes = Some(memory_mib.parse::<u64>()? << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    config.public_port = addr.port();
    let app = App::open(config)
        .await
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))?;
    let hello = Hello {
        url: format!("http://{addr}"),
        token: app.token().to_owned(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&hello)?)?;
    out.flush()?;
    drop(out);
    firepit_daemon::serve(listener, app, std::future::pending())
        .await
        .map_err(|e| anyhow::anyhow!(firepit_daemon::error::chain(&e)))
}

/// A daemon child of the bench; killed (by pid) when dropped.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
    addr: SocketAddr,
    token: String,
    http: reqwest::Client,
}

impl Daemon {
    fn start(args: &Args) -> Result<Daemon> {
        let dir = tempfile::Builder::new().prefix("fpbd").tempdir_in("/tmp")?;
        let mut child = Command::new(std::env::current_exe()?)
            .arg(DAEMON_ARG)
            .arg(dir.path())
            .arg(args.subnet.to_string())
            .arg(args.memory_mib.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("daemon.log"))?)
            .spawn()
            .context("starting the daemon")?;
        let mut line = String::new();
        let mut stdout = child.stdout.take().context("the daemon's stdout")?;
        let mut byte = [0u8; 1];
        while !line.ends_with('\n') {
            if stdout.read(&mut byte)? == 0 {
                let log =
                    std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
                let _ = child.kill();
                bail!("the daemon ended before it served:\n{log}");
            }
            line.push(byte[0] as char);
        }
        let hello: Hello = serde_json::from_str(line.trim())?;
        let addr = hello
            .url
            .trim_start_matches("http://")
            .parse()
            .context("the daemon's address")?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Daemon {
            child,
            dir,
            url: hello.url,
            addr,
            token: hello.token,
            http,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    async fn create(&self) -> Result<Session> {
        let body = CreateSession {
            network: NetworkMode::Nat,
            ..Default::default()
        };
        let r = self
            .req(reqwest::Method::POST, "/v1/sessions")
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "create: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(r.json().await?)
    }

    /// Runs `line` by `sh -c` in session `id`; its stdout.
    async fn destroy(&self, id: &str) -> Result<()> {
        let r = self
            .req(reqwest::Method::DELETE, &format!("/v1/sessions/{id}"))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("destroy {id}: {}", r.status());
        }
        Ok(())
    }

    async fn exec(&self, id: &str, line: &str) -> Result<String> {
        let body = serde_json::json!({ "command": { "shell": line } });
        let r = self
            .req(reqwest::Method::POST, &format!("/v1/sessions/{id}/exec"))
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "exec: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        let text = r.text().await?;
        let mut out = Vec::new();
        let mut exited = false;
        for l in text.lines() {
            match serde_json::from_str::<ExecEvent>(l)? {
                ExecEvent::Stdout { data } => {
                    use base64::Engine;
                    out.extend(base64::engine::general_purpose::STANDARD.decode(data)?);
                }
                ExecEvent::Exit { .. } => exited = true,
                _ => {}
            }
        }
        if !exited {
            bail!("exec in {id}: no exit in {text:?}");
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The CPU time so far of every thread of every machine, ns, by thread:
    /// the run time in `/proc/<tid>/schedstat` of each task of the machines'
    /// cgroups (their cgroup parent's in the `cpu` hierarchy on v1, or the
    /// unified one), so a thread that ended in between is missed (none do
    /// in idle machines) and one that started is counted whole.
    fn machine_threads_ns(&self) -> Result<std::collections::HashMap<u32, u64>> {
        let parent = format!("firepit-{INSTANCE}");
        let root = [
            "/sys/fs/cgroup/cpu",
            "/sys/fs/cgroup/cpu,cpuacct",
            "/sys/fs/cgroup",
        ]
        .iter()
        .map(|r| Path::new(r).join(&parent))
        .find(|p| p.is_dir())
        .context("the machines' cgroup parent is nowhere")?;
        let mut out = std::collections::HashMap::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir)?.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
            // v1 lists threads in `tasks`; v2 in `cgroup.threads`.
            let tasks = std::fs::read_to_string(dir.join("tasks"))
                .or_else(|_| std::fs::read_to_string(dir.join("cgroup.threads")))
                .unwrap_or_default();
            for tid in tasks.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                if let Some(ns) = std::fs::read_to_string(format!("/proc/{tid}/schedstat"))
                    .ok()
                    .and_then(|t| t.split_whitespace().next()?.parse().ok())
                {
                    out.insert(tid, ns);
                }
            }
        }
        Ok(out)
    }

    /// The memory charged to the machines' cgroup parent, bytes.
    fn machines_memory_bytes(&self) -> Result<u64> {
        let parent = format!("firepit-{INSTANCE}");
        let v1 = Path::new("/sys/fs/cgroup/memory")
            .join(&parent)
            .join("memory.usage_in_bytes");
        let v2 = Path::new("/sys/fs/cgroup")
            .join(&parent)
            .join("memory.current");
        let text = std::fs::read_to_string(&v1)
            .or_else(|_| std::fs::read_to_string(&v2))
            .context("no memory accounting of the machines' cgroup parent")?;
        text.trim().parse().context("the machines' memory usage")
    }

    /// The daemon's resident memory, bytes.
    fn daemon_rss_bytes(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS")?;
        Ok(kib << 10)
    }

    /// The daemon process's CPU time so far (all its threads, ended ones
    /// too: `utime + stime` of `/proc/<pid>/stat`, in clock ticks), ns.
    fn daemon_cpu_ns(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let after = stat.rsplit_once(')').context("/proc stat")?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
        // SAFETY: sysconf with a valid name.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(ticks * 1_000_000_000 / hz)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child, by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

fn mem_available_kib() -> Result<u64> {
    let m = std::fs::read_to_string("/proc/meminfo")?;
    m.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("MemAvailable")
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One GET of `/` through the daemon with `host`; the status and body.
fn get(daemon: SocketAddr, host: &str, token: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(daemon).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// In a machine: takes the time, binds the port, listens, and answers one
/// request with that time.
const SERVER: &str = r#"
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
s.settimeout(30)
c, _ = s.accept(); c.recv(4096)
body = str(t0).encode()
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
c.close()
"#;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank p50, p95 and the maximum of samples in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
struct Summary {
    n: usize,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
}

fn summary(v: &[f64]) -> Result<Summary> {
    if v.is_empty() {
        bail!("no samples");
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |p: f64| s[((p / 100.0 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    Ok(Summary {
        n: s.len(),
        p50_ms: at(50.0),
        p95_ms: at(95.0),
        max_ms: s[s.len() - 1],
    })
}

/// Spreads `k` picks over `n` items.
fn spread(n: usize, k: usize) -> impl Iterator<Item = usize> {
    let k = k.max(1);
    (0..k).map(move |i| i * n / k)
}

async fn measure(args: &Args, n: usize) -> Result<Figures> {
    eprintln!("density: N = {n}: starting a daemon");
    let d = Arc::new(Daemon::start(args)?);
    let before_kib = mem_available_kib()?;
    let rss_before = d.daemon_rss_bytes()?;
    let mut ids = Vec::with_capacity(n);
    let mut create = Vec::with_capacity(n);
    if n == 1 {
        // One sample would be the N = 1 figure that every ratio divides by:
        // take ENDS, each made and destroyed with no other session present.
        for i in 1..ENDS {
            let t = Instant::now();
            let s = d
                .create()
                .await
                .with_context(|| format!("creating sample session {i}"))?;
            create.push(ms(t.elapsed()));
            d.destroy(&s.id).await?;
        }
    }
    for i in 0..n {
        let t = Instant::now();
        let s = d
            .create()
            .await
            .with_context(|| format!("creating session {}", i + 1))?;
        create.push(ms(t.elapsed()));
        ids.push(s.id);
        if (i + 1) % 100 == 0 {
            eprintln!("density: {} sessions", i + 1);
        }
    }
    let first = &create[..create.len().min(ENDS)];
    let last = &create[create.len().saturating_sub(ENDS)..];
    eprintln!("density: settling {} s", args.settle_s);
    tokio::time::sleep(Duration::from_secs(args.settle_s)).await;
    let after_kib = mem_available_kib()?;
    let charged = d.machines_memory_bytes()? + d.daemon_rss_bytes()?.saturating_sub(rss_before);
    eprintln!("density: idle CPU over {} s", args.window_s);
    let (g0, d0, t0) = (d.machine_threads_ns()?, d.daemon_cpu_ns()?, Instant::now());
    tokio::time::sleep(Duration::from_secs(args.window_s)).await;
    let (g1, d1, t1) = (d.machine_threads_ns()?, d.daemon_cpu_ns()?, t0.elapsed());
    let guests_ns: u64 = g1
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(g0.get(tid).copied().unwrap_or(0)))
        .sum();
    // Who used it, by thread name, for the log.
    let mut by_name = std::collections::BTreeMap::<String, u64>::new();
    for (tid, ns) in &g1 {
        let name = std::fs::read_to_string(format!("/proc/{tid}/comm")).unwrap_or_default();
        *by_name.entry(name.trim().to_owned()).or_default() +=
            ns.saturating_sub(g0.get(tid).copied().unwrap_or(0));
    }
    let mut top: Vec<_> = by_name.into_iter().collect();
    top.sort_by_key(|(_, ns)| std::cmp::Reverse(*ns));
    for (name, ns) in top.iter().take(5) {
        eprintln!(
            "density: idle CPU of machine threads named {name:?}: {:.3} ms",
            *ns as f64 / 1e6
        );
    }
    let pct = |ns: u64| ns as f64 / t1.as_nanos() as f64 * 100.0;

    eprintln!("density: exec round trips");
    let (mut exec, mut exec_again) = (Vec::new(), Vec::new());
    for i in spread(n, args.execs) {
        for times in [&mut exec, &mut exec_again] {
            let t = Instant::now();
            d.exec(&ids[i], "true").await?;
            times.push(ms(t.elapsed()));
        }
    }

    eprintln!("density: bind → preview");
    let mut preview = Vec::new();
    for (k, i) in spread(n, args.previews).enumerate() {
        let id = ids[i].clone();
        let port = 21000 + k as u16;
        d.exec(&id, &format!("cat > /tmp/srv.py <<'EOF'\n{SERVER}\nEOF"))
            .await?;
        d.exec(
            &id,
            &format!("python3 /tmp/srv.py {port} >/dev/null 2>&1 </dev/null &"),
        )
        .await?;
        let (addr, token) = (d.addr, d.token.clone());
        let host = format!("{port}-{id}.localhost:{}", addr.port());
        let took = tokio::task::spawn_blocking(move || -> Option<f64> {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Some((200, body)) = get(addr, &host, &token) {
                    let now = monotonic_ns();
                    let t0: u64 = body.trim().parse().ok()?;
                    return Some(now.saturating_sub(t0) as f64 / 1e6);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        })
        .await?
        .with_context(|| format!("port {port} of {id} never answered through its preview"))?;
        preview.push(took);
    }

    eprintln!("density: destroying all {n} at once");
    let t = Instant::now();
    let watch_d = d.clone();
    let probe = ids[0].clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch_done = done.clone();
    let api = tokio::spawn(async move {
        let mut v = Vec::new();
        while !watch_done.load(std::sync::atomic::Ordering::SeqCst) {
            let t = Instant::now();
            let _ = watch_d
                .req(reqwest::Method::GET, &format!("/v1/sessions/{probe}"))
                .send()
                .await;
            v.push(ms(t.elapsed()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        v
    });
    let deletes = ids.iter().map(|id| {
        let d = d.clone();
        let id = id.clone();
        async move { d.destroy(&id).await }
    });
    let results = futures::future::join_all(deletes).await;
    let destroy_all = t.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let api = api.await?;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(Figures {
        sessions: n,
        create_first: summary(first)?,
        create_last: summary(last)?,
        idle_window_s: args.window_s,
        guests_cpu_percent: pct(guests_ns),
        daemon_cpu_percent: pct(d1.saturating_sub(d0)),
        host_memory_mib_per_session: charged as f64 / f64::from(1 << 20) / n as f64,
        mem_available_mib_per_session: (before_kib as f64 - after_kib as f64) / 1024.0 / n as f64,
        exec: summary(&exec)?,
        exec_again: summary(&exec_again)?,
        bind_to_preview: summary(&preview)?,
        destroy_all_s: destroy_all.as_secs_f64(),
        api_during_destroy: summary(&api)?,
    })
}

fn table(one: &Figures, many: &Figures) -> String {
    let n = many.sessions;
    let mut t = format!(
        "density: idle sessions through the daemon's HTTP API (NAT, minimal image)\n\
         | what | N = 1 | N = {n} | budget at N = {n} |\n|---|---|---|---|\n"
    );
    let p = |s: &Summary| format!("p50 {:.1} ms, p95 {:.1} ms", s.p50_ms, s.p95_ms);
    let rows: Vec<(String, String, String, String)> = vec![
        (
            format!("idle CPU of all guests ({} s)", many.idle_window_s),
            format!("{:.2} % of a core", one.guests_cpu_percent),
            format!("{:.2} % of a core", many.guests_cpu_percent),
            "≤ 5 %".into(),
        ),
        (
            "idle CPU of the daemon".into(),
            format!("{:.2} %", one.daemon_cpu_percent),
            format!("{:.2} %", many.daemon_cpu_percent),
            "≤ 1 %".into(),
        ),
        (
            "host memory per session (machines' cgroups + daemon's growth)".into(),
            format!("{:.2} MiB", one.host_memory_mib_per_session),
            format!("{:.2} MiB", many.host_memory_mib_per_session),
            "≤ 2 MiB".into(),
        ),
        (
            "fall of the host's MemAvailable per session".into(),
            format!("{:.2} MiB", one.mem_available_mib_per_session),
            format!("{:.2} MiB", many.mem_available_mib_per_session),
            "".into(),
        ),
        (
            format!("create, first {}", ENDS.min(n)),
            p(&one.create_first),
            p(&many.create_first),
            "".into(),
        ),
        (
            format!("create, last {}", ENDS.min(n)),
            p(&one.create_last),
            p(&many.create_last),
            format!(
                "p50 ≤ {:.1} ms (1.5 × N = 1)",
                1.5 * one.create_first.p50_ms
            ),
        ),
        (
            "exec round trip".into(),
            p(&one.exec),
            p(&many.exec),
            format!("p50 ≤ {:.1} ms (1.5 × N = 1)", 1.5 * one.exec.p50_ms),
        ),
        (
            "exec round trip, the same session's next".into(),
            p(&one.exec_again),
            p(&many.exec_again),
            "".into(),
        ),
        (
            "bind → preview answering".into(),
            p(&one.bind_to_preview),
            p(&many.bind_to_preview),
            "p95 ≤ 20 ms".into(),
        ),
        (
            "destroy all at once".into(),
            format!("{:.2} s", one.destroy_all_s),
            format!("{:.2} s", many.destroy_all_s),
            "≤ 30 s".into(),
        ),
        (
            "GET a session while they are destroyed".into(),
            p(&one.api_during_destroy),
            format!(
                "{}, max {:.1} ms",
                p(&many.api_during_destroy),
                many.api_during_destroy.max_ms
            ),
            "".into(),
        ),
    ];
    for (a, b, c, e) in rows {
        t.push_str(&format!("| {a} | {b} | {c} | {e} |\n"));
    }
    t
}

async fn run() -> Result<()> {
    let args = Args::parse();
    if args.sessions == 0 || args.execs == 0 || args.previews == 0 || args.window_s == 0 {
        bail!("--sessions, --execs, --previews and --window-s must be at least 1");
    }
    let room = (1u64 << (32 - u32::from(args.subnet.prefix()))).saturating_sub(3);
    if args.sessions as u64 > room {
        bail!(
            "--subnet {} holds {room} machines, fewer than --sessions {}",
            args.subnet,
            args.sessions
        );
    }
    let one = measure(&args, 1).await.context("with one session")?;
    let many = measure(&args, args.sessions)
        .await
        .with_context(|| format!("with {} sessions", args.sessions))?;
    print!("{}", table(&one, &many));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "one": one, "many": many }))?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
