//! Shared setup: one backend for the whole test binary, machine specs, and
//! a client of the stand-in guest.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use firepit_machine::namespaces::{Config, NamespacesBackend, PoolConfig};
use firepit_machine::{Backend, GuestAddress, Limits, MachineId, MachineSpec, Network};

pub const STATE_DIR: &str = "/var/tmp/firepit-machine-it/state";
/// The disk pool's image and mount point: made by the first run on a host,
/// kept mounted (like a daemon's) for the next runs.
pub const POOL_IMAGE: &str = "/var/tmp/firepit-machine-it/layers.img";
pub const POOL_DIR: &str = "/var/tmp/firepit-machine-it/layers";
pub const RUN_DIR: &str = "/run/firepit-machine-it";
pub const CGROUP_PARENT: &str = "firepit-it";
pub const VETH_PREFIX: &str = "fpiv";

/// Tests that count host resources take this exclusively; all others share it.
pub static EXCLUSIVE: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner())
}

/// The `firepit` cgroup parents of this host.
pub fn cgroup_dirs() -> Vec<PathBuf> {
    let v1 =
        ["cpu", "memory", "pids"].map(|c| Path::new("/sys/fs/cgroup").join(c).join(CGROUP_PARENT));
    if v1[1].exists() {
        v1.to_vec()
    } else {
        vec![Path::new("/sys/fs/cgroup").join(CGROUP_PARENT)]
    }
}

pub fn rootfs() -> PathBuf {
    match std::env::var_os("FIREPIT_TEST_ROOTFS") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "FIREPIT_TEST_ROOTFS is not set: point it at a root filesystem tree (for example one \
             made with `mmdebstrap --variant=minbase --include=python3,iproute2,procps bookworm DIR`) \
             whose files are owned by uid/gid shifted by FIREPIT_TEST_UID_BASE (default 100000)"
        ),
    }
}

pub fn uid_base() -> u32 {
    std::env::var("FIREPIT_TEST_UID_BASE").map_or(100000, |v| {
        v.parse().expect("FIREPIT_TEST_UID_BASE is a number")
    })
}

pub fn config() -> Config {
    let mut c = Config::new(
        STATE_DIR,
        RUN_DIR,
        env!("CARGO_BIN_EXE_firepit-machine-launch"),
    );
    c.launcher_args.clear();
    // Apart from any daemon on this host.
    c.cgroup_parent = CGROUP_PARENT.into();
    c.nft_table = "firepit_it".into();
    c.bridge = "fpitbr0".into();
    c.veth_prefix = VETH_PREFIX.into();
    c.gateway = std::net::Ipv4Addr::new(10, 89, 0, 1);
    c.stop_grace = Duration::from_secs(2);
    c.disk = Some(PoolConfig {
        image: POOL_IMAGE.into(),
        dir: POOL_DIR.into(),
        size_bytes: 2 << 30,
    });
    c
}

pub fn backend() -> &'static NamespacesBackend {
    static B: OnceLock<NamespacesBackend> = OnceLock::new();
    B.get_or_init(|| {
        NamespacesBackend::new(config()).expect("backend starts (run the tests as root)")
    })
}

pub fn guest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/test_guest.py")
}

pub fn spec(id: &str, network: Network) -> MachineSpec {
    MachineSpec {
        id: MachineId::new(id).unwrap(),
        image: rootfs(),
        layers: Vec::new(),
        uid_base: uid_base(),
        limits: Limits {
            memory_bytes: 256 << 20,
            cpus: 1.0,
            pids: 256,
            // Most tests keep their layer in the state dir, as machines made
            // before disk limits do; `disk.rs` tests the pool.
            disk_bytes: None,
        },
        network,
        guest: guest(),
    }
}

/// A machine destroyed when dropped.
pub struct Machine {
    pub id: MachineId,
    pub pid: u32,
}

impl Machine {
    pub fn create(spec: MachineSpec) -> Machine {
        let _ = backend().destroy(&spec.id);
        let info = backend().create(&spec).expect("machine is created");
        let m = Machine {
            id: spec.id,
            pid: info.pid.expect("running"),
        };
        m.wait_ready();
        m
    }

    pub fn socket(&self) -> PathBuf {
        match backend().guest_address(&self.id).unwrap() {
            GuestAddress::Unix { path, .. } => path,
        }
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(self.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "guest of {} did not listen",
                self.id
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs a shell command inside; returns (exit status, output).
    pub fn sh(&self, cmd: &str) -> (i32, String) {
        let mut s = UnixStream::connect(self.socket()).expect("guest socket");
        s.write_all(cmd.as_bytes()).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (code, rest) = out.split_once('\n').unwrap_or((&out, ""));
        (code.parse().unwrap_or(-1), rest.to_string())
    }

    /// Runs a command that must succeed; returns its trimmed output.
    pub fn ok(&self, cmd: &str) -> String {
        let (code, out) = self.sh(cmd);
        assert_eq!(code, 0, "{cmd}: {out}");
        out.trim().to_string()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = backend().destroy(&self.id);
    }
}
