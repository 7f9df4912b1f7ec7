//! Prometheus metrics, rendered as text at `GET /metrics`. Request metrics are derived from the usage
//! event (one place, so metrics and billing data never disagree). Label values are bounded: the model
//! label is a configured model name (unknown models are counted under an empty label), never a key.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{atomic::AtomicU64, atomic::Ordering, Mutex},
};

use tollgate_schemas::UsageEvent;

/// Upper bounds in seconds, for request latency and time to first token.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in BUCKETS.iter().zip(self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Joins the label values of a series key: the unit separator, which no label value holds (models and
/// providers are configured names, endpoints and error types fixed words). One string names a series,
/// so recording an event allocates two keys, and stores neither when its series exist; keys sort as
/// the tuples of their values would.
const SEP: char = '\u{1f}';

/// The token classes, in the order they are rendered.
const TOKEN_CLASSES: [&str; 4] = ["cached_input", "input", "output", "reasoning"];

#[derive(Default)]
struct Families {
    /// `endpoint SEP model SEP provider SEP status SEP error_type` -> count
    requests: BTreeMap<String, u64>,
    /// endpoint -> latency
    latency: BTreeMap<String, Histogram>,
    /// `model SEP provider` -> time to first token, cost, tokens
    models: BTreeMap<String, ModelSeries>,
    /// provider -> time from sending an upstream request to its response headers
    upstream: BTreeMap<String, Histogram>,
    /// limit kind -> refusals
    rejections: BTreeMap<&'static str, u64>,
    /// requests that reached a provider whose price is unknown
    cost_unknown: u64,
}

/// What is counted per model and provider.
#[derive(Default)]
struct ModelSeries {
    ttft: Option<Histogram>,
    /// Nano-dollars.
    cost_nanos: Option<i128>,
    /// By [`TOKEN_CLASSES`].
    tokens: [u64; 4],
}

/// The value of `key`, inserted as the default (the key's one allocation) when new.
fn slot<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> Option<&'m mut V> {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key)
}

fn joined(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 4);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.push_str(p);
    }
    key
}

#[derive(Default)]
pub struct Metrics {
    families: Mutex<Families>,
    pub usage_written: AtomicU64,
    pub usage_dropped: AtomicU64,
    pub usage_queue_depth: AtomicU64,
    pub usage_shipped: AtomicU64,
    pub spool_bytes_written: AtomicU64,
    pub spool_errors: AtomicU64,
    pub spool_failing: AtomicU64,
    pub spool_segments: AtomicU64,
    pub sink_errors: AtomicU64,
    pub sink_lag_ms: AtomicU64,
    pub upstream_retries: AtomicU64,
    pub panics: AtomicU64,
    pub quota_rejections: AtomicU64,
    pub fallbacks: AtomicU64,
    pub config_reloads: AtomicU64,
    pub trace_export_errors: AtomicU64,
    pub trace_spans_dropped: AtomicU64,
    pub config_reload_failures: AtomicU64,
    pub quota_fallbacks: AtomicU64,
    pub quota_store_errors: AtomicU64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    pub fn record_usage_event(&self, e: &UsageEvent) {
        // A model name is a label only once it resolved to a configured model (a provider served it);
        // what a client typed is not, or anyone could grow the series without bound.
        let model = match e.provider {
            Some(_) => e.requested_model.as_deref().unwrap_or_default(),
            None => "",
        };
        let provider = e.provider.as_deref().unwrap_or_default();
        let mut requests = joined(&[&e.endpoint, model, provider, ""]);
        let _ = write!(requests, "{}{SEP}", e.status);
        requests.push_str(e.error_type.as_deref().unwrap_or_default());
        let model_key = joined(&[model, provider]);
        let Ok(mut f) = self.families.lock() else { return };
        if let Some(n) = slot(&mut f.requests, &requests) {
            *n += 1;
        }
        if let Some(h) = slot(&mut f.latency, &e.endpoint) {
            h.observe(e.latency_ms as f64 / 1000.0);
        }
        let cost = e.cost_usd.as_deref().map(crate::analytics::parse_nanos);
        if cost.is_none() && e.attempts > 0 && e.status < 400 {
            f.cost_unknown += 1;
        }
        let Some(series) = slot(&mut f.models, &model_key) else {
            return;
        };
        if let Some(t) = e.ttft_ms {
            series
                .ttft
                .get_or_insert_with(Histogram::default)
                .observe(t as f64 / 1000.0);
        }
        if let Some(n) = cost {
            *series.cost_nanos.get_or_insert(0) += n;
        }
        let counts = [
            e.cached_input_tokens,
            e.input_tokens,
            e.output_tokens,
            e.reasoning_tokens,
        ];
        for (total, n) in series.tokens.iter_mut().zip(counts) {
            *total = total.saturating_add(n);
        }
    }

    /// One upstream attempt's latency to response headers (or failure), by provider name.
    pub fn observe_upstream(&self, provider: &str, secs: f64) {
        if let Ok(mut f) = self.families.lock() {
            f.upstream.entry(provider.to_string()).or_default().observe(secs);
        }
    }

    /// A request refused by a limit of this kind (`requests`, `tokens`, `parallel`, `budget`).
    pub fn reject(&self, kind: &'static str) {
        self.quota_rejections.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.families.lock() {
            *f.rejections.entry(kind).or_default() += 1;
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Ok(f) = self.families.lock() {
            out.push_str("# HELP tollgate_upstream_duration_seconds Upstream attempt latency to response headers, by provider.\n");
            out.push_str("# TYPE tollgate_upstream_duration_seconds histogram\n");
            for (provider, h) in &f.upstream {
                h.render(
                    &mut out,
                    "tollgate_upstream_duration_seconds",
                    &format!("provider=\"{}\"", escape(provider)),
                );
            }
            out.push_str("# HELP tollgate_limit_rejections_total Requests refused, by limit kind.\n");
            out.push_str("# TYPE tollgate_limit_rejections_total counter\n");
            for (kind, n) in &f.rejections {
                let _ = writeln!(out, "tollgate_limit_rejections_total{{limit=\"{kind}\"}} {n}");
            }
            out.push_str("# HELP tollgate_requests_total Requests by endpoint, model, provider, status and error type.\n");
            out.push_str("# TYPE tollgate_requests_total counter\n");
            for (key, n) in &f.requests {
                let mut labels = key.split(SEP);
                let mut next = || labels.next().unwrap_or_default();
                let (endpoint, model, provider, status, err) = (next(), next(), next(), next(), next());
                let _ = writeln!(
                    out,
                    "tollgate_requests_total{{endpoint=\"{}\",model=\"{}\",provider=\"{}\",status=\"{status}\",error_type=\"{}\"}} {n}",
                    escape(endpoint), escape(model), escape(provider), escape(err)
                );
            }
            out.push_str(
                "# HELP tollgate_request_duration_seconds Time from request arrival to the last byte.\n",
            );
            out.push_str("# TYPE tollgate_request_duration_seconds histogram\n");
            for (endpoint, h) in &f.latency {
                h.render(
                    &mut out,
                    "tollgate_request_duration_seconds",
                    &format!("endpoint=\"{}\"", escape(endpoint)),
                );
            }
            out.push_str("# HELP tollgate_time_to_first_token_seconds Time to the first streamed chunk.\n");
            out.push_str("# TYPE tollgate_time_to_first_token_seconds histogram\n");
            for (key, h) in f.models.iter().filter_map(|(k, s)| Some((k, s.ttft.as_ref()?))) {
                let (model, provider) = key.split_once(SEP).unwrap_or((key, ""));
                h.render(
                    &mut out,
                    "tollgate_time_to_first_token_seconds",
                    &format!("model=\"{}\",provider=\"{}\"", escape(model), escape(provider)),
                );
            }
            out.push_str("# HELP tollgate_cost_usd_total Spend by model and provider.\n");
            out.push_str("# TYPE tollgate_cost_usd_total counter\n");
            for (key, n) in f.models.iter().filter_map(|(k, s)| Some((k, s.cost_nanos?))) {
                let (model, provider) = key.split_once(SEP).unwrap_or((key, ""));
                let _ = writeln!(
                    out,
                    "tollgate_cost_usd_total{{model=\"{}\",provider=\"{}\"}} {}",
                    escape(model),
                    escape(provider),
                    n as f64 / 1e9
                );
            }
            out.push_str("# HELP tollgate_cost_unknown_total Served requests whose model has no price (cost recorded as null).\n");
            out.push_str("# TYPE tollgate_cost_unknown_total counter\n");
            let _ = writeln!(out, "tollgate_cost_unknown_total {}", f.cost_unknown);
            out.push_str("# HELP tollgate_tokens_total Tokens by model, provider and class.\n");
            out.push_str("# TYPE tollgate_tokens_total counter\n");
            for (key, s) in &f.models {
                let (model, provider) = key.split_once(SEP).unwrap_or((key, ""));
                for (class, n) in TOKEN_CLASSES.iter().zip(s.tokens).filter(|(_, n)| *n > 0) {
                    let _ = writeln!(
                        out,
                        "tollgate_tokens_total{{model=\"{}\",provider=\"{}\",class=\"{class}\"}} {n}",
                        escape(model),
                        escape(provider)
                    );
                }
            }
        }
        for (name, help, kind, v) in [
            (
                "tollgate_usage_events_written_total",
                "Usage events written to the store.",
                "counter",
                &self.usage_written,
            ),
            (
                "tollgate_usage_events_dropped_total",
                "Usage events lost (queue full or store failing).",
                "counter",
                &self.usage_dropped,
            ),
            (
                "tollgate_usage_events_shipped_total",
                "Usage events the sink confirmed (then removed from the spool).",
                "counter",
                &self.usage_shipped,
            ),
            (
                "tollgate_usage_spool_bytes_written_total",
                "Bytes appended to the usage spool.",
                "counter",
                &self.spool_bytes_written,
            ),
            (
                "tollgate_usage_spool_errors_total",
                "Failed spool writes (full or failing disk); the batch is retried.",
                "counter",
                &self.spool_errors,
            ),
            (
                "tollgate_usage_spool_segments",
                "Spool segments waiting for the sink.",
                "gauge",
                &self.spool_segments,
            ),
            (
                "tollgate_usage_sink_errors_total",
                "Failed inserts into the usage sink (retried).",
                "counter",
                &self.sink_errors,
            ),
            (
                "tollgate_usage_sink_lag_milliseconds",
                "Age of the oldest event not yet confirmed by the sink.",
                "gauge",
                &self.sink_lag_ms,
            ),
            (
                "tollgate_usage_queue_depth",
                "Usage events waiting to be written.",
                "gauge",
                &self.usage_queue_depth,
            ),
            (
                "tollgate_upstream_retries_total",
                "Upstream attempts beyond the first.",
                "counter",
                &self.upstream_retries,
            ),
            (
                "tollgate_trace_export_errors_total",
                "Span batches the OTLP endpoint did not accept.",
                "counter",
                &self.trace_export_errors,
            ),
            (
                "tollgate_trace_spans_dropped_total",
                "Spans dropped because the export queue was full.",
                "counter",
                &self.trace_spans_dropped,
            ),
            (
                "tollgate_config_reloads_total",
                "Config reloads applied (SIGHUP or file change).",
                "counter",
                &self.config_reloads,
            ),
            (
                "tollgate_config_reload_failures_total",
                "Config reloads refused because the new file was invalid.",
                "counter",
                &self.config_reload_failures,
            ),
            (
                "tollgate_fallbacks_total",
                "Requests served by a target other than the first planned one.",
                "counter",
                &self.fallbacks,
            ),
            (
                "tollgate_quota_rejections_total",
                "Requests refused by a rate limit or budget.",
                "counter",
                &self.quota_rejections,
            ),
            (
                "tollgate_quota_store_fallbacks_total",
                "Quota checks answered by the local limiter because Redis was unreachable.",
                "counter",
                &self.quota_fallbacks,
            ),
            (
                "tollgate_quota_store_errors_total",
                "Requests refused with 503 because Redis was unreachable and the limit fails closed.",
                "counter",
                &self.quota_store_errors,
            ),
            (
                "tollgate_panics_total",
                "Requests that panicked (answered 500).",
                "counter",
                &self.panics,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        let mut e = UsageEvent {
            id: Uuid::nil(),
            ts_ms: 0,
            request_id: "r".into(),
            key_id: Some("key_1".into()),
            user: None,
            endpoint: "chat".into(),
            requested_model: Some("gpt".into()),
            served_model: None,
            provider: Some("p".into()),
            status: 200,
            error_type: None,
            streamed: true,
            cancelled: false,
            input_tokens: 5,
            output_tokens: 7,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            latency_ms: 3,
            ttft_ms: Some(1),
            attempts: 1,
            cost_usd: None,
            team_id: None,
            cache_write_input_tokens: 0,
            instance: String::new(),
            target: None,
            fallback: false,
            bytes_in: 0,
            bytes_out: 0,
            bodies: None,
        };
        m.record_usage_event(&e);
        e.provider = None;
        e.requested_model = Some("attacker-chosen".into());
        m.record_usage_event(&e);
        let text = m.render();
        assert!(text.contains(r#"tollgate_requests_total{endpoint="chat",model="gpt",provider="p",status="200",error_type=""} 1"#), "{text}");
        assert!(text.contains(r#"tollgate_tokens_total{model="gpt",provider="p",class="output"} 7"#));
        assert!(text.contains(r#"tollgate_request_duration_seconds_bucket{endpoint="chat",le="0.005"} 2"#));
        assert!(!text.contains("attacker-chosen"));
        assert!(!text.contains("key_1"));

        // A priced request on another provider, and a refused one: each series on its own line.
        e.provider = Some("q".into());
        e.requested_model = Some("gpt".into());
        e.cost_usd = Some("0.25".into());
        e.cached_input_tokens = 2;
        m.record_usage_event(&e);
        e.status = 429;
        e.error_type = Some("rate_limit_exceeded".into());
        m.record_usage_event(&e);
        let text = m.render();
        for line in [
            r#"tollgate_requests_total{endpoint="chat",model="gpt",provider="q",status="200",error_type=""} 1"#,
            r#"tollgate_requests_total{endpoint="chat",model="gpt",provider="q",status="429",error_type="rate_limit_exceeded"} 1"#,
            r#"tollgate_requests_total{endpoint="chat",model="",provider="",status="200",error_type=""} 1"#,
            r#"tollgate_cost_usd_total{model="gpt",provider="q"} 0.5"#,
            r#"tollgate_tokens_total{model="gpt",provider="q",class="cached_input"} 4"#,
            r#"tollgate_tokens_total{model="gpt",provider="q",class="input"} 10"#,
            r#"tollgate_time_to_first_token_seconds_count{model="gpt",provider="p"} 1"#,
            r#"tollgate_cost_unknown_total 2"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains(r#"tollgate_cost_usd_total{model="gpt",provider="p"}"#),
            "p had no cost"
        );
        assert!(
            !text.contains(r#"class="reasoning""#),
            "no reasoning tokens were counted"
        );
    }
}
