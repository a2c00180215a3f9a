//! The host's apt sources: parsing (deb822 `*.sources` and one-line `*.list`), choosing the
//! main archive to build from, and writing the sources an image gets.
//!
//! The main archive is the first `deb` entry whose suite has no `-security`, `-updates`,
//! `-backports` or `-proposed` suffix, preferring one whose suite is the host's
//! `VERSION_CODENAME` (so a third-party repository listed first is passed over). Its
//! `-updates` and `-security` siblings come along into the build and the image.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Result;

/// One `deb` source: a URI, a suite and its components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptEntry {
    /// The archive's base URI.
    pub uri: String,
    /// The suite (distribution), such as `bookworm` or `bookworm-security`.
    pub suite: String,
    /// Components, such as `main`.
    pub components: Vec<String>,
    /// The `Signed-By` value: a keyring path (or an inline key in deb822 files).
    pub signed_by: Option<String>,
}

impl AptEntry {
    /// Whether the suite is a security/updates/backports/proposed side suite.
    pub fn is_side_suite(&self) -> bool {
        let s = self.suite.as_str();
        [
            "-security",
            "-updates",
            "-backports",
            "-proposed-updates",
            "-proposed",
        ]
        .iter()
        .any(|suffix| s.ends_with(suffix))
            || s.ends_with("/updates")
    }

    /// Whether the URI carries credentials (`user:pass@host`); such entries are never copied.
    fn has_credentials(&self) -> bool {
        let rest = self
            .uri
            .split_once("://")
            .map_or(self.uri.as_str(), |(_, r)| r);
        rest.split('/')
            .next()
            .is_some_and(|authority| authority.contains('@'))
    }

    /// The entry as a one-line `deb` source, as mmdebstrap takes it.
    pub fn one_line(&self) -> String {
        let mut line = String::from("deb ");
        if let Some(key) = self.signed_by.as_deref().filter(|k| !k.contains('\n')) {
            let _ = write!(line, "[signed-by={key}] ");
        }
        let _ = write!(
            line,
            "{} {} {}",
            self.uri,
            self.suite,
            self.components.join(" ")
        );
        line
    }
}

/// Parse a deb822 `.sources` file. `deb-src` entries and `Enabled: no` stanzas are skipped.
pub fn parse_deb822(text: &str) -> Vec<AptEntry> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let words = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let enabled = get("Enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        if enabled && words("Types").iter().any(|t| t == "deb") {
            let components = words("Components");
            let signed_by = get("Signed-By")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty());
            for uri in words("URIs") {
                for suite in words("Suites") {
                    out.push(AptEntry {
                        uri: uri.clone(),
                        suite,
                        components: components.clone(),
                        signed_by: signed_by.clone(),
                    });
                }
            }
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    flush(&mut fields);
    out
}

/// Parse a one-line-format `sources.list`. `deb-src` lines and comments are skipped.
pub fn parse_one_line(text: &str) -> Vec<AptEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut tokens = line.split_whitespace();
        if tokens.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = tokens.collect();
        let mut signed_by = None;
        if rest.first().is_some_and(|t| t.starts_with('[')) {
            let end = rest
                .iter()
                .position(|t| t.ends_with(']'))
                .unwrap_or(rest.len() - 1);
            let options = rest[..=end].join(" ");
            let options = options.trim_start_matches('[').trim_end_matches(']');
            for option in options.split_whitespace() {
                if let Some(v) = option.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_owned());
                }
            }
            rest.drain(..=end);
        }
        if rest.len() < 2 {
            continue;
        }
        out.push(AptEntry {
            uri: rest[0].to_owned(),
            suite: rest[1].to_owned(),
            components: rest[2..].iter().map(|c| (*c).to_owned()).collect(),
            signed_by,
        });
    }
    out
}

/// Read every `deb` entry of an apt configuration directory (normally `/etc/apt`) in apt's
/// order: `sources.list`, then `sources.list.d/*.list` and `*.sources` by file name.
pub fn read_dir(apt_dir: &Path) -> Result<Vec<AptEntry>> {
    let mut out = Vec::new();
    let main = apt_dir.join("sources.list");
    if let Some(text) = read_optional(&main)? {
        out.extend(parse_one_line(&text));
    }
    let dir = apt_dir.join("sources.list.d");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(crate::Error::io("reading", dir, e)),
    };
    files.sort();
    for file in files {
        let parse = match file.extension().and_then(|e| e.to_str()) {
            Some("list") => parse_one_line,
            Some("sources") => parse_deb822,
            _ => continue,
        };
        if let Some(text) = read_optional(&file)? {
            out.extend(parse(&text));
        }
    }
    Ok(out)
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::Error::io("reading", path, e)),
    }
}

/// Choose the main archive: the first entry that is not a side suite, preferring one whose
/// suite is `codename` (the host's `VERSION_CODENAME`).
pub fn select_main<'a>(entries: &'a [AptEntry], codename: Option<&str>) -> Option<&'a AptEntry> {
    let mut candidates = entries.iter().filter(|e| !e.is_side_suite());
    let first = candidates.clone().next();
    codename
        .and_then(|c| candidates.find(|e| e.suite == c))
        .or(first)
}

/// The entries of the same distribution as `main`: `main` itself first, then the host's
/// `<suite>-updates` and `<suite>-security` entries. Entries with credentials in the URI
/// are left out.
pub fn distribution(entries: &[AptEntry], main: &AptEntry) -> Vec<AptEntry> {
    let mut out = vec![main.clone()];
    for entry in entries {
        let side = [
            format!("{}-updates", main.suite),
            format!("{}-security", main.suite),
        ];
        if side.contains(&entry.suite) && !entry.has_credentials() && !out.contains(entry) {
            out.push(entry.clone());
        }
    }
    out
}

/// The entries of `suite`'s distribution when the host runs another: `main` first, then the
/// host's `-updates` and `-security` entries of `host_suite` (its main archive's suite) moved
/// to `suite`, on the same archives. A host on Debian 12 that lists `bookworm-security` gives
/// a Debian 13 image `trixie-security` from the same place.
pub fn distribution_for(entries: &[AptEntry], main: &AptEntry, host_suite: &str) -> Vec<AptEntry> {
    if main.suite == host_suite {
        return distribution(entries, main);
    }
    let mut out = vec![main.clone()];
    for side in ["-updates", "-security"] {
        let from = format!("{host_suite}{side}");
        for entry in entries {
            if entry.suite == from && !entry.has_credentials() {
                let moved = AptEntry {
                    suite: format!("{}{side}", main.suite),
                    ..entry.clone()
                };
                if !out.contains(&moved) {
                    out.push(moved);
                }
            }
        }
    }
    out
}

/// Whether `suite` is one of Debian's moving names (`stable`, `oldstable`, `testing`,
/// `unstable`) rather than a release's codename: such a name is resolved to the codename the
/// archive gives it today, so an image's sources never move to the next release by themselves.
pub fn is_alias(suite: &str) -> bool {
    matches!(suite, "stable" | "oldstable" | "testing" | "unstable")
}

/// The `Codename:` of a `Release` or `InRelease` file, if it is a plain suite name
/// (`[a-z][a-z0-9-]*`, at most 32 bytes): the name goes into builder arguments and files.
pub fn release_codename(release: &str) -> Option<String> {
    let mut lines = release.lines().peekable();
    if lines
        .peek()
        .is_some_and(|l| l.starts_with("-----BEGIN PGP SIGNED MESSAGE"))
    {
        // The clearsigned header (`Hash: …`) ends at its first empty line.
        lines.by_ref().find(|l| l.trim().is_empty());
    }
    // The first paragraph is the release's fields; the signature comes after it.
    let value = lines
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("-----BEGIN"))
        .find_map(|l| l.strip_prefix("Codename:"))?
        .trim();
    let plain = (1..=32).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    plain.then(|| value.to_owned())
}

/// Render entries as one deb822 `.sources` file.
pub fn render_deb822(entries: &[AptEntry]) -> String {
    let mut out = String::from("# Written by firepit from the host's apt sources.\n");
    for entry in entries {
        let _ = write!(
            out,
            "\nTypes: deb\nURIs: {}\nSuites: {}\nComponents: {}\n",
            entry.uri,
            entry.suite,
            entry.components.join(" ")
        );
        if let Some(key) = &entry.signed_by {
            let _ = writeln!(out, "Signed-By: {}", key.replace('\n', "\n "));
        }
    }
    out
}

/// The host's `VERSION_CODENAME` from an os-release file.
pub fn codename(os_release: &Path) -> Result<Option<String>> {
    let Some(text) = read_optional(os_release)? else {
        return Ok(None);
    };
    Ok(text.lines().find_map(|l| {
        l.strip_prefix("VERSION_CODENAME=")
            .map(|v| v.trim().trim_matches('"').to_owned())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# a comment inside a stanza
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

# a commented-out stanza
#Types: deb
#URIs: http://other.invalid/debian

Types: deb deb-src
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
Enabled: no
URIs: http://disabled.invalid/debian
Suites: bookworm
Components: main

Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm
Components: main
";

    #[test]
    fn deb822_entries() {
        let entries = parse_deb822(DEB822);
        let pairs: Vec<_> = entries
            .iter()
            .map(|e| (e.uri.as_str(), e.suite.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("http://mirror.invalid/debian", "bookworm"),
                ("http://mirror.invalid/debian", "bookworm-updates"),
                ("http://mirror.invalid/debian-security", "bookworm-security"),
            ]
        );
        assert_eq!(entries[0].components, ["main", "contrib"]);
        assert_eq!(
            entries[0].signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
    }

    #[test]
    fn deb822_inline_key_continues() {
        let text = "Types: deb\nURIs: http://m.invalid/d\nSuites: s\nComponents: main\n\
                    Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n";
        let e = &parse_deb822(text)[0];
        assert_eq!(
            e.signed_by.as_deref(),
            Some("-----BEGIN PGP PUBLIC KEY BLOCK-----\n.\nabc")
        );
        assert!(render_deb822(std::slice::from_ref(e)).contains("Signed-By: -----BEGIN"));
        assert!(!e.one_line().contains("signed-by"));
    }

    #[test]
    fn one_line_entries() {
        let text = "\
# comment
deb http://mirror.invalid/debian bookworm main non-free-firmware # trailing
deb-src http://mirror.invalid/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian-security bookworm-security main
deb [ trusted=yes ] http://mirror.invalid/debian bookworm-updates main

deb broken
";
        let entries = parse_one_line(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].suite, "bookworm");
        assert_eq!(entries[0].components, ["main", "non-free-firmware"]);
        assert_eq!(entries[1].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(entries[1].uri, "http://mirror.invalid/debian-security");
        assert_eq!(entries[2].suite, "bookworm-updates");
        assert_eq!(entries[2].signed_by, None);
    }

    #[test]
    fn main_skips_side_suites_and_prefers_codename() {
        let mut entries = parse_one_line(
            "deb http://m.invalid/debian-security bookworm-security main\n\
             deb http://m.invalid/debian bookworm-updates main\n\
             deb http://third.invalid/apt nodistro main\n\
             deb http://m.invalid/debian bookworm main\n\
             deb http://m.invalid/debian-security buster/updates main\n",
        );
        assert_eq!(
            select_main(&entries, Some("bookworm")).unwrap().uri,
            "http://m.invalid/debian"
        );
        assert_eq!(select_main(&entries, None).unwrap().suite, "nodistro");
        assert_eq!(
            select_main(&entries, Some("trixie")).unwrap().suite,
            "nodistro"
        );
        entries.retain(|e| e.is_side_suite());
        assert_eq!(select_main(&entries, Some("bookworm")), None);
    }

    #[test]
    fn distribution_takes_updates_and_security() {
        let entries = parse_deb822(DEB822);
        let mut with_creds = entries.clone();
        with_creds.push(AptEntry {
            uri: "https://user:secret@private.invalid/debian".into(),
            suite: "bookworm-updates".into(),
            components: vec!["main".into()],
            signed_by: None,
        });
        let main = select_main(&with_creds, Some("bookworm")).unwrap();
        let dist = distribution(&with_creds, main);
        let suites: Vec<_> = dist.iter().map(|e| e.suite.as_str()).collect();
        assert_eq!(
            suites,
            ["bookworm", "bookworm-updates", "bookworm-security"]
        );
        assert!(render_deb822(&dist).contains("Suites: bookworm-security\n"));
        assert!(!render_deb822(&dist).contains("secret"));
    }

    #[test]
    fn read_dir_order_and_formats() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sources.list"), "# nothing here\n").unwrap();
        std::fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        std::fs::write(dir.path().join("sources.list.d/b.sources"), DEB822).unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/a.list"),
            "deb http://a.invalid/x nodistro main\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/c.list.disabled"),
            "deb http://c x y\n",
        )
        .unwrap();
        let entries = read_dir(dir.path()).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].suite, "nodistro");
        assert_eq!(
            select_main(&entries, Some("bookworm")).unwrap().suite,
            "bookworm"
        );
        assert!(read_dir(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn another_suite_takes_the_hosts_side_archives() {
        let entries = parse_deb822(DEB822);
        let mut main = select_main(&entries, Some("bookworm")).unwrap().clone();
        main.suite = "trixie".into();
        let dist = distribution_for(&entries, &main, "bookworm");
        let pairs: Vec<_> = dist
            .iter()
            .map(|e| (e.uri.as_str(), e.suite.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("http://mirror.invalid/debian", "trixie"),
                ("http://mirror.invalid/debian", "trixie-updates"),
                ("http://mirror.invalid/debian-security", "trixie-security"),
            ]
        );
        assert_eq!(dist[2].signed_by, entries[2].signed_by);
        let same = select_main(&entries, Some("bookworm")).unwrap();
        assert_eq!(
            distribution_for(&entries, same, "bookworm"),
            distribution(&entries, same)
        );
    }

    #[test]
    fn codename_from_release() {
        let release = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\n\
                       Suite: stable\nVersion: 13.7\nCodename: trixie\nDate: x\n\n\
                       -----BEGIN PGP SIGNATURE-----\nCodename: forged\n";
        assert_eq!(release_codename(release).as_deref(), Some("trixie"));
        assert_eq!(release_codename("Suite: stable\nCodename: tri xie\n"), None);
        assert_eq!(release_codename("Codename: ../x\n"), None);
        assert_eq!(release_codename("Codename: Trixie\n"), None);
        assert_eq!(release_codename("Suite: stable\n"), None);
        assert!(is_alias("stable") && is_alias("testing") && !is_alias("trixie"));
    }

    #[test]
    fn codename_from_os_release() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("os-release");
        std::fs::write(&f, "NAME=\"Debian\"\nVERSION_CODENAME=bookworm\n").unwrap();
        assert_eq!(codename(&f).unwrap().as_deref(), Some("bookworm"));
        assert_eq!(codename(&dir.path().join("none")).unwrap(), None);
    }
}
