//! The Debian packages a host needs to build images and run machines, and
//! their installation with the host's apt when they are missing, so that
//! `firepit up` and `cargo xtask test` work on a fresh Debian or Ubuntu box.

use std::process::Command;

use crate::error::{Error, Result};

/// Commands firepit runs on the host, and the package that provides each.
pub const HOST_TOOLS: &[(&str, &str)] = &[("mmdebstrap", "mmdebstrap"), ("nft", "nftables")];

/// The packages of [`HOST_TOOLS`] whose command is not installed.
pub fn missing_packages() -> Vec<&'static str> {
    HOST_TOOLS
        .iter()
        .filter(|(cmd, _)| crate::build::which(cmd).is_none())
        .map(|&(_, pkg)| pkg)
        .collect()
}

/// Installs the missing packages of [`HOST_TOOLS`] with `apt-get`, telling
/// `report` what it does. Nothing happens when all are there.
pub fn install_missing(report: &mut dyn FnMut(&str)) -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
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
    let mut install = vec!["install", "-y", "-q"];
    install.extend(&missing);
    if !apt(&install)?.success() {
        // A fresh machine may have no package lists yet.
        apt(&["update", "-q"])?;
        let status = apt(&install)?;
        if !status.success() {
            return Err(Error::HostPackages {
                packages: list,
                reason: status.to_string(),
            });
        }
    }
    Ok(())
}
