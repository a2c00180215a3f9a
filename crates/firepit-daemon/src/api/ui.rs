//! The web UI: the built page and its assets (embedded by `firepit-ui`).
//!
//! `GET /` (see [`super::home`]) and every path outside `/v1/` and
//! `/assets/` answer with the single page (`no-cache`, revalidated by
//! `ETag`), which routes on the client; `/assets/…` are Vite's content-hashed
//! files (cached for a year, `immutable`). The page itself holds no secret:
//! the API behind it needs the token. Nothing here is in `ROUTES`: the UI is
//! not part of the API.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use firepit_wire::api::{ApiError, ErrorBody};

/// The single page, for any UI route.
pub(super) fn page(headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", firepit_ui::BUILD_HASH);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let index = firepit_ui::index();
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(index.bytes))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(index.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    // The UI frames previews; nothing frames the UI.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// Everything the router has no route for: UI assets and routes, and a JSON
/// 404 for unknown API paths.
pub(super) async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path == "/v1" || path.starts_with("/v1/") {
        return not_found(format!(
            "no API route {method} {path}; see docs/api/openapi.yaml"
        ));
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    if let Some(asset) = firepit_ui::get(path).filter(|a| a.path != "/index.html") {
        let cache = if asset.immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        return (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, cache),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            asset.bytes,
        )
            .into_response();
    }
    // A missing file (a name with an extension, or anything under /assets/)
    // is a 404; any other path is a route of the page.
    let last = path.rsplit('/').next().unwrap_or("");
    if path.starts_with("/assets/") || last.contains('.') {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    page(&headers)
}

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(ErrorBody {
            error: ApiError {
                code: "not_found".into(),
                message,
            },
        }),
    )
        .into_response()
}
