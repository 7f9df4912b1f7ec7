//! Bedrock `ConverseResponse` -> OpenAI `chat.completion`, and the usage and finish-reason mappings
//! the stream translator shares.

use std::sync::atomic::{AtomicU64, Ordering};

use tollgate_schemas::TokenUsage;

use super::types::{ConverseResponse, Usage};
use crate::{
    openai_out::{completion_bytes, Answer, ToolCall},
    AdapterError, Parsed,
};

/// OpenAI's `finish_reason` for a Converse `stopReason`.
pub(crate) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        // end_turn, stop_sequence, malformed_* and reasons added later.
        _ => "stop",
    }
}

/// Bedrock reports cache reads and writes beside `inputTokens` (its `totalTokens` adds all four);
/// OpenAI's prompt count includes them, and Tollgate's `cached_input` / `cache_write_input` are
/// subsets of `input`.
pub(crate) fn token_usage(u: &Usage) -> TokenUsage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_write_input_tokens.unwrap_or(0);
    TokenUsage {
        input: u.input_tokens.saturating_add(read).saturating_add(write),
        output: u.output_tokens,
        cached_input: read,
        cache_write_input: write,
        reasoning: 0,
    }
}

/// Converse answers carry no id: one is made up, unique within the process and over time.
pub(crate) fn completion_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("chatcmpl-bedrock-{nanos:x}{seq:04x}")
}

/// Converts a non-streaming answer into OpenAI's `chat.completion` bytes. `model` is the model id
/// the request went to (Converse does not echo it).
pub(crate) fn convert(body: &[u8], model: &str) -> Result<Parsed, AdapterError> {
    let resp: ConverseResponse =
        serde_json::from_slice(body).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    let blocks = resp.output.message.map(|m| m.content).unwrap_or_default();
    let mut answer = Answer::default();
    for block in &blocks {
        if let Some(t) = &block.text {
            answer.text.push_str(t);
        }
        let reasoning = block.reasoning_content.as_ref();
        if let Some(r) = reasoning.and_then(|r| r.reasoning_text.as_ref()) {
            answer.push_thinking(&r.text, r.signature.as_deref());
        }
        if let Some(data) = reasoning.and_then(|r| r.redacted_content.as_deref()) {
            answer.push_redacted(data);
        }
        if let Some(t) = &block.tool_use {
            let input = if t.input.is_null() {
                "{}".to_string()
            } else {
                serde_json::to_string(&t.input).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?
            };
            answer
                .tool_calls
                .push(ToolCall::new(t.tool_use_id.as_str(), &t.name, input));
        }
    }
    let usage = token_usage(&resp.usage);
    let choice = answer.choice(0, finish_reason(&resp.stop_reason));
    let body = completion_bytes(&completion_id(), model, [choice], &usage)?;
    Ok(Parsed {
        body,
        usage: Some(usage),
        model: None,
    })
}
