//! Anthropic's native Messages API (`POST {base}/messages`, `x-api-key` and `anthropic-version`
//! headers), behind Tollgate's OpenAI chat interface. Only chat is supported: legacy completions and
//! embeddings are refused as invalid requests.
//!
//! Requests (`request.rs`): system and developer messages become the top-level `system` (wherever they
//! appear); user text and images (data: URLs as base64, http(s) URLs as url sources); assistant text
//! and `tool_calls` (arguments parsed into `input`); `tool` messages become `tool_result` blocks in a
//! user turn. Consecutive turns of the same role are merged, since Anthropic wants them alternating.
//! `tools`, `tool_choice` (`required` -> `any`), `parallel_tool_calls: false`
//! (`disable_parallel_tool_use`), `max_completion_tokens`/`max_tokens` (default
//! [`DEFAULT_MAX_TOKENS`]: Anthropic requires one), `stop`, `temperature` (clamped to Anthropic's
//! 0..1), `top_p`, `user` (`metadata.user_id`), `reasoning_effort` (extended thinking with a budget of
//! 1024/4096/16384 tokens; sampling parameters are then left out, and forced tool use turns thinking
//! off, as Anthropic requires) and `response_format: json_schema` (`output_config.format`) are
//! converted. `n > 1` is refused.
//!
//! Every other OpenAI field (`seed`, `logprobs`, penalties, `logit_bias`, `metadata`, `store`,
//! `response_format: json_object`, `stream_options`, ...) is dropped, because the Messages API
//! rejects unknown fields. Content parts other than text and images (audio, files) are refused.
//!
//! Answers (`response.rs`, `stream.rs`) come back as OpenAI `chat.completion` / `chat.completion.chunk`:
//! text joined into `content`, `tool_use` as `tool_calls`, thinking as `reasoning_content`, cache
//! reads and writes counted in `prompt_tokens` (reads also as `cached_tokens`). Thinking and redacted
//! thinking blocks also come back whole, with their signatures, as the `thinking_blocks` extension
//! (streams: per-block fragments, the signature in its own; see `reasoning.rs`). An assistant message
//! sent back with `thinking_blocks` gets its signed blocks first in the turn, as Anthropic requires to
//! continue a tool call with thinking on; a tool continuation without them runs without thinking.

mod request;
mod response;
mod stream;
mod types;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::{
    openai_compat::{base_headers, join_url},
    Adapter, AdapterError, AuthStyle, Operation, Parsed, StreamTranslator, Target, UpstreamError,
    UpstreamRequest,
};
pub use stream::AnthropicStream;

/// The `anthropic-version` header sent with every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` when the client sets neither `max_tokens` nor `max_completion_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

#[derive(Debug, Clone, Copy)]
pub struct AnthropicAdapter;

impl Adapter for AnthropicAdapter {
    fn supports(&self, op: Operation) -> bool {
        op == Operation::Chat
    }

    fn default_max_tokens(&self) -> Option<u64> {
        Some(DEFAULT_MAX_TOKENS)
    }

    fn build_request(
        &self,
        op: Operation,
        body: Map<String, Value>,
        stream: bool,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        if op != Operation::Chat {
            return Err(AdapterError::InvalidRequest {
                message: format!("the {} endpoint is not supported by anthropic", op.as_str()),
                param: None,
            });
        }
        let body = messages_body(&body, Some(target.model), None, stream)?;
        let mut headers = base_headers(AuthStyle::XApiKey, target.api_key)?;
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        Ok(UpstreamRequest {
            url: join_url(target.base_url, "messages"),
            headers,
            body,
        })
    }

    fn parse_response(&self, _op: Operation, body: Bytes) -> Result<Parsed, AdapterError> {
        response::convert(&body)
    }

    fn stream_translator(&self, _op: Operation, client_wants_usage: bool) -> Box<dyn StreamTranslator> {
        Box::new(AnthropicStream::new(client_wants_usage))
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamError {
        parse_error(status, body)
    }
}

/// The Messages request body for an OpenAI chat body (without `model`). `model` is `None` and
/// `anthropic_version` set where the platform wants them so (Vertex AI: model in the URL, version in
/// the body).
pub(crate) fn messages_body(
    body: &Map<String, Value>,
    model: Option<&str>,
    anthropic_version: Option<&str>,
    stream: bool,
) -> Result<Bytes, AdapterError> {
    let mut req = request::convert(body, model, stream)?;
    req.anthropic_version = anthropic_version;
    serde_json::to_vec(&req)
        .map(Bytes::from)
        .map_err(|e| AdapterError::InvalidRequest {
            message: e.to_string(),
            param: None,
        })
}

/// Reads `{"type":"error","error":{"type","message"}}`. Rate limits, overload (529), timeouts and
/// server errors are retryable; `kind` is Anthropic's error type (e.g. `overloaded_error`).
pub fn parse_error(status: u16, body: &[u8]) -> UpstreamError {
    let detail = serde_json::from_slice::<types::ErrorResponse>(body)
        .ok()
        .map(|r| r.error);
    let (kind, message) = match detail {
        Some(d) => (d.kind, d.message),
        None => (None, None),
    };
    let retryable = matches!(status, 408 | 429)
        || status >= 500
        || matches!(
            kind.as_deref(),
            Some("overloaded_error" | "rate_limit_error" | "timeout_error")
        );
    UpstreamError {
        status,
        message: message.unwrap_or_else(|| format!("upstream answered HTTP {status}")),
        kind,
        param: None,
        retryable,
    }
}
