//! Recipes: what goes into an image. The built-in ones are `minimal` (runs the test suite),
//! `browser` (minimal plus Chromium), `git` (minimal plus git, for the forge tests) and
//! `default` (the image a person and an agent work in).
//!
//! A recipe names its suite: the test images take the host's (they only need a shell,
//! Python and Chromium, and the host's suite is the one its mirror surely serves); `default`
//! takes `stable`, which the build resolves to the codename of the newest Debian stable the
//! host's mirror serves, whatever the host runs, because current toolchains need current
//! packages (Phoenix 1.8 wants Elixir 1.15, Vite 7 Node.js 20.19).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What to build: a name (the image's name), a debootstrap variant and the packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// The image name: the recipe's name unless [`Recipe::named`] gave it another.
    pub name: String,
    /// The recipe's own name (the image's kind, recorded in its manifest).
    #[serde(default)]
    pub recipe: String,
    /// The mmdebstrap/debootstrap variant, such as `minbase`.
    pub variant: String,
    /// Packages installed on top of the variant.
    pub packages: Vec<String>,
    /// Keep apt's package lists, so `apt-get install` works without `apt-get update` first
    /// (costs some tens of MiB).
    pub keep_apt_lists: bool,
    /// The suite to build from: `None` for the host's, a codename, or an alias such as
    /// `stable` that the build resolves to today's codename. A build's `--suite` wins.
    #[serde(default)]
    pub suite: Option<String>,
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

/// The image a person and an agent work in: what full-stack work needs, ready to use.
/// Built from the newest Debian stable (see the module docs); the floors it must meet
/// (Node.js 20.19, Elixir 1.15) are checked by the tests in a machine made from it.
const DEFAULT: &[&str] = &[
    // The base and the shell.
    "bash",
    "coreutils",
    "ca-certificates",
    "curl",
    "wget",
    "procps",
    "iproute2",
    "less",
    "file",
    "unzip",
    "xz-utils",
    "apt",
    // Editors, search, JSON.
    "vim-tiny",
    "nano",
    "ripgrep",
    "jq",
    // Source control.
    "git",
    "gh",
    "openssh-client",
    // Build tools.
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "inotify-tools",
    // Languages.
    "python3",
    "python3-pip",
    "python3-venv",
    "python3-dev",
    "nodejs",
    "npm",
    "erlang-nox",
    "erlang-dev",
    "elixir",
    "rebar3",
    "golang-go",
    "rustc",
    "cargo",
    // Databases: PostgreSQL (started on demand, see `firepit-postgres`), SQLite, Redis.
    "postgresql",
    "postgresql-client",
    "libpq-dev",
    "sqlite3",
    "libsqlite3-dev",
    "redis-server",
    // The agent's browser.
    "chromium",
    "fonts-liberation",
];

impl Recipe {
    /// The names of the built-in recipes.
    pub const BUILTIN: &'static [&'static str] = &["minimal", "browser", "default", "git"];

    /// A built-in recipe by name.
    pub fn builtin(name: &str) -> Result<Recipe> {
        let (packages, keep_apt_lists, suite): (Vec<&str>, bool, Option<&str>) = match name {
            "minimal" => (MINIMAL.to_vec(), false, None),
            "browser" => ([MINIMAL, BROWSER_EXTRA].concat(), false, None),
            "default" => (DEFAULT.to_vec(), true, Some("stable")),
            "git" => ([MINIMAL, GIT_EXTRA].concat(), false, None),
            _ => {
                return Err(Error::UnknownRecipe {
                    name: name.to_owned(),
                    known: Self::BUILTIN.join(", "),
                });
            }
        };
        Ok(Recipe {
            name: name.to_owned(),
            recipe: name.to_owned(),
            variant: "minbase".to_owned(),
            packages: packages.into_iter().map(str::to_owned).collect(),
            keep_apt_lists,
            suite: suite.map(str::to_owned),
        })
    }

    /// The same recipe built under another image name (`firepit image build default --name
    /// default-next`), so the image that sessions use stays while the new one is built.
    pub fn named(mut self, name: &str) -> Result<Recipe> {
        validate_name(name)?;
        name.clone_into(&mut self.name);
        Ok(self)
    }

    /// A recipe of one's own: `minbase` plus `packages`.
    pub fn custom(name: &str, packages: &[&str]) -> Result<Recipe> {
        validate_name(name)?;
        Ok(Recipe {
            name: name.to_owned(),
            recipe: name.to_owned(),
            variant: "minbase".to_owned(),
            packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            keep_apt_lists: false,
            suite: None,
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
        for p in [
            "gh",
            "elixir",
            "ripgrep",
            "nodejs",
            "build-essential",
            "postgresql",
            "sqlite3",
            "redis-server",
            "golang-go",
            "cargo",
            "jq",
        ] {
            assert!(default.packages.iter().any(|q| q == p), "{p}");
        }
        assert_eq!(default.suite.as_deref(), Some("stable"));
        assert_eq!(Recipe::builtin("minimal").unwrap().suite, None);
        let next = default.clone().named("default-next").unwrap();
        assert_eq!(
            (next.name.as_str(), next.recipe.as_str(), &next.packages),
            ("default-next", "default", &default.packages)
        );
        assert!(default.named("../x").is_err());
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
