//! Token prices of known models, for cost accounting. Unknown models count tokens only.
//!
//! Prices are USD per million tokens (input, output), as published by the providers in
//! 2025; update the table when they change.

/// (model name prefix, input $/Mtok, output $/Mtok); the longest matching prefix wins.
const PRICES: &[(&str, f64, f64)] = &[
    ("claude-opus-4-5", 5.0, 25.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("claude-haiku-4-5", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("gpt-4o-mini", 0.15, 0.6),
    ("gpt-4o", 2.5, 10.0),
    ("gpt-4.1-nano", 0.1, 0.4),
    ("gpt-4.1-mini", 0.4, 1.6),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-5-nano", 0.05, 0.4),
    ("gpt-5-mini", 0.25, 2.0),
    ("gpt-5", 1.25, 10.0),
    ("o4-mini", 1.1, 4.4),
    ("o3", 2.0, 8.0),
];

/// The cost in USD of `input` and `output` tokens of `model`, if its price is known.
/// A provider prefix (`anthropic/`, `openai/`, as OpenRouter and LiteLLM use) is ignored.
pub fn cost_usd(model: &str, input: u64, output: u64) -> Option<f64> {
    let name = model.rsplit('/').next().unwrap_or(model);
    let (_, i, o) = PRICES
        .iter()
        .filter(|(p, _, _)| name.starts_with(p))
        .max_by_key(|(p, _, _)| p.len())?;
    Some((input as f64 * i + output as f64 * o) / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown() {
        assert_eq!(cost_usd("claude-sonnet-4-5", 1_000_000, 0), Some(3.0));
        assert_eq!(cost_usd("gpt-4o-mini-2024", 0, 1_000_000), Some(0.6));
        assert_eq!(cost_usd("openai/gpt-4o", 1_000_000, 1_000_000), Some(12.5));
        assert_eq!(cost_usd("llama3.1:8b", 10, 10), None);
    }
}
