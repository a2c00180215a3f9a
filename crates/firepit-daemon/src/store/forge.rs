//! Forge tables: the repositories sessions were given (`session_repos`) and
//! triage jobs with their progress lines (`triage_jobs`, `triage_progress`).

use firepit_wire::forge::{TriageJob, TriageProgress, TriageState};
use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::Error;

use firepit_util::now_ms;

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::BadRequest(format!("a stored record is corrupt: {e}")))
}

impl Store {
    /// Records that session `id` was given `repo` (at `branch`).
    pub fn set_session_repo(
        &self,
        id: &str,
        repo: &str,
        branch: Option<&str>,
    ) -> Result<(), Error> {
        let conn = self.conn.lock().expect("store lock");
        conn.execute(
            "INSERT OR REPLACE INTO session_repos (session, repo, branch) VALUES (?1, ?2, ?3)",
            params![id, repo, branch],
        )
        .map_err(Error::Store)?;
        Ok(())
    }

    /// The repositories session `id` was given.
    pub fn session_repos(&self, id: &str) -> Result<Vec<String>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn
            .prepare_cached("SELECT repo FROM session_repos WHERE session = ?1 ORDER BY repo")
            .map_err(Error::Store)?;
        let rows = stmt
            .query_map(params![id], |r| r.get(0))
            .map_err(Error::Store)?;
        rows.collect::<Result<_, _>>().map_err(Error::Store)
    }

    /// Forgets the repositories of session `id`.
    pub fn delete_session_repos(&self, id: &str) -> Result<(), Error> {
        let conn = self.conn.lock().expect("store lock");
        conn.execute("DELETE FROM session_repos WHERE session = ?1", params![id])
            .map_err(Error::Store)?;
        Ok(())
    }

    /// Writes a triage job (new or changed).
    pub fn put_triage_job(&self, job: &TriageJob) -> Result<(), Error> {
        let body = serde_json::to_string(job).expect("wire types serialise");
        let conn = self.conn.lock().expect("store lock");
        conn.execute(
            "INSERT OR REPLACE INTO triage_jobs (id, created_at, body) VALUES (?1, ?2, ?3)",
            params![job.id, job.created_at, body],
        )
        .map_err(Error::Store)?;
        Ok(())
    }

    /// A triage job.
    pub fn triage_job(&self, id: &str) -> Result<Option<TriageJob>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let body: Option<String> = conn
            .query_row(
                "SELECT body FROM triage_jobs WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(Error::Store)?;
        body.map(|b| decode(&b)).transpose()
    }

    /// Every triage job, newest first.
    pub fn triage_jobs(&self) -> Result<Vec<TriageJob>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn
            .prepare_cached("SELECT body FROM triage_jobs ORDER BY created_at DESC, id")
            .map_err(Error::Store)?;
        let bodies: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(Error::Store)?
            .collect::<Result<_, _>>()
            .map_err(Error::Store)?;
        bodies.iter().map(|b| decode(b)).collect()
    }

    /// Appends a progress line to job `id`; returns it.
    pub fn append_triage_progress(
        &self,
        id: &str,
        issue: Option<u64>,
        text: &str,
    ) -> Result<TriageProgress, Error> {
        let mut conn = self.conn.lock().expect("store lock");
        let tx = conn.transaction().map_err(Error::Store)?;
        let last: Option<i64> = tx
            .query_row(
                "SELECT MAX(seq) FROM triage_progress WHERE job = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(Error::Store)?;
        let p = TriageProgress {
            seq: last.unwrap_or(0) as u64 + 1,
            time_ms: now_ms(),
            issue,
            text: text.to_owned(),
        };
        tx.execute(
            "INSERT INTO triage_progress (job, seq, time_ms, issue, text) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, p.seq as i64, p.time_ms, issue.map(|n| n as i64), p.text],
        )
        .map_err(Error::Store)?;
        tx.commit().map_err(Error::Store)?;
        Ok(p)
    }

    /// Job `id`'s progress lines after `since`.
    pub fn triage_progress(&self, id: &str, since: u64) -> Result<Vec<TriageProgress>, Error> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, time_ms, issue, text FROM triage_progress
                 WHERE job = ?1 AND seq > ?2 ORDER BY seq",
            )
            .map_err(Error::Store)?;
        let rows = stmt
            .query_map(params![id, since as i64], |r| {
                Ok(TriageProgress {
                    seq: r.get::<_, i64>(0)? as u64,
                    time_ms: r.get(1)?,
                    issue: r.get::<_, Option<i64>>(2)?.map(|n| n as u64),
                    text: r.get(3)?,
                })
            })
            .map_err(Error::Store)?;
        rows.collect::<Result<_, _>>().map_err(Error::Store)
    }

    /// After a restart: jobs that were running are marked interrupted.
    pub fn interrupt_triage_jobs(&self) -> Result<Vec<String>, Error> {
        let mut ids = Vec::new();
        for mut job in self.triage_jobs()? {
            if job.state == TriageState::Running {
                job.state = TriageState::Interrupted;
                self.put_triage_job(&job)?;
                ids.push(job.id);
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use firepit_wire::forge::CreateTriage;

    use super::*;

    #[test]
    fn jobs_and_progress_round_trip() {
        let s = Store::in_memory().unwrap();
        let job = TriageJob {
            id: "j1".into(),
            request: CreateTriage {
                repo: "o/r".into(),
                ..Default::default()
            },
            state: TriageState::Running,
            created_at: 5,
            finished_at: None,
            error: None,
            issues: Vec::new(),
        };
        s.put_triage_job(&job).unwrap();
        assert_eq!(s.triage_job("j1").unwrap(), Some(job));
        assert_eq!(s.triage_job("nope").unwrap(), None);
        assert_eq!(s.append_triage_progress("j1", Some(3), "a").unwrap().seq, 1);
        assert_eq!(s.append_triage_progress("j1", None, "b").unwrap().seq, 2);
        let p = s.triage_progress("j1", 1).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].text, "b");
        assert_eq!(s.interrupt_triage_jobs().unwrap(), vec!["j1".to_owned()]);
        assert_eq!(
            s.triage_job("j1").unwrap().unwrap().state,
            TriageState::Interrupted
        );

        s.set_session_repo("s1", "o/r", None).unwrap();
        assert_eq!(s.session_repos("s1").unwrap(), vec!["o/r".to_owned()]);
        s.delete_session_repos("s1").unwrap();
        assert!(s.session_repos("s1").unwrap().is_empty());
    }
}
