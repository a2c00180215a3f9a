//! Session timeouts in the store: `sessions.stop_at`, the Unix time at which
//! the daemon stops a session (see `crate::deadlines`).

use rusqlite::params;

use super::Store;
use crate::Error;

impl Store {
    /// Sets (or, with `None`, clears) when a session is stopped.
    pub fn set_stop_at(&self, id: &str, stop_at: Option<i64>) -> Result<(), Error> {
        let conn = self.conn.lock().expect("store lock");
        let n = conn
            .execute(
                "UPDATE sessions SET stop_at = ?2 WHERE id = ?1",
                params![id, stop_at],
            )
            .map_err(Error::Store)?;
        if n == 0 {
            return Err(Error::SessionNotFound(id.to_owned()));
        }
        Ok(())
    }

    /// The earliest timeout of a running session.
    pub fn next_stop_at(&self) -> Result<Option<i64>, Error> {
        let conn = self.conn.lock().expect("store lock");
        conn.query_row(
            "SELECT MIN(stop_at) FROM sessions WHERE stop_at IS NOT NULL AND state = 'running'",
            [],
            |r| r.get(0),
        )
        .map_err(Error::Store)
    }

    /// The running sessions whose timeout is at or before `t`.
    pub fn due_to_stop(&self, t: i64) -> Result<Vec<String>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn
            .prepare(
                "SELECT id FROM sessions WHERE stop_at IS NOT NULL AND stop_at <= ?1 AND state = 'running' ORDER BY stop_at, id",
            )
            .map_err(Error::Store)?;
        let rows = stmt
            .query_map(params![t], |r| r.get(0))
            .map_err(Error::Store)?;
        rows.collect::<Result<_, _>>().map_err(Error::Store)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_store;

    #[test]
    fn due_sessions_are_the_running_ones_past_their_time() {
        let store = test_store(&["a", "b", "c"]);
        store.set_stop_at("a", Some(10)).unwrap();
        store.set_stop_at("b", Some(20)).unwrap();
        assert_eq!(store.next_stop_at().unwrap(), Some(10));
        assert_eq!(store.due_to_stop(15).unwrap(), vec!["a".to_owned()]);
        store
            .set_state("a", firepit_wire::api::SessionState::Stopped, None)
            .unwrap();
        assert_eq!(store.next_stop_at().unwrap(), Some(20));
        store.set_stop_at("b", None).unwrap();
        assert_eq!(store.next_stop_at().unwrap(), None);
        assert!(store.set_stop_at("nope", Some(1)).is_err());
        assert_eq!(store.session("a").unwrap().stop_at, Some(10));
    }
}
