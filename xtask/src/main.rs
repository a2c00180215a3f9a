//! Project tasks, run with `cargo xtask <task>`.
//!
//! - `test`: builds (or reuses) the test images in the cache directory and
//!   schemathesis' virtual environment (`venv-schemathesis`, pinned), then
//!   checks formatting, runs clippy and the whole test suite with the
//!   environment the privileged tests need. `.ci/run` calls exactly this.
//! - `bench`: runs the machine benchmark (see README).
//! - `bench-preview`: runs the preview proxy benchmark (needs `wrk` and `nginx`).
//! - `bench-browser`: runs the agent's browser benchmark (the `browser` image).
//!
//! The cache directory is `$FIREPIT_CACHE`, default `/var/cache/firepit`:
//! outside the repository, so CI and developers reuse images between runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "test" => test(&rest),
        "bench" => bench(&rest),
        "bench-preview" => bench_preview(&rest),
        "bench-browser" => bench_browser(&rest),
        "images" => images().map(|_| ()),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|bench|bench-preview|bench-browser|images> [args for cargo test]"
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
    let dir = cache_dir().join("images");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let store = firepit_image::ImageStore::open(&dir)?;
    let recipe = firepit_image::Recipe::builtin("minimal")?;
    let image = firepit_image::cache::ensure(&store, &recipe, &mut |p| {
        eprintln!("xtask: image minimal: {p}")
    })?;
    let uid_base = image.manifest.uid_base;
    // The forge tests make sessions from repositories: minimal plus git.
    let git = firepit_image::Recipe::builtin("git")?;
    firepit_image::cache::ensure(&store, &git, &mut |p| eprintln!("xtask: image git: {p}"))?;
    browser_image(&store)?;
    Ok((dir, uid_base))
}

/// The image with Chromium that the browser tests and `bench-browser` use
/// (the name is passed to them as `FIREPIT_TEST_BROWSER_IMAGE`). It takes
/// minutes to build the first time; the cache keeps it.
fn browser_image(store: &firepit_image::ImageStore) -> Result<()> {
    let recipe = firepit_image::Recipe::builtin("browser")?;
    firepit_image::cache::ensure(store, &recipe, &mut |p| {
        eprintln!("xtask: image browser: {p}")
    })?;
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
    firepit_image::host::install_missing(&mut |m| eprintln!("xtask: {m}"))?;
    firepit_image::host::install_missing_from(firepit_image::host::TEST_TOOLS, &mut |m| {
        eprintln!("xtask: {m}")
    })?;
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
    run(test)
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
