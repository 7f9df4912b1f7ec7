//! A fake OpenAI-compatible provider, in-process, on an ephemeral port. Its behaviour is chosen by the
//! upstream model name the gateway sends, so one fake serves every scenario:
//!
//! | model            | answer |
//! |------------------|--------|
//! | anything else    | `fake: <last user text>`, usage 11 in (3 cached) / 7 out; streams in pieces |
//! | `tools`          | one `get_weather` tool call; streamed as argument fragments |
//! | `fail-500`       | 500 with an OpenAI error body (retryable) |
//! | `fail-429`       | 429 rate limit (retryable) |
//! | `fail-400`       | 400 `invalid_request_error` with `param` |
//! | `fail-401`       | 401 whose message echoes the provider key it received |
//! | `slow`           | waits 30 s (non-streaming) / one chunk every 50 ms for 30 s (streaming) |
//! | `reset`          | (non-streaming) 200 headers, then the connection is cut |
//! | `break-stream`   | two chunks, then the connection is cut |
//! | `error-event`    | one chunk, then an `error` event in the stream |
//!
//! Every request is recorded (path, headers, JSON body). A request whose handler is dropped before it
//! answered (the gateway closed the connection) is recorded in `cancellations` with the time it happened.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use bytes::Bytes;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// Every request a fake received, in order.
#[derive(Default)]
pub struct Requests(Mutex<Vec<Recorded>>);

impl Requests {
    pub fn record(&self, path: String, headers: &HeaderMap, body: &Value) {
        self.0.lock().expect("lock").push(Recorded {
            path,
            headers: headers.clone(),
            body: body.clone(),
        });
    }

    pub fn all(&self) -> Vec<Recorded> {
        self.0.lock().expect("lock").clone()
    }
}

/// `body` as a JSON answer with `status` (500 if `status` is not one).
pub fn json_answer(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

/// A fake server on its own task, serving until dropped.
pub struct Running {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on `addr` (`127.0.0.1:0` for an ephemeral port).
pub async fn listen(addr: &str) -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(addr).await.expect("bind fake")
}

/// Serves `app` on `listener`.
pub fn serve_on(listener: tokio::net::TcpListener, app: Router) -> Running {
    let addr = listener.local_addr().expect("addr");
    // Nagle off, as a real provider's edge has it: otherwise small SSE writes wait for a delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Running { addr, task }
}

/// Serves `app` on an ephemeral port of 127.0.0.1.
pub async fn serve(app: Router) -> Running {
    serve_on(listen("127.0.0.1:0").await, app)
}

/// A fake whose only state is the requests it received: the Anthropic, Cohere and Gemini fakes.
pub struct Recording {
    pub addr: SocketAddr,
    base_path: &'static str,
    requests: Arc<Requests>,
    _server: Running,
}

impl Recording {
    /// Serves `routes`, whose handlers record into the `State<Arc<Requests>>`; the provider
    /// `base_url` is `http://ADDR<base_path>`.
    pub async fn start(routes: Router<Arc<Requests>>, base_path: &'static str) -> Recording {
        let requests = Arc::new(Requests::default());
        let server = serve(routes.with_state(Arc::clone(&requests))).await;
        Recording {
            addr: server.addr,
            base_path,
            requests,
            _server: server,
        }
    }

    /// The provider `base_url` to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.base_path)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.all()
    }
}

/// An SSE answer of `frames`, sent a few milliseconds apart so the gateway sees them as separate
/// reads.
pub fn sse_paced(frames: Vec<String>) -> Response {
    let stream = futures_util::stream::unfold(frames.into_iter(), |mut it| async move {
        let f = it.next()?;
        tokio::time::sleep(Duration::from_millis(2)).await;
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(f)), it))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .expect("response")
}

#[derive(Default)]
pub struct FakeState {
    pub requests: Requests,
    pub cancellations: Mutex<Vec<Instant>>,
    pub completions: Mutex<usize>,
}

pub struct FakeProvider {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
    _server: Running,
}

impl FakeProvider {
    pub async fn start() -> FakeProvider {
        FakeProvider::start_on("127.0.0.1:0").await
    }

    /// Starts on a given address (the benchmark runs the fake as its own process on a fixed port).
    pub async fn start_on(addr: &str) -> FakeProvider {
        let state = Arc::new(FakeState::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/completions", post(completions))
            .route("/v1/embeddings", post(embeddings))
            .route("/openai/deployments/{deployment}/chat/completions", post(chat))
            .with_state(Arc::clone(&state));
        let server = serve_on(listen(addr).await, app);
        FakeProvider {
            addr: server.addr,
            state,
            _server: server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.all()
    }

    pub fn cancellations(&self) -> Vec<Instant> {
        self.state.cancellations.lock().expect("lock").clone()
    }
}

/// Records a cancellation if dropped before `done()`.
struct DropWatch {
    state: Arc<FakeState>,
    done: bool,
}

impl DropWatch {
    fn new(state: &Arc<FakeState>) -> Self {
        DropWatch {
            state: Arc::clone(state),
            done: false,
        }
    }
}

impl Drop for DropWatch {
    fn drop(&mut self) {
        if self.done {
            *self.state.completions.lock().expect("lock") += 1;
        } else {
            self.state
                .cancellations
                .lock()
                .expect("lock")
                .push(Instant::now());
        }
    }
}

fn record(state: &FakeState, uri: &Uri, headers: &HeaderMap, body: &Value) {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.to_string());
    state.requests.record(path, headers, body);
}

fn last_user_text(body: &Value) -> String {
    let Some(messages) = body["messages"].as_array() else {
        return String::new();
    };
    messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        })
        .unwrap_or_default()
}

fn usage() -> Value {
    json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
           "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}})
}

fn error(status: u16, message: &str, kind: &str, param: Option<&str>) -> Response {
    json_answer(
        status,
        json!({"error": {"message": message, "type": kind, "param": param, "code": null}}),
    )
}

fn sse(frames: Vec<(Duration, Option<String>)>, watch: DropWatch) -> Response {
    // `None` cuts the connection (an error on the body stream).
    let stream =
        futures_util::stream::unfold((frames.into_iter(), watch), |(mut it, mut watch)| async move {
            match it.next() {
                None => {
                    watch.done = true;
                    drop(watch);
                    None
                }
                Some((delay, frame)) => {
                    tokio::time::sleep(delay).await;
                    let item = match frame {
                        Some(f) => Ok::<Bytes, std::io::Error>(Bytes::from(f)),
                        None => {
                            watch.done = true;
                            Err(std::io::Error::other("cut"))
                        }
                    };
                    Some((item, (it, watch)))
                }
            }
        });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("response")
}

fn chunk(model: &str, delta: Value, finish: Value) -> String {
    let c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

async fn chat(State(state): State<Arc<FakeState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&state, &uri, &headers, &body);
    let watch = DropWatch::new(&state);
    // Azure puts the deployment in the path and no model in the body.
    let model = body["model"]
        .as_str()
        .map(str::to_string)
        .or_else(|| uri.path().split('/').nth(3).map(str::to_string))
        .unwrap_or_default();
    let stream = body["stream"] == true;
    let include_usage = body["stream_options"]["include_usage"] == true;
    let ms = Duration::from_millis;
    match model.as_str() {
        "fail-500" => return finish(watch, error(500, "the fake is down", "server_error", None)),
        "fail-429" => return finish(watch, error(429, "slow down", "rate_limit_exceeded", None)),
        "fail-400" => {
            return finish(
                watch,
                error(
                    400,
                    "temperature is out of range",
                    "invalid_request_error",
                    Some("temperature"),
                ),
            )
        }
        "fail-401" => {
            let presented = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            return finish(
                watch,
                error(
                    401,
                    &format!("Incorrect API key provided: {presented}"),
                    "invalid_request_error",
                    None,
                ),
            );
        }
        "reset" if !stream => {
            // Headers go out, then the connection is cut before any body byte.
            let body = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("reset"))
            });
            return finish(
                watch,
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from_stream(body))
                    .expect("response"),
            );
        }
        "slow" if !stream => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return finish(watch, axum::Json(json!({"never": "reached"})).into_response());
        }
        _ => {}
    }
    let text = format!("fake: {}", last_user_text(&body));
    if !stream {
        let message = if model == "tools" {
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
        } else {
            json!({"role": "assistant", "content": text, "refusal": null})
        };
        let finish_reason = if model == "tools" { "tool_calls" } else { "stop" };
        return finish(
            watch,
            axum::Json(
                json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
            "usage": usage(), "system_fingerprint": "fp_fake"}),
            )
            .into_response(),
        );
    }
    let mut frames: Vec<(Duration, Option<String>)> = Vec::new();
    // An empty frame cuts the connection.
    let mut push = |d: u64, f: String| frames.push((ms(d), (!f.is_empty()).then_some(f)));
    push(
        0,
        chunk(&model, json!({"role": "assistant", "content": ""}), Value::Null),
    );
    match model.as_str() {
        "tools" => {
            push(
                0,
                chunk(
                    &model,
                    json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}]}),
                    Value::Null,
                ),
            );
            for part in ["{\"ci", "ty\":\"Pa", "ris\"}"] {
                push(
                    5,
                    chunk(
                        &model,
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                        Value::Null,
                    ),
                );
            }
            push(0, chunk(&model, json!({}), json!("tool_calls")));
        }
        "slow" => {
            for i in 0..600 {
                push(
                    50,
                    chunk(&model, json!({"content": format!("{i} ")}), Value::Null),
                );
            }
        }
        "break-stream" => {
            push(5, chunk(&model, json!({"content": "partial "}), Value::Null));
            push(5, String::new());
        }
        "error-event" => {
            push(5, chunk(&model, json!({"content": "partial "}), Value::Null));
            push(
                5,
                format!(
                    "data: {}\n\n",
                    json!({"error": {"message": "the model is overloaded", "type": "server_error"}})
                ),
            );
        }
        _ => {
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let cut = rest.char_indices().nth(4).map_or(rest.len(), |(i, _)| i);
                push(2, chunk(&model, json!({"content": &rest[..cut]}), Value::Null));
                rest = &rest[cut..];
            }
            push(0, chunk(&model, json!({}), json!("stop")));
        }
    }
    if include_usage {
        let c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [], "usage": usage()});
        push(0, format!("data: {c}\n\n"));
    }
    push(0, "data: [DONE]\n\n".to_string());
    sse(frames, watch)
}

fn finish(mut watch: DropWatch, res: Response) -> Response {
    watch.done = true;
    res
}

async fn completions(
    State(state): State<Arc<FakeState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&state, &uri, &headers, &body);
    let watch = DropWatch::new(&state);
    let prompt = body["prompt"].as_str().unwrap_or("").to_string();
    finish(watch, axum::Json(json!({"id": "cmpl-fake", "object": "text_completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "text": format!("fake: {prompt}"), "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}})).into_response())
}

async fn embeddings(
    State(state): State<Arc<FakeState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&state, &uri, &headers, &body);
    let watch = DropWatch::new(&state);
    let n = match &body["input"] {
        Value::Array(a) => a.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, -0.2, i as f64]}))
        .collect();
    finish(
        watch,
        axum::Json(json!({"object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": 5, "total_tokens": 5}}))
        .into_response(),
    )
}
