//! A fake Anthropic Messages API, in-process, on an ephemeral port: `POST /v1/messages` in
//! Anthropic's wire format (JSON answers, `event:`/`data:` SSE streams, `{"type":"error"}` bodies).
//! Like the real API it answers 401 without `x-api-key` and 400 without `anthropic-version` or
//! `max_tokens`. Otherwise its behaviour is chosen by the request's `model`:
//!
//! | model          | answer |
//! |----------------|--------|
//! | anything else  | `fake: <last user text and tool results>`; usage 11 in + 2 cache writes + 5 cache reads, 7 out |
//! | `tools`        | a `get_weather` tool call `{"city":"Paris"}`; streamed as `input_json_delta` fragments |
//! | `thinking-tools` | a signed `thinking` block ([`THINKING`], [`SIGNATURE`]), a `redacted_thinking` block ([`REDACTED`]), then the `tools` call; streamed with `thinking_delta`s and a `signature_delta` |
//! | `overloaded`   | 529 `overloaded_error` (retryable) |
//! | `error-event`  | (streaming) one text delta, then an `error` event |
//!
//! Every request is recorded (path, headers, JSON body).

use std::{ops::Deref, sync::Arc};

use axum::{
    extract::State,
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::fake::{json_answer, sse_paced, Recording, Requests};

pub struct FakeAnthropic(Recording);

impl FakeAnthropic {
    /// Serves on an ephemeral port; the provider `base_url` to configure is `http://ADDR/v1`.
    pub async fn start() -> FakeAnthropic {
        let routes = Router::new().route("/v1/messages", post(messages));
        FakeAnthropic(Recording::start(routes, "/v1").await)
    }
}

impl Deref for FakeAnthropic {
    type Target = Recording;

    fn deref(&self) -> &Recording {
        &self.0
    }
}

pub const MESSAGE_ID: &str = "msg_01FakeAnthropic";

/// The thinking of the `thinking-tools` answer, its signature and its redacted block's data.
pub const THINKING: &str = "The user wants the weather in Paris; call get_weather.";
pub const SIGNATURE: &str = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds";
pub const REDACTED: &str = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP";

fn error(status: u16, kind: &str, message: &str) -> Response {
    let body =
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"});
    json_answer(status, body)
}

/// The texts of the last user turn: text blocks and tool results.
fn last_user_text(body: &Value) -> String {
    fn text_of(v: &Value) -> Vec<&str> {
        match v {
            Value::String(s) => vec![s],
            Value::Array(items) => items.iter().flat_map(text_of).collect(),
            _ if v["type"] == "text" => v["text"].as_str().into_iter().collect(),
            _ if v["type"] == "tool_result" => text_of(&v["content"]),
            _ => Vec::new(),
        }
    }
    body["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| text_of(&m["content"]).join(" "))
        .unwrap_or_default()
}

fn usage(output: u64) -> Value {
    json!({"input_tokens": 11, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 5,
           "output_tokens": output, "service_tier": "standard"})
}

fn tool_use() -> Value {
    json!({"type": "tool_use", "id": "toolu_01FakeWeather", "name": "get_weather", "input": {"city": "Paris"}})
}

async fn messages(
    State(requests): State<Arc<Requests>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.record(uri.path().to_string(), &headers, &body);
    if !headers.contains_key("x-api-key") {
        return error(401, "authentication_error", "x-api-key header is required");
    }
    if !headers.contains_key("anthropic-version") {
        return error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    if !body["max_tokens"].is_u64() {
        return error(400, "invalid_request_error", "max_tokens: Field required");
    }
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if model == "overloaded" {
        return error(529, "overloaded_error", "Overloaded");
    }
    let text = format!("fake: {}", last_user_text(&body));
    if body["stream"] == true {
        if model == "thinking-tools" {
            return thinking_stream(&model);
        }
        return stream(&model, &text);
    }
    let (content, stop) = match model.as_str() {
        "tools" => (json!([tool_use()]), "tool_use"),
        "thinking-tools" => (
            json!([{"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
                {"type": "redacted_thinking", "data": REDACTED}, tool_use()]),
            "tool_use",
        ),
        _ => (
            json!([{"type": "text", "text": text, "citations": null}]),
            "end_turn",
        ),
    };
    axum::Json(
        json!({"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": null, "usage": usage(7)}),
    )
    .into_response()
}

fn frame(event: &str, data: Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

fn stream(model: &str, text: &str) -> Response {
    let message = json!({"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(1)});
    let mut frames = vec![
        frame(
            "message_start",
            json!({"type": "message_start", "message": message}),
        ),
        frame("ping", json!({"type": "ping"})),
    ];
    let delta = |d: Value| {
        frame(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": d}),
        )
    };
    let stop = match model {
        "tools" => {
            let mut start = tool_use();
            start["input"] = json!({});
            frames.push(frame(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": start}),
            ));
            for part in ["", "{\"ci", "ty\": \"Pa", "ris\"}"] {
                frames.push(delta(json!({"type": "input_json_delta", "partial_json": part})));
            }
            "tool_use"
        }
        _ => {
            frames.push(frame(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ));
            let mut rest = text;
            while !rest.is_empty() {
                let cut = rest.char_indices().nth(4).map_or(rest.len(), |(i, _)| i);
                frames.push(delta(json!({"type": "text_delta", "text": &rest[..cut]})));
                rest = &rest[cut..];
                if model == "error-event" {
                    frames.push(frame(
                        "error",
                        json!({"type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                    ));
                    return sse_paced(frames);
                }
            }
            "end_turn"
        }
    };
    frames.push(frame(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    frames.push(frame(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 7}}),
    ));
    frames.push(frame("message_stop", json!({"type": "message_stop"})));
    sse_paced(frames)
}

/// The `thinking-tools` answer streamed: thinking in three deltas and its signature, the redacted
/// block whole, then the tool call.
fn thinking_stream(model: &str) -> Response {
    let message = json!({"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(1)});
    let block = |index: u64, event: &str, extra: Value| {
        let mut data = json!({"type": event, "index": index});
        if let (Some(d), Value::Object(extra)) = (data.as_object_mut(), extra) {
            d.extend(extra);
        }
        frame(event, data)
    };
    let mut frames = vec![frame(
        "message_start",
        json!({"type": "message_start", "message": message}),
    )];
    frames.push(block(
        0,
        "content_block_start",
        json!({"content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    ));
    let (a, rest) = THINKING.split_at(10);
    let (b, c) = rest.split_at(20);
    for piece in [a, b, c] {
        frames.push(block(
            0,
            "content_block_delta",
            json!({"delta": {"type": "thinking_delta", "thinking": piece}}),
        ));
    }
    frames.push(block(
        0,
        "content_block_delta",
        json!({"delta": {"type": "signature_delta", "signature": SIGNATURE}}),
    ));
    frames.push(block(0, "content_block_stop", json!({})));
    frames.push(block(
        1,
        "content_block_start",
        json!({"content_block": {"type": "redacted_thinking", "data": REDACTED}}),
    ));
    frames.push(block(1, "content_block_stop", json!({})));
    let mut start = tool_use();
    start["input"] = json!({});
    frames.push(block(2, "content_block_start", json!({ "content_block": start })));
    frames.push(block(
        2,
        "content_block_delta",
        json!({"delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Paris\"}"}}),
    ));
    frames.push(block(2, "content_block_stop", json!({})));
    frames.push(frame(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 7}}),
    ));
    frames.push(frame("message_stop", json!({"type": "message_stop"})));
    sse_paced(frames)
}
