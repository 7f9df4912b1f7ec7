//! AWS Bedrock's Converse API (`POST /model/{modelId}/converse`, `/converse-stream`, SigV4): content
//! blocks as one-member unions (`text`, `image`, `toolUse`, `toolResult`), `toolConfig`, binary
//! `application/vnd.amazon.eventstream` streams (`messageStart`, `contentBlockStart`/`Delta`/`Stop`,
//! `messageStop`, `metadata`; exceptions as `:message-type: exception` frames), `{"message"}` error
//! bodies. Usage: `inputTokens` excludes cache reads (`cacheReadInputTokens`); there is no reasoning
//! token count. The credential the suite checks is the SigV4 access key id (the signature itself is
//! verified by `fake_bedrock`, whose end-to-end tests recompute it).

use std::sync::Arc;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{json, Value};

use super::{
    image_part, pieces, result_content, shape, Answer, Case, Finish, Part, Role, Route, Seen, SpecCheck,
    Tool, Unsupported, Wire, KEY, KEY_ENV,
};
use crate::fake_bedrock::{event, frame};

pub struct BedrockWire;

pub fn bedrock() -> Arc<dyn Wire> {
    Arc::new(BedrockWire)
}

const SECRET_ENV: &str = "UP_AWS_SECRET";
const SECRET: &str = "conformance/Secret+Access+Key+0123456789ab";
const REGION: &str = "us-east-1";

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::StopSequence(_) => "stop_sequence",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
        Finish::ContentFilter => "content_filtered",
    }
}

fn usage(a: &Answer) -> Value {
    let u = a.usage;
    json!({"inputTokens": u.prompt - u.cached, "outputTokens": u.completion,
        "totalTokens": u.prompt + u.completion, "cacheReadInputTokens": u.cached, "cacheWriteInputTokens": 0})
}

fn texts(blocks: &Value) -> Vec<String> {
    blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"].as_str().map(str::to_string))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Wire for BedrockWire {
    fn kind(&self) -> &'static str {
        "bedrock"
    }

    fn provider_toml(&self, root: &str) -> String {
        format!(
            "base_url = \"{root}\"\nregion = \"{REGION}\"\naws_access_key_id_env = \"{KEY_ENV}\"\n\
             aws_secret_access_key_env = \"{SECRET_ENV}\"\n"
        )
    }

    fn env(&self) -> Vec<(&'static str, &'static str)> {
        vec![(KEY_ENV, KEY), (SECRET_ENV, SECRET)]
    }

    fn route(&self, path: &str, _body: &Value) -> Option<Route> {
        let rest = path.strip_prefix("/model/")?;
        let (model, op) = rest.rsplit_once('/')?;
        let stream = match op {
            "converse" => false,
            "converse-stream" => true,
            _ => return None,
        };
        Some(Route {
            model: percent_decode(model),
            stream,
        })
    }

    fn credential(&self, headers: &HeaderMap) -> Result<String, String> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or("Missing Authentication Token")?;
        let rest = auth
            .strip_prefix("AWS4-HMAC-SHA256 Credential=")
            .ok_or("Authorization header requires AWS4-HMAC-SHA256")?;
        let scope = rest.split(',').next().unwrap_or_default();
        let parts: Vec<&str> = scope.split('/').collect();
        let [key_id, date, region, "bedrock", "aws4_request"] = parts[..] else {
            return Err(format!("credential scope `{scope}` is not for bedrock"));
        };
        let amz_date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if region != REGION || !amz_date.starts_with(date) || date.len() != 8 {
            return Err(format!(
                "credential scope `{scope}` does not match x-amz-date/region"
            ));
        }
        if !auth.contains("SignedHeaders=") || !auth.contains("Signature=") {
            return Err("unsigned request".into());
        }
        Ok(key_id.to_string())
    }

    fn read_request(&self, body: &Value) -> Seen {
        let mut seen = Seen::default();
        for t in texts(&body["system"]) {
            seen.add_system(&t);
        }
        for m in body["messages"].as_array().into_iter().flatten() {
            let role = match m["role"].as_str() {
                Some("assistant") => Role::Assistant,
                _ => Role::User,
            };
            for b in m["content"].as_array().into_iter().flatten() {
                let part = if let Some(t) = b["text"].as_str() {
                    Part::Text(t.to_string())
                } else if let Some(r) = b.get("reasoningContent") {
                    Part::Thinking {
                        text: r["reasoningText"]["text"].as_str().map(str::to_string),
                        signature: r["reasoningText"]["signature"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    }
                } else if let Some(img) = b.get("image") {
                    let mime = format!("image/{}", img["format"].as_str().unwrap_or_default());
                    image_part(&format!(
                        "data:{mime};base64,{}",
                        img["source"]["bytes"].as_str().unwrap_or_default()
                    ))
                } else if let Some(u) = b.get("toolUse") {
                    Part::ToolCall {
                        id: u["toolUseId"].as_str().map(str::to_string),
                        name: u["name"].as_str().unwrap_or_default().to_string(),
                        args: u["input"].clone(),
                    }
                } else if let Some(r) = b.get("toolResult") {
                    Part::ToolResult {
                        id: r["toolUseId"].as_str().map(str::to_string),
                        name: None,
                        content: result_content(&texts(&r["content"]).join("")),
                    }
                } else {
                    continue;
                };
                seen.push(role, part);
            }
        }
        let config = &body["toolConfig"];
        seen.tools = config["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| Tool {
                name: t["toolSpec"]["name"].as_str().unwrap_or_default().to_string(),
                params: shape(&t["toolSpec"]["inputSchema"]["json"]),
            })
            .collect();
        let choice = &config["toolChoice"];
        seen.tool_choice = if choice.get("any").is_some() {
            Some("required".to_string())
        } else if let Some(name) = choice["tool"]["name"].as_str() {
            Some(format!("function:{name}"))
        } else {
            (!seen.tools.is_empty()).then(|| "auto".to_string())
        };
        let inference = &body["inferenceConfig"];
        seen.stop = inference["stopSequences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        seen.max_tokens = inference["maxTokens"].as_u64();
        // Bedrock takes the schema as a string.
        seen.response_schema = body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]
            .as_str()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .map(|s| shape(&s));
        seen
    }

    fn answer(&self, _model: &str, a: &Answer) -> Value {
        let mut content: Vec<Value> = a
            .reasoning
            .map(|r| json!({"reasoningContent": {"reasoningText": {"text": r.text, "signature": r.signature}}}))
            .into_iter()
            .collect();
        content.extend(a.text.map(|t| json!({ "text": t })));
        content.extend(
            a.tool_calls
                .iter()
                .map(|c| json!({"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.args}})),
        );
        json!({"output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason(a.finish), "usage": usage(a), "metrics": {"latencyMs": 12}})
    }

    fn stream(&self, _model: &str, a: &Answer, _request: &Value) -> Vec<Bytes> {
        let mut frames = vec![event("messageStart", json!({"role": "assistant"}))];
        let mut index = 0;
        if let Some(r) = a.reasoning {
            for p in pieces(r.text, 9) {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"text": p}}}),
                ));
            }
            frames.push(event(
                "contentBlockDelta",
                json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"signature": r.signature}}}),
            ));
            frames.push(event("contentBlockStop", json!({ "contentBlockIndex": index })));
            index += 1;
        }
        if let Some(t) = a.text {
            for p in pieces(t, 5) {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": index, "delta": {"text": p}}),
                ));
            }
            frames.push(event("contentBlockStop", json!({ "contentBlockIndex": index })));
            index += 1;
        }
        for c in &a.tool_calls {
            frames.push(event(
                "contentBlockStart",
                json!({"contentBlockIndex": index,
                    "start": {"toolUse": {"toolUseId": c.id, "name": c.name}}}),
            ));
            for p in pieces(&c.args.to_string(), 7) {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": p}}}),
                ));
            }
            frames.push(event("contentBlockStop", json!({ "contentBlockIndex": index })));
            index += 1;
        }
        frames.push(event("messageStop", json!({"stopReason": stop_reason(a.finish)})));
        frames.push(event(
            "metadata",
            json!({"usage": usage(a), "metrics": {"latencyMs": 12}}),
        ));
        // Every other frame split in two, so the gateway reassembles frames across reads.
        let mut chunks = Vec::new();
        for (i, f) in frames.into_iter().enumerate() {
            if i % 2 == 1 {
                let (x, y) = f.split_at(f.len() / 2);
                chunks.push(Bytes::copy_from_slice(x));
                chunks.push(Bytes::copy_from_slice(y));
            } else {
                chunks.push(Bytes::from(f));
            }
        }
        chunks
    }

    fn stream_content_type(&self) -> &'static str {
        "application/vnd.amazon.eventstream"
    }

    fn error(&self, _status: u16, message: &str) -> Value {
        // The exception's name travels in the `x-amzn-ErrorType` header; the body is its members.
        json!({ "message": message })
    }

    fn stream_error_event(&self, _model: &str, text: &str, message: &str) -> Vec<Bytes> {
        vec![
            Bytes::from(event("messageStart", json!({"role": "assistant"}))),
            Bytes::from(event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": text}}),
            )),
            Bytes::from(frame(
                &[
                    (":exception-type", "modelStreamErrorException"),
                    (":content-type", "application/json"),
                    (":message-type", "exception"),
                ],
                json!({"message": message, "originalStatusCode": 529})
                    .to_string()
                    .as_bytes(),
            )),
        ]
    }

    fn malformed_stream(&self) -> Vec<Bytes> {
        // A well-framed event whose payload is not JSON.
        vec![Bytes::from(frame(
            &[
                (":event-type", "contentBlockDelta"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            br#"{"contentBlockIndex": 0, "delta": {"te"#,
        ))]
    }

    fn unsupported(&self, case: Case) -> Option<Unsupported> {
        match case {
            Case::UsageReasoning | Case::StreamReasoning => Some(Unsupported::Unknowable(
                "Converse's TokenUsage has no reasoning token count",
            )),
            Case::ImageUrl => Some(Unsupported::Refused(
                "Converse takes images as bytes only; it cannot fetch a URL",
            )),
            _ => None,
        }
    }

    fn spec(&self) -> Option<SpecCheck> {
        // Stream bodies are checked as `ConverseRequest` too: `ConverseStreamRequest` differs only in
        // the guardrail streaming options, which Tollgate never sends (validate_bedrock.py checks
        // both operations in tests/tests/bedrock.rs).
        Some(SpecCheck {
            script: "validate_bedrock.py",
            specs: &["bedrock/bedrock-runtime.openapi.json"],
            suffix: "converse",
        })
    }
}
