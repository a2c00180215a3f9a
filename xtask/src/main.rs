//! Project tasks, run with `cargo xtask <task>`.
//!
//! - `test`: checks that the committed UI build matches `ui/` (first, from
//!   hashes; then by a rebuild, see `ui.rs`), builds (or reuses) the test
//!   images in the cache directory and schemathesis' virtual environment
//!   (`venv-schemathesis`, pinned), then checks formatting, runs clippy and
//!   the whole test suite with the environment the privileged tests need, and
//!   last (when no test args are given) `test-cgroup2`. `.ci/run` calls
//!   exactly this.
//! - `bench`: runs the machine benchmark (see README).
//! - `bench-preview`: runs the preview proxy benchmark (needs `wrk` and `nginx`).
//! - `bench-browser`: runs the agent's browser benchmark (the `browser` image).
//! - `bench-oci`: pulls a 3-layer OCI image cold and warm next to `skopeo copy` +
//!   `umoci unpack`, and times a machine on it to first output.
//! - `test-cgroup2`: runs the machine limit tests on a cgroup v2-only kernel
//!   in a QEMU VM (see `cgroup2.rs`).
//! - `ui`: regenerates `ui/src/wire.ts` and builds the web UI into the
//!   committed `crates/firepit-ui/dist` (needs Node.js; see `ui.rs`);
//!   `ui --check` only checks that the committed build is what `ui/` builds to.
//!
//! The cache directory is `$FIREPIT_CACHE`, default `/var/cache/firepit`:
//! outside the repository, so CI and developers reuse images between runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod cgroup2;
mod ui;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "test" => test(&rest),
        "bench" => bench(&rest),
        "bench-preview" => bench_preview(&rest),
        "bench-browser" => bench_browser(&rest),
        "bench-oci" => bench_oci(&rest),
        "test-cgroup2" => cgroup2::test_cgroup2(&rest, false),
        "images" => images().map(|_| ()),
        "ui" => ui::ui(&ui::Paths::new(&cache_dir()), &rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|test-cgroup2|bench|bench-preview|bench-browser|bench-oci|images|ui> [args for cargo test]"
            );
            bail!("unknown task {task:?}")
        }
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("FIREPIT_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/firepit"), PathBuf::from)
}

/// Builds the images the tests use, if they are not cached yet; returns the
/// images dir and the minimal image's uid base.
fn images() -> Result<(PathBuf, u32)> {
    let (dir, store) = image_store()?;
    let uid_base = minimal(&store)?.manifest.uid_base;
    // The forge tests make sessions from repositories: minimal plus git.
    let git = firepit_image::Recipe::builtin("git")?;
    firepit_image::cache::ensure(&store, &git, &mut reporter("git"))?;
    browser_image(&store)?;
    Ok((dir, uid_base))
}

/// An image build's progress: a live line on a terminal, a line per report
/// otherwise (see `firepit-progress`).
fn reporter(name: &str) -> impl FnMut(firepit_image::Progress) + use<> {
    let mut line = firepit_progress::Progress::phases(format!("xtask: image {name}"));
    move |p| line.message(p.to_string())
}

fn image_store() -> Result<(PathBuf, firepit_image::ImageStore)> {
    let dir = cache_dir().join("images");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let store = firepit_image::ImageStore::open(&dir)?;
    Ok((dir, store))
}

fn minimal(store: &firepit_image::ImageStore) -> Result<firepit_image::Image> {
    let recipe = firepit_image::Recipe::builtin("minimal")?;
    Ok(firepit_image::cache::ensure(
        store,
        &recipe,
        &mut reporter("minimal"),
    )?)
}

/// The `minimal` image alone, built if it is not cached yet.
fn minimal_image() -> Result<firepit_image::Image> {
    minimal(&image_store()?.1)
}

/// The image with Chromium that the browser tests and `bench-browser` use
/// (the name is passed to them as `FIREPIT_TEST_BROWSER_IMAGE`). It takes
/// minutes to build the first time; the cache keeps it.
fn browser_image(store: &firepit_image::ImageStore) -> Result<()> {
    let recipe = firepit_image::Recipe::builtin("browser")?;
    firepit_image::cache::ensure(store, &recipe, &mut reporter("browser"))?;
    Ok(())
}

/// Downloads the `.deb` files the tests install inside machines (with the
/// host's apt, from its configured archive), if they are not cached yet.
fn debs() -> Result<PathBuf> {
    let dir = cache_dir().join("debs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let have = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("hello_"));
    if !have {
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(&dir).args(["download", "-q", "hello"]);
        if run(cmd).is_err() {
            let mut update = Command::new("apt-get");
            update.args(["update", "-q"]);
            run(update)?;
            let mut cmd = Command::new("apt-get");
            cmd.current_dir(&dir).args(["download", "-q", "hello"]);
            run(cmd)?;
        }
    }
    Ok(dir)
}

/// The schemathesis release the API test runs (`crates/firepit/tests/it/schemathesis.rs`).
const SCHEMATHESIS: &str = "4.32.5";

/// Installs schemathesis (pinned) from PyPI into a virtual environment in
/// the cache, if it is not there yet; returns the path of its command.
fn schemathesis() -> Result<PathBuf> {
    let venv = cache_dir().join("venv-schemathesis");
    let bin = venv.join("bin/schemathesis");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SCHEMATHESIS));
    if installed {
        return Ok(bin);
    }
    firepit_image::host::install_python_venv(&mut |m| eprintln!("xtask: {m}"))?;
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    let mut mk = Command::new("python3");
    mk.args(["-m", "venv"]).arg(&venv);
    run(mk)?;
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "-q", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={SCHEMATHESIS}"));
    if let Err(e) = run(pip) {
        // A half-made environment must not look installed next time.
        let _ = std::fs::remove_dir_all(&venv);
        return Err(e);
    }
    Ok(bin)
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn test_env(cmd: &mut Command, images: &Path, uid_base: u32) {
    let venv = cache_dir().join("venv-schemathesis/bin/schemathesis");
    cmd.env("FIREPIT_TEST_SCHEMATHESIS", venv);
    cmd.env("FIREPIT_TEST_IMAGES", images)
        .env("FIREPIT_TEST_DEBS", cache_dir().join("debs"))
        .env("FIREPIT_TEST_ROOTFS", images.join("minimal/rootfs"))
        .env("FIREPIT_TEST_UID_BASE", uid_base.to_string())
        .env("FIREPIT_TEST_BROWSER_IMAGE", "browser");
}

fn test(extra: &[String]) -> Result<()> {
    // First, and without Node.js: a UI edited and not rebuilt fails here.
    let ui_paths = ui::Paths::new(&cache_dir());
    ui::check_stamp(&ui_paths)?;
    firepit_image::host::install_missing(&mut |m| eprintln!("xtask: {m}"))?;
    firepit_image::host::install_missing_from(firepit_image::host::TEST_TOOLS, &mut |m| {
        eprintln!("xtask: {m}")
    })?;
    ui::verify_rebuild(&ui_paths, false)?;
    let (images, uid_base) = images()?;
    debs()?;
    schemathesis()?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    let mut test = cargo();
    test.args(["test", "--workspace"]).args(extra);
    test_env(&mut test, &images, uid_base);
    run(test)?;
    // The machine tests ran on this host's cgroup layout; the limits are
    // proven on a cgroup v2-only kernel too. A filtered run skips it.
    // The VM lays tmpfs over /tmp, /run and /var/tmp of the host's root, so a
    // workspace there is out of its sight: say so and how to run it instead.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let hidden = ["/tmp", "/run", "/var/tmp"]
        .iter()
        .any(|d| root.starts_with(d));
    if extra.is_empty() && hidden {
        eprintln!(
            "xtask: skipping test-cgroup2: the VM cannot see a workspace under /tmp, /run or /var/tmp ({}); run `cargo xtask test-cgroup2` from a clone elsewhere",
            root.display()
        );
    } else if extra.is_empty() {
        cgroup2::test_cgroup2(&[], true)?;
    }
    Ok(())
}

fn bench(extra: &[String]) -> Result<()> {
    run_bench(None, extra)
}

fn bench_preview(extra: &[String]) -> Result<()> {
    run_bench(Some("firepit-bench-preview"), extra)
}

fn bench_browser(extra: &[String]) -> Result<()> {
    run_bench(Some("firepit-bench-browser"), extra)
}

fn bench_oci(extra: &[String]) -> Result<()> {
    run_bench(Some("firepit-bench-oci"), extra)
}

/// Runs a benchmark binary of `firepit-bench` (its default one without
/// `bin`), released, with the test images and their environment.
fn run_bench(bin: Option<&str>, extra: &[String]) -> Result<()> {
    let (images, uid_base) = images()?;
    let mut bench = cargo();
    bench.args(["run", "--release", "-p", "firepit-bench"]);
    if let Some(bin) = bin {
        bench.args(["--bin", bin]);
    }
    bench.arg("--").args(extra);
    test_env(&mut bench, &images, uid_base);
    run(bench)
}
