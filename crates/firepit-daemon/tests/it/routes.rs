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
        self.0
            .lock()
            .unwrap()
            .push(format!("create {}", spec.id.as_str()));
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

/// A daemon's state on a recording backend, with `configure` applied to its settings.
pub(crate) fn harness_with(configure: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut config = Config::new(dir.path().to_owned(), exe.clone(), exe);
    configure(&mut config);
    std::fs::create_dir_all(&config.images_dir).unwrap();
    let images = firepit_image::ImageStore::open(&config.images_dir).unwrap();
    let backend = Arc::new(Recording::default());
    let app = App::from_parts(
        config,
        Store::in_memory().unwrap(),
        images,
        backend.clone(),
        TOKEN.into(),
    );
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

    let (s, b) = call(
        &h.app,
        "POST",
        "/v1/sessions",
        t,
        Some(r#"{"limits":{"cpus":-1}}"#),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.contains("cpu limit"), "{b}");

    let (s, b) = call(
        &h.app,
        "POST",
        "/v1/sessions",
        t,
        Some(r#"{"limits":{"memory_bytes":5}}"#),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

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

#[tokio::test]
async fn a_failed_create_leaves_no_session() {
    let h = harness();
    // An image that exists as far as the store can tell: a rootfs and a manifest.
    let images = &h.app.config().images_dir;
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
    };
    manifest.write(&images.join("tiny/image.json")).unwrap();
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
