//! `/`: the login URL `firepit up` prints (`/?token=…`) and the page behind it.
//!
//! A valid token in the query becomes an HttpOnly cookie and a redirect that
//! drops the token from the address bar. The web UI is not built yet, so the
//! page says how to use firepit from the command line and lists the sessions.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::App;
use crate::auth::{COOKIE, constant_time_eq, cookie_token};

#[derive(Deserialize)]
pub(super) struct Login {
    token: Option<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) async fn home(
    State(app): State<App>,
    Query(login): Query<Login>,
    headers: HeaderMap,
) -> Response {
    let valid = |t: &str| constant_time_eq(t.as_bytes(), app.token().as_bytes());
    if let Some(token) = login.token.as_deref() {
        if !valid(token) {
            return (
                StatusCode::UNAUTHORIZED,
                Html(page("That login link is not valid. Use the one `firepit up` printed (the token is in the data dir's <code>token</code> file).".into())),
            )
                .into_response();
        }
        let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/");
        return (
            StatusCode::SEE_OTHER,
            [(header::SET_COOKIE, cookie), (header::LOCATION, "/".into())],
        )
            .into_response();
    }
    if !cookie_token(&headers).is_some_and(valid) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(page(
                "Sign in with the login link that <code>firepit up</code> printed.".into(),
            )),
        )
            .into_response();
    }
    let sessions = app.store().sessions().unwrap_or_default();
    let mut rows = String::new();
    for s in &sessions {
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&s.id),
            s.state.as_str(),
            escape(&s.image)
        ));
    }
    let list = if sessions.is_empty() {
        "<p>No sessions yet.</p>".to_owned()
    } else {
        format!("<table><tr><th>session</th><th>state</th><th>image</th></tr>{rows}</table>")
    };
    Html(page(format!(
        "<p>You are signed in. The web UI is not built yet; use the command line:</p>\
         <pre>firepit new\nfirepit shell ID\nfirepit agent ID \"build a todo app\"\nfirepit ports ID</pre>{list}"
    )))
    .into_response()
}

fn page(body: String) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>firepit</title>\
         <style>body{{font:16px system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem}}\
         td,th{{padding:.2rem .8rem;text-align:left}}</style></head>\
         <body><h1>firepit</h1>{body}</body></html>"
    )
}
