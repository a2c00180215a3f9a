//! `firepit-bench`: the machine benchmark behind `cargo xtask bench`.
//!
//! In one run it measures, against the budgets of DESIGN.md:
//! create → first exec output and destroy (p50, p95) of namespaces machines
//! running the real guest, with and without network; the memory of many idle
//! machines (PSS of their processes, their memory cgroups, the host's
//! `MemAvailable`); and the same figures for a bare `unshare` + `chroot` of
//! the same image, the floor; the idle CPU of machines with a port watch
//! open, and how soon a port is announced, with the guest polling and with
//! `listen()` reported (see `ports.rs`); and the agent loop's own time per
//! step, model and tool time excluded (see `agent.rs`); checkpoints,
//! restore and fork next to a plain copy of the same files (see
//! `checkpoints.rs`). It prints a table on stdout, progress on
//! stderr, and optionally JSON. Being over budget is reported, not an error.
//!
//! The machine figures need root and `FIREPIT_TEST_ROOTFS` (an image tree owned by
//! `FIREPIT_TEST_UID_BASE`, default 100000), which `cargo xtask bench` sets.

mod agent;
mod checkpoints;
mod floor;
mod machines;
mod memory;
mod ports;
mod report;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use firepit_machine::Network;

use crate::machines::{Bench, Settings};
use crate::ports::{Mode, ModeFigures, PortFigures};
use crate::report::{MachineReport, Report};
use crate::stats::Summary;

/// Measures machine creation, destruction and idle memory against the budgets.
#[derive(Debug, Parser)]
#[command(name = "firepit-bench")]
struct Args {
    /// Create → exec → destroy cycles per network mode, and floor spawns.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Idle machines (and idle floors) alive at once for the memory figures.
    #[arg(long, default_value_t = 100)]
    idle: usize,
    /// Memory limit of each machine, MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: u64,
    /// Machines with a port watch open, for the idle CPU of port watches.
    #[arg(long, default_value_t = 50)]
    ports_machines: usize,
    /// The window their CPU time is measured over, seconds.
    #[arg(long, default_value_t = 10)]
    ports_window_s: u64,
    /// listen() → announced samples per mode (each takes 0.3 s).
    #[arg(long, default_value_t = 50)]
    ports_samples: usize,
    /// Tool-call steps of the agent run (each sink).
    #[arg(long, default_value_t = 50)]
    agent_steps: usize,
    /// Samples of each checkpoint figure (the 200 MiB one takes `--runs-big`).
    #[arg(long, default_value_t = 20)]
    checkpoint_runs: usize,
    /// Samples of the 200 MiB checkpoint and its floor.
    #[arg(long, default_value_t = 3)]
    runs_big: usize,
    /// Measure only this part (default: all of them).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    /// Machines and the floor.
    Machines,
    /// Port watches: idle CPU and announcement latency, polling vs events.
    Ports,
    /// The agent loop's overhead per step.
    Agent,
    /// Checkpoints, restore and fork, next to `cp -a` of the same files.
    Checkpoints,
}

fn main() -> ExitCode {
    // The backend re-executes this binary as its launcher; that must happen
    // before anything else, threads above all.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == firepit_machine::LAUNCH_ARG)
    {
        firepit_machine::launcher_main();
    }
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("firepit-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn settings(args: &Args) -> Result<Settings> {
    let Some(rootfs) = std::env::var_os("FIREPIT_TEST_ROOTFS").map(PathBuf::from) else {
        bail!(
            "FIREPIT_TEST_ROOTFS is not set: point it at an image's root filesystem tree whose \
             files are owned by FIREPIT_TEST_UID_BASE (default 100000), or run `cargo xtask bench`"
        );
    };
    if !rootfs.join("bin/echo").exists() {
        bail!(
            "FIREPIT_TEST_ROOTFS={} has no bin/echo; is it a root filesystem tree?",
            rootfs.display()
        );
    }
    let uid_base = match std::env::var("FIREPIT_TEST_UID_BASE") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("FIREPIT_TEST_UID_BASE={v:?} is not a uid"))?,
        Err(_) => 100000,
    };
    if args.runs == 0 || args.idle == 0 {
        bail!("--runs and --idle must be at least 1");
    }
    Ok(Settings {
        rootfs,
        uid_base,
        memory_bytes: args.memory_mib << 20,
        guest_args: Vec::new(),
    })
}

fn run(args: &Args) -> Result<()> {
    if args.agent_steps == 0 {
        bail!("--agent-steps must be at least 1");
    }
    let machines = match args.only {
        None | Some(Only::Machines) => Some(machines(args)?),
        _ => None,
    };
    let ports = match args.only {
        None | Some(Only::Ports) => Some(ports(args)?),
        _ => None,
    };
    let agent = match args.only {
        None | Some(Only::Agent) => {
            Some(agent::measure(args.agent_steps).context("measuring the agent loop")?)
        }
        _ => None,
    };
    let checkpoints = match args.only {
        None | Some(Only::Checkpoints) => {
            if args.checkpoint_runs == 0 || args.runs_big == 0 {
                bail!("--checkpoint-runs and --runs-big must be at least 1");
            }
            Some(
                Bench::new(settings(args)?)?
                    .checkpoints(args.checkpoint_runs, args.runs_big)
                    .context("measuring checkpoints")?,
            )
        }
        _ => None,
    };
    let report = Report {
        machines,
        ports,
        agent,
        checkpoints,
    };
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Port watches polling, then with `listen()` reported, in one run.
fn ports(args: &Args) -> Result<PortFigures> {
    if args.ports_machines == 0 || args.ports_samples == 0 || args.ports_window_s == 0 {
        bail!("--ports-machines, --ports-samples and --ports-window-s must be at least 1");
    }
    let measure = |mode: Mode| -> Result<ModeFigures> {
        let mut settings = settings(args)?;
        settings.guest_args = mode.guest_args();
        Bench::new(settings)?.port_watches(
            mode,
            args.ports_machines,
            Duration::from_secs(args.ports_window_s),
            args.ports_samples,
        )
    };
    Ok(PortFigures {
        poll: measure(Mode::Poll).context("measuring polling port watches")?,
        events: measure(Mode::Events).context("measuring port watches told of listen()")?,
    })
}

fn machines(args: &Args) -> Result<MachineReport> {
    let settings = settings(args)?;
    let rootfs = settings.rootfs.clone();
    let bench = Bench::new(settings)?;

    let none = bench.cycles(Network::None, args.runs)?;
    let nat = bench.cycles(Network::Nat, args.runs)?;
    let idle = bench.idle_memory(args.idle)?;
    let floor_first = floor::first_output(&rootfs, args.runs)?;
    let floor_idle = floor::idle_memory(&rootfs, args.idle)?;

    let summary = |v: &[_]| Summary::of(v).context("no samples");
    Ok(MachineReport {
        runs: args.runs,
        idle: args.idle,
        memory_limit_mib: args.memory_mib,
        first_output_none: summary(&none.first_output)?,
        first_output_nat: summary(&nat.first_output)?,
        destroy_none: summary(&none.destroy)?,
        destroy_nat: summary(&nat.destroy)?,
        floor_first_output: summary(&floor_first)?,
        idle_machines: idle,
        idle_floors: floor_idle,
        floor: floor::DESCRIPTION,
    })
}
