//! AWS Signature Version 4 for Bedrock requests, computed by `aws-sigv4` from static credentials,
//! a region and the time: pure computation, so it lives in the adapter. The signature covers the
//! method, the (double-encoded) path, the query, the `host`, `content-type`, `x-amz-date`,
//! `x-amz-content-sha256` and (with temporary credentials) `x-amz-security-token` headers, and the
//! body's SHA-256. Headers the gateway adds afterwards (request id, trace context) are not signed,
//! which SigV4 allows.

use std::{fmt, time::SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings},
    sign::v4,
};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::AdapterError;

/// Static AWS credentials. `Debug` shows the access key id only.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What to sign: `headers` are the request's own headers to cover (besides `host`, which comes from
/// `url`). `content_sha256` adds the `x-amz-content-sha256` header.
pub(crate) struct Signable<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub content_sha256: bool,
}

/// Signs `req` for `service` in `region` at `time` and returns the headers to add
/// (`authorization`, `x-amz-date`, and `x-amz-content-sha256` / `x-amz-security-token` when they
/// apply). Errors never contain the credentials.
pub(crate) fn sign_request(
    req: &Signable<'_>,
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<HeaderMap, AdapterError> {
    let identity = Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "tollgate",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = if req.content_sha256 {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| AdapterError::Config(format!("cannot sign the request: {e}")))?
        .into();
    let mut pairs = Vec::with_capacity(req.headers.len());
    for (name, value) in req.headers {
        let value = value
            .to_str()
            .map_err(|_| AdapterError::Config(format!("header `{name}` is not signable text")))?;
        pairs.push((name.as_str(), value));
    }
    let signable = SignableRequest::new(
        req.method,
        req.url,
        pairs.into_iter(),
        SignableBody::Bytes(req.body),
    )
    .map_err(|e| AdapterError::Config(format!("cannot sign the request: {e}")))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| AdapterError::Config(format!("cannot sign the request: {e}")))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    let mut out = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = HeaderName::from_bytes(h.name().as_bytes()).map_err(|_| {
            AdapterError::Config(format!("signing produced an invalid header `{}`", h.name()))
        })?;
        let mut value = HeaderValue::from_str(h.value()).map_err(|_| {
            AdapterError::Config(format!("signing produced an invalid `{}` header", h.name()))
        })?;
        // A signature can be replayed for minutes and the session token is a credential.
        value.set_sensitive(h.sensitive() || matches!(h.name(), "authorization" | "x-amz-security-token"));
        out.insert(name, value);
    }
    Ok(out)
}
