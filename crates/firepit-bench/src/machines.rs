//! The machines under test: real namespaces machines running the real guest.
//!
//! A cycle creates a machine, connects to its guest and runs `echo hi`,
//! timing `create` start → first stdout bytes, then times `destroy`. The idle
//! run starts many machines, waits until each guest has its `main` shell,
//! and measures their memory. Every machine lives in a [`Fleet`], which
//! destroys what is left of it when dropped, on error paths too.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use firepit_guest_client::{Error as GuestError, ExecEvent, ExecRequest, GuestClient};
use firepit_machine::namespaces::{Config, NamespacesBackend, PoolConfig};
use firepit_machine::{Backend, GuestAddress, Limits, MachineId, MachineSpec, Network};
use firepit_progress::Progress;

use crate::memory::{self, MemoryCgroups, MemoryFigures};

/// The cgroup parent of the bench's machines, apart from any daemon's.
pub const CGROUP_PARENT: &str = "firepit-bench";
const STATE_DIR: &str = "/var/tmp/firepit-bench/state";
const RUN_DIR: &str = "/run/firepit-bench";
/// The disk pool the machines' layers live in, as a daemon's do.
const POOL_IMAGE: &str = "/var/tmp/firepit-bench/layers.img";
pub(crate) const POOL_DIR: &str = "/var/tmp/firepit-bench/layers";
/// How long a guest may take to answer, or a shell to appear.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the machines are made of.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The image: a root filesystem tree owned by `uid_base`.
    pub rootfs: PathBuf,
    /// Host uid of root inside.
    pub uid_base: u32,
    /// Memory limit of each machine.
    pub memory_bytes: u64,
    /// Appended to every guest's command line.
    pub guest_args: Vec<String>,
}

/// The backend and a runtime for guest clients.
pub struct Bench {
    backend: NamespacesBackend,
    settings: Settings,
    rt: tokio::runtime::Runtime,
}

/// Timings of create → first output and of destroy.
#[derive(Debug, Default)]
pub struct Cycles {
    /// `create` start → first stdout bytes of `echo hi`.
    pub first_output: Vec<Duration>,
    /// `destroy` of a machine whose exec has finished.
    pub destroy: Vec<Duration>,
}

impl Bench {
    /// Starts the backend (bridge, firewall, cgroup parent), with names apart
    /// from a daemon's, and destroys machines a killed earlier run left.
    pub fn new(settings: Settings) -> Result<Bench> {
        let launcher = std::env::current_exe().context("finding the bench executable")?;
        let mut c = Config::new(STATE_DIR, RUN_DIR, launcher);
        c.cgroup_parent = CGROUP_PARENT.into();
        c.nft_table = "firepit_bench".into();
        c.bridge = "fpb-bench".into();
        c.veth_prefix = "fvbench".into();
        c.gateway = Ipv4Addr::new(10, 99, 0, 1);
        c.prefix = 24;
        c.stop_grace = Duration::from_secs(2);
        c.guest_args = settings.guest_args.clone();
        c.disk = Some(PoolConfig {
            image: POOL_IMAGE.into(),
            dir: POOL_DIR.into(),
            size_bytes: 4 << 30,
        });
        let backend = NamespacesBackend::new(c).context("starting the namespaces backend")?;
        let leftovers = backend.recover().context("recovering earlier machines")?;
        for m in leftovers {
            eprintln!("firepit-bench: destroying {} left by an earlier run", m.id);
            backend
                .destroy(&m.id)
                .with_context(|| format!("destroying leftover machine {}", m.id))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(Bench {
            backend,
            settings,
            rt,
        })
    }

    /// The backend.
    pub(crate) fn backend(&self) -> &NamespacesBackend {
        &self.backend
    }

    /// The runtime guest clients run on.
    pub(crate) fn rt(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The spec of a bench machine.
    pub(crate) fn spec(&self, id: &MachineId, network: Network) -> MachineSpec {
        MachineSpec {
            id: id.clone(),
            image: self.settings.rootfs.clone(),
            layers: Vec::new(),
            uid_base: self.settings.uid_base,
            limits: Limits {
                memory_bytes: self.settings.memory_bytes,
                cpus: 1.0,
                pids: 128,
                // The daemon's default.
                disk_bytes: Some(10 << 30),
            },
            network,
            guest: PathBuf::from(firepit_guest_bin::GUEST_BUILD_PATH),
        }
    }

    /// `runs` cycles of create → `echo hi` → destroy.
    pub fn cycles(&self, network: Network, runs: usize) -> Result<Cycles> {
        let tag = match network {
            Network::None => "none",
            Network::Nat => "nat",
        };
        let mut out = Cycles::default();
        let mut progress = Progress::counter(
            format!("firepit-bench: create/exec/destroy ({tag})"),
            runs as u64,
        );
        for i in 0..runs {
            let id = MachineId::new(format!("bench-{tag}-{i}"))?;
            let mut fleet = Fleet::new(&self.backend);
            let t = Instant::now();
            self.backend
                .create(&self.spec(&id, network))
                .with_context(|| format!("creating {id}"))?;
            fleet.ids.push(id.clone());
            let GuestAddress::Unix { path: sock, .. } = self.backend.guest_address(&id)?;
            let first = self
                .rt
                .block_on(echo_hi(&sock, t))
                .with_context(|| format!("running echo hi in {id}"))?;
            out.first_output.push(first);
            let t = Instant::now();
            self.backend
                .destroy(&id)
                .with_context(|| format!("destroying {id}"))?;
            out.destroy.push(t.elapsed());
            fleet.ids.clear();
            progress.inc();
        }
        Ok(out)
    }

    /// Starts `count` machines (no network), waits until each has its shell,
    /// measures their memory, and destroys them.
    pub fn idle_memory(&self, count: usize) -> Result<MemoryFigures> {
        let cgroups = MemoryCgroups::detect()?;
        let mut fleet = Fleet::new(&self.backend);
        let mut pids = Vec::with_capacity(count);
        let before = memory::mem_available()?;
        let mut progress = Progress::counter("firepit-bench: creating idle machines", count as u64);
        for i in 0..count {
            let id = MachineId::new(format!("bench-idle-{i}"))?;
            let info = self
                .backend
                .create(&self.spec(&id, Network::None))
                .with_context(|| format!("creating {id}"))?;
            fleet.ids.push(id.clone());
            pids.push(info.pid.context("a created machine has no init pid")?);
            let GuestAddress::Unix { path: sock, .. } = self.backend.guest_address(&id)?;
            self.rt
                .block_on(wait_for_shell(&sock))
                .with_context(|| format!("waiting for the shell of {id}"))?;
            progress.inc();
        }
        progress.finish();
        // Let the shells finish reading their profiles.
        std::thread::sleep(Duration::from_secs(2));
        let after = memory::mem_available()?;
        let (mut pss, mut procs, mut cg) = (0u64, 0usize, 0u64);
        for (id, pid) in fleet.ids.iter().zip(&pids) {
            let (p, n) = memory::tree_pss(*pid).with_context(|| format!("measuring {id}"))?;
            if n < 2 {
                bail!("{id} has {n} processes; its guest should have started a shell");
            }
            pss += p;
            procs += n;
            cg += cgroups.usage(&format!("{CGROUP_PARENT}/{id}"))?;
        }
        let n = count.max(1) as u64;
        let figures = MemoryFigures {
            instances: count,
            procs_per_instance: procs as f64 / n as f64,
            pss_avg_bytes: pss / n,
            cgroup_avg_bytes: Some(cg / n),
            mem_available_drop_avg_bytes: (before as i64 - after as i64) / n as i64,
        };
        fleet.destroy_all()?;
        Ok(figures)
    }
}

/// Connects (retrying while the socket is not there yet), runs `echo hi`,
/// checks its output, and returns the time from `start` to its first
/// stdout bytes.
async fn echo_hi(sock: &Path, start: Instant) -> Result<Duration> {
    let client = connect(sock).await?;
    let mut exec = client.exec(ExecRequest::argv(["echo", "hi"])).await?;
    let mut first = None;
    let mut out = Vec::new();
    while let Some(ev) = exec.next_event().await? {
        match ev {
            ExecEvent::Stdout(b) => {
                first.get_or_insert_with(|| start.elapsed());
                out.extend_from_slice(&b);
            }
            ExecEvent::Stderr(_) => {}
            ExecEvent::Exit(_) => break,
        }
    }
    if out != b"hi\n" {
        bail!("echo hi wrote {:?}", String::from_utf8_lossy(&out));
    }
    first.context("echo hi wrote nothing")
}

/// Waits until the guest answers and lists its `main` shell.
pub(crate) async fn wait_for_shell(sock: &Path) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let client = connect(sock).await?;
    loop {
        if client.pty_list().await?.iter().any(|p| p.name == "main") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no main shell after {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Connects to a guest, retrying while its socket does not exist or does
/// not listen yet (it appears a few ms after `create` returns).
pub(crate) async fn connect(sock: &Path) -> Result<GuestClient> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match GuestClient::connect_unix(sock).await {
            Ok(c) => return Ok(c),
            Err(GuestError::Connect { source, .. })
                if matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
            Err(e) => return Err(e).context("connecting to the guest"),
        }
    }
}

/// Machines that are destroyed when this is dropped.
pub(crate) struct Fleet<'a> {
    backend: &'a NamespacesBackend,
    pub(crate) ids: Vec<MachineId>,
}

impl<'a> Fleet<'a> {
    pub(crate) fn new(backend: &'a NamespacesBackend) -> Fleet<'a> {
        Fleet {
            backend,
            ids: Vec::new(),
        }
    }

    /// Destroys every machine, reporting the first failure after trying all.
    pub(crate) fn destroy_all(&mut self) -> Result<()> {
        let total = self.ids.len();
        let mut first_err = None;
        let mut progress = (total > 1)
            .then(|| Progress::counter("firepit-bench: destroying machines", total as u64));
        for id in std::mem::take(&mut self.ids) {
            if let Err(e) = self.backend.destroy(&id) {
                let line = format!("firepit-bench: destroying {id}: {e}");
                match progress.as_mut() {
                    Some(p) => p.println(line),
                    None => eprintln!("{line}"),
                }
                first_err.get_or_insert(anyhow::Error::new(e).context(format!("destroying {id}")));
            }
            if let Some(p) = progress.as_mut() {
                p.inc();
            }
        }
        drop(progress);
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Fleet<'_> {
    fn drop(&mut self) {
        // Errors were printed; nothing more to do with them while unwinding.
        let _ = self.destroy_all();
    }
}
