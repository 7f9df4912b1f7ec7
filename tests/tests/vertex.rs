//! End-to-end: the real binary in front of a fake Vertex AI and its fake OAuth token endpoint. The
//! gateway signs a JWT with a service-account key generated for the run (openssl; never committed),
//! exchanges it for an access token, and calls Gemini (`generateContent`, `predict`) and Claude
//! (`rawPredict`/`streamRawPredict`) models with it. Checked: the answers (OpenAI-shaped), the
//! requests (URLs, bearer token, bodies, also against the providers' specs in `../shared/specs/`),
//! the token cache and its refresh, token failures (a clear 502, no secret anywhere), usage events.
//!
//! Without openssl, the Python venv (`TOLLGATE_TEST_PYTHON`) or the specs, the tests that need them
//! say why and skip, except under CI (`CI=true`), where they fail.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{path::PathBuf, process::Command};

use serde_json::{json, Value};
use tollgate_tests::{
    e2e::{content, finish_reasons, numbers, run_validator, specs, streamed_calls, user, write_json},
    env::skip,
    fake_vertex::{
        write_authorized_user_file, FakeVertex, TestKeys, MESSAGE_ID, RESPONSE_ID, USER_CLIENT_SECRET,
        USER_REFRESH_TOKEN,
    },
    gateway::{binary, temp_dir, Gateway},
};

const PROJECT: &str = "p-test";
const LOCATION: &str = "us-east5";
const CLAUDE: &str = "claude-sonnet-4@20250514";
const CLAUDE_TOOLS: &str = "claude-tools@20250929";
const GEMINI: &str = "gemini-2.5-flash";

struct Setup {
    fake: FakeVertex,
    gw: Gateway,
    key: String,
    keys: TestKeys,
    dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn config(fake: &FakeVertex, key_file: &std::path::Path) -> String {
    format!(
        r#"
[[providers]]
name = "vx"
kind = "vertex"
project = "{PROJECT}"
location = "{LOCATION}"
base_url = "{base}"
credentials_file = "{key_file}"
timeout_ms = 5000
stream_idle_timeout_ms = 3000

[[models]]
name = "gemini"
targets = [{{ provider = "vx", model = "{GEMINI}" }}]

[[models]]
name = "gemini-tools"
targets = [{{ provider = "vx", model = "gemini-tools" }}]

[[models]]
name = "gemini-exhausted"
targets = [{{ provider = "vx", model = "gemini-exhausted" }}]

[[models]]
name = "gemini-with-fallback"
targets = [{{ provider = "vx", model = "gemini-exhausted" }}, {{ provider = "vx", model = "{GEMINI}" }}]

[[models]]
name = "claude"
targets = [{{ provider = "vx", model = "{CLAUDE}" }}]

[[models]]
name = "claude-tools"
targets = [{{ provider = "vx", model = "{CLAUDE_TOOLS}" }}]

[[models]]
name = "claude-overloaded"
targets = [{{ provider = "vx", model = "claude-overloaded" }}]

[[models]]
name = "claude-leaky"
targets = [{{ provider = "vx", model = "claude-leaky" }}]

[[models]]
name = "embed"
targets = [{{ provider = "vx", model = "text-embedding-005" }}]
"#,
        base = fake.base_url(PROJECT, LOCATION),
        key_file = key_file.display(),
    )
}

/// The fake, a key file naming the fake's token endpoint (as `token_uri`), and the gateway; `None`
/// (after `skip`) without openssl.
async fn setup() -> Option<Setup> {
    let dir = temp_dir("vertex");
    let Some(keys) = TestKeys::generate(&dir) else {
        skip("openssl is needed to generate the test service-account key");
        return None;
    };
    let fake = FakeVertex::start(&keys).await;
    let key_file = keys.write_key_file(&dir, &fake.token_url());
    let gw = Gateway::start(&config(&fake, &key_file), &[]).await;
    let key = gw.create_key(&[]).await;
    Some(Setup {
        fake,
        gw,
        key,
        keys,
        dir,
    })
}

fn tools() -> Value {
    let params = |name: &str| {
        json!({"type": "object", "properties": {name: {"type": "string"}}, "required": [name],
            "additionalProperties": false})
    };
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": params("city")}},
        {"type": "function", "function": {"name": "get_time", "description": "time", "parameters": params("tz")}}])
}

fn path(model: &str, publisher: &str, method: &str) -> String {
    format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/{publisher}/models/{model}:{method}")
}

fn bearer(r: &tollgate_tests::fake::Recorded) -> String {
    r.headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn gemini_chat_and_stream_go_to_generate_content_with_a_minted_token() {
    let Some(s) = setup().await else { return };
    let res =
        s.gw.chat(
            &s.key,
            json!({"model": "gemini", "max_tokens": 40, "user": "u-1", "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello vertex"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-provider"], "vx");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["id"], RESPONSE_ID);
    assert_eq!(v["model"], GEMINI);
    assert_eq!(v["choices"][0]["message"]["content"], "fake: hello vertex");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        numbers(&v["usage"], ["prompt_tokens", "completion_tokens"]),
        [Some(9), Some(6)]
    );

    let chunks =
        s.gw.chat_chunks(
            &s.key,
            json!({"model": "gemini", "stream": true, "stream_options": {"include_usage": true},
            "messages": user("stream from vertex")}),
        )
        .await;
    assert_eq!(content(&chunks), "fake: stream from vertex");
    assert_eq!(finish_reasons(&chunks), ["stop"]);
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 9);

    let sent = s.fake.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].path, path(GEMINI, "google", "generateContent"));
    assert_eq!(
        sent[1].path,
        path(GEMINI, "google", "streamGenerateContent?alt=sse")
    );
    assert_eq!(
        sent[0].body,
        json!({"systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [{"role": "user", "parts": [{"text": "hello vertex"}]}],
            "generationConfig": {"maxOutputTokens": 40}})
    );
    let minted = s.fake.minted();
    assert_eq!(minted.len(), 1);
    for r in &sent {
        assert_eq!(bearer(r), minted[0]);
        assert!(r.headers.get("x-goog-api-key").is_none());
        assert!(
            !format!("{:?}", r.headers).contains(&s.key),
            "client key leaked upstream"
        );
    }
    assert!(
        s.fake.assertion_problems().is_empty(),
        "{:?}",
        s.fake.assertion_problems()
    );
    assert!(
        sent[0].headers.get("x-goog-user-project").is_none(),
        "a service account bills its own project"
    );
}

#[tokio::test]
async fn claude_chat_and_stream_with_tools_go_to_raw_predict() {
    let Some(s) = setup().await else { return };
    let res =
        s.gw.chat(
            &s.key,
            json!({"model": "claude-tools", "messages": user("weather and time?"), "tools": tools(),
            "tool_choice": "auto"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["id"], MESSAGE_ID);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], "toolu_vrtx_01Weather");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(calls[1]["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"tz": "CET"})
    );

    let chunks =
        s.gw.chat_chunks(
            &s.key,
            json!({"model": "claude-tools", "stream": true, "messages": user("weather and time?"),
            "tools": tools()}),
        )
        .await;
    let calls = streamed_calls(&chunks);
    assert_eq!(calls.len(), 2, "{chunks:?}");
    assert_eq!(
        (calls[0].0.as_str(), calls[0].1.as_str()),
        ("toolu_vrtx_01Weather", "get_weather")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(
        (calls[1].0.as_str(), calls[1].1.as_str()),
        ("toolu_vrtx_02Time", "get_time")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&calls[1].2).unwrap(),
        json!({"tz": "CET"})
    );
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);

    // A plain streamed answer, and the tool results round trip.
    let turns = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_vrtx_01Weather", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_vrtx_01Weather", "content": "sunny"}]);
    let chunks =
        s.gw.chat_chunks(
            &s.key,
            json!({"model": "claude", "stream": true, "messages": turns, "tools": tools()}),
        )
        .await;
    assert_eq!(content(&chunks), "fake: sunny");
    assert_eq!(finish_reasons(&chunks), ["stop"]);

    let sent = s.fake.requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].path, path(CLAUDE_TOOLS, "anthropic", "rawPredict"));
    assert_eq!(sent[1].path, path(CLAUDE_TOOLS, "anthropic", "streamRawPredict"));
    assert_eq!(sent[2].path, path(CLAUDE, "anthropic", "streamRawPredict"));
    for r in &sent {
        assert_eq!(r.body["anthropic_version"], "vertex-2023-10-16");
        assert!(r.body.get("model").is_none(), "{}", r.body);
        assert!(r.headers.get("x-api-key").is_none() && r.headers.get("anthropic-version").is_none());
        assert_eq!(bearer(r), s.fake.minted()[0]);
    }
    assert_eq!(sent[0].body["tools"][0]["name"], "get_weather");
    assert_eq!(sent[0].body["tool_choice"], json!({"type": "auto"}));
    assert_eq!(sent[2].body["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(s.fake.token_requests(), 1);
}

#[tokio::test]
async fn one_token_serves_many_requests_and_is_refreshed_after_it_expires() {
    let Some(s) = setup().await else { return };
    s.fake.set_expires_in(4);
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let model = if i % 2 == 0 { "gemini" } else { "claude" };
            s.gw.chat(&s.key, json!({"model": model, "messages": user("hi")}))
        })
        .collect();
    for res in futures_util::future::join_all(calls).await {
        assert_eq!(res.status(), 200);
    }
    for _ in 0..4 {
        let res =
            s.gw.chat(&s.key, json!({"model": "gemini", "messages": user("again")}))
                .await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(
        s.fake.token_requests(),
        1,
        "10 requests, 6 of them concurrent: one exchange"
    );

    // The token lives 4 s and is refreshed a quarter of that early; the fake refuses expired tokens.
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    let res =
        s.gw.chat(&s.key, json!({"model": "claude", "messages": user("later")}))
            .await;
    assert_eq!(res.status(), 200);
    assert_eq!(s.fake.token_requests(), 2);
    let minted = s.fake.minted();
    assert_ne!(minted[0], minted[1]);
    assert_eq!(bearer(s.fake.requests().last().unwrap()), minted[1]);
    assert!(
        s.fake.assertion_problems().is_empty(),
        "{:?}",
        s.fake.assertion_problems()
    );
}

#[tokio::test]
async fn token_endpoint_failure_is_a_clear_502_without_secrets_and_the_next_request_retries() {
    let Some(s) = setup().await else { return };
    s.fake.fail_tokens(Some((
        400,
        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
    )));
    let res =
        s.gw.chat(&s.key, json!({"model": "gemini", "messages": user("hi")}))
            .await;
    assert_eq!(res.status(), 502);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "upstream_error");
    assert_eq!(v["error"]["code"], "bad_gateway");
    let message = v["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "provider `vx`: could not get a Google access token: token endpoint answered HTTP 400: invalid_grant (Invalid JWT Signature.)"
    );
    assert!(s.fake.requests().is_empty(), "no Vertex call without a token");
    let e = &s.gw.wait_events(1).await[0];
    assert_eq!(
        (e["status"].as_u64(), e["provider"].as_str()),
        (Some(502), Some("vx"))
    );

    // A server error at the token endpoint, then recovery: each request tries again.
    s.fake
        .fail_tokens(Some((503, json!({"error": "temporarily_unavailable"}))));
    let res =
        s.gw.chat(&s.key, json!({"model": "claude", "messages": user("hi")}))
            .await;
    assert_eq!(res.status(), 502);
    s.fake.fail_tokens(None);
    let res =
        s.gw.chat(&s.key, json!({"model": "claude", "messages": user("hi")}))
            .await;
    assert_eq!(res.status(), 200);
    assert_eq!(s.fake.token_requests(), 3);

    // No key material, assertion or token anywhere in the logs or the events.
    let private_body: String = s
        .keys
        .private_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let events = s.gw.events("limit=100").await.to_string();
    let logs = s.gw.logs();
    assert!(logs.contains("google access token"), "{logs}");
    for text in [&logs, &events] {
        assert!(!text.contains(&private_body[..40]), "private key leaked");
        assert!(!text.contains("eyJ"), "a JWT leaked: {text}");
        for token in s.fake.minted() {
            assert!(!text.contains(&token), "access token leaked");
        }
    }
}

#[tokio::test]
async fn a_minted_token_echoed_in_a_stream_error_is_scrubbed() {
    let Some(s) = setup().await else { return };
    let res =
        s.gw.chat(
            &s.key,
            json!({"model": "claude-leaky", "messages": user("hi"), "stream": true}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(body.contains("was revoked mid-stream"), "{body}");
    assert!(body.contains("token *** was revoked"), "{body}");
    let minted = s.fake.minted();
    assert_eq!(minted.len(), 1);
    let logs = s.gw.logs();
    assert!(logs.contains("upstream stream failed"), "{logs}");
    for text in [&body, &logs] {
        assert!(!text.contains(&minted[0]), "access token leaked: {text}");
    }
}

#[tokio::test]
async fn vertex_errors_map_to_openai_errors_and_fall_back() {
    let Some(s) = setup().await else { return };
    let res =
        s.gw.chat(
            &s.key,
            json!({"model": "gemini-exhausted", "messages": user("hi")}),
        )
        .await;
    assert_eq!(res.status(), 429);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "RESOURCE_EXHAUSTED");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("Quota exceeded"),
        "{v}"
    );

    let res =
        s.gw.chat(
            &s.key,
            json!({"model": "claude-overloaded", "messages": user("hi")}),
        )
        .await;
    assert_eq!(res.status(), 502, "an overloaded upstream is the gateway's 502");
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
        (Some("upstream_error"), Some("overloaded_error"))
    );

    // 429 is retryable: the next target serves.
    let res =
        s.gw.chat(
            &s.key,
            json!({"model": "gemini-with-fallback", "messages": user("fall")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-model"], GEMINI);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "fake: fall");

    // Embeddings are Gemini-side only: a Claude target does not serve them.
    let res =
        s.gw.post(&s.key, "/v1/embeddings", json!({"model": "claude", "input": "x"}))
            .await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not support the embeddings"),
        "{v}"
    );
}

#[tokio::test]
async fn embeddings_use_predict_and_usage_events_are_recorded() {
    let Some(s) = setup().await else { return };
    let res =
        s.gw.post(
            &s.key,
            "/v1/embeddings",
            json!({"model": "embed", "input": ["one two three", "four"], "dimensions": 3}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["data"][0]["embedding"], json!([13.0, 0.5, -0.25]));
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    let sent = s.fake.requests().pop().unwrap();
    assert_eq!(sent.path, path("text-embedding-005", "google", "predict"));
    assert_eq!(
        sent.body,
        json!({"instances": [{"content": "one two three"}, {"content": "four"}], "parameters": {"outputDimensionality": 3}})
    );

    let res =
        s.gw.chat(&s.key, json!({"model": "claude", "messages": user("count me")}))
            .await;
    assert_eq!(res.status(), 200);
    let events = s.gw.wait_events(2).await;
    let chat = events
        .iter()
        .find(|e| e["served_model"] == CLAUDE)
        .expect("claude event");
    assert_eq!(
        (chat["status"].as_u64(), chat["provider"].as_str()),
        (Some(200), Some("vx"))
    );
    // 13 input + 4 cache reads (Anthropic counts them apart; OpenAI's prompt includes them), 7 out.
    assert_eq!(
        numbers(chat, ["input_tokens", "output_tokens", "cached_input_tokens"]),
        [Some(17), Some(7), Some(4)],
        "{chat}"
    );
    // Priced as `vertex/claude-sonnet-4@20250514`: 13 input at $3, 4 cache reads at $0.30 and 7
    // output at $15 per million tokens.
    assert_eq!(chat["cost_usd"], "0.0001452", "{chat}");
    let embed = events
        .iter()
        .find(|e| e["served_model"] == "text-embedding-005")
        .expect("embed event");
    assert_eq!(embed["input_tokens"], 4, "{embed}");
}

#[tokio::test]
async fn a_static_access_token_from_api_key_env_needs_no_key_file() {
    let dir = temp_dir("vertex-static");
    let Some(keys) = TestKeys::generate(&dir) else {
        return skip("openssl is needed for the fake's key");
    };
    let fake = FakeVertex::start(&keys).await;
    fake.allow_token("ya29.static-token-from-gcloud");
    let config = format!(
        "[[providers]]\nname = \"vx\"\nkind = \"vertex\"\nbase_url = \"{}\"\napi_key_env = \"VERTEX_TOKEN\"\n\n\
         [[models]]\nname = \"claude\"\ntargets = [{{ provider = \"vx\", model = \"{CLAUDE}\" }}]\n",
        fake.base_url(PROJECT, LOCATION)
    );
    let gw = Gateway::start(&config, &[("VERTEX_TOKEN", "ya29.static-token-from-gcloud")]).await;
    let key = gw.create_key(&[]).await;
    let res = gw
        .chat(&key, json!({"model": "claude", "messages": user("hi")}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(bearer(&fake.requests()[0]), "ya29.static-token-from-gcloud");
    assert_eq!(fake.token_requests(), 0);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn an_authorized_user_credential_from_google_application_credentials_is_refreshed() {
    let dir = temp_dir("vertex-user");
    let Some(keys) = TestKeys::generate(&dir) else {
        return skip("openssl is needed for the fake's key");
    };
    let fake = FakeVertex::start(&keys).await;
    let file = write_authorized_user_file(&dir);
    let config = format!(
        "[[providers]]\nname = \"vx\"\nkind = \"vertex\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\n\n\
         [[models]]\nname = \"gemini\"\ntargets = [{{ provider = \"vx\", model = \"{GEMINI}\" }}]\n",
        fake.base_url(PROJECT, LOCATION),
        fake.token_url()
    );
    let gw = Gateway::start(
        &config,
        &[("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap())],
    )
    .await;
    let key = gw.create_key(&[]).await;
    for _ in 0..3 {
        let res = gw
            .chat(&key, json!({"model": "gemini", "messages": user("hi")}))
            .await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(fake.token_requests(), 1);
    assert!(
        fake.assertion_problems().is_empty(),
        "{:?}",
        fake.assertion_problems()
    );
    let last = &fake.requests()[2];
    assert_eq!(bearer(last), fake.minted()[0]);
    assert_eq!(
        last.headers["x-goog-user-project"], "p-test",
        "the credential's quota project"
    );
    let logs = gw.logs();
    assert!(
        !logs.contains(USER_REFRESH_TOKEN) && !logs.contains(USER_CLIENT_SECRET),
        "{logs}"
    );
    drop(gw);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn config_errors_name_the_field_and_never_print_the_key() {
    let dir = temp_dir("vertex-config");
    let check = |toml: &str, env: &[(&str, &str)]| {
        let file = dir.join("tollgate.toml");
        std::fs::write(&file, toml).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("check-config")
            .arg(&file)
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let text = check(
        "[[providers]]\nname = \"vx\"\nkind = \"vertex\"\nlocation = \"global\"\napi_key_env = \"T\"\n",
        &[],
    );
    assert!(
        text.contains("providers[0].project: required for kind `vertex`"),
        "{text}"
    );

    let text = check(
        "[[providers]]\nname = \"vx\"\nkind = \"vertex\"\nproject = \"p\"\nlocation = \"us-central1\"\n",
        &[],
    );
    assert!(
        text.contains("providers[0].credentials_file: kind `vertex` needs credentials"),
        "{text}"
    );

    // A key file whose key is broken: the error says so without printing it.
    let secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDTOPSECRETKEYMATERIAL";
    let bad_key = dir.join("bad-key.json");
    std::fs::write(
        &bad_key,
        json!({"type": "service_account", "client_email": "a@b.iam.gserviceaccount.com",
            "private_key": format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n")})
        .to_string(),
    )
    .unwrap();
    let text = check(
        "[[providers]]\nname = \"vx\"\nkind = \"vertex\"\nproject = \"p\"\nlocation = \"us-central1\"\n",
        &[("GOOGLE_APPLICATION_CREDENTIALS", bad_key.to_str().unwrap())],
    );
    assert!(
        text.contains("providers[0].credentials_file (GOOGLE_APPLICATION_CREDENTIALS):"),
        "{text}"
    );
    assert!(text.contains("`private_key`"), "{text}");
    assert!(!text.contains("TOPSECRET"), "key material printed: {text}");

    let text = check(
        &format!(
            "[[providers]]\nname = \"vx\"\nkind = \"vertex\"\nproject = \"p\"\nlocation = \"us-central1\"\ncredentials_file = \"{}\"\n",
            dir.join("missing.json").display()
        ),
        &[],
    );
    assert!(
        text.contains("providers[0].credentials_file: cannot read"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn requests_sent_to_vertex_conform_to_the_gemini_and_anthropic_specs() {
    let Some([native, discovery, anthropic]) = specs([
        "gemini/gemini-native.openapi.json",
        "gemini/openapi.json",
        "anthropic/openapi.json",
    ]) else {
        return;
    };
    let Some(py) = tollgate_tests::env::python() else {
        return;
    };
    let Some(s) = setup().await else { return };
    let tool_turns = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"sky\": \"sunny\"}"}]);
    let rich = |model: &str| {
        json!({"model": model, "messages": [{"role": "system", "content": "one"}, {"role": "user", "content": [
            {"type": "text", "text": "describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}],
            "stop": ["\n\n"], "user": "u-42", "temperature": 0.5, "top_p": 0.9, "max_completion_tokens": 64,
            "seed": 7, "frequency_penalty": 0.1})
    };
    let mut bodies = Vec::new();
    for (model, tools_model) in [("gemini", "gemini-tools"), ("claude", "claude-tools")] {
        bodies.extend([
            json!({"model": model, "messages": user("hi")}),
            json!({"model": model, "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
            json!({"model": tools_model, "messages": user("weather?"), "tools": tools(), "tool_choice": "required"}),
            json!({"model": tools_model, "stream": true, "messages": user("weather?"), "tools": tools(),
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
            json!({"model": model, "messages": tool_turns, "tools": tools(), "tool_choice": "none"}),
            rich(model),
            json!({"model": model, "messages": user("think"), "reasoning_effort": "high", "max_tokens": 100}),
        ]);
    }
    s.gw.chat_all_ok(&s.key, &bodies).await;
    let requests = s.fake.requests();
    assert_eq!(requests.len(), bodies.len());
    let (gemini_dir, anthropic_dir) = (s.dir.join("gemini-bodies"), s.dir.join("anthropic-bodies"));
    std::fs::create_dir_all(&gemini_dir).unwrap();
    std::fs::create_dir_all(&anthropic_dir).unwrap();
    let (mut gemini_n, mut anthropic_n) = (0, 0);
    for (i, r) in requests.iter().enumerate() {
        if r.path.contains("/publishers/google/") {
            gemini_n += 1;
            write_json(&gemini_dir.join(format!("{i:02}.generateContent.json")), &r.body);
        } else {
            anthropic_n += 1;
            // The Vertex body is the Messages body with `anthropic_version` instead of `model` (the URL
            // names the model). Anthropic's spec requires `model` and knows no `anthropic_version`, so
            // a copy with the model put back and the version taken out is validated; that both were
            // that way round is asserted first.
            let mut body = r.body.clone();
            let obj = body.as_object_mut().unwrap();
            assert_eq!(obj.remove("anthropic_version"), Some(json!("vertex-2023-10-16")));
            assert!(obj.insert("model".into(), json!(CLAUDE)).is_none());
            write_json(&anthropic_dir.join(format!("{i:02}.messages.json")), &body);
        }
    }
    assert_eq!((gemini_n, anthropic_n), (7, 7));
    run_validator(
        &py,
        "validate_gemini.py",
        &[&native, &discovery, &gemini_dir],
        gemini_n,
    )
    .await;
    run_validator(
        &py,
        "validate_anthropic.py",
        &[&anthropic, &anthropic_dir],
        anthropic_n,
    )
    .await;
}
