//! Conversion tests: SigV4 against AWS's published examples, requests built from OpenAI bodies, answers
//! and streams from fixtures in Bedrock's wire format (`tests/fixtures/bedrock/`, checked against the
//! service model by `tests/python/validate_bedrock.py`; streams both as binary event-stream frames,
//! `.eventstream`, and decoded, one message per line, `.events.jsonl`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue as EsValue, Message as EsMessage};
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Map, Value};

use super::{
    sigv4::{sign_request, Signable},
    *,
};
use crate::{eventstream::Framer, ProviderKind, StreamTranslator};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// 2015-08-30T12:36:00Z, the time of AWS's SigV4 examples.
fn example_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_440_938_160)
}

fn creds(token: Option<&str>) -> AwsCredentials {
    AwsCredentials {
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        session_token: token.map(str::to_string),
    }
}

fn adapter() -> BedrockAdapter {
    BedrockAdapter::new(creds(None), "us-east-1")
}

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn target(model: &str) -> Target<'_> {
    Target {
        base_url: "https://bedrock-runtime.us-east-1.amazonaws.com",
        model,
        api_key: None,
        api_version: None,
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn build(body: Value) -> Value {
    build_for(MODEL, body)
}

fn build_for(model: &str, body: Value) -> Value {
    let req = adapter()
        .build_request_at(Operation::Chat, obj(body), false, &target(model), example_time())
        .unwrap();
    serde_json::from_slice(&req.body).unwrap()
}

fn build_err(body: Value) -> (String, Option<String>) {
    match adapter().build_request_at(Operation::Chat, obj(body), false, &target(MODEL), example_time()) {
        Err(AdapterError::InvalidRequest { message, param }) => (message, param),
        other => panic!("expected an invalid request, got {other:?}"),
    }
}

fn auth_parts(auth: &str) -> (String, String, String) {
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").expect("algorithm");
    let mut credential = String::new();
    let mut signed = String::new();
    let mut signature = String::new();
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').unwrap();
        match k {
            "Credential" => credential = v.into(),
            "SignedHeaders" => signed = v.into(),
            "Signature" => signature = v.into(),
            _ => panic!("unexpected {k}"),
        }
    }
    (credential, signed, signature)
}

// ---- SigV4 against AWS's published examples ----

#[test]
fn sigv4_matches_the_documented_iam_example() {
    // "Create a signed AWS API request" (AWS IAM user guide): GET ListUsers, us-east-1, iam.
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        "application/x-www-form-urlencoded; charset=utf-8"
            .parse()
            .unwrap(),
    );
    let out = sign_request(
        &Signable {
            method: "GET",
            url: "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            body: b"",
            content_sha256: false,
        },
        &creds(None),
        "us-east-1",
        "iam",
        example_time(),
    )
    .unwrap();
    assert_eq!(out["x-amz-date"], "20150830T123600Z");
    assert_eq!(
        out["authorization"],
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, \
         Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    );
}

#[test]
fn sigv4_matches_the_test_suite_post_vanilla() {
    // aws-sig-v4-test-suite `post-vanilla`.
    let out = sign_request(
        &Signable {
            method: "POST",
            url: "https://example.amazonaws.com/",
            headers: &HeaderMap::new(),
            body: b"",
            content_sha256: false,
        },
        &creds(None),
        "us-east-1",
        "service",
        example_time(),
    )
    .unwrap();
    let (credential, signed, signature) = auth_parts(out["authorization"].to_str().unwrap());
    assert_eq!(credential, "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request");
    assert_eq!(signed, "host;x-amz-date");
    assert_eq!(
        signature,
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
    );
}

#[test]
fn converse_requests_are_signed_over_the_encoded_model_path_and_body() {
    // Expected values computed with an independent SigV4 implementation (Python hmac/hashlib):
    // canonical path `/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse` (double-encoded,
    // as for every AWS service but S3), signed headers content-type;host;x-amz-content-sha256;x-amz-date.
    let req = adapter()
        .build_request_at(
            Operation::Chat,
            obj(json!({"messages": [{"role": "user", "content": "hi"}]})),
            false,
            &target(MODEL),
            example_time(),
        )
        .unwrap();
    assert_eq!(
        req.url,
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(
        &req.body[..],
        br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#
    );
    assert_eq!(
        req.headers["x-amz-content-sha256"],
        "c3335e07d6e89650bf94cb98664be69f8774dbc3198df221f113db0a59ea14f0"
    );
    assert_eq!(req.headers["x-amz-date"], "20150830T123600Z");
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(req.headers["accept"], "application/json");
    let (credential, signed, signature) = auth_parts(req.headers["authorization"].to_str().unwrap());
    assert_eq!(credential, "AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request");
    assert_eq!(signed, "content-type;host;x-amz-content-sha256;x-amz-date");
    assert_eq!(
        signature,
        "ed1c6b01620d52209196b50b4b30a706b6dc7fb7fd2f7763b4136033874dd4e5"
    );
    assert!(req.headers["authorization"].is_sensitive());

    // Temporary credentials: the session token is sent and signed.
    let temp = BedrockAdapter::new(creds(Some("SESSIONTOKEN")), "us-east-1");
    let req = temp
        .build_request_at(
            Operation::Chat,
            obj(json!({"messages": [{"role": "user", "content": "hi"}]})),
            false,
            &target(MODEL),
            example_time(),
        )
        .unwrap();
    assert_eq!(req.headers["x-amz-security-token"], "SESSIONTOKEN");
    let (_, signed, signature) = auth_parts(req.headers["authorization"].to_str().unwrap());
    assert_eq!(
        signed,
        "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
    );
    assert_eq!(
        signature,
        "b5308b1f7b34920e608f841da82587e1b2574221f751f01c0ab5330d499e5313"
    );
}

#[test]
fn streams_go_to_converse_stream_and_arns_are_one_segment() {
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-v1:0";
    let req = adapter()
        .build_request_at(
            Operation::Chat,
            obj(json!({"messages": [{"role": "user", "content": "hi"}]})),
            true,
            &target(arn),
            example_time(),
        )
        .unwrap();
    assert_eq!(
        req.url,
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/\
         arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-v1%3A0/converse-stream"
    );
    assert_eq!(req.headers["accept"], "application/vnd.amazon.eventstream");
    assert_eq!(
        default_base_url("eu-west-3"),
        "https://bedrock-runtime.eu-west-3.amazonaws.com"
    );
    assert_eq!(
        default_base_url("cn-north-1"),
        "https://bedrock-runtime.cn-north-1.amazonaws.com.cn"
    );
    assert_eq!(adapter().stream_framing(), Framing::AwsEventStream);
}

#[test]
fn without_credentials_requests_are_a_config_error_and_secrets_stay_hidden() {
    let plain = ProviderKind::Bedrock.adapter().unwrap();
    match plain.build_request(
        Operation::Chat,
        obj(json!({"messages": [{"role": "user", "content": "hi"}]})),
        false,
        &target(MODEL),
    ) {
        Err(AdapterError::Config(m)) => assert!(m.contains("credentials"), "{m}"),
        other => panic!("{other:?}"),
    }
    // With an Amazon Bedrock API key instead, it sends the key as a bearer token.
    let keyed = Target {
        api_key: Some("bedrock-api-key-123"),
        ..target(MODEL)
    };
    let req = plain
        .build_request(
            Operation::Chat,
            obj(json!({"messages": [{"role": "user", "content": "hi"}]})),
            false,
            &keyed,
        )
        .unwrap();
    assert_eq!(req.headers["authorization"], "Bearer bedrock-api-key-123");
    assert!(req.headers["authorization"].is_sensitive());
    assert!(req.headers.get("x-amz-date").is_none());
    // It still parses answers (fuzzing uses it).
    assert!(plain
        .parse_response(Operation::Chat, Bytes::from_static(TEXT_ANSWER.as_bytes()))
        .is_ok());
    let a = BedrockAdapter::new(creds(Some("TOKEN-SECRET")), "eu-west-1");
    let debug = format!("{a:?}");
    assert!(
        !debug.contains(SECRET) && !debug.contains("TOKEN-SECRET"),
        "{debug}"
    );
    assert!(debug.contains(AKID));
    assert_eq!(a.secrets(), vec![SECRET, AKID, "TOKEN-SECRET"]);
    assert!(!a.supports(Operation::Embeddings));
    assert!(a
        .build_request(Operation::Embeddings, Map::new(), false, &target(MODEL))
        .is_err());
}

// ---- request translation ----

#[test]
fn chat_fields_become_converse_fields() {
    let v = build(json!({
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
            {"role": "user", "content": "hello"},
            {"role": "user", "content": [{"type": "text", "text": "again"}, {"type": "text", "text": "  "}]},
            {"role": "assistant", "content": "hi!"},
            {"role": "user", "content": "bye"}
        ],
        "max_completion_tokens": 100, "max_tokens": 5, "temperature": 1.7, "top_p": 0.5,
        "stop": ["END", ""], "seed": 3, "user": "u", "logprobs": false, "stream_options": {"include_usage": true}
    }));
    assert_eq!(
        v,
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "hello"}, {"text": "again"}]},
                {"role": "assistant", "content": [{"text": "hi!"}]},
                {"role": "user", "content": [{"text": "bye"}]}
            ],
            "system": [{"text": "be brief"}, {"text": "and kind"}],
            "inferenceConfig": {"maxTokens": 100, "temperature": 1.0, "topP": 0.5, "stopSequences": ["END"]}
        })
    );
    let v = build(json!({"messages": [{"role": "user", "content": "x"}], "stop": "\n"}));
    assert_eq!(v["inferenceConfig"], json!({"stopSequences": ["\n"]}));
    let tier = |t: Value| build(json!({"messages": [{"role": "user", "content": "x"}], "service_tier": t}));
    assert_eq!(
        tier(json!("priority"))["serviceTier"],
        json!({"type": "priority"})
    );
    assert_eq!(tier(json!("flex"))["serviceTier"], json!({"type": "flex"}));
    assert!(tier(json!("auto")).get("serviceTier").is_none());
    let (_, param) = build_err(json!({"messages": [], "service_tier": "fastest"}));
    assert_eq!(param.as_deref(), Some("service_tier"));
}

#[test]
fn tool_calls_and_results_round_trip_with_parallel_results_merged() {
    let v = build(json!({
        "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
            {"role": "user", "content": "thanks"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "noop"}}],
        "tool_choice": "required", "parallel_tool_calls": true
    }));
    assert_eq!(
        v["messages"],
        json!([
            {"role": "user", "content": [{"text": "weather in Paris and Rome?"}]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
                {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {}}}]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}},
                {"toolResult": {"toolUseId": "call_2", "content": [{"text": "rain"}]}},
                {"text": "thanks"}]}
        ])
    );
    assert_eq!(
        v["toolConfig"],
        json!({"tools": [
            {"toolSpec": {"name": "get_weather", "description": "weather",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}},
            {"toolSpec": {"name": "noop", "inputSchema": {"json": {"type": "object", "properties": {}}}}}],
            "toolChoice": {"any": {}}})
    );
    let tools = json!([{"type": "function", "function": {"name": "get_weather"}}]);
    let user = json!([{"role": "user", "content": "x"}]);
    let choice =
        |c: Value| build(json!({"messages": user, "tools": tools, "tool_choice": c}))["toolConfig"].clone();
    assert!(
        choice(json!("auto")).get("toolChoice").is_none(),
        "auto is the default"
    );
    assert_eq!(
        choice(json!("auto"))["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
    assert_eq!(
        choice(json!({"type": "function", "function": {"name": "get_weather"}}))["toolChoice"],
        json!({"tool": {"name": "get_weather"}})
    );
    assert!(choice(Value::Null).get("toolChoice").is_none());
    assert_eq!(
        choice(json!("none")),
        Value::Null,
        "none without tool history: no tools"
    );
}

#[test]
fn foreign_tool_ids_are_made_to_fit_and_still_pair() {
    let long = "x".repeat(80);
    let v = build(json!({"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [
            {"id": "call 1/é", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": long, "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call 1/é", "content": "a"},
        {"role": "tool", "tool_call_id": long, "content": "b"}]}));
    let uses = &v["messages"][1]["content"];
    let results = &v["messages"][2]["content"];
    assert_eq!(uses[0]["toolUse"]["toolUseId"], "call_1__");
    assert_eq!(results[0]["toolResult"]["toolUseId"], "call_1__");
    assert_eq!(uses[1]["toolUse"]["toolUseId"], "x".repeat(64));
    assert_eq!(results[1]["toolResult"]["toolUseId"], "x".repeat(64));
}

#[test]
fn tool_history_keeps_a_tool_config_even_without_tools() {
    let history = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]);
    let v = build(json!({"messages": history}));
    assert_eq!(
        v["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "get_weather",
            "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
    );
    let v = build(json!({"messages": history, "tool_choice": "none",
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "w"}}]}));
    assert_eq!(v["toolConfig"]["tools"][0]["toolSpec"]["description"], "w");
    assert!(v["toolConfig"].get("toolChoice").is_none());
}

#[test]
fn many_distinct_tools_in_history_are_declared_in_linear_time() {
    // The client decides how many distinct tool names its history calls.
    let n = 100_000;
    let calls: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("c{i}"), "type": "function",
            "function": {"name": format!("tool_{i}"), "arguments": "{}"}})
        })
        .collect();
    let started = std::time::Instant::now();
    let v = build(json!({"messages": [{"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": calls}]}));
    let took = started.elapsed();
    let tools = v["toolConfig"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), n);
    assert_eq!(tools[n - 1]["toolSpec"]["name"], format!("tool_{}", n - 1));
    // About 1.5 s unoptimised; the quadratic search took over 8.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn images_are_inline_bytes_and_urls_are_refused() {
    let v = build(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "low"}}]}]}));
    assert_eq!(
        v["messages"][0]["content"][1],
        json!({"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}})
    );
    let (message, param) = build_err(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}));
    assert!(message.contains("data: URL"), "{message}");
    assert_eq!(param.as_deref(), Some("messages[0].content[0]"));
    let (message, _) = build_err(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}]}]}));
    assert!(message.contains("bmp"), "{message}");
    let (_, param) = build_err(json!({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]}));
    assert_eq!(param.as_deref(), Some("messages[0].content[0]"));
}

#[test]
fn file_parts_become_documents_with_distinct_names() {
    let pdf = json!({"type": "file", "file": {"filename": "Q3 report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}});
    let v = build(json!({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "compare"}, pdf, pdf,
            {"type": "file", "file": {"file_data": "data:text/plain;charset=utf-8;base64,aGk="}}]}]}));
    assert_eq!(
        v["messages"][0]["content"],
        json!([{"text": "compare"},
            {"document": {"format": "pdf", "name": "Q3 report", "source": {"bytes": "JVBERi0x"}}},
            {"document": {"format": "pdf", "name": "Q3 report (2)", "source": {"bytes": "JVBERi0x"}}},
            {"document": {"format": "txt", "name": "document", "source": {"bytes": "aGk="}}}])
    );
    let file = |f: Value| json!({"messages": [{"role": "user", "content": [{"type": "file", "file": f}]}]});
    let (message, param) = build_err(file(json!({"file_id": "file-abc"})));
    assert!(message.contains("file_id"), "{message}");
    assert_eq!(param.as_deref(), Some("messages[0].content[0].file"));
    let (message, param) = build_err(file(json!({"file_data": "data:image/svg+xml;base64,PHN2Zz4="})));
    assert!(message.contains("image/svg+xml"), "{message}");
    assert_eq!(param.as_deref(), Some("messages[0].content[0].file.file_data"));
    // Files in an assistant turn have no Converse equivalent.
    let (_, param) = build_err(json!({"messages": [{"role": "assistant", "content": [pdf]}]}));
    assert_eq!(param.as_deref(), Some("messages[0].content[0]"));
}

#[test]
fn many_same_named_documents_are_named_in_linear_time() {
    // The client controls how many parts share a name: naming them must not be cubic (each new
    // name used to be searched from ` (2)` up, each search scanning every name so far).
    let part =
        json!({"type": "file", "file": {"filename": "a.txt", "file_data": "data:text/plain;base64,aGk="}});
    let parts = vec![part; 3000];
    let started = std::time::Instant::now();
    let v = build(json!({"messages": [{"role": "user", "content": parts}]}));
    let took = started.elapsed();
    let names: Vec<&str> = v["messages"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["document"]["name"].as_str().unwrap())
        .collect();
    assert_eq!((names[0], names[1], names[2999]), ("a", "a (2)", "a (3000)"));
    let distinct: std::collections::HashSet<&&str> = names.iter().collect();
    assert_eq!(distinct.len(), 3000);
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn cache_control_becomes_cache_points() {
    let v = build(json!({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [{"type": "text", "text": "doc", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": "question"}]},
        {"role": "assistant", "content": "ok", "cache_control": {"type": "ephemeral"}}]}));
    assert_eq!(
        v["system"],
        json!([{"text": "long rules"}, {"cachePoint": {"type": "default"}}])
    );
    assert_eq!(
        v["messages"][0]["content"],
        json!([{"text": "doc"}, {"cachePoint": {"type": "default", "ttl": "1h"}}, {"text": "question"}])
    );
    assert_eq!(
        v["messages"][1]["content"],
        json!([{"text": "ok"}, {"cachePoint": {"type": "default"}}])
    );
    let (_, param) = build_err(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "x", "cache_control": {"type": "forever"}}]}]}));
    assert_eq!(param.as_deref(), Some("messages[0].content[0].cache_control"));
}

#[test]
fn reasoning_effort_is_anthropic_thinking_only_for_anthropic_models() {
    let body = json!({"messages": [{"role": "user", "content": "think"}], "reasoning_effort": "medium",
        "max_tokens": 1000, "temperature": 0.3});
    let v = build_for("us.anthropic.claude-sonnet-4-20250514-v1:0", body.clone());
    assert_eq!(
        v["additionalModelRequestFields"],
        json!({"thinking": {"type": "enabled", "budget_tokens": 4096}})
    );
    assert_eq!(
        v["inferenceConfig"],
        json!({"maxTokens": 5096}),
        "no sampling with thinking"
    );
    let no_limit = json!({"messages": [{"role": "user", "content": "think"}], "reasoning_effort": "high"});
    let v = build_for("anthropic.claude-3-7-sonnet-20250219-v1:0", no_limit);
    assert_eq!(v["inferenceConfig"], json!({"maxTokens": 4096 + 16_384}));
    let v = build_for("amazon.nova-pro-v1:0", body.clone());
    assert!(v.get("additionalModelRequestFields").is_none());

    // Continuing a tool call: with the signed reasoning sent back, thinking stays on.
    let turns = |thinking_blocks: Value| {
        json!({"reasoning_effort": "low", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Checking.", "thinking_blocks": thinking_blocks,
                "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]})
    };
    let claude = "anthropic.claude-3-7-sonnet-20250219-v1:0";
    let v = build_for(
        claude,
        turns(json!([
        {"type": "thinking", "thinking": "let me look", "signature": "c2ln"},
        {"type": "redacted_thinking", "data": "ZW5j"},
        {"type": "thinking", "thinking": "unsigned, dropped"}])),
    );
    assert_eq!(
        v["messages"][1]["content"],
        json!([{"reasoningContent": {"reasoningText": {"text": "let me look", "signature": "c2ln"}}},
            {"reasoningContent": {"redactedContent": "ZW5j"}},
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}])
    );
    assert!(v["additionalModelRequestFields"]["thinking"].is_object());
    // Without it, the continuation runs without thinking rather than being refused.
    let v = build_for(claude, turns(Value::Null));
    assert!(v.get("additionalModelRequestFields").is_none());
    let v = build_for("amazon.nova-pro-v1:0", body);
    assert!(v.get("additionalModelRequestFields").is_none());
    assert_eq!(
        v["inferenceConfig"],
        json!({"maxTokens": 1000, "temperature": 0.3})
    );
    let (_, param) = build_err(json!({"messages": [], "reasoning_effort": "extreme"}));
    assert_eq!(param.as_deref(), Some("reasoning_effort"));
}

#[test]
fn json_schema_output_is_output_config_and_bad_fields_are_400s() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]});
    let v = build(json!({"messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": true}}}));
    let fmt = &v["outputConfig"]["textFormat"];
    assert_eq!(fmt["type"], "json_schema");
    assert_eq!(fmt["structure"]["jsonSchema"]["name"], "thing");
    let sent: Value =
        serde_json::from_str(fmt["structure"]["jsonSchema"]["schema"].as_str().unwrap()).unwrap();
    assert_eq!(sent, schema);
    let v = build(
        json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
    );
    assert!(v.get("outputConfig").is_none());

    for (body, want) in [
        (json!({"messages": "x"}), "messages"),
        (json!({"messages": [], "n": 2}), "n"),
        (json!({"messages": [], "max_tokens": 0}), "max_tokens"),
        (json!({"messages": [], "temperature": "hot"}), "temperature"),
        (json!({"messages": [], "stop": 3}), "stop"),
        (
            json!({"messages": [{"role": "function", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "type": "function",
                "function": {"name": "f", "arguments": "[1]"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": [], "tools": [{"type": "web_search"}]}),
            "tools[0]",
        ),
        (
            json!({"messages": [], "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "tool_choice",
        ),
    ] {
        let (_, param) = build_err(body.clone());
        assert_eq!(param.as_deref(), Some(want), "{body}");
    }
}

// ---- answers ----

const TEXT_ANSWER: &str = include_str!("../../../tests/fixtures/bedrock/text.response.json");
const TOOL_ANSWER: &str = include_str!("../../../tests/fixtures/bedrock/tool_use.response.json");
const TOOL_STREAM: &str = include_str!("../../../tests/fixtures/bedrock/tool_use.events.jsonl");
const EXCEPTION_STREAM: &str = include_str!("../../../tests/fixtures/bedrock/exception.events.jsonl");
/// The same streams as they travel: binary event-stream frames (also the fuzzers' seeds).
const TOOL_STREAM_BYTES: &[u8] = include_bytes!("../../../tests/fixtures/bedrock/tool_use.eventstream");
const EXCEPTION_STREAM_BYTES: &[u8] = include_bytes!("../../../tests/fixtures/bedrock/exception.eventstream");
const THROTTLED: &str = include_str!("../../../tests/fixtures/bedrock/ThrottlingException.error.json");

fn parse(body: &str) -> (Value, Option<tollgate_schemas::TokenUsage>) {
    let p = adapter()
        .parse_response_for(Operation::Chat, Bytes::from(body.to_string()), MODEL)
        .unwrap();
    (serde_json::from_slice(&p.body).unwrap(), p.usage)
}

#[test]
fn converse_answers_become_chat_completions() {
    let (v, usage) = parse(TEXT_ANSWER);
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], MODEL);
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello there", "refusal": null})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 18, "completion_tokens": 7, "total_tokens": 25,
            "prompt_tokens_details": {"cached_tokens": 5}, "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    let u = usage.unwrap();
    assert_eq!(
        (u.input, u.output, u.cached_input, u.cache_write_input),
        (18, 7, 5, 2)
    );

    let (v, _) = parse(TOOL_ANSWER);
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "Let me check.");
    assert_eq!(m["reasoning_content"], "hmm");
    assert_eq!(
        m["thinking_blocks"],
        json!([{"type": "thinking", "thinking": "hmm", "signature": "c2lnbmF0dXJl"},
            {"type": "redacted_thinking", "data": "AAAA"}]),
        "signed and redacted reasoning, for the client to send back"
    );
    assert_eq!(
        m["tool_calls"],
        json!([
            {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "tooluse_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}])
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    for (reason, want) in [
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
    ] {
        let body = format!(
            r#"{{"output":{{"message":{{"role":"assistant","content":[]}}}},"stopReason":"{reason}",
            "usage":{{"inputTokens":1,"outputTokens":0,"totalTokens":1}},"metrics":{{"latencyMs":1}}}}"#
        );
        assert_eq!(parse(&body).0["choices"][0]["finish_reason"], want, "{reason}");
    }
    for bad in ["", "{}", "[1]", r#"{"output":{},"stopReason":5}"#] {
        assert!(
            matches!(
                adapter().parse_response(Operation::Chat, Bytes::from(bad)),
                Err(AdapterError::BadUpstreamBody(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn huge_token_counts_saturate_instead_of_overflowing() {
    // A provider's counts are untrusted: sums of them must neither panic (debug) nor wrap (release).
    let max = u64::MAX;
    let body = format!(
        r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"x"}}]}}}},"stopReason":"end_turn",
        "usage":{{"inputTokens":{max},"outputTokens":{max},"totalTokens":{max},
        "cacheReadInputTokens":5,"cacheWriteInputTokens":7}},"metrics":{{"latencyMs":1}}}}"#
    );
    let (v, usage) = parse(&body);
    let u = usage.unwrap();
    assert_eq!((u.input, u.output, u.cached_input), (max, max, 5));
    assert_eq!(v["usage"]["prompt_tokens"], max);
    assert_eq!(v["usage"]["total_tokens"], max);
}

#[test]
fn errors_are_classified_by_status_and_type() {
    let cases = [
        (
            400,
            r#"{"message":"Malformed input request"}"#,
            "ValidationException",
            false,
        ),
        (
            403,
            r#"{"message":"You don't have access"}"#,
            "AccessDeniedException",
            false,
        ),
        (
            404,
            r#"{"message":"model not found"}"#,
            "ResourceNotFoundException",
            false,
        ),
        (408, r#"{"message":"timed out"}"#, "ModelTimeoutException", true),
        (424, r#"{"message":"model failed"}"#, "ModelErrorException", false),
        (
            429,
            r#"{"message":"Too many requests, please wait before trying again."}"#,
            "ThrottlingException",
            true,
        ),
        (
            429,
            r#"{"message":"Model is not ready for inference"}"#,
            "ModelNotReadyException",
            true,
        ),
        (500, r#"{"message":"internal"}"#, "InternalServerException", true),
        (
            503,
            r#"{"message":"unavailable"}"#,
            "ServiceUnavailableException",
            true,
        ),
        (
            400,
            r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"x"}"#,
            "ValidationException",
            false,
        ),
    ];
    for (status, body, kind, retryable) in cases {
        let e = parse_error(status, body.as_bytes());
        assert_eq!(e.kind.as_deref(), Some(kind), "{status} {body}");
        assert_eq!(e.retryable, retryable, "{status} {body}");
        assert_eq!(e.status, status);
    }
    assert_eq!(
        parse_error(429, THROTTLED.as_bytes()).message,
        "Too many requests, please wait before trying again."
    );
    assert!(parse_error(529, b"{}").retryable);
    let e = parse_error(502, b"<html>bad gateway</html>");
    assert_eq!(e.message, "upstream answered HTTP 502");
    assert!(e.retryable && e.kind.is_none());
}

// ---- streams ----

fn es_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut m = EsMessage::new(Bytes::copy_from_slice(payload));
    for (k, v) in headers {
        m = m.add_header(Header::new(k.to_string(), EsValue::String(v.to_string().into())));
    }
    let mut out = Vec::new();
    write_message_to(&m, &mut out).unwrap();
    out
}

fn es_event(kind: &str, payload: Value) -> Vec<u8> {
    es_message(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// Encodes a fixture (one `{"message-type", "type", "payload"}` per line) as event-stream frames.
fn frames_of(fixture: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in fixture.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let kind = v["message-type"].as_str().unwrap();
        let name = v["type"].as_str().unwrap();
        let type_header = if kind == "exception" {
            ":exception-type"
        } else {
            ":event-type"
        };
        out.extend(es_message(
            &[
                (type_header, name),
                (":content-type", "application/json"),
                (":message-type", kind),
            ],
            v["payload"].to_string().as_bytes(),
        ));
    }
    out
}

/// A stream with reasoning, text and two parallel tool calls (blocks 2 and 3).
fn tool_stream() -> Vec<u8> {
    TOOL_STREAM_BYTES.to_vec()
}

#[test]
fn binary_stream_fixtures_encode_their_jsonl_twins() {
    assert_eq!(frames_of(TOOL_STREAM), TOOL_STREAM_BYTES);
    assert_eq!(frames_of(EXCEPTION_STREAM), EXCEPTION_STREAM_BYTES);
}

/// Feeds `parts` through a framer and a translator; the chunks without their (random) id.
fn run(parts: &[&[u8]], wants_usage: bool) -> (Result<(), AdapterError>, Vec<Value>, BedrockStream) {
    let mut framer = Framer::new(Framing::AwsEventStream);
    let mut t = BedrockStream::new(wants_usage, MODEL);
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut result = Ok(());
    'feed: for p in parts {
        if let Err(e) = framer.feed(p, &mut events) {
            result = Err(e);
            break;
        }
        for e in events.drain(..) {
            if let Err(e) = t.on_event(&e, &mut out) {
                result = Err(e);
                break 'feed;
            }
        }
    }
    if result.is_ok() {
        result = framer.finish(&mut events);
        for e in events.drain(..) {
            if let Err(e) = t.on_event(&e, &mut out) {
                result = Err(e);
            }
        }
    }
    let chunks = out
        .iter()
        .map(|c| {
            let mut v: Value = serde_json::from_slice(c).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk");
            assert_eq!(v["model"], MODEL);
            v.as_object_mut().unwrap().remove("id");
            v.as_object_mut().unwrap().remove("created");
            v
        })
        .collect();
    (result, chunks, t)
}

#[test]
fn stream_translates_reasoning_text_and_parallel_tool_calls() {
    let whole = tool_stream();
    let (result, chunks, t) = run(&[&whole], true);
    result.unwrap();
    assert!(t.finished());
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["delta"])
        .collect();
    assert_eq!(
        deltas[0],
        &json!({"role": "assistant", "reasoning_content": "thinking",
            "thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "thinking"}]})
    );
    assert_eq!(
        deltas[1],
        &json!({"thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "",
            "signature": "c2lnbmF0dXJl"}]})
    );
    assert_eq!(deltas[2], &json!({"content": "Checking"}));
    assert_eq!(
        deltas[3],
        &json!({"tool_calls": [{"index": 0, "id": "tooluse_a", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}}]})
    );
    let args = |i: u64| -> String {
        deltas
            .iter()
            .filter_map(|d| d["tool_calls"].get(0))
            .filter(|c| c["index"] == i)
            .map(|c| c["function"]["arguments"].as_str().unwrap())
            .collect()
    };
    assert_eq!(args(0), r#"{"city": "Paris"}"#);
    assert_eq!(args(1), r#"{"city": "Rome"}"#);
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 26);
    assert_eq!(last["usage"]["completion_tokens"], 9);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    let u = t.usage().unwrap();
    assert_eq!((u.input, u.cached_input, u.cache_write_input), (26, 4, 2));

    // Without include_usage: the same chunks minus the usage one.
    let (_, plain, _) = run(&[&whole], false);
    assert_eq!(plain.len(), chunks.len() - 1);
    assert!(plain.iter().all(|c| c.get("usage").is_none()));
}

#[test]
fn a_streamed_tool_call_without_input_has_empty_object_arguments() {
    // A tool without parameters streams no input (or an empty one); the answer's arguments are
    // `{}` as in a non-streamed answer, not `""`, which clients cannot parse as JSON.
    let mut whole = es_event("messageStart", json!({"role": "assistant"}));
    whole.extend(es_event(
        "contentBlockStart",
        json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_time"}}}),
    ));
    whole.extend(es_event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": ""}}}),
    ));
    whole.extend(es_event("contentBlockStop", json!({"contentBlockIndex": 0})));
    whole.extend(es_event(
        "contentBlockStart",
        json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_b", "name": "get_weather"}}}),
    ));
    whole.extend(es_event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":\"Paris\"}"}}}),
    ));
    whole.extend(es_event("contentBlockStop", json!({"contentBlockIndex": 1})));
    whole.extend(es_event("messageStop", json!({"stopReason": "tool_use"})));
    whole.extend(es_event(
        "metadata",
        json!({"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}, "metrics": {"latencyMs": 1}}),
    ));
    let (result, chunks, _) = run(&[&whole], false);
    result.unwrap();
    let mut args = [String::new(), String::new()];
    for c in &chunks {
        for call in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = call["index"].as_u64().unwrap() as usize;
            args[i].push_str(call["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(args, ["{}".to_string(), r#"{"city":"Paris"}"#.to_string()]);
}

#[test]
fn a_stream_of_many_tool_blocks_is_translated_in_linear_time() {
    // The provider decides how many blocks a stream has; each delta used to scan every block.
    let n = 60_000u64;
    let mut whole = es_event("messageStart", json!({"role": "assistant"}));
    for i in 0..n {
        whole.extend(es_event(
            "contentBlockStart",
            json!({"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": format!("t{i}"), "name": "f"}}}),
        ));
        whole.extend(es_event(
            "contentBlockDelta",
            json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": "{}"}}}),
        ));
        whole.extend(es_event("contentBlockStop", json!({"contentBlockIndex": i})));
    }
    let started = std::time::Instant::now();
    let (result, chunks, _) = run(&[&whole], false);
    let took = started.elapsed();
    result.unwrap();
    assert_eq!(chunks.len() as u64, 2 * n);
    let last = &chunks[chunks.len() - 1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(last["index"], n - 1);
    assert_eq!(last["function"]["arguments"], "{}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn stream_is_identical_whatever_the_split() {
    let whole = tool_stream();
    let (_, expected, _) = run(&[&whole], true);
    for split in 1..whole.len() {
        let (result, chunks, _) = run(&[&whole[..split], &whole[split..]], true);
        result.unwrap();
        assert_eq!(chunks, expected, "split at {split}");
    }
    let bytes: Vec<&[u8]> = whole.chunks(1).collect();
    assert_eq!(run(&bytes, true).1, expected);
}

#[test]
fn stream_exceptions_and_bad_frames_are_stream_errors() {
    let b = EXCEPTION_STREAM_BYTES.to_vec();
    let (result, chunks, _) = run(&[&b], true);
    match result {
        Err(AdapterError::StreamError(m)) => assert_eq!(m, "modelStreamErrorException: the model broke"),
        other => panic!("{other:?}"),
    }
    assert_eq!(chunks.len(), 1, "the text before the exception was delivered");

    let mut throttled = es_event("messageStart", json!({"role": "assistant"}));
    throttled.extend(es_message(
        &[
            (":exception-type", "throttlingException"),
            (":message-type", "exception"),
        ],
        br#"{"message":"Too many tokens"}"#,
    ));
    assert!(
        matches!(run(&[&throttled], false).0, Err(AdapterError::StreamError(m)) if m.contains("throttlingException"))
    );

    // A corrupted payload byte: the message CRC fails, the stream errors, nothing panics.
    let mut corrupt = tool_stream();
    let first = es_event("messageStart", json!({"role": "assistant"})).len();
    corrupt[first + 30] ^= 0x01;
    let (result, _, t) = run(&[&corrupt], true);
    assert!(matches!(result, Err(AdapterError::StreamError(m)) if m.contains("hecksum")));
    assert!(!t.finished());

    // A truncated stream ends in an error at `finish`.
    let whole = tool_stream();
    assert!(run(&[&whole[..whole.len() - 3]], true).0.is_err());

    // Tool input for a block that never started a tool use is an unreadable upstream.
    let bad = es_event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 7, "delta": {"toolUse": {"input": "{"}}}),
    );
    assert!(matches!(
        run(&[&bad], false).0,
        Err(AdapterError::BadUpstreamBody(_))
    ));
}
