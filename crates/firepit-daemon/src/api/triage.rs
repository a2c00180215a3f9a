//! `/v1/triage`: triage jobs (see [`crate::triage`]): start one, list them,
//! read one, follow its progress as NDJSON.

use std::collections::VecDeque;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use firepit_wire::forge::{CreateTriage, TriageJob, TriageProgress};
use serde::Deserialize;

use super::{JsonBody, QueryArgs, ndjson, valid};
use crate::{App, Error};

pub(super) async fn create(
    State(app): State<App>,
    JsonBody(req): JsonBody<CreateTriage>,
) -> Result<(StatusCode, Json<TriageJob>), Error> {
    valid::repo(&req.repo)?;
    if let Some(image) = &req.image {
        valid::image(image)?;
    }
    Ok((StatusCode::ACCEPTED, Json(app.start_triage(req).await?)))
}

pub(super) async fn list(State(app): State<App>) -> Result<Json<Vec<TriageJob>>, Error> {
    Ok(Json(app.store().triage_jobs()?))
}

pub(super) async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<TriageJob>, Error> {
    Ok(Json(app.triage_job(&id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProgressArgs {
    /// Lines after this `seq`.
    #[serde(default)]
    since: u64,
    /// Keep streaming until the job ends (default); `false` answers what there is.
    #[serde(default = "yes")]
    follow: bool,
}

fn yes() -> bool {
    true
}

struct Follow {
    app: App,
    id: String,
    since: u64,
    follow: bool,
    ended: bool,
    buf: VecDeque<TriageProgress>,
    watch: tokio::sync::watch::Receiver<u64>,
}

pub(super) async fn progress(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(args): QueryArgs<ProgressArgs>,
) -> Result<Response, Error> {
    let watch = app.triage_watch();
    let (first, ended) = app.triage_progress(&id, args.since)?;
    let state = Follow {
        since: first.last().map_or(args.since, |p| p.seq),
        buf: first.into(),
        app,
        id,
        follow: args.follow,
        ended,
        watch,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(p) = s.buf.pop_front() {
                return Some((p, s));
            }
            if s.ended || !s.follow {
                return None;
            }
            // Wake on a change, or look again after a while anyway.
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), s.watch.changed()).await;
            match s.app.triage_progress(&s.id, s.since) {
                Ok((more, ended)) => {
                    s.since = more.last().map_or(s.since, |p| p.seq);
                    s.buf.extend(more);
                    s.ended = ended;
                }
                Err(_) => return None,
            }
        }
    });
    Ok(ndjson(stream))
}
