//! The agents: one per live session, made when first needed and kept by its
//! runtime ([`crate::live`]), running in the daemon so that model keys never
//! enter a machine.
//!
//! Everything an agent does is appended to the session's event log as
//! [`EventKind::Agent`] items; a new agent (after a daemon restart, or after
//! the session's machine was restarted) rebuilds its history from those items
//! and resumes a run that was cut off.

use std::sync::Arc;

use firepit_agent::{
    Agent, AgentSettings, Model, ModelConfig, ToolContext, Transcript, TranscriptItem,
};
use firepit_wire::events::EventKind;

use crate::{App, Error};

/// Appends an agent's transcript to its session's event log.
pub struct SessionTranscript {
    app: App,
    session: String,
}

impl Transcript for SessionTranscript {
    async fn record(&self, item: TranscriptItem) {
        if let Err(e) = self
            .app
            .events()
            .append(&self.session, EventKind::Agent { item })
        {
            tracing::error!(session = %self.session, error = %crate::error::chain(&e), "could not record an agent event");
        }
    }
}

/// A session's agent.
pub type SessionAgent = Agent<SessionTranscript>;

/// The model the sessions' agents use (each agent is part of its session's
/// runtime, [`crate::live`]).
pub struct Agents {
    model: Option<ModelConfig>,
}

impl Agents {
    /// Agents using `model` (none: the agent endpoints say how to configure one).
    pub fn new(model: Option<ModelConfig>) -> Agents {
        Agents { model }
    }

    /// The model, if one is configured.
    pub fn model(&self) -> Option<&ModelConfig> {
        self.model.as_ref()
    }
}

impl App {
    /// The session's agent, made (with its history rebuilt from the event log)
    /// if it does not exist yet.
    pub async fn agent(&self, session: &str) -> Result<SessionAgent, Error> {
        if let Some(agent) = self.agent_if_made(session) {
            return Ok(agent);
        }
        let items = self.transcript(session)?;
        self.agent_from(session, &items).await
    }

    /// What the agent's tools act on in a running session: its guest, the
    /// working directory, preview URLs, browser, artifacts and test runs.
    /// The agent and the MCP server (`crate::mcp`) both act through one.
    pub async fn tool_context(&self, session: &str) -> Result<ToolContext, Error> {
        let guest = self.guest(session).await?;
        let workdir = firepit_agent::prompt::detect_workdir(&guest).await;
        let urls = self.clone();
        let id = session.to_owned();
        let preview_url: firepit_agent::PreviewUrl =
            Arc::new(move |port| urls.config().preview_url(&id, port));
        let hooks = Arc::new(crate::browsers::Hooks::new(
            self.clone(),
            session,
            guest.clone(),
        ));
        Ok(ToolContext::new(guest, workdir, preview_url).with_hooks(hooks))
    }

    /// Makes the session's agent from its stored transcript `items` (or
    /// returns the one another request made meanwhile).
    async fn agent_from(
        &self,
        session: &str,
        items: &[TranscriptItem],
    ) -> Result<SessionAgent, Error> {
        let Some(config) = self.agents().model().cloned() else {
            return Err(Error::NoModel);
        };
        let tools = self.tool_context(session).await?;
        let transcript = SessionTranscript {
            app: self.clone(),
            session: session.to_owned(),
        };
        // The image's manifest, read on the host, names the tools for the prompt.
        let images = self.images().clone();
        let image = self.store().session(session)?.image;
        let image = tokio::task::spawn_blocking(move || images.get(&image).ok())
            .await?
            .map(|i| i.manifest);
        let settings = AgentSettings {
            image,
            ..AgentSettings::default()
        };
        let agent = Agent::new(Model::new(config), tools, transcript, settings, items);
        // Another request may have made one meanwhile: the first is kept.
        self.live_session(session)?.keep_agent(agent)
    }

    /// The session's agent, if its session is live and one was made.
    pub fn agent_if_made(&self, session: &str) -> Option<SessionAgent> {
        self.live().get(session)?.agent()
    }

    /// The agent items of a session's event log, in order.
    pub fn transcript(&self, session: &str) -> Result<Vec<TranscriptItem>, Error> {
        const PAGE: usize = 10_000;
        let mut items = Vec::new();
        let mut since = 0;
        loop {
            let page = self.events().list(session, since, PAGE)?;
            let Some(last) = page.last() else { break };
            since = last.seq;
            let full = page.len() == PAGE;
            items.extend(page.into_iter().filter_map(|e| match e.kind {
                EventKind::Agent { item } => Some(item),
                _ => None,
            }));
            if !full {
                break;
            }
        }
        Ok(items)
    }

    /// After a restart: continues every agent run that the restart cut off.
    pub async fn resume_agents(&self) {
        if self.agents().model().is_none() {
            return;
        }
        let Ok(sessions) = self.store().sessions() else {
            return;
        };
        for s in sessions
            .into_iter()
            .filter(|s| s.state == firepit_wire::api::SessionState::Running)
        {
            let Ok(items) = self.transcript(&s.id) else {
                continue;
            };
            if firepit_agent::rebuild(&items).unfinished {
                match self.agent_from(&s.id, &items).await {
                    Ok(agent) => {
                        agent.resume().await;
                    }
                    Err(e) => {
                        tracing::warn!(session = %s.id, error = %crate::error::chain(&e), "could not resume the agent")
                    }
                }
            }
        }
    }
}
