//! The ClickHouse usage sink, over ClickHouse's HTTP interface with `JSONEachRow` (works on the 18.16
//! server Debian ships and on current releases; no native protocol, no server-side parameters).
//! Inserts are idempotent: a batch that may have been sent before (a retry, or a segment replayed
//! after a restart) first asks which of its ids are already stored and inserts only the others; the
//! table is also a ReplacingMergeTree keyed by id, so a duplicate can never survive a merge.

use std::{collections::HashSet, fmt::Write, time::Duration};

use serde_json::{json, Value};
use tollgate_schemas::{usage::json, UsageEvent, CLICKHOUSE_SCHEMA};
use uuid::Uuid;

use tollgate_policy::pricing::format_nanos;

use crate::{
    analytics::{parse_nanos, BillingLine, GroupBy, SummaryRow},
    config::Secret,
    usage::UsageQuery,
};

pub struct ClickHouse {
    schema_ready: std::sync::atomic::AtomicBool,
    http: reqwest::Client,
    url: String,
    database: String,
    user: Option<String>,
    password: Option<Secret>,
}

/// A string literal for ClickHouse SQL.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

/// Appends one event as a `JSONEachRow` line of the `usage_events` table, written by hand (no
/// serializer, no intermediate values): the same bytes `serde_json` would write for these columns.
/// Strings are written as given, absent ones as `""`; the cost is a JSON number copied from the
/// decimal string (exact, never a float), `null` when unknown; a malformed cost is refused. Every
/// field is named, so a new one cannot be forgotten (the destructuring stops compiling).
fn write_row(out: &mut Vec<u8>, e: &UsageEvent) -> anyhow::Result<()> {
    let UsageEvent {
        id,
        ts_ms,
        request_id,
        key_id,
        team_id,
        user,
        endpoint,
        requested_model,
        served_model,
        provider,
        status,
        error_type,
        streamed,
        cancelled,
        input_tokens,
        output_tokens,
        cached_input_tokens,
        cache_write_input_tokens,
        reasoning_tokens,
        latency_ms,
        ttft_ms,
        attempts,
        cost_usd,
        instance,
        target,
        fallback,
        bytes_in,
        bytes_out,
        bodies: _, // their own table (`insert_bodies`)
    } = e;
    let cost = match cost_usd.as_deref() {
        Some(c) if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') => {
            anyhow::ensure!(is_json_decimal(c), "malformed cost_usd {c:?}");
            Some(c)
        }
        _ => None,
    };
    out.extend_from_slice(b"{\"id\":");
    json::uuid(out, id);
    out.extend_from_slice(b",\"ts\":");
    json::int(out, ts_ms / 1000);
    out.extend_from_slice(b",\"ts_ms\":");
    json::int(out, *ts_ms);
    for (key, value) in [
        (b",\"request_id\":".as_slice(), request_id.as_str()),
        (b",\"key_id\":", opt(key_id)),
        (b",\"team_id\":", opt(team_id)),
        (b",\"user\":", opt(user)),
        (b",\"endpoint\":", endpoint.as_str()),
        (b",\"requested_model\":", opt(requested_model)),
        (b",\"served_model\":", opt(served_model)),
        (b",\"provider\":", opt(provider)),
    ] {
        out.extend_from_slice(key);
        json::string(out, value);
    }
    out.extend_from_slice(b",\"status\":");
    json::uint(out, u64::from(*status));
    out.extend_from_slice(b",\"error_type\":");
    json::string(out, opt(error_type));
    for (key, value) in [
        (b",\"streamed\":".as_slice(), u64::from(*streamed)),
        (b",\"cancelled\":", u64::from(*cancelled)),
        (b",\"input_tokens\":", *input_tokens),
        (b",\"output_tokens\":", *output_tokens),
        (b",\"cached_input_tokens\":", *cached_input_tokens),
        (b",\"cache_write_input_tokens\":", *cache_write_input_tokens),
        (b",\"reasoning_tokens\":", *reasoning_tokens),
    ] {
        out.extend_from_slice(key);
        json::uint(out, value);
    }
    out.extend_from_slice(b",\"cost_usd\":");
    out.extend_from_slice(cost.map_or(b"null".as_slice(), str::as_bytes));
    out.extend_from_slice(b",\"latency_ms\":");
    json::uint(out, *latency_ms);
    out.extend_from_slice(b",\"ttft_ms\":");
    json::opt_uint(out, *ttft_ms);
    out.extend_from_slice(b",\"attempts\":");
    json::uint(out, u64::from(*attempts));
    out.extend_from_slice(b",\"instance\":");
    json::string(out, instance);
    out.extend_from_slice(b",\"target\":");
    json::string(out, opt(target));
    for (key, value) in [
        (b",\"fallback\":".as_slice(), u64::from(*fallback)),
        (b",\"bytes_in\":", *bytes_in),
        (b",\"bytes_out\":", *bytes_out),
    ] {
        out.extend_from_slice(key);
        json::uint(out, value);
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`: a JSON number without exponent (what `format_nanos` writes).
fn is_json_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    digits(int) && (int == "0" || !int.starts_with('0')) && frac.is_none_or(digits)
}

fn none_if_empty(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

fn num(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn from_row(v: &Value) -> Option<UsageEvent> {
    Some(UsageEvent {
        id: Uuid::parse_str(v["id"].as_str()?).ok()?,
        ts_ms: num(&v["ts_ms"]) as i64,
        request_id: v["request_id"].as_str()?.to_string(),
        key_id: none_if_empty(&v["key_id"]),
        team_id: none_if_empty(&v["team_id"]),
        user: none_if_empty(&v["user"]),
        endpoint: v["endpoint"].as_str()?.to_string(),
        requested_model: none_if_empty(&v["requested_model"]),
        served_model: none_if_empty(&v["served_model"]),
        provider: none_if_empty(&v["provider"]),
        status: num(&v["status"]) as u16,
        error_type: none_if_empty(&v["error_type"]),
        streamed: num(&v["streamed"]) != 0,
        cancelled: num(&v["cancelled"]) != 0,
        input_tokens: num(&v["input_tokens"]),
        output_tokens: num(&v["output_tokens"]),
        cached_input_tokens: num(&v["cached_input_tokens"]),
        cache_write_input_tokens: num(&v["cache_write_input_tokens"]),
        reasoning_tokens: num(&v["reasoning_tokens"]),
        latency_ms: num(&v["latency_ms"]),
        ttft_ms: (!v["ttft_ms"].is_null()).then(|| num(&v["ttft_ms"])),
        attempts: num(&v["attempts"]) as u32,
        // Decimal64(9) comes back as a number with 9 decimals; trim to the canonical form.
        cost_usd: match &v["cost_usd"] {
            Value::Null => None,
            other => Some(
                tollgate_policy::Usd::parse(other.to_string().trim_matches('"'))
                    .map_or_else(|_| other.to_string(), |u| u.to_string()),
            ),
        },
        instance: v["instance"].as_str().unwrap_or("").to_string(),
        target: none_if_empty(&v["target"]),
        fallback: num(&v["fallback"]) != 0,
        bytes_in: num(&v["bytes_in"]),
        bytes_out: num(&v["bytes_out"]),
        bodies: None,
    })
}

impl ClickHouse {
    pub fn new(
        url: &str,
        database: &str,
        user: Option<String>,
        password: Option<Secret>,
    ) -> anyhow::Result<ClickHouse> {
        Ok(ClickHouse {
            schema_ready: std::sync::atomic::AtomicBool::new(false),
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(30))
                .build()?,
            url: url.trim_end_matches('/').to_string(),
            database: database.to_string(),
            user,
            password,
        })
    }

    async fn run(&self, query: &str, body: Option<Vec<u8>>) -> anyhow::Result<String> {
        let mut req = self.http.post(&self.url).query(&[
            ("output_format_json_quote_64bit_integers", "0"),
            ("date_time_input_format", "basic"),
        ]);
        if let Some(u) = &self.user {
            req = req.header("X-ClickHouse-User", u);
        }
        if let Some(p) = &self.password {
            req = req.header("X-ClickHouse-Key", p.expose());
        }
        let req = match body {
            // INSERT: the query in the URL, the rows in the body.
            Some(rows) => req.query(&[("query", query)]).body(rows),
            None => req.body(query.to_string()),
        };
        let res = req.send().await?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            anyhow::bail!(
                "ClickHouse answered {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        Ok(text)
    }

    /// Applies the schema once per process (retried on the next call after a failure).
    async fn ensure_schema(&self) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        if !self.schema_ready.load(Ordering::Acquire) {
            self.apply_schema().await?;
            self.schema_ready.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Creates the database, table and rollup view if missing.
    pub async fn apply_schema(&self) -> anyhow::Result<()> {
        for file in CLICKHOUSE_SCHEMA {
            // Comment lines go first: they may contain `;`.
            let sql: String = file
                .replace("{db}", &self.database)
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            for stmt in sql.split(';').filter(|s| !s.trim().is_empty()) {
                self.run(stmt, None).await?;
            }
        }
        Ok(())
    }

    /// Ids of `events` already stored.
    async fn existing(&self, events: &[&UsageEvent]) -> anyhow::Result<HashSet<Uuid>> {
        let mut found = HashSet::new();
        for chunk in events.chunks(1000) {
            let (lo, hi) = chunk.iter().fold((i64::MAX, i64::MIN), |(lo, hi), e| {
                (lo.min(e.ts_ms), hi.max(e.ts_ms))
            });
            let mut q = format!(
                "SELECT id FROM {}.usage_events WHERE ts >= toDateTime({}) AND ts <= toDateTime({}) AND id IN (",
                self.database,
                lo / 1000,
                hi / 1000
            );
            for (i, e) in chunk.iter().enumerate() {
                let _ = write!(q, "{}'{}'", if i > 0 { "," } else { "" }, e.id);
            }
            q.push_str(") FORMAT TabSeparated");
            found.extend(
                self.run(&q, None)
                    .await?
                    .lines()
                    .filter_map(|l| Uuid::parse_str(l).ok()),
            );
        }
        Ok(found)
    }

    /// Inserts events; with `maybe_sent`, skips the ones already stored (idempotent retry).
    pub async fn insert(&self, events: &[UsageEvent], maybe_sent: bool) -> anyhow::Result<usize> {
        self.insert_parts(&[events], maybe_sent).await
    }

    /// Inserts the events of several slices (a spool batch's segments) in one insert, like `insert`.
    pub async fn insert_parts<P: AsRef<[UsageEvent]> + Sync>(
        &self,
        parts: &[P],
        maybe_sent: bool,
    ) -> anyhow::Result<usize> {
        let events: Vec<&UsageEvent> = parts.iter().flat_map(|p| p.as_ref()).collect();
        self.ensure_schema().await?;
        // Bodies first: once an event is visible, its body (if any) is too.
        self.insert_bodies(&events, maybe_sent).await?;
        let skip = if maybe_sent {
            self.existing(&events).await?
        } else {
            HashSet::new()
        };
        let mut body = Vec::with_capacity(events.len() * 600);
        let mut n = 0;
        for e in events.iter().filter(|e| skip.is_empty() || !skip.contains(&e.id)) {
            write_row(&mut body, e)?;
            n += 1;
        }
        if n > 0 {
            let q = format!("INSERT INTO {}.usage_events FORMAT JSONEachRow", self.database);
            self.run(&q, Some(body)).await?;
        }
        Ok(n)
    }

    /// Opt-in bodies go to their own table (idempotent like the events).
    async fn insert_bodies(&self, events: &[&UsageEvent], maybe_sent: bool) -> anyhow::Result<()> {
        let with: Vec<&UsageEvent> = events.iter().copied().filter(|e| e.bodies.is_some()).collect();
        if with.is_empty() {
            return Ok(());
        }
        let mut skip = HashSet::new();
        if maybe_sent {
            let ids: Vec<String> = with.iter().map(|e| format!("'{}'", e.id)).collect();
            let q = format!(
                "SELECT id FROM {}.usage_bodies WHERE id IN ({}) FORMAT TabSeparated",
                self.database,
                ids.join(",")
            );
            skip.extend(self.run(&q, None).await?.lines().map(str::to_string));
        }
        let mut rows = String::new();
        for e in with.into_iter().filter(|e| !skip.contains(&e.id.to_string())) {
            if let Some(b) = &e.bodies {
                rows.push_str(
                    &json!({"id": e.id.to_string(), "ts": e.ts_ms / 1000, "key_id": opt(&e.key_id),
                    "expires_ms": b.expires_ms, "request": b.request, "response": b.response})
                    .to_string(),
                );
                rows.push('\n');
            }
        }
        if !rows.is_empty() {
            self.run(
                &format!("INSERT INTO {}.usage_bodies FORMAT JSONEachRow", self.database),
                Some(rows.into_bytes()),
            )
            .await?;
        }
        Ok(())
    }

    pub async fn body(&self, id: &str, now_ms: i64) -> anyhow::Result<Option<tollgate_schemas::Bodies>> {
        self.ensure_schema().await?;
        let q = format!(
            "SELECT request, response, expires_ms FROM {}.usage_bodies FINAL WHERE id = {} AND expires_ms > {now_ms} FORMAT JSONEachRow",
            self.database,
            quote(id)
        );
        let text = self.run(&q, None).await?;
        Ok(text
            .lines()
            .next()
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| tollgate_schemas::Bodies {
                request: v["request"].as_str().unwrap_or("").to_string(),
                response: v["response"].as_str().unwrap_or("").to_string(),
                expires_ms: num(&v["expires_ms"]) as i64,
            }))
    }

    /// Deletes expired bodies (an ALTER ... DELETE mutation; partitions of past days could also be dropped).
    pub async fn sweep_bodies(&self, now_ms: i64) -> anyhow::Result<()> {
        self.ensure_schema().await?;
        self.run(
            &format!(
                "ALTER TABLE {}.usage_bodies DELETE WHERE expires_ms <= {now_ms}",
                self.database
            ),
            None,
        )
        .await?;
        Ok(())
    }

    /// Newest first, like the embedded store.
    pub async fn query(&self, q: &UsageQuery) -> anyhow::Result<Vec<UsageEvent>> {
        self.ensure_schema().await?;
        let mut sql = format!("SELECT * FROM {}.usage_events FINAL WHERE 1", self.database);
        if let Some(k) = &q.key_id {
            let _ = write!(sql, " AND key_id = {}", quote(k));
        }
        if let Some(f) = q.from_ms {
            let _ = write!(sql, " AND ts_ms >= {f}");
        }
        if let Some(t) = q.to_ms {
            let _ = write!(sql, " AND ts_ms < {t}");
        }
        if let Some(b) = &q.before {
            let _ = write!(sql, " AND id < {}", quote(b));
        }
        let _ = write!(sql, " ORDER BY id DESC LIMIT {} FORMAT JSONEachRow", q.limit);
        let text = self.run(&sql, None).await?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| from_row(&v))
            .collect())
    }

    /// `GET /admin/usage/summary` in SQL (same definitions as `analytics::summarize`).
    pub async fn summary(
        &self,
        by: GroupBy,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> anyhow::Result<Vec<SummaryRow>> {
        self.ensure_schema().await?;
        let sql = format!(
            "SELECT {g} AS grp, count() AS requests, countIf(status >= 400) AS errors, sum(input_tokens) AS i, \
             sum(cached_input_tokens) AS ci, sum(cache_write_input_tokens) AS cw, sum(output_tokens) AS o, \
             sum(reasoning_tokens) AS r, toString(sum(assumeNotNull(cost_usd))) AS cost, \
             quantileExact(0.5)(latency_ms) AS l50, quantileExact(0.95)(latency_ms) AS l95, \
             countIf(isNotNull(ttft_ms)) AS ttft_n, \
             quantileExactIf(0.5)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS t50, \
             quantileExactIf(0.95)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS t95 \
             FROM {db}.usage_events FINAL WHERE {w} GROUP BY grp ORDER BY grp FORMAT JSONEachRow",
            g = by.sql(),
            db = self.database,
            w = time_filter(from_ms, to_ms),
        );
        let text = self.run(&sql, None).await?;
        let mut out = Vec::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)?;
            let requests = num(&v["requests"]);
            let errors = num(&v["errors"]);
            let has_ttft = num(&v["ttft_n"]) > 0;
            out.push(SummaryRow {
                group: v["grp"].as_str().unwrap_or("").to_string(),
                requests,
                errors,
                error_rate: errors as f64 / requests.max(1) as f64,
                input_tokens: num(&v["i"]),
                cached_input_tokens: num(&v["ci"]),
                cache_write_input_tokens: num(&v["cw"]),
                output_tokens: num(&v["o"]),
                reasoning_tokens: num(&v["r"]),
                cost_usd: format_nanos(parse_nanos(v["cost"].as_str().unwrap_or("0"))),
                latency_ms_p50: num(&v["l50"]),
                latency_ms_p95: num(&v["l95"]),
                ttft_ms_p50: has_ttft.then(|| num(&v["t50"])),
                ttft_ms_p95: has_ttft.then(|| num(&v["t95"])),
            });
        }
        Ok(out)
    }

    /// `GET /admin/billing/export` in SQL: one line per key and model.
    pub async fn billing(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> anyhow::Result<Vec<BillingLine>> {
        self.ensure_schema().await?;
        let sql = format!(
            "SELECT key_id, requested_model AS model, count() AS requests, sum(input_tokens) AS i, \
             sum(cached_input_tokens) AS ci, sum(cache_write_input_tokens) AS cw, sum(output_tokens) AS o, \
             sum(reasoning_tokens) AS r, toString(sum(assumeNotNull(cost_usd))) AS cost \
             FROM {db}.usage_events FINAL WHERE key_id != '' AND {w} GROUP BY key_id, model ORDER BY key_id, model \
             FORMAT JSONEachRow",
            db = self.database,
            w = time_filter(from_ms, to_ms),
        );
        let text = self.run(&sql, None).await?;
        let mut out = Vec::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)?;
            out.push(BillingLine {
                key_id: v["key_id"].as_str().unwrap_or("").to_string(),
                model: v["model"].as_str().unwrap_or("").to_string(),
                requests: num(&v["requests"]),
                input_tokens: num(&v["i"]),
                cached_input_tokens: num(&v["ci"]),
                cache_write_input_tokens: num(&v["cw"]),
                output_tokens: num(&v["o"]),
                reasoning_tokens: num(&v["r"]),
                cost_usd: format_nanos(parse_nanos(v["cost"].as_str().unwrap_or("0"))),
            });
        }
        Ok(out)
    }
}

fn time_filter(from_ms: Option<i64>, to_ms: Option<i64>) -> String {
    let mut w = String::from("1");
    if let Some(f) = from_ms {
        let _ = write!(w, " AND ts_ms >= {f}");
    }
    if let Some(t) = to_ms {
        let _ = write!(w, " AND ts_ms < {t}");
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(cost: Option<&str>) -> UsageEvent {
        UsageEvent {
            id: Uuid::now_v7(),
            ts_ms: 1_795_600_000_123,
            request_id: "req \"1\"".into(),
            key_id: Some("key_1".into()),
            team_id: None,
            user: Some("ü".into()),
            endpoint: "chat".into(),
            requested_model: Some("gpt".into()),
            served_model: None,
            provider: Some("openai".into()),
            status: 200,
            error_type: None,
            streamed: true,
            cancelled: false,
            input_tokens: 11,
            output_tokens: 7,
            cached_input_tokens: 3,
            cache_write_input_tokens: 0,
            reasoning_tokens: 1,
            latency_ms: 42,
            ttft_ms: None,
            attempts: 2,
            cost_usd: cost.map(str::to_string),
            instance: "i".into(),
            target: Some("openai/gpt".into()),
            fallback: true,
            bytes_in: 100,
            bytes_out: 200,
            bodies: None,
        }
    }

    #[test]
    fn rows_carry_every_column_and_an_exact_cost() {
        let e = event(Some("0.000012345"));
        let mut out = Vec::new();
        write_row(&mut out, &e).unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains(r#""cost_usd":0.000012345,"#), "{text}");
        let v: Value = serde_json::from_str(text.trim_end()).unwrap();
        let expected = json!({
            "id": e.id.to_string(), "ts": 1_795_600_000, "ts_ms": 1_795_600_000_123_i64, "request_id": "req \"1\"",
            "key_id": "key_1", "team_id": "", "user": "ü", "endpoint": "chat", "requested_model": "gpt",
            "served_model": "", "provider": "openai", "status": 200, "error_type": "", "streamed": 1,
            "cancelled": 0, "input_tokens": 11, "output_tokens": 7, "cached_input_tokens": 3,
            "cache_write_input_tokens": 0, "reasoning_tokens": 1, "cost_usd": 0.000012345, "latency_ms": 42,
            "ttft_ms": null, "attempts": 2, "instance": "i", "target": "openai/gpt", "fallback": 1,
            "bytes_in": 100, "bytes_out": 200,
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn unknown_or_malformed_costs_are_null_or_refused() {
        let mut out = Vec::new();
        write_row(&mut out, &event(None)).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v["cost_usd"].is_null());
        for bad in ["1.2.3", "01", "1.", ".5", "-", "1-2"] {
            assert!(write_row(&mut Vec::new(), &event(Some(bad))).is_err(), "{bad}");
        }
        for odd in ["", "n/a", "1e5"] {
            let mut out = Vec::new();
            write_row(&mut out, &event(Some(odd))).unwrap();
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert!(v["cost_usd"].is_null(), "{odd}");
        }
        for good in ["0", "-0.5", "12.000000001", "10"] {
            let mut out = Vec::new();
            write_row(&mut out, &event(Some(good))).unwrap();
            assert!(String::from_utf8(out)
                .unwrap()
                .contains(&format!(",\"cost_usd\":{good},")));
        }
    }

    /// The row `serde_json` writes for the same columns (the encoder before the hand-written one).
    #[derive(serde::Serialize)]
    struct Reference<'a> {
        id: &'a Uuid,
        ts: i64,
        ts_ms: i64,
        request_id: &'a str,
        key_id: &'a str,
        team_id: &'a str,
        user: &'a str,
        endpoint: &'a str,
        requested_model: &'a str,
        served_model: &'a str,
        provider: &'a str,
        status: u16,
        error_type: &'a str,
        streamed: u8,
        cancelled: u8,
        input_tokens: u64,
        output_tokens: u64,
        cached_input_tokens: u64,
        cache_write_input_tokens: u64,
        reasoning_tokens: u64,
        cost_usd: Option<&'a serde_json::value::RawValue>,
        latency_ms: u64,
        ttft_ms: Option<u64>,
        attempts: u32,
        instance: &'a str,
        target: &'a str,
        fallback: u8,
        bytes_in: u64,
        bytes_out: u64,
    }

    #[test]
    fn rows_are_byte_for_byte_what_serde_json_writes() {
        let control: String = (0u8..0x20).map(char::from).collect();
        let strings = [
            String::new(),
            "plain".into(),
            "quote \" backslash \\ slash / del \u{7f}".into(),
            control,
            "ü € 𝄞 \u{2028}".into(),
        ];
        for (i, s) in strings.iter().enumerate() {
            let mut e = event(Some("0.000012345"));
            e.request_id = s.clone();
            e.user = Some(s.clone());
            e.error_type = (i % 2 == 0).then(|| s.clone());
            e.ts_ms = [0, -1_500, i64::MAX, 1_795_600_000_123, 999][i];
            e.ttft_ms = (i % 2 == 1).then_some(u64::MAX);
            e.input_tokens = [0, 9, 10, u64::MAX, 1234567890][i];
            e.streamed = i % 2 == 0;
            let mut ours = Vec::new();
            write_row(&mut ours, &e).unwrap();
            let cost = e.cost_usd.as_deref().map(|c| serde_json::from_str(c).unwrap());
            let reference = Reference {
                id: &e.id,
                ts: e.ts_ms / 1000,
                ts_ms: e.ts_ms,
                request_id: &e.request_id,
                key_id: opt(&e.key_id),
                team_id: opt(&e.team_id),
                user: opt(&e.user),
                endpoint: &e.endpoint,
                requested_model: opt(&e.requested_model),
                served_model: opt(&e.served_model),
                provider: opt(&e.provider),
                status: e.status,
                error_type: opt(&e.error_type),
                streamed: u8::from(e.streamed),
                cancelled: u8::from(e.cancelled),
                input_tokens: e.input_tokens,
                output_tokens: e.output_tokens,
                cached_input_tokens: e.cached_input_tokens,
                cache_write_input_tokens: e.cache_write_input_tokens,
                reasoning_tokens: e.reasoning_tokens,
                cost_usd: cost,
                latency_ms: e.latency_ms,
                ttft_ms: e.ttft_ms,
                attempts: e.attempts,
                instance: &e.instance,
                target: opt(&e.target),
                fallback: u8::from(e.fallback),
                bytes_in: e.bytes_in,
                bytes_out: e.bytes_out,
            };
            let mut theirs = serde_json::to_vec(&reference).unwrap();
            theirs.push(b'\n');
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap()
            );
        }
    }
}
