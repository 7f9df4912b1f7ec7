//! A fake Cohere v2 API, in-process, on an ephemeral port: `POST /v2/chat` and `POST /v2/embed` in
//! Cohere's wire format (JSON answers, `event:`/`data:` SSE streams, `{"id","message"}` error bodies).
//! Like the real API it answers 401 without a Bearer token and 400 without `model`, `messages` (chat)
//! or `input_type` (embed). Otherwise its behaviour is chosen by the request's `model`:
//!
//! | model          | answer |
//! |----------------|--------|
//! | anything else  | `fake: <last user text and tool results>` (citing the first of any `documents`); usage: billed 11 in / 7 out, tokens 80 in / 7 out, 5 cached |
//! | `tools`        | tool plan `I will check the weather.` and a `get_weather` call `{"city":"Paris"}`; streamed as `tool-plan-delta` + `tool-call-start`/`-delta` fragments |
//! | `rate-limited` | 429 with a Cohere error body (retryable) |
//! | `error-event`  | (streaming) one content delta, then `message-end` with `finish_reason: ERROR` |
//!
//! Embeddings: vector `[n, 0.5, -0.25]` for an input of `n` characters, billed one token per word;
//! with `base64` among the `embedding_types` a `base64` list is sent beside `float`. Every request is
//! recorded (path, headers, JSON body).

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

pub struct FakeCohere(Recording);

impl FakeCohere {
    /// Serves on an ephemeral port; the provider `base_url` to configure is `http://ADDR` (paths
    /// carry `/v2`).
    pub async fn start() -> FakeCohere {
        let routes = Router::new()
            .route("/v2/chat", post(chat))
            .route("/v2/embed", post(embed));
        FakeCohere(Recording::start(routes, "").await)
    }
}

impl Deref for FakeCohere {
    type Target = Recording;

    fn deref(&self) -> &Recording {
        &self.0
    }
}

pub const MESSAGE_ID: &str = "b5d4f9a2-fake-4c1e-9d3b-cohere000001";
pub const TOOL_CALL_ID: &str = "get_weather_fake0001";
pub const TOOL_PLAN: &str = "I will check the weather.";

fn error(status: u16, message: &str) -> Response {
    let body = json!({"id": "f4c3b2a1-0000-4000-8000-fakeerror001", "message": message});
    json_answer(status, body)
}

/// Records the request and applies the checks every endpoint shares; `Err` is the refusal (status,
/// message).
fn receive(
    requests: &Requests,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, (u16, &'static str)> {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    requests.record(uri.path().to_string(), headers, &body);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    if !bearer {
        return Err((401, "no api key supplied"));
    }
    if !body["model"].is_string() {
        return Err((400, "invalid request: model is required"));
    }
    Ok(body)
}

/// The texts of the last user turn and of the tool results after it.
fn last_user_text(body: &Value) -> String {
    fn text_of(v: &Value) -> Vec<&str> {
        match v {
            Value::String(s) => vec![s],
            Value::Array(items) => items.iter().flat_map(text_of).collect(),
            _ if v["type"] == "text" => v["text"].as_str().into_iter().collect(),
            _ => Vec::new(),
        }
    }
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let start = messages.iter().rposition(|m| m["role"] == "user").unwrap_or(0);
    messages[start..]
        .iter()
        .filter(|m| m["role"] == "user" || m["role"] == "tool")
        .flat_map(|m| text_of(&m["content"]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn usage(output: u64) -> Value {
    json!({"billed_units": {"input_tokens": 11, "output_tokens": output},
           "tokens": {"input_tokens": 80, "output_tokens": output}, "cached_tokens": 5})
}

async fn chat(State(requests): State<Arc<Requests>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body = match receive(&requests, &uri, &headers, &body) {
        Ok(b) => b,
        Err((status, message)) => return error(status, message),
    };
    if !body["messages"].is_array() {
        return error(400, "invalid request: messages is required");
    }
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if model == "rate-limited" {
        return error(
            429,
            "You are using a Trial key, which is limited to 10 API calls / minute.",
        );
    }
    let text = format!("fake: {}", last_user_text(&body));
    if body["stream"] == true {
        return stream(&model, &text);
    }
    let message = match model.as_str() {
        "tools" => json!({"role": "assistant", "tool_plan": TOOL_PLAN, "tool_calls": [
            {"id": TOOL_CALL_ID, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
        _ => json!({"role": "assistant", "content": [{"type": "text", "text": text}]}),
    };
    let mut message = message;
    if let Some(doc) = body["documents"].get(0) {
        message["citations"] = json!([{"start": 0, "end": 4, "text": "fake", "type": "TEXT_CONTENT",
            "sources": [{"type": "document", "id": "doc:0", "document": doc}]}]);
    }
    let finish = if model == "tools" { "TOOL_CALL" } else { "COMPLETE" };
    axum::Json(json!({"id": MESSAGE_ID, "finish_reason": finish, "message": message, "usage": usage(7)}))
        .into_response()
}

fn frame(data: Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap_or_default()
    )
}

fn stream(model: &str, text: &str) -> Response {
    let mut frames = vec![frame(json!({"id": MESSAGE_ID, "type": "message-start",
        "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}))];
    let finish = match model {
        "tools" => {
            for part in ["I will check", " the weather."] {
                frames.push(frame(
                    json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": part}}}),
                ));
            }
            frames.push(frame(json!({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls":
                {"id": TOOL_CALL_ID, "type": "function", "function": {"name": "get_weather", "arguments": ""}}}}})));
            for part in ["{\"ci", "ty\": \"Pa", "ris\"}"] {
                frames.push(frame(json!({"type": "tool-call-delta", "index": 0,
                    "delta": {"message": {"tool_calls": {"function": {"arguments": part}}}}})));
            }
            frames.push(frame(json!({"type": "tool-call-end", "index": 0})));
            "TOOL_CALL"
        }
        _ => {
            frames.push(frame(json!({"type": "content-start", "index": 0,
                "delta": {"message": {"content": {"type": "text", "text": ""}}}})));
            let mut rest = text;
            while !rest.is_empty() {
                let cut = rest.char_indices().nth(4).map_or(rest.len(), |(i, _)| i);
                frames.push(frame(json!({"type": "content-delta", "index": 0,
                    "delta": {"message": {"content": {"text": &rest[..cut]}}}})));
                rest = &rest[cut..];
                if model == "error-event" {
                    frames.push(frame(
                        json!({"type": "message-end", "delta": {"finish_reason": "ERROR",
                        "error": "internal server error", "usage": usage(1)}}),
                    ));
                    return sse_paced(frames);
                }
            }
            frames.push(frame(json!({"type": "content-end", "index": 0})));
            "COMPLETE"
        }
    };
    frames.push(frame(
        json!({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage(7)}}),
    ));
    sse_paced(frames)
}

async fn embed(State(requests): State<Arc<Requests>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body = match receive(&requests, &uri, &headers, &body) {
        Ok(b) => b,
        Err((status, message)) => return error(status, message),
    };
    if !body["input_type"].is_string() {
        return error(400, "invalid request: input_type is required");
    }
    if body["model"] == "rate-limited" {
        return error(429, "too many requests");
    }
    let texts: Vec<&str> = body["texts"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let floats: Vec<Value> = texts
        .iter()
        .map(|t| json!([t.chars().count() as f64, 0.5, -0.25]))
        .collect();
    let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    let mut embeddings = json!({"float": floats});
    let types = body["embedding_types"].as_array().cloned().unwrap_or_default();
    if types.iter().any(|t| t == "base64") {
        embeddings["base64"] = json!(texts
            .iter()
            .map(|_| "Y29oZXJlLW93bi1wYWNraW5n")
            .collect::<Vec<_>>());
    }
    axum::Json(
        json!({"id": "e1d2c3b4-fake-4000-8000-embed0000001", "embeddings": embeddings, "texts": texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": words}},
        "response_type": "embeddings_by_type"}),
    )
    .into_response()
}
