//! Conversion tests: requests built from OpenAI bodies, answers and streams from fixtures captured in
//! Anthropic's wire format (`tests/fixtures/anthropic/`).

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::testing::{self, same_at_every_split, sent};

const TEXT_SSE: &str = include_str!("../../../tests/fixtures/anthropic/text.sse");
const TOOL_SSE: &str = include_str!("../../../tests/fixtures/anthropic/tool_use.sse");
const THINKING_SSE: &str = include_str!("../../../tests/fixtures/anthropic/thinking.sse");
const THINKING_TOOL_SSE: &str = include_str!("../../../tests/fixtures/anthropic/thinking_tool.sse");
const ERROR_SSE: &str = include_str!("../../../tests/fixtures/anthropic/error.sse");
const TEXT_JSON: &str = include_str!("../../../tests/fixtures/anthropic/text.json");
const TOOL_JSON: &str = include_str!("../../../tests/fixtures/anthropic/tool_use.json");
const OVERLOADED_JSON: &str = include_str!("../../../tests/fixtures/anthropic/overloaded.json");
const REQUESTS_JSON: &str = include_str!("../../../tests/fixtures/anthropic/requests.json");

fn target() -> Target<'static> {
    Target {
        base_url: "https://api.anthropic.com/v1/",
        model: "claude-x",
        api_key: Some("sk-ant-test"),
        api_version: None,
    }
}

fn build(op: Operation, body: Value, stream: bool) -> Result<UpstreamRequest, AdapterError> {
    let map = body.as_object().cloned().unwrap();
    AnthropicAdapter.build_request(op, map, stream, &target())
}

/// Runs the cases of one group of `requests.json`: OpenAI body in, exact Messages body (or the
/// refused param) out.
fn request_cases(group: &str) {
    testing::request_cases(REQUESTS_JSON, group, "anthropic", |body| {
        build(Operation::Chat, body, false)
    });
}

#[test]
fn builds_messages_url_and_anthropic_headers() {
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let req = build(Operation::Chat, body, false).unwrap();
    assert_eq!(req.url, "https://api.anthropic.com/v1/messages");
    assert_eq!(req.headers["x-api-key"], "sk-ant-test");
    assert!(req.headers["x-api-key"].is_sensitive());
    assert_eq!(req.headers["anthropic-version"], "2023-06-01");
    assert_eq!(req.headers["content-type"], "application/json");
    assert!(req.headers.get("authorization").is_none());
}

#[test]
fn request_defaults_sampling_and_dropped_fields() {
    request_cases("basics");
}

#[test]
fn system_and_developer_messages_become_top_level_system() {
    request_cases("system");
}

#[test]
fn consecutive_turns_of_one_role_are_merged() {
    request_cases("turns");
}

#[test]
fn images_become_base64_or_url_sources() {
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
fn reasoning_effort_enables_thinking_with_room_for_the_answer() {
    request_cases("reasoning");
}

#[test]
fn completions_and_embeddings_are_not_supported() {
    for op in [Operation::Completions, Operation::Embeddings] {
        let err = build(op, json!({"prompt": "x", "input": "x"}), false).unwrap_err();
        assert!(
            matches!(err, AdapterError::InvalidRequest { ref message, .. } if message.contains("not supported by anthropic"))
        );
    }
    let sent: Value = serde_json::from_slice(
        &build(
            Operation::Chat,
            json!({"messages": [{"role": "user", "content": "x"}]}),
            true,
        )
        .unwrap()
        .body,
    )
    .unwrap();
    assert_eq!(sent["stream"], true);
}

#[test]
fn text_answer_with_cache_usage() {
    let parsed = AnthropicAdapter
        .parse_response(Operation::Chat, Bytes::from(TEXT_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hi! My name is Claude. How can I help?"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(v["usage"]["prompt_tokens"], 2095 + 2051 + 1000);
    assert_eq!(v["usage"]["completion_tokens"], 503);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
    let u = parsed.usage.unwrap();
    assert_eq!(
        (
            u.input,
            u.output,
            u.cached_input,
            u.cache_write_input,
            u.reasoning
        ),
        (5146, 503, 1000, 2051, 0)
    );
    assert_eq!(parsed.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
}

#[test]
fn json_that_is_not_a_message_is_a_bad_upstream_body() {
    let err = AnthropicAdapter
        .parse_response(
            Operation::Chat,
            Bytes::from_static(br#"{"status":"ok","data":[1]}"#),
        )
        .unwrap_err();
    assert!(matches!(err, AdapterError::BadUpstreamBody(_)), "{err:?}");
}

#[test]
fn tool_use_and_thinking_answer() {
    let parsed = AnthropicAdapter
        .parse_response(Operation::Chat, Bytes::from(TOOL_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(msg["content"], "I'll check the weather.");
    assert_eq!(
        msg["reasoning_content"],
        "The user wants the weather; I should call the tool."
    );
    assert_eq!(
        msg["thinking_blocks"],
        json!([{"type": "thinking", "thinking": "The user wants the weather; I should call the tool.",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"}])
    );
    assert_eq!(
        msg["tool_calls"],
        json!([{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function":
        {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}}])
    );
    assert_eq!(parsed.usage.unwrap().input, 312);
    let err = AnthropicAdapter.parse_response(Operation::Chat, Bytes::from_static(b"<html>"));
    assert!(matches!(err, Err(AdapterError::BadUpstreamBody(_))));
}

/// Feeds `sse` split into `parts` through the SSE parser and the translator.
fn translate(
    sse: &str,
    parts: &[&[u8]],
    wants_usage: bool,
) -> (Vec<Value>, Result<(), AdapterError>, AnthropicStream) {
    testing::translate(AnthropicStream::new(wants_usage), sse, parts)
}

fn whole(sse: &str, wants_usage: bool) -> (Vec<Value>, Result<(), AdapterError>, AnthropicStream) {
    translate(sse, &[sse.as_bytes()], wants_usage)
}

#[test]
fn streamed_text_is_the_same_at_any_split() {
    let (chunks, result, t) = whole(TEXT_SSE, false);
    result.unwrap();
    assert!(t.finished());
    assert_eq!(t.model(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    assert_eq!(
        chunks[0],
        json!({"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "object": "chat.completion.chunk",
        "model": "claude-sonnet-4-5-20250929", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"},
        "logprobs": null, "finish_reason": null}]})
    );
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": ", wörld!"}));
    assert_eq!(
        chunks[2]["choices"][0],
        json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"})
    );
    let u = t.usage().unwrap();
    assert_eq!(
        (u.input, u.output, u.cached_input, u.cache_write_input),
        (135, 15, 100, 10)
    );
    same_at_every_split(|| AnthropicStream::new(false), TEXT_SSE);
}

#[test]
fn usage_chunk_only_when_the_client_asks() {
    let (chunks, _, t) = whole(TEXT_SSE, true);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 135);
    assert_eq!(last["usage"]["completion_tokens"], 15);
    assert_eq!(last["usage"]["total_tokens"], 150);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    assert_eq!(t.usage(), whole(TEXT_SSE, false).2.usage());
}

#[test]
fn streamed_tool_calls_are_numbered_from_zero() {
    let bytes = TOOL_SSE.as_bytes();
    let parts: Vec<&[u8]> = bytes.chunks(7).collect();
    let (chunks, result, t) = translate(TOOL_SSE, &parts, false);
    result.unwrap();
    assert!(t.finished());
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "Let me check the weather."})
    );
    assert_eq!(
        chunks[1]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function", "function": {"name": "get_weather", "arguments": ""}}])
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
        json!({"location": "San Francisco, CA"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&args[1]).unwrap(),
        json!({"tz": "PST"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(t.usage().unwrap().output, 89);
}

#[test]
fn streamed_tool_call_without_input_has_empty_object_arguments() {
    // A tool without parameters: Anthropic streams one empty `input_json_delta` and no JSON.
    let sse = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",",
        "\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,",
        "\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"list_cities\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,",
        "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},",
        "\"usage\":{\"output_tokens\":9}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let (chunks, result, t) = whole(sse, false);
    result.unwrap();
    assert!(t.finished());
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{}");
    let (with_input, result, _) = whole(TOOL_SSE, false);
    result.unwrap();
    assert!(
        with_input
            .iter()
            .all(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] != "{}"),
        "a call that streamed its input gets no extra `{{}}`"
    );
}

#[test]
fn streamed_thinking_becomes_reasoning_content() {
    let (chunks, result, _) = whole(THINKING_SSE, false);
    result.unwrap();
    let field = |name: &str| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][name].as_str())
            .collect()
    };
    assert_eq!(
        field("reasoning_content"),
        "27 * 453 = 27 * 400 + 27 * 53 = 10800 + 1431 = 12231"
    );
    assert_eq!(field("content"), "27 * 453 = 12,231");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        crate::reasoning::rebuild_thinking_blocks(&chunks),
        json!([{"type": "thinking", "thinking": "27 * 453 = 27 * 400 + 27 * 53 = 10800 + 1431 = 12231",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}])
    );
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
}

#[test]
fn streamed_thinking_blocks_rebuild_the_signed_and_redacted_blocks() {
    let bytes = THINKING_TOOL_SSE.as_bytes();
    let parts: Vec<&[u8]> = bytes.chunks(5).collect();
    let (chunks, result, t) = translate(THINKING_TOOL_SSE, &parts, false);
    result.unwrap();
    assert!(t.finished());
    assert_eq!(
        crate::reasoning::rebuild_thinking_blocks(&chunks),
        json!([{"type": "thinking", "thinking": "The user wants the weather; I should call the tool.",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"}])
    );
    // The signature comes in a fragment of its own, without reasoning text.
    let sig = chunks
        .iter()
        .map(|c| &c["choices"][0]["delta"])
        .find(|d| d.to_string().contains("signature"))
        .unwrap();
    assert_eq!(
        *sig,
        json!({"thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}]})
    );
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, "The user wants the weather; I should call the tool.");
    let call = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .unwrap();
    assert_eq!(call[0]["index"], 0);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

/// The blocks an answer returns, sent back by the client, reach Anthropic unchanged and first.
#[test]
fn answer_thinking_blocks_round_trip_into_the_next_request() {
    let parsed = AnthropicAdapter
        .parse_response(Operation::Chat, Bytes::from(TOOL_JSON))
        .unwrap();
    let v: Value = serde_json::from_slice(&parsed.body).unwrap();
    let mut assistant = v["choices"][0]["message"].clone();
    assistant.as_object_mut().unwrap().remove("refusal");
    let body = json!({"reasoning_effort": "medium", "messages": [
        {"role": "user", "content": "weather in SF?"},
        assistant,
        {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15C"}
    ], "tools": [{"type": "function", "function": {"name": "get_weather"}}]});
    let sent = sent(&build(Operation::Chat, body, false).unwrap());
    let upstream: Value = serde_json::from_str(TOOL_JSON).unwrap();
    let turn = &sent["messages"][1];
    assert_eq!(turn["role"], "assistant");
    assert_eq!(turn["content"][0], upstream["content"][0]);
    assert_eq!(turn["content"][1], upstream["content"][1]);
    assert_eq!(
        turn["content"][2],
        json!({"type": "text", "text": "I'll check the weather."})
    );
    assert_eq!(turn["content"][3]["type"], "tool_use");
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
}

#[test]
fn stream_error_event_is_an_error() {
    let (chunks, result, t) = whole(ERROR_SSE, true);
    assert!(
        matches!(result, Err(AdapterError::StreamError(ref m)) if m == "Overloaded"),
        "{result:?}"
    );
    assert_eq!(chunks.len(), 1);
    assert!(!t.finished());
    assert_eq!(t.usage().unwrap().input, 12);
}

#[test]
fn errors_are_classified() {
    let e = AnthropicAdapter.parse_error(529, OVERLOADED_JSON.as_bytes());
    assert!(e.retryable);
    assert_eq!(
        (e.kind.as_deref(), e.message.as_str()),
        (Some("overloaded_error"), "Overloaded")
    );
    let e = parse_error(400, br#"{"type":"error","error":{"type":"invalid_request_error","message":"messages: roles must alternate"}}"#);
    assert!(!e.retryable);
    assert_eq!(e.kind.as_deref(), Some("invalid_request_error"));
    assert_eq!(e.message, "messages: roles must alternate");
    for status in [408, 429, 500, 503] {
        assert!(parse_error(status, b"").retryable, "{status}");
    }
    let e = parse_error(401, b"upstream proxy says no");
    assert!(!e.retryable);
    assert_eq!(e.message, "upstream answered HTTP 401");
}
