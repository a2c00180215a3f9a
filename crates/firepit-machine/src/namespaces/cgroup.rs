//! Per-machine cgroups: `<parent>/<id>` (parent `firepit` by default) in the
//! cpu, memory and pids v1 hierarchies, or one `<parent>/<id>` directory on a
//! v2 host.
//!
//! Usage (read when asked): v2 `cpu.stat`, `memory.current`, `pids.current`;
//! v1 `cpuacct.usage` (machines join a cpuacct hierarchy mounted apart from
//! cpu too), `memory.usage_in_bytes`, `pids.current`.
//!
//! Limits: memory (v1 `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes`
//! when swap accounting exists; v2 `memory.max`, `memory.swap.max = 0`), pids
//! (`pids.max`), CPU (v1 CFS quota/period; v2 `cpu.max`).
//!
//! Freezing (for a checkpoint of a running machine): v2 `cgroup.freeze`, read
//! back from `cgroup.events`; v1 the `freezer` hierarchy's `freezer.state`,
//! where a host has it mounted (machines join it with the others).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, Limits};

const PERIOD_US: u64 = 100_000;

/// The machines' cgroups: where the hierarchies are, and the parent group
/// (one per backend) under which each machine has its own.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    hierarchies: Hierarchies,
    parent: String,
}

/// Where the cgroup hierarchies are.
#[derive(Debug, Clone)]
enum Hierarchies {
    /// One unified hierarchy.
    V2 { root: PathBuf },
    /// Separate hierarchies per controller.
    V1 {
        cpu: PathBuf,
        memory: PathBuf,
        pids: PathBuf,
        /// The freezer hierarchy, where the host mounts one.
        freezer: Option<PathBuf>,
        /// The cpuacct hierarchy (CPU time, for usage), where the host
        /// mounts one; often the same mount as `cpu`.
        cpuacct: Option<PathBuf>,
    },
}

impl Cgroups {
    /// Finds the hierarchies from `/proc/self/mountinfo`.
    pub(crate) fn detect(parent: &str) -> Result<Self, Error> {
        let text = fs::read_to_string("/proc/self/mountinfo")
            .map_err(Error::io("reading", "/proc/self/mountinfo"))?;
        let hierarchies = Hierarchies::from_mountinfo(&text, |p| {
            fs::read_to_string(p.join("cgroup.controllers")).ok()
        })?;
        Ok(Self {
            hierarchies,
            parent: parent.to_string(),
        })
    }
}

impl Hierarchies {
    fn from_mountinfo(
        text: &str,
        controllers: impl Fn(&Path) -> Option<String>,
    ) -> Result<Self, Error> {
        let (mut cpu, mut memory, mut pids, mut freezer, mut cpuacct) =
            (None, None, None, None, None);
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount = left.split(' ').nth(4).map(PathBuf::from);
            let mut right = right.split(' ');
            let (fstype, opts) = (right.next(), right.nth(1).unwrap_or(""));
            let Some(mount) = mount else { continue };
            match fstype {
                Some("cgroup2") => {
                    let c = controllers(&mount).unwrap_or_default();
                    let has = |n: &str| c.split_whitespace().any(|x| x == n);
                    if has("memory") && has("pids") {
                        return Ok(Self::V2 { root: mount });
                    }
                }
                Some("cgroup") => {
                    for opt in opts.split(',') {
                        match opt {
                            "cpu" => cpu = Some(mount.clone()),
                            "memory" => memory = Some(mount.clone()),
                            "pids" => pids = Some(mount.clone()),
                            "freezer" => freezer = Some(mount.clone()),
                            "cpuacct" => cpuacct = Some(mount.clone()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        match (cpu, memory, pids) {
            (Some(cpu), Some(memory), Some(pids)) => Ok(Self::V1 {
                cpu,
                memory,
                pids,
                freezer,
                cpuacct,
            }),
            _ => Err(Error::Unsupported(
                "no cgroup v2 hierarchy with memory and pids, nor v1 cpu, memory and pids hierarchies".into(),
            )),
        }
    }
}

impl Cgroups {
    /// The machine's cgroup directories (the parents' for an empty id).
    pub(crate) fn dirs(&self, id: &str) -> Vec<PathBuf> {
        let parent = &self.parent;
        match &self.hierarchies {
            Hierarchies::V2 { root } => vec![root.join(parent).join(id)],
            Hierarchies::V1 {
                cpu,
                memory,
                pids,
                freezer,
                cpuacct,
            } => [
                Some(cpu),
                Some(memory),
                Some(pids),
                freezer.as_ref(),
                // Its own group only where it is not the cpu mount.
                cpuacct.as_ref().filter(|a| *a != cpu),
            ]
            .into_iter()
            .flatten()
            .map(|h| h.join(parent).join(id))
            .collect(),
        }
    }

    /// The files through which a single-threaded process joins the machine's
    /// cgroups by writing "0": v1 `tasks` (moving one thread is cheap),
    /// v2 `cgroup.procs`.
    pub(crate) fn join_files(&self, id: &str) -> Vec<PathBuf> {
        let file = match self.hierarchies {
            Hierarchies::V2 { .. } => "cgroup.procs",
            Hierarchies::V1 { .. } => "tasks",
        };
        self.dirs(id).into_iter().map(|d| d.join(file)).collect()
    }

    /// Creates the machine's cgroups with its limits. Existing ones (left by
    /// a crash) are reused.
    pub(crate) fn create(&self, id: &str, limits: &Limits) -> Result<(), Error> {
        let result = self.create_inner(id, limits);
        if result.is_err() {
            let _ = self.remove(id);
        }
        result
    }

    fn create_inner(&self, id: &str, l: &Limits) -> Result<(), Error> {
        let quota = ((l.cpus * PERIOD_US as f64) as u64).max(1000);
        match &self.hierarchies {
            Hierarchies::V2 { root } => {
                let parent = root.join(&self.parent);
                mkdir(&parent)?;
                for dir in [root, &parent] {
                    for c in ["+memory", "+pids", "+cpu"] {
                        // cpu may be missing (or held by realtime threads); the
                        // limit is then left out.
                        let r = write(&dir.join("cgroup.subtree_control"), c);
                        if c != "+cpu" {
                            r?;
                        }
                    }
                }
                let dir = parent.join(id);
                mkdir(&dir)?;
                write(&dir.join("memory.max"), &l.memory_bytes.to_string())?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
                write(&dir.join("pids.max"), &l.pids.to_string())?;
                let cpu = dir.join("cpu.max");
                if cpu.exists() {
                    write(&cpu, &format!("{quota} {PERIOD_US}"))?;
                }
            }
            Hierarchies::V1 {
                cpu,
                memory,
                pids,
                freezer,
                cpuacct,
            } => {
                let dir = |h: &PathBuf| -> Result<PathBuf, Error> {
                    mkdir(&h.join(&self.parent))?;
                    let d = h.join(&self.parent).join(id);
                    mkdir(&d)?;
                    Ok(d)
                };
                let m = dir(memory)?;
                write(
                    &m.join("memory.limit_in_bytes"),
                    &l.memory_bytes.to_string(),
                )?;
                let memsw = m.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &l.memory_bytes.to_string())?;
                }
                let p = dir(pids)?;
                write(&p.join("pids.max"), &l.pids.to_string())?;
                let c = dir(cpu)?;
                // Each write of either file checks the bandwidth of every
                // group on the host (a walk of the whole task-group tree), so
                // the period, the kernel's default too, is written only when
                // a group left by a crash holds another.
                let period = c.join("cpu.cfs_period_us");
                if fs::read_to_string(&period).map_or(true, |p| p.trim() != PERIOD_US.to_string()) {
                    write(&period, &PERIOD_US.to_string())?;
                }
                write(&c.join("cpu.cfs_quota_us"), &quota.to_string())?;
                if let Some(f) = freezer {
                    let f = dir(f)?;
                    // A group left frozen by a crash must not hold the new run.
                    write(&f.join("freezer.state"), "THAWED")?;
                }
                if let Some(a) = cpuacct.as_ref().filter(|a| *a != cpu) {
                    dir(a)?;
                }
            }
        }
        Ok(())
    }

    /// The file that freezes the machine, and what it reads once frozen.
    fn freeze_file(&self, id: &str) -> Result<PathBuf, Error> {
        match &self.hierarchies {
            Hierarchies::V2 { root } => Ok(root.join(&self.parent).join(id).join("cgroup.freeze")),
            Hierarchies::V1 {
                freezer: Some(f), ..
            } => Ok(f.join(&self.parent).join(id).join("freezer.state")),
            Hierarchies::V1 { freezer: None, .. } => Err(Error::Unsupported(
                "freezing a running machine needs the cgroup v1 freezer hierarchy, \
                 which this host does not mount"
                    .into(),
            )),
        }
    }

    /// Stops every process of the machine where it is (cgroup freezer) and
    /// returns once all are frozen, or fails (thawed again) after `timeout`.
    /// A machine started before its freezer group existed is an error: it
    /// has to be restarted once.
    pub(crate) fn freeze(&self, id: &str, timeout: Duration) -> Result<(), Error> {
        let file = self.freeze_file(id)?;
        if !file.exists() {
            return Err(Error::Unsupported(format!(
                "machine {id} runs outside a freezer cgroup (it was started before \
                 checkpoints existed); stop and start it once"
            )));
        }
        let v2 = matches!(self.hierarchies, Hierarchies::V2 { .. });
        let deadline = Instant::now() + timeout;
        write(&file, if v2 { "1" } else { "FROZEN" })?;
        loop {
            let frozen = if v2 {
                let events = file.with_file_name("cgroup.events");
                fs::read_to_string(&events)
                    .map_err(Error::io("reading", &events))?
                    .lines()
                    .any(|l| l == "frozen 1")
            } else {
                // v1: "FREEZING" until every task is stopped; writing
                // FROZEN again retries the tasks that were not.
                let state = fs::read_to_string(&file).map_err(Error::io("reading", &file))?;
                state.trim() == "FROZEN" || {
                    let _ = fs::write(&file, "FROZEN");
                    false
                }
            };
            if frozen {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.thaw(id);
                return Err(Error::Io {
                    what: "freezing the machine's processes (one does not stop: uninterruptible I/O?)",
                    path: Some(file),
                    source: io::ErrorKind::TimedOut.into(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Lets a frozen machine's processes run again.
    pub(crate) fn thaw(&self, id: &str) -> Result<(), Error> {
        let file = self.freeze_file(id)?;
        let v2 = matches!(self.hierarchies, Hierarchies::V2 { .. });
        write(&file, if v2 { "0" } else { "THAWED" })
    }

    /// The processes in the machine's cgroups.
    pub(crate) fn pids(&self, id: &str) -> Vec<i32> {
        let mut all = Vec::new();
        for d in self.dirs(id) {
            if let Ok(text) = fs::read_to_string(d.join("cgroup.procs")) {
                all.extend(text.lines().filter_map(|l| l.parse::<i32>().ok()));
            }
        }
        all.sort_unstable();
        all.dedup();
        all
    }

    /// SIGKILLs whatever is left in the cgroups and removes them, retrying
    /// for up to two seconds while processes exit.
    pub(crate) fn remove(&self, id: &str) -> Result<(), Error> {
        // Frozen processes would not die (v1); a crash may have left them so.
        if self.freeze_file(id).is_ok_and(|f| f.exists()) {
            let _ = self.thaw(id);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for d in self.dirs(id) {
            loop {
                for pid in self.pids(id) {
                    // SAFETY: kill(2) on a pid listed in the machine's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(Error::io("removing cgroup", &d)(e)),
                }
            }
        }
        Ok(())
    }
}

/// What a machine's cgroups count now; a figure the host does not keep is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CgroupUsage {
    pub(crate) cpu_usec: Option<u64>,
    pub(crate) memory_bytes: Option<u64>,
    pub(crate) pids: Option<u64>,
}

impl Cgroups {
    /// Reads the machine's counters (a few small files; nothing is kept):
    /// v2 `cpu.stat` `usage_usec`, `memory.current`, `pids.current`; v1
    /// `cpuacct.usage` (nanoseconds, where cpuacct is mounted with cpu),
    /// `memory.usage_in_bytes`, `pids.current`.
    pub(crate) fn usage(&self, id: &str) -> CgroupUsage {
        let parent = &self.parent;
        match &self.hierarchies {
            Hierarchies::V2 { root } => {
                let dir = root.join(parent).join(id);
                CgroupUsage {
                    cpu_usec: fs::read_to_string(dir.join("cpu.stat"))
                        .ok()
                        .and_then(|t| stat_field(&t, "usage_usec")),
                    memory_bytes: read_number(&dir.join("memory.current")),
                    pids: read_number(&dir.join("pids.current")),
                }
            }
            Hierarchies::V1 {
                cpu,
                memory,
                pids,
                cpuacct,
                ..
            } => CgroupUsage {
                cpu_usec: read_number(
                    &cpuacct
                        .as_ref()
                        .unwrap_or(cpu)
                        .join(parent)
                        .join(id)
                        .join("cpuacct.usage"),
                )
                .map(|ns| ns / 1000),
                memory_bytes: read_number(
                    &memory.join(parent).join(id).join("memory.usage_in_bytes"),
                ),
                pids: read_number(&pids.join(parent).join(id).join("pids.current")),
            },
        }
    }
}

/// A cgroup file that holds one number.
fn read_number(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The value of `name` in a flat keyed file (`name value` lines).
fn stat_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

fn mkdir(p: &Path) -> Result<(), Error> {
    match fs::create_dir(p) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(Error::io("creating cgroup", p)(e))
        }
        _ => Ok(()),
    }
}

fn write(p: &Path, v: &str) -> Result<(), Error> {
    fs::write(p, v).map_err(Error::io("writing cgroup file", p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_files_are_read_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let m = root.join("fp").join("m1");
        fs::create_dir_all(&m).unwrap();
        fs::write(
            m.join("cpu.stat"),
            "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n",
        )
        .unwrap();
        fs::write(m.join("memory.current"), "4096\n").unwrap();
        let v2 = Cgroups {
            hierarchies: Hierarchies::V2 { root: root.clone() },
            parent: "fp".into(),
        };
        assert_eq!(
            v2.usage("m1"),
            CgroupUsage {
                cpu_usec: Some(1234),
                memory_bytes: Some(4096),
                pids: None,
            }
        );
        // v1: one hierarchy per controller; cpuacct counts nanoseconds.
        for h in ["cpu", "memory", "pids"] {
            fs::create_dir_all(root.join(h).join("fp").join("m1")).unwrap();
        }
        fs::write(root.join("cpu/fp/m1/cpuacct.usage"), "5000000\n").unwrap();
        fs::write(root.join("memory/fp/m1/memory.usage_in_bytes"), "8192\n").unwrap();
        fs::write(root.join("pids/fp/m1/pids.current"), "3\n").unwrap();
        let v1 = Cgroups {
            hierarchies: Hierarchies::V1 {
                cpu: root.join("cpu"),
                memory: root.join("memory"),
                pids: root.join("pids"),
                freezer: None,
                cpuacct: None,
            },
            parent: "fp".into(),
        };
        assert_eq!(
            v1.usage("m1"),
            CgroupUsage {
                cpu_usec: Some(5000),
                memory_bytes: Some(8192),
                pids: Some(3),
            }
        );
        assert_eq!(v1.usage("gone"), CgroupUsage::default());
        // cpuacct mounted apart from cpu: read there, and a group of its own.
        fs::create_dir_all(root.join("cpuacct/fp/m1")).unwrap();
        fs::write(root.join("cpuacct/fp/m1/cpuacct.usage"), "7000000\n").unwrap();
        let apart = Cgroups {
            hierarchies: Hierarchies::V1 {
                cpu: root.join("cpu"),
                memory: root.join("memory"),
                pids: root.join("pids"),
                freezer: None,
                cpuacct: Some(root.join("cpuacct")),
            },
            parent: "fp".into(),
        };
        assert_eq!(apart.usage("m1").cpu_usec, Some(7000));
        assert!(apart.dirs("m1").contains(&root.join("cpuacct/fp/m1")));
        assert_eq!(
            v1.dirs("m1").len(),
            3,
            "no cpuacct group of its own when it is the cpu mount"
        );
    }

    const V1: &str = "\
31 27 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_with_a_hugetlb_only_unified_mount() {
        let c = Hierarchies::from_mountinfo(V1, |_| Some("hugetlb".into())).unwrap();
        match c {
            Hierarchies::V1 {
                cpu,
                memory,
                pids,
                freezer,
                cpuacct,
            } => {
                assert_eq!(
                    cpuacct.as_deref(),
                    Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
                );
                assert_eq!(
                    freezer.as_deref(),
                    Some(Path::new("/sys/fs/cgroup/freezer"))
                );
                assert_eq!(cpu, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
                assert_eq!(memory, Path::new("/sys/fs/cgroup/memory"));
                assert_eq!(pids, Path::new("/sys/fs/cgroup/pids"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v2() {
        let text = "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchies::from_mountinfo(text, |_| Some("cpuset cpu io memory pids".into()))
            .unwrap();
        assert!(matches!(h, Hierarchies::V2 { ref root } if root == Path::new("/sys/fs/cgroup")));
        let c = Cgroups {
            hierarchies: h,
            parent: "firepit".into(),
        };
        assert_eq!(
            c.dirs("m1"),
            vec![PathBuf::from("/sys/fs/cgroup/firepit/m1")]
        );
    }

    #[test]
    fn none() {
        assert!(Hierarchies::from_mountinfo("", |_| None).is_err());
    }
}
