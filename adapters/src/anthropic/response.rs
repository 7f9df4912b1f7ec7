//! Anthropic `Message` -> OpenAI `chat.completion`, and the usage and finish-reason mappings the
//! stream translator shares.

use tollgate_schemas::TokenUsage;

use super::types::{ContentBlock, MessageResponse, Usage};
use crate::{
    openai_out::{completion_bytes, Answer, ToolCall},
    AdapterError, Parsed,
};

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub(crate) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and reasons added later.
        _ => "stop",
    }
}

/// Anthropic reports cache reads and writes beside `input_tokens`; OpenAI's prompt count includes
/// them, and Tollgate's `cached_input` / `cache_write_input` are subsets of `input`.
pub(crate) fn token_usage(u: &Usage) -> TokenUsage {
    let cache_read = u.cache_read_input_tokens.unwrap_or(0);
    let cache_write = u.cache_creation_input_tokens.unwrap_or(0);
    TokenUsage {
        input: u
            .input_tokens
            .unwrap_or(0)
            .saturating_add(cache_read)
            .saturating_add(cache_write),
        output: u.output_tokens.unwrap_or(0),
        cached_input: cache_read,
        cache_write_input: cache_write,
        reasoning: 0,
    }
}

/// Converts a non-streaming answer into OpenAI's `chat.completion` bytes.
pub(crate) fn convert(body: &[u8]) -> Result<Parsed, AdapterError> {
    let msg: MessageResponse =
        serde_json::from_slice(body).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    let mut answer = Answer::default();
    for block in &msg.content {
        match block {
            ContentBlock::Text { text } => answer.text.push_str(text),
            ContentBlock::Thinking { thinking, signature } => {
                answer.push_thinking(thinking, signature.as_deref());
            }
            ContentBlock::RedactedThinking { data } => answer.push_redacted(data),
            ContentBlock::ToolUse { id, name, input } => {
                let arguments =
                    serde_json::to_string(input).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
                answer
                    .tool_calls
                    .push(ToolCall::new(id.as_str(), name, arguments));
            }
            ContentBlock::Other => {}
        }
    }
    let usage = token_usage(&msg.usage);
    let finish = finish_reason(msg.stop_reason.as_deref().unwrap_or("end_turn"));
    let body = completion_bytes(&msg.id, &msg.model, [answer.choice(0, finish)], &usage)?;
    Ok(Parsed {
        body,
        usage: Some(usage),
        model: (!msg.model.is_empty()).then(|| msg.model.clone()),
    })
}
