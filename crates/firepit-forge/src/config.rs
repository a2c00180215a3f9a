//! Where the forge is and the token to use: GitHub by default, GitHub
//! Enterprise (or a stand-in) by base URL.

use crate::{Error, Token};

/// The forge's addresses and the token.
#[derive(Debug, Clone)]
pub struct ForgeConfig {
    /// Web and git base, such as `https://github.com` (no trailing slash).
    pub web_url: String,
    /// REST API base, such as `https://api.github.com` or
    /// `https://ghe.example.com/api/v3` (no trailing slash).
    pub api_url: String,
    /// The token; `None` leaves the forge routes saying how to give one.
    pub token: Option<Token>,
    /// Longest wait for a rate limit's `Retry-After` before giving up.
    pub max_retry_wait: std::time::Duration,
    /// Repositories sessions may be given: `owner/name` or `owner/*`; empty
    /// allows every repository the token can reach.
    pub allow: Vec<String>,
}

/// Says how to configure the forge.
pub const CONFIGURE_HELP: &str = "no GitHub token is configured: start `firepit up` with GITHUB_TOKEN set (and FIREPIT_GITHUB_URL for GitHub Enterprise)";

impl ForgeConfig {
    /// GitHub (or GitHub Enterprise at `web_url`) with `token`. The API base
    /// is `https://api.github.com` for github.com and `<web_url>/api/v3`
    /// otherwise, unless `api_url` is given.
    pub fn new(
        web_url: &str,
        api_url: Option<&str>,
        token: Option<Token>,
    ) -> Result<ForgeConfig, Error> {
        let web_url = web_url.trim().trim_end_matches('/').to_owned();
        let check = |u: &str| {
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && reqwest::Url::parse(u).is_ok_and(|p| p.host().is_some());
            if ok {
                Ok(())
            } else {
                Err(Error::BadUrl(u.to_owned()))
            }
        };
        check(&web_url)?;
        let api_url = match api_url {
            Some(u) => u.trim().trim_end_matches('/').to_owned(),
            None if web_url == "https://github.com" => "https://api.github.com".to_owned(),
            None => format!("{web_url}/api/v3"),
        };
        check(&api_url)?;
        Ok(ForgeConfig {
            web_url,
            api_url,
            token,
            max_retry_wait: std::time::Duration::from_secs(60),
            allow: Vec::new(),
        })
    }

    /// From the environment: `GITHUB_TOKEN` (or `GH_TOKEN`), `FIREPIT_GITHUB_URL`
    /// (default `https://github.com`), `FIREPIT_GITHUB_API_URL` and
    /// `FIREPIT_GITHUB_ALLOW` (comma-separated `owner/name` or `owner/*`).
    pub fn from_env() -> Result<ForgeConfig, Error> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let token = var("GITHUB_TOKEN")
            .or_else(|| var("GH_TOKEN"))
            .and_then(Token::new);
        let web = var("FIREPIT_GITHUB_URL").unwrap_or_else(|| "https://github.com".into());
        let mut config = ForgeConfig::new(&web, var("FIREPIT_GITHUB_API_URL").as_deref(), token)?;
        config.allow = var("FIREPIT_GITHUB_ALLOW")
            .map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(config)
    }

    /// Refuses `repo` unless the allow list (if any) names it or its owner.
    pub fn check_allowed(&self, repo: &crate::RepoName) -> Result<(), Error> {
        if self.allow.is_empty() {
            return Ok(());
        }
        let ok = self.allow.iter().any(|p| match p.split_once('/') {
            Some((owner, "*")) => owner.eq_ignore_ascii_case(&repo.owner),
            _ => p.parse::<crate::RepoName>().is_ok_and(|r| r.same(repo)),
        });
        if ok {
            Ok(())
        } else {
            Err(Error::NotAllowed {
                repo: repo.to_string(),
                allowed: self.allow.join(", "),
            })
        }
    }

    /// The git URL of `repo` on the forge.
    pub fn git_url(&self, repo: &crate::RepoName) -> String {
        format!("{}/{}.git", self.web_url, repo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_follows_the_web_base() {
        let gh = ForgeConfig::new("https://github.com/", None, None).unwrap();
        assert_eq!(gh.api_url, "https://api.github.com");
        let ghe = ForgeConfig::new("https://ghe.example.com", None, None).unwrap();
        assert_eq!(ghe.api_url, "https://ghe.example.com/api/v3");
        let own =
            ForgeConfig::new("http://127.0.0.1:9", Some("http://127.0.0.1:9/x/"), None).unwrap();
        assert_eq!(own.api_url, "http://127.0.0.1:9/x");
        assert!(ForgeConfig::new("github.com", None, None).is_err());
        assert!(ForgeConfig::new("ftp://x", None, None).is_err());
    }

    #[test]
    fn the_allow_list_names_repositories_or_owners() {
        let mut c = ForgeConfig::new("https://github.com", None, None).unwrap();
        let r = |s: &str| s.parse::<crate::RepoName>().unwrap();
        c.check_allowed(&r("any/thing")).unwrap();
        c.allow = vec!["octo/app".into(), "team/*".into()];
        c.check_allowed(&r("Octo/App")).unwrap();
        c.check_allowed(&r("team/x")).unwrap();
        let err = c.check_allowed(&r("octo/other")).unwrap_err().to_string();
        assert!(
            err.contains("octo/other") && err.contains("team/*"),
            "{err}"
        );
    }
}
