//! Routing: weights, retries with backoff, fallback models, timeouts and resets, the circuit breaker,
//! aliases, and no fallback once a stream has started.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate_tests::{fake::FakeProvider, gateway::Gateway};

async fn setup(extra: &str) -> (FakeProvider, Gateway, String) {
    let fake = FakeProvider::start().await;
    let extra = extra.replace("BASE", &fake.base_url());
    let gw = Gateway::start_standard(&fake.base_url(), &extra).await;
    let key = gw.create_key(&[]).await;
    (fake, gw, key)
}

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn upstream_models(fake: &FakeProvider) -> Vec<String> {
    fake.requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn weighted_targets_share_traffic_by_weight() {
    let extra = r#"
[[models]]
name = "weighted"
targets = [{ provider = "fake", model = "up-a", weight = 3 }, { provider = "fake", model = "up-b", weight = 1 }]
"#;
    let (fake, gw, key) = setup(extra).await;
    for _ in 0..200 {
        assert_eq!(gw.chat(&key, ask("weighted")).await.status(), 200);
    }
    let a = upstream_models(&fake).iter().filter(|m| *m == "up-a").count();
    // Binomial(200, 0.75): mean 150, sd 6.1; 120..=180 is ±4.9 sd.
    assert!((120..=180).contains(&a), "up-a served {a} of 200");
}

#[tokio::test]
async fn retries_with_backoff_then_a_fallback_model_serves() {
    let extra = r#"
[[models]]
name = "primary"
retries = 2
targets = [{ provider = "fake", model = "fail-500" }]
fallbacks = ["backup"]
[[models]]
name = "backup"
targets = [{ provider = "fake", model = "up-backup" }]
"#;
    let (fake, gw, key) = setup(extra).await;
    let start = Instant::now();
    let res = gw.chat(&key, ask("primary")).await;
    let elapsed = start.elapsed();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-model"], "up-backup");
    assert_eq!(
        upstream_models(&fake),
        vec!["fail-500", "fail-500", "fail-500", "up-backup"]
    );
    // Backoff before retry 1 is 50..100 ms, before retry 2 100..200 ms.
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    let e = &gw.wait_events(1).await[0];
    assert_eq!(e["attempts"], 4);
    assert_eq!(e["requested_model"], "primary");
}

#[tokio::test]
async fn client_errors_never_fall_back() {
    let extra = r#"
[[models]]
name = "primary"
retries = 2
targets = [{ provider = "fake", model = "fail-400" }]
fallbacks = ["backup"]
[[models]]
name = "backup"
targets = [{ provider = "fake", model = "up-backup" }]
"#;
    let (fake, gw, key) = setup(extra).await;
    assert_eq!(gw.chat(&key, ask("primary")).await.status(), 400);
    assert_eq!(upstream_models(&fake), vec!["fail-400"]);
}

#[tokio::test]
async fn timeouts_resets_and_rate_limits_fall_over_to_the_next_target() {
    let extra = r#"
[[providers]]
name = "impatient"
kind = "openai_compat"
base_url = "BASE"
timeout_ms = 300
[[models]]
name = "chain"
targets = [{ provider = "impatient", model = "slow" }, { provider = "fake", model = "reset" }, { provider = "fake", model = "fail-429" }, { provider = "fake", model = "up-last" }]
"#;
    let (fake, gw, key) = setup(extra).await;
    let res = gw.chat(&key, ask("chain")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        upstream_models(&fake),
        vec!["slow", "reset", "fail-429", "up-last"]
    );
}

#[tokio::test]
async fn circuit_breaker_skips_a_failing_target_then_probes_it() {
    let extra = r#"
[[models]]
name = "flaky"
targets = [{ provider = "fake", model = "fail-500" }, { provider = "fake", model = "up-healthy" }]
[routing]
breaker_failures = 2
breaker_cooldown_ms = 400
"#;
    let (fake, gw, key) = setup(extra).await;
    let failing = |f: &FakeProvider| upstream_models(f).iter().filter(|m| *m == "fail-500").count();
    for _ in 0..2 {
        assert_eq!(gw.chat(&key, ask("flaky")).await.status(), 200);
    }
    assert_eq!(failing(&fake), 2);
    for _ in 0..3 {
        assert_eq!(gw.chat(&key, ask("flaky")).await.status(), 200);
    }
    assert_eq!(failing(&fake), 2, "an open circuit is skipped");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"tollgate_circuit_state{target="fake/fail-500"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("tollgate_fallbacks_total 5"), "{metrics}");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(gw.chat(&key, ask("flaky")).await.status(), 200);
    assert_eq!(failing(&fake), 3, "one half-open probe");
    assert_eq!(gw.chat(&key, ask("flaky")).await.status(), 200);
    assert_eq!(failing(&fake), 3, "the failed probe reopened the circuit");
}

#[tokio::test]
async fn aliases_resolve_and_streams_never_fall_back_after_the_first_byte() {
    let extra = r#"
[[models]]
name = "canonical"
aliases = ["nickname"]
targets = [{ provider = "fake", model = "up-canonical" }]
[[models]]
name = "stream-chain"
targets = [{ provider = "fake", model = "break-stream" }, { provider = "fake", model = "up-never" }]
"#;
    let fake = FakeProvider::start().await;
    let gw = Gateway::start_standard(&fake.base_url(), extra).await;
    let key = gw.create_key(&["canonical", "stream-*"]).await;
    let res = gw.chat(&key, ask("nickname")).await;
    assert_eq!(
        res.status(),
        200,
        "a key allowed the canonical name may use its alias"
    );
    assert_eq!(res.headers()["x-tollgate-model"], "up-canonical");
    let mut body = ask("stream-chain");
    body["stream"] = json!(true);
    let text = gw.chat(&key, body).await.text().await.unwrap();
    assert!(text.contains("partial") && text.contains("\"error\""), "{text}");
    assert!(!upstream_models(&fake).contains(&"up-never".to_string()));
}

#[tokio::test]
async fn a_stream_past_the_total_timeout_ends_with_an_error_event() {
    let extra = r#"
[[providers]]
name = "bounded"
kind = "openai_compat"
base_url = "BASE"
timeout_ms = 400
stream_idle_timeout_ms = 5000
[[models]]
name = "long-stream"
targets = [{ provider = "bounded", model = "slow" }]
"#;
    let (_fake, gw, key) = setup(extra).await;
    let mut body = ask("long-stream");
    body["stream"] = json!(true);
    let start = Instant::now();
    let text = gw.chat(&key, body).await.text().await.unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(text.contains("total timeout"), "{text}");
    let e = &gw.wait_events(1).await[0];
    assert_eq!(
        (e["status"].as_u64(), e["error_type"].as_str()),
        (Some(504), Some("timeout_error"))
    );
}
