//! The official OpenAI Python SDK against the running gateway, and the requests Tollgate sends
//! upstream validated against OpenAI's own OpenAPI spec (`../shared/specs/openai/openapi.yaml`).
//!
//! Both need the Python venv `scripts/test.sh` installs (`TOLLGATE_TEST_PYTHON`). Without it, or
//! without the spec, these tests say why and skip, except under CI (`CI=true`), where that fails.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;
use tollgate_tests::env::python;

use serde_json::json;
use tollgate_tests::{
    e2e::{run_python, run_validator, script, specs, weather_tool, write_json},
    fake::FakeProvider,
    gateway::{temp_dir, Gateway},
};

#[tokio::test]
async fn official_openai_python_sdk_works_unchanged() {
    let Some(py) = python() else { return };
    let fake = FakeProvider::start().await;
    let gw = Gateway::start_standard(&fake.base_url(), "").await;
    let key = gw.create_key(&["gpt-*", "tools-*", "embed-*", "echo"]).await;
    let mut cmd = Command::new(py);
    cmd.arg(script("sdk_test.py"))
        .env("TOLLGATE_BASE_URL", gw.url("/v1"))
        .env("TOLLGATE_KEY", key);
    let out = run_python(cmd).await;
    assert!(out.contains(" 0 failed"), "{out}");
}

#[tokio::test]
async fn requests_sent_upstream_conform_to_the_openai_spec() {
    let Some([spec]) = specs(["openai/openapi.yaml"]) else {
        return;
    };
    let Some(py) = python() else { return };
    let fake = FakeProvider::start().await;
    let gw = Gateway::start_standard(&fake.base_url(), "").await;
    let key = gw.create_key(&[]).await;
    let weather = weather_tool();
    let chats = [
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "gpt-test", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
        json!({"model": "tools-test", "messages": [{"role": "user", "content": "weather in Paris?"}],
               "tools": [weather], "tool_choice": "auto", "parallel_tool_calls": true}),
        json!({"model": "tools-test", "messages": [{"role": "user", "content": "weather?"}], "tools": [weather],
               "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        json!({"model": "gpt-test", "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}], "tools": [weather]}),
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "describe"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}}]}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "d", "strict": true,
                "schema": {"type": "object", "properties": {"d": {"type": "string"}}, "required": ["d"], "additionalProperties": false}}},
            "logprobs": true, "top_logprobs": 3, "n": 1, "seed": 7, "stop": ["\n\n"], "user": "u-42",
            "temperature": 0.5, "max_completion_tokens": 64, "reasoning_effort": "medium", "metadata": {"team": "a"}}),
    ];
    gw.chat_all_ok(&key, &chats).await;
    let r = gw
        .post(
            &key,
            "/v1/embeddings",
            json!({"model": "embed-test", "input": ["a", "b"], "encoding_format": "float"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = gw
        .post(
            &key,
            "/v1/completions",
            json!({"model": "gpt-test", "prompt": "say hi", "max_tokens": 8, "echo": false}),
        )
        .await;
    assert_eq!(r.status(), 200);

    let dir = temp_dir("spec");
    let requests = fake.requests();
    assert_eq!(requests.len(), 9);
    for (i, r) in requests.iter().enumerate() {
        let endpoint = match r.path.as_str() {
            "/v1/chat/completions" => "chat",
            "/v1/completions" => "completions",
            "/v1/embeddings" => "embeddings",
            other => panic!("unexpected upstream path {other}"),
        };
        write_json(&dir.join(format!("{i:02}.{endpoint}.json")), &r.body);
    }
    run_validator(&py, "validate_openai.py", [&spec, &dir], 9).await;
    std::fs::remove_dir_all(dir).ok();
}
