//! AWS event-stream decoding (Bedrock's ConverseStream framing): no panic on any bytes, and the same
//! events and the same verdict whether the body arrives at once or in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_adapters::{eventstream::Framer, Framing};

fn decode<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> (Vec<tollgate_adapters::stream::SseEvent>, bool) {
    let mut framer = Framer::new(Framing::AwsEventStream);
    let mut out = Vec::new();
    for piece in pieces {
        if framer.feed(piece, &mut out).is_err() {
            return (out, false);
        }
    }
    let ok = framer.finish(&mut out).is_ok();
    (out, ok)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = decode(std::iter::once(input));
    let step = usize::from(seed) + 1;
    let pieces = decode(input.chunks(step));
    assert_eq!(whole, pieces, "split every {step} bytes");
});
