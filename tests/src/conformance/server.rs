//! One fake upstream for every provider kind, in-process on an ephemeral port (Nagle off, like a real
//! provider's edge). Kind `k` lives under `/k/...`; its [`Wire`] says which paths are its chat
//! endpoint and renders the answer of the case named by the upstream model. Every request is recorded.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use bytes::Bytes;
use serde_json::{json, Value};

use super::{cases::STREAM_ERROR_TEXT, Case, Reply, Route, Wire, KEY};

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub kind: &'static str,
    /// Path and query below the kind prefix.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// `None` when the path is not the kind's chat endpoint.
    pub route: Option<Route>,
}

struct Inner {
    wires: Vec<Arc<dyn Wire>>,
    calls: Mutex<Vec<Call>>,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    _server: crate::fake::Running,
}

impl FakeUpstream {
    pub async fn start(wires: Vec<Arc<dyn Wire>>) -> FakeUpstream {
        let inner = Arc::new(Inner {
            wires,
            calls: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(handle).with_state(Arc::clone(&inner));
        let server = crate::fake::serve(app).await;
        FakeUpstream {
            addr: server.addr,
            inner,
            _server: server,
        }
    }

    /// `http://ADDR/<kind>`: what a kind's `provider_toml` builds its base URL on.
    pub fn root(&self, kind: &str) -> String {
        format!("http://{}/{kind}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().expect("lock").clone()
    }

    /// How many requests reached the case with this upstream model.
    pub fn count(&self, model: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.route.as_ref().is_some_and(|r| r.model == model))
            .count()
    }
}

async fn handle(State(inner): State<Arc<Inner>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let full = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.to_string());
    let Some((wire, path)) = inner.wires.iter().find_map(|w| {
        full.strip_prefix(&format!("/{}/", w.kind()))
            .map(|rest| (Arc::clone(w), format!("/{rest}")))
    }) else {
        return (StatusCode::NOT_FOUND, format!("no kind serves {full}")).into_response();
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let route = wire.route(&path, &body);
    inner.calls.lock().expect("lock").push(Call {
        kind: wire.kind(),
        path: path.clone(),
        headers: headers.clone(),
        body: body.clone(),
        route: route.clone(),
    });
    let error = |status: u16, message: &str| {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(wire.error(status, message))).into_response()
    };
    let Some(route) = route else {
        return error(404, &format!("fake {}: no endpoint {path}", wire.kind()));
    };
    if let Err(why) = wire.credential(&headers) {
        return error(401, &why);
    }
    let Some(case) = Case::from_name(&route.model) else {
        return error(404, &format!("fake: no case named `{}`", route.model));
    };
    match case.reply() {
        Reply::Answer(a) if route.stream => {
            stream(wire.stream_content_type(), wire.stream(&route.model, &a, &body))
        }
        Reply::Answer(a) => axum::Json(wire.answer(&route.model, &a)).into_response(),
        // Providers echo (part of) the key in some messages: the gateway must scrub it.
        Reply::Error(status) => error(status, &format!("fake upstream says {status} for key {KEY}")),
        Reply::ErrorHtml(status) => Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
            .header("content-type", "text/html")
            .body(Body::from(format!(
                "<html><head><title>{status} Service Temporarily Unavailable</title></head>\
                 <body><center><h1>{status} Service Temporarily Unavailable</h1></center></body></html>"
            )))
            .expect("response"),
        Reply::StreamErrorEvent => stream(
            wire.stream_content_type(),
            wire.stream_error_event(
                &route.model,
                STREAM_ERROR_TEXT,
                &format!("fake upstream overloaded mid-stream (key {KEY})"),
            ),
        ),
        Reply::Malformed => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(json!({"id": "broken"}).to_string()[..8].to_string()))
            .expect("response"),
        Reply::WrongShape => axum::Json(json!({"status": "ok", "data": [1, 2, 3]})).into_response(),
        Reply::MalformedStream => stream(wire.stream_content_type(), wire.malformed_stream()),
        Reply::MalformedStreamMid => {
            let mut chunks = wire.stream_error_event(&route.model, STREAM_ERROR_TEXT, "unused");
            chunks.pop();
            chunks.extend(wire.malformed_stream());
            stream(wire.stream_content_type(), chunks)
        }
        Reply::TruncatedStream => {
            let mut chunks = wire.stream_error_event(&route.model, STREAM_ERROR_TEXT, "unused");
            chunks.pop();
            stream(wire.stream_content_type(), chunks)
        }
    }
}

/// Writes each chunk separately, yielding in between so the gateway sees separate reads.
fn stream(content_type: &'static str, chunks: Vec<Bytes>) -> Response {
    let body = futures_util::stream::unfold(chunks.into_iter(), |mut it| async move {
        let c = it.next()?;
        tokio::task::yield_now().await;
        Some((Ok::<Bytes, std::io::Error>(c), it))
    });
    Response::builder()
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .expect("response")
}
