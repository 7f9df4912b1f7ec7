//! Anthropic `Message` -> OpenAI `chat.completion`, and the usage and finish-reason mappings the
//! stream translator shares.

use std::borrow::Cow;

use crate::openai_out::{now_secs, OpenAiUsage};
use crate::reasoning::ThinkingBlock;
use bytes::Bytes;
use serde::Serialize;
use tollgate_schemas::TokenUsage;

use super::types::{ContentBlock, MessageResponse, Usage};
use crate::{AdapterError, Parsed};

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
        input: u.input_tokens.unwrap_or(0) + cache_read + cache_write,
        output: u.output_tokens.unwrap_or(0),
        cached_input: cache_read,
        cache_write_input: cache_write,
        reasoning: 0,
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: OpenAiUsage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: (),
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<String>,
    refusal: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    /// Thinking and redacted thinking with their signatures, for the client to send back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    thinking_blocks: Vec<ThinkingBlock<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
}

#[derive(Serialize)]
struct ToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall<'a>,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    name: &'a str,
    arguments: String,
}

/// Converts a non-streaming answer into OpenAI's `chat.completion` bytes.
pub(crate) fn convert(body: &[u8]) -> Result<Parsed, AdapterError> {
    let msg: MessageResponse =
        serde_json::from_slice(body).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    let mut text = String::new();
    let mut thinking: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in &msg.content {
        match block {
            ContentBlock::Text { text: t } => text.push_str(t),
            ContentBlock::Thinking {
                thinking: t,
                signature,
            } => {
                thinking.get_or_insert_with(String::new).push_str(t);
                thinking_blocks.push(ThinkingBlock::Thinking {
                    thinking: Cow::Borrowed(t),
                    signature: signature.as_deref().filter(|s| !s.is_empty()).map(Cow::Borrowed),
                });
            }
            ContentBlock::RedactedThinking { data } => {
                thinking_blocks.push(ThinkingBlock::RedactedThinking {
                    data: Cow::Borrowed(data),
                });
            }
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: "function",
                function: FunctionCall {
                    name,
                    arguments: serde_json::to_string(input)
                        .map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?,
                },
            }),
            ContentBlock::Other => {}
        }
    }
    let usage = token_usage(&msg.usage);
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
    let out = ChatCompletion {
        id: &msg.id,
        object: "chat.completion",
        created: now_secs(),
        model: &msg.model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                refusal: (),
                reasoning_content: thinking,
                thinking_blocks,
                tool_calls,
            },
            logprobs: (),
            finish_reason: finish_reason(msg.stop_reason.as_deref().unwrap_or("end_turn")),
        }],
        usage: OpenAiUsage::from(&usage),
    };
    let bytes = serde_json::to_vec(&out).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    Ok(Parsed {
        body: Bytes::from(bytes),
        usage: Some(usage),
        model: (!msg.model.is_empty()).then(|| msg.model.clone()),
    })
}
