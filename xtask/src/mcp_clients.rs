//! The MCP clients the MCP tests drive (`crates/firepit/tests/it/mcp.rs`),
//! real ones nobody here wrote, pinned: the official Python SDK in
//! `$FIREPIT_CACHE/venv-mcp` and the inspector's CLI in
//! `$FIREPIT_CACHE/mcp-inspector` (npm's cache in `$FIREPIT_CACHE/npm`).
//! Each is installed once and again only when its pin changes; a half-made
//! install is removed, so it never looks installed.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// The Python SDK's release (PyPI `mcp`).
const PYTHON_SDK: &str = "2.3.0";
/// The inspector CLI's release (npm `@modelcontextprotocol/inspector-cli`).
const INSPECTOR: &str = "1.0.3";

/// Installs both clients into `cache` where they are missing.
pub fn install(cache: &Path) -> Result<()> {
    python_sdk(cache)?;
    inspector(cache)
}

fn python_sdk(cache: &Path) -> Result<()> {
    let venv = cache.join("venv-mcp");
    let installed = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('mcp'))",
        ])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == PYTHON_SDK);
    if installed {
        return Ok(());
    }
    firepit_image::host::install_python_venv(&mut |m| eprintln!("xtask: {m}"))?;
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    let mut mk = Command::new("python3");
    mk.args(["-m", "venv"]).arg(&venv);
    crate::run(mk)?;
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "-q", "--disable-pip-version-check"])
        .arg(format!("mcp=={PYTHON_SDK}"));
    if let Err(e) = crate::run(pip) {
        let _ = std::fs::remove_dir_all(&venv);
        return Err(e);
    }
    Ok(())
}

fn inspector(cache: &Path) -> Result<()> {
    let dir = cache.join("mcp-inspector");
    let manifest = dir.join("node_modules/@modelcontextprotocol/inspector-cli/package.json");
    let installed = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["version"] == INSPECTOR);
    if installed {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
    let mut npm = Command::new("npm");
    npm.current_dir(&dir)
        .args(["install", "--no-audit", "--no-fund", "--cache"])
        .arg(cache.join("npm"))
        .arg(format!("@modelcontextprotocol/inspector-cli@{INSPECTOR}"));
    if let Err(e) = crate::run(npm) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(())
}
