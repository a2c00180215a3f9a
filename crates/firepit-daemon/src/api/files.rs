//! `/v1/sessions/{id}/files`: read, write, list, stat, mkdir, remove, rename;
//! a folder as a tar archive (`files/archive`) and search across files
//! (`files/search`), both by tools in the machine ([`crate::workspace`]).
//!
//! Paths are absolute paths inside the machine; the guest refuses `..` and
//! resolves everything inside the machine's own root, so no path reaches the
//! host. Reads and writes stream; a write that fails or is cut off leaves the
//! old file as it was.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use firepit_wire::api::{DirEntry, FileKind, FileStat, MkdirRequest, RenameRequest, SearchResult};
use firepit_wire::guest::WriteOptions;
use futures::StreamExt;
use serde::Deserialize;

use super::{JsonBody, QueryArgs, valid};
use crate::{App, Error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PathQuery {
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteQuery {
    path: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    parents: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoveQuery {
    path: String,
    #[serde(default)]
    recursive: bool,
}

pub(super) async fn read(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<PathQuery>,
) -> Result<Response, Error> {
    valid::path("path", &q.path)?;
    let guest = app.guest(&id).await?;
    let reader = guest.read_file(&q.path).await.map_err(Error::Guest)?;
    let size = reader.size();
    let chunks = futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    let body = Body::from_stream(chunks);
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .body(body)
        .expect("static response parts"))
}

pub(super) async fn write(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<WriteQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Error> {
    let limit = app.config().max_upload_bytes;
    let too_large = || Error::TooLarge { limit };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(too_large());
    }
    valid::file_path(&q.path)?;
    let mode = q.mode.as_deref().map(valid::mode).transpose()?;
    let guest = app.guest(&id).await?;
    let mut writer = guest
        .write_file(
            &q.path,
            WriteOptions {
                create_parents: q.parents,
                mode,
            },
        )
        .await
        .map_err(Error::Guest)?;
    let mut stream = body.into_data_stream();
    let mut written: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("the upload broke off: {e}")))?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_large());
        }
        writer.write(chunk).await.map_err(Error::Guest)?;
    }
    writer.finish().await.map_err(Error::Guest)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn remove(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<RemoveQuery>,
) -> Result<StatusCode, Error> {
    valid::path("path", &q.path)?;
    app.guest(&id)
        .await?
        .remove(&q.path, q.recursive)
        .await
        .map_err(Error::Guest)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<PathQuery>,
) -> Result<Json<Vec<DirEntry>>, Error> {
    valid::path("path", &q.path)?;
    Ok(Json(
        app.guest(&id)
            .await?
            .list_dir(&q.path)
            .await
            .map_err(Error::Guest)?,
    ))
}

pub(super) async fn stat(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<PathQuery>,
) -> Result<Json<FileStat>, Error> {
    valid::path("path", &q.path)?;
    Ok(Json(
        app.guest(&id)
            .await?
            .stat(&q.path)
            .await
            .map_err(Error::Guest)?,
    ))
}

pub(super) async fn mkdir(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<MkdirRequest>,
) -> Result<StatusCode, Error> {
    valid::path("path", &req.path)?;
    app.guest(&id)
        .await?
        .mkdir(&req.path, req.parents)
        .await
        .map_err(Error::Guest)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn rename(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RenameRequest>,
) -> Result<StatusCode, Error> {
    valid::path("from", &req.from)?;
    valid::path("to", &req.to)?;
    app.guest(&id)
        .await?
        .rename(&req.from, &req.to)
        .await
        .map_err(Error::Guest)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchQuery {
    path: String,
    q: String,
}

/// Longest search text, in characters.
const MAX_QUERY: usize = 1000;

pub(super) async fn archive(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<PathQuery>,
) -> Result<Response, Error> {
    valid::path("path", &q.path)?;
    let guest = app.guest(&id).await?;
    let stat = guest.stat(&q.path).await.map_err(Error::Guest)?;
    if stat.kind != FileKind::Dir {
        // As the guest says it of a path that is not a directory: a conflict
        // with what the machine holds, not a malformed request.
        return Err(Error::Guest(firepit_guest_client::Error::Guest(
            firepit_guest_client::WireError::new(
                firepit_guest_client::ErrorKind::NotADirectory,
                format!(
                    "{} is not a folder (download a file with GET /files)",
                    q.path
                ),
            ),
        )));
    }
    let exec = guest
        .exec(crate::workspace::archive_request(&q.path))
        .await
        .map_err(Error::starting)?;
    let name = crate::workspace::archive_name(&q.path);
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from_stream(crate::workspace::stdout_stream(exec)))
        .expect("static response parts"))
}

pub(super) async fn search(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<SearchQuery>,
) -> Result<Json<SearchResult>, Error> {
    valid::path("path", &q.path)?;
    if q.q.is_empty() || q.q.chars().count() > MAX_QUERY || q.q.contains(['\0', '\n']) {
        return Err(Error::BadRequest(format!(
            "q must be 1 to {MAX_QUERY} bytes of one line"
        )));
    }
    let guest = app.guest(&id).await?;
    Ok(Json(crate::workspace::search(&guest, &q.path, &q.q).await?))
}
