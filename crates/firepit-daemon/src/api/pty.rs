//! `/v1/sessions/{id}/pty`: list PTYs, and attach to one over a WebSocket.
//!
//! On the socket, binary frames carry raw terminal bytes both ways; text
//! frames carry [`PtyControl`] JSON (resize from the client, exit from the
//! daemon). A new client first receives the scrollback, then live output; every
//! client attached to a PTY sees the same stream. Attaching to a name that does
//! not exist creates a PTY running a login shell. A client attaching to `main`
//! gets the history kept from before the session's last stop first
//! (`crate::scrollback`). `DELETE` closes a PTY (its process group killed);
//! `main`, the shared shell, cannot be closed.
//!
//! Nothing queues for a slow client: the relay sends one message at a time and reads
//! the guest only as the socket takes what it sent, so the guest's flow control holds
//! the output. A client that falls too far behind the PTY (the guest's `Overrun`) or
//! takes nothing for [`STALL`] is sent a last line saying so and a close frame
//! (1013, try again later) with the reason; the PTY runs on for the others, and a
//! client that attaches again gets the scrollback.

use axum::Json;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use axum::extract::{Path, State};
use axum::response::Response;
use firepit_guest_client::{ErrorKind, Pty, PtyEvent};
use firepit_wire::api::{PtyControl, PtyInfo};
use firepit_wire::guest::PtyCreate;

use super::{Upgrade, valid};
use crate::{App, Error, scrollback};
use axum::http::StatusCode;

/// Largest frame a client may send.
const MAX_FRAME: usize = 1 << 20;
/// How long one message may wait for a client that takes nothing before it is dropped.
const STALL: Duration = Duration::from_secs(60);
/// The close reason for a client that fell behind (at most 123 bytes).
const BEHIND: &str = "this terminal fell too far behind its output; reconnect to go on";

/// Sends `msg` unless the client takes nothing for [`STALL`]; false when it is gone.
async fn send(socket: &mut WebSocket, msg: Message) -> bool {
    matches!(
        tokio::time::timeout(STALL, socket.send(msg)).await,
        Ok(Ok(()))
    )
}

/// Tells a client that fell behind why it is dropped, and closes its socket.
async fn drop_behind(socket: &mut WebSocket) {
    let line = format!("\r\n\x1b[2m[firepit: {BEHIND}]\x1b[0m\r\n");
    if send(socket, Message::Binary(line.into())).await {
        let frame = CloseFrame {
            code: close_code::AGAIN,
            reason: BEHIND.into(),
        };
        let _ = send(socket, Message::Close(Some(frame))).await;
    }
}

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
    let history = if name == scrollback::MAIN {
        let app = app.clone();
        tokio::task::spawn_blocking(move || scrollback::replay(&app, &id)).await?
    } else {
        Vec::new()
    };
    Ok(ws
        .max_frame_size(MAX_FRAME)
        .max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| relay(socket, pty, history)))
}

pub(super) async fn close(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    valid::pty_name(&name)?;
    if name == scrollback::MAIN {
        return Err(Error::MainTerminal);
    }
    app.guest(&id)
        .await?
        .pty_close(&name)
        .await
        .map_err(Error::Guest)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn relay(mut socket: WebSocket, mut pty: Pty, history: Vec<u8>) {
    if !history.is_empty() && !send(&mut socket, Message::Binary(history.into())).await {
        return;
    }
    loop {
        tokio::select! {
            event = pty.next_event() => match event {
                Ok(Some(PtyEvent::Output(bytes))) => {
                    if !send(&mut socket, Message::Binary(bytes)).await {
                        return;
                    }
                }
                Ok(Some(PtyEvent::Exit(status))) => {
                    let text = serde_json::to_string(&PtyControl::Exit { status }).expect("serialises");
                    if send(&mut socket, Message::Text(text.into())).await {
                        let _ = send(&mut socket, Message::Close(None)).await;
                    }
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Overrun => {
                    tracing::debug!(error = %e, "a terminal client fell behind");
                    drop_behind(&mut socket).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "pty stream ended");
                    let _ = send(&mut socket, Message::Close(None)).await;
                    return;
                }
                Ok(None) => {
                    let _ = send(&mut socket, Message::Close(None)).await;
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
