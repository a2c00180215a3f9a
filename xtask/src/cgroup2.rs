//! `cargo xtask test-cgroup2 [ARGS]`: the machine limit tests on a host that
//! has cgroup v2 alone, as Debian 12, Ubuntu 22.04+ and Fedora have, inside
//! a QEMU VM, so that the v2 code of `firepit-machine`'s `cgroup.rs` runs
//! whatever the host's own cgroup layout.
//!
//! The VM boots Debian's kernel (`linux-image-amd64`, downloaded with
//! `apt-get download` and unpacked into the cache, never installed) with
//! `cgroup_no_v1=all` under TCG (a stock kernel does not boot under KVM on
//! every host that has `/dev/kvm`). Its initramfs is made here: Debian's
//! `busybox-static`, the kernel modules the tests need (9p, virtio, overlay,
//! veth, bridge, nftables) with their dependencies in load order, and two
//! scripts, `cgroup2/init.sh` (load the modules, mount the host's root
//! read-only over virtio-9p with tmpfs over `/run`, `/tmp` and `/var/tmp`,
//! switch to it) and `cgroup2/stage2.sh` (mount cgroup2 at `/sys/fs/cgroup`,
//! as there is no systemd, run the tests, power off). Since the VM's root is
//! the host's, every path the test binary was built with (the launcher, the
//! static guest, `test_guest.py`) and the `minimal` image are where they are
//! on the host.
//!
//! Each run shares a scratch dir with the VM (9p tag `out`): the run script
//! (`run.sh`: the test binary of `firepit-machine`'s `it` tests, with the
//! image's environment, and `ARGS`, default `limits:: lifecycle::`: the
//! limits, and that a machine's cgroup goes with it), and the exit status
//! the VM writes back (`status`). The serial console goes to
//! `<target>/cgroup2-vm/console.log`, and its lines other than kernel
//! messages to stderr. Kernel and initramfs are kept in
//! `$FIREPIT_CACHE/vm/<kernel package>-<hash>/`, the hash over what makes
//! them, so a rerun only boots.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The metapackage whose dependency names the current kernel package.
const KERNEL_META: &str = "linux-image-amd64";
/// The package that provides the initramfs's shell and tools.
const BUSYBOX: &str = "busybox-static";
/// The modules the VM loads (with their dependencies, first): the host's
/// root over virtio-9p, entropy, and what the tests' machines use (overlay
/// roots; veth, the bridge and the nftables rules the backend sets up; a
/// dummy interface for the VM's default route; loop and btrfs for the
/// machines' disk pool).
/// `crc32c_generic` is the implementation `libcrc32c` (of nf_tables) asks
/// for by its alias `crc32c` as a soft dependency, which is not followed.
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_rng",
    "9pnet_virtio",
    "9p",
    "overlay",
    "veth",
    "dummy",
    "bridge",
    "crc32c_generic",
    "nf_tables",
    "nft_ct",
    "nft_chain_nat",
    "nft_masq",
    "nft_meta_bridge",
    "loop",
    "btrfs",
];
const INIT: &str = include_str!("cgroup2/init.sh");
const STAGE2: &str = include_str!("cgroup2/stage2.sh");
/// The kernel command line: cgroup v2 alone, console on the serial port, a
/// panic ends QEMU (`-no-reboot`).
const CMDLINE: &str = "console=ttyS0 panic=-1 loglevel=4 random.trust_cpu=on \
                       systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all";
/// The test filter when none is given.
const DEFAULT_ARGS: &[&str] = &["limits::", "lifecycle::"];
/// How long the VM may run before it is killed and the run fails.
const VM_TIME_LIMIT: Duration = Duration::from_secs(45 * 60);

/// Runs the task; `args` go to the test binary. `workspace`: the test
/// binary is taken from a build of the whole workspace's tests (as
/// `cargo xtask test` builds them, so nothing is rebuilt), else from a build
/// of `firepit-machine`'s alone (less to build, but other features of shared
/// dependencies than the workspace's).
pub fn test_cgroup2(args: &[String], workspace: bool) -> Result<()> {
    let start = Instant::now();
    phase("host packages (qemu-system-x86)");
    firepit_image::host::install_missing_from(
        &[("qemu-system-x86_64", "qemu-system-x86")],
        &mut |m| eprintln!("xtask: cgroup2: {m}"),
    )?;
    phase("minimal image");
    let image = crate::minimal_image()?;
    phase("kernel and initramfs");
    let cache = crate::cache_dir().join("vm");
    sweep(&cache);
    let vm = vm_files(&cache)?;
    phase("building the test binary");
    let test_bin = build_test_binary(workspace)?;
    let target = target_dir();
    let log_dir = target.join("cgroup2-vm");
    fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let run_dir = cache.join(format!("run-{}", std::process::id()));
    let _ = fs::remove_dir_all(&run_dir);
    fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let args: Vec<String> = if args.is_empty() {
        DEFAULT_ARGS.iter().map(|s| s.to_string()).collect()
    } else {
        args.to_vec()
    };
    write_file(
        &run_dir.join("run.sh"),
        run_script(&test_bin, &image.rootfs, image.manifest.uid_base, &args).as_bytes(),
    )?;
    let log = log_dir.join("console.log");
    phase(&format!(
        "booting the VM (TCG, 2 CPUs, 2 GiB; console in {})",
        log.display()
    ));
    let booted = Instant::now();
    let result = boot(&vm, &run_dir, &log);
    let status = fs::read_to_string(run_dir.join("status"));
    let _ = fs::remove_dir_all(&run_dir);
    result?;
    let vm_time = booted.elapsed();
    let total = start.elapsed();
    match status.as_deref().map(str::trim) {
        Ok("0") => {
            eprintln!(
                "xtask: cgroup2: PASS ({} s in the VM, {} s in all)",
                vm_time.as_secs(),
                total.as_secs()
            );
            Ok(())
        }
        Ok(code) => bail!(
            "cgroup2: FAIL: the tests exited with {code} under cgroup v2 (see {})",
            log.display()
        ),
        Err(_) => bail!(
            "cgroup2: FAIL: the VM stopped without a test status (see {})",
            log.display()
        ),
    }
}

/// Removes the scratch dirs (`.build-<pid>`, `run-<pid>`) of runs that were
/// killed: those whose process is gone.
fn sweep(cache: &Path) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(".build-")
            .or_else(|| name.strip_prefix("run-"))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn phase(what: &str) {
    eprintln!("xtask: cgroup2: {what}");
}

/// The kernel and initramfs of the VM.
struct VmFiles {
    kernel: PathBuf,
    initramfs: PathBuf,
}

/// The cached kernel and initramfs, made first when missing.
fn vm_files(cache: &Path) -> Result<VmFiles> {
    let package = kernel_package()?;
    let mut hash = Fnv::default();
    for part in [package.as_str(), INIT, STAGE2, &MODULES.join(",")] {
        hash.write(part.as_bytes());
        hash.write(&[0]);
    }
    let dir = cache.join(format!("{package}-{:016x}", hash.0));
    let files = VmFiles {
        kernel: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio"),
    };
    if files.kernel.is_file() && files.initramfs.is_file() {
        eprintln!("xtask: cgroup2: cached in {}", dir.display());
        return Ok(files);
    }
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let scratch = cache.join(format!(".build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let made = make_vm_files(&scratch, &package);
    if made.is_ok() {
        match fs::rename(scratch.join("out"), &dir) {
            // Another run made the same files meanwhile.
            Err(_) if files.initramfs.is_file() => {}
            r => r.with_context(|| format!("moving the VM files to {}", dir.display()))?,
        }
    }
    let _ = fs::remove_dir_all(&scratch);
    made?;
    // Older kernels and initramfs versions are of no further use.
    for entry in fs::read_dir(cache)?.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("linux-image-") && entry.path() != dir {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(files)
}

/// The kernel package `linux-image-amd64` depends on now.
fn kernel_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "--important", KERNEL_META])
        .output()
        .context("running apt-cache (a Debian host is needed)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .with_context(|| format!("apt-cache names no kernel package that {KERNEL_META} depends on"))
}

/// Downloads and unpacks the kernel and busybox into `scratch`, and makes
/// `scratch/out/{vmlinuz,initramfs.cpio}`.
fn make_vm_files(scratch: &Path, kernel_pkg: &str) -> Result<()> {
    let debs = scratch.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    eprintln!("xtask: cgroup2: downloading {kernel_pkg} and {BUSYBOX}");
    download(&debs, &[kernel_pkg, BUSYBOX])?;
    let tree = scratch.join("tree");
    for entry in fs::read_dir(&debs)?.filter_map(|e| e.ok()) {
        let mut x = Command::new("dpkg-deb");
        x.arg("-x").arg(entry.path()).arg(&tree);
        crate::run(x)?;
    }
    let out = scratch.join("out");
    fs::create_dir_all(&out)?;
    let vmlinuz = find_file(&tree.join("boot"), |n| n.starts_with("vmlinuz-"))?;
    fs::copy(&vmlinuz, out.join("vmlinuz")).context("copying the kernel")?;
    let modules_root = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| tree.join(p))
        .find(|p| p.is_dir())
        .context("the kernel package has no lib/modules")?;
    let modules_dir = fs::read_dir(&modules_root)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .context("the kernel package has no modules dir")?;
    let busybox = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| tree.join(p))
        .find(|p| p.is_file())
        .context("busybox-static has no busybox binary")?;
    let order = module_order(&modules_dir, MODULES)?;
    eprintln!(
        "xtask: cgroup2: initramfs with busybox and {} modules",
        order.len()
    );
    let mut cpio = Cpio::default();
    for d in [
        "bin", "dev", "proc", "sys", "newroot", "modules", "run", "tmp",
    ] {
        cpio.dir(d);
    }
    // The kernel opens the initramfs's /dev/console for /init's stdio.
    cpio.char_dev("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &fs::read(&busybox)?);
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file("stage2", 0o755, STAGE2.as_bytes());
    let mut names = String::new();
    for (name, path) in &order {
        cpio.file(
            &format!("modules/{name}.ko"),
            0o644,
            &fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        );
        names.push_str(name);
        names.push('\n');
    }
    cpio.file("modules/order", 0o644, names.as_bytes());
    write_file(&out.join("initramfs.cpio"), &cpio.finish())
}

/// `apt-get download`s `packages` into `dir`, updating the package lists
/// once if that fails.
fn download(dir: &Path, packages: &[&str]) -> Result<()> {
    let get = || {
        let mut cmd = Command::new("apt-get");
        // Root downloads into a root-owned dir; apt's sandbox user could not.
        cmd.current_dir(dir)
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .args(packages);
        crate::run(cmd)
    };
    if get().is_err() {
        let mut update = Command::new("apt-get");
        update.args(["update", "-q"]);
        crate::run(update)?;
        get()?;
    }
    Ok(())
}

fn find_file(dir: &Path, want: impl Fn(&str) -> bool) -> Result<PathBuf> {
    fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .find(|e| want(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .with_context(|| format!("no such file in {}", dir.display()))
}

/// A module's name as the kernel knows it (`-` and `_` are one).
fn module_name(file_stem: &str) -> String {
    file_stem.replace('-', "_")
}

/// `wanted` and the modules they depend on, each after its dependencies,
/// with their files under `modules_dir` (`<modules_dir>/kernel/**.ko`).
/// Modules built into the kernel (`modules.builtin`) are left out.
fn module_order(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![modules_dir.join("kernel")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
        {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                files.insert(module_name(stem), path);
            }
        }
    }
    let builtin: BTreeSet<String> = fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
        .map(module_name)
        .collect();
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    for name in wanted {
        visit(
            &module_name(name),
            &files,
            &builtin,
            &mut done,
            &mut order,
            0,
        )?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    builtin: &BTreeSet<String>,
    done: &mut BTreeSet<String>,
    order: &mut Vec<(String, PathBuf)>,
    depth: usize,
) -> Result<()> {
    if done.contains(name) || builtin.contains(name) {
        return Ok(());
    }
    if depth > 64 {
        bail!("module dependencies of {name} go round in a loop");
    }
    let path = files
        .get(name)
        .with_context(|| format!("the kernel has no module {name}"))?;
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    for dep in modinfo_depends(&bytes) {
        visit(&dep, files, builtin, done, order, depth + 1)?;
    }
    done.insert(name.to_string());
    order.push((name.to_string(), path.clone()));
    Ok(())
}

/// The `depends=` entry of a module's `.modinfo` section: NUL-separated
/// `key=value` strings.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let Some(at) = ko
        .windows(key.len() + 1)
        .position(|w| w[0] == 0 && &w[1..] == key)
    else {
        return Vec::new();
    };
    let value = &ko[at + 1 + key.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(module_name)
        .collect()
}

/// An uncompressed initramfs: the cpio "newc" format the kernel unpacks.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, 0, 0, &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, 0, 0, data);
    }

    fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020_600, major, minor, &[]);
    }

    fn entry(&mut self, name: &str, mode: u32, rmajor: u32, rminor: u32, data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o040_000 != 0 { 2 } else { 1 },
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rmajor,
            rminor,
            name.len() as u32 + 1,
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 0, 0, &[]);
        self.buf
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Builds `firepit-machine`'s `it` tests (and with them the launcher and
/// the static guest), or all of the workspace's; returns that test binary.
fn build_test_binary(workspace: bool) -> Result<PathBuf> {
    let mut cmd = crate::cargo();
    cmd.arg("test");
    if workspace {
        cmd.arg("--workspace");
    } else {
        cmd.args(["-p", "firepit-machine", "--test", "it"]);
    }
    cmd.args(["--no-run", "--message-format=json-render-diagnostics"])
        .stdout(Stdio::piped());
    let out = cmd
        .spawn()
        .and_then(|c| c.wait_with_output())
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "building the it tests of firepit-machine failed ({})",
            out.status
        );
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let manifest = msg["manifest_path"].as_str().unwrap_or("");
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == "it"
            && manifest.ends_with("crates/firepit-machine/Cargo.toml")
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo named no executable for the it tests of firepit-machine")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// The script the VM runs: the test binary with the environment the
/// privileged tests read.
fn run_script(test_bin: &Path, rootfs: &Path, uid_base: u32, args: &[String]) -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/firepit-machine");
    let mut s =
        String::from("export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
    s.push_str("export RUST_BACKTRACE=0\n");
    s.push_str(&format!(
        "export FIREPIT_TEST_ROOTFS={}\n",
        quote(&rootfs.to_string_lossy())
    ));
    s.push_str(&format!("export FIREPIT_TEST_UID_BASE={uid_base}\n"));
    s.push_str(&format!("cd {}\n", quote(&crate_dir.to_string_lossy())));
    s.push_str(&quote(&test_bin.to_string_lossy()));
    // The console is a terminal; the log is not.
    s.push_str(" --color never");
    for a in args {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s.push('\n');
    s
}

/// `s` as one shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

/// Boots the VM and waits for it to power off, the console going to `log`.
fn boot(vm: &VmFiles, run_dir: &Path, log: &Path) -> Result<()> {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048"])
        .args(["-nodefaults", "-no-user-config", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args(["-nic", "none", "-device", "virtio-rng-pci"])
        .arg("-kernel")
        .arg(&vm.kernel)
        .arg("-initrd")
        .arg(&vm.initramfs)
        .args(["-append", CMDLINE])
        .arg("-virtfs")
        .arg("local,path=/,mount_tag=root,security_model=passthrough,readonly=on,multidevs=remap")
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=out,security_model=passthrough,multidevs=remap",
            run_dir.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().expect("piped");
    let mut file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\r');
            let _ = writeln!(file, "{line}");
            // Kernel messages start with their time stamp.
            if !line.starts_with('[') && !line.trim().is_empty() {
                eprintln!("vm: {line}");
            }
        }
    });
    let deadline = Instant::now() + VM_TIME_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            bail!(
                "the VM ran longer than {} min and was stopped",
                VM_TIME_LIMIT.as_secs() / 60
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = reader.join();
    if !status.success() {
        bail!(
            "qemu-system-x86_64 failed ({status}; see {})",
            log.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_of_a_modinfo_section() {
        let ko = b"\x7fELF....\0license=GPL\0depends=9pnet,fscache,net-fs\0name=9p\0";
        assert_eq!(modinfo_depends(ko), ["9pnet", "fscache", "net_fs"]);
        assert!(modinfo_depends(b"\0depends=\0name=overlay\0").is_empty());
        assert!(modinfo_depends(b"nothing here").is_empty());
    }

    #[test]
    fn modules_come_after_their_dependencies() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let k = dir.join("kernel/net");
        fs::create_dir_all(&k).unwrap();
        fs::write(k.join("a.ko"), b"\0depends=b,c\0").unwrap();
        fs::write(k.join("b.ko"), b"\0depends=c\0").unwrap();
        fs::write(k.join("c.ko"), b"\0depends=\0").unwrap();
        fs::write(k.join("d.ko"), b"\0depends=e\0").unwrap();
        fs::write(dir.join("modules.builtin"), "kernel/lib/e.ko\n").unwrap();
        let order = module_order(&dir, &["a", "d"]).unwrap();
        let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["c", "b", "a", "d"]);
        assert!(module_order(&dir, &["missing"]).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"abc");
        let buf = c.finish();
        assert!(buf.starts_with(b"070701"));
        assert_eq!(buf.len() % 4, 0);
        // Header (110 bytes) + "init\0" padded to 116, data padded to 120.
        assert_eq!(&buf[110..115], b"init\0");
        assert_eq!(&buf[116..119], b"abc");
        assert_eq!(&buf[120..126], b"070701");
        assert!(buf.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
