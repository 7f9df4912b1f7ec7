//! The admin API (admin bearer token), the model list (Tollgate key), and the operational endpoints.

use std::sync::{atomic::Ordering, Arc};

use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_policy::KeyStore;

use crate::{
    app::{status_json, AppState},
    auth::{authenticate, authenticate_admin},
    error::ApiError,
    usage::UsageQuery,
};

fn model_entry(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "tollgate"})
}

pub async fn list_models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let key = authenticate(&st, &headers)?;
    let data: Vec<Value> = st
        .config
        .model_order
        .iter()
        .filter(|m| key.allows_model(m))
        .map(|m| model_entry(m))
        .collect();
    Ok(status_json(
        StatusCode::OK,
        json!({"object": "list", "data": data}),
    ))
}

pub async fn get_model(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = authenticate(&st, &headers)?;
    if st.config.models.contains_key(&id) && key.allows_model(&id) {
        Ok(status_json(StatusCode::OK, model_entry(&id)))
    } else {
        Err(ApiError::NotFound {
            message: format!("The model `{id}` does not exist or you do not have access to it."),
            code: "model_not_found",
        })
    }
}

pub async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.ready.load(Ordering::SeqCst) {
        status_json(StatusCode::OK, json!({"status": "ready"}))
    } else {
        status_json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "shutting_down"}),
        )
    }
}

pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let mut res = st.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    #[serde(default)]
    models: Vec<String>,
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::Internal(e.to_string())),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

fn key_json(r: &tollgate_policy::KeyRecord) -> Value {
    json!({"id": r.id, "name": r.name, "models": r.models, "created_at": r.created_at_ms / 1000, "revoked": r.revoked})
}

pub async fn create_key(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<CreateKey>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let Json(req) = body.map_err(|e| ApiError::invalid(e.body_text(), None))?;
    if req.name.trim().is_empty() {
        return Err(ApiError::invalid("`name` must not be empty", Some("name")));
    }
    if req.models.iter().any(|m| m.is_empty()) {
        return Err(ApiError::invalid("model globs must not be empty", Some("models")));
    }
    let st2 = Arc::clone(&st);
    let created = blocking(move || {
        let k = st2.keys.create(&req.name, &req.models)?;
        st2.reload_keys()?;
        Ok(k)
    })
    .await?;
    tracing::info!(key_id = %created.record.id, "key created");
    let mut body = key_json(&created.record);
    body["key"] = Value::String(created.key);
    Ok(status_json(StatusCode::CREATED, body))
}

pub async fn list_keys(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let st2 = Arc::clone(&st);
    let keys = blocking(move || Ok(st2.keys.list()?)).await?;
    let data: Vec<Value> = keys.iter().map(key_json).collect();
    Ok(status_json(
        StatusCode::OK,
        json!({"object": "list", "data": data}),
    ))
}

pub async fn revoke_key(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let st2 = Arc::clone(&st);
    let id2 = id.clone();
    let found = blocking(move || {
        let found = st2.keys.revoke(&id2)?;
        st2.reload_keys()?;
        Ok(found)
    })
    .await?;
    if !found {
        return Err(ApiError::NotFound {
            message: format!("No key with id `{id}`."),
            code: "key_not_found",
        });
    }
    tracing::info!(key_id = %id, "key revoked");
    Ok(status_json(StatusCode::OK, json!({"id": id, "revoked": true})))
}

#[derive(Deserialize)]
pub struct EventsParams {
    key_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Accepts unix milliseconds, unix seconds (10 digits or fewer) or RFC 3339.
fn parse_time(v: &str, param: &str) -> Result<i64, ApiError> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(if v.len() <= 10 { n * 1000 } else { n });
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| ApiError::invalid(format!("`{param}` must be RFC 3339 or unix time"), Some(param)))
}

pub async fn usage_events(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<EventsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let Query(p) = params.map_err(|e| ApiError::invalid(e.body_text(), None))?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let q = UsageQuery {
        key_id: p.key_id,
        from_ms: p.from.as_deref().map(|v| parse_time(v, "from")).transpose()?,
        to_ms: p.to.as_deref().map(|v| parse_time(v, "to")).transpose()?,
        before: p.cursor,
        limit,
    };
    let store = Arc::clone(&st.usage_store);
    let events = blocking(move || store.query(&q)).await?;
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(status_json(
        StatusCode::OK,
        json!({"object": "list", "data": events, "next": next}),
    ))
}
