//! Image references: `registry[:port]/repository[:tag][@digest]`.
//!
//! A reference whose first part is not a host (no `.` or `:` in it, and not `localhost`) is a
//! short name (`python:3.12`); it is resolved against the default registry the caller
//! configures (`FIREPIT_DEFAULT_REGISTRY`), with Docker's convention that a one-part name lives
//! under `library/`. Without a default registry a short name is an error that says so.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry host, with its port if any.
    pub registry: String,
    /// The repository path (`library/python`).
    pub repository: String,
    /// The tag, if given (`latest` when neither tag nor digest was).
    pub tag: Option<String>,
    /// The digest, if given.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse `s`, resolving a short name against `default_registry`.
    pub fn parse(s: &str, default_registry: Option<&str>) -> Result<Reference> {
        let bad = |reason| Error::InvalidReference {
            reference: s.to_owned(),
            reason,
        };
        if s.is_empty() || s.len() > 512 {
            return Err(bad("it must be 1 to 512 characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                && !tag.starts_with(['.', '-']);
            if !ok {
                return Err(bad("a tag is 1 to 128 of A-Z a-z 0-9 _ . -"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), path.to_owned())
            }
            _ => {
                let Some(default) = default_registry else {
                    return Err(bad(
                        "name the registry (HOST[:PORT]/REPOSITORY[:TAG]), or set FIREPIT_DEFAULT_REGISTRY for short names",
                    ));
                };
                let path = if name.contains('/') {
                    name.to_owned()
                } else {
                    format!("library/{name}")
                };
                (default.to_owned(), path)
            }
        };
        let host_ok = !registry.is_empty()
            && registry.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !host_ok {
            return Err(bad(
                "the registry must be a host name, optionally with :PORT",
            ));
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "a repository is lowercase letters, digits and . _ - between slashes",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_owned()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest if given, else the tag.
    pub fn target(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_str(),
            (None, Some(t)) => t,
            (None, None) => "latest",
        }
    }

    /// A default image name for this reference: the last path component and the tag, in the
    /// store's alphabet (`python-3.12`).
    pub fn default_name(&self) -> String {
        let last = self.repository.rsplit('/').next().unwrap_or("image");
        image_name(&match &self.tag {
            Some(t) if t != "latest" => format!("{last}-{t}"),
            _ => last.to_owned(),
        })
    }
}

/// `text` made into a name of the image store: lowercase, `[a-z0-9._-]`, starting with a
/// letter or digit, at most 64 characters; `imported` when nothing is left.
pub fn image_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_start_matches(['.', '_', '-']).to_owned();
    name.truncate(64);
    if name.is_empty() {
        "imported".into()
    } else {
        name
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = Reference::parse("127.0.0.1:5000/team/app:v1.2", None).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        assert_eq!(r.target(), "v1.2");
        assert_eq!(r.default_name(), "app-v1.2");
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/app:v1.2");

        let r = Reference::parse("localhost/app", None).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("localhost", Some("latest"))
        );

        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("reg.example:443/a@{d}"), None).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.target(), d);

        let r = Reference::parse("python:3.12", Some("mirror.example")).unwrap();
        assert_eq!(r.registry, "mirror.example");
        assert_eq!(r.repository, "library/python");
        assert_eq!(r.default_name(), "python-3.12");
    }

    #[test]
    fn refuses_bad_references() {
        assert!(Reference::parse("python:3.12", None).is_err());
        for bad in [
            "",
            "localhost/UPPER",
            "localhost/a/../b",
            "localhost/a:b:c/d",
            "localhost/a:",
            "localhost/a@sha256:xyz",
            "loc$al.host/a",
            "localhost//a",
        ] {
            assert!(Reference::parse(bad, Some("d.example")).is_err(), "{bad}");
        }
    }
}
