-- Tollgate usage events, one row per request. Runs on ClickHouse 18.16 and current releases:
-- no DateTime64, Map, TTL, CODEC or LowCardinality. Idempotent (IF NOT EXISTS). `{db}` is replaced by
-- the configured database. Retention: drop monthly partitions (ALTER TABLE ... DROP PARTITION 202601).
CREATE DATABASE IF NOT EXISTS {db};

CREATE TABLE IF NOT EXISTS {db}.usage_events (
    id String,
    ts DateTime,
    ts_ms UInt64,
    request_id String,
    key_id String,
    team_id String,
    user String,
    endpoint String,
    requested_model String,
    served_model String,
    provider String,
    status UInt16,
    error_type String,
    streamed UInt8,
    cancelled UInt8,
    input_tokens UInt64,
    output_tokens UInt64,
    cached_input_tokens UInt64,
    cache_write_input_tokens UInt64,
    reasoning_tokens UInt64,
    cost_usd Nullable(Decimal64(9)),
    latency_ms UInt64,
    ttft_ms Nullable(UInt64),
    attempts UInt32,
    instance String,
    target String,
    fallback UInt8,
    bytes_in UInt64,
    bytes_out UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (key_id, ts, id);

-- Opt-in prompt and answer bodies, kept apart from the events; deleted after expires_ms.
CREATE TABLE IF NOT EXISTS {db}.usage_bodies (
    id String,
    ts DateTime,
    key_id String,
    expires_ms UInt64,
    request String,
    response String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY id;

-- Per-minute rollups by key, team, model and provider.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_minute
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, key_id, team_id, requested_model, provider)
AS SELECT
    toStartOfMinute(ts) AS minute,
    key_id,
    team_id,
    requested_model,
    provider,
    countState() AS requests,
    sumState(toUInt64(status >= 400)) AS errors,
    sumState(input_tokens) AS input_tokens_sum,
    sumState(output_tokens) AS output_tokens_sum,
    sumState(cached_input_tokens) AS cached_input_tokens_sum,
    sumState(cache_write_input_tokens) AS cache_write_input_tokens_sum,
    sumState(reasoning_tokens) AS reasoning_tokens_sum,
    sumState(assumeNotNull(cost_usd)) AS cost_usd_sum,
    quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms_q,
    quantilesState(0.5, 0.95, 0.99)(assumeNotNull(ttft_ms)) AS ttft_ms_q
FROM {db}.usage_events
GROUP BY minute, key_id, team_id, requested_model, provider;
