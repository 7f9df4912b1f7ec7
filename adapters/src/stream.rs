//! Incremental Server-Sent Events framing: feed bytes as they arrive, take complete events out.
//! Handles `\n`, `\r\n` and `\r` line ends, multi-line `data:` and comments, per the SSE spec.

use bytes::{Bytes, BytesMut};

/// One complete SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, when present.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: Bytes,
}

/// Buffers partial input between calls. Memory is bounded by the largest single event.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: BytesMut,
    event: Option<String>,
    data: Vec<u8>,
    has_data: bool,
    /// A `\r` ended the previous chunk; a following `\n` belongs to it.
    pending_cr: bool,
    /// Bytes at the start of `buf` already searched for a line end: each byte is scanned once,
    /// however many chunks a long line arrives in.
    scanned: usize,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `chunk` and pushes every event it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let mut chunk = chunk;
        if self.pending_cr {
            self.pending_cr = false;
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
        }
        self.buf.extend_from_slice(chunk);
        loop {
            let from = self.scanned.min(self.buf.len());
            let Some(pos) = self.buf[from..].iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.scanned = self.buf.len();
                return;
            };
            self.scanned = 0;
            let line = self.buf.split_to(from + pos);
            let end = self.buf.split_to(1)[0];
            if end == b'\r' {
                if self.buf.is_empty() {
                    self.pending_cr = true;
                } else if self.buf[0] == b'\n' {
                    let _ = self.buf.split_to(1);
                }
            }
            self.line(&line, out);
        }
    }

    /// Bytes held for the event being read: its unfinished line and its `data` so far.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.data.len()
    }

    /// Flushes an event left unterminated at end of input (some servers omit the final blank line).
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.buf.is_empty() {
            self.scanned = 0;
            let line = self.buf.split();
            self.line(&line, out);
        }
        self.dispatch(out);
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data || self.event.is_some() {
            out.push(SseEvent {
                event: self.event.take(),
                data: Bytes::from(std::mem::take(&mut self.data)),
            });
        }
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(parts: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for part in parts {
            p.feed(part, &mut out);
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn splits_events_across_arbitrary_chunk_boundaries() {
        let whole = b"event: a\ndata: {\"x\":1}\n\n: comment\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";
        let expected = parse_all(&[whole]);
        assert_eq!(expected.len(), 3);
        assert_eq!(expected[0].event.as_deref(), Some("a"));
        assert_eq!(&expected[1].data[..], b"line1\nline2");
        for split in 1..whole.len() {
            assert_eq!(
                parse_all(&[&whole[..split], &whole[split..]]),
                expected,
                "split at {split}"
            );
        }
    }

    #[test]
    fn accepts_crlf_and_cr_line_ends() {
        let crlf = parse_all(&[b"data: a\r\n\r\ndata: b\r", b"\n\r\n"]);
        assert_eq!(crlf.len(), 2);
        assert_eq!(&crlf[1].data[..], b"b");
        let cr = parse_all(&[b"data: a\r\rdata: b\r\r"]);
        assert_eq!(cr.len(), 2);
    }

    #[test]
    fn flushes_unterminated_final_event() {
        let out = parse_all(&[b"data: tail"]);
        assert_eq!(&out[0].data[..], b"tail");
    }
}
