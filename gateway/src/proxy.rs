//! The inference path: `POST /v1/chat/completions`, `/v1/completions` and `/v1/embeddings`.
//!
//! Phases, in order: usage guard (so every request yields one event) -> authenticate -> read the body
//! under the size limit -> validate the fields Tollgate acts on -> resolve the model and check the key
//! may use it -> try the model's targets in order (skipping providers without credentials, falling
//! over on connection failures, timeouts and retryable statuses while nothing was sent to the client)
//! -> answer: the body as the provider sent it (OpenAI family) or as the adapter translated it, or an
//! SSE stream translated chunk by chunk.
//!
//! Cancellation is by construction: if the client goes away, hyper drops this future or the response
//! body stream, which drops the upstream request and closes its connection; the [`UsageGuard`] then
//! records the request as cancelled.

use std::{collections::VecDeque, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{stream::BoxStream, StreamExt};
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use tokio::time::{timeout, timeout_at, Instant};
use tollgate_adapters::{
    echo::{self, EchoAnswer},
    eventstream::Framer,
    openai_compat::{parse_openai_response, OpenAiStream},
    stream::SseEvent,
    AdapterError, Framing, Operation, StreamTranslator, Target,
};
use tollgate_policy::{
    quota::{LimitKind, Plan, QuotaError},
    KeyRecord,
};
use tollgate_schemas::TokenUsage;

use crate::{
    app::AppState,
    auth::authenticate,
    config::{Config, Model, ModelTarget, Provider, Secret},
    error::{rate_headers, ApiError},
    routing,
    telemetry::{Kind as SpanKind, Span, TraceContext},
    usage::{now_ms, UsageGuard},
};

pub async fn chat(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    handle(st, Operation::Chat, headers, body).await
}

pub async fn completions(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    handle(st, Operation::Completions, headers, body).await
}

pub async fn embeddings(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    handle(st, Operation::Embeddings, headers, body).await
}

pub const REQUEST_ID: &str = "x-request-id";
const REQUEST_ID_HEADER: http::HeaderName = http::HeaderName::from_static(REQUEST_ID);

/// The client's `x-request-id` when it is sane (visible ASCII, at most 128 bytes), else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string)
}

async fn handle(st: Arc<AppState>, op: Operation, headers: HeaderMap, body: Body) -> Response {
    let rid = request_id(&headers);
    let mut guard = Some(UsageGuard::new(st.usage.clone(), &rid, op.as_str()));
    if st.tracer.enabled() {
        let parent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse);
        let span = Span::start(gen_ai_operation(op), SpanKind::Server, parent);
        if let Some(g) = guard.as_mut() {
            g.trace(span, st.tracer.clone(), gen_ai_operation(op));
        }
    }
    let mut res = match proxy(&st, op, &headers, body, &mut guard, &rid).await {
        Ok(res) => res,
        Err(e) => {
            if let Some(g) = guard.as_mut() {
                g.finish(e.status().as_u16(), Some(e.kind()));
            }
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&rid) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    res
}

/// What every upstream attempt of a request carries besides the body.
struct Outbound<'a> {
    rid: &'a str,
    /// The client's headers named in `server.forward_headers`.
    forwarded: &'a [(http::HeaderName, HeaderValue)],
}

/// The GenAI semantic conventions' operation name.
fn gen_ai_operation(op: Operation) -> &'static str {
    match op {
        Operation::Chat => "chat",
        Operation::Completions => "text_completion",
        Operation::Embeddings => "embeddings",
    }
}

/// The request fields Tollgate acts on, read once; the rest of the body travels untouched.
struct Parsed {
    model: String,
    body: Map<String, Value>,
    stream: bool,
    client_wants_usage: bool,
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge(limit)),
        Err(e) => Err(ApiError::invalid(
            format!("could not read the request body: {e}"),
            None,
        )),
    }
}

fn parse_request(op: Operation, bytes: &[u8]) -> Result<Parsed, ApiError> {
    let mut body: Map<String, Value> = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(ApiError::invalid("the request body must be a JSON object", None)),
        Err(e) => {
            return Err(ApiError::invalid(
                format!("We could not parse the JSON body of your request: {e}"),
                None,
            ))
        }
    };
    let model = match body.remove("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(_) => {
            return Err(ApiError::invalid(
                "`model` must be a non-empty string",
                Some("model"),
            ))
        }
        None => {
            return Err(ApiError::invalid(
                "you must provide a model parameter",
                Some("model"),
            ))
        }
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("`stream` must be a boolean", Some("stream"))),
    };
    if stream && !op.can_stream() {
        return Err(ApiError::invalid("this endpoint does not stream", Some("stream")));
    }
    let client_wants_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ApiError::invalid(
                    "`stream_options.include_usage` must be a boolean",
                    Some("stream_options.include_usage"),
                ))
            }
        },
        Some(_) => {
            return Err(ApiError::invalid(
                "`stream_options` must be an object",
                Some("stream_options"),
            ))
        }
    };
    match op {
        Operation::Chat => validate_messages(body.get("messages"))?,
        Operation::Completions => {
            if !matches!(body.get("prompt"), Some(Value::String(_) | Value::Array(_))) {
                return Err(ApiError::invalid(
                    "`prompt` must be a string or an array",
                    Some("prompt"),
                ));
            }
        }
        Operation::Embeddings => match body.get("input") {
            Some(Value::String(_)) => {}
            Some(Value::Array(a)) if !a.is_empty() => {}
            _ => {
                return Err(ApiError::invalid(
                    "`input` must be a string or a non-empty array",
                    Some("input"),
                ))
            }
        },
    }
    if let Some(v) = body.get("user") {
        if !v.is_string() && !v.is_null() {
            return Err(ApiError::invalid("`user` must be a string", Some("user")));
        }
    }
    Ok(Parsed {
        model,
        body,
        stream,
        client_wants_usage,
    })
}

fn validate_messages(messages: Option<&Value>) -> Result<(), ApiError> {
    let list = match messages {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "`messages` must not be empty",
                Some("messages"),
            ))
        }
        _ => {
            return Err(ApiError::invalid(
                "`messages` is required and must be an array",
                Some("messages"),
            ))
        }
    };
    for (i, m) in list.iter().enumerate() {
        let Some(obj) = m.as_object() else {
            return Err(ApiError::invalid(
                "each message must be an object",
                Some(&format!("messages[{i}]")),
            ));
        };
        match obj.get("role").and_then(Value::as_str) {
            Some("system" | "developer" | "user" | "assistant" | "tool" | "function") => {}
            _ => {
                return Err(ApiError::invalid(
                    "`role` must be one of system, developer, user, assistant, tool, function",
                    Some(&format!("messages[{i}].role")),
                ))
            }
        }
    }
    Ok(())
}

/// Resolves the model and checks the key may use it.
pub fn resolve_model(cfg: &Config, key: &KeyRecord, model: &str) -> Result<Arc<Model>, ApiError> {
    let found = cfg.models.get(model).ok_or_else(|| ApiError::NotFound {
        message: format!("The model `{model}` does not exist or you do not have access to it."),
        code: "model_not_found",
    })?;
    if !key.allows_model(model) && !key.allows_model(&found.name) {
        return Err(ApiError::Forbidden {
            message: format!("This key is not allowed to use the model `{model}`."),
            code: "model_not_allowed",
        });
    }
    Ok(Arc::clone(found))
}

async fn proxy(
    st: &Arc<AppState>,
    op: Operation,
    headers: &HeaderMap,
    body: Body,
    guard: &mut Option<UsageGuard>,
    rid: &str,
) -> Result<Response, ApiError> {
    let principal = authenticate(st, headers)?;
    // This request runs on the config it started with, whatever a reload does meanwhile.
    let cfg = st.config();
    let key = &principal.key;
    let g = guard
        .as_mut()
        .ok_or_else(|| ApiError::Internal("usage guard missing".into()))?;
    g.update(|e| {
        e.key_id = Some(key.id.clone());
        e.team_id = principal.team.as_ref().map(|t| t.id.clone());
    });
    let bytes = read_body(body, cfg.max_body_bytes).await?;
    let body_len = bytes.len();
    g.update(|e| e.bytes_in = body_len as u64);
    if let Some(secs) = key
        .body_retention
        .as_deref()
        .and_then(|r| tollgate_policy::keys::parse_retention(r).ok())
    {
        g.capture_bodies(
            String::from_utf8_lossy(&bytes).into_owned(),
            now_ms() + secs as i64 * 1000,
        );
    }
    let mut req = parse_request(op, &bytes)?;
    drop(bytes);
    g.update(|e| {
        e.requested_model = Some(req.model.clone());
        e.streamed = req.stream;
        e.user = req.body.get("user").and_then(Value::as_str).map(str::to_string);
    });
    let model = resolve_model(&cfg, key, &req.model)?;

    let plan = routing::plan(&cfg, &model, op, &st.health, |m| key.allows_model(m));
    let Some((first, _)) = plan.first() else {
        let serves = |t: &ModelTarget| {
            t.provider
                .adapter
                .as_ref()
                .is_none_or(|a| a.for_model(&t.model).supports(op))
        };
        if !model.targets.iter().any(serves) {
            return Err(ApiError::invalid(
                format!(
                    "The model `{}` does not support the {} endpoint.",
                    model.name,
                    op.as_str()
                ),
                Some("model"),
            ));
        }
        return Err(ApiError::Unavailable(format!(
            "no provider for model `{}` is available (their credentials are not configured)",
            model.name
        )));
    };

    // Reserve every limit of the key and its team before any upstream work.
    let default_out = first
        .provider
        .adapter
        .as_ref()
        .and_then(|a| a.for_model(&first.model).default_max_tokens());
    let estimate = estimate_usage(&cfg, op, &req, body_len, default_out);
    let est_cost = price_of(first).map_or(tollgate_policy::Usd(0), |p| p.cost(&estimate));
    let est_tokens = estimate.input.saturating_add(estimate.output);
    let quota_plan = Plan::for_principal(&principal, est_tokens, est_cost, now_ms());
    let lease = st.quota.acquire(quota_plan).await.map_err(quota_error)?;
    let info = lease.info;
    if let Some(g) = guard.as_mut() {
        g.attach_lease(lease);
        g.estimated_input = estimate.input;
    }
    let forwarded: Vec<(http::HeaderName, HeaderValue)> = cfg
        .forward_headers
        .iter()
        .filter_map(|n| headers.get(n).map(|v| (n.clone(), v.clone())))
        .collect();
    let out = Outbound {
        rid,
        forwarded: &forwarded,
    };
    let mut res = dispatch(st, &cfg, op, &mut req, &plan, guard, &out).await?;
    rate_headers(res.headers_mut(), &info);
    Ok(res)
}

/// The target's price from the config's table (looked up when the config was loaded).
fn price_of(target: &ModelTarget) -> Option<tollgate_policy::pricing::Price> {
    target.price
}

/// Tokens a request may use at most: the prompt from its size (about 4 bytes a token) and the
/// output from `max_completion_tokens`/`max_tokens` (or the configured default) times `n`.
fn estimate_usage(
    cfg: &Config,
    op: Operation,
    req: &Parsed,
    body_len: usize,
    provider_default: Option<u64>,
) -> TokenUsage {
    let input = (body_len as u64).div_ceil(4).max(1);
    let output = match op {
        Operation::Embeddings => 0,
        _ => {
            let max = ["max_completion_tokens", "max_tokens"]
                .iter()
                .find_map(|f| req.body.get(*f).and_then(Value::as_u64))
                .or(provider_default)
                .unwrap_or(cfg.quota.default_output_tokens);
            let n = req
                .body
                .get("n")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 128);
            max.saturating_mul(n)
        }
    };
    TokenUsage {
        input,
        output,
        ..Default::default()
    }
}

fn quota_error(e: QuotaError) -> ApiError {
    match e {
        QuotaError::Unavailable(m) => ApiError::Unavailable(m),
        QuotaError::Rejected(r) => {
            let whose = if r.owner.starts_with("t:") { "team" } else { "key" };
            let (message, code) = match r.kind {
                LimitKind::Budget => (format!("The {whose}'s budget is exhausted."), "budget_exceeded"),
                LimitKind::Requests => (
                    format!("Rate limit reached: the {whose}'s requests per minute."),
                    "rate_limit_exceeded",
                ),
                LimitKind::Tokens => (
                    format!("Rate limit reached: the {whose}'s tokens per minute."),
                    "rate_limit_exceeded",
                ),
                LimitKind::Parallel => (
                    format!("Too many parallel requests for the {whose}."),
                    "rate_limit_exceeded",
                ),
            };
            ApiError::RateLimited {
                message,
                code,
                retry_after_ms: r.retry_after_ms,
                info: r.info,
            }
        }
    }
}

/// Tries the planned targets in order, retrying retryable failures on the same target with backoff
/// (`retries` per model) and falling over to the next target, all while nothing was sent to the
/// client and within `routing.max_attempts`. Targets whose circuit is open are skipped.
async fn dispatch(
    st: &Arc<AppState>,
    config: &Config,
    op: Operation,
    req: &mut Parsed,
    plan: &[(&ModelTarget, &Model)],
    guard: &mut Option<UsageGuard>,
    out: &Outbound<'_>,
) -> Result<Response, ApiError> {
    let rid = out.rid;
    let cfg = &config.routing;
    let mut attempts = 0u32;
    let mut last_err: Option<ApiError> = None;
    for (position, (target, owner)) in plan.iter().enumerate() {
        if !st.health.admit(&target.id) {
            continue;
        }
        for retry in 0..=owner.retries {
            if attempts >= cfg.max_attempts {
                break;
            }
            if retry > 0 {
                tokio::time::sleep(routing::backoff(cfg, retry - 1)).await;
            }
            attempts += 1;
            let g = guard
                .as_mut()
                .ok_or_else(|| ApiError::Internal("usage guard missing".into()))?;
            g.update(|e| {
                e.attempts = attempts;
                e.provider = Some(target.provider.name.clone());
                e.served_model = Some(target.model.clone());
                e.target = Some(target.id.clone());
                e.fallback = position > 0;
            });
            g.price = price_of(target);
            if attempts > 1 {
                st.metrics
                    .upstream_retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // The last possible attempt takes the body; earlier ones clone it.
            let last = position + 1 == plan.len() && retry == owner.retries;
            let body = if last {
                std::mem::take(&mut req.body)
            } else {
                req.body.clone()
            };
            let started = Instant::now();
            let mut attempt = guard.as_ref().and_then(|g| g.span_context()).map(|parent| {
                let mut s = Span::start(
                    format!("{} {}", gen_ai_operation(op), target.model),
                    SpanKind::Client,
                    Some(parent),
                );
                s.set("gen_ai.operation.name", gen_ai_operation(op));
                s.set("gen_ai.provider.name", target.provider.kind.as_str());
                s.set("gen_ai.request.model", target.model.clone());
                s.set("tollgate.target", target.id.clone());
                s.set("tollgate.attempt", i64::from(attempts));
                s
            });
            if let Some(g) = guard.as_mut() {
                g.span_set("gen_ai.provider.name", target.provider.kind.as_str().into());
            }
            let traceparent = attempt.as_ref().map(|s| s.context().header());
            let outcome = attempt_target(op, req, body, target, guard, out, traceparent.as_deref()).await;
            st.metrics
                .observe_upstream(&target.provider.name, started.elapsed().as_secs_f64());
            if let Some(mut s) = attempt.take() {
                match &outcome {
                    Ok(res) => s.set("http.response.status_code", i64::from(res.status().as_u16())),
                    Err(f) => {
                        s.set("http.response.status_code", i64::from(f.error.status().as_u16()));
                        s.set_error(f.error.kind());
                    }
                }
                s.end(&st.tracer);
            }
            match outcome {
                Ok(res) => {
                    st.health.record(&target.id, true, started.elapsed(), cfg);
                    if position > 0 {
                        st.metrics
                            .fallbacks
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Ok(res);
                }
                Err(Failure {
                    error,
                    retryable,
                    fallback,
                }) => {
                    tracing::warn!(target = %target.id, request_id = rid, error = error.kind(), status = error.status().as_u16(), "upstream attempt failed");
                    if retryable || fallback {
                        st.health.record(&target.id, false, started.elapsed(), cfg);
                    }
                    if !retryable && !fallback {
                        return Err(error);
                    }
                    last_err = Some(error);
                    if !retryable {
                        break;
                    }
                }
            }
        }
    }
    Err(last_err.unwrap_or_else(|| {
        ApiError::Unavailable("every target of this model is unavailable (circuit open)".into())
    }))
}

/// A failed attempt. `retryable`: the same target may succeed on another try (and so may the next);
/// `fallback`: only another target may (the provider rejected its own credentials or lacks the model).
struct Failure {
    error: ApiError,
    retryable: bool,
    fallback: bool,
}

impl Failure {
    fn retry(error: ApiError) -> Self {
        Failure {
            error,
            retryable: true,
            fallback: true,
        }
    }
    fn fatal(error: ApiError) -> Self {
        Failure {
            error,
            retryable: false,
            fallback: false,
        }
    }
}

/// An upstream byte stream, transport errors already turned into messages.
type ByteStream = BoxStream<'static, Result<Bytes, String>>;

async fn attempt_target(
    op: Operation,
    req: &Parsed,
    body: Map<String, Value>,
    target: &ModelTarget,
    guard: &mut Option<UsageGuard>,
    out: &Outbound<'_>,
    traceparent: Option<&str>,
) -> Result<Response, Failure> {
    let provider = &target.provider;
    let Some(adapter) = provider.adapter.as_deref() else {
        return Ok(echo_answer(op, req, body, target, guard));
    };
    let adapter = adapter.for_model(&target.model);
    // Vertex AI with a service account: the key is a short-lived access token, minted on demand.
    let token = match &provider.google_auth {
        Some(source) => Some(source.token().await.map_err(|e| Failure {
            error: ApiError::BadGateway(format!(
                "provider `{}`: could not get a Google access token: {}",
                provider.name, e.message
            )),
            retryable: e.retryable,
            fallback: true,
        })?),
        None => None,
    };
    let t = Target {
        base_url: &provider.base_url,
        model: &target.model,
        api_key: token.as_deref().or(provider.api_key.as_ref()).map(|k| k.expose()),
        api_version: provider.api_version.as_deref(),
    };
    let up = adapter
        .build_request(op, body, req.stream, &t)
        .map_err(|e| match e {
            AdapterError::InvalidRequest { message, param } => {
                Failure::fatal(ApiError::InvalidRequest { message, param })
            }
            other => Failure::fatal(ApiError::Internal(other.to_string())),
        })?;
    let client = &provider.client;
    let started = Instant::now();
    let deadline = started + provider.timeout;
    let first_byte = deadline.min(started + provider.first_byte_timeout);
    // The URL parsed once per provider (reqwest would parse the text on every request).
    let mut send = match provider.urls.parse(&up.url) {
        Some(url) => client.request(reqwest::Method::POST, url),
        None => client.post(&up.url),
    };
    // The client's allow-listed headers first, so the adapter's (credentials, versions) win.
    for (name, value) in out.forwarded {
        send = send.header(name, value);
    }
    let mut send = send.headers(up.headers).header(REQUEST_ID_HEADER, out.rid);
    // Google user credentials name the project their calls are billed to.
    if let Some(v) = provider
        .google_auth
        .as_deref()
        .and_then(|s| s.quota_project())
        .and_then(|p| HeaderValue::from_str(p).ok())
    {
        let mut h = HeaderMap::new();
        h.insert("x-goog-user-project", v);
        send = send.headers(h);
    }
    if let Some(tp) = traceparent {
        send = send.header("traceparent", tp);
    }
    let send = send.body(up.body).send();
    let resp = match timeout_at(first_byte, send).await {
        Err(_) => return Err(Failure::retry(timeout_error(provider))),
        Ok(Err(e)) => {
            return Err(Failure::retry(ApiError::BadGateway(format!(
                "could not reach provider `{}`: {}",
                provider.name,
                transport_reason(&e)
            ))))
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if !status.is_success() {
        let body = error_body(resp, deadline).await;
        let err = adapter.parse_error(status.as_u16(), &body);
        let message = scrub(&err.message, provider, token.as_deref());
        let error = ApiError::Upstream {
            status: err.status,
            message,
            kind: err.kind,
            param: err.param,
        };
        let fallback = err.retryable || matches!(err.status, 401 | 403 | 404);
        return Err(Failure {
            error,
            retryable: err.retryable,
            fallback,
        });
    }
    if req.stream {
        let upstream: ByteStream = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| transport_reason(&e)))
            .boxed();
        let translator = adapter.stream_translator_for(op, req.client_wants_usage, &target.model);
        let limits = StreamLimits {
            idle: provider.stream_idle_timeout,
            deadline,
        };
        let framer = Framer::new(adapter.stream_framing());
        return Ok(stream_response(
            upstream, framer, translator, target, guard, limits, token,
        ));
    }
    let body = match timeout_at(deadline, answer_body(resp, provider.max_answer_bytes)).await {
        Err(_) => return Err(Failure::retry(timeout_error(provider))),
        Ok(Err(why)) => {
            return Err(Failure::retry(ApiError::BadGateway(format!(
                "provider `{}` broke off its answer: {why}",
                provider.name
            ))))
        }
        Ok(Ok(b)) => b,
    };
    let parsed = adapter.parse_response_for(op, body, &target.model).map_err(|e| {
        Failure::retry(ApiError::BadGateway(format!(
            "provider `{}` answered unreadably: {e}",
            provider.name
        )))
    })?;
    Ok(full_response(parsed, target, guard))
}

/// A whole non-streamed answer, refused (without reading the rest) once it passes `max` bytes
/// (`http_body_util::Limited`; a one-chunk answer is returned without a copy).
async fn answer_body(resp: reqwest::Response, max: usize) -> Result<Bytes, String> {
    let too_large = || format!("the answer is larger than the provider's max_answer_bytes ({max})");
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let body = http::Response::from(resp).into_body();
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(e
            .downcast_ref::<reqwest::Error>()
            .map_or_else(|| "request failed".to_string(), transport_reason)),
    }
}

/// The most of an upstream error body that is read: providers' errors are small JSON objects.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The start of an upstream error body (up to [`MAX_ERROR_BODY`], and what came by `deadline`): a
/// huge or endless error body is neither buffered whole nor waited for.
async fn error_body(resp: reqwest::Response, deadline: Instant) -> Bytes {
    let mut body = BytesMut::new();
    let mut chunks = resp.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = chunks.next().await {
            let room = MAX_ERROR_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_ERROR_BODY {
                break;
            }
        }
    };
    let _ = timeout_at(deadline, read).await;
    body.freeze()
}

fn timeout_error(provider: &Provider) -> ApiError {
    ApiError::GatewayTimeout(format!(
        "provider `{}` did not answer within {} ms",
        provider.name,
        provider.timeout.as_millis()
    ))
}

/// A transport error's reason without its URL (which may carry credentials in a query string).
fn transport_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "the body broke off"
    } else {
        "request failed"
    };
    kind.to_string()
}

/// Removes the provider's credentials (its key, what its adapter holds, a minted access token) from
/// text that came from the provider.
fn scrub(text: &str, provider: &Provider, token: Option<&Secret>) -> String {
    let held = provider
        .adapter
        .as_deref()
        .map(|a| a.secrets())
        .unwrap_or_default();
    let mut out = text.to_string();
    for k in provider
        .api_key
        .as_ref()
        .map(|k| k.expose())
        .into_iter()
        .chain(token.map(|t| t.expose()))
        .chain(held)
        .filter(|k| k.len() >= 4)
    {
        out = out.replace(k, "***");
    }
    out
}

/// Headers an answer may carry: its own few, `x-tollgate-*`, the six rate-limit headers and
/// `x-request-id`; reserved at once so the map does not grow (and rehash) on the way.
const ANSWER_HEADERS: usize = 12;
const PROVIDER_HEADER: http::HeaderName = http::HeaderName::from_static("x-tollgate-provider");
const MODEL_HEADER: http::HeaderName = http::HeaderName::from_static("x-tollgate-model");

fn tollgate_headers(res: &mut Response, target: &ModelTarget, served: &str) {
    let h = res.headers_mut();
    if let Some(v) = &target.provider.name_header {
        h.insert(PROVIDER_HEADER, v.clone());
    }
    if let Ok(v) = HeaderValue::from_str(served) {
        h.insert(MODEL_HEADER, v);
    }
}

fn full_response(
    parsed: tollgate_adapters::Parsed,
    target: &ModelTarget,
    guard: &mut Option<UsageGuard>,
) -> Response {
    let tollgate_adapters::Parsed { body, usage, model } = parsed;
    let served = model.unwrap_or_else(|| target.model.clone());
    let bytes_out = body.len() as u64;
    if let Some(g) = guard.as_mut() {
        g.capture_response(&body);
    }
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().reserve(ANSWER_HEADERS);
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    tollgate_headers(&mut res, target, &served);
    if let Some(g) = guard.as_mut() {
        g.update(|e| {
            e.served_model = Some(served);
            e.bytes_out = bytes_out;
        });
        if let Some(u) = &usage {
            g.set_usage(u);
        }
        g.finish(200, None);
    }
    res
}

fn echo_answer(
    op: Operation,
    req: &Parsed,
    body: Map<String, Value>,
    target: &ModelTarget,
    guard: &mut Option<UsageGuard>,
) -> Response {
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_ms() / 1000;
    match echo::respond(op, &body, &target.model, req.stream, &id, created) {
        EchoAnswer::Full(bytes) => match parse_openai_response(bytes) {
            Ok(parsed) => full_response(parsed, target, guard),
            Err(e) => ApiError::Internal(format!("echo answer unreadable: {e}")).into_response(),
        },
        EchoAnswer::Chunks(chunks) => {
            let mut frames: Vec<Result<Bytes, String>> =
                chunks.into_iter().map(|c| Ok(sse_frame(&c))).collect();
            frames.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
            let upstream: ByteStream = futures_util::stream::iter(frames).boxed();
            let translator = Box::new(OpenAiStream::new(req.client_wants_usage));
            let limits = StreamLimits {
                idle: Duration::from_secs(60),
                deadline: Instant::now() + Duration::from_secs(600),
            };
            let framer = Framer::new(Framing::Sse);
            stream_response(upstream, framer, translator, target, guard, limits, None)
        }
    }
}

/// Characters of generated text in one OpenAI chunk (content, reasoning, tool arguments, legacy
/// text): what a cut stream is billed for when the provider never reported its usage.
fn delivered_text_len(payload: &[u8]) -> u64 {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return 0;
    };
    let Some(choices) = v.get("choices").and_then(Value::as_array) else {
        return 0;
    };
    let len = |v: Option<&Value>| v.and_then(Value::as_str).map_or(0, |s| s.chars().count() as u64);
    choices
        .iter()
        .map(|c| {
            let d = c.get("delta");
            let d = d.unwrap_or(&Value::Null);
            let tools: u64 = d.get("tool_calls").and_then(Value::as_array).map_or(0, |calls| {
                calls.iter().map(|t| len(t.pointer("/function/arguments"))).sum()
            });
            len(d.get("content")) + len(d.get("reasoning_content")) + len(c.get("text")) + tools
        })
        .sum()
}

fn sse_frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(payload);
    b.put_slice(b"\n\n");
    b.freeze()
}

fn error_frame(message: &str, kind: &str) -> Bytes {
    let body = tollgate_schemas::ErrorBody::new(message, kind, None, None);
    sse_frame(&serde_json::to_vec(&body).unwrap_or_default())
}

/// Per-stream state, owned by the response body: dropping the body (client gone) drops the upstream
/// stream and the usage guard, which records the cancellation.
/// How long a stream may stay silent, and when it must have ended.
#[derive(Clone, Copy)]
struct StreamLimits {
    idle: Duration,
    deadline: Instant,
}

fn stream_error_text(e: AdapterError) -> String {
    match e {
        AdapterError::StreamError(m) => m,
        other => other.to_string(),
    }
}

struct StreamState {
    upstream: ByteStream,
    framer: Framer,
    translator: Box<dyn StreamTranslator>,
    guard: UsageGuard,
    limits: StreamLimits,
    pending: VecDeque<Bytes>,
    events: Vec<SseEvent>,
    payloads: Vec<Bytes>,
    /// For the log and to scrub the provider's credentials from its in-stream error messages.
    provider: Arc<Provider>,
    /// The access token the request was sent with, when the gateway minted one (scrubbed too).
    token: Option<Arc<Secret>>,
    done: bool,
}

impl StreamState {
    /// Turns upstream events into client frames. Returns false when the stream must end with an error.
    fn process(&mut self) -> Result<(), String> {
        let mut result = Ok(());
        for event in self.events.drain(..) {
            if let Err(e) = self.translator.on_event(&event, &mut self.payloads) {
                // What was translated before the error still reaches the client, then the error.
                result = Err(stream_error_text(e));
                break;
            }
            if self.translator.finished() {
                break;
            }
        }
        if !self.payloads.is_empty() {
            self.guard.mark_first_token();
        }
        for p in self.payloads.drain(..) {
            self.guard.add_delivered(delivered_text_len(&p));
            self.guard.capture_response(&p);
            self.guard.capture_response(b"\n");
            let frame = sse_frame(&p);
            let n = frame.len() as u64;
            self.guard.update(|e| e.bytes_out += n);
            self.pending.push_back(frame);
        }
        if let Some(u) = self.translator.usage() {
            self.guard.set_usage(&u);
        }
        result
    }

    fn served_model(&mut self) {
        if let Some(m) = self.translator.model().map(str::to_string) {
            self.guard.update(|e| e.served_model = Some(m));
        }
    }

    fn complete(&mut self) {
        self.served_model();
        self.pending.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        self.guard.finish(200, None);
        self.done = true;
    }

    fn fail(&mut self, message: &str, status: u16, kind: &str) {
        self.served_model();
        let message = scrub(message, &self.provider, self.token.as_deref());
        tracing::warn!(provider = %self.provider.name, error = %message, "upstream stream failed");
        self.pending
            .push_back(error_frame(&format!("upstream stream failed: {message}"), kind));
        self.guard.finish(status, Some(kind));
        self.done = true;
    }
}

fn stream_response(
    upstream: ByteStream,
    framer: Framer,
    translator: Box<dyn StreamTranslator>,
    target: &ModelTarget,
    guard: &mut Option<UsageGuard>,
    limits: StreamLimits,
    token: Option<Arc<Secret>>,
) -> Response {
    let Some(guard) = guard.take() else {
        return ApiError::Internal("usage guard missing".into()).into_response();
    };
    let state = StreamState {
        upstream,
        framer,
        translator,
        guard,
        limits,
        pending: VecDeque::new(),
        events: Vec::new(),
        payloads: Vec::new(),
        provider: Arc::clone(&target.provider),
        token,
        done: false,
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(frame) = st.pending.pop_front() {
                return Some((Ok::<Bytes, Infallible>(frame), st));
            }
            if st.done {
                return None;
            }
            let now = Instant::now();
            let wait = st
                .limits
                .idle
                .min(st.limits.deadline.saturating_duration_since(now));
            match timeout(wait, st.upstream.next()).await {
                Err(_) if Instant::now() >= st.limits.deadline => {
                    st.fail(
                        "the stream exceeded the provider's total timeout",
                        504,
                        "timeout_error",
                    );
                }
                Err(_) => {
                    let msg = format!("no data for {} ms", st.limits.idle.as_millis());
                    st.fail(&msg, 504, "timeout_error");
                }
                Ok(Some(Err(e))) => st.fail(&e, 502, "upstream_error"),
                Ok(Some(Ok(bytes))) => {
                    // Events decoded before a framing error are still delivered, then the error.
                    let framed = st.framer.feed(&bytes, &mut st.events);
                    match st.process().and(framed.map_err(stream_error_text)) {
                        Err(m) => st.fail(&m, 502, "upstream_error"),
                        Ok(()) if st.translator.finished() => st.complete(),
                        Ok(()) => {}
                    }
                }
                Ok(None) => {
                    let framed = st.framer.finish(&mut st.events);
                    match st.process().and(framed.map_err(stream_error_text)) {
                        Err(m) => st.fail(&m, 502, "upstream_error"),
                        Ok(()) if st.translator.complete_at_eof() => st.complete(),
                        // A clean close before the provider's end: the answer was cut.
                        Ok(()) => st.fail(
                            "the provider closed the stream before its end",
                            502,
                            "upstream_error",
                        ),
                    }
                }
            }
        }
    });
    let mut res = Response::new(Body::from_stream(body));
    let h = res.headers_mut();
    h.reserve(ANSWER_HEADERS);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    tollgate_headers(&mut res, target, &target.model);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_fields_with_param() {
        let err = |op, body: &str| match parse_request(op, body.as_bytes()) {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => panic!("accepted {body}"),
        };
        assert_eq!(err(Operation::Chat, "{not json"), None);
        assert_eq!(err(Operation::Chat, "[]"), None);
        assert_eq!(
            err(Operation::Chat, r#"{"messages":[]}"#).as_deref(),
            Some("model")
        );
        assert_eq!(
            err(Operation::Chat, r#"{"model":"m"}"#).as_deref(),
            Some("messages")
        );
        assert_eq!(
            err(Operation::Chat, r#"{"model":"m","messages":[{"role":"x"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            err(
                Operation::Chat,
                r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#
            )
            .as_deref(),
            Some("stream")
        );
        assert_eq!(
            err(Operation::Embeddings, r#"{"model":"m"}"#).as_deref(),
            Some("input")
        );
        assert_eq!(
            err(
                Operation::Embeddings,
                r#"{"model":"m","input":"x","stream":true}"#
            )
            .as_deref(),
            Some("stream")
        );
        assert_eq!(
            err(Operation::Completions, r#"{"model":"m"}"#).as_deref(),
            Some("prompt")
        );
    }

    #[test]
    fn keeps_unknown_fields_and_reads_stream_options() {
        let p = parse_request(
            Operation::Chat,
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"x_new":[1]}"#,
        )
        .unwrap();
        assert!(p.stream && p.client_wants_usage);
        assert_eq!(p.model, "m");
        assert!(p.body.contains_key("x_new") && !p.body.contains_key("model"));
    }

    #[test]
    fn request_ids_are_sanitised() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
    }
}
