//! Cohere v2 wire types, as `POST /v2/chat` and `POST /v2/embed` define them (`ChatMessageV2`,
//! `ToolV2`, `ChatResponseV2`, the `StreamedChatResponseV2` events, `EmbedByTypeResponse`). Request
//! types borrow from the client's body and skip `None`; response types read only what the conversion
//! needs, accept `null` wherever a field is optional, and ignore unknown fields and event types.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `POST /v2/chat` body.
#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_tools: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<&'static str>,
    /// Passed through from the client's `documents` extension field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub citation_options: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// One message of the conversation, tagged by `role`.
#[derive(Debug, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub(crate) enum Message<'a> {
    System {
        content: Content<'a>,
    },
    User {
        content: Content<'a>,
    },
    Assistant {
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<Content<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_plan: Option<Cow<'a, str>>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall<'a>>,
    },
    Tool {
        tool_call_id: &'a str,
        content: Content<'a>,
    },
}

/// A message's `content`: one string, or content parts.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Part<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl<'a> },
}

#[derive(Debug, Serialize)]
pub(crate) struct ImageUrl<'a> {
    pub url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

/// `ToolCallV2`: the same shape as OpenAI's, `arguments` a JSON string.
#[derive(Debug, Serialize)]
pub(crate) struct ToolCall<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct FunctionCall<'a> {
    pub name: &'a str,
    pub arguments: &'a str,
}

/// `ToolV2`.
#[derive(Debug, Serialize)]
pub(crate) struct Tool<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: ToolFunction<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ToolFunction<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    pub parameters: Cow<'a, Value>,
}

/// `ResponseFormatV2`: `text`, or `json_object` with an optional JSON schema.
#[derive(Debug, Serialize)]
pub(crate) struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<&'a Value>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Thinking {
    Enabled {
        #[serde(skip_serializing_if = "Option::is_none")]
        token_budget: Option<u64>,
    },
    Disabled,
}

/// `POST /v2/embed` body.
#[derive(Debug, Serialize)]
pub(crate) struct EmbedRequest<'a> {
    pub model: &'a str,
    pub texts: Vec<&'a str>,
    pub input_type: &'a str,
    pub embedding_types: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dimension: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u64>,
}

/// `null` reads as the type's default (Cohere sends `null` for absent arrays and strings).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `ChatResponseV2`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(default)]
    pub finish_reason: Option<String>,
    pub message: ResponseMessage,
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// `AssistantMessageResponse`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResponseMessage {
    #[serde(default, deserialize_with = "null_default")]
    pub content: Vec<ContentItem>,
    #[serde(default, deserialize_with = "null_default")]
    pub tool_calls: Vec<ToolCallOut>,
    #[serde(default)]
    pub tool_plan: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub citations: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentItem {
    Text {
        #[serde(default, deserialize_with = "null_default")]
        text: String,
    },
    Thinking {
        #[serde(default, deserialize_with = "null_default")]
        thinking: String,
    },
    #[serde(other)]
    Other,
}

/// A `ToolCallV2` in an answer, or the part of one a stream event carries.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ToolCallOut {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionOut>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FunctionOut {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// `Usage`: token counts are JSON numbers (the spec says `number`, not `integer`).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub billed_units: Option<Units>,
    #[serde(default)]
    pub tokens: Option<Units>,
    #[serde(default)]
    pub cached_tokens: Option<f64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct Units {
    #[serde(default)]
    pub input_tokens: Option<f64>,
    #[serde(default)]
    pub output_tokens: Option<f64>,
}

/// One `data:` payload of a v2 chat stream. Every event carries its payload under `delta`; the
/// shapes differ per type but never clash, so one [`Delta`] reads them all.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(default)]
    pub delta: Option<Delta>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Delta {
    #[serde(default)]
    pub message: Option<DeltaMessage>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DeltaMessage {
    /// An object in `content-start`/`content-delta` (`message-start` may carry an empty array).
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub tool_plan: Option<String>,
    /// One tool call (an object, not an array) in `tool-call-start`/`tool-call-delta`.
    #[serde(default)]
    pub tool_calls: Option<Value>,
}

/// `EmbedByTypeResponse` (v2), also accepting the older `embeddings_floats` shape whose
/// `embeddings` is a plain array of vectors.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbedResponse {
    pub embeddings: Embeddings,
    #[serde(default)]
    pub meta: Option<EmbedMeta>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Embeddings {
    Floats(Vec<Vec<f64>>),
    ByType {
        #[serde(default)]
        float: Option<Vec<Vec<f64>>>,
        #[serde(default)]
        base64: Option<Vec<String>>,
    },
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct EmbedMeta {
    #[serde(default)]
    pub billed_units: Option<Units>,
    #[serde(default)]
    pub tokens: Option<Units>,
}

/// Cohere's error bodies: `{"message": "..."}`, sometimes with an `id`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorResponse {
    #[serde(default)]
    pub message: Option<String>,
}
