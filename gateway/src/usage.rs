//! Usage events: the request path hands each finished request's [`UsageEvent`] to a bounded queue
//! ([`UsageSink::record`] never blocks); one writer thread drains it in batches into the embedded
//! SQLite store, which also answers `GET /admin/usage/events`. [`UsageGuard`] makes sure every request
//! yields exactly one event, even when the client disconnects and the handler is dropped mid-flight.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use rusqlite::{params, Connection};
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

use tollgate_policy::{pricing::Price, quota::Lease, Usd};
use tollgate_schemas::{Bodies, TokenUsage, UsageEvent};
use uuid::Uuid;

use crate::{clickhouse::ClickHouse, metrics::Metrics, spool::Spool};

const BATCH: usize = 4096;

/// The embedded event store.
pub struct UsageStore {
    conn: Mutex<Connection>,
}

/// Filters for [`UsageStore::query`]; `before` is the paging cursor (an event id).
#[derive(Debug, Default, Clone)]
pub struct UsageQuery {
    pub key_id: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub before: Option<String>,
    pub limit: usize,
}

const COLUMNS: &str = "id, ts_ms, request_id, key_id, user, endpoint, requested_model, served_model, provider, \
    status, error_type, streamed, cancelled, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, \
    latency_ms, ttft_ms, attempts, cost_usd, team_id, cache_write_input_tokens, instance, target, fallback, bytes_in, bytes_out";

impl UsageStore {
    pub fn open(path: &str) -> anyhow::Result<Self> {
        let conn = if path == ":memory:" {
            Connection::open_in_memory()?
        } else {
            if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS usage_events (
                id TEXT PRIMARY KEY, ts_ms INTEGER NOT NULL, request_id TEXT NOT NULL, key_id TEXT,
                user TEXT, endpoint TEXT NOT NULL, requested_model TEXT, served_model TEXT, provider TEXT,
                status INTEGER NOT NULL, error_type TEXT, streamed INTEGER NOT NULL, cancelled INTEGER NOT NULL,
                input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
                cached_input_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
                latency_ms INTEGER NOT NULL, ttft_ms INTEGER, attempts INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS usage_events_key ON usage_events (key_id, id);
            CREATE TABLE IF NOT EXISTS usage_bodies (
                id TEXT PRIMARY KEY, ts_ms INTEGER NOT NULL, key_id TEXT, expires_ms INTEGER NOT NULL,
                request TEXT NOT NULL, response TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS usage_bodies_expiry ON usage_bodies (expires_ms);",
        )?;
        // Columns added after the first release: older files get them.
        for (col, ty) in [
            ("cost_usd", "TEXT"),
            ("team_id", "TEXT"),
            ("cache_write_input_tokens", "INTEGER NOT NULL DEFAULT 0"),
            ("instance", "TEXT NOT NULL DEFAULT ''"),
            ("target", "TEXT"),
            ("fallback", "INTEGER NOT NULL DEFAULT 0"),
            ("bytes_in", "INTEGER NOT NULL DEFAULT 0"),
            ("bytes_out", "INTEGER NOT NULL DEFAULT 0"),
        ] {
            if conn
                .prepare(&format!("SELECT {col} FROM usage_events LIMIT 0"))
                .is_err()
            {
                conn.execute_batch(&format!("ALTER TABLE usage_events ADD COLUMN {col} {ty}"))?;
            }
        }
        Ok(UsageStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| anyhow::anyhow!("usage store lock poisoned"))
    }

    /// Inserts a batch in one transaction. Re-inserting an event id is a no-op (idempotent retries).
    pub fn insert(&self, events: &[UsageEvent]) -> anyhow::Result<()> {
        self.insert_parts(&[events])
    }

    /// Inserts the events of several slices (a spool batch's segments) in one transaction.
    pub fn insert_parts<P: AsRef<[UsageEvent]>>(&self, parts: &[P]) -> anyhow::Result<()> {
        let events = || parts.iter().flat_map(|p| p.as_ref());
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO usage_events ({COLUMNS}) VALUES \
                 (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28)"
            ))?;
            for e in events() {
                stmt.execute(params![
                    e.id.to_string(),
                    e.ts_ms,
                    e.request_id,
                    e.key_id,
                    e.user,
                    e.endpoint,
                    e.requested_model,
                    e.served_model,
                    e.provider,
                    e.status,
                    e.error_type,
                    e.streamed,
                    e.cancelled,
                    e.input_tokens as i64,
                    e.output_tokens as i64,
                    e.cached_input_tokens as i64,
                    e.reasoning_tokens as i64,
                    e.latency_ms as i64,
                    e.ttft_ms.map(|t| t as i64),
                    e.attempts,
                    e.cost_usd,
                    e.team_id,
                    e.cache_write_input_tokens as i64,
                    e.instance,
                    e.target,
                    e.fallback,
                    e.bytes_in as i64,
                    e.bytes_out as i64,
                ])?;
            }
            let mut bodies = tx.prepare_cached(
                "INSERT OR IGNORE INTO usage_bodies (id, ts_ms, key_id, expires_ms, request, response) VALUES (?1,?2,?3,?4,?5,?6)",
            )?;
            for e in events() {
                if let Some(b) = &e.bodies {
                    bodies.execute(params![
                        e.id.to_string(),
                        e.ts_ms,
                        e.key_id,
                        b.expires_ms,
                        b.request,
                        b.response
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A stored, unexpired body pair.
    pub fn body(&self, id: &str, now_ms: i64) -> anyhow::Result<Option<Bodies>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT request, response, expires_ms FROM usage_bodies WHERE id = ?1 AND expires_ms > ?2",
        )?;
        let mut rows = stmt.query(params![id, now_ms])?;
        Ok(match rows.next()? {
            Some(r) => Some(Bodies {
                request: r.get(0)?,
                response: r.get(1)?,
                expires_ms: r.get(2)?,
            }),
            None => None,
        })
    }

    /// Deletes expired bodies; returns how many.
    pub fn sweep_bodies(&self, now_ms: i64) -> anyhow::Result<usize> {
        Ok(self
            .conn()?
            .execute("DELETE FROM usage_bodies WHERE expires_ms <= ?1", [now_ms])?)
    }

    /// Newest first.
    pub fn query(&self, q: &UsageQuery) -> anyhow::Result<Vec<UsageEvent>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM usage_events
             WHERE (?1 IS NULL OR key_id = ?1) AND (?2 IS NULL OR ts_ms >= ?2) AND (?3 IS NULL OR ts_ms < ?3)
               AND (?4 IS NULL OR id < ?4)
             ORDER BY id DESC LIMIT ?5"
        ))?;
        let rows = stmt.query_map(
            params![q.key_id, q.from_ms, q.to_ms, q.before, q.limit as i64],
            |r| {
                let id: String = r.get(0)?;
                Ok(UsageEvent {
                    id: Uuid::parse_str(&id).unwrap_or_default(),
                    ts_ms: r.get(1)?,
                    request_id: r.get(2)?,
                    key_id: r.get(3)?,
                    user: r.get(4)?,
                    endpoint: r.get(5)?,
                    requested_model: r.get(6)?,
                    served_model: r.get(7)?,
                    provider: r.get(8)?,
                    status: r.get(9)?,
                    error_type: r.get(10)?,
                    streamed: r.get(11)?,
                    cancelled: r.get(12)?,
                    input_tokens: r.get::<_, i64>(13)? as u64,
                    output_tokens: r.get::<_, i64>(14)? as u64,
                    cached_input_tokens: r.get::<_, i64>(15)? as u64,
                    reasoning_tokens: r.get::<_, i64>(16)? as u64,
                    latency_ms: r.get::<_, i64>(17)? as u64,
                    ttft_ms: r.get::<_, Option<i64>>(18)?.map(|t| t as u64),
                    attempts: r.get(19)?,
                    cost_usd: r.get(20)?,
                    team_id: r.get(21)?,
                    cache_write_input_tokens: r.get::<_, i64>(22)? as u64,
                    instance: r.get(23)?,
                    target: r.get(24)?,
                    fallback: r.get(25)?,
                    bytes_in: r.get::<_, i64>(26)? as u64,
                    bytes_out: r.get::<_, i64>(27)? as u64,
                    bodies: None,
                })
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

/// Where confirmed events end up, and where `GET /admin/usage/events` reads them.
pub enum UsageBackend {
    Sqlite(Arc<UsageStore>),
    ClickHouse(Arc<ClickHouse>),
}

impl UsageBackend {
    /// Stores a batch (the events of its parts, in order); `maybe_sent` when it may have been
    /// stored before (idempotent either way).
    pub async fn insert(&self, parts: Vec<Arc<[UsageEvent]>>, maybe_sent: bool) -> anyhow::Result<()> {
        match self {
            UsageBackend::Sqlite(store) => {
                let store = Arc::clone(store);
                tokio::task::spawn_blocking(move || store.insert_parts(&parts)).await?
            }
            UsageBackend::ClickHouse(ch) => ch.insert_parts(&parts, maybe_sent).await.map(|_| ()),
        }
    }

    pub async fn summary(
        &self,
        by: crate::analytics::GroupBy,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> anyhow::Result<Vec<crate::analytics::SummaryRow>> {
        match self {
            UsageBackend::ClickHouse(ch) => ch.summary(by, from_ms, to_ms).await,
            UsageBackend::Sqlite(_) => Ok(crate::analytics::summarize(
                &self.range(from_ms, to_ms).await?,
                by,
            )),
        }
    }

    pub async fn billing(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> anyhow::Result<Vec<crate::analytics::BillingLine>> {
        match self {
            UsageBackend::ClickHouse(ch) => ch.billing(from_ms, to_ms).await,
            UsageBackend::Sqlite(_) => Ok(crate::analytics::bill(&self.range(from_ms, to_ms).await?)),
        }
    }

    /// Every event in a time range (the embedded store aggregates in process).
    async fn range(&self, from_ms: Option<i64>, to_ms: Option<i64>) -> anyhow::Result<Vec<UsageEvent>> {
        self.query(UsageQuery {
            from_ms,
            to_ms,
            limit: usize::MAX >> 1,
            ..Default::default()
        })
        .await
    }

    pub async fn body(&self, id: String) -> anyhow::Result<Option<Bodies>> {
        match self {
            UsageBackend::Sqlite(store) => {
                let store = Arc::clone(store);
                tokio::task::spawn_blocking(move || store.body(&id, now_ms())).await?
            }
            UsageBackend::ClickHouse(ch) => ch.body(&id, now_ms()).await,
        }
    }

    /// Deletes bodies past their retention.
    pub async fn sweep_bodies(&self) -> anyhow::Result<()> {
        match self {
            UsageBackend::Sqlite(store) => {
                let store = Arc::clone(store);
                tokio::task::spawn_blocking(move || store.sweep_bodies(now_ms()).map(|_| ())).await?
            }
            UsageBackend::ClickHouse(ch) => ch.sweep_bodies(now_ms()).await,
        }
    }

    pub async fn query(&self, q: UsageQuery) -> anyhow::Result<Vec<UsageEvent>> {
        match self {
            UsageBackend::Sqlite(store) => {
                let store = Arc::clone(store);
                tokio::task::spawn_blocking(move || store.query(&q)).await?
            }
            UsageBackend::ClickHouse(ch) => ch.query(&q).await,
        }
    }
}

/// The request path's handle on the usage queue.
#[derive(Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<UsageEvent>,
    metrics: Arc<Metrics>,
}

impl UsageSink {
    /// Starts the spool writer thread: it drains the queue in batches into spool segments, and exits,
    /// having written everything queued, once every sink is dropped.
    pub fn start(
        spool: Arc<Spool>,
        capacity: usize,
        metrics: Arc<Metrics>,
        written: Arc<tokio::sync::Notify>,
        linger: std::time::Duration,
    ) -> (UsageSink, std::thread::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<UsageEvent>(capacity);
        let writer_metrics = Arc::clone(&metrics);
        let handle = std::thread::Builder::new()
            .name("usage-spool".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(BATCH);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    // Group commit: gather what arrives within `linger`, so a busy gateway writes
                    // (and fsyncs) one segment per batch, not one per request.
                    let until = Instant::now() + linger;
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(mpsc::error::TryRecvError::Empty) => {
                                // Sleep out the rest of the linger at once (polling every
                                // millisecond cost ten wake-ups an event at low rates); what
                                // arrives meanwhile waits in the queue.
                                let left = until.saturating_duration_since(Instant::now());
                                if left.is_zero() {
                                    break;
                                }
                                std::thread::sleep(left);
                            }
                            Err(mpsc::error::TryRecvError::Disconnected) => break,
                        }
                    }
                    write_until_stored(&spool, &mut batch, &writer_metrics);
                    written.notify_one();
                    writer_metrics
                        .usage_queue_depth
                        .store(rx.len() as u64, Ordering::Relaxed);
                    batch.clear();
                }
            })
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot start the usage spool thread");
                std::thread::spawn(|| {})
            });
        (UsageSink { tx, metrics }, handle)
    }

    /// Queues an event without waiting. A full queue is counted and logged, never silent.
    pub fn record(&self, event: UsageEvent) {
        self.metrics.record_usage_event(&event);
        if let Err(e) = self.tx.try_send(event) {
            self.metrics.usage_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "usage queue full or closed: event dropped");
        }
    }

    pub fn queue_fill(&self) -> f64 {
        1.0 - self.tx.capacity() as f64 / self.tx.max_capacity().max(1) as f64
    }
}

/// Writes a batch to the spool (which takes the events, for the shipper), retrying (and reporting)
/// until the disk takes it: a full or failing disk backs the queue up and shows in metrics, logs
/// and `/readyz`; it never silently drops the batch.
fn write_until_stored(spool: &Spool, batch: &mut Vec<UsageEvent>, metrics: &Metrics) {
    let mut delay = std::time::Duration::from_millis(50);
    let n = batch.len() as u64;
    loop {
        match spool.write_batch(batch) {
            Ok(bytes) => {
                metrics.usage_written.fetch_add(n, Ordering::Relaxed);
                metrics.spool_bytes_written.fetch_add(bytes, Ordering::Relaxed);
                metrics.spool_failing.store(0, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                metrics.spool_failing.store(1, Ordering::Relaxed);
                metrics.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, events = batch.len(), "cannot write usage events to the spool; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// Ships ready spool segments to the backend, oldest first, in inserts of at most `batch_rows`
/// (a segment is never split); deletes a segment only after the backend confirmed it. Runs until
/// `stop` turns true and the spool is empty, or the `deadline` after `stop` passed.
pub async fn ship(
    spool: Arc<Spool>,
    backend: Arc<UsageBackend>,
    metrics: Arc<Metrics>,
    written: Arc<tokio::sync::Notify>,
    flush: std::time::Duration,
    batch_rows: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut retry_delay = std::time::Duration::from_millis(100);
    loop {
        let stopping = *stop.borrow();
        let (segments, oldest) = spool.pending();
        metrics.spool_segments.store(segments as u64, Ordering::Relaxed);
        metrics.sink_lag_ms.store(
            oldest
                .and_then(|t| t.elapsed().ok())
                .map_or(0, |d| d.as_millis() as u64),
            Ordering::Relaxed,
        );
        // From here the sink may receive them even if this task is aborted mid-insert.
        let batch = if segments == 0 {
            crate::spool::Batch::default()
        } else {
            spool.take(batch_rows)
        };
        if batch.seqs.is_empty() {
            if stopping {
                return;
            }
            if segments == 0 {
                tokio::select! {
                    // Gather more events for `flush`, but a shutdown ships at once.
                    _ = written.notified() => tokio::select! {
                        _ = tokio::time::sleep(flush) => {}
                        _ = stop.changed() => {}
                    },
                    _ = stop.changed() => {}
                }
            } else {
                // Only unreadable segments (logged by `take`): look again later.
                tokio::select! {
                    _ = tokio::time::sleep(retry_delay) => {}
                    _ = stop.changed() => {}
                }
                retry_delay = (retry_delay * 2).min(std::time::Duration::from_secs(5));
            }
            continue;
        }
        let n = batch.len;
        match backend.insert(batch.parts, batch.maybe_sent).await {
            Ok(()) => {
                for seq in batch.seqs {
                    if let Err(e) = spool.confirm_seq(seq) {
                        tracing::error!(error = %e, seq, "cannot remove a shipped usage segment");
                    }
                }
                metrics.usage_shipped.fetch_add(n as u64, Ordering::Relaxed);
                retry_delay = std::time::Duration::from_millis(100);
            }
            Err(e) => {
                metrics.sink_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, events = n, "usage sink unavailable; the events stay in the spool");
                tokio::select! {
                    _ = tokio::time::sleep(retry_delay) => {}
                    _ = stop.changed(), if !stopping => {}
                }
                retry_delay = (retry_delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// This process's name in usage events: `$TOLLGATE_INSTANCE`, else the host name and pid.
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::env::var("TOLLGATE_INSTANCE").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "tollgate".into());
            format!("{host}-{}", std::process::id())
        })
    })
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Owns a request's event until it is finished; dropping it unfinished records the request as
/// cancelled (status 499), so a client disconnect never loses an event. Finishing also prices the
/// request and settles its quota lease (actual tokens and cost replace the reservation).
pub struct UsageGuard {
    event: Option<UsageEvent>,
    started: Instant,
    sink: UsageSink,
    /// The price of the target being tried, set by the dispatcher.
    pub price: Option<Price>,
    usage: Option<TokenUsage>,
    lease: Option<Lease>,
    /// The prompt's estimated tokens (billed for a cut stream whose provider never reported usage).
    pub estimated_input: u64,
    /// Characters of generated text sent to the client so far.
    delivered_chars: u64,
    /// Opt-in body capture: (request, answer so far, expiry).
    capture: Option<(String, String, i64)>,
    /// The request's SERVER span, ended with the event's facts as GenAI attributes.
    span: Option<(crate::telemetry::Span, crate::telemetry::Tracer, &'static str)>,
}

/// Captured answers stop growing here; the stored body says it was truncated.
const BODY_CAP: usize = 1 << 20;

impl UsageGuard {
    pub fn new(sink: UsageSink, request_id: &str, endpoint: &str) -> Self {
        UsageGuard {
            event: Some(UsageEvent {
                id: Uuid::now_v7(),
                ts_ms: now_ms(),
                request_id: request_id.to_string(),
                key_id: None,
                user: None,
                endpoint: endpoint.to_string(),
                requested_model: None,
                served_model: None,
                provider: None,
                status: 0,
                error_type: None,
                streamed: false,
                cancelled: false,
                input_tokens: 0,
                output_tokens: 0,
                cached_input_tokens: 0,
                reasoning_tokens: 0,
                latency_ms: 0,
                ttft_ms: None,
                attempts: 0,
                cost_usd: None,
                team_id: None,
                cache_write_input_tokens: 0,
                instance: instance_id().to_string(),
                target: None,
                fallback: false,
                bytes_in: 0,
                bytes_out: 0,
                bodies: None,
            }),
            started: Instant::now(),
            sink,
            price: None,
            usage: None,
            lease: None,
            estimated_input: 0,
            delivered_chars: 0,
            capture: None,
            span: None,
        }
    }

    /// Traces this request: the span ends (with the event's facts) when the event is recorded.
    pub fn trace(
        &mut self,
        span: crate::telemetry::Span,
        tracer: crate::telemetry::Tracer,
        operation: &'static str,
    ) {
        self.span = Some((span, tracer, operation));
    }

    /// The context child spans and upstream requests carry, when tracing.
    pub fn span_context(&self) -> Option<crate::telemetry::TraceContext> {
        self.span.as_ref().map(|(s, _, _)| s.context())
    }

    pub fn span_set(&mut self, key: &'static str, value: serde_json::Value) {
        if let Some((s, _, _)) = self.span.as_mut() {
            s.set(key, value);
        }
    }

    /// Starts keeping this request's prompt and answer until `expires_ms` (the key opted in).
    pub fn capture_bodies(&mut self, request: String, expires_ms: i64) {
        self.capture = Some((request, String::new(), expires_ms));
    }

    /// Appends to the captured answer (no-op unless capturing).
    pub fn capture_response(&mut self, part: &[u8]) {
        if let Some((_, resp, _)) = self.capture.as_mut() {
            if resp.len() < BODY_CAP {
                resp.push_str(&String::from_utf8_lossy(part));
                if resp.len() >= BODY_CAP {
                    resp.push_str("\n[truncated]");
                }
            }
        }
    }

    pub fn add_delivered(&mut self, chars: u64) {
        self.delivered_chars += chars;
    }

    /// The quota lease to settle when the request ends.
    pub fn attach_lease(&mut self, lease: Lease) {
        self.lease = Some(lease);
    }

    /// Records the provider's token usage (the latest report wins).
    pub fn set_usage(&mut self, u: &TokenUsage) {
        self.usage = Some(*u);
        self.update(|e| e.apply_usage(u));
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Edits the pending event (no-op once finished).
    pub fn update(&mut self, f: impl FnOnce(&mut UsageEvent)) {
        if let Some(e) = self.event.as_mut() {
            f(e);
        }
    }

    pub fn mark_first_token(&mut self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.update(|e| {
            if e.ttft_ms.is_none() {
                e.ttft_ms = Some(ms);
            }
        });
    }

    /// Records the event with its final status, and settles the quota lease.
    pub fn finish(&mut self, status: u16, error_type: Option<&str>) {
        // A stream cut short (client gone, upstream broken) is billed for what was delivered: the
        // provider's partial usage, or at least the prompt estimate and ~4 characters a token sent.
        let cut = status != 200 || self.event.as_ref().is_some_and(|e| e.cancelled);
        if cut && (self.delivered_chars > 0 || self.usage.is_some()) {
            let mut u = self.usage.unwrap_or_default();
            if u.input == 0 {
                u.input = self.estimated_input;
            }
            u.output = u.output.max(self.delivered_chars.div_ceil(4));
            self.set_usage(&u);
        }
        let Some(mut e) = self.event.take() else { return };
        if let Some((mut span, tracer, operation)) = self.span.take() {
            if let Some(m) = &e.requested_model {
                span.rename(format!("{operation} {m}"));
                span.set("gen_ai.request.model", m.clone());
            }
            span.set("gen_ai.operation.name", operation);
            if let Some(m) = &e.served_model {
                span.set("gen_ai.response.model", m.clone());
            }
            if let Some(u) = &self.usage {
                span.set("gen_ai.usage.input_tokens", u.input as i64);
                span.set("gen_ai.usage.output_tokens", u.output as i64);
            }
            span.set("http.response.status_code", i64::from(status));
            span.set("tollgate.request_id", e.request_id.clone());
            if let Some(k) = &e.key_id {
                span.set("tollgate.key_id", k.clone());
            }
            if let Some(err) = error_type {
                span.set_error(err);
            }
            span.end(&tracer);
        }
        e.bodies = self.capture.take().map(|(request, response, expires_ms)| Bodies {
            request,
            response,
            expires_ms,
        });
        e.status = status;
        e.error_type = error_type.map(str::to_string);
        e.latency_ms = self.started.elapsed().as_millis() as u64;
        // A request that never reached a provider costs nothing; one whose usage is unknown keeps
        // its reservation (see `quota::settle`).
        let reached = e.attempts > 0;
        let cost = match (&self.usage, &self.price) {
            (Some(u), Some(p)) => Some(p.cost(u)),
            (Some(_), None) => None,
            (None, _) if !reached => Some(Usd(0)),
            (None, _) => None,
        };
        e.cost_usd = match (&self.usage, &self.price) {
            (Some(u), Some(p)) => Some(tollgate_policy::pricing::format_nanos(p.cost_nanos(u))),
            (None, _) if !reached => Some("0".into()),
            _ => None,
        };
        if let Some(lease) = self.lease.take() {
            let tokens = match &self.usage {
                Some(u) => Some(u.input.saturating_add(u.output)),
                None if !reached => Some(0),
                None => None,
            };
            let cost = match (&self.usage, &self.price) {
                (Some(_), None) => Some(Usd(0)),
                _ => cost,
            };
            crate::quota::settle(lease, tokens, cost);
        }
        self.sink.record(e);
    }
}

impl Drop for UsageGuard {
    fn drop(&mut self) {
        if let Some(e) = self.event.as_mut() {
            e.cancelled = true;
            if e.status == 0 {
                e.status = 499;
            }
            let status = e.status;
            self.finish(status, Some("client_cancelled"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SQLite store, a spool in a fresh directory (no fsync), its metrics and a running writer.
    type Pipeline = (
        Arc<UsageStore>,
        std::path::PathBuf,
        Arc<Spool>,
        Arc<Metrics>,
        Arc<tokio::sync::Notify>,
        UsageSink,
        std::thread::JoinHandle<()>,
    );

    fn pipeline() -> Pipeline {
        let store = Arc::new(UsageStore::open(":memory:").unwrap());
        let dir = std::env::temp_dir().join(format!("tg-usage-{}", Uuid::new_v4()));
        let spool = Arc::new(Spool::open(&dir, crate::spool::Fsync::Never).unwrap());
        let metrics = Arc::new(Metrics::default());
        let written = Arc::new(tokio::sync::Notify::new());
        let (sink, writer) = UsageSink::start(
            Arc::clone(&spool),
            16,
            Arc::clone(&metrics),
            Arc::clone(&written),
            std::time::Duration::from_millis(5),
        );
        (store, dir, spool, metrics, written, sink, writer)
    }

    #[tokio::test]
    async fn dropped_guard_records_a_cancelled_event() {
        let (store, dir, spool, metrics, written, sink, writer) = pipeline();
        let mut done = UsageGuard::new(sink.clone(), "r1", "chat");
        done.update(|e| e.key_id = Some("key_a".into()));
        done.finish(200, None);
        let dropped = UsageGuard::new(sink.clone(), "r2", "chat");
        drop(dropped);
        drop(done);
        drop(sink);
        writer.join().unwrap();
        // Recorded in the spool; the shipper moves them to the store and empties the spool.
        assert!(!spool.ready().is_empty());
        let backend = Arc::new(UsageBackend::Sqlite(Arc::clone(&store)));
        let (_stop, stop_rx) = tokio::sync::watch::channel(true);
        ship(
            Arc::clone(&spool),
            backend,
            Arc::clone(&metrics),
            written,
            std::time::Duration::from_millis(10),
            100,
            stop_rx,
        )
        .await;
        assert!(spool.ready().is_empty());
        assert_eq!(metrics.usage_shipped.load(Ordering::Relaxed), 2);
        std::fs::remove_dir_all(dir).ok();
        let all = store
            .query(&UsageQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].request_id, "r2");
        assert!(all[0].cancelled && all[0].status == 499);
        assert!(!all[1].cancelled && all[1].status == 200);
        let by_key = store
            .query(&UsageQuery {
                key_id: Some("key_a".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_key.len(), 1);
        let page = store
            .query(&UsageQuery {
                before: Some(all[0].id.to_string()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].request_id, "r1");
    }

    #[tokio::test]
    async fn a_shutdown_ships_at_once_whatever_the_flush_interval() {
        let (store, dir, spool, metrics, written, sink, writer) = pipeline();
        let backend = Arc::new(UsageBackend::Sqlite(Arc::clone(&store)));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let shipper = tokio::spawn(ship(
            Arc::clone(&spool),
            backend,
            Arc::clone(&metrics),
            written,
            std::time::Duration::from_secs(60),
            100,
            stop_rx,
        ));
        UsageGuard::new(sink.clone(), "r1", "chat").finish(200, None);
        for _ in 0..500 {
            if metrics.usage_written.load(Ordering::Relaxed) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The shipper now gathers more events for its 60 s; the shutdown must not wait for them.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        stop.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), shipper)
            .await
            .expect("the shipper stopped without waiting out its flush interval")
            .unwrap();
        assert_eq!(metrics.usage_shipped.load(Ordering::Relaxed), 1);
        drop(sink);
        writer.join().unwrap();
        std::fs::remove_dir_all(dir).ok();
    }
}
