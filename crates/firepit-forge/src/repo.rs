//! Repository names: `owner/name`, checked before they reach a URL or a path.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A repository on the forge, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoName {
    /// The owner (user or organisation).
    pub owner: String,
    /// The repository's name.
    pub name: String,
}

fn part_ok(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl FromStr for RepoName {
    type Err = Error;

    fn from_str(s: &str) -> Result<RepoName, Error> {
        let s = s.trim().trim_end_matches(".git");
        let bad = || Error::BadRepoName(s.to_owned());
        let (owner, name) = s.split_once('/').ok_or_else(bad)?;
        if !part_ok(owner) || !part_ok(name) {
            return Err(bad());
        }
        Ok(RepoName {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl RepoName {
    /// Whether `other` names this repository (GitHub's names are case-insensitive).
    pub fn same(&self, other: &RepoName) -> bool {
        self.owner.eq_ignore_ascii_case(&other.owner) && self.name.eq_ignore_ascii_case(&other.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_owner_and_name() {
        let r: RepoName = "octo/hello-world.git".parse().unwrap();
        assert_eq!(r.to_string(), "octo/hello-world");
        assert!(r.same(&"Octo/Hello-World".parse().unwrap()));
        for bad in [
            "", "octo", "octo/", "/x", "a/b/c", "../x", "a/..", "a b/c", "a/b?x",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?}");
        }
    }
}
