//! Client authentication: the Tollgate key from `Authorization: Bearer`, `api-key` or `x-api-key`
//! (so OpenAI, Azure and Anthropic SDKs all work unchanged), and the admin bearer token.

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;
use tollgate_policy::{PolicyError, Principal};

use crate::{app::AppState, error::ApiError, jwt::JwtAuth};

/// The credential a client presented, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(token) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(token.trim());
        }
    }
    ["api-key", "x-api-key"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

pub fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let key = presented_key(headers).filter(|k| !k.is_empty()).ok_or_else(|| {
        ApiError::Unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.".into(),
        )
    })?;
    if let Some(jwt) = st.jwt.as_ref().filter(|_| JwtAuth::looks_like_jwt(key)) {
        return jwt.authenticate(key, &st.keyring);
    }
    let now_s = crate::usage::now_ms() / 1000;
    st.keyring.authenticate(key, now_s).map_err(|e| match e {
        PolicyError::Revoked => ApiError::Unauthorized("This API key has been revoked.".into()),
        PolicyError::Expired => ApiError::Unauthorized("This API key has expired.".into()),
        _ => ApiError::Unauthorized("Incorrect API key provided.".into()),
    })
}

/// Checks the admin bearer token in constant time. With no admin token configured, the admin API is off.
pub fn authenticate_admin(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let config = st.config();
    let Some(expected) = config.admin_key.as_ref() else {
        return Err(ApiError::Forbidden {
            message: "The admin API is disabled: set the variable named by `server.admin_key_env`.".into(),
            code: "admin_disabled",
        });
    };
    let given = presented_key(headers).unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("Invalid admin token.".into()))
    }
}
