//! The `services` table: the services a person (or the agent) started in a
//! session, kept so that they come back when the session starts again.
//!
//! A row is a service's spec (JSON of [`ServiceSpec`]) and whether it is
//! wanted running (`autostart`): starting or restarting a service sets it,
//! stopping it clears it, forgetting it deletes the row. The services the
//! daemon runs for itself (the agent's browser) are never stored.

use firepit_wire::api::{ServiceSpec, Session};
use rusqlite::params;

use crate::{Error, Store};

/// Services a session may keep at most.
pub const MAX_STORED: usize = 64;

/// A stored service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredService {
    /// What it runs.
    pub spec: ServiceSpec,
    /// Whether it starts with the session.
    pub autostart: bool,
}

impl Store {
    /// Records `spec` for `session` (replacing one of the same name), wanted
    /// running or not. A session keeps at most [`MAX_STORED`] services.
    pub fn put_service(
        &self,
        session: &str,
        spec: &ServiceSpec,
        autostart: bool,
    ) -> Result<(), Error> {
        let body = serde_json::to_string(spec).expect("a spec serialises");
        let conn = self.conn.lock().expect("store lock");
        let (count, exists): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(name = ?2), 0) FROM services WHERE session = ?1",
                params![session, spec.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(Error::Store)?;
        if exists == 0 && count as usize >= MAX_STORED {
            return Err(Error::TooManyServices { limit: MAX_STORED });
        }
        conn.execute(
            "INSERT INTO services (session, name, spec, autostart) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (session, name) DO UPDATE SET spec = excluded.spec, autostart = excluded.autostart",
            params![session, spec.name, body, i64::from(autostart)],
        )
        .map_err(Error::Store)?;
        Ok(())
    }

    /// Marks `session`'s service `name` wanted running or not; false if none is stored.
    pub fn set_service_autostart(
        &self,
        session: &str,
        name: &str,
        autostart: bool,
    ) -> Result<bool, Error> {
        let conn = self.conn.lock().expect("store lock");
        let n = conn
            .execute(
                "UPDATE services SET autostart = ?3 WHERE session = ?1 AND name = ?2",
                params![session, name, i64::from(autostart)],
            )
            .map_err(Error::Store)?;
        Ok(n > 0)
    }

    /// `session`'s stored services, by name. A row that no longer parses
    /// (written by a newer daemon) is left out.
    pub fn services(&self, session: &str) -> Result<Vec<StoredService>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn
            .prepare("SELECT spec, autostart FROM services WHERE session = ?1 ORDER BY name")
            .map_err(Error::Store)?;
        let rows = stmt
            .query_map(params![session], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
            })
            .map_err(Error::Store)?;
        let mut out = Vec::new();
        for row in rows {
            let (body, autostart) = row.map_err(Error::Store)?;
            match serde_json::from_str(&body) {
                Ok(spec) => out.push(StoredService { spec, autostart }),
                Err(e) => tracing::warn!(session, error = %e, "a stored service does not parse"),
            }
        }
        Ok(out)
    }

    /// `session`'s stored service `name`.
    pub fn service(&self, session: &str, name: &str) -> Result<Option<StoredService>, Error> {
        Ok(self
            .services(session)?
            .into_iter()
            .find(|s| s.spec.name == name))
    }

    /// Forgets `session`'s service `name`; false if none was stored.
    pub fn delete_service(&self, session: &str, name: &str) -> Result<bool, Error> {
        let conn = self.conn.lock().expect("store lock");
        let n = conn
            .execute(
                "DELETE FROM services WHERE session = ?1 AND name = ?2",
                params![session, name],
            )
            .map_err(Error::Store)?;
        Ok(n > 0)
    }

    /// Records `child`, a fork of session `parent`, with a copy of the
    /// services `parent` keeps (wanted running or not, as they are), in one
    /// transaction: the child is never there without them.
    pub fn insert_fork(&self, child: &Session, parent: &str) -> Result<(), Error> {
        let mut conn = self.conn.lock().expect("store lock");
        let tx = conn.transaction().map_err(Error::Store)?;
        super::insert_session(&tx, child)?;
        tx.execute(
            "INSERT INTO services (session, name, spec, autostart)
             SELECT ?1, name, spec, autostart FROM services WHERE session = ?2",
            params![child.id, parent],
        )
        .map_err(Error::Store)?;
        tx.commit().map_err(Error::Store)
    }

    /// Forgets every service of `session`.
    pub fn delete_services(&self, session: &str) -> Result<(), Error> {
        let conn = self.conn.lock().expect("store lock");
        conn.execute("DELETE FROM services WHERE session = ?1", params![session])
            .map_err(Error::Store)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_wire::api::{Command, RestartPolicy};

    fn spec(name: &str, cmd: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            command: Command::Shell(cmd.into()),
            env: vec![("PORT".into(), "8000".into())],
            cwd: Some("/root".into()),
            restart: RestartPolicy::OnFailure,
        }
    }

    #[test]
    fn services_are_kept_per_session_replaced_by_name_and_forgotten() {
        let store = Store::in_memory().unwrap();
        store.put_service("a", &spec("web", "one"), true).unwrap();
        store.put_service("a", &spec("run", "two"), true).unwrap();
        store.put_service("b", &spec("web", "other"), true).unwrap();
        store.put_service("a", &spec("web", "three"), true).unwrap();
        let a = store.services("a").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].spec, spec("run", "two"));
        assert_eq!(a[1].spec, spec("web", "three"));
        assert!(store.set_service_autostart("a", "web", false).unwrap());
        assert!(!store.set_service_autostart("a", "nope", false).unwrap());
        assert!(!store.service("a", "web").unwrap().unwrap().autostart);
        assert!(store.delete_service("a", "web").unwrap());
        assert!(!store.delete_service("a", "web").unwrap());
        store.delete_services("b").unwrap();
        assert!(store.services("b").unwrap().is_empty());
        assert_eq!(store.services("a").unwrap().len(), 1);
    }

    #[test]
    fn a_session_keeps_a_bounded_number_of_services() {
        let store = Store::in_memory().unwrap();
        for i in 0..MAX_STORED {
            store
                .put_service("a", &spec(&format!("s{i}"), "true"), false)
                .unwrap();
        }
        let err = store.put_service("a", &spec("one-more", "true"), false);
        assert!(matches!(err, Err(Error::TooManyServices { .. })), "{err:?}");
        // Replacing one that is kept still works.
        store.put_service("a", &spec("s0", "false"), true).unwrap();
        assert_eq!(store.services("a").unwrap().len(), MAX_STORED);
    }

    #[test]
    fn a_fork_gets_a_copy_of_its_parents_services() {
        let store = crate::store::test_store(&["p"]);
        store.put_service("p", &spec("web", "one"), true).unwrap();
        store.put_service("p", &spec("idle", "two"), false).unwrap();
        store
            .put_service("other", &spec("x", "three"), true)
            .unwrap();
        let mut child = store.session("p").unwrap();
        child.id = "c".into();
        store.insert_fork(&child, "p").unwrap();
        assert_eq!(store.session("c").unwrap().id, "c");
        assert_eq!(store.services("c").unwrap(), store.services("p").unwrap());
        assert_eq!(store.services("c").unwrap().len(), 2);
        // Each keeps its own from then on.
        store.delete_service("c", "web").unwrap();
        assert_eq!(store.services("p").unwrap().len(), 2);
        // A child that cannot be recorded gets no services either.
        child.id = "p".into();
        assert!(store.insert_fork(&child, "p").is_err());
        assert_eq!(store.services("p").unwrap().len(), 2);
        // A parent that keeps none gives none.
        child.id = "d".into();
        store.insert_fork(&child, "nobody").unwrap();
        assert!(store.services("d").unwrap().is_empty());
    }
}
