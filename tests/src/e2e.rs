//! What the end-to-end tests share: request parts every provider is asked, reading an SSE answer
//! (chunks, text, finish reasons, tool calls), locating a provider's spec (skipping without it), and
//! running Python: a `tests/python/validate_*.py` spec validator over recorded bodies (also for the
//! conformance suite), a client script of the official OpenAI SDK, or any script of `tests/python/`.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{json, Value};

use crate::env::skip;

/// One user turn: `[{"role": "user", "content": text}]`.
pub fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// A `get_weather(city)` function tool.
pub fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

/// The `data:` payloads of an SSE body, `[DONE]` excluded, parsed; panics unless the answer is a 200
/// `text/event-stream` and `[DONE]` ends it.
pub async fn sse_chunks(res: reqwest::Response) -> Vec<Value> {
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = res.text().await.unwrap();
    let payloads: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(payloads.last(), Some(&"[DONE]"), "{text}");
    payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect()
}

/// The streamed text of the first choice, joined.
pub fn content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// The finish reasons of the first choice, in order.
pub fn finish_reasons(chunks: &[Value]) -> Vec<&str> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect()
}

/// The tool calls of a stream's first choice, their fragments joined per index: `[(id, name,
/// arguments)]`; panics when an index skips one.
pub fn streamed_calls(chunks: &[Value]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for c in chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
    {
        let i = c["index"].as_u64().unwrap() as usize;
        if i == calls.len() {
            calls.push(Default::default());
        }
        let call = &mut calls[i];
        call.0 += c["id"].as_str().unwrap_or_default();
        call.1 += c["function"]["name"].as_str().unwrap_or_default();
        call.2 += c["function"]["arguments"].as_str().unwrap_or_default();
    }
    calls
}

/// The numbers at `keys` of `v` (`None` where one is missing or is no number), to compare several
/// counts in one assertion: `numbers(&event, ["input_tokens", "output_tokens"])`.
pub fn numbers<const N: usize>(v: &Value, keys: [&str; N]) -> [Option<u64>; N] {
    keys.map(|k| v[k].as_u64())
}

/// The provider specs' folder, `../shared/specs` beside the repository (never copied into it).
pub fn specs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/specs")
}

/// The specs at `relative` (to [`specs_dir`]), or `None` after [`skip`] naming the first missing one.
pub fn specs<const N: usize>(relative: [&str; N]) -> Option<[PathBuf; N]> {
    let paths = relative.map(|r| specs_dir().join(r));
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        skip(&format!("{} is missing", missing.display()));
        return None;
    }
    Some(paths)
}

/// Writes `body` pretty-printed to `path` (a recorded request for a validator).
pub fn write_json(path: &Path, body: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(body).unwrap()).unwrap();
}

/// A script in `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Runs `cmd` (a Python script) off the async runtime, prints its stdout + stderr and returns them;
/// panics unless it exited 0.
pub async fn run_python(mut cmd: Command) -> String {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "python exited {:?}:\n{text}",
        out.status.code()
    );
    text
}

/// Runs the validator `tests/python/<script>` with `args` (specs, then the bodies' folder); asserts
/// it exited 0 and reported exactly `count` bodies passed and none failed.
pub async fn run_validator(
    py: &str,
    name: &str,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    count: usize,
) {
    let mut cmd = Command::new(py);
    cmd.arg(script(name)).args(args);
    let text = run_python(cmd).await;
    assert!(
        text.contains(&format!("spec: {count} passed, 0 failed")),
        "{text}"
    );
}

/// Runs `code` (a client of the official OpenAI Python SDK, which reads the gateway's URL from
/// `BASE` and the key from `KEY`) and returns what it printed after `RESULT `, parsed.
pub async fn run_sdk_script(py: &str, code: &str, base: String, key: &str) -> Value {
    let mut cmd = Command::new(py);
    cmd.arg("-c").arg(code).env("BASE", base).env("KEY", key);
    let text = run_python(cmd).await;
    let result = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no result:\n{text}"));
    serde_json::from_str(result).unwrap()
}
