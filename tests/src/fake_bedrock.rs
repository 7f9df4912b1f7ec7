//! A fake AWS Bedrock Runtime, in-process, on an ephemeral port: `POST /model/{modelId}/converse` (JSON)
//! and `/converse-stream` (binary `application/vnd.amazon.eventstream` frames, encoded with
//! `aws-smithy-eventstream`), in the service model's shapes.
//!
//! Like the real service it verifies the SigV4 signature, recomputing it here (canonical request, HMAC
//! chain; independent of `aws-sigv4`) from the request as received: the `Authorization` credential
//! scope (`<key id>/<date>/<region>/bedrock/aws4_request`), `x-amz-date`, `x-amz-content-sha256` against
//! the body, the signed headers and the double-encoded path. A bad or missing signature gets 403
//! `InvalidSignatureException`/`AccessDeniedException`. An Amazon Bedrock API key, when the account has
//! one, is accepted instead as `Authorization: Bearer <key>`. It also answers 400 `ValidationException`, like
//! Bedrock, to an empty `messages` or tool blocks without `toolConfig`. Otherwise behaviour is chosen by
//! the model id (which may hold `:`; percent-decoded):
//!
//! | model id contains  | answer |
//! |--------------------|--------|
//! | anything else      | `fake: <last user texts and tool results>`; usage 11 in + 5 cache reads + 2 cache writes, 7 out |
//! | `tools`            | two parallel `get_weather` tool uses (Paris, Rome); streamed as `toolUse.input` fragments |
//! | `reasoning`        | reasoning text (with signature), then the text answer |
//! | `throttled`        | 429 `ThrottlingException` (`x-amzn-ErrorType` header, `{"message"}` body) |
//! | `stream-exception` | (stream) one text delta, then a `modelStreamErrorException` exception message |
//! | `bad-checksum`     | (stream) one text delta, then a frame whose message CRC is wrong |
//!
//! Stream frames are written a few milliseconds apart and some are split across two writes, so the
//! gateway reassembles frames from partial reads. Every request is recorded (raw path, headers, body),
//! and every answer ([`Answer`]), so a test can check the fake's shapes against the service model.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::fake::{json_answer, serve, Recorded, Requests, Running};

/// The credentials and region the fake accepts.
#[derive(Debug, Clone)]
pub struct AwsAccount {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: String,
    /// An Amazon Bedrock API key accepted as `Authorization: Bearer` instead of a signature.
    pub api_key: Option<String>,
}

struct Shared {
    account: AwsAccount,
    requests: Requests,
    answers: Mutex<Vec<Answer>>,
}

/// What the fake answered, for checking its shapes against the service model.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A `ConverseResponse`.
    Json(Value),
    /// An error answer: the exception's name (`x-amzn-ErrorType`) and body.
    Error { kind: String, body: Value },
    /// A ConverseStream body, one encoded event-stream message per entry.
    Stream(Vec<Vec<u8>>),
}

pub struct FakeBedrock {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Running,
}

impl FakeBedrock {
    pub async fn start(account: AwsAccount) -> FakeBedrock {
        let shared = Arc::new(Shared {
            account,
            requests: Requests::default(),
            answers: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/model/{model}/converse", post(converse))
            .route("/model/{model}/converse-stream", post(converse))
            .with_state(Arc::clone(&shared));
        let server = serve(app).await;
        FakeBedrock {
            addr: server.addr,
            shared,
            _server: server,
        }
    }

    /// The provider `base_url` to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.all()
    }

    /// Every answer, in order.
    pub fn answers(&self) -> Vec<Answer> {
        self.shared.answers.lock().expect("lock").clone()
    }
}

fn error(status: u16, kind: &str, message: &str) -> (Response, Answer) {
    let body = json!({ "message": message });
    let mut res = json_answer(status, body.clone());
    res.headers_mut()
        .insert("x-amzn-errortype", kind.parse().expect("header"));
    let answer = Answer::Error {
        kind: kind.to_string(),
        body,
    };
    (res, answer)
}

// ---- SigV4 verification ----

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("hmac key");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// RFC 3986 encoding of everything but unreserved characters (`/` kept when `path`).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks the request's SigV4 signature; `Err` is the 403 message.
fn verify_signature(
    account: &AwsAccount,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let auth = header("authorization").ok_or("Missing Authentication Token")?;
    if let Some(key) = auth.strip_prefix("Bearer ") {
        return match &account.api_key {
            Some(k) if k == key => Ok(()),
            _ => Err("The API key included in the request is invalid.".into()),
        };
    }
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Authorization header requires AWS4-HMAC-SHA256")?;
    let mut credential = "";
    let mut signed = "";
    let mut signature = "";
    for part in rest.split(',').map(str::trim) {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = v,
            Some(("SignedHeaders", v)) => signed = v,
            Some(("Signature", v)) => signature = v,
            _ => return Err(format!("malformed Authorization part `{part}`")),
        }
    }
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err("malformed credential scope".into());
    };
    if key_id != account.access_key_id {
        return Err("The security token included in the request is invalid.".into());
    }
    if service != "bedrock" || region != account.region {
        return Err(format!(
            "Credential should be scoped to a valid region and service `bedrock`, not {region}/{service}"
        ));
    }
    let amz_date = header("x-amz-date").ok_or("missing x-amz-date")?;
    if !amz_date.starts_with(date) {
        return Err("x-amz-date does not match the credential date".into());
    }
    let payload_hash = sha256_hex(body);
    match header("x-amz-content-sha256") {
        Some(h) if h == payload_hash => {}
        Some(_) => return Err("x-amz-content-sha256 does not match the body".into()),
        None => return Err("missing x-amz-content-sha256".into()),
    }
    if let Some(token) = &account.session_token {
        if header("x-amz-security-token") != Some(token) {
            return Err("The security token included in the request is invalid.".into());
        }
    }
    let names: Vec<&str> = signed.split(';').collect();
    for required in ["host", "x-amz-date", "x-amz-content-sha256"] {
        if !names.contains(&required) {
            return Err(format!("`{required}` must be signed"));
        }
    }
    if account.session_token.is_some() && !names.contains(&"x-amz-security-token") {
        return Err("`x-amz-security-token` must be signed".into());
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(format!("signed header `{name}` is missing"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // Every AWS service but S3 signs the path URI-encoded once more (`%3A` -> `%253A`).
    let canonical_path = uri_encode(uri.path(), true);
    let canonical_request = format!(
        "{method}\n{canonical_path}\n{}\n{canonical_headers}\n{signed}\n{payload_hash}",
        uri.query().unwrap_or("")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(format!("AWS4{}", account.secret_access_key).as_bytes(), date);
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part);
    }
    let expected = hex::encode(hmac(&key, &string_to_sign));
    if expected != signature {
        return Err(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method."
                .into(),
        );
    }
    Ok(())
}

// ---- the API ----

/// The texts of the last user turn: text blocks and tool results.
fn last_user_text(body: &Value) -> String {
    fn text_of(block: &Value) -> Vec<String> {
        if let Some(t) = block["text"].as_str() {
            return vec![t.to_string()];
        }
        if let Some(r) = block.get("toolResult") {
            return r["content"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(text_of)
                .collect();
        }
        Vec::new()
    }
    body["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| {
            m["content"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(text_of)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn has_tool_blocks(body: &Value) -> bool {
    body["messages"].as_array().into_iter().flatten().any(|m| {
        m["content"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some())
    })
}

fn usage(output: u64) -> Value {
    json!({"inputTokens": 11, "outputTokens": output, "totalTokens": 11 + 5 + 2 + output,
           "cacheReadInputTokens": 5, "cacheWriteInputTokens": 2})
}

const TOOL_CALLS: [(&str, &str); 2] = [("tooluse_FakeParis01", "Paris"), ("tooluse_FakeRome002", "Rome")];

async fn converse(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (res, answer) = reply(&shared, &method, &uri, &headers, &body);
    shared.answers.lock().expect("lock").push(answer);
    res
}

fn reply(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> (Response, Answer) {
    let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    shared
        .requests
        .record(uri.path().to_string(), headers, &json_body);
    if let Err(message) = verify_signature(&shared.account, method, uri, headers, body) {
        let kind = if message.contains("signature") {
            "InvalidSignatureException"
        } else {
            "AccessDeniedException"
        };
        return error(403, kind, &message);
    }
    let raw_model = uri
        .path()
        .strip_prefix("/model/")
        .and_then(|p| p.rsplit_once('/'))
        .map_or("", |(m, _)| m);
    let model = percent_decode(raw_model);
    let stream = uri.path().ends_with("/converse-stream");
    if json_body["messages"].as_array().is_none_or(|m| m.is_empty()) {
        return error(
            400,
            "ValidationException",
            "The messages field is required and must not be empty.",
        );
    }
    if has_tool_blocks(&json_body) && json_body.get("toolConfig").is_none() {
        return error(
            400,
            "ValidationException",
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
        );
    }
    if model.contains("throttled") {
        return error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        );
    }
    let text = format!("fake: {}", last_user_text(&json_body));
    if stream {
        return event_stream(&model, &text);
    }
    let (content, stop) = if model.contains("tools") {
        let calls: Vec<Value> = TOOL_CALLS
            .iter()
            .map(|(id, city)| json!({"toolUse": {"toolUseId": id, "name": "get_weather", "input": {"city": city}}}))
            .collect();
        (Value::Array(calls), "tool_use")
    } else if model.contains("reasoning") {
        (
            json!([{"reasoningContent": {"reasoningText": {"text": "let me think", "signature": "c2lnbmF0dXJl"}}},
                   {"text": text}]),
            "end_turn",
        )
    } else {
        (json!([{ "text": text }]), "end_turn")
    };
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage(7),
        "metrics": {"latencyMs": 42}
    });
    (axum::Json(answer.clone()).into_response(), Answer::Json(answer))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One encoded event-stream message.
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut m = Message::new(Bytes::copy_from_slice(payload));
    for (k, v) in headers {
        m = m.add_header(Header::new(
            k.to_string(),
            HeaderValue::String(v.to_string().into()),
        ));
    }
    let mut out = Vec::new();
    write_message_to(&m, &mut out).expect("encode frame");
    out
}

/// An `event` message, headers as the service sends them.
pub fn event(kind: &str, payload: Value) -> Vec<u8> {
    frame(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

fn event_stream(model: &str, text: &str) -> (Response, Answer) {
    let mut frames = vec![event("messageStart", json!({"role": "assistant"}))];
    let text_deltas = |frames: &mut Vec<Vec<u8>>, index: u64, text: &str, cut_after: Option<usize>| {
        let mut rest = text;
        let mut n = 0;
        while !rest.is_empty() {
            let cut = rest.char_indices().nth(4).map_or(rest.len(), |(i, _)| i);
            frames.push(event(
                "contentBlockDelta",
                json!({"contentBlockIndex": index, "delta": {"text": &rest[..cut]}}),
            ));
            rest = &rest[cut..];
            n += 1;
            if cut_after == Some(n) {
                return false;
            }
        }
        true
    };
    let stop = if model.contains("tools") {
        for (i, (id, city)) in TOOL_CALLS.iter().enumerate() {
            frames.push(event(
                "contentBlockStart",
                json!({"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": id, "name": "get_weather"}}}),
            ));
            let input = format!("{{\"city\": \"{city}\"}}");
            for part in [&input[..3], &input[3..9], &input[9..]] {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": part}}}),
                ));
            }
            frames.push(event("contentBlockStop", json!({"contentBlockIndex": i})));
        }
        "tool_use"
    } else {
        let mut index = 0;
        if model.contains("reasoning") {
            frames.push(event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "let me think"}}}),
            ));
            frames.push(event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "c2lnbmF0dXJl"}}}),
            ));
            frames.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
            index = 1;
        }
        if model.contains("stream-exception") {
            text_deltas(&mut frames, index, text, Some(1));
            frames.push(frame(
                &[
                    (":exception-type", "modelStreamErrorException"),
                    (":content-type", "application/json"),
                    (":message-type", "exception"),
                ],
                br#"{"message":"The model stream broke off.","originalStatusCode":500}"#,
            ));
            return respond(frames);
        }
        if model.contains("bad-checksum") {
            text_deltas(&mut frames, index, text, Some(1));
            let mut bad = event(
                "contentBlockDelta",
                json!({"contentBlockIndex": index, "delta": {"text": "corrupted"}}),
            );
            let at = bad.len() - 8;
            bad[at] ^= 0x55;
            frames.push(bad);
            frames.push(event("messageStop", json!({"stopReason": "end_turn"})));
            return respond(frames);
        }
        text_deltas(&mut frames, index, text, None);
        frames.push(event("contentBlockStop", json!({"contentBlockIndex": index})));
        "end_turn"
    };
    frames.push(event("messageStop", json!({"stopReason": stop})));
    frames.push(event(
        "metadata",
        json!({"usage": usage(7), "metrics": {"latencyMs": 42}}),
    ));
    respond(frames)
}

/// Sends the frames a few milliseconds apart; every other frame is split in two writes.
fn respond(frames: Vec<Vec<u8>>) -> (Response, Answer) {
    let answer = Answer::Stream(frames.clone());
    let mut writes = Vec::new();
    for (i, f) in frames.into_iter().enumerate() {
        if i % 2 == 1 && f.len() > 10 {
            let (a, b) = f.split_at(7);
            writes.push(a.to_vec());
            writes.push(b.to_vec());
        } else {
            writes.push(f);
        }
    }
    let stream = futures_util::stream::unfold(writes.into_iter(), |mut it| async move {
        let w = it.next()?;
        tokio::time::sleep(Duration::from_millis(2)).await;
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(w)), it))
    });
    let res = Response::builder()
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", "f2d1c0de-0000-4000-8000-fakebedrock01")
        .body(Body::from_stream(stream))
        .expect("response");
    (res, answer)
}
