//! The SSE decoder: whatever the bytes and however they are split, no panic, and feeding them in
//! pieces yields exactly the events that feeding them at once does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_adapters::stream::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let mut whole = Vec::new();
    let mut parser = SseParser::new();
    parser.feed(input, &mut whole);
    parser.finish(&mut whole);

    let mut pieces = Vec::new();
    let mut parser = SseParser::new();
    let step = usize::from(seed % 17) + 1;
    for chunk in input.chunks(step) {
        parser.feed(chunk, &mut pieces);
    }
    parser.finish(&mut pieces);
    assert_eq!(whole, pieces, "split every {step} bytes");
});
