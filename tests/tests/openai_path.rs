//! End-to-end: the real binary in front of the fake OpenAI-compatible provider.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tollgate_tests::{
    e2e::numbers,
    fake::FakeProvider,
    gateway::{standard_config, Gateway, ADMIN_KEY, PROVIDER_KEY},
};

async fn setup() -> (FakeProvider, Gateway, String) {
    setup_with("").await
}

async fn setup_with(extra: &str) -> (FakeProvider, Gateway, String) {
    let fake = FakeProvider::start().await;
    let gw = Gateway::start_standard(&fake.base_url(), extra).await;
    let key = gw
        .create_key(&["gpt-*", "tools-*", "embed-*", "echo", "fallback-*", "timeout-*"])
        .await;
    (fake, gw, key)
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// Reads an SSE body into its `data:` payloads.
async fn sse_payloads(res: reqwest::Response) -> Vec<String> {
    let text = res.text().await.expect("body");
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn chat_passes_every_field_through_and_replaces_model() {
    let (fake, gw, key) = setup().await;
    let body = json!({
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
            ]}
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}},
        "logprobs": true, "top_logprobs": 2, "n": 2, "seed": 42, "stop": ["END"], "user": "end-user-7",
        "reasoning_effort": "low", "temperature": 0.2, "max_completion_tokens": 50,
        "x_vendor_extension": {"keep": ["me", 1]}
    });
    let res = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-request-id", "client-req-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "client-req-1");
    assert_eq!(res.headers()["x-tollgate-provider"], "fake");
    assert_eq!(res.headers()["x-tollgate-model"], "up-gpt");
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "fake: what is this?");
    assert_eq!(answer["system_fingerprint"], "fp_fake");

    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    let mut expected = body.clone();
    expected["model"] = json!("up-gpt");
    assert_eq!(
        sent.body, expected,
        "the upstream body must equal the client's, model aside"
    );
    assert_eq!(sent.headers["authorization"], format!("Bearer {PROVIDER_KEY}"));
    assert_eq!(sent.headers["x-request-id"], "client-req-1");
    assert!(
        !format!("{:?}", sent.headers).contains(&key),
        "client key leaked upstream"
    );
}

#[tokio::test]
async fn stream_forwards_chunks_asks_for_usage_and_strips_it_unless_asked() {
    let (fake, gw, key) = setup().await;
    let res = gw
        .chat(
            &key,
            json!({"model": "gpt-test", "stream": true, "messages": user("stream me please")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let payloads = sse_payloads(res).await;
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "usage chunk must be stripped"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "fake: stream me please");
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.body["stream_options"]["include_usage"], true);

    let res = gw
        .chat(&key, json!({"model": "gpt-test", "stream": true, "stream_options": {"include_usage": true}, "messages": user("x")}))
        .await;
    let payloads = sse_payloads(res).await;
    let last: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(last["usage"]["completion_tokens"], 7);

    let events = gw.wait_events(2).await;
    for e in &events {
        assert_eq!(e["streamed"], true);
        assert_eq!(
            numbers(e, ["input_tokens", "output_tokens", "cached_input_tokens"]),
            [Some(11), Some(7), Some(3)]
        );
        assert!(
            e["ttft_ms"].is_u64(),
            "stream events carry time to first token: {e}"
        );
        assert_eq!(e["status"], 200);
        assert_eq!(e["cancelled"], false);
    }
}

#[tokio::test]
async fn streamed_tool_call_arguments_keep_their_index() {
    let (_fake, gw, key) = setup().await;
    let res = gw.chat(&key, json!({"model": "tools-test", "stream": true, "messages": user("weather?"),
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})).await;
    let payloads = sse_payloads(res).await;
    let mut args = String::new();
    let mut finish = None;
    for p in &payloads[..payloads.len() - 1] {
        let c: Value = serde_json::from_str(p).unwrap();
        if let Some(calls) = c["choices"][0]["delta"]["tool_calls"].as_array() {
            assert_eq!(calls[0]["index"], 0);
            args.push_str(calls[0]["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn one_usage_event_per_request_with_filters_and_paging() {
    let (_fake, gw, key) = setup().await;
    let other = gw.create_key(&["echo"]).await;
    for _ in 0..3 {
        assert_eq!(
            gw.chat(
                &key,
                json!({"model": "gpt-test", "messages": user("hi"), "user": "u-1"})
            )
            .await
            .status(),
            200
        );
    }
    assert_eq!(
        gw.chat(
            &other,
            json!({"model": "echo", "messages": user("one two three")})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        gw.chat("tg-wrong", json!({"model": "echo", "messages": user("x")}))
            .await
            .status(),
        401
    );
    let all = gw.wait_events(5).await;
    assert_eq!(all.len(), 5);
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert_eq!(all[0]["status"], 401);
    assert!(all[0]["key_id"].is_null());
    let echo = &all[1];
    assert_eq!(
        (echo["provider"].as_str(), echo["served_model"].as_str()),
        (Some("echo"), Some("echo"))
    );
    assert_eq!(
        numbers(echo, ["input_tokens", "output_tokens"]),
        [Some(3), Some(3)]
    );
    let fake_event = &all[2];
    assert_eq!(fake_event["user"], "u-1");
    assert_eq!(fake_event["requested_model"], "gpt-test");
    assert_eq!(fake_event["served_model"], "up-gpt");
    assert!(fake_event["ttft_ms"].is_null());
    let key_id = fake_event["key_id"].as_str().unwrap().to_string();

    let page = gw.events(&format!("key_id={key_id}&limit=2")).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next"].as_str().unwrap();
    let rest = gw
        .events(&format!("key_id={key_id}&limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert!(rest["next"].is_null());
    let future = gw.events("from=2100-01-01T00:00:00Z").await;
    assert!(future["data"].as_array().unwrap().is_empty());
    let past = gw.events("to=946684800").await;
    assert!(past["data"].as_array().unwrap().is_empty());
    let bad = gw.get(ADMIN_KEY, "/admin/usage/events?from=yesterday").await;
    assert_eq!(bad.status(), 400);
}

async fn expect_error(res: reqwest::Response, status: u16, param: Option<&str>, code: Option<&str>) -> Value {
    assert_eq!(res.status(), status);
    let v: Value = res.json().await.unwrap();
    let err = &v["error"];
    for field in ["message", "type", "param", "code"] {
        assert!(err.get(field).is_some(), "missing {field} in {v}");
    }
    if let Some(p) = param {
        assert_eq!(err["param"], p, "{v}");
    }
    if let Some(c) = code {
        assert_eq!(err["code"], c, "{v}");
    }
    v
}

#[tokio::test]
async fn client_errors_are_openai_shaped() {
    let (_fake, gw, key) = setup().await;
    let post = |body: &'static str, k: Option<&str>| {
        let mut r = gw
            .http
            .post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = k {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    expect_error(post("{not json", Some(&key)).await.unwrap(), 400, None, None).await;
    expect_error(
        post(r#"{"model":"gpt-test"}"#, Some(&key)).await.unwrap(),
        400,
        Some("messages"),
        None,
    )
    .await;
    expect_error(
        post(r#"{"messages":[{"role":"user","content":"x"}]}"#, Some(&key))
            .await
            .unwrap(),
        400,
        Some("model"),
        None,
    )
    .await;
    expect_error(
        post(r#"{"model":"gpt-test","messages":[]}"#, None).await.unwrap(),
        401,
        None,
        Some("invalid_api_key"),
    )
    .await;
    expect_error(
        post(r#"{"model":"gpt-test","messages":[]}"#, Some("tg-nope"))
            .await
            .unwrap(),
        401,
        None,
        None,
    )
    .await;
    let body = r#"{"model":"secret-model","messages":[{"role":"user","content":"x"}]}"#;
    expect_error(
        post(body, Some(&key)).await.unwrap(),
        403,
        None,
        Some("model_not_allowed"),
    )
    .await;
    let body = r#"{"model":"no-such","messages":[{"role":"user","content":"x"}]}"#;
    expect_error(
        post(body, Some(&key)).await.unwrap(),
        404,
        Some("model"),
        Some("model_not_found"),
    )
    .await;
    // The key also works in the `api-key` and `x-api-key` headers (Azure and Anthropic SDKs).
    for header in ["api-key", "x-api-key"] {
        let r = gw
            .http
            .post(gw.url("/v1/chat/completions"))
            .header(header, &key)
            .json(&json!({"model": "echo", "messages": user("hi")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{header}");
    }
    let r = gw.http.get(gw.url("/v1/nothing-here")).send().await.unwrap();
    expect_error(r, 404, None, None).await;
    let r = gw.http.get(gw.url("/v1/chat/completions")).send().await.unwrap();
    expect_error(r, 405, None, None).await;
}

#[tokio::test]
async fn oversized_body_is_413_and_env_overrides_config() {
    let fake = FakeProvider::start().await;
    let gw = Gateway::start(
        &standard_config(&fake.base_url()),
        &[
            ("FAKE_PROVIDER_KEY", PROVIDER_KEY),
            ("TOLLGATE__SERVER__MAX_BODY_BYTES", "2048"),
        ],
    )
    .await;
    let key = gw.create_key(&[]).await;
    let big = "word ".repeat(1000);
    let res = gw
        .chat(&key, json!({"model": "echo", "messages": user(&big)}))
        .await;
    expect_error(res, 413, None, Some("request_too_large")).await;
    assert_eq!(
        gw.chat(&key, json!({"model": "echo", "messages": user("small")}))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn upstream_errors_are_mapped_and_never_echo_the_provider_key() {
    let extra = r#"
[[models]]
name = "fallback-400"
targets = [{ provider = "fake", model = "fail-400" }]
[[models]]
name = "fallback-401"
targets = [{ provider = "fake", model = "fail-401" }]
[[models]]
name = "fallback-500"
targets = [{ provider = "fake", model = "fail-500" }]
[[models]]
name = "fallback-429"
targets = [{ provider = "fake", model = "fail-429" }]
"#;
    let (_fake, gw, key) = setup_with(extra).await;
    let call = |m: &'static str| gw.chat(&key, json!({"model": m, "messages": user("x")}));
    let v = expect_error(call("fallback-400").await, 400, Some("temperature"), None).await;
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("temperature is out of range"));
    let v = expect_error(call("fallback-401").await, 502, None, None).await;
    assert!(!v.to_string().contains(PROVIDER_KEY), "provider key echoed: {v}");
    expect_error(call("fallback-500").await, 502, None, None).await;
    expect_error(call("fallback-429").await, 429, None, None).await;
    let events = gw.wait_events(4).await;
    assert!(!serde_json::to_string(&events).unwrap().contains(PROVIDER_KEY));
    assert!(!gw.logs().contains(PROVIDER_KEY), "provider key in logs");
    assert!(!gw.logs().contains(&key), "client key in logs");
}

#[tokio::test]
async fn falls_over_to_the_next_target_and_skips_providers_without_credentials() {
    let extra = r#"
[[providers]]
name = "nokey"
kind = "openai_compat"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "TG_TEST_UNSET_VARIABLE"
[[providers]]
name = "down"
kind = "openai_compat"
base_url = "http://127.0.0.1:9/v1"
[[models]]
name = "fallback-chain"
targets = [{ provider = "nokey", model = "x" }, { provider = "down", model = "x" }, { provider = "fake", model = "fail-500" }, { provider = "fake", model = "up-gpt" }]
"#;
    let (fake, gw, key) = setup_with(extra).await;
    let res = gw
        .chat(&key, json!({"model": "fallback-chain", "messages": user("hi")}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-model"], "up-gpt");
    let models: Vec<Value> = fake.requests().iter().map(|r| r.body["model"].clone()).collect();
    assert_eq!(models, vec![json!("fail-500"), json!("up-gpt")]);
    let e = &gw.wait_events(1).await[0];
    assert_eq!(e["attempts"], 3, "down, fail-500, up-gpt: {e}");
    assert_eq!(e["provider"], "fake");
}

#[tokio::test]
async fn slow_upstream_times_out_with_504() {
    let extra = r#"
[[providers]]
name = "impatient"
kind = "openai_compat"
base_url = "BASE"
timeout_ms = 300
[[models]]
name = "timeout-test"
targets = [{ provider = "impatient", model = "slow" }]
"#;
    let fake = FakeProvider::start().await;
    let extra = extra.replace("BASE", &fake.base_url());
    let gw = Gateway::start_standard(&fake.base_url(), &extra).await;
    let key = gw.create_key(&[]).await;
    let start = Instant::now();
    let res = gw
        .chat(&key, json!({"model": "timeout-test", "messages": user("x")}))
        .await;
    expect_error(res, 504, None, Some("upstream_timeout")).await;
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn broken_upstream_stream_ends_with_an_error_event() {
    let extra = r#"
[[models]]
name = "gpt-broken"
targets = [{ provider = "fake", model = "break-stream" }]
[[models]]
name = "gpt-error-event"
targets = [{ provider = "fake", model = "error-event" }]
"#;
    let (_fake, gw, key) = setup_with(extra).await;
    for model in ["gpt-broken", "gpt-error-event"] {
        let res = gw
            .chat(
                &key,
                json!({"model": model, "stream": true, "messages": user("x")}),
            )
            .await;
        assert_eq!(res.status(), 200);
        let payloads = tokio::time::timeout(Duration::from_secs(5), sse_payloads(res))
            .await
            .expect("stream must end");
        let last: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
        assert!(last["error"]["message"].is_string(), "{model}: {payloads:?}");
        assert!(payloads.iter().any(|p| p.contains("partial")));
    }
    let events = gw.wait_events(2).await;
    assert!(
        events.iter().all(|e| e["status"] == 502 && e["streamed"] == true),
        "{events:?}"
    );
}

async fn wait_cancel(fake: &FakeProvider, since: Instant) -> Duration {
    for _ in 0..100 {
        if let Some(t) = fake.cancellations().first() {
            return t.saturating_duration_since(since);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the upstream request was not cancelled within 1 s");
}

#[tokio::test]
async fn client_disconnect_aborts_a_non_streaming_upstream_call() {
    let extra = "[[models]]\nname = \"gpt-slow\"\ntargets = [{ provider = \"fake\", model = \"slow\" }]\n";
    let (fake, gw, key) = setup_with(extra).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let res = client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-slow", "messages": user("x")}))
        .send()
        .await;
    let dropped = Instant::now();
    assert!(res.is_err(), "the slow call must not finish");
    drop(client);
    let after = wait_cancel(&fake, dropped).await;
    assert!(
        after < Duration::from_millis(100),
        "upstream closed {after:?} after the client left"
    );
    let e = &gw.wait_events(1).await[0];
    assert_eq!(
        (e["cancelled"].as_bool(), e["status"].as_u64()),
        (Some(true), Some(499))
    );
}

#[tokio::test]
async fn client_disconnect_aborts_a_streaming_upstream_call() {
    let extra = "[[models]]\nname = \"gpt-slow\"\ntargets = [{ provider = \"fake\", model = \"slow\" }]\n\
                 [[pricing]]\nmodel = \"slow\"\ninput = \"1\"\noutput = \"1000\"\n";
    let (fake, gw, key) = setup_with(extra).await;
    let res = gw
        .chat(
            &key,
            json!({"model": "gpt-slow", "stream": true, "messages": user("x")}),
        )
        .await;
    let mut body = res.bytes_stream();
    let mut seen = 0;
    while seen < 3 {
        body.next().await.unwrap().unwrap();
        seen += 1;
    }
    drop(body);
    let dropped = Instant::now();
    let after = wait_cancel(&fake, dropped).await;
    assert!(
        after < Duration::from_millis(100),
        "upstream closed {after:?} after the client left"
    );
    let e = &gw.wait_events(1).await[0];
    assert_eq!(e["cancelled"], true);
    assert_eq!(e["streamed"], true);
    assert!(e["ttft_ms"].is_u64());
    // Billed for what was delivered: the fake sent "0 ", "1 ", ... before the client left.
    assert!(e["output_tokens"].as_u64().unwrap() >= 1, "{e}");
    assert!(e["input_tokens"].as_u64().unwrap() >= 1, "{e}");
    assert!(e["cost_usd"].as_str().is_some_and(|c| c != "0"), "{e}");
}

#[tokio::test]
async fn models_lists_only_what_the_key_may_use() {
    let (_fake, gw, key) = setup().await;
    let r = gw.get(&key, "/v1/models").await;
    let v: Value = r.json().await.unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gpt-test", "tools-test", "embed-test", "echo"]);
    let r = gw.get(&key, "/v1/models/gpt-test").await;
    assert_eq!(r.json::<Value>().await.unwrap()["id"], "gpt-test");
    let r = gw.get(&key, "/v1/models/secret-model").await;
    expect_error(r, 404, None, Some("model_not_found")).await;
    let r = gw.http.get(gw.url("/v1/models")).send().await.unwrap();
    expect_error(r, 401, None, None).await;
}

#[tokio::test]
async fn embeddings_and_legacy_completions_pass_through() {
    let (fake, gw, key) = setup().await;
    let r = gw
        .post(
            &key,
            "/v1/embeddings",
            json!({"model": "embed-test", "input": ["a", "b"], "encoding_format": "float", "dimensions": 3}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(
        sent.body,
        json!({"model": "up-embed", "input": ["a", "b"], "encoding_format": "float", "dimensions": 3})
    );
    let r = gw
        .post(
            &key,
            "/v1/completions",
            json!({"model": "gpt-test", "prompt": "say hi", "max_tokens": 5}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["choices"][0]["text"],
        "fake: say hi"
    );
    let events = gw.wait_events(2).await;
    assert_eq!(events[0]["endpoint"], "completions");
    assert_eq!(events[1]["endpoint"], "embeddings");
    assert_eq!(events[1]["input_tokens"], 5);
}

#[tokio::test]
async fn azure_uses_deployment_url_api_version_and_api_key_header() {
    let fake = FakeProvider::start().await;
    let extra = format!(
        "[[providers]]\nname = \"az\"\nkind = \"azure\"\nbase_url = \"http://{}\"\napi_key_env = \"FAKE_PROVIDER_KEY\"\napi_version = \"2024-06-01\"\n\
         [[models]]\nname = \"gpt-azure\"\ntargets = [{{ provider = \"az\", model = \"my-deployment\" }}]\n",
        fake.addr
    );
    let gw = Gateway::start_standard(&fake.base_url(), &extra).await;
    let key = gw.create_key(&[]).await;
    let res = gw
        .chat(&key, json!({"model": "gpt-azure", "messages": user("hi")}))
        .await;
    assert_eq!(res.status(), 200);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        sent.path,
        "/openai/deployments/my-deployment/chat/completions?api-version=2024-06-01"
    );
    assert_eq!(sent.headers["api-key"], PROVIDER_KEY);
    assert!(sent.headers.get("authorization").is_none());
    assert!(sent.body.get("model").is_none());
}

#[tokio::test]
async fn admin_api_needs_the_admin_token_and_revocation_takes_effect() {
    let (_fake, gw, key) = setup().await;
    let r = gw.http.get(gw.url("/admin/keys")).send().await.unwrap();
    expect_error(r, 401, None, None).await;
    let r = gw.get(&key, "/admin/keys").await;
    expect_error(r, 401, None, None).await;
    let r = gw.post(ADMIN_KEY, "/admin/keys", json!({"models": []})).await;
    expect_error(r, 400, None, None).await;
    let r = gw.get(ADMIN_KEY, "/admin/keys").await;
    let text = r.text().await.unwrap();
    assert!(!text.contains(&key), "key secret listed");
    let list: Value = serde_json::from_str(&text).unwrap();
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    let r = gw
        .http
        .delete(gw.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = gw
        .chat(&key, json!({"model": "echo", "messages": user("x")}))
        .await;
    expect_error(r, 401, None, None).await;
    let r = gw
        .http
        .delete(gw.url("/admin/keys/key_missing"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, None, None).await;
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let (_fake, gw, key) = setup().await;
    assert_eq!(
        gw.http.get(gw.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(gw.http.get(gw.url("/readyz")).send().await.unwrap().status(), 200);
    gw.chat(&key, json!({"model": "gpt-test", "messages": user("x")}))
        .await;
    gw.wait_events(1).await;
    let text = gw.metrics().await;
    assert!(text.contains(r#"tollgate_requests_total{endpoint="chat",model="gpt-test",provider="fake",status="200",error_type=""} 1"#), "{text}");
    assert!(
        text.contains(r#"tollgate_tokens_total{model="gpt-test",provider="fake",class="cached_input"} 3"#)
    );
    assert!(!text.contains(&key) && !text.contains(PROVIDER_KEY));
    assert!(
        text.contains(r#"tollgate_upstream_duration_seconds_count{provider="fake"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn bodies_are_stored_only_for_keys_that_opt_in_and_only_while_retained() {
    let (_fake, gw, plain) = setup_with("").await;
    let opted = gw
        .create_key_with(json!({"name": "audit", "body_retention": "2s"}))
        .await;
    let opted_key = opted["key"].as_str().unwrap();
    let bad = gw
        .post(
            ADMIN_KEY,
            "/admin/keys",
            json!({"name": "x", "body_retention": "forever"}),
        )
        .await;
    expect_error(bad, 400, None, None).await;
    assert_eq!(
        gw.chat(
            opted_key,
            json!({"model": "gpt-test", "messages": user("secret plan")})
        )
        .await
        .status(),
        200
    );
    let streamed = gw
        .chat(
            opted_key,
            json!({"model": "gpt-test", "stream": true, "messages": user("streamed plan")}),
        )
        .await;
    streamed.text().await.unwrap();
    assert_eq!(
        gw.chat(&plain, json!({"model": "gpt-test", "messages": user("private")}))
            .await
            .status(),
        200
    );
    let events = gw.wait_events(3).await;
    let body = |id: String| {
        let gw = &gw;
        async move { gw.get(ADMIN_KEY, &format!("/admin/usage/events/{id}/body")).await }
    };
    let id = |i: usize| events[i]["id"].as_str().unwrap().to_string();
    // Newest first: [plain, streamed, first].
    assert_eq!(
        body(id(0)).await.status(),
        404,
        "a key that did not opt in stores no body"
    );
    let b: Value = body(id(1)).await.json().await.unwrap();
    assert!(b["request"].as_str().unwrap().contains("streamed plan"));
    // A stream's answer is kept as the chunks sent, one per line.
    let chunks = b["response"].as_str().unwrap();
    assert!(
        chunks.contains("chat.completion.chunk") && chunks.contains("\"content\":\"ed p\""),
        "{chunks}"
    );
    let b: Value = body(id(2)).await.json().await.unwrap();
    assert!(b["request"].as_str().unwrap().contains("secret plan"));
    assert!(b["response"].as_str().unwrap().contains("fake: secret plan"));
    // Event listings never carry bodies.
    assert!(!gw.events("limit=10").await.to_string().contains("secret plan"));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(body(id(2)).await.status(), 404, "gone after the retention period");
}
