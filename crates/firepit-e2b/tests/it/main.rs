//! The E2B door's router against a stand-in daemon (a `Host` with sessions in
//! memory and no machines): the control plane's lifecycle, auth and errors in
//! E2B's shapes, and envd's checks before anything reaches a guest. The SDK
//! against real machines is tested in `crates/firepit/tests/it/e2b.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use firepit_e2b::{E2b, Error, Host, HostErrorKind, SessionView};
use firepit_guest_client::GuestClient;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "tok3n";

struct Fake {
    dir: tempfile::TempDir,
    sessions: Mutex<HashMap<String, SessionView>>,
    next: Mutex<u32>,
}

fn missing(id: &str) -> Error {
    Error::Host {
        kind: HostErrorKind::NotFound,
        message: format!("no session {id}"),
    }
}

impl Host for Fake {
    fn token(&self) -> &str {
        TOKEN
    }
    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("e2b")
    }
    fn max_upload_bytes(&self) -> u64 {
        1 << 20
    }
    fn sandbox_domain(&self, _: &HeaderMap) -> String {
        "localhost:7777".into()
    }
    fn create(
        &self,
        image: Option<String>,
        timeout_secs: u64,
    ) -> BoxFuture<'_, Result<SessionView, Error>> {
        Box::pin(async move {
            if image.as_deref() == Some("nope") {
                return Err(missing("image nope"));
            }
            let mut n = self.next.lock().unwrap();
            *n += 1;
            let v = SessionView {
                id: format!("s{n}"),
                image: image.unwrap_or_else(|| "minimal".into()),
                running: true,
                created_at: i64::from(*n),
                cpus: None,
                memory_bytes: Some(1 << 30),
                disk_bytes: None,
                stop_at: Some(1_000 + timeout_secs as i64),
            };
            self.sessions
                .lock()
                .unwrap()
                .insert(v.id.clone(), v.clone());
            Ok(v)
        })
    }
    fn set_stop_at(&self, id: &str, stop_at: Option<i64>) -> Result<(), Error> {
        let mut s = self.sessions.lock().unwrap();
        s.get_mut(id).ok_or_else(|| missing(id))?.stop_at = stop_at;
        Ok(())
    }
    fn session(&self, id: &str) -> Result<SessionView, Error> {
        self.sessions
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| missing(id))
    }
    fn sessions(&self) -> Result<Vec<SessionView>, Error> {
        Ok(self.sessions.lock().unwrap().values().cloned().collect())
    }
    fn stop<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut s = self.sessions.lock().unwrap();
            let v = s.get_mut(id).ok_or_else(|| missing(id))?;
            v.running = false;
            v.stop_at = None;
            Ok(())
        })
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut s = self.sessions.lock().unwrap();
            s.get_mut(id).ok_or_else(|| missing(id))?.running = true;
            Ok(())
        })
    }
    fn destroy<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.sessions
                .lock()
                .unwrap()
                .remove(id)
                .map(drop)
                .ok_or_else(|| missing(id))
        })
    }
    fn guest<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<GuestClient, Error>> {
        Box::pin(async move {
            Err(Error::Host {
                kind: HostErrorKind::NotRunning,
                message: format!("session {id} has no machine here"),
            })
        })
    }
}

fn router() -> axum::Router {
    let host = Arc::new(Fake {
        dir: tempfile::tempdir().unwrap(),
        sessions: Mutex::default(),
        next: Mutex::new(0),
    });
    firepit_e2b::router(E2b::open(host).unwrap())
}

async fn send(r: &axum::Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = r.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (parts.status, parts.headers, body)
}

async fn api(
    r: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", TOKEN)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let (status, _, body) = send(r, req).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_control_plane_maps_onto_sessions() {
    let r = router();
    let (status, made) = api(
        &r,
        "POST",
        "/v2/sandboxes",
        Some(json!({"templateID": "base", "timeout": 60, "metadata": {"team": "a b"}, "envVars": {"X": "1"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["sandboxID"].as_str().unwrap().to_owned();
    assert_eq!(made["envdVersion"], firepit_e2b::ENVD_VERSION);
    assert_eq!(made["domain"], "localhost:7777");
    assert_eq!(made["envdAccessToken"].as_str().unwrap().len(), 64);
    // Metadata filters as the SDK encodes them; states.
    let (_, all) = api(&r, "GET", "/v2/sandboxes?metadata=team%3Da%2520b", None).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    let (_, none) = api(&r, "GET", "/v2/sandboxes?metadata=team%3Dc", None).await;
    assert_eq!(none, json!([]));
    assert_eq!(
        api(&r, "POST", &format!("/sandboxes/{id}/pause"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api(&r, "POST", &format!("/sandboxes/{id}/pause"), None)
            .await
            .0,
        StatusCode::CONFLICT
    );
    let (_, running) = api(&r, "GET", "/sandboxes", None).await;
    assert_eq!(running, json!([]), "v1 lists running sandboxes");
    let (_, paused) = api(&r, "GET", "/v2/sandboxes?state=paused", None).await;
    assert_eq!(paused[0]["state"], "paused");
    let (status, again) = api(
        &r,
        "POST",
        &format!("/v2/sandboxes/{id}/connect"),
        Some(json!({"timeout": 30})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(
        again["envdAccessToken"], made["envdAccessToken"],
        "the token is kept"
    );
    let (status, _) = api(
        &r,
        "POST",
        &format!("/sandboxes/{id}/connect"),
        Some(json!({"timeout": 30})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api(
        &r,
        "POST",
        &format!("/sandboxes/{id}/timeout"),
        Some(json!({"timeout": -1})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = api(&r, "GET", &format!("/sandboxes/{id}/metrics"), None).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::NOT_IMPLEMENTED, &json!(501))
    );
    assert_eq!(
        api(&r, "DELETE", &format!("/sandboxes/{id}"), None).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = api(&r, "GET", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::NOT_FOUND, &json!(404)),
        "{body}"
    );
    let (status, _) = api(
        &r,
        "POST",
        "/sandboxes",
        Some(json!({"templateID": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keys_and_tokens_are_checked_first() {
    let r = router();
    for key in [None, Some("wrong"), Some("tok3")] {
        let mut req = Request::builder().uri("/v2/sandboxes");
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let (status, _, body) = send(&r, req.body(Body::empty()).unwrap()).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, &body["code"]),
            (StatusCode::UNAUTHORIZED, &json!(401))
        );
    }
    let hex = firepit_e2b::api_key(TOKEN);
    let req = Request::builder()
        .uri("/v2/sandboxes")
        .header("x-api-key", hex)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&r, req).await.0, StatusCode::OK);

    let (_, made) = api(&r, "POST", "/sandboxes", Some(json!({}))).await;
    let id = made["sandboxID"].as_str().unwrap();
    let token = made["envdAccessToken"].as_str().unwrap();
    let rpc = |token: &str, sandbox: &str| {
        Request::builder()
            .method("POST")
            .uri("/process.Process/List")
            .header("content-type", "application/json")
            .header("e2b-sandbox-id", sandbox)
            .header("x-access-token", token)
            .body(Body::from("{}"))
            .unwrap()
    };
    // A wrong token, another sandbox, a bad id: refused in Connect's shape.
    for (t, s, code) in [
        ("wrong", id, "unauthenticated"),
        (token, "s999", "not_found"),
        (token, "../etc", "not_found"),
    ] {
        let (status, _, body) = send(&r, rpc(t, s)).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], code, "{status} {body}");
    }
    // With its token, it answers (no processes yet).
    let (status, _, body) = send(&r, rpc(token, id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"processes": []})
    );
    // A stream to a sandbox without a machine ends with `unavailable`, as a
    // Connect stream: 200, the end envelope carrying the error.
    let mut env = vec![0u8];
    let msg = br#"{"process":{"cmd":"true"}}"#;
    env.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    env.extend_from_slice(msg);
    let req = Request::builder()
        .method("POST")
        .uri("/process.Process/Start")
        .header("content-type", "application/connect+json")
        .header("e2b-sandbox-id", id)
        .header("x-access-token", token)
        .body(Body::from(env))
        .unwrap();
    let (status, headers, body) = send(&r, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/connect+json");
    assert_eq!(body[0], 2, "an end-of-stream envelope");
    let end: Value = serde_json::from_slice(&body[5..]).unwrap();
    assert_eq!(end["error"]["code"], "unavailable", "{end}");
    assert!(
        end["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was not found")
    );
    // /health: 502 "was not found" once the sandbox is paused.
    api(&r, "POST", &format!("/sandboxes/{id}/pause"), None).await;
    let req = Request::builder()
        .uri("/health")
        .header("e2b-sandbox-id", id)
        .header("x-access-token", token)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&r, req).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).contains("was not found"));
}

#[tokio::test]
async fn the_timeout_kills_what_asked_to_be_killed() {
    let host = Arc::new(Fake {
        dir: tempfile::tempdir().unwrap(),
        sessions: Mutex::default(),
        next: Mutex::new(0),
    });
    let e2b = E2b::open(host.clone()).unwrap();
    let r = firepit_e2b::router(e2b.clone());
    let mut ids = Vec::new();
    for body in [
        json!({"templateID": "base", "autoPause": false}),
        json!({"templateID": "base", "autoPause": true}),
        json!({"templateID": "base"}),
    ] {
        let (status, made) = api(&r, "POST", "/v2/sandboxes", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        ids.push(made["sandboxID"].as_str().unwrap().to_owned());
    }
    let lifecycle = |v: Value| v["lifecycle"]["onTimeout"].as_str().unwrap().to_owned();
    let mut kinds = Vec::new();
    for id in &ids {
        let (_, v) = api(&r, "GET", &format!("/sandboxes/{id}"), None).await;
        kinds.push(lifecycle(v));
    }
    assert_eq!(kinds, ["kill", "pause", "pause"]);
    assert!(e2b.kills_at_timeout(&ids[0]));
    assert!(!e2b.kills_at_timeout(&ids[1]) && !e2b.kills_at_timeout(&ids[2]));
    assert!(!e2b.kills_at_timeout("not-a-sandbox"));
    // What the daemon does at the deadline: the session and its state go.
    e2b.kill(&ids[0]).await.unwrap();
    assert!(host.session(&ids[0]).is_err());
    assert!(!e2b.kills_at_timeout(&ids[0]));
    let (status, _) = api(&r, "GET", &format!("/sandboxes/{}", ids[0]), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Resuming can set it too (`ResumedSandbox.autoPause`).
    api(&r, "POST", &format!("/sandboxes/{}/pause", ids[1]), None).await;
    let (status, _) = api(
        &r,
        "POST",
        &format!("/sandboxes/{}/resume", ids[1]),
        Some(json!({"autoPause": false})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(e2b.kills_at_timeout(&ids[1]));
    // Resume on traffic is refused, saying so.
    let (status, body) = api(
        &r,
        "POST",
        "/v2/sandboxes",
        Some(json!({"autoPause": true, "autoResume": {"enabled": true}})),
    )
    .await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("autoResume"),
        "{body}"
    );
}
