//! The preview's page reports on the daemon's side: which requests get the
//! error-reporting script ([`firepit_preview::report`]) in their page, the
//! script itself, and the reports it posts back, which become problems with
//! `source=preview` through the closed loop, like the 5xx answers the proxy
//! served.
//!
//! The reports come from a page the machine serves, so they are hostile
//! input: a report is taken only from someone who may see the preview,
//! while the session's `preview_reports` setting is on, at most
//! [`MAX_REPORT`](firepit_preview::report::MAX_REPORT) bytes (413 beyond),
//! at most [`BURST`] at once and one a second after that per session (429
//! beyond: [`Limits`], one small entry per live session, dropped with its
//! runtime); its fields are cut, and what it becomes is folded and rate
//! limited like every problem ([`crate::closed_loop::report`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};
use firepit_preview::PreviewHost;
use firepit_preview::report::{self, MAX_REPORT};
use firepit_problems::{Problem, cut};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::App;
use crate::preview::Resp;

/// Reports taken from one session at once.
pub const BURST: f64 = 20.0;
/// Reports taken from one session per second, after a burst.
const PER_SECOND: f64 = 1.0;

/// Whether the answer to `req` gets the script: a document load, in a
/// session whose setting is on.
pub(crate) fn wanted<B>(app: &App, session: &str, req: &Request<B>) -> bool {
    report::is_document(req.method().as_str(), |n| {
        req.headers().get(n).map(|v| v.as_bytes())
    }) && app.preview_reports(session)
}

/// The script, as `/__firepit/report.js` on every preview host.
pub(crate) fn script() -> Resp {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/javascript; charset=utf-8")
        .header(header::CACHE_CONTROL, "max-age=300")
        .header("x-content-type-options", "nosniff")
        .body(Body::from(report::SCRIPT))
        .expect("a static response")
}

/// How many reports each session may still send.
#[derive(Default)]
pub struct Limits {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limits {
    /// Takes one report of `session` at `now`, or says it is one too many.
    fn take(&self, session: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().expect("report limits");
        let b = buckets.entry(session.to_owned()).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let secs = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + secs * PER_SECOND).min(BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets `session` (its runtime ended).
    pub fn forget(&self, session: &str) {
        self.buckets.lock().expect("report limits").remove(session);
    }
}

/// What the script posts.
#[derive(serde::Deserialize)]
struct PageReport {
    /// `error`, `rejection` or `fetch`.
    kind: String,
    #[serde(default)]
    message: String,
    /// `file:line:col`, or the request.
    #[serde(default, rename = "where")]
    at: String,
    #[serde(default)]
    stack: String,
    /// The page's path and query.
    #[serde(default)]
    page: String,
}

fn plain(status: StatusCode, text: &str) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(format!("{text}\n")))
        .expect("a plain response")
}

/// Takes a report posted to `/__firepit/report` by a page of `p` (the
/// request already passed the preview's access check).
pub(crate) async fn take(app: &App, p: &PreviewHost, req: Request<Incoming>) -> Resp {
    if req.method() != Method::POST {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "reports are POSTed by the page's script",
        );
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REPORT as u64) {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "the report is too large");
    }
    if !app.previews().reports().take(&p.session, Instant::now()) {
        return plain(StatusCode::TOO_MANY_REQUESTS, "too many reports; slow down");
    }
    let body = match Limited::new(req.into_body(), MAX_REPORT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "the report is too large");
        }
        Err(_) => return plain(StatusCode::BAD_REQUEST, "the report did not arrive whole"),
    };
    let r: PageReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "the report is not one the script sends",
            );
        }
    };
    let Some(problem) = problem(&r, p.port) else {
        return plain(StatusCode::BAD_REQUEST, "unknown kind of report");
    };
    // A page that still has the script after the setting went off is not heard.
    if app.preview_reports(&p.session) {
        let (app, session) = (app.clone(), p.session.clone());
        tokio::spawn(async move { crate::closed_loop::report(&app, &session, problem).await });
    }
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::empty())
        .expect("an empty response")
}

/// The problem a report is, or `None` for a kind the script never sends.
fn problem(r: &PageReport, port: u16) -> Option<Problem> {
    let message = cut(r.message.trim(), 1000);
    let (kind, summary) = match r.kind.as_str() {
        "error" => ("js_exception", message.clone()),
        "rejection" => ("js_exception", format!("Unhandled rejection: {message}")),
        "fetch" => ("request_failed", message.clone()),
        _ => return None,
    };
    let mut detail = summary.clone();
    for (what, text, max) in [
        ("stack", &r.stack, 2000),
        ("at", &r.at, 300),
        ("page", &r.page, 300),
    ] {
        let text = text.trim();
        if !text.is_empty() {
            detail.push_str(&format!("\n{what}: {}", cut(text, max)));
        }
    }
    detail.push_str(&format!(
        "\n(reported by the page in the person's browser, through the preview of port {port})"
    ));
    Some(Problem::new("preview", kind, &summary, &detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_session_gets_a_burst_then_one_report_a_second() {
        let l = Limits::default();
        let t0 = Instant::now();
        for _ in 0..BURST as usize {
            assert!(l.take("a", t0));
        }
        assert!(!l.take("a", t0));
        // Another session has its own.
        assert!(l.take("b", t0));
        assert!(l.take("a", t0 + Duration::from_millis(1000)));
        assert!(!l.take("a", t0 + Duration::from_millis(1500)));
        // Time never fills more than a burst.
        let later = t0 + Duration::from_secs(3600);
        let taken = (0..100).filter(|_| l.take("a", later)).count();
        assert_eq!(taken, BURST as usize);
        l.forget("a");
        assert!(l.buckets.lock().unwrap().get("a").is_none());
    }

    #[test]
    fn reports_become_bounded_problems() {
        let r = PageReport {
            kind: "error".into(),
            message: "Uncaught TypeError: x is undefined".into(),
            at: "http://8000-a.localhost/app.js:3:7".into(),
            stack: "x".repeat(100_000),
            page: "/cart".into(),
        };
        let p = problem(&r, 8000).unwrap();
        assert_eq!(
            (p.source.as_str(), p.kind.as_str()),
            ("preview", "js_exception")
        );
        assert_eq!(p.summary, "Uncaught TypeError: x is undefined");
        assert!(p.detail.contains("page: /cart"));
        assert!(p.detail.len() < 5000, "{}", p.detail.len());
        let rejection = PageReport {
            kind: "rejection".into(),
            ..r
        };
        assert!(
            problem(&rejection, 8000)
                .unwrap()
                .summary
                .starts_with("Unhandled rejection: ")
        );
        let other = PageReport {
            kind: "mine".into(),
            message: String::new(),
            at: String::new(),
            stack: String::new(),
            page: String::new(),
        };
        assert!(problem(&other, 8000).is_none());
    }
}
