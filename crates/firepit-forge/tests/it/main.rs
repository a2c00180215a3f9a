//! The forge client and broker against a small stand-in GitHub on 127.0.0.1
//! (no root, no machines): rate limits, missing scopes, bad tokens,
//! pagination, redaction, and what the broker forwards.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use firepit_forge::broker::Broker;
use firepit_forge::{Error, Forge, ForgeConfig, RepoName, Token};
use serde_json::json;

const SECRET: &str = "ghp_itSecret42";

/// One request the stand-in received, as it arrived.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    /// `path?query`, raw.
    target: String,
    auth: String,
    /// Names of all headers.
    headers: Vec<String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Seen {
    /// Every request, in order.
    requests: Vec<Got>,
    /// Answer this many requests with 429 and this Retry-After.
    limit: Option<(usize, u64)>,
}

type S = Arc<Mutex<Seen>>;

async fn handler(
    State(s): State<S>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let limited = {
        let mut st = s.lock().unwrap();
        st.requests.push(Got {
            method: method.to_string(),
            target: format!("{path}?{query}"),
            auth: auth.clone(),
            headers: headers.keys().map(|k| k.to_string()).collect(),
            body: body.to_vec(),
        });
        match st.limit {
            Some((n, secs)) if n > 0 => {
                st.limit = (n > 1).then_some((n - 1, secs));
                Some(secs)
            }
            _ => None,
        }
    };
    if let Some(secs) = limited {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response();
    }
    if path.starts_with("/o/app.git/") {
        return (StatusCode::OK, "git").into_response();
    }
    if auth != format!("Bearer {SECRET}") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    match path.as_str() {
        "/repos/o/app" => Json(json!({"full_name": "o/app", "default_branch": "main"})).into_response(),
        "/repos/o/private" => (
            StatusCode::NOT_FOUND,
            [("x-accepted-oauth-scopes", "repo"), ("x-oauth-scopes", "read:org, gist")],
            Json(json!({"message": "Not Found"})),
        )
            .into_response(),
        "/repos/o/app/issues" if query.contains("page=2") => {
            Json(json!([{"number": 3, "title": "three"}])).into_response()
        }
        "/repos/o/app/issues" => {
            let next = format!("<http://{}/repos/o/app/issues?page=2>; rel=\"next\"", headers["host"].to_str().unwrap());
            (
                [("link", next)],
                Json(json!([
                    {"number": 1, "title": "one", "body": "b"},
                    {"number": 2, "title": "a pull", "pull_request": {}},
                ])),
            )
                .into_response()
        }
        "/repos/o/app/commits/firepit%2Fissue-1/check-runs" => Json(json!({
            "total_count": 1,
            "check_runs": [{"name": "ci", "status": "completed", "conclusion": "success"}],
        }))
        .into_response(),
        "/repos/o/app/slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            "late".into_response()
        }
        "/repos/o/app/issues/1/comments" if method == Method::POST => {
            (StatusCode::CREATED, Json(json!({"id": 1}))).into_response()
        }
        "/repos/o/app/pulls" => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Validation Failed", "errors": [{"message": format!("token {SECRET} echoed")}]})),
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
    }
}

fn stand_in() -> (String, S) {
    let s = S::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let state = s.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(handler).with_state(state);
        let l = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(l, app).await.unwrap();
    });
    (url, s)
}

fn forge(url: &str, token: &str) -> Forge {
    Forge::new(ForgeConfig::new(url, Some(url), Token::new(token)).unwrap())
}

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

#[tokio::test]
async fn listings_follow_pages_and_leave_pull_requests_out() {
    let (url, _) = stand_in();
    let issues = forge(&url, SECRET)
        .open_issues(&repo("o/app"), Some("agent"), 10)
        .await
        .unwrap();
    let numbers: Vec<u64> = issues.iter().map(|i| i.number).collect();
    assert_eq!(numbers, [1, 3]);
}

#[tokio::test]
async fn check_runs_of_a_branch_are_read() {
    let (url, _) = stand_in();
    let runs = forge(&url, SECRET)
        .check_runs(&repo("o/app"), "firepit/issue-1")
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].name, "ci");
    assert_eq!(runs[0].conclusion.as_deref(), Some("success"));
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_or_reported() {
    let (url, s) = stand_in();
    s.lock().unwrap().limit = Some((1, 1));
    let r = forge(&url, SECRET).repo(&repo("o/app")).await.unwrap();
    assert_eq!(r.default_branch, "main");
    assert_eq!(
        s.lock().unwrap().requests.len(),
        2,
        "one limited, one retried"
    );

    s.lock().unwrap().limit = Some((1, 3600));
    let err = forge(&url, SECRET).repo(&repo("o/app")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::RateLimited {
                retry_after_secs: 3600,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("3600 s"), "{err}");
}

#[tokio::test]
async fn missing_scopes_bad_tokens_and_missing_repositories_say_so() {
    let (url, _) = stand_in();
    let err = forge(&url, SECRET)
        .repo(&repo("o/private"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::MissingScope { .. }), "{msg}");
    assert!(
        msg.contains("\"repo\"") && msg.contains("read:org, gist"),
        "{msg}"
    );

    let err = forge(&url, "ghp_wrong")
        .repo(&repo("o/app"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadToken), "{err}");
    assert!(!err.to_string().contains("ghp_wrong"));

    let err = forge(&url, SECRET)
        .repo(&repo("o/nothing"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("o/nothing"), "{err}");

    let none = Forge::new(ForgeConfig::new(&url, None, None).unwrap());
    assert!(matches!(
        none.repo(&repo("o/app")).await,
        Err(Error::NoToken)
    ));
}

#[tokio::test]
async fn the_token_is_redacted_from_what_the_forge_says() {
    let (url, _) = stand_in();
    let pull = firepit_forge::NewPull {
        title: "t".into(),
        head: "h".into(),
        base: "main".into(),
        body: String::new(),
    };
    let err = forge(&url, SECRET)
        .create_pull(&repo("o/app"), &pull)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Validation Failed") && msg.contains("[redacted]"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET), "{msg}");
    assert!(!format!("{err:?}").contains(SECRET));
}

#[tokio::test]
async fn the_broker_adds_the_token_and_passes_only_its_repositories() {
    let (url, s) = stand_in();
    let config = ForgeConfig::new(&url, Some(&url), Token::new(SECRET)).unwrap();
    let broker = Arc::new(Broker::new(config, vec![repo("o/app")]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(broker.serve(listener));
    let http = reqwest::Client::new();

    // The machine's own credentials are dropped; the daemon's are added.
    let resp = http
        .get(format!("http://{addr}/api/repos/o/app"))
        .header("authorization", "Bearer from-the-machine")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("\"full_name\":\"o/app\"")
    );
    let seen = s.lock().unwrap().requests.last().cloned().unwrap();
    assert_eq!(
        (seen.target.as_str(), seen.auth),
        ("/repos/o/app?", format!("Bearer {SECRET}"))
    );

    // Another repository never reaches the forge.
    let before = s.lock().unwrap().requests.len();
    for path in ["/api/repos/o/other", "/o/other.git/info/refs", "/api/user"] {
        let resp = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        assert!(resp.text().await.unwrap().contains("o/app"), "{path}");
    }
    assert_eq!(s.lock().unwrap().requests.len(), before);

    // Git goes to the web base with basic credentials.
    let _ = http
        .get(format!(
            "http://{addr}/o/app.git/info/refs?service=git-upload-pack"
        ))
        .send()
        .await
        .unwrap();
    let got = s.lock().unwrap().requests.last().cloned().unwrap();
    assert_eq!(got.target, "/o/app.git/info/refs?service=git-upload-pack");
    assert_eq!(got.auth, Token::new(SECRET).unwrap().basic_auth());
}

#[tokio::test]
async fn a_refused_token_is_a_403_the_machine_cannot_answer() {
    let (url, _) = stand_in();
    let config = ForgeConfig::new(&url, Some(&url), Token::new("ghp_revoked")).unwrap();
    let broker = Arc::new(Broker::new(config, vec![repo("o/app")]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(broker.serve(listener));
    let resp = reqwest::get(format!("http://{addr}/api/repos/o/app"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("www-authenticate").is_none());
    let text = resp.text().await.unwrap();
    assert!(!text.contains("ghp_revoked"), "{text}");
}

mod broker;
