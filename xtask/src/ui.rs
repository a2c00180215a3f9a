//! `cargo xtask ui`: builds the web UI (`ui/`, TypeScript and Vite) into the
//! committed `crates/firepit-ui/dist/` and writes `dist.stamp` beside it; and
//! the checks `cargo xtask test` makes of that build.
//!
//! The build runs in a scratch copy of the sources under
//! `$FIREPIT_CACHE/ui` (nothing is written into `ui/`), with `node_modules`
//! from `$FIREPIT_CACHE/ui/deps-<hash of package-lock.json>` (made once by
//! `npm ci`, npm's own cache in `$FIREPIT_CACHE/npm`): `tsc --noEmit`, then
//! `vite build`. Vite's output depends on its input alone (no paths, times
//! or random names), so the same sources build to the same bytes anywhere.
//!
//! The checks: [`check_stamp`] hashes `ui/`'s sources and the committed
//! files and compares them with the stamp (milliseconds; it catches a UI
//! edited and not rebuilt, and a build edited or half merged).
//! [`verify_rebuild`] builds `ui/` again and compares the result with the
//! committed files byte for byte (tens of seconds; it catches a build that is
//! not what its sources make here); a success is remembered in the cache as
//! `verified-<sources>-<dist>`, so it runs again only when the UI changed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

#[allow(dead_code)]
#[path = "../../crates/firepit-ui/stamp.rs"]
mod stamp;

pub use stamp::Stamp;

/// What to do when the committed build is stale.
const REBUILD: &str = "run `cargo xtask ui` and commit crates/firepit-ui/dist and dist.stamp";

/// How to get a Node.js new enough, where it is missing or old.
const HOW_NODE: &str = "building firepit's web UI needs Node.js 20.19+ (or 22.12+) and npm. \
    Debian 12's own `nodejs` is 18, too old: take Debian 13's `nodejs` and `npm` packages, \
    NodeSource's Node.js 22 packages for Debian 12, or the Node.js project's own binaries \
    (npm's `n` installs them: `npm install -g n && n 22`). Only rebuilding the UI needs it: \
    `cargo build` embeds the build committed in crates/firepit-ui/dist";

/// The repository's paths this task works on.
pub struct Paths {
    /// `ui/`.
    pub ui: PathBuf,
    /// `crates/firepit-ui`.
    pub krate: PathBuf,
    /// `$FIREPIT_CACHE/ui`.
    pub cache: PathBuf,
}

impl Paths {
    /// The paths of this checkout, with the cache under `cache_root`.
    pub fn new(cache_root: &Path) -> Paths {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let root = root.canonicalize().unwrap_or(root);
        Paths {
            ui: root.join("ui"),
            krate: root.join("crates/firepit-ui"),
            cache: cache_root.join("ui"),
        }
    }

    fn dist(&self) -> PathBuf {
        self.krate.join(stamp::DIST_DIR)
    }

    fn stamp(&self) -> PathBuf {
        self.krate.join(stamp::STAMP_FILE)
    }
}

/// `cargo xtask ui [--check]`: regenerates `ui/src/wire.ts` from
/// `firepit-wire`, builds the UI, and replaces the committed build and its
/// stamp. With `--check`, changes nothing and fails where the committed
/// build is not what `ui/` builds to.
pub fn ui(paths: &Paths, args: &[String]) -> Result<()> {
    match args {
        [] => {}
        [a] if a == "--check" => {
            return verify_rebuild(paths, true);
        }
        _ => bail!("usage: cargo xtask ui [--check]"),
    }
    check_node()?;
    write_wire_ts()?;
    let (out, sources) = build(paths)?;
    let stamp = install(paths, &out, sources)?;
    let _ = fs::remove_dir_all(&out);
    remember_verified(paths, &stamp);
    let size: u64 = stamp::tree_files(&paths.dist())
        .map_err(anyhow::Error::msg)?
        .iter()
        .filter_map(|f| fs::metadata(paths.dist().join(f)).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "xtask: ui: wrote {} ({} KiB) and {}; commit them with ui/",
        paths.dist().display(),
        size / 1024,
        paths.stamp().display()
    );
    Ok(())
}

/// Rewrites `ui/src/wire.ts` (the API's TypeScript types) from
/// `firepit-wire`: its test that keeps the file up to date writes it when
/// `FIREPIT_UPDATE_WIRE_TS=1`.
fn write_wire_ts() -> Result<()> {
    let mut cmd = crate::cargo();
    cmd.args([
        "test",
        "-q",
        "-p",
        "firepit-wire",
        "--lib",
        "--",
        "--exact",
        "ts::tests::wire_ts_is_up_to_date",
    ])
    .env("FIREPIT_UPDATE_WIRE_TS", "1");
    crate::run(cmd).context("generating ui/src/wire.ts")
}

/// Fails, saying what to do, when `ui/`'s sources or the committed files are
/// not the ones `dist.stamp` names. Needs no Node.js.
pub fn check_stamp(paths: &Paths) -> Result<Stamp> {
    let text = fs::read_to_string(paths.stamp()).with_context(|| {
        format!(
            "reading {} (the committed UI build's stamp); {REBUILD}",
            paths.stamp().display()
        )
    })?;
    let Some(stamp) = Stamp::parse(&text) else {
        bail!("{} is not a stamp; {REBUILD}", paths.stamp().display());
    };
    let dist = stamp::hash_tree(&paths.dist())
        .map_err(|e| anyhow::anyhow!("the committed UI build: {e}; {REBUILD}"))?;
    if dist != stamp.dist {
        bail!(
            "crates/firepit-ui/dist is not the build dist.stamp names (edited by hand, or half \
             merged); {REBUILD}"
        );
    }
    let sources = stamp::hash_sources(&paths.ui).map_err(anyhow::Error::msg)?;
    if sources != stamp.sources {
        bail!(
            "ui/ changed since the committed UI build (crates/firepit-ui/dist) was made, so \
             `cargo build` would embed the old UI; {REBUILD}"
        );
    }
    Ok(stamp)
}

/// Builds `ui/` and fails unless the result is byte for byte the committed
/// build. Unless `always`, skipped when this cache already verified the same
/// sources and build (see the module docs).
pub fn verify_rebuild(paths: &Paths, always: bool) -> Result<()> {
    let stamp = check_stamp(paths)?;
    let marker = verified_marker(paths, &stamp);
    if !always && marker.is_file() {
        eprintln!(
            "xtask: ui: the committed build was rebuilt and compared before ({}); not again",
            marker.display()
        );
        return Ok(());
    }
    eprintln!("xtask: ui: rebuilding ui/ to compare it with the committed build");
    let (out, _) = build(paths)?;
    let diffs = compare(&out, &paths.dist()).map_err(anyhow::Error::msg);
    let _ = fs::remove_dir_all(&out);
    let diffs = diffs?;
    if !diffs.is_empty() {
        bail!(
            "the committed UI build differs from what ui/ builds to here ({}); {REBUILD}. If a \
             fresh `cargo xtask ui` still differs from the next rebuild, the build is not \
             reproducible: compare two builds to see what changes",
            diffs.join("; ")
        );
    }
    remember_verified(paths, &stamp);
    eprintln!("xtask: ui: the committed build is what ui/ builds to");
    Ok(())
}

fn verified_marker(paths: &Paths, stamp: &Stamp) -> PathBuf {
    paths.cache.join(format!(
        "verified-{}-{}",
        &stamp.sources[..16],
        &stamp.dist[..16]
    ))
}

fn remember_verified(paths: &Paths, stamp: &Stamp) {
    let _ = fs::create_dir_all(&paths.cache);
    let _ = fs::write(verified_marker(paths, stamp), b"");
}

/// The differences between two builds, by file name and content; empty when
/// they are the same.
pub fn compare(built: &Path, committed: &Path) -> Result<Vec<String>, String> {
    let a = stamp::tree_files(built)?;
    let b = stamp::tree_files(committed)?;
    let mut diffs = Vec::new();
    for f in &a {
        if !b.contains(f) {
            diffs.push(format!("{} is not committed", f.display()));
        } else if fs::read(built.join(f)).map_err(|e| e.to_string())?
            != fs::read(committed.join(f)).map_err(|e| e.to_string())?
        {
            diffs.push(format!("{} differs", f.display()));
        }
    }
    for f in b.iter().filter(|f| !a.contains(f)) {
        diffs.push(format!("{} is committed but not built", f.display()));
    }
    Ok(diffs)
}

/// Replaces the committed build with `out`, built from the sources whose
/// hash is `sources`, and writes its stamp; returns it.
fn install(paths: &Paths, out: &Path, sources: String) -> Result<Stamp> {
    let dist = stamp::hash_tree(out).map_err(anyhow::Error::msg)?;
    // Copied next to the old build first, then swapped in: an interrupted
    // run leaves the old build (and a `.dist-new-*` dir) behind, never half
    // a build under `dist/`.
    let fresh = paths
        .krate
        .join(format!(".dist-new-{}", std::process::id()));
    let _ = fs::remove_dir_all(&fresh);
    copy_tree(out, &fresh)?;
    let old = paths
        .krate
        .join(format!(".dist-old-{}", std::process::id()));
    if paths.dist().exists() {
        fs::rename(paths.dist(), &old).context("moving the old build aside")?;
    }
    fs::rename(&fresh, paths.dist()).context("moving the new build in place")?;
    let _ = fs::remove_dir_all(&old);
    let stamp = Stamp { sources, dist };
    let tmp = paths.krate.join(".dist.stamp.tmp");
    fs::write(&tmp, stamp.render()).context("writing the stamp")?;
    fs::rename(&tmp, paths.stamp()).context("writing the stamp")?;
    Ok(stamp)
}

/// Builds `ui/` into a new dir under the cache; returns it and the hash of
/// the sources it was built from (of the copy built, so a file edited
/// meanwhile cannot slip into the stamp).
fn build(paths: &Paths) -> Result<(PathBuf, String)> {
    check_node()?;
    let cache = &paths.cache;
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let sources = stamp::source_files(&paths.ui).map_err(anyhow::Error::msg)?;
    let node_modules = deps(paths)?;
    let pid = std::process::id();
    let work = cache.join(format!("work-{pid}"));
    let _ = fs::remove_dir_all(&work);
    let result = (|| {
        for f in &sources {
            let to = work.join(f);
            fs::create_dir_all(to.parent().context("a source file has no parent dir")?)
                .with_context(|| format!("creating {}", work.display()))?;
            fs::copy(paths.ui.join(f), &to).with_context(|| format!("copying {}", f.display()))?;
        }
        let hash = stamp::hash_files(&work, &sources).map_err(anyhow::Error::msg)?;
        std::os::unix::fs::symlink(&node_modules, work.join("node_modules"))
            .context("linking node_modules")?;
        let mut tsc = Command::new("node");
        tsc.current_dir(&work)
            .args(["node_modules/typescript/bin/tsc", "--noEmit", "-p", "."]);
        exec(tsc, "tsc (type-checking the UI)")?;
        let out = cache.join(format!("out-{pid}"));
        let _ = fs::remove_dir_all(&out);
        let mut vite = Command::new("node");
        vite.current_dir(&work)
            .args([
                "node_modules/vite/bin/vite.js",
                "build",
                "--logLevel",
                "warn",
                "--outDir",
            ])
            .arg(&out);
        if let Err(e) = exec(vite, "vite build (building the UI)") {
            let _ = fs::remove_dir_all(&out);
            return Err(e);
        }
        Ok((out, hash))
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

/// `node_modules` for the UI's `package-lock.json`, installed by `npm ci`
/// once per lock file.
fn deps(paths: &Paths) -> Result<PathBuf> {
    let lock = stamp::hash_files(&paths.ui, &[PathBuf::from("package-lock.json")])
        .map_err(anyhow::Error::msg)?;
    let cache = &paths.cache;
    // `deps-<lock hash>/node_modules`: a real `node_modules` dir, so tools
    // that resolve symlinks still find packages from inside it.
    let deps = cache.join(format!("deps-{}", &lock[..16]));
    let node_modules = deps.join("node_modules");
    if node_modules.join(".package-lock.json").is_file() {
        // In use: the newest are the ones pruning keeps.
        let _ = fs::File::open(&deps).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(node_modules);
    }
    let scratch = cache.join(format!("deps-{}-{}", &lock[..16], std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    for f in ["package.json", "package-lock.json"] {
        fs::copy(paths.ui.join(f), scratch.join(f)).with_context(|| format!("copying {f}"))?;
    }
    eprintln!("xtask: ui: installing the UI's build tools (npm ci)");
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
    if fs::rename(&scratch, &deps).is_err() && !node_modules.join(".package-lock.json").is_file() {
        bail!("could not move the UI's build tools to {}", deps.display());
    }
    let _ = fs::remove_dir_all(&scratch);
    prune(cache, "deps-", 4);
    Ok(node_modules)
}

/// Removes all but the `keep` newest finished dirs of `cache` named
/// `<prefix><16 hex digits>`.
fn prune(cache: &Path, prefix: &str, keep: usize) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix(prefix)
                .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (_, dir) in dirs.into_iter().skip(keep) {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Whether Vite 8 runs on this Node.js version (`^20.19.0 || >=22.12.0`).
fn node_is_new_enough(major: u32, minor: u32) -> bool {
    (major == 20 && minor >= 19) || (major == 22 && minor >= 12) || major > 22
}

/// The `(major, minor)` of a `node --version` answer (`v20.19.2`).
fn parse_node_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().strip_prefix('v')?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn check_node() -> Result<()> {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|_| anyhow::anyhow!("`node` was not found; {HOW_NODE}"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match parse_node_version(&version) {
        Some((major, minor)) if node_is_new_enough(major, minor) => {}
        _ => bail!("Node.js {version:?} is too old (or not one); {HOW_NODE}"),
    }
    if Command::new("npm").arg("--version").output().is_err() {
        bail!("`npm` was not found; {HOW_NODE}");
    }
    Ok(())
}

fn exec(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: could not run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for f in stamp::tree_files(from).map_err(anyhow::Error::msg)? {
        let dst = to.join(&f);
        fs::create_dir_all(dst.parent().context("a built file has no parent dir")?)
            .with_context(|| format!("creating {}", to.display()))?;
        fs::copy(from.join(&f), &dst).with_context(|| format!("copying {}", f.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn node_versions() {
        assert_eq!(parse_node_version("v20.19.2\n"), Some((20, 19)));
        assert_eq!(parse_node_version("20.19.2"), None);
        assert_eq!(parse_node_version("vnope"), None);
        for (v, ok) in [
            ((18, 20), false),
            ((20, 18), false),
            ((20, 19), true),
            ((21, 7), false),
            ((22, 11), false),
            ((22, 12), true),
            ((24, 0), true),
        ] {
            assert_eq!(node_is_new_enough(v.0, v.1), ok, "{v:?}");
        }
    }

    #[test]
    fn stamps_round_trip_and_refuse_junk() {
        let s = Stamp {
            sources: "a".repeat(64),
            dist: "0123456789abcdef".repeat(4),
        };
        assert_eq!(Stamp::parse(&s.render()), Some(s));
        assert_eq!(Stamp::parse(""), None);
        assert_eq!(Stamp::parse(&format!("sources {}\n", "a".repeat(64))), None);
        assert_eq!(
            Stamp::parse(&format!("sources {}\ndist xyz\n", "a".repeat(64))),
            None
        );
        assert_eq!(
            Stamp::parse(&format!(
                "sources {0}\ndist {0}\nextra {0}\n",
                "a".repeat(64)
            )),
            None
        );
    }

    #[test]
    fn hashes_see_names_and_contents() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "a/x.js", "1");
        write(t.path(), "b.css", "2");
        let h = stamp::hash_tree(t.path()).unwrap();
        assert_eq!(h.len(), 64);
        assert_eq!(stamp::hash_tree(t.path()).unwrap(), h);
        write(t.path(), "b.css", "3");
        let h2 = stamp::hash_tree(t.path()).unwrap();
        assert_ne!(h2, h);
        // The same bytes under another name are another build.
        fs::rename(t.path().join("b.css"), t.path().join("c.css")).unwrap();
        assert_ne!(stamp::hash_tree(t.path()).unwrap(), h2);
    }

    #[test]
    fn the_stamp_check_names_what_is_stale() {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths {
            ui: t.path().join("ui"),
            krate: t.path().join("krate"),
            cache: t.path().join("cache"),
        };
        for f in stamp::TOP_FILES {
            write(&paths.ui, f, "{}");
        }
        write(&paths.ui, "src/main.ts", "console.log(1)");
        write(&paths.dist(), "index.html", "<p>");
        write(&paths.dist(), "assets/index-abc.js", "1");
        let err = check_stamp(&paths).unwrap_err().to_string();
        assert!(err.contains("run `cargo xtask ui` and commit"), "{err}");

        let out = t.path().join("out");
        copy_tree(&paths.dist(), &out).unwrap();
        let sources = stamp::hash_sources(&paths.ui).unwrap();
        let stamp = install(&paths, &out, sources).unwrap();
        assert_eq!(check_stamp(&paths).unwrap(), stamp);
        assert!(compare(&out, &paths.dist()).unwrap().is_empty());
        assert!(!paths.krate.read_dir().unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".dist")
        }));

        write(&paths.ui, "src/main.ts", "console.log(2)");
        let err = check_stamp(&paths).unwrap_err().to_string();
        assert!(err.contains("ui/ changed since"), "{err}");
        write(&paths.ui, "src/main.ts", "console.log(1)");
        check_stamp(&paths).unwrap();

        write(&paths.dist(), "assets/index-abc.js", "2");
        let err = check_stamp(&paths).unwrap_err().to_string();
        assert!(err.contains("is not the build dist.stamp names"), "{err}");
        let diffs = compare(&out, &paths.dist()).unwrap();
        assert_eq!(diffs, ["assets/index-abc.js differs"]);
        write(&paths.dist(), "extra.js", "");
        fs::remove_file(paths.dist().join("index.html")).unwrap();
        let diffs = compare(&out, &paths.dist()).unwrap();
        assert_eq!(
            diffs,
            [
                "assets/index-abc.js differs",
                "index.html is not committed",
                "extra.js is committed but not built"
            ]
        );
    }
}
