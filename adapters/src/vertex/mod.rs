//! Google Vertex AI: Gemini models and Anthropic's Claude models under one provider, authenticated by
//! an OAuth access token (`Authorization: Bearer`, minted by the gateway from a service account and
//! passed in [`Target::api_key`]). The base URL is
//! `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}` (see
//! [`base_url`]); the publisher follows from the model id:
//!
//! - ids starting with `claude` -> Anthropic on Vertex:
//!   `{base}/publishers/anthropic/models/{model}:rawPredict` (streams `:streamRawPredict`). The body is
//!   the Anthropic Messages body built by [`crate::anthropic`] without `model` (the URL names it) and
//!   with `"anthropic_version": "vertex-2023-10-16"`; answers, streams and errors are Anthropic's and
//!   are converted by the Anthropic adapter. Chat only.
//! - anything else -> Gemini: `{base}/publishers/google/models/{model}:generateContent` (streams
//!   `:streamGenerateContent?alt=sse`), the body and answers of [`crate::gemini`]. Embeddings use
//!   Vertex's own `:predict` (`instances[{content}]` -> `predictions[{embeddings{values,
//!   statistics{token_count}}}]`, `embeddings.rs`), which serves the `text-embedding-*`,
//!   `text-multilingual-embedding-*` and `gemini-embedding-*` models.
//!
//! Both publishers therefore carry signed reasoning through the OpenAI interface the same way as the
//! direct providers: Claude's thinking blocks and Gemini's thought signatures as `thinking_blocks` and
//! `provider_specific_fields.thought_signature` (see `reasoning.rs` and docs/reasoning.md).
//!
//! Errors come from Vertex's front end in Google's shape (`{"error":{"code","message","status"}}`,
//! e.g. 429 `RESOURCE_EXHAUSTED`) or, for Claude, from the model in Anthropic's shape (e.g. 529
//! `overloaded_error`); [`parse_error`] reads both. Legacy completions are not supported.
//!
//! The provider adapter ([`VertexAdapter`]) resolves the per-publisher adapter with
//! [`Adapter::model_adapter`]; the gateway calls it once per target.

mod embeddings;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::{
    anthropic::{self, AnthropicAdapter},
    gemini::{self, GeminiAdapter},
    openai_compat::{base_headers, join_url},
    Adapter, AdapterError, AuthStyle, Operation, Parsed, StreamTranslator, Target, UpstreamError,
    UpstreamRequest,
};

/// The `anthropic_version` Vertex AI wants in the body of Claude requests.
pub const ANTHROPIC_VERTEX_VERSION: &str = "vertex-2023-10-16";

/// The regional endpoint for `project` in `location`; `global` uses the global host.
pub fn base_url(project: &str, location: &str) -> String {
    let host = match location {
        "global" => "aiplatform.googleapis.com".to_string(),
        region => format!("{region}-aiplatform.googleapis.com"),
    };
    format!("https://{host}/v1/projects/{project}/locations/{location}")
}

/// Whether `model` is one of Anthropic's models on Vertex (served by `publishers/anthropic`).
pub fn is_anthropic_model(model: &str) -> bool {
    model.starts_with("claude")
}

/// The Vertex AI provider: dispatches on the model id to [`VertexGemini`] or [`VertexAnthropic`].
/// Used without [`Adapter::model_adapter`], it answers as the Gemini side (only `build_request` looks
/// at the model).
#[derive(Debug, Clone, Copy)]
pub struct VertexAdapter;

/// Gemini models on Vertex AI (`publishers/google`).
#[derive(Debug, Clone, Copy)]
pub struct VertexGemini;

/// Anthropic's models on Vertex AI (`publishers/anthropic`, `rawPredict`).
#[derive(Debug, Clone, Copy)]
pub struct VertexAnthropic;

fn unsupported(op: Operation, who: &str) -> AdapterError {
    AdapterError::InvalidRequest {
        message: format!("the {} endpoint is not supported by {who}", op.as_str()),
        param: None,
    }
}

fn model_url(base: &str, publisher: &str, model: &str, method: &str) -> String {
    join_url(base, &format!("publishers/{publisher}/models/{model}:{method}"))
}

impl Adapter for VertexAdapter {
    fn model_adapter(&self, model: &str) -> Option<&dyn Adapter> {
        Some(match is_anthropic_model(model) {
            true => &VertexAnthropic,
            false => &VertexGemini,
        })
    }

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
        <dyn Adapter>::for_model(self, target.model).build_request(op, body, stream, target)
    }

    fn parse_response(&self, op: Operation, body: Bytes) -> Result<Parsed, AdapterError> {
        VertexGemini.parse_response(op, body)
    }

    fn stream_translator(&self, op: Operation, client_wants_usage: bool) -> Box<dyn StreamTranslator> {
        VertexGemini.stream_translator(op, client_wants_usage)
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamError {
        parse_error(status, body)
    }
}

impl Adapter for VertexGemini {
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
        let (method, body) = match (op, stream) {
            (Operation::Chat, false) => ("generateContent", gemini::generate_content_body(&body)?),
            (Operation::Chat, true) => (
                "streamGenerateContent?alt=sse",
                gemini::generate_content_body(&body)?,
            ),
            (Operation::Embeddings, _) => ("predict", embeddings::convert_request(&body)?),
            (Operation::Completions, _) => return Err(unsupported(op, "vertex")),
        };
        Ok(UpstreamRequest {
            url: model_url(target.base_url, "google", target.model, method),
            headers: base_headers(AuthStyle::GoogleOAuth, target.api_key)?,
            body,
        })
    }

    fn parse_response(&self, op: Operation, body: Bytes) -> Result<Parsed, AdapterError> {
        match op {
            Operation::Embeddings => embeddings::convert_response(&body),
            _ => GeminiAdapter.parse_response(op, body),
        }
    }

    fn stream_translator(&self, op: Operation, client_wants_usage: bool) -> Box<dyn StreamTranslator> {
        GeminiAdapter.stream_translator(op, client_wants_usage)
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamError {
        parse_error(status, body)
    }
}

impl Adapter for VertexAnthropic {
    fn supports(&self, op: Operation) -> bool {
        op == Operation::Chat
    }

    fn default_max_tokens(&self) -> Option<u64> {
        AnthropicAdapter.default_max_tokens()
    }

    fn build_request(
        &self,
        op: Operation,
        body: Map<String, Value>,
        stream: bool,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        if op != Operation::Chat {
            return Err(unsupported(op, "anthropic models on vertex"));
        }
        let method = match stream {
            true => "streamRawPredict",
            false => "rawPredict",
        };
        Ok(UpstreamRequest {
            url: model_url(target.base_url, "anthropic", target.model, method),
            headers: base_headers(AuthStyle::GoogleOAuth, target.api_key)?,
            body: anthropic::messages_body(&body, None, Some(ANTHROPIC_VERTEX_VERSION), stream)?,
        })
    }

    fn parse_response(&self, op: Operation, body: Bytes) -> Result<Parsed, AdapterError> {
        AnthropicAdapter.parse_response(op, body)
    }

    fn stream_translator(&self, op: Operation, client_wants_usage: bool) -> Box<dyn StreamTranslator> {
        AnthropicAdapter.stream_translator(op, client_wants_usage)
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamError {
        parse_error(status, body)
    }
}

/// Classifies a Vertex AI error: Anthropic's `{"type":"error","error":{...}}` (from a Claude model)
/// or Google's `{"error":{"code","message","status"}}` (from Vertex itself, for either publisher).
pub fn parse_error(status: u16, body: &[u8]) -> UpstreamError {
    let anthropic_shaped = serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some("error"));
    match anthropic_shaped {
        true => anthropic::parse_error(status, body),
        false => gemini::parse_error(status, body),
    }
}
