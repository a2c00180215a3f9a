//! E2B's sandbox API served over firepit sessions, so the unmodified `e2b`
//! SDK (Python and JavaScript) runs against a firepit daemon.
//!
//! Two planes, both on the daemon's listener, on paths the daemon's own API
//! does not use:
//!
//! - the control plane ([`control`]): `/sandboxes…` and `/v2/sandboxes…`,
//!   authenticated by `X-API-Key` (the firepit token). A sandbox is a session;
//!   a template is an image (`base` is the daemon's default image); pause and
//!   resume are stop and start; the timeout is the session's own (the daemon
//!   stops it at its deadline, or destroys it when it was made with
//!   `autoPause: false`, see [`E2b::kills_at_timeout`]).
//! - envd, the in-sandbox API ([`process`], [`filesystem`], [`files`]):
//!   `/health`, `/files` and Connect-RPC ([`connect`]) at
//!   `/process.Process/*` and `/filesystem.Filesystem/*`. The SDK sends it
//!   to `E2B_SANDBOX_URL` with `E2b-Sandbox-Id` naming the sandbox and
//!   `X-Access-Token` the sandbox's own token from create or connect. It is
//!   carried out through the session's guest: nothing runs in the machine
//!   for it but what acting as `user` takes ([`users`]).
//!
//! With `E2B_DOMAIN`, the SDK names the two planes `api.<domain>` and
//! `49983-<sandbox>.<domain>`; [`is_domain_host`] tells the daemon those
//! hosts, which it sends to [`router`] alone.
//!
//! The daemon implements [`Host`] and mounts [`router`].

#![warn(missing_docs)]

pub mod connect;
pub mod control;
pub mod error;
pub mod files;
pub mod filesystem;
pub mod multipart;
pub mod process;
pub mod proto;
pub mod state;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::{any, get, post};
use firepit_guest_client::GuestClient;
use futures::future::BoxFuture;

pub use crate::error::{Error, HostErrorKind};

/// The envd version firepit answers with: the SDK unlocks features by it.
/// 0.5.7 turns on what firepit serves (stdin control, closing stdin, the
/// default user, octet-stream uploads) and keeps off what it does not
/// (file metadata as extended attributes, from 0.6.2; entry info on watch
/// events, from 0.6.3).
pub const ENVD_VERSION: &str = "0.5.7";

/// The template name the SDK uses by default; it means the daemon's default image.
pub const DEFAULT_TEMPLATE: &str = "base";

/// What the daemon tells of a session.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// Its id (the sandbox id).
    pub id: String,
    /// Its image.
    pub image: String,
    /// Whether its machine runs.
    pub running: bool,
    /// When it was made, seconds since the epoch.
    pub created_at: i64,
    /// Its CPU limit, if any.
    pub cpus: Option<f64>,
    /// Its memory limit, if any.
    pub memory_bytes: Option<u64>,
    /// Its disk limit, if any.
    pub disk_bytes: Option<u64>,
    /// When the daemon stops it (its timeout), seconds since the epoch.
    pub stop_at: Option<i64>,
}

/// What the daemon gives this crate: its sessions and their guests.
pub trait Host: Send + Sync + 'static {
    /// The API token, which is the E2B API key.
    fn token(&self) -> &str;
    /// Where this crate keeps its state (root-only, made if missing).
    fn state_dir(&self) -> PathBuf;
    /// The largest upload `/files` takes.
    fn max_upload_bytes(&self) -> u64;
    /// The sandbox domain for a request with these headers: previews are
    /// `<port>-<id>.<that>`, so the SDK's `get_host(port)` names them.
    fn sandbox_domain(&self, headers: &HeaderMap) -> String;
    /// Makes a session from `image` (the default image when `None`), starts
    /// it, and has it stopped `timeout_secs` later.
    fn create(
        &self,
        image: Option<String>,
        timeout_secs: u64,
    ) -> BoxFuture<'_, Result<SessionView, Error>>;
    /// Sets (or clears) when the daemon stops a session.
    fn set_stop_at(&self, id: &str, stop_at: Option<i64>) -> Result<(), Error>;
    /// One session.
    fn session(&self, id: &str) -> Result<SessionView, Error>;
    /// Every session.
    fn sessions(&self) -> Result<Vec<SessionView>, Error>;
    /// Stops a session's machine (its files are kept).
    fn stop<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// Starts a stopped session's machine.
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// Destroys a session.
    fn destroy<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// The guest of a running session.
    fn guest<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<GuestClient, Error>>;
}

/// The shared state of the E2B door.
#[derive(Clone)]
pub struct E2b(Arc<Inner>);

struct Inner {
    host: Arc<dyn Host>,
    states: Arc<state::States>,
    procs: process::Processes,
    watchers: filesystem::Watchers,
    accounts: users::Accounts,
}

impl E2b {
    /// Opens the kept state.
    pub fn open(host: Arc<dyn Host>) -> std::io::Result<E2b> {
        let states = Arc::new(state::States::open(&host.state_dir())?);
        Ok(E2b(Arc::new(Inner {
            host,
            states,
            procs: process::Processes::default(),
            watchers: filesystem::Watchers::default(),
            accounts: users::Accounts::default(),
        })))
    }

    pub(crate) fn host(&self) -> &dyn Host {
        self.0.host.as_ref()
    }

    pub(crate) fn states(&self) -> &state::States {
        &self.0.states
    }

    pub(crate) fn procs(&self) -> &process::Processes {
        &self.0.procs
    }

    pub(crate) fn watchers(&self) -> &filesystem::Watchers {
        &self.0.watchers
    }

    pub(crate) fn accounts(&self) -> &users::Accounts {
        &self.0.accounts
    }

    /// Forgets what this door holds for a sandbox that stopped or went away.
    pub(crate) fn forget_running(&self, id: &str) {
        self.0.procs.forget(id);
        self.0.watchers.forget(id);
        self.0.accounts.forget(id);
    }

    /// Whether the daemon is to kill (destroy), not pause (stop), sandbox
    /// `id` when its timeout passes: it was made with `autoPause: false`
    /// (the SDK's `lifecycle={"on_timeout": "kill"}`). Sessions that are no
    /// sandboxes, and sandboxes made without a choice, are stopped.
    pub fn kills_at_timeout(&self, id: &str) -> bool {
        self.0
            .states
            .get(id)
            .is_some_and(|k| k.on_timeout == state::OnTimeout::Kill)
    }

    /// Kills sandbox `id` as `DELETE /sandboxes/{id}` does: what the door
    /// holds for it, its session and its kept state go.
    pub async fn kill(&self, id: &str) -> Result<(), Error> {
        self.forget_running(id);
        self.0.host.destroy(id).await?;
        self.0.states.remove(id);
        Ok(())
    }
}

/// envd's port: the SDK names a sandbox's envd `<this>-<sandbox>.<domain>`.
pub const ENVD_PORT: u16 = 49983;

/// Whether `host` (a Host header's value) is a name the SDK makes from
/// `E2B_DOMAIN=<domain>`: `api.<domain>` (the control plane) or
/// `49983-<sandbox>.<domain>` (envd). The daemon sends those to [`router`]
/// alone, before its preview routing would take them for previews.
pub fn is_domain_host(host: &str, domain: &str) -> bool {
    let host = host.trim();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return false,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    let Some(sub) = name
        .strip_suffix(domain.as_str())
        .and_then(|s| s.strip_suffix('.'))
    else {
        return false;
    };
    sub == "api"
        || sub
            .strip_prefix(&format!("{ENVD_PORT}-"))
            .is_some_and(is_valid_id)
}

/// Whether `id` could be a sandbox (session) id: checked before it reaches a path.
pub fn is_valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The firepit token in the form older SDKs insist on (`e2b_` and hex):
/// `e2b_` followed by the token's bytes in hex. Either form is an API key.
pub fn api_key(token: &str) -> String {
    let mut s = String::from("e2b_");
    for b in token.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Compares secrets in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Both planes' routes. Paths are disjoint from the daemon's own API, so the
/// daemon merges this router into its own.
pub fn router(e2b: E2b) -> Router {
    let control = Router::new()
        .route("/sandboxes", get(control::list_v1).post(control::create))
        .route("/v2/sandboxes", get(control::list_v2).post(control::create))
        .route("/sandboxes/{id}", get(control::get).delete(control::kill))
        .route("/sandboxes/{id}/timeout", post(control::set_timeout))
        .route("/sandboxes/{id}/refreshes", post(control::refresh))
        .route("/sandboxes/{id}/pause", post(control::pause))
        .route("/sandboxes/{id}/resume", post(control::resume))
        .route("/sandboxes/{id}/connect", post(control::connect))
        .route("/v2/sandboxes/{id}/connect", post(control::connect))
        .route("/sandboxes/{id}/{*rest}", any(control::unsupported))
        .route("/v2/sandboxes/{id}/{*rest}", any(control::unsupported))
        .layer(DefaultBodyLimit::max(connect::MAX_MESSAGE));
    let envd = Router::new()
        .route("/health", get(files::health))
        .route(
            "/files",
            get(files::download)
                .post(files::upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/process.Process/{method}", post(process::call))
        .route("/filesystem.Filesystem/{method}", post(filesystem::call))
        .layer(DefaultBodyLimit::max(connect::MAX_MESSAGE));
    control.merge(envd).with_state(e2b)
}

/// A control-plane request with a valid API key.
pub struct ApiKey;

impl FromRequestParts<E2b> for ApiKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, e2b: &E2b) -> Result<ApiKey, Error> {
        let key = parts
            .headers
            .get("x-api-key")
            .map(|v| v.as_bytes())
            .or_else(|| {
                parts
                    .headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            })
            .ok_or(Error::Unauthorized)?;
        let token = e2b.host().token();
        if same_secret(key, token.as_bytes()) || same_secret(key, api_key(token).as_bytes()) {
            Ok(ApiKey)
        } else {
            Err(Error::Unauthorized)
        }
    }
}

/// An envd request: the sandbox it names (`E2b-Sandbox-Id`), with its access token checked.
pub struct Sandbox {
    /// The sandbox id.
    pub id: String,
    /// Its kept state.
    pub kept: state::Kept,
}

impl FromRequestParts<E2b> for Sandbox {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, e2b: &E2b) -> Result<Sandbox, Error> {
        sandbox_of(&parts.headers, e2b)
    }
}

/// The sandbox an envd request names, its access token checked.
pub(crate) fn sandbox_of(headers: &HeaderMap, e2b: &E2b) -> Result<Sandbox, Error> {
    let id = headers
        .get("e2b-sandbox-id")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::BadRequest(
                "no E2b-Sandbox-Id header: point E2B_SANDBOX_URL at the firepit daemon".into(),
            )
        })?;
    if !is_valid_id(id) {
        return Err(Error::NotFound(id.to_owned()));
    }
    let kept = e2b
        .states()
        .get(id)
        .ok_or_else(|| Error::NotFound(id.to_owned()))?;
    let token = headers
        .get("x-access-token")
        .ok_or(Error::BadAccessToken)?
        .as_bytes();
    if !same_secret(token, kept.access_token.as_bytes()) {
        return Err(Error::BadAccessToken);
    }
    Ok(Sandbox {
        id: id.to_owned(),
        kept,
    })
}

impl Sandbox {
    /// The guest of this sandbox; a paused one answers "was not found running".
    pub(crate) async fn guest(&self, e2b: &E2b) -> Result<GuestClient, Error> {
        match e2b.host().guest(&self.id).await {
            Ok(g) => Ok(g),
            Err(Error::Host {
                kind: HostErrorKind::NotRunning,
                ..
            }) => Err(Error::NotRunning(self.id.clone())),
            Err(Error::Host {
                kind: HostErrorKind::NotFound,
                ..
            }) => Err(Error::NotFound(self.id.clone())),
            Err(e) => Err(e),
        }
    }
}

/// Where relative paths start for root (the default user).
pub const HOME: &str = "/root";

/// An absolute path for a path the SDK sent: relative ones start at `home`
/// (the home of the user the call acts as, [`HOME`] for root). The guest
/// refuses `..` and other tricks itself.
pub(crate) fn abs_path(path: &str, home: &str) -> Result<String, Error> {
    if path.contains('\0') {
        return Err(Error::BadRequest("a path cannot hold a NUL byte".into()));
    }
    let home = home.trim_end_matches('/');
    Ok(match path {
        "" | "~" if home.is_empty() => "/".to_owned(),
        "" | "~" => home.to_owned(),
        p if p.starts_with('/') => p.to_owned(),
        p => match p.strip_prefix("~/") {
            Some(rest) => format!("{home}/{rest}"),
            None => format!("{home}/{p}"),
        },
    })
}

/// The user a call acts as, with `user`'s account when it is `user` (found
/// or made on first use, see [`users`]).
pub(crate) async fn acting_as(
    e2b: &E2b,
    sandbox: &Sandbox,
    guest: &GuestClient,
    who: users::Who,
) -> Result<Option<users::Account>, Error> {
    match who {
        users::Who::Root => Ok(None),
        users::Who::User => e2b.accounts().get(&sandbox.id, guest).await.map(Some),
    }
}

/// The home of the account a call acts as.
pub(crate) fn home_of(account: Option<&users::Account>) -> &str {
    account.map_or(HOME, |a| a.home.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_start_at_home() {
        assert_eq!(abs_path("a/b", HOME).unwrap(), "/root/a/b");
        assert_eq!(abs_path("~/x", HOME).unwrap(), "/root/x");
        assert_eq!(abs_path("", HOME).unwrap(), "/root");
        assert_eq!(abs_path("/etc", HOME).unwrap(), "/etc");
        assert!(abs_path("a\0b", HOME).is_err());
        assert_eq!(abs_path("x", "/home/user").unwrap(), "/home/user/x");
        assert_eq!(abs_path("~", "/home/user/").unwrap(), "/home/user");
        assert_eq!(abs_path("x", "/").unwrap(), "/x");
    }

    #[test]
    fn domain_hosts_are_the_ones_the_sdk_builds() {
        for h in [
            "api.localhost",
            "api.localhost:7777",
            "API.Localhost.",
            "49983-abc123.localhost",
            "49983-abc123.localhost:443",
        ] {
            assert!(is_domain_host(h, "localhost"), "{h}");
        }
        for h in [
            "localhost",
            "8000-abc123.localhost",
            "api.other",
            "api.localhost.evil",
            "49983-ABC!.localhost",
            "49983-.localhost",
            "x.api.localhost",
            "api.localhost:x",
        ] {
            assert!(!is_domain_host(h, "localhost"), "{h}");
        }
        assert!(is_domain_host(
            "api.firepit.example.com",
            "firepit.example.com"
        ));
    }

    #[test]
    fn the_api_key_form_is_e2b_and_hex() {
        assert_eq!(api_key("Ab1"), "e2b_416231");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
