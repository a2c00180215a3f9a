//! Builds the web UI (`ui/` at the repository root) and writes the list of
//! its files for `src/lib.rs` to embed.
//!
//! The output is cached by a hash of the UI's sources (the files under
//! `ui/src`, `index.html`, `package.json`, `package-lock.json`,
//! `vite.config.ts`, `tsconfig.json`) in `$FIREPIT_CACHE/ui/dist-<hash>`
//! (default `/var/cache/firepit`; the build's `OUT_DIR` when that is not
//! writable), so an unchanged UI costs no Node.js at all. Otherwise the
//! sources are copied to a scratch dir there, `node_modules` comes from
//! `$FIREPIT_CACHE/ui/node_modules-<lock hash>` (made once by `npm ci`, with
//! npm's own cache in `$FIREPIT_CACHE/npm`), and `tsc --noEmit` and
//! `vite build` run. Nothing is written into the repository.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Files at the top of `ui/` that the build depends on.
const TOP_FILES: &[&str] = &[
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
];

/// Whether Vite 8 runs on this Node.js version (`^20.19.0 || >=22.12.0`).
fn node_is_new_enough(major: u32, minor: u32) -> bool {
    (major == 20 && minor >= 19) || (major == 22 && minor >= 12) || major > 22
}

fn main() {
    if let Err(message) = run() {
        println!("cargo::error=firepit-ui: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env("OUT_DIR")?);
    let ui = manifest.join("../../ui");
    let ui = ui
        .canonicalize()
        .map_err(|e| format!("the UI sources are missing ({}): {e}", ui.display()))?;
    println!("cargo::rerun-if-env-changed=FIREPIT_CACHE");
    println!("cargo::rerun-if-changed={}", ui.join("src").display());
    for f in TOP_FILES {
        println!("cargo::rerun-if-changed={}", ui.join(f).display());
    }

    let sources = source_files(&ui)?;
    let hash = hash_files(&ui, &sources)?;
    let lock_hash = hash_files(&ui, &[PathBuf::from("package-lock.json")])?;
    let cache = cache_dir(&out);
    let dist = cache.join(format!("dist-{hash}"));
    if dist.join("index.html").is_file() {
        // Used now: the newest builds are the ones pruning keeps.
        let _ = fs::File::open(&dist).and_then(|f| f.set_modified(std::time::SystemTime::now()));
    } else {
        build(&ui, &sources, &cache, &lock_hash, &dist)?;
    }

    // Embed a copy in OUT_DIR, so a cleaned cache never breaks a rebuild.
    let embedded = out.join("dist");
    let _ = fs::remove_dir_all(&embedded);
    copy_tree(&dist, &embedded)?;
    let mut files = Vec::new();
    walk(&embedded, &embedded, &mut files)?;
    files.sort();
    let mut code =
        format!("/// See the crate's `SOURCE_HASH`.\npub const SOURCE_HASH: &str = {hash:?};\n");
    code.push_str("/// Every built file.\npub static ASSETS: &[super::Asset] = &[\n");
    for rel in &files {
        let url = format!("/{}", rel.to_string_lossy());
        let abs = embedded.join(rel);
        let _ = writeln!(
            code,
            "    super::Asset {{ path: {url:?}, content_type: {:?}, bytes: include_bytes!({:?}), immutable: {} }},",
            content_type(&url),
            abs.to_string_lossy(),
            url.starts_with("/assets/"),
        );
    }
    code.push_str("];\n");
    fs::write(out.join("assets.rs"), code).map_err(|e| format!("writing assets.rs: {e}"))?;
    Ok(())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (cargo sets it for build scripts)"))
}

/// `$FIREPIT_CACHE/ui` if it can be written, else a dir in `OUT_DIR`.
fn cache_dir(out: &Path) -> PathBuf {
    let root = std::env::var_os("FIREPIT_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/firepit"), PathBuf::from);
    let dir = root.join("ui");
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    if fs::create_dir_all(&dir).is_ok() && fs::write(&probe, b"").is_ok() {
        let _ = fs::remove_file(&probe);
        return dir;
    }
    println!(
        "cargo::warning=firepit-ui: {} is not writable; the UI build is cached in the target dir instead",
        dir.display()
    );
    out.join("ui-cache")
}

/// The UI's source files, relative to `ui/`, sorted.
fn source_files(ui: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = TOP_FILES.iter().map(PathBuf::from).collect();
    for f in &files {
        if !ui.join(f).is_file() {
            return Err(format!("{} is missing", ui.join(f).display()));
        }
    }
    walk(ui, &ui.join("src"), &mut files)?;
    files.sort();
    Ok(files)
}

fn walk(base: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if kind.is_dir() {
            walk(base, &path, files)?;
        } else if kind.is_file() {
            files.push(path.strip_prefix(base).expect("under base").to_path_buf());
        }
    }
    Ok(())
}

/// 16 hex digits of SHA-256 over the files' names and contents.
fn hash_files(ui: &Path, files: &[PathBuf]) -> Result<String, String> {
    let mut h = Sha256::new();
    for f in files {
        let bytes =
            fs::read(ui.join(f)).map_err(|e| format!("reading {}: {e}", ui.join(f).display()))?;
        h.update(f.to_string_lossy().as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize()[..8].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

fn build(
    ui: &Path,
    sources: &[PathBuf],
    cache: &Path,
    lock_hash: &str,
    dist: &Path,
) -> Result<(), String> {
    check_node()?;
    let pid = std::process::id();
    // `deps-<lock hash>/node_modules`: a real `node_modules` dir, so tools that
    // resolve symlinks still find packages from inside it.
    let deps = cache.join(format!("deps-{lock_hash}"));
    let node_modules = deps.join("node_modules");
    if !node_modules.join(".package-lock.json").is_file() {
        let scratch = cache.join(format!("deps-{lock_hash}-{pid}"));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(&scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
        for f in ["package.json", "package-lock.json"] {
            fs::copy(ui.join(f), scratch.join(f)).map_err(|e| format!("copying {f}: {e}"))?;
        }
        let mut npm = Command::new("npm");
        npm.current_dir(&scratch)
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--cache",
            ])
            .arg(cache.parent().unwrap_or(cache).join("npm"));
        exec(npm, "npm ci (installing the UI's build tools)")?;
        // Another build may have finished first; either copy is the same.
        if fs::rename(&scratch, &deps).is_err()
            && !node_modules.join(".package-lock.json").is_file()
        {
            return Err(format!(
                "could not move the UI's build tools to {}",
                deps.display()
            ));
        }
        let _ = fs::remove_dir_all(&scratch);
    }

    let work = cache.join(format!("work-{pid}"));
    let _ = fs::remove_dir_all(&work);
    for f in sources {
        let to = work.join(f);
        fs::create_dir_all(to.parent().expect("has a parent"))
            .map_err(|e| format!("creating {}: {e}", work.display()))?;
        fs::copy(ui.join(f), &to).map_err(|e| format!("copying {}: {e}", f.display()))?;
    }
    std::os::unix::fs::symlink(&node_modules, work.join("node_modules"))
        .map_err(|e| format!("linking node_modules: {e}"))?;
    let mut tsc = Command::new("node");
    tsc.current_dir(&work)
        .args(["node_modules/typescript/bin/tsc", "--noEmit", "-p", "."]);
    exec(tsc, "tsc (type-checking the UI)")?;
    let tmp = cache.join(format!("dist-tmp-{pid}"));
    let _ = fs::remove_dir_all(&tmp);
    let mut vite = Command::new("node");
    vite.current_dir(&work)
        .args([
            "node_modules/vite/bin/vite.js",
            "build",
            "--logLevel",
            "warn",
            "--outDir",
        ])
        .arg(&tmp);
    exec(vite, "vite build (building the UI)")?;
    let _ = fs::remove_dir_all(&work);
    if fs::rename(&tmp, dist).is_err() && !dist.join("index.html").is_file() {
        return Err(format!("could not move the built UI to {}", dist.display()));
    }
    let _ = fs::remove_dir_all(&tmp);
    prune(cache, "dist-", KEEP_BUILDS);
    Ok(())
}

/// Builds kept in the cache (other checkouts and branches may use older ones).
const KEEP_BUILDS: usize = 8;

/// Removes all but the `keep` newest dirs of `cache` whose names start with `prefix`.
fn prune(cache: &Path, prefix: &str, keep: usize) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(prefix) && !name.contains("-tmp-")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (_, dir) in dirs.into_iter().skip(keep) {
        let _ = fs::remove_dir_all(dir);
    }
}

fn check_node() -> Result<(), String> {
    const HOW: &str = "building firepit's web UI needs Node.js 20.19+ or 22.12+ and npm: \
                       install them (Debian 13's `nodejs` and `npm` packages will do) and build again";
    let out = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|_| format!("`node` was not found; {HOW}"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut parts = version
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if !node_is_new_enough(major, minor) {
        return Err(format!("Node.js {version} is too old; {HOW}"));
    }
    if Command::new("npm").arg("--version").output().is_err() {
        return Err(format!("`npm` was not found; {HOW}"));
    }
    Ok(())
}

fn exec(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: could not run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    walk(from, from, &mut files)?;
    for f in files {
        let dst = to.join(&f);
        fs::create_dir_all(dst.parent().expect("has a parent"))
            .map_err(|e| format!("creating {}: {e}", to.display()))?;
        fs::copy(from.join(&f), &dst).map_err(|e| format!("copying {}: {e}", f.display()))?;
    }
    Ok(())
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
