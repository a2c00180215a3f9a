//! The store: sessions in SQLite, in the data directory.
//!
//! One connection behind a mutex; every call is a short statement, so callers
//! run it inline. The schema is versioned with `PRAGMA user_version` and
//! migrated forward on open. Each table's queries live in a file of their own
//! (`events.rs`, `shares.rs`, `services.rs`); sessions are here.

use std::path::Path;
use std::sync::Mutex;

use firepit_wire::api::{Limits, NetworkMode, Session, SessionState};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;

mod deadlines;
mod events;
mod forge;
mod labels;
pub(crate) mod services;
pub(crate) mod shares;

const SCHEMA: &[&str] = &[
    // 1: sessions
    "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        image TEXT NOT NULL,
        state TEXT NOT NULL,
        memory_bytes INTEGER,
        cpus REAL,
        pids INTEGER,
        network TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        error TEXT
    ) STRICT;",
    // 2: the session event log (see `events.rs`)
    "CREATE TABLE events (
        session TEXT NOT NULL,
        seq INTEGER NOT NULL,
        time_ms INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (session, seq)
    ) STRICT, WITHOUT ROWID;",
    // 3: preview share links (see `shares.rs`)
    "CREATE TABLE shares (
        id TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        port INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX shares_by_session ON shares (session);",
    // 4: forge: repositories of sessions, triage jobs (see `forge.rs`)
    "CREATE TABLE session_repos (
        session TEXT NOT NULL,
        repo TEXT NOT NULL,
        branch TEXT,
        PRIMARY KEY (session, repo)
    ) STRICT;
    CREATE TABLE triage_jobs (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        body TEXT NOT NULL
    ) STRICT;
    CREATE TABLE triage_progress (
        job TEXT NOT NULL,
        seq INTEGER NOT NULL,
        time_ms INTEGER NOT NULL,
        issue INTEGER,
        text TEXT NOT NULL,
        PRIMARY KEY (job, seq)
    ) STRICT, WITHOUT ROWID;",
    // 5: disk limits (NULL: a session made before them, whose machine has none)
    "ALTER TABLE sessions ADD COLUMN disk_bytes INTEGER;",
    // 6: lists in creation order read an index, not a sort of every row
    // (the session list's pages start where the last one ended)
    "CREATE INDEX sessions_by_created ON sessions (created_at, id);
    CREATE INDEX triage_jobs_by_created ON triage_jobs (created_at, id);",
    // 7: timeouts: when the daemon stops a session (NULL: never; see `deadlines.rs`)
    "ALTER TABLE sessions ADD COLUMN stop_at INTEGER;",
    // 8: names and labels (a JSON object of strings; NULL: none), see
    // `labels.rs`; where a share link lands (NULL: `/`)
    "ALTER TABLE sessions ADD COLUMN name TEXT;
    ALTER TABLE sessions ADD COLUMN labels TEXT;
    ALTER TABLE shares ADD COLUMN path TEXT;",
    // 9: services kept per session, started again with it (see `services.rs`)
    "CREATE TABLE services (
        session TEXT NOT NULL,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        autostart INTEGER NOT NULL,
        PRIMARY KEY (session, name)
    ) STRICT, WITHOUT ROWID;",
    // 10: labels as rows, one per label, found through an index in the
    // list's order (see `labels.rs`); filled from the JSON column, which
    // stays what a session's labels are read back from. A column that is
    // not a JSON object of strings (written by hand) reads as no labels, so
    // it gets no rows.
    "CREATE TABLE session_labels (
        session TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (session, key)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX session_labels_by_value ON session_labels (key, value, created_at, session);
    WITH o AS (SELECT id, created_at, CASE WHEN json_valid(labels)
            THEN CASE WHEN json_type(labels) = 'object' THEN labels END END AS obj
        FROM sessions)
    INSERT OR REPLACE INTO session_labels (session, key, value, created_at)
        SELECT o.id, j.key, j.value, o.created_at FROM o, json_each(o.obj) AS j
        WHERE NOT EXISTS (SELECT 1 FROM json_each(o.obj) WHERE type != 'text');",
];

/// The daemon's embedded database.
pub struct Store {
    pub(crate) conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store, Error> {
        let conn = Connection::open(path).map_err(Error::Store)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(Error::Store)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(Error::Store)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(Error::Store)?;
        let store = Store {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Store, Error> {
        let store = Store {
            conn: Mutex::new(Connection::open_in_memory().map_err(Error::Store)?),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), Error> {
        let mut conn = self.conn.lock().expect("store lock");
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(Error::Store)?;
        if version > SCHEMA.len() {
            return Err(Error::StoreTooNew {
                found: version,
                known: SCHEMA.len(),
            });
        }
        let tx = conn.transaction().map_err(Error::Store)?;
        for (i, step) in SCHEMA.iter().enumerate().skip(version) {
            tx.execute_batch(step).map_err(Error::Store)?;
            tx.pragma_update(None, "user_version", i + 1)
                .map_err(Error::Store)?;
        }
        tx.commit().map_err(Error::Store)
    }

    /// Records a new session (its row and its labels' rows, together).
    pub fn insert_session(&self, s: &Session) -> Result<(), Error> {
        let mut conn = self.conn.lock().expect("store lock");
        let tx = conn.transaction().map_err(Error::Store)?;
        insert_session(&tx, s)?;
        tx.commit().map_err(Error::Store)
    }

    /// Sets a session's state (and error, cleared when `None`).
    pub fn set_state(
        &self,
        id: &str,
        state: SessionState,
        error: Option<&str>,
    ) -> Result<(), Error> {
        let conn = self.conn.lock().expect("store lock");
        let n = conn
            .execute(
                "UPDATE sessions SET state = ?2, error = ?3 WHERE id = ?1",
                params![id, state.as_str(), error],
            )
            .map_err(Error::Store)?;
        if n == 0 {
            return Err(Error::SessionNotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Forgets a session, its labels and its event log.
    pub fn delete_session(&self, id: &str) -> Result<(), Error> {
        let mut conn = self.conn.lock().expect("store lock");
        let tx = conn.transaction().map_err(Error::Store)?;
        tx.execute("DELETE FROM events WHERE session = ?1", params![id])
            .map_err(Error::Store)?;
        tx.execute("DELETE FROM session_labels WHERE session = ?1", params![id])
            .map_err(Error::Store)?;
        tx.execute("DELETE FROM sessions WHERE id = ?1", params![id])
            .map_err(Error::Store)?;
        tx.commit().map_err(Error::Store)
    }

    /// One session.
    pub fn session(&self, id: &str) -> Result<Session, Error> {
        let conn = self.conn.lock().expect("store lock");
        conn.query_row(
            &format!("{SELECT} WHERE id = ?1"),
            params![id],
            row_to_session,
        )
        .optional()
        .map_err(Error::Store)?
        .ok_or_else(|| Error::SessionNotFound(id.to_owned()))
    }

    /// All sessions, oldest first.
    pub fn sessions(&self) -> Result<Vec<Session>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn
            .prepare_cached(&format!("{SELECT} ORDER BY created_at, id"))
            .map_err(Error::Store)?;
        let rows = stmt.query_map([], row_to_session).map_err(Error::Store)?;
        rows.collect::<Result<_, _>>().map_err(Error::Store)
    }

    /// At most `limit` sessions, oldest first, after `after` (the
    /// `(created_at, id)` of the last one a client saw; `None`: from the
    /// first): one index range however many sessions there are, and a
    /// session made or removed in between moves no other across pages.
    pub fn sessions_page(
        &self,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<Session>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let (created_at, id) = after.unwrap_or((i64::MIN, ""));
        let mut stmt = conn
            .prepare_cached(&format!(
                "{SELECT} WHERE (created_at, id) > (?1, ?2) ORDER BY created_at, id LIMIT ?3"
            ))
            .map_err(Error::Store)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![created_at, id, limit], row_to_session)
            .map_err(Error::Store)?;
        rows.collect::<Result<_, _>>().map_err(Error::Store)
    }
}

/// A store in memory holding running sessions `ids`, for tests.
#[cfg(test)]
pub(crate) fn test_store(ids: &[&str]) -> Store {
    let store = Store::in_memory().unwrap();
    for id in ids {
        store
            .insert_session(&Session {
                id: (*id).into(),
                image: "minimal".into(),
                state: SessionState::Running,
                limits: Limits::default(),
                network: NetworkMode::None,
                created_at: 0,
                error: None,
                stop_at: None,
                name: None,
                labels: Default::default(),
            })
            .unwrap();
    }
    store
}

/// Writes session `s`'s row and its labels' rows in `tx`.
fn insert_session(tx: &rusqlite::Transaction<'_>, s: &Session) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO sessions (id, image, state, memory_bytes, cpus, pids, network, created_at, error, disk_bytes, stop_at, name, labels)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            s.id,
            s.image,
            s.state.as_str(),
            s.limits.memory_bytes.map(|v| v as i64),
            s.limits.cpus,
            s.limits.pids.map(|v| v as i64),
            network_name(s.network),
            s.created_at,
            s.error,
            s.limits.disk_bytes.map(|v| v as i64),
            s.stop_at,
            s.name,
            labels::to_column(&s.labels),
        ],
    )
    .map_err(Error::Store)?;
    labels::put_rows(tx, &s.id, &s.labels)
}

/// A session's columns, in the order `row_to_session` reads them.
macro_rules! session_columns {
    () => {
        "id, image, state, memory_bytes, cpus, pids, network, created_at, error, disk_bytes, stop_at, name, labels"
    };
}
use session_columns;

const SELECT: &str = concat!("SELECT ", session_columns!(), " FROM sessions");

fn network_name(n: NetworkMode) -> &'static str {
    match n {
        NetworkMode::Nat => "nat",
        NetworkMode::None => "none",
    }
}

fn row_to_session(row: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    let state: String = row.get(2)?;
    let network: String = row.get(6)?;
    Ok(Session {
        id: row.get(0)?,
        image: row.get(1)?,
        state: SessionState::parse(&state).unwrap_or(SessionState::Failed),
        limits: Limits {
            memory_bytes: row.get::<_, Option<i64>>(3)?.map(|v| v as u64),
            cpus: row.get(4)?,
            pids: row.get::<_, Option<i64>>(5)?.map(|v| v as u64),
            disk_bytes: row.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        },
        network: if network == "none" {
            NetworkMode::None
        } else {
            NetworkMode::Nat
        },
        created_at: row.get(7)?,
        error: row.get(8)?,
        stop_at: row.get(10)?,
        name: row.get(11)?,
        labels: labels::from_column(row.get(12)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, created_at: i64) -> Session {
        Session {
            id: id.into(),
            image: "minimal".into(),
            state: SessionState::Creating,
            limits: Limits {
                memory_bytes: Some(1 << 30),
                cpus: Some(0.5),
                pids: Some(512),
                disk_bytes: Some(4 << 30),
            },
            network: NetworkMode::None,
            created_at,
            error: None,
            stop_at: None,
            name: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn sessions_round_trip_and_update() {
        let store = Store::in_memory().unwrap();
        store.insert_session(&session("b", 2)).unwrap();
        store.insert_session(&session("a", 1)).unwrap();
        assert_eq!(
            store
                .sessions()
                .unwrap()
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        store
            .set_state("a", SessionState::Failed, Some("boom"))
            .unwrap();
        let a = store.session("a").unwrap();
        assert_eq!(a.state, SessionState::Failed);
        assert_eq!(a.error.as_deref(), Some("boom"));
        assert_eq!(a.limits, session("a", 1).limits);
        assert_eq!(a.network, NetworkMode::None);
        store.delete_session("a").unwrap();
        assert!(matches!(store.session("a"), Err(Error::SessionNotFound(_))));
        assert!(matches!(
            store.set_state("a", SessionState::Running, None),
            Err(Error::SessionNotFound(_))
        ));
    }

    #[test]
    fn pages_follow_creation_order_and_use_the_index() {
        let store = Store::in_memory().unwrap();
        // Two made in the same second are ordered by id.
        for (id, at) in [("c", 2), ("a", 1), ("e", 3), ("b", 2), ("d", 3)] {
            store.insert_session(&session(id, at)).unwrap();
        }
        let ids = |v: Vec<Session>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(store.sessions_page(None, 2).unwrap()), ["a", "b"]);
        assert_eq!(
            ids(store.sessions_page(Some((2, "b")), 2).unwrap()),
            ["c", "d"]
        );
        // The cursor's session may be gone: the page starts after its place.
        store.delete_session("d").unwrap();
        assert_eq!(ids(store.sessions_page(Some((3, "d")), 2).unwrap()), ["e"]);
        assert!(store.sessions_page(Some((3, "e")), 2).unwrap().is_empty());
        assert_eq!(
            ids(store.sessions_page(None, 100).unwrap()),
            ids(store.sessions().unwrap())
        );
        // The page and the whole list are read from the index, not sorted.
        let conn = store.conn.lock().unwrap();
        for sql in [
            format!("{SELECT} WHERE (created_at, id) > (1, 'a') ORDER BY created_at, id LIMIT 2"),
            format!("{SELECT} ORDER BY created_at, id"),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains("sessions_by_created"), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
        }
    }

    #[test]
    fn a_file_store_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("firepit.db");
        Store::open(&path)
            .unwrap()
            .insert_session(&session("x", 1))
            .unwrap();
        let again = Store::open(&path).unwrap();
        assert_eq!(again.session("x").unwrap().id, "x");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("firepit.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(Error::StoreTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let store = Store::in_memory().unwrap();
        store.insert_session(&session("a", 1)).unwrap();
        assert!(store.insert_session(&session("a", 1)).is_err());
    }
}
