//! Cohere's v2 API (`POST /v2/chat`, `Authorization: Bearer`): role-tagged messages (`system`, `user`
//! with text and `image_url` parts, `assistant` with `tool_plan`/`tool_calls`, `tool` with
//! `tool_call_id`), OpenAI-shaped `tools`, `response_format` `json_object` with `json_schema`;
//! `event:`/`data:` streams (`message-start`, `content-start/delta/end`, `tool-call-start/delta/end`,
//! `message-end` with `finish_reason` and usage), `{"id", "message"}` error bodies. Usage: billed
//! units, `cached_tokens` a subset of the input; no separate reasoning count.

use std::sync::Arc;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{json, Value};

use super::{
    event_frame, image_part, pieces, result_content, shape, Answer, Case, Finish, Part, Role, Route, Seen,
    SpecCheck, Tool, Unsupported, Wire, KEY_ENV,
};

pub struct CohereWire;

pub fn cohere() -> Arc<dyn Wire> {
    Arc::new(CohereWire)
}

const MESSAGE_ID: &str = "c0e7e2a1-conf-4b1e-9a3d-conformance01";

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "COMPLETE",
        Finish::StopSequence(_) => "STOP_SEQUENCE",
        Finish::Length => "MAX_TOKENS",
        Finish::ToolCalls => "TOOL_CALL",
        // Not in v2's enum (the content-filter case is unknowable for cohere); v1's name for it.
        Finish::ContentFilter => "ERROR_TOXIC",
    }
}

fn usage(a: &Answer) -> Value {
    let u = a.usage;
    json!({"billed_units": {"input_tokens": u.prompt, "output_tokens": u.completion},
        "tokens": {"input_tokens": u.prompt + 60, "output_tokens": u.completion},
        "cached_tokens": u.cached})
}

/// The text of a string content or of its text parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    }
}

impl Wire for CohereWire {
    fn kind(&self) -> &'static str {
        "cohere"
    }

    fn provider_toml(&self, root: &str) -> String {
        format!("base_url = \"{root}\"\napi_key_env = \"{KEY_ENV}\"\n")
    }

    fn route(&self, path: &str, body: &Value) -> Option<Route> {
        (path == "/v2/chat").then(|| Route {
            model: body["model"].as_str().unwrap_or_default().to_string(),
            stream: body["stream"] == true,
        })
    }

    fn credential(&self, headers: &HeaderMap) -> Result<String, String> {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
            .ok_or_else(|| "no api key supplied".into())
    }

    fn read_request(&self, body: &Value) -> Seen {
        let mut seen = Seen::default();
        for m in body["messages"].as_array().into_iter().flatten() {
            match m["role"].as_str() {
                Some("system") => seen.add_system(&text_of(&m["content"])),
                Some("user") => match &m["content"] {
                    Value::Array(parts) => {
                        for p in parts {
                            let part = match p["type"].as_str() {
                                Some("text") => Part::Text(p["text"].as_str().unwrap_or_default().into()),
                                Some("image_url") => {
                                    image_part(p["image_url"]["url"].as_str().unwrap_or_default())
                                }
                                _ => continue,
                            };
                            seen.push(Role::User, part);
                        }
                    }
                    content => seen.push(Role::User, Part::Text(text_of(content))),
                },
                Some("assistant") => {
                    for text in [text_of(&m["tool_plan"]), text_of(&m["content"])] {
                        if !text.is_empty() {
                            seen.push(Role::Assistant, Part::Text(text));
                        }
                    }
                    for c in m["tool_calls"].as_array().into_iter().flatten() {
                        let args = c["function"]["arguments"].as_str().unwrap_or_default();
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
                        content: result_content(&text_of(&m["content"])),
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
        seen.tool_choice = match body["tool_choice"].as_str() {
            Some(choice) => Some(choice.to_lowercase()),
            None => (!seen.tools.is_empty()).then(|| "auto".to_string()),
        };
        seen.stop = body["stop_sequences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        seen.max_tokens = body["max_tokens"].as_u64();
        let schema = &body["response_format"]["json_schema"];
        seen.response_schema = (!schema.is_null()).then(|| shape(schema));
        seen
    }

    fn answer(&self, _model: &str, a: &Answer) -> Value {
        let mut message = json!({"role": "assistant"});
        if let Some(t) = a.text {
            message["content"] = json!([{"type": "text", "text": t}]);
        }
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
        json!({"id": MESSAGE_ID, "finish_reason": finish_reason(a.finish), "message": message,
            "usage": usage(a)})
    }

    fn stream(&self, _model: &str, a: &Answer, _request: &Value) -> Vec<Bytes> {
        let frame = |v: Value| event_frame(v["type"].as_str().unwrap_or_default(), &v);
        let mut frames = vec![frame(json!({"id": MESSAGE_ID, "type": "message-start",
            "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [],
                "citations": []}}}))];
        if let Some(t) = a.text {
            frames.push(frame(json!({"type": "content-start", "index": 0,
                "delta": {"message": {"content": {"type": "text", "text": ""}}}})));
            for p in pieces(t, 5) {
                frames.push(frame(json!({"type": "content-delta", "index": 0,
                    "delta": {"message": {"content": {"text": p}}}})));
            }
            frames.push(frame(json!({"type": "content-end", "index": 0})));
        }
        for (index, c) in a.tool_calls.iter().enumerate() {
            frames.push(frame(json!({"type": "tool-call-start", "index": index, "delta": {"message":
                {"tool_calls": {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}}}})));
            for p in pieces(&c.args.to_string(), 7) {
                frames.push(frame(json!({"type": "tool-call-delta", "index": index,
                    "delta": {"message": {"tool_calls": {"function": {"arguments": p}}}}})));
            }
            frames.push(frame(json!({"type": "tool-call-end", "index": index})));
        }
        frames.push(frame(json!({"type": "message-end", "delta": {
            "finish_reason": finish_reason(a.finish), "usage": usage(a)}})));
        frames
    }

    /// Cohere reports a failed generation in the stream's `message-end`: `finish_reason: ERROR`
    /// with the reason in `delta.error`.
    fn stream_error_event(&self, _model: &str, text: &str, message: &str) -> Vec<Bytes> {
        let frame = |v: Value| event_frame(v["type"].as_str().unwrap_or_default(), &v);
        vec![
            frame(
                json!({"id": MESSAGE_ID, "type": "message-start", "delta": {"message": {"role": "assistant"}}}),
            ),
            frame(json!({"type": "content-start", "index": 0,
                "delta": {"message": {"content": {"type": "text", "text": ""}}}})),
            frame(
                json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": text}}}}),
            ),
            frame(
                json!({"type": "message-end", "delta": {"finish_reason": "ERROR", "error": message,
                "usage": {"billed_units": {"input_tokens": 10, "output_tokens": 1}}}}),
            ),
        ]
    }

    fn error(&self, _status: u16, message: &str) -> Value {
        json!({"id": "e7a1c0de-conf-4000-8000-conformance01", "message": message})
    }

    fn malformed_stream(&self) -> Vec<Bytes> {
        vec![Bytes::from_static(
            b"event: message-start\ndata: {\"type\": \"message-start\", \"id\n\n",
        )]
    }

    fn unsupported(&self, case: Case) -> Option<Unsupported> {
        match case {
            Case::UsageReasoning | Case::StreamReasoning => Some(Unsupported::Unknowable(
                "Cohere's usage has no separate count of thinking tokens",
            )),
            Case::ReasoningRoundTrip | Case::StreamReasoningRoundTrip => Some(Unsupported::Unknowable(
                "Cohere's thinking carries no signature, so there is nothing signed to send back",
            )),
            Case::ContentFilter => Some(Unsupported::Unknowable(
                "Cohere v2 has no content-filter finish reason (v1's ERROR_TOXIC is mapped when seen)",
            )),
            _ => None,
        }
    }

    fn spec(&self) -> Option<SpecCheck> {
        Some(SpecCheck {
            script: "validate_cohere.py",
            specs: &["cohere/cohere-openapi.yaml"],
            suffix: "chat",
        })
    }
}
