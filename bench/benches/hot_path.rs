//! Microbenchmarks of what Tollgate does per request and per stream chunk, in isolation:
//! - `translate/<kind>`: building the upstream request from an OpenAI chat body, per provider kind
//!   (each distinct adapter that builds a request from a plain key and base URL), and parsing the
//!   answer back for the kinds with a native wire format the fake upstream speaks;
//! - `sse/<kind>`: one upstream stream chunk through the SSE parser and the kind's translator;
//! - `policy/*`: the in-memory quota check (acquire + settle of a plan with rpm, tpm, parallel and
//!   three budgets) and the key lookup among 1,000 keys;
//! - `usage/*`: serialising one usage event, and a spool segment write (no fsync) per event.
//!
//! `cargo bench -p tollgate-bench --bench hot_path` (bench/run.sh micro runs it and tabulates it).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{hint::black_box, sync::Arc};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Map, Value};
use tollgate_adapters::{
    stream::{SseEvent, SseParser},
    Operation, ProviderKind, Target,
};
use tollgate_policy::{
    keys::{hash_key, Budgets, KeyRecord, Limits, Principal},
    quota::{LocalQuota, Plan},
    Keyring, Usd,
};

fn chat_body() -> Map<String, Value> {
    let v = json!({
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "hello there, how are you? Tell me about the weather in Paris."}
        ],
        "temperature": 0.7,
        "max_tokens": 256
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate");
    // One row per distinct adapter (the OpenAI-compatible kinds share `openai`'s).
    use ProviderKind::*;
    for kind in [Openai, Azure, Anthropic, Gemini, Vertex, Cohere, Bedrock] {
        let Some(adapter) = kind.adapter() else { continue };
        let base = kind.default_base_url().unwrap_or("http://127.0.0.1:1/v1");
        let target = Target {
            base_url: base,
            model: "model-x",
            api_key: Some("AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            api_version: None,
        };
        if let Err(e) = adapter.build_request(Operation::Chat, chat_body(), false, &target) {
            eprintln!("translate/{}: skipped ({e})", kind.as_str());
            continue;
        }
        g.bench_function(format!("{}/request", kind.as_str()), |b| {
            b.iter_batched(
                chat_body,
                |body| black_box(adapter.build_request(Operation::Chat, body, false, &target)),
                BatchSize::SmallInput,
            )
        });
    }
    let answers = [
        (
            ProviderKind::Openai,
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"lorem ipsum dolor sit amet lorem"},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":8,"total_tokens":28}}"#,
        ),
        (
            ProviderKind::Anthropic,
            r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"lorem ipsum dolor sit amet lorem"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":20,"output_tokens":8}}"#,
        ),
        (
            ProviderKind::Gemini,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"lorem ipsum dolor sit amet lorem"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":8,"totalTokenCount":28},"modelVersion":"gemini-x"}"#,
        ),
    ];
    for (kind, answer) in answers {
        let Some(adapter) = kind.adapter() else { continue };
        let body = Bytes::from_static(answer.as_bytes());
        if let Err(e) = adapter.parse_response(Operation::Chat, body.clone()) {
            eprintln!("translate/{}/response: skipped ({e})", kind.as_str());
            continue;
        }
        g.bench_function(format!("{}/response", kind.as_str()), |b| {
            b.iter(|| black_box(adapter.parse_response(Operation::Chat, body.clone())))
        });
    }
    g.finish();
}

fn sse(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse");
    let streams: [(ProviderKind, &str, &str); 2] = [
        (
            ProviderKind::Openai,
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok \"},\"finish_reason\":null}]}\n\n",
        ),
        (
            ProviderKind::Anthropic,
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tok \"}}\n\n",
        ),
    ];
    for (kind, opening, chunk) in streams {
        let Some(adapter) = kind.adapter() else { continue };
        let mut parser = SseParser::new();
        let mut translator = adapter.stream_translator(Operation::Chat, false);
        let mut events: Vec<SseEvent> = Vec::new();
        let mut out: Vec<Bytes> = Vec::new();
        parser.feed(opening.as_bytes(), &mut events);
        for e in events.drain(..) {
            translator.on_event(&e, &mut out).unwrap();
        }
        out.clear();
        g.bench_function(format!("{}/chunk", kind.as_str()), |b| {
            b.iter(|| {
                parser.feed(black_box(chunk.as_bytes()), &mut events);
                for e in events.drain(..) {
                    translator.on_event(&e, &mut out).unwrap();
                }
                black_box(&out);
                out.clear();
            })
        });
    }
    g.finish();
}

fn key(i: usize) -> (String, KeyRecord) {
    let presented = format!("tg-bench-{i:06}-0123456789abcdef0123456789abcdef");
    let hash: String = hash_key(&presented).iter().map(|b| format!("{b:02x}")).collect();
    let record = KeyRecord {
        id: format!("key_{i}"),
        name: format!("bench {i}"),
        models: Vec::new(),
        team: None,
        limits: Limits {
            rpm: Some(1_000_000_000),
            tpm: Some(1_000_000_000_000),
            max_parallel: Some(1_000_000),
        },
        budgets: Budgets {
            daily_usd: Some(Usd(1_000_000_000_000)),
            monthly_usd: Some(Usd(1_000_000_000_000)),
            total_usd: Some(Usd(1_000_000_000_000)),
        },
        metadata: Map::new(),
        expires_at: None,
        body_retention: None,
        created_at_ms: 0,
        revoked: false,
        key_hash: hash,
    };
    (presented, record)
}

fn policy(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy");
    let keys: Vec<(String, KeyRecord)> = (0..1000).map(key).collect();
    let ring = Keyring::default();
    ring.load(keys.iter().map(|(_, r)| r.clone()).collect(), Vec::new());
    let presented = keys[500].0.clone();
    g.bench_function("key_lookup_1000_keys", |b| {
        b.iter(|| black_box(ring.authenticate(black_box(&presented), 1_795_600_000)))
    });
    let principal = Principal {
        key: Arc::new(keys[7].1.clone()),
        team: None,
    };
    let now = 1_795_600_000_000i64;
    g.bench_function("plan_for_principal", |b| {
        b.iter(|| black_box(Plan::for_principal(&principal, 1100, Usd(2_000), now)))
    });
    let plan = Plan::for_principal(&principal, 1100, Usd(2_000), now);
    let quota = LocalQuota::default();
    let mut lease = 0u64;
    g.bench_function("local_quota_acquire_settle", |b| {
        b.iter(|| {
            lease += 1;
            let info = quota.acquire(&plan, lease, now as f64).unwrap();
            black_box(info);
            quota.settle(&plan, lease, -900, Usd(1_000), now as f64);
        })
    });
    g.finish();
}

fn usage(c: &mut Criterion) {
    let mut g = c.benchmark_group("usage");
    let event = tollgate_bench::sample_event(7);
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("serialize_event", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&event)).unwrap();
            black_box(&buf);
        })
    });
    let dir = std::env::temp_dir().join(format!("tg-bench-spool-{}", std::process::id()));
    let spool = tollgate::spool::Spool::open(&dir, tollgate::spool::Fsync::Never).unwrap();
    let batch: Vec<_> = (0..100).map(tollgate_bench::sample_event).collect();
    g.bench_function("spool_segment_100_events_no_fsync", |b| {
        b.iter(|| {
            black_box(spool.write(&batch).unwrap());
            for p in spool.ready() {
                spool.confirm(&p).unwrap();
            }
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
    g.finish();
}

criterion_group!(benches, translate, sse, policy, usage);
criterion_main!(benches);
