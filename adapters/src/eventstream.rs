//! Stream framing: turns an upstream response body, fed in arbitrary pieces, into [`SseEvent`]s for
//! the adapter's [`StreamTranslator`](crate::StreamTranslator). The gateway makes one [`Framer`] per
//! stream from [`Adapter::stream_framing`](crate::Adapter::stream_framing) and never looks at the
//! bytes itself.
//!
//! Two framings exist: Server-Sent Events (every provider but one, see [`SseParser`]) and AWS's
//! binary `application/vnd.amazon.eventstream` (Bedrock's `ConverseStream`). An event-stream message
//! is `total length (u32) | headers length (u32) | prelude CRC32 | headers | payload | message CRC32`;
//! decoding and both checksums are `aws-smithy-eventstream`'s. A frame larger than
//! [`MAX_FRAME_BYTES`] is refused before it is buffered, so memory stays bounded whatever the length
//! field says; so is a server-sent event whose unfinished line and data pass that size. Each message becomes one `SseEvent` whose `data` is the payload and whose `event` is:
//!
//! - `:message-type` `event`: the `:event-type` header (e.g. `contentBlockDelta`);
//! - `exception`: [`EXCEPTION_PREFIX`] + `:exception-type` (e.g. `exception:throttlingException`),
//!   the payload being the exception's JSON (`{"message": ...}`);
//! - `error`: [`ERROR_PREFIX`] + `:error-code`, the payload `{"message": <:error-message>}`.
//!
//! Messages of other types are skipped, as the event-stream spec allows for unknown types.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};

use crate::{
    stream::{SseEvent, SseParser},
    AdapterError, Framing,
};

/// The largest event-stream frame accepted. Bedrock's events are small (a delta, a usage record);
/// a larger length is a corrupt or hostile stream.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Prelude (12 bytes) plus message CRC (4 bytes): the smallest possible frame.
const MIN_FRAME_BYTES: usize = 16;

/// `SseEvent::event` prefix of an event-stream `exception` message.
pub const EXCEPTION_PREFIX: &str = "exception:";

/// `SseEvent::event` prefix of an event-stream `error` message.
pub const ERROR_PREFIX: &str = "error:";

/// Splits an upstream body into events, whichever framing the provider uses.
#[derive(Debug)]
pub struct Framer {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Sse(SseParser),
    EventStream(EventStreamDecoder),
}

impl Framer {
    pub fn new(framing: Framing) -> Self {
        let inner = match framing {
            Framing::Sse => Inner::Sse(SseParser::new()),
            Framing::AwsEventStream => Inner::EventStream(EventStreamDecoder::default()),
        };
        Framer { inner }
    }

    /// Appends `chunk` and pushes every event it completes to `out`. An error (bad checksum, frame
    /// too large, malformed headers) ends the stream: later calls keep failing.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), AdapterError> {
        match &mut self.inner {
            Inner::Sse(p) => {
                // Checked before the chunk is taken in too, so a failed stream stays failed.
                if p.buffered() <= MAX_FRAME_BYTES {
                    p.feed(chunk, out);
                }
                match p.buffered() {
                    n if n > MAX_FRAME_BYTES => Err(AdapterError::StreamError(format!(
                        "a server-sent event larger than {MAX_FRAME_BYTES} bytes"
                    ))),
                    _ => Ok(()),
                }
            }
            Inner::EventStream(d) => d.feed(chunk, out),
        }
    }

    /// Called at the end of the body: flushes an unterminated SSE event, or fails when the body
    /// ended inside an event-stream frame.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), AdapterError> {
        match &mut self.inner {
            Inner::Sse(p) => {
                p.finish(out);
                Ok(())
            }
            Inner::EventStream(d) => d.finish(),
        }
    }
}

/// Incremental `application/vnd.amazon.eventstream` decoder.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    buf: BytesMut,
    decoder: MessageFrameDecoder,
    failed: Option<String>,
}

impl EventStreamDecoder {
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), AdapterError> {
        if let Some(e) = &self.failed {
            return Err(AdapterError::StreamError(e.clone()));
        }
        self.buf.extend_from_slice(chunk);
        self.drain(out).map_err(|e| {
            self.buf.clear();
            self.failed = Some(e.clone());
            AdapterError::StreamError(e)
        })
    }

    pub fn finish(&mut self) -> Result<(), AdapterError> {
        if let Some(e) = &self.failed {
            return Err(AdapterError::StreamError(e.clone()));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        Err(AdapterError::StreamError(format!(
            "the event stream ended inside a frame ({} bytes left)",
            self.buf.len()
        )))
    }

    fn drain(&mut self, out: &mut Vec<SseEvent>) -> Result<(), String> {
        while self.buf.len() >= 4 {
            // The length is checked before the frame is buffered whole, so a corrupt prelude cannot
            // make us wait for (and hold) gigabytes. Its CRC is verified with the rest of the frame.
            let total = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&total) {
                return Err(format!(
                    "invalid event-stream frame length {total} (allowed {MIN_FRAME_BYTES}..={MAX_FRAME_BYTES})"
                ));
            }
            if self.buf.len() < total {
                return Ok(());
            }
            let mut frame = self.buf.split_to(total).freeze();
            let message = match self.decoder.decode_frame(&mut frame) {
                Ok(DecodedFrame::Complete(m)) => m,
                Ok(DecodedFrame::Incomplete) => return Err("incomplete event-stream frame".into()),
                Err(e) => return Err(format!("invalid event-stream frame: {e}")),
            };
            if frame.has_remaining() {
                return Err("event-stream frame longer than its prelude says".into());
            }
            if let Some(event) = to_event(&message) {
                out.push(event);
            }
        }
        Ok(())
    }
}

fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

fn to_event(message: &Message) -> Option<SseEvent> {
    let payload = message.payload().clone();
    match header(message, ":message-type") {
        Some("event") => Some(SseEvent {
            event: header(message, ":event-type").map(str::to_string),
            data: payload,
        }),
        Some("exception") => Some(SseEvent {
            event: Some(format!(
                "{EXCEPTION_PREFIX}{}",
                header(message, ":exception-type").unwrap_or("unknown")
            )),
            data: payload,
        }),
        Some("error") => {
            let text = header(message, ":error-message").unwrap_or_default();
            let data = serde_json::to_vec(&serde_json::json!({ "message": text })).unwrap_or_default();
            Some(SseEvent {
                event: Some(format!(
                    "{ERROR_PREFIX}{}",
                    header(message, ":error-code").unwrap_or("unknown")
                )),
                data: Bytes::from(data),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;

    fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
        let mut m = Message::new(Bytes::copy_from_slice(payload));
        for (k, v) in headers {
            m = m.add_header(Header::new(
                k.to_string(),
                HeaderValue::String(v.to_string().into()),
            ));
        }
        let mut out = Vec::new();
        write_message_to(&m, &mut out).unwrap();
        out
    }

    fn event(kind: &str, payload: &[u8]) -> Vec<u8> {
        frame(
            &[
                (":message-type", "event"),
                (":event-type", kind),
                (":content-type", "application/json"),
            ],
            payload,
        )
    }

    fn decode(parts: &[&[u8]]) -> Result<Vec<SseEvent>, AdapterError> {
        let mut f = Framer::new(Framing::AwsEventStream);
        let mut out = Vec::new();
        for p in parts {
            f.feed(p, &mut out)?;
        }
        f.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_events_split_at_every_byte_boundary() {
        let mut whole = event("messageStart", br#"{"role":"assistant"}"#);
        whole.extend(frame(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
            ],
            br#"{"message":"slow down"}"#,
        ));
        whole.extend(frame(
            &[
                (":message-type", "error"),
                (":error-code", "InternalFailure"),
                (":error-message", "boom"),
            ],
            b"",
        ));
        whole.extend(frame(&[(":message-type", "future-kind")], b"x"));
        let expected = decode(&[&whole]).unwrap();
        assert_eq!(expected.len(), 3);
        assert_eq!(expected[0].event.as_deref(), Some("messageStart"));
        assert_eq!(&expected[0].data[..], br#"{"role":"assistant"}"#);
        assert_eq!(
            expected[1].event.as_deref(),
            Some("exception:throttlingException")
        );
        assert_eq!(expected[2].event.as_deref(), Some("error:InternalFailure"));
        assert_eq!(&expected[2].data[..], br#"{"message":"boom"}"#);
        for split in 1..whole.len() {
            assert_eq!(
                decode(&[&whole[..split], &whole[split..]]).unwrap(),
                expected,
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(decode(&bytes).unwrap(), expected);
    }

    #[test]
    fn bad_checksums_are_stream_errors() {
        let good = event("messageStop", br#"{"stopReason":"end_turn"}"#);
        // Payload byte flipped: message CRC fails.
        let mut bad = good.clone();
        let at = bad.len() - 6;
        bad[at] ^= 0x20;
        let err = decode(&[&bad]).unwrap_err().to_string();
        assert!(err.contains("checksum") || err.contains("Checksum"), "{err}");
        // Prelude CRC byte flipped.
        let mut bad = good.clone();
        bad[9] ^= 1;
        assert!(decode(&[&bad]).is_err());
        // After a failure the framer stays failed.
        let mut f = Framer::new(Framing::AwsEventStream);
        let mut out = Vec::new();
        assert!(f.feed(&bad, &mut out).is_err());
        assert!(f.feed(&good, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn oversized_and_truncated_frames_are_refused() {
        let mut huge = Vec::new();
        huge.extend_from_slice(&((MAX_FRAME_BYTES + 1) as u32).to_be_bytes());
        huge.extend_from_slice(&[0; 8]);
        let err = decode(&[&huge]).unwrap_err().to_string();
        assert!(err.contains("frame length"), "{err}");
        assert!(decode(&[&[0, 0, 0, 3]]).is_err());
        let good = event("messageStart", b"{}");
        let err = decode(&[&good[..good.len() - 1]]).unwrap_err().to_string();
        assert!(err.contains("ended inside a frame"), "{err}");
    }

    #[test]
    fn sse_events_are_bounded_like_event_stream_frames() {
        // A provider that never ends its line (or its event) must not grow the buffer forever.
        let mut f = Framer::new(Framing::Sse);
        let mut out = Vec::new();
        let piece = vec![b'x'; 64 * 1024];
        f.feed(b"data: ", &mut out).unwrap();
        let mut failed = None;
        for i in 0..=(MAX_FRAME_BYTES / piece.len() + 1) {
            if let Err(e) = f.feed(&piece, &mut out) {
                failed = Some((i, e.to_string()));
                break;
            }
        }
        let (at, err) = failed.expect("an endless SSE line is refused");
        assert!(
            at * piece.len() <= MAX_FRAME_BYTES + piece.len(),
            "refused at {at}"
        );
        assert!(err.contains("larger than"), "{err}");
        assert!(f.feed(b"\n\n", &mut out).is_err(), "the framer stays failed");
        assert!(out.is_empty());

        // The same for an event made of many short `data:` lines and no blank line.
        let mut f = Framer::new(Framing::Sse);
        let line = [b"data: ".as_slice(), &[b'y'; 1024], b"\n"].concat();
        let lines = line.repeat(64);
        let fed = (0..=(MAX_FRAME_BYTES / lines.len() + 1)).try_for_each(|_| f.feed(&lines, &mut out));
        assert!(fed.is_err(), "an endless SSE event is refused");
    }

    #[test]
    fn a_long_sse_line_in_small_chunks_is_scanned_once() {
        // Re-scanning the whole pending line on every chunk is quadratic: 4 MiB in 256-byte chunks
        // would compare ~30 billion bytes.
        let mut f = Framer::new(Framing::Sse);
        let mut out = Vec::new();
        let piece = [b'z'; 256];
        let started = std::time::Instant::now();
        f.feed(b"data: ", &mut out).unwrap();
        for _ in 0..(4 * 1024 * 1024 / piece.len()) {
            f.feed(&piece, &mut out).unwrap();
        }
        f.feed(b"\n\n", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), 4 * 1024 * 1024);
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    }

    #[test]
    fn sse_framing_is_the_sse_parser() {
        let mut f = Framer::new(Framing::Sse);
        let mut out = Vec::new();
        f.feed(b"event: a\ndata: 1\n\ndata: 2", &mut out).unwrap();
        f.finish(&mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].event.as_deref(), Some("a"));
        assert_eq!(&out[1].data[..], b"2");
    }
}
