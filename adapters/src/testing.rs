//! What the adapters' unit tests share: table-driven request cases (`requests.json` fixtures: an
//! OpenAI body in, the provider's exact body or the refused `param` out) and running an SSE text
//! through the parser and a stream translator, whole, split at every byte, and byte by byte.

use serde_json::Value;

use crate::{stream::SseParser, AdapterError, StreamTranslator, UpstreamRequest};

/// The JSON body a built request sends.
pub(crate) fn sent(req: &UpstreamRequest) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

/// Runs the cases of `group` in the `requests.json` text `fixture`: each case's `openai` body goes
/// through `build`, and must give its `expected` body (`"anthropic"`, `"gemini"`, ...) exactly, or,
/// where the case has an `error_param`, an invalid-request error naming that param.
pub(crate) fn request_cases(
    fixture: &str,
    group: &str,
    expected: &str,
    build: impl Fn(Value) -> Result<UpstreamRequest, AdapterError>,
) {
    let all: Value = serde_json::from_str(fixture).unwrap();
    let cases = all[group].as_array().unwrap();
    assert!(!cases.is_empty(), "no cases in {group}");
    for case in cases {
        let name = &case["case"];
        match (&case["error_param"], build(case["openai"].clone())) {
            (Value::Null, Ok(req)) => assert_eq!(sent(&req), case[expected], "{name}"),
            (Value::String(want), Err(AdapterError::InvalidRequest { param, message })) => {
                assert_eq!(param.as_deref(), Some(want.as_str()), "{name}: {message}");
                assert!(!message.is_empty(), "{name}");
            }
            (want, got) => panic!("{name}: expected {want}, got {got:?}"),
        }
    }
}

/// Feeds `sse`, split into `parts`, through the SSE parser and translator `t`: the chunks (without
/// `created`), how the translation ended, and the translator.
pub(crate) fn translate<T: StreamTranslator>(
    mut t: T,
    sse: &str,
    parts: &[&[u8]],
) -> (Vec<Value>, Result<(), AdapterError>, T) {
    assert_eq!(parts.concat(), sse.as_bytes());
    let (mut parser, mut events, mut out) = (SseParser::new(), Vec::new(), Vec::new());
    for part in parts {
        parser.feed(part, &mut events);
    }
    parser.finish(&mut events);
    let result = events.iter().try_for_each(|e| t.on_event(e, &mut out));
    let chunks = out.iter().map(|b| {
        let mut v: Value = serde_json::from_slice(b).unwrap();
        v.as_object_mut().unwrap().remove("created");
        v
    });
    (chunks.collect(), result, t)
}

/// Asserts that `sse` gives the same chunks through a fresh translator from `new` however it is
/// split: whole, in two at every byte, and byte by byte.
pub(crate) fn same_at_every_split<T: StreamTranslator>(new: impl Fn() -> T, sse: &str) {
    let bytes = sse.as_bytes();
    let (chunks, _, _) = translate(new(), sse, &[bytes]);
    for split in 1..bytes.len() {
        let (again, result, _) = translate(new(), sse, &[&bytes[..split], &bytes[split..]]);
        result.unwrap();
        assert_eq!(again, chunks, "split at {split}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(translate(new(), sse, &singles).0, chunks);
}
