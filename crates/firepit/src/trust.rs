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
        Trust::resolve_with(args, |k| std::env::var(k).ok())
    }

    /// [`Trust::resolve`] with the environment read through `env`.
    fn resolve_with(args: &UpArgs, env: impl Fn(&str) -> Option<String>) -> Result<Trust> {
        let host_dirs: Vec<PathBuf> = if args.no_host_ca {
            Vec::new()
        } else {
            HOST_DIRS.iter().map(PathBuf::from).collect()
        };
        let (cas, mut warnings) = ExtraCas::discover(&host_dirs, &args.ca_files)
            .map_err(|e| anyhow::anyhow!("--ca-file: {}", chain(&e)))?;
        let proxy = match ProxySettings::resolve(args.proxy.as_deref(), env) {
            Ok(p) => p,
            // A proxy the person named is an error; one the environment
            // holds for other programs (a SOCKS `ALL_PROXY`, say) is not.
            Err(e) if args.proxy.is_some() => return Err(anyhow::anyhow!(chain(&e))),
            Err(e) => {
                warnings.push(format!(
                    "{}; machines get no proxy (name one with --proxy URL)",
                    chain(&e)
                ));
                None
            }
        };
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn up(args: &[&str]) -> UpArgs {
        let mut all = vec!["firepit", "up", "--no-host-ca"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Up(a) => a,
            _ => unreachable!(),
        }
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn an_unusable_proxy_of_the_environment_is_a_warning_and_a_named_one_an_error() {
        let t = Trust::resolve_with(&up(&[]), env(&[("ALL_PROXY", "socks5://h:1080")])).unwrap();
        assert!(t.proxy.is_none());
        assert!(
            t.warnings[0].contains("machines get no proxy"),
            "{:?}",
            t.warnings
        );
        let e = Trust::resolve_with(&up(&["--proxy", "socks5://h:1080"]), env(&[])).unwrap_err();
        assert!(e.to_string().contains("--proxy"), "{e}");
        let t = Trust::resolve_with(&up(&[]), env(&[("https_proxy", "http://p:3128")])).unwrap();
        assert_eq!(t.proxy.unwrap().upstream.addr(), ("p", 3128));
    }

    #[test]
    fn a_bad_ca_file_is_an_error_and_the_summary_says_what_was_found() {
        let e = Trust::resolve_with(&up(&["--ca-file", "/nonexistent.pem"]), env(&[])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent.pem"), "{e}");
        let t = Trust::resolve_with(&up(&[]), env(&[])).unwrap();
        let lines = t.summary();
        assert!(lines[0].starts_with("trust: machines trust their images' CAs alone"));
        assert!(lines[1].starts_with("network: no proxy"));
    }
}
