//! The control plane: E2B's REST API over sessions.
//!
//! | E2B | firepit |
//! |---|---|
//! | `POST /sandboxes`, `POST /v2/sandboxes` | create a session from the template's image, start its timeout |
//! | `GET /sandboxes` (running), `GET /v2/sandboxes` (`state`, `metadata`, `limit`, `nextToken`) | list sessions |
//! | `GET`/`DELETE /sandboxes/{id}` | the session / destroy it |
//! | `POST …/timeout`, `…/refreshes` | move the session's timeout |
//! | `POST …/pause`, `…/resume` | stop / start |
//! | `POST /sandboxes/{id}/connect`, `/v2/…/connect` | start if stopped, extend the deadline |
//! | the rest of `/sandboxes/{id}/…` (metrics, logs, snapshots, fork, network) | 501 |
//!
//! Every route needs `X-API-Key` (the firepit token). Errors are
//! `{"code": <status>, "message"}`. A session made by firepit itself (not
//! through this API) is a sandbox too: it gets an access token the first
//! time a client connects to it.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::proto::rfc3339;
use crate::state::{Kept, OnTimeout, new_token, now};
use crate::{ApiKey, DEFAULT_TEMPLATE, E2b, ENVD_VERSION, Error, SessionView, is_valid_id};

/// The timeout E2B gives a sandbox when the request names none, seconds.
const DEFAULT_TIMEOUT: i64 = 15;
/// The longest timeout taken, seconds (30 days).
const MAX_TIMEOUT: i64 = 30 * 86_400;
/// The most sandboxes one list answers with.
const MAX_LIMIT: usize = 1000;
/// "Never", as an end time.
const NEVER: i64 = 253_402_300_799;

fn body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Error::BadRequest(format!("the body is not valid: {e}")))
}

fn checked(id: &str) -> Result<(), Error> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(Error::NotFound(id.to_owned()))
    }
}

fn timeout(t: Option<i64>) -> Result<i64, Error> {
    let t = t.unwrap_or(DEFAULT_TIMEOUT);
    if (0..=MAX_TIMEOUT).contains(&t) {
        Ok(t)
    } else {
        Err(Error::BadRequest(format!(
            "a timeout of {t} seconds is out of range: give 0 to {MAX_TIMEOUT}"
        )))
    }
}

/// `NewSandbox` (v1 and v2): what firepit uses of it; the rest is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct NewSandbox {
    #[serde(rename = "templateID")]
    template_id: Option<String>,
    timeout: Option<i64>,
    metadata: Option<BTreeMap<String, String>>,
    env_vars: Option<BTreeMap<String, String>>,
    /// `true`: the timeout pauses (stops); `false`: it kills (destroys);
    /// absent: firepit's default, pause.
    auto_pause: Option<bool>,
    auto_resume: Option<AutoResume>,
}

/// `autoResume` of `NewSandbox`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AutoResume {
    enabled: bool,
}

/// What a request's `autoPause` asks the timeout to do; `None` when it
/// makes no choice.
fn on_timeout(auto_pause: Option<bool>) -> Option<OnTimeout> {
    auto_pause.map(|p| if p { OnTimeout::Pause } else { OnTimeout::Kill })
}

/// `SandboxTimeoutRequest`, `ResumedSandbox`, `ConnectSandbox`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TimeoutBody {
    timeout: Option<i64>,
    /// `ResumedSandbox`'s (deprecated) choice of what the timeout does.
    #[serde(rename = "autoPause")]
    auto_pause: Option<bool>,
}

/// `SandboxRefreshRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RefreshBody {
    duration: Option<i64>,
}

/// The `Sandbox` answer of create, resume and connect.
fn sandbox_json(e2b: &E2b, headers: &HeaderMap, id: &str, kept: &Kept) -> Value {
    json!({
        "templateID": kept.template,
        "alias": kept.template,
        "sandboxID": id,
        "clientID": "firepit",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": kept.access_token,
        "domain": e2b.host().sandbox_domain(headers),
    })
}

/// `ListedSandbox`.
fn listed_json(view: &SessionView, kept: Option<&Kept>) -> Value {
    let cpus = view.cpus.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        |c| c.ceil() as u64,
    );
    json!({
        "templateID": kept.map_or(view.image.as_str(), |k| k.template.as_str()),
        "alias": kept.map_or(view.image.as_str(), |k| k.template.as_str()),
        "sandboxID": view.id,
        "clientID": "firepit",
        "startedAt": rfc3339(kept.map_or(view.created_at, |k| k.started_at)),
        "endAt": rfc3339(view.stop_at.unwrap_or(NEVER)),
        "cpuCount": cpus,
        "memoryMB": view.memory_bytes.map_or(0, |b| b >> 20),
        "diskSizeMB": view.disk_bytes.map_or(0, |b| b >> 20),
        "state": if view.running { "running" } else { "paused" },
        "envdVersion": ENVD_VERSION,
        "metadata": kept.map(|k| k.metadata.clone()).unwrap_or_default(),
    })
}

/// A sandbox's kept state, made for a session that has none yet.
fn kept_or_new(e2b: &E2b, view: &SessionView) -> Result<Kept, Error> {
    if let Some(k) = e2b.states().get(&view.id) {
        return Ok(k);
    }
    let kept = Kept {
        access_token: new_token(),
        template: view.image.clone(),
        metadata: BTreeMap::new(),
        envs: BTreeMap::new(),
        started_at: view.created_at,
        on_timeout: OnTimeout::default(),
    };
    e2b.states().put(&view.id, kept.clone())?;
    Ok(kept)
}

/// The session, or 404 (forgetting the state of one that went away).
fn session(e2b: &E2b, id: &str) -> Result<SessionView, Error> {
    checked(id)?;
    match e2b.host().session(id) {
        Ok(v) => Ok(v),
        Err(Error::Host {
            kind: crate::HostErrorKind::NotFound,
            ..
        }) => {
            e2b.states().remove(id);
            Err(Error::NotFound(id.to_owned()))
        }
        Err(e) => Err(e),
    }
}

/// `POST /sandboxes`, `POST /v2/sandboxes`.
pub async fn create(
    State(e2b): State<E2b>,
    _: ApiKey,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Error> {
    let req: NewSandbox = body(&bytes)?;
    let secs = timeout(req.timeout)?;
    if req.auto_resume.is_some_and(|a| a.enabled) {
        return Err(Error::Unsupported(
            "resuming a paused sandbox on traffic (autoResume; resume it with connect instead)",
        ));
    }
    let template = req
        .template_id
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| DEFAULT_TEMPLATE.to_owned());
    let image = (template != DEFAULT_TEMPLATE).then(|| template.clone());
    let view = e2b.host().create(image, secs as u64).await?;
    let kept = Kept {
        access_token: new_token(),
        template,
        metadata: req.metadata.unwrap_or_default(),
        envs: req.env_vars.unwrap_or_default(),
        started_at: now(),
        on_timeout: on_timeout(req.auto_pause).unwrap_or_default(),
    };
    if let Err(e) = e2b.states().put(&view.id, kept.clone()) {
        let _ = e2b.host().destroy(&view.id).await;
        return Err(e);
    }
    Ok((
        StatusCode::CREATED,
        Json(sandbox_json(&e2b, &headers, &view.id, &kept)),
    )
        .into_response())
}

/// The list filters.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListQuery {
    state: Option<String>,
    template: Option<String>,
    metadata: Option<String>,
    limit: Option<usize>,
    next_token: Option<String>,
}

/// Decodes `%XX` escapes (the SDK quotes metadata keys and values, then
/// form-encodes the pairs).
fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn list(e2b: &E2b, q: ListQuery, default_states: &[&str]) -> Result<Response, Error> {
    let states: Vec<String> = match &q.state {
        Some(s) => s.split(',').map(|p| p.trim().to_owned()).collect(),
        None => default_states.iter().map(|s| (*s).to_owned()).collect(),
    };
    for s in &states {
        if s != "running" && s != "paused" {
            return Err(Error::BadRequest(format!(
                "state {s:?} is not one of running, paused"
            )));
        }
    }
    let wanted: Vec<(String, String)> = q
        .metadata
        .as_deref()
        .map(|m| {
            form_urlencoded::parse(m.as_bytes())
                .map(|(k, v)| (unquote(&k), unquote(&v)))
                .collect()
        })
        .unwrap_or_default();
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let offset: usize = match &q.next_token {
        Some(t) => t.parse().map_err(|_| {
            Error::BadRequest(format!("nextToken {t:?} is not one this server gave"))
        })?,
        None => 0,
    };
    let mut views = e2b.host().sessions()?;
    views.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let matching: Vec<Value> = views
        .iter()
        .filter(|v| states.iter().any(|s| (s == "running") == v.running))
        .filter_map(|v| {
            let kept = e2b.states().get(&v.id);
            let template = kept
                .as_ref()
                .map_or(v.image.as_str(), |k| k.template.as_str());
            if q.template.as_deref().is_some_and(|t| t != template) {
                return None;
            }
            let ok = wanted.iter().all(|(k, val)| {
                kept.as_ref()
                    .and_then(|kept| kept.metadata.get(k))
                    .is_some_and(|have| have == val)
            });
            ok.then(|| listed_json(v, kept.as_ref()))
        })
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).cloned().collect();
    let mut r = Json(page).into_response();
    if offset + limit < matching.len() {
        let next = HeaderValue::from_str(&(offset + limit).to_string()).expect("digits");
        r.headers_mut().insert("x-next-token", next);
    }
    Ok(r)
}

/// `GET /sandboxes`: running sandboxes unless `state` says otherwise.
pub async fn list_v1(
    State(e2b): State<E2b>,
    _: ApiKey,
    Query(q): Query<ListQuery>,
) -> Result<Response, Error> {
    list(&e2b, q, &["running"])
}

/// `GET /v2/sandboxes`: every sandbox unless `state` says otherwise.
pub async fn list_v2(
    State(e2b): State<E2b>,
    _: ApiKey,
    Query(q): Query<ListQuery>,
) -> Result<Response, Error> {
    list(&e2b, q, &["running", "paused"])
}

/// `GET /sandboxes/{id}`: `SandboxDetail`.
pub async fn get(
    State(e2b): State<E2b>,
    _: ApiKey,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let view = session(&e2b, &id)?;
    let kept = kept_or_new(&e2b, &view)?;
    let mut v = listed_json(&view, Some(&kept));
    v["envdAccessToken"] = json!(kept.access_token);
    v["domain"] = json!(e2b.host().sandbox_domain(&headers));
    v["lifecycle"] = json!({
        "onTimeout": match kept.on_timeout {
            OnTimeout::Pause => "pause",
            OnTimeout::Kill => "kill",
        },
        "autoResume": false,
    });
    Ok(Json(v))
}

/// What firepit does not serve of the control plane (metrics, logs,
/// snapshots, fork, network rules): 501 in E2B's shape.
pub async fn unsupported(_: ApiKey) -> Error {
    Error::Unsupported("this part of E2B's API (metrics, logs, snapshots, fork, network rules)")
}

/// `DELETE /sandboxes/{id}`.
pub async fn kill(
    State(e2b): State<E2b>,
    _: ApiKey,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    session(&e2b, &id)?;
    e2b.kill(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/timeout`: the sandbox stops `timeout` seconds from now.
pub async fn set_timeout(
    State(e2b): State<E2b>,
    _: ApiKey,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<StatusCode, Error> {
    let req: TimeoutBody = body(&bytes)?;
    let Some(t) = req.timeout else {
        return Err(Error::BadRequest("give the timeout in seconds".into()));
    };
    let secs = timeout(Some(t))?;
    let view = session(&e2b, &id)?;
    kept_or_new(&e2b, &view)?;
    if !view.running {
        return Err(Error::Conflict(format!(
            "sandbox {id} is paused: connect to it to give it a timeout"
        )));
    }
    e2b.host().set_stop_at(&id, Some(now() + secs))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/refreshes`: the deadline is at least `duration` seconds away.
pub async fn refresh(
    State(e2b): State<E2b>,
    _: ApiKey,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<StatusCode, Error> {
    let req: RefreshBody = body(&bytes)?;
    let secs = timeout(req.duration)?;
    let view = session(&e2b, &id)?;
    kept_or_new(&e2b, &view)?;
    if !view.running {
        return Err(Error::Conflict(format!("sandbox {id} is paused")));
    }
    let at = now() + secs;
    e2b.host()
        .set_stop_at(&id, Some(view.stop_at.map_or(at, |e| e.max(at))))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/pause`: stop; 409 when already paused.
pub async fn pause(
    State(e2b): State<E2b>,
    _: ApiKey,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let view = session(&e2b, &id)?;
    if !view.running {
        return Err(Error::Conflict(format!("sandbox {id} is already paused")));
    }
    kept_or_new(&e2b, &view)?;
    e2b.forget_running(&id);
    e2b.host().stop(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a paused sandbox and sets its deadline.
async fn start(e2b: &E2b, id: &str, secs: i64) -> Result<Kept, Error> {
    e2b.host().start(id).await?;
    let t = now();
    e2b.host().set_stop_at(id, Some(t + secs))?;
    e2b.states()
        .update(id, |k| k.started_at = t)?
        .ok_or_else(|| Error::NotFound(id.to_owned()))
}

/// `POST /sandboxes/{id}/resume`: start; 409 when it runs.
pub async fn resume(
    State(e2b): State<E2b>,
    _: ApiKey,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Error> {
    let req: TimeoutBody = body(&bytes)?;
    let secs = timeout(req.timeout)?;
    let view = session(&e2b, &id)?;
    if view.running {
        return Err(Error::Conflict(format!("sandbox {id} is already running")));
    }
    kept_or_new(&e2b, &view)?;
    if let Some(choice) = on_timeout(req.auto_pause) {
        e2b.states().update(&id, |k| k.on_timeout = choice)?;
    }
    let kept = start(&e2b, &id, secs).await?;
    Ok((
        StatusCode::CREATED,
        Json(sandbox_json(&e2b, &headers, &id, &kept)),
    )
        .into_response())
}

/// `POST /sandboxes/{id}/connect` (v1 and v2): start a paused sandbox (201)
/// or take a running one (200); the deadline only moves later.
pub async fn connect(
    State(e2b): State<E2b>,
    _: ApiKey,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Error> {
    let req: TimeoutBody = body(&bytes)?;
    let secs = timeout(req.timeout)?;
    let view = session(&e2b, &id)?;
    kept_or_new(&e2b, &view)?;
    if !view.running {
        let kept = start(&e2b, &id, secs).await?;
        return Ok((
            StatusCode::CREATED,
            Json(sandbox_json(&e2b, &headers, &id, &kept)),
        )
            .into_response());
    }
    if req.timeout.is_some() {
        let at = now() + secs;
        e2b.host()
            .set_stop_at(&id, Some(view.stop_at.map_or(at, |e| e.max(at))))?;
    }
    let kept = kept_or_new(&e2b, &view)?;
    Ok((
        StatusCode::OK,
        Json(sandbox_json(&e2b, &headers, &id, &kept)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_filters_decode_as_the_sdk_encodes_them() {
        // urlencode({quote("a b"): quote("c&d")})
        let pairs: Vec<(String, String)> = form_urlencoded::parse(b"a%2520b=c%2526d&x=1")
            .map(|(k, v)| (unquote(&k), unquote(&v)))
            .collect();
        assert_eq!(
            pairs,
            vec![("a b".into(), "c&d".into()), ("x".into(), "1".into())]
        );
        assert_eq!(unquote("100%"), "100%");
    }

    #[test]
    fn auto_pause_chooses_what_the_timeout_does() {
        assert_eq!(on_timeout(Some(false)), Some(OnTimeout::Kill));
        assert_eq!(on_timeout(Some(true)), Some(OnTimeout::Pause));
        assert_eq!(on_timeout(None), None);
        let req: NewSandbox =
            body(br#"{"autoPause": false, "autoResume": {"enabled": false}}"#).unwrap();
        assert_eq!(req.auto_pause, Some(false));
        assert!(req.auto_resume.is_some_and(|a| !a.enabled));
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(timeout(None).unwrap(), DEFAULT_TIMEOUT);
        assert!(timeout(Some(-1)).is_err());
        assert!(timeout(Some(MAX_TIMEOUT + 1)).is_err());
    }
}
