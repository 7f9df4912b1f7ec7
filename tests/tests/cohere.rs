//! End-to-end: the real binary in front of the fake Cohere v2 API. OpenAI-shaped requests go in,
//! Cohere requests come out (checked field by field and against Cohere's own OpenAPI spec,
//! `../shared/specs/cohere/cohere-openapi.yaml`), and the answers come back OpenAI-shaped.
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
    fake_cohere::{FakeCohere, MESSAGE_ID, TOOL_CALL_ID, TOOL_PLAN},
    gateway::{temp_dir, Gateway},
};

const CO_KEY: &str = "co-fake-0123456789abcdef";

fn config(base_url: &str) -> String {
    format!(
        r#"
[[providers]]
name = "co"
kind = "cohere"
base_url = "{base_url}"
api_key_env = "CO_KEY"
timeout_ms = 5000
stream_idle_timeout_ms = 3000

[[models]]
name = "command"
targets = [{{ provider = "co", model = "command-fake" }}]

[[models]]
name = "command-tools"
targets = [{{ provider = "co", model = "tools" }}]

[[models]]
name = "command-limited"
targets = [{{ provider = "co", model = "rate-limited" }}]

[[models]]
name = "command-error-event"
targets = [{{ provider = "co", model = "error-event" }}]

[[models]]
name = "command-with-fallback"
targets = [{{ provider = "co", model = "rate-limited" }}, {{ provider = "co", model = "command-fake" }}]

[[models]]
name = "embed"
targets = [{{ provider = "co", model = "embed-fake" }}]
"#
    )
}

async fn setup() -> (FakeCohere, Gateway, String) {
    let fake = FakeCohere::start().await;
    let gw = Gateway::start(&config(&fake.base_url()), &[("CO_KEY", CO_KEY)]).await;
    let key = gw.create_key(&[]).await;
    (fake, gw, key)
}

#[tokio::test]
async fn chat_becomes_a_v2_chat_call_with_bearer_auth() {
    let (fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "command", "user": "end-user-7", "temperature": 0.2, "max_tokens": 100,
            "documents": ["Paris is in France."], "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-provider"], "co");
    assert_eq!(res.headers()["x-tollgate-model"], "command-fake");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], MESSAGE_ID);
    assert_eq!(v["model"], "command-fake", "cohere names no model: the target's");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "fake: hello there", "refusal": null,
            "citations": [{"start": 0, "end": 4, "text": "fake", "type": "TEXT_CONTENT",
                "sources": [{"type": "document", "id": "doc:0", "document": "Paris is in France."}]}]}),
        "citations of the documents ride along as an extension field"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        (
            &v["usage"]["prompt_tokens"],
            &v["usage"]["completion_tokens"],
            &v["usage"]["prompt_tokens_details"]["cached_tokens"]
        ),
        (&json!(11), &json!(7), &json!(5)),
        "billed units, cached tokens"
    );

    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.path, "/v2/chat");
    assert_eq!(sent.headers["authorization"], format!("Bearer {CO_KEY}"));
    assert!(
        !format!("{:?}", sent.headers).contains(&key),
        "client key leaked upstream"
    );
    assert_eq!(
        sent.body,
        json!({"model": "command-fake", "max_tokens": 100, "temperature": 0.2,
            "documents": ["Paris is in France."],
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]})
    );
    let e = &gw.wait_events(1).await[0];
    assert_eq!(
        (
            e["status"].as_u64(),
            e["provider"].as_str(),
            e["served_model"].as_str()
        ),
        (Some(200), Some("co"), Some("command-fake"))
    );
    assert_eq!(
        numbers(e, ["input_tokens", "output_tokens", "cached_input_tokens"]),
        [Some(11), Some(7), Some(5)],
        "{e}"
    );
}

#[tokio::test]
async fn streamed_text_arrives_as_openai_chunks_with_usage() {
    let (fake, gw, key) = setup().await;
    let chunks = gw
        .chat_chunks(
            &key,
            json!({"model": "command", "stream": true, "stream_options": {"include_usage": true},
            "messages": user("stream me please")}),
        )
        .await;
    assert_eq!(fake.requests()[0].body["stream"], true);
    assert!(fake.requests()[0].body.get("stream_options").is_none());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"
        && c["id"] == MESSAGE_ID
        && c["model"] == "command-fake"));
    assert_eq!(content(&chunks), "fake: stream me please");
    assert_eq!(finish_reasons(&chunks), ["stop"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        numbers(&last["usage"], ["prompt_tokens", "completion_tokens"]),
        [Some(11), Some(7)]
    );

    let plain = gw
        .chat_chunks(
            &key,
            json!({"model": "command", "stream": true, "messages": user("x")}),
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
            [Some(11), Some(7), Some(5)],
            "{e}"
        );
        assert!(e["ttft_ms"].is_u64(), "{e}");
    }
}

#[tokio::test]
async fn streamed_tool_call_arguments_reassemble_at_index_0() {
    let (_fake, gw, key) = setup().await;
    let chunks = gw.chat_chunks(&key, json!({"model": "command-tools", "stream": true, "messages": user("weather?"), "tools": [weather_tool()]})).await;
    let calls = streamed_calls(&chunks);
    assert_eq!(calls.len(), 1, "one call, at index 0");
    let (id, name, args) = &calls[0];
    assert_eq!((id.as_str(), name.as_str()), (TOOL_CALL_ID, "get_weather"));
    assert_eq!(
        serde_json::from_str::<Value>(args).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(content(&chunks), TOOL_PLAN);
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);
}

#[tokio::test]
async fn tool_call_and_tool_result_round_trip() {
    let (fake, gw, key) = setup().await;
    let ask = json!([{"role": "user", "content": "weather in Paris?"}]);
    let res = gw
        .chat(&key, json!({"model": "command-tools", "messages": ask, "tools": [weather_tool()], "tool_choice": "required"}))
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let message = v["choices"][0]["message"].clone();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], TOOL_PLAN);
    assert_eq!(
        message["tool_calls"],
        json!([{"id": TOOL_CALL_ID, "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    assert_eq!(fake.requests()[0].body["tool_choice"], "REQUIRED");
    assert_eq!(fake.requests()[0].body["tools"][0], weather_tool());

    let mut turns = ask.as_array().unwrap().clone();
    turns.push(message);
    turns.push(json!({"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": "sunny, 21 C"}));
    let res = gw
        .chat(
            &key,
            json!({"model": "command", "messages": turns, "tools": [weather_tool()]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "fake: weather in Paris? sunny, 21 C"
    );
    let sent = &fake.requests()[1].body;
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "tool_plan": TOOL_PLAN, "tool_calls": [{"id": TOOL_CALL_ID,
            "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": "sunny, 21 C"})
    );

    let res = gw
        .chat(
            &key,
            json!({"model": "command-tools", "messages": user("x"), "tools": [weather_tool()],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        )
        .await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["param"], "tool_choice", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("named tool"),
        "{v}"
    );
    assert_eq!(fake.requests().len(), 2, "a refused request never reaches cohere");
}

#[tokio::test]
async fn embeddings_become_v2_embed_with_usage() {
    let (fake, gw, key) = setup().await;
    let res = gw
        .post(
            &key,
            "/v1/embeddings",
            json!({"model": "embed", "input": ["hello world", "bye"], "encoding_format": "float"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "embed-fake");
    assert_eq!(
        v["data"],
        json!([{"object": "embedding", "index": 0, "embedding": [11.0, 0.5, -0.25]},
               {"object": "embedding", "index": 1, "embedding": [3.0, 0.5, -0.25]}])
    );
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.path, "/v2/embed");
    assert_eq!(
        sent.body,
        json!({"model": "embed-fake", "texts": ["hello world", "bye"], "input_type": "search_document",
            "embedding_types": ["float"]})
    );

    // base64, as the OpenAI SDKs ask by default: little-endian f32 of the float vector.
    let res = gw.post(&key, "/v1/embeddings", json!({"model": "embed", "input": "abcd", "encoding_format": "base64", "input_type": "search_query"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    // 4.0f32 = 00 00 80 40, 0.5f32 = 00 00 00 3f, -0.25f32 = 00 00 80 be
    assert_eq!(v["data"][0]["embedding"], "AACAQAAAAD8AAIC+");
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.body["input_type"], "search_query");
    assert_eq!(sent.body["embedding_types"], json!(["float", "base64"]));

    let events = gw.wait_events(2).await;
    assert!(
        events
            .iter()
            .any(|e| e["input_tokens"] == 3 && e["status"] == 200),
        "{events:?}"
    );

    let res = gw
        .post(
            &key,
            "/v1/embeddings",
            json!({"model": "embed", "input": [[1, 2, 3]]}),
        )
        .await;
    assert_eq!(res.status(), 400);
    let res = gw
        .post(
            &key,
            "/v1/completions",
            json!({"model": "command", "prompt": "x"}),
        )
        .await;
    assert_eq!(res.status(), 400, "no legacy completions");
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn rate_limited_429_falls_over_or_is_returned_as_429() {
    let (fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "command-with-fallback", "messages": user("hi")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-model"], "command-fake");
    let models: Vec<Value> = fake.requests().iter().map(|r| r.body["model"].clone()).collect();
    assert_eq!(models.first(), Some(&json!("rate-limited")));
    assert_eq!(models.last(), Some(&json!("command-fake")));
    let e = &gw.wait_events(1).await[0];
    assert!(e["attempts"].as_u64().unwrap() >= 2, "{e}");

    let res = gw
        .chat(&key, json!({"model": "command-limited", "messages": user("hi")}))
        .await;
    assert_eq!(res.status(), 429);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("Trial key"),
        "{v}"
    );
    assert!(!v.to_string().contains(CO_KEY));
}

#[tokio::test]
async fn stream_ending_in_error_ends_the_stream_with_an_error() {
    let (_fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "command-error-event", "stream": true, "messages": user("hi")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("\"content\":\"fake\""), "{text}");
    assert!(text.contains("internal server error"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let e = &gw.wait_events(1).await[0];
    assert_eq!(e["status"], 502, "{e}");
}

/// What the official OpenAI Python SDK makes of Cohere's answers: it asks for base64 embeddings by
/// default and decodes them as little-endian f32, reassembles streamed tool calls, and parses every
/// answer into its typed models.
const SDK_SCRIPT: &str = r#"
import json, os, openai
c = openai.OpenAI(base_url=os.environ["BASE"], api_key=os.environ["KEY"], max_retries=0)
e = c.embeddings.create(model="embed", input=["abcd", "hello world"])
out = {"vectors": [d.embedding for d in e.data], "model": e.model, "prompt_tokens": e.usage.prompt_tokens}
r = c.chat.completions.create(model="command", messages=[{"role": "user", "content": "hi sdk"}])
out["text"] = r.choices[0].message.content
out["chat_model"] = r.model
calls = {}
stream = c.chat.completions.create(model="command-tools", stream=True, stream_options={"include_usage": True},
    messages=[{"role": "user", "content": "weather?"}],
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
for chunk in stream:
    if chunk.usage:
        out["stream_usage"] = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens]
    for ch in chunk.choices:
        if ch.finish_reason:
            out["finish"] = ch.finish_reason
        for t in ch.delta.tool_calls or []:
            call = calls.setdefault(t.index, {"id": None, "name": None, "args": ""})
            call["id"] = t.id or call["id"]
            call["name"] = (t.function.name if t.function else None) or call["name"]
            call["args"] += (t.function.arguments if t.function else None) or ""
out["calls"] = calls
try:
    c.chat.completions.create(model="command-limited", messages=[{"role": "user", "content": "x"}])
except openai.RateLimitError as err:
    out["rate_limited"] = err.status_code
print("RESULT " + json.dumps(out))
"#;

#[tokio::test]
async fn official_openai_sdk_reads_cohere_answers() {
    let Some(py) = tollgate_tests::env::python() else {
        return;
    };
    let (_fake, gw, key) = setup().await;
    let v = run_sdk_script(&py, SDK_SCRIPT, gw.url("/v1"), &key).await;
    assert_eq!(
        v["vectors"],
        json!([[4.0, 0.5, -0.25], [11.0, 0.5, -0.25]]),
        "base64 decoded by the SDK"
    );
    assert_eq!(
        (&v["model"], &v["prompt_tokens"]),
        (&json!("embed-fake"), &json!(3))
    );
    assert_eq!(v["text"], "fake: hi sdk");
    assert_eq!(v["chat_model"], "command-fake");
    assert_eq!(
        v["calls"],
        json!({"0": {"id": TOOL_CALL_ID, "name": "get_weather", "args": "{\"city\": \"Paris\"}"}})
    );
    assert_eq!(v["finish"], "tool_calls");
    assert_eq!(v["stream_usage"], json!([11, 7]));
    assert_eq!(v["rate_limited"], 429);
}

#[tokio::test]
async fn requests_sent_to_cohere_conform_to_the_spec() {
    let Some([spec]) = specs(["cohere/cohere-openapi.yaml"]) else {
        return;
    };
    let Some(py) = tollgate_tests::env::python() else {
        return;
    };
    let (fake, gw, key) = setup().await;
    let tool_turns = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]);
    let chats = [
        json!({"model": "command", "messages": user("hi")}),
        json!({"model": "command", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
        json!({"model": "command-tools", "messages": user("weather?"), "tools": [weather_tool()], "tool_choice": "auto",
               "parallel_tool_calls": false}),
        json!({"model": "command-tools", "stream": true, "messages": user("weather?"), "tools": [weather_tool()],
               "tool_choice": "required"}),
        json!({"model": "command", "messages": tool_turns, "tools": [weather_tool()], "tool_choice": "none"}),
        json!({"model": "command", "messages": [{"role": "system", "content": "one"}, {"role": "system", "content": [{"type": "text", "text": "two"}]},
            {"role": "user", "content": [{"type": "text", "text": "describe"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "a cat"}], "refusal": null},
            {"role": "user", "content": "and this"}],
            "logprobs": true, "top_logprobs": 3, "n": 1, "seed": 7, "stop": ["\n\n"], "user": "u-42", "temperature": 1.5,
            "top_p": 1, "max_completion_tokens": 64, "metadata": {"team": "a"}, "frequency_penalty": -0.1,
            "presence_penalty": 2, "store": false, "service_tier": "auto", "x_unknown": true,
            "response_format": {"type": "json_schema", "json_schema": {"name": "d", "strict": true, "schema": {"type": "object",
                "properties": {"d": {"type": "string"}}, "required": ["d"], "additionalProperties": false}}}}),
        json!({"model": "command", "messages": user("think"), "reasoning_effort": "high", "response_format": {"type": "json_object"}}),
        json!({"model": "command", "messages": user("penguins?"), "reasoning_effort": "none",
               "documents": ["Emperor penguins are the tallest.", {"id": "d2", "data": {"title": "Habitat", "text": "Antarctica"}}],
               "citation_options": {"mode": "ACCURATE"}, "safety_mode": "OFF", "top_k": 40,
               "tools": [{"type": "function", "function": {"name": "now", "strict": true}}]}),
    ];
    gw.chat_all_ok(&key, &chats).await;
    let embeds = [
        json!({"model": "embed", "input": "one"}),
        json!({"model": "embed", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 256, "user": "u",
               "input_type": "classification", "truncate": "START"}),
    ];
    for body in &embeds {
        let res = gw.post(&key, "/v1/embeddings", body.clone()).await;
        assert_eq!(res.status(), 200, "{body}");
    }
    let dir = temp_dir("cohere-spec");
    let requests = fake.requests();
    assert_eq!(requests.len(), chats.len() + embeds.len());
    for (i, r) in requests.iter().enumerate() {
        let endpoint = r.path.strip_prefix("/v2/").unwrap();
        write_json(&dir.join(format!("{i:02}.{endpoint}.json")), &r.body);
    }
    run_validator(
        &py,
        "validate_cohere.py",
        &[&spec, &dir],
        chats.len() + embeds.len(),
    )
    .await;
    std::fs::remove_dir_all(dir).ok();
}
