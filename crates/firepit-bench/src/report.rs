//! The results of a run and their table, with the budgets of DESIGN.md next
//! to the figures.

use std::fmt::Write;

use serde::Serialize;

use crate::agent::{AgentFigures, OVERHEAD_P95_MS, SinkFigures};
use crate::checkpoints::{
    BIG_FACTOR, CheckpointFigures, MANY_FILES, RESTORE_P50_MS, RUNNING_1M_P50_MS, STOPPED_P50_MS,
};
use crate::memory::MemoryFigures;
use crate::ports::{ModeFigures, PortFigures};
use crate::stats::Summary;

/// Budget: new session → first exec output, p50, milliseconds.
pub const FIRST_OUTPUT_P50_MS: f64 = 10.0;
/// Budget: an idle session's host + guest memory, bytes.
pub const IDLE_BYTES: u64 = 4 << 20;

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The machine figures (absent with `--only agent`).
    #[serde(flatten)]
    pub machines: Option<MachineReport>,
    /// Port watches, polling and with `listen()` reported (absent with `--only` other parts).
    pub ports: Option<PortFigures>,
    /// The agent loop's figures (absent with `--only machines`).
    pub agent: Option<AgentFigures>,
    /// Checkpoints, restore and fork (absent with `--only` other parts).
    pub checkpoints: Option<CheckpointFigures>,
}

/// What the machine measurements found.
#[derive(Debug, Serialize)]
pub struct MachineReport {
    /// Cycles per network mode, and floor spawns.
    pub runs: usize,
    /// Idle instances alive at once.
    pub idle: usize,
    /// Memory limit of each machine.
    pub memory_limit_mib: u64,
    /// Machine without network: create → first stdout of `echo hi`.
    pub first_output_none: Summary,
    /// Machine with NAT: create → first stdout of `echo hi`.
    pub first_output_nat: Summary,
    /// Machine without network: destroy.
    pub destroy_none: Summary,
    /// Machine with NAT: destroy.
    pub destroy_nat: Summary,
    /// Floor: spawn → first stdout of `echo hi`.
    pub floor_first_output: Summary,
    /// Idle machines (no network).
    pub idle_machines: MemoryFigures,
    /// Idle floors running `sleep`.
    pub idle_floors: MemoryFigures,
    /// How the floor is isolated.
    pub floor: &'static str,
}

/// One line of the table.
struct Row {
    what: String,
    n: usize,
    value: String,
    p95: String,
    budget: &'static str,
    verdict: &'static str,
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "OVER" }
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / f64::from(1u32 << 20))
}

fn latency(what: &str, s: &Summary, budgeted: bool) -> Row {
    Row {
        what: what.into(),
        n: s.n,
        value: format!("{:.2} ms", s.p50_ms),
        p95: format!("{:.2} ms", s.p95_ms),
        budget: if budgeted { "p50 <= 10 ms" } else { "" },
        verdict: if budgeted {
            verdict(s.p50_ms <= FIRST_OUTPUT_P50_MS)
        } else {
            ""
        },
    }
}

fn memory_rows(who: &str, m: &MemoryFigures, budgeted: bool) -> Vec<Row> {
    let row = |what: String, bytes: f64| Row {
        what,
        n: m.instances,
        value: mib(bytes),
        p95: String::new(),
        budget: if budgeted { "<= 4 MiB" } else { "" },
        verdict: if budgeted {
            verdict(bytes <= IDLE_BYTES as f64)
        } else {
            ""
        },
    };
    let mut rows = vec![row(
        format!(
            "{who}: PSS of its processes ({:.1} procs)",
            m.procs_per_instance
        ),
        m.pss_avg_bytes as f64,
    )];
    if let Some(cg) = m.cgroup_avg_bytes {
        rows.push(row(format!("{who}: memory cgroup usage"), cg as f64));
    }
    rows.push(row(
        format!("{who}: host MemAvailable drop / n"),
        m.mem_available_drop_avg_bytes as f64,
    ));
    rows
}

fn checkpoint_rows(c: &CheckpointFigures) -> Vec<Row> {
    let row = |what: &str, s: &Summary, budget: &'static str, pass: Option<bool>| Row {
        what: what.into(),
        n: s.n,
        value: format!("{:.2} ms", s.p50_ms),
        p95: format!("{:.2} ms", s.p95_ms),
        budget,
        verdict: pass.map_or("", verdict),
    };
    let ratio = c.running_200m.p50_ms / c.floor_200m.p50_ms.max(1e-9);
    vec![
        row(
            "checkpoint, stopped machine",
            &c.stopped,
            "p50 <= 20 ms",
            Some(c.stopped.p50_ms <= STOPPED_P50_MS),
        ),
        row(
            "fork from a checkpoint -> first output",
            &c.fork_first_output,
            "p50 <= 20 ms",
            Some(c.fork_first_output.p50_ms <= STOPPED_P50_MS),
        ),
        row(
            "checkpoint, running, 1 MiB changed",
            &c.running_1m,
            "p50 <= 50 ms",
            Some(c.running_1m.p50_ms <= RUNNING_1M_P50_MS),
        ),
        row(
            &format!("checkpoint, running, 200 MiB changed ({ratio:.2} x floor)"),
            &c.running_200m,
            "<= 1.5 x floor",
            Some(ratio <= BIG_FACTOR),
        ),
        row(
            "floor: cp -a --reflink=never + sync of that upper",
            &c.floor_200m,
            "",
            None,
        ),
        row(
            "restore -> first output",
            &c.restore_first_output,
            "p50 <= 100 ms",
            Some(c.restore_first_output.p50_ms <= RESTORE_P50_MS),
        ),
        row(
            &format!("checkpoint, running, {MANY_FILES} files"),
            &c.running_many,
            "",
            None,
        ),
        row(
            &format!("fork with {MANY_FILES} files -> first output"),
            &c.fork_many_first_output,
            "",
            None,
        ),
    ]
}

fn port_rows(m: &ModeFigures) -> Vec<Row> {
    let mode = m.mode_label();
    let lat = |what: &str, s: &Summary| Row {
        what: format!("{what}, {mode}"),
        n: s.n,
        value: format!("{:.3} ms", s.p50_ms),
        p95: format!("{:.3} ms", s.p95_ms),
        budget: "",
        verdict: "",
    };
    vec![
        Row {
            what: format!(
                "idle guests with a port watch, {mode}: CPU over {:.0} s",
                m.window_s
            ),
            n: m.machines,
            value: format!("{:.1} ms", m.guests_run_ms),
            p95: String::new(),
            budget: "",
            verdict: "",
        },
        Row {
            what: format!("  = share of one core, all {} guests", m.machines),
            n: m.machines,
            value: format!("{:.2} %", m.core_pct()),
            p95: String::new(),
            budget: "",
            verdict: "",
        },
        Row {
            what: "  utime+stime of the inits (clock ticks)".into(),
            n: m.machines,
            value: format!("{:.0} ms", m.guests_cpu_ms),
            p95: String::new(),
            budget: "",
            verdict: "",
        },
        lat("listen() -> port announced", &m.opened),
        lat("close() -> port announced closed", &m.closed),
        lat("the listen() call itself", &m.listen_call),
        lat("  for comparison: a line of output -> bench", &m.output),
    ]
}

fn port_notes(p: &PortFigures, out: &mut String) {
    let per = |m: &ModeFigures| m.core_pct() / m.machines as f64;
    let _ = writeln!(
        out,
        "port watches: {} machines (no network), each guest with one watch open as the daemon \
         keeps per running session, idle for the window; CPU = run time of the inits' threads \
         (schedstat). Per idle machine: {:.3} % of a core polling, {:.4} % with listen() reported \
         ({:.0} x less). Announced = PortOpened/PortClosed at the bench through the guest \
         protocol, timed from CLOCK_MONOTONIC read in the machine right before listen()/close(), \
         each event {} ms apart from the last.",
        p.events.machines,
        per(&p.poll),
        per(&p.events),
        p.poll.guests_run_ms / p.events.guests_run_ms.max(f64::MIN_POSITIVE),
        crate::ports::SPACING.as_millis()
    );
}

fn agent_rows(a: &AgentFigures) -> Vec<Row> {
    let mut rows = Vec::new();
    for f in &a.sinks {
        let SinkFigures {
            sink,
            step,
            model,
            tool,
            overhead,
            ..
        } = f;
        let row = |what: &str, s: &Summary, budgeted: bool| Row {
            what: format!("agent step, {sink}: {what}"),
            n: s.n,
            value: format!("{:.3} ms", s.p50_ms),
            p95: format!("{:.3} ms", s.p95_ms),
            budget: if budgeted { "p95 <= 5 ms" } else { "" },
            verdict: if budgeted {
                verdict(s.p95_ms <= OVERHEAD_P95_MS)
            } else {
                ""
            },
        };
        rows.push(row("loop overhead", overhead, true));
        rows.push(row("whole step", step, false));
        rows.push(row("model (stand-in)", model, false));
        rows.push(row("tool (read_file)", tool, false));
    }
    rows
}

impl MachineReport {
    fn rows(&self) -> Vec<Row> {
        let mut rows = vec![
            latency(
                "create -> first output, machine (net none)",
                &self.first_output_none,
                true,
            ),
            latency(
                "create -> first output, machine (net nat)",
                &self.first_output_nat,
                true,
            ),
            latency(
                "spawn -> first output, floor",
                &self.floor_first_output,
                false,
            ),
            latency("destroy, machine (net none)", &self.destroy_none, false),
            latency("destroy, machine (net nat)", &self.destroy_nat, false),
        ];
        rows.extend(memory_rows("idle machine", &self.idle_machines, true));
        rows.extend(memory_rows("idle floor", &self.idle_floors, false));
        rows
    }

    fn notes(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "machines: namespaces backend + real guest, {} MiB limit, idle ones without network; \
             floor: {} (root mapped to root, not to uid_base: newuidmap refuses unlisted ranges).",
            self.memory_limit_mib, self.floor
        );
        let _ = writeln!(
            out,
            "PSS shares pages between instances; the cgroup figure adds kernel memory and the page \
             cache an instance touched first; MemAvailable is host-wide and noisy."
        );
    }
}

fn agent_notes(a: &AgentFigures, out: &mut String) {
    let bytes = a
        .sinks
        .iter()
        .map(|s| s.last_request_bytes)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "agent: the real loop (reqwest + SSE, history, trimming, transcript) for {} steps, each one \
         streamed turn with a read_file call of a tiny file through the real guest (a plain process, \
         no machine), against an in-process stand-in OpenAI-compatible server that answers at once; \
         the last request carried the whole history, {:.1} KiB.",
        a.steps,
        bytes as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "step = request reaches the stand-in -> next request reaches it; model = request read -> \
         last chunk handed to the HTTP server (stand-in side, so parsing the stream counts as \
         overhead); tool = tool_started recorded -> tool_result about to be recorded; overhead = \
         step - model - tool (sink writes included). The stand-in shares the runtime and CPUs."
    );
}

impl Report {
    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let mut rows = Vec::new();
        if let Some(m) = &self.machines {
            rows.extend(m.rows());
        }
        if let Some(p) = &self.ports {
            rows.extend(port_rows(&p.poll));
            rows.extend(port_rows(&p.events));
        }
        if let Some(a) = &self.agent {
            rows.extend(agent_rows(a));
        }
        if let Some(c) = &self.checkpoints {
            rows.extend(checkpoint_rows(c));
        }

        let head = ["metric", "n", "p50 / avg", "p95", "budget", ""];
        let cells = |r: &Row| {
            [
                r.what.clone(),
                r.n.to_string(),
                r.value.clone(),
                r.p95.clone(),
                r.budget.to_string(),
                r.verdict.to_string(),
            ]
        };
        let all: Vec<[String; 6]> = std::iter::once(head.map(String::from))
            .chain(rows.iter().map(cells))
            .collect();
        let mut width = [0usize; 6];
        for r in &all {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for (i, r) in all.iter().enumerate() {
            let mut line = String::new();
            for (j, (c, w)) in r.iter().zip(width).enumerate() {
                // Text left, numbers right.
                let _ = if j == 0 || j >= 4 {
                    write!(line, "{c:<w$}  ")
                } else {
                    write!(line, "{c:>w$}  ")
                };
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if i == 0 {
                let total: usize = width.iter().sum::<usize>() + 2 * (width.len() - 1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        if let Some(m) = &self.machines {
            out.push('\n');
            m.notes(&mut out);
        }
        if let Some(p) = &self.ports {
            out.push('\n');
            port_notes(p, &mut out);
        }
        if let Some(a) = &self.agent {
            out.push('\n');
            agent_notes(a, &mut out);
        }
        out
    }
}
