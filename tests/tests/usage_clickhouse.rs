//! Usage events into a real ClickHouse server: exact counts and sums, an outage that loses and
//! duplicates nothing, and a killed gateway whose spool is replayed on restart.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use tollgate_tests::{
    clickhouse::ClickHouseServer,
    fake::FakeProvider,
    gateway::{standard_config, Gateway, PROVIDER_KEY},
};

/// up-gpt at 1.00 / 2.00 / cached 0.50 USD per million: each fake answer (11 in of which 3 cached,
/// 7 out) costs 8 * 1 + 3 * 0.5 + 7 * 2 = 23.5 micro-dollars.
const PRICING: &str =
    "[[pricing]]\nmodel = \"up-gpt\"\ninput = \"1.00\"\noutput = \"2.00\"\ncached_input = \"0.50\"\n";

async fn gateway(ch: &ClickHouseServer, db: &str, fake: &FakeProvider) -> Gateway {
    let usage = format!(
        "[usage]\nsink = \"clickhouse\"\nurl = \"{}\"\ndatabase = \"{db}\"\nflush_ms = 50\n",
        ch.url()
    );
    Gateway::start_full(
        None,
        Some(usage),
        &format!("{}{PRICING}", standard_config(&fake.base_url())),
        &[("FAKE_PROVIDER_KEY", PROVIDER_KEY)],
    )
    .await
}

fn db_name(tag: &str) -> String {
    format!("tg_{tag}_{}", std::process::id())
}

async fn send(gw: &Gateway, key: &str, n: usize) {
    let calls = (0..n).map(|_| {
        gw.chat(
            key,
            json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}),
        )
    });
    for r in join_all(calls).await {
        assert_eq!(r.status(), 200);
    }
}

/// Waits until the table holds `n` rows (raw count: duplicates would show).
async fn wait_rows(ch: &ClickHouseServer, db: &str, n: u64, within: Duration) -> u64 {
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < within {
        let text = reqwest::Client::new()
            .post(ch.url())
            .body(format!("SELECT count() FROM {db}.usage_events"))
            .send()
            .await
            .ok();
        if let Some(r) = text {
            if let Ok(t) = r.text().await {
                last = t.trim().parse().unwrap_or(last);
            }
        }
        if last >= n {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test]
async fn n_requests_give_exactly_n_events_with_exact_sums() {
    let Some(ch) = ClickHouseServer::start() else {
        return;
    };
    let fake = FakeProvider::start().await;
    let db = db_name("sums");
    let gw = gateway(&ch, &db, &fake).await;
    let key = gw.create_key(&[]).await;
    for _ in 0..4 {
        send(&gw, &key, 50).await;
    }
    assert_eq!(wait_rows(&ch, &db, 200, Duration::from_secs(20)).await, 200);
    let sums = ch
        .query(&format!(
            "SELECT count(), uniqExact(id), sum(input_tokens), sum(cached_input_tokens), sum(output_tokens), sum(cost_usd) \
             FROM {db}.usage_events FORMAT TabSeparated"
        ))
        .await;
    let cols: Vec<&str> = sums.trim().split('\t').collect();
    assert_eq!(cols[..5], ["200", "200", "2200", "600", "1400"]);
    // 200 * 23.5 micro-dollars, summed as decimals: exactly 0.0047.
    assert_eq!(cols[5].trim_end_matches('0'), "0.0047");
    // The per-minute rollup agrees (a view's part lands just after its source part: poll briefly).
    let mut rollup = String::new();
    for _ in 0..50 {
        rollup = ch
            .query(&format!(
                "SELECT countMerge(requests), sumMerge(output_tokens_sum) FROM {db}.usage_minute FORMAT TabSeparated"
            ))
            .await;
        if rollup.trim() == "200\t1400" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rollup.trim(), "200\t1400");
    // The admin API reads the same events back from ClickHouse.
    let page = gw.events("limit=5").await;
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 5);
    assert_eq!(data[0]["cost_usd"], "0.0000235");
    assert_eq!(data[0]["cached_input_tokens"], 3);
    assert!(page["next"].is_string());
}

#[tokio::test]
async fn a_clickhouse_outage_loses_nothing_and_duplicates_nothing() {
    let Some(mut ch) = ClickHouseServer::start() else {
        return;
    };
    let fake = FakeProvider::start().await;
    let db = db_name("outage");
    let gw = gateway(&ch, &db, &fake).await;
    let key = gw.create_key(&[]).await;
    send(&gw, &key, 100).await;
    assert_eq!(wait_rows(&ch, &db, 100, Duration::from_secs(20)).await, 100);
    ch.stop();
    send(&gw, &key, 150).await;
    // The events wait in the spool while ClickHouse is down; readiness stays green (the spool works).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("tollgate_usage_events_written_total 250"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("tollgate_usage_sink_errors_total 0\n"),
        "the sink must have failed: {metrics}"
    );
    assert!(ch.restart());
    assert_eq!(wait_rows(&ch, &db, 250, Duration::from_secs(30)).await, 250);
    let distinct = ch
        .query(&format!("SELECT uniqExact(id) FROM {db}.usage_events"))
        .await;
    assert_eq!(distinct.trim(), "250");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        wait_rows(&ch, &db, 251, Duration::from_millis(500)).await,
        250,
        "no duplicate arrived later"
    );
}

#[tokio::test]
async fn a_killed_gateway_replays_its_spool_on_restart() {
    let Some(mut ch) = ClickHouseServer::start() else {
        return;
    };
    let fake = FakeProvider::start().await;
    let db = db_name("replay");
    let mut gw = gateway(&ch, &db, &fake).await;
    let key = gw.create_key(&[]).await;
    send(&gw, &key, 10).await;
    assert_eq!(wait_rows(&ch, &db, 10, Duration::from_secs(20)).await, 10);
    ch.stop();
    send(&gw, &key, 60).await;
    // Wait until all 60 are in the spool (recorded), then kill the gateway without any shutdown.
    let start = Instant::now();
    loop {
        let m = gw.metrics().await;
        if m.contains("tollgate_usage_events_written_total 70") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "events not spooled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::process::Command::new("kill")
        .args(["-KILL", &gw.pid().to_string()])
        .status()
        .unwrap();
    gw.wait_exit(Duration::from_secs(5));
    assert!(ch.restart());
    gw.spawn().await;
    assert_eq!(wait_rows(&ch, &db, 70, Duration::from_secs(30)).await, 70);
    let distinct = ch
        .query(&format!("SELECT uniqExact(id) FROM {db}.usage_events"))
        .await;
    assert_eq!(distinct.trim(), "70");
}

/// The same events in ClickHouse and in the embedded store give the same summaries and bills.
#[tokio::test]
async fn summaries_and_bills_agree_between_clickhouse_and_the_embedded_store() {
    use std::sync::Arc;
    use tollgate::{
        analytics::GroupBy,
        clickhouse::ClickHouse,
        usage::{UsageBackend, UsageStore},
    };
    // TOLLGATE_TEST_CLICKHOUSE_URL points this test at another server, e.g. a current ClickHouse
    // (`../shared/tools/ch_http_shim.py` serves chDB) to prove the same SQL runs there.
    let external = std::env::var("TOLLGATE_TEST_CLICKHOUSE_URL").ok();
    let server = if external.is_some() {
        None
    } else {
        ClickHouseServer::start()
    };
    let Some(url) = external.or_else(|| server.as_ref().map(ClickHouseServer::url)) else {
        return;
    };
    let base = 1_795_600_000_000i64; // 2026-11-25, UTC
    let events: Vec<tollgate_schemas::UsageEvent> = (0..60u64)
        .map(|i| {
            serde_json::from_value(json!({
                "id": uuid::Uuid::now_v7(), "ts_ms": base + (i as i64 % 3) * 86_400_000 + i as i64,
                "request_id": format!("r{i}"), "key_id": format!("key_{}", i % 4), "team_id": if i % 2 == 0 { json!("t1") } else { json!(null) },
                "user": null, "endpoint": "chat", "requested_model": format!("m{}", i % 3), "served_model": "s",
                "provider": if i % 5 == 0 { "b" } else { "a" }, "status": if i % 7 == 0 { 502 } else { 200 },
                "error_type": null, "streamed": i % 2 == 0, "cancelled": false, "input_tokens": 10 + i,
                "output_tokens": 2 * i, "cached_input_tokens": i % 4, "cache_write_input_tokens": i % 3,
                "reasoning_tokens": i % 5, "latency_ms": 100 + (i * 37) % 250,
                "ttft_ms": if i % 2 == 0 { json!(20 + i) } else { json!(null) }, "attempts": 1,
                "cost_usd": if i % 11 == 0 { json!(null) } else { json!(format!("0.{:09}", 1234 * i + 7)) }, "instance": "x"
            }))
            .unwrap()
        })
        .collect();
    let clickhouse = ClickHouse::new(&url, "tg_agree", None, None).unwrap();
    clickhouse.insert(&events, false).await.unwrap();
    let store = UsageStore::open(":memory:").unwrap();
    store.insert(&events).unwrap();
    let (ch_backend, sqlite) = (
        UsageBackend::ClickHouse(Arc::new(clickhouse)),
        UsageBackend::Sqlite(Arc::new(store)),
    );
    for by in [
        GroupBy::Key,
        GroupBy::Team,
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Day,
    ] {
        let a = ch_backend.summary(by, None, None).await.unwrap();
        let b = sqlite.summary(by, None, None).await.unwrap();
        assert!(!a.is_empty());
        assert_eq!(a, b, "{by:?}");
    }
    let window = (Some(base + 86_400_000), Some(base + 2 * 86_400_000));
    assert_eq!(
        ch_backend
            .summary(GroupBy::Day, window.0, window.1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        ch_backend.billing(None, None).await.unwrap(),
        sqlite.billing(None, None).await.unwrap()
    );
    assert_eq!(
        ch_backend.billing(window.0, window.1).await.unwrap(),
        sqlite.billing(window.0, window.1).await.unwrap()
    );
}

#[tokio::test]
async fn opt_in_bodies_live_in_their_own_clickhouse_table() {
    let Some(ch) = ClickHouseServer::start() else {
        return;
    };
    let fake = FakeProvider::start().await;
    let db = db_name("bodies");
    let gw = gateway(&ch, &db, &fake).await;
    let opted = gw
        .create_key_with(json!({"name": "audit", "body_retention": "1h"}))
        .await;
    let key = opted["key"].as_str().unwrap();
    let r = gw
        .chat(
            key,
            json!({"model": "gpt-test", "messages": [{"role": "user", "content": "keep me"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(wait_rows(&ch, &db, 1, Duration::from_secs(20)).await, 1);
    let id = gw.events("limit=1").await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = gw
        .get(
            tollgate_tests::gateway::ADMIN_KEY,
            &format!("/admin/usage/events/{id}/body"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(body["request"].as_str().unwrap().contains("keep me"), "{body}");
    assert!(
        body["response"].as_str().unwrap().contains("fake: keep me"),
        "{body}"
    );
    assert_eq!(
        ch.query(&format!("SELECT count() FROM {db}.usage_bodies"))
            .await
            .trim(),
        "1"
    );
    let in_events = ch
        .query(&format!(
            "SELECT count() FROM {db}.usage_events WHERE position(request_id, 'keep me') > 0"
        ))
        .await;
    assert_eq!(in_events.trim(), "0");
}

#[tokio::test]
async fn sigterm_during_a_load_loses_nothing() {
    let Some(ch) = ClickHouseServer::start() else {
        return;
    };
    let fake = FakeProvider::start().await;
    let db = db_name("sigterm");
    let mut gw = gateway(&ch, &db, &fake).await;
    let key = gw.create_key(&[]).await;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = {
        let (url, key, answered) = (gw.url("/v1/chat/completions"), key.clone(), answered.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]});
            let calls = (0..400).map(|i| {
                let (client, url, key, body, answered) = (
                    client.clone(),
                    url.clone(),
                    key.clone(),
                    body.clone(),
                    answered.clone(),
                );
                async move {
                    tokio::time::sleep(Duration::from_millis(i * 3)).await;
                    if let Ok(r) = client.post(&url).bearer_auth(&key).json(&body).send().await {
                        if r.bytes().await.is_ok() {
                            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                }
            });
            join_all(calls).await;
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    let code = tokio::task::spawn_blocking(move || (gw.wait_exit(Duration::from_secs(20)), gw))
        .await
        .unwrap();
    let (code, gw) = code;
    assert_eq!(code, Some(0), "{}", gw.logs());
    load.await.unwrap();
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        answered > 50 && answered < 400,
        "the load straddled the shutdown ({answered} answered)"
    );
    // Every request that got an answer has its event in ClickHouse, none twice. Requests the gateway
    // took but whose answer the client never read (cut by the shutdown) are recorded too.
    let rows = wait_rows(&ch, &db, answered, Duration::from_secs(20)).await;
    assert!(
        rows >= answered && rows <= 400,
        "{rows} events for {answered} answers"
    );
    let counts = ch
        .query(&format!(
            "SELECT uniqExact(id), countIf(status = 200) FROM {db}.usage_events FORMAT TabSeparated"
        ))
        .await;
    let counts: Vec<u64> = counts.trim().split('\t').map(|c| c.parse().unwrap()).collect();
    assert_eq!(counts[0], rows, "no duplicates");
    assert!(
        counts[1] >= answered,
        "every answered request has its 200 event: {counts:?} vs {answered}"
    );
}
