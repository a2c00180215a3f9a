//! What firepit keeps of each E2B sandbox beyond its session: the access
//! token its envd traffic must carry, its template name, metadata and
//! environment, when it started, and what its timeout does (pause or
//! kill). (Its timeout is the session's own, kept and kept to by the daemon,
//! which asks [`crate::E2b::kills_at_timeout`] when it passes.)
//!
//! One JSON file per sandbox in `<data dir>/e2b/` (root-only), written whole
//! by rename, so a restart keeps tokens and a crash never leaves half a file.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One sandbox's kept state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The token envd traffic must carry in `X-Access-Token`.
    pub access_token: String,
    /// The template (image) name the client asked for.
    pub template: String,
    /// The client's metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Environment given to every process the sandbox starts through envd.
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// When it was made or last resumed, seconds since the epoch.
    pub started_at: i64,
    /// What its timeout does.
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

/// What a sandbox's timeout does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Stop the session, keeping its files (`autoPause: true`, and
    /// firepit's default when the request makes no choice).
    #[default]
    Pause,
    /// Destroy the session (`autoPause: false`).
    Kill,
}

/// Every sandbox's kept state, in memory and on disk.
pub struct States {
    dir: PathBuf,
    map: Mutex<HashMap<String, Kept>>,
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A fresh access token: 32 random bytes, hex.
pub fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl States {
    /// Opens (making it root-only) `dir` and reads what it holds; a file
    /// that does not parse is left alone and logged.
    pub fn open(dir: &Path) -> std::io::Result<States> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let mut map = HashMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|id| crate::is_valid_id(id))
            else {
                continue;
            };
            match std::fs::read(&path).map(|b| serde_json::from_slice::<Kept>(&b)) {
                Ok(Ok(kept)) => {
                    map.insert(id.to_owned(), kept);
                }
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable sandbox state left alone")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable sandbox state left alone")
                }
            }
        }
        Ok(States {
            dir: dir.to_owned(),
            map: Mutex::new(map),
        })
    }

    /// A sandbox's state.
    pub fn get(&self, id: &str) -> Option<Kept> {
        self.map.lock().expect("states").get(id).cloned()
    }

    /// Writes a sandbox's state (to disk first).
    pub fn put(&self, id: &str, kept: Kept) -> Result<(), Error> {
        let path = self.dir.join(format!("{id}.json"));
        let tmp = self.dir.join(format!(".{id}.json.tmp"));
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(&kept).expect("state serialises"))?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| Error::State {
            id: id.to_owned(),
            source,
        })?;
        self.map.lock().expect("states").insert(id.to_owned(), kept);
        Ok(())
    }

    /// Changes a sandbox's state with `f`, if it has one.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Kept)) -> Result<Option<Kept>, Error> {
        let Some(mut kept) = self.get(id) else {
            return Ok(None);
        };
        f(&mut kept);
        self.put(id, kept.clone())?;
        Ok(Some(kept))
    }

    /// Forgets a sandbox.
    pub fn remove(&self, id: &str) {
        self.map.lock().expect("states").remove(id);
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.json")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Kept {
        Kept {
            access_token: new_token(),
            template: "base".into(),
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            envs: BTreeMap::new(),
            started_at: 1,
            on_timeout: OnTimeout::Kill,
        }
    }

    #[test]
    fn state_survives_a_reopen_and_bad_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let s = States::open(dir.path()).unwrap();
        s.put("abc", kept()).unwrap();
        std::fs::write(dir.path().join("bad.json"), b"{").unwrap();
        std::fs::write(dir.path().join("../x.json"), b"{}").ok();
        let again = States::open(dir.path()).unwrap();
        assert_eq!(again.get("abc"), s.get("abc"));
        assert!(again.get("bad").is_none());
        again.remove("abc");
        assert!(States::open(dir.path()).unwrap().get("abc").is_none());
    }
}
