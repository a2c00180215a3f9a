//! The GitHub REST client: repositories, issues, comments, pull requests and
//! check runs, with the token added to every request.
//!
//! Rate limits: a 429, or a 403 with `Retry-After` or
//! `x-ratelimit-remaining: 0`, is waited out (the forge's `Retry-After`, or
//! until `x-ratelimit-reset`) and retried, up to three times and never longer
//! than [`ForgeConfig::max_retry_wait`]; beyond that it is an
//! [`Error::RateLimited`]. A 403 or 404 whose `X-Accepted-OAuth-Scopes` names
//! a scope the token's `X-OAuth-Scopes` lacks is an [`Error::MissingScope`].

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, ForgeConfig, RepoName, Token, redact};

/// Most pages followed for one listing (100 items each).
const MAX_PAGES: usize = 20;
/// Most retries after a rate limit.
const MAX_RETRIES: usize = 3;

/// A repository.
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
    /// The branch new work starts from.
    #[serde(default)]
    pub default_branch: String,
    /// Web page.
    #[serde(default)]
    pub html_url: String,
}

/// An issue (not a pull request).
#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    /// Its number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Text (markdown), if any.
    #[serde(default)]
    pub body: Option<String>,
    /// Web page.
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pull_request: Option<Value>,
}

/// A comment on an issue.
#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    /// Who wrote it.
    #[serde(default, deserialize_with = "login")]
    pub user: String,
    /// Its text.
    #[serde(default)]
    pub body: String,
    /// Web page.
    #[serde(default)]
    pub html_url: String,
}

fn login<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.and_then(|u| u["login"].as_str().map(str::to_owned))
        .unwrap_or_default())
}

/// A branch a pull request comes from or goes to.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRef {
    /// Branch name.
    #[serde(rename = "ref")]
    pub branch: String,
    /// The commit.
    #[serde(default)]
    pub sha: String,
}

/// A pull request.
#[derive(Debug, Clone, Deserialize)]
pub struct Pull {
    /// Its number.
    pub number: u64,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Web page.
    #[serde(default)]
    pub html_url: String,
    /// Where it comes from.
    pub head: PullRef,
    /// Where it goes.
    pub base: PullRef,
    /// `open` or `closed`.
    #[serde(default)]
    pub state: String,
}

/// A pull request to open.
#[derive(Debug, Clone, Serialize)]
pub struct NewPull {
    /// Title.
    pub title: String,
    /// Branch with the work.
    pub head: String,
    /// Branch it goes into.
    pub base: String,
    /// Description (markdown).
    pub body: String,
}

/// A check run on a commit.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckRun {
    /// The check's name.
    pub name: String,
    /// `queued`, `in_progress`, `completed`.
    #[serde(default)]
    pub status: String,
    /// `success`, `failure`, … once completed.
    #[serde(default)]
    pub conclusion: Option<String>,
}

/// The REST client; cheap to clone.
#[derive(Clone)]
pub struct Forge {
    config: ForgeConfig,
    http: reqwest::Client,
}

impl Forge {
    /// A client for the forge `config` describes.
    pub fn new(config: ForgeConfig) -> Forge {
        let http = reqwest::Client::builder()
            .user_agent(concat!("firepit/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Forge { config, http }
    }

    /// The settings.
    pub fn config(&self) -> &ForgeConfig {
        &self.config
    }

    /// The token, or the error saying how to give one.
    pub fn token(&self) -> Result<&Token, Error> {
        self.config.token.as_ref().ok_or(Error::NoToken)
    }

    /// The repository, which must exist and be visible to the token.
    pub async fn repo(&self, repo: &RepoName) -> Result<Repository, Error> {
        let what = format!("looking up the repository {repo}");
        let v = self
            .call(Method::GET, &format!("/repos/{repo}"), None, &what)
            .await?;
        parse(v, &what)
    }

    /// Open issues (pull requests left out), newest first, with `label` if
    /// given, at most `max`.
    pub async fn open_issues(
        &self,
        repo: &RepoName,
        label: Option<&str>,
        max: usize,
    ) -> Result<Vec<Issue>, Error> {
        let what = format!("listing the open issues of {repo}");
        let mut path = format!("/repos/{repo}/issues?state=open&per_page=100");
        if let Some(l) = label {
            path.push_str("&labels=");
            path.extend(form_encode(l));
        }
        let mut out = Vec::new();
        for v in self.list(&path, &what).await? {
            let issue: Issue = parse(v, &what)?;
            if issue.pull_request.is_none() {
                out.push(issue);
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// The comments on issue `number`, oldest first.
    pub async fn comments(&self, repo: &RepoName, number: u64) -> Result<Vec<Comment>, Error> {
        let what = format!("reading the comments of {repo}#{number}");
        let path = format!("/repos/{repo}/issues/{number}/comments?per_page=100");
        self.list(&path, &what)
            .await?
            .into_iter()
            .map(|v| parse(v, &what))
            .collect()
    }

    /// Open pull requests.
    pub async fn open_pulls(&self, repo: &RepoName) -> Result<Vec<Pull>, Error> {
        let what = format!("listing the open pull requests of {repo}");
        let path = format!("/repos/{repo}/pulls?state=open&per_page=100");
        self.list(&path, &what)
            .await?
            .into_iter()
            .map(|v| parse(v, &what))
            .collect()
    }

    /// Opens a pull request.
    pub async fn create_pull(&self, repo: &RepoName, pull: &NewPull) -> Result<Pull, Error> {
        let what = format!("opening a pull request on {repo} from {}", pull.head);
        let body = serde_json::to_value(pull).unwrap_or_default();
        let v = self
            .call(
                Method::POST,
                &format!("/repos/{repo}/pulls"),
                Some(body),
                &what,
            )
            .await?;
        parse(v, &what)
    }

    /// Comments on issue (or pull request) `number`.
    pub async fn comment(
        &self,
        repo: &RepoName,
        number: u64,
        text: &str,
    ) -> Result<Comment, Error> {
        let what = format!("commenting on {repo}#{number}");
        let v = self
            .call(
                Method::POST,
                &format!("/repos/{repo}/issues/{number}/comments"),
                Some(serde_json::json!({ "body": text })),
                &what,
            )
            .await?;
        parse(v, &what)
    }

    /// The check runs on commit (or branch) `git_ref`.
    pub async fn check_runs(&self, repo: &RepoName, git_ref: &str) -> Result<Vec<CheckRun>, Error> {
        let what = format!("reading the check runs of {repo} at {git_ref}");
        let v = self
            .call(
                Method::GET,
                &format!(
                    "/repos/{repo}/commits/{}/check-runs",
                    form_encode(git_ref).collect::<String>()
                ),
                None,
                &what,
            )
            .await?;
        parse(v["check_runs"].clone(), &what)
    }

    /// Follows a listing's `Link: rel="next"` pages.
    async fn list(&self, first: &str, what: &str) -> Result<Vec<Value>, Error> {
        let mut url = format!("{}{first}", self.config.api_url);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let (v, headers) = self.send(Method::GET, &url, None, what).await?;
            match v {
                Value::Array(items) => out.extend(items),
                _ => return Err(self.transport(what, "the forge did not answer with a list")),
            }
            match next_link(&headers) {
                // Only follow pages on the same forge.
                Some(next) if next.starts_with(&self.config.api_url) => url = next,
                _ => break,
            }
        }
        Ok(out)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<Value, Error> {
        let url = format!("{}{path}", self.config.api_url);
        Ok(self.send(method, &url, body, what).await?.0)
    }

    fn transport(&self, what: &str, message: &str) -> Error {
        Error::Transport {
            what: what.to_owned(),
            message: redact(message, self.config.token.as_ref()),
        }
    }

    /// One request, with rate limits waited out.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<(Value, HeaderMap), Error> {
        let token = self.token()?;
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .bearer_auth(token.expose());
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| self.transport(what, &crate::error_chain(&e)))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let text = resp
                .text()
                .await
                .map_err(|e| self.transport(what, &crate::error_chain(&e)))?;
            if status.is_success() {
                let v = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).map_err(|e| {
                        self.transport(what, &format!("the forge's answer is not JSON: {e}"))
                    })?
                };
                return Ok((v, headers));
            }
            if let Some(wait) = rate_limit_wait(status, &headers) {
                if wait > self.config.max_retry_wait || attempt >= MAX_RETRIES {
                    return Err(Error::RateLimited {
                        what: what.to_owned(),
                        retry_after_secs: wait.as_secs(),
                    });
                }
                attempt += 1;
                tracing::info!(what, wait_s = wait.as_secs(), "GitHub rate limit; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(self.classify(status, &headers, &text, what));
        }
    }

    fn classify(&self, status: StatusCode, headers: &HeaderMap, text: &str, what: &str) -> Error {
        let header = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .map(str::to_owned)
        };
        let message = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| {
                let mut m = v["message"].as_str()?.to_owned();
                if let Some(errors) = v["errors"].as_array() {
                    for e in errors {
                        if let Some(s) = e["message"].as_str() {
                            m.push_str("; ");
                            m.push_str(s);
                        }
                    }
                }
                Some(m)
            })
            .unwrap_or_else(|| text.chars().take(300).collect());
        let message = redact(&message, self.config.token.as_ref());
        if status == StatusCode::UNAUTHORIZED {
            return Error::BadToken;
        }
        if matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND)
            && let Some(needed) = header("x-accepted-oauth-scopes").filter(|s| !s.is_empty())
        {
            let have = header("x-oauth-scopes").unwrap_or_default();
            let has = |s: &str| have.split(',').any(|h| h.trim() == s);
            if !needed.split(',').any(|n| has(n.trim())) {
                return Error::MissingScope {
                    what: what.to_owned(),
                    needed,
                    have: if have.is_empty() { "none".into() } else { have },
                };
            }
        }
        if status == StatusCode::NOT_FOUND {
            return Error::NotFound {
                what: what.to_owned(),
            };
        }
        Error::Refused {
            what: what.to_owned(),
            status: status.as_u16(),
            message,
        }
    }
}

/// How long a rate-limited answer asks to wait, if it is one.
fn rate_limit_wait(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && (retry_after.is_some() || exhausted));
    if !limited {
        return None;
    }
    if let Some(s) = retry_after {
        return Some(Duration::from_secs(s));
    }
    let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
    let now = firepit_util::now().max(0) as u64;
    Some(Duration::from_secs(match reset {
        Some(r) => r.saturating_sub(now).max(1),
        // GitHub's advice for secondary limits without a header: a minute.
        None => 60,
    }))
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

fn form_encode(s: &str) -> impl Iterator<Item = char> + '_ {
    s.bytes().flat_map(|b| {
        let keep = b.is_ascii_alphanumeric() || b"-_.~".contains(&b);
        let chars: Vec<char> = if keep {
            vec![b as char]
        } else {
            format!("%{b:02X}").chars().collect()
        };
        chars
    })
}

fn parse<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::Transport {
        what: what.to_owned(),
        message: format!("the forge's answer has an unexpected shape: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn rate_limits_are_recognised() {
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &h),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &HeaderMap::new()),
            None
        );
        assert_eq!(rate_limit_wait(StatusCode::NOT_FOUND, &h), None);
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let h = headers(&[(
            "link",
            "<https://api.github.com/x?page=2>; rel=\"next\", <https://api.github.com/x?page=5>; rel=\"last\"",
        )]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/x?page=2")
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn labels_are_encoded() {
        assert_eq!(
            form_encode("good first/issue").collect::<String>(),
            "good%20first%2Fissue"
        );
    }
}
