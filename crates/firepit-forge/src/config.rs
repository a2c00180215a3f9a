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
        })
    }

    /// From the environment: `GITHUB_TOKEN` (or `GH_TOKEN`), `FIREPIT_GITHUB_URL`
    /// (default `https://github.com`) and `FIREPIT_GITHUB_API_URL`.
    pub fn from_env() -> Result<ForgeConfig, Error> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let token = var("GITHUB_TOKEN")
            .or_else(|| var("GH_TOKEN"))
            .and_then(Token::new);
        let web = var("FIREPIT_GITHUB_URL").unwrap_or_else(|| "https://github.com".into());
        ForgeConfig::new(&web, var("FIREPIT_GITHUB_API_URL").as_deref(), token)
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
}
