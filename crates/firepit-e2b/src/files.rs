//! envd's plain HTTP routes: `GET /health`, and `/files` (download, and
//! upload as `application/octet-stream` or `multipart/form-data`), through
//! the guest's file transfers.
//!
//! Both directions stream with the guest's flow control: a download is read
//! from the machine as the client takes it, an upload written as it arrives
//! (within the daemon's upload limit). Errors are `{"code": <status>,
//! "message"}` like envd's.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use firepit_guest_client::{GuestClient, WriteOptions};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::multipart::{self, Multipart};
use crate::users::{self, Account, Who};
use crate::{E2b, Error, Sandbox, abs_path, acting_as, home_of, sandbox_of};

/// `GET /health`: 204 while the sandbox runs, 502 "was not found" otherwise
/// (the SDK's `is_running` reads a 502 as stopped).
pub async fn health(State(e2b): State<E2b>, headers: HeaderMap) -> Response {
    let sandbox = match sandbox_of(&headers, &e2b) {
        Ok(s) => s,
        Err(Error::NotFound(id)) => return Error::NotRunning(id).into_response(),
        Err(e) => return e.into_response(),
    };
    match e2b.host().session(&sandbox.id) {
        Ok(v) if v.running => StatusCode::NO_CONTENT.into_response(),
        _ => Error::NotRunning(sandbox.id).into_response(),
    }
}

/// The query of `/files`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FileQuery {
    path: Option<String>,
    /// The user the transfer is for (`root`, the default, or `user`): a
    /// file written for `user` is theirs, and relative paths start at the
    /// user's home.
    username: Option<String>,
}

/// `GET /files?path=`: the file's bytes.
pub async fn download(
    State(e2b): State<E2b>,
    headers: HeaderMap,
    Query(q): Query<FileQuery>,
) -> Result<Response, Error> {
    let sandbox = sandbox_of(&headers, &e2b)?;
    let who = Who::named(q.username.as_deref())?;
    let guest = sandbox.guest(&e2b).await?;
    let account = acting_as(&e2b, &sandbox, &guest, who).await?;
    let path = abs_path(q.path.as_deref().unwrap_or(""), home_of(account.as_ref()))?;
    let reader = guest
        .read_file(&path)
        .await
        .map_err(|e| not_found(e, &path))?;
    let body = futures::stream::unfold(Some(reader), |r| async move {
        let mut r = r?;
        match r.next_chunk().await {
            Ok(Some(b)) => Some((Ok::<_, std::io::Error>(b), Some(r))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response())
}

fn not_found(e: firepit_guest_client::Error, path: &str) -> Error {
    if e.kind() == firepit_wire::guest::ErrorKind::NotFound {
        Error::Missing(format!("path {path} not found"))
    } else {
        Error::Guest(e)
    }
}

fn written(path: &str) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    json!({ "name": name, "type": "file", "path": path })
}

/// Writes one file from a stream of chunks, within `limit` bytes; for
/// `account`, the file and the directories made for it are given to it.
async fn write_one<S>(
    guest: &GuestClient,
    path: &str,
    mut data: S,
    limit: u64,
    account: Option<&Account>,
) -> Result<(), Error>
where
    S: Stream<Item = Result<Option<Bytes>, Error>> + Unpin,
{
    let made = match account {
        Some(_) => users::missing_parents(guest, path).await,
        None => Vec::new(),
    };
    let mut w = guest
        .write_file(
            path,
            WriteOptions {
                create_parents: true,
                mode: None,
            },
        )
        .await?;
    let mut total = 0u64;
    while let Some(chunk) = data.next().await {
        let Some(chunk) = chunk? else { break };
        total += chunk.len() as u64;
        if total > limit {
            // Dropping the writer aborts the transfer.
            return Err(Error::TooLarge { limit });
        }
        w.write(chunk).await?;
    }
    w.finish().await?;
    if let Some(a) = account {
        let mut paths = made;
        paths.push(path.to_owned());
        users::chown(guest, a, &paths).await?;
    }
    Ok(())
}

/// `POST /files?path=`: writes the body (octet-stream) or each file part
/// (multipart: the part's file name is its path unless `path` is given),
/// making missing directories; answers the files written.
pub async fn upload(
    State(e2b): State<E2b>,
    Query(q): Query<FileQuery>,
    req: Request,
) -> Result<Json<Vec<Value>>, Error> {
    let (parts, body) = req.into_parts();
    let sandbox: Sandbox = sandbox_of(&parts.headers, &e2b)?;
    if parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(Error::Unsupported("a compressed upload (Content-Encoding)"));
    }
    let limit = e2b.host().max_upload_bytes();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let who = Who::named(q.username.as_deref())?;
    let guest = sandbox.guest(&e2b).await?;
    let account = acting_as(&e2b, &sandbox, &guest, who).await?;
    let home = home_of(account.as_ref()).to_owned();
    if let Some(boundary) = multipart::boundary(&content_type) {
        let mut form = Multipart::new(body.into_data_stream(), &boundary);
        let mut done = Vec::new();
        while let Some(part) = form.next_part().await? {
            if part.name != "file" {
                continue;
            }
            let target = match (&q.path, &part.filename) {
                (Some(p), _) if done.is_empty() => p.clone(),
                (_, Some(f)) => f.clone(),
                (_, None) => {
                    return Err(Error::BadRequest(
                        "a file part has no file name and no path was given".into(),
                    ));
                }
            };
            let path = abs_path(&target, &home)?;
            let chunks = futures::stream::unfold(&mut form, |f| async move {
                match f.next_chunk().await {
                    Ok(Some(b)) => Some((Ok(Some(b)), f)),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), f)),
                }
            });
            write_one(&guest, &path, Box::pin(chunks), limit, account.as_ref()).await?;
            done.push(written(&path));
        }
        return Ok(Json(done));
    }
    let path = abs_path(
        q.path
            .as_deref()
            .ok_or_else(|| Error::BadRequest("give the file's path as ?path=".into()))?,
        &home,
    )?;
    let chunks = body.into_data_stream().map(|c| {
        c.map(Some)
            .map_err(|e| Error::BadRequest(format!("reading the upload failed: {e}")))
    });
    write_one(&guest, &path, chunks, limit, account.as_ref()).await?;
    Ok(Json(vec![written(&path)]))
}
