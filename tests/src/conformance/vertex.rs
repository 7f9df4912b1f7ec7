//! Google Vertex AI, both publishers, as two wires of kind `vertex`:
//!
//! - [`vertex`]: Gemini models, `{base}/publishers/google/models/{model}:generateContent` and
//!   `:streamGenerateContent?alt=sse`, Gemini's wire format (delegated to [`super::gemini`]).
//! - [`vertex_claude`]: Claude models (ids `claude-<case>`, since Vertex picks the publisher by the id),
//!   `{base}/publishers/anthropic/models/{model}:rawPredict` and `:streamRawPredict`, Anthropic's wire
//!   format (delegated to [`super::anthropic`]); the body must carry `anthropic_version:
//!   vertex-2023-10-16` and no `model`, else the fake does not route it. For the spec check the body
//!   gets its `model` back and loses `anthropic_version` (Anthropic's schema requires the one and does
//!   not know the other).
//!
//! The credential is `Authorization: Bearer`: here a static access token (`api_key_env`); minting
//! tokens from a service account is tested end to end in `tests/tests/vertex.rs`.

use std::sync::Arc;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{json, Value};

use super::{Answer, Case, Part, Reasoning, Route, Seen, SpecCheck, Unsupported, Wire, KEY_ENV};

const PREFIX: &str = "/v1/projects/p-conformance/locations/us-east5/publishers/";
const CLAUDE_PREFIX: &str = "claude-";
const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

pub struct VertexWire {
    inner: Arc<dyn Wire>,
    claude: bool,
}

/// Gemini models on Vertex AI.
pub fn vertex() -> Arc<dyn Wire> {
    Arc::new(VertexWire {
        inner: super::gemini::gemini(),
        claude: false,
    })
}

/// Claude models on Vertex AI.
pub fn vertex_claude() -> Arc<dyn Wire> {
    Arc::new(VertexWire {
        inner: super::anthropic::anthropic(),
        claude: true,
    })
}

impl Wire for VertexWire {
    fn kind(&self) -> &'static str {
        "vertex"
    }

    fn provider_toml(&self, root: &str) -> String {
        let base = format!("{root}{}", PREFIX.trim_end_matches("/publishers/"));
        format!("base_url = \"{base}\"\napi_key_env = \"{KEY_ENV}\"\n")
    }

    fn upstream_model(&self, name: &str) -> String {
        match self.claude {
            true => format!("{CLAUDE_PREFIX}{name}"),
            false => name.to_string(),
        }
    }

    fn route(&self, path: &str, body: &Value) -> Option<Route> {
        let rest = path.strip_prefix(PREFIX)?;
        let (publisher, rest) = rest.split_once("/models/")?;
        let (model, method) = rest.split_once(':')?;
        let stream = match (self.claude, publisher, method) {
            (false, "google", "generateContent") => false,
            (false, "google", "streamGenerateContent?alt=sse") => true,
            (true, "anthropic", "rawPredict") => false,
            (true, "anthropic", "streamRawPredict") => true,
            _ => return None,
        };
        let model = match self.claude {
            true => {
                let valid = body["anthropic_version"] == ANTHROPIC_VERSION
                    && body.get("model").is_none()
                    && (body["stream"] == true) == stream;
                valid.then_some(())?;
                model.strip_prefix(CLAUDE_PREFIX)?
            }
            false => model,
        };
        Some(Route {
            model: model.to_string(),
            stream,
        })
    }

    fn credential(&self, headers: &HeaderMap) -> Result<String, String> {
        if ["x-api-key", "x-goog-api-key", "anthropic-version"]
            .iter()
            .any(|h| headers.contains_key(*h))
        {
            return Err("Vertex AI takes an OAuth bearer token only".into());
        }
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
            .ok_or_else(|| "Request had invalid authentication credentials".into())
    }

    fn read_request(&self, body: &Value) -> Seen {
        self.inner.read_request(body)
    }

    fn answer(&self, model: &str, answer: &Answer) -> Value {
        self.inner.answer(model, answer)
    }

    fn stream(&self, model: &str, answer: &Answer, request: &Value) -> Vec<Bytes> {
        self.inner.stream(model, answer, request)
    }

    fn stream_content_type(&self) -> &'static str {
        self.inner.stream_content_type()
    }

    fn error(&self, status: u16, message: &str) -> Value {
        self.inner.error(status, message)
    }

    fn stream_error_event(&self, model: &str, text: &str, message: &str) -> Vec<Bytes> {
        self.inner.stream_error_event(model, text, message)
    }

    fn malformed_stream(&self) -> Vec<Bytes> {
        self.inner.malformed_stream()
    }

    fn tool_call_id(&self, index: usize, id: &str) -> String {
        self.inner.tool_call_id(index, id)
    }

    fn tool_ids_upstream(&self) -> bool {
        self.inner.tool_ids_upstream()
    }

    fn tool_result_names(&self) -> bool {
        self.inner.tool_result_names()
    }

    fn default_max_tokens(&self) -> Option<u64> {
        self.inner.default_max_tokens()
    }

    fn replayed_reasoning(&self, r: &Reasoning) -> Vec<Part> {
        self.inner.replayed_reasoning(r)
    }

    fn unsupported(&self, case: Case) -> Option<Unsupported> {
        self.inner.unsupported(case)
    }

    fn spec(&self) -> Option<SpecCheck> {
        self.inner.spec()
    }

    fn spec_body(&self, route: &Route, body: &Value) -> Value {
        let mut body = self.inner.spec_body(route, body);
        if let (true, Some(obj)) = (self.claude, body.as_object_mut()) {
            obj.remove("anthropic_version");
            obj.insert("model".into(), json!(self.upstream_model(&route.model)));
        }
        body
    }
}
