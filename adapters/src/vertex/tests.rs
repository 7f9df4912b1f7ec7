//! Vertex AI: URLs per publisher and operation, the Claude body (`anthropic_version`, no `model`),
//! answers and streams through the Anthropic and Gemini converters, both error shapes, embeddings.

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::{stream::SseParser, testing::sent, ProviderKind};

const BASE: &str = "https://us-east5-aiplatform.googleapis.com/v1/projects/p-1/locations/us-east5";
const TOKEN: &str = "ya29.test-access-token";
const CLAUDE: &str = "claude-sonnet-4@20250514";

const ANTHROPIC_TOOL_SSE: &str = include_str!("../../../tests/fixtures/anthropic/tool_use.sse");
const ANTHROPIC_TEXT_JSON: &str = include_str!("../../../tests/fixtures/anthropic/text.json");
const ANTHROPIC_OVERLOADED: &str = include_str!("../../../tests/fixtures/anthropic/overloaded.json");
const GEMINI_TEXT_SSE: &str = include_str!("../../../tests/fixtures/gemini/text.sse");
const GEMINI_TEXT_JSON: &str = include_str!("../../../tests/fixtures/gemini/text.json");
const EMBED_JSON: &str = include_str!("../../../tests/fixtures/vertex/embeddings.json");
const EXHAUSTED_JSON: &str = include_str!("../../../tests/fixtures/vertex/resource_exhausted.json");

fn build(model: &str, op: Operation, body: Value, stream: bool) -> Result<UpstreamRequest, AdapterError> {
    let target = Target {
        base_url: BASE,
        model,
        api_key: Some(TOKEN),
        api_version: None,
    };
    let adapter: Box<dyn Adapter> = ProviderKind::Vertex.adapter().unwrap();
    adapter
        .for_model(model)
        .build_request(op, body.as_object().cloned().unwrap(), stream, &target)
}

fn chat_body() -> Value {
    json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "max_tokens": 50, "user": "u-1", "seed": 3})
}

/// Feeds a whole SSE text through the parser and the translator `for_model` picks.
fn translate(model: &str, sse: &str, wants_usage: bool) -> (Vec<Value>, Box<dyn StreamTranslator>) {
    let adapter: Box<dyn Adapter> = Box::new(VertexAdapter);
    let mut t = adapter
        .for_model(model)
        .stream_translator(Operation::Chat, wants_usage);
    let (mut parser, mut events, mut out) = (SseParser::new(), Vec::new(), Vec::new());
    parser.feed(sse.as_bytes(), &mut events);
    parser.finish(&mut events);
    for e in &events {
        t.on_event(e, &mut out).unwrap();
    }
    let chunks = out.iter().map(|b| serde_json::from_slice(b).unwrap()).collect();
    (chunks, t)
}

#[test]
fn base_url_is_regional_or_global() {
    assert_eq!(base_url("p-1", "us-east5"), BASE);
    assert_eq!(
        base_url("p-1", "global"),
        "https://aiplatform.googleapis.com/v1/projects/p-1/locations/global"
    );
    assert_eq!(ProviderKind::Vertex.as_str(), "vertex");
    assert_eq!(ProviderKind::Vertex.default_base_url(), None);
    assert_eq!(ProviderKind::Vertex.auth_style(), AuthStyle::GoogleOAuth);
}

#[test]
fn claude_models_go_to_raw_predict_with_the_vertex_version_and_no_model() {
    let req = build(CLAUDE, Operation::Chat, chat_body(), false).unwrap();
    assert_eq!(
        req.url,
        format!("{BASE}/publishers/anthropic/models/{CLAUDE}:rawPredict")
    );
    assert_eq!(req.headers["authorization"], format!("Bearer {TOKEN}"));
    assert!(req.headers["authorization"].is_sensitive());
    assert!(req.headers.get("x-api-key").is_none() && req.headers.get("anthropic-version").is_none());
    let body = sent(&req);
    assert_eq!(
        body,
        json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 50,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "system": "be brief", "metadata": {"user_id": "u-1"}})
    );
    assert!(body.get("model").is_none());

    let req = build(CLAUDE, Operation::Chat, chat_body(), true).unwrap();
    assert_eq!(
        req.url,
        format!("{BASE}/publishers/anthropic/models/{CLAUDE}:streamRawPredict")
    );
    let body = sent(&req);
    assert_eq!(body["stream"], true);
    assert_eq!(body["anthropic_version"], ANTHROPIC_VERTEX_VERSION);
    assert!(body.get("model").is_none());
}

#[test]
fn the_direct_anthropic_body_keeps_its_model_and_no_version() {
    let body =
        crate::anthropic::messages_body(chat_body().as_object().unwrap(), Some("claude-x"), None, false)
            .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["model"], "claude-x");
    assert!(v.get("anthropic_version").is_none());
}

#[test]
fn gemini_models_go_to_generate_content() {
    let req = build("gemini-2.5-flash", Operation::Chat, chat_body(), false).unwrap();
    assert_eq!(
        req.url,
        format!("{BASE}/publishers/google/models/gemini-2.5-flash:generateContent")
    );
    assert_eq!(req.headers["authorization"], format!("Bearer {TOKEN}"));
    assert!(req.headers.get("x-goog-api-key").is_none());
    assert_eq!(
        sent(&req),
        json!({"systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {"maxOutputTokens": 50, "seed": 3}})
    );
    let req = build("gemini-2.5-flash", Operation::Chat, chat_body(), true).unwrap();
    assert_eq!(
        req.url,
        format!("{BASE}/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    );
    assert!(sent(&req).get("stream").is_none());
}

#[test]
fn operations_per_publisher() {
    let adapter: Box<dyn Adapter> = Box::new(VertexAdapter);
    let (claude, gemini) = (adapter.for_model(CLAUDE), adapter.for_model("gemini-2.5-pro"));
    assert!(claude.supports(Operation::Chat) && !claude.supports(Operation::Embeddings));
    assert!(gemini.supports(Operation::Chat) && gemini.supports(Operation::Embeddings));
    assert!(!adapter.supports(Operation::Completions));
    assert_eq!(
        claude.default_max_tokens(),
        Some(crate::anthropic::DEFAULT_MAX_TOKENS)
    );
    assert_eq!(gemini.default_max_tokens(), None);
    for (model, op) in [
        (CLAUDE, Operation::Embeddings),
        (CLAUDE, Operation::Completions),
        ("gemini-2.5-pro", Operation::Completions),
    ] {
        let err = build(model, op, json!({"input": "x", "prompt": "x"}), false).unwrap_err();
        assert!(
            matches!(&err, AdapterError::InvalidRequest { message, .. } if message.contains("not supported")),
            "{model} {op:?}: {err:?}"
        );
    }
    // The provider adapter itself dispatches `build_request` on the model as well.
    let target = Target {
        base_url: BASE,
        model: CLAUDE,
        api_key: None,
        api_version: None,
    };
    let req = VertexAdapter
        .build_request(
            Operation::Chat,
            chat_body().as_object().cloned().unwrap(),
            false,
            &target,
        )
        .unwrap();
    assert!(req.url.ends_with(":rawPredict"));
    assert!(req.headers.get("authorization").is_none());
}

#[test]
fn answers_are_parsed_by_the_publishers_converter() {
    let adapter: Box<dyn Adapter> = Box::new(VertexAdapter);
    let parsed = adapter
        .for_model(CLAUDE)
        .parse_response(Operation::Chat, Bytes::from(ANTHROPIC_TEXT_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hi! My name is Claude. How can I help?"
    );
    assert_eq!(parsed.usage.unwrap().cached_input, 1000);

    let parsed = adapter
        .for_model("gemini-2.5-flash")
        .parse_response(Operation::Chat, Bytes::from(GEMINI_TEXT_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"].is_string());
    // An Anthropic answer is not a Gemini one: the wrong converter would fail loudly, not guess.
    assert!(adapter
        .for_model("gemini-2.5-flash")
        .parse_response(Operation::Chat, Bytes::from_static(b"<html>"))
        .is_err());
}

#[test]
fn claude_streams_go_through_the_anthropic_translator() {
    let (chunks, t) = translate(CLAUDE, ANTHROPIC_TOOL_SSE, true);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    // Two parallel calls: their argument deltas keep their own indices.
    assert_eq!(calls.iter().filter(|c| c["id"].is_string()).count(), 2);
    let args: String = calls
        .iter()
        .filter(|c| c["index"] == 0)
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "San Francisco, CA"})
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    assert!(t.finished());
    assert_eq!(t.usage().unwrap().input, 472);
}

#[test]
fn gemini_streams_go_through_the_gemini_translator() {
    let (chunks, t) = translate("gemini-2.5-flash", GEMINI_TEXT_SSE, false);
    assert!(!chunks.is_empty());
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert!(t.finished() && t.usage().is_some());
}

#[test]
fn errors_in_both_shapes_are_classified() {
    let e = parse_error(429, EXHAUSTED_JSON.as_bytes());
    assert!(e.retryable);
    assert_eq!(e.kind.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert!(e.message.starts_with("Quota exceeded"), "{}", e.message);
    let e = parse_error(529, ANTHROPIC_OVERLOADED.as_bytes());
    assert!(e.retryable);
    assert_eq!(
        (e.kind.as_deref(), e.message.as_str()),
        (Some("overloaded_error"), "Overloaded")
    );
    let e = parse_error(
        403,
        br#"{"error":{"code":403,"message":"Permission 'aiplatform.endpoints.predict' denied","status":"PERMISSION_DENIED"}}"#,
    );
    assert!(!e.retryable);
    assert_eq!(e.kind.as_deref(), Some("PERMISSION_DENIED"));
    let e = parse_error(
        400,
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#,
    );
    assert_eq!(
        (e.kind.as_deref(), e.retryable),
        (Some("invalid_request_error"), false)
    );
    let e = parse_error(502, b"<html>bad gateway</html>");
    assert!(e.retryable);
    assert_eq!(e.message, "upstream answered HTTP 502");
    // Every Vertex adapter classifies the same way.
    let adapter: Box<dyn Adapter> = Box::new(VertexAdapter);
    for a in [
        adapter.as_ref(),
        adapter.for_model(CLAUDE),
        adapter.for_model("gemini-x"),
    ] {
        assert_eq!(
            a.parse_error(429, EXHAUSTED_JSON.as_bytes()).kind.as_deref(),
            Some("RESOURCE_EXHAUSTED")
        );
    }
}

#[test]
fn embeddings_use_predict_with_instances() {
    let req = build(
        "text-embedding-005",
        Operation::Embeddings,
        json!({"input": ["hello", "world"], "dimensions": 256, "encoding_format": "float", "user": "u"}),
        false,
    )
    .unwrap();
    assert_eq!(
        req.url,
        format!("{BASE}/publishers/google/models/text-embedding-005:predict")
    );
    assert_eq!(
        sent(&req),
        json!({"instances": [{"content": "hello"}, {"content": "world"}],
            "parameters": {"outputDimensionality": 256}})
    );
    let one = build(
        "text-embedding-005",
        Operation::Embeddings,
        json!({"input": "solo"}),
        false,
    )
    .unwrap();
    assert_eq!(sent(&one), json!({"instances": [{"content": "solo"}]}));
    for bad in [json!({"input": [[1, 2]]}), json!({"input": []}), json!({})] {
        let err = build("text-embedding-005", Operation::Embeddings, bad, false).unwrap_err();
        assert!(
            matches!(err, AdapterError::InvalidRequest { ref param, .. } if param.as_deref() == Some("input"))
        );
    }

    let parsed = VertexGemini
        .parse_response(Operation::Embeddings, Bytes::from(EMBED_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(
        v["data"][0],
        json!({"object": "embedding", "index": 0, "embedding": [0.0106, -0.0264, 0.0515]})
    );
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["usage"], json!({"prompt_tokens": 10, "total_tokens": 10}));
    assert_eq!(parsed.usage.unwrap().input, 10);
    assert!(matches!(
        VertexGemini.parse_response(
            Operation::Embeddings,
            Bytes::from_static(b"{\"predictions\":[{}]}")
        ),
        Err(AdapterError::BadUpstreamBody(_))
    ));
}
