//! `/v1/sessions/{id}/events`: a session's event log, from a cursor.
//!
//! `GET …/events?since=N` answers the stored events after `N` as a JSON array
//! (at most `limit`), or with `follow=true` as NDJSON that goes on with live
//! events. With `Accept: text/event-stream` it is Server-Sent Events (`id:` is
//! the `seq`, `event:` the type, `data:` the JSON event; `Last-Event-ID` is the
//! cursor when a client reconnects; a keep-alive comment every 15 s), which
//! follows forever. `GET …/events/ws?since=N` is a WebSocket with one JSON
//! event per text frame. See [`crate::events`] for why nothing is missed or
//! repeated.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use firepit_wire::events::Event;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use super::{QueryArgs, Upgrade, ndjson};
use crate::{App, Error};

/// Time between SSE keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events a JSON answer holds unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    #[serde(default)]
    since: Option<u64>,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    limit: Option<usize>,
}

/// The events after the cursor and then live ones, ending (with a log line)
/// at the first error.
fn live(app: &App, id: &str, since: u64) -> impl Stream<Item = Event> + Send + use<> {
    let id = id.to_owned();
    app.events()
        .subscribe(&id, since)
        .take_while(move |r| {
            if let Err(e) = r {
                tracing::warn!(session = %id, error = %crate::error::chain(e), "event stream ended");
            }
            std::future::ready(r.is_ok())
        })
        .filter_map(|r| std::future::ready(r.ok()))
}

fn sse_event(e: &Event) -> sse::Event {
    let json = serde_json::to_value(e).expect("events serialise");
    let kind = json["type"].as_str().unwrap_or("event").to_owned();
    sse::Event::default()
        .id(e.seq.to_string())
        .event(kind)
        .data(json.to_string())
}

pub(super) async fn list(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    app.store().session(&id)?;
    let wants_sse = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    // Checked whether or not it is used, like every other field.
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Error::BadRequest("Last-Event-ID must be an event's seq".into()))?,
        ),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit must be from 1 to {MAX_LIMIT}"
        )));
    }
    if wants_sse {
        let since = last_event_id.or(q.since).unwrap_or(0);
        let stream = live(&app, &id, since).map(|e| Ok::<_, Infallible>(sse_event(&e)));
        return Ok(Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
            .into_response());
    }
    let since = q.since.unwrap_or(0);
    if q.follow {
        return Ok(ndjson(live(&app, &id, since)));
    }
    Ok(Json(app.events().list(&id, since, limit)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WsQuery {
    #[serde(default)]
    since: Option<u64>,
}

pub(super) async fn websocket(
    State(app): State<App>,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<WsQuery>,
    ws: Upgrade,
) -> Result<Response, Error> {
    app.store().session(&id)?;
    let ws = ws.map_err(Error::WebSocketRequired)?;
    let events = live(&app, &id, q.since.unwrap_or(0));
    Ok(ws.on_upgrade(move |socket| relay(socket, events)))
}

async fn relay(mut socket: WebSocket, events: impl Stream<Item = Event> + Send + 'static) {
    let mut events = std::pin::pin!(events);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(e) => {
                    let text = serde_json::to_string(&e).expect("events serialise");
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {} // nothing is expected from the client
            },
        }
    }
}
