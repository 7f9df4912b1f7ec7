//! Every provider's stream path (its framing, then its event translator) on arbitrary bytes split at
//! arbitrary points: no panic, and every chunk sent to the client is valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_adapters::{eventstream::Framer, Operation, ProviderKind};

fuzz_target!(|data: &[u8]| {
    let [k, flags, step, body @ ..] = data else {
        return;
    };
    let kind = ProviderKind::ALL[usize::from(*k) % ProviderKind::ALL.len()];
    let Some(provider) = kind.adapter() else {
        return;
    };
    // Vertex serves two APIs, chosen by model name.
    let model = if flags & 4 == 0 { "model-x" } else { "claude-x" };
    let adapter = provider.for_model(model);
    let op = if flags & 1 == 0 {
        Operation::Chat
    } else {
        Operation::Completions
    };
    let mut translator = adapter.stream_translator_for(op, flags & 2 != 0, model);
    let mut framer = Framer::new(adapter.stream_framing());
    let mut events = Vec::new();
    let mut chunks = Vec::new();
    for piece in body.chunks(usize::from(*step) + 1) {
        if framer.feed(piece, &mut events).is_err() {
            break;
        }
        for event in events.drain(..) {
            if translator.on_event(&event, &mut chunks).is_err() {
                return;
            }
        }
        for chunk in chunks.drain(..) {
            // JSON syntax (as any client parser reads it; serde_json's `Value` would also refuse
            // lone surrogate escapes and out-of-range numbers, which JSON's grammar allows).
            let json = serde_json::from_slice::<serde::de::IgnoredAny>(&chunk);
            assert!(json.is_ok(), "{kind:?} emitted a chunk that is not JSON");
        }
    }
    if framer.finish(&mut events).is_ok() {
        for event in events.drain(..) {
            if translator.on_event(&event, &mut chunks).is_err() {
                return;
            }
        }
    }
    let _ = translator.usage();
    let _ = translator.model();
});
