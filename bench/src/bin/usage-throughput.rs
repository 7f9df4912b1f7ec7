//! `usage-throughput --clickhouse URL [--events N] [--fsync always|never] [--batch-rows N]`: pushes N
//! synthetic usage events through the real pipeline (queue -> spool segments -> shipper ->
//! ClickHouse) and reports the sustained events per second until the last one is confirmed, the
//! CPU time this process spent per event (queue, spool writer, shipper and its HTTP client: the
//! gateway's share; ClickHouse's own work is not in it), plus the cost of `UsageSink::record` on the
//! request path.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tollgate::{
    clickhouse::ClickHouse,
    metrics::Metrics,
    spool::{Fsync, Spool},
    usage::{ship, UsageBackend, UsageSink},
};
use tollgate_bench::sample_event as event;
use tollgate_schemas::UsageEvent;

#[tokio::main]
async fn main() {
    let mut url = String::new();
    let mut n: u64 = 500_000;
    let mut fsync = Fsync::Always;
    let mut batch_rows = 10_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--clickhouse" => url = args.next().expect("url"),
            "--events" => n = args.next().expect("n").parse().expect("number"),
            "--fsync" => {
                fsync = if args.next().as_deref() == Some("never") {
                    Fsync::Never
                } else {
                    Fsync::Always
                }
            }
            "--batch-rows" => batch_rows = args.next().expect("n").parse().expect("number"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!url.is_empty(), "--clickhouse URL is required");
    let db = format!("tg_bench_{}", std::process::id());
    let dir = std::env::temp_dir().join(&db);
    let spool = Arc::new(Spool::open(&dir, fsync).unwrap());
    let metrics = Arc::new(Metrics::default());
    let backend = Arc::new(UsageBackend::ClickHouse(Arc::new(
        ClickHouse::new(&url, &db, None, None).unwrap(),
    )));
    let written = Arc::new(tokio::sync::Notify::new());
    let (sink, writer) = UsageSink::start(
        Arc::clone(&spool),
        n as usize + 1,
        Arc::clone(&metrics),
        Arc::clone(&written),
        Duration::from_millis(10),
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let shipper = tokio::spawn(ship(
        Arc::clone(&spool),
        backend,
        Arc::clone(&metrics),
        written,
        Duration::from_millis(200),
        batch_rows,
        stop_rx,
    ));
    let events: Vec<UsageEvent> = (0..n).map(event).collect();
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let mut record_ns = 0u128;
    for e in events {
        let t = Instant::now();
        sink.record(e);
        record_ns += t.elapsed().as_nanos();
    }
    drop(sink);
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    let spooled = start.elapsed();
    while metrics.usage_shipped.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = start.elapsed();
    let cpu = cpu_seconds() - cpu_start;
    let _ = stop.send(true);
    let _ = shipper.await;
    println!(
        "| {n} events | fsync {} | batch {batch_rows} | spooled in {:.2} s | in ClickHouse after {:.2} s | **{:.0} events/s**, pipeline CPU {:.2} µs/event | record() {:.0} ns/event | dropped {} |",
        if fsync == Fsync::Always { "always" } else { "never" },
        spooled.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        cpu * 1e6 / n as f64,
        record_ns as f64 / n as f64,
        metrics.usage_dropped.load(Ordering::Relaxed)
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = reqwest::Client::new()
        .post(&url)
        .body(format!("DROP DATABASE IF EXISTS {db}"))
        .send()
        .await;
}

/// User and system CPU time of this process so far (every thread), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}
