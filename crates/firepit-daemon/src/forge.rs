//! The daemon's side of the forge: sessions made from a repository, and the
//! per-session forge broker.
//!
//! A session given a repository (`POST /v1/sessions` with `repo`) gets a
//! broker: the daemon listens inside the machine on `127.0.0.1:<port>`
//! (`Backend::listen`: the socket is the backend's to make) and serves it with
//! [`firepit_forge::broker::Broker`], which adds the token and passes only
//! that session's repositories. Inside the machine, `/etc/gitconfig` points
//! the forge's URLs at the broker (`url.<broker>.insteadOf`) and
//! `/etc/profile.d/firepit-forge.sh` names the REST endpoint; no token and no
//! credential helper exist in the machine. The broker is part of the
//! session's runtime ([`crate::live`]): it ends with it (the session stops,
//! is destroyed or its machine ends) and starts again, on a new port, when
//! the machine starts again or the daemon restarts.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use firepit_forge::broker::Broker;
use firepit_forge::{Forge, RepoName};
use firepit_guest_client::{ExecOutput, GuestClient};
use firepit_wire::guest::{ExecRequest, WriteOptions};

use crate::{App, Error, machines};

/// Longest a clone may take.
const CLONE_TIMEOUT_MS: u64 = 15 * 60 * 1000;

/// The system gitconfig of a machine whose broker listens on `port`.
pub fn gitconfig(forge: &Forge, port: u16) -> String {
    let web = &forge.config().web_url;
    format!(
        "# Written by firepit: git reaches the forge through the daemon's broker,\n\
         # which adds the credentials outside this machine.\n\
         [url \"http://127.0.0.1:{port}/\"]\n\
         \tinsteadOf = {web}/\n\
         [user]\n\
         \tname = firepit agent\n\
         \temail = agent@firepit.invalid\n\
         [safe]\n\
         \tdirectory = *\n\
         [init]\n\
         \tdefaultBranch = main\n"
    )
}

/// Output of a command the daemon runs in a machine that it keeps, per stream: git's
/// answers whole, a test run's head and tail.
pub(crate) const RUN_OUTPUT_LIMIT: usize = 1 << 20;

/// Runs `req` in the guest and collects its output (within [`RUN_OUTPUT_LIMIT`]).
pub(crate) async fn run(guest: &GuestClient, req: ExecRequest) -> Result<ExecOutput, Error> {
    let exec = guest.exec(req).await.map_err(Error::Guest)?;
    exec.output(RUN_OUTPUT_LIMIT).await.map_err(Error::Guest)
}

/// The last `n` bytes of `text`, on a character boundary.
pub(crate) fn tail(text: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(text);
    let s = s.trim_end();
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

impl App {
    /// The forge client.
    pub fn forge(&self) -> &Forge {
        &self.0.forge
    }

    /// Whether `port` is (or is about to be) session `id`'s broker: such a
    /// port is no preview, no share and no `port_opened` event.
    pub fn is_broker_port(&self, id: &str, port: u16) -> bool {
        self.live()
            .get(id)
            .is_some_and(|l| l.broker_port() == Some(port))
    }

    /// Checks, before any machine is made, that `repo` names a repository
    /// this daemon may give a session and that the token can see.
    pub async fn check_repo(&self, repo: &str) -> Result<RepoName, Error> {
        let name: RepoName = repo.parse()?;
        self.forge().config().check_allowed(&name)?;
        self.forge().token()?;
        self.forge().repo(&name).await?;
        Ok(name)
    }

    /// Gives running session `id` the repository `repo`: records it, starts
    /// the broker and clones it into `/workspace` (at `branch`).
    pub async fn attach_repo(
        &self,
        id: &str,
        repo: &RepoName,
        branch: Option<&str>,
    ) -> Result<(), Error> {
        if let Some(b) = branch
            && (b.is_empty()
                || b.starts_with('-')
                || b.contains("..")
                || b.bytes()
                    .any(|c| c.is_ascii_control() || b" ~^:?*[\\".contains(&c)))
        {
            return Err(Error::BadRequest(format!("{b:?} is not a branch name")));
        }
        self.store()
            .set_session_repo(id, &repo.to_string(), branch)?;
        self.start_broker(id).await?;
        let guest = self.guest(id).await?;
        let mut argv = vec!["git".to_owned(), "clone".into(), "--quiet".into()];
        if let Some(b) = branch {
            argv.extend(["--branch".into(), b.to_owned()]);
        }
        argv.extend([
            "--".into(),
            self.forge().config().git_url(repo),
            "/workspace".into(),
        ]);
        let mut req = ExecRequest::argv(argv);
        req.env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
        req.cwd = Some("/".into());
        req.timeout_ms = Some(CLONE_TIMEOUT_MS);
        let out = run(&guest, req).await?;
        if !out.status.success() {
            let why = firepit_forge::redact(
                &tail(&out.stderr.to_bytes(), 2000),
                self.forge().config().token.as_ref(),
            );
            return Err(Error::CloneFailed(format!(
                "cloning {repo} into /workspace failed: {why}"
            )));
        }
        self.events().append(
            id,
            firepit_wire::events::EventKind::Note {
                text: format!(
                    "cloned {repo}{} into /workspace",
                    branch.map(|b| format!(" ({b})")).unwrap_or_default()
                ),
            },
        )?;
        Ok(())
    }

    /// Starts session `id`'s broker if the session has repositories, and
    /// points the machine's git at it. A broker already running is replaced.
    pub async fn start_broker(&self, id: &str) -> Result<(), Error> {
        let repos: Vec<RepoName> = self
            .store()
            .session_repos(id)?
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect();
        if repos.is_empty() {
            return Ok(());
        }
        let live = self.live_session(id)?;
        // The port is picked (and reserved, which ends a broker the session
        // had) before it is bound; a taken one is tried again with another.
        let mut attempt = 0;
        let (listener, port) = loop {
            let port: u16 = rand::Rng::random_range(&mut rand::rng(), 20000..30000);
            live.reserve_broker(port)?;
            let backend = self.backend().clone();
            let mid = machines::id(id);
            let bound = tokio::task::spawn_blocking(move || {
                backend.listen(&mid, SocketAddr::from(([127, 0, 0, 1], port)))
            })
            .await?;
            match bound {
                Ok(l) => break (l, port),
                Err(firepit_machine::Error::Net { source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse && attempt < 8 =>
                {
                    live.unreserve_broker(port);
                    attempt += 1;
                }
                Err(firepit_machine::Error::NotRunning(_)) => {
                    live.unreserve_broker(port);
                    return Err(Error::SessionNotRunning(id.to_owned()));
                }
                Err(e) => {
                    live.unreserve_broker(port);
                    return Err(Error::Machine(e));
                }
            }
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(source) => {
                live.unreserve_broker(port);
                return Err(Error::Io {
                    what: "registering the broker's socket".into(),
                    source,
                });
            }
        };
        let broker = Arc::new(Broker::new(self.forge().config().clone(), repos));
        live.keep_broker(port, tokio::spawn(broker.serve(listener)))?;
        let guest = self.guest(id).await?;
        let write = |path: &'static str, text: String| {
            let guest = guest.clone();
            async move {
                guest
                    .write_file_all(
                        path,
                        Bytes::from(text),
                        WriteOptions {
                            create_parents: true,
                            mode: Some(0o644),
                        },
                    )
                    .await
                    .map_err(Error::Guest)
            }
        };
        write("/etc/gitconfig", gitconfig(self.forge(), port)).await?;
        write(
            "/etc/profile.d/firepit-forge.sh",
            format!(
                "# Written by firepit: the forge's REST API through the daemon's broker\n\
                 # (repos/<owner>/<name>/… of this session's repositories only).\n\
                 export FIREPIT_FORGE_API=http://127.0.0.1:{port}/api\n"
            ),
        )
        .await?;
        tracing::info!(session = %id, port, "forge broker started");
        Ok(())
    }

    /// After a restart: brokers for the running sessions that have repositories.
    pub async fn resume_brokers(&self) {
        let Ok(sessions) = self.store().sessions() else {
            return;
        };
        for s in sessions
            .into_iter()
            .filter(|s| s.state == firepit_wire::api::SessionState::Running)
        {
            if let Err(e) = self.start_broker(&s.id).await {
                tracing::warn!(session = %s.id, error = %crate::error::chain(&e), "could not start the forge broker");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gitconfig_points_the_forge_at_the_broker_and_holds_no_secret() {
        let token = firepit_forge::Token::new("ghp_secret");
        let config = firepit_forge::ForgeConfig::new("https://github.com", None, token).unwrap();
        let text = gitconfig(&Forge::new(config), 4321);
        assert!(text.contains("[url \"http://127.0.0.1:4321/\"]"), "{text}");
        assert!(text.contains("insteadOf = https://github.com/"), "{text}");
        assert!(!text.contains("ghp_secret"));
    }

    #[test]
    fn tails_cut_on_character_boundaries() {
        assert_eq!(tail("héllo\n".as_bytes(), 4), "llo");
        assert_eq!(tail(b"ab", 10), "ab");
    }
}
