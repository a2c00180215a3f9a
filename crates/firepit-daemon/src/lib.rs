//! The firepit daemon: one process that owns sessions and their machines and
//! serves the HTTP API (`/v1/...`, described by `docs/api/openapi.yaml`).
//!
//! [`App::open`] builds the state from a [`Config`]; [`serve`] takes an already
//! bound listener and a shutdown future, so tests run a daemon on port 0.

#![warn(missing_docs)]

pub mod agents;
pub mod api;
pub mod auth;
pub mod browsers;
pub mod checkpoints;
pub mod closed_loop;
pub mod config;
pub mod data_dir;
pub mod error;
pub mod events;
pub mod forge;
pub mod machines;
pub mod preview;
pub mod sessions;
pub mod store;
pub mod triage;
mod watchers;

use std::future::Future;
use std::sync::Arc;

use firepit_image::ImageStore;

pub use crate::config::Config;
pub use crate::error::Error;
use crate::events::EventLog;
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
    brokers: forge::Brokers,
    triage: triage::Jobs,
    browsers: browsers::Browsers,
    closed_loop: closed_loop::ClosedLoop,
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
            brokers: forge::Brokers::default(),
            triage: triage::Jobs::default(),
            browsers: browsers::Browsers::default(),
            closed_loop: closed_loop::ClosedLoop::default(),
        }))
    }

    /// The agents of the sessions.
    pub fn agents(&self) -> &agents::Agents {
        &self.0.agents
    }

    /// The sessions' browsers.
    pub fn browsers(&self) -> &browsers::Browsers {
        &self.0.browsers
    }

    /// The closed loop's per-session state.
    pub fn closed_loop(&self) -> &closed_loop::ClosedLoop {
        &self.0.closed_loop
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

/// Longest a request's headers may be (larger ones get 431).
const MAX_HEADER_BYTES: usize = 64 << 10;
/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves the API and previews (routed by Host, see [`preview`]) on
/// `listener` until `shutdown` completes, then waits a little for requests
/// in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let router = api::router(app.clone());
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .max_buf_size(MAX_HEADER_BYTES)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .timer(TokioTimer::new());
    let builder = std::sync::Arc::new(builder);
    let gate = std::sync::Arc::new(preview::FastGate::new(app.clone()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of fds and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, router, gate) = (app.clone(), router.clone(), gate.clone());
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            // Plain preview requests first (see `preview::FastGate`); the
            // rest of the connection, from the first request the fast path
            // does not take, on hyper.
            let (stream, read) = match gate.serve(stream, client).await {
                firepit_preview::fast::Outcome::Done => return,
                firepit_preview::fast::Outcome::Fallback(stream, read) => (stream, read),
            };
            let service = hyper::service::service_fn(move |req| {
                preview::dispatch(app.clone(), router.clone(), client, req)
            });
            let io = TokioIo::new(firepit_preview::fast::Prefixed::new(read, stream));
            let conn = builder.serve_connection_with_upgrades(io, service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("shutting down with requests still in flight");
    }
    Ok(())
}
