//! Cohere `ChatResponseV2` -> OpenAI `chat.completion`, and the usage and finish-reason mappings the
//! stream translator shares.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tollgate_schemas::TokenUsage;

use super::types::{ChatResponse, ContentItem, Usage};
use crate::{
    openai_out::{now_secs, OpenAiUsage},
    AdapterError, Parsed,
};

/// OpenAI's `finish_reason` for a Cohere one; `None` when the generation failed (`ERROR`,
/// `TIMEOUT`), which the caller turns into an error so routing may retry.
pub(crate) fn finish_reason(reason: &str) -> Option<&'static str> {
    match reason {
        "MAX_TOKENS" => Some("length"),
        "TOOL_CALL" => Some("tool_calls"),
        "ERROR_TOXIC" => Some("content_filter"),
        "ERROR" | "TIMEOUT" => None,
        // COMPLETE, STOP_SEQUENCE and reasons added later.
        _ => Some("stop"),
    }
}

/// Billed units are what Cohere charges for, so they win; raw token counts (which include Cohere's
/// own prompt template) are the fallback. `cached_tokens` is a subset of the input.
pub(crate) fn token_usage(u: &Usage) -> TokenUsage {
    let pick = |f: fn(&super::types::Units) -> Option<f64>| {
        u.billed_units
            .as_ref()
            .and_then(f)
            .or_else(|| u.tokens.as_ref().and_then(f))
            .map_or(0, count)
    };
    let input = pick(|x| x.input_tokens);
    TokenUsage {
        input,
        output: pick(|x| x.output_tokens),
        cached_input: u.cached_tokens.map_or(0, count).min(input),
        cache_write_input: 0,
        reasoning: 0,
    }
}

/// A JSON number of tokens as a count (negative or non-finite values count as 0).
pub(crate) fn count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    /// Cohere's answer does not name the model: the model the request went to.
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
    /// Cohere's citations (an extension field OpenAI clients ignore).
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    citations: &'a [Value],
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
    arguments: &'a str,
}

fn bad(e: impl std::fmt::Display) -> AdapterError {
    AdapterError::BadUpstreamBody(e.to_string())
}

/// Converts a non-streaming answer from `model` into OpenAI's `chat.completion` bytes.
pub(crate) fn convert(body: &[u8], model: &str) -> Result<Parsed, AdapterError> {
    let res: ChatResponse = serde_json::from_slice(body).map_err(bad)?;
    let reason = res.finish_reason.as_deref().unwrap_or("COMPLETE");
    let Some(finish) = finish_reason(reason) else {
        return Err(bad(format!("cohere ended the generation with {reason}")));
    };
    let msg = &res.message;
    // The tool plan is the text an assistant says before calling tools: OpenAI's `content`.
    let mut text = msg.tool_plan.clone().unwrap_or_default();
    let mut thinking: Option<String> = None;
    for item in &msg.content {
        match item {
            ContentItem::Text { text: t } => text.push_str(t),
            ContentItem::Thinking { thinking: t } => thinking.get_or_insert_with(String::new).push_str(t),
            ContentItem::Other => {}
        }
    }
    let mut tool_calls = Vec::with_capacity(msg.tool_calls.len());
    for call in &msg.tool_calls {
        let function = call.function.as_ref();
        let name = function.and_then(|f| f.name.as_deref());
        let (Some(id), Some(name)) = (call.id.as_deref(), name) else {
            return Err(bad("a tool call without id or name"));
        };
        let arguments = function.and_then(|f| f.arguments.as_deref()).unwrap_or("{}");
        tool_calls.push(ToolCall {
            id,
            kind: "function",
            function: FunctionCall { name, arguments },
        });
    }
    let usage = res.usage.as_ref().map(token_usage).unwrap_or_default();
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
    let out = ChatCompletion {
        id: &res.id,
        object: "chat.completion",
        created: now_secs(),
        model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                refusal: (),
                reasoning_content: thinking,
                tool_calls,
                citations: &msg.citations,
            },
            logprobs: (),
            finish_reason: finish,
        }],
        usage: OpenAiUsage::from(&usage),
    };
    let bytes = serde_json::to_vec(&out).map_err(bad)?;
    Ok(Parsed {
        body: Bytes::from(bytes),
        usage: Some(usage),
        model: (!model.is_empty()).then(|| model.to_string()),
    })
}
