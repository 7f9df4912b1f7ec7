//! Conversion tests: requests built from OpenAI bodies (`requests.json`: OpenAI body in, exact Cohere
//! body or the refused param out), answers and streams from fixtures in Cohere's v2 wire format
//! (`tests/fixtures/cohere/`).

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::{
    testing::{self, same_at_every_split, sent},
    ProviderKind,
};

const TEXT_SSE: &str = include_str!("../../../tests/fixtures/cohere/text.sse");
const TOOL_SSE: &str = include_str!("../../../tests/fixtures/cohere/tool_call.sse");
const CITATIONS_SSE: &str = include_str!("../../../tests/fixtures/cohere/citations.sse");
const ERROR_SSE: &str = include_str!("../../../tests/fixtures/cohere/error.sse");
const TEXT_JSON: &str = include_str!("../../../tests/fixtures/cohere/text.json");
const TOOL_JSON: &str = include_str!("../../../tests/fixtures/cohere/tool_call.json");
const CITATIONS_JSON: &str = include_str!("../../../tests/fixtures/cohere/citations.json");
const ERROR_FINISH_JSON: &str = include_str!("../../../tests/fixtures/cohere/error_finish.json");
const EMBED_JSON: &str = include_str!("../../../tests/fixtures/cohere/embed.json");
const RATE_LIMITED_JSON: &str = include_str!("../../../tests/fixtures/cohere/rate_limited.json");
const REQUESTS_JSON: &str = include_str!("../../../tests/fixtures/cohere/requests.json");

fn target() -> Target<'static> {
    Target {
        base_url: "https://api.cohere.com/",
        model: "command-x",
        api_key: Some("co-test-key"),
        api_version: None,
    }
}

fn build(op: Operation, body: Value, stream: bool) -> Result<UpstreamRequest, AdapterError> {
    let map = body.as_object().cloned().unwrap();
    CohereAdapter.build_request(op, map, stream, &target())
}

fn request_cases(group: &str) {
    testing::request_cases(REQUESTS_JSON, group, "cohere", |body| {
        build(Operation::Chat, body, false)
    });
}

#[test]
fn builds_v2_chat_url_and_bearer_auth() {
    let req = build(
        Operation::Chat,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
        true,
    )
    .unwrap();
    assert_eq!(req.url, "https://api.cohere.com/v2/chat");
    assert_eq!(req.headers["authorization"], "Bearer co-test-key");
    assert!(req.headers["authorization"].is_sensitive());
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(sent(&req)["stream"], true);
    assert_eq!(
        ProviderKind::Cohere.default_base_url(),
        Some("https://api.cohere.com")
    );
    assert_eq!(ProviderKind::Cohere.as_str(), "cohere");
    assert!(ProviderKind::Cohere.adapter().is_some());
}

#[test]
fn sampling_limits_and_dropped_fields() {
    request_cases("basics");
}

#[test]
fn system_and_developer_messages_stay_system_messages() {
    request_cases("system");
}

#[test]
fn user_images_become_image_url_parts() {
    request_cases("images");
}

#[test]
fn tools_and_tool_choice() {
    request_cases("tools");
}

#[test]
fn tool_calls_and_results_round_trip() {
    request_cases("tool_results");
}

#[test]
fn response_formats() {
    request_cases("formats");
}

#[test]
fn reasoning_effort_becomes_thinking() {
    request_cases("reasoning");
}

#[test]
fn cohere_extension_fields_pass_through() {
    request_cases("extensions");
}

#[test]
fn completions_are_not_supported() {
    assert!(!CohereAdapter.supports(Operation::Completions));
    assert!(CohereAdapter.supports(Operation::Chat) && CohereAdapter.supports(Operation::Embeddings));
    let err = build(Operation::Completions, json!({"prompt": "x"}), false).unwrap_err();
    assert!(
        matches!(err, AdapterError::InvalidRequest { ref message, .. } if message.contains("not supported by cohere"))
    );
}

fn parse(body: &str) -> (Value, Parsed) {
    let parsed = CohereAdapter
        .parse_response_for(Operation::Chat, Bytes::from(body.to_string()), "command-x")
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    assert_eq!(
        v["model"], "command-x",
        "the answer names no model: the target's goes in"
    );
    (v, parsed)
}

#[test]
fn text_answer_with_billed_usage_and_cached_tokens() {
    let (v, parsed) = parse(TEXT_JSON);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "LLMs are neural networks trained on large amounts of text.", "refusal": null})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    let u = parsed.usage.unwrap();
    assert_eq!((u.input, u.output, u.cached_input), (5, 12, 3));
    assert_eq!(parsed.model.as_deref(), Some("command-x"));
}

#[test]
fn tool_call_answer_with_tool_plan_as_content() {
    let (v, parsed) = parse(TOOL_JSON);
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        msg["content"],
        "I will look up the weather in Toronto and the local time."
    );
    assert_eq!(
        msg["tool_calls"],
        json!([
            {"id": "get_weather_1byjy32y4hvq", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Toronto\"}"}},
            {"id": "get_time_p6hgt2cywmsb", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"America/Toronto\"}"}}])
    );
    assert!(msg.get("citations").is_none());
    assert_eq!(parsed.usage.unwrap().input, 37);
}

#[test]
fn thinking_citations_and_token_counts_without_billed_units() {
    let (v, parsed) = parse(CITATIONS_JSON);
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(msg["content"], "The tallest penguins are emperor penguins.");
    assert_eq!(
        msg["reasoning_content"],
        "The documents say the tallest penguin is the emperor penguin."
    );
    assert_eq!(msg["citations"][0]["sources"][0]["id"], "doc:0");
    let u = parsed.usage.unwrap();
    assert_eq!((u.input, u.output, u.cached_input), (120, 16, 0));
}

#[test]
fn finish_reasons_map_and_failed_generations_are_errors() {
    let cases = [
        ("COMPLETE", Some("stop")),
        ("STOP_SEQUENCE", Some("stop")),
        ("MAX_TOKENS", Some("length")),
        ("TOOL_CALL", Some("tool_calls")),
        ("ERROR_TOXIC", Some("content_filter")),
        ("ERROR", None),
        ("TIMEOUT", None),
    ];
    for (reason, want) in cases {
        let body = json!({"id": "x", "finish_reason": reason,
            "message": {"role": "assistant", "content": [{"type": "text", "text": "t"}]}});
        let got = CohereAdapter.parse_response(Operation::Chat, Bytes::from(body.to_string()));
        match want {
            Some(want) => {
                let v: Value = serde_json::from_slice(&got.unwrap().body).unwrap();
                assert_eq!(v["choices"][0]["finish_reason"], want, "{reason}");
            }
            None => assert!(matches!(got, Err(AdapterError::BadUpstreamBody(ref m)) if m.contains(reason))),
        }
    }
    let err = CohereAdapter.parse_response(Operation::Chat, Bytes::from(ERROR_FINISH_JSON));
    assert!(matches!(err, Err(AdapterError::BadUpstreamBody(_))));
    for garbage in [&b"<html>"[..], b"{}", b"{\"message\": 3}"] {
        let err = CohereAdapter.parse_response(Operation::Chat, Bytes::copy_from_slice(garbage));
        assert!(matches!(err, Err(AdapterError::BadUpstreamBody(_))), "{err:?}");
    }
}

/// Feeds `sse` split into `parts` through the SSE parser and the translator.
fn translate(
    sse: &str,
    parts: &[&[u8]],
    wants_usage: bool,
) -> (Vec<Value>, Result<(), AdapterError>, CohereStream) {
    testing::translate(CohereStream::new(wants_usage, "command-x"), sse, parts)
}

fn whole(sse: &str, wants_usage: bool) -> (Vec<Value>, Result<(), AdapterError>, CohereStream) {
    translate(sse, &[sse.as_bytes()], wants_usage)
}

fn joined(chunks: &[Value], field: &str) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"][field].as_str())
        .collect()
}

fn finishes(chunks: &[Value]) -> Vec<&str> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect()
}

#[test]
fn streamed_text_is_the_same_at_every_split() {
    let (chunks, result, t) = whole(TEXT_SSE, false);
    result.unwrap();
    assert!(t.finished());
    assert_eq!(t.model(), Some("command-x"));
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    assert_eq!(
        chunks[0],
        json!({"id": "29f14a5a-11de-4cae-9800-25e4747408ea", "object": "chat.completion.chunk", "model": "command-x",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "logprobs": null, "finish_reason": null}]})
    );
    assert_eq!(joined(&chunks, "content"), "Hello, wörld!");
    assert_eq!(
        chunks[3]["choices"][0],
        json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"})
    );
    let u = t.usage().unwrap();
    assert_eq!((u.input, u.output, u.cached_input), (8, 4, 2));
    same_at_every_split(|| CohereStream::new(false, "command-x"), TEXT_SSE);
}

#[test]
fn usage_chunk_only_when_the_client_asks() {
    let (chunks, _, _) = whole(TEXT_SSE, true);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        (
            &last["usage"]["prompt_tokens"],
            &last["usage"]["completion_tokens"],
            &last["usage"]["total_tokens"],
            &last["usage"]["prompt_tokens_details"]["cached_tokens"]
        ),
        (&json!(8), &json!(4), &json!(12), &json!(2))
    );
    assert!(whole(TEXT_SSE, false).0.iter().all(|c| c.get("usage").is_none()));
    // No usage from Cohere: no invented zeros either.
    let bare =
        "event: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"COMPLETE\"}}\n\n";
    let (chunks, result, t) = whole(bare, true);
    result.unwrap();
    assert!(t.finished() && t.usage().is_none());
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], "stop");
}

#[test]
fn streamed_tool_calls_keep_their_index_at_every_split() {
    let (chunks, result, t) = whole(TOOL_SSE, false);
    result.unwrap();
    assert!(t.finished());
    assert_eq!(joined(&chunks, "content"), "I will check the weather.");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let starts: Vec<&Value> = chunks
        .iter()
        .flat_map(|c| {
            c["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter(|call| call.get("id").is_some())
        .collect();
    assert_eq!(
        starts,
        [
            &json!({"index": 0, "id": "get_weather_nsz5zm3w56q3", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
            &json!({"index": 1, "id": "get_time_r4yq0hx8a8xz", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\": "}})
        ]
    );
    let mut args = [String::new(), String::new()];
    for c in &chunks {
        for call in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            args[call["index"].as_u64().unwrap() as usize]
                .push_str(call["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&args[0]).unwrap(),
        json!({"location": "Toronto"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&args[1]).unwrap(),
        json!({"tz": "EST"})
    );
    assert_eq!(finishes(&chunks), ["tool_calls"]);
    assert_eq!(t.usage().unwrap().output, 28);
    same_at_every_split(|| CohereStream::new(false, "command-x"), TOOL_SSE);
}

#[test]
fn streamed_thinking_and_citations() {
    let (chunks, result, t) = whole(CITATIONS_SSE, true);
    result.unwrap();
    assert!(t.finished());
    assert_eq!(joined(&chunks, "reasoning_content"), "The document says emperor.");
    assert_eq!(joined(&chunks, "content"), "Emperor penguins are the tallest");
    assert_eq!(finishes(&chunks), ["length"]);
    assert!(
        !chunks.iter().any(|c| c.to_string().contains("doc:0")),
        "citations are not streamed"
    );
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 120);
}

#[test]
fn stream_ending_in_error_is_an_error() {
    let (chunks, result, t) = whole(ERROR_SSE, true);
    assert!(
        matches!(result, Err(AdapterError::StreamError(ref m)) if m == "internal server error, please retry"),
        "{result:?}"
    );
    assert_eq!(joined(&chunks, "content"), "Once upon");
    assert!(finishes(&chunks).is_empty());
    assert!(!t.finished());
    assert_eq!(t.usage().unwrap().input, 6);

    let mut t = CohereStream::new(false, "command-x");
    let mut out = Vec::new();
    let ev = |data: &str| crate::stream::SseEvent {
        event: None,
        data: Bytes::from(data.to_string()),
    };
    let timeout = ev(r#"{"type":"message-end","delta":{"finish_reason":"TIMEOUT"}}"#);
    assert!(
        matches!(t.on_event(&timeout, &mut out), Err(AdapterError::StreamError(ref m)) if m.contains("TIMEOUT"))
    );
    let mut t = CohereStream::new(false, "command-x");
    assert!(matches!(
        t.on_event(&ev("not json"), &mut out),
        Err(AdapterError::BadUpstreamBody(_))
    ));
    let orphan = ev(
        r#"{"type":"tool-call-delta","index":3,"delta":{"message":{"tool_calls":{"function":{"arguments":"x"}}}}}"#,
    );
    assert!(matches!(
        t.on_event(&orphan, &mut out),
        Err(AdapterError::BadUpstreamBody(_))
    ));
    t.on_event(&ev(r#"{"type":"debug","prompt":"..."}"#), &mut out)
        .unwrap();
    t.on_event(&ev("[DONE]"), &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn embeddings_become_v2_embed() {
    let req = build(
        Operation::Embeddings,
        json!({"input": ["hello", "goodbye"], "dimensions": 256, "user": "u", "encoding_format": "float"}),
        false,
    )
    .unwrap();
    assert_eq!(req.url, "https://api.cohere.com/v2/embed");
    assert_eq!(req.headers["authorization"], "Bearer co-test-key");
    assert_eq!(
        sent(&req),
        json!({"model": "command-x", "texts": ["hello", "goodbye"], "input_type": "search_document",
            "embedding_types": ["float"], "output_dimension": 256})
    );
    let one = build(
        Operation::Embeddings,
        json!({"input": "q", "input_type": "search_query", "truncate": "END", "encoding_format": "base64"}),
        false,
    )
    .unwrap();
    assert_eq!(
        sent(&one),
        json!({"model": "command-x", "texts": ["q"], "input_type": "search_query",
            "embedding_types": ["float", "base64"], "truncate": "END"})
    );
    let too_many: Vec<String> = (0..=MAX_TEXTS).map(|i| i.to_string()).collect();
    for (bad, param) in [
        (json!({"input": [[1, 2]]}), "input"),
        (json!({"input": []}), "input"),
        (json!({}), "input"),
        (json!({"input": too_many}), "input"),
        (json!({"input": "x", "input_type": "image"}), "input_type"),
        (json!({"input": "x", "encoding_format": "hex"}), "encoding_format"),
        (json!({"input": "x", "dimensions": 0}), "dimensions"),
        (json!({"input": "x", "truncate": "MIDDLE"}), "truncate"),
    ] {
        let err = build(Operation::Embeddings, bad.clone(), false).unwrap_err();
        assert!(
            matches!(err, AdapterError::InvalidRequest { param: Some(ref p), .. } if p == param),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn embed_answers_become_openai_lists_as_floats_or_base64() {
    let parsed = CohereAdapter
        .parse_response_for(Operation::Embeddings, Bytes::from(EMBED_JSON), "embed-x")
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "embed-x");
    assert_eq!(
        v["data"][0],
        json!({"object": "embedding", "index": 0, "embedding": [0.016296387, -0.008354187, -0.04699707]})
    );
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["usage"], json!({"prompt_tokens": 2, "total_tokens": 2}));
    assert_eq!(parsed.usage.unwrap().input, 2);

    // The client asked for base64 (so the adapter asked Cohere for both types): OpenAI's encoding
    // of the float vector, little-endian f32, whatever Cohere put in its own base64 field.
    let both = json!({"id": "x", "embeddings": {"float": [[1.0, -2.0, 0.5]], "base64": ["ignored"]},
        "meta": {"tokens": {"input_tokens": 4}}});
    let parsed = CohereAdapter
        .parse_response(Operation::Embeddings, Bytes::from(both.to_string()))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    // 1.0f32 = 00 00 80 3f, -2.0f32 = 00 00 00 c0, 0.5f32 = 00 00 00 3f
    assert_eq!(v["data"][0]["embedding"], "AACAPwAAAMAAAAA/");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(embed::f32_base64(&[1.0]), "AACAPw==");
    assert_eq!(embed::f32_base64(&[]), "");

    let legacy = json!({"id": "x", "embeddings": [[0.25]], "response_type": "embeddings_floats"});
    let parsed = CohereAdapter
        .parse_response(Operation::Embeddings, Bytes::from(legacy.to_string()))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    assert_eq!(v["data"][0]["embedding"], json!([0.25]));
    for bad in [
        json!({"id": "x", "embeddings": {"int8": [[1]]}}),
        json!({"id": "x"}),
    ] {
        let err = CohereAdapter.parse_response(Operation::Embeddings, Bytes::from(bad.to_string()));
        assert!(matches!(err, Err(AdapterError::BadUpstreamBody(_))), "{bad}");
    }
}

#[test]
fn errors_are_classified() {
    let e = CohereAdapter.parse_error(429, RATE_LIMITED_JSON.as_bytes());
    assert!(e.retryable);
    assert_eq!(e.status, 429);
    assert_eq!(e.kind.as_deref(), Some("too_many_requests"));
    assert_eq!(
        e.message,
        "You are using a Trial key, which is limited to 10 API calls / minute."
    );
    let e = parse_error(
        400,
        br#"{"message":"invalid request: message must be at least 1 token long"}"#,
    );
    assert!(!e.retryable);
    assert_eq!(
        e.message,
        "invalid request: message must be at least 1 token long"
    );
    let e = parse_error(498, br#"{"message":"invalid api token"}"#);
    assert_eq!(
        (e.status, e.kind.as_deref(), e.retryable),
        (401, Some("invalid_token"), false)
    );
    for status in [401, 404, 422, 501] {
        assert!(!parse_error(status, b"{}").retryable, "{status}");
    }
    for status in [429, 499, 500, 503, 504] {
        assert!(parse_error(status, b"").retryable, "{status}");
    }
    let e = parse_error(503, b"<html>bad gateway</html>");
    assert_eq!(e.message, "upstream answered HTTP 503");
}
