//! The router: authentication, the OpenAPI document, and clear errors for bad
//! input, checked with `tower::ServiceExt::oneshot`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use firepit_daemon::api::{ROUTES, router};
use firepit_daemon::{App, Config, Store};
use firepit_machine::{
    Backend, Error as MachineError, GuestAddress, MachineId, MachineInfo, MachineSpec,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub(crate) const TOKEN: &str = "test-token";

/// A backend that records what it was asked and makes nothing.
#[derive(Default)]
struct Recording(Mutex<Vec<String>>);

impl Backend for Recording {
    fn create(&self, spec: &MachineSpec) -> Result<MachineInfo, MachineError> {
        self.0.lock().unwrap().push(format!(
            "create {} disk {:?}",
            spec.id.as_str(),
            spec.limits.disk_bytes
        ));
        Err(MachineError::Unsupported(
            "the recording backend makes no machines".into(),
        ))
    }
    fn start(&self, id: &MachineId) -> Result<MachineInfo, MachineError> {
        Err(MachineError::NotFound(id.as_str().into()))
    }
    fn stop(&self, id: &MachineId) -> Result<(), MachineError> {
        Err(MachineError::NotFound(id.as_str().into()))
    }
    fn destroy(&self, id: &MachineId) -> Result<(), MachineError> {
        self.0
            .lock()
            .unwrap()
            .push(format!("destroy {}", id.as_str()));
        Ok(())
    }
    fn inspect(&self, id: &MachineId) -> Result<MachineInfo, MachineError> {
        Err(MachineError::NotFound(id.as_str().into()))
    }
    fn recover(&self) -> Result<Vec<MachineInfo>, MachineError> {
        Ok(Vec::new())
    }
    fn guest_address(&self, id: &MachineId) -> Result<GuestAddress, MachineError> {
        Err(MachineError::NotFound(id.as_str().into()))
    }
    fn dial(
        &self,
        id: &MachineId,
        _: &[std::net::SocketAddr],
    ) -> Result<std::net::TcpStream, MachineError> {
        Err(MachineError::NotRunning(id.as_str().into()))
    }
    fn listen(
        &self,
        id: &MachineId,
        _: std::net::SocketAddr,
    ) -> Result<std::net::TcpListener, MachineError> {
        Err(MachineError::NotRunning(id.as_str().into()))
    }
}

pub(crate) struct Harness {
    pub(crate) app: App,
    backend: Arc<Recording>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    harness_with(|_| {})
}

/// A daemon's state (store in memory) with its data in `data`, on
/// `backend`, with `configure` applied to its settings.
pub(crate) fn app_on(
    data: &std::path::Path,
    backend: Arc<dyn Backend>,
    configure: impl FnOnce(&mut Config),
) -> App {
    let exe = std::env::current_exe().unwrap();
    let mut config = Config::new(data.to_owned(), exe.clone(), exe);
    configure(&mut config);
    std::fs::create_dir_all(&config.images_dir).unwrap();
    let images = firepit_image::ImageStore::open(&config.images_dir).unwrap();
    App::from_parts(
        config,
        Store::in_memory().unwrap(),
        images,
        backend,
        TOKEN.into(),
    )
}

/// A daemon's state on a recording backend, with `configure` applied to its settings.
pub(crate) fn harness_with(configure: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(Recording::default());
    let app = app_on(dir.path(), backend.clone(), configure);
    Harness {
        app,
        backend,
        _dir: dir,
    }
}

async fn call(
    app: &App,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let resp = router(app.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub(crate) fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_owned()
}

#[tokio::test]
async fn every_route_exists_and_needs_the_token() {
    let h = harness();
    for (method, path) in ROUTES {
        let uri = path.replace("{id}", "abc").replace("{name}", "main");
        let (status, body) = call(&h.app, method, &uri, None, None).await;
        if *path == "/v1/health" {
            assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            assert_eq!(error_code(&body), "unauthorized");
        }
        let (status, _) = call(&h.app, method, &uri, Some("wrong"), None).await;
        if *path != "/v1/health" {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with a wrong token"
            );
        }
    }
    let (status, _) = call(&h.app, "GET", "/v1/nothing-here", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn the_openapi_document_lists_exactly_the_routes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api/openapi.yaml");
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut documented = BTreeSet::new();
    for (p, item) in doc["paths"].as_mapping().expect("paths") {
        for (m, _) in item.as_mapping().expect("path item") {
            let m = m.as_str().unwrap();
            if m != "parameters" {
                documented.insert((m.to_uppercase(), p.as_str().unwrap().to_owned()));
            }
        }
    }
    let routed: BTreeSet<_> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, routed,
        "docs/api/openapi.yaml and api::ROUTES differ"
    );
}

#[tokio::test]
async fn health_answers_without_a_token() {
    let h = harness();
    let (status, body) = call(&h.app, "GET", "/v1/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"ok\":true"), "{body}");
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let h = harness();
    let t = Some(TOKEN);
    let (s, b) = call(&h.app, "GET", "/v1/sessions/nosuch", t, None).await;
    assert_eq!(
        (s, error_code(&b).as_str()),
        (StatusCode::NOT_FOUND, "session_not_found")
    );
    assert!(b.contains("firepit ls"), "the message says what to do: {b}");

    let (s, b) = call(&h.app, "GET", "/v1/sessions/..%2F..%2Fetc/ports", t, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    let (s, b) = call(&h.app, "POST", "/v1/sessions", t, Some("{not json")).await;
    assert_eq!(
        (s, error_code(&b).as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );

    let (s, b) = call(&h.app, "POST", "/v1/sessions", t, Some(r#"{"imag":"x"}"#)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.contains("unknown field"), "{b}");

    for (limits, says) in [
        (r#"{"limits":{"cpus":-1}}"#, "cpu limit"),
        (
            r#"{"limits":{"memory_bytes":5}}"#,
            "memory limit 5 bytes is too small",
        ),
        (
            r#"{"limits":{"disk_bytes":4096}}"#,
            "disk limit 4096 bytes is too small",
        ),
    ] {
        let (s, b) = call(&h.app, "POST", "/v1/sessions", t, Some(limits)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert!(b.contains(says), "{b}");
    }

    let (s, b) = call(
        &h.app,
        "POST",
        "/v1/sessions",
        t,
        Some(r#"{"image":"nope"}"#),
    )
    .await;
    assert_eq!(
        (s, error_code(&b).as_str()),
        (StatusCode::NOT_FOUND, "image_not_found"),
        "{b}"
    );
    assert!(
        b.contains("firepit image build"),
        "the message says what to do: {b}"
    );

    // None of this reached the backend or left a session behind.
    assert!(h.backend.0.lock().unwrap().is_empty());
    let (_, b) = call(&h.app, "GET", "/v1/sessions", t, None).await;
    assert_eq!(b, "[]");
}

/// Makes an image named `tiny` that exists as far as the image store can tell.
pub(crate) fn tiny_image(app: &App) {
    let images = &app.config().images_dir;
    let rootfs = images.join("tiny/rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let manifest = firepit_image::Manifest {
        name: "tiny".into(),
        recipe: "minimal".into(),
        variant: "minbase".into(),
        packages: Vec::new(),
        suite: "test".into(),
        mirror: "file:/nowhere".into(),
        arch: "amd64".into(),
        uid_base: 100_000,
        created: 0,
        size_bytes: 0,
        builder: "hand".into(),
        builder_version: "0".into(),
        versions: Default::default(),
        ..Default::default()
    };
    manifest.write(&images.join("tiny/image.json")).unwrap();
}

#[tokio::test]
async fn a_failed_create_leaves_no_session() {
    let h = harness();
    tiny_image(&h.app);
    let (s, b) = call(
        &h.app,
        "POST",
        "/v1/sessions",
        Some(TOKEN),
        Some(r#"{"image":"tiny"}"#),
    )
    .await;
    assert!(s.is_server_error(), "{s} {b}");
    assert!(b.contains("makes no machines"), "{b}");
    let calls = h.backend.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].starts_with("create "), "{calls:?}");
    let (_, b) = call(&h.app, "GET", "/v1/sessions", Some(TOKEN), None).await;
    assert_eq!(b, "[]", "the failed session is gone");
}

#[tokio::test]
async fn mcp_session_create_checks_name_and_labels_as_the_api_does() {
    use firepit_mcp::Host;
    let h = harness();
    tiny_image(&h.app);
    let host = firepit_daemon::mcp::DaemonHost::new(h.app.clone());
    let req = |name: Option<&str>, labels: &[(&str, &str)]| firepit_wire::api::CreateSession {
        image: Some("tiny".into()),
        name: name.map(Into::into),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    };
    for (bad, says) in [
        (req(Some(" "), &[]), "other than a space"),
        (req(Some(&"n".repeat(65)), &[]), "at most 64"),
        (req(None, &[("Team", "api")]), "label key"),
    ] {
        let e = host.create_session(bad).await.unwrap_err();
        assert_eq!(e.kind, firepit_mcp::HostErrorKind::BadRequest, "{e:?}");
        assert!(e.message.contains(says), "{e:?}");
    }
    assert!(
        h.backend.0.lock().unwrap().is_empty(),
        "a refused name or label made no machine"
    );
    // Good ones pass the checks and reach the backend (which makes no machines).
    let e = host
        .create_session(req(Some("api work"), &[("team", "api")]))
        .await
        .unwrap_err();
    assert!(e.message.contains("makes no machines"), "{e:?}");
    assert_eq!(h.backend.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_disk_limit_reaches_the_machine_with_the_daemons_default() {
    let h = harness();
    tiny_image(&h.app);
    for body in [
        r#"{"image":"tiny"}"#,
        r#"{"image":"tiny","limits":{"disk_bytes":67108864}}"#,
    ] {
        call(&h.app, "POST", "/v1/sessions", Some(TOKEN), Some(body)).await;
    }
    let calls = h.backend.0.lock().unwrap().clone();
    assert!(calls[0].ends_with(" disk Some(10737418240)"), "{calls:?}");
    assert!(calls[1].ends_with(" disk Some(67108864)"), "{calls:?}");

    // A daemon without a disk pool makes machines without disk limits, and
    // refuses a request for one.
    let h = harness_with(|c| {
        c.disk_pool = firepit_daemon::config::DiskPool::Off;
        c.default_limits.disk_bytes = None;
    });
    tiny_image(&h.app);
    call(
        &h.app,
        "POST",
        "/v1/sessions",
        Some(TOKEN),
        Some(r#"{"image":"tiny"}"#),
    )
    .await;
    let (s, b) = call(
        &h.app,
        "POST",
        "/v1/sessions",
        Some(TOKEN),
        Some(r#"{"image":"tiny","limits":{"disk_bytes":67108864}}"#),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.contains("without disk limits"), "{b}");
    let calls = h.backend.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].ends_with(" disk None"), "{calls:?}");
}

#[tokio::test]
async fn a_sessions_artifacts_are_bounded_and_the_first_refusal_is_logged() {
    use firepit_daemon::browsers::{MAX_ARTIFACT, MAX_ARTIFACT_BYTES, MAX_ARTIFACTS};
    use firepit_wire::events::EventKind;
    let h = harness();
    let session = |id: &str| firepit_wire::api::Session {
        id: id.into(),
        image: "tiny".into(),
        state: firepit_wire::api::SessionState::Running,
        limits: Default::default(),
        network: Default::default(),
        created_at: 0,
        error: None,
        stop_at: None,
        name: None,
        labels: Default::default(),
    };
    for id in ["big", "many"] {
        h.app.store().insert_session(&session(id)).unwrap();
    }
    let notes = |id: &str| {
        h.app
            .events()
            .list(id, 0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|e| matches!(&e.kind, EventKind::Note { text } if text.contains("not kept")))
            .count()
    };
    // Bytes: large screenshots until the session's share is used up.
    let big = vec![0u8; MAX_ARTIFACT];
    let fit = (MAX_ARTIFACT_BYTES / MAX_ARTIFACT as u64) as usize;
    for _ in 0..fit {
        h.app
            .save_artifact("big", "shot.png", "image/png", &big)
            .unwrap();
    }
    for _ in 0..2 {
        let err = h
            .app
            .save_artifact("big", "shot.png", "image/png", &big)
            .unwrap_err();
        assert!(
            matches!(err, firepit_daemon::Error::ArtifactsFull { .. }),
            "{err}"
        );
    }
    assert_eq!(notes("big"), 1, "one note for the refusals");
    // A small one still fits in what is left.
    h.app
        .save_artifact("big", "a.txt", "text/plain", b"ok")
        .unwrap();

    // Count: many small ones.
    for _ in 0..MAX_ARTIFACTS {
        h.app
            .save_artifact("many", "a.txt", "text/plain", b"x")
            .unwrap();
    }
    let err = h
        .app
        .save_artifact("many", "a.txt", "text/plain", b"x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 1000 artifacts"), "{err}");
    assert_eq!(notes("many"), 1);
    let kept = h
        .app
        .events()
        .list("many", 0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::Artifact { .. }))
        .count();
    assert_eq!(kept, MAX_ARTIFACTS);
}

#[tokio::test]
async fn an_upload_over_the_limit_is_refused_before_it_is_read() {
    let h = harness();
    let big = "x".repeat(600 << 20 >> 10); // 600 KiB, in a daemon whose limit is 512 MiB …
    let (s, _) = call(
        &h.app,
        "PUT",
        "/v1/sessions/abc/files?path=/root/a",
        Some(TOKEN),
        None,
    )
    .await;
    assert_ne!(
        s,
        StatusCode::PAYLOAD_TOO_LARGE,
        "an empty upload is not too large"
    );
    // … so the limit is checked by the declared length.
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/sessions/abc/files?path=/root/a")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-length", (1u64 << 40).to_string())
        .body(Body::from(big))
        .unwrap();
    let resp = router(h.app.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&bytes);
    assert_eq!(error_code(&body), "too_large");
    assert!(body.contains("upload limit"), "{body}");
}

#[tokio::test]
async fn the_login_url_becomes_a_cookie() {
    let h = harness();
    let send = |uri: &str, cookie: Option<&str>| {
        let mut req = Request::builder().uri(uri);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        router(h.app.clone()).oneshot(req.body(Body::empty()).unwrap())
    };
    let resp = send(&format!("/?token={TOKEN}"), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()["location"],
        "/",
        "the token leaves the address bar"
    );
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();

    let resp = send("/", Some(&pair)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The cookie opens the API too.
    let resp = send("/v1/sessions", Some(&pair)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    assert_eq!(
        send("/?token=wrong", None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Without the cookie the page still loads (it holds no secret and asks
    // the browser to sign in), but the API behind it does not answer.
    assert_eq!(send("/", None).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        send("/v1/sessions", None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let forged = format!("firepit_token=x{TOKEN}");
    assert_eq!(
        send("/v1/sessions", Some(&forged)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn get(app: &App, uri: &str, etag: Option<&str>) -> axum::response::Response {
    let mut req = Request::builder().uri(uri);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    router(app.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_web_ui_is_served_at_every_page_route_with_its_assets() {
    let h = harness();
    let index = firepit_ui::index();
    for uri in ["/", "/s/abc123", "/s/abc123/"] {
        let resp = get(&h.app, uri, None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(resp.headers()["content-type"], index.content_type, "{uri}");
        assert_eq!(resp.headers()["cache-control"], "no-cache", "{uri}");
        assert_eq!(resp.headers()["x-frame-options"], "DENY", "{uri}");
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], index.bytes, "{uri}");
        // Revalidation answers 304 while the UI is unchanged.
        let again = get(&h.app, uri, Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{uri}");
    }

    let asset = firepit_ui::assets()
        .iter()
        .find(|a| a.path.ends_with(".js"))
        .expect("a script");
    let resp = get(&h.app, asset.path, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], asset.content_type);
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], asset.bytes);

    // Missing files are 404s, not the page; unknown API paths answer JSON.
    for uri in ["/assets/gone-1234.js", "/favicon.ico"] {
        assert_eq!(
            get(&h.app, uri, None).await.status(),
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
    let resp = get(&h.app, "/v1/nothing-here", None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(error_code(&String::from_utf8_lossy(&body)), "not_found");

    // Only GET and HEAD reach the UI.
    let resp = router(h.app.clone())
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/s/abc")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

fn openapi() -> serde_yaml::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api/openapi.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_operation_lists_its_statuses_with_the_error_body() {
    let doc = openapi();
    let responses = &doc["components"]["responses"];
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        for (method, op) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if method == "parameters" {
                continue;
            }
            let listed = op["responses"].as_mapping().unwrap();
            // Only the git routes pass `git http-backend`'s own answers on.
            assert_eq!(
                listed.contains_key("default"),
                path.starts_with("/git/"),
                "{method} {path}: `default` hides undocumented statuses"
            );
            if path != "/v1/health" {
                assert!(
                    listed.contains_key("401"),
                    "{method} {path} needs the token, so it answers 401"
                );
            }
            for (status, resp) in listed {
                let status = status.as_str().unwrap();
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let name = resp["$ref"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/components/responses/"))
                    .unwrap_or_else(|| panic!("{method} {path} {status}: not a shared response"));
                let body = &responses[name]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    body.as_str(),
                    Some("#/components/schemas/ErrorBody"),
                    "{method} {path} {status}: errors answer an ErrorBody"
                );
            }
        }
    }
}

#[test]
fn request_bodies_refuse_unknown_fields_as_the_document_says() {
    let doc = openapi();
    let schemas = doc["components"]["schemas"].as_mapping().unwrap();
    for name in [
        "CreateSession",
        "UpdateSession",
        "Limits",
        "ExecRequest",
        "MkdirRequest",
        "RenameRequest",
        "ServiceSpec",
        "CreateShare",
        "AgentMessage",
        "CreateTriage",
        "ClosedLoopChange",
        "CreateCheckpoint",
        "ForkSession",
        "SaveImage",
    ] {
        let schema = &schemas[name];
        assert_eq!(
            schema["additionalProperties"].as_bool(),
            Some(false),
            "{name}"
        );
    }
}

/// A session in the store, without a machine (the recording backend makes none).
fn stored_session(h: &Harness, id: &str) {
    h.app
        .store()
        .insert_session(&firepit_wire::api::Session {
            id: id.into(),
            image: "minimal".into(),
            state: firepit_wire::api::SessionState::Running,
            limits: Default::default(),
            network: Default::default(),
            created_at: 0,
            error: None,
            stop_at: None,
            name: None,
            labels: Default::default(),
        })
        .unwrap();
}

#[tokio::test]
async fn websocket_routes_answer_a_plain_request_with_426_in_the_error_shape() {
    let h = harness();
    stored_session(&h, "abc");
    let req = Request::builder()
        .uri("/v1/sessions/abc/events/ws")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let resp = router(h.app.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(resp.headers()["upgrade"], "websocket");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        error_code(&String::from_utf8_lossy(&bytes)),
        "websocket_required"
    );
    // The request is checked first: an unknown session is 404, a bad query 400.
    let (s, _) = call(
        &h.app,
        "GET",
        "/v1/sessions/nope/events/ws",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = call(
        &h.app,
        "GET",
        "/v1/sessions/abc/events/ws?since=x",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (s, error_code(&b).as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
}

#[tokio::test]
async fn what_the_document_forbids_is_400_and_what_it_allows_is_not() {
    let h = harness();
    stored_session(&h, "abc");
    let t = Some(TOKEN);
    let bad: &[(&str, &str, Option<&str>)] = &[
        // The image name is checked before the store looks (it was a 500).
        ("POST", "/v1/sessions", Some(r#"{"image":"../x"}"#)),
        ("POST", "/v1/sessions", Some(r#"{"limits":[null,null]}"#)),
        ("POST", "/v1/sessions", Some(r#"[]"#)),
        ("POST", "/v1/sessions", Some(r#"{"limits":{"cpus":0.001}}"#)),
        (
            "POST",
            "/v1/sessions",
            Some(r#"{"limits":{"pids":4194305}}"#),
        ),
        ("POST", "/v1/sessions", Some(r#"{"repo":"o/r.git"}"#)),
        (
            "POST",
            "/v1/sessions",
            Some(r#"{"repo":"o/r","branch":"-x"}"#),
        ),
        ("POST", "/v1/sessions", Some(r#"{"branch":"main"}"#)),
        (
            "POST",
            "/v1/sessions/abc/exec",
            Some(r#"{"command":{"argv":[""]}}"#),
        ),
        (
            "POST",
            "/v1/sessions/abc/exec",
            Some(r#"{"command":{"shell":"x"},"timeout_ms":0}"#),
        ),
        (
            "POST",
            "/v1/sessions/abc/exec",
            Some(r#"{"command":{"shell":"x"},"env":[["A=B","c"]]}"#),
        ),
        (
            "POST",
            "/v1/sessions/abc/exec",
            Some(r#"{"command":{"shell":"x"},"cwd":"tmp"}"#),
        ),
        (
            "POST",
            "/v1/sessions/abc/services",
            Some(r#"{"name":"a/b","command":{"shell":"x"}}"#),
        ),
        (
            "POST",
            "/v1/sessions/abc/services",
            Some(r#"{"name":"a","command":{"shell":"x"},"x":1}"#),
        ),
        (
            "POST",
            "/v1/sessions/abc/shares",
            Some(r#"{"port":80,"ttl":1}"#),
        ),
        (
            "POST",
            "/v1/sessions/abc/agent",
            Some(r#"{"message":" \n\t"}"#),
        ),
        (
            "PUT",
            "/v1/sessions/abc/closed-loop",
            Some(r#"{"wake_agent":true,"x":1}"#),
        ),
        ("PUT", "/v1/sessions/abc/files?path=/", None),
        ("PUT", "/v1/sessions/abc/files?path=/a&mode=7", None),
        ("GET", "/v1/sessions/abc/files?path=/a/../b", None),
        ("GET", "/v1/sessions/abc/files?path=/a&x=1", None),
        ("GET", "/v1/sessions/abc/events?limit=0", None),
        ("GET", "/v1/sessions/abc/files/search?path=/root&q=", None),
        (
            "GET",
            "/v1/sessions/abc/files/search?path=/root&q=a%0Ab",
            None,
        ),
        ("GET", "/v1/sessions/abc/files/search?path=/root", None),
        ("GET", "/v1/sessions/abc/files/search?path=root&q=x", None),
        ("GET", "/v1/sessions/abc/files/archive?path=/a/../b", None),
        ("GET", "/v1/sessions/abc/changes?path=tmp", None),
        (
            "GET",
            "/v1/sessions/abc/changes?path=/tmp&since=yesterday",
            None,
        ),
        ("GET", "/v1/sessions/abc/changes?path=/tmp&since=", None),
        ("GET", "/v1/preview-auth?next=ftp://x", None),
        ("POST", "/v1/triage", Some(r#"{"repo":"o/r","label":" "}"#)),
    ];
    for (method, uri, body) in bad {
        let (s, b) = call(&h.app, method, uri, t, *body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {uri} {body:?}: {b}");
        assert_eq!(error_code(&b), "bad_request", "{b}");
    }
    // Integers may be spelled 2.0, as JSON Schema's `integer` allows.
    let (s, b) = call(
        &h.app,
        "POST",
        "/v1/sessions/abc/shares",
        t,
        Some(r#"{"port":8000.0,"ttl_seconds":60.0}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // A well-formed URL of another host is no preview here: 404, not 400.
    let (s, b) = call(
        &h.app,
        "GET",
        "/v1/preview-auth?next=http://example.com/",
        t,
        None,
    )
    .await;
    assert_eq!(
        (s, error_code(&b).as_str()),
        (StatusCode::NOT_FOUND, "preview_not_found"),
        "{b}"
    );
    // Both baselines the document names pass the check (this session has
    // no machine to answer from).
    for since in ["start", "checkpoint"] {
        let uri = format!("/v1/sessions/abc/changes?path=/tmp&since={since}");
        let (s, b) = call(&h.app, "GET", &uri, t, None).await;
        assert_ne!(s, StatusCode::BAD_REQUEST, "{uri}: {b}");
    }
    // Valid but unanswerable without a model: 409, not 400.
    let (s, b) = call(
        &h.app,
        "POST",
        "/v1/sessions/abc/agent",
        t,
        Some(r#"{"message":"hi"}"#),
    )
    .await;
    assert_eq!(
        (s, error_code(&b).as_str()),
        (StatusCode::CONFLICT, "no_model"),
        "{b}"
    );
    // Nothing reached the backend.
    assert!(h.backend.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_session_list_pages_through_every_session_once() {
    let h = harness();
    let mut want = Vec::new();
    for i in 0..7 {
        let s = firepit_wire::api::Session {
            id: format!("page-{i}"),
            image: "minimal".into(),
            state: firepit_wire::api::SessionState::Stopped,
            limits: Default::default(),
            network: firepit_wire::api::NetworkMode::None,
            // Two per second: ties are ordered by id.
            created_at: 1_700_000_000 + i / 2,
            error: None,
            stop_at: None,
            name: None,
            labels: Default::default(),
        };
        h.app.store().insert_session(&s).unwrap();
        want.push(s.id);
    }
    let page = |uri: String| {
        let app = h.app.clone();
        async move {
            let req = Request::builder()
                .uri(uri)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap();
            let resp = router(app).oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let next = resp
                .headers()
                .get("firepit-next-cursor")
                .map(|v| v.to_str().unwrap().to_owned());
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let ids: Vec<String> =
                serde_json::from_slice::<Vec<firepit_wire::api::Session>>(&bytes)
                    .unwrap()
                    .into_iter()
                    .map(|s| s.id)
                    .collect();
            (ids, next)
        }
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/v1/sessions?limit=3&cursor={c}"),
            None => "/v1/sessions?limit=3".into(),
        };
        let (ids, next) = page(uri).await;
        assert!(ids.len() <= 3);
        seen.extend(ids);
        pages += 1;
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
        // A session destroyed between pages moves no other.
        if pages == 1 {
            h.app.store().delete_session("page-4").unwrap();
        }
    }
    want.retain(|id| id != "page-4");
    assert_eq!(seen, want);
    assert_eq!(pages, 2, "7 less 1 in pages of 3, the last one says so");
    // Without parameters: all; with a cursor alone: all after it.
    assert_eq!(page("/v1/sessions".into()).await, (want.clone(), None));
    // The cursor of the one destroyed: those after its place.
    let (after, next) = page(format!("/v1/sessions?cursor={}.page-4", 1_700_000_002)).await;
    assert_eq!((after, next), (want[4..].to_vec(), None));
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=x",
        "cursor=1.A",
        "limit=1&cursor=1",
        "limit=1&page=2",
    ] {
        let (s, body) = call(
            &h.app,
            "GET",
            &format!("/v1/sessions?{bad}"),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(error_code(&body), "bad_request");
    }
}

#[tokio::test]
async fn checkpoint_routes_check_their_input_and_say_what_the_backend_cannot() {
    let h = harness();
    stored_session(&h, "abc");
    let t = Some(TOKEN);
    let code = |r: (StatusCode, String)| (r.0, error_code(&r.1));
    let expect = |s: StatusCode, c: &str| (s, c.to_owned());
    // Unknown sessions, and ids no session could have.
    for uri in [
        "/v1/sessions/nosuch/checkpoints",
        "/v1/sessions/No.Such/checkpoints",
    ] {
        assert_eq!(
            code(call(&h.app, "POST", uri, t, Some("{}")).await),
            expect(StatusCode::NOT_FOUND, "session_not_found"),
            "{uri}"
        );
        assert_eq!(
            code(call(&h.app, "GET", uri, t, None).await),
            expect(StatusCode::NOT_FOUND, "session_not_found"),
        );
    }
    // Malformed checkpoint ids and names.
    for uri in [
        "/v1/sessions/abc/checkpoints/-x/restore",
        "/v1/sessions/abc/checkpoints/A/restore",
    ] {
        assert_eq!(
            code(call(&h.app, "POST", uri, t, None).await),
            expect(StatusCode::BAD_REQUEST, "bad_request"),
            "{uri}"
        );
    }
    let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(201));
    for body in [&long, r#"{"name":"a\nb"}"#, r#"{"nam":"x"}"#] {
        assert_eq!(
            code(
                call(
                    &h.app,
                    "POST",
                    "/v1/sessions/abc/checkpoints",
                    t,
                    Some(body)
                )
                .await
            ),
            expect(StatusCode::BAD_REQUEST, "bad_request"),
            "{body}"
        );
    }
    assert_eq!(
        code(
            call(
                &h.app,
                "POST",
                "/v1/sessions/abc/fork",
                t,
                Some(r#"{"from":"../x"}"#)
            )
            .await
        ),
        expect(StatusCode::BAD_REQUEST, "bad_request"),
    );
    // A backend without checkpoints: a conflict that says so, and nothing
    // reached the machine.
    let before = h.backend.0.lock().unwrap().len();
    let (s, b) = call(
        &h.app,
        "POST",
        "/v1/sessions/abc/checkpoints",
        t,
        Some(r#"{"name":"é"}"#),
    )
    .await;
    assert_eq!(
        (s, error_code(&b).as_str()),
        (StatusCode::CONFLICT, "unsupported")
    );
    assert!(b.contains("checkpoints"), "{b}");
    assert_eq!(h.backend.0.lock().unwrap().len(), before);
    let (s, b) = call(&h.app, "GET", "/v1/sessions/abc/checkpoints", t, None).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));
    let (s, b) = call(
        &h.app,
        "POST",
        "/v1/sessions/abc/checkpoints/cp-1/restore",
        t,
        None,
    )
    .await;
    assert_eq!(
        (s, error_code(&b).as_str()),
        (StatusCode::NOT_FOUND, "checkpoint_not_found")
    );
    assert_eq!(
        h.app.store().session("abc").unwrap().state,
        firepit_wire::api::SessionState::Running,
        "a refused restore leaves the session as it was"
    );
}

#[tokio::test]
async fn names_and_labels_are_checked_changed_and_filtered() {
    let h = harness();
    // Bad names and labels are refused before any machine is asked for.
    for body in [
        r#"{"name":""}"#,
        r#"{"name":"   "}"#,
        r#"{"name":"a\nb"}"#,
        r#"{"labels":{"Team":"x"}}"#,
        r#"{"labels":{"team":"a\u0007"}}"#,
        r#"{"labels":{"team":1}}"#,
    ] {
        let (status, resp) = call(&h.app, "POST", "/v1/sessions", Some(TOKEN), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {resp}");
    }
    let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(65));
    let (status, resp) = call(&h.app, "POST", "/v1/sessions", Some(TOKEN), Some(&long)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(resp.contains("at most 64 characters"), "{resp}");
    assert!(
        h.backend.0.lock().unwrap().is_empty(),
        "no machine was asked for"
    );

    stored_session(&h, "aaa");
    stored_session(&h, "bbb");
    let (status, resp) = call(
        &h.app,
        "PATCH",
        "/v1/sessions/aaa",
        Some(TOKEN),
        Some(r#"{"name":" web app ","labels":{"team":"web","ticket.no":"42"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let s: firepit_wire::api::Session = serde_json::from_str(&resp).unwrap();
    assert_eq!(s.name.as_deref(), Some("web app"), "kept trimmed");
    assert_eq!(s.labels["ticket.no"], "42");
    // Renaming keeps the labels.
    let (_, resp) = call(
        &h.app,
        "PATCH",
        "/v1/sessions/aaa",
        Some(TOKEN),
        Some(r#"{"name":"shop"}"#),
    )
    .await;
    let s: firepit_wire::api::Session = serde_json::from_str(&resp).unwrap();
    assert_eq!((s.name.as_deref(), s.labels.len()), (Some("shop"), 2));
    let (status, resp) = call(
        &h.app,
        "GET",
        "/v1/sessions?label=team%3Dweb",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let found: Vec<firepit_wire::api::Session> = serde_json::from_str(&resp).unwrap();
    assert_eq!(
        found.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["aaa"]
    );
    let (_, resp) = call(
        &h.app,
        "GET",
        "/v1/sessions?label=team%3Dweb&limit=1",
        Some(TOKEN),
        None,
    )
    .await;
    assert!(resp.contains("\"aaa\""), "{resp}");
    let (_, resp) = call(
        &h.app,
        "GET",
        "/v1/sessions?label=team%3Ddb",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(resp, "[]");
    for bad in ["/v1/sessions?label=team", "/v1/sessions?label=Team%3Dx"] {
        let (status, _) = call(&h.app, "GET", bad, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    for body in [
        r#"{"name":"  "}"#,
        r#"{"labels":{"":"x"}}"#,
        r#"{"nme":"x"}"#,
    ] {
        let (status, resp) =
            call(&h.app, "PATCH", "/v1/sessions/aaa", Some(TOKEN), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {resp}");
    }
    // "" takes the name away; empty labels take them all.
    let (_, resp) = call(
        &h.app,
        "PATCH",
        "/v1/sessions/aaa",
        Some(TOKEN),
        Some(r#"{"name":"","labels":{}}"#),
    )
    .await;
    let s: firepit_wire::api::Session = serde_json::from_str(&resp).unwrap();
    assert_eq!((s.name, s.labels.len()), (None, 0));
    let (status, _) = call(
        &h.app,
        "PATCH",
        "/v1/sessions/nope",
        Some(TOKEN),
        Some(r#"{"name":"x"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_host_says_what_it_has_and_more_memory_is_refused() {
    let h = harness();
    let (status, resp) = call(&h.app, "GET", "/v1/host", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let host: firepit_wire::api::HostInfo = serde_json::from_str(&resp).unwrap();
    assert!(host.memory_bytes > 0 && host.cpus > 0);
    assert_eq!(host.default_image, h.app.config().default_image);
    assert!(!host.forge, "no forge token in the tests");
    let body = format!(
        r#"{{"limits":{{"memory_bytes":{}}}}}"#,
        host.memory_bytes + (1 << 30)
    );
    let (status, resp) = call(&h.app, "POST", "/v1/sessions", Some(TOKEN), Some(&body)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{resp}");
    assert_eq!(error_code(&resp), "more_than_host");
    assert!(resp.contains("more than this host has"), "{resp}");
    assert!(
        h.backend.0.lock().unwrap().is_empty(),
        "no machine was asked for"
    );
}

#[tokio::test]
async fn usage_of_a_session_without_a_machine_reads_as_not_running() {
    let h = harness();
    stored_session(&h, "aaa");
    let (status, resp) = call(&h.app, "GET", "/v1/sessions/aaa/usage", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let u: firepit_wire::api::Usage = serde_json::from_str(&resp).unwrap();
    assert!(!u.running && u.memory_bytes.is_none() && u.time_ms > 0);
    let (status, _) = call(&h.app, "GET", "/v1/sessions/nope/usage", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn usage_of_many_sessions_reads_in_one_request() {
    let h = harness();
    stored_session(&h, "aaa");
    stored_session(&h, "bbb");
    // Known ids (one twice), one that names no session, one no id at all.
    let (status, resp) = call(
        &h.app,
        "GET",
        "/v1/usage?ids=aaa,bbb,nope,aaa,..%2Fx",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let l: firepit_wire::api::UsageList = serde_json::from_str(&resp).unwrap();
    assert_eq!(l.usage.keys().collect::<Vec<_>>(), ["aaa", "bbb"], "{resp}");
    assert!(l.usage.values().all(|u| !u.running && u.time_ms > 0));
    assert_eq!(l.unknown, ["../x", "nope"]);
    assert!(l.errors.is_empty(), "{resp}");
    // Nothing asked, nothing answered.
    let (status, resp) = call(&h.app, "GET", "/v1/usage?ids=", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp, r#"{"usage":{}}"#);
    // Bounded: 100 ids are read, 101 refused with the limit named, even when
    // repeats or empty ones make them fewer (they count as written, as the
    // document's pattern counts them).
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (status, resp) = call(
        &h.app,
        "GET",
        &format!("/v1/usage?ids={}", many(100)),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let l: firepit_wire::api::UsageList = serde_json::from_str(&resp).unwrap();
    assert_eq!(l.unknown.len(), 100);
    let (status, resp) = call(
        &h.app,
        "GET",
        &format!("/v1/usage?ids={}", many(101)),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert!(resp.contains("at most 100"), "{resp}");
    let (status, resp) = call(
        &h.app,
        "GET",
        &format!("/v1/usage?ids={}", ["aaa"; 101].join(",")),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    // `ids` is needed, and so is the token.
    let (status, _) = call(&h.app, "GET", "/v1/usage", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&h.app, "GET", "/v1/usage?ids=aaa", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_share_lands_on_its_path() {
    let h = harness();
    stored_session(&h, "aaa");
    let (status, resp) = call(
        &h.app,
        "POST",
        "/v1/sessions/aaa/shares",
        Some(TOKEN),
        Some(r#"{"port":8000,"ttl_seconds":600,"path":"/docs?x=1"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{resp}");
    let share: firepit_wire::api::Share = serde_json::from_str(&resp).unwrap();
    assert_eq!(share.path, "/docs?x=1");
    assert_eq!(share.expires_at - share.created_at, 600);
    assert!(
        share.url.ends_with("&next=%2Fdocs%3Fx%3D1"),
        "{}",
        share.url
    );
    let (_, resp) = call(&h.app, "GET", "/v1/sessions/aaa/shares", Some(TOKEN), None).await;
    let listed: Vec<firepit_wire::api::Share> = serde_json::from_str(&resp).unwrap();
    assert_eq!(listed[0].path, "/docs?x=1");
    for path in ["docs", "//evil.example/", "/\\\\evil"] {
        let body = format!(r#"{{"port":8000,"path":"{path}"}}"#);
        let (status, resp) = call(
            &h.app,
            "POST",
            "/v1/sessions/aaa/shares",
            Some(TOKEN),
            Some(&body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {resp}");
    }
}

#[tokio::test]
async fn a_signed_out_browser_gets_the_sign_in_page_and_goes_on_to_the_preview() {
    let h = harness();
    let next = "http://8000-aaa.localhost:7777/two.html";
    let uri = format!("/v1/preview-auth?next={}", urlencode(next));
    let send = |uri: String, accept: &'static str| {
        let req = Request::builder()
            .uri(uri)
            .header("accept", accept)
            .body(Body::empty())
            .unwrap();
        router(h.app.clone()).oneshot(req)
    };
    let resp = send(uri.clone(), "text/html,application/xhtml+xml,*/*;q=0.8")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(body.contains("Sign in to firepit"), "{body}");
    assert!(
        body.contains(r#"name="next" value="http://8000-aaa.localhost:7777/two.html""#),
        "{body}"
    );
    // API clients keep the JSON error.
    let resp = send(uri, "*/*").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(error_code(&body), "unauthorized");
    // A `next` that is no preview of this firepit is not carried.
    let resp = send(
        format!(
            "/v1/preview-auth?next={}",
            urlencode("http://evil.example/")
        ),
        "text/html",
    )
    .await
    .unwrap();
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(!body.contains("evil.example"), "{body}");
    // The form's login goes on to the preview handshake; elsewhere, home.
    let resp = send(
        format!("/?token={TOKEN}&next={}", urlencode(next)),
        "text/html",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()["location"],
        format!("/v1/preview-auth?next={}", urlencode(next)).as_str()
    );
    let resp = send(
        format!("/?token={TOKEN}&next={}", urlencode("http://evil.example/")),
        "text/html",
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["location"], "/");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
