//! `POST /v1/sessions/{id}/exec`: runs a command and streams its output as
//! NDJSON [`ExecEvent`] lines, ending with its exit status.
//!
//! When the client goes away mid-stream the response stream is dropped, and with
//! it the guest's `Exec` handle, which kills the command's process group.

use axum::extract::{Path, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use firepit_guest_client::ExecEvent as GuestEvent;
use firepit_wire::api::{ExecEvent, ExecRequest};
use firepit_wire::guest;

use super::{JsonBody, ndjson, valid};
use crate::{App, Error};

pub(super) async fn exec(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ExecRequest>,
) -> Result<Response, Error> {
    valid::command(&req.command)?;
    valid::env(&req.env)?;
    valid::cwd(req.cwd.as_deref())?;
    if req.timeout_ms == Some(0) {
        return Err(Error::BadRequest("timeout_ms must be at least 1".into()));
    }
    let stdin = req
        .stdin_base64
        .as_deref()
        .map(|s| B64.decode(s))
        .transpose()
        .map_err(|e| Error::BadRequest(format!("stdin_base64 is not valid base64: {e}")))?;
    let guest = app.guest(&id).await?;
    let exec = guest
        .exec(guest::ExecRequest {
            command: req.command,
            env: req.env,
            cwd: req.cwd,
            stdin: stdin.is_some(),
            timeout_ms: req.timeout_ms,
        })
        .await
        .map_err(Error::starting)?;
    if let Some(input) = stdin {
        exec.stdin_write(Bytes::from(input))
            .await
            .map_err(Error::Guest)?;
        exec.stdin_close().await.map_err(Error::Guest)?;
    }
    let stream = futures::stream::unfold(Some(exec), |state| async move {
        let mut exec = state?;
        let event = match exec.next_event().await {
            Ok(Some(GuestEvent::Stdout(b))) => ExecEvent::Stdout {
                data: B64.encode(b),
            },
            Ok(Some(GuestEvent::Stderr(b))) => ExecEvent::Stderr {
                data: B64.encode(b),
            },
            Ok(Some(GuestEvent::Exit(status))) => {
                return Some((ExecEvent::Exit { status }, None));
            }
            Err(e) => {
                return Some((
                    ExecEvent::Error {
                        error: Error::Guest(e).to_api(),
                    },
                    None,
                ));
            }
            Ok(None) => {
                let error = firepit_wire::api::ApiError {
                    code: "guest_error".into(),
                    message: "the machine went away before the command ended".into(),
                };
                return Some((ExecEvent::Error { error }, None));
            }
        };
        Some((event, Some(exec)))
    });
    Ok(ndjson(stream))
}
