//! `/`: the login URL `firepit up` prints (`/?token=…`) and the web UI behind it.
//!
//! A valid token in the query becomes an HttpOnly cookie and a redirect that
//! drops the token from the address bar (to the preview handshake when
//! `next` names a preview of this firepit: the sign-in page a signed-out
//! preview leads to sends it); a wrong one gets a page that says
//! where the right one is. Without a token, `/` is the web UI's page (see
//! [`super::ui`]), which asks the browser to sign in when the API says 401.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::App;
use crate::auth::{constant_time_eq, login_cookie};

#[derive(Deserialize)]
pub(super) struct Login {
    token: Option<String>,
    next: Option<String>,
}

pub(super) async fn home(
    State(app): State<App>,
    Query(login): Query<Login>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = login.token.as_deref() else {
        return super::ui::page(&headers);
    };
    if !constant_time_eq(token.as_bytes(), app.token().as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CACHE_CONTROL, "no-store")],
            Html(
                "<!doctype html><html><head><meta charset=utf-8><title>firepit</title>\
                 <style>body{font:16px system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem}</style>\
                 </head><body><h1>firepit</h1><p>That login link is not valid. Use the one \
                 <code>firepit up</code> printed (the token is in the data dir's <code>token</code> file).</p>\
                 </body></html>",
            ),
        )
            .into_response();
    }
    let cookie = login_cookie(app.config(), token);
    // Only a preview of this firepit is a place to go on to.
    let to = match login.next.as_deref() {
        Some(n) if crate::preview::handshake_url(&app, n).is_some() => {
            format!("/v1/preview-auth?next={}", crate::preview::encode(n))
        }
        _ => "/".into(),
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, to),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response()
}
