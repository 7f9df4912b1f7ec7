//! Keys, teams, quotas and budgets, across replicas that share one real Redis.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use tollgate_tests::{
    env::skip,
    fake::FakeProvider,
    gateway::{standard_config, Gateway, PROVIDER_KEY},
    redis::{shared_url, unique_prefix, RedisServer},
};

fn chat_body(text: &str) -> Value {
    json!({"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": text}]})
}

/// Two replicas sharing `prefix` in Redis at `url`.
async fn replicas(url: &str, prefix: &str, extra: &str) -> (FakeProvider, Gateway, Gateway) {
    let fake = FakeProvider::start().await;
    let config = format!("{}{extra}", standard_config(&fake.base_url()));
    let env = [("FAKE_PROVIDER_KEY", PROVIDER_KEY)];
    let a = Gateway::start_redis(url, prefix, &config, &env).await;
    let b = Gateway::start_redis(url, prefix, &config, &env).await;
    (fake, a, b)
}

/// One gateway whose limits live in `redis`, under a fresh prefix made from `tag`.
async fn on_redis(redis: &RedisServer, tag: &str) -> (FakeProvider, Gateway) {
    let fake = FakeProvider::start().await;
    let config = standard_config(&fake.base_url());
    let env = [("FAKE_PROVIDER_KEY", PROVIDER_KEY)];
    let gw = Gateway::start_redis(&redis.url(), &unique_prefix(tag), &config, &env).await;
    (fake, gw)
}

/// Waits until `gw` accepts `key` (the key was created on another replica).
async fn known_by(gw: &Gateway, key: &str) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let r = gw.get(key, "/v1/models").await;
        if r.status() == 200 {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("replica never learned the key");
}

#[tokio::test]
async fn requests_per_minute_are_exact_across_two_replicas() {
    let Some(url) = shared_url() else { return };
    let (_fake, a, b) = replicas(&url, &unique_prefix("rpm"), "").await;
    let created = a
        .create_key_with(json!({"name": "rpm", "models": ["echo"], "limits": {"rpm": 50}}))
        .await;
    let key = created["key"].as_str().unwrap().to_string();
    known_by(&b, &key).await;
    // The model-list probe above does not count: only inference requests are rate limited.
    let start = Instant::now();
    let calls = (0..200).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        gw.http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_body("hi"))
            .send()
    });
    let results = join_all(calls).await;
    let elapsed = start.elapsed();
    let mut ok = 0;
    let mut limited = Vec::new();
    for r in results {
        let r = r.unwrap();
        match r.status().as_u16() {
            200 => {
                assert_eq!(
                    r.headers()["x-ratelimit-limit-requests"],
                    "50",
                    "successful answers carry the headers too"
                );
                ok += 1;
            }
            429 => limited.push(r),
            other => panic!("unexpected status {other}"),
        }
    }
    // GCRA at 50/min admits a burst of 50, then one more every 1.2 s.
    let refill = (elapsed.as_secs_f64() / 1.2).floor() as usize;
    assert!(
        ok >= 50 && ok <= 50 + refill,
        "{ok} succeeded in {elapsed:?} (refill {refill})"
    );
    if refill == 0 {
        assert_eq!(ok, 50);
    }
    let r = limited.pop().unwrap();
    let h = r.headers();
    assert_eq!(h["x-ratelimit-limit-requests"], "50");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    assert!(h.contains_key("x-ratelimit-reset-requests"));
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn tokens_per_minute_and_budgets_hold_across_replicas() {
    let Some(url) = shared_url() else { return };
    // Echo at 1000 USD per million tokens: 0.001 USD a token, so costs are easy to follow.
    let pricing = "[[pricing]]\nmodel = \"echo\"\ninput = \"1000\"\noutput = \"1000\"\n";
    let (_fake, a, b) = replicas(&url, &unique_prefix("tpm"), pricing).await;
    let tpm = a
        .create_key_with(json!({"name": "tpm", "models": ["echo"], "limits": {"tpm": 300}}))
        .await;
    let tpm_key = tpm["key"].as_str().unwrap().to_string();
    let budget = a
        .create_key_with(
            json!({"name": "budget", "models": ["echo"], "budgets": {"total_usd": "0.20", "daily_usd": "5"}}),
        )
        .await;
    let budget_key = budget["key"].as_str().unwrap().to_string();
    known_by(&b, &tpm_key).await;
    known_by(&b, &budget_key).await;

    // Tokens: each request reserves its estimate (prompt bytes / 4 + max_tokens, about 50) and
    // settles to its actual usage (3 words in, 3 out = 6 tokens). The estimate never undercounts
    // here, so the admitted tokens stay within the limit plus the refill (300/min = 5 per second):
    // the overshoot bound is zero.
    let start = Instant::now();
    let (mut ok, mut limited) = (0u64, 0u64);
    for round in 0..10 {
        let calls = (0..20).map(|i| {
            let gw = if (i + round) % 2 == 0 { &a } else { &b };
            gw.http
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(&tpm_key)
                .json(&chat_body("one two three"))
                .send()
        });
        for r in join_all(calls).await {
            let r = r.unwrap();
            if r.status() == 429 {
                assert!(r.headers().contains_key("x-ratelimit-limit-tokens"));
                limited += 1;
            } else {
                assert_eq!(r.status(), 200);
                ok += 1;
            }
        }
    }
    let refill = (start.elapsed().as_secs_f64() * 5.0).ceil() as u64;
    assert!(limited > 0 && ok > 0);
    assert!(
        ok * 6 <= 300 + refill,
        "{ok} requests of 6 tokens admitted under 300 tpm (+{refill} refill)"
    );

    // Budget: 0.20 USD; each request reserves its estimated maximum (~0.045) and costs 0.006
    // (3 + 3 words). One at a time, alternating replicas, until the budget refuses.
    let mut exhausted = false;
    for i in 0..100 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = gw.chat(&budget_key, chat_body("one two three")).await;
        if r.status() == 429 {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "budget_exceeded");
            exhausted = true;
            break;
        }
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(5)).await; // let the settle land
    }
    assert!(exhausted, "the budget must run out");
    tokio::time::sleep(Duration::from_millis(300)).await; // settles are asynchronous
    let id = budget["id"].as_str().unwrap();
    let usage = b
        .admin(Method::GET, &format!("/admin/keys/{id}/usage"), None, 200)
        .await;
    let total = usage["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["period"] == "total")
        .unwrap()
        .clone();
    let spent: f64 = total["spent_usd"].as_str().unwrap().parse().unwrap();
    let reserved: f64 = total["reserved_usd"].as_str().unwrap().parse().unwrap();
    assert_eq!(reserved, 0.0, "{total}");
    assert!(spent <= 0.20, "overspent: {total}");
    assert!(spent > 0.20 - 0.046, "budget refused too early: {total}");
    // The spend agrees with the usage events both replicas recorded.
    let mut event_cost = 0.0;
    for gw in [&a, &b] {
        for e in gw.events(&format!("key_id={id}&limit=1000")).await["data"]
            .as_array()
            .unwrap()
        {
            if e["status"] == 200 {
                event_cost += e["cost_usd"].as_str().unwrap().parse::<f64>().unwrap();
            }
        }
    }
    assert!(
        (event_cost - spent).abs() < 1e-9,
        "events {event_cost} vs counter {spent}"
    );
}

#[tokio::test]
async fn keys_revoked_on_one_replica_are_refused_by_the_other_within_a_second() {
    let Some(url) = shared_url() else { return };
    let (_fake, a, b) = replicas(&url, &unique_prefix("revoke"), "").await;
    let created = a.create_key_with(json!({"name": "r", "models": ["echo"]})).await;
    let key = created["key"].as_str().unwrap().to_string();
    let learned = known_by(&b, &key).await;
    assert!(
        learned < Duration::from_secs(1),
        "creation took {learned:?} to reach the other replica"
    );
    assert_eq!(b.chat(&key, chat_body("hi")).await.status(), 200);
    let id = created["id"].as_str().unwrap();
    a.admin(Method::DELETE, &format!("/admin/keys/{id}"), None, 200)
        .await;
    let start = Instant::now();
    loop {
        if b.chat(&key, chat_body("hi")).await.status() == 401 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "revocation not honoured within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn parallel_request_leases_are_shared_and_freed() {
    let Some(url) = shared_url() else { return };
    let extra = "[[models]]\nname = \"gpt-slow\"\ntargets = [{ provider = \"fake\", model = \"slow\" }]\n";
    let (_fake, a, b) = replicas(&url, &unique_prefix("par"), extra).await;
    let created = a
        .create_key_with(json!({"name": "p", "limits": {"max_parallel": 2}}))
        .await;
    let key = created["key"].as_str().unwrap().to_string();
    known_by(&b, &key).await;
    let slow = json!({"model": "gpt-slow", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let s1 = a.chat(&key, slow.clone()).await;
    let s2 = b.chat(&key, slow.clone()).await;
    assert_eq!((s1.status().as_u16(), s2.status().as_u16()), (200, 200));
    let third = a.chat(&key, chat_body("hi")).await;
    assert_eq!(third.status(), 429);
    drop(s1); // the client leaves: its lease is released
    let start = Instant::now();
    loop {
        if b.chat(&key, chat_body("hi")).await.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the lease was not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(s2);
}

#[tokio::test]
async fn redis_outage_follows_each_limits_fail_mode_and_recovers() {
    let Some(mut redis) = RedisServer::start() else {
        return skip("redis-server is not installed");
    };
    let (_fake, gw) = on_redis(&redis, "outage").await;
    let limited = gw
        .create_key_with(json!({"name": "rpm", "models": ["echo"], "limits": {"rpm": 3}}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let budgeted = gw
        .create_key_with(json!({"name": "b", "models": ["echo"], "budgets": {"monthly_usd": "10"}}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        assert_eq!(gw.chat(&limited, chat_body("x")).await.status(), 200);
    }
    assert_eq!(gw.chat(&limited, chat_body("x")).await.status(), 429);

    redis.stop();
    // Requests fail open to this replica's own limiter (fresh: 3 more pass, then 429);
    // budgets fail closed (503).
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(gw.chat(&limited, chat_body("x")).await.status().as_u16());
        }
        v
    };
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    let r = gw.chat(&budgeted, chat_body("x")).await;
    assert_eq!(r.status(), 503);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("tollgate_quota_store_fallbacks_total 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_quota_store_errors_total 1"),
        "{metrics}"
    );

    // Redis comes back (empty, it keeps nothing on disk): Redis counts again, automatically.
    assert!(redis.restart());
    let start = Instant::now();
    loop {
        if gw.chat(&budgeted, chat_body("x")).await.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no recovery after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ok = 0;
    for _ in 0..5 {
        if gw.chat(&limited, chat_body("x")).await.status() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 3, "Redis enforces the limit again");
}

#[tokio::test]
async fn teams_limit_their_keys_and_every_admin_action_is_audited() {
    let fake = FakeProvider::start().await;
    let gw = Gateway::start_standard(&fake.base_url(), "").await;
    gw.admin(
        Method::POST,
        "/admin/teams",
        Some(json!({"id": "acme", "limits": {"rpm": 2}})),
        201,
    )
    .await;
    gw.admin(Method::POST, "/admin/teams", Some(json!({"id": "acme"})), 409)
        .await;
    gw.admin(
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "x", "team": "ghost"})),
        400,
    )
    .await;
    let k1 = gw
        .create_key_with(json!({"name": "k1", "team": "acme", "metadata": {"customer": "c-1"}}))
        .await;
    let k2 = gw
        .create_key_with(json!({"name": "k2", "team": "acme", "limits": {"rpm": 100}}))
        .await;
    let (k1key, k2key) = (k1["key"].as_str().unwrap(), k2["key"].as_str().unwrap());
    assert_eq!(gw.chat(k1key, chat_body("a")).await.status(), 200);
    assert_eq!(gw.chat(k2key, chat_body("a")).await.status(), 200);
    let r = gw.chat(k2key, chat_body("a")).await;
    assert_eq!(r.status(), 429, "the team's 2 rpm covers both keys");
    assert!(r.text().await.unwrap().contains("team"));
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"tollgate_limit_rejections_total{limit="requests"} 1"#),
        "{metrics}"
    );

    let id1 = k1["id"].as_str().unwrap();
    let got = gw
        .admin(Method::GET, &format!("/admin/keys/{id1}"), None, 200)
        .await;
    assert_eq!(got["metadata"]["customer"], "c-1");
    assert!(got.get("key_hash").is_none() && got.get("key").is_none());
    let patched = gw
        .admin(
            Method::PATCH,
            &format!("/admin/keys/{id1}"),
            Some(json!({"team": null, "expires_at": 1})),
            200,
        )
        .await;
    assert!(patched["team"].is_null());
    let r = gw.chat(k1key, chat_body("a")).await;
    assert_eq!(r.status(), 401, "expired");
    gw.admin(
        Method::PATCH,
        &format!("/admin/keys/{id1}"),
        Some(json!({"limits": {"rpm": 0}})),
        400,
    )
    .await;
    gw.admin(Method::DELETE, "/admin/teams/acme", None, 409).await;
    gw.admin(
        Method::PATCH,
        "/admin/teams/acme",
        Some(json!({"limits": {"rpm": 10}})),
        200,
    )
    .await;
    let teams = gw.admin(Method::GET, "/admin/teams", None, 200).await;
    assert_eq!(teams["data"][0]["limits"]["rpm"], 10);

    let audit = gw.admin(Method::GET, "/admin/audit", None, 200).await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "team.update",
            "key.update",
            "key.create",
            "key.create",
            "team.create"
        ]
    );
    assert!(audit["data"][0]["ts_ms"].is_i64() && audit["data"][0]["actor"] == "admin");
    assert!(!audit.to_string().contains(k1key) && !audit.to_string().contains(k2key));
}

#[tokio::test]
async fn a_dead_replicas_parallel_lease_expires() {
    let Some(url) = shared_url() else { return };
    let extra = "[[models]]\nname = \"gpt-slow\"\ntargets = [{ provider = \"fake\", model = \"slow\" }]\n[quota]\nlease_ttl_ms = 1000\n";
    let (_fake, mut a, b) = replicas(&url, &unique_prefix("lease"), extra).await;
    let created = a
        .create_key_with(json!({"name": "p", "limits": {"max_parallel": 1}}))
        .await;
    let key = created["key"].as_str().unwrap().to_string();
    known_by(&b, &key).await;
    let slow = json!({"model": "gpt-slow", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let held = a.chat(&key, slow).await;
    assert_eq!(held.status(), 200);
    let ok = b.chat(&key, chat_body("hi")).await;
    assert_eq!(ok.status(), 429, "the slot is taken");
    // Renewals keep a live lease past its TTL.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        b.chat(&key, chat_body("hi")).await.status(),
        429,
        "a live lease is renewed"
    );
    // Replica A dies without settling: its lease expires within the TTL.
    std::process::Command::new("kill")
        .args(["-KILL", &a.pid().to_string()])
        .status()
        .unwrap();
    a.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    loop {
        let status = b.chat(&key, chat_body("hi")).await.status();
        if status == 200 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_millis(2500),
            "lease not freed after the replica died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
}

/// Keeps Redis busy for 1.2 s (a script that spins), as an overloaded server would be.
const STALL_SCRIPT: &str = "local s = redis.call('TIME') local t0 = s[1] * 1000000 + s[2] \
    while true do local n = redis.call('TIME') if n[1] * 1000000 + n[2] - t0 > 1200000 then break end end return 1";

#[tokio::test]
async fn a_reservation_whose_answer_timed_out_is_released_when_redis_runs_it_late() {
    let Some(redis) = RedisServer::start() else {
        return skip("redis-server is not installed");
    };
    let (_fake, gw) = on_redis(&redis, "late").await;
    let key = gw
        .create_key_with(
            json!({"name": "one", "models": ["echo"], "limits": {"max_parallel": 1},
            "budgets": {"monthly_usd": "10"}}),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(gw.chat(&key, chat_body("x")).await.status(), 200);

    // Redis stalls longer than the gateway waits (500 ms): the budget fails closed (503), but the
    // reservation script still runs once Redis wakes up...
    let port = redis.port.to_string();
    let stall = std::thread::spawn(move || {
        std::process::Command::new("redis-cli")
            .args(["-p", &port, "EVAL", STALL_SCRIPT, "0"])
            .output()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.chat(&key, chat_body("x")).await.status(), 503);
    assert!(stall.join().unwrap().unwrap().status.success());
    // ...and must then be released: otherwise its parallel slot stays taken for the lease TTL (30 s)
    // and the key's only slot refuses every request (429).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.chat(&key, chat_body("x")).await.status(), 200);
}

#[tokio::test]
async fn huge_token_counts_neither_crash_nor_slip_under_token_limits() {
    // A provider that reports an absurd prompt count (u64::MAX).
    let app = axum::Router::new().route(
        "/chat/completions",
        axum::routing::post(|| async {
            tollgate_tests::fake::json_answer(
                200,
                json!({"id": "c", "object": "chat.completion", "created": 1, "model": "up-gpt",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": u64::MAX, "completion_tokens": 5, "total_tokens": u64::MAX}}),
            )
        }),
    );
    let upstream = tollgate_tests::fake::serve(app).await;
    let gw = Gateway::start_standard(&format!("http://{}", upstream.addr), "").await;
    let created = gw
        .create_key_with(json!({"name": "big", "models": ["echo", "gpt-test"], "limits": {"tpm": 1000}}))
        .await;
    let key = created["key"].as_str().unwrap();

    // A client asking for u64::MAX output tokens: the estimate must not wrap to a small number.
    let huge = json!({"model": "echo", "max_tokens": u64::MAX,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.chat(key, huge).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(
        status, 429,
        "an unbounded max_tokens exceeds the 1000 tpm: {text}"
    );

    // The provider's count is recorded (saturated), and uses up the key's tokens.
    let body = json!({"model": "gpt-test", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.chat(key, body.clone()).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let r = gw.chat(key, body).await;
    assert_eq!(r.status(), 429, "the huge count used up the tpm: {}", gw.logs());
    assert!(!gw.logs().contains("panicked"), "{}", gw.logs());
}
