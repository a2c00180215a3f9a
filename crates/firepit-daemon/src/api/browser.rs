//! `GET /v1/sessions/{id}/browser/live`: the agent's browser, live, as a
//! WebSocket of JSON text messages (never stored):
//!
//! - `{"type":"frame","format":"jpeg","data":"<base64>","width":W,"height":H,"url":"…"}`
//!   for each screencast frame (the daemon acks frames to Chromium itself);
//! - `{"type":"page","url":"…","title":"…"}` when the page changes;
//! - `{"type":"closed","reason":"…"}` when the browser is not running
//!   (`"not started"`) or goes away. The socket stays open and frames
//!   follow once a browser starts.
//!
//! A viewer gets the page as it is first (a still frame: the screencast
//! sends frames only when the page paints), then the screencast's frames.
//! Opening the socket never starts a browser. The screencast runs while at
//! least one viewer is connected.

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, State};
use axum::response::Response;
use firepit_browser::{Browser, Frame, Observation};
use serde_json::json;
use std::sync::Arc;

use super::Upgrade;
use crate::{App, Error};

pub(super) async fn live(
    State(app): State<App>,
    Path(id): Path<String>,
    ws: Upgrade,
) -> Result<Response, Error> {
    app.store().session(&id)?;
    let guest = app.guest(&id).await?;
    let ws = ws.map_err(Error::WebSocketRequired)?;
    let browser = app.browser(&id, &guest);
    Ok(ws.on_upgrade(move |socket| view(socket, browser)))
}

async fn send(socket: &mut WebSocket, v: serde_json::Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

/// Whether the client is still there (false: it closed).
fn client_open(msg: Option<Result<Message, axum::Error>>) -> bool {
    !matches!(msg, Some(Ok(Message::Close(_))) | None | Some(Err(_)))
}

/// The contract's `frame` message.
fn frame_message(f: &Frame) -> serde_json::Value {
    json!({"type": "frame", "format": "jpeg", "data": f.data, "width": f.width, "height": f.height, "url": f.url})
}

async fn view(mut socket: WebSocket, browser: Arc<Browser>) {
    let mut current = browser.current();
    let mut had_one = false;
    loop {
        let page = current.borrow_and_update().clone();
        match page {
            None => {
                let reason = if had_one { "stopped" } else { "not started" };
                if !send(&mut socket, json!({"type": "closed", "reason": reason})).await {
                    return;
                }
            }
            Some(page) => {
                had_one = true;
                let mut obs = page.observe();
                let cast = page.screencast().await;
                let (url, title) = page.location();
                if !send(
                    &mut socket,
                    json!({"type": "page", "url": url, "title": title}),
                )
                .await
                {
                    return;
                }
                if let Err(e) = &cast {
                    let reason = format!("the screencast did not start: {e}");
                    if !send(&mut socket, json!({"type": "closed", "reason": reason})).await {
                        return;
                    }
                }
                // The page as it is now: the screencast sends frames only
                // when the page paints, and it may already stand still.
                if let Ok(f) = page.still_frame().await
                    && !send(&mut socket, frame_message(&f)).await
                {
                    return;
                }
                loop {
                    tokio::select! {
                        o = obs.recv() => match o {
                            Ok(Observation::Frame(f)) => {
                                if !send(&mut socket, frame_message(&f)).await { return; }
                            }
                            Ok(Observation::Page { url, title }) => {
                                if !send(&mut socket, json!({"type": "page", "url": url, "title": title})).await { return; }
                            }
                            Ok(Observation::Report(_)) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(_) => break,
                        },
                        reason = page.closed() => {
                            if !send(&mut socket, json!({"type": "closed", "reason": reason})).await { return; }
                            break;
                        }
                        msg = socket.recv() => if !client_open(msg) { return; },
                    }
                }
                drop(cast);
            }
        }
        tokio::select! {
            r = current.changed() => if r.is_err() { return; },
            msg = socket.recv() => if !client_open(msg) { return; },
        }
    }
}
