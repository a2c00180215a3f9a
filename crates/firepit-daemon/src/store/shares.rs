//! The `shares` table: signed preview links and whether they were revoked.
//!
//! The link itself (a signed token) is not stored: it is made again from the
//! row when listed. What the store decides is whether a link still works.

use rusqlite::{OptionalExtension, params};

use crate::{Error, Store};

/// A share as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShareRow {
    /// Its id.
    pub id: String,
    /// The session it opens.
    pub session: String,
    /// The port it opens.
    pub port: u16,
    /// Unix seconds it was made.
    pub created_at: i64,
    /// Unix seconds after which it no longer works.
    pub expires_at: i64,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Where the link lands (a local path).
    pub path: String,
}

fn row_to_share(row: &rusqlite::Row<'_>) -> rusqlite::Result<ShareRow> {
    Ok(ShareRow {
        id: row.get(0)?,
        session: row.get(1)?,
        port: row.get::<_, i64>(2)? as u16,
        created_at: row.get(3)?,
        expires_at: row.get(4)?,
        revoked: row.get::<_, i64>(5)? != 0,
        path: row
            .get::<_, Option<String>>(6)?
            .unwrap_or_else(|| "/".into()),
    })
}

const SELECT: &str = "SELECT id, session, port, created_at, expires_at, revoked, path FROM shares";

impl Store {
    /// Records a new share.
    pub(crate) fn insert_share(&self, s: &ShareRow) -> Result<(), Error> {
        let conn = self.conn.lock().expect("store lock");
        conn.execute(
            "INSERT INTO shares (id, session, port, created_at, expires_at, revoked, path)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                s.id,
                s.session,
                i64::from(s.port),
                s.created_at,
                s.expires_at,
                i64::from(s.revoked),
                s.path,
            ],
        )
        .map_err(Error::Store)?;
        Ok(())
    }

    /// One share of `session`, if it exists.
    pub(crate) fn share(&self, session: &str, id: &str) -> Result<Option<ShareRow>, Error> {
        let conn = self.conn.lock().expect("store lock");
        conn.query_row(
            &format!("{SELECT} WHERE session = ?1 AND id = ?2"),
            params![session, id],
            row_to_share,
        )
        .optional()
        .map_err(Error::Store)
    }

    /// The shares of `session`, oldest first.
    pub(crate) fn shares(&self, session: &str) -> Result<Vec<ShareRow>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn
            .prepare(&format!(
                "{SELECT} WHERE session = ?1 ORDER BY created_at, id"
            ))
            .map_err(Error::Store)?;
        let rows = stmt
            .query_map(params![session], row_to_share)
            .map_err(Error::Store)?;
        rows.collect::<Result<_, _>>().map_err(Error::Store)
    }

    /// Revokes a share; false if `session` has no share `id`.
    pub(crate) fn revoke_share(&self, session: &str, id: &str) -> Result<bool, Error> {
        let conn = self.conn.lock().expect("store lock");
        let n = conn
            .execute(
                "UPDATE shares SET revoked = 1 WHERE session = ?1 AND id = ?2",
                params![session, id],
            )
            .map_err(Error::Store)?;
        Ok(n > 0)
    }

    /// Forgets every share of `session` (when it is destroyed).
    pub(crate) fn delete_shares(&self, session: &str) -> Result<(), Error> {
        let conn = self.conn.lock().expect("store lock");
        conn.execute("DELETE FROM shares WHERE session = ?1", params![session])
            .map_err(Error::Store)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(id: &str, session: &str) -> ShareRow {
        ShareRow {
            id: id.into(),
            session: session.into(),
            port: 8000,
            created_at: 1,
            expires_at: 100,
            revoked: false,
            path: "/docs?x=1".into(),
        }
    }

    #[test]
    fn shares_are_listed_per_session_and_revoked() {
        let store = Store::in_memory().unwrap();
        store.insert_share(&share("a", "s1")).unwrap();
        store.insert_share(&share("b", "s1")).unwrap();
        store.insert_share(&share("c", "s2")).unwrap();
        assert_eq!(store.shares("s1").unwrap().len(), 2);
        assert!(store.revoke_share("s1", "a").unwrap());
        assert!(
            !store.revoke_share("s2", "a").unwrap(),
            "another session's share"
        );
        assert!(store.share("s1", "a").unwrap().unwrap().revoked);
        assert!(!store.share("s1", "b").unwrap().unwrap().revoked);
        assert_eq!(store.share("s1", "b").unwrap().unwrap().path, "/docs?x=1");
        assert_eq!(store.share("s1", "c").unwrap(), None);
        store.delete_shares("s1").unwrap();
        assert!(store.shares("s1").unwrap().is_empty());
        assert_eq!(store.shares("s2").unwrap().len(), 1);
    }
}
