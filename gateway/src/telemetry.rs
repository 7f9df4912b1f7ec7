//! OpenTelemetry traces over OTLP/HTTP (JSON encoding), with no SDK on the request path: one span per
//! request (SERVER) and one per upstream attempt (CLIENT), named and attributed by the OpenTelemetry
//! GenAI semantic conventions (`gen_ai.operation.name`, `gen_ai.provider.name`,
//! `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.input_tokens`, ...). A client's W3C
//! `traceparent` is continued, and each upstream attempt sends its own. Finished spans go through a
//! bounded queue (a full queue drops spans and counts them, never blocks a request) to a background
//! exporter that posts batches to `{endpoint}/v1/traces`.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rand::RngCore;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// A W3C trace context: which trace, which parent span, sampled or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

impl TraceContext {
    /// Parses `traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        if parts.len() < 4 || parts[0].len() != 2 || parts[0] == "ff" {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(parts[1], &mut trace_id).ok()?;
        hex::decode_to_slice(parts[2], &mut span_id).ok()?;
        let flags = u8::from_str_radix(parts[3], 16).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            u8::from(self.sampled)
        )
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
}

/// A span being recorded; [`Span::end`] hands it to the exporter.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    kind: Kind,
    start_ns: u64,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
    sampled: bool,
}

impl Span {
    /// A new span: child of `parent` when given, else the root of a new trace.
    pub fn start(name: impl Into<String>, kind: Kind, parent: Option<TraceContext>) -> Span {
        let (trace_id, parent_id, sampled) = match parent {
            Some(p) => (p.trace_id, Some(p.span_id), p.sampled),
            None => (random(), None, true),
        };
        Span {
            trace_id,
            span_id: random(),
            parent: parent_id,
            name: name.into(),
            kind,
            start_ns: now_ns(),
            attributes: Vec::new(),
            error: None,
            sampled,
        }
    }

    /// The context a child of this span (or an upstream request) carries.
    pub fn context(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: self.sampled,
        }
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        if let Some(slot) = self.attributes.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.attributes.push((key, value));
        }
    }

    pub fn set_error(&mut self, error_type: &str) {
        self.error = Some(error_type.to_string());
        self.set("error.type", error_type.to_string());
    }

    pub fn rename(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Finishes the span and queues it for export (sampled spans only).
    pub fn end(self, tracer: &Tracer) {
        if self.sampled {
            tracer.export(self, now_ns());
        }
    }

    fn to_otlp(&self, end_ns: u64) -> Value {
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(k, v)| json!({"key": k, "value": any_value(v)}))
            .collect();
        let mut span = json!({
            "traceId": hex::encode(self.trace_id),
            "spanId": hex::encode(self.span_id),
            "name": self.name,
            "kind": match self.kind { Kind::Server => 2, Kind::Client => 3 },
            "startTimeUnixNano": self.start_ns.to_string(),
            "endTimeUnixNano": end_ns.max(self.start_ns).to_string(),
            "attributes": attributes,
            "status": match &self.error { Some(m) => json!({"code": 2, "message": m}), None => json!({"code": 0}) },
        });
        if let Some(p) = self.parent {
            span["parentSpanId"] = json!(hex::encode(p));
        }
        span
    }
}

fn any_value(v: &Value) -> Value {
    match v {
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        Value::String(s) => json!({"stringValue": s}),
        other => json!({"stringValue": other.to_string()}),
    }
}

/// The span sink of the request path. Disabled (no endpoint) it drops everything at no cost.
#[derive(Clone)]
pub struct Tracer {
    tx: Option<mpsc::Sender<Value>>,
    metrics: Arc<Metrics>,
}

impl Tracer {
    pub fn disabled(metrics: Arc<Metrics>) -> Tracer {
        Tracer { tx: None, metrics }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Starts the exporter task posting to `{endpoint}/v1/traces`.
    pub fn start(endpoint: &str, service: &str, metrics: Arc<Metrics>) -> anyhow::Result<Tracer> {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let (tx, mut rx) = mpsc::channel::<Value>(8192);
        let resource = json!({"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
            {"key": "service.instance.id", "value": {"stringValue": crate::usage::instance_id()}},
        ]});
        let export_metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut batch = Vec::new();
            loop {
                let first = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
                match first {
                    Ok(Some(span)) => batch.push(span),
                    Ok(None) if batch.is_empty() => return,
                    _ => {}
                }
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(s) => batch.push(s),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let body = json!({"resourceSpans": [{"resource": resource, "scopeSpans": [{
                    "scope": {"name": "tollgate", "version": env!("CARGO_PKG_VERSION")},
                    "spans": std::mem::take(&mut batch),
                }]}]});
                let sent = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .json(&body)
                    .send()
                    .await;
                if !sent.is_ok_and(|r| r.status().is_success()) {
                    export_metrics.trace_export_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Tracer {
            tx: Some(tx),
            metrics,
        })
    }

    fn export(&self, span: Span, end_ns: u64) {
        if let Some(tx) = &self.tx {
            if tx.try_send(span.to_otlp(end_ns)).is_err() {
                self.metrics.trace_spans_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(h).unwrap();
        assert_eq!(c.header(), h);
        assert!(c.sampled);
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
        let child = Span::start("x", Kind::Client, Some(c));
        assert_eq!(child.trace_id, c.trace_id);
        assert_eq!(child.parent, Some(c.span_id));
        let v = child.to_otlp(now_ns());
        assert_eq!(v["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(v["kind"], 3);
    }
}
