//! Conversion tests: requests built from OpenAI bodies, answers and streams from fixtures in Gemini's
//! wire format (`tests/fixtures/gemini/`).

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::testing::{self, sent};
use crate::{AuthStyle, ProviderKind};

const TEXT_SSE: &str = include_str!("../../../tests/fixtures/gemini/text.sse");
const CALL_SSE: &str = include_str!("../../../tests/fixtures/gemini/function_call.sse");
const SAFETY_SSE: &str = include_str!("../../../tests/fixtures/gemini/safety.sse");
const ERROR_SSE: &str = include_str!("../../../tests/fixtures/gemini/error.sse");
const TEXT_JSON: &str = include_str!("../../../tests/fixtures/gemini/text.json");
const CALL_JSON: &str = include_str!("../../../tests/fixtures/gemini/function_call.json");
const SAFETY_JSON: &str = include_str!("../../../tests/fixtures/gemini/safety.json");
const BLOCKED_JSON: &str = include_str!("../../../tests/fixtures/gemini/blocked.json");
const OVERLOADED_JSON: &str = include_str!("../../../tests/fixtures/gemini/overloaded.json");
const THOUGHT_SIGS_JSON: &str = include_str!("../../../tests/fixtures/gemini/thought_signatures.json");
const THOUGHT_TEXT_SSE: &str = include_str!("../../../tests/fixtures/gemini/thought_text.sse");
const REQUESTS_JSON: &str = include_str!("../../../tests/fixtures/gemini/requests.json");

fn target() -> Target<'static> {
    Target {
        base_url: "https://generativelanguage.googleapis.com/v1beta/",
        model: "gemini-x",
        api_key: Some("AIza-test"),
        api_version: None,
    }
}

fn build(op: Operation, body: Value, stream: bool) -> Result<UpstreamRequest, AdapterError> {
    let map = body.as_object().cloned().unwrap();
    GeminiAdapter.build_request(op, map, stream, &target())
}

/// Runs the cases of one group of `requests.json`: OpenAI body in, exact Gemini body (or the
/// refused param) out.
fn request_cases(group: &str) {
    testing::request_cases(REQUESTS_JSON, group, "gemini", |body| {
        build(Operation::Chat, body, false)
    });
}

#[test]
fn builds_generate_content_urls_and_google_key_header() {
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let req = build(Operation::Chat, body.clone(), false).unwrap();
    assert_eq!(
        req.url,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-x:generateContent"
    );
    assert_eq!(req.headers["x-goog-api-key"], "AIza-test");
    assert!(req.headers["x-goog-api-key"].is_sensitive());
    assert_eq!(req.headers["content-type"], "application/json");
    assert!(req.headers.get("authorization").is_none());
    let req = build(Operation::Chat, body, true).unwrap();
    assert_eq!(
        req.url,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-x:streamGenerateContent?alt=sse"
    );
    assert!(sent(&req).get("stream").is_none());
    assert_eq!(
        ProviderKind::Gemini.default_base_url(),
        Some("https://generativelanguage.googleapis.com/v1beta")
    );
    assert_eq!(ProviderKind::Gemini.auth_style(), AuthStyle::XGoogApiKey);
}

#[test]
fn request_basics_sampling_stop_max_tokens_json_schema() {
    request_cases("basics");
}

#[test]
fn system_and_developer_messages_become_system_instruction() {
    request_cases("system");
}

#[test]
fn multi_turn_roles_and_merging() {
    request_cases("turns");
}

#[test]
fn images_become_inline_or_file_data() {
    request_cases("images");
}

#[test]
fn tools_and_every_tool_choice() {
    request_cases("tools");
}

#[test]
fn tool_calls_and_results_round_trip() {
    request_cases("tool_results");
}

#[test]
fn reasoning_effort_becomes_thinking_config() {
    request_cases("reasoning");
}

#[test]
fn completions_are_not_supported() {
    assert!(!GeminiAdapter.supports(Operation::Completions));
    assert!(GeminiAdapter.supports(Operation::Chat) && GeminiAdapter.supports(Operation::Embeddings));
    let err = build(Operation::Completions, json!({"prompt": "x"}), false).unwrap_err();
    assert!(
        matches!(err, AdapterError::InvalidRequest { ref message, .. } if message.contains("not supported by gemini"))
    );
}

#[test]
fn json_without_candidates_or_prompt_feedback_is_a_bad_upstream_body() {
    let err = GeminiAdapter
        .parse_response(
            Operation::Chat,
            Bytes::from_static(br#"{"status":"ok","data":[1]}"#),
        )
        .unwrap_err();
    assert!(matches!(err, AdapterError::BadUpstreamBody(_)), "{err:?}");
}

#[test]
fn text_answer_with_thoughts_and_cached_usage() {
    let parsed = GeminiAdapter
        .parse_response(Operation::Chat, Bytes::from(TEXT_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "mKzJaPOvBpvM7M8P5s6h-Ak");
    assert_eq!(v["model"], "gemini-2.5-flash");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello! How can I help?", "refusal": null,
            "reasoning_content": "The user greets me; answer briefly.",
            "thinking_blocks": [{"type": "thinking", "thinking": "The user greets me; answer briefly."}]})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 1200, "completion_tokens": 50, "total_tokens": 1250,
            "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 42}})
    );
    let u = parsed.usage.unwrap();
    assert_eq!(
        (
            u.input,
            u.output,
            u.cached_input,
            u.cache_write_input,
            u.reasoning
        ),
        (1200, 50, 1024, 0, 42)
    );
    assert_eq!(parsed.model.as_deref(), Some("gemini-2.5-flash"));
}

#[test]
fn function_calls_get_deterministic_ids() {
    let parsed = GeminiAdapter
        .parse_response(Operation::Chat, Bytes::from(CALL_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(msg["content"], "I'll look both up.");
    assert_eq!(
        msg["tool_calls"],
        json!([
            {"id": "call_0", "type": "function", "function": {"name": "get_weather",
                "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}},
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}])
    );
    // The text part's signature, for the client to send back on its text.
    assert_eq!(
        msg["thinking_blocks"],
        json!([{"type": "thinking", "thinking": "", "signature": "CiQB0e2Kb1xZ"}])
    );
    let err = GeminiAdapter.parse_response(Operation::Chat, Bytes::from_static(b"<html>"));
    assert!(matches!(err, Err(AdapterError::BadUpstreamBody(_))));
}

#[test]
fn safety_finishes_and_blocked_prompts_are_content_filter() {
    let parsed = GeminiAdapter
        .parse_response(Operation::Chat, Bytes::from(SAFETY_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(v["choices"][0]["message"]["content"], "I can");
    assert_eq!(
        (
            v["choices"][1]["index"].as_u64(),
            v["choices"][1]["finish_reason"].as_str()
        ),
        (Some(1), Some("length"))
    );
    let parsed = GeminiAdapter
        .parse_response(Operation::Chat, Bytes::from(BLOCKED_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    assert_eq!(
        v["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": "", "refusal": null},
            "logprobs": null, "finish_reason": "content_filter"}])
    );
    assert_eq!(parsed.usage.unwrap().input, 7);
    for (reason, want) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
    ] {
        assert_eq!(response::finish_reason(reason), want, "{reason}");
    }
}

/// Feeds `sse` split into `parts` through the SSE parser and the translator.
fn translate(
    sse: &str,
    parts: &[&[u8]],
    wants_usage: bool,
) -> (Vec<Value>, Result<(), AdapterError>, GeminiStream) {
    testing::translate(GeminiStream::new(wants_usage), sse, parts)
}

fn whole(sse: &str, wants_usage: bool) -> (Vec<Value>, Result<(), AdapterError>, GeminiStream) {
    translate(sse, &[sse.as_bytes()], wants_usage)
}

/// The stream gives the same chunks however it is split.
fn same_at_every_split(sse: &str, wants_usage: bool) {
    testing::same_at_every_split(|| GeminiStream::new(wants_usage), sse);
}

#[test]
fn streamed_text_is_the_same_at_any_split() {
    let (chunks, result, t) = whole(TEXT_SSE, false);
    result.unwrap();
    assert!(t.finished());
    assert_eq!(t.model(), Some("gemini-2.5-flash"));
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    assert_eq!(
        chunks[0],
        json!({"id": "s1", "object": "chat.completion.chunk", "model": "gemini-2.5-flash",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"},
        "logprobs": null, "finish_reason": null}]})
    );
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": ", wörld!"}));
    assert_eq!(
        chunks[2]["choices"][0],
        json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"})
    );
    let u = t.usage().unwrap();
    assert_eq!((u.input, u.output, u.cached_input, u.reasoning), (12, 5, 8, 0));
    same_at_every_split(TEXT_SSE, false);
}

#[test]
fn usage_chunk_only_when_the_client_asks() {
    let (chunks, _, t) = whole(TEXT_SSE, true);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    assert_eq!(t.usage(), whole(TEXT_SSE, false).2.usage());
    assert!(whole(TEXT_SSE, false).0.iter().all(|c| c.get("usage").is_none()));
}

#[test]
fn streamed_function_calls_arrive_whole_and_numbered() {
    let (chunks, result, t) = whole(CALL_SSE, false);
    result.unwrap();
    assert!(t.finished());
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "reasoning_content": "**Planning** I need the weather.",
            "thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "**Planning** I need the weather."}]})
    );
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "id": "call_0", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            "provider_specific_fields": {"thought_signature": "CiQB0e2Kb1xZ"}}]})
    );
    assert_eq!(
        chunks[2]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 1, "id": "call_1", "type": "function",
            "function": {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}}])
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks.len(), 4);
    let u = t.usage().unwrap();
    assert_eq!((u.input, u.output, u.reasoning), (30, 35, 20));
    same_at_every_split(CALL_SSE, true);
}

#[test]
fn thought_parts_and_signatures_come_back_as_thinking_blocks_and_tool_call_fields() {
    let parsed = GeminiAdapter
        .parse_response(Operation::Chat, Bytes::from(THOUGHT_SIGS_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    let msg = &v["choices"][0]["message"];
    let thoughts = "**Checking the weather** The user wants Paris and Rome; I will call the tool twice.";
    assert_eq!(msg["reasoning_content"], thoughts);
    // Consecutive thought parts make one block; no signature came with them.
    assert_eq!(
        msg["thinking_blocks"],
        json!([{"type": "thinking", "thinking": thoughts}])
    );
    assert_eq!(
        msg["tool_calls"][0]["provider_specific_fields"],
        json!({"thought_signature": "Q2lRQjBlMkticGFyaXM="})
    );
    // Parallel calls: only the first is signed.
    assert!(msg["tool_calls"][1].get("provider_specific_fields").is_none());
    assert_eq!(msg["content"], "Let me look.");
}

/// The assistant message of an answer, sent back with the tool results, gives Gemini its parts back
/// with their signatures on the same parts.
#[test]
fn answer_signatures_round_trip_onto_the_same_parts() {
    let parsed = GeminiAdapter
        .parse_response(Operation::Chat, Bytes::from(THOUGHT_SIGS_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    let assistant = v["choices"][0]["message"].clone();
    let body = json!({"reasoning_effort": "low", "messages": [
        {"role": "user", "content": "weather in Paris and Rome?"},
        assistant,
        {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp\": 15}"},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 19}"}
    ], "tools": [{"type": "function", "function": {"name": "get_weather"}}]});
    let sent = sent(&build(Operation::Chat, body, false).unwrap());
    assert_eq!(
        sent["contents"][1],
        json!({"role": "model", "parts": [
            {"text": "Let me look."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "Q2lRQjBlMkticGFyaXM="},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
        ]})
    );
    assert_eq!(sent["contents"][2]["parts"].as_array().unwrap().len(), 2);
}

#[test]
fn streamed_thought_and_text_signatures_rebuild_the_blocks() {
    let (chunks, result, t) = whole(THOUGHT_TEXT_SSE, false);
    result.unwrap();
    assert!(t.finished());
    let blocks = crate::reasoning::rebuild_thinking_blocks(&chunks);
    assert_eq!(
        blocks,
        json!([{"type": "thinking", "thinking": "**Counting** 27 * 453 is 12231."},
            {"type": "thinking", "thinking": "", "signature": "Q2lRQjBlMktidGV4dA=="}])
    );
    let joined = |name: &str| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][name].as_str())
            .collect()
    };
    assert_eq!(joined("reasoning_content"), "**Counting** 27 * 453 is 12231.");
    assert_eq!(joined("content"), "27 * 453 = 12,231");
    same_at_every_split(THOUGHT_TEXT_SSE, false);

    // What the client rebuilt goes back with the signature on the answer's text.
    let body = json!({"messages": [{"role": "user", "content": "27 * 453?"},
        {"role": "assistant", "content": joined("content"), "thinking_blocks": blocks},
        {"role": "user", "content": "and times 2?"}]});
    let sent = sent(&build(Operation::Chat, body, true).unwrap());
    assert_eq!(
        sent["contents"][1],
        json!({"role": "model", "parts": [{"text": "27 * 453 = 12,231", "thoughtSignature": "Q2lRQjBlMktidGV4dA=="}]})
    );
}

#[test]
fn streamed_safety_stop_is_content_filter() {
    let (chunks, result, t) = whole(SAFETY_SSE, false);
    result.unwrap();
    assert!(t.finished());
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "Sure, here");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "content_filter"
    );
}

#[test]
fn stream_error_object_is_an_error() {
    let (chunks, result, t) = whole(ERROR_SSE, true);
    assert!(
        matches!(result, Err(AdapterError::StreamError(ref m)) if m.contains("overloaded")),
        "{result:?}"
    );
    assert_eq!(chunks.len(), 1);
    assert!(!t.finished());
    assert_eq!(t.usage().unwrap().input, 5);
}

#[test]
fn errors_are_classified() {
    let e = GeminiAdapter.parse_error(503, OVERLOADED_JSON.as_bytes());
    assert!(e.retryable);
    assert_eq!(
        (e.kind.as_deref(), e.message.as_str()),
        (
            Some("UNAVAILABLE"),
            "The model is overloaded. Please try again later."
        )
    );
    let bad =
        br#"{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}"#;
    let e = parse_error(400, bad);
    assert!(!e.retryable);
    assert_eq!(e.kind.as_deref(), Some("INVALID_ARGUMENT"));
    assert_eq!(e.message, "Invalid JSON payload received.");
    let e = parse_error(
        429,
        br#"[{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED"}}]"#,
    );
    assert!(e.retryable);
    assert_eq!(e.kind.as_deref(), Some("RESOURCE_EXHAUSTED"));
    for status in [429, 500, 503, 504] {
        assert!(parse_error(status, b"").retryable, "{status}");
    }
    let e = parse_error(403, b"nope");
    assert!(!e.retryable);
    assert_eq!(e.message, "upstream answered HTTP 403");
}

#[test]
fn many_tool_results_find_their_calls_in_linear_time() {
    // Each tool message used to search every earlier message and call for its id: the client's
    // number of calls squared.
    let n = 20_000;
    let calls: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("c{i}"), "type": "function",
            "function": {"name": format!("f{i}"), "arguments": "{}"}})
        })
        .collect();
    let mut messages = vec![
        json!({"role": "user", "content": "go"}),
        json!({"role": "assistant", "tool_calls": calls}),
    ];
    messages
        .extend((0..n).map(|i| json!({"role": "tool", "tool_call_id": format!("c{i}"), "content": "ok"})));
    // A later call reusing an id wins for the results after it.
    messages.push(
        json!({"role": "assistant", "tool_calls": [{"id": "c0", "type": "function",
        "function": {"name": "again", "arguments": "{}"}}]}),
    );
    messages.push(json!({"role": "tool", "tool_call_id": "c0", "content": "ok"}));
    let started = std::time::Instant::now();
    let req = build(
        Operation::Chat,
        json!({"model": "m", "messages": messages}),
        false,
    )
    .unwrap();
    let took = started.elapsed();
    let v: Value = serde_json::from_slice(&req.body).unwrap();
    let contents = v["contents"].as_array().unwrap();
    let results = contents[2]["parts"].as_array().unwrap();
    assert_eq!(results.len(), n);
    assert_eq!(results[n - 1]["functionResponse"]["name"], format!("f{}", n - 1));
    assert_eq!(contents[4]["parts"][0]["functionResponse"]["name"], "again");
    let err = build(
        Operation::Chat,
        json!({"model": "m", "messages": [{"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "nope", "content": "ok"}]}),
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    // About half a second unoptimised; the quadratic search took well over ten.
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
}
