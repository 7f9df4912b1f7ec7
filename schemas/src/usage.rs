//! Token usage as reported by providers, and the canonical usage event Tollgate records once per request.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Token counts in OpenAI's vocabulary. Providers that report other names are mapped onto these by
/// their adapter. `cached_input` and `cache_write_input` are subsets of `input`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    #[serde(default)]
    pub cached_input: u64,
    #[serde(default)]
    pub cache_write_input: u64,
    #[serde(default)]
    pub reasoning: u64,
}

impl TokenUsage {
    /// Reads an OpenAI `usage` object (chat, legacy completions and embeddings shapes).
    pub fn from_openai(usage: &serde_json::Value) -> Option<TokenUsage> {
        let obj = usage.as_object()?;
        let num = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_u64).unwrap_or(0);
        let input = num(obj.get("prompt_tokens").or_else(|| obj.get("input_tokens")));
        let output = num(obj.get("completion_tokens").or_else(|| obj.get("output_tokens")));
        let cached_input = num(obj
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens")));
        let reasoning = num(obj
            .get("completion_tokens_details")
            .and_then(|d| d.get("reasoning_tokens")));
        Some(TokenUsage {
            input,
            output,
            cached_input,
            cache_write_input: 0,
            reasoning,
        })
    }
}

/// One record per request that reached the gateway, whatever its outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UsageEvent {
    /// UUIDv7: sortable by time.
    pub id: Uuid,
    /// Unix time of the request's arrival, in milliseconds.
    pub ts_ms: i64,
    pub request_id: String,
    /// The Tollgate key's id (never the key itself); `None` when authentication failed.
    pub key_id: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    /// The OpenAI `user` field, when the client sent one.
    pub user: Option<String>,
    pub endpoint: String,
    pub requested_model: Option<String>,
    pub served_model: Option<String>,
    pub provider: Option<String>,
    pub status: u16,
    pub error_type: Option<String>,
    pub streamed: bool,
    pub cancelled: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    #[serde(default)]
    pub cache_write_input_tokens: u64,
    pub reasoning_tokens: u64,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub attempts: u32,
    /// Cost in USD as a decimal string; `None` when the model's price is unknown (never a guessed zero).
    #[serde(default)]
    pub cost_usd: Option<String>,
    /// Which gateway process recorded it.
    #[serde(default)]
    pub instance: String,
    /// `provider/model` of the target that served (or last failed).
    #[serde(default)]
    pub target: Option<String>,
    /// Served by a target other than the first the routing plan chose.
    #[serde(default)]
    pub fallback: bool,
    /// Request body bytes received and response bytes sent.
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
    /// Opt-in (a key's `body_retention`): the prompt and answer, stored apart from the event and
    /// deleted after `expires_ms`. Never part of analytics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bodies: Option<Bodies>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bodies {
    pub request: String,
    pub response: String,
    pub expires_ms: i64,
}

/// The ClickHouse DDL (`sql/`), in order; `{db}` stands for the database name.
pub const CLICKHOUSE_SCHEMA: &[&str] = &[include_str!("../sql/001_usage_events.sql")];

impl UsageEvent {
    pub fn apply_usage(&mut self, usage: &TokenUsage) {
        self.input_tokens = usage.input;
        self.output_tokens = usage.output;
        self.cached_input_tokens = usage.cached_input;
        self.cache_write_input_tokens = usage.cache_write_input;
        self.reasoning_tokens = usage.reasoning;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_usage_with_details() {
        let v = serde_json::json!({
            "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 12}
        });
        let u = TokenUsage::from_openai(&v).unwrap();
        assert_eq!(
            (u.input, u.output, u.cached_input, u.reasoning),
            (100, 20, 64, 12)
        );
    }

    #[test]
    fn embeddings_usage_has_no_completion_tokens() {
        let v = serde_json::json!({"prompt_tokens": 7, "total_tokens": 7});
        let u = TokenUsage::from_openai(&v).unwrap();
        assert_eq!((u.input, u.output), (7, 0));
        assert!(TokenUsage::from_openai(&serde_json::Value::Null).is_none());
    }
}
