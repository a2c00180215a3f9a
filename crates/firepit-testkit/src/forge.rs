//! A stand-in forge: the GitHub REST endpoints firepit uses (under
//! `/api/v3`, as GitHub Enterprise serves them) and real git repositories
//! served by the host's `git http-backend`, on 127.0.0.1.
//!
//! It checks the token like GitHub: the right one passes, a token "without
//! scopes" gets a 403 naming the scope it lacks, anything else a 401. Git
//! wants the token as the basic password of `x-access-token`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// An early answer of a handler (boxed: responses are large).
type Early = Box<Response>;
use serde_json::{Value, json};

/// The token the stand-in accepts.
pub const TOKEN: &str = "ghp_standInSecretToken0123456789abcdef";
/// A token that is valid but has no scopes.
pub const SCOPELESS: &str = "ghp_noScopesAtAll000000000000000000000";

/// One repository's issues, comments and pull requests.
#[derive(Default)]
pub struct Repo {
    /// Issues: number, title, body, labels.
    pub issues: Vec<Value>,
    /// Comments by issue number.
    pub comments: HashMap<u64, Vec<Value>>,
    /// Pull requests.
    pub pulls: Vec<Value>,
}

/// What the stand-in knows and saw.
#[derive(Default)]
pub struct State0 {
    /// Repositories by `owner/name`.
    pub repos: HashMap<String, Repo>,
    /// Every request: `METHOD path`.
    pub requests: Vec<String>,
    /// Every request that reached the stand-in at all, whatever it asked
    /// for and however it was answered: `METHOD path[?query]` as received.
    pub received: Vec<String>,
    /// Authorization headers seen (to check the token went nowhere else).
    pub auth_seen: Vec<String>,
    /// Answer the next this-many API requests with 429 and `Retry-After: <secs>`.
    pub rate_limit: Option<(usize, u64)>,
    next_number: u64,
}

type Shared = Arc<(Mutex<State0>, PathBuf, String)>;

/// A running stand-in forge.
pub struct StandIn {
    /// Its base URL (`http://127.0.0.1:<port>`), the web and git base.
    pub url: String,
    /// Where the bare repositories live.
    pub root: tempfile::TempDir,
    shared: Shared,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl StandIn {
    /// Starts the stand-in on a thread of its own.
    pub fn start() -> StandIn {
        let root = tempfile::Builder::new()
            .prefix("fp-forge")
            .tempdir_in("/tmp")
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared: Shared = Arc::new((
            Mutex::new(State0 {
                next_number: 100,
                ..Default::default()
            }),
            root.path().to_owned(),
            url.clone(),
        ));
        let api = axum::Router::new()
            .route("/repos/{owner}/{name}", get(repo))
            .route("/repos/{owner}/{name}/issues", get(issues))
            .route(
                "/repos/{owner}/{name}/issues/{n}/comments",
                get(comments).post(comment),
            )
            .route("/repos/{owner}/{name}/pulls", get(pulls).post(create_pull));
        let app = axum::Router::new()
            .nest("/api/v3", api)
            .fallback(git_http)
            .layer(axum::middleware::from_fn_with_state(shared.clone(), record))
            .with_state(shared.clone());
        crate::serve_on_thread(listener, app);
        StandIn { url, root, shared }
    }

    /// Makes repository `owner/name` with `files` on `main`.
    pub fn add_repo(&self, full: &str, files: &[(&str, &str)]) {
        let work = tempfile::tempdir().unwrap();
        git(work.path(), &["init", "-q", "-b", "main"]);
        for (path, text) in files {
            let p = work.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(work.path(), &["add", "-A"]);
        git(work.path(), &["commit", "-q", "-m", "initial"]);
        let bare = self.root.path().join(format!("{full}.git"));
        std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
        git(
            work.path(),
            &["clone", "-q", "--bare", ".", bare.to_str().unwrap()],
        );
        self.state().repos.insert(full.to_owned(), Repo::default());
    }

    /// Refuses pushes to `branch` of `full` (a pre-receive hook, as branch protection does).
    pub fn protect(&self, full: &str, branch: &str) {
        let hook = self.bare(full).join("hooks/pre-receive");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = refs/heads/{branch} ]; then echo \"{branch} is protected\" >&2; exit 1; fi\ndone\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Adds an open issue.
    pub fn add_issue(&self, full: &str, number: u64, title: &str, body: &str, labels: &[&str]) {
        let url = self.url.clone();
        let mut s = self.state();
        let repo = s.repos.get_mut(full).unwrap();
        repo.issues.push(json!({
            "number": number, "title": title, "body": body, "state": "open",
            "html_url": format!("{url}/{full}/issues/{number}"),
            "labels": labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        }));
    }

    /// The bare repository of `full`.
    pub fn bare(&self, full: &str) -> PathBuf {
        self.root.path().join(format!("{full}.git"))
    }

    /// Runs git on the bare repository of `full`; stdout, or `None` if it failed.
    pub fn git(&self, full: &str, args: &[&str]) -> Option<String> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(self.bare(full))
            .args(args)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The state, locked.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State0> {
        self.shared.0.lock().unwrap()
    }
}

/// Notes every request as it arrived, before any route is chosen.
async fn record(
    State(s): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    s.0.lock()
        .unwrap()
        .received
        .push(format!("{} {}{query}", req.method(), req.uri().path()));
    next.run(req).await
}

/// How the token of a request stands.
fn check_token(s: &Shared, headers: &HeaderMap) -> Result<(), Early> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    s.0.lock().unwrap().auth_seen.push(auth.clone());
    if auth == format!("Bearer {TOKEN}") {
        return Ok(());
    }
    if auth == format!("Bearer {SCOPELESS}") {
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                [("x-accepted-oauth-scopes", "repo"), ("x-oauth-scopes", "")],
                Json(json!({"message": "Resource not accessible by personal access token"})),
            )
                .into_response(),
        ));
    }
    Err(Box::new(
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response(),
    ))
}

/// Common checks of an API request: log, rate limit, token, repository.
fn enter(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    full: &str,
) -> Result<(), Early> {
    let mut st = s.0.lock().unwrap();
    st.requests.push(format!("{method} {}", uri.path()));
    if let Some((n, secs)) = st.rate_limit
        && n > 0
    {
        st.rate_limit = (n > 1).then_some((n - 1, secs));
        return Err(Box::new(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                Json(json!({"message": "API rate limit exceeded"})),
            )
                .into_response(),
        ));
    }
    drop(st);
    check_token(s, headers)?;
    if !s.0.lock().unwrap().repos.contains_key(full) {
        return Err(Box::new(
            (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
        ));
    }
    Ok(())
}

async fn repo(
    State(s): State<Shared>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let full = format!("{owner}/{name}");
    if let Err(r) = enter(&s, &method, &uri, &headers, &full) {
        return *r;
    }
    Json(
        json!({"full_name": full, "default_branch": "main", "html_url": format!("{}/{full}", s.2)}),
    )
    .into_response()
}

async fn issues(
    State(s): State<Shared>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let full = format!("{owner}/{name}");
    if let Err(r) = enter(&s, &method, &uri, &headers, &full) {
        return *r;
    }
    let label = q.as_deref().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("labels="))
            .map(|l| l.replace("%20", " "))
    });
    let st = s.0.lock().unwrap();
    let repo = &st.repos[&full];
    let mut out: Vec<Value> = repo
        .issues
        .iter()
        .filter(|i| {
            label.as_ref().is_none_or(|l| {
                i["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["name"] == l.as_str())
            })
        })
        .cloned()
        .collect();
    // Like GitHub, pull requests are issues too.
    out.extend(repo.pulls.iter().filter(|p| p["state"] == "open").map(|p| {
        json!({"number": p["number"], "title": p["title"], "body": p["body"], "pull_request": {}, "labels": []})
    }).filter(|_| label.is_none()));
    Json(out).into_response()
}

async fn comments(
    State(s): State<Shared>,
    UrlPath((owner, name, n)): UrlPath<(String, String, u64)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let full = format!("{owner}/{name}");
    if let Err(r) = enter(&s, &method, &uri, &headers, &full) {
        return *r;
    }
    let st = s.0.lock().unwrap();
    Json(
        st.repos[&full]
            .comments
            .get(&n)
            .cloned()
            .unwrap_or_default(),
    )
    .into_response()
}

async fn comment(
    State(s): State<Shared>,
    UrlPath((owner, name, n)): UrlPath<(String, String, u64)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let full = format!("{owner}/{name}");
    if let Err(r) = enter(&s, &method, &uri, &headers, &full) {
        return *r;
    }
    let mut st = s.0.lock().unwrap();
    let c = json!({"user": {"login": "firepit-bot"}, "body": body["body"], "html_url": format!("{}/{full}/issues/{n}#c", s.2)});
    st.repos
        .get_mut(&full)
        .unwrap()
        .comments
        .entry(n)
        .or_default()
        .push(c.clone());
    (StatusCode::CREATED, Json(c)).into_response()
}

async fn pulls(
    State(s): State<Shared>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let full = format!("{owner}/{name}");
    if let Err(r) = enter(&s, &method, &uri, &headers, &full) {
        return *r;
    }
    let st = s.0.lock().unwrap();
    let open: Vec<Value> = st.repos[&full]
        .pulls
        .iter()
        .filter(|p| p["state"] == "open")
        .cloned()
        .collect();
    Json(open).into_response()
}

async fn create_pull(
    State(s): State<Shared>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let full = format!("{owner}/{name}");
    if let Err(r) = enter(&s, &method, &uri, &headers, &full) {
        return *r;
    }
    let head = body["head"].as_str().unwrap_or("").to_owned();
    let base = body["base"].as_str().unwrap_or("").to_owned();
    let bare = s.1.join(format!("{full}.git"));
    let sha = Command::new("git")
        .arg("--git-dir")
        .arg(&bare)
        .args(["rev-parse", "--verify", &format!("refs/heads/{head}")])
        .output()
        .unwrap();
    if !sha.status.success() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Validation Failed", "errors": [{"message": format!("head {head} does not exist")}]})),
        )
            .into_response();
    }
    let mut st = s.0.lock().unwrap();
    st.next_number += 1;
    let number = st.next_number;
    let pr = json!({
        "number": number, "title": body["title"], "body": body["body"], "state": "open",
        "html_url": format!("{}/{full}/pull/{number}", s.2),
        "head": {"ref": head, "sha": String::from_utf8_lossy(&sha.stdout).trim()},
        "base": {"ref": base, "sha": ""},
    });
    st.repos.get_mut(&full).unwrap().pulls.push(pr.clone());
    (StatusCode::CREATED, Json(pr)).into_response()
}

/// Git smart HTTP through the host's `git http-backend`, with basic auth.
async fn git_http(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.0.lock()
        .unwrap()
        .requests
        .push(format!("{method} {}", uri.path()));
    use base64::Engine;
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    s.0.lock().unwrap().auth_seen.push(auth.clone());
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"))
    );
    if auth != expected {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"stand-in\"")],
            "bad credentials",
        )
            .into_response();
    }
    let root = s.1.clone();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let ce = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let proto = headers
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new("git")
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", &path)
            .env("REQUEST_METHOD", method.as_str())
            .env("QUERY_STRING", &query)
            .env("CONTENT_TYPE", &ct)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", &ce)
            .env("GIT_PROTOCOL", &proto)
            .env("REMOTE_USER", "x-access-token")
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        out.stdout
    })
    .await
    .unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, len)) = split else {
        return (StatusCode::BAD_GATEWAY, "no CGI headers").into_response();
    };
    let mut resp = Response::builder();
    let mut status = 200;
    for line in String::from_utf8_lossy(&out[..at]).lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("status") {
                status = v.trim()[..3].parse().unwrap_or(500);
            } else {
                resp = resp.header(k.trim(), v.trim());
            }
        }
    }
    resp.status(status)
        .body(Body::from(out[at + len..].to_vec()))
        .unwrap()
}
