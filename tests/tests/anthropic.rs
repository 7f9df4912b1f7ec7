//! End-to-end: the real binary in front of the fake Anthropic Messages API. OpenAI-shaped requests go
//! in, Anthropic requests come out (checked field by field and against Anthropic's own OpenAPI spec,
//! `../shared/specs/anthropic/openapi.json`), and the answers come back OpenAI-shaped.
//!
//! The spec check needs the Python venv `scripts/test.sh` installs (`TOLLGATE_TEST_PYTHON`). Without
//! it, or without the spec, that test says why and skips, except under CI (`CI=true`), where it fails.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use serde_json::{json, Value};
use tollgate_tests::{
    e2e::{
        content, finish_reasons, numbers, run_sdk_script, run_validator, specs, streamed_calls, user,
        weather_tool, write_json,
    },
    fake_anthropic::{FakeAnthropic, MESSAGE_ID, REDACTED, SIGNATURE, THINKING},
    gateway::{temp_dir, Gateway},
};

const ANTH_KEY: &str = "sk-ant-fake-0123456789abcdef";

fn config(base_url: &str) -> String {
    format!(
        r#"
[[providers]]
name = "anth"
kind = "anthropic"
base_url = "{base_url}"
api_key_env = "ANTH_KEY"
timeout_ms = 5000
stream_idle_timeout_ms = 3000

[[models]]
name = "claude"
targets = [{{ provider = "anth", model = "claude-fake" }}]

[[models]]
name = "claude-tools"
targets = [{{ provider = "anth", model = "tools" }}]

[[models]]
name = "claude-thinking"
targets = [{{ provider = "anth", model = "thinking-tools" }}]

[[models]]
name = "claude-overloaded"
targets = [{{ provider = "anth", model = "overloaded" }}]

[[models]]
name = "claude-error-event"
targets = [{{ provider = "anth", model = "error-event" }}]

[[models]]
name = "claude-with-fallback"
targets = [{{ provider = "anth", model = "overloaded" }}, {{ provider = "anth", model = "claude-fake" }}]

[[providers]]
name = "echo"
kind = "echo"

[[models]]
name = "mixed"
targets = [{{ provider = "anth", model = "claude-fake" }}, {{ provider = "echo", model = "echo-embed" }}]
"#
    )
}

async fn setup() -> (FakeAnthropic, Gateway, String) {
    let fake = FakeAnthropic::start().await;
    let gw = Gateway::start(&config(&fake.base_url()), &[("ANTH_KEY", ANTH_KEY)]).await;
    let key = gw.create_key(&[]).await;
    (fake, gw, key)
}

#[tokio::test]
async fn chat_becomes_a_messages_call_with_anthropic_headers() {
    let (fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "claude", "user": "end-user-7", "seed": 1, "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-provider"], "anth");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], MESSAGE_ID);
    assert_eq!(v["model"], "claude-fake");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "fake: hello there", "refusal": null})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"]["prompt_tokens"], 18,
        "11 + 2 cache writes + 5 cache reads"
    );
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 5);

    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], ANTH_KEY);
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(sent.headers.get("authorization").is_none());
    assert!(
        !format!("{:?}", sent.headers).contains(&key),
        "client key leaked upstream"
    );
    assert_eq!(
        sent.body,
        json!({"model": "claude-fake", "max_tokens": 4096, "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
            "metadata": {"user_id": "end-user-7"}})
    );
    let e = &gw.wait_events(1).await[0];
    assert_eq!(
        (
            e["status"].as_u64(),
            e["provider"].as_str(),
            e["served_model"].as_str()
        ),
        (Some(200), Some("anth"), Some("claude-fake"))
    );
    assert_eq!(
        numbers(e, ["input_tokens", "output_tokens", "cached_input_tokens"]),
        [Some(18), Some(7), Some(5)]
    );
    assert_eq!(e["cache_write_input_tokens"], 2, "{e}");
}

#[tokio::test]
async fn streamed_text_arrives_as_openai_chunks_with_usage() {
    let (fake, gw, key) = setup().await;
    let chunks = gw
        .chat_chunks(
            &key,
            json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
            "messages": user("stream me please")}),
        )
        .await;
    assert_eq!(fake.requests()[0].body["stream"], true);
    assert!(fake.requests()[0].body.get("stream_options").is_none());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == MESSAGE_ID));
    assert_eq!(content(&chunks), "fake: stream me please");
    assert_eq!(finish_reasons(&chunks), ["stop"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        numbers(&last["usage"], ["prompt_tokens", "completion_tokens"]),
        [Some(18), Some(7)]
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
            numbers(&e, ["input_tokens", "output_tokens", "cached_input_tokens"]),
            [Some(18), Some(7), Some(5)]
        );
        assert!(e["ttft_ms"].is_u64(), "{e}");
    }
}

#[tokio::test]
async fn streamed_tool_call_arguments_reassemble_at_index_0() {
    let (_fake, gw, key) = setup().await;
    let chunks = gw.chat_chunks(&key, json!({"model": "claude-tools", "stream": true, "messages": user("weather?"), "tools": [weather_tool()]})).await;
    let calls = streamed_calls(&chunks);
    assert_eq!(calls.len(), 1, "one call, at index 0");
    let (id, name, args) = &calls[0];
    assert_eq!(
        (id.as_str(), name.as_str()),
        ("toolu_01FakeWeather", "get_weather")
    );
    assert_eq!(
        serde_json::from_str::<Value>(args).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
}

#[tokio::test]
async fn tool_call_and_tool_result_round_trip() {
    let (fake, gw, key) = setup().await;
    let ask = json!([{"role": "user", "content": "weather in Paris?"}]);
    let res = gw
        .chat(&key, json!({"model": "claude-tools", "messages": ask, "tools": [weather_tool()], "tool_choice": "required"}))
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let message = v["choices"][0]["message"].clone();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], Value::Null);
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "toolu_01FakeWeather", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    assert_eq!(fake.requests()[0].body["tool_choice"], json!({"type": "any"}));

    let mut turns = ask.as_array().unwrap().clone();
    turns.push(message);
    turns.push(json!({"role": "tool", "tool_call_id": "toolu_01FakeWeather", "content": "sunny, 21 C"}));
    let res = gw
        .chat(
            &key,
            json!({"model": "claude", "messages": turns, "tools": [weather_tool()]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "fake: sunny, 21 C");
    let sent = &fake.requests()[1].body;
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_01FakeWeather", "name": "get_weather", "input": {"city": "Paris"}}]})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01FakeWeather", "content": "sunny, 21 C"}]})
    );
}

#[tokio::test]
async fn overloaded_529_falls_over_or_becomes_a_retryable_502() {
    let (fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "claude-with-fallback", "messages": user("hi")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-model"], "claude-fake");
    let models: Vec<Value> = fake.requests().iter().map(|r| r.body["model"].clone()).collect();
    assert_eq!(models, [json!("overloaded"), json!("claude-fake")]);
    let e = &gw.wait_events(1).await[0];
    assert_eq!(e["attempts"], 2, "{e}");

    let res = gw
        .chat(
            &key,
            json!({"model": "claude-overloaded", "messages": user("hi")}),
        )
        .await;
    assert_eq!(res.status(), 502);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "overloaded_error", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("Overloaded"),
        "{v}"
    );
    assert!(!v.to_string().contains(ANTH_KEY));
    let events = gw.wait_events(2).await;
    let failed = events.iter().find(|e| e["status"] == 502).expect("a 502 event");
    assert_eq!(failed["error_type"], "upstream_error");
}

#[tokio::test]
async fn stream_error_event_ends_the_stream_with_an_error() {
    let (_fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "claude-error-event", "stream": true, "messages": user("hi")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("\"content\":\"fake\""), "{text}");
    assert!(text.contains("Overloaded"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let e = &gw.wait_events(1).await[0];
    assert_eq!(e["status"], 502, "{e}");
}

#[tokio::test]
async fn only_chat_is_offered_by_anthropic() {
    let (fake, gw, key) = setup().await;
    for (path, body) in [
        ("/v1/embeddings", json!({"model": "claude", "input": "x"})),
        ("/v1/completions", json!({"model": "claude", "prompt": "x"})),
    ] {
        let res = gw.post(&key, path, body).await;
        assert_eq!(res.status(), 400, "{path}");
        let v: Value = res.json().await.unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("does not support the"),
            "{v}"
        );
    }
    // A model that mixes providers skips the ones that cannot serve the endpoint.
    let res = gw
        .post(&key, "/v1/embeddings", json!({"model": "mixed", "input": "x"}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-provider"], "echo");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn requests_sent_to_anthropic_conform_to_the_spec() {
    let Some([spec]) = specs(["anthropic/openapi.json"]) else {
        return;
    };
    let Some(py) = tollgate_tests::env::python() else {
        return;
    };
    let (fake, gw, key) = setup().await;
    let tool_turns = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]);
    let bodies = [
        json!({"model": "claude", "messages": user("hi")}),
        json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
        json!({"model": "claude-tools", "messages": user("weather?"), "tools": [weather_tool()], "tool_choice": "auto",
               "parallel_tool_calls": false}),
        json!({"model": "claude-tools", "stream": true, "messages": user("weather?"), "tools": [weather_tool()],
               "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        json!({"model": "claude", "messages": tool_turns, "tools": [weather_tool()], "tool_choice": "none"}),
        json!({"model": "claude", "messages": [{"role": "system", "content": "one"}, {"role": "system", "content": "two"},
            {"role": "user", "content": [{"type": "text", "text": "describe"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]},
            {"role": "user", "content": "and this"}],
            "logprobs": true, "top_logprobs": 3, "n": 1, "seed": 7, "stop": ["\n\n"], "user": "u-42", "temperature": 1.5,
            "top_p": 0.9, "max_completion_tokens": 64, "metadata": {"team": "a"}, "frequency_penalty": 0.1,
            "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": {"type": "object",
                "properties": {"d": {"type": "string"}}, "required": ["d"], "additionalProperties": false}}}}),
        json!({"model": "claude", "messages": user("think"), "reasoning_effort": "high", "max_tokens": 100, "temperature": 0.2}),
    ];
    gw.chat_all_ok(&key, &bodies).await;
    let dir = temp_dir("anthropic-spec");
    let requests = fake.requests();
    assert_eq!(requests.len(), bodies.len());
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(r.path, "/v1/messages");
        write_json(&dir.join(format!("{i:02}.messages.json")), &r.body);
    }
    run_validator(&py, "validate_anthropic.py", &[&spec, &dir], bodies.len()).await;
    std::fs::remove_dir_all(dir).ok();
}

/// What a client of the official OpenAI Python SDK does with extended thinking and tools: it appends
/// the SDK's own message object to its history (the `thinking_blocks` extension rides along as an
/// extra field) and sends it back with the tool result; streamed, it rebuilds the blocks from the
/// delta fragments.
const THINKING_SDK_SCRIPT: &str = r#"
import json, os, openai
c = openai.OpenAI(base_url=os.environ["BASE"], api_key=os.environ["KEY"], max_retries=0)
tools = [{"type": "function", "function": {"name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
history = [{"role": "user", "content": "weather in Paris?"}]
r = c.chat.completions.create(model="claude-thinking", messages=history, tools=tools, reasoning_effort="low")
m = r.choices[0].message
out = {"reasoning": m.model_extra.get("reasoning_content"), "blocks": m.model_extra.get("thinking_blocks")}
history += [m, {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": "15 C"}]
c.chat.completions.create(model="claude-thinking", messages=history, tools=tools, reasoning_effort="low")
blocks = {}
for chunk in c.chat.completions.create(model="claude-thinking", messages=history[:1], tools=tools,
                                       reasoning_effort="low", stream=True):
    for ch in chunk.choices:
        for f in (ch.delta.model_extra or {}).get("thinking_blocks") or []:
            b = blocks.setdefault(f["index"], {"type": f["type"]})
            for k in ("thinking", "signature", "data"):
                if k in f:
                    b[k] = b.get(k, "") + f[k]
out["streamed_blocks"] = [blocks[i] for i in sorted(blocks)]
print("RESULT " + json.dumps(out))
"#;

#[tokio::test]
async fn official_openai_sdk_sends_signed_thinking_back_with_the_tool_result() {
    let Some(py) = tollgate_tests::env::python() else {
        return;
    };
    let (fake, gw, key) = setup().await;
    let v = run_sdk_script(&py, THINKING_SDK_SCRIPT, gw.url("/v1"), &key).await;
    let blocks = json!([{"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": REDACTED}]);
    assert_eq!(v["reasoning"], THINKING);
    assert_eq!(v["blocks"], blocks);
    assert_eq!(
        v["streamed_blocks"], blocks,
        "rebuilt from the stream's fragments"
    );

    // The follow-up reached Anthropic with the signed blocks first, and thinking still on.
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    let sent = &requests[1].body;
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    let turn = &sent["messages"][1];
    assert_eq!(turn["role"], "assistant");
    assert_eq!(turn["content"][0], blocks[0]);
    assert_eq!(turn["content"][1], blocks[1]);
    assert_eq!(turn["content"][2]["type"], "tool_use");
    assert_eq!(
        sent["messages"][2]["content"][0]["tool_use_id"],
        "toolu_01FakeWeather"
    );
}
