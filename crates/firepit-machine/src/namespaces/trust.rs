//! Extra trust anchors in a machine: the CA certificates the daemon adds to
//! every machine's trust (the host's own additions, `firepit up --ca-file`).
//!
//! The machine's init installs them in its root, as the machine's
//! root, so every path below resolves inside the machine (a link the machine
//! left leads nowhere else):
//!
//! - every system bundle the image has ([`SYSTEM_BUNDLES`], links followed
//!   inside the machine, each file once) gets the extras appended between
//!   [`BEGIN`] and [`END`] markers; a block a former start wrote is replaced,
//!   so a start never stacks them and a CA the daemon no longer adds goes. The
//!   file is the machine's own (its upper layer): `update-ca-certificates`
//!   and package upgrades keep working there. An image with no bundle at all
//!   gets `/etc/ssl/certs/ca-certificates.crt` holding the extras alone.
//! - [`TRUST_DIR`] (on the machine's fresh `/run` tmpfs) gets
//!   `ca-certificates.crt` (the system bundle plus the extras) and
//!   `extra.pem` (the extras alone), and is then bound read-only over itself.
//!   The tools that keep their own stores are pointed there ([`env`]), the
//!   same path in every image, whatever its distribution.
//!
//! Every machine writes its own copies: what one machine does to its trust
//! stays in its own layer and its own `/run`, never in the image or the host.

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::resolve;

/// Where a machine finds its trust, read-only.
pub const TRUST_DIR: &str = "/run/firepit/trust";
/// The system bundle plus the extras, for `SSL_CERT_FILE` and its kin.
pub const BUNDLE: &str = "/run/firepit/trust/ca-certificates.crt";
/// The extras alone, for `NODE_EXTRA_CA_CERTS` (Node.js adds them to its own).
pub const EXTRA: &str = "/run/firepit/trust/extra.pem";

/// The system bundles of the distributions images come from, below the
/// machine's root: Debian, Ubuntu, Alpine and distroless
/// (`etc/ssl/certs/ca-certificates.crt`), Fedora and RHEL
/// (`etc/pki/tls/certs/ca-bundle.crt`, a link into `ca-trust/extracted`),
/// openSUSE (`etc/ssl/ca-bundle.pem`), and `etc/ssl/cert.pem` (Alpine's
/// link, the BSDs' and LibreSSL's name).
pub const SYSTEM_BUNDLES: &[&str] = &[
    "etc/ssl/certs/ca-certificates.crt",
    "etc/pki/tls/certs/ca-bundle.crt",
    "etc/ssl/ca-bundle.pem",
    "etc/ssl/cert.pem",
];

/// Opens the block of extras in a system bundle.
pub const BEGIN: &str = "# firepit: extra trust anchors (begin)";
/// Closes it.
pub const END: &str = "# firepit: extra trust anchors (end)";

/// A bundle larger than this is not read (a machine's own file; the
/// system bundles are about 200 KiB).
const MAX_BUNDLE: u64 = 16 << 20;

/// The environment that points tools with stores of their own at
/// [`BUNDLE`] (or [`EXTRA`]): OpenSSL (and Go, Ruby, Rust's native roots),
/// Python's requests and pip, curl, git, Erlang/Hex, Node.js.
pub fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SSL_CERT_FILE", BUNDLE),
        ("REQUESTS_CA_BUNDLE", BUNDLE),
        ("PIP_CERT", BUNDLE),
        ("CURL_CA_BUNDLE", BUNDLE),
        ("GIT_SSL_CAINFO", BUNDLE),
        ("HEX_CACERTS_PATH", BUNDLE),
        ("NODE_EXTRA_CA_CERTS", EXTRA),
    ]
}

/// `current` with the extras' block (and only one) at its end: a block
/// written before is taken out first, the rest is kept byte for byte.
pub fn with_extras(current: &[u8], extra: &str) -> Vec<u8> {
    let mut out = strip_block(current);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(BEGIN.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(extra.trim_end().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(END.as_bytes());
    out.push(b'\n');
    out
}

/// `bundle` without the extras' block(s) a former start wrote.
fn strip_block(bundle: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bundle.len());
    let mut inside = false;
    for line in bundle.split_inclusive(|b| *b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if text == BEGIN.as_bytes() {
            inside = true;
        } else if text == END.as_bytes() {
            inside = false;
        } else if !inside {
            out.extend_from_slice(line);
        }
    }
    out
}

/// What [`install`] did, for the guest log.
#[derive(Debug, Default)]
pub struct Installed {
    /// The system bundles that got the extras (paths in the machine).
    pub bundles: Vec<String>,
    /// Whether [`TRUST_DIR`] holds both files, read-only.
    pub trust_dir: bool,
}

/// Installs `extra` (PEM) into the machine whose root is `/` (see the module
/// docs). Run by the machine's init in its root, before it gives up
/// its capabilities. A bundle that cannot be rewritten is reported on
/// standard error (the guest log) and skipped; [`Installed::trust_dir`] says
/// whether the environment of [`env`] may name the files.
pub fn install(extra: &str) -> Installed {
    let mut done = Installed::default();
    let root = match resolve::open_dir(Path::new("/")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("firepit: extra CAs not installed: opening the root: {e}");
            return done;
        }
    };
    let mut seen = Vec::new();
    let mut combined: Option<Vec<u8>> = None;
    for rel in SYSTEM_BUNDLES {
        match rewrite_bundle(root.as_fd(), rel, extra, &mut seen) {
            Ok(Some((path, body))) => {
                done.bundles.push(path);
                combined.get_or_insert(body);
            }
            Ok(None) => {}
            Err(e) => eprintln!("firepit: /{rel} did not get the extra CAs: {e}"),
        }
    }
    if done.bundles.is_empty() {
        match new_bundle(root.as_fd(), extra) {
            Ok(body) => {
                done.bundles.push(format!("/{}", SYSTEM_BUNDLES[0]));
                combined = Some(body);
            }
            Err(e) => eprintln!("firepit: /{} was not written: {e}", SYSTEM_BUNDLES[0]),
        }
    }
    let combined = combined.unwrap_or_else(|| with_extras(b"", extra));
    match write_trust_dir(&combined, extra) {
        Ok(()) => done.trust_dir = true,
        Err(e) => eprintln!("firepit: {TRUST_DIR} was not written: {e}"),
    }
    done
}

/// Rewrites the bundle at `rel` if it is a regular file (after the links
/// inside the machine) not rewritten already; returns its real path and new
/// contents.
fn rewrite_bundle(
    root: BorrowedFd<'_>,
    rel: &str,
    extra: &str,
    seen: &mut Vec<(u64, u64)>,
) -> io::Result<Option<(String, Vec<u8>)>> {
    let file = match resolve::open_at(root, rel, libc::O_RDONLY, resolve::IN_ROOT) {
        Ok(f) => fs::File::from(f),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || seen.contains(&(meta.dev(), meta.ino())) {
        return Ok(None);
    }
    seen.push((meta.dev(), meta.ino()));
    if meta.len() > MAX_BUNDLE {
        return Err(io::Error::other(format!(
            "it holds {} bytes, more than a bundle may",
            meta.len()
        )));
    }
    // Where the links led: a path in the machine, whose root it now is.
    let real = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let mut current = Vec::new();
    file.take(MAX_BUNDLE).read_to_end(&mut current)?;
    let body = with_extras(&current, extra);
    let (parent, name) = split(&real)?;
    let dir = resolve::open_at(
        root,
        parent,
        libc::O_PATH | libc::O_DIRECTORY,
        resolve::IN_ROOT,
    )?;
    resolve::replace_file(dir.as_fd(), name, &body, 0o644)?;
    Ok(Some((real.display().to_string(), body)))
}

/// Writes `/etc/ssl/certs/ca-certificates.crt` with the extras alone into a
/// machine that has no bundle, making the directories it lacks.
fn new_bundle(root: BorrowedFd<'_>, extra: &str) -> io::Result<Vec<u8>> {
    let (parent, name) = split(Path::new(SYSTEM_BUNDLES[0]))?;
    let mut dir = resolve::open_at(root, ".", libc::O_PATH | libc::O_DIRECTORY, 0)?;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        dir = match resolve::open_at(
            dir.as_fd(),
            part,
            libc::O_PATH | libc::O_DIRECTORY,
            resolve::IN_ROOT,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let c = std::ffi::CString::new(part).expect("no NUL");
                // SAFETY: a valid directory fd and C string.
                let r = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                resolve::open_at(
                    dir.as_fd(),
                    part,
                    libc::O_PATH | libc::O_DIRECTORY,
                    resolve::NO_LINKS,
                )?
            }
            r => r?,
        };
    }
    let body = with_extras(b"", extra);
    resolve::replace_file(dir.as_fd(), name, &body, 0o644)?;
    Ok(body)
}

fn split(path: &Path) -> io::Result<(&str, &str)> {
    let text = path
        .to_str()
        .ok_or_else(|| io::Error::other("the bundle's path is not UTF-8"))?;
    let text = text.trim_start_matches('/');
    match text.rsplit_once('/') {
        Some((parent, name)) if !name.is_empty() => {
            Ok((if parent.is_empty() { "." } else { parent }, name))
        }
        None if !text.is_empty() => Ok((".", text)),
        _ => Err(io::Error::other(format!(
            "{} names no file",
            path.display()
        ))),
    }
}

/// Fills [`TRUST_DIR`] on the machine's fresh `/run` and binds it read-only
/// over itself: the machine cannot undo a mount once it gave up
/// `CAP_SYS_ADMIN`.
fn write_trust_dir(bundle: &[u8], extra: &str) -> io::Result<()> {
    use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REMOUNT};
    let dir = Path::new(TRUST_DIR);
    fs::create_dir_all(dir)?;
    fs::write(dir.join("ca-certificates.crt"), bundle)?;
    fs::write(dir.join("extra.pem"), format!("{}\n", extra.trim_end()))?;
    super::launcher::mount(Some(dir), dir, None, MS_BIND, None)?;
    super::launcher::mount(
        None,
        dir,
        None,
        MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn extras_are_appended_once_and_replaced_on_the_next_start() {
        let system = b"-----BEGIN CERTIFICATE-----\nSYS\n-----END CERTIFICATE-----\n";
        let once = with_extras(system, CA);
        let text = String::from_utf8(once.clone()).unwrap();
        assert!(text.starts_with(std::str::from_utf8(system).unwrap()));
        assert!(
            text.contains(BEGIN) && text.contains("MIIB") && text.ends_with(&format!("{END}\n"))
        );
        // A second start writes the same file, not a second block.
        assert_eq!(with_extras(&once, CA), once);
        // A CA the daemon no longer adds goes.
        let other = "-----BEGIN CERTIFICATE-----\nOTHER\n-----END CERTIFICATE-----";
        let next = String::from_utf8(with_extras(&once, other)).unwrap();
        assert!(!next.contains("MIIB") && next.contains("OTHER"), "{next}");
        assert_eq!(next.matches(BEGIN).count(), 1);
    }

    #[test]
    fn a_bundle_without_a_final_newline_keeps_its_last_line() {
        let out = String::from_utf8(with_extras(b"last", CA)).unwrap();
        assert!(out.starts_with(&format!("last\n{BEGIN}\n")), "{out}");
        assert_eq!(
            String::from_utf8(with_extras(b"", CA)).unwrap(),
            format!("{BEGIN}\n{}{END}\n", CA)
        );
    }

    #[test]
    fn paths_split_into_parent_and_name() {
        assert_eq!(
            split(Path::new("/etc/ssl/certs/ca-certificates.crt")).unwrap(),
            ("etc/ssl/certs", "ca-certificates.crt")
        );
        assert_eq!(split(Path::new("/cert.pem")).unwrap(), (".", "cert.pem"));
        assert!(split(Path::new("/")).is_err());
    }

    #[test]
    fn environment_names_that_cannot_reach_a_guest_are_refused() {
        let mut c = crate::namespaces::Config::new("/s", "/r", "/l");
        c.env = vec![("HTTPS_PROXY".into(), "http://127.0.0.1:3128".into())];
        c.check_env().unwrap();
        for (k, v) in [("", "x"), ("A=B", "x"), ("A\0", "x"), ("A", "x\0")] {
            c.env = vec![(k.into(), v.into())];
            assert!(c.check_env().is_err(), "{k:?}={v:?}");
        }
    }

    #[test]
    fn every_tool_is_pointed_at_the_read_only_files() {
        let env = env();
        for name in [
            "SSL_CERT_FILE",
            "PIP_CERT",
            "NODE_EXTRA_CA_CERTS",
            "HEX_CACERTS_PATH",
        ] {
            let (_, v) = env.iter().find(|(k, _)| *k == name).unwrap();
            assert!(v.starts_with(TRUST_DIR), "{name}={v}");
        }
    }
}
