//! The gateway's one error type and its mapping to HTTP: OpenAI's body shape, the right status, and a
//! stable `type` for metrics and usage events. Internal details go to the log, never to the client.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use tollgate_policy::quota::RateInfo;
use tollgate_schemas::ErrorBody;

/// Who failed: decides the status family and whether a fallback may help.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400: malformed JSON, missing or invalid field.
    InvalidRequest { message: String, param: Option<String> },
    /// 401: no key, unknown key, revoked key.
    Unauthorized(String),
    /// 403: the key may not use this model (or the admin API).
    Forbidden { message: String, code: &'static str },
    /// 404: unknown model or resource.
    NotFound { message: String, code: &'static str },
    /// 405 / 404 for unknown routes.
    MethodNotAllowed,
    /// 413
    PayloadTooLarge(usize),
    /// The upstream answered with an error; passed on with its status where it is the client's fault.
    Upstream {
        status: u16,
        message: String,
        kind: Option<String>,
        param: Option<String>,
    },
    /// 502: the upstream could not be reached or answered garbage.
    BadGateway(String),
    /// 504
    GatewayTimeout(String),
    /// 503: no target is available (every provider unconfigured or failing).
    Unavailable(String),
    /// 500; the message is logged, the client sees a generic text.
    Internal(String),
    /// 409
    Conflict(String),
    /// 429 from Tollgate's own limits and budgets, with OpenAI's rate-limit headers.
    RateLimited {
        message: String,
        code: &'static str,
        retry_after_ms: Option<f64>,
        info: RateInfo,
    },
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Upstream { status, .. } => upstream_status(*status),
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// OpenAI's `type` field; also the `error_type` of usage events and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } | ApiError::MethodNotAllowed | ApiError::PayloadTooLarge(_) => {
                "invalid_request_error"
            }
            ApiError::Unauthorized(_) => "authentication_error",
            ApiError::Forbidden { .. } => "permission_error",
            ApiError::NotFound { .. } => "invalid_request_error",
            ApiError::Upstream { status, .. } => match upstream_status(*status) {
                StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
                s if s.is_client_error() => "invalid_request_error",
                _ => "upstream_error",
            },
            ApiError::BadGateway(_) | ApiError::Unavailable(_) => "upstream_error",
            ApiError::GatewayTimeout(_) => "timeout_error",
            ApiError::Internal(_) => "internal_error",
            ApiError::Conflict(_) => "invalid_request_error",
            ApiError::RateLimited {
                code: "budget_exceeded",
                ..
            } => "insufficient_quota",
            ApiError::RateLimited { .. } => "rate_limit_error",
        }
    }

    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::InvalidRequest { message, param } => {
                ErrorBody::new(message.clone(), self.kind(), param.as_deref(), None)
            }
            ApiError::Unauthorized(m) => {
                ErrorBody::new(m.clone(), self.kind(), None, Some("invalid_api_key"))
            }
            ApiError::Forbidden { message, code } => {
                ErrorBody::new(message.clone(), self.kind(), None, Some(code))
            }
            ApiError::NotFound { message, code } => {
                let param = (*code == "model_not_found").then_some("model");
                ErrorBody::new(message.clone(), self.kind(), param, Some(code))
            }
            ApiError::MethodNotAllowed => ErrorBody::new("method not allowed", self.kind(), None, None),
            ApiError::PayloadTooLarge(limit) => ErrorBody::new(
                format!("request body is larger than the limit of {limit} bytes"),
                self.kind(),
                None,
                Some("request_too_large"),
            ),
            ApiError::Upstream {
                message,
                kind,
                param,
                status,
            } => ErrorBody::new(
                format!("upstream error ({status}): {message}"),
                self.kind(),
                param.as_deref(),
                kind.as_deref(),
            ),
            ApiError::BadGateway(m) => ErrorBody::new(m.clone(), self.kind(), None, Some("bad_gateway")),
            ApiError::GatewayTimeout(m) => {
                ErrorBody::new(m.clone(), self.kind(), None, Some("upstream_timeout"))
            }
            ApiError::Unavailable(m) => {
                ErrorBody::new(m.clone(), self.kind(), None, Some("no_upstream_available"))
            }
            ApiError::Internal(_) => ErrorBody::new("internal error", self.kind(), None, None),
            ApiError::Conflict(m) => ErrorBody::new(m.clone(), self.kind(), None, Some("conflict")),
            ApiError::RateLimited { message, code, .. } => {
                ErrorBody::new(message.clone(), self.kind(), None, Some(code))
            }
        }
    }
}

/// Upstream statuses the client can act on pass through; the gateway's own upstream credentials or an
/// upstream crash become 502.
fn upstream_status(status: u16) -> StatusCode {
    match status {
        400 | 404 | 409 | 413 | 415 | 422 | 429 => {
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        408 => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let mut res = json_response(self.status(), &self.body());
        if let ApiError::RateLimited {
            retry_after_ms, info, ..
        } = &self
        {
            if let Some(ms) = retry_after_ms {
                let secs = (ms / 1000.0).ceil().max(1.0) as u64;
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            rate_headers(res.headers_mut(), info);
        }
        res
    }
}

/// Go-style durations, as OpenAI writes them: `17ms`, `1.2s`, `6m0s`.
fn duration_text(ms: f64) -> String {
    let ms = ms.max(0.0);
    if ms < 1000.0 {
        return format!("{}ms", ms.ceil() as u64);
    }
    let secs = ms / 1000.0;
    let (h, rest) = ((secs / 3600.0).floor(), secs % 3600.0);
    let (m, s) = ((rest / 60.0).floor(), rest % 60.0);
    let s = format!("{:.3}", s)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string();
    match (h as u64, m as u64) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers (on every answer: static
/// names and integer values, no formatting).
pub fn rate_headers(h: &mut http::HeaderMap, info: &RateInfo) {
    const NAMES: [[http::HeaderName; 3]; 2] = [
        [
            http::HeaderName::from_static("x-ratelimit-limit-requests"),
            http::HeaderName::from_static("x-ratelimit-remaining-requests"),
            http::HeaderName::from_static("x-ratelimit-reset-requests"),
        ],
        [
            http::HeaderName::from_static("x-ratelimit-limit-tokens"),
            http::HeaderName::from_static("x-ratelimit-remaining-tokens"),
            http::HeaderName::from_static("x-ratelimit-reset-tokens"),
        ],
    ];
    for ([limit, remaining, reset], w) in NAMES.into_iter().zip([info.requests, info.tokens]) {
        let Some(w) = w else { continue };
        h.insert(limit, HeaderValue::from(w.limit));
        h.insert(remaining, HeaderValue::from(w.remaining));
        if let Some(v) = duration_value(w.reset_ms) {
            h.insert(reset, v);
        }
    }
}

/// [`duration_text`] as a header value; the common sub-second case (`17ms`, on most answers) is
/// written without the formatting machinery.
fn duration_value(ms: f64) -> Option<HeaderValue> {
    let ms = ms.max(0.0);
    if ms >= 1000.0 {
        return HeaderValue::from_str(&duration_text(ms)).ok();
    }
    let mut text = Vec::with_capacity(22);
    tollgate_schemas::usage::json::uint(&mut text, ms.ceil() as u64);
    text.extend_from_slice(b"ms");
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
}

pub fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = (status, bytes).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_status_and_shape() {
        let e = ApiError::invalid("messages is required", Some("messages"));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"].as_object().unwrap().contains_key("code"));
        let up = ApiError::Upstream {
            status: 401,
            message: "bad key".into(),
            kind: None,
            param: None,
        };
        assert_eq!(up.status(), StatusCode::BAD_GATEWAY);
        let up = ApiError::Upstream {
            status: 429,
            message: "slow".into(),
            kind: None,
            param: None,
        };
        assert_eq!(
            (up.status(), up.kind()),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error")
        );
    }

    #[test]
    fn durations_read_like_openai() {
        assert_eq!(duration_text(17.2), "18ms");
        assert_eq!(duration_text(1200.0), "1.2s");
        assert_eq!(duration_text(360_000.0), "6m0s");
    }

    #[test]
    fn duration_values_are_the_texts() {
        for ms in [
            -5.0, 0.0, 0.2, 1.0, 9.5, 10.0, 17.2, 99.99, 100.0, 999.0, 999.4, 1000.0, 1200.0, 61_000.5,
        ] {
            let v = duration_value(ms).unwrap();
            assert_eq!(v.to_str().unwrap(), duration_text(ms), "{ms}");
        }
    }

    #[test]
    fn internal_details_stay_internal() {
        let body = serde_json::to_value(ApiError::Internal("db at /secret/path".into()).body()).unwrap();
        assert_eq!(body["error"]["message"], "internal error");
    }
}
