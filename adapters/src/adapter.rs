//! The adapter contract. Requests arrive as JSON maps so unknown fields survive the trip.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value};
use tollgate_schemas::TokenUsage;

use crate::stream::SseEvent;

/// Which OpenAI endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Chat,
    Completions,
    Embeddings,
}

impl Operation {
    /// The OpenAI path suffix, relative to a `/v1` base URL.
    pub fn path(self) -> &'static str {
        match self {
            Operation::Chat => "chat/completions",
            Operation::Completions => "completions",
            Operation::Embeddings => "embeddings",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Completions => "completions",
            Operation::Embeddings => "embeddings",
        }
    }

    pub fn can_stream(self) -> bool {
        !matches!(self, Operation::Embeddings)
    }
}

/// Where and as whom a request goes: resolved by the gateway from config and routing.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub base_url: &'a str,
    /// The provider's model name (or Azure deployment), replacing the client's `model`.
    pub model: &'a str,
    /// The provider credential; `None` for providers without auth.
    pub api_key: Option<&'a str>,
    pub api_version: Option<&'a str>,
}

/// A fully built upstream HTTP request (always a POST with a JSON body).
#[derive(Debug)]
pub struct UpstreamRequest {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A non-streaming upstream answer converted to OpenAI's shape.
#[derive(Debug)]
pub struct Parsed {
    pub body: Bytes,
    pub usage: Option<TokenUsage>,
    /// The model the provider says served the request.
    pub model: Option<String>,
}

/// A failed upstream answer, classified as data so routing never parses strings.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamError {
    /// The provider's HTTP status.
    pub status: u16,
    /// The provider's message, safe to show to the client (the gateway scrubs secrets again).
    pub message: String,
    /// The provider's error type or code, when it gave one.
    pub kind: Option<String>,
    pub param: Option<String>,
    /// Whether another attempt (same or other target) may succeed.
    pub retryable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("invalid request: {message}")]
    InvalidRequest { message: String, param: Option<String> },
    #[error("upstream answered with an unreadable body: {0}")]
    BadUpstreamBody(String),
    #[error("upstream stream error: {0}")]
    StreamError(String),
    #[error("invalid upstream configuration: {0}")]
    Config(String),
}

/// How an upstream stream body is framed; the gateway decodes it with a
/// [`Framer`](crate::eventstream::Framer) of this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `text/event-stream`
    Sse,
    /// `application/vnd.amazon.eventstream` (AWS Bedrock).
    AwsEventStream,
}

/// Converts one provider's API. Implementations hold no per-request state; per-stream state lives in
/// the [`StreamTranslator`] they create.
pub trait Adapter: Send + Sync {
    /// Builds the upstream request. `body` is the client's request with `model` already removed; the
    /// adapter may rewrite it. `stream` says whether the client asked for a stream.
    fn build_request(
        &self,
        op: Operation,
        body: Map<String, Value>,
        stream: bool,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, AdapterError>;

    /// Converts a successful (2xx) non-streaming answer.
    fn parse_response(&self, op: Operation, body: Bytes) -> Result<Parsed, AdapterError>;

    /// Starts translating a stream. `client_wants_usage` is the client's `stream_options.include_usage`.
    fn stream_translator(&self, op: Operation, client_wants_usage: bool) -> Box<dyn StreamTranslator>;

    /// Classifies a non-2xx answer.
    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamError;

    /// The adapter speaking `model`'s API, for providers that serve several APIs under one endpoint
    /// (Vertex AI: Gemini and Anthropic models). Default `None`: this adapter serves every model.
    /// The gateway resolves it once per target with `<dyn Adapter>::for_model`, before any other call.
    fn model_adapter(&self, _model: &str) -> Option<&dyn Adapter> {
        None
    }

    /// Whether this provider serves `op` at all; routing skips targets that do not, so a model can
    /// mix providers. Default: every operation.
    fn supports(&self, _op: Operation) -> bool {
        true
    }

    /// Output tokens the adapter asks for when the client sets no limit, for quota estimates;
    /// `None` when the provider decides (the gateway then uses its configured default).
    fn default_max_tokens(&self) -> Option<u64> {
        None
    }

    /// [`parse_response`](Adapter::parse_response) for an answer from `model` (the provider's model
    /// name the request went to), for providers whose answers do not name their model. The gateway
    /// calls this one. Default: `parse_response`.
    fn parse_response_for(&self, op: Operation, body: Bytes, _model: &str) -> Result<Parsed, AdapterError> {
        self.parse_response(op, body)
    }

    /// [`stream_translator`](Adapter::stream_translator) for a stream from `model`, as
    /// [`parse_response_for`](Adapter::parse_response_for). The gateway calls this one. Default:
    /// `stream_translator`.
    fn stream_translator_for(
        &self,
        op: Operation,
        client_wants_usage: bool,
        _model: &str,
    ) -> Box<dyn StreamTranslator> {
        self.stream_translator(op, client_wants_usage)
    }

    /// How this provider frames its streams. Default: Server-Sent Events.
    fn stream_framing(&self) -> Framing {
        Framing::Sse
    }

    /// Credentials the adapter holds itself (e.g. AWS signing keys), which the gateway removes from
    /// any upstream text it shows or logs. Default: none (the key in [`Target`] is scrubbed anyway).
    fn secrets(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// Converts one upstream stream, one SSE event at a time, into OpenAI chunk payloads (the text after
/// `data: `). The gateway writes the framing and the final `data: [DONE]`.
pub trait StreamTranslator: Send {
    /// Handles one upstream event, pushing zero or more OpenAI chunk payloads to `out`.
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<Bytes>) -> Result<(), AdapterError>;
    /// The usage seen so far (the provider's final usage once the stream completed).
    fn usage(&self) -> Option<TokenUsage>;
    /// The model the provider reported, once known.
    fn model(&self) -> Option<&str>;
    /// Whether the provider signalled the natural end of the stream.
    fn finished(&self) -> bool;
    /// Whether a stream whose connection closed cleanly at this point is complete; when not, the
    /// gateway ends it with an error instead of `[DONE]`, so a cut answer never looks whole.
    /// Default: [`StreamTranslator::finished`].
    fn complete_at_eof(&self) -> bool {
        self.finished()
    }
}

impl dyn Adapter + '_ {
    /// The adapter for requests to `model` on this provider: [`Adapter::model_adapter`] or `self`.
    pub fn for_model(&self, model: &str) -> &dyn Adapter {
        self.model_adapter(model).unwrap_or(self)
    }
}
