//! The OpenAI wire format, for three kinds: `openai`, `azure` (deployment in the path, `api-key`
//! header, a first stream chunk with `prompt_filter_results` and an empty model, content filter results
//! on choices, as Azure sends them) and `groq` (the OpenAI-compatible family: `x_groq` on answers and
//! chunks, usage repeated in `x_groq` of the last chunk).

use std::sync::Arc;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{
    data_frame, image_part, pieces, result_content, shape, Answer, Case, Part, Role, Route, Seen, SpecCheck,
    Tool, Unsupported, Wire, KEY_ENV,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    OpenAi,
    Azure,
    Groq,
}

pub struct OpenAiWire(Flavor);

pub fn openai() -> Arc<dyn Wire> {
    Arc::new(OpenAiWire(Flavor::OpenAi))
}

pub fn azure() -> Arc<dyn Wire> {
    Arc::new(OpenAiWire(Flavor::Azure))
}

pub fn groq() -> Arc<dyn Wire> {
    Arc::new(OpenAiWire(Flavor::Groq))
}

const CREATED: u64 = 1_764_000_000;

fn text_of(content: &Value) -> Vec<Part> {
    match content {
        Value::String(s) => vec![Part::Text(s.clone())],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p["type"].as_str() {
                Some("text") => Some(Part::Text(p["text"].as_str().unwrap_or_default().to_string())),
                Some("image_url") => Some(image_part(p["image_url"]["url"].as_str().unwrap_or_default())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl OpenAiWire {
    fn usage(&self, a: &Answer) -> Value {
        let u = a.usage;
        json!({"prompt_tokens": u.prompt, "completion_tokens": u.completion,
            "total_tokens": u.prompt + u.completion,
            "prompt_tokens_details": {"cached_tokens": u.cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
    }

    fn chunk(&self, model: &str, choices: Value) -> Value {
        let mut c = json!({"id": "chatcmpl-conformance", "object": "chat.completion.chunk",
            "created": CREATED, "model": model, "system_fingerprint": "fp_conf", "choices": choices});
        if self.0 == Flavor::Groq {
            c["x_groq"] = json!({"id": "req_conformance"});
        }
        c
    }

    fn filter_results(&self, choice: &mut Value) {
        if self.0 == Flavor::Azure {
            choice["content_filter_results"] = json!({"hate": {"filtered": false, "severity": "safe"},
                "violence": {"filtered": false, "severity": "safe"}});
        }
    }
}

impl Wire for OpenAiWire {
    fn kind(&self) -> &'static str {
        match self.0 {
            Flavor::OpenAi => "openai",
            Flavor::Azure => "azure",
            Flavor::Groq => "groq",
        }
    }

    fn provider_toml(&self, root: &str) -> String {
        match self.0 {
            Flavor::OpenAi => format!("base_url = \"{root}/v1\"\napi_key_env = \"{KEY_ENV}\"\n"),
            Flavor::Azure => {
                format!("base_url = \"{root}\"\napi_key_env = \"{KEY_ENV}\"\napi_version = \"2024-10-21\"\n")
            }
            Flavor::Groq => format!("base_url = \"{root}/openai/v1\"\napi_key_env = \"{KEY_ENV}\"\n"),
        }
    }

    fn route(&self, path: &str, body: &Value) -> Option<Route> {
        let stream = body["stream"] == true;
        let model = match self.0 {
            Flavor::OpenAi if path == "/v1/chat/completions" => body["model"].as_str()?.to_string(),
            Flavor::Groq if path == "/openai/v1/chat/completions" => body["model"].as_str()?.to_string(),
            Flavor::Azure => {
                let rest = path.strip_prefix("/openai/deployments/")?;
                let (deployment, rest) = rest.split_once('/')?;
                if rest != "chat/completions?api-version=2024-10-21" || body.get("model").is_some() {
                    return None;
                }
                deployment.to_string()
            }
            _ => return None,
        };
        Some(Route { model, stream })
    }

    fn credential(&self, headers: &HeaderMap) -> Result<String, String> {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match self.0 {
            Flavor::Azure => value("api-key")
                .map(str::to_string)
                .ok_or_else(|| "api-key header missing".to_string()),
            _ => value("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
                .ok_or_else(|| "Authorization: Bearer header missing".to_string()),
        }
    }

    fn read_request(&self, body: &Value) -> Seen {
        let mut seen = Seen::default();
        for m in body["messages"].as_array().into_iter().flatten() {
            match m["role"].as_str() {
                Some("system" | "developer") => {
                    for p in text_of(&m["content"]) {
                        if let Part::Text(t) = p {
                            seen.add_system(&t);
                        }
                    }
                }
                Some("user") => {
                    for p in text_of(&m["content"]) {
                        seen.push(Role::User, p);
                    }
                }
                Some("assistant") => {
                    for p in text_of(&m["content"]) {
                        seen.push(Role::Assistant, p);
                    }
                    for c in m["tool_calls"].as_array().into_iter().flatten() {
                        let args = c["function"]["arguments"].as_str().unwrap_or("null");
                        seen.push(
                            Role::Assistant,
                            Part::ToolCall {
                                id: c["id"].as_str().map(str::to_string),
                                name: c["function"]["name"].as_str().unwrap_or_default().to_string(),
                                args: serde_json::from_str(args).unwrap_or(Value::Null),
                            },
                        );
                    }
                }
                Some("tool") => seen.push(
                    Role::User,
                    Part::ToolResult {
                        id: m["tool_call_id"].as_str().map(str::to_string),
                        name: None,
                        content: result_content(m["content"].as_str().unwrap_or_default()),
                    },
                ),
                _ => {}
            }
        }
        seen.tools = body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| Tool {
                name: t["function"]["name"].as_str().unwrap_or_default().to_string(),
                params: shape(&t["function"]["parameters"]),
            })
            .collect();
        seen.tool_choice = match &body["tool_choice"] {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o
                .get("function")
                .and_then(|f| f["name"].as_str())
                .map(|n| format!("function:{n}")),
            _ => (!seen.tools.is_empty()).then(|| "auto".to_string()),
        };
        seen.stop = match &body["stop"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        };
        seen.max_tokens = body["max_completion_tokens"]
            .as_u64()
            .or_else(|| body["max_tokens"].as_u64());
        let schema = &body["response_format"]["json_schema"]["schema"];
        seen.response_schema = (!schema.is_null()).then(|| shape(schema));
        seen
    }

    fn answer(&self, model: &str, a: &Answer) -> Value {
        let mut message = json!({"role": "assistant", "content": a.text, "refusal": null});
        if !a.tool_calls.is_empty() {
            message["tool_calls"] = a
                .tool_calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": c.args.to_string()}})
                })
                .collect();
        }
        let mut choice = json!({"index": 0, "message": message, "logprobs": null,
            "finish_reason": a.finish.openai()});
        self.filter_results(&mut choice);
        let mut v = json!({"id": "chatcmpl-conformance", "object": "chat.completion", "created": CREATED,
            "model": model, "system_fingerprint": "fp_conf", "choices": [choice], "usage": self.usage(a)});
        if self.0 == Flavor::Groq {
            v["x_groq"] = json!({"id": "req_conformance"});
        }
        v
    }

    fn stream(&self, model: &str, a: &Answer, request: &Value) -> Vec<Bytes> {
        let mut frames = Vec::new();
        if self.0 == Flavor::Azure {
            frames.push(data_frame(
                &json!({"choices": [], "created": 0, "id": "", "model": "",
                "object": "", "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                    "hate": {"filtered": false, "severity": "safe"}}}]}),
            ));
        }
        let mut delta = |d: Value, finish: Option<&str>| {
            let mut choice = json!({"index": 0, "delta": d, "logprobs": null, "finish_reason": finish});
            self.filter_results(&mut choice);
            frames.push(data_frame(&self.chunk(model, json!([choice]))));
        };
        delta(json!({"role": "assistant", "content": "", "refusal": null}), None);
        for piece in pieces(a.text.unwrap_or_default(), 5) {
            delta(json!({"content": piece}), None);
        }
        for (i, c) in a.tool_calls.iter().enumerate() {
            delta(
                json!({"tool_calls": [{"index": i, "id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": ""}}]}),
                None,
            );
            for piece in pieces(&c.args.to_string(), 7) {
                delta(
                    json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                    None,
                );
            }
        }
        delta(json!({}), Some(a.finish.openai()));
        if request["stream_options"]["include_usage"] == true {
            let mut last = self.chunk(model, json!([]));
            last["usage"] = self.usage(a);
            if self.0 == Flavor::Groq {
                last["x_groq"]["usage"] = self.usage(a);
            }
            frames.push(data_frame(&last));
        }
        frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
        frames
    }

    fn stream_error_event(&self, model: &str, text: &str, message: &str) -> Vec<Bytes> {
        let delta = |d: Value| {
            data_frame(&self.chunk(
                model,
                json!([{"index": 0, "delta": d, "logprobs": null, "finish_reason": null}]),
            ))
        };
        vec![
            delta(json!({"role": "assistant", "content": ""})),
            delta(json!({"content": text})),
            data_frame(
                &json!({"error": {"message": message, "type": "server_error", "param": null,
                "code": null}}),
            ),
        ]
    }

    fn error(&self, status: u16, message: &str) -> Value {
        if self.0 == Flavor::Azure {
            // Azure's shape: a string `code` and no `type`.
            let code = match status {
                400 => "BadRequest".to_string(),
                500 => "InternalServerError".to_string(),
                s => s.to_string(),
            };
            return json!({"error": {"code": code, "message": message}});
        }
        let (kind, code) = match status {
            400 => ("invalid_request_error", Value::Null),
            401 => ("invalid_request_error", json!("invalid_api_key")),
            429 => ("requests", json!("rate_limit_exceeded")),
            _ => ("server_error", Value::Null),
        };
        let mut error = Map::new();
        error.insert("message".into(), json!(message));
        error.insert("type".into(), json!(kind));
        error.insert("param".into(), Value::Null);
        error.insert("code".into(), code);
        json!({"error": error})
    }

    fn spec_body(&self, route: &Route, body: &Value) -> Value {
        let mut body = body.clone();
        if self.0 == Flavor::Azure {
            body["model"] = json!(route.model);
        }
        body
    }

    fn unsupported(&self, case: Case) -> Option<Unsupported> {
        match case {
            Case::ReasoningRoundTrip | Case::StreamReasoningRoundTrip => Some(Unsupported::Unknowable(
                "OpenAI chat completions return no signed reasoning to send back (the Responses API keeps it)",
            )),
            _ => None,
        }
    }

    fn spec(&self) -> Option<SpecCheck> {
        Some(SpecCheck {
            script: "validate_openai.py",
            specs: &["openai/openapi.yaml"],
            suffix: "chat",
        })
    }
}
