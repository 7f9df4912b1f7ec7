//! `fake-upstream`: a fast fake LLM provider for load tests, speaking OpenAI's Chat Completions
//! (`POST .../chat/completions`) and Anthropic's Messages API (`POST .../messages`), both as JSON and
//! as SSE streams, on plain hyper so that the fake costs as little CPU as possible.
//!
//! ```text
//! fake-upstream [--listen ADDR] [--latency-ms N] [--answer-bytes N] [--chunks N] [--interval-ms N]
//!               [--hold-interval-ms N] [--hold-chunks N]
//! ```
//! - `--latency-ms`: wait before answering (default 0);
//! - `--answer-bytes`: size of the generated text in a non-streamed answer (default 32);
//! - `--chunks` / `--interval-ms`: streamed answers send this many content chunks this far apart
//!   (default 50 chunks, 1 ms);
//! - a request whose `model` starts with `hold` gets a long stream instead (`--hold-chunks` chunks,
//!   `--hold-interval-ms` apart; default 120 chunks 1 s apart), to keep thousands of streams open.
//!
//! The body is not parsed as JSON: `model`, `stream` and `include_usage` are found by a byte scan, so
//! a 400 KB prompt costs a memchr, not a parse. Usage is reported (prompt tokens = body bytes / 4).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::{body::Frame, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

#[derive(Clone)]
struct Opts {
    latency: Duration,
    answer: String,
    chunks: usize,
    interval: Duration,
    hold_chunks: usize,
    hold_interval: Duration,
}

fn parse() -> (String, Opts) {
    let mut listen = "127.0.0.1:19100".to_string();
    let mut o = Opts {
        latency: Duration::ZERO,
        answer: String::new(),
        chunks: 50,
        interval: Duration::from_millis(1),
        hold_chunks: 120,
        hold_interval: Duration::from_secs(1),
    };
    let mut answer_bytes = 32usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = val(),
            "--latency-ms" => o.latency = Duration::from_millis(val().parse().expect("ms")),
            "--answer-bytes" => answer_bytes = val().parse().expect("bytes"),
            "--chunks" => o.chunks = val().parse().expect("chunks"),
            "--interval-ms" => o.interval = Duration::from_millis(val().parse().expect("ms")),
            "--hold-chunks" => o.hold_chunks = val().parse().expect("chunks"),
            "--hold-interval-ms" => o.hold_interval = Duration::from_millis(val().parse().expect("ms")),
            other if !other.starts_with("--") => listen = other.to_string(),
            other => panic!("unknown flag {other}"),
        }
    }
    o.answer = "lorem ipsum dolor sit amet ".repeat(answer_bytes / 27 + 1)[..answer_bytes].to_string();
    (listen, o)
}

/// The string value of `"key"` at the top of a JSON text (first occurrence), without parsing it.
fn scan_str<'a>(body: &'a [u8], key: &str) -> Option<&'a str> {
    let rest = scan_value(body, key)?;
    let rest = rest.strip_prefix(b"\"")?;
    let end = memchr(b'"', rest)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The text after `"key"` and its colon.
fn scan_value<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let needle = format!("\"{key}\"");
    let at = body.windows(needle.len()).position(|w| w == needle.as_bytes())?;
    let mut rest = &body[at + needle.len()..];
    while let Some((&c, tail)) = rest.split_first() {
        if c == b':' || c.is_ascii_whitespace() {
            rest = tail;
        } else {
            break;
        }
    }
    Some(rest)
}

fn scan_true(body: &[u8], key: &str) -> bool {
    scan_value(body, key).is_some_and(|v| v.starts_with(b"true"))
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

type Body = BoxBody<Bytes, Infallible>;

fn json(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}

fn sse(frames: Vec<Bytes>, first: Bytes, interval: Duration) -> Response<Body> {
    // The first frame (role / message_start) goes at once; each content frame after `interval`.
    let stream = futures_util::stream::unfold(
        (Some(first), frames.into_iter()),
        move |(first, mut it)| async move {
            if let Some(f) = first {
                return Some((Ok::<_, Infallible>(Frame::data(f)), (None, it)));
            }
            let next = it.next()?;
            if !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            Some((Ok(Frame::data(next)), (None, it)))
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

fn openai(o: &Opts, model: &str, body_len: usize, stream: bool, usage: bool, hold: bool) -> Response<Body> {
    let prompt = body_len.div_ceil(4);
    if !stream {
        let completion = o.answer.len().div_ceil(4);
        return json(
            200,
            format!(
                r#"{{"id":"chatcmpl-fake","object":"chat.completion","created":1700000000,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}}}}}"#,
                o.answer,
                prompt + completion
            ),
        );
    }
    let (n, interval) = if hold {
        (o.hold_chunks, o.hold_interval)
    } else {
        (o.chunks, o.interval)
    };
    let head = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let first = Bytes::from(head(r#"{"role":"assistant","content":""}"#, "null"));
    let piece = Bytes::from(head(r#"{"content":"tok "}"#, "null"));
    let mut frames: Vec<Bytes> = (0..n).map(|_| piece.clone()).collect();
    let mut tail = head("{}", "\"stop\"");
    if usage {
        tail.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"{model}\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\n",
            prompt + n
        ));
    }
    tail.push_str("data: [DONE]\n\n");
    frames.push(Bytes::from(tail));
    sse(frames, first, interval)
}

fn anthropic(o: &Opts, model: &str, body_len: usize, stream: bool, hold: bool) -> Response<Body> {
    let prompt = body_len.div_ceil(4);
    if !stream {
        let completion = o.answer.len().div_ceil(4);
        return json(
            200,
            format!(
                r#"{{"id":"msg_fake","type":"message","role":"assistant","model":"{model}","content":[{{"type":"text","text":"{}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":{prompt},"output_tokens":{completion}}}}}"#,
                o.answer
            ),
        );
    }
    let (n, interval) = if hold {
        (o.hold_chunks, o.hold_interval)
    } else {
        (o.chunks, o.interval)
    };
    let first = Bytes::from(format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_fake\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{model}\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{prompt},\"output_tokens\":1}}}}}}\n\n\
         event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n"
    ));
    let piece = Bytes::from_static(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tok \"}}\n\n",
    );
    let mut frames: Vec<Bytes> = (0..n).map(|_| piece.clone()).collect();
    frames.push(Bytes::from(format!(
        "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{n}}}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    )));
    sse(frames, first, interval)
}

async fn handle(o: Arc<Opts>, req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(json(400, r#"{"error":{"message":"body broke off"}}"#.into())),
    };
    if !o.latency.is_zero() {
        tokio::time::sleep(o.latency).await;
    }
    let model = scan_str(&body, "model").unwrap_or("fake").to_string();
    let stream = scan_true(&body, "stream");
    let hold = model.starts_with("hold");
    Ok(if path.ends_with("/chat/completions") {
        openai(
            &o,
            &model,
            body.len(),
            stream,
            scan_true(&body, "include_usage"),
            hold,
        )
    } else if path.ends_with("/messages") {
        anthropic(&o, &model, body.len(), stream, hold)
    } else {
        json(
            404,
            r#"{"error":{"message":"unknown route","type":"invalid_request_error","param":null,"code":null}}"#.into(),
        )
    })
}

#[tokio::main]
async fn main() {
    let (listen, opts) = parse();
    let opts = Arc::new(opts);
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    eprintln!("fake upstream on {}", listener.local_addr().expect("addr"));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let o = Arc::clone(&opts);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(Arc::clone(&o), req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
