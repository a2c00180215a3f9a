//! The floor: the same image run by a bare `unshare` + `chroot`, with no
//! overlay, cgroup limits, seccomp, network or guest, to show what isolation
//! costs at the least on this host.
//!
//! The user namespace maps root to root (`--map-root-user`): mapping root to
//! the image's `uid_base` with `--map-users` needs `newuidmap`, which refuses
//! ranges `/etc/subuid` does not grant. The image's files then show as
//! `nobody`, which does not matter to `echo` and `sleep`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use firepit_progress::Progress;

use crate::memory::{self, MemoryCgroups, MemoryFigures};

/// The memory cgroup the idle floor processes are charged to.
const CGROUP: &str = "firepit-bench-floor";

/// How the floor is isolated, for the report.
pub const DESCRIPTION: &str = "unshare --user --map-root-user --mount --pid --fork --net --uts \
                               --ipc chroot <rootfs>";

fn unshare(rootfs: &Path) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--user",
        "--map-root-user",
        "--mount",
        "--pid",
        "--fork",
        "--net",
        "--uts",
        "--ipc",
        "--kill-child",
        "chroot",
    ])
    .arg(rootfs);
    c
}

/// `runs` times: spawn → first stdout byte of `echo hi` in a fresh floor.
pub fn first_output(rootfs: &Path, runs: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(runs);
    let mut progress = Progress::counter("firepit-bench: floor spawn/echo", runs as u64);
    for _ in 0..runs {
        let t = Instant::now();
        let mut child = unshare(rootfs)
            .args(["/bin/echo", "hi"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning unshare (util-linux)")?;
        let mut stdout = child.stdout.take().context("no stdout pipe")?;
        let mut buf = [0u8; 1];
        let n = stdout
            .read(&mut buf)
            .context("reading the floor's stdout")?;
        let elapsed = t.elapsed();
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest)?;
        let status = child.wait()?;
        if n != 1 || !status.success() || buf[0] != b'h' || rest != b"i\n" {
            bail!("the floor's echo hi failed ({status}); see its stderr above");
        }
        out.push(elapsed);
        progress.inc();
    }
    Ok(out)
}

/// Starts `count` floors running `sleep`, measures their memory, and ends them.
pub fn idle_memory(rootfs: &Path, count: usize) -> Result<MemoryFigures> {
    let cgroups = MemoryCgroups::detect()?;
    let mut floors = Floors::new(cgroups.dir(CGROUP))?;
    let before = memory::mem_available()?;
    let mut progress = Progress::counter("firepit-bench: starting idle floors", count as u64);
    for _ in 0..count {
        floors.start(rootfs)?;
        progress.inc();
    }
    progress.finish();
    std::thread::sleep(Duration::from_secs(1));
    let after = memory::mem_available()?;
    let (mut pss, mut procs) = (0u64, 0usize);
    for c in &floors.children {
        let (p, n) = memory::tree_pss(c.id())?;
        pss += p;
        procs += n;
    }
    let cg = cgroups.usage(CGROUP)?;
    let n = count.max(1) as u64;
    Ok(MemoryFigures {
        instances: count,
        procs_per_instance: procs as f64 / n as f64,
        pss_avg_bytes: pss / n,
        cgroup_avg_bytes: Some(cg / n),
        mem_available_drop_avg_bytes: (before as i64 - after as i64) / n as i64,
    })
}

/// Running floors, ended (and their cgroup removed) when dropped.
struct Floors {
    cgroup: PathBuf,
    children: Vec<Child>,
}

impl Floors {
    fn new(cgroup: PathBuf) -> Result<Floors> {
        match fs::create_dir(&cgroup) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                Err(e).with_context(|| format!("creating cgroup {}", cgroup.display()))?
            }
            _ => {}
        }
        Ok(Floors {
            cgroup,
            children: Vec::new(),
        })
    }

    /// Starts one `sleep` floor inside the cgroup and waits until it runs.
    fn start(&mut self, rootfs: &Path) -> Result<()> {
        // The shell joins the cgroup, then becomes unshare: everything the
        // floor allocates is charged there.
        let child = Command::new("/bin/sh")
            .args(["-c", r#"echo $$ > "$0" && exec "$@""#])
            .arg(self.cgroup.join("cgroup.procs"))
            .arg("unshare")
            .args(unshare(rootfs).get_args())
            .args(["/bin/sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // unshare 2.38 complains ("sigprocmask unblock failed") when its
            // child is killed by a signal, which is how floors end.
            .stderr(Stdio::null())
            .spawn()
            .context("spawning unshare (util-linux)")?;
        let pid = child.id();
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tree = memory::process_tree(pid);
            let sleeping = tree.iter().skip(1).any(|p| {
                fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
            });
            if sleeping {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "floor {pid} did not reach sleep (run `{}` by hand to see why)",
                    DESCRIPTION
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Floors {
    fn drop(&mut self) {
        let total = self.children.len();
        let mut progress = (total > 0)
            .then(|| Progress::counter("firepit-bench: ending idle floors", total as u64));
        for mut c in self.children.drain(..) {
            // Kill the inner processes first: unshare reaps its child and
            // exits, and nothing is orphaned onto this process (a subreaper).
            for p in memory::process_tree(c.id()).into_iter().skip(1).rev() {
                // SAFETY: kill with a pid and a signal number; these are
                // descendants of a child we have not reaped yet.
                unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
            }
            let ended = end(&mut c);
            if let Some(p) = progress.as_mut() {
                if let Err(e) = ended {
                    p.println(format!("firepit-bench: ending floor {}: {e}", c.id()));
                }
                p.inc();
            }
        }
        drop(progress);
        for _ in 0..100 {
            if fs::remove_dir(&self.cgroup).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "firepit-bench: could not remove cgroup {}",
            self.cgroup.display()
        );
    }
}

/// Waits a while for an unshare whose inner processes were killed to exit,
/// then kills it.
fn end(c: &mut Child) -> std::io::Result<()> {
    for _ in 0..200 {
        if c.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    c.kill()?;
    c.wait().map(drop)
}
