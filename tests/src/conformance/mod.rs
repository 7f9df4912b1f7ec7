//! Tollgate's provider conformance suite: one list of [`Case`]s run against every provider kind
//! through the real gateway binary (`tests/tests/conformance.rs` generates the tests).
//!
//! The pieces:
//! - [`Case`]: what the client asks (an OpenAI-shaped request), what the upstream must have received
//!   (checked on a canonical [`Seen`] view), and what the provider "answers" ([`Reply`]: a canonical
//!   [`Answer`], an error status or a malformed body).
//! - [`Wire`]: implemented once per provider kind. It renders the canonical answer in the provider's
//!   real wire format (JSON body, stream framing, error shapes) and reads the upstream request back into
//!   a [`Seen`], so every case asserts the translation, not just that something came back.
//! - [`server::FakeUpstream`]: one fake server for all kinds; each kind lives under `/<kind>/...`, the
//!   case is the upstream model name, every request is recorded.
//! - [`driver`]: starts gateway + fake, runs one case and asserts the OpenAI-shaped answer exactly;
//!   validates the recorded upstream bodies against the provider's spec.
//!
//! Adding a provider kind: one `Wire` impl in a module here (plus `pub fn <kind>() -> Arc<dyn Wire>`
//! re-exported from [`kinds`]) and one word in the `conformance!` line of `tests/tests/conformance.rs`.

pub mod anthropic;
pub mod bedrock;
pub mod cases;
pub mod cohere;
pub mod driver;
pub mod gemini;
pub mod openai;
pub mod server;
pub mod vertex;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{json, Map, Value};

pub use cases::{Case, Fault, Reply};

/// Every kind the suite knows: `kinds::<kind>()` is what the test macro calls.
pub mod kinds {
    pub use super::anthropic::anthropic;
    pub use super::bedrock::bedrock;
    pub use super::cohere::cohere;
    pub use super::gemini::gemini;
    pub use super::openai::{azure, groq, openai};
    pub use super::vertex::{vertex, vertex_claude};
}

/// The provider credential the gateway is configured with (env `UP_KEY`).
pub const KEY: &str = "sk-conformance-upstream-7f3a9c";
pub const KEY_ENV: &str = "UP_KEY";

/// Why a kind cannot do a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// The gateway knows and must refuse the request with a 400 `invalid_request_error`.
    Refused(&'static str),
    /// The gateway cannot know (the provider simply lacks the data); the test prints this and returns.
    Unknowable(&'static str),
}

/// A tool call in an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: &'static str,
    pub name: &'static str,
    pub args: Value,
}

/// Token counts as OpenAI reports them: `prompt` includes `cached`, `completion` includes `reasoning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub reasoning: u64,
}

impl Usage {
    /// The OpenAI `usage` object the gateway must answer with.
    pub fn openai(&self) -> Value {
        json!({"prompt_tokens": self.prompt, "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning}})
    }
}

/// Why the answer ended, in provider-neutral terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    /// Stopped by this client stop sequence.
    StopSequence(&'static str),
    Length,
    ToolCalls,
    /// Refused or cut by the provider's safety system.
    ContentFilter,
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub fn openai(self) -> &'static str {
        match self {
            Finish::Stop | Finish::StopSequence(_) => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
            Finish::ContentFilter => "content_filter",
        }
    }
}

/// What the provider answers for a case, provider-neutral.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Signed reasoning before the text and tool calls (kinds render it where their wire has it).
    pub reasoning: Option<Reasoning>,
    pub text: Option<&'static str>,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Finish,
    pub usage: Usage,
}

/// Reasoning the provider signs so it can be sent back: Anthropic's thinking block, Bedrock's
/// `reasoningText`, Gemini's thought part with the `thoughtSignature` on the first function call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reasoning {
    pub text: &'static str,
    /// Base64, as every provider's signatures are.
    pub signature: &'static str,
}

/// Who sent a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One piece of a turn as the provider received it.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// An inline image: media type and base64 data (or `url` and the URL).
    Image {
        mime: String,
        data: String,
    },
    /// `id` is `None` for providers whose requests carry no call ids.
    ToolCall {
        id: Option<String>,
        name: String,
        args: Value,
    },
    /// `id`/`name`: whichever the provider uses to tie the result to its call. `content` is the
    /// result parsed as JSON when it is JSON, else a string.
    ToolResult {
        id: Option<String>,
        name: Option<String>,
        content: Value,
    },
    /// Signed reasoning sent back in an assistant turn; `text` is `None` where the provider signs a
    /// part instead (Gemini: read from the `thoughtSignature` of the part that follows).
    Thinking {
        text: Option<String>,
        signature: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub parts: Vec<Part>,
}

/// A declared tool: its name and the shape of its parameters ([`shape`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub params: Value,
}

/// The upstream request read back into provider-neutral terms by [`Wire::read_request`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Seen {
    pub system: Option<String>,
    /// Turns, consecutive turns of one role merged (providers differ in how they split them).
    pub turns: Vec<Turn>,
    pub tools: Vec<Tool>,
    /// `auto`, `none`, `required` or `function:<name>`; `None` without tools. A provider's default
    /// (no choice sent while tools are) reads as `auto`.
    pub tool_choice: Option<String>,
    pub stop: Vec<String>,
    pub max_tokens: Option<u64>,
    /// The JSON schema the answer must follow, as a [`shape`].
    pub response_schema: Option<Value>,
}

impl Seen {
    /// Appends a part to the last turn if it has this role, else starts a turn.
    pub fn push(&mut self, role: Role, part: Part) {
        match self.turns.last_mut() {
            Some(t) if t.role == role => t.parts.push(part),
            _ => self.turns.push(Turn {
                role,
                parts: vec![part],
            }),
        }
    }

    pub fn add_system(&mut self, text: &str) {
        self.system = Some(match self.system.take() {
            Some(s) => format!("{s}\n{text}"),
            None => text.to_string(),
        });
    }
}

/// How a request reached the fake: the upstream model (the case name) and whether it streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub model: String,
    pub stream: bool,
}

/// How a kind's request bodies are checked against its provider's spec.
#[derive(Debug, Clone, Copy)]
pub struct SpecCheck {
    /// A script in `tests/python/`.
    pub script: &'static str,
    /// Spec files relative to `../shared/specs/`, passed before the body directory.
    pub specs: &'static [&'static str],
    /// Bodies are written as `NN-<case>.<suffix>.json`.
    pub suffix: &'static str,
}

/// One provider kind's wire format. Implemented once per kind; see the module doc.
pub trait Wire: Send + Sync {
    /// The `kind` of the `[[providers]]` entry; also the fake's path prefix.
    fn kind(&self) -> &'static str;

    /// The provider entry's lines besides `name`, `kind` and timeouts: `base_url` (under `root`, the
    /// fake's `http://ADDR/<kind>`) and credentials (default: `api_key_env` = [`KEY_ENV`]).
    fn provider_toml(&self, root: &str) -> String;

    /// The provider's model id for the case `name` (default: the name). `route` must give the case
    /// name back. Vertex AI picks the publisher by the id, so its Claude wire says `claude-<name>`.
    fn upstream_model(&self, name: &str) -> String {
        name.to_string()
    }

    /// Environment for the gateway process.
    fn env(&self) -> Vec<(&'static str, &'static str)> {
        vec![(KEY_ENV, KEY)]
    }

    /// Whether `path` (with query, below the kind prefix) is this kind's chat endpoint; the model and
    /// streaming flag come from the path or the body.
    fn route(&self, path: &str, body: &Value) -> Option<Route>;

    /// The credential the request carries, or why the provider would refuse it.
    fn credential(&self, headers: &HeaderMap) -> Result<String, String>;

    /// The upstream request read back into canonical terms.
    fn read_request(&self, body: &Value) -> Seen;

    /// A non-streaming answer body.
    fn answer(&self, model: &str, answer: &Answer) -> Value;

    /// A streamed answer, as the chunks written to the socket. `request` is the upstream body (OpenAI
    /// kinds send usage only when `stream_options.include_usage` asks).
    fn stream(&self, model: &str, answer: &Answer, request: &Value) -> Vec<Bytes>;

    fn stream_content_type(&self) -> &'static str {
        "text/event-stream"
    }

    /// An error body in the provider's shape for `status`.
    fn error(&self, status: u16, message: &str) -> Value;

    /// A stream that delivers `text` and then the provider's in-stream error event carrying `message`
    /// (e.g. Anthropic's `overloaded_error` event), as the last chunk: `malformed_stream_mid` replaces
    /// that chunk with [`Wire::malformed_stream`].
    fn stream_error_event(&self, model: &str, text: &str, message: &str) -> Vec<Bytes>;

    /// A stream whose first event is not valid.
    fn malformed_stream(&self) -> Vec<Bytes> {
        vec![Bytes::from_static(
            b"data: {\"id\": \"broken\", \"choices\": [{\n\n",
        )]
    }

    /// The id the gateway gives the `index`th tool call whose upstream id is `id`.
    fn tool_call_id(&self, _index: usize, id: &str) -> String {
        id.to_string()
    }

    /// Whether upstream requests carry tool-call ids (else [`Part::ToolCall::id`] is `None`).
    fn tool_ids_upstream(&self) -> bool {
        true
    }

    /// Whether tool results name their function (else [`Part::ToolResult::name`] is `None`).
    fn tool_result_names(&self) -> bool {
        false
    }

    /// The `max_tokens` the upstream gets when the client sets none (providers that require one).
    fn default_max_tokens(&self) -> Option<u64> {
        None
    }

    /// How the upstream receives an answer's [`Reasoning`] sent back by the client: the parts that
    /// come first in the assistant turn (default: a signed thinking block).
    fn replayed_reasoning(&self, r: &Reasoning) -> Vec<Part> {
        vec![Part::Thinking {
            text: Some(r.text.to_string()),
            signature: r.signature.to_string(),
        }]
    }

    /// Cases this kind cannot do, and why.
    fn unsupported(&self, _case: Case) -> Option<Unsupported> {
        None
    }

    /// How to validate the recorded request bodies; `None` when no validator exists for the kind.
    fn spec(&self) -> Option<SpecCheck>;

    /// The body as the spec sees it (default: unchanged). Azure names the model by the deployment in
    /// the path, so its bodies get that `model` back before the OpenAI schema checks them.
    fn spec_body(&self, _route: &Route, body: &Value) -> Value {
        body.clone()
    }
}

/// The parts of a JSON schema every provider must keep: `type` (lower case), `properties`,
/// `required` (sorted), `items` and `enum`. Everything else differs between providers by design.
/// An object without properties is no schema at all (`null`): providers may leave it out.
pub fn shape(schema: &Value) -> Value {
    let out = shape_of(schema);
    if out == json!({"type": "object"}) || out == json!({"type": "object", "properties": {}}) {
        return Value::Null;
    }
    out
}

fn shape_of(schema: &Value) -> Value {
    let Some(obj) = schema.as_object() else {
        return Value::Null;
    };
    let mut out = Map::new();
    if let Some(t) = obj.get("type").and_then(Value::as_str) {
        out.insert("type".into(), json!(t.to_lowercase()));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        let props: Map<String, Value> = props.iter().map(|(k, v)| (k.clone(), shape(v))).collect();
        out.insert("properties".into(), Value::Object(props));
    }
    if let Some(req) = obj.get("required").and_then(Value::as_array) {
        let mut req: Vec<&str> = req.iter().filter_map(Value::as_str).collect();
        req.sort_unstable();
        out.insert("required".into(), json!(req));
    }
    if let Some(items) = obj.get("items") {
        out.insert("items".into(), shape(items));
    }
    if let Some(e) = obj.get("enum") {
        out.insert("enum".into(), e.clone());
    }
    Value::Object(out)
}

/// A tool result's content: JSON when it parses as JSON, else the text.
pub fn result_content(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Splits `text` into pieces of at most `n` characters (streams deliver text in fragments).
pub fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

/// A `data:`-only SSE frame.
pub fn data_frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// A named SSE frame.
pub fn event_frame(event: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {v}\n\n"))
}

/// Splits a data: URL into media type and base64 data; other URLs come back as `("url", url)`.
pub fn image_part(url: &str) -> Part {
    let parsed = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"));
    match parsed {
        Some((mime, data)) => Part::Image {
            mime: mime.to_string(),
            data: data.to_string(),
        },
        None => Part::Image {
            mime: "url".into(),
            data: url.to_string(),
        },
    }
}
