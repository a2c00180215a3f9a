//! The API token: made on first run, kept in the data dir (mode 0600), checked
//! on every request.
//!
//! Clients send `Authorization: Bearer <token>`. A browser arrives with the
//! login URL `/?token=…`; the daemon answers with an HttpOnly cookie and a
//! redirect that drops the token from the address bar.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;

use crate::{App, Error};

/// Name of the cookie that carries the token for browsers.
pub const COOKIE: &str = "firepit_token";

/// Reads the token from `path`, making a new one if the file does not exist.
pub fn load_or_create_token(path: &Path) -> Result<String, Error> {
    match fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                what: format!("reading {}", path.display()),
                source,
            });
        }
    }
    let token: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    let tmp = path.with_extension("tmp");
    let io = |source| Error::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(token.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    Ok(token)
}

/// Compares in time independent of where the first difference is.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request carries, from the Authorization header or the cookie.
fn presented_token(req: &Request) -> Option<&str> {
    if let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(str::trim);
    }
    cookie_token(req.headers())
}

/// The token in the `firepit_token` cookie, if the request has one.
pub(crate) fn cookie_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    crate::preview::cookie(headers, COOKIE)
}

/// Middleware: refuses requests without the right token.
pub async fn require_token(
    State(app): State<App>,
    req: Request,
    next: Next,
) -> Result<Response, Error> {
    match presented_token(&req) {
        Some(t) if constant_time_eq(t.as_bytes(), app.token().as_bytes()) => {
            Ok(next.run(req).await)
        }
        _ => Err(Error::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_is_made_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = load_or_create_token(&path).unwrap();
        assert_eq!(first.len(), 40);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create_token(&path).unwrap(), first);
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
