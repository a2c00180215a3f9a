//! `/v1/sessions`: create, list (by label too), get, rename and relabel,
//! usage (one session's, or many in one request: `/v1/usage`), stop, start,
//! destroy.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use firepit_wire::api::{CreateSession, Session, UpdateSession, Usage, UsageList};
use serde::Deserialize;

use super::{JsonBody, QueryArgs, valid};
use crate::sessions::is_valid_id;
use crate::{App, Error};

fn checked(id: String) -> Result<String, Error> {
    if is_valid_id(&id) {
        Ok(id)
    } else {
        Err(Error::SessionNotFound(id))
    }
}

pub(super) async fn create(
    State(app): State<App>,
    JsonBody(req): JsonBody<CreateSession>,
) -> Result<(StatusCode, Json<Session>), Error> {
    if let Some(image) = &req.image {
        valid::image(image)?;
    }
    if let Some(repo) = &req.repo {
        valid::repo(repo)?;
    }
    if let Some(branch) = &req.branch {
        valid::branch(branch)?;
    }
    if let Some(t) = req.timeout_secs {
        valid::timeout_secs(t)?;
    }
    if let Some(n) = &req.name {
        valid::session_name(n)?;
    }
    valid::labels(&req.labels)?;
    Ok((StatusCode::CREATED, Json(app.create_session(req).await?)))
}

/// The response header that carries the cursor of the next page.
pub(crate) const NEXT_CURSOR: &str = "firepit-next-cursor";
/// The most sessions one page holds.
const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
    /// `key=value`: only the sessions with that label.
    #[serde(default)]
    label: Option<String>,
}

/// `GET /v1/sessions`: the sessions, oldest first: all of them, or those
/// after `cursor` (from the previous page's `Firepit-Next-Cursor` header),
/// at most `limit`. A page that may have more after it says where they start
/// in that header.
pub(super) async fn list(
    State(app): State<App>,
    QueryArgs(q): QueryArgs<ListQuery>,
) -> Result<Response, Error> {
    let after = q.cursor.as_deref().map(valid::session_cursor).transpose()?;
    let label = q.label.as_deref().map(valid::label_filter).transpose()?;
    if let Some(limit) = q.limit
        && !(1..=MAX_PAGE).contains(&limit)
    {
        return Err(Error::BadRequest(format!(
            "limit must be from 1 to {MAX_PAGE}"
        )));
    }
    if after.is_none() && q.limit.is_none() && label.is_none() {
        return Ok(Json(app.store().sessions()?).into_response());
    }
    // One more than asked: whether a next page has anything.
    let ask = q.limit.map_or(usize::MAX, |l| l + 1);
    let mut page = match label {
        Some((k, v)) => app.store().sessions_labelled(k, v, after, ask)?,
        None => app.store().sessions_page(after, ask)?,
    };
    let more = q.limit.is_some_and(|l| page.len() > l);
    if let Some(limit) = q.limit {
        page.truncate(limit);
    }
    let next = match page.last() {
        Some(last) if more => Some(format!("{}.{}", last.created_at, last.id)),
        _ => None,
    };
    let mut resp = Json(page).into_response();
    if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        resp.headers_mut().insert(NEXT_CURSOR, next);
    }
    Ok(resp)
}

pub(super) async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Session>, Error> {
    Ok(Json(app.store().session(&checked(id)?)?))
}

/// `PATCH /v1/sessions/{id}`: a new name, new labels.
pub(super) async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateSession>,
) -> Result<Json<Session>, Error> {
    Ok(Json(app.update_session(&checked(id)?, req)?))
}

/// `GET /v1/sessions/{id}/usage`: CPU time, memory, processes and disk now.
pub(super) async fn usage(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Usage>, Error> {
    Ok(Json(app.session_usage(&checked(id)?).await?))
}

/// The most sessions one `GET /v1/usage` reads.
pub(crate) const MAX_USAGE_IDS: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageQuery {
    /// Session ids, comma-separated.
    ids: String,
}

/// `GET /v1/usage?ids=a,b,c`: the usage of each session named, read at
/// once. Ids that name no session are listed as `unknown`, a session whose
/// usage cannot be read has its error in `errors`; more than
/// [`MAX_USAGE_IDS`] ids (as written: empty and repeated ones count) is
/// refused.
pub(super) async fn usage_list(
    State(app): State<App>,
    QueryArgs(q): QueryArgs<UsageQuery>,
) -> Result<Json<UsageList>, Error> {
    // Counted as written (empty and repeated ones too), as the document's
    // pattern counts them.
    let mut ids: Vec<&str> = q.ids.split(',').collect();
    if ids.len() > MAX_USAGE_IDS {
        return Err(Error::BadRequest(format!(
            "ids lists {} sessions: at most {MAX_USAGE_IDS} in one request",
            ids.len()
        )));
    }
    ids.retain(|i| !i.is_empty());
    ids.sort_unstable();
    ids.dedup();
    let reads = ids.iter().map(|id| async {
        let read = if is_valid_id(id) {
            app.session_usage(id).await
        } else {
            Err(Error::SessionNotFound((*id).to_owned()))
        };
        ((*id).to_owned(), read)
    });
    let mut out = UsageList::default();
    for (id, read) in futures::future::join_all(reads).await {
        match read {
            Ok(u) => {
                out.usage.insert(id, u);
            }
            Err(Error::SessionNotFound(_)) => out.unknown.push(id),
            Err(e) => {
                out.errors.insert(id, e.to_api().message);
            }
        }
    }
    Ok(Json(out))
}

/// `GET /v1/host`: the host's memory and CPUs, the defaults, the forge.
pub(super) async fn host(
    State(app): State<App>,
) -> Result<Json<firepit_wire::api::HostInfo>, Error> {
    Ok(Json(app.host_info()?))
}

pub(super) async fn stop(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Session>, Error> {
    Ok(Json(app.stop_session(&checked(id)?).await?))
}

pub(super) async fn start(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Session>, Error> {
    Ok(Json(app.start_session(&checked(id)?).await?))
}

pub(super) async fn destroy(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let id = checked(id)?;
    app.destroy_session(&id).await?;
    // Its share links go with it.
    app.store().delete_shares(&id)?;
    Ok(StatusCode::NO_CONTENT)
}
