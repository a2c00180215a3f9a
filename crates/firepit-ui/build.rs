//! Embeds the committed UI build (`dist/`, written by `cargo xtask ui`) and
//! writes the list of its files for `src/lib.rs`.
//!
//! No Node.js, no network, no cache dir: the build is part of the
//! repository, so `cargo build` needs cargo alone. When `ui/`'s sources no
//! longer match `dist.stamp` (the UI was edited and not rebuilt), it warns and
//! embeds the committed build anyway; `cargo xtask test` fails on it.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

#[allow(dead_code)]
#[path = "stamp.rs"]
mod stamp;

fn main() {
    if let Err(message) = run() {
        println!("cargo::error=firepit-ui: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env("OUT_DIR")?);
    let dist = manifest.join(stamp::DIST_DIR);
    let stamp_path = manifest.join(stamp::STAMP_FILE);
    let ui = manifest.join("../../ui");
    println!("cargo::rerun-if-changed={}", dist.display());
    println!("cargo::rerun-if-changed={}", stamp_path.display());
    // Only to warn when `ui/` moved on; a checkout without `ui/` embeds as is.
    if ui.join("src").is_dir() {
        println!("cargo::rerun-if-changed={}", ui.join("src").display());
        for f in stamp::TOP_FILES {
            println!("cargo::rerun-if-changed={}", ui.join(f).display());
        }
    }

    const REBUILD: &str =
        "run `cargo xtask ui` (it needs Node.js 20.19+ and npm) and commit the result";
    if !dist.join("index.html").is_file() {
        return Err(format!(
            "the built UI is missing ({} has no index.html); {REBUILD}",
            dist.display()
        ));
    }
    let files = stamp::tree_files(&dist)?;
    let hash = stamp::hash_files(&dist, &files)?;
    // The stamp says which sources this build came from; say so when `ui/`
    // moved on (the checkout may also lack `ui/`: then there is nothing to
    // compare).
    match fs::read_to_string(&stamp_path)
        .ok()
        .and_then(|t| stamp::Stamp::parse(&t))
    {
        None => println!(
            "cargo::warning=firepit-ui: {} is missing or unreadable; {REBUILD}",
            stamp_path.display()
        ),
        Some(s) if s.dist != hash => println!(
            "cargo::warning=firepit-ui: dist/ is not the build that dist.stamp names; {REBUILD}"
        ),
        Some(s)
            if ui.join("src").is_dir()
                && stamp::hash_sources(&ui).as_ref().ok() != Some(&s.sources) =>
        {
            println!(
                "cargo::warning=firepit-ui: ui/ changed since dist/ was built, so this binary has the old UI; {REBUILD}"
            )
        }
        Some(_) => {}
    }

    let mut code = format!(
        "/// See the crate's `BUILD_HASH`.\npub const BUILD_HASH: &str = {:?};\n",
        &hash[..16]
    );
    code.push_str("/// Every built file.\npub static ASSETS: &[super::Asset] = &[\n");
    for rel in &files {
        let rel = rel
            .to_str()
            .ok_or_else(|| format!("{}: file names in dist/ must be UTF-8", rel.display()))?;
        let url = format!("/{rel}");
        let abs = dist.join(rel);
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
