//! The firepit daemon: one process that owns sessions and their machines and
//! serves the HTTP API (`/v1/...`, described by `docs/api/openapi.yaml`).
//!
//! [`App::open`] builds the state from a [`Config`]; [`serve`] (the front
//! door, [`front_door`]) takes an already bound listener and a shutdown
//! future, so tests run a daemon on port 0. A running session's runtime is a
//! [`live::LiveSession`].

#![warn(missing_docs)]

pub mod agents;
pub mod api;
pub mod auth;
pub mod browsers;
pub mod checkpoints;
pub mod closed_loop;
pub mod config;
pub mod data_dir;
pub mod deadlines;
pub mod e2b;
pub mod error;
pub mod events;
pub mod forge;
pub mod front_door;
pub mod host;
pub mod live;
pub mod machines;
pub mod mcp;
pub mod preview;
pub mod preview_reports;
pub mod proxy_relay;
pub mod scrollback;
pub mod services;
pub mod sessions;
pub mod store;
pub mod triage;
mod watchers;
pub mod workspace;

use std::sync::Arc;

use firepit_image::ImageStore;

pub use crate::config::Config;
pub use crate::error::Error;
use crate::events::EventLog;
pub use crate::front_door::serve;
use crate::sessions::Sessions;
pub use crate::store::Store;

/// The daemon's shared state; cheap to clone.
#[derive(Clone)]
pub struct App(Arc<Inner>);

struct Inner {
    config: Config,
    store: Arc<Store>,
    events: EventLog,
    images: Arc<ImageStore>,
    backend: Arc<dyn firepit_machine::Backend>,
    sessions: Sessions,
    token: String,
    previews: preview::Previews,
    agents: agents::Agents,
    forge: firepit_forge::Forge,
    triage: triage::Jobs,
    relays: proxy_relay::Relays,
    e2b: std::sync::OnceLock<firepit_e2b::E2b>,
    deadlines: deadlines::Deadlines,
    artifacts: browsers::Artifacts,
    /// The runtimes of the sessions whose machines run.
    live: live::LiveSessions,
}

impl App {
    /// Opens the data dir (creating it), the store, the image store and the
    /// machine backend, and reconciles sessions with the machines that exist.
    pub async fn open(config: Config) -> Result<App, Error> {
        config.validate()?;
        data_dir::secure(&config)?;
        let token = auth::load_or_create_token(&config.data_dir.join("token"))?;
        let store = Store::open(&config.data_dir.join(data_dir::STORE))?;
        let images = ImageStore::open(&config.images_dir)?;
        let backend = machines::backend(&config)?;
        let signer = firepit_preview::Signer::load_or_create(&config.data_dir.join("preview.key"))?;
        let app = App::assemble(config, store, images, backend, token, signer);
        app.reconcile().await?;
        app.resume_agents().await;
        app.resume_brokers().await;
        app.interrupt_triage()?;
        app.start_deadlines();
        Ok(app)
    }

    /// Builds the state from parts without touching the host or reconciling:
    /// for tests and for embedding the daemon with another backend. Preview
    /// links it signs last as long as it (its key is not kept).
    pub fn from_parts(
        config: Config,
        store: Store,
        images: ImageStore,
        backend: Arc<dyn firepit_machine::Backend>,
        token: String,
    ) -> App {
        let signer = firepit_preview::Signer::random();
        App::assemble(config, store, images, backend, token, signer)
    }

    fn assemble(
        config: Config,
        store: Store,
        images: ImageStore,
        backend: Arc<dyn firepit_machine::Backend>,
        token: String,
        signer: firepit_preview::Signer,
    ) -> App {
        let store = Arc::new(store);
        let model = config.model.clone();
        let forge = firepit_forge::Forge::new(config.forge.clone());
        App(Arc::new(Inner {
            config,
            events: EventLog::new(store.clone()),
            store,
            images: Arc::new(images),
            backend,
            sessions: Sessions::default(),
            token,
            previews: preview::Previews::new(signer),
            agents: agents::Agents::new(model),
            forge,
            triage: triage::Jobs::default(),
            relays: proxy_relay::Relays::default(),
            e2b: std::sync::OnceLock::new(),
            deadlines: deadlines::Deadlines::default(),
            artifacts: browsers::Artifacts::default(),
            live: live::LiveSessions::default(),
        }))
    }

    /// The agents of the sessions.
    pub fn agents(&self) -> &agents::Agents {
        &self.0.agents
    }

    /// The sessions' proxy relays.
    pub fn relays(&self) -> &proxy_relay::Relays {
        &self.0.relays
    }

    /// The settings the daemon runs with.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The API token.
    pub fn token(&self) -> &str {
        &self.0.token
    }

    /// The session store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The session event log.
    pub fn events(&self) -> &EventLog {
        &self.0.events
    }

    /// The image store.
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.0.images
    }

    /// The machine backend.
    pub fn backend(&self) -> &Arc<dyn firepit_machine::Backend> {
        &self.0.backend
    }

    /// Preview state: signing key, upstream connections.
    pub fn previews(&self) -> &preview::Previews {
        &self.0.previews
    }

    fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }
}
