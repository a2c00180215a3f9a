//! Recipes: what goes into an image. The built-in ones are `minimal` (runs the test suite),
//! `browser` (minimal plus Chromium), `git` (minimal plus git, for the forge tests) and
//! `default` (the image a person and an agent work in).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What to build: a name (the image's name), a debootstrap variant and the packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// The image name, which is also the recipe's name.
    pub name: String,
    /// The mmdebstrap/debootstrap variant, such as `minbase`.
    pub variant: String,
    /// Packages installed on top of the variant.
    pub packages: Vec<String>,
    /// Keep apt's package lists, so `apt-get install` works without `apt-get update` first
    /// (costs some tens of MiB).
    pub keep_apt_lists: bool,
}

const MINIMAL: &[&str] = &[
    "bash",
    "coreutils",
    "ca-certificates",
    "curl",
    "python3",
    "iproute2",
    "procps",
    "apt",
];

const BROWSER_EXTRA: &[&str] = &["chromium", "fonts-liberation"];

/// What the `git` image adds to `minimal`: sessions made from a repository
/// (the forge tests) need git inside the machine.
const GIT_EXTRA: &[&str] = &["git"];

const DEFAULT: &[&str] = &[
    "bash",
    "coreutils",
    "ca-certificates",
    "curl",
    "git",
    "gh",
    "build-essential",
    "python3",
    "python3-pip",
    "python3-venv",
    "nodejs",
    "npm",
    "erlang",
    "elixir",
    "chromium",
    "fonts-liberation",
    "ripgrep",
    "procps",
    "iproute2",
    "less",
    "vim-tiny",
    "nano",
    "apt",
];

impl Recipe {
    /// The names of the built-in recipes.
    pub const BUILTIN: &'static [&'static str] = &["minimal", "browser", "default", "git"];

    /// A built-in recipe by name.
    pub fn builtin(name: &str) -> Result<Recipe> {
        let (packages, keep_apt_lists): (Vec<&str>, bool) = match name {
            "minimal" => (MINIMAL.to_vec(), false),
            "browser" => ([MINIMAL, BROWSER_EXTRA].concat(), false),
            "default" => (DEFAULT.to_vec(), true),
            "git" => ([MINIMAL, GIT_EXTRA].concat(), false),
            _ => {
                return Err(Error::UnknownRecipe {
                    name: name.to_owned(),
                    known: Self::BUILTIN.join(", "),
                });
            }
        };
        Ok(Recipe {
            name: name.to_owned(),
            variant: "minbase".to_owned(),
            packages: packages.into_iter().map(str::to_owned).collect(),
            keep_apt_lists,
        })
    }

    /// A recipe of one's own: `minbase` plus `packages`.
    pub fn custom(name: &str, packages: &[&str]) -> Result<Recipe> {
        validate_name(name)?;
        Ok(Recipe {
            name: name.to_owned(),
            variant: "minbase".to_owned(),
            packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            keep_apt_lists: false,
        })
    }
}

/// Check that `name` can name an image: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or
/// a digit (so never `.`-prefixed like the store's work directories).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins() {
        for name in Recipe::BUILTIN {
            let r = Recipe::builtin(name).unwrap();
            assert_eq!(r.name, *name);
            assert!(r.packages.iter().any(|p| p == "python3"));
            validate_name(name).unwrap();
        }
        let browser = Recipe::builtin("browser").unwrap();
        assert!(browser.packages.iter().any(|p| p == "chromium"));
        let default = Recipe::builtin("default").unwrap();
        for p in ["gh", "elixir", "ripgrep", "nodejs", "build-essential"] {
            assert!(default.packages.iter().any(|q| q == p), "{p}");
        }
    }

    #[test]
    fn unknown_recipe_lists_known() {
        let err = Recipe::builtin("fancy").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`fancy`") && msg.contains("minimal, browser, default"),
            "{msg}"
        );
    }

    #[test]
    fn names() {
        for good in ["minimal", "a", "x1.2_3-4", "9lives"] {
            validate_name(good).unwrap();
        }
        for bad in [
            "",
            ".build-x",
            "-x",
            "A",
            "a/b",
            "..",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(Recipe::custom("../etc", &["bash"]).is_err());
    }
}
