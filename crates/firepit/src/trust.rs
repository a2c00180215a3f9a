//! What `firepit up` resolves about trust and proxies: the extra CAs
//! (`--ca-file`, the host's own additions unless `--no-host-ca`) and the
//! proxy (`--proxy`, else the environment), for the daemon's machines and
//! for the image builds `up` starts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use firepit_trust::ca::{ExtraCas, HOST_DIRS};
use firepit_trust::proxy::ProxySettings;

use crate::cli::UpArgs;

/// The host's own bundle, which an image build's apt trusts when no CA is
/// added.
const HOST_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Trust and proxy, resolved.
#[derive(Debug)]
pub struct Trust {
    /// The extra CAs.
    pub cas: ExtraCas,
    /// Host CA files that were skipped, and why.
    pub warnings: Vec<String>,
    /// The proxy, if any.
    pub proxy: Option<ProxySettings>,
}

impl Trust {
    /// Resolves `up`'s flags and the environment.
    pub fn resolve(args: &UpArgs) -> Result<Trust> {
        let host_dirs: Vec<PathBuf> = if args.no_host_ca {
            Vec::new()
        } else {
            HOST_DIRS.iter().map(PathBuf::from).collect()
        };
        let (cas, warnings) = ExtraCas::discover(&host_dirs, &args.ca_files)
            .map_err(|e| anyhow::anyhow!("--ca-file: {}", chain(&e)))?;
        let proxy = ProxySettings::resolve(args.proxy.as_deref(), |k| std::env::var(k).ok())
            .map_err(|e| anyhow::anyhow!(chain(&e)))?;
        Ok(Trust {
            cas,
            warnings,
            proxy,
        })
    }

    /// The build options of the images `up` builds: the proxy in the
    /// builder's environment, and, with extra CAs, a bundle of the host's
    /// and theirs written to `<data dir>/trust/build-ca.pem` for apt.
    pub fn build_options(&self, data_dir: &Path) -> Result<firepit_image::BuildOptions> {
        let mut opts = firepit_image::BuildOptions::default();
        if let Some(p) = &self.proxy {
            opts.env = p.build_env();
        }
        if let Some(extra) = self.cas.pem() {
            let dir = data_dir.join("trust");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut bundle = std::fs::read(HOST_BUNDLE).unwrap_or_default();
            if !bundle.is_empty() && !bundle.ends_with(b"\n") {
                bundle.push(b'\n');
            }
            bundle.extend_from_slice(extra.as_bytes());
            let path = dir.join("build-ca.pem");
            let tmp = dir.join(".build-ca.pem.partial");
            std::fs::write(&tmp, &bundle)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .with_context(|| format!("writing {}", path.display()))?;
            opts.ca_bundle = Some(path);
        }
        Ok(opts)
    }

    /// The lines `up` prints.
    pub fn summary(&self) -> Vec<String> {
        let proxy = match &self.proxy {
            Some(p) => format!("network: {}", p.summary()),
            None => "network: no proxy (machines reach the web through NAT; set HTTPS_PROXY or --proxy URL to use one)".to_owned(),
        };
        vec![format!("trust: {}", self.cas.summary()), proxy]
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}
