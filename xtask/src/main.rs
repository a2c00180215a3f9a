//! Project tasks, run with `cargo xtask <task>`.
//!
//! - `test`: checks that the committed UI build matches `ui/` (first, from
//!   hashes; then by a rebuild, see `ui.rs`), builds (or reuses) the test
//!   images in the cache directory, schemathesis' virtual environment
//!   (`venv-schemathesis`, pinned) and the MCP clients (`mcp_clients.rs`),
//!   then checks formatting, runs clippy and
//!   the whole test suite with the environment the privileged tests need, and
//!   last (when no test args are given) `test-cgroup2`. `.ci/run` calls
//!   exactly this.
//! - `bench`: runs the machine benchmark (see README).
//! - `bench-preview`: runs the preview proxy benchmark (needs `wrk` and `nginx`).
//! - `bench-browser`: runs the agent's browser benchmark (the `browser` image).
//! - `bench-density`: many idle sessions through the daemon's HTTP API
//!   (default 1000; `-- --sessions N`): idle CPU, memory, create, exec,
//!   preview and destroy next to the same with one session.
//! - `bench-e2b`: the E2B SDK's create → first output next to firepit's own API.
//! - `bench-mcp`: an exec round trip over MCP next to the HTTP API's.
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
mod mcp_clients;
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
        "bench-density" => run_bench(Some("firepit-bench-density"), &rest),
        "bench-e2b" => bench_e2b(&rest),
        "bench-mcp" => bench_mcp(&rest),
        "bench-oci" => bench_oci(&rest),
        "test-cgroup2" => cgroup2::test_cgroup2(&rest, false),
        "images" => named_images(&rest),
        "ui" => ui::ui(&ui::Paths::new(&cache_dir()), &rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|test-cgroup2|bench|bench-preview|bench-browser|bench-density|bench-e2b|bench-mcp|bench-oci|images [NAME…]|ui> [args for cargo test]"
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

/// `cargo xtask images [NAME…]`: the test images, or the built-in images named (such as
/// `default`), built into the cache if they are not there yet.
fn named_images(names: &[String]) -> Result<()> {
    if names.is_empty() {
        return images().map(|_| ());
    }
    let (_, store) = image_store()?;
    for name in names {
        let recipe = firepit_image::Recipe::builtin(name)?;
        let image = firepit_image::cache::ensure(&store, &recipe, &mut reporter(name))?;
        eprintln!(
            "xtask: image {name}: Debian {}, {} MiB",
            image.manifest.suite,
            image.manifest.size_bytes >> 20
        );
    }
    Ok(())
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

/// Whether the tests `extra` selects include the `default` image's (`default_image::`):
/// the whole suite does, a filtered run only when it names them. The image is big (see the
/// README), so a run that does not need it neither builds nor waits for it.
fn needs_default_image(extra: &[String]) -> bool {
    // `-p CRATE`: a run of other crates only does not need it.
    let crates: Vec<&str> = extra
        .windows(2)
        .filter(|w| w[0] == "-p" || w[0] == "--package")
        .map(|w| w[1].as_str())
        .collect();
    if !crates.is_empty() && !crates.contains(&"firepit") {
        return false;
    }
    // Test name filters come after `--`; no filter runs every test.
    let filters: Vec<&str> = extra
        .iter()
        .skip_while(|a| a.as_str() != "--")
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    filters.is_empty()
        || filters.iter().any(|f| {
            // The default image's own tests, and the trust tests, whose clients
            // (pip, Node.js) only it has.
            ["default_image", "trust"]
                .iter()
                .any(|m| f.starts_with(m) || format!("{m}::").contains(f))
        })
}

/// The `default` image (Debian's newest stable with the toolchains and servers), built into
/// the cache the first time; see the README for its size and build time.
fn default_image() -> Result<()> {
    let (_, store) = image_store()?;
    let recipe = firepit_image::Recipe::builtin("default")?;
    firepit_image::cache::ensure(&store, &recipe, &mut reporter("default"))?;
    Ok(())
}

/// The tarball of an npm cache that holds Vite 7 and its template (`FIREPIT_TEST_NPM_CACHE`).
fn vite_cache_tar() -> PathBuf {
    cache_dir().join("npm-vite7.tar")
}

/// Fetches `create-vite@7` and a vanilla project's packages with the host's npm (the
/// registry reached through its own client, as for schemathesis) into an npm cache, packed
/// with the project's `package-lock.json` as a tarball (`cache/`, `package-lock.json`) that
/// the default image's test unpacks in a machine without network. The lock lets the
/// machine's npm (another version than the host's) install from the cache by integrity.
fn vite_npm_cache() -> Result<()> {
    let tar = vite_cache_tar();
    if tar.exists() {
        return Ok(());
    }
    let work = cache_dir().join("npm-vite7");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    let cache = work.join("cache");
    std::fs::create_dir_all(&cache)?;
    let npm = |args: &[&str], dir: &Path| {
        let mut c = Command::new("npm");
        c.args(args)
            .current_dir(dir)
            .env("npm_config_cache", &cache)
            .env("npm_config_yes", "true")
            // The lock names each tarball's URL (whatever the host's npm config says), so
            // the machine's npm needs no registry metadata to install from the cache.
            .env("npm_config_omit_lockfile_registry_resolved", "false")
            .stdin(std::process::Stdio::null());
        c
    };
    run(npm(
        &["create", "vite@7", "app", "--", "--template", "vanilla"],
        &work,
    ))?;
    run(npm(
        &["install", "--no-audit", "--no-fund"],
        &work.join("app"),
    ))?;
    std::fs::copy(
        work.join("app/package-lock.json"),
        work.join("package-lock.json"),
    )
    .context("copying the project's package-lock.json")?;
    let partial = tar.with_extension("tar.partial");
    let mut pack = Command::new("tar");
    pack.arg("-C")
        .arg(&work)
        .arg("-cf")
        .arg(&partial)
        .args(["cache", "package-lock.json"]);
    run(pack)?;
    std::fs::rename(&partial, &tar).with_context(|| format!("renaming {}", tar.display()))?;
    let _ = std::fs::remove_dir_all(&work);
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

/// The `e2b` SDK releases the E2B API test runs (`crates/firepit/tests/it/e2b.rs`):
/// the current one (v2 routes) and one of the 2.2x–2.4x line (v1 routes).
const E2B_SDKS: &[&str] = &["2.63.0", "2.30.0"];

/// The `e2b` npm release the E2B API test runs one script with.
const E2B_JS_SDK: &str = "2.51.0";

/// Installs the pinned `e2b` npm package into `$FIREPIT_CACHE/npm-e2b-<version>`
/// (the same npm cache as the UI's tools), if it is not there yet.
fn e2b_js_sdk() -> Result<()> {
    let dir = cache_dir().join(format!("npm-e2b-{E2B_JS_SDK}"));
    let manifest = dir.join("node_modules/e2b/package.json");
    let installed = std::fs::read_to_string(&manifest)
        .is_ok_and(|m| m.contains(&format!("\"version\": \"{E2B_JS_SDK}\"")));
    if installed {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut npm = Command::new("npm");
    npm.current_dir(&dir)
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&dir)
        .arg("--cache")
        .arg(cache_dir().join("npm"))
        .arg(format!("e2b@{E2B_JS_SDK}"));
    if let Err(e) = run(npm) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(())
}

/// Installs each pinned `e2b` release from PyPI into its own virtual
/// environment in the cache (`venv-e2b-<version>`), if it is not there yet.
fn e2b_sdks() -> Result<()> {
    for version in E2B_SDKS {
        let venv = cache_dir().join(format!("venv-e2b-{version}"));
        let python = venv.join("bin/python");
        let installed = Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('e2b'))",
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == *version);
        if installed {
            continue;
        }
        firepit_image::host::install_python_venv(&mut |m| eprintln!("xtask: {m}"))?;
        if venv.exists() {
            std::fs::remove_dir_all(&venv)
                .with_context(|| format!("removing {}", venv.display()))?;
        }
        let mut mk = Command::new("python3");
        mk.args(["-m", "venv"]).arg(&venv);
        run(mk)?;
        let mut pip = Command::new(venv.join("bin/pip"));
        pip.args(["install", "-q", "--disable-pip-version-check"])
            .arg(format!("e2b=={version}"));
        if let Err(e) = run(pip) {
            let _ = std::fs::remove_dir_all(&venv);
            return Err(e);
        }
    }
    Ok(())
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
    let workbench = needs_default_image(extra);
    if workbench {
        default_image()?;
        vite_npm_cache()?;
    }
    debs()?;
    schemathesis()?;
    e2b_sdks()?;
    e2b_js_sdk()?;
    mcp_clients::install(&cache_dir())?;
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
    if workbench {
        test.env("FIREPIT_TEST_DEFAULT_IMAGE", "default")
            .env("FIREPIT_TEST_NPM_CACHE", vite_cache_tar());
    }
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

fn bench_e2b(extra: &[String]) -> Result<()> {
    e2b_sdks()?;
    run_bench(Some("firepit-bench-e2b"), extra)
}

fn bench_mcp(extra: &[String]) -> Result<()> {
    run_bench(Some("firepit-bench-mcp"), extra)
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
    // `cargo xtask bench-x -- --flag` and `cargo xtask bench-x --flag` both
    // hand `--flag` to the bench.
    let extra = extra.strip_prefix(&["--".to_owned()][..]).unwrap_or(extra);
    bench.arg("--").args(extra);
    test_env(&mut bench, &images, uid_base);
    run(bench)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_image_is_built_when_its_tests_run() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(needs_default_image(&[]));
        assert!(needs_default_image(&args(&["--", "default_image"])));
        assert!(needs_default_image(&args(&[
            "-p", "firepit", "--", "image"
        ])));
        assert!(needs_default_image(&args(&[
            "--",
            "default_image::postgres",
            "--nocapture"
        ])));
        assert!(!needs_default_image(&args(&["--", "preview"])));
        assert!(!needs_default_image(&args(&["-p", "firepit-image"])));
        assert!(!needs_default_image(&args(&[
            "-p",
            "firepit-agent",
            "--",
            "default_image"
        ])));
    }
}
