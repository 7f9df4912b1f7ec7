//! The OpenAI wire format, shared by OpenAI itself and every OpenAI-compatible provider (Mistral, Groq,
//! Together, Fireworks, DeepSeek, xAI, Perplexity, OpenRouter, Ollama, vLLM, ...). Requests pass through
//! field for field; only `model` is replaced and `stream_options.include_usage` is asked for, so the
//! gateway always learns the usage of a stream.

mod answer;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};
use serde::{de::IgnoredAny, ser::SerializeMap, Serializer as _};
use serde_json::{Map, Value};
use tollgate_schemas::TokenUsage;

use crate::{
    stream::SseEvent, Adapter, AdapterError, AuthStyle, Operation, Parsed, StreamTranslator, Target,
    UpstreamError, UpstreamRequest,
};

#[derive(Debug, Clone, Copy)]
pub struct OpenAiCompat {
    pub auth: AuthStyle,
    /// Whether to add `stream_options.include_usage` to streaming requests.
    pub stream_options: bool,
}

/// Sets the JSON content type and the credential in the provider's style.
pub(crate) fn base_headers(auth: AuthStyle, api_key: Option<&str>) -> Result<HeaderMap, AdapterError> {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(key) = api_key {
        let (name, value) = match auth {
            AuthStyle::Bearer | AuthStyle::GoogleOAuth => {
                let mut bearer = Vec::with_capacity(7 + key.len());
                bearer.extend_from_slice(b"Bearer ");
                bearer.extend_from_slice(key.as_bytes());
                (
                    header::AUTHORIZATION,
                    HeaderValue::from_maybe_shared(Bytes::from(bearer)),
                )
            }
            AuthStyle::ApiKeyHeader => (
                header::HeaderName::from_static("api-key"),
                HeaderValue::from_str(key),
            ),
            AuthStyle::XApiKey => (
                header::HeaderName::from_static("x-api-key"),
                HeaderValue::from_str(key),
            ),
            AuthStyle::XGoogApiKey => (
                header::HeaderName::from_static("x-goog-api-key"),
                HeaderValue::from_str(key),
            ),
            AuthStyle::AwsSigV4 => {
                return Err(AdapterError::Config(
                    "AWS SigV4 providers sign their requests in their own adapter".into(),
                ))
            }
        };
        let mut value =
            value.map_err(|_| AdapterError::Config("provider key is not a valid header value".into()))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Fields Tollgate adds to assistant messages and tool calls it translated from other providers
/// (signed reasoning, in LiteLLM's convention: `docs/reasoning.md`). Clients send them back with the
/// conversation; OpenAI and the compatible APIs validate messages and would refuse them.
const ANSWER_EXTENSIONS: [&str; 2] = ["thinking_blocks", "provider_specific_fields"];

fn strip_answer_extensions(body: &mut Map<String, Value>) {
    let Some(Value::Array(messages)) = body.get_mut("messages") else {
        return;
    };
    for message in messages.iter_mut().filter_map(Value::as_object_mut) {
        remove_extensions(message);
        // Found by a scan: messages have a handful of fields, and most have no tool calls.
        let calls = message
            .iter_mut()
            .find(|(k, _)| *k == "tool_calls")
            .map(|(_, v)| v);
        if let Some(Value::Array(calls)) = calls {
            for call in calls.iter_mut().filter_map(Value::as_object_mut) {
                remove_extensions(call);
            }
        }
    }
}

/// Removes [`ANSWER_EXTENSIONS`] from one object, looking them up (hashing) only when a scan of its
/// few keys finds one: most messages have none.
fn remove_extensions(object: &mut Map<String, Value>) {
    if object.keys().any(|k| ANSWER_EXTENSIONS.contains(&k.as_str())) {
        for field in ANSWER_EXTENSIONS {
            object.shift_remove(field);
        }
    }
}

/// Puts the target model first, drops Tollgate's own answer extensions from the conversation and,
/// for streams, asks for the final usage chunk.
pub(crate) fn prepare_body(
    mut body: Map<String, Value>,
    model: Option<&str>,
    stream: bool,
    stream_options: bool,
) -> Result<Bytes, AdapterError> {
    strip_answer_extensions(&mut body);
    if stream && stream_options {
        let opts = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(opts) = opts {
            opts.insert("include_usage".into(), Value::Bool(true));
        } else {
            *opts = serde_json::json!({ "include_usage": true });
        }
    }
    // Written straight from the client's map, the model first: the bytes of a new map with `model`
    // inserted before the client's fields, without building (and hashing) that map.
    let invalid = |e: serde_json::Error| AdapterError::InvalidRequest {
        message: e.to_string(),
        param: None,
    };
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::new(&mut out);
    let mut map = ser
        .serialize_map(Some(body.len() + usize::from(model.is_some())))
        .map_err(invalid)?;
    if let Some(model) = model {
        map.serialize_entry("model", model).map_err(invalid)?;
    }
    for (key, value) in &body {
        // The target's model replaces any the client's map still holds (the gateway removes it).
        if model.is_some() && key == "model" {
            continue;
        }
        map.serialize_entry(key, value).map_err(invalid)?;
    }
    map.end().map_err(invalid)?;
    Ok(Bytes::from(out))
}

/// `base/path`, whether or not `base` ends with a slash.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let mut url = String::with_capacity(base.len() + 1 + path.len());
    url.push_str(base);
    url.push('/');
    url.push_str(path);
    url
}

impl Adapter for OpenAiCompat {
    fn build_request(
        &self,
        op: Operation,
        body: Map<String, Value>,
        stream: bool,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        Ok(UpstreamRequest {
            url: join_url(target.base_url, op.path()),
            headers: base_headers(self.auth, target.api_key)?,
            body: prepare_body(body, Some(target.model), stream, self.stream_options)?,
        })
    }

    fn parse_response(&self, op: Operation, body: Bytes) -> Result<Parsed, AdapterError> {
        parse_openai_answer(op, body)
    }

    fn stream_translator(&self, _op: Operation, client_wants_usage: bool) -> Box<dyn StreamTranslator> {
        Box::new(OpenAiStream::new(client_wants_usage))
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamError {
        parse_openai_error(status, body)
    }
}

/// [`parse_openai_response`] for a provider's answer to `op`: JSON that is not such an answer (no
/// `choices` array for chat and completions, no `data` array for embeddings) is a bad upstream body,
/// not a 200 to pass on. One pass over the body, which is passed through untouched.
pub fn parse_openai_answer(op: Operation, body: Bytes) -> Result<Parsed, AdapterError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        choices: Option<Vec<IgnoredAny>>,
        data: Option<Vec<IgnoredAny>>,
        model: Option<String>,
        #[serde(default, deserialize_with = "answer::loose_usage")]
        usage: Option<TokenUsage>,
    }
    let answer: Answer =
        serde_json::from_slice(&body).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    let (has, field) = match op {
        Operation::Chat | Operation::Completions => (answer.choices.is_some(), "choices"),
        Operation::Embeddings => (answer.data.is_some(), "data"),
    };
    if !has {
        return Err(AdapterError::BadUpstreamBody(format!(
            "the {} answer has no `{field}` array",
            op.as_str()
        )));
    }
    Ok(Parsed {
        usage: answer.usage,
        model: answer.model,
        body,
    })
}

/// Reads usage and model from an OpenAI-shaped answer, passing the body through untouched.
pub fn parse_openai_response(body: Bytes) -> Result<Parsed, AdapterError> {
    #[derive(serde::Deserialize)]
    struct Head {
        model: Option<String>,
        #[serde(default, deserialize_with = "answer::loose_usage")]
        usage: Option<TokenUsage>,
    }
    let head: Head =
        serde_json::from_slice(&body).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    Ok(Parsed {
        usage: head.usage,
        model: head.model,
        body,
    })
}

/// Whether a status means "try again, here or elsewhere".
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 409 || status == 429 || status >= 500
}

/// Reads OpenAI's error shape; falls back to a generic message for bodies in any other shape.
pub fn parse_openai_error(status: u16, body: &[u8]) -> UpstreamError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = v.get("error").unwrap_or(&v);
    let text = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_string);
    let message = text("message")
        .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_string))
        .or_else(|| err.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("upstream answered HTTP {status}"));
    UpstreamError {
        status,
        message,
        kind: text("type").or_else(|| text("code")),
        param: text("param"),
        retryable: retryable_status(status),
    }
}

/// Passes OpenAI chunks through unchanged, noting usage and model, and dropping the usage-only chunk
/// when the client did not ask for it.
pub struct OpenAiStream {
    client_wants_usage: bool,
    usage: Option<TokenUsage>,
    model: Option<String>,
    done: bool,
    /// A choice carried a `finish_reason`: the answer is whole even if `[DONE]` never comes.
    saw_finish: bool,
}

impl OpenAiStream {
    pub fn new(client_wants_usage: bool) -> Self {
        OpenAiStream {
            client_wants_usage,
            usage: None,
            model: None,
            done: false,
            saw_finish: false,
        }
    }
}

/// Finds `"key":` in a JSON text cheaply, so most chunks are forwarded without a full parse.
fn mentions(data: &[u8], needle: &[u8]) -> bool {
    data.windows(needle.len()).any(|w| w == needle)
}

impl StreamTranslator for OpenAiStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        let data = &event.data;
        if data.as_ref() == b"[DONE]" {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let needs_model = self.model.is_none();
        // Most chunks say `"finish_reason":null`; only the others are parsed to look for a finish.
        let may_finish = mentions(data, b"\"finish_reason\"") && !mentions(data, b"\"finish_reason\":null");
        if needs_model || may_finish || mentions(data, b"\"usage\"") || mentions(data, b"\"error\"") {
            let v: Value =
                serde_json::from_slice(data).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
            if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
                let message = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream stream error");
                return Err(AdapterError::StreamError(message.to_string()));
            }
            let finishes = v.get("choices").and_then(Value::as_array).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.get("finish_reason").is_some_and(|f| !f.is_null()))
            });
            self.saw_finish |= finishes;
            if needs_model {
                // Azure opens its streams with a `prompt_filter_results` chunk whose model is "".
                self.model = v
                    .get("model")
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string);
            }
            if let Some(usage) = v.get("usage").and_then(TokenUsage::from_openai) {
                self.usage = Some(usage);
                let usage_only = v
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_none_or(|c| c.is_empty());
                if usage_only && !self.client_wants_usage {
                    return Ok(());
                }
            }
        } else {
            // Forwarded without a full parse, but never as invalid JSON: a broken chunk would make the
            // client's parser fail with no error event to explain it. Validating is a single scan.
            serde_json::from_slice::<serde::de::IgnoredAny>(data)
                .map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
        }
        out.push(data.clone());
        Ok(())
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn finished(&self) -> bool {
        self.done
    }

    /// `[DONE]`, or (from servers that omit it) a finish reason.
    fn complete_at_eof(&self) -> bool {
        self.done || self.saw_finish
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target<'static> {
        Target {
            base_url: "http://up/v1/",
            model: "real-model",
            api_key: Some("sk-provider"),
            api_version: None,
        }
    }

    #[test]
    fn replaces_model_and_keeps_unknown_fields() {
        let body = json!({"messages": [], "tools": [{"type": "function"}], "x_custom": 1});
        let a = OpenAiCompat {
            auth: AuthStyle::Bearer,
            stream_options: true,
        };
        let req = a
            .build_request(
                Operation::Chat,
                body.as_object().unwrap().clone(),
                false,
                &target(),
            )
            .unwrap();
        assert_eq!(req.url, "http://up/v1/chat/completions");
        assert_eq!(req.headers["authorization"], "Bearer sk-provider");
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(sent["model"], "real-model");
        assert_eq!(sent["x_custom"], 1);
        assert_eq!(sent["tools"][0]["type"], "function");
        assert!(sent.get("stream_options").is_none());
    }

    #[test]
    fn body_is_the_model_then_the_clients_fields_in_order() {
        let body = json!({"messages": [{"role": "user", "content": "hé \"x\""}], "n": 1, "a": {}});
        let sent = prepare_body(body.as_object().unwrap().clone(), Some("m"), false, true).unwrap();
        let expected = r#"{"model":"m","messages":[{"role":"user","content":"hé \"x\""}],"n":1,"a":{}}"#;
        assert_eq!(std::str::from_utf8(&sent).unwrap(), expected);
        let unnamed = prepare_body(Map::new(), None, false, true).unwrap();
        assert_eq!(&unnamed[..], b"{}");
    }

    #[test]
    fn reasoning_extensions_from_other_providers_are_not_sent_back() {
        let body = json!({"messages": [
            {"role": "user", "content": "hi", "name": "u"},
            {"role": "assistant", "content": null, "reasoning_content": "r",
             "thinking_blocks": [{"type": "thinking", "thinking": "r", "signature": "sig"}],
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"},
                             "provider_specific_fields": {"thought_signature": "ts"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}]});
        let a = OpenAiCompat {
            auth: AuthStyle::Bearer,
            stream_options: true,
        };
        let req = a
            .build_request(
                Operation::Chat,
                body.as_object().unwrap().clone(),
                false,
                &target(),
            )
            .unwrap();
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        let mut expected = body["messages"].clone();
        expected[1].as_object_mut().unwrap().remove("thinking_blocks");
        expected[1]["tool_calls"][0]
            .as_object_mut()
            .unwrap()
            .remove("provider_specific_fields");
        assert_eq!(sent["messages"], expected);
        assert_eq!(sent["messages"][1]["reasoning_content"], "r");
    }

    #[test]
    fn streams_ask_for_usage_unless_the_provider_rejects_it() {
        let body = json!({"messages": [], "stream": true, "stream_options": {"include_usage": false}});
        let map = body.as_object().unwrap().clone();
        let a = OpenAiCompat {
            auth: AuthStyle::Bearer,
            stream_options: true,
        };
        let req = a
            .build_request(Operation::Chat, map.clone(), true, &target())
            .unwrap();
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        let mistral = OpenAiCompat {
            auth: AuthStyle::Bearer,
            stream_options: false,
        };
        let req = mistral
            .build_request(Operation::Chat, map, true, &target())
            .unwrap();
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], false);
    }

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: Bytes::from(data.to_string()),
        }
    }

    #[test]
    fn strips_usage_only_chunk_unless_asked() {
        let usage_chunk =
            r#"{"id":"1","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        for wants in [false, true] {
            let mut s = OpenAiStream::new(wants);
            let mut out = Vec::new();
            s.on_event(
                &ev(r#"{"id":"1","model":"m","choices":[{"delta":{"content":"hi"}}]}"#),
                &mut out,
            )
            .unwrap();
            s.on_event(&ev(usage_chunk), &mut out).unwrap();
            s.on_event(&ev("[DONE]"), &mut out).unwrap();
            assert_eq!(out.len(), if wants { 2 } else { 1 });
            assert_eq!(s.usage().unwrap().output, 2);
            assert_eq!(s.model(), Some("m"));
            assert!(s.finished());
        }
    }

    #[test]
    fn stream_model_skips_azure_prompt_filter_chunk() {
        let mut s = OpenAiStream::new(false);
        let mut out = Vec::new();
        let filter =
            r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}"#;
        s.on_event(&ev(filter), &mut out).unwrap();
        assert_eq!(s.model(), None);
        s.on_event(
            &ev(r#"{"id":"1","model":"gpt-4o","choices":[{"delta":{"content":"hi"}}]}"#),
            &mut out,
        )
        .unwrap();
        assert_eq!(s.model(), Some("gpt-4o"));
        assert_eq!(out.len(), 2, "the filter chunk still reaches the client");
    }

    #[test]
    fn a_stream_cut_before_its_finish_is_incomplete() {
        let mut s = OpenAiStream::new(false);
        let mut out = Vec::new();
        let text = r#"{"id":"1","model":"m","choices":[{"delta":{"content":"hi"},"finish_reason":null}]}"#;
        s.on_event(&ev(text), &mut out).unwrap();
        assert!(!s.complete_at_eof(), "no finish_reason, no [DONE]");
        let finish = r#"{"id":"1","model":"m","choices":[{"delta":{},"finish_reason": "stop"}]}"#;
        s.on_event(&ev(finish), &mut out).unwrap();
        assert!(
            s.complete_at_eof() && !s.finished(),
            "whole, though [DONE] may still come"
        );
        s.on_event(&ev("[DONE]"), &mut out).unwrap();
        assert!(s.complete_at_eof() && s.finished());
    }

    #[test]
    fn broken_chunk_after_the_first_is_an_error() {
        let mut s = OpenAiStream::new(false);
        let mut out = Vec::new();
        s.on_event(
            &ev(r#"{"id":"1","model":"m","choices":[{"delta":{"content":"hi"}}]}"#),
            &mut out,
        )
        .unwrap();
        let err = s.on_event(&ev(r#"{"id":"1","choices":[{"delta""#), &mut out);
        assert!(matches!(err, Err(AdapterError::BadUpstreamBody(_))), "{err:?}");
        assert_eq!(out.len(), 1, "the broken chunk is not forwarded");
    }

    #[test]
    fn stream_error_event_is_an_error() {
        let mut s = OpenAiStream::new(false);
        let err = s.on_event(&ev(r#"{"error":{"message":"overloaded"}}"#), &mut Vec::new());
        assert!(matches!(err, Err(AdapterError::StreamError(m)) if m == "overloaded"));
    }

    #[test]
    fn json_that_is_no_answer_is_a_bad_upstream_body() {
        let bodies = [&br#"{"status":"ok","data":[1]}"#[..], br#"{"choices":{}}"#, b"[]"];
        for body in bodies {
            let err = parse_openai_answer(Operation::Chat, Bytes::from_static(body)).unwrap_err();
            assert!(matches!(err, AdapterError::BadUpstreamBody(_)), "{err:?}");
        }
        let embeddings = Bytes::from_static(br#"{"object":"list","data":[]}"#);
        assert!(parse_openai_answer(Operation::Embeddings, embeddings.clone()).is_ok());
        assert!(parse_openai_answer(Operation::Chat, embeddings).is_err());
    }

    #[test]
    fn classifies_errors() {
        let e = parse_openai_error(429, br#"{"error":{"message":"slow down","type":"rate_limit"}}"#);
        assert!(e.retryable);
        assert_eq!(e.message, "slow down");
        let e = parse_openai_error(400, b"not json");
        assert!(!e.retryable);
        assert_eq!(e.message, "upstream answered HTTP 400");
    }
}
