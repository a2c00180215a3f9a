//! The namespaces backend: machines as Linux namespaces on the host kernel.
//!
//! A machine is a process tree in its own user (root inside = the base of
//! the machine's own uid range outside, see [`uid_ranges`]), mount, pid,
//! net, uts, ipc and cgroup namespaces, whose root is an overlay of the image
//! (idmapped onto the machine's range) and the machine's own upper layer,
//! limited by its cgroups, confined by a capability bounding set,
//! `no_new_privs` and seccomp. Its PID 1 is the guest.
//!
//! Layout on the host:
//! - `<state_dir>/<id>/` (root's): `spec.json`, `net.json` (address slot,
//!   kept across restarts), `ids.json` (the machine's uid range), `init.json`
//!   (pid and start time of the running init), `rootfs/` and `lower/` (mount
//!   points, only in the launcher's and machine's mount namespaces);
//! - the machine's writable layer: `upper/`, `work/` and `guest.log` (the
//!   guest's stdout and stderr), in `<pool>/<id>/` (a subvolume of the disk
//!   pool, limited to the machine's `disk_bytes`, see [`disk`]) or, for a
//!   machine without a disk limit, in `<state_dir>/<id>/`;
//! - `<uid_ranges>/<base>`: the host-wide registry of machines' uid ranges;
//! - `<run_dir>/<id>/` (root's, 0700, never mounted into the machine): holds
//!   `guest.sock`, bound by the launcher and inherited by the guest as a
//!   listening fd;
//! - in the machine, `/run/firepit/trust/` (read-only, the init's): the
//!   extra CAs of [`Config::extra_ca`] and the bundle they make with the
//!   image's, see [`trust`];
//! - cgroups `firepit/<id>`; veth `fpv<slot>`, routed (a `/32` route to the
//!   machine's address, no bridge; names set in [`Config`], see [`firewall`]).
//!
//! **Architecture Invariant:** no mount of a machine is in the host's mount
//! namespace, and a machine's netns dies with its init: a stopped machine
//! leaves only its state dir (and its layer in the pool) behind. The one host
//! mount is the disk pool's, shared by all machines and kept across restarts.
//!
//! **Architecture Invariant:** the state dir, run dir and pool are root-only
//! (0700): no host user reaches a machine's files, so a setuid file a machine
//! writes is no way up for them. The machine's init never walks a host path to
//! its root; it gets it as its working directory from the launcher.
//!
//! **Architecture Invariant:** the host never walks a path through the
//! machine's upper layer. The files the host decides (/etc/hostname,
//! /etc/hosts, /etc/resolv.conf) are written by the machine's init once it
//! is in its root, as the machine's root; mount points under the root are made
//! and mounted on by fd ([`resolve`]); the state dir is removed by
//! [`resolve::remove_tree`], which follows no link and crosses no mount. The
//! guest socket's path is in dirs only the host's root can write, and its
//! [`GuestAddress`] names the init's pid, which a client checks against the
//! socket's peer.

mod cgroup;
mod checkpoint;
mod confine;
mod disk;
mod firewall;
mod idmap;
pub(crate) mod launcher;
mod netlink;
mod netns;
mod procfs;
mod resolve;
mod teardown;
pub mod trust;
pub mod uid_ranges;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{
    Backend, Checkpoint, CheckpointId, Error, GuestAddress, MachineId, MachineInfo, MachineSpec,
    MachineState, Network, NewCheckpoint,
};
use cgroup::Cgroups;
use firewall::Layout;
use launcher::{LaunchReply, LaunchRequest, NetPlan};
use uid_ranges::{MachineIds, Registry};

pub use disk::{MIN_POOL, PoolConfig, free_space};
pub use firewall::Ipv4Net;
pub use launcher::GUEST_PATH;

/// Settings of the namespaces backend.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where machines' files live (e.g. `<data-dir>/machines`).
    pub state_dir: PathBuf,
    /// Where machines' run dirs (guest sockets) live (e.g. `/run/firepit/machines`).
    pub run_dir: PathBuf,
    /// The executable that runs [`crate::launcher_main`] (the daemon passes
    /// `std::env::current_exe()`).
    pub launcher: PathBuf,
    /// Arguments to it (by default [`crate::LAUNCH_ARG`]).
    pub launcher_args: Vec<OsString>,
    /// The parent cgroup of the machines' cgroups, in each hierarchy.
    pub cgroup_parent: String,
    /// The nftables table (family `inet`) this backend owns and replaces.
    pub nft_table: String,
    /// The bridge earlier versions put machines on, removed at setup (if it
    /// is a bridge). Machines are routed now, each on its own veth.
    pub bridge: String,
    /// Host ends of machines' veths are named this plus an address slot
    /// (at most 9 characters).
    pub veth_prefix: String,
    /// The gateway's address (on the host end of every machine's veth);
    /// machines get addresses after it.
    pub gateway: Ipv4Addr,
    /// The machine subnet's prefix length.
    pub prefix: u8,
    /// How long a stopping guest gets after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// The disk pool that machines with a disk limit keep their writable
    /// layers in; `None`: no pool, and machines with a disk limit are refused.
    pub disk: Option<PoolConfig>,
    /// Ranges machines may reach although they are private, shared or
    /// link-local (by default they may not; see `firewall.rs`).
    pub allow_net: Vec<Ipv4Net>,
    /// The host-wide registry of machines' uid ranges: every backend on a
    /// host must share one (default [`uid_ranges::DEFAULT_REGISTRY`]).
    pub uid_ranges: PathBuf,
    /// Appended to every guest's command line (default none; the bench
    /// passes `--port-poll` to compare port watches that poll).
    pub guest_args: Vec<String>,
    /// CA certificates (PEM) every machine trusts besides its image's, from
    /// its next start on (see [`trust`]); `None`: the image's alone.
    pub extra_ca: Option<String>,
    /// Set in every guest's environment, which all a machine runs inherits
    /// (the daemon's proxy settings). Names are checked by [`Config::check_env`].
    pub env: Vec<(String, String)>,
}

impl Config {
    /// Defaults: cgroups under `firepit`, nftables table `firepit`, an old
    /// bridge `fpbr0`, gateway `10.88.0.1` of subnet `10.88.0.0/16`, veths
    /// `fpv<slot>`, 5 s grace.
    ///
    /// Backends that run side by side on one host (tests next to a daemon)
    /// need distinct cgroup parents, tables, veth prefixes and subnets.
    pub fn new(
        state_dir: impl Into<PathBuf>,
        run_dir: impl Into<PathBuf>,
        launcher: impl Into<PathBuf>,
    ) -> Self {
        Self {
            state_dir: state_dir.into(),
            run_dir: run_dir.into(),
            launcher: launcher.into(),
            launcher_args: vec![launcher::LAUNCH_ARG.into()],
            cgroup_parent: "firepit".into(),
            nft_table: "firepit".into(),
            bridge: "fpbr0".into(),
            veth_prefix: "fpv".into(),
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            prefix: 16,
            stop_grace: Duration::from_secs(5),
            disk: None,
            allow_net: Vec::new(),
            uid_ranges: uid_ranges::DEFAULT_REGISTRY.into(),
            guest_args: Vec::new(),
            extra_ca: None,
            env: Vec::new(),
        }
    }

    /// Refuses an [`Config::env`] that could not reach a guest: an empty
    /// name, one with `=`, or a NUL anywhere.
    pub fn check_env(&self) -> Result<(), Error> {
        for (k, v) in &self.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(Error::InvalidSpec(format!(
                    "{k:?} cannot be set in a machine's environment"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct InitRecord {
    pid: i32,
    start_time: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct NetRecord {
    slot: u32,
}

/// Machines as namespaces on the host kernel. See the module docs.
pub struct NamespacesBackend {
    config: Config,
    cgroups: Cgroups,
    layout: Layout,
    pool: Option<disk::Pool>,
    ranges: Registry,
    host_cpus: usize,
    /// One lock per machine id, so operations on one machine are serialized.
    locks: Mutex<HashMap<MachineId, Arc<Mutex<()>>>>,
    /// The address slots machines of the state dir hold: read from their
    /// `net.json` once at start, then kept here, so choosing a slot reads
    /// no file however many machines there are.
    slots: Mutex<std::collections::BTreeSet<u32>>,
    /// The threads that dial and listen inside machines' network namespaces.
    net: netns::Threads,
    /// The threads that destroy machines for [`Backend::destroy_then`].
    teardown: teardown::Teardown,
}

impl NamespacesBackend {
    /// Checks the host, makes this process a child subreaper (machine inits
    /// are reparented to it when their launcher exits), and sets up the
    /// host's network (forwarding, firewall).
    pub fn new(config: Config) -> Result<Self, Error> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Error::Unsupported(
                "the namespaces backend needs root".into(),
            ));
        }
        config.check_env()?;
        if config.prefix < 8 || config.prefix > 30 {
            return Err(Error::InvalidSpec(format!(
                "network prefix /{} must be in 8..=30",
                config.prefix
            )));
        }
        if config.veth_prefix.len() > 9 || config.bridge.len() > 15 {
            return Err(Error::InvalidSpec(
                "veth prefix (9) or bridge name (15) too long".into(),
            ));
        }
        crate::spec::overlay_option_path("state dir", &config.state_dir)?;
        let cgroups = Cgroups::detect(&config.cgroup_parent)?;
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(Error::sys("becoming a child subreaper")(
                io::Error::last_os_error(),
            ));
        }
        for d in [&config.state_dir, &config.run_dir] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(Error::io("creating", d))?;
            // Root-only, also where an older install made it traversable.
            fs::set_permissions(d, fs::Permissions::from_mode(0o700))
                .map_err(Error::io("setting mode of", d))?;
        }
        let pool = config.disk.as_ref().map(disk::Pool::open).transpose()?;
        let layout = Layout {
            table: config.nft_table.clone(),
            bridge: config.bridge.clone(),
            gateway: config.gateway,
            prefix: config.prefix,
            veth_prefix: config.veth_prefix.clone(),
            allow: config.allow_net.clone(),
        };
        let ranges = Registry::open(&config.uid_ranges)?;
        let slots = used_slots(&config.state_dir)?;
        firewall::setup(&layout, slots.iter().copied().collect())?;
        let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            config,
            cgroups,
            layout,
            pool,
            ranges,
            host_cpus,
            locks: Mutex::default(),
            slots: Mutex::new(slots),
            net: netns::Threads::default(),
            teardown: teardown::Teardown::new((2 * host_cpus).clamp(4, 16)),
        })
    }

    fn lock(&self, id: &MachineId) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_default()
            .clone()
    }

    fn dir(&self, id: &MachineId) -> PathBuf {
        self.config.state_dir.join(id.as_str())
    }

    fn run(&self, id: &MachineId) -> PathBuf {
        self.config.run_dir.join(id.as_str())
    }

    /// Where the machine's writable layer (upper, work, guest log) lives:
    /// its subvolume in the pool when it has a disk limit, else its state dir.
    fn layer_dir(&self, spec: &MachineSpec) -> Result<PathBuf, Error> {
        match (spec.limits.disk_bytes, &self.pool) {
            (None, _) => Ok(self.dir(&spec.id)),
            (Some(_), Some(pool)) => Ok(pool.layer(&spec.id)),
            (Some(_), None) => Err(no_pool(&spec.id)),
        }
    }

    fn socket(&self, id: &MachineId) -> PathBuf {
        self.run(id).join("guest.sock")
    }

    fn load_spec(&self, id: &MachineId) -> Result<MachineSpec, Error> {
        let path = self.dir(id).join("spec.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| Error::State { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(id.to_string())),
            Err(e) => Err(Error::io("reading", path)(e)),
        }
    }

    fn net_slot(&self, id: &MachineId) -> Option<u32> {
        let b = fs::read(self.dir(id).join("net.json")).ok()?;
        serde_json::from_slice::<NetRecord>(&b).ok().map(|r| r.slot)
    }

    /// The running init of a machine, if it still runs (pid reuse excluded).
    fn live_init(&self, id: &MachineId) -> Option<InitRecord> {
        let b = fs::read(self.dir(id).join("init.json")).ok()?;
        let rec: InitRecord = serde_json::from_slice(&b).ok()?;
        reap(rec);
        (procfs::start_time(rec.pid) == Some(rec.start_time)).then_some(rec)
    }

    fn info(&self, id: &MachineId) -> MachineInfo {
        let init = self.live_init(id);
        MachineInfo {
            id: id.clone(),
            state: if init.is_some() {
                MachineState::Running
            } else {
                MachineState::Stopped
            },
            pid: init.map(|r| r.pid as u32),
            address: self.net_slot(id).map(|s| self.layout.address(s)),
            guest: GuestAddress::Unix {
                path: self.socket(id),
                pid: init.map(|r| r.pid as u32),
            },
        }
    }

    fn allocate_slot(&self, id: &MachineId) -> Result<u32, Error> {
        let mut used = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (2..self.layout.slots())
            .find(|s| !used.contains(s))
            .ok_or(Error::AddressesExhausted)?;
        write_json(&self.dir(id).join("net.json"), &NetRecord { slot })?;
        used.insert(slot);
        Ok(slot)
    }

    /// Removes a machine's state dir and gives its address slot back.
    fn remove_dir(&self, id: &MachineId) -> Result<(), Error> {
        let slot = self.net_slot(id);
        remove_all(&self.dir(id))?;
        if let Some(slot) = slot {
            self.slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&slot);
        }
        Ok(())
    }

    /// Makes the machine's dirs: `upper/` (root inside owns it, `base`
    /// outside) and `work/` in its writable layer, `rootfs/` in its state
    /// dir. Nothing inside `upper/` is touched here: what the machine needs
    /// in its root is made by the launcher, below the root's fd, and by the
    /// machine's init (see [`launcher`]).
    fn prepare_dirs(&self, spec: &MachineSpec, base: u32) -> Result<(), Error> {
        let dir = self.dir(&spec.id);
        let layer = match (spec.limits.disk_bytes, &self.pool) {
            (Some(limit), Some(pool)) => pool.create_layer(&spec.id, limit)?,
            _ => self.layer_dir(spec)?,
        };
        let upper = layer.join("upper");
        let image_mode = fs::metadata(&spec.image)
            .map_err(Error::io("reading", &spec.image))?
            .permissions()
            .mode();
        mkdir_owned(&upper, image_mode & 0o7777, base)?;
        mkdir_owned(&layer.join("work"), 0o700, 0)?;
        mkdir_owned(&dir.join("rootfs"), 0o755, 0)
    }

    /// Starts the machine's init through the launcher. Undoes what it did on failure.
    fn launch(&self, spec: &MachineSpec, ids: MachineIds) -> Result<MachineInfo, Error> {
        let id = &spec.id;
        let dir = self.dir(id);
        let run = self.run(id);
        // Leftovers of an earlier run that ended without a stop.
        self.cleanup_runtime(id)?;
        // Root's alone: the machine never sees it, so nothing it does can
        // put a link or a socket of its own where the host dials its guest.
        mkdir_owned(&run, 0o700, 0)?;
        let result = self.launch_inner(spec, ids, &dir, &run);
        if result.is_err() {
            let _ = self.cleanup_runtime(id);
        }
        result
    }

    fn launch_inner(
        &self,
        spec: &MachineSpec,
        ids: MachineIds,
        dir: &Path,
        run: &Path,
    ) -> Result<MachineInfo, Error> {
        let id = &spec.id;
        self.cgroups.create(id.as_str(), &spec.limits)?;
        let net = match spec.network {
            Network::None => None,
            Network::Nat => {
                let slot = match self.net_slot(id) {
                    Some(s) => s,
                    None => self.allocate_slot(id)?,
                };
                let address = self.layout.address(slot);
                Some(NetPlan {
                    host_if: self.layout.veth(slot),
                    address,
                    mac: firewall::mac_of(address),
                    gateway: self.layout.gateway,
                    gateway_mac: firewall::mac_of(self.layout.gateway),
                    table: self.layout.table.clone(),
                })
            }
        };
        let layer = self.layer_dir(spec)?;
        // A fork's layer keeps its parent's owners on disk (`checkpoint`).
        let layer_map = checkpoint::layer_owners(dir)
            .filter(|&owners| owners != ids.base)
            .map(|owners| idmap::LayerMap {
                layer: layer.clone(),
                at: dir.join("layer"),
                owners,
            });
        let seen = layer_map.as_ref().map_or(&layer, |m| &m.at);
        let req = LaunchRequest {
            hostname: id.to_string(),
            image: spec.image.clone(),
            layers: spec.layers.clone(),
            upper: seen.join("upper"),
            work: seen.join("work"),
            rootfs: dir.join("rootfs"),
            guest: spec.guest.clone(),
            socket: run.join("guest.sock"),
            log: layer.join("guest.log"),
            hosts: format!(
                "127.0.0.1\tlocalhost\n127.0.1.1\t{id}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            ),
            resolv_conf: resolv_conf(),
            uid_base: ids.base,
            idmap: ids.idmapped.then(|| idmap::IdmapPlan {
                lower: dir.join("lower"),
                image_uid_base: spec.uid_base,
            }),
            layer_map,
            cgroup_join: self.cgroups.join_files(id.as_str()),
            net,
            guest_args: self.config.guest_args.clone(),
            extra_ca: self.config.extra_ca.clone(),
            env: self.config.env.clone(),
        };
        let reply = self.run_launcher(&req)?;
        let (pid, start_time) = match reply {
            LaunchReply::Started { pid, start_time } => (pid, start_time),
            LaunchReply::Failed { stage, message } => return Err(Error::Launch { stage, message }),
        };
        let rec = InitRecord { pid, start_time };
        if let Err(e) = write_json(&dir.join("init.json"), &rec) {
            kill_init(rec, Duration::ZERO);
            return Err(e);
        }
        Ok(self.info(id))
    }

    /// Creates a machine and starts it; `seed(base)` puts its first files
    /// in place (a fork's), after its uid range (`base`) is chosen and
    /// before its dirs are made. A failure leaves nothing behind.
    fn create_seeded(
        &self,
        spec: &MachineSpec,
        seed: &mut dyn FnMut(u32) -> Result<(), Error>,
    ) -> Result<MachineInfo, Error> {
        spec.validate(self.host_cpus)?;
        let lock = self.lock(&spec.id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        if spec.limits.disk_bytes.is_some() && self.pool.is_none() {
            return Err(no_pool(&spec.id));
        }
        let dir = self.dir(&spec.id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(spec.id.to_string()));
            }
            r => r.map_err(Error::io("creating", &dir))?,
        }
        let mut base = None;
        let result = (|| {
            let ids = MachineIds {
                base: *base.insert(uid_ranges::assign(&self.ranges, &dir, spec.uid_base)?),
                idmapped: true,
            };
            seed(ids.base)?;
            self.prepare_dirs(spec, ids.base)?;
            if spec.network == Network::Nat {
                self.allocate_slot(&spec.id)?;
            }
            // spec.json last: a dir without it is a half-made machine that recover() removes.
            write_json(&dir.join("spec.json"), spec)?;
            self.launch(spec, ids)
        })();
        if result.is_err() {
            let _ = self.cleanup_runtime(&spec.id);
            let _ = self.remove_layer(&spec.id);
            if self.remove_dir(&spec.id).is_ok()
                && let Some(base) = base
            {
                let _ = self.ranges.free(base, &dir);
            }
        }
        result
    }

    fn run_launcher(&self, req: &LaunchRequest) -> Result<LaunchReply, Error> {
        let launch_err = |message: String| Error::Launch {
            stage: "running the launcher".into(),
            message,
        };
        let mut child = Command::new(&self.config.launcher)
            .args(&self.config.launcher_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| launch_err(format!("{}: {e}", self.config.launcher.display())))?;
        let body = serde_json::to_vec(req).expect("request serializes");
        let mut stdin = child.stdin.take().expect("piped");
        let wrote = stdin.write_all(&body);
        drop(stdin);
        let out = child
            .wait_with_output()
            .map_err(|e| launch_err(e.to_string()))?;
        wrote.map_err(|e| launch_err(format!("writing the request: {e}")))?;
        serde_json::from_slice(&out.stdout).map_err(|_| {
            launch_err(format!(
                "no answer ({}); stderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })
    }

    /// Removes what a run of the machine leaves: processes, cgroups, veth,
    /// the run dir and `init.json`. Keeps the files.
    fn cleanup_runtime(&self, id: &MachineId) -> Result<(), Error> {
        self.net.forget(id);
        self.cgroups.remove(id.as_str())?;
        if let Some(slot) = self.net_slot(id) {
            netlink::Netlink::open()?.delete_link(&format!("{}{slot}", self.config.veth_prefix))?;
        }
        remove_all(&self.run(id))?;
        match fs::remove_file(self.dir(id).join("init.json")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io("removing", self.dir(id).join("init.json"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Removes a machine's layer from the pool, if it has one there.
    fn remove_layer(&self, id: &MachineId) -> Result<(), Error> {
        match &self.pool {
            Some(pool) => pool.remove_layer(id),
            None => Ok(()),
        }
    }

    /// Ends the machine's init, after `grace` for it to end its processes
    /// (none: at once), and removes what the run left.
    fn stop_locked(&self, id: &MachineId, grace: Duration) -> Result<(), Error> {
        if !self.dir(id).join("spec.json").exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        if let Some(rec) = self.live_init(id) {
            kill_init(rec, grace);
        }
        self.cleanup_runtime(id)
    }
}

impl Backend for NamespacesBackend {
    fn create(&self, spec: &MachineSpec) -> Result<MachineInfo, Error> {
        self.create_seeded(spec, &mut |_| Ok(()))
    }

    fn start(&self, id: &MachineId) -> Result<MachineInfo, Error> {
        let lock = self.lock(id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let spec = self.load_spec(id)?;
        if self.live_init(id).is_some() {
            return Ok(self.info(id));
        }
        let ids = MachineIds::load(&self.dir(id), &spec)?;
        if ids.idmapped {
            // Never start in a range another machine holds.
            self.ranges.claim(ids.base, &self.dir(id))?;
        }
        self.prepare_dirs(&spec, ids.base)?;
        self.launch(&spec, ids)
    }

    fn stop(&self, id: &MachineId) -> Result<(), Error> {
        let lock = self.lock(id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.stop_locked(id, self.config.stop_grace)
    }

    fn destroy(&self, id: &MachineId) -> Result<(), Error> {
        let lock = self.lock(id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        // No grace: nothing of the machine is kept, so nothing in it needs
        // to end cleanly (its init's end kills the rest of its processes).
        self.stop_locked(id, Duration::ZERO)?;
        let dir = self.dir(id);
        // The range is freed after the dir is gone: a crash in between
        // leaves a stale entry that recover() reclaims.
        let base = uid_ranges::recorded(&dir).ok().flatten();
        self.remove_layer(id)?;
        self.remove_checkpoints(id)?;
        self.remove_dir(id)?;
        if let Some(base) = base {
            self.ranges.free(base, &dir)?;
        }
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }

    fn inspect(&self, id: &MachineId) -> Result<MachineInfo, Error> {
        if !self.dir(id).join("spec.json").exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(self.info(id))
    }

    fn usage(&self, id: &MachineId) -> Result<crate::Usage, Error> {
        if !self.dir(id).join("spec.json").exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        // A stopped machine has no cgroup: only its layer is counted.
        let counted = if self.live_init(id).is_some() {
            self.cgroups.usage(id.as_str())
        } else {
            cgroup::CgroupUsage::default()
        };
        let disk_bytes = self.pool.as_ref().and_then(|pool| {
            let layer = disk::open_dir(&pool.layer(id)).ok()?;
            disk::used_bytes(&layer)
        });
        Ok(crate::Usage {
            cpu_usec: counted.cpu_usec,
            memory_bytes: counted.memory_bytes,
            pids: counted.pids,
            disk_bytes,
        })
    }

    fn recover(&self) -> Result<Vec<MachineInfo>, Error> {
        let mut found = Vec::new();
        let dir = &self.config.state_dir;
        let entries = fs::read_dir(dir).map_err(Error::io("listing", dir))?;
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|s| MachineId::new(s).ok())
            else {
                continue;
            };
            let lock = self.lock(&id);
            let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
            if !entry.path().join("spec.json").exists() {
                tracing::warn!(machine = %id, "removing a machine whose creation did not finish");
                let _ = self.cleanup_runtime(&id);
                remove_all(&entry.path())?;
                continue;
            }
            if self.live_init(&id).is_none() {
                self.cleanup_runtime(&id)?;
            }
            if let Ok(Some(base)) = uid_ranges::recorded(&entry.path())
                && let Err(e) = self.ranges.claim(base, &entry.path())
            {
                tracing::warn!(machine = %id, error = %e, "the machine's uid range is not its own");
            }
            found.push(self.info(&id));
        }
        // Layers of machines that are gone (a destroy cut off halfway).
        if let Some(pool) = &self.pool {
            for id in pool.layers() {
                if !self.dir(&id).join("spec.json").exists() {
                    tracing::warn!(machine = %id, "removing the disk layer of a machine that is gone");
                    pool.remove_layer(&id)?;
                }
            }
        }
        self.recover_checkpoints()?;
        // Ranges of machines that are gone, of this backend or another.
        match self.ranges.reclaim() {
            Ok(freed) if !freed.is_empty() => {
                tracing::info!(
                    count = freed.len(),
                    "reclaimed uid ranges of machines that are gone"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reclaiming uid ranges"),
        }
        // Cgroups of machines that are gone.
        for d in self.cgroups.dirs("") {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name();
                let known = name
                    .to_str()
                    .and_then(|s| MachineId::new(s).ok())
                    .is_some_and(|id| self.dir(&id).exists());
                if e.path().is_dir()
                    && !known
                    && let Some(s) = name.to_str()
                {
                    let _ = self.cgroups.remove(s);
                }
            }
        }
        // Slots of machines removed above.
        *self.slots.lock().unwrap_or_else(|e| e.into_inner()) = used_slots(dir)?;
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    fn guest_address(&self, id: &MachineId) -> Result<GuestAddress, Error> {
        if !self.dir(id).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(GuestAddress::Unix {
            path: self.socket(id),
            pid: self.live_init(id).map(|r| r.pid as u32),
        })
    }

    fn dial(
        &self,
        id: &MachineId,
        addrs: &[std::net::SocketAddr],
    ) -> Result<std::net::TcpStream, Error> {
        self.net.dial(id, || self.running_init(id), addrs)
    }

    fn destroy_then(self: Arc<Self>, id: MachineId, done: crate::DestroyDone) {
        let me = self.clone();
        let job: teardown::Job = Box::new(move || done(me.destroy(&id)));
        if let Err((job, e)) = self.teardown.run(job) {
            // Never on the caller's thread (it may be an async runtime's):
            // on one of its own, or not at all, which drops `done` and so
            // tells a caller waiting on a channel.
            tracing::warn!(error = %e, "destroying on a thread of its own");
            let _ = std::thread::Builder::new()
                .name("fp-destroy".into())
                .spawn(job);
        }
    }

    fn dial_then(
        self: Arc<Self>,
        id: MachineId,
        addrs: Vec<std::net::SocketAddr>,
        done: crate::DialDone,
    ) {
        self.net
            .dial_then(&id, || self.running_init(&id), addrs, done);
    }

    fn listen(
        &self,
        id: &MachineId,
        addr: std::net::SocketAddr,
    ) -> Result<std::net::TcpListener, Error> {
        self.net.listen(id, || self.running_init(id), addr)
    }

    fn checkpoint(&self, id: &MachineId, new: &NewCheckpoint) -> Result<Checkpoint, Error> {
        let lock = self.lock(id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.checkpoint_locked(id, new)
    }

    fn checkpoints(&self, id: &MachineId) -> Result<Vec<Checkpoint>, Error> {
        let lock = self.lock(id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.checkpoints_of(id)
    }

    fn remove_checkpoint(&self, id: &MachineId, checkpoint: &CheckpointId) -> Result<(), Error> {
        let lock = self.lock(id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.remove_checkpoint_locked(id, checkpoint)
    }

    fn restore(&self, id: &MachineId, checkpoint: &CheckpointId) -> Result<MachineInfo, Error> {
        let lock = self.lock(id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.restore_locked(id, checkpoint)
    }

    fn export(
        &self,
        id: &MachineId,
        from: Option<&CheckpointId>,
        dest: &Path,
    ) -> Result<(), Error> {
        let lock = self.lock(id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.export_locked(id, from, dest)
    }

    fn fork(
        &self,
        parent: &MachineId,
        from: Option<&CheckpointId>,
        child: &MachineId,
    ) -> Result<MachineInfo, Error> {
        if parent == child {
            return Err(Error::Exists(child.to_string()));
        }
        let lock = self.lock(parent);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.fork_locked(parent, from, child)
    }
}

impl NamespacesBackend {
    /// A running machine's init, for [`netns`].
    fn running_init(&self, id: &MachineId) -> Option<netns::Init> {
        self.live_init(id).map(|r| netns::Init {
            pid: r.pid,
            start_time: r.start_time,
        })
    }
}

fn no_pool(id: &MachineId) -> Error {
    Error::InvalidSpec(format!(
        "machine {id} has a disk limit, but this backend has no disk pool to enforce it"
    ))
}

/// The address slots recorded by the machines in `state_dir`.
fn used_slots(state_dir: &Path) -> Result<std::collections::BTreeSet<u32>, Error> {
    let mut used = std::collections::BTreeSet::new();
    let entries = fs::read_dir(state_dir).map_err(Error::io("listing", state_dir))?;
    for e in entries.flatten() {
        if let Ok(b) = fs::read(e.path().join("net.json"))
            && let Ok(r) = serde_json::from_slice::<NetRecord>(&b)
        {
            used.insert(r.slot);
        }
    }
    Ok(used)
}

/// Reaps a machine init that has exited, if it is a child of this process
/// (inits are reparented to us, a subreaper, when their launcher exits).
/// Only that pid, and only while it is that zombie: never `waitpid(-1)`,
/// and never a later process that reuses the pid, which would steal other
/// children's exit (tokio's among them).
fn reap(rec: InitRecord) {
    if procfs::is_zombie(rec.pid, rec.start_time) {
        // SAFETY: waitpid on one pid, without blocking.
        unsafe { libc::waitpid(rec.pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

/// Ends a machine's init: SIGTERM, up to `grace` for it to exit, then
/// SIGKILL; waits for the exit and reaps it if it is our child.
fn kill_init(rec: InitRecord, grace: Duration) {
    // SAFETY: pidfd_open on a pid; a failure means it is gone.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, rec.pid, 0) } as libc::c_int;
    if fd < 0 {
        reap(rec);
        return;
    }
    // SAFETY: fd is a fresh pidfd we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // The pidfd pins the process: check it is still the init we started.
    if procfs::start_time(rec.pid) != Some(rec.start_time) {
        reap(rec);
        return;
    }
    let signal = |sig: libc::c_int| {
        // SAFETY: pidfd_send_signal on our pidfd; no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        }
    };
    let exited = |timeout: Duration| {
        let deadline = Instant::now() + timeout;
        loop {
            let mut p = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
                events: libc::POLLIN,
                revents: 0,
            };
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut p, 1, left) };
            if r > 0 {
                return true;
            }
            if r == 0 || Instant::now() >= deadline {
                return false;
            }
        }
    };
    if !grace.is_zero() {
        signal(libc::SIGTERM);
    }
    if grace.is_zero() || !exited(grace) {
        signal(libc::SIGKILL);
        exited(Duration::from_secs(10));
    }
    reap(rec);
}

/// The resolv.conf machines get: the host's, or the upstream one of a
/// host-local stub resolver (systemd-resolved's 127.0.0.53), which machines
/// cannot reach.
fn resolv_conf() -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers = firewall::nameservers(&host);
    if !servers.is_empty()
        && servers.iter().all(|a| a.is_loopback())
        && let Ok(upstream) = fs::read_to_string("/run/systemd/resolve/resolv.conf")
    {
        return upstream;
    }
    host
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec(value).expect("state serializes");
    fs::write(&tmp, body).map_err(Error::io("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(Error::io("writing", path))
}

fn chown(path: &Path, id: u32) -> Result<(), Error> {
    std::os::unix::fs::lchown(path, Some(id), Some(id))
        .map_err(Error::io("changing owner of", path))
}

fn mkdir_owned(path: &Path, mode: u32, owner: u32) -> Result<(), Error> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        r => r.map_err(Error::io("creating", path))?,
    }
    chown(path, owner)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(Error::io("setting mode of", path))
}

/// Removes a machine's dir (state or run) and all in it: no symlink the
/// machine made is followed, no mount crossed, and trees of any depth go.
fn remove_all(path: &Path) -> Result<(), Error> {
    resolve::remove_tree(path).map_err(Error::io("removing", path))
}
