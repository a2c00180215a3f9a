//! The web surface against browser attacks, through the router with
//! `tower::ServiceExt::oneshot`: which origins may use the login cookie, the
//! login cookie behind a TLS front proxy, and how artifacts are served.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use firepit_daemon::api::{ROUTES, router};
use firepit_daemon::config::PublicOrigin;
use firepit_wire::api::{Limits, NetworkMode, Session, SessionState};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::routes::{Harness, TOKEN, error_code, harness_with};

const HOST: &str = "localhost:7777";
const UI: &str = "http://localhost:7777";

async fn send(
    h: &Harness,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let resp = send_full(h, method, uri, headers).await;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn send_full(
    h: &Harness,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> axum::response::Response {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    router(h.app.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn cookie() -> String {
    format!("firepit_token={TOKEN}")
}

fn assert_cross_site(status: StatusCode, body: &str, what: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
    assert_eq!(error_code(body), "cross_site", "{what}: {body}");
    assert!(body.contains("origin"), "the message says why: {body}");
}

#[tokio::test]
async fn the_login_cookie_works_from_the_uis_origin_only() {
    let h = harness_with(|_| {});
    let c = cookie();
    let stop = "/v1/sessions/abc/stop";
    // The UI's own origin passes the guard (and the session does not exist).
    for same in [
        vec![("origin", UI)],
        vec![("origin", UI), ("sec-fetch-site", "same-origin")],
        vec![],
    ] {
        let mut headers = vec![("host", HOST), ("cookie", c.as_str())];
        headers.extend(same.iter().copied());
        let (s, b) = send(&h, "POST", stop, &headers).await;
        assert_eq!(
            (s, error_code(&b).as_str()),
            (StatusCode::NOT_FOUND, "session_not_found"),
            "{same:?}: {b}"
        );
    }
    // Another port on localhost, a preview host of this firepit (same
    // site, another origin), a sandboxed or opaque origin, another site.
    for origin in [
        "http://localhost:8000",
        "http://8000-abc.localhost:7777",
        "null",
        "http://evil.example",
        "https://localhost:7777",
    ] {
        let (s, b) = send(
            &h,
            "POST",
            stop,
            &[("host", HOST), ("cookie", &c), ("origin", origin)],
        )
        .await;
        assert_cross_site(s, &b, origin);
    }
    for site in ["same-site", "cross-site"] {
        let (s, b) = send(
            &h,
            "POST",
            stop,
            &[("host", HOST), ("cookie", &c), ("sec-fetch-site", site)],
        )
        .await;
        assert_cross_site(s, &b, site);
    }
    // An API client (bearer token, no cookie) is no browser: it passes
    // whatever it says its origin is.
    let bearer = format!("Bearer {TOKEN}");
    let (s, b) = send(
        &h,
        "POST",
        stop,
        &[
            ("host", HOST),
            ("authorization", &bearer),
            ("origin", "http://evil.example"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    // Reads with the cookie from elsewhere pass (browsers keep the answer
    // from the page).
    let (s, b) = send(
        &h,
        "GET",
        "/v1/sessions",
        &[
            ("host", HOST),
            ("cookie", &c),
            ("origin", "http://evil.example"),
        ],
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));
}

#[tokio::test]
async fn every_websocket_and_every_change_is_guarded() {
    let h = harness_with(|_| {});
    let c = cookie();
    let basic = "Basic eDp0ZXN0LXRva2Vu"; // x:test-token
    for (method, path) in ROUTES {
        let uri = path
            .replace("{id}", "abc")
            .replace("{name}", "main")
            .replace("{share}", "s1");
        let upgrade = [
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ];
        for credentials in [("cookie", c.as_str()), ("authorization", basic)] {
            for origin in ["http://8000-abc.localhost:7777", "null"] {
                let mut headers = vec![("host", HOST), credentials, ("origin", origin)];
                if *method == "GET" {
                    headers.extend(upgrade);
                }
                let (s, b) = send(&h, method, &uri, &headers).await;
                assert_cross_site(s, &b, &format!("{method} {path} {credentials:?} {origin}"));
            }
        }
        // The same from the UI's origin is not refused for where it comes from.
        let mut headers = vec![("host", HOST), ("cookie", c.as_str()), ("origin", UI)];
        if *method == "GET" {
            headers.extend(upgrade);
        }
        let (s, b) = send(&h, method, &uri, &headers).await;
        assert_ne!(s, StatusCode::FORBIDDEN, "{method} {path}: {b}");
    }
}

#[tokio::test]
async fn behind_a_tls_proxy_the_login_cookie_is_host_only_and_secure() {
    let public = "https://firepit.example.com";
    let h = harness_with(|c| {
        c.domain = "firepit.example.com".into();
        c.public_origin = Some(PublicOrigin::parse(public).unwrap());
    });
    let resp = send_full(
        &h,
        "GET",
        &format!("/?token={TOKEN}"),
        &[("host", "firepit.example.com")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.starts_with(&format!("__Host-firepit_token={TOKEN};")),
        "{set}"
    );
    for attr in ["Secure", "HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(set.split("; ").any(|a| a == attr), "{attr} in {set}");
    }
    assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");
    let pair = set.split(';').next().unwrap();
    let (s, _) = send(
        &h,
        "GET",
        "/v1/sessions",
        &[("host", "firepit.example.com"), ("cookie", pair)],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // The plain name, which a preview under the domain could set, opens nothing.
    let (s, _) = send(
        &h,
        "GET",
        "/v1/sessions",
        &[("host", "firepit.example.com"), ("cookie", &cookie())],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The public origin is the UI's; its previews and plain http are not.
    let (s, b) = send(
        &h,
        "POST",
        "/v1/sessions/abc/stop",
        &[
            ("host", "127.0.0.1:7777"),
            ("cookie", pair),
            ("origin", public),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    for origin in [
        "https://8000-abc.firepit.example.com",
        "http://firepit.example.com",
    ] {
        let (s, b) = send(
            &h,
            "POST",
            "/v1/sessions/abc/stop",
            &[
                ("host", "firepit.example.com"),
                ("cookie", pair),
                ("origin", origin),
            ],
        )
        .await;
        assert_cross_site(s, &b, origin);
    }
    // Preview URLs are on the public origin's scheme.
    assert_eq!(
        h.app.config().preview_url("abc", 8000),
        "https://8000-abc.firepit.example.com/"
    );
    // The owner's handshake goes to previews on that scheme too.
    let resp = send_full(
        &h,
        "GET",
        "/v1/preview-auth?next=https%3A%2F%2F8000-abc.firepit.example.com%2Fx",
        &[("host", "firepit.example.com"), ("cookie", pair)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let to = resp.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with("https://8000-abc.firepit.example.com/__firepit/auth?ticket="),
        "{to}"
    );
    let (s, b) = send(
        &h,
        "GET",
        "/v1/preview-auth?next=http%3A%2F%2F8000-abc.firepit.example.com%2Fx",
        &[("host", "firepit.example.com"), ("cookie", pair)],
    )
    .await;
    // Previews are on https here: the http URL names none of them.
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(
        b.contains("https://<port>-<session>.firepit.example.com/"),
        "{b}"
    );
}

#[tokio::test]
async fn a_cookie_set_elsewhere_does_not_lock_the_owner_out() {
    let h = harness_with(|_| {});
    // A same-site page may have set a cookie of the same name for a parent
    // domain; the browser sends both.
    let both = format!("firepit_token=shadow; firepit_token={TOKEN}");
    let (s, _) = send(
        &h,
        "GET",
        "/v1/sessions",
        &[("host", HOST), ("cookie", &both)],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn artifacts_are_served_inert() {
    let h = harness_with(|_| {});
    h.app
        .store()
        .insert_session(&Session {
            id: "abc".into(),
            image: "minimal".into(),
            state: SessionState::Stopped,
            limits: Limits::default(),
            network: NetworkMode::Nat,
            created_at: 0,
            error: None,
            stop_at: None,
            name: None,
            labels: Default::default(),
        })
        .unwrap();
    let page = h
        .app
        .save_artifact(
            "abc",
            "page.html",
            "text/html",
            b"<script>alert(1)</script>",
        )
        .unwrap();
    let svg = h
        .app
        .save_artifact("abc", "x.svg", "image/svg+xml", b"<svg onload=alert(1)>")
        .unwrap();
    let odd = h
        .app
        .save_artifact("abc", "y./../../z", "text/plain", b"x")
        .unwrap();
    assert_eq!(odd, "y-1.bin", "an odd extension is not kept");
    let shot = h
        .app
        .save_artifact("abc", "screenshot.png", "image/png", b"\x89PNG\r\n\x1a\n")
        .unwrap();
    let bearer = format!("Bearer {TOKEN}");
    let get = |name: String| {
        let bearer = bearer.clone();
        let h = &h;
        async move {
            send_full(
                h,
                "GET",
                &format!("/v1/sessions/abc/artifacts/{name}"),
                &[("authorization", &bearer)],
            )
            .await
        }
    };
    for name in [page.clone(), svg, odd] {
        let resp = get(name.clone()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{name}");
        let hd = resp.headers();
        assert_eq!(hd["content-type"], "application/octet-stream", "{name}");
        assert_eq!(hd["x-content-type-options"], "nosniff", "{name}");
        assert_eq!(
            hd["content-security-policy"], "default-src 'none'; sandbox",
            "{name}"
        );
        assert_eq!(
            hd["content-disposition"],
            format!("attachment; filename=\"{name}\"").as_str()
        );
    }
    let resp = get(shot).await;
    let hd = resp.headers();
    assert_eq!(hd["content-type"], "image/png");
    assert_eq!(hd["x-content-type-options"], "nosniff");
    assert_eq!(hd["content-security-policy"], "default-src 'none'; sandbox");
    assert_eq!(hd["content-disposition"], "inline");
    assert_eq!(hd["cross-origin-resource-policy"], "same-origin");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"\x89PNG\r\n\x1a\n");
    // Names that are not artifact names find nothing.
    for bad in ["..%2Ftoken", ".hidden", "a%2Fb"] {
        let (s, b) = send(
            &h,
            "GET",
            &format!("/v1/sessions/abc/artifacts/{bad}"),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{bad}: {b}");
    }
}
