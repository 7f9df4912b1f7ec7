//! Google auth for Vertex AI providers: a credentials file (`credentials_file`, or the standard
//! `GOOGLE_APPLICATION_CREDENTIALS`) becomes a [`TokenSource`] that gets access tokens at the token URL
//! and caches each until shortly before it expires. A service-account key (`type: service_account`)
//! signs an RS256 JWT (`iss` = the account's email, `scope` = cloud-platform, `aud` = the token URL,
//! one hour, `kid` = the key id) and exchanges it (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`);
//! a user credential (`type: authorized_user`, what `gcloud auth application-default login` writes)
//! exchanges its refresh token (`grant_type=refresh_token`).
//!
//! Refreshes are single-flight: concurrent requests that find the token stale wait for one exchange
//! instead of starting their own, and when that exchange fails they all get its error (a later
//! request tries again). A still-valid token is kept when an early refresh fails. No private key,
//! signed assertion, client secret, refresh token or access token is ever logged or put in an error;
//! a file that cannot be used is reported at config load by what is wrong with it, never by its
//! contents. User credentials also name their quota project ([`TokenSource::quota_project`]).
//!
//! [`vertex_provider`] validates a provider entry's Vertex fields for `config.rs`.

use std::{
    path::Path,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tollgate_adapters::ProviderKind;

use crate::config::Secret;

/// The OAuth scope Vertex AI needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, when neither the config nor the key file names one.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime asked for in the assertion (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// A token is refreshed this long before it expires (or after three quarters of a shorter life).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Time allowed for one token exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest provider text an error may quote.
const MAX_QUOTED: usize = 200;

/// A loaded service-account key: what signing needs, the key held only in its parsed form.
pub struct ServiceAccount {
    client_email: String,
    key_id: Option<String>,
    key: EncodingKey,
    token_uri: Option<String>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

/// A user credential (`type: authorized_user`): a refresh token and the OAuth client it was issued to.
pub struct AuthorizedUser {
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    token_uri: Option<String>,
    /// Billed for the calls (`x-goog-user-project`): Vertex AI refuses user credentials without one.
    quota_project: Option<String>,
}

impl std::fmt::Debug for AuthorizedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizedUser")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What a Google credentials file holds.
#[derive(Debug)]
pub enum Credentials {
    ServiceAccount(ServiceAccount),
    AuthorizedUser(AuthorizedUser),
}

impl From<ServiceAccount> for Credentials {
    fn from(a: ServiceAccount) -> Self {
        Credentials::ServiceAccount(a)
    }
}

impl Credentials {
    /// Reads a credentials JSON file. The error says what is wrong (unreadable, not JSON, an
    /// unsupported credential type, a missing field, an unusable key) and never quotes the file.
    pub fn from_file(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        Credentials::from_json(&text).map_err(|e| format!("`{}`: {e}", path.display()))
    }

    /// Parses credentials from their JSON text (see [`Credentials::from_file`]). Without `type`, the
    /// file is read as a service-account key.
    pub fn from_json(text: &[u8]) -> Result<Credentials, String> {
        // Parsed as a `Value` first: a syntax error names only a position, never the content.
        let v: Value = serde_json::from_slice(text).map_err(|e| {
            format!(
                "is not a JSON key file (syntax error at line {} column {})",
                e.line(),
                e.column()
            )
        })?;
        match v.get("type").and_then(Value::as_str) {
            None | Some("service_account") => ServiceAccount::from_value(&v).map(Credentials::ServiceAccount),
            Some("authorized_user") => {
                let field = |name: &str| {
                    v.get(name)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| format!("is not an authorized_user credential: `{name}` is missing"))
                };
                Ok(Credentials::AuthorizedUser(AuthorizedUser {
                    client_id: field("client_id")?.to_string(),
                    client_secret: Secret::new(field("client_secret")?.to_string()),
                    refresh_token: Secret::new(field("refresh_token")?.to_string()),
                    token_uri: field("token_uri").ok().map(str::to_string),
                    quota_project: field("quota_project_id").ok().map(str::to_string),
                }))
            }
            Some(kind) => {
                let kind: String = kind.chars().take(40).collect();
                Err(format!(
                    "holds a `{kind}` credential; supported: `service_account` keys and `authorized_user` credentials"
                ))
            }
        }
    }

    /// The project a user credential bills its calls to (`quota_project_id`); `None` for service
    /// accounts, which bill their own project.
    pub fn quota_project(&self) -> Option<&str> {
        match self {
            Credentials::ServiceAccount(_) => None,
            Credentials::AuthorizedUser(u) => u.quota_project.as_deref(),
        }
    }

    fn token_uri(&self) -> Option<&str> {
        match self {
            Credentials::ServiceAccount(a) => a.token_uri.as_deref(),
            Credentials::AuthorizedUser(u) => u.token_uri.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl ServiceAccount {
    /// Parses a service-account key from its JSON text (see [`Credentials::from_file`]).
    pub fn from_json(text: &[u8]) -> Result<ServiceAccount, String> {
        match Credentials::from_json(text)? {
            Credentials::ServiceAccount(a) => Ok(a),
            Credentials::AuthorizedUser(_) => Err("holds an `authorized_user` credential".into()),
        }
    }

    fn from_value(v: &Value) -> Result<ServiceAccount, String> {
        let field = |name: &str| v.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
        let client_email = field("client_email")
            .ok_or("is not a service-account key: `client_email` is missing")?
            .to_string();
        let pem = field("private_key").ok_or("is not a service-account key: `private_key` is missing")?;
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| "`private_key` is not a PEM RSA private key".to_string())?;
        let account = ServiceAccount {
            client_email,
            key_id: field("private_key_id").map(str::to_string),
            key,
            token_uri: field("token_uri").map(str::to_string),
        };
        // The PEM parser only unwraps the DER: sign once so a broken key fails at load, not per request.
        account
            .assertion(DEFAULT_TOKEN_URL, 0)
            .map_err(|_| "`private_key` cannot sign (not a usable RSA private key)".to_string())?;
        Ok(account)
    }

    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The signed JWT exchanged for an access token at `token_url`, issued at `iat` (Unix seconds).
    fn assertion(&self, token_url: &str, iat: u64) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: token_url,
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

/// Why no access token could be had. `message` names no secret; `retryable` says whether the token
/// endpoint failed in a way another try may fix (transport, timeout, 429, 5xx).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenError {
    pub message: String,
    pub retryable: bool,
}

#[derive(Clone)]
struct Cached {
    token: Arc<Secret>,
    /// Refresh from here on.
    refresh_at: Instant,
    /// Unusable from here on.
    expires_at: Instant,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// Exchanges finished so far: a waiter that sees it move knows an exchange ran while it waited.
    exchanges: u64,
    last_error: Option<TokenError>,
}

/// Mints, caches and refreshes access tokens for one provider.
pub struct TokenSource {
    provider: String,
    account: Credentials,
    token_url: String,
    client: reqwest::Client,
    state: RwLock<State>,
    /// Held by the one request that runs an exchange; the others wait on it.
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("provider", &self.provider)
            .field("account", &self.account)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct TokenErrorAnswer {
    error: Option<String>,
    error_description: Option<String>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenSource {
    pub fn new(
        provider: &str,
        account: impl Into<Credentials>,
        token_url: String,
        client: reqwest::Client,
    ) -> Self {
        TokenSource {
            provider: provider.to_string(),
            account: account.into(),
            token_url,
            client,
            state: RwLock::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The `x-goog-user-project` to send with each call (see [`Credentials::quota_project`]).
    pub fn quota_project(&self) -> Option<&str> {
        self.account.quota_project()
    }

    /// A valid access token: the cached one, or a fresh one from a single-flight exchange.
    pub async fn token(&self) -> Result<Arc<Secret>, TokenError> {
        let seen = {
            let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = s.token.as_ref().filter(|c| Instant::now() < c.refresh_at) {
                return Ok(Arc::clone(&c.token));
            }
            s.exchanges
        };
        let _turn = self.refresh.lock().await;
        {
            let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = s.token.as_ref().filter(|c| Instant::now() < c.refresh_at) {
                return Ok(Arc::clone(&c.token));
            }
            if s.exchanges != seen {
                // An exchange ran while this request waited and failed: share its outcome.
                if let Some(e) = &s.last_error {
                    return self.fallback(&s, e.clone());
                }
            }
        }
        let result = self.exchange().await;
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        s.exchanges += 1;
        match result {
            Ok(cached) => {
                let token = Arc::clone(&cached.token);
                s.token = Some(cached);
                s.last_error = None;
                Ok(token)
            }
            Err(e) => {
                tracing::warn!(provider = %self.provider, error = %e.message, "google access token refresh failed");
                s.last_error = Some(e.clone());
                self.fallback(&s, e)
            }
        }
    }

    /// After a failed refresh: the old token while it is still valid, else the error.
    fn fallback(&self, s: &State, e: TokenError) -> Result<Arc<Secret>, TokenError> {
        match s.token.as_ref().filter(|c| Instant::now() < c.expires_at) {
            Some(c) => Ok(Arc::clone(&c.token)),
            None => Err(e),
        }
    }

    /// One exchange at the token URL: a signed assertion, or the refresh token.
    async fn exchange(&self) -> Result<Cached, TokenError> {
        let fail = |message: String, retryable: bool| TokenError { message, retryable };
        // `secrets`: what the form carries and no answer may repeat.
        let (form, secrets) = match &self.account {
            Credentials::ServiceAccount(a) => {
                let assertion = a
                    .assertion(&self.token_url, unix_now())
                    .map_err(|_| fail("could not sign the token request".into(), false))?;
                let form = vec![
                    ("grant_type", GRANT_TYPE.to_string()),
                    ("assertion", assertion.clone()),
                ];
                (form, vec![assertion])
            }
            Credentials::AuthorizedUser(u) => {
                let form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("client_id", u.client_id.clone()),
                    ("client_secret", u.client_secret.expose().to_string()),
                    ("refresh_token", u.refresh_token.expose().to_string()),
                ];
                let secrets = vec![
                    u.client_secret.expose().to_string(),
                    u.refresh_token.expose().to_string(),
                ];
                (form, secrets)
            }
        };
        let started = Instant::now();
        let sent = self
            .client
            .post(&self.token_url)
            .form(&form)
            .timeout(EXCHANGE_TIMEOUT)
            .send()
            .await;
        let res = sent.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            fail(format!("token endpoint could not be reached ({why})"), true)
        })?;
        let status = res.status();
        let body = res
            .bytes()
            .await
            .map_err(|_| fail("token endpoint broke off its answer".into(), true))?;
        if !status.is_success() {
            let detail: TokenErrorAnswer = serde_json::from_slice(&body).unwrap_or_default();
            let mut message = format!("token endpoint answered HTTP {}", status.as_u16());
            if let Some(code) = detail.error {
                message.push_str(&format!(": {}", quote(&code, &secrets)));
                if let Some(d) = detail.error_description {
                    message.push_str(&format!(" ({})", quote(&d, &secrets)));
                }
            }
            let retryable = status.as_u16() == 429 || status.is_server_error();
            return Err(fail(message, retryable));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| fail("token endpoint answered with an unreadable body".into(), true))?;
        let token = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("token endpoint answered without an access_token".into(), true))?;
        // Clamped, so no answer can overflow the clock arithmetic below.
        let lifetime = Duration::from_secs(
            answer
                .expires_in
                .unwrap_or(ASSERTION_LIFETIME_SECS)
                .min(24 * 3600),
        );
        let margin = REFRESH_MARGIN.min(lifetime / 4);
        tracing::info!(provider = %self.provider, expires_in_s = lifetime.as_secs(), "minted a google access token");
        Ok(Cached {
            token: Arc::new(Secret::new(token)),
            refresh_at: started + lifetime - margin,
            expires_at: started + lifetime,
        })
    }
}

/// Provider text for an error message: cut short, the credentials sent removed if they were echoed.
fn quote(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(s.as_str(), "***");
    }
    match text.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// A provider entry's Vertex AI fields, as written in the config.
#[derive(Debug, Default)]
pub struct VertexFields {
    pub project: Option<String>,
    pub location: Option<String>,
    pub credentials_file: Option<String>,
    pub token_url: Option<String>,
}

/// What the Vertex fields resolve to.
#[derive(Debug, Default)]
pub struct VertexSetup {
    /// The default base URL from project and location (when the entry sets no `base_url`).
    pub base_url: Option<String>,
    /// The credentials and their token URL, unless the entry uses a static token (`api_key_env`).
    pub account: Option<(Credentials, String)>,
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Validates the Vertex fields of provider entry `at` (of `kind`), pushing `field.path: message`
/// errors. Other kinds must leave them unset. A Vertex entry needs `project` and `location` unless it
/// sets `base_url`, and credentials: `credentials_file`, `api_key_env` (a static access token), or
/// `GOOGLE_APPLICATION_CREDENTIALS`.
pub fn vertex_provider(
    at: &str,
    kind: ProviderKind,
    fields: &VertexFields,
    has_base_url: bool,
    has_api_key_env: bool,
    getenv: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> VertexSetup {
    let named = [
        ("project", &fields.project),
        ("location", &fields.location),
        ("credentials_file", &fields.credentials_file),
        ("token_url", &fields.token_url),
    ];
    if kind != ProviderKind::Vertex {
        for (name, value) in named {
            if value.is_some() {
                errors.push(format!("{at}.{name}: only used by kind `vertex`"));
            }
        }
        return VertexSetup::default();
    }
    let mut setup = VertexSetup::default();
    for (name, value) in [("project", &fields.project), ("location", &fields.location)] {
        match value {
            Some(v) if !is_id(v) => errors.push(format!(
                "{at}.{name}: `{v}` is not a Google Cloud {name} id (letters, digits, `-`)"
            )),
            None if !has_base_url => errors.push(format!(
                "{at}.{name}: required for kind `vertex` (or set `base_url`)"
            )),
            _ => {}
        }
    }
    if let (Some(project), Some(location), false) = (&fields.project, &fields.location, has_base_url) {
        setup.base_url = Some(tollgate_adapters::vertex::base_url(project, location));
    }
    let key_file = match (&fields.credentials_file, has_api_key_env) {
        (Some(_), true) => {
            errors.push(format!(
                "{at}.credentials_file: set either `credentials_file` or `api_key_env` (a static access token), not both"
            ));
            return setup;
        }
        (Some(path), false) => Some((path.clone(), format!("{at}.credentials_file"))),
        (None, true) => None,
        (None, false) => match getenv("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
            Some(path) => Some((
                path,
                format!("{at}.credentials_file (GOOGLE_APPLICATION_CREDENTIALS)"),
            )),
            None => {
                errors.push(format!(
                    "{at}.credentials_file: kind `vertex` needs credentials: `credentials_file`, `api_key_env` or GOOGLE_APPLICATION_CREDENTIALS"
                ));
                return setup;
            }
        },
    };
    let Some((path, field)) = key_file else {
        if fields.token_url.is_some() {
            errors.push(format!(
                "{at}.token_url: only used with a credentials file, not with `api_key_env`"
            ));
        }
        return setup;
    };
    match Credentials::from_file(Path::new(&path)) {
        Ok(account) => {
            let token_url = fields
                .token_url
                .clone()
                .or_else(|| account.token_uri().map(str::to_string))
                .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_string());
            if reqwest::Url::parse(&token_url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                let which = match fields.token_url {
                    Some(_) => format!("{at}.token_url"),
                    None => format!("{field}: token_uri"),
                };
                errors.push(format!("{which}: `{token_url}` is not an http(s) URL"));
            }
            setup.account = Some((account, token_url));
        }
        Err(e) => errors.push(format!("{field}: {e}")),
    }
    setup
}

#[cfg(test)]
#[path = "gcp_auth_tests.rs"]
mod tests;
