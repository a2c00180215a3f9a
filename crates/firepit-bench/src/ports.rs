//! Port watches: what they cost in idle machines, and how soon they tell.
//!
//! For each way a guest can learn of ports (polling every 5 ms, forced with
//! the guest's `--port-poll`; and the default, `listen()` reported by its
//! seccomp filter plus socket-destroy broadcasts), one run starts `count`
//! machines (no network), waits for each guest's shell, and holds a port
//! watch open on each, as the daemon does for every running session. Then:
//!
//! - **idle CPU**: the CPU time of every guest (the machines' inits, all
//!   their threads) over a window: `utime + stime` from `/proc/<pid>/stat`
//!   (clock ticks) and the run time of their threads from
//!   `/proc/<pid>/task/*/schedstat` (nanoseconds);
//! - **listen() → announced**: in the first machine a process binds a port,
//!   reads `CLOCK_MONOTONIC` and calls `listen()`; the time from there to the
//!   `PortOpened` the watch delivers to the bench (the clock is the host's:
//!   machines have no time namespace). Also the time of the `listen()` call
//!   itself, close → `PortClosed`, and the probe's own output line (written
//!   after `listen()`) → read by the bench: the path through the guest and
//!   the scheduler that every announcement also takes.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use firepit_guest_client::{ExecEvent, ExecRequest, GuestClient, PortEvent, PortWatch};
use firepit_machine::{Backend, GuestAddress, MachineId, Network};
use firepit_progress::Progress;
use serde::Serialize;

use crate::machines::{Bench, Fleet, connect, wait_for_shell};
use crate::stats::Summary;

/// In the machine: on `open` a socket is bound and listens (`PORT T0 T1`:
/// `CLOCK_MONOTONIC` before and after `listen()`, ns); on `close` it is
/// closed (`T`: before `close()`).
const PROBE: &str = r#"
import socket, sys, time
s = None
now = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)
for line in sys.stdin:
    if line.strip() == "open":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        t0 = now()
        s.listen()
        t1 = now()
        print(s.getsockname()[1], t0, t1, flush=True)
    else:
        t = now()
        s.close()
        print(t, flush=True)
"#;

/// Time between one probe event and the next: past the looks a guest makes
/// after an event (0 to 100 ms), so each is timed alone.
pub const SPACING: Duration = Duration::from_millis(150);

/// How a guest learns of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every 5 ms (`--port-poll`).
    Poll,
    /// `listen()` reported by the seccomp filter, ends by broadcasts, 2 s rescan.
    Events,
}

impl Mode {
    /// The guest arguments that select it.
    pub fn guest_args(self) -> Vec<String> {
        match self {
            Mode::Poll => vec!["--port-poll".into()],
            Mode::Events => Vec::new(),
        }
    }

    /// Its name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Poll => "polling every 5 ms",
            Mode::Events => "listen() reported",
        }
    }
}

/// What one mode costs and how soon it tells.
#[derive(Debug, Clone, Serialize)]
pub struct ModeFigures {
    /// Which mode.
    pub mode: Mode,
    /// Machines with a watch open.
    pub machines: usize,
    /// The window the CPU was measured over, seconds.
    pub window_s: f64,
    /// `utime + stime` of all the guests over the window, milliseconds.
    pub guests_cpu_ms: f64,
    /// Run time of all the guests' threads over the window, milliseconds.
    pub guests_run_ms: f64,
    /// `listen()` → `PortOpened` at the bench.
    pub opened: Summary,
    /// `close()` → `PortClosed` at the bench.
    pub closed: Summary,
    /// The `listen()` call itself.
    pub listen_call: Summary,
    /// For comparison: the probe's line after `listen()` → read by the bench
    /// (a process's output through the guest: the transport alone).
    pub output: Summary,
}

impl ModeFigures {
    /// Its mode's name in the table.
    pub fn mode_label(&self) -> &'static str {
        self.mode.label()
    }

    /// The guests' run time as a share of one core, percent.
    pub fn core_pct(&self) -> f64 {
        self.guests_run_ms / (self.window_s * 1e3) * 100.0
    }
}

/// Both modes, measured one after the other in one run.
#[derive(Debug, Clone, Serialize)]
pub struct PortFigures {
    /// Polling, as watches worked before.
    pub poll: ModeFigures,
    /// The default.
    pub events: ModeFigures,
}

/// `CLOCK_MONOTONIC` now, nanoseconds.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `utime + stime` of a process (all its threads, live and gone), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu(&text).with_context(|| format!("parsing {path}"))
}

/// `utime + stime` of a `/proc/<pid>/stat` line (fields 14 and 15, counted
/// after the command name, which may hold spaces and parentheses).
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The run time of a process's live threads, nanoseconds (`schedstat`'s first field).
fn run_ns(pid: u32) -> Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for t in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = t?.path().join("schedstat");
        // A thread that ended meanwhile: it ran nothing more.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .with_context(|| format!("parsing {}", path.display()))?;
    }
    Ok(total)
}

/// Clock ticks per second.
fn ticks_per_s() -> f64 {
    // SAFETY: sysconf with a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Lines of an exec's stdout.
struct Lines {
    exec: firepit_guest_client::Exec,
    buf: Vec<u8>,
    lines: VecDeque<String>,
}

impl Lines {
    async fn next(&mut self) -> Result<String> {
        loop {
            if let Some(l) = self.lines.pop_front() {
                return Ok(l);
            }
            match self.exec.next_event().await? {
                Some(ExecEvent::Stdout(b)) => {
                    self.buf.extend_from_slice(&b);
                    while let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
                        let line: Vec<u8> = self.buf.drain(..=i).collect();
                        self.lines
                            .push_back(String::from_utf8_lossy(&line).trim().to_owned());
                    }
                }
                Some(ExecEvent::Stderr(b)) => {
                    bail!("the probe failed: {}", String::from_utf8_lossy(&b))
                }
                Some(ExecEvent::Exit(s)) => bail!("the probe ended: {s:?}"),
                None => bail!("the probe's stream ended"),
            }
        }
    }
}

/// What [`probe`] timed.
#[derive(Default)]
struct Probed {
    opened: Vec<Duration>,
    closed: Vec<Duration>,
    call: Vec<Duration>,
    output: Vec<Duration>,
}

/// Opens and closes a port `samples` times in the machine behind `client`,
/// timing each announcement on `w`: a task of its own takes the watch's
/// events and stamps them as they arrive, so nothing else the bench waits
/// for (the probe's output) delays the stamps.
async fn probe(client: &GuestClient, w: &mut PortWatch, samples: usize) -> Result<Probed> {
    let mut req = ExecRequest::argv(["python3", "-c", PROBE]);
    req.stdin = true;
    let exec = client
        .exec(req)
        .await
        .context("starting the probe (python3 in the image)")?;
    let mut out = Lines {
        exec,
        buf: Vec::new(),
        lines: VecDeque::new(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = async {
        loop {
            let ev = w.next().await?.context("the port watch ended")?;
            let _ = tx.send((ev, monotonic_ns()));
        }
    };
    // When `port` was announced opened (or closed).
    let mut stamp = async |port: u16, opened: bool| -> Result<u64> {
        loop {
            match rx.recv().await.context("the recorder ended")? {
                (PortEvent::Opened(p), t) if opened && p.port == port => return Ok(t),
                (PortEvent::Closed(p), t) if !opened && p.port == port => return Ok(t),
                _ => {}
            }
        }
    };
    let driver = async {
        let mut p = Probed::default();
        let ns = |a: u64, b: u64| Duration::from_nanos(b.saturating_sub(a));
        for _ in 0..samples {
            // Apart from the looks the last event caused.
            tokio::time::sleep(SPACING).await;
            out.exec.stdin_write(Bytes::from_static(b"open\n")).await?;
            let line = out.next().await?;
            let read = monotonic_ns();
            let v: Vec<u64> = line
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(|| format!("the probe said {line:?}"))?;
            let [port, t0, t1] = v[..] else {
                bail!("the probe said {line:?}");
            };
            let port = u16::try_from(port)?;
            let seen = tokio::time::timeout(Duration::from_secs(10), stamp(port, true))
                .await
                .with_context(|| format!("port {port} was never announced"))??;
            p.opened.push(ns(t0, seen));
            p.call.push(ns(t0, t1));
            p.output.push(ns(t1, read));
            tokio::time::sleep(SPACING).await;
            out.exec.stdin_write(Bytes::from_static(b"close\n")).await?;
            let t: u64 = out
                .next()
                .await?
                .parse()
                .context("the probe's close time")?;
            let seen = tokio::time::timeout(Duration::from_secs(10), stamp(port, false))
                .await
                .with_context(|| format!("port {port} was never announced closed"))??;
            p.closed.push(ns(t, seen));
        }
        out.exec.stdin_close().await?;
        anyhow::Ok(p)
    };
    tokio::select! {
        r = recorder => r,
        r = driver => r,
    }
}

impl Bench {
    /// Starts `count` machines with a port watch each, measures the guests'
    /// CPU over `window` and `samples` announcements in the first, and
    /// destroys them.
    pub fn port_watches(
        &self,
        mode: Mode,
        count: usize,
        window: Duration,
        samples: usize,
    ) -> Result<ModeFigures> {
        let mut fleet = Fleet::new(self.backend());
        let mut pids = Vec::with_capacity(count);
        let mut watches = Vec::with_capacity(count);
        let mut progress = Progress::counter(
            format!("firepit-bench: port watches ({}): machines", mode.label()),
            count as u64,
        );
        for i in 0..count {
            let id = MachineId::new(format!("bench-ports-{i}"))?;
            let info = self
                .backend()
                .create(&self.spec(&id, Network::None))
                .with_context(|| format!("creating {id}"))?;
            fleet.ids.push(id.clone());
            pids.push(info.pid.context("a created machine has no init pid")?);
            let GuestAddress::Unix { path: sock, .. } = self.backend().guest_address(&id)?;
            let (client, watch) = self.rt().block_on(async {
                wait_for_shell(&sock).await?;
                let client = connect(&sock).await?;
                let watch = client.watch_ports().await?;
                anyhow::Ok((client, watch))
            })?;
            watches.push((client, watch));
            progress.inc();
        }
        progress.finish();
        // Let the shells settle.
        self.rt()
            .block_on(async { tokio::time::sleep(Duration::from_secs(2)).await });
        let ticks = |pids: &[u32]| -> Result<u64> { pids.iter().map(|&p| cpu_ticks(p)).sum() };
        let runs = |pids: &[u32]| -> Result<u64> { pids.iter().map(|&p| run_ns(p)).sum() };
        eprintln!(
            "firepit-bench: port watches ({}): {count} idle guests for {window:?}",
            mode.label()
        );
        let (t0, r0) = (ticks(&pids)?, runs(&pids)?);
        // The clients' tasks run meanwhile, taking whatever the watches send.
        self.rt()
            .block_on(async { tokio::time::sleep(window).await });
        let (t1, r1) = (ticks(&pids)?, runs(&pids)?);
        eprintln!(
            "firepit-bench: port watches ({}): {samples} listen() → announced",
            mode.label()
        );
        let (client, watch) = watches.first_mut().context("no machine")?;
        let p = self.rt().block_on(probe(client, watch, samples))?;
        drop(watches);
        fleet.destroy_all()?;
        let summary = |v: &[Duration]| Summary::of(v).context("no samples");
        Ok(ModeFigures {
            mode,
            machines: count,
            window_s: window.as_secs_f64(),
            guests_cpu_ms: (t1 - t0) as f64 / ticks_per_s() * 1e3,
            guests_run_ms: (r1 - r0) as f64 / 1e6,
            opened: summary(&p.opened)?,
            closed: summary(&p.closed)?,
            listen_call: summary(&p.call)?,
            output: summary(&p.output)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_utime_plus_stime() {
        let stat = "1 (firepit guest) S 0 1 1 0 -1 4194560 500 0 0 0 7 5 0 0 20 0 2 0 100 0 0";
        assert_eq!(parse_stat_cpu(stat), Some(12));
        assert_eq!(parse_stat_cpu("1 (x) S"), None);
    }
}
