//! The firepit daemon: one process that owns sessions and their machines and
//! serves the HTTP API (`/v1/...`, described by `docs/api/openapi.yaml`).
//!
//! [`App::open`] builds the state from a [`Config`]; [`serve`] takes an already
//! bound listener and a shutdown future, so tests run a daemon on port 0.

#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod machines;
pub mod sessions;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use firepit_image::ImageStore;

pub use crate::config::Config;
pub use crate::error::Error;
use crate::sessions::Sessions;
pub use crate::store::Store;

/// The daemon's shared state; cheap to clone.
#[derive(Clone)]
pub struct App(Arc<Inner>);

struct Inner {
    config: Config,
    store: Store,
    images: Arc<ImageStore>,
    backend: Arc<dyn firepit_machine::Backend>,
    sessions: Sessions,
    token: String,
}

impl App {
    /// Opens the data dir (creating it), the store, the image store and the
    /// machine backend, and reconciles sessions with the machines that exist.
    pub async fn open(config: Config) -> Result<App, Error> {
        config.validate()?;
        let mkdir = |dir: &PathBuf| {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: format!("creating {}", dir.display()),
                source,
            })
        };
        mkdir(&config.data_dir)?;
        mkdir(&config.images_dir)?;
        let token = auth::load_or_create_token(&config.data_dir.join("token"))?;
        let store = Store::open(&config.data_dir.join("firepit.db"))?;
        let images = ImageStore::open(&config.images_dir)?;
        let backend = machines::backend(&config)?;
        let app = App::from_parts(config, store, images, backend, token);
        app.reconcile().await?;
        Ok(app)
    }

    /// Builds the state from parts without touching the host or reconciling:
    /// for tests and for embedding the daemon with another backend.
    pub fn from_parts(
        config: Config,
        store: Store,
        images: ImageStore,
        backend: Arc<dyn firepit_machine::Backend>,
        token: String,
    ) -> App {
        App(Arc::new(Inner {
            config,
            store,
            images: Arc::new(images),
            backend,
            sessions: Sessions::default(),
            token,
        }))
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

    /// The image store.
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.0.images
    }

    /// The machine backend.
    pub fn backend(&self) -> &Arc<dyn firepit_machine::Backend> {
        &self.0.backend
    }

    fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let router = api::router(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Io {
            what: "serving HTTP".into(),
            source,
        })
}
