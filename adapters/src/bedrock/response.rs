//! Bedrock `ConverseResponse` -> OpenAI `chat.completion`, and the usage and finish-reason mappings
//! the stream translator shares.

use std::{
    borrow::Cow,
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use serde::Serialize;
use tollgate_schemas::TokenUsage;

use super::types::{ConverseResponse, Usage};
use crate::{
    openai_out::{now_secs, OpenAiUsage},
    reasoning::ThinkingBlock,
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
        input: u.input_tokens + read + write,
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
    /// Reasoning with its signatures, and redacted reasoning, for the client to send back.
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

/// Converts a non-streaming answer into OpenAI's `chat.completion` bytes. `model` is the model id
/// the request went to (Converse does not echo it).
pub(crate) fn convert(body: &[u8], model: &str) -> Result<Parsed, AdapterError> {
    let resp: ConverseResponse =
        serde_json::from_slice(body).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    let blocks = resp.output.message.map(|m| m.content).unwrap_or_default();
    let mut text = String::new();
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in &blocks {
        if let Some(t) = &block.text {
            text.push_str(t);
        }
        if let Some(r) = block
            .reasoning_content
            .as_ref()
            .and_then(|r| r.reasoning_text.as_ref())
        {
            reasoning.get_or_insert_with(String::new).push_str(&r.text);
            thinking_blocks.push(ThinkingBlock::Thinking {
                thinking: Cow::Borrowed(&r.text),
                signature: r
                    .signature
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(Cow::Borrowed),
            });
        }
        if let Some(data) = block
            .reasoning_content
            .as_ref()
            .and_then(|r| r.redacted_content.as_deref())
        {
            thinking_blocks.push(ThinkingBlock::RedactedThinking {
                data: Cow::Borrowed(data),
            });
        }
        if let Some(t) = &block.tool_use {
            let input = if t.input.is_null() {
                "{}".to_string()
            } else {
                serde_json::to_string(&t.input).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?
            };
            tool_calls.push(ToolCall {
                id: &t.tool_use_id,
                kind: "function",
                function: FunctionCall {
                    name: &t.name,
                    arguments: input,
                },
            });
        }
    }
    let usage = token_usage(&resp.usage);
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
    let id = completion_id();
    let out = ChatCompletion {
        id: &id,
        object: "chat.completion",
        created: now_secs(),
        model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                refusal: (),
                reasoning_content: reasoning,
                thinking_blocks,
                tool_calls,
            },
            logprobs: (),
            finish_reason: finish_reason(&resp.stop_reason),
        }],
        usage: OpenAiUsage::from(&usage),
    };
    let bytes = serde_json::to_vec(&out).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    Ok(Parsed {
        body: Bytes::from(bytes),
        usage: Some(usage),
        model: None,
    })
}
