//! Anthropic's Messages API (`POST /v1/messages`, `x-api-key` + `anthropic-version`): content blocks,
//! `tool_use`/`tool_result`, `event:`/`data:` streams (`message_start`, `content_block_*` with
//! `text_delta`/`input_json_delta`, `message_delta`, `message_stop`, `ping`), `{"type":"error"}` bodies.
//! Usage: `input_tokens` excludes cache reads (`cache_read_input_tokens`); thinking tokens are inside
//! `output_tokens` with no separate count.

use std::sync::Arc;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{json, Value};

use super::{
    event_frame, pieces, result_content, shape, Answer, Case, Finish, Part, Role, Route, Seen, SpecCheck,
    Tool, Unsupported, Wire, KEY_ENV,
};

pub struct AnthropicWire;

pub fn anthropic() -> Arc<dyn Wire> {
    Arc::new(AnthropicWire)
}

const MESSAGE_ID: &str = "msg_01Conformance";

fn stop_reason(f: Finish) -> (&'static str, Option<&'static str>) {
    match f {
        Finish::Stop => ("end_turn", None),
        Finish::StopSequence(s) => ("stop_sequence", Some(s)),
        Finish::Length => ("max_tokens", None),
        Finish::ToolCalls => ("tool_use", None),
        Finish::ContentFilter => ("refusal", None),
    }
}

fn usage(a: &Answer, output: u64) -> Value {
    json!({"input_tokens": a.usage.prompt - a.usage.cached, "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": a.usage.cached, "output_tokens": output, "service_tier": "standard"})
}

fn blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(b) => b.clone(),
        _ => Vec::new(),
    }
}

fn text_blocks(content: &Value) -> String {
    blocks(content)
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

impl Wire for AnthropicWire {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn provider_toml(&self, root: &str) -> String {
        format!("base_url = \"{root}/v1\"\napi_key_env = \"{KEY_ENV}\"\n")
    }

    fn route(&self, path: &str, body: &Value) -> Option<Route> {
        (path == "/v1/messages").then(|| Route {
            model: body["model"].as_str().unwrap_or_default().to_string(),
            stream: body["stream"] == true,
        })
    }

    fn credential(&self, headers: &HeaderMap) -> Result<String, String> {
        if headers.get("anthropic-version").is_none() {
            return Err("anthropic-version: header is required".into());
        }
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| "x-api-key header is required".into())
    }

    fn read_request(&self, body: &Value) -> Seen {
        let mut seen = Seen::default();
        if !body["system"].is_null() {
            seen.add_system(&text_blocks(&body["system"]));
        }
        for m in body["messages"].as_array().into_iter().flatten() {
            let role = match m["role"].as_str() {
                Some("assistant") => Role::Assistant,
                _ => Role::User,
            };
            for b in blocks(&m["content"]) {
                let part = match b["type"].as_str() {
                    Some("text") => Part::Text(b["text"].as_str().unwrap_or_default().to_string()),
                    Some("image") => match b["source"]["type"].as_str() {
                        Some("base64") => Part::Image {
                            mime: b["source"]["media_type"].as_str().unwrap_or_default().into(),
                            data: b["source"]["data"].as_str().unwrap_or_default().into(),
                        },
                        _ => Part::Image {
                            mime: "url".into(),
                            data: b["source"]["url"].as_str().unwrap_or_default().into(),
                        },
                    },
                    Some("tool_use") => Part::ToolCall {
                        id: b["id"].as_str().map(str::to_string),
                        name: b["name"].as_str().unwrap_or_default().to_string(),
                        args: b["input"].clone(),
                    },
                    Some("thinking") => Part::Thinking {
                        text: b["thinking"].as_str().map(str::to_string),
                        signature: b["signature"].as_str().unwrap_or_default().to_string(),
                    },
                    Some("tool_result") => Part::ToolResult {
                        id: b["tool_use_id"].as_str().map(str::to_string),
                        name: None,
                        content: result_content(&text_blocks(&b["content"])),
                    },
                    _ => continue,
                };
                seen.push(role, part);
            }
        }
        seen.tools = body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| Tool {
                name: t["name"].as_str().unwrap_or_default().to_string(),
                params: shape(&t["input_schema"]),
            })
            .collect();
        seen.tool_choice = match body["tool_choice"]["type"].as_str() {
            Some("any") => Some("required".to_string()),
            Some("tool") => Some(format!(
                "function:{}",
                body["tool_choice"]["name"].as_str().unwrap_or_default()
            )),
            Some(t) => Some(t.to_string()),
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
        let schema = &body["output_config"]["format"]["schema"];
        seen.response_schema = (!schema.is_null()).then(|| shape(schema));
        seen
    }

    fn answer(&self, model: &str, a: &Answer) -> Value {
        let mut content: Vec<Value> = a
            .reasoning
            .map(|r| json!({"type": "thinking", "thinking": r.text, "signature": r.signature}))
            .into_iter()
            .collect();
        content.extend(
            a.text
                .map(|t| json!({"type": "text", "text": t, "citations": null})),
        );
        content.extend(
            a.tool_calls
                .iter()
                .map(|c| json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.args})),
        );
        let (stop, seq) = stop_reason(a.finish);
        json!({"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": seq,
            "usage": usage(a, a.usage.completion)})
    }

    fn stream(&self, model: &str, a: &Answer, _request: &Value) -> Vec<Bytes> {
        let start = json!({"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(a, 1)});
        let mut frames = vec![
            event_frame(
                "message_start",
                &json!({"type": "message_start", "message": start}),
            ),
            event_frame("ping", &json!({"type": "ping"})),
        ];
        let mut blocks: Vec<(Value, Vec<Value>)> = Vec::new();
        if let Some(r) = a.reasoning {
            let mut deltas: Vec<Value> = pieces(r.text, 9)
                .into_iter()
                .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                .collect();
            deltas.push(json!({"type": "signature_delta", "signature": r.signature}));
            blocks.push((
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                deltas,
            ));
        }
        if let Some(t) = a.text {
            let deltas = pieces(t, 5)
                .into_iter()
                .map(|p| json!({"type": "text_delta", "text": p}))
                .collect();
            blocks.push((json!({"type": "text", "text": ""}), deltas));
        }
        for c in &a.tool_calls {
            let mut deltas = vec![json!({"type": "input_json_delta", "partial_json": ""})];
            // A call without arguments streams no JSON at all, only that empty delta.
            let json = match c.args.as_object() {
                Some(o) if o.is_empty() => String::new(),
                _ => c.args.to_string(),
            };
            deltas.extend(
                pieces(&json, 7)
                    .into_iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p})),
            );
            blocks.push((
                json!({"type": "tool_use", "id": c.id, "name": c.name, "input": {}}),
                deltas,
            ));
        }
        for (index, (block, deltas)) in blocks.into_iter().enumerate() {
            frames.push(event_frame(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": block}),
            ));
            for d in deltas {
                frames.push(event_frame(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": d}),
                ));
            }
            frames.push(event_frame(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
        let (stop, seq) = stop_reason(a.finish);
        frames.push(event_frame(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": seq},
                "usage": {"output_tokens": a.usage.completion}}),
        ));
        frames.push(event_frame("message_stop", &json!({"type": "message_stop"})));
        frames
    }

    fn stream_error_event(&self, model: &str, text: &str, message: &str) -> Vec<Bytes> {
        let a = Answer {
            reasoning: None,
            text: None,
            tool_calls: Vec::new(),
            finish: Finish::Stop,
            usage: super::Usage {
                prompt: 10,
                completion: 1,
                cached: 0,
                reasoning: 0,
            },
        };
        let start = json!({"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(&a, 1)});
        vec![
            event_frame(
                "message_start",
                &json!({"type": "message_start", "message": start}),
            ),
            event_frame(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            ),
            event_frame(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": text}}),
            ),
            event_frame(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": message}}),
            ),
        ]
    }

    fn error(&self, status: u16, message: &str) -> Value {
        let kind = match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_conf"})
    }

    fn malformed_stream(&self) -> Vec<Bytes> {
        vec![Bytes::from_static(
            b"event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\"id\n\n",
        )]
    }

    fn default_max_tokens(&self) -> Option<u64> {
        // Anthropic requires `max_tokens`; the adapter's default when the client sets none.
        Some(4096)
    }

    fn unsupported(&self, case: Case) -> Option<Unsupported> {
        match case {
            Case::UsageReasoning | Case::StreamReasoning => Some(Unsupported::Unknowable(
                "the Messages API counts thinking inside output_tokens, with no separate number",
            )),
            _ => None,
        }
    }

    fn spec(&self) -> Option<SpecCheck> {
        Some(SpecCheck {
            script: "validate_anthropic.py",
            specs: &["anthropic/openapi.json"],
            suffix: "messages",
        })
    }
}
