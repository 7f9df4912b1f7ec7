//! Cohere `ChatResponseV2` -> OpenAI `chat.completion`, and the usage and finish-reason mappings the
//! stream translator shares.

use tollgate_schemas::TokenUsage;

use super::types::{ChatResponse, ContentItem, Usage};
use crate::{
    openai_out::{completion_bytes, Answer, ToolCall},
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
    let mut answer = Answer {
        text: msg.tool_plan.clone().unwrap_or_default(),
        citations: &msg.citations,
        tool_calls: Vec::with_capacity(msg.tool_calls.len()),
        ..Answer::default()
    };
    for item in &msg.content {
        match item {
            ContentItem::Text { text } => answer.text.push_str(text),
            ContentItem::Thinking { thinking } => answer.push_reasoning(thinking),
            ContentItem::Other => {}
        }
    }
    for call in &msg.tool_calls {
        let function = call.function.as_ref();
        let name = function.and_then(|f| f.name.as_deref());
        let (Some(id), Some(name)) = (call.id.as_deref(), name) else {
            return Err(bad("a tool call without id or name"));
        };
        let arguments = function.and_then(|f| f.arguments.as_deref()).unwrap_or("{}");
        answer.tool_calls.push(ToolCall::new(id, name, arguments));
    }
    let usage = res.usage.as_ref().map(token_usage).unwrap_or_default();
    let body = completion_bytes(&res.id, model, [answer.choice(0, finish)], &usage)?;
    Ok(Parsed {
        body,
        usage: Some(usage),
        model: (!model.is_empty()).then(|| model.to_string()),
    })
}
