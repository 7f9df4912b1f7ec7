//! The admin API (admin bearer token), the model list (Tollgate key), and the operational endpoints.

use std::sync::{atomic::Ordering, Arc};

use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tollgate_policy::{
    keys::{KeyPatch, TeamPatch, TeamSpec},
    KeySpec, PolicyError,
};

use crate::{
    app::{status_json, AppState},
    auth::{authenticate, authenticate_admin},
    error::ApiError,
    usage::UsageQuery,
};

/// `200` with an OpenAI-style list, `{"object": "list", "data": [...]}`.
fn list<T: Serialize>(data: T) -> Response {
    status_json(StatusCode::OK, json!({"object": "list", "data": data}))
}

fn model_entry(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "tollgate"})
}

pub async fn list_models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let key = authenticate(&st, &headers)?.key;
    let data: Vec<Value> = st
        .config()
        .model_order
        .iter()
        .filter(|m| key.allows_model(m))
        .map(|m| model_entry(m))
        .collect();
    Ok(list(data))
}

pub async fn get_model(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = authenticate(&st, &headers)?.key;
    if st.config().models.contains_key(&id) && key.allows_model(&id) {
        Ok(status_json(StatusCode::OK, model_entry(&id)))
    } else {
        Err(ApiError::NotFound {
            message: format!("The model `{id}` does not exist or you do not have access to it."),
            code: "model_not_found",
        })
    }
}

pub async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let spool_failing = st.metrics.spool_failing.load(Ordering::Relaxed) == 1;
    let queue_full = st.usage.queue_fill() > 0.9;
    if spool_failing || queue_full {
        let why = if spool_failing {
            "usage_spool_failing"
        } else {
            "usage_queue_full"
        };
        return status_json(StatusCode::SERVICE_UNAVAILABLE, json!({"status": why}));
    }
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
    let mut text = st.metrics.render();
    text.push_str(
        "# HELP tollgate_circuit_state Circuit breaker per target: 0 closed, 1 half-open, 2 open.\n",
    );
    text.push_str("# TYPE tollgate_circuit_state gauge\n");
    for (target, circuit) in st.health.snapshot() {
        let v = match circuit {
            crate::routing::Circuit::Closed => 0,
            crate::routing::Circuit::HalfOpen => 1,
            crate::routing::Circuit::Open => 2,
        };
        text.push_str(&format!(
            "tollgate_circuit_state{{target=\"{}\"}} {v}\n",
            target.replace('"', "")
        ));
    }
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Invalid(m) => ApiError::invalid(m, None),
            PolicyError::Conflict(m) => ApiError::Conflict(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::invalid(e.body_text(), None))
}

type QueryParams<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn query<T>(q: QueryParams<T>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::invalid(e.body_text(), None))
}

/// A failure on Tollgate's side (key reload, usage backend): `ApiError::Internal`.
fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// A team (or other record) as JSON.
fn json_of<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Records an admin action, then makes every replica (this one at once) see the change.
async fn changed(st: &AppState, action: &str, target: &str, detail: Value) -> Result<(), ApiError> {
    st.keys.audit("admin", action, target, detail).await?;
    st.reload_keys().await.map_err(internal)?;
    tracing::info!(action, target, "admin change");
    Ok(())
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("No {what} with id `{id}`."),
        code: "not_found",
    }
}

pub async fn create_key(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    spec: JsonBody<KeySpec>,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let created = st.keys.create(body(spec)?).await?;
    let mut out = created.record.public();
    changed(&st, "key.create", &created.record.id, out.clone()).await?;
    out["key"] = Value::String(created.key);
    Ok(status_json(StatusCode::CREATED, out))
}

pub async fn list_keys(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let data: Vec<Value> = st.keys.list().await?.iter().map(|k| k.public()).collect();
    Ok(list(data))
}

pub async fn get_key(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let k = st.keys.get(&id).await?.ok_or_else(|| not_found("key", &id))?;
    Ok(status_json(StatusCode::OK, k.public()))
}

pub async fn update_key(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    patch: JsonBody<KeyPatch>,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let k = st
        .keys
        .update(&id, body(patch)?)
        .await?
        .ok_or_else(|| not_found("key", &id))?;
    changed(&st, "key.update", &id, k.public()).await?;
    Ok(status_json(StatusCode::OK, k.public()))
}

pub async fn revoke_key(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    if !st.keys.revoke(&id).await? {
        return Err(not_found("key", &id));
    }
    changed(&st, "key.revoke", &id, Value::Null).await?;
    Ok(status_json(StatusCode::OK, json!({"id": id, "revoked": true})))
}

/// Current counters and remaining budget of a key (and its team), as the quota store sees them.
pub async fn key_usage(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let key = st.keys.get(&id).await?.ok_or_else(|| not_found("key", &id))?;
    let team = match &key.team {
        Some(t) => st.keys.get_team(t).await?,
        None => None,
    };
    let status = crate::quota::status(&st.quota, &key, team.as_ref()).await;
    Ok(status_json(
        StatusCode::OK,
        json!({"key_id": id, "team": key.team, "limits": status}),
    ))
}

pub async fn create_team(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    spec: JsonBody<TeamSpec>,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let t = st.keys.create_team(body(spec)?).await?;
    let v = json_of(&t);
    changed(&st, "team.create", &t.id, v.clone()).await?;
    Ok(status_json(StatusCode::CREATED, v))
}

pub async fn list_teams(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    Ok(list(st.keys.list_teams().await?))
}

pub async fn get_team(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let t = st
        .keys
        .get_team(&id)
        .await?
        .ok_or_else(|| not_found("team", &id))?;
    Ok(status_json(StatusCode::OK, json_of(&t)))
}

pub async fn update_team(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    patch: JsonBody<TeamPatch>,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let t = st
        .keys
        .update_team(&id, body(patch)?)
        .await?
        .ok_or_else(|| not_found("team", &id))?;
    let v = json_of(&t);
    changed(&st, "team.update", &id, v.clone()).await?;
    Ok(status_json(StatusCode::OK, v))
}

pub async fn delete_team(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    if !st.keys.delete_team(&id).await? {
        return Err(not_found("team", &id));
    }
    changed(&st, "team.delete", &id, Value::Null).await?;
    Ok(status_json(StatusCode::OK, json!({"id": id, "deleted": true})))
}

#[derive(Deserialize)]
pub struct AuditParams {
    limit: Option<usize>,
}

pub async fn audit_log(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: QueryParams<AuditParams>,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let p = query(params)?;
    let data = st.keys.audit_log(p.limit.unwrap_or(100).clamp(1, 1000)).await?;
    Ok(list(data))
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

/// An optional time query parameter (see [`parse_time`]).
fn time_param(v: Option<&str>, param: &str) -> Result<Option<i64>, ApiError> {
    v.map(|v| parse_time(v, param)).transpose()
}

pub async fn usage_events(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: QueryParams<EventsParams>,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let p = query(params)?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let q = UsageQuery {
        key_id: p.key_id,
        from_ms: time_param(p.from.as_deref(), "from")?,
        to_ms: time_param(p.to.as_deref(), "to")?,
        before: p.cursor,
        limit,
    };
    let events = st.usage_backend.query(q).await.map_err(internal)?;
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(status_json(
        StatusCode::OK,
        json!({"object": "list", "data": events, "next": next}),
    ))
}

/// `GET /admin/usage/events/{id}/body`: the opt-in prompt and answer of one request, while retained.
pub async fn usage_body(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    match st.usage_backend.body(id.clone()).await.map_err(internal)? {
        Some(b) => Ok(status_json(
            StatusCode::OK,
            json!({"id": id, "request": b.request, "response": b.response, "expires_at_ms": b.expires_ms}),
        )),
        None => Err(not_found("stored body for event", &id)),
    }
}

#[derive(Deserialize)]
pub struct SummaryParams {
    group_by: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

fn range(p: &SummaryParams) -> Result<(Option<i64>, Option<i64>), ApiError> {
    Ok((
        time_param(p.from.as_deref(), "from")?,
        time_param(p.to.as_deref(), "to")?,
    ))
}

/// `GET /admin/usage/summary?group_by=key|team|model|provider|day&from=&to=`
pub async fn usage_summary(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: QueryParams<SummaryParams>,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let p = query(params)?;
    let by = crate::analytics::GroupBy::parse(p.group_by.as_deref().unwrap_or("key")).ok_or_else(|| {
        ApiError::invalid(
            "`group_by` must be key, team, model, provider or day",
            Some("group_by"),
        )
    })?;
    let (from, to) = range(&p)?;
    let rows = st.usage_backend.summary(by, from, to).await.map_err(internal)?;
    Ok(status_json(
        StatusCode::OK,
        json!({"object": "list", "group_by": p.group_by.unwrap_or_else(|| "key".into()), "data": rows}),
    ))
}

/// `GET /admin/billing/export?from=&to=&format=csv|json`: one line per key and model.
pub async fn billing_export(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: QueryParams<SummaryParams>,
) -> Result<Response, ApiError> {
    authenticate_admin(&st, &headers)?;
    let p = query(params)?;
    let (from, to) = range(&p)?;
    let lines = st.usage_backend.billing(from, to).await.map_err(internal)?;
    match p.format.as_deref().unwrap_or("json") {
        "json" => Ok(list(lines)),
        "csv" => {
            let mut res = crate::analytics::billing_csv(&lines).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            Ok(res)
        }
        _ => Err(ApiError::invalid("`format` must be csv or json", Some("format"))),
    }
}
