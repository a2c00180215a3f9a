//! The `events` table: each session's event log, keyed by (session, seq).
//!
//! A row's `body` is the event's [`EventKind`] as JSON (with its `type` tag);
//! `seq` and `time_ms` are columns. Appending assigns the next `seq` of the
//! session in the same transaction as the insert, so sequence numbers have no
//! gaps and no duplicates whoever appends.

use std::collections::BTreeSet;
use std::net::IpAddr;

use firepit_wire::events::{Event, EventKind};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::Store;
use crate::Error;

impl Store {
    /// Appends an event to `session`'s log with the next sequence number and
    /// returns it. A session the store does not know is
    /// [`Error::SessionNotFound`]: no event outlives its session.
    pub fn append_event(
        &self,
        session: &str,
        time_ms: i64,
        kind: &EventKind,
    ) -> Result<Event, Error> {
        let body = serde_json::to_string(kind).expect("event kinds serialise");
        let mut conn = self.conn.lock().expect("store lock");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::Store)?;
        let known = tx
            .query_row(
                "SELECT 1 FROM sessions WHERE id = ?1",
                [session],
                |_| Ok(()),
            )
            .optional()
            .map_err(Error::Store)?;
        if known.is_none() {
            return Err(Error::SessionNotFound(session.to_owned()));
        }
        let seq: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE session = ?1",
                [session],
                |r| r.get(0),
            )
            .map_err(Error::Store)?;
        tx.execute(
            "INSERT INTO events (session, seq, time_ms, body) VALUES (?1, ?2, ?3, ?4)",
            params![session, seq, time_ms, body],
        )
        .map_err(Error::Store)?;
        tx.commit().map_err(Error::Store)?;
        Ok(Event {
            seq: seq as u64,
            session: session.to_owned(),
            time_ms,
            kind: kind.clone(),
        })
    }

    /// The seq of `session`'s newest event (0 when it has none).
    pub fn last_event_seq(&self, session: &str) -> Result<u64, Error> {
        let conn = self.conn.lock().expect("store lock");
        let seq: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE session = ?1",
                params![session],
                |r| r.get(0),
            )
            .map_err(Error::Store)?;
        Ok(seq as u64)
    }

    /// `session`'s events with `seq > since`, oldest first, at most `limit`.
    pub fn events_after(
        &self,
        session: &str,
        since: u64,
        limit: usize,
    ) -> Result<Vec<Event>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn
            .prepare_cached(
                "SELECT session, seq, time_ms, body FROM events
                 WHERE session = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(Error::Store)?;
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![session, since, limit], row_to_event)
            .map_err(Error::Store)?;
        rows.collect::<Result<_, _>>().map_err(Error::Store)
    }

    /// The ports `session`'s log says are open: every `port_opened` not
    /// followed by a `port_closed` of the same address and port.
    pub fn open_ports(&self, session: &str) -> Result<BTreeSet<(IpAddr, u16)>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn
            .prepare_cached(
                "SELECT session, seq, time_ms, body FROM events
                 WHERE session = ?1
                   AND json_extract(body, '$.type') IN ('port_opened', 'port_closed')
                 ORDER BY seq",
            )
            .map_err(Error::Store)?;
        let rows = stmt
            .query_map([session], row_to_event)
            .map_err(Error::Store)?;
        let mut open = BTreeSet::new();
        for event in rows {
            match event.map_err(Error::Store)?.kind {
                EventKind::PortOpened { port, addr, .. } => {
                    if let Ok(addr) = addr.parse() {
                        open.insert((addr, port));
                    }
                }
                EventKind::PortClosed { port, addr } => {
                    if let Ok(addr) = addr.parse::<IpAddr>() {
                        open.remove(&(addr, port));
                    }
                }
                _ => {}
            }
        }
        Ok(open)
    }

    /// Forgets `session`'s events.
    pub fn delete_events(&self, session: &str) -> Result<(), Error> {
        let conn = self.conn.lock().expect("store lock");
        conn.execute("DELETE FROM events WHERE session = ?1", [session])
            .map_err(Error::Store)?;
        Ok(())
    }
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let body: String = row.get(3)?;
    let kind = serde_json::from_str(&body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Event {
        session: row.get(0)?,
        seq: row.get::<_, i64>(1)? as u64,
        time_ms: row.get(2)?,
        kind,
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    fn store_with(ids: &[&str]) -> Store {
        crate::store::test_store(ids)
    }

    fn note(text: &str) -> EventKind {
        EventKind::Note { text: text.into() }
    }

    #[test]
    fn seqs_count_per_session_from_one() {
        let store = store_with(&["a", "b"]);
        assert_eq!(store.append_event("a", 10, &note("1")).unwrap().seq, 1);
        assert_eq!(store.append_event("a", 11, &note("2")).unwrap().seq, 2);
        assert_eq!(store.append_event("b", 12, &note("x")).unwrap().seq, 1);
        assert_eq!(store.append_event("a", 13, &note("3")).unwrap().seq, 3);
        let all = store.events_after("a", 0, 100).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(all[1].kind, note("2"));
        assert_eq!(all[1].time_ms, 11);
        assert_eq!(all[1].session, "a");
        let later = store.events_after("a", 1, 1).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].seq, 2);
        assert!(store.events_after("a", 3, 100).unwrap().is_empty());
    }

    #[test]
    fn unknown_sessions_get_no_events_and_deleting_forgets_them() {
        let store = store_with(&["a"]);
        assert!(matches!(
            store.append_event("nope", 1, &note("x")),
            Err(Error::SessionNotFound(_))
        ));
        store.append_event("a", 1, &note("x")).unwrap();
        store.delete_session("a").unwrap();
        assert!(store.events_after("a", 0, 100).unwrap().is_empty());
        assert!(matches!(
            store.append_event("a", 2, &note("y")),
            Err(Error::SessionNotFound(_))
        ));
    }

    #[test]
    fn open_ports_follow_the_log() {
        let store = store_with(&["a"]);
        let opened = |port: u16, addr: &str| EventKind::PortOpened {
            port,
            addr: addr.into(),
            url: String::new(),
        };
        store
            .append_event("a", 1, &opened(8000, "127.0.0.1"))
            .unwrap();
        store
            .append_event("a", 2, &opened(8001, "0.0.0.0"))
            .unwrap();
        store.append_event("a", 3, &note("x")).unwrap();
        store
            .append_event(
                "a",
                4,
                &EventKind::PortClosed {
                    port: 8000,
                    addr: "127.0.0.1".into(),
                },
            )
            .unwrap();
        let open = store.open_ports("a").unwrap();
        assert_eq!(
            open.into_iter().collect::<Vec<_>>(),
            [("0.0.0.0".parse().unwrap(), 8001)]
        );
    }

    #[test]
    fn concurrent_appends_have_no_gaps() {
        let store = std::sync::Arc::new(store_with(&["a"]));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|i| {
                            store
                                .append_event("a", i, &note(&format!("{t}-{i}")))
                                .unwrap()
                                .seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    }
}
