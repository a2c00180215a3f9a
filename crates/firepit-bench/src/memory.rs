//! Reading memory use from procfs and the memory cgroup: a process's PSS
//! (`/proc/<pid>/smaps_rollup`), a process tree, the host's `MemAvailable`,
//! and a cgroup's usage (v1 `memory.usage_in_bytes`, v2 `memory.current`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// Memory figures for a set of idle instances (machines or floor processes).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemoryFigures {
    /// How many instances were idle at once.
    pub instances: usize,
    /// Processes per instance, on average.
    pub procs_per_instance: f64,
    /// Sum of the PSS of every process of an instance, averaged, bytes.
    pub pss_avg_bytes: u64,
    /// The instance's memory cgroup usage (including kernel memory and the
    /// page cache it was first to touch), averaged, bytes.
    pub cgroup_avg_bytes: Option<u64>,
    /// The host's `MemAvailable` drop across starting them all, divided by
    /// their number, bytes (negative when other activity freed memory).
    pub mem_available_drop_avg_bytes: i64,
}

/// The `Pss:` line of a `smaps_rollup`, in bytes.
pub fn parse_pss(smaps_rollup: &str) -> Option<u64> {
    kib_field(smaps_rollup, "Pss").map(|k| k * 1024)
}

/// A `MemAvailable:`-style `<key>: <n> kB` field of `/proc/meminfo` text, in bytes.
pub fn parse_meminfo(meminfo: &str, key: &str) -> Option<u64> {
    kib_field(meminfo, key).map(|k| k * 1024)
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, rest) = line.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let mut words = rest.split_whitespace();
        let n = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => Some(n),
            _ => None,
        }
    })
}

/// The PSS of one process, bytes.
pub fn pss(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_pss(&text).with_context(|| format!("no Pss line in {path}"))
}

/// The host's `MemAvailable`, bytes.
pub fn mem_available() -> Result<u64> {
    let text = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    parse_meminfo(&text, "MemAvailable").context("no MemAvailable in /proc/meminfo")
}

/// `pid` and all its descendants (through every thread's `children` file).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(text) = fs::read_to_string(t.path().join("children")) else {
                continue;
            };
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// The summed PSS of `pid`'s process tree, and how many processes it has.
pub fn tree_pss(pid: u32) -> Result<(u64, usize)> {
    let tree = process_tree(pid);
    let mut sum = 0;
    for p in &tree {
        sum += pss(*p).with_context(|| format!("PSS of {p} (in the tree of {pid})"))?;
    }
    Ok((sum, tree.len()))
}

/// The memory controller's hierarchy.
#[derive(Debug, Clone)]
pub enum MemoryCgroups {
    /// v1: `<root>/<group>/memory.usage_in_bytes`.
    V1(PathBuf),
    /// v2: `<root>/<group>/memory.current`.
    V2(PathBuf),
}

impl MemoryCgroups {
    /// Finds the memory hierarchy under `/sys/fs/cgroup` (the layouts the
    /// machine backend supports).
    pub fn detect() -> Result<MemoryCgroups> {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let v2 = Path::new("/sys/fs/cgroup");
        if v1.join("memory.usage_in_bytes").exists() {
            Ok(MemoryCgroups::V1(v1.into()))
        } else if v2.join("cgroup.controllers").exists() {
            Ok(MemoryCgroups::V2(v2.into()))
        } else {
            bail!("no memory cgroup hierarchy under /sys/fs/cgroup")
        }
    }

    /// The directory of `group` (a path relative to the root).
    pub fn dir(&self, group: &str) -> PathBuf {
        match self {
            MemoryCgroups::V1(root) | MemoryCgroups::V2(root) => root.join(group),
        }
    }

    /// The memory `group` uses now, bytes.
    pub fn usage(&self, group: &str) -> Result<u64> {
        let file = match self {
            MemoryCgroups::V1(_) => "memory.usage_in_bytes",
            MemoryCgroups::V2(_) => "memory.current",
        };
        let path = self.dir(group).join(file);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("parsing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &str = "\
55d0c0a5e000-7ffd3a1f2000 ---p 00000000 00:00 0                          [rollup]
Rss:                3968 kB
Pss:                1234 kB
Pss_Anon:            512 kB
Pss_File:            722 kB
Pss_Shmem:             0 kB
Shared_Clean:       2816 kB
Private_Dirty:       512 kB
Swap:                  0 kB
SwapPss:               0 kB
";

    #[test]
    fn pss_is_the_pss_line_not_its_breakdown() {
        assert_eq!(parse_pss(ROLLUP), Some(1234 * 1024));
    }

    #[test]
    fn missing_or_malformed_pss_is_none() {
        assert_eq!(parse_pss("Rss: 10 kB\nPss_Anon: 3 kB\n"), None);
        assert_eq!(parse_pss("Pss: lots kB\n"), None);
        assert_eq!(parse_pss("Pss: 12 pages\n"), None);
        assert_eq!(parse_pss(""), None);
    }

    #[test]
    fn meminfo_fields() {
        let text = "MemTotal:       24684084 kB\nMemFree:        24149872 kB\n\
                    MemAvailable:   24272460 kB\nHugePages_Total:       0\n";
        assert_eq!(parse_meminfo(text, "MemAvailable"), Some(24272460 * 1024));
        assert_eq!(parse_meminfo(text, "MemTotal"), Some(24684084 * 1024));
        // No unit: not a size.
        assert_eq!(parse_meminfo(text, "HugePages_Total"), None);
        assert_eq!(parse_meminfo(text, "Mem"), None);
    }

    #[test]
    fn own_process_has_a_pss_and_is_its_own_tree() {
        let me = std::process::id();
        assert!(pss(me).unwrap() > 0);
        assert_eq!(process_tree(me)[0], me);
    }
}
