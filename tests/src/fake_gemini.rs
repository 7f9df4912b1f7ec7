//! A fake Google Gemini API (AI Studio `v1beta`), in-process, on an ephemeral port:
//! `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` and
//! `:batchEmbedContents` in Gemini's wire format (camelCase JSON answers, `data:`-only SSE streams
//! without `[DONE]`, `{"error": {"code", "message", "status"}}` bodies). Like the real API it answers
//! 403 `PERMISSION_DENIED` without `x-goog-api-key` and 400 `INVALID_ARGUMENT` without `contents`.
//! Otherwise its behaviour is chosen by the model in the URL path:
//!
//! | model          | answer |
//! |----------------|--------|
//! | anything else  | `fake: <last user text and function responses>`; usage 11 prompt (5 cached), 7 candidates, 3 thoughts |
//! | `tools`        | a `get_weather` function call `{"city":"Paris"}` (streamed as one chunk) |
//! | `signed-tools` | like Gemini 3: a thought ([`THOUGHT`]), then the call with `thoughtSignature` [`SIGNATURE`] (streamed as two chunks); like Gemini 3 it answers 400 when a model turn's first function call comes back without its signature |
//! | `blocked`      | `finishReason: SAFETY` after a partial text |
//! | `overloaded`   | 503 `UNAVAILABLE` (retryable) |
//! | `error-event`  | (streaming) one text chunk, then an `{"error": ...}` payload |
//!
//! `batchEmbedContents` answers one vector `[len(text), 0.5, -0.25]` per request. Every request is
//! recorded (path with query, headers, JSON body).

use std::{ops::Deref, sync::Arc};

use axum::{
    extract::State,
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
    Router,
};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::fake::{json_answer, sse_paced, Recording, Requests};

pub struct FakeGemini(Recording);

impl FakeGemini {
    /// Serves on an ephemeral port; the provider `base_url` to configure is `http://ADDR/v1beta`.
    pub async fn start() -> FakeGemini {
        // `{model}:{method}` is one path segment, so the handler parses the path itself.
        let routes = Router::new().fallback(handle);
        FakeGemini(Recording::start(routes, "/v1beta").await)
    }
}

impl Deref for FakeGemini {
    type Target = Recording;

    fn deref(&self) -> &Recording {
        &self.0
    }
}

pub const RESPONSE_ID: &str = "fakeGeminiResponse01";

/// The thought and the function call's signature of the `signed-tools` answer.
pub const THOUGHT: &str = "**Weather** The user asks for Paris; call get_weather.";
pub const SIGNATURE: &str = "Q2lRQjBlMkticGFyaXMtc2lnbmF0dXJl";

/// Gemini 3's check: in every model turn, the first function call carries a thought signature.
fn missing_signature(body: &Value) -> bool {
    body["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["role"] == "model")
        .filter_map(|c| {
            c["parts"]
                .as_array()?
                .iter()
                .find(|p| p["functionCall"].is_object())
        })
        .any(|p| p["thoughtSignature"].as_str().is_none_or(str::is_empty))
}

fn signed_parts() -> [Value; 2] {
    let mut call = function_call();
    call["thoughtSignature"] = json!(SIGNATURE);
    [json!({"text": THOUGHT, "thought": true}), call]
}

/// A Google API error body: `{"error": {"code", "message", "status"}}`.
pub fn error(status: u16, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status, "message": message, "status": code}});
    json_answer(status, body)
}

/// The texts of the last user turn: text parts and function responses (as JSON).
fn last_user_text(body: &Value) -> String {
    body["contents"]
        .as_array()
        .and_then(|cs| cs.iter().rev().find(|c| c["role"] == "user"))
        .and_then(|c| c["parts"].as_array())
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| match (&p["text"], &p["functionResponse"]["response"]) {
                    (Value::String(t), _) => Some(t.clone()),
                    (_, Value::Object(r)) => Some(match r.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        _ => Value::Object(r.clone()).to_string(),
                    }),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn usage(candidates: u64) -> Value {
    json!({"promptTokenCount": 11, "candidatesTokenCount": candidates, "thoughtsTokenCount": 3,
        "cachedContentTokenCount": 5, "totalTokenCount": 14 + candidates,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 11}]})
}

fn answer(model: &str, parts: Value, finish: Option<&str>, candidates: u64) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    json!({"candidates": [candidate], "usageMetadata": usage(candidates),
        "modelVersion": model, "responseId": RESPONSE_ID})
}

fn function_call() -> Value {
    json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}})
}

async fn handle(
    State(requests): State<Arc<Requests>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.record(
        uri.path_and_query().map(ToString::to_string).unwrap_or_default(),
        &headers,
        &body,
    );
    if !headers.contains_key("x-goog-api-key") {
        return error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers. Please use API Key.",
        );
    }
    let Some((model, method)) = uri
        .path()
        .strip_prefix("/v1beta/models/")
        .and_then(|rest| rest.split_once(':'))
    else {
        return error(404, "NOT_FOUND", "no such method");
    };
    if model == "overloaded" {
        return error(
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
        );
    }
    match method {
        "batchEmbedContents" => {
            let Some(reqs) = body["requests"].as_array() else {
                return error(400, "INVALID_ARGUMENT", "requests is required");
            };
            let embeddings: Vec<Value> = reqs
                .iter()
                .map(|r| {
                    let len = r["content"]["parts"][0]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .len();
                    json!({"values": [len as f64, 0.5, -0.25]})
                })
                .collect();
            axum::Json(json!({"embeddings": embeddings})).into_response()
        }
        "generateContent" | "streamGenerateContent" => {
            if !body["contents"].is_array() {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    "* GenerateContentRequest.contents: contents is not specified",
                );
            }
            if model == "signed-tools" && missing_signature(&body) {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    "Function call is missing a thought_signature in functionCall parts.",
                );
            }
            let text = format!("fake: {}", last_user_text(&body));
            if method == "streamGenerateContent" {
                return stream(model, &text);
            }
            let res = match model {
                "tools" => answer(model, json!([function_call()]), Some("STOP"), 7),
                "signed-tools" => answer(model, json!(signed_parts()), Some("STOP"), 7),
                "blocked" => answer(model, json!([{"text": "I can"}]), Some("SAFETY"), 7),
                _ => answer(model, json!([{"text": text}]), Some("STOP"), 7),
            };
            axum::Json(res).into_response()
        }
        _ => error(404, "NOT_FOUND", "no such method"),
    }
}

fn frame(data: &Value) -> String {
    format!("data: {data}\r\n\r\n")
}

fn stream(model: &str, text: &str) -> Response {
    let mut frames = Vec::new();
    match model {
        "tools" => frames.push(frame(&answer(model, json!([function_call()]), Some("STOP"), 7))),
        "signed-tools" => {
            let [thought, call] = signed_parts();
            frames.push(frame(&answer(model, json!([thought]), None, 0)));
            frames.push(frame(&answer(model, json!([call]), Some("STOP"), 7)));
        }
        _ => {
            let mut rest = text;
            let mut sent = 0;
            while !rest.is_empty() {
                let cut = rest.char_indices().nth(4).map_or(rest.len(), |(i, _)| i);
                sent += 1;
                frames.push(frame(&answer(model, json!([{"text": &rest[..cut]}]), None, sent)));
                rest = &rest[cut..];
                if model == "error-event" {
                    frames.push(frame(&json!({"error": {"code": 503,
                        "message": "The model is overloaded.", "status": "UNAVAILABLE"}})));
                    return sse_paced(frames);
                }
            }
            let finish = if model == "blocked" { "SAFETY" } else { "STOP" };
            frames.push(frame(&answer(model, json!([{"text": ""}]), Some(finish), 7)));
        }
    }
    sse_paced(frames)
}
