//! The forge broker: what a machine's git and REST calls reach instead of the
//! forge.
//!
//! The daemon listens inside the machine's network namespace (see
//! [`crate::netns`]) on `127.0.0.1:<port>` and serves each connection here.
//! Two kinds of request pass, and only for the repositories the session was
//! given:
//!
//! - git smart HTTP: `/<owner>/<name>[.git]/info/refs`, `/git-upload-pack`,
//!   `/git-receive-pack`, forwarded to `<web_url>/<owner>/<name>.git/…`;
//! - the REST API: `/api/repos/<owner>/<name>[/…]`, forwarded to
//!   `<api_url>/repos/<owner>/<name>[/…]`.
//!
//! The broker adds the token on the way out and drops any `Authorization` or
//! `Cookie` the machine sends; a 401 from the forge becomes a 403, so git in
//! the machine never asks for credentials. Everything else is refused with a
//! 403 that says what is allowed.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};

use crate::{ForgeConfig, RepoName};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// Request headers passed on to the forge.
const PASS_REQUEST: &[&str] = &[
    "accept",
    "content-type",
    "content-encoding",
    "git-protocol",
    "user-agent",
    "x-github-api-version",
];
/// Response headers passed back to the machine.
const PASS_RESPONSE: &[&str] = &[
    "content-type",
    "content-encoding",
    "cache-control",
    "expires",
    "pragma",
    "link",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// One session's broker: the forge and the repositories it may reach.
pub struct Broker {
    config: ForgeConfig,
    repos: Vec<RepoName>,
    http: reqwest::Client,
}

/// Where a machine's request goes.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Git { repo: RepoName, rest: String },
    Api { repo: RepoName, rest: String },
}

impl Broker {
    /// A broker for `repos` on the forge `config` describes.
    pub fn new(config: ForgeConfig, repos: Vec<RepoName>) -> Broker {
        let http = reqwest::Client::builder()
            .user_agent(concat!("firepit-broker/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Broker {
            config,
            repos,
            http,
        }
    }

    /// The repositories this broker serves.
    pub fn repos(&self) -> &[RepoName] {
        &self.repos
    }

    /// Serves connections accepted on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "broker accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let broker = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let broker = broker.clone();
                    async move { Ok::<_, Infallible>(broker.handle(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "broker connection ended");
                }
            });
        }
    }

    fn route(&self, path: &str) -> Result<Route, String> {
        let allowed = || {
            self.repos
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let check = |repo: RepoName| {
            if self.repos.iter().any(|r| r.same(&repo)) {
                Ok(repo)
            } else {
                Err(format!(
                    "this session may reach only {}; {repo} is not among them",
                    allowed()
                ))
            }
        };
        if let Some(rest) = path.strip_prefix("/api/repos/") {
            let mut parts = rest.splitn(3, '/');
            let (owner, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let tail = parts.next().map(|t| format!("/{t}")).unwrap_or_default();
            let repo: RepoName = format!("{owner}/{name}")
                .parse()
                .map_err(|e: crate::Error| e.to_string())?;
            if tail.split('/').any(|s| s == ".." || s == ".") {
                return Err("paths with . or .. are refused".into());
            }
            return Ok(Route::Api {
                repo: check(repo)?,
                rest: tail,
            });
        }
        let mut parts = path.trim_start_matches('/').splitn(3, '/');
        let (owner, name, tail) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if !matches!(tail, "info/refs" | "git-upload-pack" | "git-receive-pack") {
            return Err(format!(
                "the broker serves git (clone, fetch, push) and /api/repos/… for {}",
                allowed()
            ));
        }
        let repo: RepoName = format!("{owner}/{name}")
            .parse()
            .map_err(|e: crate::Error| e.to_string())?;
        Ok(Route::Git {
            repo: check(repo)?,
            rest: format!("/{tail}"),
        })
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let route = match self.route(req.uri().path()) {
            Ok(r) => r,
            Err(why) => return text(StatusCode::FORBIDDEN, &why),
        };
        if let Route::Api { rest, .. } = &route
            && !api_write_allowed(req.method(), rest)
        {
            return text(
                StatusCode::FORBIDDEN,
                "through the broker a machine reads the repository's API and writes only issues, comments, pull requests, check runs and statuses",
            );
        }
        let Some(token) = self.config.token.as_ref() else {
            return text(StatusCode::FORBIDDEN, crate::config::CONFIGURE_HELP);
        };
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let (url, auth) = match &route {
            Route::Git { repo, rest } => (
                format!("{}/{repo}.git{rest}{query}", self.config.web_url),
                token.basic_auth(),
            ),
            Route::Api { repo, rest } => (
                format!("{}/repos/{repo}{rest}{query}", self.config.api_url),
                format!("Bearer {}", token.expose()),
            ),
        };
        tracing::debug!(method = %req.method(), path = %req.uri().path(), "broker forwards");
        let mut out = self.http.request(req.method().clone(), &url);
        for name in PASS_REQUEST {
            for v in req.headers().get_all(*name) {
                out = out.header(*name, v.clone());
            }
        }
        out = out.header("authorization", auth);
        let body = req.into_body().into_data_stream();
        let resp = match out.body(reqwest::Body::wrap_stream(body)).send().await {
            Ok(r) => r,
            Err(e) => {
                let msg = crate::redact(&crate::error_chain(&e), Some(token));
                return text(
                    StatusCode::BAD_GATEWAY,
                    &format!("the forge could not be reached: {msg}"),
                );
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return text(
                StatusCode::FORBIDDEN,
                "the forge refused firepit's GitHub token; the daemon's owner must fix it",
            );
        }
        let mut builder = Response::builder().status(status.as_u16());
        for name in PASS_RESPONSE {
            for v in resp.headers().get_all(*name) {
                builder = builder.header(*name, v.clone());
            }
        }
        let stream = resp
            .bytes_stream()
            .map_ok(Frame::data)
            .map_err(|e| Box::new(e) as BoxError);
        builder
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "the forge's answer was malformed"))
    }
}

/// Which REST calls a machine may make: any read, and writes to issues,
/// comments, pull requests (not merges), check runs and statuses. Deleting,
/// settings, hooks, keys, collaborators and the like stay with the person.
fn api_write_allowed(method: &hyper::Method, rest: &str) -> bool {
    use hyper::Method;
    let under = |prefix: &str| rest == prefix || rest.starts_with(&format!("{prefix}/"));
    match *method {
        Method::GET | Method::HEAD => true,
        Method::POST => {
            under("/issues") || under("/pulls") || under("/check-runs") || under("/statuses")
        }
        Method::PATCH => {
            (under("/issues") || under("/pulls") || under("/check-runs"))
                && !rest.ends_with("/merge")
        }
        _ => false,
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(format!("firepit forge broker: {msg}\n")))
        .map_err(|never| match never {})
        .boxed();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> Broker {
        let config = ForgeConfig::new("http://127.0.0.1:9", None, None).unwrap();
        Broker::new(config, vec!["octo/app".parse().unwrap()])
    }

    #[test]
    fn machines_read_anything_and_write_only_issues_pulls_and_checks() {
        use hyper::Method;
        assert!(api_write_allowed(&Method::GET, ""));
        assert!(api_write_allowed(&Method::GET, "/actions/runs"));
        assert!(api_write_allowed(&Method::POST, "/pulls"));
        assert!(api_write_allowed(&Method::POST, "/issues/3/comments"));
        assert!(api_write_allowed(&Method::PATCH, "/pulls/3"));
        assert!(api_write_allowed(&Method::POST, "/check-runs"));
        assert!(!api_write_allowed(&Method::DELETE, ""));
        assert!(!api_write_allowed(&Method::PATCH, ""));
        assert!(!api_write_allowed(&Method::PUT, "/pulls/3/merge"));
        assert!(!api_write_allowed(&Method::POST, "/hooks"));
        assert!(!api_write_allowed(&Method::POST, "/issuesx"));
        assert!(!api_write_allowed(&Method::PUT, "/collaborators/x"));
    }

    #[test]
    fn only_the_sessions_repositories_are_routed() {
        let b = broker();
        let repo: RepoName = "octo/app".parse().unwrap();
        assert_eq!(
            b.route("/octo/app.git/info/refs"),
            Ok(Route::Git {
                repo: repo.clone(),
                rest: "/info/refs".into()
            })
        );
        assert_eq!(
            b.route("/Octo/App/git-receive-pack"),
            Ok(Route::Git {
                repo: "Octo/App".parse().unwrap(),
                rest: "/git-receive-pack".into()
            })
        );
        assert_eq!(
            b.route("/api/repos/octo/app/pulls"),
            Ok(Route::Api {
                repo: repo.clone(),
                rest: "/pulls".into()
            })
        );
        assert_eq!(
            b.route("/api/repos/octo/app"),
            Ok(Route::Api {
                repo,
                rest: String::new()
            })
        );
        for refused in [
            "/octo/other.git/info/refs",
            "/api/repos/octo/other/pulls",
            "/api/user",
            "/octo/app.git/objects/info/packs",
            "/api/repos/octo/app/../../other/x",
            "/",
        ] {
            let err = b.route(refused).unwrap_err();
            assert!(!err.is_empty(), "{refused}");
        }
        assert!(
            b.route("/octo/other.git/info/refs")
                .unwrap_err()
                .contains("octo/app")
        );
    }
}
