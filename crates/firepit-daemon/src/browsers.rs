//! The sessions' browsers (Chromium inside each machine, see
//! `firepit-browser`), the agent's hooks that reach them, and artifacts.
//!
//! A browser is made (not started) the first time a tool or the live view
//! asks for it and kept by the session's runtime ([`crate::live`]);
//! Chromium starts on first use and is reused. The DevTools
//! port is dialed inside the machine by the backend (`Backend::dial`, as
//! previews are), so nothing is forwarded or published. Artifacts are files
//! under `<data dir>/artifacts/<session>/`, announced by `artifact` events; a
//! session keeps at most [`MAX_ARTIFACTS`] of them and [`MAX_ARTIFACT_BYTES`]
//! in all (they are on the host's disk, outside the machine's disk limit):
//! one more is refused with an error, and the first refusal is noted in the
//! session's log.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use firepit_agent::{SessionHooks, TestRun};
use firepit_browser::{Browser, Dial, Launcher};
use firepit_guest_client::GuestClient;
use firepit_wire::events::EventKind;

use crate::{App, Error};

/// Largest artifact kept.
pub const MAX_ARTIFACT: usize = 32 << 20;
/// The most artifacts a session keeps.
pub const MAX_ARTIFACTS: usize = 1000;
/// The most bytes of artifacts a session keeps.
pub const MAX_ARTIFACT_BYTES: u64 = 100 << 20;

/// The artifacts' shared state (a session's browser is part of its
/// runtime, [`crate::live`]).
#[derive(Default)]
pub struct Artifacts {
    /// Held while an artifact is counted and written; the sessions whose
    /// log already notes a refused artifact.
    refused: Mutex<HashSet<String>>,
}

/// How many artifacts are in `dir`, and their bytes.
fn artifact_usage(dir: &std::path::Path) -> (usize, u64) {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.len()))
}

impl App {
    /// The session's browser, made (not started) if it does not exist yet
    /// and kept by the session's runtime. A session that is not live gets
    /// one that is not kept (its calls fail: the machine does not run).
    pub fn browser(&self, session: &str, guest: &GuestClient) -> Arc<Browser> {
        let make = || {
            let (app, id) = (self.clone(), session.to_owned());
            let dial: Dial = Arc::new(move |port| {
                let (app, id) = (app.clone(), id.clone());
                Box::pin(async move {
                    crate::preview::dial_loopback(&app, &id, port)
                        .await
                        .map_err(std::io::Error::other)
                })
            });
            Browser::new(Launcher::new(guest.clone(), dial))
        };
        match self.live().get(session) {
            Some(live) => live.browser_or(make).unwrap_or_else(make),
            None => make(),
        }
    }

    /// The session's browser if its session is live and one was made.
    pub fn browser_if_made(&self, session: &str) -> Option<Arc<Browser>> {
        self.live().get(session)?.browser()
    }

    fn artifacts(&self) -> &Artifacts {
        &self.0.artifacts
    }

    fn artifacts_dir(&self, session: &str) -> PathBuf {
        self.config().data_dir.join("artifacts").join(session)
    }

    /// Stores an artifact as `<stem>-<n>.<ext>` and logs an `artifact` event;
    /// returns the stored name.
    pub fn save_artifact(
        &self,
        session: &str,
        name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<String, Error> {
        if bytes.len() > MAX_ARTIFACT {
            return Err(Error::TooLarge {
                limit: MAX_ARTIFACT as u64,
            });
        }
        let io = |what: String| move |source| Error::Io { what, source };
        let dir = self.artifacts_dir(session);
        let mut refused = self.artifacts().refused.lock().expect("artifacts");
        let (count, used) = artifact_usage(&dir);
        if count >= MAX_ARTIFACTS || used + bytes.len() as u64 > MAX_ARTIFACT_BYTES {
            let err = Error::ArtifactsFull {
                session: session.to_owned(),
                max_count: MAX_ARTIFACTS,
                max_bytes: MAX_ARTIFACT_BYTES,
            };
            if refused.insert(session.to_owned()) {
                let text = format!("artifact {name:?} not kept: {err}; later ones are refused too");
                self.events().append(session, EventKind::Note { text })?;
            }
            return Err(err);
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let (stem, ext) = artifact_parts(name);
        for n in 1.. {
            let stored = format!("{stem}-{n}.{ext}");
            let path = dir.join(&stored);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(bytes)
                        .map_err(io(format!("writing {}", path.display())))?;
                    self.events().append(
                        session,
                        EventKind::Artifact {
                            name: stored.clone(),
                            content_type: content_type.to_owned(),
                            bytes: bytes.len() as u64,
                        },
                    )?;
                    return Ok(stored);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(format!("creating {}", path.display()))(e)),
            }
        }
        unreachable!("the counter is endless")
    }

    /// An artifact's bytes and content type.
    pub fn artifact(&self, session: &str, name: &str) -> Result<(Vec<u8>, &'static str), Error> {
        let valid = !name.is_empty()
            && name.len() <= 100
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        let path = self.artifacts_dir(session).join(name);
        let bytes = if valid {
            std::fs::read(&path).ok()
        } else {
            None
        };
        let Some(bytes) = bytes else {
            return Err(Error::ArtifactNotFound {
                session: session.to_owned(),
                name: name.to_owned(),
            });
        };
        let ct = artifact_type(name);
        Ok((bytes, ct))
    }

    /// Deletes a session's artifacts (the session is destroyed).
    pub fn remove_artifacts(&self, session: &str) {
        let mut refused = self.artifacts().refused.lock().expect("artifacts");
        refused.remove(session);
        let _ = std::fs::remove_dir_all(self.artifacts_dir(session));
    }
}

/// The agent's hooks into its session: browser, artifacts, test runs.
pub struct Hooks {
    app: App,
    session: String,
    guest: GuestClient,
}

impl Hooks {
    /// Hooks for `session`, whose guest is `guest`.
    pub fn new(app: App, session: &str, guest: GuestClient) -> Hooks {
        Hooks {
            app,
            session: session.to_owned(),
            guest,
        }
    }
}

impl SessionHooks for Hooks {
    fn kept_service(&self, name: &str) -> Option<firepit_wire::api::ServiceSpec> {
        match self.app.store().service(&self.session, name) {
            Ok(s) => s.map(|s| s.spec),
            Err(e) => {
                tracing::warn!(session = %self.session, error = %crate::error::chain(&e), "could not read the kept services");
                None
            }
        }
    }

    fn service_started(&self, spec: &firepit_wire::api::ServiceSpec) {
        if let Err(e) = self.app.store().put_service(&self.session, spec, true) {
            tracing::warn!(session = %self.session, service = %spec.name, error = %crate::error::chain(&e), "could not keep the agent's service");
        }
    }

    fn service_stopped(&self, name: &str) {
        if let Err(e) = self
            .app
            .store()
            .set_service_autostart(&self.session, name, false)
        {
            tracing::warn!(session = %self.session, service = %name, error = %crate::error::chain(&e), "could not keep the agent's service");
        }
    }

    fn browser(&self) -> Arc<Browser> {
        self.app.browser(&self.session, &self.guest)
    }

    fn current_page(&self) -> Option<firepit_browser::Page> {
        let browser = self.app.browser_if_made(&self.session)?;
        browser.current().borrow().clone()
    }

    fn save_artifact(
        &self,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<String, String> {
        self.app
            .save_artifact(&self.session, name, content_type, &bytes)
            .map_err(|e| crate::error::chain(&e))
    }

    fn test_ran(&self, run: &TestRun) {
        crate::closed_loop::test_ran(&self.app, &self.session, run);
    }

    fn checkpoint(
        &self,
        name: String,
    ) -> futures::future::BoxFuture<'static, Result<Option<String>, String>> {
        let (app, session) = (self.app.clone(), self.session.clone());
        Box::pin(async move {
            match app.agent_checkpoint(&session, name).await {
                Ok(cp) => Ok(cp.map(|c| c.id)),
                Err(e) => {
                    let e = crate::error::chain(&e);
                    tracing::warn!(%session, error = %e, "the agent's checkpoint failed");
                    Err(e)
                }
            }
        })
    }
}

/// The type an artifact is served as, from its name's extension: a fixed
/// list of types no browser runs as a document (images, plain text, JSON);
/// everything else is `application/octet-stream`. Artifacts are served
/// from the UI's origin, so an HTML or SVG one would run there.
pub fn artifact_type(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("txt" | "log") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The stem and extension an artifact named `name` is stored under: letters,
/// digits and `-` only (40 at most; an extension of up to 8 letters and
/// digits, else `bin`), so no name reaches outside the
/// session's artifact dir or into a dir below it.
fn artifact_parts(name: &str) -> (String, String) {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, "bin"));
    let stem = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    // The extension names the file's type when it is served; anything but
    // a short word is `bin` (and so `application/octet-stream`).
    let ext = if (1..=8).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
        ext.to_ascii_lowercase()
    } else {
        "bin".to_owned()
    };
    (stem, ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_served_as_a_few_inert_types() {
        assert_eq!(artifact_type("shot-1.png"), "image/png");
        assert_eq!(artifact_type("shot-1.JPG"), "image/jpeg");
        assert_eq!(artifact_type("a-1.webp"), "image/webp");
        assert_eq!(artifact_type("log-1.txt"), "text/plain; charset=utf-8");
        assert_eq!(artifact_type("r-1.json"), "application/json");
        for active in [
            "x-1.html", "x-1.htm", "x-1.svg", "x-1.xml", "x-1.js", "x-1.pdf", "x-1", "x-1.bin",
        ] {
            assert_eq!(
                artifact_type(active),
                "application/octet-stream",
                "{active}"
            );
        }
    }

    #[test]
    fn artifact_names_stay_in_their_dir() {
        assert_eq!(
            artifact_parts("screenshot.png"),
            ("screenshot".into(), "png".into())
        );
        for name in [
            "a./../../../../tmp/x",
            "../../etc/passwd",
            "x.d/evil",
            "x./",
            "..",
            "",
        ] {
            let (stem, ext) = artifact_parts(name);
            for part in [&stem, &ext] {
                assert!(
                    part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                    "{name:?} -> {part:?}"
                );
            }
            assert!(!ext.is_empty(), "{name:?}");
        }
    }
}
