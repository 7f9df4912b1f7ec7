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
    // The per-minute rollup agrees.
    let rollup = ch
        .query(&format!(
            "SELECT countMerge(requests), sumMerge(output_tokens_sum) FROM {db}.usage_minute FORMAT TabSeparated"
        ))
        .await;
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
    let metrics = gw
        .http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
        let m = gw
            .http
            .get(gw.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
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
