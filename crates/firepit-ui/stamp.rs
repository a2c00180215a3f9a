//! The stamp of the committed UI build: which sources `crates/firepit-ui/dist`
//! was built from, and what it holds.
//!
//! `cargo xtask ui` writes `crates/firepit-ui/dist.stamp` next to the build it
//! writes; `cargo xtask test` checks it (a hash of `ui/`'s sources and of the
//! built files, cheap), and this crate's build script hashes the files it
//! embeds the same way. This file is shared by path between the build script
//! and xtask (xtask must not depend on `firepit-ui` itself: a broken build
//! would then break the task that repairs it), so it uses nothing but std
//! and `sha2`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Files at the top of `ui/` that the build depends on.
pub const TOP_FILES: &[&str] = &[
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
];

/// The stamp's file name, in `crates/firepit-ui`.
pub const STAMP_FILE: &str = "dist.stamp";

/// The built UI's dir name, in `crates/firepit-ui`.
pub const DIST_DIR: &str = "dist";

/// What the committed build was made from and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// [`hash_files`] of `ui/`'s [`source_files`].
    pub sources: String,
    /// [`hash_files`] of every file of the build.
    pub dist: String,
}

impl Stamp {
    /// The stamp file's text.
    pub fn render(&self) -> String {
        format!(
            "# The committed UI build (dist/): written by `cargo xtask ui`, checked by `cargo xtask test`.\n\
             sources {}\ndist {}\n",
            self.sources, self.dist
        )
    }

    /// Reads a stamp's text; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Stamp> {
        let (mut sources, mut dist) = (None, None);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once(' ')?;
            let value = value.trim();
            if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            match key {
                "sources" => sources = Some(value.to_owned()),
                "dist" => dist = Some(value.to_owned()),
                _ => return None,
            }
        }
        Some(Stamp {
            sources: sources?,
            dist: dist?,
        })
    }
}

/// The UI's source files, relative to `ui/`, sorted: [`TOP_FILES`] and
/// everything under `ui/src`.
pub fn source_files(ui: &Path) -> Result<Vec<PathBuf>, String> {
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

/// Every file under `dir`, relative to it, sorted.
pub fn tree_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
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
            let rel = path
                .strip_prefix(base)
                .map_err(|_| format!("{} is outside {}", path.display(), base.display()))?;
            files.push(rel.to_path_buf());
        } else {
            return Err(format!(
                "{} is neither a file nor a dir (a link?)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// SHA-256 (64 hex digits) over the files' relative names and contents, in
/// the order given.
pub fn hash_files(base: &Path, files: &[PathBuf]) -> Result<String, String> {
    let mut h = Sha256::new();
    for f in files {
        let path = base.join(f);
        let bytes = fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        // `/` between components whatever the host; names are UTF-8 here.
        let name = f
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        h.update(name.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// [`hash_files`] of `ui/`'s sources.
pub fn hash_sources(ui: &Path) -> Result<String, String> {
    hash_files(ui, &source_files(ui)?)
}

/// [`hash_files`] of every file under `dir`.
pub fn hash_tree(dir: &Path) -> Result<String, String> {
    hash_files(dir, &tree_files(dir)?)
}
