//! The built-in `echo` provider: no network, answers with the last user message (chat), the prompt
//! (legacy completions) or a deterministic vector (embeddings), in OpenAI's exact wire format. Streams
//! go word by word and end with a usage chunk, like OpenAI with `include_usage`. Token counts are
//! whitespace-separated words, so they are stable and easy to check.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::Operation;

/// What the echo provider answers: one body, or the payloads of a stream (usage chunk last).
#[derive(Debug)]
pub enum EchoAnswer {
    Full(Bytes),
    Chunks(Vec<Bytes>),
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Text of a message `content`: a string, or the text parts of a content array.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn chat_input(body: &Map<String, Value>) -> (String, u64) {
    let messages = body.get("messages").and_then(Value::as_array);
    let all = messages.into_iter().flatten();
    let input: u64 = all
        .map(|m| words(&content_text(m.get("content").unwrap_or(&Value::Null))))
        .sum();
    let last_user = messages
        .into_iter()
        .flatten()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    (last_user, input.max(1))
}

fn prompt_text(body: &Map<String, Value>) -> String {
    match body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn usage(input: u64, output: u64) -> Value {
    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output})
}

/// A small deterministic embedding (FNV-1a over the text, spread over `dims` floats in [-1, 1]).
fn embed(text: &str, dims: usize) -> Vec<f64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..dims)
        .map(|i| {
            let x = h.rotate_left((i * 7 % 64) as u32) ^ (i as u64).wrapping_mul(0x9e37_79b9);
            ((x % 2001) as f64 / 1000.0) - 1.0
        })
        .collect()
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

/// Answers one request. `id` and `created` are supplied by the caller so answers are reproducible.
pub fn respond(
    op: Operation,
    body: &Map<String, Value>,
    model: &str,
    stream: bool,
    id: &str,
    created: i64,
) -> EchoAnswer {
    match op {
        Operation::Embeddings => {
            let inputs: Vec<String> = match body.get("input") {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            let dims = body
                .get("dimensions")
                .and_then(Value::as_u64)
                .unwrap_or(8)
                .clamp(1, 4096) as usize;
            let tokens: u64 = inputs.iter().map(|s| words(s)).sum();
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": embed(s, dims)}))
                .collect();
            EchoAnswer::Full(to_bytes(&json!({
                "object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
            })))
        }
        Operation::Completions => {
            let text = prompt_text(body);
            let n = words(&text);
            if stream {
                let mut chunks: Vec<Bytes> = split_words(&text)
                    .map(|w| {
                        to_bytes(
                            &json!({"id": id, "object": "text_completion", "created": created, "model": model,
                        "choices": [{"index": 0, "text": w, "logprobs": null, "finish_reason": null}]}),
                        )
                    })
                    .collect();
                chunks.push(to_bytes(
                    &json!({"id": id, "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": 0, "text": "", "logprobs": null, "finish_reason": "stop"}]}),
                ));
                chunks.push(to_bytes(
                    &json!({"id": id, "object": "text_completion", "created": created, "model": model,
                    "choices": [], "usage": usage(n, n)}),
                ));
                EchoAnswer::Chunks(chunks)
            } else {
                EchoAnswer::Full(to_bytes(&json!({
                    "id": id, "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
                    "usage": usage(n, n)
                })))
            }
        }
        Operation::Chat => {
            let (text, input) = chat_input(body);
            let output = words(&text);
            if stream {
                let chunk = |delta: Value, finish: Value| {
                    to_bytes(
                        &json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
                    )
                };
                let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
                chunks.extend(split_words(&text).map(|w| chunk(json!({"content": w}), Value::Null)));
                chunks.push(chunk(json!({}), json!("stop")));
                chunks.push(to_bytes(
                    &json!({"id": id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [], "usage": usage(input, output)}),
                ));
                EchoAnswer::Chunks(chunks)
            } else {
                EchoAnswer::Full(to_bytes(&json!({
                    "id": id, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                        "logprobs": null, "finish_reason": "stop"}],
                    "usage": usage(input, output)
                })))
            }
        }
    }
}

/// Splits text into words, each keeping the whitespace that follows it, so the pieces concatenate back.
fn split_words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let start = rest.len() - rest.trim_start().len();
        let word_end = rest[start..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |i| start + i);
        let end = word_end + (rest[word_end..].len() - rest[word_end..].trim_start().len());
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(stream: bool) -> EchoAnswer {
        let body = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello  there world"}]}
        ]});
        respond(
            Operation::Chat,
            body.as_object().unwrap(),
            "echo-1",
            stream,
            "id1",
            1,
        )
    }

    #[test]
    fn chat_echoes_last_user_message_with_usage() {
        let EchoAnswer::Full(b) = chat(false) else {
            panic!("expected full answer")
        };
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hello  there world");
        assert_eq!(v["usage"]["prompt_tokens"], 5);
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn stream_pieces_concatenate_to_the_full_answer() {
        let EchoAnswer::Chunks(chunks) = chat(true) else {
            panic!("expected chunks")
        };
        let text: String = chunks
            .iter()
            .map(|c| serde_json::from_slice::<Value>(c).unwrap())
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(text, "hello  there world");
        let last: Value = serde_json::from_slice(chunks.last().unwrap()).unwrap();
        assert_eq!(last["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn embeddings_are_deterministic() {
        let body = json!({"input": ["a b", "c"], "dimensions": 4});
        let EchoAnswer::Full(a) = respond(
            Operation::Embeddings,
            body.as_object().unwrap(),
            "e",
            false,
            "x",
            0,
        ) else {
            panic!()
        };
        let EchoAnswer::Full(b) = respond(
            Operation::Embeddings,
            body.as_object().unwrap(),
            "e",
            false,
            "x",
            0,
        ) else {
            panic!()
        };
        assert_eq!(a, b);
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 4);
        assert_eq!(v["usage"]["prompt_tokens"], 3);
    }
}
