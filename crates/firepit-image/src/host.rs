//! The Debian packages a host needs to build images and run machines, and
//! their installation with the host's apt when they are missing, so that
//! `firepit up` and `cargo xtask test` work on a fresh Debian or Ubuntu box.

use std::process::Command;

use crate::error::{Error, Result};

/// Commands firepit runs on the host, and the package that provides each.
/// `mkfs.btrfs` formats the disk pool that enforces machines' disk limits;
/// `zstd` unpacks zstd-compressed OCI layers (`firepit-oci`'s `unpack`).
pub const HOST_TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("nft", "nftables"),
    ("mkfs.btrfs", "btrfs-progs"),
    ("zstd", "zstd"),
];

/// The packages of [`HOST_TOOLS`] whose command is not installed.
pub fn missing_packages() -> Vec<&'static str> {
    HOST_TOOLS
        .iter()
        .filter(|(cmd, _)| crate::build::which(cmd).is_none())
        .map(|&(_, pkg)| pkg)
        .collect()
}

/// Commands the test suite runs on the host besides [`HOST_TOOLS`]: Debian's
/// Chromium for the web UI's end-to-end tests, and Node.js with npm for the
/// UI rebuild check (`cargo xtask ui`'s build, which needs Node.js 20.19+:
/// Debian 12's own is older) and the script that drives the browser.
/// The OCI tests run a real registry (`docker-registry`), push and unpack
/// images with `skopeo` and `umoci`, and make an Alpine-style image from a
/// static busybox (`busybox-static`).
pub const TEST_TOOLS: &[(&str, &str)] = &[
    ("chromium", "chromium"),
    ("node", "nodejs"),
    ("npm", "npm"),
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("busybox", "busybox-static"),
];

/// The Debian package of Python's `venv` with its pip bootstrap (Debian
/// ships them apart from `python3`): the test suite installs schemathesis
/// into a virtual environment, and `python3 -m venv` fails without it.
pub const PYTHON_VENV: &str = "python3-venv";

/// Installs Python 3 with a working `venv` module (for the schemathesis run
/// of the API tests) when either is missing.
pub fn install_python_venv(report: &mut dyn FnMut(&str)) -> Result<()> {
    install_missing_from(&[("python3", "python3")], report)?;
    let has_venv = Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_venv {
        return Ok(());
    }
    install(&[PYTHON_VENV], report)
}

/// Installs the missing packages of [`HOST_TOOLS`] with `apt-get`, telling
/// `report` what it does. Nothing happens when all are there.
pub fn install_missing(report: &mut dyn FnMut(&str)) -> Result<()> {
    install_missing_from(HOST_TOOLS, report)
}

/// Installs, with `apt-get`, the package of each `(command, package)` of
/// `tools` whose command is not installed. Nothing happens when all are there.
pub fn install_missing_from(tools: &[(&str, &str)], report: &mut dyn FnMut(&str)) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(cmd, _)| crate::build::which(cmd).is_none())
        .map(|&(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    install(&missing, report)
}

/// Installs `missing` with `apt-get` (after `apt-get update` when the first
/// try fails: a fresh machine may have no package lists yet).
fn install(missing: &[&str], report: &mut dyn FnMut(&str)) -> Result<()> {
    let list = missing.join(" ");
    report(&format!("installing host packages with apt-get: {list}"));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| Error::HostPackages {
                packages: list.clone(),
                reason: e.to_string(),
            })
    };
    let mut args = vec!["install", "-y", "-q"];
    args.extend(missing);
    if !apt(&args)?.success() {
        apt(&["update", "-q"])?;
        let status = apt(&args)?;
        if !status.success() {
            return Err(Error::HostPackages {
                packages: list,
                reason: status.to_string(),
            });
        }
    }
    Ok(())
}
