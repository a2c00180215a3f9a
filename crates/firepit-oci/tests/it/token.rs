//! The bearer-token challenge: a stand-in token service in front of the real registry (the
//! registry's own token auth wants a signing certificate): `/v2/…` answers 401 with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` until the request carries the token
//! that `/token` gives for the right basic credentials and scope; then it is passed on to the
//! registry as is.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use firepit_image::ImageStore;
use serde_json::json;

use crate::harness::{self, E, Registry};

#[derive(Clone)]
struct Front {
    upstream: String,
    realm: String,
    /// The scopes the token service was asked for.
    asked: Arc<Mutex<Vec<String>>>,
}

async fn token(
    State(f): State<Front>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    f.asked
        .lock()
        .unwrap()
        .push(q.get("scope").cloned().unwrap_or_default());
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(good.as_str())
        || q.get("service").map(String::as_str) != Some("stand-in")
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(json!({"token": "t0k3n"})).into_response()
}

async fn v2(State(f): State<Front>, uri: Uri, headers: HeaderMap) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some("Bearer t0k3n");
    if !authorized {
        let challenge = format!(
            r#"Bearer realm="{}",service="stand-in",scope="repository:tok/app:pull""#,
            f.realm
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
        )
            .into_response();
    }
    let mut req = reqwest::Client::new().get(format!("http://{}{}", f.upstream, uri));
    if let Some(a) = headers.get(header::ACCEPT) {
        req = req.header(header::ACCEPT, a);
    }
    let resp = req.send().await.unwrap();
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let body: Bytes = resp.bytes().await.unwrap();
    (status, [(header::CONTENT_TYPE, ctype)], body).into_response()
}

#[test]
fn bearer_token_challenge() {
    if !harness::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    harness::host_image(
        &layout,
        "v1",
        json!({}),
        vec![harness::layer(&[E::File("tok", 0o644, 0, b"t")])],
    );
    let registry = Registry::start(None);
    registry.push(&layout, "v1", "tok/app");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let front = Front {
        upstream: registry.addr.clone(),
        realm: format!("http://{addr}/token"),
        asked: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/token", get(token))
        .route("/v2/{*rest}", get(v2))
        .with_state(front.clone());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let reference = format!("{addr}/tok/app:v1");
    let opts = |creds| crate::options(true, creds);
    let pull = |o: &firepit_oci::PullOptions| {
        rt.block_on(firepit_oci::pull(
            &store,
            &reference,
            Some("tok"),
            o,
            &mut |_| {},
        ))
    };
    let err = pull(&opts(Some(("alice", "wrong")))).unwrap_err();
    assert_eq!(crate::refused(&err), Some(true), "{err}");
    let image = pull(&opts(Some(("alice", "s3cret")))).unwrap();
    assert_eq!(
        std::fs::read(crate::harness::merged(&image).join("tok")).unwrap(),
        b"t"
    );
    assert!(
        front
            .asked
            .lock()
            .unwrap()
            .iter()
            .all(|s| s == "repository:tok/app:pull")
    );
}
