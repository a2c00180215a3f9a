//! Integration tests: the agent loop against stand-in model servers that speak
//! Anthropic's and OpenAI's streaming protocols, with tools acting through a real guest
//! run as a plain process on a temporary socket.

mod checkpoints;
mod providers;
mod runs;
mod services_tool;
mod test_tool;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firepit_agent::{
    Agent, AgentSettings, Model, ModelConfig, ProviderKind, RetryPolicy, ToolContext, Transcript,
    TranscriptItem,
};
use firepit_guest_client::GuestClient;
use firepit_testkit::guest::HostGuest;

/// Hang guard for anything a test waits on.
pub const GUARD: Duration = Duration::from_secs(60);

/// Runs `fut` under the hang guard.
pub async fn guard<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(GUARD, fut).await.expect("hang guard")
}

/// A running guest (commands run on this host, as this user), with a work dir.
pub struct Guest {
    host: HostGuest,
    pub client: GuestClient,
}

impl Guest {
    pub async fn start() -> Guest {
        let host = HostGuest::start().await;
        std::fs::create_dir(host.dir.path().join("work")).unwrap();
        let client = host.client.clone();
        Guest { host, client }
    }

    pub fn workdir(&self) -> PathBuf {
        self.host.dir.path().join("work")
    }

    pub fn tools(&self) -> ToolContext {
        ToolContext::new(
            self.client.clone(),
            self.workdir().to_str().unwrap(),
            Arc::new(|p| format!("http://p{p}.preview.test/")),
        )
    }
}

/// A transcript kept in memory.
#[derive(Clone, Default)]
pub struct Recorded(pub Arc<Mutex<Vec<TranscriptItem>>>);

impl Transcript for Recorded {
    async fn record(&self, item: TranscriptItem) {
        self.0.lock().unwrap().push(item);
    }
}

impl Recorded {
    pub fn items(&self) -> Vec<TranscriptItem> {
        self.0.lock().unwrap().clone()
    }

    pub fn errors(&self) -> Vec<String> {
        self.items()
            .into_iter()
            .filter_map(|i| match i {
                TranscriptItem::Error { message } => Some(message),
                _ => None,
            })
            .collect()
    }

    pub fn results(&self) -> Vec<(String, String, bool)> {
        self.items()
            .into_iter()
            .filter_map(|i| match i {
                TranscriptItem::ToolResult {
                    name,
                    output,
                    is_error,
                    ..
                } => Some((name, output, is_error)),
                _ => None,
            })
            .collect()
    }

    pub fn last(&self) -> TranscriptItem {
        self.items().last().cloned().unwrap()
    }
}

/// A model config for a stand-in server: short timeouts, fast retries.
pub fn config(kind: ProviderKind, base: &str) -> ModelConfig {
    let mut c = ModelConfig::new(kind, base, Some("test-key".into()), "claude-sonnet-4-5");
    if kind != ProviderKind::Anthropic {
        c.model = "gpt-4o".into();
    }
    c.idle_timeout = Duration::from_secs(3);
    c.retry = RetryPolicy {
        max_tries: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
    };
    c
}

/// An agent on `guest` talking to `cfg`.
pub fn agent(
    guest: &Guest,
    cfg: ModelConfig,
    settings: AgentSettings,
) -> (Agent<Recorded>, Recorded) {
    let rec = Recorded::default();
    let a = Agent::new(Model::new(cfg), guest.tools(), rec.clone(), settings, &[]);
    (a, rec)
}
