//! Cohere's v2 API (`https://api.cohere.com`, `Authorization: Bearer`), behind Tollgate's OpenAI chat
//! and embeddings interface: chat is `POST {base}/v2/chat` (streams: the same with `stream: true`),
//! embeddings `POST {base}/v2/embed`. Legacy completions are not supported.
//!
//! Requests (`request.rs`): system and developer messages become `system` messages (in place); user
//! text and images (`image_url` parts, http(s) or data: URLs, as Cohere v2 takes them in user turns;
//! images elsewhere are refused); assistant text, and for turns that call tools the text as
//! `tool_plan` beside `tool_calls`; `tool` messages keep `tool_call_id`. `tools` pass in OpenAI's
//! shape (`strict: true` on any tool -> `strict_tools`); `tool_choice` `none`/`required` ->
//! `NONE`/`REQUIRED` (`auto` is Cohere's default; a named tool cannot be forced: 400).
//! `response_format` `json_object` -> `json_object`, `json_schema` -> `json_object` with the schema;
//! `max_completion_tokens`/`max_tokens`, `stop` (`stop_sequences`, at most 5), `seed`, `top_p` (`p`),
//! `temperature` and the penalties (clamped into Cohere's 0..1), `reasoning_effort` (`thinking`:
//! `none` -> disabled, otherwise enabled with a budget of 1024/4096/16384 tokens). Cohere fields a
//! client may send along: `documents`, `citation_options`, `safety_mode`, `top_k`/`k`, `priority`.
//!
//! Every other OpenAI field (`user`, `logprobs`, `logit_bias`, `metadata`, `store`,
//! `parallel_tool_calls`, `stream_options`, ...) is dropped, and so are `reasoning_content` of earlier
//! assistant turns. Content parts other than text and images (audio, files) are refused.
//!
//! Answers (`response.rs`, `stream.rs`) come back as OpenAI `chat.completion` / `chat.completion.chunk`:
//! the tool plan and text joined into `content`, thinking as `reasoning_content`, tool calls as
//! `tool_calls`, citations as a `citations` extension field of the message (not streamed). Finish
//! reasons: `COMPLETE`/`STOP_SEQUENCE` -> `stop`, `MAX_TOKENS` -> `length`, `TOOL_CALL` ->
//! `tool_calls`, `ERROR_TOXIC` -> `content_filter`; `ERROR` and `TIMEOUT` are upstream errors (502,
//! retryable). Usage: billed units (else token counts), `cached_tokens` as cached input. The answer
//! does not name the model, so `model` is the target's model name (`parse_response_for`).
//! Embeddings: see `embed.rs`.

mod embed;
mod request;
mod response;
mod stream;
mod types;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::{
    openai_compat::{base_headers, join_url},
    Adapter, AdapterError, AuthStyle, Operation, Parsed, StreamTranslator, Target, UpstreamError,
    UpstreamRequest,
};
pub use embed::MAX_TEXTS;
pub use stream::CohereStream;

#[derive(Debug, Clone, Copy)]
pub struct CohereAdapter;

impl Adapter for CohereAdapter {
    fn supports(&self, op: Operation) -> bool {
        op != Operation::Completions
    }

    fn build_request(
        &self,
        op: Operation,
        body: Map<String, Value>,
        stream: bool,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        let to_bytes = |r: Result<Vec<u8>, serde_json::Error>| {
            r.map(Bytes::from).map_err(|e| AdapterError::InvalidRequest {
                message: e.to_string(),
                param: None,
            })
        };
        let (path, body) = match op {
            Operation::Chat => {
                let req = request::convert(&body, target.model, stream)?;
                ("v2/chat", to_bytes(serde_json::to_vec(&req))?)
            }
            Operation::Embeddings => {
                let req = embed::convert_request(&body, target.model)?;
                ("v2/embed", to_bytes(serde_json::to_vec(&req))?)
            }
            Operation::Completions => {
                return Err(AdapterError::InvalidRequest {
                    message: "the completions endpoint is not supported by cohere".into(),
                    param: None,
                })
            }
        };
        Ok(UpstreamRequest {
            url: join_url(target.base_url, path),
            headers: base_headers(AuthStyle::Bearer, target.api_key)?,
            body,
        })
    }

    fn parse_response(&self, op: Operation, body: Bytes) -> Result<Parsed, AdapterError> {
        self.parse_response_for(op, body, "")
    }

    /// Cohere's answers do not name their model: the target's model name goes into `model`.
    fn parse_response_for(&self, op: Operation, body: Bytes, model: &str) -> Result<Parsed, AdapterError> {
        match op {
            Operation::Embeddings => embed::convert_response(&body, model),
            _ => response::convert(&body, model),
        }
    }

    fn stream_translator(&self, op: Operation, client_wants_usage: bool) -> Box<dyn StreamTranslator> {
        self.stream_translator_for(op, client_wants_usage, "")
    }

    fn stream_translator_for(
        &self,
        _op: Operation,
        client_wants_usage: bool,
        model: &str,
    ) -> Box<dyn StreamTranslator> {
        Box::new(CohereStream::new(client_wants_usage, model))
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamError {
        parse_error(status, body)
    }
}

/// Reads Cohere's `{"message": "..."}` (sometimes with an `id`). Rate limits (429), cancellations
/// (499), server errors and timeouts are retryable. Cohere's 498 (invalid or expired token) is
/// reported as 401, so routing treats it like any rejected credential (falls over, no retry).
pub fn parse_error(status: u16, body: &[u8]) -> UpstreamError {
    let message = serde_json::from_slice::<types::ErrorResponse>(body)
        .ok()
        .and_then(|r| r.message)
        .filter(|m| !m.is_empty());
    let (status, kind) = match status {
        400 => (400, "invalid_request"),
        401 => (401, "unauthorized"),
        498 => (401, "invalid_token"),
        402 => (402, "payment_required"),
        403 => (403, "forbidden"),
        404 => (404, "not_found"),
        422 => (422, "unprocessable_entity"),
        429 => (429, "too_many_requests"),
        499 => (499, "request_cancelled"),
        501 => (501, "not_implemented"),
        503 => (503, "service_unavailable"),
        504 => (504, "gateway_timeout"),
        s if s >= 500 => (s, "internal_server_error"),
        s => (s, "error"),
    };
    let retryable = matches!(status, 408 | 429 | 499) || (status >= 500 && status != 501);
    UpstreamError {
        status,
        message: message.unwrap_or_else(|| format!("upstream answered HTTP {status}")),
        kind: Some(kind.to_string()),
        param: None,
        retryable,
    }
}
