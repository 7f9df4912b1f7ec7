//! Google's Gemini API (AI Studio `v1beta`): `models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` (`data:`-only frames, no `[DONE]`, function calls arrive whole in
//! one chunk, `usageMetadata` on every chunk), key in `x-goog-api-key`, `{"error": {"code", "message",
//! "status"}}` bodies. Calls carry no ids (the gateway numbers them `call_<n>`), results name their
//! function. Usage: `promptTokenCount` includes `cachedContentTokenCount`; `thoughtsTokenCount` is
//! separate from `candidatesTokenCount`.

use std::sync::Arc;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{json, Value};

use super::{
    data_frame, pieces, shape, Answer, Finish, Part, Reasoning, Role, Route, Seen, SpecCheck, Tool, Wire,
    KEY_ENV,
};

pub struct GeminiWire;

pub fn gemini() -> Arc<dyn Wire> {
    Arc::new(GeminiWire)
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Length => "MAX_TOKENS",
        Finish::ContentFilter => "SAFETY",
        Finish::Stop | Finish::StopSequence(_) | Finish::ToolCalls => "STOP",
    }
}

fn usage(a: &Answer, candidates: u64) -> Value {
    let u = a.usage;
    let mut v = json!({"promptTokenCount": u.prompt, "candidatesTokenCount": candidates,
        "totalTokenCount": u.prompt + candidates + u.reasoning,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": u.prompt}]});
    if u.cached > 0 {
        v["cachedContentTokenCount"] = json!(u.cached);
    }
    if u.reasoning > 0 {
        v["thoughtsTokenCount"] = json!(u.reasoning);
    }
    v
}

fn chunk(model: &str, parts: Vec<Value>, finish: Option<&str>, usage: Value) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
        "responseId": "confGeminiResponse"})
}

/// The function calls; with reasoning, the first carries its `thoughtSignature` (as Gemini signs).
fn call_parts(a: &Answer) -> Vec<Value> {
    let mut parts: Vec<Value> = a
        .tool_calls
        .iter()
        .map(|c| json!({"functionCall": {"name": c.name, "args": c.args}}))
        .collect();
    if let (Some(r), Some(first)) = (a.reasoning, parts.first_mut()) {
        first["thoughtSignature"] = json!(r.signature);
    }
    parts
}

/// The thought summary part (unsigned: the signature is on the function call).
fn thought_parts(a: &Answer) -> Vec<Value> {
    a.reasoning
        .map(|r| json!({"text": r.text, "thought": true}))
        .into_iter()
        .collect()
}

impl Wire for GeminiWire {
    fn kind(&self) -> &'static str {
        "gemini"
    }

    fn provider_toml(&self, root: &str) -> String {
        format!("base_url = \"{root}/v1beta\"\napi_key_env = \"{KEY_ENV}\"\n")
    }

    fn route(&self, path: &str, _body: &Value) -> Option<Route> {
        let rest = path.strip_prefix("/v1beta/models/")?;
        let (model, method) = rest.split_once(':')?;
        let stream = match method {
            "generateContent" => false,
            "streamGenerateContent?alt=sse" => true,
            _ => return None,
        };
        Some(Route {
            model: model.to_string(),
            stream,
        })
    }

    fn credential(&self, headers: &HeaderMap) -> Result<String, String> {
        headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| "Method doesn't allow unregistered callers".into())
    }

    fn read_request(&self, body: &Value) -> Seen {
        let mut seen = Seen::default();
        for p in body["systemInstruction"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(t) = p["text"].as_str() {
                seen.add_system(t);
            }
        }
        for c in body["contents"].as_array().into_iter().flatten() {
            let role = match c["role"].as_str() {
                Some("model") => Role::Assistant,
                _ => Role::User,
            };
            for p in c["parts"].as_array().into_iter().flatten() {
                if let Some(sig) = p["thoughtSignature"].as_str() {
                    let text =
                        (p["thought"] == true).then(|| p["text"].as_str().unwrap_or_default().to_string());
                    let thought = text.is_some();
                    seen.push(
                        role,
                        Part::Thinking {
                            text,
                            signature: sig.to_string(),
                        },
                    );
                    if thought {
                        continue;
                    }
                }
                let part = if let Some(t) = p["text"].as_str() {
                    Part::Text(t.to_string())
                } else if p["inlineData"].is_object() {
                    Part::Image {
                        mime: p["inlineData"]["mimeType"].as_str().unwrap_or_default().into(),
                        data: p["inlineData"]["data"].as_str().unwrap_or_default().into(),
                    }
                } else if p["fileData"].is_object() {
                    Part::Image {
                        mime: "url".into(),
                        data: p["fileData"]["fileUri"].as_str().unwrap_or_default().into(),
                    }
                } else if p["functionCall"].is_object() {
                    Part::ToolCall {
                        id: p["functionCall"]["id"].as_str().map(str::to_string),
                        name: p["functionCall"]["name"].as_str().unwrap_or_default().into(),
                        args: p["functionCall"]["args"].clone(),
                    }
                } else if p["functionResponse"].is_object() {
                    let r = &p["functionResponse"];
                    // `{"content": text}` wraps a result that was not a JSON object.
                    let content = match r["response"].as_object() {
                        Some(o) if o.len() == 1 && o.contains_key("content") => {
                            super::result_content(o["content"].as_str().unwrap_or_default())
                        }
                        _ => r["response"].clone(),
                    };
                    Part::ToolResult {
                        id: r["id"].as_str().map(str::to_string),
                        name: r["name"].as_str().map(str::to_string),
                        content,
                    }
                } else {
                    continue;
                };
                seen.push(role, part);
            }
        }
        seen.tools = body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["functionDeclarations"].as_array().cloned().unwrap_or_default())
            .map(|d| Tool {
                name: d["name"].as_str().unwrap_or_default().to_string(),
                params: shape(&d["parameters"]),
            })
            .collect();
        let calling = &body["toolConfig"]["functionCallingConfig"];
        let allowed: Vec<&str> = calling["allowedFunctionNames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        seen.tool_choice = match (calling["mode"].as_str(), allowed.as_slice()) {
            (Some("ANY"), [one]) => Some(format!("function:{one}")),
            (Some("ANY"), _) => Some("required".to_string()),
            (Some(mode), _) => Some(mode.to_lowercase()),
            (None, _) => (!seen.tools.is_empty()).then(|| "auto".to_string()),
        };
        let config = &body["generationConfig"];
        seen.stop = config["stopSequences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        seen.max_tokens = config["maxOutputTokens"].as_u64();
        let schema = if config["responseSchema"].is_null() {
            &config["responseJsonSchema"]
        } else {
            &config["responseSchema"]
        };
        seen.response_schema = (!schema.is_null()).then(|| shape(schema));
        seen
    }

    fn answer(&self, model: &str, a: &Answer) -> Value {
        let mut parts = thought_parts(a);
        parts.extend(a.text.map(|t| json!({"text": t})));
        parts.extend(call_parts(a));
        let candidates = a.usage.completion - a.usage.reasoning;
        chunk(model, parts, Some(finish_reason(a.finish)), usage(a, candidates))
    }

    fn stream(&self, model: &str, a: &Answer, _request: &Value) -> Vec<Bytes> {
        let running = json!({"promptTokenCount": a.usage.prompt, "totalTokenCount": a.usage.prompt});
        let mut chunks: Vec<Vec<Value>> = thought_parts(a).into_iter().map(|p| vec![p]).collect();
        chunks.extend(
            pieces(a.text.unwrap_or_default(), 6)
                .into_iter()
                .map(|p| vec![json!({"text": p})]),
        );
        if !a.tool_calls.is_empty() {
            chunks.push(call_parts(a));
        }
        let n = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, parts)| {
                let v = if i + 1 == n {
                    let candidates = a.usage.completion - a.usage.reasoning;
                    chunk(model, parts, Some(finish_reason(a.finish)), usage(a, candidates))
                } else {
                    chunk(model, parts, None, running.clone())
                };
                data_frame(&v)
            })
            .collect()
    }

    fn stream_error_event(&self, model: &str, text: &str, message: &str) -> Vec<Bytes> {
        let running = json!({"promptTokenCount": 10, "totalTokenCount": 10});
        vec![
            data_frame(&chunk(model, vec![json!({"text": text})], None, running)),
            data_frame(&json!({"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}})),
        ]
    }

    fn error(&self, status: u16, message: &str) -> Value {
        let code = match status {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            500 => "INTERNAL",
            _ => "UNAVAILABLE",
        };
        json!({"error": {"code": status, "message": message, "status": code}})
    }

    fn tool_call_id(&self, index: usize, _id: &str) -> String {
        format!("call_{index}")
    }

    fn tool_ids_upstream(&self) -> bool {
        false
    }

    fn tool_result_names(&self) -> bool {
        true
    }

    /// Gemini signs the function call, not the thought: the signature goes back on its part (read as
    /// a [`Part::Thinking`] without text just before it); the unsigned thought is not sent back.
    fn replayed_reasoning(&self, r: &Reasoning) -> Vec<Part> {
        vec![Part::Thinking {
            text: None,
            signature: r.signature.to_string(),
        }]
    }

    fn spec(&self) -> Option<SpecCheck> {
        Some(SpecCheck {
            script: "validate_gemini.py",
            specs: &["gemini/gemini-native.openapi.json", "gemini/openapi.json"],
            suffix: "generateContent",
        })
    }
}
