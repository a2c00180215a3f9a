//! Sessions' names and labels in the store: the name a column of its own,
//! the labels one JSON object (`{"key":"value",…}`, NULL when there are none),
//! found by `json_extract` on a list's `label=key=value` filter.

use std::collections::BTreeMap;

use rusqlite::params;

use super::{SELECT, Store, row_to_session};
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

/// The JSON path of a label key. Keys are checked (`api::valid::label_key`:
/// `[a-z0-9._-]` only) before they get here, so quoting them is enough.
fn path(key: &str) -> String {
    format!("$.\"{key}\"")
}

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
        let mut stmt = conn
            .prepare_cached(&format!(
                "{SELECT} WHERE (created_at, id) > (?1, ?2) AND labels IS NOT NULL
                 AND json_extract(labels, ?4) = ?5 ORDER BY created_at, id LIMIT ?3"
            ))
            .map_err(Error::Store)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(
                params![created_at, id, limit, path(key), value],
                row_to_session,
            )
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
    }
}
