//! Runs cases through the real gateway binary against the fake upstream and asserts the OpenAI-shaped
//! answers exactly; validates the recorded upstream bodies against the provider's spec.
//!
//! Per case the gateway has three models: `<case>` (one target), `<case>-fallback` (then
//! `simple_chat` as a second target) and `<case>-retry` (one target, `retries = 1`), so an error case
//! observes retryability through routing.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use serde_json::{json, Value};

use super::{
    cases::STREAM_ERROR_TEXT, server::FakeUpstream, Answer, Case, Fault, Reasoning, Reply, Unsupported, Wire,
    KEY,
};
use crate::{
    env::skip,
    gateway::{temp_dir, Gateway},
};

pub struct Setup {
    pub wire: Arc<dyn Wire>,
    pub fake: FakeUpstream,
    pub gw: Gateway,
    pub key: String,
    usage_dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.usage_dir);
        }
    }
}

/// The gateway's config: fast retries, no circuit breaking, the kind's provider and three models
/// per case.
pub fn config(wire: &dyn Wire, root: &str) -> String {
    let mut c = format!(
        "[routing]\nretry_base_ms = 1\nretry_max_ms = 2\nbreaker_failures = 1000\n\n\
         [[providers]]\nname = \"up\"\nkind = \"{}\"\ntimeout_ms = 5000\nstream_idle_timeout_ms = 3000\n{}\n",
        wire.kind(),
        wire.provider_toml(root)
    );
    let simple = wire.upstream_model("simple_chat");
    for case in Case::ALL {
        let n = case.name();
        let m = wire.upstream_model(n);
        c.push_str(&format!(
            "[[models]]\nname = \"{n}\"\ntargets = [{{ provider = \"up\", model = \"{m}\" }}]\n\n\
             [[models]]\nname = \"{n}-fallback\"\ntargets = [{{ provider = \"up\", model = \"{m}\" }}, \
             {{ provider = \"up\", model = \"{simple}\" }}]\n\n\
             [[models]]\nname = \"{n}-retry\"\nretries = 1\ntargets = [{{ provider = \"up\", model = \"{m}\" }}]\n\n"
        ));
    }
    c
}

pub async fn setup(wire: Arc<dyn Wire>) -> Setup {
    let fake = FakeUpstream::start(vec![Arc::clone(&wire)]).await;
    let cfg = config(wire.as_ref(), &fake.root(wire.kind()));
    let env = wire.env();
    // Usage events flushed every 20 ms (default 200), so the event checks wait less.
    let usage_dir = temp_dir("conformance-usage");
    let usage = format!(
        "[usage]\nsink = \"sqlite\"\npath = \"{}\"\nflush_ms = 20\n",
        usage_dir.join("usage.db").display()
    );
    let gw = Gateway::start_full(None, Some(usage), &cfg, &env).await;
    let key = gw.create_key(&[]).await;
    Setup {
        wire,
        fake,
        gw,
        key,
        usage_dir,
    }
}

/// The usage fields every provider must fill, as in [`super::Usage::openai`].
fn usage_view(u: &Value) -> Value {
    json!({"prompt_tokens": u["prompt_tokens"], "completion_tokens": u["completion_tokens"],
        "total_tokens": u["total_tokens"],
        "prompt_tokens_details": {"cached_tokens": u["prompt_tokens_details"]["cached_tokens"]},
        "completion_tokens_details": {"reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"]}})
}

/// Runs one case for one kind; see the module doc of [`super`].
pub async fn run(wire: Arc<dyn Wire>, case: Case) {
    let s = setup(wire).await;
    let kind = s.wire.kind();
    let name = case.name();
    match s.wire.unsupported(case) {
        Some(Unsupported::Unknowable(why)) => {
            println!("unsupported: {kind} {}: {why}", s.wire.upstream_model(name));
            return;
        }
        Some(Unsupported::Refused(why)) => {
            println!(
                "unsupported: {kind} {}: {why} (the gateway refuses it)",
                s.wire.upstream_model(name)
            );
            let res = s.gw.chat(&s.key, case.request(name)).await;
            let status = res.status().as_u16();
            let v: Value = res.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 400, "{kind} {name} must be refused: {v}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
            assert!(
                s.fake.calls().is_empty(),
                "a refused request reached the upstream"
            );
            return;
        }
        None => {}
    }
    match case.reply() {
        Reply::Answer(a) => {
            let res = s.gw.chat(&s.key, case.request(name)).await;
            let message = if case.streams() {
                check_stream(&s, case, &a, res).await
            } else {
                check_answer(&s, case, &a, res).await["choices"][0]["message"].clone()
            };
            if let Some(r) = a.reasoning {
                check_reasoning(&message, &r);
            }
            if let Some(next) = case.follow_up(name, &message) {
                let res = s.gw.chat(&s.key, next).await;
                if case.streams() {
                    check_stream(&s, case, &a, res).await;
                } else {
                    check_answer(&s, case, &a, res).await;
                }
            }
            check_event(&s, case, &a).await;
        }
        Reply::Error(_) | Reply::ErrorHtml(_) => {
            let fault = case.fault().expect("error case without a fault");
            check_fault(&s, case, fault).await;
        }
        Reply::Malformed | Reply::WrongShape => {
            let res = s.gw.chat(&s.key, case.request(name)).await;
            let status = res.status().as_u16();
            let v: Value = res.json().await.expect("an OpenAI error body");
            assert_eq!(status, 502, "{v}");
            assert_eq!(v["error"]["type"], "upstream_error", "{v}");
            assert!(
                v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{v}"
            );
            let e = &s.gw.wait_events(1).await[0];
            assert_eq!(
                (e["status"].as_u64(), e["error_type"].as_str()),
                (Some(502), Some("upstream_error")),
                "{e}"
            );
        }
        Reply::StreamErrorEvent => {
            let message = failed_stream(&s, case, STREAM_ERROR_TEXT).await;
            assert!(
                message.contains("overloaded mid-stream"),
                "the provider's message is kept: {message}"
            );
        }
        Reply::MalformedStream => {
            failed_stream(&s, case, "").await;
        }
        Reply::MalformedStreamMid | Reply::TruncatedStream => {
            failed_stream(&s, case, STREAM_ERROR_TEXT).await;
        }
    }
    check_upstream_request(&s, case);
    check_alive(&s).await;
}

/// A stream that fails after delivering `delivered`: 200 (the headers went out before the failure),
/// the text, then one OpenAI error payload (`upstream_error`) and no `[DONE]`; the usage event says
/// 502. Returns the error message.
async fn failed_stream(s: &Setup, case: Case, delivered: &str) -> String {
    let res = s.gw.chat(&s.key, case.request(case.name())).await;
    assert_eq!(res.status(), 200, "stream headers go out before the failure");
    let text = res.text().await.expect("stream body");
    assert!(
        !text.contains(KEY),
        "the provider key leaked to the client: {text}"
    );
    let payloads: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert!(
        !payloads.contains(&"[DONE]"),
        "a failed stream must not end with [DONE]: {text}"
    );
    let payloads: Vec<Value> = payloads
        .iter()
        .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("not JSON ({e}): {p}")))
        .collect();
    let got: String = payloads
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        got, delivered,
        "what came before the failure is delivered: {text}"
    );
    let last = payloads.last().expect("an error event");
    assert_eq!(last["error"]["type"], "upstream_error", "{text}");
    let e = &s.gw.wait_events(1).await[0];
    assert_eq!(
        (e["status"].as_u64(), e["error_type"].as_str()),
        (Some(502), Some("upstream_error")),
        "{e}"
    );
    last["error"]["message"].as_str().unwrap_or_default().to_string()
}

/// The last request that reached the case (the follow-up where the case has one; the others send
/// one body, maybe several times): path, credential and the translated content.
fn check_upstream_request(s: &Setup, case: Case) {
    let name = case.name();
    let calls = s.fake.calls();
    let call = calls
        .iter()
        .rev()
        .find(|c| c.route.as_ref().is_some_and(|r| r.model == name))
        .unwrap_or_else(|| panic!("no upstream request for {name}; got {calls:#?}"));
    let route = call.route.as_ref().expect("route");
    assert_eq!(route.stream, case.streams(), "stream flag of {name}");
    assert_eq!(s.wire.credential(&call.headers).as_deref(), Ok(KEY), "credential");
    assert!(
        !format!("{:?}", call.headers).contains(&s.key),
        "the client's key leaked upstream"
    );
    let seen = s.wire.read_request(&call.body);
    let mut expected = case.expected_seen(s.wire.tool_ids_upstream(), s.wire.tool_result_names());
    expected.max_tokens = expected.max_tokens.or(s.wire.default_max_tokens());
    if let (
        Reply::Answer(Answer {
            reasoning: Some(r), ..
        }),
        Some(turn),
    ) = (case.reply(), expected.turns.get_mut(1))
    {
        turn.parts.splice(0..0, s.wire.replayed_reasoning(&r));
    }
    assert_eq!(seen, expected, "{name}: upstream body {:#}", call.body);
}

/// The answer's signed reasoning comes back for the client to send in its next turn: the text as
/// `reasoning_content`, the signature in the message's extensions (`thinking_blocks`, or a tool
/// call's `provider_specific_fields` for Gemini).
fn check_reasoning(msg: &Value, r: &Reasoning) {
    assert_eq!(msg["reasoning_content"], r.text, "{msg}");
    assert!(
        msg.to_string().contains(r.signature),
        "the signature is returned: {msg}"
    );
}

/// The assistant message a client rebuilds from a stream's chunks (choice 0): `content` and
/// `reasoning_content` concatenated, `thinking_blocks` fragments joined per `index`, tool calls
/// joined per `index` with their `provider_specific_fields`.
pub fn streamed_message(sse: &str) -> Value {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut blocks: BTreeMap<u64, Value> = BTreeMap::new();
    let mut calls: BTreeMap<u64, Value> = BTreeMap::new();
    let chunks = sse
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|p| serde_json::from_str::<Value>(p).ok());
    for c in chunks {
        let delta = &c["choices"][0]["delta"];
        content.push_str(delta["content"].as_str().unwrap_or_default());
        reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or_default());
        for f in delta["thinking_blocks"].as_array().into_iter().flatten() {
            let index = f["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("fragment without index: {c}"));
            let block = blocks.entry(index).or_insert_with(|| json!({"type": f["type"]}));
            assert_eq!(block["type"], f["type"], "one type per block: {c}");
            for key in ["thinking", "signature", "data"] {
                if let Some(more) = f[key].as_str() {
                    let joined = format!("{}{more}", block[key].as_str().unwrap_or_default());
                    block[key] = json!(joined);
                }
            }
        }
        for t in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = t["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("tool call without index: {c}"));
            let call = calls.entry(index).or_insert_with(
                || json!({"id": null, "type": "function", "function": {"name": null, "arguments": ""}}),
            );
            for (key, v) in [
                ("id", &t["id"]),
                ("provider_specific_fields", &t["provider_specific_fields"]),
            ] {
                if !v.is_null() {
                    call[key] = v.clone();
                }
            }
            if let Some(n) = t["function"]["name"].as_str() {
                call["function"]["name"] = json!(n);
            }
            let args = format!(
                "{}{}",
                call["function"]["arguments"].as_str().unwrap_or_default(),
                t["function"]["arguments"].as_str().unwrap_or_default()
            );
            call["function"]["arguments"] = json!(args);
        }
    }
    let mut msg = json!({"role": "assistant", "content": (!content.is_empty()).then_some(content)});
    if !reasoning.is_empty() {
        msg["reasoning_content"] = json!(reasoning);
    }
    if !blocks.is_empty() {
        msg["thinking_blocks"] = Value::Array(blocks.into_values().collect());
    }
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls.into_values().collect());
    }
    msg
}

/// Asserts a `chat.completion` answer and returns it.
async fn check_answer(s: &Setup, case: Case, a: &Answer, res: reqwest::Response) -> Value {
    let status = res.status().as_u16();
    assert_eq!(
        res.headers().get("x-tollgate-provider").map(|v| v.as_bytes()),
        Some(&b"up"[..])
    );
    let v: Value = res.json().await.expect("JSON answer");
    assert_eq!(status, 200, "{}: {v}", case.name());
    assert_eq!(v["object"], "chat.completion", "{v}");
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 1, "{v}");
    let msg = &choices[0]["message"];
    assert_eq!(msg["role"], "assistant", "{v}");
    match a.text {
        Some(t) => assert_eq!(msg["content"], t, "{v}"),
        None => assert!(msg["content"].is_null() || msg["content"] == "", "{v}"),
    }
    if a.tool_calls.is_empty() {
        assert!(msg["tool_calls"].is_null(), "no tool calls expected: {v}");
    } else {
        let calls = msg["tool_calls"].as_array().expect("tool_calls");
        assert_eq!(calls.len(), a.tool_calls.len(), "{v}");
        for (i, (got, want)) in calls.iter().zip(&a.tool_calls).enumerate() {
            assert_eq!(got["id"], s.wire.tool_call_id(i, want.id), "{v}");
            assert_eq!(got["type"], "function", "{v}");
            assert_eq!(got["function"]["name"], want.name, "{v}");
            let args: Value =
                serde_json::from_str(got["function"]["arguments"].as_str().expect("arguments string"))
                    .expect("arguments are JSON");
            assert_eq!(args, want.args, "{v}");
        }
    }
    assert_eq!(choices[0]["finish_reason"], a.finish.openai(), "{v}");
    assert_eq!(usage_view(&v["usage"]), a.usage.openai(), "{v}");
    v
}

/// A tool call reassembled from stream deltas.
#[derive(Default, Debug)]
struct StreamedCall {
    id: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    args: String,
}

/// Asserts a stream and returns the message a client rebuilds from it ([`streamed_message`]).
async fn check_stream(s: &Setup, case: Case, a: &Answer, res: reqwest::Response) -> Value {
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = res.text().await.expect("stream body");
    let payloads: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(payloads.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("chunk is not JSON ({e}): {p}")))
        .collect();
    let mut content = String::new();
    let mut finishes = Vec::new();
    let mut calls: BTreeMap<u64, StreamedCall> = BTreeMap::new();
    let mut roles = Vec::new();
    for c in chunks
        .iter()
        .filter(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty()))
    {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        let choice = &c["choices"][0];
        assert_eq!(choice["index"], 0, "{c}");
        let delta = &choice["delta"];
        roles.extend(delta["role"].as_str().map(str::to_string));
        content.push_str(delta["content"].as_str().unwrap_or_default());
        finishes.extend(choice["finish_reason"].as_str().map(str::to_string));
        for t in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = t["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("tool call delta without index: {c}"));
            let call = calls.entry(index).or_default();
            let first = call.id.is_none() && call.name.is_none();
            if let Some(id) = t["id"].as_str() {
                assert!(first, "a second id for tool call {index}: {c}");
                call.id = Some(id.to_string());
            }
            if let Some(n) = t["function"]["name"].as_str() {
                assert!(call.name.is_none(), "a second name for tool call {index}: {c}");
                call.name = Some(n.to_string());
            }
            if let Some(k) = t["type"].as_str() {
                call.kind = Some(k.to_string());
            }
            call.args
                .push_str(t["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(roles, ["assistant"], "{text}");
    assert_eq!(content, a.text.unwrap_or_default(), "{text}");
    assert_eq!(finishes, [a.finish.openai()], "{text}");
    assert_eq!(
        calls.keys().copied().collect::<Vec<_>>(),
        (0..a.tool_calls.len() as u64).collect::<Vec<_>>(),
        "tool call indices: {text}"
    );
    for (i, want) in a.tool_calls.iter().enumerate() {
        let got = &calls[&(i as u64)];
        assert_eq!(
            got.id.as_deref(),
            Some(s.wire.tool_call_id(i, want.id).as_str()),
            "{got:?}"
        );
        assert_eq!(got.kind.as_deref(), Some("function"), "{got:?}");
        assert_eq!(got.name.as_deref(), Some(want.name), "{got:?}");
        let args: Value = serde_json::from_str(&got.args)
            .unwrap_or_else(|e| panic!("streamed arguments of call {i} are not JSON ({e}): {}", got.args));
        assert_eq!(args, want.args, "{got:?}");
    }
    let usages: Vec<&Value> = chunks.iter().filter(|c| !c["usage"].is_null()).collect();
    if case.request("x")["stream_options"]["include_usage"] == true {
        assert_eq!(usages.len(), 1, "one usage chunk: {text}");
        let last = chunks.last().expect("chunks");
        assert_eq!(last["choices"], json!([]), "the usage chunk comes last: {text}");
        assert_eq!(usage_view(&last["usage"]), a.usage.openai(), "{text}");
    } else {
        assert!(usages.is_empty(), "usage only when asked: {text}");
    }
    streamed_message(&text)
}

/// The usage event of a successful case: tokens as the provider reported them.
async fn check_event(s: &Setup, case: Case, a: &Answer) {
    let e = &s.gw.wait_events(1).await[0];
    let got = (
        e["status"].as_u64(),
        e["provider"].as_str(),
        e["served_model"].as_str(),
        e["streamed"].as_bool(),
    );
    assert_eq!(
        got,
        (Some(200), Some("up"), Some(case.name()), Some(case.streams())),
        "{e}"
    );
    let tokens = (
        e["input_tokens"].as_u64(),
        e["output_tokens"].as_u64(),
        e["cached_input_tokens"].as_u64(),
        e["reasoning_tokens"].as_u64(),
    );
    let u = a.usage;
    assert_eq!(
        tokens,
        (
            Some(u.prompt),
            Some(u.completion),
            Some(u.cached),
            Some(u.reasoning)
        ),
        "{e}"
    );
}

async fn check_fault(s: &Setup, case: Case, f: Fault) {
    let name = case.name();
    let error_of = |status: u16, v: &Value| {
        assert_eq!(status, f.status, "{name}: {v}");
        assert_eq!(v["error"]["type"], f.kind, "{name}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        if matches!(case.reply(), Reply::ErrorHtml(_)) {
            assert!(
                !message.is_empty() && !message.contains('<'),
                "no HTML in the message: {v}"
            );
        } else {
            assert!(
                message.contains("fake upstream says"),
                "the provider's message is kept: {v}"
            );
        }
        assert!(
            !v.to_string().contains(KEY),
            "the provider key leaked to the client: {v}"
        );
        for field in ["param", "code"] {
            assert!(
                v["error"].get(field).is_some(),
                "OpenAI's error shape has `{field}`: {v}"
            );
        }
    };
    let res = s.gw.chat(&s.key, case.request(name)).await;
    let status = res.status().as_u16();
    error_of(status, &res.json().await.expect("error body"));
    assert_eq!(s.fake.count(name), 1);

    let res = s.gw.chat(&s.key, case.request(&format!("{name}-fallback"))).await;
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    assert_eq!(s.fake.count(name), 2);
    if f.falls_over {
        assert_eq!(status, 200, "{name} must fall over to the second target: {text}");
        let Reply::Answer(a) = Case::SimpleChat.reply() else {
            unreachable!()
        };
        assert_eq!(content_of(&text), a.text.unwrap_or_default(), "{text}");
        assert_eq!(s.fake.count("simple_chat"), 1);
    } else {
        error_of(
            status,
            &serde_json::from_str(&text).expect("an OpenAI error body"),
        );
        assert_eq!(s.fake.count("simple_chat"), 0, "{name} must not fall over");
    }

    let res = s.gw.chat(&s.key, case.request(&format!("{name}-retry"))).await;
    let status = res.status().as_u16();
    error_of(status, &res.json().await.expect("error body"));
    let expected = if f.retried { 4 } else { 3 };
    assert_eq!(s.fake.count(name), expected, "{name}: retried = {}", f.retried);
}

/// The content of a `chat.completion`, or of the chunks of a stream.
fn content_of(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        Err(_) => body
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|p| serde_json::from_str::<Value>(p).ok())
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect(),
    }
}

/// No panic, and the gateway still serves.
async fn check_alive(s: &Setup) {
    let res = s.gw.http.get(s.gw.url("/healthz")).send().await.expect("healthz");
    assert_eq!(res.status(), 200);
    let res = s.gw.chat(&s.key, Case::SimpleChat.request("simple_chat")).await;
    assert_eq!(res.status(), 200, "the gateway still answers after the case");
    let logs = s.gw.logs();
    assert!(!logs.contains("panicked"), "the gateway panicked:\n{logs}");
}

/// Sends every case the kind supports and validates each upstream body against the provider's spec.
pub async fn validate_spec(wire: Arc<dyn Wire>) {
    let kind = wire.kind();
    let Some(check) = wire.spec() else {
        return skip(&format!("no spec validator for kind {kind}"));
    };
    let specs: Vec<PathBuf> = check
        .specs
        .iter()
        .map(|p| crate::e2e::specs_dir().join(p))
        .collect();
    if let Some(missing) = specs.iter().find(|p| !p.exists()) {
        return skip(&format!("{} is missing", missing.display()));
    }
    let Some(py) = crate::env::python() else {
        return;
    };
    let s = setup(wire).await;
    let mut sent = 0;
    for case in Case::ALL {
        if matches!(s.wire.unsupported(*case), Some(Unsupported::Refused(_))) {
            continue;
        }
        let res = s.gw.chat(&s.key, case.request(case.name())).await;
        let text = res.text().await.unwrap_or_default();
        let message = match case.streams() {
            true => streamed_message(&text),
            false => {
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)["choices"][0]["message"].clone()
            }
        };
        sent += 1;
        if s.wire.unsupported(*case).is_none() {
            if let Some(next) = case.follow_up(case.name(), &message) {
                s.gw.chat(&s.key, next).await.bytes().await.ok();
                sent += 1;
            }
        }
    }
    let calls = s.fake.calls();
    assert_eq!(calls.len(), sent, "one upstream request per case");
    let dir = temp_dir(&format!("conformance-spec-{kind}"));
    for (i, c) in calls.iter().enumerate() {
        let route = c
            .route
            .as_ref()
            .unwrap_or_else(|| panic!("unexpected upstream path {}", c.path));
        let name = format!("{i:02}-{}.{}.json", route.model, check.suffix);
        crate::e2e::write_json(&dir.join(name), &s.wire.spec_body(route, &c.body));
    }
    let args = specs.iter().chain([&dir]);
    crate::e2e::run_validator(&py, check.script, args, calls.len()).await;
    std::fs::remove_dir_all(dir).ok();
}
