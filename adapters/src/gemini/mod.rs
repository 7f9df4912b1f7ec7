//! Google's native Gemini API (AI Studio, `https://generativelanguage.googleapis.com/v1beta`, key in
//! the `x-goog-api-key` header), behind Tollgate's OpenAI chat and embeddings interface. Chat is
//! `POST {base}/models/{model}:generateContent` (streams: `:streamGenerateContent?alt=sse`),
//! embeddings `POST {base}/models/{model}:batchEmbedContents`. Legacy completions are not supported.
//!
//! Requests (`request.rs`, `generation.rs`, `schema.rs`, `embeddings.rs`): system and developer messages become `systemInstruction` (wherever they
//! appear); user text and images (data: URLs as `inlineData`, http(s) URLs as `fileData` with a mime
//! type guessed from the extension, default `image/jpeg`); assistant text and `tool_calls`
//! (`functionCall` parts, arguments parsed into `args`); `tool` messages become `functionResponse`
//! parts in a user turn, named after the earlier tool call with that id, the response being the
//! content's JSON object or `{"content": text}`. Consecutive turns of the same role are merged.
//! `tools` become one `functionDeclarations` tool, their JSON schemas cut down to Gemini's
//! OpenAPI-subset `Schema` (`additionalProperties`, `$schema`, `$ref`/`$defs`, `strict`, `const`,
//! `oneOf`, ... dropped; types upper-cased; `["T","null"]` -> `T` + `nullable`); `tool_choice`
//! (`auto`/`none`/`required`/named -> `AUTO`/`NONE`/`ANY`/`ANY` + `allowedFunctionNames`).
//! `generationConfig` gets `temperature`, `top_p`, `max_completion_tokens`/`max_tokens`, `stop`,
//! `n` (`candidateCount`), `seed`, `response_format` (`json_object` -> JSON mime type, `json_schema`
//! -> also `responseSchema`) and `reasoning_effort` (`thinkingConfig`: budget 1024/8192/24576 with
//! thoughts returned; `none` -> budget 0). Embeddings take string inputs and `dimensions`
//! (`outputDimensionality`).
//!
//! Every other OpenAI field (`user`, `logprobs`, penalties, `logit_bias`, `metadata`, `store`,
//! `parallel_tool_calls`, `stream_options`, `encoding_format`, ...) is dropped, because the Gemini API
//! rejects unknown fields. Content parts other than text and images (audio, files) are refused, as
//! are token-array embedding inputs.
//!
//! Answers (`response.rs`, `stream.rs`) come back as OpenAI `chat.completion` / `chat.completion.chunk`:
//! candidates as choices, text joined into `content`, `thought` parts as `reasoning_content`,
//! `functionCall` parts as `tool_calls` with ids `call_<n>` (numbered within the answer), finish
//! reasons mapped (safety-type reasons and blocked prompts -> `content_filter`). Usage: the prompt
//! count (cached tokens are a subset, `cached_tokens`), completion = candidates + thoughts (thoughts
//! also as `reasoning_tokens`). Embedding answers carry no usage from Gemini: `prompt_tokens` is 0.
//!
//! Thought signatures (Gemini 2.5+/3 sign parts, and Gemini 3 refuses a function-calling turn whose
//! signatures are missing) make the round trip in LiteLLM's encoding (see `reasoning.rs`): a
//! `functionCall` part's `thoughtSignature` is its tool call's `provider_specific_fields.thought_signature`
//! (streams: in the tool call delta); thought parts become `thinking_blocks` entries (consecutive ones
//! joined, closed by a signature), and a text part's signature an entry with empty `thinking`. Sent
//! back, a tool call's signature (also read from Google's `extra_content.google.thought_signature`)
//! goes on its `functionCall` part, signed thoughts become `thought` parts before the text, and a
//! signature without thought text goes on the last text part (or, with no text, an empty text part,
//! as Gemini streams it). Unsigned thoughts and redacted thinking are not sent back.

mod embeddings;
mod generation;
mod request;
mod response;
mod schema;
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
pub use stream::GeminiStream;

#[derive(Debug, Clone, Copy)]
pub struct GeminiAdapter;

impl Adapter for GeminiAdapter {
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
        let model = target.model.strip_prefix("models/").unwrap_or(target.model);
        let to_bytes = |r: Result<Vec<u8>, serde_json::Error>| {
            r.map(Bytes::from).map_err(|e| AdapterError::InvalidRequest {
                message: e.to_string(),
                param: None,
            })
        };
        let (method, body) = match op {
            Operation::Chat => {
                let method = match stream {
                    true => "streamGenerateContent?alt=sse",
                    false => "generateContent",
                };
                (method, generate_content_body(&body)?)
            }
            Operation::Embeddings => {
                let name = format!("models/{model}");
                let req = embeddings::convert_request(&body, &name)?;
                ("batchEmbedContents", to_bytes(serde_json::to_vec(&req))?)
            }
            Operation::Completions => {
                return Err(AdapterError::InvalidRequest {
                    message: "the completions endpoint is not supported by gemini".into(),
                    param: None,
                })
            }
        };
        Ok(UpstreamRequest {
            url: join_url(target.base_url, &format!("models/{model}:{method}")),
            headers: base_headers(AuthStyle::XGoogApiKey, target.api_key)?,
            body,
        })
    }

    fn parse_response(&self, op: Operation, body: Bytes) -> Result<Parsed, AdapterError> {
        match op {
            Operation::Embeddings => embeddings::convert_response(&body),
            _ => response::convert(&body),
        }
    }

    fn stream_translator(&self, _op: Operation, client_wants_usage: bool) -> Box<dyn StreamTranslator> {
        Box::new(GeminiStream::new(client_wants_usage))
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamError {
        parse_error(status, body)
    }
}

/// The `generateContent` body for an OpenAI chat body (also what Vertex AI's Gemini models take).
pub(crate) fn generate_content_body(body: &Map<String, Value>) -> Result<Bytes, AdapterError> {
    let req = request::convert(body)?;
    serde_json::to_vec(&req)
        .map(Bytes::from)
        .map_err(|e| AdapterError::InvalidRequest {
            message: e.to_string(),
            param: None,
        })
}

pub(crate) use embeddings::text_inputs as embedding_inputs;

/// Reads Google's `{"error": {"code", "message", "status"}}` (also wrapped in a one-element array, as
/// streaming endpoints send it). Rate limits (429 `RESOURCE_EXHAUSTED`), 500, 502, 503
/// (`UNAVAILABLE`) and 504 are retryable; `kind` is the status string.
pub fn parse_error(status: u16, body: &[u8]) -> UpstreamError {
    let detail = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(mut items)) if !items.is_empty() => {
            serde_json::from_value::<types::ErrorResponse>(items.swap_remove(0)).ok()
        }
        Ok(v) => serde_json::from_value::<types::ErrorResponse>(v).ok(),
        Err(_) => None,
    }
    .map(|r| r.error)
    .unwrap_or_default();
    let retryable = matches!(status, 429 | 500 | 502 | 503 | 504)
        || matches!(
            detail.status.as_deref(),
            Some("RESOURCE_EXHAUSTED" | "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "INTERNAL")
        );
    UpstreamError {
        status,
        message: detail
            .message
            .unwrap_or_else(|| format!("upstream answered HTTP {status}")),
        kind: detail.status,
        param: None,
        retryable,
    }
}
