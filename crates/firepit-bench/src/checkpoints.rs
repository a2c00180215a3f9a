//! Checkpoints, restore and fork of real machines, next to a plain copy of
//! the same upper dir (`cp -a --reflink=never`, then `sync`) as the floor.
//!
//! - stopped checkpoint: a stopped machine with 1 MiB of its own files;
//! - fork → first output: `fork` from a checkpoint start → the first stdout
//!   bytes of `echo hi` in the new machine;
//! - running checkpoint with 1 MiB changed: 1 MiB written (not synced) since
//!   the last checkpoint, then `checkpoint` (the freeze, the snapshot with
//!   its flush of what is dirty, the thaw, the record);
//! - running checkpoint with 200 MiB changed, and the floor: the same upper
//!   (with its 200 MiB) copied by `cp -a` without reflinks (btrfs' `cp -a`
//!   would otherwise share extents, which is a snapshot in all but name) and
//!   synced, so both write what changed to disk;
//! - restore → first output: `restore` start → first stdout bytes of `echo hi`;
//! - with [`MANY_FILES`] small files in the machine (a `node_modules`'
//!   worth), no budget: a running checkpoint (its size is a walk of the
//!   files) and fork from it → first output (the fork's files keep their
//!   owners, mapped onto its range: no walk).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use firepit_guest_client::{ExecEvent, ExecRequest};
use firepit_machine::{Backend, CheckpointId, GuestAddress, MachineId, Network, NewCheckpoint};
use firepit_progress::Progress;
use serde::Serialize;

use crate::machines::{Bench, Fleet, connect};
use crate::stats::Summary;

/// Budget: a stopped machine's checkpoint, and a fork, p50 ms.
pub const STOPPED_P50_MS: f64 = 20.0;
/// Budget: a running machine's checkpoint with 1 MiB changed, p50 ms.
pub const RUNNING_1M_P50_MS: f64 = 50.0;
/// Budget: restore → first output, p50 ms.
pub const RESTORE_P50_MS: f64 = 100.0;
/// Budget: a running checkpoint with 200 MiB changed, times the floor.
pub const BIG_FACTOR: f64 = 1.5;
/// Files in the machine for the per-file figures.
pub const MANY_FILES: usize = 20_000;

/// What the checkpoint part measured.
#[derive(Debug, Serialize)]
pub struct CheckpointFigures {
    /// Checkpoint of a stopped machine.
    pub stopped: Summary,
    /// Fork from a checkpoint → first output in the fork.
    pub fork_first_output: Summary,
    /// Checkpoint of a running machine, 1 MiB changed since the last one.
    pub running_1m: Summary,
    /// Checkpoint of a running machine, 200 MiB changed since the last one.
    pub running_200m: Summary,
    /// `cp -a --reflink=never` + `sync` of the same upper (with its 200 MiB).
    pub floor_200m: Summary,
    /// Restore of a running machine → first output.
    pub restore_first_output: Summary,
    /// Checkpoint of a running machine with [`MANY_FILES`] files.
    pub running_many: Summary,
    /// Fork from that checkpoint → first output in the fork.
    pub fork_many_first_output: Summary,
}

fn new(id: &str) -> Result<NewCheckpoint> {
    Ok(NewCheckpoint {
        id: CheckpointId::new(id)?,
        name: None,
        made_by: "bench".into(),
    })
}

impl Bench {
    /// Runs the checkpoint part: `runs` samples of each small figure and
    /// `big_runs` of the 200 MiB one and its floor.
    pub fn checkpoints(&self, runs: usize, big_runs: usize) -> Result<CheckpointFigures> {
        let b = self.backend();
        let mut fleet = Fleet::new(b);
        let id = MachineId::new("bench-cp")?;
        let _ = b.destroy(&id);
        b.create(&self.spec(&id, Network::None))
            .context("creating the machine")?;
        fleet.ids.push(id.clone());
        let total = (6 * runs + 2 * big_runs) as u64;
        let mut progress = Progress::counter("firepit-bench: checkpoints", total);
        self.sh(&id, "head -c 1048576 /dev/urandom > /root/base && sync")?;

        // Stopped.
        b.stop(&id)?;
        let mut stopped = Vec::new();
        for i in 0..runs {
            let t = Instant::now();
            b.checkpoint(&id, &new(&format!("s{i}"))?)?;
            stopped.push(t.elapsed());
            progress.inc();
        }
        // Fork → first output, from the first stopped checkpoint.
        let fork = self.forks(&mut fleet, &id, "s0", "bench-cp-fork", runs, &mut progress)?;
        b.start(&id)?;

        // Running, 1 MiB changed.
        let mut small = Vec::new();
        for i in 0..runs {
            self.sh(
                &id,
                &format!("head -c 1048576 /dev/urandom > /root/small-{i}"),
            )?;
            let t = Instant::now();
            b.checkpoint(&id, &new(&format!("r{i}"))?)?;
            small.push(t.elapsed());
            progress.inc();
        }

        // Running, 200 MiB changed, and the floor on the same upper.
        let mut big = Vec::new();
        let mut floor = Vec::new();
        let upper = Path::new(crate::machines::POOL_DIR)
            .join(id.as_str())
            .join("upper");
        let copy = Path::new(crate::machines::POOL_DIR).join("bench-cp-floor");
        for i in 0..big_runs {
            self.sh(
                &id,
                &format!("rm -f /root/big-*; head -c 209715200 /dev/urandom > /root/big-{i}"),
            )?;
            let t = Instant::now();
            b.checkpoint(&id, &new(&format!("b{i}"))?)?;
            big.push(t.elapsed());
            progress.inc();
            let _ = std::fs::remove_dir_all(&copy);
            let t = Instant::now();
            run(Command::new("cp")
                .args(["-a", "--reflink=never"])
                .arg(&upper)
                .arg(&copy))?;
            run(Command::new("sync").arg("-f").arg(&copy))?;
            floor.push(t.elapsed());
            std::fs::remove_dir_all(&copy).context("removing the floor's copy")?;
            progress.inc();
        }
        self.sh(&id, "rm -f /root/big-*")?;

        // Restore → first output.
        let mut restore = Vec::new();
        for i in 0..runs {
            self.sh(&id, "echo junk > /root/junk")?;
            let t = Instant::now();
            b.restore(&id, &CheckpointId::new(format!("r{}", i % runs.max(1)))?)?;
            restore.push(self.first_output(&id, t)?);
            progress.inc();
        }

        // Many small files: a checkpoint's size walk, a fork's owners.
        self.sh(
            &id,
            &format!(
                "mkdir -p /root/many && cd /root/many && for d in $(seq 1 {}); do mkdir $d; \
                 for f in $(seq 1 100); do : > $d/$f; done; done; sync",
                MANY_FILES / 100
            ),
        )?;
        let mut many = Vec::new();
        for i in 0..runs {
            let t = Instant::now();
            b.checkpoint(&id, &new(&format!("m{i}"))?)?;
            many.push(t.elapsed());
            progress.inc();
        }
        let fork_many = self.forks(&mut fleet, &id, "m0", "bench-cp-many", runs, &mut progress)?;
        progress.finish();
        fleet.destroy_all()?;
        let s = |v: &[Duration]| Summary::of(v).context("no samples");
        Ok(CheckpointFigures {
            stopped: s(&stopped)?,
            fork_first_output: s(&fork)?,
            running_1m: s(&small)?,
            running_200m: s(&big)?,
            floor_200m: s(&floor)?,
            restore_first_output: s(&restore)?,
            running_many: s(&many)?,
            fork_many_first_output: s(&fork_many)?,
        })
    }

    /// `runs` forks of `id` from checkpoint `cp`, each timed from `fork`
    /// start → its first output, then destroyed.
    fn forks(
        &self,
        fleet: &mut Fleet<'_>,
        id: &MachineId,
        cp: &str,
        prefix: &str,
        runs: usize,
        progress: &mut Progress,
    ) -> Result<Vec<Duration>> {
        let b = self.backend();
        let mut times = Vec::new();
        for i in 0..runs {
            let child = MachineId::new(format!("{prefix}-{i}"))?;
            let _ = b.destroy(&child);
            let t = Instant::now();
            b.fork(id, Some(&CheckpointId::new(cp)?), &child)
                .with_context(|| format!("forking into {child}"))?;
            fleet.ids.push(child.clone());
            times.push(self.first_output(&child, t)?);
            b.destroy(&child)?;
            fleet.ids.pop();
            progress.inc();
        }
        Ok(times)
    }

    /// Runs a shell line in a machine; fails unless it exits 0.
    fn sh(&self, id: &MachineId, line: &str) -> Result<()> {
        let GuestAddress::Unix { path, .. } = self.backend().guest_address(id)?;
        self.rt().block_on(async {
            let client = connect(&path).await?;
            let mut exec = client.exec(ExecRequest::argv(["sh", "-c", line])).await?;
            while let Some(ev) = exec.next_event().await? {
                if let ExecEvent::Exit(s) = ev {
                    if s.code != Some(0) {
                        bail!("`{line}` in {id} ended with {s:?}");
                    }
                    return Ok(());
                }
            }
            bail!("`{line}` in {id} gave no exit status")
        })
    }

    /// `start` → first stdout bytes of `echo hi` in machine `id`.
    fn first_output(&self, id: &MachineId, start: Instant) -> Result<Duration> {
        let GuestAddress::Unix { path, .. } = self.backend().guest_address(id)?;
        self.rt().block_on(async {
            let client = connect(&path).await?;
            let mut exec = client.exec(ExecRequest::argv(["echo", "hi"])).await?;
            while let Some(ev) = exec.next_event().await? {
                if let ExecEvent::Stdout(_) = ev {
                    return Ok(start.elapsed());
                }
            }
            bail!("echo hi in {id} wrote nothing")
        })
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
