//! The extra CA certificates machines trust: found on the host and named by
//! `firepit up --ca-file`, checked, deduplicated and written as one PEM text.
//!
//! The host's own additions are the files its administrator put where the
//! distribution's tools take local anchors from ([`HOST_DIRS`]): they are
//! what the host trusts beyond its distribution's bundle, which every image
//! already has. A file there that holds no certificate is skipped with a
//! warning; a `--ca-file` that holds none is an error, since it was asked for.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Error;

/// Where hosts keep the CAs their administrators added: Debian and Ubuntu
/// (`update-ca-certificates`), Fedora, RHEL and their kin (`update-ca-trust`).
pub const HOST_DIRS: &[&str] = &[
    "/usr/local/share/ca-certificates",
    "/etc/pki/ca-trust/source/anchors",
];

/// A CA file larger than this is refused (a bundle of every public CA is
/// about 200 KiB).
pub const MAX_FILE: u64 = 4 << 20;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The certificates machines trust besides their image's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraCas {
    /// Each certificate's DER, in the order found, without repeats.
    certs: Vec<Vec<u8>>,
    /// The files they came from, without repeats.
    sources: Vec<PathBuf>,
}

impl ExtraCas {
    /// Collects the certificates of the files below `host_dirs` (`*.crt` and
    /// `*.pem`, in name order, four levels deep at most; a dir that is not
    /// there is skipped) and of `files`. Returns them with a warning for
    /// each host file that was skipped.
    pub fn discover(
        host_dirs: &[PathBuf],
        files: &[PathBuf],
    ) -> Result<(ExtraCas, Vec<String>), Error> {
        let mut cas = ExtraCas::default();
        let mut warnings = Vec::new();
        for dir in host_dirs {
            let mut found = Vec::new();
            walk(dir, 4, &mut found);
            found.sort();
            for path in found {
                match read_certs(&path) {
                    Ok(certs) => cas.add(&path, certs),
                    Err(e) => warnings.push(format!("{e}; skipped")),
                }
            }
        }
        for path in files {
            let certs = read_certs(path)?;
            cas.add(path, certs);
        }
        Ok((cas, warnings))
    }

    fn add(&mut self, path: &Path, certs: Vec<Vec<u8>>) {
        let mut any = false;
        for der in certs {
            if !self.certs.contains(&der) {
                self.certs.push(der);
                any = true;
            }
        }
        if any && !self.sources.iter().any(|s| s == path) {
            self.sources.push(path.to_owned());
        }
    }

    /// How many certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The files they came from.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// The certificates as PEM (no comments: nothing of the host's paths
    /// goes into machines); `None` when there are none.
    pub fn pem(&self) -> Option<String> {
        if self.certs.is_empty() {
            return None;
        }
        let mut out = String::new();
        for der in &self.certs {
            out.push_str(BEGIN);
            out.push('\n');
            let b64 = STANDARD.encode(der);
            for chunk in b64.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
                out.push('\n');
            }
            out.push_str(END);
            out.push('\n');
        }
        Some(out)
    }

    /// One line for `firepit up`: how many, and from where.
    pub fn summary(&self) -> String {
        if self.certs.is_empty() {
            return "machines trust their images' CAs alone (none added on this host; \
                    add one with --ca-file PEM)"
                .into();
        }
        let n = self.certs.len();
        let from: Vec<String> = self
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "machines trust {n} extra CA{} from {}",
            if n == 1 { "" } else { "s" },
            from.join(", ")
        )
    }
}

/// Appends the `*.crt` and `*.pem` files below `dir` to `out`, following no
/// link to a directory.
fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if depth > 0 {
                walk(&path, depth - 1, out);
            }
        } else if path.extension().is_some_and(|e| e == "crt" || e == "pem") {
            out.push(path);
        }
    }
}

/// The certificates in the PEM file at `path`.
fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, Error> {
    let read = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(read)?;
    let bad = |why: String| Error::BadCa {
        path: path.to_owned(),
        why,
    };
    if !meta.is_file() {
        return Err(bad("is not a file".into()));
    }
    if meta.len() > MAX_FILE {
        return Err(bad(format!(
            "holds {} bytes, more than a CA file may ({MAX_FILE})",
            meta.len()
        )));
    }
    let text = fs::read(path).map_err(read)?;
    let text = String::from_utf8(text).map_err(|_| bad("is not PEM text".into()))?;
    parse_pem(&text).map_err(bad)
}

/// The DER of every `CERTIFICATE` block of `text`; an error when there is
/// none or one is broken. Text around the blocks is ignored, as OpenSSL does.
pub fn parse_pem(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body_start = start + BEGIN.len();
        let Some(len) = rest[body_start..].find(END) else {
            return Err(format!("certificate {} has no {END} line", certs.len() + 1));
        };
        let body: String = rest[body_start..body_start + len]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("certificate {} is not base64: {e}", certs.len() + 1))?;
        // A certificate is a DER SEQUENCE with a long-form length.
        if der.len() < 64 || der[0] != 0x30 {
            return Err(format!(
                "certificate {} is not a DER certificate",
                certs.len() + 1
            ));
        }
        certs.push(der);
        rest = &rest[body_start + len + END.len()..];
    }
    if certs.is_empty() {
        return Err(format!("holds no PEM certificate ({BEGIN})"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_der(tag: u8) -> Vec<u8> {
        let mut der = vec![0x30, 0x82, 0x01, 0x00];
        der.extend(std::iter::repeat_n(tag, 100));
        der
    }

    fn pem_of(der: &[u8]) -> String {
        format!("{BEGIN}\n{}\n{END}\n", STANDARD.encode(der))
    }

    #[test]
    fn pem_blocks_are_found_among_other_text() {
        let text = format!(
            "# a comment\n{}junk\n{}",
            pem_of(&fake_der(1)),
            pem_of(&fake_der(2))
        );
        assert_eq!(parse_pem(&text).unwrap(), vec![fake_der(1), fake_der(2)]);
    }

    #[test]
    fn broken_pem_is_refused_with_a_reason() {
        for (text, why) in [
            (String::new(), "no PEM certificate"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n".into(),
                "no PEM certificate",
            ),
            (format!("{BEGIN}\nAAAA"), "no -----END"),
            (format!("{BEGIN}\n!!!!\n{END}"), "not base64"),
            (format!("{BEGIN}\nAAAA\n{END}"), "not a DER certificate"),
        ] {
            let e = parse_pem(&text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn discovery_takes_host_files_and_refuses_bad_explicit_ones() {
        let host = tempfile::tempdir().unwrap();
        let sub = host.path().join("corp");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("a.crt"), pem_of(&fake_der(1))).unwrap();
        fs::write(host.path().join("broken.crt"), "nothing").unwrap();
        fs::write(host.path().join("readme.txt"), pem_of(&fake_der(9))).unwrap();
        let extra = host.path().join("extra.pem");
        // The same CA again, and a new one.
        fs::write(&extra, pem_of(&fake_der(1)) + &pem_of(&fake_der(2))).unwrap();
        let (cas, warnings) = ExtraCas::discover(
            &[host.path().to_owned(), "/nonexistent".into()],
            std::slice::from_ref(&extra),
        )
        .unwrap();
        assert_eq!(cas.len(), 2);
        assert_eq!(cas.sources(), &[sub.join("a.crt"), extra.clone()]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("broken.crt"), "{warnings:?}");
        let pem = cas.pem().unwrap();
        assert_eq!(parse_pem(&pem).unwrap(), vec![fake_der(1), fake_der(2)]);
        assert!(!pem.contains(host.path().to_str().unwrap()));
        assert!(
            cas.summary()
                .starts_with("machines trust 2 extra CAs from ")
        );

        let bad = host.path().join("broken.crt");
        let e = ExtraCas::discover(&[], &[bad]).unwrap_err().to_string();
        assert!(e.contains("broken.crt") && e.contains("no PEM"), "{e}");
        let e = ExtraCas::discover(&[], &["/nonexistent.pem".into()]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent.pem"), "{e}");
    }

    #[test]
    fn no_extras_says_how_to_add_one() {
        let cas = ExtraCas::default();
        assert_eq!(cas.pem(), None);
        assert!(cas.summary().contains("--ca-file"));
    }
}
