//! Every provider's answer parsers (success bodies and error bodies) on arbitrary bytes: no panic,
//! and whatever they accept from valid JSON comes out as valid JSON.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate_adapters::{Operation, ProviderKind};

const OPS: [Operation; 3] = [Operation::Chat, Operation::Completions, Operation::Embeddings];

fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let [k, o, s, body @ ..] = data else {
        return;
    };
    let kind = ProviderKind::ALL[usize::from(*k) % ProviderKind::ALL.len()];
    let Some(provider) = kind.adapter() else {
        return;
    };
    // Vertex serves two APIs, chosen by model name.
    let model = if o & 0x80 == 0 { "model-x" } else { "claude-x" };
    let adapter = provider.for_model(model);
    let op = OPS[usize::from(o & 0x7f) % OPS.len()];
    if let Ok(parsed) = adapter.parse_response_for(op, Bytes::copy_from_slice(body), model) {
        // OpenAI-shaped answers pass through untouched, so only valid input promises valid output.
        if is_json(body) {
            assert!(is_json(&parsed.body), "{kind:?} {op:?} produced invalid JSON");
        }
    }
    let status = 400 + u16::from(*s) % 200;
    let err = adapter.parse_error(status, body);
    assert!(
        (100..600).contains(&err.status),
        "{kind:?} mapped {status} to {}",
        err.status
    );
});
