//! Which model to use: from the environment or given explicitly.

use std::time::Duration;

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Anthropic's Messages API.
    Anthropic,
    /// OpenAI's Chat Completions API.
    OpenAi,
    /// Any server speaking Chat Completions (Ollama, vLLM, llama.cpp, LiteLLM, OpenRouter).
    OpenAiCompatible,
}

impl ProviderKind {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "Anthropic",
            ProviderKind::OpenAi => "OpenAI",
            ProviderKind::OpenAiCompatible => "the model server (FIREPIT_MODEL_URL)",
        }
    }

    /// The environment variable that holds its key.
    pub fn key_var(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
            ProviderKind::OpenAi => "OPENAI_API_KEY",
            ProviderKind::OpenAiCompatible => "FIREPIT_MODEL_KEY",
        }
    }
}

/// How often and how patiently to retry 429, 5xx, connect errors and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests made at most (the first included).
    pub max_tries: u32,
    /// The first backoff; doubled each try, plus up to as much again of jitter.
    pub base_delay: Duration,
    /// The longest wait between tries (a `retry-after` is honoured up to this).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_tries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// A model to talk to.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The protocol.
    pub kind: ProviderKind,
    /// Base URL, without the API path (`https://api.anthropic.com`,
    /// `https://api.openai.com/v1`, `http://localhost:11434/v1`).
    pub base_url: String,
    /// The key, if the server wants one.
    pub api_key: Option<String>,
    /// The model's name.
    pub model: String,
    /// Give up when the provider sends nothing for this long (before or during the stream).
    pub idle_timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Most output tokens per request.
    pub max_tokens: u32,
}

/// How to configure a model, for the person.
pub const CONFIGURE_HELP: &str = "no model is configured. Set one of:\n  \
ANTHROPIC_API_KEY=sk-ant-...            (Anthropic; optional ANTHROPIC_BASE_URL)\n  \
OPENAI_API_KEY=sk-...                   (OpenAI; optional OPENAI_BASE_URL)\n  \
FIREPIT_MODEL_URL=http://host:11434/v1  (any OpenAI-compatible server: Ollama, vLLM, llama.cpp, LiteLLM, OpenRouter; optional FIREPIT_MODEL_KEY)\n\
and optionally FIREPIT_MODEL=<model name> (required with FIREPIT_MODEL_URL), then restart `firepit up`.";

/// The default Anthropic model.
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";
/// The default OpenAI model.
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4.1";

impl ModelConfig {
    /// An explicit configuration with default timeouts and retries.
    pub fn new(
        kind: ProviderKind,
        base_url: impl Into<String>,
        api_key: Option<String>,
        model: impl Into<String>,
    ) -> ModelConfig {
        ModelConfig {
            kind,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key,
            model: model.into(),
            idle_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            max_tokens: 8192,
        }
    }

    /// From the process environment; `None` means no model is configured (tell the person
    /// [`CONFIGURE_HELP`]).
    pub fn from_env() -> Option<ModelConfig> {
        ModelConfig::from_vars(|k| std::env::var(k).ok())
    }

    /// From variables looked up by `var`. `FIREPIT_MODEL_URL` wins, then
    /// `ANTHROPIC_API_KEY`, then `OPENAI_API_KEY`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<ModelConfig> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let model = get("FIREPIT_MODEL");
        if let Some(url) = get("FIREPIT_MODEL_URL") {
            return Some(ModelConfig::new(
                ProviderKind::OpenAiCompatible,
                url,
                get("FIREPIT_MODEL_KEY"),
                model?,
            ));
        }
        if let Some(key) = get("ANTHROPIC_API_KEY") {
            return Some(ModelConfig::new(
                ProviderKind::Anthropic,
                get("ANTHROPIC_BASE_URL").unwrap_or_else(|| "https://api.anthropic.com".into()),
                Some(key),
                model.unwrap_or_else(|| DEFAULT_ANTHROPIC_MODEL.into()),
            ));
        }
        if let Some(key) = get("OPENAI_API_KEY") {
            return Some(ModelConfig::new(
                ProviderKind::OpenAi,
                get("OPENAI_BASE_URL").unwrap_or_else(|| "https://api.openai.com/v1".into()),
                Some(key),
                model.unwrap_or_else(|| DEFAULT_OPENAI_MODEL.into()),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Option<ModelConfig> {
        let list: Vec<(String, String)> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ModelConfig::from_vars(move |k| list.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn precedence_and_defaults() {
        assert!(vars(&[]).is_none());
        let a = vars(&[("ANTHROPIC_API_KEY", "k"), ("OPENAI_API_KEY", "o")]).unwrap();
        assert_eq!(a.kind, ProviderKind::Anthropic);
        assert_eq!(a.model, DEFAULT_ANTHROPIC_MODEL);
        assert_eq!(a.base_url, "https://api.anthropic.com");
        let o = vars(&[("OPENAI_API_KEY", "o"), ("OPENAI_BASE_URL", "http://x/v1/")]).unwrap();
        assert_eq!(
            (o.kind, o.base_url.as_str()),
            (ProviderKind::OpenAi, "http://x/v1")
        );
        let c = vars(&[
            ("FIREPIT_MODEL_URL", "http://l:11434/v1"),
            ("FIREPIT_MODEL", "qwen"),
            ("ANTHROPIC_API_KEY", "k"),
        ])
        .unwrap();
        assert_eq!(c.kind, ProviderKind::OpenAiCompatible);
        assert_eq!(c.api_key, None);
        // A URL without a model name is not enough.
        assert!(vars(&[("FIREPIT_MODEL_URL", "http://l/v1")]).is_none());
    }
}
