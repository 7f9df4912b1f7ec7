//! Bedrock Runtime wire types, as the service model defines them (`ConverseRequest`,
//! `ConverseResponse`, the `ConverseStreamOutput` events and the exceptions). Unions are JSON objects
//! with exactly one member, which is serde's externally tagged enum. Request types borrow from the
//! client's body and skip `None` (the API rejects unknown members); response types read only what the
//! conversion needs, so new members and new union variants do not break parsing.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /model/{modelId}/converse` and `/converse-stream` body (the two request shapes are equal
/// but for guardrail streaming options, which Tollgate does not send).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConverseRequest<'a> {
    pub messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<SystemBlock<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
}

/// `serviceTier`: `priority`, `default` or `flex`.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceTier {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    User,
    Assistant,
}

#[derive(Debug, Serialize)]
pub(crate) struct Message<'a> {
    pub role: Role,
    pub content: Vec<Block<'a>>,
}

/// An input `ContentBlock`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Block<'a> {
    Text(&'a str),
    Image(Image<'a>),
    Document(Document<'a>),
    ToolUse(ToolUse<'a>),
    ToolResult(ToolResult<'a>),
    CachePoint(CachePoint),
    /// Signed reasoning the client sent back (`thinking_blocks`).
    ReasoningContent(ReasoningIn<'a>),
}

/// A `ReasoningContentBlock` sent back: signed text, or the encrypted redacted content.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ReasoningIn<'a> {
    ReasoningText {
        text: &'a str,
        signature: &'a str,
    },
    /// Base64, as the answer gave it.
    RedactedContent(&'a str),
}

/// A `SystemContentBlock`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum SystemBlock<'a> {
    Text(&'a str),
    CachePoint(CachePoint),
}

#[derive(Debug, Serialize)]
pub(crate) struct Image<'a> {
    /// `png`, `jpeg`, `gif` or `webp`.
    pub format: &'static str,
    pub source: ImageSource<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ImageSource<'a> {
    /// The image, base64-encoded (a blob in the JSON protocol).
    Bytes(&'a str),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolUse<'a> {
    /// Made to fit Bedrock's id pattern (see `request::tool_use_id`).
    pub tool_use_id: Cow<'a, str>,
    pub name: &'a str,
    /// Parsed from the OpenAI `arguments` string, so owned.
    pub input: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolResult<'a> {
    pub tool_use_id: Cow<'a, str>,
    pub content: Vec<ToolResultContent<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ToolResultContent<'a> {
    Text(&'a str),
    Image(Image<'a>),
    Document(Document<'a>),
}

/// A `document` block (see `document.rs`).
#[derive(Debug, Serialize)]
pub(crate) struct Document<'a> {
    /// `pdf`, `csv`, `doc`, `docx`, `xls`, `xlsx`, `html`, `txt` or `md`.
    pub format: &'static str,
    pub name: String,
    pub source: DocumentSource<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum DocumentSource<'a> {
    /// The file, base64-encoded.
    Bytes(&'a str),
}

/// `cachePoint`: the prompt up to here may be cached.
#[derive(Debug, Serialize)]
pub(crate) struct CachePoint {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `5m` or `1h`; the provider's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InferenceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<&'a str>,
}

impl InferenceConfig<'_> {
    pub fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolConfig<'a> {
    pub tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Tool<'a> {
    ToolSpec(ToolSpec<'a>),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolSpec<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    pub input_schema: InputSchema,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum InputSchema {
    Json(Value),
}

/// `toolChoice` (`auto`, the default, is never sent).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ToolChoice<'a> {
    Any(Empty),
    Tool { name: &'a str },
}

#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutputConfig<'a> {
    pub text_format: OutputFormat<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct OutputFormat<'a> {
    /// Always `json_schema`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub structure: Structure<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Structure<'a> {
    JsonSchema(JsonSchema<'a>),
}

#[derive(Debug, Serialize)]
pub(crate) struct JsonSchema<'a> {
    /// The JSON Schema, serialized: Bedrock takes it as a string.
    pub schema: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
}

// ---- answers ----

/// `ConverseResponse` (the members the conversion reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConverseResponse {
    pub output: ConverseOutput,
    pub stop_reason: String,
    #[serde(default)]
    pub usage: Usage,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConverseOutput {
    pub message: Option<OutputMessage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct OutputMessage {
    #[serde(default)]
    pub content: Vec<OutputBlock>,
}

/// An output `ContentBlock` union: exactly one member is set. Members Tollgate does not translate
/// (citations, images, ...) are ignored, as are unknown ones.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutputBlock {
    pub text: Option<String>,
    pub tool_use: Option<OutputToolUse>,
    pub reasoning_content: Option<Reasoning>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutputToolUse {
    pub tool_use_id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
}

/// `ReasoningContentBlock` union: `reasoningText` (with its signature) or `redactedContent`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Reasoning {
    pub reasoning_text: Option<ReasoningText>,
    /// Base64.
    pub redacted_content: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReasoningText {
    #[serde(default)]
    pub text: String,
    pub signature: Option<String>,
}

/// `TokenUsage`. Cache reads and writes are reported beside `inputTokens`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_input_tokens: Option<u64>,
}

// ---- stream events (the payloads; the event name comes from the `:event-type` header) ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContentBlockStartEvent {
    pub content_block_index: u64,
    pub start: BlockStart,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContentBlockStopEvent {
    pub content_block_index: u64,
}

/// `ContentBlockStart` union (`toolUse`, `toolResult`, `image`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BlockStart {
    pub tool_use: Option<ToolUseStart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolUseStart {
    pub tool_use_id: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContentBlockDeltaEvent {
    pub content_block_index: u64,
    pub delta: BlockDelta,
}

/// `ContentBlockDelta` union (`text`, `toolUse`, `reasoningContent`, `citation`, ...).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BlockDelta {
    pub text: Option<String>,
    pub tool_use: Option<ToolUseDelta>,
    pub reasoning_content: Option<ReasoningDelta>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ToolUseDelta {
    #[serde(default)]
    pub input: String,
}

/// `ReasoningContentBlockDelta` union: `text`, `signature` (when the block ends) or
/// `redactedContent` (base64, whole).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReasoningDelta {
    pub text: Option<String>,
    pub signature: Option<String>,
    pub redacted_content: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageStopEvent {
    pub stop_reason: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MetadataEvent {
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// The body of an error answer or stream exception.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(alias = "Message")]
    pub message: Option<String>,
    #[serde(rename = "__type", alias = "code")]
    pub kind: Option<String>,
}
