//! End-to-end: the real binary in front of the fake AWS Bedrock Runtime. OpenAI-shaped requests go in;
//! SigV4-signed Converse / ConverseStream requests come out (the fake recomputes every signature and
//! answers 403 to a bad one; the bodies are checked field by field and against the Bedrock Runtime
//! spec, `../shared/specs/bedrock/bedrock-runtime.openapi.json`); the JSON answers and binary event
//! streams come back as OpenAI chat completions and SSE chunks.
//!
//! The spec check needs the Python venv `scripts/test.sh` installs (`TOLLGATE_TEST_PYTHON`). Without
//! it, or without the spec, that test says why and skips, except under CI (`CI=true`), where it fails.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{ffi::OsStr, path::PathBuf};

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::HeaderValue;
use serde_json::{json, Value};
use tollgate_tests::{
    e2e::{
        content, finish_reasons, numbers, run_validator, specs, streamed_calls, user, weather_tool,
        write_json,
    },
    fake_bedrock::{Answer, AwsAccount, FakeBedrock},
    gateway::{temp_dir, Gateway},
};

const KEY_ID: &str = "AKIDTOLLGATETEST01";
const SECRET: &str = "tollgate/Test+Secret+Access+Key+0123456789";
const TOKEN: &str = "FwoGZXIvYXdzEFakeSessionToken0123456789";
const REGION: &str = "eu-central-1";
const MODEL: &str = "anthropic.claude-fake-v1:0";
const API_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS1mYWtlLTAxMjM0NTY3ODk=";

fn account() -> AwsAccount {
    AwsAccount {
        access_key_id: KEY_ID.into(),
        secret_access_key: SECRET.into(),
        session_token: Some(TOKEN.into()),
        region: REGION.into(),
        api_key: Some(API_KEY.into()),
    }
}

fn config(base_url: &str) -> String {
    format!(
        r#"
[[providers]]
name = "aws"
kind = "bedrock"
base_url = "{base_url}"
region = "{REGION}"
aws_access_key_id_env = "TG_AWS_KEY_ID"
aws_secret_access_key_env = "TG_AWS_SECRET"
aws_session_token_env = "TG_AWS_TOKEN"
timeout_ms = 5000
stream_idle_timeout_ms = 3000

[[providers]]
name = "aws-unset"
kind = "bedrock"
base_url = "{base_url}"
region = "{REGION}"
aws_access_key_id_env = "TG_AWS_UNSET_ID"
aws_secret_access_key_env = "TG_AWS_UNSET_SECRET"

[[providers]]
name = "aws-wrong"
kind = "bedrock"
base_url = "{base_url}"
region = "{REGION}"
aws_access_key_id_env = "TG_AWS_KEY_ID"
aws_secret_access_key_env = "TG_AWS_WRONG_SECRET"
aws_session_token_env = "TG_AWS_TOKEN"

[[providers]]
name = "aws-key"
kind = "bedrock"
base_url = "{base_url}"
region = "{REGION}"
api_key_env = "TG_BEDROCK_API_KEY"

[[models]]
name = "claude"
targets = [{{ provider = "aws", model = "{MODEL}" }}]

[[models]]
name = "claude-api-key"
targets = [{{ provider = "aws-key", model = "{MODEL}" }}]

[[models]]
name = "tools"
targets = [{{ provider = "aws", model = "fake.tools-v1:0" }}]

[[models]]
name = "reasoning"
targets = [{{ provider = "aws", model = "anthropic.reasoning-v1:0" }}]

[[models]]
name = "throttled"
targets = [{{ provider = "aws", model = "fake.throttled-v1:0" }}]

[[models]]
name = "throttled-with-fallback"
targets = [{{ provider = "aws", model = "fake.throttled-v1:0" }}, {{ provider = "aws", model = "{MODEL}" }}]

[[models]]
name = "stream-exception"
targets = [{{ provider = "aws", model = "fake.stream-exception-v1:0" }}]

[[models]]
name = "bad-checksum"
targets = [{{ provider = "aws", model = "fake.bad-checksum-v1:0" }}]

[[models]]
name = "no-credentials"
targets = [{{ provider = "aws-unset", model = "{MODEL}" }}]

[[models]]
name = "wrong-secret"
targets = [{{ provider = "aws-wrong", model = "{MODEL}" }}]
"#
    )
}

async fn setup() -> (FakeBedrock, Gateway, String) {
    let fake = FakeBedrock::start(account()).await;
    let gw = Gateway::start(
        &config(&fake.base_url()),
        &[
            ("TG_AWS_KEY_ID", KEY_ID),
            ("TG_AWS_SECRET", SECRET),
            ("TG_AWS_TOKEN", TOKEN),
            ("TG_AWS_WRONG_SECRET", "wrong/Secret+Access+Key+000000000000000"),
            ("TG_BEDROCK_API_KEY", API_KEY),
        ],
    )
    .await;
    let key = gw.create_key(&[]).await;
    (fake, gw, key)
}

#[tokio::test]
async fn chat_becomes_a_signed_converse_call() {
    let (fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "claude", "user": "u-1", "seed": 1, "max_tokens": 300, "temperature": 0.4,
            "stop": ["END"], "messages": [{"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-provider"], "aws");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["model"], MODEL);
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "fake: hello there", "refusal": null})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"]["prompt_tokens"], 18,
        "11 + 5 cache reads + 2 cache writes"
    );
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(v["usage"]["total_tokens"], 25);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 5);

    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.path, "/model/anthropic.claude-fake-v1%3A0/converse");
    let auth = sent.headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/"))
            && auth.contains(&format!("/{REGION}/bedrock/aws4_request")),
        "{auth}"
    );
    assert!(sent.headers.contains_key("x-amz-date"));
    assert_eq!(sent.headers["x-amz-security-token"], TOKEN);
    assert!(!format!("{:?}", sent.headers).contains(SECRET));
    assert!(
        !format!("{:?}", sent.headers).contains(&key),
        "client key leaked upstream"
    );
    assert_eq!(
        sent.body,
        json!({"messages": [{"role": "user", "content": [{"text": "hello there"}]}],
            "system": [{"text": "be brief"}],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.4, "stopSequences": ["END"]}})
    );
    let e = &gw.wait_events(1).await[0];
    assert_eq!(
        (
            e["status"].as_u64(),
            e["provider"].as_str(),
            e["served_model"].as_str()
        ),
        (Some(200), Some("aws"), Some(MODEL))
    );
    assert_eq!(
        numbers(
            e,
            [
                "input_tokens",
                "output_tokens",
                "cached_input_tokens",
                "cache_write_input_tokens"
            ]
        ),
        [Some(18), Some(7), Some(5), Some(2)],
        "{e}"
    );
    assert!(!gw.logs().contains(SECRET) && !gw.logs().contains(TOKEN));
}

#[tokio::test]
async fn event_stream_arrives_as_openai_chunks_with_usage() {
    let (fake, gw, key) = setup().await;
    let chunks = gw
        .chat_chunks(
            &key,
            json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
            "messages": user("stream me please")}),
        )
        .await;
    assert_eq!(
        fake.requests()[0].path,
        "/model/anthropic.claude-fake-v1%3A0/converse-stream"
    );
    assert!(fake.requests()[0].body.get("stream_options").is_none());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let id = chunks[0]["id"].clone();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == id && c["model"] == MODEL));
    assert_eq!(content(&chunks), "fake: stream me please");
    assert_eq!(finish_reasons(&chunks), ["stop"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        (
            last["usage"]["prompt_tokens"].as_u64(),
            last["usage"]["completion_tokens"].as_u64(),
            last["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64()
        ),
        (Some(18), Some(7), Some(5))
    );

    let plain = gw
        .chat_chunks(
            &key,
            json!({"model": "claude", "stream": true, "messages": user("x")}),
        )
        .await;
    assert!(
        plain.iter().all(|c| c.get("usage").is_none()),
        "usage chunk only when asked"
    );
    for e in gw.wait_events(2).await {
        assert!(e["streamed"] == true && e["status"] == 200, "{e}");
        assert_eq!(
            numbers(
                &e,
                [
                    "input_tokens",
                    "output_tokens",
                    "cached_input_tokens",
                    "cache_write_input_tokens"
                ]
            ),
            [Some(18), Some(7), Some(5), Some(2)],
            "{e}"
        );
        assert!(e["ttft_ms"].is_u64(), "{e}");
    }
}

#[tokio::test]
async fn reasoning_comes_back_with_its_signature_and_goes_back_upstream() {
    let (fake, gw, key) = setup().await;
    let res = gw
        .chat(&key, json!({"model": "reasoning", "messages": user("why?")}))
        .await;
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], "let me think");
    assert_eq!(v["choices"][0]["message"]["content"], "fake: why?");
    assert_eq!(
        v["choices"][0]["message"]["thinking_blocks"],
        json!([{"type": "thinking", "thinking": "let me think", "signature": "c2lnbmF0dXJl"}])
    );
    let chunks = gw
        .chat_chunks(
            &key,
            json!({"model": "reasoning", "stream": true, "messages": user("why?")}),
        )
        .await;
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, "let me think");
    assert_eq!(content(&chunks), "fake: why?");
    let fragments: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["thinking_blocks"].as_array())
        .flatten()
        .collect();
    assert_eq!(
        fragments,
        [
            &json!({"index": 0, "type": "thinking", "thinking": "let me think"}),
            &json!({"index": 0, "type": "thinking", "thinking": "", "signature": "c2lnbmF0dXJl"})
        ]
    );

    // Sent back with a tool continuation, the signed reasoning opens the assistant turn.
    let res = gw
        .chat(
            &key,
            json!({"model": "claude", "reasoning_effort": "low", "tools": [weather_tool()], "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "thinking_blocks": v["choices"][0]["message"]["thinking_blocks"],
                    "tool_calls": [{"id": "t1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let sent = fake.requests().pop().unwrap().body;
    assert_eq!(
        sent["messages"][1]["content"][0],
        json!({"reasoningContent": {"reasoningText": {"text": "let me think", "signature": "c2lnbmF0dXJl"}}})
    );
    assert_eq!(
        sent["additionalModelRequestFields"]["thinking"]["type"], "enabled",
        "thinking stays on"
    );
}

#[tokio::test]
async fn parallel_tool_calls_and_tool_results_round_trip() {
    let (fake, gw, key) = setup().await;
    let ask = json!([{"role": "user", "content": "weather in Paris and Rome?"}]);
    let res = gw
        .chat(
            &key,
            json!({"model": "tools", "messages": ask, "tools": [weather_tool()], "tool_choice": "required"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let message = v["choices"][0]["message"].clone();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], Value::Null);
    assert_eq!(
        message["tool_calls"],
        json!([
            {"id": "tooluse_FakeParis01", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "tooluse_FakeRome002", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}])
    );
    assert_eq!(
        fake.requests()[0].body["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "get_weather", "description": "weather",
            "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}}}}], "toolChoice": {"any": {}}})
    );

    // Both results go back in one user turn; the fake answers with their texts.
    let mut turns = ask.as_array().unwrap().clone();
    turns.push(message);
    turns.push(json!({"role": "tool", "tool_call_id": "tooluse_FakeParis01", "content": "sunny"}));
    turns.push(json!({"role": "tool", "tool_call_id": "tooluse_FakeRome002", "content": "rainy"}));
    let res = gw
        .chat(
            &key,
            json!({"model": "claude", "messages": turns, "tools": [weather_tool()]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "fake: sunny rainy");
    let sent = &fake.requests()[1].body;
    assert_eq!(sent["messages"].as_array().unwrap().len(), 3);
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_FakeParis01", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_FakeRome002", "name": "get_weather", "input": {"city": "Rome"}}}]})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_FakeParis01", "content": [{"text": "sunny"}]}},
            {"toolResult": {"toolUseId": "tooluse_FakeRome002", "content": [{"text": "rainy"}]}}]})
    );

    // Streamed: each call keeps its own index, arguments reassemble per call.
    let chunks = gw
        .chat_chunks(
            &key,
            json!({"model": "tools", "stream": true, "messages": ask, "tools": [weather_tool()]}),
        )
        .await;
    let calls = streamed_calls(&chunks);
    let ids: Vec<&str> = calls.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["tooluse_FakeParis01", "tooluse_FakeRome002"]);
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&calls[1].2).unwrap(),
        json!({"city": "Rome"})
    );
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
}

#[tokio::test]
async fn images_go_inline_and_image_urls_are_refused() {
    let (fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "claude", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        fake.requests()[0].body["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}})
    );
    let res = gw
        .chat(
            &key,
            json!({"model": "claude", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
        )
        .await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], "messages[0].content[0]");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("data: URL"),
        "{v}"
    );
    assert_eq!(
        fake.requests().len(),
        1,
        "the refused request never went upstream"
    );
}

#[tokio::test]
async fn throttling_is_a_retryable_429_that_falls_over() {
    let (fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "throttled-with-fallback", "messages": user("hi")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-model"], MODEL);
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/model/fake.throttled-v1%3A0/converse",
            "/model/anthropic.claude-fake-v1%3A0/converse"
        ]
    );
    let e = &gw.wait_events(1).await[0];
    assert_eq!(e["attempts"], 2, "{e}");

    let res = gw
        .chat(&key, json!({"model": "throttled", "messages": user("hi")}))
        .await;
    assert_eq!(res.status(), 429);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert_eq!(v["error"]["code"], "ThrottlingException", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Too many requests"),
        "{v}"
    );
}

#[tokio::test]
async fn stream_exception_ends_the_stream_with_an_error() {
    let (_fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "stream-exception", "stream": true, "messages": user("hi")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("\"content\":\"fake\""), "{text}");
    assert!(text.contains("modelStreamErrorException"), "{text}");
    assert!(text.contains("The model stream broke off."), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let e = &gw.wait_events(1).await[0];
    assert_eq!(e["status"], 502, "{e}");
    assert_eq!(e["error_type"], "upstream_error", "{e}");
}

#[tokio::test]
async fn corrupted_frame_is_a_stream_error_not_a_crash() {
    let (_fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "bad-checksum", "stream": true, "messages": user("hi")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("\"content\":\"fake\""), "{text}");
    assert!(text.contains("checksum"), "{text}");
    assert!(!text.contains("corrupted") && !text.contains("[DONE]"), "{text}");
    let e = &gw.wait_events(1).await[0];
    assert_eq!(e["status"], 502, "{e}");
    // The gateway lives on.
    let res = gw
        .chat(&key, json!({"model": "claude", "messages": user("still there?")}))
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_bedrock_api_key_is_sent_as_a_bearer_token() {
    let (fake, gw, key) = setup().await;
    let chunks = gw
        .chat_chunks(
            &key,
            json!({"model": "claude-api-key", "stream": true, "messages": user("hi")}),
        )
        .await;
    assert_eq!(content(&chunks), "fake: hi");
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.headers["authorization"], format!("Bearer {API_KEY}"));
    assert!(sent.headers.get("x-amz-date").is_none());
    assert!(!gw.logs().contains(API_KEY));
}

#[tokio::test]
async fn missing_or_wrong_credentials_never_leak() {
    let (fake, gw, key) = setup().await;
    // Credentials unset: the provider is skipped by routing.
    let res = gw
        .chat(&key, json!({"model": "no-credentials", "messages": user("hi")}))
        .await;
    assert_eq!(res.status(), 503);
    assert!(fake.requests().is_empty());
    // A wrong secret: the fake's signature check fails (403), which the client sees as a gateway
    // problem, without any credential in the answer or the logs.
    let res = gw
        .chat(&key, json!({"model": "wrong-secret", "messages": user("hi")}))
        .await;
    assert_eq!(res.status(), 502);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("signature"),
        "{v}"
    );
    let logs = gw.logs();
    for secret in [SECRET, TOKEN, "wrong/Secret+Access+Key"] {
        assert!(!v.to_string().contains(secret), "{v}");
        assert!(!logs.contains(secret), "secret in logs");
    }
}

/// A recorded event stream as `validate_bedrock.py` reads it: one decoded message per line.
fn events_jsonl(frames: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for f in frames {
        let m = read_message_from(&mut &f[..]).expect("the fake's frames decode");
        let header = |name: &str| {
            m.headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| match h.value() {
                    HeaderValue::String(s) => Some(s.as_str().to_string()),
                    _ => None,
                })
        };
        let kind = header(":message-type").expect(":message-type");
        let name = header(":event-type")
            .or_else(|| header(":exception-type"))
            .expect("a type header");
        let payload: Value = serde_json::from_slice(m.payload()).expect("JSON payload");
        out.push_str(&json!({"message-type": kind, "type": name, "payload": payload}).to_string());
        out.push('\n');
    }
    out
}

/// Every request body the fake received is validated against the OpenAPI spec's `ConverseRequest`
/// / `ConverseStreamRequest`, and every answer the fake gave (JSON, error and event-stream messages)
/// against the service model's shapes, so neither side of the fake drifts from Bedrock's.
#[tokio::test]
async fn requests_sent_to_bedrock_conform_to_the_spec() {
    let Some([spec, service_model]) =
        specs(["bedrock/bedrock-runtime.openapi.json", "bedrock/service-2.json"])
    else {
        return;
    };
    let model_flag = format!("--service-model={}", service_model.display());
    let Some(py) = tollgate_tests::env::python() else {
        return;
    };
    let (fake, gw, key) = setup().await;
    let tool_turns = json!([
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]}]);
    let bodies = [
        json!({"model": "claude", "messages": user("hi")}),
        json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
        json!({"model": "tools", "messages": user("weather?"), "tools": [weather_tool()], "tool_choice": "auto",
               "parallel_tool_calls": false}),
        json!({"model": "tools", "stream": true, "messages": user("weather?"), "tools": [weather_tool()],
               "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        json!({"model": "claude", "messages": tool_turns, "tools": [weather_tool()], "tool_choice": "none"}),
        json!({"model": "claude", "messages": tool_turns}),
        json!({"model": "claude", "messages": [
            {"role": "system", "content": [{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": "two"},
            {"role": "user", "content": [{"type": "text", "text": "describe"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "file", "file": {"filename": "notes v2.md", "file_data": "data:text/markdown;base64,IyBoaQ=="}},
                {"type": "text", "text": "cached", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {"role": "user", "content": "and this"}],
            "logprobs": true, "top_logprobs": 3, "n": 1, "seed": 7, "stop": ["\n\n"], "user": "u-42", "temperature": 1.5,
            "top_p": 0.9, "max_completion_tokens": 64, "metadata": {"team": "a"}, "frequency_penalty": 0.1,
            "service_tier": "flex",
            "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": {"type": "object",
                "properties": {"d": {"type": "string"}}, "required": ["d"], "additionalProperties": false}}}}),
        json!({"model": "claude", "messages": user("think"), "reasoning_effort": "high", "max_tokens": 100, "temperature": 0.2}),
        json!({"model": "reasoning", "stream": true, "messages": user("think"), "reasoning_effort": "low"}),
        json!({"model": "claude", "reasoning_effort": "medium", "tools": [weather_tool()], "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Checking.", "thinking_blocks": [
                {"type": "thinking", "thinking": "look it up", "signature": "c2lnbmF0dXJl"},
                {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"}],
                "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"}]}),
    ];
    gw.chat_all_ok(&key, &bodies).await;
    // Answers of the error paths, for the shape check.
    for model in ["throttled", "stream-exception"] {
        let body = json!({"model": model, "stream": model != "throttled", "messages": user("hi")});
        gw.chat(&key, body).await.bytes().await.unwrap();
    }
    let dir = temp_dir("bedrock-spec");
    let requests = fake.requests();
    assert_eq!(requests.len(), bodies.len() + 2);
    for (i, r) in requests.iter().enumerate() {
        let op = r.path.rsplit('/').next().unwrap();
        assert!(op == "converse" || op == "converse-stream", "{}", r.path);
        write_json(&dir.join(format!("{i:02}.{op}.json")), &r.body);
    }
    let answers = fake.answers();
    assert_eq!(answers.len(), requests.len());
    for (i, a) in answers.iter().enumerate() {
        let (name, text) = match a {
            Answer::Json(v) => (format!("{i:02}.response.json"), v.to_string()),
            Answer::Error { kind, body } => (format!("{i:02}.{kind}.error.json"), body.to_string()),
            Answer::Stream(frames) => (format!("{i:02}.events.jsonl"), events_jsonl(frames)),
        };
        std::fs::write(dir.join(name), text).unwrap();
    }
    let files = requests.len() + answers.len();
    let args = [OsStr::new(&model_flag), spec.as_os_str(), dir.as_os_str()];
    run_validator(&py, "validate_bedrock.py", args, files).await;
    std::fs::remove_dir_all(dir).ok();
}

/// The adapter tests' fixtures (`tests/fixtures/bedrock/`) follow the service model too.
#[tokio::test]
async fn fixtures_follow_the_service_model() {
    let Some([spec, service_model]) =
        specs(["bedrock/bedrock-runtime.openapi.json", "bedrock/service-2.json"])
    else {
        return;
    };
    let model_flag = format!("--service-model={}", service_model.display());
    let Some(py) = tollgate_tests::env::python() else {
        return;
    };
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/bedrock");
    // The `.eventstream` files are the binary twins of the `.events.jsonl` ones (an adapter test
    // checks they match).
    let count = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.ends_with(".json") || name.ends_with(".jsonl")
        })
        .count();
    assert!(count >= 5, "fixtures missing");
    let args = [OsStr::new(&model_flag), spec.as_os_str(), fixtures.as_os_str()];
    run_validator(&py, "validate_bedrock.py", args, count).await;
}
