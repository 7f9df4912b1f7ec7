//! Token usage as reported by providers, and the canonical usage event Tollgate records once per request.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Token counts in OpenAI's vocabulary. Providers that report other names are mapped onto these by
/// their adapter. `cached_input` and `cache_write_input` are subsets of `input`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    #[serde(default)]
    pub cached_input: u64,
    #[serde(default)]
    pub cache_write_input: u64,
    #[serde(default)]
    pub reasoning: u64,
}

impl TokenUsage {
    /// Reads an OpenAI `usage` object (chat, legacy completions and embeddings shapes).
    pub fn from_openai(usage: &serde_json::Value) -> Option<TokenUsage> {
        let obj = usage.as_object()?;
        let num = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_u64).unwrap_or(0);
        let input = num(obj.get("prompt_tokens").or_else(|| obj.get("input_tokens")));
        let output = num(obj.get("completion_tokens").or_else(|| obj.get("output_tokens")));
        let cached_input = num(obj
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens")));
        let reasoning = num(obj
            .get("completion_tokens_details")
            .and_then(|d| d.get("reasoning_tokens")));
        Some(TokenUsage {
            input,
            output,
            cached_input,
            cache_write_input: 0,
            reasoning,
        })
    }
}

/// One record per request that reached the gateway, whatever its outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UsageEvent {
    /// UUIDv7: sortable by time.
    pub id: Uuid,
    /// Unix time of the request's arrival, in milliseconds.
    pub ts_ms: i64,
    pub request_id: String,
    /// The Tollgate key's id (never the key itself); `None` when authentication failed.
    pub key_id: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    /// The OpenAI `user` field, when the client sent one.
    pub user: Option<String>,
    pub endpoint: String,
    pub requested_model: Option<String>,
    pub served_model: Option<String>,
    pub provider: Option<String>,
    pub status: u16,
    pub error_type: Option<String>,
    pub streamed: bool,
    pub cancelled: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    #[serde(default)]
    pub cache_write_input_tokens: u64,
    pub reasoning_tokens: u64,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub attempts: u32,
    /// Cost in USD as a decimal string; `None` when the model's price is unknown (never a guessed zero).
    #[serde(default)]
    pub cost_usd: Option<String>,
    /// Which gateway process recorded it.
    #[serde(default)]
    pub instance: String,
    /// `provider/model` of the target that served (or last failed).
    #[serde(default)]
    pub target: Option<String>,
    /// Served by a target other than the first the routing plan chose.
    #[serde(default)]
    pub fallback: bool,
    /// Request body bytes received and response bytes sent.
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
    /// Opt-in (a key's `body_retention`): the prompt and answer, stored apart from the event and
    /// deleted after `expires_ms`. Never part of analytics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bodies: Option<Bodies>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bodies {
    pub request: String,
    pub response: String,
    pub expires_ms: i64,
}

/// The ClickHouse DDL (`sql/`), in order; `{db}` stands for the database name.
pub const CLICKHOUSE_SCHEMA: &[&str] = &[include_str!("../sql/001_usage_events.sql")];

/// Hand-written JSON output for the usage path's hot encoders (the spool's lines, ClickHouse's
/// rows): the bytes `serde_json` writes, without a serializer in between.
pub mod json {
    /// The bytes a JSON string must escape: control characters, `"` and `\`.
    const ESCAPED: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 0x20 {
            t[b] = true;
            b += 1;
        }
        t[b'"' as usize] = true;
        t[b'\\' as usize] = true;
        t
    };

    /// Appends a JSON string literal, escaped as `serde_json` does: `"`, `\` and control characters
    /// (short forms where JSON has them, else `\u00xx`); everything else, UTF-8 included, as is.
    pub fn string(out: &mut Vec<u8>, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = s.as_bytes();
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if !ESCAPED[usize::from(b)] {
                continue;
            }
            out.extend_from_slice(&bytes[start..i]);
            start = i + 1;
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
            }
        }
        out.extend_from_slice(&bytes[start..]);
        out.push(b'"');
    }

    /// A string, or `null`.
    pub fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => string(out, s),
            None => out.extend_from_slice(b"null"),
        }
    }

    pub fn uint(out: &mut Vec<u8>, mut n: u64) {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&buf[i..]);
    }

    pub fn int(out: &mut Vec<u8>, n: i64) {
        if n < 0 {
            out.push(b'-');
        }
        uint(out, n.unsigned_abs());
    }

    /// A number, or `null`.
    pub fn opt_uint(out: &mut Vec<u8>, n: Option<u64>) {
        match n {
            Some(n) => uint(out, n),
            None => out.extend_from_slice(b"null"),
        }
    }

    pub fn boolean(out: &mut Vec<u8>, b: bool) {
        out.extend_from_slice(if b { b"true" } else { b"false" });
    }

    /// A UUID as its lower-case hyphenated string (how `uuid` serializes to JSON).
    pub fn uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.push(b'"');
        out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
        out.push(b'"');
    }
}

impl UsageEvent {
    /// Appends the event as one JSON line (the spool's format): byte for byte what
    /// `serde_json::to_writer` writes for it, at a fraction of the cost. Every field is named
    /// below, so a new field cannot be forgotten (the destructuring stops compiling).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        let UsageEvent {
            id,
            ts_ms,
            request_id,
            key_id,
            team_id,
            user,
            endpoint,
            requested_model,
            served_model,
            provider,
            status,
            error_type,
            streamed,
            cancelled,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cache_write_input_tokens,
            reasoning_tokens,
            latency_ms,
            ttft_ms,
            attempts,
            cost_usd,
            instance,
            target,
            fallback,
            bytes_in,
            bytes_out,
            bodies,
        } = self;
        out.extend_from_slice(b"{\"id\":");
        json::uuid(out, id);
        out.extend_from_slice(b",\"ts_ms\":");
        json::int(out, *ts_ms);
        out.extend_from_slice(b",\"request_id\":");
        json::string(out, request_id);
        for (key, value) in [
            (b",\"key_id\":".as_slice(), key_id),
            (b",\"team_id\":", team_id),
            (b",\"user\":", user),
        ] {
            out.extend_from_slice(key);
            json::opt_string(out, value.as_deref());
        }
        out.extend_from_slice(b",\"endpoint\":");
        json::string(out, endpoint);
        for (key, value) in [
            (b",\"requested_model\":".as_slice(), requested_model),
            (b",\"served_model\":", served_model),
            (b",\"provider\":", provider),
        ] {
            out.extend_from_slice(key);
            json::opt_string(out, value.as_deref());
        }
        out.extend_from_slice(b",\"status\":");
        json::uint(out, u64::from(*status));
        out.extend_from_slice(b",\"error_type\":");
        json::opt_string(out, error_type.as_deref());
        out.extend_from_slice(b",\"streamed\":");
        json::boolean(out, *streamed);
        out.extend_from_slice(b",\"cancelled\":");
        json::boolean(out, *cancelled);
        for (key, value) in [
            (b",\"input_tokens\":".as_slice(), input_tokens),
            (b",\"output_tokens\":", output_tokens),
            (b",\"cached_input_tokens\":", cached_input_tokens),
            (b",\"cache_write_input_tokens\":", cache_write_input_tokens),
            (b",\"reasoning_tokens\":", reasoning_tokens),
            (b",\"latency_ms\":", latency_ms),
        ] {
            out.extend_from_slice(key);
            json::uint(out, *value);
        }
        out.extend_from_slice(b",\"ttft_ms\":");
        json::opt_uint(out, *ttft_ms);
        out.extend_from_slice(b",\"attempts\":");
        json::uint(out, u64::from(*attempts));
        out.extend_from_slice(b",\"cost_usd\":");
        json::opt_string(out, cost_usd.as_deref());
        out.extend_from_slice(b",\"instance\":");
        json::string(out, instance);
        out.extend_from_slice(b",\"target\":");
        json::opt_string(out, target.as_deref());
        out.extend_from_slice(b",\"fallback\":");
        json::boolean(out, *fallback);
        out.extend_from_slice(b",\"bytes_in\":");
        json::uint(out, *bytes_in);
        out.extend_from_slice(b",\"bytes_out\":");
        json::uint(out, *bytes_out);
        if let Some(Bodies {
            request,
            response,
            expires_ms,
        }) = bodies
        {
            out.extend_from_slice(b",\"bodies\":{\"request\":");
            json::string(out, request);
            out.extend_from_slice(b",\"response\":");
            json::string(out, response);
            out.extend_from_slice(b",\"expires_ms\":");
            json::int(out, *expires_ms);
            out.push(b'}');
        }
        out.extend_from_slice(b"}\n");
    }

    pub fn apply_usage(&mut self, usage: &TokenUsage) {
        self.input_tokens = usage.input;
        self.output_tokens = usage.output;
        self.cached_input_tokens = usage.cached_input;
        self.cache_write_input_tokens = usage.cache_write_input;
        self.reasoning_tokens = usage.reasoning;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_usage_with_details() {
        let v = serde_json::json!({
            "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 12}
        });
        let u = TokenUsage::from_openai(&v).unwrap();
        assert_eq!(
            (u.input, u.output, u.cached_input, u.reasoning),
            (100, 20, 64, 12)
        );
    }

    fn event(text: &str, full: bool) -> UsageEvent {
        let some = |s: &str| full.then(|| s.to_string());
        UsageEvent {
            id: Uuid::now_v7(),
            ts_ms: if full { i64::MIN } else { 1_795_600_000_123 },
            request_id: text.into(),
            key_id: some(text),
            team_id: some("t"),
            user: some(text),
            endpoint: "chat".into(),
            requested_model: some("m"),
            served_model: some(text),
            provider: some("p"),
            status: u16::MAX,
            error_type: some(text),
            streamed: full,
            cancelled: !full,
            input_tokens: u64::MAX,
            output_tokens: 0,
            cached_input_tokens: 9,
            cache_write_input_tokens: 10,
            reasoning_tokens: 1234567890,
            latency_ms: 42,
            ttft_ms: full.then_some(7),
            attempts: u32::MAX,
            cost_usd: some("0.000012345"),
            instance: text.into(),
            target: some(text),
            fallback: full,
            bytes_in: 100,
            bytes_out: 200,
            bodies: full.then(|| Bodies {
                request: text.into(),
                response: format!("{text}!"),
                expires_ms: -5,
            }),
        }
    }

    #[test]
    fn json_lines_are_byte_for_byte_what_serde_json_writes() {
        let control: String = (0u8..0x20).map(char::from).collect();
        let texts = [
            "",
            "plain",
            "quote \" backslash \\ slash / del \u{7f}",
            &control,
            "ü € 𝄞 \u{2028}",
        ];
        for text in texts {
            for full in [true, false] {
                let e = event(text, full);
                let mut ours = Vec::new();
                e.write_json_line(&mut ours);
                let mut theirs = serde_json::to_vec(&e).unwrap();
                theirs.push(b'\n');
                assert_eq!(
                    String::from_utf8(ours.clone()).unwrap(),
                    String::from_utf8(theirs).unwrap()
                );
                let back: UsageEvent = serde_json::from_slice(&ours).unwrap();
                assert_eq!(back, e);
            }
        }
    }

    #[test]
    fn embeddings_usage_has_no_completion_tokens() {
        let v = serde_json::json!({"prompt_tokens": 7, "total_tokens": 7});
        let u = TokenUsage::from_openai(&v).unwrap();
        assert_eq!((u.input, u.output), (7, 0));
        assert!(TokenUsage::from_openai(&serde_json::Value::Null).is_none());
    }
}
