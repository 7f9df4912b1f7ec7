//! Unit tests for `gcp_auth`: key-file errors that never quote the key, the JWT's claims checked with
//! the public key, and the token cache against an in-process token endpoint (single-flight refresh,
//! expiry, shared failures). The RSA key is generated per run with `openssl` (never committed); without
//! openssl the key-dependent tests skip, except under CI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::post, Json, Router};
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{json, Value};

use super::*;

const EMAIL: &str = "tollgate@p-1.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
const USER_CLIENT_ID: &str = "764086051850-test.apps.googleusercontent.com";
const USER_SECRET: &str = "d-FL95Q19q7MQmFpd7hHD0Ty";
const USER_REFRESH: &str = "1//0gTestRefreshTokenNeverLogged";

struct Keys {
    private: String,
    public: String,
}

fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tollgate-gcp-auth-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh RSA key pair (PKCS#8 private key, as Google's key files hold), or `None` without openssl.
fn keys() -> Option<&'static Keys> {
    static KEYS: OnceLock<Option<Keys>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let dir = temp_dir();
        let private = dir.join("key.pem");
        let ok = Command::new("openssl")
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
            .ok()
            .filter(|o| o.status.success())?;
        drop(ok);
        let public = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .output()
            .ok()?
            .stdout;
        let keys = Keys {
            private: std::fs::read_to_string(&private).ok()?,
            public: String::from_utf8(public).ok()?,
        };
        std::fs::remove_dir_all(dir).ok();
        Some(keys)
    });
    if keys.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "openssl is required under CI"
        );
        eprintln!("SKIPPED: openssl not available");
    }
    keys.as_ref()
}

fn key_json(keys: &Keys, token_uri: &str) -> Value {
    json!({"type": "service_account", "project_id": "p-1", "private_key_id": KEY_ID,
        "private_key": keys.private, "client_email": EMAIL, "client_id": "1",
        "token_uri": token_uri})
}

#[test]
fn key_file_errors_say_what_is_wrong_without_quoting_the_key() {
    let dir = temp_dir();
    let missing = Credentials::from_file(&dir.join("nope.json")).unwrap_err();
    assert!(missing.starts_with("cannot read `"), "{missing}");

    let secret_bits = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7SECRETSECRET";
    let cases = [
        (r#"{"type": "service_account", "client_email": "#.to_string(), "syntax error at line 1"),
        (
            json!({"type": "authorized_user", "refresh_token": secret_bits}).to_string(),
            "authorized_user credential: `client_id` is missing",
        ),
        (
            json!({"type": "service_account", "private_key": secret_bits}).to_string(),
            "`client_email` is missing",
        ),
        (
            json!({"type": "service_account", "client_email": EMAIL}).to_string(),
            "`private_key` is missing",
        ),
        (
            json!({"type": "service_account", "client_email": EMAIL,
                "private_key": format!("-----BEGIN PRIVATE KEY-----\n{secret_bits}\n-----END PRIVATE KEY-----\n")})
            .to_string(),
            "`private_key`",
        ),
    ];
    for (text, want) in cases {
        let err = ServiceAccount::from_json(text.as_bytes()).unwrap_err();
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("SECRET"), "key material in the error: {err}");
    }
    let path = dir.join("bad.json");
    std::fs::write(&path, json!({"private_key": secret_bits}).to_string()).unwrap();
    let err = Credentials::from_file(&path).unwrap_err();
    assert!(err.contains("bad.json") && !err.contains("SECRET"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn assertion_carries_googles_claims_and_verifies_with_the_public_key() {
    let Some(keys) = keys() else { return };
    let text = key_json(keys, "https://oauth2.googleapis.com/token").to_string();
    let account = ServiceAccount::from_json(text.as_bytes()).unwrap();
    assert_eq!(account.client_email(), EMAIL);
    assert!(!format!("{account:?}").contains("PRIVATE"));
    let url = "http://127.0.0.1:1/token";
    let iat = unix_now();
    let jwt = account.assertion(url, iat).unwrap();
    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(KEY_ID));
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[url]);
    validation.set_issuer(&[EMAIL]);
    let key = DecodingKey::from_rsa_pem(keys.public.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&jwt, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["scope"], SCOPE);
    assert_eq!(claims["iat"], iat);
    assert_eq!(claims["exp"], iat + 3600);
    // A tampered signature does not verify: the check above is real.
    let mut tampered = jwt.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(jsonwebtoken::decode::<Value>(&tampered, &key, &validation).is_err());
}

#[derive(Clone)]
struct Endpoint {
    hits: Arc<AtomicUsize>,
    /// 0: answer 200; else this status with an OAuth error body.
    fail_status: Arc<AtomicU64>,
    expires_in: u64,
    public: Arc<String>,
}

async fn token_endpoint(State(ep): State<Endpoint>, body: String) -> impl IntoResponse {
    let form: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let n = ep.hits.fetch_add(1, Ordering::SeqCst) + 1;
    // Slow enough that concurrent callers overlap with the exchange.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let status = ep.fail_status.load(Ordering::SeqCst);
    if field("grant_type").as_deref() == Some("refresh_token") {
        let sent = (field("client_id"), field("client_secret"), field("refresh_token"));
        let known = (
            Some(USER_CLIENT_ID.to_string()),
            Some(USER_SECRET.to_string()),
            Some(USER_REFRESH.to_string()),
        );
        assert_eq!(sent, known);
        if status != 0 {
            let body = json!({"error": "invalid_grant", "error_description": format!("Bad token {USER_REFRESH} for {USER_SECRET}")});
            return (
                StatusCode::from_u16(u16::try_from(status).unwrap()).unwrap(),
                Json(body),
            );
        }
        return (
            StatusCode::OK,
            Json(json!({"access_token": format!("ya29.user-{n}"), "expires_in": ep.expires_in})),
        );
    }
    assert_eq!(field("grant_type").as_deref(), Some(GRANT_TYPE));
    let assertion = field("assertion").unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[EMAIL]);
    validation.validate_aud = false;
    let key = DecodingKey::from_rsa_pem(ep.public.as_bytes()).unwrap();
    assert!(jsonwebtoken::decode::<Value>(&assertion, &key, &validation).is_ok());
    if status != 0 {
        let body =
            json!({"error": "invalid_grant", "error_description": format!("Invalid JWT: {assertion}")});
        return (
            StatusCode::from_u16(u16::try_from(status).unwrap()).unwrap(),
            Json(body),
        );
    }
    (
        StatusCode::OK,
        Json(
            json!({"access_token": format!("ya29.token-{n}"), "expires_in": ep.expires_in, "token_type": "Bearer"}),
        ),
    )
}

async fn source(keys: &Keys, expires_in: u64) -> (Arc<TokenSource>, Endpoint) {
    let ep = Endpoint {
        hits: Arc::new(AtomicUsize::new(0)),
        fail_status: Arc::new(AtomicU64::new(0)),
        expires_in,
        public: Arc::new(keys.public.clone()),
    };
    let app = Router::new()
        .route("/token", post(token_endpoint))
        .with_state(ep.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let account = ServiceAccount::from_json(key_json(keys, &url).to_string().as_bytes()).unwrap();
    let ts = TokenSource::new("vx", account, url, reqwest::Client::new());
    (Arc::new(ts), ep)
}

async fn concurrently(ts: &Arc<TokenSource>, n: usize) -> Vec<Result<Arc<Secret>, TokenError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let ts = Arc::clone(ts);
            tokio::spawn(async move { ts.token().await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn concurrent_requests_share_one_exchange_and_the_token_is_cached() {
    let Some(keys) = keys() else { return };
    let (ts, ep) = source(keys, 3600).await;
    let got = concurrently(&ts, 16).await;
    assert_eq!(
        ep.hits.load(Ordering::SeqCst),
        1,
        "one exchange for 16 concurrent requests"
    );
    assert!(got.iter().all(|r| r.as_ref().unwrap().expose() == "ya29.token-1"));
    for _ in 0..5 {
        assert_eq!(ts.token().await.unwrap().expose(), "ya29.token-1");
    }
    assert_eq!(ep.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_before_it_expires() {
    let Some(keys) = keys() else { return };
    let (ts, ep) = source(keys, 2).await;
    assert_eq!(ts.token().await.unwrap().expose(), "ya29.token-1");
    assert_eq!(ts.token().await.unwrap().expose(), "ya29.token-1");
    // Refreshed a quarter of its life (0.5 s) before expiry.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(ts.token().await.unwrap().expose(), "ya29.token-2");
    assert_eq!(ep.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_exchange_is_shared_by_its_waiters_and_retried_by_the_next_request() {
    let Some(keys) = keys() else { return };
    let (ts, ep) = source(keys, 3600).await;
    ep.fail_status.store(400, Ordering::SeqCst);
    let got = concurrently(&ts, 8).await;
    assert_eq!(
        ep.hits.load(Ordering::SeqCst),
        1,
        "waiters share the failed exchange"
    );
    for r in &got {
        let e = r.as_ref().unwrap_err();
        assert!(!e.retryable);
        assert!(
            e.message
                .starts_with("token endpoint answered HTTP 400: invalid_grant (Invalid JWT: ***"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("eyJ"), "assertion echoed: {}", e.message);
    }
    ep.fail_status.store(503, Ordering::SeqCst);
    let e = ts.token().await.unwrap_err();
    assert!(e.retryable, "{e:?}");
    ep.fail_status.store(0, Ordering::SeqCst);
    assert_eq!(ts.token().await.unwrap().expose(), "ya29.token-3");
    assert_eq!(ep.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_a_retryable_error() {
    let Some(keys) = keys() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/token");
    let account = ServiceAccount::from_json(key_json(keys, &url).to_string().as_bytes()).unwrap();
    let ts = TokenSource::new("vx", account, url, reqwest::Client::new());
    let e = ts.token().await.unwrap_err();
    assert_eq!(
        e,
        TokenError {
            message: "token endpoint could not be reached (connection failed)".into(),
            retryable: true
        }
    );
}

fn setup(
    kind: ProviderKind,
    fields: VertexFields,
    has_base_url: bool,
    has_api_key_env: bool,
    adc: Option<&str>,
) -> (VertexSetup, Vec<String>) {
    let mut errors = Vec::new();
    let adc = adc.map(str::to_string);
    let getenv = move |name: &str| {
        (name == "GOOGLE_APPLICATION_CREDENTIALS")
            .then(|| adc.clone())
            .flatten()
    };
    let s = vertex_provider(
        "providers[0]",
        kind,
        &fields,
        has_base_url,
        has_api_key_env,
        &getenv,
        &mut errors,
    );
    (s, errors)
}

#[test]
fn vertex_fields_are_validated_by_path() {
    let fields = |project: Option<&str>, location: Option<&str>| VertexFields {
        project: project.map(str::to_string),
        location: location.map(str::to_string),
        ..VertexFields::default()
    };
    // A static token: base URL from project and location.
    let (s, errors) = setup(
        ProviderKind::Vertex,
        fields(Some("p-1"), Some("global")),
        false,
        true,
        None,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        s.base_url.as_deref(),
        Some("https://aiplatform.googleapis.com/v1/projects/p-1/locations/global")
    );
    assert!(s.account.is_none());

    let (_, errors) = setup(
        ProviderKind::Vertex,
        fields(None, Some("us-central1")),
        false,
        true,
        None,
    );
    assert_eq!(
        errors,
        ["providers[0].project: required for kind `vertex` (or set `base_url`)"]
    );
    let (s, errors) = setup(ProviderKind::Vertex, fields(None, None), true, true, None);
    assert!(errors.is_empty() && s.base_url.is_none(), "{errors:?}");
    let (_, errors) = setup(
        ProviderKind::Vertex,
        fields(Some("p/../x"), Some("us")),
        false,
        true,
        None,
    );
    assert!(
        errors[0].starts_with("providers[0].project: `p/../x` is not"),
        "{errors:?}"
    );

    let (_, errors) = setup(
        ProviderKind::Vertex,
        fields(Some("p"), Some("l")),
        false,
        false,
        None,
    );
    assert!(
        errors[0].starts_with("providers[0].credentials_file: kind `vertex` needs credentials"),
        "{errors:?}"
    );
    let (_, errors) = setup(
        ProviderKind::Vertex,
        fields(Some("p"), Some("l")),
        false,
        false,
        Some("/nonexistent/key.json"),
    );
    assert!(
        errors[0].starts_with("providers[0].credentials_file (GOOGLE_APPLICATION_CREDENTIALS): cannot read `/nonexistent/key.json`"),
        "{errors:?}"
    );
    let both = VertexFields {
        credentials_file: Some("/k.json".into()),
        ..fields(Some("p"), Some("l"))
    };
    let (_, errors) = setup(ProviderKind::Vertex, both, false, true, None);
    assert!(errors[0].contains("not both"), "{errors:?}");
    let token_url_without_account = VertexFields {
        token_url: Some("http://x/token".into()),
        ..fields(Some("p"), Some("l"))
    };
    let (_, errors) = setup(ProviderKind::Vertex, token_url_without_account, false, true, None);
    assert!(errors[0].starts_with("providers[0].token_url:"), "{errors:?}");

    let (_, errors) = setup(ProviderKind::Gemini, fields(Some("p"), None), false, true, None);
    assert_eq!(errors, ["providers[0].project: only used by kind `vertex`"]);
}

#[test]
fn token_url_comes_from_config_then_key_file_then_default() {
    let Some(keys) = keys() else { return };
    let dir = temp_dir();
    let file = dir.join("key.json");
    std::fs::write(
        &file,
        key_json(keys, "https://oauth2.example.com/token").to_string(),
    )
    .unwrap();
    let fields = |token_url: Option<&str>| VertexFields {
        project: Some("p".into()),
        location: Some("us-central1".into()),
        credentials_file: Some(file.display().to_string()),
        token_url: token_url.map(str::to_string),
    };
    let (s, errors) = setup(ProviderKind::Vertex, fields(None), false, false, None);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(s.account.as_ref().unwrap().1, "https://oauth2.example.com/token");
    let (s, _) = setup(
        ProviderKind::Vertex,
        fields(Some("http://127.0.0.1:9/t")),
        false,
        false,
        None,
    );
    assert_eq!(s.account.as_ref().unwrap().1, "http://127.0.0.1:9/t");
    let (_, errors) = setup(ProviderKind::Vertex, fields(Some("ftp://x")), false, false, None);
    assert_eq!(
        errors,
        ["providers[0].token_url: `ftp://x` is not an http(s) URL"]
    );
    let mut no_uri = key_json(keys, "");
    no_uri.as_object_mut().unwrap().remove("token_uri");
    std::fs::write(&file, no_uri.to_string()).unwrap();
    let (s, _) = setup(ProviderKind::Vertex, fields(None), false, false, None);
    assert_eq!(s.account.as_ref().unwrap().1, DEFAULT_TOKEN_URL);
    // The key file from GOOGLE_APPLICATION_CREDENTIALS when the entry names none.
    let adc = VertexFields {
        credentials_file: None,
        ..fields(None)
    };
    let (s, errors) = setup(
        ProviderKind::Vertex,
        adc,
        false,
        false,
        Some(&file.display().to_string()),
    );
    assert!(errors.is_empty() && s.account.is_some(), "{errors:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn an_authorized_user_credential_exchanges_its_refresh_token() {
    let Some(keys) = keys() else { return };
    // The test token endpoint serves both grants.
    let (probe, _ep) = source(keys, 3600).await;
    let url = probe.token_url().to_string();
    let user = json!({"type": "authorized_user", "client_id": USER_CLIENT_ID, "client_secret": USER_SECRET,
        "refresh_token": USER_REFRESH, "quota_project_id": "p-1"});
    let creds = Credentials::from_json(user.to_string().as_bytes()).unwrap();
    assert!(matches!(creds, Credentials::AuthorizedUser(_)));
    let debug = format!("{creds:?}");
    assert!(
        !debug.contains(USER_SECRET) && !debug.contains(USER_REFRESH),
        "{debug}"
    );
    assert_eq!(creds.token_uri(), None);
    assert_eq!(creds.quota_project(), Some("p-1"));
    let ts = TokenSource::new("vx", creds, url, reqwest::Client::new());
    assert_eq!(ts.quota_project(), Some("p-1"));
    assert_eq!(ts.token().await.unwrap().expose(), "ya29.user-1");
    assert_eq!(ts.token().await.unwrap().expose(), "ya29.user-1");

    for missing in ["client_id", "client_secret", "refresh_token"] {
        let mut v = user.clone();
        v.as_object_mut().unwrap().remove(missing);
        let err = Credentials::from_json(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            err,
            format!("is not an authorized_user credential: `{missing}` is missing")
        );
    }
    let err = Credentials::from_json(br#"{"type": "external_account", "audience": "x"}"#).unwrap_err();
    assert!(err.contains("`external_account` credential; supported:"), "{err}");
}

#[tokio::test]
async fn a_refused_refresh_token_is_not_repeated_in_the_error() {
    let Some(keys) = keys() else { return };
    let (probe, ep) = source(keys, 3600).await;
    ep.fail_status.store(400, Ordering::SeqCst);
    let user = json!({"type": "authorized_user", "client_id": USER_CLIENT_ID, "client_secret": USER_SECRET,
        "refresh_token": USER_REFRESH});
    let creds = Credentials::from_json(user.to_string().as_bytes()).unwrap();
    let ts = TokenSource::new("vx", creds, probe.token_url().to_string(), reqwest::Client::new());
    let e = ts.token().await.unwrap_err();
    assert_eq!(
        e.message,
        "token endpoint answered HTTP 400: invalid_grant (Bad token *** for ***)"
    );
    assert!(!e.retryable);
}
