//! AWS Bedrock's Converse API (`POST {base}/model/{modelId}/converse` and `/converse-stream`),
//! behind Tollgate's OpenAI chat interface, signed with AWS SigV4 (service `bedrock`). Only chat is
//! supported: legacy completions and embeddings are refused as invalid requests.
//!
//! The adapter holds the credentials and region ([`BedrockAdapter::new`], built by the gateway's
//! config); [`ProviderKind::adapter`](crate::ProviderKind::adapter) gives one without, which parses
//! answers and sends an Amazon Bedrock API key (the target's `api_key`) as a bearer token instead of
//! signing, and without either refuses to build requests ([`AdapterError::Config`]). The model id goes in the path,
//! percent-encoded (ids hold `:`, ARNs `/`).
//!
//! Requests (`request.rs`): system and developer messages become `system` blocks; user text and
//! images (base64 `data:` URLs; Converse cannot fetch http(s) image URLs, so those are refused with a
//! 400); `file` parts with inline data as `document` blocks (`document.rs`); assistant text and
//! `tool_calls` (`toolUse`, arguments parsed into `input`); `tool` messages become `toolResult` blocks, consecutive ones merged into one user turn (turns alternate). `tools`
//! -> `toolConfig.tools[].toolSpec`; `tool_choice` auto (the default, so not sent) / required
//! (`any`) / named (`tool`) / none (tools left out, see `convert_tools`); tool ids made elsewhere
//! are fitted to Bedrock's id pattern; `max_completion_tokens`/`max_tokens`, `temperature`
//! (clamped to 0..1), `top_p`, `stop` -> `inferenceConfig`; `reasoning_effort` -> Anthropic extended
//! thinking in `additionalModelRequestFields` for Anthropic models (ignored for others);
//! `response_format: json_schema` -> `outputConfig.textFormat` (structured output, on the models
//! that offer it); `cache_control: {"type": "ephemeral"}` on a content part or message -> a
//! `cachePoint` block after it; `service_tier` priority / flex / default -> `serviceTier`. `n > 1`
//! is refused.
//!
//! Not translated (dropped, since Converse rejects unknown members): `response_format: json_object`,
//! `parallel_tool_calls`, function `strict`, `seed`, `logprobs`, penalties, `logit_bias`, `user`,
//! `metadata`, `stream_options`; audio parts and uploaded files (`file_id`) are refused.
//!
//! Answers (`response.rs`, `stream.rs`): text joined into `content`, `toolUse` as `tool_calls`,
//! `reasoningContent` as `reasoning_content` and, signed or redacted, as `thinking_blocks` (see
//! `reasoning.rs`; sent back first in an assistant turn), `stopReason` as `finish_reason`, usage
//! with cache reads and writes counted in `prompt_tokens` (reads also as `cached_tokens`). Streams
//! arrive as AWS event streams ([`Framing::AwsEventStream`]). Converse answers carry no id: Tollgate
//! makes one up.

mod document;
mod request;
mod response;
mod sigv4;
mod stream;
mod types;

#[cfg(test)]
mod tests;

use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};
use serde_json::{Map, Value};

use crate::{
    openai_compat::{base_headers, join_url},
    Adapter, AdapterError, AuthStyle, Framing, Operation, Parsed, StreamTranslator, Target, UpstreamError,
    UpstreamRequest,
};
pub use sigv4::AwsCredentials;
pub use stream::BedrockStream;

/// The SigV4 signing name of the Bedrock Runtime API.
pub const SIGNING_SERVICE: &str = "bedrock";

/// The public endpoint of the Bedrock Runtime API in `region` (China's regions have their own domain).
pub fn default_base_url(region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://bedrock-runtime.{region}.{domain}")
}

/// Converts and signs Bedrock Converse calls. `Debug` never shows the secret.
#[derive(Debug, Clone, Default)]
pub struct BedrockAdapter {
    signer: Option<Signer>,
}

#[derive(Debug, Clone)]
struct Signer {
    credentials: AwsCredentials,
    region: String,
}

impl BedrockAdapter {
    /// An adapter that signs its requests with `credentials` for `region`.
    pub fn new(credentials: AwsCredentials, region: impl Into<String>) -> Self {
        BedrockAdapter {
            signer: Some(Signer {
                credentials,
                region: region.into(),
            }),
        }
    }

    /// [`Adapter::build_request`] at a given signing time.
    pub fn build_request_at(
        &self,
        op: Operation,
        body: Map<String, Value>,
        stream: bool,
        target: &Target<'_>,
        time: SystemTime,
    ) -> Result<UpstreamRequest, AdapterError> {
        if op != Operation::Chat {
            return Err(AdapterError::InvalidRequest {
                message: format!("the {} endpoint is not supported by bedrock", op.as_str()),
                param: None,
            });
        }
        let req = request::convert(&body, target.model)?;
        let body = serde_json::to_vec(&req).map_err(|e| AdapterError::InvalidRequest {
            message: e.to_string(),
            param: None,
        })?;
        let action = if stream { "converse-stream" } else { "converse" };
        let url = join_url(
            target.base_url,
            &format!("model/{}/{action}", encode_path_segment(target.model)),
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match (&self.signer, target.api_key) {
            (Some(signer), _) => {
                let signed = sigv4::sign_request(
                    &sigv4::Signable {
                        method: "POST",
                        url: &url,
                        headers: &headers,
                        body: &body,
                        content_sha256: true,
                    },
                    &signer.credentials,
                    &signer.region,
                    SIGNING_SERVICE,
                    time,
                )?;
                headers.extend(signed);
            }
            // An Amazon Bedrock API key: a bearer token instead of a signature.
            (None, Some(key)) => headers.extend(base_headers(AuthStyle::Bearer, Some(key))?),
            (None, None) => return Err(AdapterError::Config(
                "bedrock needs AWS credentials (access key id and secret access key) or a Bedrock API key"
                    .into(),
            )),
        }
        // Not signed: a proxy on the way may rewrite it.
        let accept = if stream {
            "application/vnd.amazon.eventstream"
        } else {
            "application/json"
        };
        headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
        Ok(UpstreamRequest {
            url,
            headers,
            body: Bytes::from(body),
        })
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a model id or ARN is one path
/// segment (`us.anthropic.claude-v1:0` -> `us.anthropic.claude-v1%3A0`).
fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Adapter for BedrockAdapter {
    fn supports(&self, op: Operation) -> bool {
        op == Operation::Chat
    }

    fn build_request(
        &self,
        op: Operation,
        body: Map<String, Value>,
        stream: bool,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        self.build_request_at(op, body, stream, target, SystemTime::now())
    }

    fn parse_response(&self, op: Operation, body: Bytes) -> Result<Parsed, AdapterError> {
        self.parse_response_for(op, body, "")
    }

    fn parse_response_for(&self, _op: Operation, body: Bytes, model: &str) -> Result<Parsed, AdapterError> {
        response::convert(&body, model)
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
        Box::new(BedrockStream::new(client_wants_usage, model))
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamError {
        parse_error(status, body)
    }

    fn stream_framing(&self) -> Framing {
        Framing::AwsEventStream
    }

    /// The secret key and session token, and the access key id too: not a secret to AWS, but it names
    /// the account, so it stays out of what clients see as well.
    fn secrets(&self) -> Vec<&str> {
        match &self.signer {
            Some(s) => [
                s.credentials.secret_access_key.as_str(),
                s.credentials.access_key_id.as_str(),
            ]
            .into_iter()
            .chain(s.credentials.session_token.as_deref())
            .collect(),
            None => Vec::new(),
        }
    }
}

/// Reads `{"message": ...}` (the exception's name travels in the `x-amzn-ErrorType` header, which
/// `parse_error` does not see, so `kind` comes from a `__type` member when present, else from the
/// status, which the API documents per exception). Throttling (429), model timeouts (408) and
/// server errors (5xx) are retryable; validation (400), access (403), unknown model (404) and
/// model errors (424) are not.
pub fn parse_error(status: u16, body: &[u8]) -> UpstreamError {
    let parsed: types::ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = parsed.message.filter(|m| !m.is_empty());
    let kind = parsed
        .kind
        .as_deref()
        // `__type` may be qualified (`com.amazon...#ThrottlingException`) or carry a suffix.
        .map(|k| k.rsplit('#').next().unwrap_or(k))
        .map(|k| k.split(':').next().unwrap_or(k).to_string())
        .filter(|k| !k.is_empty())
        .or_else(|| {
            let by_status = match status {
                400 => "ValidationException",
                403 => "AccessDeniedException",
                404 => "ResourceNotFoundException",
                408 => "ModelTimeoutException",
                424 => "ModelErrorException",
                429 if message
                    .as_deref()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("not ready")) =>
                {
                    "ModelNotReadyException"
                }
                429 => "ThrottlingException",
                500 => "InternalServerException",
                503 => "ServiceUnavailableException",
                _ => return None,
            };
            Some(by_status.to_string())
        });
    let retryable = matches!(status, 408 | 429)
        || status >= 500
        || matches!(
            kind.as_deref(),
            Some(
                "ThrottlingException"
                    | "ModelNotReadyException"
                    | "ServiceUnavailableException"
                    | "InternalServerException"
                    | "ModelTimeoutException"
            )
        );
    UpstreamError {
        status,
        message: message.unwrap_or_else(|| format!("upstream answered HTTP {status}")),
        kind,
        param: None,
        retryable,
    }
}
