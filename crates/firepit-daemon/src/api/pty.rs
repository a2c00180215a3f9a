//! `/v1/sessions/{id}/pty`: list PTYs, and attach to one over a WebSocket.
//!
//! On the socket, binary frames carry raw terminal bytes both ways; text
//! frames carry [`PtyControl`] JSON (resize from the client, exit from the
//! daemon). A new client first receives the scrollback, then live output; every
//! client attached to a PTY sees the same stream. Attaching to a name that does
//! not exist creates a PTY running a login shell.

use axum::Json;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, State};
use axum::response::Response;
use firepit_guest_client::{Pty, PtyEvent};
use firepit_wire::api::{PtyControl, PtyInfo};
use firepit_wire::guest::PtyCreate;

use super::{Upgrade, valid};
use crate::{App, Error};

/// Largest frame a client may send.
const MAX_FRAME: usize = 1 << 20;

pub(super) async fn list(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Vec<PtyInfo>>, Error> {
    Ok(Json(
        app.guest(&id)
            .await?
            .pty_list()
            .await
            .map_err(Error::Guest)?,
    ))
}

pub(super) async fn attach(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
    ws: Upgrade,
) -> Result<Response, Error> {
    valid::pty_name(&name)?;
    let guest = app.guest(&id).await?;
    let ws = ws.map_err(Error::WebSocketRequired)?;
    let pty = guest
        .pty_attach(&name, Some(PtyCreate::default()))
        .await
        .map_err(Error::Guest)?;
    Ok(ws
        .max_frame_size(MAX_FRAME)
        .max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| relay(socket, pty)))
}

async fn relay(mut socket: WebSocket, mut pty: Pty) {
    loop {
        tokio::select! {
            event = pty.next_event() => match event {
                Ok(Some(PtyEvent::Output(bytes))) => {
                    if socket.send(Message::Binary(bytes)).await.is_err() {
                        return;
                    }
                }
                Ok(Some(PtyEvent::Exit(status))) => {
                    let text = serde_json::to_string(&PtyControl::Exit { status }).expect("serialises");
                    let _ = socket.send(Message::Text(text.into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "pty stream ended");
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Ok(None) => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    if pty.input(bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<PtyControl>(&text) {
                    Ok(PtyControl::Resize { cols, rows }) if cols > 0 && rows > 0 => {
                        let _ = pty.resize(cols, rows).await;
                    }
                    // Anything else from a client is ignored, not fatal: a
                    // terminal must survive a confused peer.
                    _ => tracing::debug!("ignoring an unknown control frame"),
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
