//! Sessions' names and labels in the store: the name a column of its own,
//! the labels twice, written together in one transaction: one JSON object
//! on the session's row (`{"key":"value",…}`, NULL when there are none),
//! which is what a session's labels are read back from, and one row each in
//! `session_labels` (schema step 10), whose index
//! `(key, value, created_at, session)` finds a list's `label=key=value`
//! filter in the list's order: one index range, whatever the number of
//! sessions, labelled or not.
//!
//! **Decision (the JSON column stays):** reading a session (every list page,
//! every `GET`) takes its labels from its own row, with no join and no second
//! query; the rows exist for the filter. Every write of labels (create,
//! relabel, delete) changes both in one transaction, so they cannot differ.
//! The store has no foreign keys (`PRAGMA foreign_keys` is off), so a
//! session's label rows are deleted with it by `Store::delete_session`.

use std::collections::BTreeMap;

use rusqlite::{Transaction, params};

use super::{Store, row_to_session};
use crate::Error;
use firepit_wire::api::Session;

/// The labels as their column: NULL when there are none.
pub(super) fn to_column(labels: &BTreeMap<String, String>) -> Option<String> {
    (!labels.is_empty()).then(|| serde_json::to_string(labels).expect("strings serialise"))
}

/// The labels from their column; a value that is not an object of strings
/// (written by hand) reads as no labels.
pub(super) fn from_column(text: Option<String>) -> BTreeMap<String, String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Replaces session `id`'s label rows with `labels`, in `tx`; the session's
/// row is there (its `created_at` is carried into the rows).
pub(super) fn put_rows(
    tx: &Transaction<'_>,
    id: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), Error> {
    tx.execute("DELETE FROM session_labels WHERE session = ?1", params![id])
        .map_err(Error::Store)?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO session_labels (session, key, value, created_at)
             SELECT id, ?2, ?3, created_at FROM sessions WHERE id = ?1",
        )
        .map_err(Error::Store)?;
    for (key, value) in labels {
        insert
            .execute(params![id, key, value])
            .map_err(Error::Store)?;
    }
    Ok(())
}

/// The sessions with a label, from its index in the list's order. Only
/// `created_at` is a column of both tables: `USING` makes it one (the two
/// are equal by construction), so the session's columns read unqualified.
/// `CROSS JOIN` keeps the labels' index the outer loop.
const LABELLED: &str = concat!(
    "SELECT ",
    super::session_columns!(),
    " FROM session_labels CROSS JOIN sessions USING (created_at)
     WHERE id = session AND key = ?4 AND value = ?5
     AND (created_at, session) > (?1, ?2)
     ORDER BY created_at, session LIMIT ?3"
);

impl Store {
    /// Sets a session's name (`Some(None)` takes it away) and labels (all of
    /// them), those given; the session as it is after.
    pub fn update_session(
        &self,
        id: &str,
        name: Option<Option<&str>>,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Result<Session, Error> {
        {
            let mut conn = self.conn.lock().expect("store lock");
            let tx = conn.transaction().map_err(Error::Store)?;
            let mut changed = 1;
            if let Some(name) = name {
                changed = tx
                    .execute(
                        "UPDATE sessions SET name = ?2 WHERE id = ?1",
                        params![id, name],
                    )
                    .map_err(Error::Store)?;
            }
            if let Some(labels) = labels {
                changed = tx
                    .execute(
                        "UPDATE sessions SET labels = ?2 WHERE id = ?1",
                        params![id, to_column(labels)],
                    )
                    .map_err(Error::Store)?;
                put_rows(&tx, id, labels)?;
            }
            if changed == 0 {
                return Err(Error::SessionNotFound(id.to_owned()));
            }
            tx.commit().map_err(Error::Store)?;
        }
        self.session(id)
    }

    /// The sessions that have label `key` set to `value`, oldest first, at
    /// most `limit`, after `after` (as [`Store::sessions_page`]).
    pub fn sessions_labelled(
        &self,
        key: &str,
        value: &str,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<Session>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let (created_at, id) = after.unwrap_or((i64::MIN, ""));
        let mut stmt = conn.prepare_cached(LABELLED).map_err(Error::Store)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![created_at, id, limit, key, value], row_to_session)
            .map_err(Error::Store)?;
        rows.collect::<Result<_, _>>().map_err(Error::Store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_wire::api::{Limits, NetworkMode, SessionState};

    fn session(id: &str, at: i64, labels: &[(&str, &str)]) -> Session {
        Session {
            id: id.into(),
            image: "minimal".into(),
            state: SessionState::Running,
            limits: Limits::default(),
            network: NetworkMode::None,
            created_at: at,
            error: None,
            stop_at: None,
            name: Some(format!("name of {id}")),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    #[test]
    fn names_and_labels_round_trip_change_and_filter() {
        let store = Store::in_memory().unwrap();
        store
            .insert_session(&session("a", 1, &[("team", "web"), ("ticket.no", "7")]))
            .unwrap();
        store
            .insert_session(&session("b", 2, &[("team", "db")]))
            .unwrap();
        store.insert_session(&session("c", 3, &[])).unwrap();
        let a = store.session("a").unwrap();
        assert_eq!(a.name.as_deref(), Some("name of a"));
        assert_eq!(a.labels["ticket.no"], "7");
        assert!(store.session("c").unwrap().labels.is_empty());

        let ids = |v: Vec<Session>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.sessions_labelled("team", "web", None, 10).unwrap()),
            ["a"]
        );
        assert_eq!(
            ids(store.sessions_labelled("ticket.no", "7", None, 10).unwrap()),
            ["a"]
        );
        assert!(
            store
                .sessions_labelled("team", "x", None, 10)
                .unwrap()
                .is_empty()
        );

        // Renaming keeps the labels; new labels replace the old ones.
        let b = store
            .update_session("b", Some(Some("db work")), None)
            .unwrap();
        assert_eq!(b.name.as_deref(), Some("db work"));
        assert_eq!(b.labels["team"], "db");
        let relabelled: BTreeMap<String, String> = [("team".to_owned(), "web".to_owned())].into();
        store.update_session("b", None, Some(&relabelled)).unwrap();
        assert_eq!(
            ids(store.sessions_labelled("team", "web", None, 10).unwrap()),
            ["a", "b"]
        );
        assert_eq!(
            ids(store
                .sessions_labelled("team", "web", Some((1, "a")), 10)
                .unwrap()),
            ["b"]
        );
        let cleared = store
            .update_session("b", Some(None), Some(&BTreeMap::new()))
            .unwrap();
        assert_eq!(cleared.name, None);
        assert!(cleared.labels.is_empty());
        assert!(matches!(
            store.update_session("zz", Some(Some("x")), None),
            Err(Error::SessionNotFound(_))
        ));
        assert!(matches!(
            store.update_session("zz", None, Some(&relabelled)),
            Err(Error::SessionNotFound(_))
        ));
        assert_eq!(
            rows(&store),
            [
                ("a".into(), "team".into(), "web".into()),
                ("a".into(), "ticket.no".into(), "7".into())
            ]
        );

        // A deleted session takes its label rows with it.
        store.delete_session("a").unwrap();
        assert!(rows(&store).is_empty());
        assert!(
            store
                .sessions_labelled("team", "web", None, 10)
                .unwrap()
                .is_empty()
        );
    }

    /// Every label row, ordered.
    fn rows(store: &Store) -> Vec<(String, String, String)> {
        let conn = store.conn.lock().unwrap();
        let mut stmt = conn
            .prepare("SELECT session, key, value FROM session_labels ORDER BY session, key")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn the_filter_reads_the_labels_index_and_scans_no_sessions() {
        let store = Store::in_memory().unwrap();
        for i in 0..50 {
            let team = if i % 10 == 0 { "web" } else { "db" };
            store
                .insert_session(&session(&format!("s{i:02}"), i / 2, &[("team", team)]))
                .unwrap();
        }
        let ids = |v: Vec<Session>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.sessions_labelled("team", "web", None, 3).unwrap()),
            ["s00", "s10", "s20"]
        );
        assert_eq!(
            ids(store
                .sessions_labelled("team", "web", Some((10, "s20")), 3)
                .unwrap()),
            ["s30", "s40"]
        );
        let conn = store.conn.lock().unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {LABELLED}"))
            .unwrap()
            .query_map(params![0, "", 10, "team", "web"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(
            plan.starts_with("SEARCH session_labels USING COVERING INDEX session_labels_by_value (key=? AND value=? AND (created_at,session)>(?,?))"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn a_store_of_the_step_before_gets_its_labels_as_rows() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for step in &super::super::SCHEMA[..9] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 9).unwrap();
        for (id, at, labels) in [
            ("a", 1, Some(r#"{"team":"web","ticket.no":"7"}"#)),
            ("b", 2, Some(r#"{"team":"db"}"#)),
            ("c", 3, None),
            // Written by hand: none of these reads as labels.
            ("d", 4, Some("not json")),
            ("e", 5, Some(r#"["team","web"]"#)),
            ("f", 6, Some(r#"{"team":"web","n":7}"#)),
            ("g", 7, Some(r#"{"team":"web"}"#)),
        ] {
            conn.execute(
                "INSERT INTO sessions (id, image, state, network, created_at, labels)
                 VALUES (?1, 'minimal', 'stopped', 'none', ?2, ?3)",
                params![id, at, labels],
            )
            .unwrap();
        }
        let store = Store {
            conn: std::sync::Mutex::new(conn),
        };
        store.migrate().unwrap();
        assert_eq!(
            rows(&store),
            [
                ("a".into(), "team".into(), "web".into()),
                ("a".into(), "ticket.no".into(), "7".into()),
                ("b".into(), "team".into(), "db".into()),
                ("g".into(), "team".into(), "web".into()),
            ]
        );
        let ids = |v: Vec<Session>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.sessions_labelled("team", "web", None, 10).unwrap()),
            ["a", "g"]
        );
        // What a session reads back is what its labels filter on.
        for s in store.sessions().unwrap() {
            for (k, v) in &s.labels {
                assert!(
                    ids(store.sessions_labelled(k, v, None, 10).unwrap()).contains(&s.id),
                    "{}: {k}={v}",
                    s.id
                );
            }
        }
        assert!(store.session("f").unwrap().labels.is_empty());
        // The store goes on in step: a relabel replaces the migrated rows.
        store
            .update_session("a", None, Some(&BTreeMap::new()))
            .unwrap();
        assert_eq!(
            ids(store.sessions_labelled("team", "web", None, 10).unwrap()),
            ["g"]
        );
    }
}
