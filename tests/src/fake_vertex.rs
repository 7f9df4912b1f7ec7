//! A fake Google Vertex AI, in-process, on an ephemeral port, with its own OAuth token endpoint.
//!
//! `POST /token` is Google's token endpoint. A refresh-token grant must carry [`USER_CLIENT_ID`],
//! [`USER_CLIENT_SECRET`] and [`USER_REFRESH_TOKEN`]. The JWT-bearer exchange takes `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
//! and an `assertion`, verifies the assertion's RS256 signature with the test service account's public
//! key, its `kid`, `iss`, `aud` (this endpoint's URL), `scope` (cloud-platform) and one-hour lifetime,
//! counts the request, and answers `{access_token, expires_in, token_type}` (or `400 invalid_grant`
//! naming the failed check, or whatever [`FakeVertex::fail_tokens`] says).
//!
//! `POST /v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`
//! needs `Authorization: Bearer <token>` with a token this endpoint minted and that has not expired
//! (or one [`FakeVertex::allow_token`] allowed), else 401 `UNAUTHENTICATED`; with a token minted for
//! the user credential also `x-goog-user-project: p-test`, else 403 `PERMISSION_DENIED`. Publishers:
//!
//! - `google`: `generateContent`, `streamGenerateContent?alt=sse` (Gemini's wire format) and `predict`
//!   (text embeddings: `instances[{content}]` -> `predictions[{embeddings{values, statistics}}]`).
//! - `anthropic`: `rawPredict` and `streamRawPredict` (Anthropic's Messages format). The body must carry
//!   `anthropic_version: vertex-2023-10-16`, `max_tokens`, and no `model` (the URL names it), and
//!   `stream: true` exactly on `streamRawPredict`; else 400 in Anthropic's error shape.
//!
//! Behaviour by model id: `*tools*` answers two parallel tool calls (`get_weather` `{"city":"Paris"}`,
//! `get_time` `{"tz":"CET"}`), `*exhausted*` 429 `RESOURCE_EXHAUSTED` (Google's shape),
//! `*overloaded*` 529 `overloaded_error` (Anthropic's shape); anything else `fake: <last user text>`.
//! Every Vertex request is recorded (path with query, headers, JSON body).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::State,
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
    Router,
};
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use crate::{
    fake::{json_answer, listen, serve_on, sse_paced, Recorded, Requests, Running},
    fake_gemini::error as google_error,
};

pub const CLIENT_EMAIL: &str = "tollgate-test@p-test.iam.gserviceaccount.com";
pub const KEY_ID: &str = "5f1c0ffee0ddba11fa11ba5eba11ad0fdeadbeef";
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
pub const MESSAGE_ID: &str = "msg_vrtx_01FakeVertex";
pub const RESPONSE_ID: &str = "fakeVertexResponse01";
/// The `authorized_user` credential (what `gcloud auth application-default login` writes) the token
/// endpoint accepts with `grant_type=refresh_token`.
pub const USER_CLIENT_ID: &str = "764086051850-fake.apps.googleusercontent.com";
pub const USER_CLIENT_SECRET: &str = "d-FL95Q19q7MQmFpd7hHDFake";
pub const USER_REFRESH_TOKEN: &str = "1//0gFakeRefreshTokenNeverLogged-xyz";

/// Writes an `authorized_user` credentials file (no `token_uri`, as gcloud writes it); returns its path.
pub fn write_authorized_user_file(dir: &Path) -> PathBuf {
    let path = dir.join("application_default_credentials.json");
    let cred = json!({"type": "authorized_user", "client_id": USER_CLIENT_ID,
        "client_secret": USER_CLIENT_SECRET, "refresh_token": USER_REFRESH_TOKEN,
        "quota_project_id": "p-test", "universe_domain": "googleapis.com"});
    std::fs::write(&path, serde_json::to_vec_pretty(&cred).expect("json")).expect("write credentials");
    path
}

/// A throwaway RSA key pair, generated per test run by `openssl` (no key is ever committed); the
/// service-account key of the Vertex tests and the JWKS key of the JWT tests.
pub struct TestKeys {
    pub private_pem: String,
    pub public_pem: String,
    /// The public modulus, big-endian (a JWK's `n`).
    pub modulus: Vec<u8>,
}

impl TestKeys {
    /// `None` when `openssl` is not available (callers skip via `env::skip`).
    pub fn generate(dir: &Path) -> Option<TestKeys> {
        let private = dir.join("sa-private.pem");
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&private)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let public = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .output()
            .ok()?;
        let modulus = Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&private)
            .output()
            .ok()?;
        let hex = String::from_utf8(modulus.stdout).ok()?;
        let hex = hex.trim().trim_start_matches("Modulus=");
        let keys = TestKeys {
            private_pem: std::fs::read_to_string(&private).ok()?,
            public_pem: String::from_utf8(public.stdout).ok()?,
            modulus: hex::decode(hex).ok()?,
        };
        std::fs::remove_file(private).ok()?;
        Some(keys)
    }

    /// Writes a service-account JSON key file (Google's format) naming `token_uri`; returns its path.
    pub fn write_key_file(&self, dir: &Path, token_uri: &str) -> PathBuf {
        let path = dir.join("service-account.json");
        let key = json!({"type": "service_account", "project_id": "p-test", "private_key_id": KEY_ID,
            "private_key": self.private_pem, "client_email": CLIENT_EMAIL, "client_id": "104242424242424242424",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
            "universe_domain": "googleapis.com"});
        std::fs::write(&path, serde_json::to_vec_pretty(&key).expect("json")).expect("write key file");
        path
    }
}

#[derive(Default)]
struct Tokens {
    /// Every token minted, with the instant it expires and whether a user credential (refresh token)
    /// got it: calls with a user token must name a quota project (`x-goog-user-project`).
    minted: Vec<(String, Instant, bool)>,
    /// Tokens accepted without an exchange (a static `api_key_env` token).
    allowed: Vec<String>,
    /// Problems found in assertions (a correct gateway leaves this empty).
    problems: Vec<String>,
    /// Answer token requests with this status and body instead.
    fail: Option<(u16, Value)>,
}

struct Shared {
    requests: Requests,
    tokens: Mutex<Tokens>,
    token_requests: AtomicUsize,
    expires_in: AtomicU64,
    public_pem: String,
    token_url: String,
}

pub struct FakeVertex {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Running,
}

impl FakeVertex {
    /// Starts the fake; its token endpoint accepts assertions signed by `keys`.
    pub async fn start(keys: &TestKeys) -> FakeVertex {
        let listener = listen("127.0.0.1:0").await;
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            requests: Requests::default(),
            tokens: Mutex::new(Tokens::default()),
            token_requests: AtomicUsize::new(0),
            expires_in: AtomicU64::new(3599),
            public_pem: keys.public_pem.clone(),
            token_url: format!("http://{addr}/token"),
        });
        // `{model}:{method}` is one path segment, so the handler parses the path itself.
        let app = Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let server = serve_on(listener, app);
        FakeVertex {
            addr,
            shared,
            _server: server,
        }
    }

    /// The token endpoint: `http://ADDR/token`.
    pub fn token_url(&self) -> String {
        self.shared.token_url.clone()
    }

    /// A provider `base_url` for `project` in `location`.
    pub fn base_url(&self, project: &str, location: &str) -> String {
        format!("http://{}/v1/projects/{project}/locations/{location}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.all()
    }

    /// Token requests received so far (valid or not).
    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// The tokens minted so far, oldest first.
    pub fn minted(&self) -> Vec<String> {
        let t = self.shared.tokens.lock().expect("lock");
        t.minted.iter().map(|(tok, _, _)| tok.clone()).collect()
    }

    /// What was wrong with the assertions received (empty when every one was valid).
    pub fn assertion_problems(&self) -> Vec<String> {
        self.shared.tokens.lock().expect("lock").problems.clone()
    }

    /// The `expires_in` of tokens minted from now on (seconds; default 3599).
    pub fn set_expires_in(&self, secs: u64) {
        self.shared.expires_in.store(secs, Ordering::SeqCst);
    }

    /// Token requests answer `status` with `body` until called with `None`.
    pub fn fail_tokens(&self, failure: Option<(u16, Value)>) {
        self.shared.tokens.lock().expect("lock").fail = failure;
    }

    /// Accepts `token` on the Vertex endpoints without an exchange (a static access token).
    pub fn allow_token(&self, token: &str) {
        self.shared
            .tokens
            .lock()
            .expect("lock")
            .allowed
            .push(token.to_string());
    }
}

fn anthropic_error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    json_answer(status, body)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks a JWT-bearer assertion the way Google's token endpoint does; `Err` names the failed check.
fn check_assertion(shared: &Shared, assertion: &str) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| format!("malformed JWT: {e}"))?;
    if header.alg != Algorithm::RS256 {
        return Err(format!("alg {:?} is not RS256", header.alg));
    }
    if header.kid.as_deref() != Some(KEY_ID) {
        return Err(format!("kid {:?} is not the key's id", header.kid));
    }
    let key = DecodingKey::from_rsa_pem(shared.public_pem.as_bytes()).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&shared.token_url]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .map_err(|e| format!("invalid JWT: {e}"))?
        .claims;
    if claims["scope"] != SCOPE {
        return Err(format!("scope {} is not cloud-platform", claims["scope"]));
    }
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap_or(0),
        claims["exp"].as_u64().unwrap_or(0),
    );
    if exp.saturating_sub(iat) != 3600 {
        return Err(format!("lifetime {} s is not 3600 s", exp.saturating_sub(iat)));
    }
    if iat.abs_diff(unix_now()) > 60 {
        return Err("iat is not now".into());
    }
    Ok(())
}

async fn token(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let n = shared.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let bad = |why: String, problems: &mut Vec<String>| {
        problems.push(why.clone());
        json_answer(400, json!({"error": "invalid_grant", "error_description": why}))
    };
    let mut tokens = shared.tokens.lock().expect("lock");
    if let Some((status, body)) = tokens.fail.clone() {
        return json_answer(status, body);
    }
    let form_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if form_type != "application/x-www-form-urlencoded" {
        return bad(
            format!("content-type {form_type} is not a form"),
            &mut tokens.problems,
        );
    }
    let text = String::from_utf8_lossy(body);
    let form: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/?{text}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let user = field("grant_type") == Some("refresh_token");
    match field("grant_type") {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            if let Err(why) = check_assertion(shared, field("assertion").unwrap_or_default()) {
                return bad(why, &mut tokens.problems);
            }
        }
        Some("refresh_token") => {
            let sent = [field("client_id"), field("client_secret"), field("refresh_token")];
            if sent
                != [
                    Some(USER_CLIENT_ID),
                    Some(USER_CLIENT_SECRET),
                    Some(USER_REFRESH_TOKEN),
                ]
            {
                return bad("unknown client or refresh token".into(), &mut tokens.problems);
            }
        }
        _ => {
            return bad(
                "grant_type is neither jwt-bearer nor refresh_token".into(),
                &mut tokens.problems,
            )
        }
    }
    let expires_in = shared.expires_in.load(Ordering::SeqCst);
    let access_token = format!("ya29.c.fake-vertex-token-{n}-{}", uuid::Uuid::new_v4().simple());
    tokens.minted.push((
        access_token.clone(),
        Instant::now() + Duration::from_secs(expires_in),
        user,
    ));
    axum::Json(json!({"access_token": access_token, "expires_in": expires_in, "token_type": "Bearer"}))
        .into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    if uri.path() == "/token" {
        return token(&shared, &headers, &raw).await;
    }
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let path = uri.path_and_query().map(ToString::to_string).unwrap_or_default();
    shared.requests.record(path, &headers, &body);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let (authorized, user) = {
        let t = shared.tokens.lock().expect("lock");
        let minted = t
            .minted
            .iter()
            .find(|(tok, expires, _)| *tok == bearer && Instant::now() < *expires);
        (
            t.allowed.contains(&bearer) || minted.is_some(),
            minted.is_some_and(|(_, _, user)| *user),
        )
    };
    if user && headers.get("x-goog-user-project").is_none_or(|p| p != "p-test") {
        return google_error(
            403,
            "PERMISSION_DENIED",
            "Your application is authenticating by using local Application Default Credentials. The aiplatform.googleapis.com API requires a quota project, which is not set by default.",
        );
    }
    if !authorized {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    // /v1/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{method}
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let (publisher, model, method) = match segments.as_slice() {
        ["v1", "projects", _, "locations", _, "publishers", publisher, "models", rest] => {
            match rest.split_once(':') {
                Some((model, method)) => (*publisher, model.to_string(), method.to_string()),
                None => return google_error(404, "NOT_FOUND", "no method"),
            }
        }
        _ => {
            return google_error(
                404,
                "NOT_FOUND",
                "The requested URL was not found on this server.",
            )
        }
    };
    if model.contains("exhausted") {
        return google_error(
            429,
            "RESOURCE_EXHAUSTED",
            &format!("Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model with base model: {model}."),
        );
    }
    if model.contains("leaky") && method == "streamRawPredict" {
        // A provider that echoes the caller's credential in an in-stream error: the gateway must
        // scrub the minted token from what it forwards and logs.
        let error = json!({"type": "error", "error": {"type": "api_error",
            "message": format!("token {bearer} was revoked mid-stream")}});
        return sse_paced(vec![format!("event: error\ndata: {error}\n\n")]);
    }
    match (publisher, method.as_str()) {
        ("google", "generateContent") => gemini_answer(&model, &body, false),
        ("google", "streamGenerateContent") if uri.query() == Some("alt=sse") => {
            gemini_answer(&model, &body, true)
        }
        ("google", "predict") => predict(&body),
        ("anthropic", "rawPredict" | "streamRawPredict") => {
            claude_answer(&model, &body, method == "streamRawPredict")
        }
        _ => google_error(404, "NOT_FOUND", "no such publisher method"),
    }
}

fn predict(body: &Value) -> Response {
    let Some(instances) = body["instances"].as_array().filter(|i| !i.is_empty()) else {
        return google_error(400, "INVALID_ARGUMENT", "instances is required");
    };
    let mut predictions = Vec::new();
    for i in instances {
        let Some(text) = i["content"].as_str() else {
            return google_error(400, "INVALID_ARGUMENT", "instances[].content must be a string");
        };
        let words = text.split_whitespace().count();
        predictions.push(
            json!({"embeddings": {"statistics": {"truncated": false, "token_count": words},
            "values": [text.len() as f64, 0.5, -0.25]}}),
        );
    }
    axum::Json(json!({"predictions": predictions, "metadata": {"billableCharacterCount": 1}})).into_response()
}

/// The last user turn's texts (Gemini parts or Anthropic blocks; tool results included).
fn last_user_text(turns: &Value, parts_key: &str) -> String {
    fn texts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| texts(i, out)),
            Value::Object(o) => {
                if let Some(t) = o.get("text").and_then(Value::as_str) {
                    out.push(t.to_string());
                }
                if let Some(c) = o.get("content") {
                    texts(c, out);
                }
                if let Some(r) = o.get("functionResponse") {
                    out.push(r["response"].to_string());
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(turn) = turns
        .as_array()
        .and_then(|ts| ts.iter().rev().find(|t| t["role"] == "user"))
    {
        texts(&turn[parts_key], &mut out);
    }
    out.join(" ")
}

fn gemini_usage(candidates: u64) -> Value {
    json!({"promptTokenCount": 9, "candidatesTokenCount": candidates, "totalTokenCount": 9 + candidates,
        "trafficType": "ON_DEMAND",
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": candidates}]})
}

fn gemini_chunk(model: &str, parts: Value, finish: Option<&str>, candidates: u64) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    json!({"candidates": [candidate], "usageMetadata": gemini_usage(candidates), "modelVersion": model,
        "createTime": "2026-01-01T00:00:00.000000Z", "responseId": RESPONSE_ID})
}

fn gemini_answer(model: &str, body: &Value, stream: bool) -> Response {
    if !body["contents"].is_array() {
        return google_error(400, "INVALID_ARGUMENT", "contents is required");
    }
    if body.get("model").is_some() || body.get("stream").is_some() {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unknown name",
        );
    }
    let text = format!("fake: {}", last_user_text(&body["contents"], "parts"));
    if model.contains("tools") {
        let calls = json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}]);
        let answer = gemini_chunk(model, calls, Some("STOP"), 8);
        return match stream {
            true => sse_paced(vec![format!("data: {answer}\r\n\r\n")]),
            false => axum::Json(answer).into_response(),
        };
    }
    if !stream {
        return axum::Json(gemini_chunk(model, json!([{"text": text}]), Some("STOP"), 6)).into_response();
    }
    let mut frames = Vec::new();
    let mut rest = text.as_str();
    let mut sent = 0;
    while !rest.is_empty() {
        let cut = rest.char_indices().nth(5).map_or(rest.len(), |(i, _)| i);
        sent += 1;
        let chunk = gemini_chunk(model, json!([{"text": &rest[..cut]}]), None, sent);
        frames.push(format!("data: {chunk}\r\n\r\n"));
        rest = &rest[cut..];
    }
    let last = gemini_chunk(model, json!([{"text": ""}]), Some("STOP"), 6);
    frames.push(format!("data: {last}\r\n\r\n"));
    sse_paced(frames)
}

fn claude_usage(output: u64) -> Value {
    json!({"input_tokens": 13, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4,
        "output_tokens": output})
}

fn claude_tools() -> [Value; 2] {
    [
        json!({"type": "tool_use", "id": "toolu_vrtx_01Weather", "name": "get_weather", "input": {"city": "Paris"}}),
        json!({"type": "tool_use", "id": "toolu_vrtx_02Time", "name": "get_time", "input": {"tz": "CET"}}),
    ]
}

fn claude_answer(model: &str, body: &Value, stream: bool) -> Response {
    if body["anthropic_version"] != ANTHROPIC_VERSION {
        return anthropic_error(
            400,
            "invalid_request_error",
            "anthropic_version: Input should be 'vertex-2023-10-16'",
        );
    }
    if body.get("model").is_some() {
        return anthropic_error(
            400,
            "invalid_request_error",
            "model: Extra inputs are not permitted",
        );
    }
    if !body["max_tokens"].is_u64() {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    }
    if (body["stream"] == true) != stream {
        return anthropic_error(
            400,
            "invalid_request_error",
            "stream must be true exactly on streamRawPredict",
        );
    }
    if model.contains("overloaded") {
        return anthropic_error(529, "overloaded_error", "Overloaded");
    }
    let text = format!("fake: {}", last_user_text(&body["messages"], "content"));
    let tools = model.contains("tools");
    if !stream {
        let (content, stop) = match tools {
            true => (json!(claude_tools()), "tool_use"),
            false => (json!([{"type": "text", "text": text}]), "end_turn"),
        };
        return axum::Json(
            json!({"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null, "usage": claude_usage(7)}),
        )
        .into_response();
    }
    let frame = |event: &str, data: Value| format!("event: {event}\ndata: {data}\n\n");
    let message = json!({"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": claude_usage(1)});
    let mut frames = vec![
        frame(
            "message_start",
            json!({"type": "message_start", "message": message}),
        ),
        frame("ping", json!({"type": "ping"})),
    ];
    let blocks: Vec<(Value, Vec<Value>)> = match tools {
        true => claude_tools()
            .into_iter()
            .map(|mut t| {
                let args = t["input"].to_string();
                t["input"] = json!({});
                let (a, b) = args.split_at(args.len() / 2);
                let deltas = [a, b]
                    .iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect();
                (t, deltas)
            })
            .collect(),
        false => {
            let chars: Vec<char> = text.chars().collect();
            let deltas = chars
                .chunks(5)
                .map(|c| json!({"type": "text_delta", "text": c.iter().collect::<String>()}))
                .collect();
            vec![(json!({"type": "text", "text": ""}), deltas)]
        }
    };
    for (index, (start, deltas)) in blocks.into_iter().enumerate() {
        frames.push(frame(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for d in deltas {
            frames.push(frame(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": d}),
            ));
        }
        frames.push(frame(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    let stop = if tools { "tool_use" } else { "end_turn" };
    frames.push(frame(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": 7}}),
    ));
    frames.push(frame("message_stop", json!({"type": "message_stop"})));
    sse_paced(frames)
}
