//! Builds the application: shared state, the router and its layers, and the server lifecycle.
//!
//! Layers, outermost first: catch-panic (a panic becomes an OpenAI-shaped 500, the process lives on)
//! -> router. Per-request work is in the handlers, in phase order (see `proxy.rs`): usage guard ->
//! auth -> body limit -> validation -> model policy -> dispatch. Unauthenticated routes are exactly
//! [`UNAUTHENTICATED_ROUTES`]; every `/v1` route authenticates a Tollgate key, every `/admin` route
//! the admin token.

use std::{
    sync::{atomic::AtomicBool, atomic::Ordering, Arc},
    time::Duration,
};

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use tollgate_policy::{
    quota::LocalQuota,
    redis_quota::RedisQuota,
    store::{DocStore, RedisDocs, SqliteDocs},
    Keyring, Keys,
};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    admin,
    clickhouse::ClickHouse,
    config::UsageSinkConfig,
    config::{Config, StoreConfig},
    error::ApiError,
    jwt::JwtAuth,
    metrics::Metrics,
    proxy,
    quota::QuotaService,
    routing::Health,
    spool::Spool,
    usage::{UsageBackend, UsageSink, UsageStore},
};

/// Routes anyone may call.
pub const UNAUTHENTICATED_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics"];

pub struct AppState {
    /// The running config; requests take a snapshot ([`AppState::config`]) and keep it to the end,
    /// so a reload never changes a request in flight.
    config: std::sync::RwLock<Arc<Config>>,
    pub keys: Keys,
    pub keyring: Keyring,
    pub quota: QuotaService,
    pub health: Health,
    pub tracer: crate::telemetry::Tracer,
    pub jwt: Option<Arc<JwtAuth>>,
    pub usage_backend: Arc<UsageBackend>,
    pub usage: UsageSink,
    pub metrics: Arc<Metrics>,
    /// False once shutdown began: `/readyz` turns unready first.
    pub ready: AtomicBool,
}

impl AppState {
    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Swaps in a new config atomically; requests already running keep theirs.
    pub fn swap_config(&self, new: Config) {
        let new = Arc::new(new);
        match self.config.write() {
            Ok(mut c) => *c = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// Re-reads every key and team from the store into the in-memory keyring.
    pub async fn reload_keys(&self) -> anyhow::Result<()> {
        self.keyring.reload(&self.keys).await?;
        Ok(())
    }
}

/// The running pieces that outlive the router: joined on shutdown so no usage event is lost.
pub struct Runtime {
    pub state: Arc<AppState>,
    pub usage: UsagePipeline,
}

/// The usage pipeline's parts: the spool writer thread, and what the shipper needs.
pub struct UsagePipeline {
    pub writer: std::thread::JoinHandle<()>,
    pub spool: Arc<Spool>,
    pub backend: Arc<UsageBackend>,
    pub metrics: Arc<Metrics>,
    pub written: Arc<tokio::sync::Notify>,
    pub flush: Duration,
    pub batch_rows: usize,
}

impl UsagePipeline {
    /// Ships what the spool holds until it is empty, `stop` says so, or forever.
    pub async fn ship(&self, stop: tokio::sync::watch::Receiver<bool>) {
        crate::usage::ship(
            Arc::clone(&self.spool),
            Arc::clone(&self.backend),
            Arc::clone(&self.metrics),
            Arc::clone(&self.written),
            self.flush,
            self.batch_rows,
            stop,
        )
        .await;
    }
}

/// Opens the configured key store; with Redis also returns the connection the quotas share.
pub async fn open_store(
    cfg: &StoreConfig,
) -> anyhow::Result<(DocStore, Option<redis::aio::ConnectionManager>)> {
    match cfg {
        StoreConfig::Sqlite { path } => Ok((DocStore::Sqlite(Arc::new(SqliteDocs::open(path)?)), None)),
        StoreConfig::Redis { url, prefix } => {
            let client = redis::Client::open(url.as_str())?;
            let settings = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Duration::from_millis(500))
                .set_response_timeout(Duration::from_millis(500))
                .set_number_of_retries(1)
                .set_max_delay(200);
            let conn = client
                .get_connection_manager_with_config(settings)
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach Redis at store.url: {e}"))?;
            Ok((DocStore::Redis(RedisDocs::new(conn.clone(), prefix)), Some(conn)))
        }
    }
}

pub async fn build_state(config: Config) -> anyhow::Result<Runtime> {
    let config = Arc::new(config);
    let (store, redis_conn) = open_store(&config.store).await?;
    let keys = Keys::new(store);
    let metrics = Arc::new(Metrics::default());
    let spool = Arc::new(Spool::open(&config.usage.spool_dir, config.usage.fsync)?);
    let backend = Arc::new(match &config.usage.sink {
        UsageSinkConfig::Sqlite { path } => UsageBackend::Sqlite(Arc::new(UsageStore::open(path)?)),
        UsageSinkConfig::ClickHouse {
            url,
            database,
            user,
            password,
        } => UsageBackend::ClickHouse(Arc::new(ClickHouse::new(
            url,
            database,
            user.clone(),
            password.clone(),
        )?)),
    });
    let written = Arc::new(tokio::sync::Notify::new());
    let (usage, writer) = UsageSink::start(
        Arc::clone(&spool),
        config.usage.queue_capacity,
        Arc::clone(&metrics),
        Arc::clone(&written),
        config.usage.linger,
    );
    let pipeline = UsagePipeline {
        writer,
        spool,
        backend: Arc::clone(&backend),
        metrics: Arc::clone(&metrics),
        written,
        flush: config.usage.flush,
        batch_rows: config.usage.batch_rows,
    };
    let jwt = match &config.jwt {
        Some((cfg, secret)) => Some(JwtAuth::new(cfg.clone(), secret.clone()).await?),
        None => None,
    };
    let quota = QuotaService {
        local: Arc::new(LocalQuota::default()),
        redis: match (&config.store, redis_conn) {
            (StoreConfig::Redis { prefix, .. }, Some(conn)) => {
                Some(RedisQuota::new(conn, prefix, config.quota.lease_ttl))
            }
            _ => None,
        },
        modes: config.quota.on_redis_error,
        metrics: Arc::clone(&metrics),
    };
    let state = Arc::new(AppState {
        config: std::sync::RwLock::new(Arc::clone(&config)),
        keys,
        keyring: Keyring::default(),
        quota,
        health: Health::default(),
        tracer: match &config.otlp_endpoint {
            Some(endpoint) => {
                crate::telemetry::Tracer::start(endpoint, &config.service_name, Arc::clone(&metrics))?
            }
            None => crate::telemetry::Tracer::disabled(Arc::clone(&metrics)),
        },
        jwt,
        usage_backend: backend,
        usage,
        metrics,
        ready: AtomicBool::new(true),
    });
    state.reload_keys().await?;
    Ok(Runtime {
        state,
        usage: pipeline,
    })
}

/// Every route on one listener (no `admin_listen`), as tests build it in-process.
pub fn router(state: Arc<AppState>) -> Router {
    let metrics = Arc::clone(&state.metrics);
    let config = state.config();
    let router = public_routes()
        .merge(admin_routes())
        .fallback(unknown_route)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(panic_guard(metrics));
    with_cors(router, &config)
}

async fn unknown_route() -> ApiError {
    ApiError::NotFound {
        message: "Unknown route.".into(),
        code: "unknown_url",
    }
}

/// The two routers when the admin API has its own listener: (public, admin).
pub fn split_routers(state: Arc<AppState>) -> (Router, Router) {
    let finish = |r: Router<Arc<AppState>>| {
        r.fallback(unknown_route)
            .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
            .with_state(Arc::clone(&state))
            .layer(panic_guard(Arc::clone(&state.metrics)))
    };
    let admin = admin_routes().route("/healthz", get(|| async { "ok" }));
    let config = state.config();
    (with_cors(finish(public_routes()), &config), finish(admin))
}

/// The OpenAI API, health and metrics.
fn public_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat))
        .route("/v1/completions", post(proxy::completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/models", get(admin::list_models))
        .route("/v1/models/{*id}", get(admin::get_model))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
}

/// CORS for browser clients of the public API, when `server.cors_origins` is set.
fn cors_layer(config: &Config) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if config.cors_origins.is_empty() {
        return None;
    }
    let origins = if config.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(config.cors_origins.iter().filter_map(|o| o.parse().ok()))
    };
    let cors = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([http::Method::GET, http::Method::POST])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            http::HeaderName::from_static("x-request-id"),
            http::HeaderName::from_static("api-key"),
            http::HeaderName::from_static("x-api-key"),
            http::HeaderName::from_static("openai-organization"),
            http::HeaderName::from_static("openai-project"),
        ])
        .expose_headers([
            http::HeaderName::from_static("x-request-id"),
            http::HeaderName::from_static("x-tollgate-provider"),
            http::HeaderName::from_static("x-tollgate-model"),
            http::HeaderName::from_static("x-ratelimit-remaining-requests"),
            http::HeaderName::from_static("x-ratelimit-remaining-tokens"),
            http::header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(600));
    Some(cors)
}

fn with_cors(router: Router, config: &Config) -> Router {
    match cors_layer(config) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// The admin API (admin bearer token on every route).
fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/keys", post(admin::create_key).get(admin::list_keys))
        .route(
            "/admin/keys/{id}",
            get(admin::get_key)
                .patch(admin::update_key)
                .delete(admin::revoke_key),
        )
        .route("/admin/keys/{id}/usage", get(admin::key_usage))
        .route("/admin/teams", post(admin::create_team).get(admin::list_teams))
        .route(
            "/admin/teams/{id}",
            get(admin::get_team)
                .patch(admin::update_team)
                .delete(admin::delete_team),
        )
        .route("/admin/audit", get(admin::audit_log))
        .route("/admin/usage/events", get(admin::usage_events))
        .route("/admin/usage/summary", get(admin::usage_summary))
        .route("/admin/usage/events/{id}/body", get(admin::usage_body))
        .route("/admin/billing/export", get(admin::billing_export))
}

/// Turns a panic in any handler into an OpenAI-shaped 500 (counted); the process lives on.
pub fn panic_guard(metrics: Arc<Metrics>) -> CatchPanicLayer<PanicResponse> {
    CatchPanicLayer::custom(PanicResponse(metrics))
}

#[derive(Clone)]
pub struct PanicResponse(Arc<Metrics>);

impl tower_http::catch_panic::ResponseForPanic for PanicResponse {
    type ResponseBody = axum::body::Body;

    fn response_for_panic(&mut self, _: Box<dyn std::any::Any + Send + 'static>) -> Response {
        self.0.panics.fetch_add(1, Ordering::Relaxed);
        ApiError::Internal("handler panicked".into()).into_response()
    }
}

/// Re-reads keys and teams whenever the store's version changed (any replica's or process's write),
/// polling every `every`; also sweeps idle local quota state once a minute.
pub fn spawn_key_refresh(state: Arc<AppState>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = std::time::Instant::now();
        loop {
            tick.tick().await;
            match state.keys.store.version().await {
                Ok(v) if Some(v) != last => match state.reload_keys().await {
                    Ok(()) => last = Some(v),
                    Err(e) => tracing::warn!(error = %e, "key reload failed"),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "key store version check failed"),
            }
            if last_sweep.elapsed() > state.config().usage.body_sweep {
                last_sweep = std::time::Instant::now();
                if let Err(e) = state.usage_backend.sweep_bodies().await {
                    tracing::warn!(error = %e, "sweeping expired bodies failed");
                }
                let now = crate::usage::now_ms();
                let current: Vec<String> = tollgate_policy::quota::periods(now)
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect();
                state.quota.local.sweep(now as f64, &current);
            }
        }
    })
}

/// Serves until SIGTERM/ctrl-c, then drains in-flight requests for up to the grace period. Returns
/// the usage pipeline: the caller shuts the runtime down (dropping any request still running, whose
/// usage guard then records it as cancelled), joins the spool writer, and ships what it can; the rest
/// stays in the spool for the next start, so no event is lost.
pub async fn serve(config: Config, config_path: Option<std::path::PathBuf>) -> anyhow::Result<UsagePipeline> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let Runtime { state, usage } = build_state(config).await?;
    let (ship_stop, ship_stop_rx) = tokio::sync::watch::channel(false);
    let shipper = {
        let pipeline = UsagePipeline {
            writer: std::thread::spawn(|| {}),
            spool: Arc::clone(&usage.spool),
            backend: Arc::clone(&usage.backend),
            metrics: Arc::clone(&usage.metrics),
            written: Arc::clone(&usage.written),
            flush: usage.flush,
            batch_rows: usage.batch_rows,
        };
        tokio::spawn(async move { pipeline.ship(ship_stop_rx).await })
    };
    let refresh = spawn_key_refresh(Arc::clone(&state), state.config().key_refresh);
    let jwks_refresh = state.jwt.as_ref().and_then(|j| j.spawn_refresh());
    let reloader = config_path.map(|p| spawn_reload(Arc::clone(&state), p));
    let grace = state.config().shutdown_grace;
    let admin_listen = state.config().admin_listen;
    let (app, admin_app) = match admin_listen {
        Some(_) => {
            let (public, admin) = split_routers(Arc::clone(&state));
            (public, Some(admin))
        }
        None => (router(Arc::clone(&state)), None),
    };
    tracing::info!(%addr, models = state.config().models.len(), keys = state.keyring.len(), "tollgate listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown_state = Arc::clone(&state);
    tokio::spawn(async move {
        shutdown_signal().await;
        shutdown_state.ready.store(false, Ordering::SeqCst);
        tracing::info!("shutdown requested: draining in-flight requests");
        let _ = stop_tx.send(true);
    });
    if let (Some(admin_addr), Some(admin_app)) = (admin_listen, admin_app) {
        let admin_listener = tokio::net::TcpListener::bind(admin_addr).await?;
        tracing::info!(addr = %admin_listener.local_addr()?, "admin API listening");
        let mut admin_rx = stop_rx.clone();
        tokio::spawn(async move {
            let served = axum::serve(admin_listener, admin_app)
                .with_graceful_shutdown(async move {
                    let _ = admin_rx.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    let mut graceful_rx = stop_rx.clone();
    let server: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>> =
        match state.config().tls.clone() {
            Some(tls) => Box::pin(crate::tls::serve(
                listener,
                app,
                tls.cert,
                tls.key,
                tls.reload,
                graceful_rx,
            )),
            None => {
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                Box::pin(async move {
                    // `into_make_service`: each connection shares the router (an `Arc`); serving the
                    // `Router` itself rebuilds its route table per connection (~10 KB and a few µs each).
                    axum::serve(listener, app.into_make_service())
                        .with_graceful_shutdown(async move {
                            let _ = graceful_rx.wait_for(|s| *s).await;
                        })
                        .await
                        .map_err(anyhow::Error::from)
                })
            }
        };
    let mut deadline_rx = stop_rx;
    tokio::select! {
        r = server => r?,
        _ = async move {
            let _ = deadline_rx.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over: closing remaining connections"),
    }
    refresh.abort();
    if let Some(j) = jwks_refresh {
        j.abort();
    }
    if let Some(r) = reloader {
        r.abort();
    }
    // Quota settles are queued for a background task: send what is queued, so the spend of the
    // requests that just finished reaches the shared budgets instead of expiring as reservations.
    if let Some(redis) = &state.quota.redis {
        if !redis.flush(Duration::from_secs(5)).await {
            tracing::warn!("quota settles still queued at shutdown: their reservations will expire");
        }
    }
    // Let the shipper finish its insert and empty the spool, rather than cutting an insert short
    // (the server could commit it after a retry checked for it). Past the deadline, what is left
    // stays in the spool for the caller's final drain or the next start.
    let _ = ship_stop.send(true);
    let mut shipper = shipper;
    if tokio::time::timeout(Duration::from_secs(5), &mut shipper)
        .await
        .is_err()
    {
        shipper.abort();
    }
    Ok(usage)
}

/// Hot reload: on SIGHUP, and when the config file changes (checked every second), the file is
/// loaded and validated; a valid config is swapped in atomically (requests in flight finish on the
/// one they started with), an invalid one is refused with every error logged and the running config
/// stays. Settings bound at start (listen address, stores, usage sink, JWT) need a restart: a change
/// to them is logged, the rest of the new config applies.
pub fn spawn_reload(state: Arc<AppState>, path: std::path::PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen = mtime(&path);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let why = tokio::select! {
                _ = hangup => "SIGHUP",
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let now = mtime(&path);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "file changed"
                }
            };
            // Loading reads files and parses (and test-signs with) private keys: not on a runtime thread.
            let load = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Config::load(&path))
            };
            let Ok(loaded) = load.await else {
                tracing::error!(trigger = why, "config reload failed: the loader stopped");
                continue;
            };
            match loaded {
                Err(errors) => {
                    state
                        .metrics
                        .config_reload_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(trigger = why, errors = %errors.0.join("; "), "config reload refused: keeping the running config");
                }
                Ok(new) => {
                    let old = state.config();
                    let fixed = [
                        ("server.listen", old.listen != new.listen),
                        ("store", old.store != new.store),
                        (
                            "usage",
                            old.usage.spool_dir != new.usage.spool_dir
                                || format!("{:?}", old.usage.sink) != format!("{:?}", new.usage.sink),
                        ),
                        (
                            "auth.jwt",
                            old.jwt.as_ref().map(|j| format!("{:?}", j.0))
                                != new.jwt.as_ref().map(|j| format!("{:?}", j.0)),
                        ),
                    ];
                    for (what, changed) in fixed {
                        if changed {
                            tracing::warn!(
                                setting = what,
                                "this setting changed but applies only after a restart"
                            );
                        }
                    }
                    let models = new.models.len();
                    state.swap_config(new);
                    state.metrics.config_reloads.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(trigger = why, models, "config reloaded");
                }
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

pub fn status_json(status: StatusCode, body: serde_json::Value) -> Response {
    crate::error::json_response(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_service_lives_on() {
        let metrics = Arc::new(Metrics::default());
        let app = Router::new()
            .route("/boom", get(|| async { panic!("boom") as &str }))
            .route("/fine", get(|| async { "fine" }))
            .layer(panic_guard(Arc::clone(&metrics)));
        let req = |p: &str| axum::http::Request::get(p).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req("/boom")).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["type"], "internal_error");
        assert_eq!(metrics.panics.load(Ordering::Relaxed), 1);
        assert_eq!(app.oneshot(req("/fine")).await.unwrap().status(), StatusCode::OK);
    }
}
