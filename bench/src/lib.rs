//! Load harness for Tollgate (`bench/run.sh` runs it and appends the results to `bench/RESULTS.md`):
//! - `fake-upstream`: a fast fake provider speaking OpenAI and Anthropic (JSON and SSE), configurable
//!   latency, answer size, chunk count and interval;
//! - `baseline-proxy`: a bare hyper reverse proxy, the practical limit on the machine;
//! - `loadgen`: an open-loop, constant-arrival-rate load driver that measures latency from each
//!   request's *scheduled* start (no coordinated omission), with a max-rate search and an
//!   open-streams mode;
//! - `usage-throughput`: the usage pipeline into ClickHouse;
//! - `benches/hot_path.rs`: criterion microbenchmarks of the per-request work.

use tollgate_schemas::UsageEvent;

/// A realistic usage event (what one chat request records), varied by `i`.
pub fn sample_event(i: u64) -> UsageEvent {
    UsageEvent {
        id: uuid::Uuid::now_v7(),
        ts_ms: 1_795_600_000_000 + i as i64,
        request_id: format!("req-{i}"),
        key_id: Some(format!("key_{}", i % 100)),
        team_id: Some(format!("team_{}", i % 10)),
        user: None,
        endpoint: "chat".into(),
        requested_model: Some("gpt-4o-mini".into()),
        served_model: Some("gpt-4o-mini-2024-07-18".into()),
        provider: Some("openai".into()),
        status: 200,
        error_type: None,
        streamed: i.is_multiple_of(2),
        cancelled: false,
        input_tokens: 120 + i % 50,
        output_tokens: 40 + i % 30,
        cached_input_tokens: i % 64,
        cache_write_input_tokens: 0,
        reasoning_tokens: 0,
        latency_ms: 300 + i % 200,
        ttft_ms: Some(80),
        attempts: 1,
        cost_usd: Some(format!("0.0000{:05}", i % 99_999)),
        instance: "bench".into(),
        target: Some("openai/gpt-4o-mini".into()),
        fallback: false,
        bytes_in: 420,
        bytes_out: 900,
        bodies: None,
    }
}
