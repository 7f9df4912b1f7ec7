//! Configuration: TOML file -> raw serde structs (`deny_unknown_fields`) -> environment overrides
//! (`TOLLGATE__SECTION__KEY`, array entries by index: `TOLLGATE__PROVIDERS__0__BASE_URL`) -> validated
//! runtime [`Config`] with no half-filled values. Every problem is reported by its field path, and the
//! server refuses to start on any of them.

use std::{collections::HashMap, fmt, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use serde::Deserialize;
use tollgate_adapters::{Adapter, ProviderKind};

use crate::spool::Fsync;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    usage: RawUsage,
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    quota: RawQuota,
    #[serde(default)]
    pricing: Vec<RawPrice>,
    #[serde(default)]
    routing: RoutingConfig,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    telemetry: RawTelemetry,
}

/// `[telemetry]`: OTLP/HTTP trace export. Unset fields fall back to the standard
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<String>,
    service_name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    jwt: Option<crate::jwt::JwtConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    admin_key_env: Option<String>,
    max_body_bytes: u64,
    /// Seconds in-flight requests get to finish after SIGTERM.
    shutdown_grace_secs: u64,
    /// How often keys are re-read from the store (picks up other processes' changes).
    key_refresh_ms: u64,
    /// Serve `/admin/*` only on this address (e.g. a private interface); unset = on `listen`.
    admin_listen: Option<String>,
    /// Browser origins allowed by CORS on the `/v1` API (`["*"]` for any); empty = CORS off.
    cors_origins: Vec<String>,
    /// Client headers passed upstream (lower case). Credentials, cookies and hop-by-hop headers
    /// are refused here; nothing else of the client's goes upstream.
    forward_headers: Vec<String>,
    tls: Option<RawTls>,
}

/// `[server.tls]`: serve the public listener over TLS (rustls), reloading the files when they change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    #[serde(default = "default_tls_reload")]
    reload_secs: u64,
}

fn default_tls_reload() -> u64 {
    10
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub reload: Duration,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:4000".into(),
            admin_key_env: Some("TOLLGATE_ADMIN_KEY".into()),
            max_body_bytes: 32 * 1024 * 1024,
            shutdown_grace_secs: 30,
            key_refresh_ms: 250,
            admin_listen: None,
            cors_origins: Vec::new(),
            forward_headers: Vec::new(),
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    kind: String,
    path: String,
    url: Option<String>,
    prefix: String,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            kind: "sqlite".into(),
            path: "tollgate.db".into(),
            url: None,
            prefix: "tollgate:".into(),
        }
    }
}

/// What a limit does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Fall back to this replica's local limiter (counted in a metric).
    FailOpen,
    /// Answer 503.
    FailClosed,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub struct FailModes {
    pub requests: FailMode,
    pub tokens: FailMode,
    pub parallel: FailMode,
    pub budget: FailMode,
}

impl Default for FailModes {
    fn default() -> Self {
        FailModes {
            requests: FailMode::FailOpen,
            tokens: FailMode::FailOpen,
            parallel: FailMode::FailOpen,
            budget: FailMode::FailClosed,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawQuota {
    /// Output tokens assumed for estimates when a request sets no `max_tokens`.
    default_output_tokens: u64,
    /// Parallel-request leases and budget reservations expire after this unless renewed.
    lease_ttl_ms: u64,
    on_redis_error: FailModes,
}

impl Default for RawQuota {
    fn default() -> Self {
        RawQuota {
            default_output_tokens: 1024,
            lease_ttl_ms: 30_000,
            on_redis_error: FailModes::default(),
        }
    }
}

/// A price override: USD per million tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    model: String,
    #[serde(default)]
    provider: Option<ProviderKind>,
    input: tollgate_policy::Usd,
    output: tollgate_policy::Usd,
    #[serde(default)]
    cached_input: Option<tollgate_policy::Usd>,
    #[serde(default)]
    cache_write_input: Option<tollgate_policy::Usd>,
    #[serde(default)]
    reasoning: Option<tollgate_policy::Usd>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUsage {
    sink: String,
    path: String,
    queue_capacity: usize,
    url: Option<String>,
    database: String,
    user: Option<String>,
    password_env: Option<String>,
    spool_dir: String,
    fsync: Fsync,
    batch_rows: usize,
    /// Default per sink: see [`default_flush_ms`].
    flush_ms: Option<u64>,
    /// How often expired opt-in bodies are deleted (and idle quota state forgotten).
    body_sweep_secs: u64,
    /// Group commit: how long the spool writer gathers events before writing a segment.
    linger_ms: u64,
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage {
            sink: "sqlite".into(),
            path: "tollgate-usage.db".into(),
            queue_capacity: 65_536,
            url: None,
            database: "tollgate".into(),
            user: None,
            password_env: None,
            spool_dir: "tollgate-spool".into(),
            fsync: Fsync::Always,
            batch_rows: 10_000,
            flush_ms: None,
            body_sweep_secs: 60,
            linger_ms: 10,
        }
    }
}

/// How long the shipper gathers events before a write, when the config does not say. ClickHouse wants
/// few, large inserts (each makes a part that the server merges later; its docs advise about one insert
/// a second): with a 200 ms flush a busy gateway's inserts and merges cost ClickHouse enough CPU to
/// add milliseconds to a co-located gateway's p99 (bench/RESULTS.md). SQLite takes small writes cheaply.
fn default_flush_ms(sink: &UsageSinkConfig) -> u64 {
    match sink {
        // ClickHouse wants few, large inserts: each one makes a part it parses, writes and merges later.
        // On a gateway sharing its cores with the server, 5 s instead of 1 s cut the added p99 at
        // 1,000 rps from about 3.4 to 0.7 ms (bench/RESULTS.md, 2026-11-26); events still count as
        // recorded once spooled, they only reach the analytics store up to 5 s later.
        UsageSinkConfig::ClickHouse { .. } => 5000,
        UsageSinkConfig::Sqlite { .. } => 200,
    }
}

/// Where usage events are stored after the spool.
#[derive(Debug, Clone)]
pub enum UsageSinkConfig {
    Sqlite {
        path: String,
    },
    ClickHouse {
        url: String,
        database: String,
        user: Option<String>,
        password: Option<Secret>,
    },
}

#[derive(Debug, Clone)]
pub struct UsageConfig {
    pub sink: UsageSinkConfig,
    pub queue_capacity: usize,
    pub spool_dir: std::path::PathBuf,
    pub fsync: Fsync,
    pub batch_rows: usize,
    pub flush: Duration,
    pub body_sweep: Duration,
    pub linger: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    kind: ProviderKind,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_version: Option<String>,
    /// Time allowed for the whole answer, streams included.
    timeout_ms: Option<u64>,
    /// Time allowed until the response headers arrive (defaults to `timeout_ms`).
    first_byte_timeout_ms: Option<u64>,
    /// Longest silence allowed between two chunks of a stream.
    stream_idle_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    /// The largest non-streamed answer read (default 128 MiB); a larger one is a 502.
    max_answer_bytes: Option<u64>,
    /// Vertex AI (`kind = "vertex"`): Google Cloud project and location (a region or `global`).
    project: Option<String>,
    location: Option<String>,
    /// Vertex AI: a service-account key or `authorized_user` credentials file (default:
    /// `GOOGLE_APPLICATION_CREDENTIALS`).
    credentials_file: Option<String>,
    /// Vertex AI: the OAuth token endpoint (default: the key file's `token_uri`).
    token_url: Option<String>,
    /// AWS Bedrock (`kind = "bedrock"`): the region (default: `AWS_REGION`, then `AWS_DEFAULT_REGION`).
    region: Option<String>,
    /// AWS Bedrock: variables holding the credentials (default: the standard `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`).
    aws_access_key_id_env: Option<String>,
    aws_secret_access_key_env: Option<String>,
    aws_session_token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    /// Other names clients may send for this model.
    #[serde(default)]
    aliases: Vec<String>,
    targets: Vec<RawTarget>,
    /// Models tried, in order, after every target of this one failed.
    #[serde(default)]
    fallbacks: Vec<String>,
    #[serde(default)]
    strategy: Option<Strategy>,
    /// Extra attempts on the same target for retryable errors (with backoff).
    #[serde(default)]
    retries: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    provider: String,
    model: String,
    #[serde(default)]
    weight: Option<u32>,
}

/// How a model orders its targets for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Config order: the first healthy target serves, the others are fallbacks.
    Ordered,
    /// Random by weight; the rest follow as fallbacks.
    Weighted,
    /// Power of two choices over each target's latency (EWMA).
    LeastLatency,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Upstream attempts per request, across retries, targets and fallbacks.
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Consecutive failures that open a target's circuit.
    pub breaker_failures: u32,
    /// Or this failure ratio over the last `breaker_window` calls (at least half the window seen).
    pub breaker_error_ratio: f64,
    pub breaker_window: u32,
    /// How long an open circuit stays open before one probe may try it (half-open).
    pub breaker_cooldown_ms: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            max_attempts: 6,
            retry_base_ms: 100,
            retry_max_ms: 2000,
            breaker_failures: 5,
            breaker_error_ratio: 0.5,
            breaker_window: 20,
            breaker_cooldown_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    Sqlite { path: String },
    Redis { url: String, prefix: String },
}

#[derive(Debug, Clone)]
pub struct QuotaConfig {
    pub default_output_tokens: u64,
    pub lease_ttl: Duration,
    pub on_redis_error: FailModes,
}

/// The validated configuration the server runs on.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_key: Option<Secret>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub key_refresh: Duration,
    pub admin_listen: Option<SocketAddr>,
    pub cors_origins: Vec<String>,
    pub forward_headers: Vec<http::HeaderName>,
    pub tls: Option<TlsConfig>,
    pub store: StoreConfig,
    pub quota: QuotaConfig,
    pub prices: tollgate_policy::pricing::PriceTable,
    pub routing: RoutingConfig,
    /// OTLP/HTTP base URL for traces (`None`: tracing off) and the service name.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// JWT authentication and its HMAC secret, when configured.
    pub jwt: Option<(crate::jwt::JwtConfig, Option<Secret>)>,
    pub usage: UsageConfig,
    pub providers: Vec<Arc<Provider>>,
    /// Client-facing model name -> targets, in config order.
    pub models: HashMap<String, Arc<Model>>,
    /// Model names in config order, for `GET /v1/models`.
    pub model_order: Vec<String>,
}

/// Far above any real answer (2,048 embeddings of 3,072 floats as JSON are about 70 MB); a provider
/// sending more is broken or hostile, and the gateway must not buffer it whole.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 128 * 1024 * 1024;

pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// `None` when the provider needs no key, or when its `api_key_env` is unset (see `available`).
    pub api_key: Option<Secret>,
    /// False when `api_key_env` names an unset variable: routing skips the provider.
    pub available: bool,
    pub api_version: Option<String>,
    pub timeout: Duration,
    pub first_byte_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// The largest non-streamed answer read; streams are bounded per event instead.
    pub max_answer_bytes: usize,
    pub adapter: Option<Box<dyn Adapter>>,
    /// This provider's HTTP client (its own pool and connect timeout; Nagle off; no redirects).
    pub client: reqwest::Client,
    /// The upstream URLs adapters built for this provider, parsed once.
    pub urls: UrlCache,
    /// `name` as the `x-tollgate-provider` answer header (`None` if it is no valid header value).
    pub name_header: Option<http::HeaderValue>,
    /// Vertex AI with a service account: mints the access token sent as the provider key.
    pub google_auth: Option<Arc<crate::gcp_auth::TokenSource>>,
}

/// Upstream URLs parsed once per provider: adapters build each request's URL as text, and parsing it
/// (with IDNA host processing) cost more than the rest of building the request. Bounded: a provider
/// whose URLs vary without limit (e.g. they name the model) parses the ones past [`UrlCache::MAX`]
/// every time, as before.
#[derive(Default)]
pub struct UrlCache(std::sync::RwLock<HashMap<String, reqwest::Url>>);

impl UrlCache {
    const MAX: usize = 256;

    /// `url` parsed, or `None` when it does not parse (the caller lets reqwest report that).
    pub fn parse(&self, url: &str) -> Option<reqwest::Url> {
        if let Some(hit) = self.0.read().ok().and_then(|m| m.get(url).cloned()) {
            return Some(hit);
        }
        let parsed = reqwest::Url::parse(url).ok()?;
        if let Ok(mut m) = self.0.write() {
            if m.len() < Self::MAX {
                m.insert(url.to_string(), parsed.clone());
            }
        }
        Some(parsed)
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("available", &self.available)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub targets: Vec<ModelTarget>,
    pub fallbacks: Vec<String>,
    pub strategy: Strategy,
    pub retries: u32,
}

#[derive(Debug)]
pub struct ModelTarget {
    pub provider: Arc<Provider>,
    pub model: String,
    pub weight: u32,
    /// `provider/model`: the circuit breaker's and metrics' name for this target.
    pub id: String,
    /// This target's price from the config's table, looked up once (`None`: unknown model).
    pub price: Option<tollgate_policy::pricing::Price>,
}

/// Every problem found in a config, each as `field.path: message`.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(e)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads, overrides from the process environment, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::from_toml(&text, &env, &|name| std::env::var(name).ok())
    }

    /// Parses `text`, applies `TOLLGATE__*` overrides from `env`, and resolves secrets with `getenv`.
    pub fn from_toml(
        text: &str,
        env: &[(String, String)],
        getenv: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigErrors(vec![toml_error(&e)]))?;
        apply_env_overrides(&mut value, env)?;
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ConfigErrors(vec![format!("{path}: {}", e.into_inner())])
        })?;
        validate(raw, getenv)
    }
}

fn toml_error(e: &toml::de::Error) -> String {
    format!("config: {}", e.message())
}

const ENV_PREFIX: &str = "TOLLGATE__";

fn apply_env_overrides(root: &mut toml::Value, env: &[(String, String)]) -> Result<(), ConfigErrors> {
    let mut overrides: Vec<&(String, String)> =
        env.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    overrides.sort();
    let mut errors = Vec::new();
    for (name, raw) in overrides {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        // A value that parses as TOML (number, bool, array) is taken as such, anything else as a string.
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        if let Err(e) = set_path(root, &path, value) {
            errors.push(format!("{name}: {e}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

fn set_path(node: &mut toml::Value, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    let child = match node {
        toml::Value::Table(t) => t
            .entry(head.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new())),
        toml::Value::Array(a) => {
            let i: usize = head
                .parse()
                .map_err(|_| format!("`{head}` is not an array index"))?;
            a.get_mut(i).ok_or_else(|| format!("no entry {i} to override"))?
        }
        _ => return Err(format!("cannot descend into `{head}`")),
    };
    set_path(child, rest, value)
}

fn validate(raw: RawConfig, getenv: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let listen = raw
        .server
        .listen
        .parse::<SocketAddr>()
        .map_err(|_| {
            errors.push(format!(
                "server.listen: `{}` is not an address like 127.0.0.1:4000",
                raw.server.listen
            ))
        })
        .ok();
    if raw.server.max_body_bytes == 0 {
        errors.push("server.max_body_bytes: must be greater than 0".into());
    }
    let store = match raw.store.kind.as_str() {
        "sqlite" => {
            if raw.store.path.is_empty() {
                errors.push("store.path: must not be empty".into());
            }
            StoreConfig::Sqlite {
                path: raw.store.path.clone(),
            }
        }
        "redis" => {
            let url = raw.store.url.clone().unwrap_or_default();
            if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
                errors.push(format!(
                    "store.url: `{url}` is not a redis:// URL (required for kind redis)"
                ));
            }
            StoreConfig::Redis {
                url,
                prefix: raw.store.prefix.clone(),
            }
        }
        other => {
            errors.push(format!(
                "store.kind: `{other}` is not supported (supported: sqlite, redis)"
            ));
            StoreConfig::Sqlite { path: String::new() }
        }
    };
    if raw.quota.lease_ttl_ms < 1000 {
        errors.push("quota.lease_ttl_ms: must be at least 1000".into());
    }
    let mut prices = tollgate_policy::pricing::PriceTable::builtin();
    for p in &raw.pricing {
        let price = tollgate_policy::pricing::Price {
            input: p.input,
            output: p.output,
            cached_input: p.cached_input,
            cache_write_input: p.cache_write_input,
            reasoning: p.reasoning,
        };
        match p.provider {
            Some(kind) => prices.insert(&format!("{}/{}", kind.as_str(), p.model), price),
            None => prices.insert(&p.model, price),
        }
    }
    let usage_sink = match raw.usage.sink.as_str() {
        "sqlite" => UsageSinkConfig::Sqlite {
            path: raw.usage.path.clone(),
        },
        "clickhouse" => {
            let url = raw.usage.url.clone().unwrap_or_default();
            if reqwest::Url::parse(&url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                errors.push(format!(
                    "usage.url: `{url}` is not an http(s) URL (required for the clickhouse sink)"
                ));
            }
            let db_ok = !raw.usage.database.is_empty()
                && raw
                    .usage
                    .database
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !db_ok {
                errors.push("usage.database: must be a plain identifier ([A-Za-z0-9_])".into());
            }
            UsageSinkConfig::ClickHouse {
                url,
                database: raw.usage.database.clone(),
                user: raw.usage.user.clone(),
                password: raw
                    .usage
                    .password_env
                    .as_deref()
                    .and_then(getenv)
                    .map(Secret::new),
            }
        }
        other => {
            errors.push(format!(
                "usage.sink: `{other}` is not supported (supported: sqlite, clickhouse)"
            ));
            UsageSinkConfig::Sqlite { path: String::new() }
        }
    };
    let flush = Duration::from_millis(
        raw.usage
            .flush_ms
            .unwrap_or_else(|| default_flush_ms(&usage_sink))
            .max(10),
    );
    if raw.usage.batch_rows == 0 || raw.usage.spool_dir.is_empty() {
        errors.push("usage.batch_rows/spool_dir: must be set (batch_rows > 0)".into());
    }
    if raw.usage.queue_capacity == 0 {
        errors.push("usage.queue_capacity: must be greater than 0".into());
    }
    let admin_listen = raw.server.admin_listen.as_deref().and_then(|a| {
        a.parse::<SocketAddr>()
            .map_err(|_| {
                errors.push(format!(
                    "server.admin_listen: `{a}` is not an address like 127.0.0.1:4001"
                ))
            })
            .ok()
    });
    const NEVER_FORWARDED: &[&str] = &[
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "x-request-id",
        "traceparent",
    ];
    let mut forward_headers = Vec::new();
    for (i, h) in raw.server.forward_headers.iter().enumerate() {
        let name = h.to_ascii_lowercase();
        if NEVER_FORWARDED.contains(&name.as_str()) {
            errors.push(format!("server.forward_headers[{i}]: `{h}` is never forwarded (credentials, cookies, hop-by-hop or set by Tollgate)"));
            continue;
        }
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => forward_headers.push(n),
            Err(_) => errors.push(format!("server.forward_headers[{i}]: `{h}` is not a header name")),
        }
    }
    for (i, o) in raw.server.cors_origins.iter().enumerate() {
        if o != "*" && http::HeaderValue::from_str(o).is_err() {
            errors.push(format!("server.cors_origins[{i}]: `{o}` is not a valid origin"));
        }
    }
    let tls = raw.server.tls.as_ref().map(|t| TlsConfig {
        cert: t.cert_file.clone().into(),
        key: t.key_file.clone().into(),
        reload: Duration::from_secs(t.reload_secs.max(1)),
    });
    if let Some(t) = &tls {
        if let Err(e) = crate::tls::load(&t.cert, &t.key) {
            errors.push(format!("server.tls: {e}"));
        }
    }
    let admin_key = raw
        .server
        .admin_key_env
        .as_deref()
        .and_then(getenv)
        .filter(|k| !k.is_empty())
        .map(Secret::new);

    let mut providers: Vec<Arc<Provider>> = Vec::new();
    for (i, p) in raw.providers.into_iter().enumerate() {
        let at = format!("providers[{i}]");
        if p.name.is_empty() {
            errors.push(format!("{at}.name: must not be empty"));
        }
        if providers.iter().any(|q| q.name == p.name) {
            errors.push(format!("{at}.name: `{}` is defined twice", p.name));
        }
        let vertex = crate::gcp_auth::vertex_provider(
            &at,
            p.kind,
            &crate::gcp_auth::VertexFields {
                project: p.project,
                location: p.location,
                credentials_file: p.credentials_file,
                token_url: p.token_url,
            },
            p.base_url.is_some(),
            p.api_key_env.is_some(),
            getenv,
            &mut errors,
        );
        let bedrock = bedrock_provider(
            &at,
            p.kind,
            BedrockFields {
                region: p.region,
                access_key_id_env: p.aws_access_key_id_env,
                secret_access_key_env: p.aws_secret_access_key_env,
                session_token_env: p.aws_session_token_env,
                api_key: p.api_key_env.is_some(),
            },
            getenv,
            &mut errors,
        );
        let base_url = match (
            p.base_url.or(vertex.base_url).or(bedrock.base_url),
            p.kind.default_base_url(),
        ) {
            (Some(url), _) => url,
            (None, Some(default)) => default.to_string(),
            (None, None) if !p.kind.is_network() => String::new(),
            // `vertex_provider` reported the missing project or location.
            (None, None) if p.kind == ProviderKind::Vertex => String::new(),
            // `bedrock_provider` reported the missing region.
            (None, None) if p.kind == ProviderKind::Bedrock => String::new(),
            (None, None) => {
                errors.push(format!("{at}.base_url: required for kind `{}`", p.kind.as_str()));
                String::new()
            }
        };
        if p.kind.is_network()
            && !base_url.is_empty()
            && reqwest::Url::parse(&base_url).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            errors.push(format!("{at}.base_url: `{base_url}` is not an http(s) URL"));
        }
        let (api_key, available) = match &p.api_key_env {
            Some(var) => match getenv(var).filter(|v| !v.is_empty()) {
                Some(v) => (Some(Secret::new(v)), true),
                None => (None, false),
            },
            None => (None, true),
        };
        for (field, v) in [
            ("timeout_ms", p.timeout_ms),
            ("first_byte_timeout_ms", p.first_byte_timeout_ms),
            ("stream_idle_timeout_ms", p.stream_idle_timeout_ms),
            ("connect_timeout_ms", p.connect_timeout_ms),
            ("max_answer_bytes", p.max_answer_bytes),
        ] {
            if v == Some(0) {
                errors.push(format!("{at}.{field}: must be greater than 0"));
            }
        }
        let connect_timeout = Duration::from_millis(p.connect_timeout_ms.unwrap_or(10_000));
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            // A provider API never redirects; following one would resend the credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| {
                errors.push(format!("{at}: cannot build an HTTP client: {e}"));
                reqwest::Client::new()
            });
        let google_auth = vertex.account.map(|(account, token_url)| {
            Arc::new(crate::gcp_auth::TokenSource::new(
                &p.name,
                account,
                token_url,
                client.clone(),
            ))
        });
        providers.push(Arc::new(Provider {
            google_auth,
            client,
            urls: UrlCache::default(),
            name_header: http::HeaderValue::from_str(&p.name).ok(),
            adapter: bedrock.adapter.or_else(|| p.kind.adapter()),
            name: p.name,
            kind: p.kind,
            base_url,
            api_key,
            available: available && bedrock.available,
            api_version: p.api_version,
            timeout: Duration::from_millis(p.timeout_ms.unwrap_or(600_000)),
            first_byte_timeout: Duration::from_millis(
                p.first_byte_timeout_ms.or(p.timeout_ms).unwrap_or(600_000),
            ),
            stream_idle_timeout: Duration::from_millis(p.stream_idle_timeout_ms.unwrap_or(120_000)),
            connect_timeout,
            max_answer_bytes: p.max_answer_bytes.map_or(DEFAULT_MAX_ANSWER_BYTES, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
        }));
    }

    let mut models: HashMap<String, Arc<Model>> = HashMap::new();
    let mut model_order = Vec::new();
    let all_names: Vec<String> = raw.models.iter().map(|m| m.name.clone()).collect();
    for (i, m) in raw.models.into_iter().enumerate() {
        let at = format!("models[{i}]");
        if m.name.is_empty() {
            errors.push(format!("{at}.name: must not be empty"));
        }
        if models.contains_key(&m.name) {
            errors.push(format!("{at}.name: `{}` is defined twice", m.name));
        }
        if m.targets.is_empty() {
            errors.push(format!("{at}.targets: needs at least one target"));
        }
        let mut targets = Vec::new();
        for (j, t) in m.targets.into_iter().enumerate() {
            if t.weight == Some(0) {
                errors.push(format!("{at}.targets[{j}].weight: must be at least 1"));
            }
            match providers.iter().find(|p| p.name == t.provider) {
                Some(p) => targets.push(ModelTarget {
                    id: format!("{}/{}", p.name, t.model),
                    price: tollgate_policy::pricing::Pricing::price(&prices, p.kind.as_str(), &t.model),
                    provider: Arc::clone(p),
                    model: t.model,
                    weight: t.weight.unwrap_or(1),
                }),
                None => errors.push(format!(
                    "{at}.targets[{j}].provider: no provider named `{}`",
                    t.provider
                )),
            }
        }
        for (j, f) in m.fallbacks.iter().enumerate() {
            if f == &m.name || !all_names.contains(f) {
                errors.push(format!(
                    "{at}.fallbacks[{j}]: `{f}` is not another configured model"
                ));
            }
        }
        let weighted = targets.iter().any(|t| t.weight != 1);
        let model = Arc::new(Model {
            name: m.name.clone(),
            targets,
            fallbacks: m.fallbacks,
            strategy: m.strategy.unwrap_or(if weighted {
                Strategy::Weighted
            } else {
                Strategy::Ordered
            }),
            retries: m.retries,
        });
        for (j, alias) in m.aliases.iter().enumerate() {
            if all_names.contains(alias) || models.contains_key(alias) {
                errors.push(format!(
                    "{at}.aliases[{j}]: `{alias}` is already a model or alias"
                ));
            }
            models.insert(alias.clone(), Arc::clone(&model));
        }
        model_order.push(m.name.clone());
        models.insert(m.name, model);
    }
    let jwt = raw.auth.jwt.map(|j| {
        errors.extend(j.problems(getenv));
        let secret = j.hs_secret_env.as_deref().and_then(getenv).map(Secret::new);
        (j, secret)
    });
    let otlp_endpoint = raw.telemetry.otlp_endpoint.clone().or_else(|| {
        // The traces-specific variable is the full URL of the traces path; the general one a base.
        getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .map(|u| u.trim_end_matches("/v1/traces").to_string())
            .or_else(|| getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
    });
    if let Some(u) = &otlp_endpoint {
        if reqwest::Url::parse(u).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            errors.push(format!("telemetry.otlp_endpoint: `{u}` is not an http(s) URL"));
        }
    }
    if raw.routing.max_attempts == 0 {
        errors.push("routing.max_attempts: must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&raw.routing.breaker_error_ratio) || raw.routing.breaker_window == 0 {
        errors.push("routing.breaker_error_ratio: must be within 0..=1 with breaker_window >= 1".into());
    }

    match (errors.is_empty(), listen) {
        (true, Some(listen)) => Ok(Config {
            listen,
            admin_key,
            max_body_bytes: usize::try_from(raw.server.max_body_bytes).unwrap_or(usize::MAX),
            shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs),
            key_refresh: Duration::from_millis(raw.server.key_refresh_ms.max(50)),
            admin_listen,
            cors_origins: raw.server.cors_origins,
            forward_headers,
            tls,
            store,
            quota: QuotaConfig {
                default_output_tokens: raw.quota.default_output_tokens,
                lease_ttl: Duration::from_millis(raw.quota.lease_ttl_ms),
                on_redis_error: raw.quota.on_redis_error,
            },
            prices,
            routing: raw.routing,
            otlp_endpoint,
            service_name: raw
                .telemetry
                .service_name
                .or_else(|| getenv("OTEL_SERVICE_NAME"))
                .unwrap_or_else(|| "tollgate".into()),
            jwt,
            usage: UsageConfig {
                sink: usage_sink,
                queue_capacity: raw.usage.queue_capacity,
                spool_dir: raw.usage.spool_dir.into(),
                fsync: raw.usage.fsync,
                batch_rows: raw.usage.batch_rows,
                flush,
                body_sweep: Duration::from_secs(raw.usage.body_sweep_secs.max(1)),
                linger: Duration::from_millis(raw.usage.linger_ms.min(1000)),
            },
            providers,
            models,
            model_order,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The `[[providers]]` fields only `kind = "bedrock"` takes.
struct BedrockFields {
    region: Option<String>,
    access_key_id_env: Option<String>,
    secret_access_key_env: Option<String>,
    session_token_env: Option<String>,
    /// `api_key_env` is set: an Amazon Bedrock API key (bearer token) instead of SigV4.
    api_key: bool,
}

/// What a Bedrock provider entry resolves to.
#[derive(Default)]
struct BedrockProvider {
    /// `https://bedrock-runtime.{region}.amazonaws.com`, unless `base_url` overrides it.
    base_url: Option<String>,
    /// The signing adapter, when the credentials are set.
    adapter: Option<Box<dyn Adapter>>,
    /// False when the credentials' variables are unset: routing skips the provider, as for an unset
    /// `api_key_env`.
    available: bool,
}

/// Resolves a Bedrock entry's region and credentials (from the environment, never from the file),
/// reporting errors by field path. Other kinds must not set the Bedrock fields.
fn bedrock_provider(
    at: &str,
    kind: ProviderKind,
    f: BedrockFields,
    getenv: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> BedrockProvider {
    if kind != ProviderKind::Bedrock {
        for (field, set) in [
            ("region", f.region.is_some()),
            ("aws_access_key_id_env", f.access_key_id_env.is_some()),
            ("aws_secret_access_key_env", f.secret_access_key_env.is_some()),
            ("aws_session_token_env", f.session_token_env.is_some()),
        ] {
            if set {
                errors.push(format!("{at}.{field}: only for kind `bedrock`"));
            }
        }
        return BedrockProvider {
            available: true,
            ..BedrockProvider::default()
        };
    }
    let var = |v: Option<&str>, default: &str| getenv(v.unwrap_or(default)).filter(|s| !s.is_empty());
    let region = match f.region {
        Some(r) => Some(r),
        None => var(None, "AWS_REGION").or_else(|| var(None, "AWS_DEFAULT_REGION")),
    };
    let region = match region {
        Some(r)
            if !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            r
        }
        Some(r) => {
            errors.push(format!(
                "{at}.region: `{r}` is not an AWS region name (like `us-east-1`)"
            ));
            return BedrockProvider::default();
        }
        None => {
            errors.push(format!(
                "{at}.region: required for kind `bedrock` (or set AWS_REGION / AWS_DEFAULT_REGION)"
            ));
            return BedrockProvider::default();
        }
    };
    let base_url = Some(tollgate_adapters::bedrock::default_base_url(&region));
    if f.api_key {
        for (field, set) in [
            ("aws_access_key_id_env", f.access_key_id_env.is_some()),
            ("aws_secret_access_key_env", f.secret_access_key_env.is_some()),
            ("aws_session_token_env", f.session_token_env.is_some()),
        ] {
            if set {
                errors.push(format!(
                    "{at}.{field}: not with `api_key_env` (a Bedrock API key replaces SigV4 credentials)"
                ));
            }
        }
        // The key is read, and availability decided, like any provider's `api_key_env`.
        return BedrockProvider {
            base_url,
            adapter: None,
            available: true,
        };
    }
    let id = var(f.access_key_id_env.as_deref(), "AWS_ACCESS_KEY_ID");
    let secret = var(f.secret_access_key_env.as_deref(), "AWS_SECRET_ACCESS_KEY");
    let token = var(f.session_token_env.as_deref(), "AWS_SESSION_TOKEN");
    let (Some(access_key_id), Some(secret_access_key)) = (id, secret) else {
        return BedrockProvider {
            base_url,
            adapter: None,
            available: false,
        };
    };
    let credentials = tollgate_adapters::bedrock::AwsCredentials {
        access_key_id,
        secret_access_key,
        session_token: token,
    };
    BedrockProvider {
        base_url,
        adapter: Some(Box::new(tollgate_adapters::bedrock::BedrockAdapter::new(
            credentials,
            region,
        ))),
        available: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[server]
listen = "127.0.0.1:4000"
admin_key_env = "ADMIN"
[store]
kind = "sqlite"
path = ":memory:"
[[providers]]
name = "local"
kind = "openai_compat"
base_url = "http://127.0.0.1:9000/v1"
api_key_env = "LOCAL_KEY"
[[providers]]
name = "oai"
kind = "openai"
[[models]]
name = "gpt-4o-mini"
targets = [{ provider = "local", model = "upstream" }, { provider = "oai", model = "gpt-4o-mini" }]
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "ADMIN" => Some("admin-secret".into()),
            "LOCAL_KEY" => Some("sk-local".into()),
            _ => None,
        }
    }

    #[test]
    fn loads_sample_with_defaults() {
        let c = Config::from_toml(SAMPLE, &[], &env).unwrap();
        assert_eq!(c.listen.port(), 4000);
        assert_eq!(c.admin_key.as_ref().unwrap().expose(), "admin-secret");
        assert_eq!(c.providers[1].base_url, "https://api.openai.com/v1");
        assert!(c.providers[0].available);
        let m = &c.models["gpt-4o-mini"];
        assert_eq!(m.targets[0].model, "upstream");
        assert_eq!(m.targets[1].provider.name, "oai");
        assert!(!format!("{c:?}").contains("sk-local"));
    }

    #[test]
    fn the_shipper_flushes_clickhouse_rarely_and_sqlite_often_unless_told() {
        let flush = |usage: &str| {
            let toml = format!("{SAMPLE}[usage]\n{usage}");
            Config::from_toml(&toml, &[], &env).unwrap().usage.flush
        };
        assert_eq!(flush("sink = \"sqlite\"\n"), Duration::from_millis(200));
        let ch = "sink = \"clickhouse\"\nurl = \"http://127.0.0.1:8123\"\n";
        assert_eq!(flush(ch), Duration::from_millis(5000));
        assert_eq!(flush(&format!("{ch}flush_ms = 50\n")), Duration::from_millis(50));
    }

    #[test]
    fn env_overrides_win() {
        let overrides = vec![
            ("TOLLGATE__SERVER__LISTEN".to_string(), "0.0.0.0:5000".to_string()),
            (
                "TOLLGATE__PROVIDERS__0__BASE_URL".to_string(),
                "http://other:1/v1".to_string(),
            ),
            ("TOLLGATE__SERVER__MAX_BODY_BYTES".to_string(), "1024".to_string()),
        ];
        let c = Config::from_toml(SAMPLE, &overrides, &env).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:5000");
        assert_eq!(c.providers[0].base_url, "http://other:1/v1");
        assert_eq!(c.max_body_bytes, 1024);
    }

    #[test]
    fn reports_every_error_by_path() {
        let bad = r#"
[server]
listen = "nowhere"
[[providers]]
name = "az"
kind = "azure"
[[models]]
name = "m"
targets = [{ provider = "missing", model = "x" }]
"#;
        let errs = Config::from_toml(bad, &[], &env).unwrap_err().0;
        assert!(errs.iter().any(|e| e.starts_with("server.listen:")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("providers[0].base_url:")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("models[0].targets[0].provider:")),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_fields_and_kinds_are_named() {
        let e = Config::from_toml("[server]\nlisten_on = 1\n", &[], &env).unwrap_err();
        assert!(e.0[0].contains("listen_on"), "{e}");
        let e = Config::from_toml("[[providers]]\nname='x'\nkind='nope'\n", &[], &env).unwrap_err();
        assert!(e.0[0].starts_with("providers[0].kind"), "{e}");
    }

    #[test]
    fn provider_without_its_key_is_unavailable() {
        let c = Config::from_toml(SAMPLE, &[], &|_| None).unwrap();
        assert!(!c.providers[0].available);
        assert!(c.admin_key.is_none());
    }

    #[test]
    fn bedrock_takes_region_and_credentials_from_the_environment() {
        let toml = "[[providers]]\nname = \"aws\"\nkind = \"bedrock\"\n";
        let aws = |name: &str| match name {
            "AWS_DEFAULT_REGION" => Some("eu-west-3".to_string()),
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("bedrock-secret-key".to_string()),
            "MY_TOKEN" => Some("bedrock-session-token".to_string()),
            _ => None,
        };
        let c = Config::from_toml(toml, &[], &aws).unwrap();
        let p = &c.providers[0];
        assert_eq!(p.base_url, "https://bedrock-runtime.eu-west-3.amazonaws.com");
        assert!(p.available);
        let adapter = p.adapter.as_deref().unwrap();
        assert_eq!(adapter.secrets(), vec!["bedrock-secret-key", "AKIDEXAMPLE"]);
        assert!(!format!("{c:?}").contains("bedrock-secret-key"));

        let named = format!("{toml}region = \"us-west-2\"\naws_session_token_env = \"MY_TOKEN\"\n");
        let c = Config::from_toml(&named, &[], &aws).unwrap();
        assert_eq!(
            c.providers[0].base_url,
            "https://bedrock-runtime.us-west-2.amazonaws.com"
        );
        let secrets = c.providers[0].adapter.as_deref().unwrap().secrets();
        assert_eq!(
            secrets,
            vec!["bedrock-secret-key", "AKIDEXAMPLE", "bedrock-session-token"]
        );

        // Credentials unset: skipped by routing, like an unset api_key_env.
        let region_only = |name: &str| (name == "AWS_REGION").then(|| "us-east-1".to_string());
        let c = Config::from_toml(toml, &[], &region_only).unwrap();
        assert!(!c.providers[0].available);

        let errs = Config::from_toml(toml, &[], &|_| None).unwrap_err().0;
        assert!(
            errs.iter().any(|e| e.starts_with("providers[0].region:")),
            "{errs:?}"
        );
        let bad = format!("{toml}region = \"US East\"\n");
        let errs = Config::from_toml(&bad, &[], &aws).unwrap_err().0;
        assert!(
            errs.iter().any(|e| e.starts_with("providers[0].region:")),
            "{errs:?}"
        );
        // An Amazon Bedrock API key instead of SigV4 credentials.
        let keyed = format!("{toml}api_key_env = \"BEDROCK_KEY\"\n");
        let with_key = |name: &str| match name {
            "BEDROCK_KEY" => Some("bedrock-api-key".to_string()),
            other => aws(other),
        };
        let c = Config::from_toml(&keyed, &[], &with_key).unwrap();
        let p = &c.providers[0];
        assert!(p.available);
        assert_eq!(p.api_key.as_ref().unwrap().expose(), "bedrock-api-key");
        assert!(
            p.adapter.as_deref().unwrap().secrets().is_empty(),
            "no signing keys held"
        );
        assert!(!Config::from_toml(&keyed, &[], &aws).unwrap().providers[0].available);
        let both = format!("{keyed}aws_access_key_id_env = \"X\"\n");
        let errs = Config::from_toml(&both, &[], &with_key).unwrap_err().0;
        assert!(
            errs.iter()
                .any(|e| e.starts_with("providers[0].aws_access_key_id_env:")),
            "{errs:?}"
        );
        let other = "[[providers]]\nname = \"o\"\nkind = \"openai\"\nregion = \"us-east-1\"\n";
        let errs = Config::from_toml(other, &[], &aws).unwrap_err().0;
        assert!(
            errs.iter().any(|e| e.contains("region: only for kind `bedrock`")),
            "{errs:?}"
        );
    }
}
