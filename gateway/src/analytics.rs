//! Usage analytics and billing: `GET /admin/usage/summary` (requests, errors, tokens by class, cost,
//! latency and time-to-first-token percentiles, grouped by key, team, model, provider or day) and
//! `GET /admin/billing/export` (one line per key and model, CSV or JSON). ClickHouse aggregates in
//! SQL; the embedded store aggregates the same way in Rust, so both answer identically (exact sums,
//! exact nearest-rank percentiles: the value at index floor(level * n) of the sorted values, which is
//! ClickHouse's `quantileExact`).

use std::collections::BTreeMap;

use serde::Serialize;
use tollgate_policy::pricing::format_nanos;
use tollgate_schemas::UsageEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Team,
    Model,
    Provider,
    Day,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "key" => GroupBy::Key,
            "team" => GroupBy::Team,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "day" => GroupBy::Day,
            _ => return None,
        })
    }

    /// The ClickHouse expression for the group.
    pub fn sql(self) -> &'static str {
        match self {
            GroupBy::Key => "key_id",
            GroupBy::Team => "team_id",
            GroupBy::Model => "requested_model",
            GroupBy::Provider => "provider",
            GroupBy::Day => "toString(toDate(ts))",
        }
    }

    fn of(self, e: &UsageEvent) -> String {
        match self {
            GroupBy::Key => e.key_id.clone().unwrap_or_default(),
            GroupBy::Team => e.team_id.clone().unwrap_or_default(),
            GroupBy::Model => e.requested_model.clone().unwrap_or_default(),
            GroupBy::Provider => e.provider.clone().unwrap_or_default(),
            GroupBy::Day => day(e.ts_ms),
        }
    }
}

/// `YYYY-MM-DD` (UTC) of a unix time in ms.
fn day(ts_ms: i64) -> String {
    let p = tollgate_policy::quota::periods(ts_ms);
    let d = p[0].0.trim_start_matches("d:");
    format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8])
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SummaryRow {
    pub group: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: String,
    pub latency_ms_p50: u64,
    pub latency_ms_p95: u64,
    pub ttft_ms_p50: Option<u64>,
    pub ttft_ms_p95: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BillingLine {
    pub key_id: String,
    pub model: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: String,
}

pub fn parse_nanos(s: &str) -> i128 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    int.parse::<i128>().unwrap_or(0) * 1_000_000_000 + frac.parse::<i128>().unwrap_or(0)
}

/// Nearest rank: the value at index floor(level * n) of the sorted values.
fn quantile(sorted: &[u64], level: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((level * sorted.len() as f64) as usize).min(sorted.len() - 1);
    Some(sorted[i])
}

#[derive(Default)]
struct Acc {
    requests: u64,
    errors: u64,
    tokens: [u64; 5],
    cost: i128,
    latency: Vec<u64>,
    ttft: Vec<u64>,
}

impl Acc {
    fn add(&mut self, e: &UsageEvent) {
        self.requests += 1;
        self.errors += u64::from(e.status >= 400);
        for (slot, v) in self.tokens.iter_mut().zip([
            e.input_tokens,
            e.cached_input_tokens,
            e.cache_write_input_tokens,
            e.output_tokens,
            e.reasoning_tokens,
        ]) {
            *slot = slot.saturating_add(v);
        }
        self.cost += e.cost_usd.as_deref().map_or(0, parse_nanos);
        self.latency.push(e.latency_ms);
        if let Some(t) = e.ttft_ms {
            self.ttft.push(t);
        }
    }
}

/// Aggregates events in Rust (the embedded store's path).
pub fn summarize(events: &[UsageEvent], by: GroupBy) -> Vec<SummaryRow> {
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    for e in events {
        groups.entry(by.of(e)).or_default().add(e);
    }
    groups
        .into_iter()
        .map(|(group, mut a)| {
            a.latency.sort_unstable();
            a.ttft.sort_unstable();
            SummaryRow {
                group,
                requests: a.requests,
                errors: a.errors,
                error_rate: a.errors as f64 / a.requests.max(1) as f64,
                input_tokens: a.tokens[0],
                cached_input_tokens: a.tokens[1],
                cache_write_input_tokens: a.tokens[2],
                output_tokens: a.tokens[3],
                reasoning_tokens: a.tokens[4],
                cost_usd: format_nanos(a.cost),
                latency_ms_p50: quantile(&a.latency, 0.5).unwrap_or(0),
                latency_ms_p95: quantile(&a.latency, 0.95).unwrap_or(0),
                ttft_ms_p50: quantile(&a.ttft, 0.5),
                ttft_ms_p95: quantile(&a.ttft, 0.95),
            }
        })
        .collect()
}

pub fn bill(events: &[UsageEvent]) -> Vec<BillingLine> {
    let mut lines: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for e in events.iter().filter(|e| e.key_id.is_some()) {
        let k = (
            e.key_id.clone().unwrap_or_default(),
            e.requested_model.clone().unwrap_or_default(),
        );
        lines.entry(k).or_default().add(e);
    }
    lines
        .into_iter()
        .map(|((key_id, model), a)| BillingLine {
            key_id,
            model,
            requests: a.requests,
            input_tokens: a.tokens[0],
            cached_input_tokens: a.tokens[1],
            cache_write_input_tokens: a.tokens[2],
            output_tokens: a.tokens[3],
            reasoning_tokens: a.tokens[4],
            cost_usd: format_nanos(a.cost),
        })
        .collect()
}

/// CSV with a header; fields quoted when they hold a comma, quote or newline.
pub fn billing_csv(lines: &[BillingLine]) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut out = String::from(
        "key_id,model,requests,input_tokens,cached_input_tokens,cache_write_input_tokens,output_tokens,reasoning_tokens,cost_usd\n",
    );
    for l in lines {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            field(&l.key_id),
            field(&l.model),
            l.requests,
            l.input_tokens,
            l.cached_input_tokens,
            l.cache_write_input_tokens,
            l.output_tokens,
            l.reasoning_tokens,
            l.cost_usd
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles_and_exact_costs() {
        assert_eq!(quantile(&[1, 2, 3, 4], 0.5), Some(3));
        assert_eq!(quantile(&[1, 2, 3, 4], 0.95), Some(4));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(parse_nanos("0.0000235"), 23_500);
        assert_eq!(parse_nanos("2"), 2_000_000_000);
        assert_eq!(day(1_795_637_369_000), "2026-11-25");
        let line = BillingLine {
            key_id: "k,1".into(),
            model: "m".into(),
            requests: 1,
            input_tokens: 2,
            cached_input_tokens: 0,
            cache_write_input_tokens: 0,
            output_tokens: 3,
            reasoning_tokens: 0,
            cost_usd: "0.5".into(),
        };
        assert!(billing_csv(&[line]).ends_with("\"k,1\",m,1,2,0,0,3,0,0.5\n"));
    }
}
