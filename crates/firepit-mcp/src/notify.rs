//! Notifications: while a client works in a session (it called a tool on it
//! or subscribed to one of its resources), a port that opens there and a
//! problem firepit finds there are sent to it as log messages
//! (`notifications/message`, which clients show or hand to their model), and
//! a subscribed `…/problems` or `…/logs/{service}` resource of that session
//! gets `notifications/resources/updated`.
//!
//! The newest protocol revision deprecates log messages (rmcp marks them so);
//! clients that negotiate the revisions before it, which is every common
//! client today, still show them, so they are used here on purpose.
//!
//! One follower task per session and connection reads the session's event
//! log from now on; it ends with the connection (its token), when the client
//! no longer takes notifications, or when the session goes away.

#![allow(deprecated)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use firepit_wire::events::{Event, EventKind};
use futures::StreamExt;
use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ResourceUpdatedNotificationParam,
};
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::host::Host;
use crate::resources;

/// The log message an event makes, if it makes one.
pub fn message(event: &Event) -> Option<(LoggingLevel, Value)> {
    let s = &event.session;
    match &event.kind {
        EventKind::PortOpened { port, addr, url } => Some((
            LoggingLevel::Info,
            json!({
                "event": "port_opened", "session": s, "port": port, "addr": addr,
                "preview_url": url,
                "text": format!("port {port} opened in session {s}: {url}"),
            }),
        )),
        EventKind::Problem {
            source,
            kind,
            summary,
            count,
            ..
        } => Some((
            LoggingLevel::Warning,
            json!({
                "event": "problem", "session": s, "source": source, "kind": kind,
                "summary": summary, "count": count, "seq": event.seq,
                "text": format!("problem in session {s} ({source}): {summary}; the problems tool has the detail"),
            }),
        )),
        _ => None,
    }
}

/// A level's place in the order of severity (debug lowest).
pub fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// The resource URIs an event changes.
pub fn updated(event: &Event) -> Vec<String> {
    let s = &event.session;
    match &event.kind {
        EventKind::Problem { source, .. } => {
            let mut v = vec![resources::problems_uri(s)];
            if let Some(service) = source.strip_prefix("service:") {
                v.push(resources::logs_uri(s, service));
            }
            v
        }
        _ => Vec::new(),
    }
}

/// Starts following `session` for `peer` until `stop`.
pub(crate) fn spawn<H: Host>(
    host: &H,
    session: &str,
    peer: Peer<RoleServer>,
    subscribed: Arc<Mutex<HashSet<String>>>,
    level: Arc<AtomicU8>,
    stop: CancellationToken,
) {
    let mut events = match host.follow(session) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(session, error = %e, "not following a session for MCP notifications");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                e = events.next() => match e {
                    Some(e) => e,
                    None => return,
                },
            };
            if let Some((l, data)) = message(&event)
                && severity(l) >= level.load(Ordering::Relaxed)
            {
                let param = LoggingMessageNotificationParam::new(l, data).with_logger("firepit");
                if peer.notify_logging_message(param).await.is_err() {
                    return;
                }
            }
            for uri in updated(&event) {
                let wanted = subscribed.lock().expect("subscribed").contains(&uri);
                if wanted
                    && peer
                        .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            seq: 7,
            session: "abc".into(),
            time_ms: 0,
            kind,
        }
    }

    #[test]
    fn ports_and_problems_make_messages() {
        let (level, data) = message(&event(EventKind::PortOpened {
            port: 8000,
            addr: "0.0.0.0".into(),
            url: "http://8000-abc.localhost:7777/".into(),
        }))
        .unwrap();
        assert_eq!(level, LoggingLevel::Info);
        assert_eq!(data["port"], 8000);
        assert_eq!(data["preview_url"], "http://8000-abc.localhost:7777/");
        let p = event(EventKind::Problem {
            source: "service:web".into(),
            kind: "python_exception".into(),
            summary: "ZeroDivisionError".into(),
            detail: "trace".into(),
            count: 1,
        });
        let (level, data) = message(&p).unwrap();
        assert_eq!(level, LoggingLevel::Warning);
        assert_eq!(data["summary"], "ZeroDivisionError");
        assert_eq!(
            updated(&p),
            vec![
                "firepit://sessions/abc/problems".to_owned(),
                "firepit://sessions/abc/logs/web".to_owned()
            ]
        );
        assert!(message(&event(EventKind::Note { text: "x".into() })).is_none());
    }
}
