//! Quotas shared by every replica through Redis. One Lua script per acquire checks and reserves every
//! limit of a request atomically (the Redis server runs scripts one at a time, so no replica ever sees a
//! half-applied reservation); settles and renewals are batched, one script call for many leases.
//! Scripts are called by SHA (`EVALSHA`, loaded on `NOSCRIPT`) and carry a version in their name.
//! Time comes from the Redis server (`TIME`), so replicas with skewed clocks still agree.
//!
//! Parallel-request leases and budget reservations expire after `lease_ttl` unless the holder renews
//! them (every third of the TTL while the request runs), so a replica that dies frees its slots.
//!
//! Keys (under the configured prefix): a rate is a string holding its GCRA theoretical arrival time,
//! `q:<owner>:requests|tokens`; a parallel limit a sorted set of leases by expiry, `q:<owner>:par`.
//! The budgets of one owner share one reservation hash `b:<owner>:r` (`total` and one amount per
//! lease: a reservation counts against every budget period of its owner alike) and one sorted set of
//! reservation expiries `b:<owner>:x`; each period has a spent counter `b:<owner>:s:<period>`.
//! Counters of past days and months expire; the two reservation keys of an owner have no expiry (an
//! idle owner's are a hash holding `total = 0` and an empty set: a few bytes, kept rather than paying
//! two `EXPIRE` calls on every request).
//! So a request with three budgets costs five Redis calls inside the acquire script, not twenty-one,
//! and every script is O(log n) in the requests in flight (only expired reservations are scanned).
//! Version 2 kept one hash per period (`b:<owner>:<period>` with `spent`, `reserved`, `r:<lease>`);
//! its `spent` is carried over the first time a version 3 counter is read.

use std::{sync::Arc, time::Duration};

use redis::{aio::ConnectionManager, Cmd, FromRedisValue, RedisResult};

use crate::{
    money::Usd,
    quota::{Check, LimitKind, Plan, RateInfo, Rejection, Window, MINUTE_MS},
};

/// Lua shared by the scripts: the server's clock, decimal formatting, and a version-2 spent carried
/// over into a version-3 counter that does not exist yet.
const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function fmt(x) return string.format('%.3f', x) end
local function carried(spent_key, v2_key, keep)
  local s = tonumber(redis.call('HGET', v2_key, 'spent') or '0') or 0
  redis.call('SET', spent_key, s)
  if keep > 0 then redis.call('EXPIRE', spent_key, keep) end
  return s
end
"#;

/// Check-and-reserve, all or nothing. ARGV[1] = lease id, ARGV[2] = lease TTL ms; then per item:
/// `rate limit period cost` (key: the rate) | `par max` (key: the set) | `bud n cost` and n times
/// `limit keep_s` (keys: `r`, `x`, n spent counters, n version-2 hashes). Returns one string,
/// `"ok failed_item retry_after_ms remaining reset_ms ..."` with a remaining/reset pair per rate item:
/// one bulk reply is far cheaper to decode than an array.
const ACQUIRE_V3: &str = r#"
-- tollgate_quota_acquire_v3
local lease, ttl = ARGV[1], tonumber(ARGV[2])
local a, k, item, windows, apply, failed, retry = 3, 1, 0, {}, {}, 0, '0'
while a <= #ARGV do
  item = item + 1
  local kind = ARGV[a]
  if kind == 'rate' then
    local key = KEYS[k]; k = k + 1
    local limit, period, cost = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]); a = a + 4
    local base = math.max(tonumber(redis.call('GET', key) or '0'), now)
    local new_tat = base + cost * period / limit
    -- Windows are formatted at the end: after this request, or as they are now if it is refused.
    windows[#windows+1] = {period / limit, period, base, new_tat}
    if cost > 0 and new_tat - period > now + 0.000001 then
      if failed == 0 then failed = item; retry = fmt(new_tat - period - now) end
    else
      apply[#apply+1] = {'rate', key, new_tat}
    end
  elseif kind == 'par' then
    local key = KEYS[k]; k = k + 1
    local max = tonumber(ARGV[a+1]); a = a + 2
    local n = redis.call('ZCARD', key)
    if n >= max then
      -- Full: drop the leases of holders that stopped renewing them, then count again.
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      n = redis.call('ZCARD', key)
    end
    if n >= max then
      if failed == 0 then failed = item; retry = '1000' end
    else
      apply[#apply+1] = {'par', key}
    end
  else
    local n, cost = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]); a = a + 3
    local r, x = KEYS[k], KEYS[k+1]
    local reserved = tonumber(redis.call('HGET', r, 'total') or '0') or 0
    local dead = redis.call('ZRANGEBYSCORE', x, '-inf', now)
    if #dead > 0 then
      for i = 1, #dead, 1000 do
        local some = {unpack(dead, i, math.min(i + 999, #dead))}
        for _, v in ipairs(redis.call('HMGET', r, unpack(some))) do reserved = reserved - (tonumber(v or '0') or 0) end
        redis.call('HDEL', r, unpack(some))
      end
      redis.call('ZREMRANGEBYSCORE', x, '-inf', now)
      redis.call('HSET', r, 'total', reserved)
    end
    local spent = redis.call('MGET', unpack(KEYS, k + 2, k + 1 + n))
    for j = 1, n do
      local limit, keep = tonumber(ARGV[a]), tonumber(ARGV[a+1]); a = a + 2
      local s = tonumber(spent[j] or '') or carried(KEYS[k + 1 + j], KEYS[k + 1 + n + j], keep)
      if s + reserved + cost > limit and failed == 0 then failed = item; retry = '-1' end
    end
    k = k + 2 + 2 * n
    apply[#apply+1] = {'bud', r, x, reserved, cost}
  end
end
-- Each rate's remaining and reset: at its TAT before (3) or after (4) this request.
local function windows_at(i)
  local parts = {}
  for j, w in ipairs(windows) do
    parts[j] = string.format('%.0f %.3f', math.max(0, math.floor((w[2] - (w[i] - now)) / w[1] + 0.000000001)), w[i] - now)
  end
  return table.concat(parts, ' ')
end
if failed > 0 then
  return '0 ' .. failed .. ' ' .. retry .. ' ' .. windows_at(3)
end
for _, p in ipairs(apply) do
  if p[1] == 'rate' then
    redis.call('SET', p[2], fmt(p[3]), 'PX', math.ceil(p[3] - now) + 1000)
  elseif p[1] == 'par' then
    redis.call('ZADD', p[2], now + ttl, lease)
    redis.call('PEXPIRE', p[2], ttl * 2)
  else
    redis.call('HSET', p[2], 'total', p[4] + p[5], lease, p[5])
    redis.call('ZADD', p[3], now + ttl, lease)
  end
end
return '1 0 0 ' .. windows_at(4)
"#;

/// Settle a batch of leases: per item `rate lease limit period delta` | `par lease` |
/// `bud lease actual n` and n times `keep_s` (keys as for the acquire). One call settles every lease
/// that ended while the previous call ran.
const SETTLE_V4: &str = r#"
-- tollgate_quota_settle_v4
local a, k = 1, 1
while a <= #ARGV do
  local kind, lease = ARGV[a], ARGV[a+1]
  if kind == 'rate' then
    local key = KEYS[k]; k = k + 1
    local limit, period, delta = tonumber(ARGV[a+2]), tonumber(ARGV[a+3]), tonumber(ARGV[a+4]); a = a + 5
    local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
    local new_tat = math.max(tat + delta * period / limit, now)
    redis.call('SET', key, fmt(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
  elseif kind == 'par' then
    redis.call('ZREM', KEYS[k], lease); k = k + 1
    a = a + 2
  else
    local actual, n = tonumber(ARGV[a+2]), tonumber(ARGV[a+3]); a = a + 4
    local r, x = KEYS[k], KEYS[k+1]
    -- Only a reservation still in the expiry set is still counted in `total`.
    if redis.call('ZREM', x, lease) == 1 then
      local v = redis.call('HMGET', r, lease, 'total')
      redis.call('HSET', r, 'total', (tonumber(v[2] or '0') or 0) - (tonumber(v[1] or '0') or 0))
    end
    redis.call('HDEL', r, lease)
    for j = 1, n do
      local keep = tonumber(ARGV[a]); a = a + 1
      local key = KEYS[k + 1 + j]
      if redis.call('INCRBY', key, actual) == actual then
        -- A new counter: carry over version 2's spent (and start its expiry).
        carried(key, KEYS[k + 1 + n + j], keep)
        redis.call('INCRBY', key, actual)
      end
    end
    k = k + 2 + 2 * n
  end
end
return 1
"#;

/// Renew a batch of running leases: ARGV[1] = TTL ms; per key `lease kind`, `par` for a parallel set,
/// `bud` for an owner's reservation expiry set.
const RENEW_V4: &str = r#"
-- tollgate_quota_renew_v4
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  local lease, kind = ARGV[2 * i], ARGV[2 * i + 1]
  if kind == 'par' then
    -- The set itself expires two TTLs after its last change; a renewed slot keeps it.
    if redis.call('ZADD', KEYS[i], 'XX', 'CH', now + ttl, lease) == 1 then
      redis.call('PEXPIRE', KEYS[i], ttl * 2)
    end
  else
    redis.call('ZADD', KEYS[i], 'XX', now + ttl, lease)
  end
end
return 1
"#;

/// A Lua script called by SHA. The command is built in one buffer, keys first, which costs a fraction
/// of redis-rs's `ScriptInvocation` (it copies every key and argument twice); on `NOSCRIPT` (a
/// restarted or flushed Redis) the script is loaded and the call repeated.
struct Lua {
    code: String,
    sha: String,
}

impl Lua {
    /// The script of `parts`, concatenated (the shared prelude first).
    fn new(parts: &[&str]) -> Lua {
        let code = parts.concat();
        let sha = redis::Script::new(&code).get_hash().to_string();
        Lua { code, sha }
    }

    /// `EVALSHA sha nkeys`: push the `nkeys` keys, then the arguments.
    fn cmd(&self, nkeys: usize) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(nkeys);
        cmd
    }

    async fn run<T: FromRedisValue>(&self, conn: &ConnectionManager, cmd: &Cmd) -> RedisResult<T> {
        let mut conn = conn.clone();
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(&self.code)
                    .query_async::<String>(&mut conn)
                    .await?;
                cmd.query_async(&mut conn).await
            }
            r => r,
        }
    }
}

/// At most this many leases per settle or renew call: a script blocks Redis while it runs.
const BATCH: usize = 128;

/// How a plan's checks map onto the scripts' items and keys, in plan order: a rate or parallel check
/// is one item with one key; the budgets of one owner (consecutive in a plan) are one item with keys
/// `r`, `x`, one spent counter per period, then one version-2 hash per period.
#[derive(Clone, Copy)]
enum Item {
    Rate(usize),
    Par(usize),
    /// Checks `first..end`, all budgets of one owner.
    Budgets(usize, usize),
}

impl Item {
    fn keys(self) -> usize {
        match self {
            Item::Rate(_) | Item::Par(_) => 1,
            Item::Budgets(first, end) => 2 + 2 * (end - first),
        }
    }

    fn first(self) -> usize {
        match self {
            Item::Rate(i) | Item::Par(i) | Item::Budgets(i, _) => i,
        }
    }
}

fn items(plan: &Plan) -> Vec<Item> {
    let checks = &plan.checks;
    let mut out = Vec::with_capacity(checks.len());
    let mut i = 0;
    while let Some(c) = checks.get(i) {
        let item = match c {
            Check::Rate { .. } => Item::Rate(i),
            Check::Parallel { .. } => Item::Par(i),
            Check::Budget { owner, .. } => {
                let same = |c: &Check| matches!(c, Check::Budget { owner: o, .. } if o == owner);
                let len = checks.iter().skip(i).take_while(|c| same(c)).count();
                Item::Budgets(i, i + len)
            }
        };
        out.push(item);
        i = match item {
            Item::Budgets(_, end) => end,
            _ => i + 1,
        };
    }
    out
}

fn owner(c: &Check) -> &str {
    match c {
        Check::Rate { owner, .. } | Check::Parallel { owner, .. } | Check::Budget { owner, .. } => owner,
    }
}

fn concat(parts: &[&str]) -> String {
    parts.concat()
}

/// Quotas in Redis. Cheap to clone (one shared state). Acquire is one round trip on the request path;
/// settles and renewals never are: one background task settles every lease that ended while its previous
/// call ran (one script call for the lot, retried with backoff), and one renews every running lease
/// each third of the TTL, so neither costs a task, a timer or a round trip per request.
#[derive(Clone)]
pub struct RedisQuota {
    inner: Arc<Inner>,
    pub lease_ttl: Duration,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    acquire: Lua,
    settle: Lua,
    renew: Lua,
    /// Settles waiting for the settler task, and how many are queued or being sent.
    settles: tokio::sync::mpsc::UnboundedSender<Settle>,
    pending: std::sync::atomic::AtomicUsize,
    settled: tokio::sync::Notify,
    /// Running leases that hold something that expires (parallel slots, budget reservations): their
    /// keys and which of them to renew.
    live: std::sync::Mutex<std::collections::HashMap<u64, Expiring>>,
}

/// One lease to settle: its plan (the kinds and limits), keys, and the actual tokens and cost.
struct Settle {
    lease: u64,
    plan: Plan,
    keys: Arc<[String]>,
    token_delta: i64,
    cost: Usd,
}

/// A running lease's keys, and a bit per key to renew: a parallel set (`par`) or an owner's
/// reservation expiry set (`bud`).
#[derive(Clone)]
struct Expiring {
    keys: Arc<[String]>,
    par: u64,
    bud: u64,
}

impl Expiring {
    fn of(layout: &[Item], keys: &Arc<[String]>) -> Option<Expiring> {
        let (mut par, mut bud, mut at) = (0u64, 0u64, 0);
        for &item in layout {
            match item {
                Item::Par(_) => par |= 1 << at.min(63),
                Item::Budgets(..) => bud |= 1 << (at + 1).min(63),
                Item::Rate(_) => {}
            }
            at += item.keys();
        }
        (par | bud != 0 && at <= 64).then(|| Expiring {
            keys: Arc::clone(keys),
            par,
            bud,
        })
    }
}

fn keep_secs(period: &str) -> u64 {
    match period.as_bytes().first() {
        Some(b'd') => 2 * 86_400,
        Some(b'm') => 33 * 86_400,
        _ => 0,
    }
}

impl RedisQuota {
    /// Starts the settle and renew tasks: call it within a Tokio runtime.
    pub fn new(conn: ConnectionManager, prefix: &str, lease_ttl: Duration) -> RedisQuota {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            conn,
            prefix: prefix.to_string(),
            acquire: Lua::new(&[PRELUDE, ACQUIRE_V3]),
            settle: Lua::new(&[PRELUDE, SETTLE_V4]),
            renew: Lua::new(&[RENEW_V4]),
            settles: tx,
            pending: Default::default(),
            settled: Default::default(),
            live: Default::default(),
        });
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(settler(Arc::downgrade(&inner), rx));
                rt.spawn(renewer(Arc::downgrade(&inner), lease_ttl));
            }
            Err(_) => {
                tracing::error!("RedisQuota created outside a Tokio runtime: leases will not be settled")
            }
        }
        RedisQuota { inner, lease_ttl }
    }

    fn key(&self, c: &Check) -> String {
        c.prefixed_key(&self.inner.prefix)
    }

    fn spent_key(&self, c: &Check) -> String {
        let period = match c {
            Check::Budget { period, .. } => period.as_str(),
            _ => "",
        };
        concat(&[&self.inner.prefix, "b:", owner(c), ":s:", period])
    }

    fn owner_key(&self, c: &Check, tail: &str) -> String {
        concat(&[&self.inner.prefix, "b:", owner(c), tail])
    }

    /// The scripts' keys for `plan` (see [`Item`]): computed once per request and kept in the lease
    /// for its settle and renewals.
    pub fn keys(&self, plan: &Plan) -> Arc<[String]> {
        let mut keys = Vec::with_capacity(plan.checks.len() + 4);
        for item in items(plan) {
            match item {
                Item::Rate(i) | Item::Par(i) => keys.extend(plan.checks.get(i).map(|c| self.key(c))),
                Item::Budgets(first, end) => {
                    let group = plan.checks.get(first..end).unwrap_or_default();
                    if let Some(c) = group.first() {
                        keys.push(self.owner_key(c, ":r"));
                        keys.push(self.owner_key(c, ":x"));
                    }
                    keys.extend(group.iter().map(|c| self.spent_key(c)));
                    keys.extend(group.iter().map(|c| self.key(c)));
                }
            }
        }
        keys.into()
    }

    /// One round trip. `Ok(Err(_))` is a refusal; `Err(_)` means Redis could not answer. On success the
    /// lease is renewed until [`RedisQuota::settle_later`] is called for it.
    pub async fn acquire(
        &self,
        plan: &Plan,
        keys: &Arc<[String]>,
        lease: u64,
    ) -> Result<Result<RateInfo, Rejection>, redis::RedisError> {
        let layout = items(plan);
        let mut cmd = self.inner.acquire.cmd(keys.len());
        for key in keys.iter() {
            cmd.arg(key.as_str());
        }
        cmd.arg(lease).arg(self.lease_ttl.as_millis() as u64);
        for item in &layout {
            match *item {
                Item::Rate(i) => {
                    if let Some(Check::Rate { limit, cost, .. }) = plan.checks.get(i) {
                        cmd.arg("rate").arg(*limit).arg(MINUTE_MS).arg(*cost);
                    }
                }
                Item::Par(i) => {
                    if let Some(Check::Parallel { max, .. }) = plan.checks.get(i) {
                        cmd.arg("par").arg(*max);
                    }
                }
                Item::Budgets(first, end) => {
                    // One reservation per owner: every budget of a plan reserves the same estimate.
                    let cost = match plan.checks.get(first) {
                        Some(Check::Budget { cost, .. }) => cost.micros(),
                        _ => 0,
                    };
                    cmd.arg("bud").arg(end - first).arg(cost);
                    for c in plan.checks.get(first..end).unwrap_or_default() {
                        if let Check::Budget { limit, period, .. } = c {
                            cmd.arg(limit.micros()).arg(keep_secs(period));
                        }
                    }
                }
            }
        }
        let reply: String = self.inner.acquire.run(&self.inner.conn, &cmd).await?;
        let mut fields = reply
            .split_ascii_whitespace()
            .map(|f| f.parse::<f64>().unwrap_or(0.0));
        let mut next = || fields.next().unwrap_or(0.0);
        let (ok, failed, retry) = match (next(), next(), next()) {
            (1.0, _, _) => (true, 0, 0.0),
            (0.0, failed, retry) if !reply.is_empty() => (false, failed as usize, retry),
            _ => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::TypeError,
                    "unexpected reply from the quota script",
                )))
            }
        };
        let mut info = RateInfo::default();
        for c in &plan.checks {
            if let Check::Rate { kind, limit, .. } = c {
                let (remaining, reset_ms) = (next() as u64, next());
                info.note(
                    *kind,
                    Window {
                        limit: *limit,
                        remaining,
                        reset_ms,
                    },
                );
            }
        }
        if ok {
            if let (Some(e), Ok(mut live)) = (Expiring::of(&layout, keys), self.inner.live.lock()) {
                live.insert(lease, e);
            }
            return Ok(Ok(info));
        }
        let check = layout
            .get(failed.saturating_sub(1))
            .and_then(|item| plan.checks.get(item.first()));
        let (kind, owner) = match check {
            Some(c) => (c.kind(), owner(c).to_string()),
            None => (LimitKind::Requests, String::new()),
        };
        Ok(Err(Rejection {
            kind,
            owner,
            retry_after_ms: (retry >= 0.0).then_some(retry),
            info,
        }))
    }

    /// Queues a lease's settle for the background settler and stops renewing it; never waits.
    pub fn settle_later(&self, lease: u64, plan: Plan, keys: Arc<[String]>, token_delta: i64, cost: Usd) {
        if let Ok(mut live) = self.inner.live.lock() {
            live.remove(&lease);
        }
        self.inner
            .pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let settle = Settle {
            lease,
            plan,
            keys,
            token_delta,
            cost,
        };
        if self.inner.settles.send(settle).is_err() {
            self.inner
                .pending
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            tracing::error!(
                lease,
                "the quota settler has stopped: the reservation will expire without its spend"
            );
        }
    }

    /// Settles one lease now (one round trip).
    pub async fn settle(
        &self,
        plan: &Plan,
        lease: u64,
        token_delta: i64,
        cost: Usd,
    ) -> Result<(), redis::RedisError> {
        if let Ok(mut live) = self.inner.live.lock() {
            live.remove(&lease);
        }
        let one = Settle {
            lease,
            plan: plan.clone(),
            keys: self.keys(plan),
            token_delta,
            cost,
        };
        send_settles(&self.inner.conn, &self.inner.settle, std::slice::from_ref(&one)).await
    }

    /// Waits until every queued settle was sent (or `max` passed): for a graceful shutdown.
    pub async fn flush(&self, max: Duration) -> bool {
        let done = async {
            loop {
                let notified = self.inner.settled.notified();
                if self.inner.pending.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(max, done).await.is_ok()
    }

    /// How many running leases the renewer keeps alive.
    pub fn live_leases(&self) -> usize {
        self.inner.live.lock().map_or(0, |l| l.len())
    }

    /// Reads a check's current state: `(tat, in_flight, spent, reserved)`; for the admin API.
    pub async fn peek(&self, c: &Check) -> Result<(Option<f64>, u64, i64, i64), redis::RedisError> {
        let key = self.key(c);
        let mut conn = self.inner.conn.clone();
        match c {
            Check::Rate { .. } => {
                let v: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                Ok((v.and_then(|s| s.parse().ok()), 0, 0, 0))
            }
            Check::Parallel { .. } => {
                let now_ms = crate::keys::now_ms();
                let n: u64 = redis::cmd("ZCOUNT")
                    .arg(&key)
                    .arg(now_ms)
                    .arg("+inf")
                    .query_async(&mut conn)
                    .await?;
                Ok((None, n, 0, 0))
            }
            Check::Budget { .. } => {
                // `total` may still count reservations that expired since the last acquire.
                let spent: Option<i64> = redis::cmd("GET")
                    .arg(self.spent_key(c))
                    .query_async(&mut conn)
                    .await?;
                let spent = match spent {
                    Some(s) => s,
                    None => redis::cmd("HGET")
                        .arg(&key)
                        .arg("spent")
                        .query_async::<Option<i64>>(&mut conn)
                        .await?
                        .unwrap_or(0),
                };
                let reserved: Option<i64> = redis::cmd("HGET")
                    .arg(self.owner_key(c, ":r"))
                    .arg("total")
                    .query_async(&mut conn)
                    .await?;
                Ok((None, 0, spent, reserved.unwrap_or(0)))
            }
        }
    }
}

/// One `SETTLE_V4` call for a batch of leases.
async fn send_settles(conn: &ConnectionManager, script: &Lua, batch: &[Settle]) -> RedisResult<()> {
    // What each lease changes: a token rate corrected by the actual count, its parallel slot freed,
    // its budget reservations replaced by the actual cost. Request rates need nothing.
    let mut parts: Vec<(&[String], Item, &Settle)> = Vec::with_capacity(batch.len() * 3);
    for s in batch {
        let mut at = 0;
        for item in items(&s.plan) {
            let n = item.keys();
            let wanted = match item {
                Item::Rate(i) => {
                    s.token_delta != 0
                        && matches!(
                            s.plan.checks.get(i),
                            Some(Check::Rate {
                                kind: LimitKind::Tokens,
                                ..
                            })
                        )
                }
                Item::Par(_) | Item::Budgets(..) => true,
            };
            if let (true, Some(keys)) = (wanted, s.keys.get(at..at + n)) {
                parts.push((keys, item, s));
            }
            at += n;
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    let mut cmd = script.cmd(parts.iter().map(|(k, _, _)| k.len()).sum());
    for (keys, _, _) in &parts {
        for key in keys.iter() {
            cmd.arg(key.as_str());
        }
    }
    for (_, item, s) in &parts {
        match *item {
            Item::Rate(i) => {
                if let Some(Check::Rate { limit, .. }) = s.plan.checks.get(i) {
                    cmd.arg("rate")
                        .arg(s.lease)
                        .arg(*limit)
                        .arg(MINUTE_MS)
                        .arg(s.token_delta);
                }
            }
            Item::Par(_) => {
                cmd.arg("par").arg(s.lease);
            }
            Item::Budgets(first, end) => {
                cmd.arg("bud").arg(s.lease).arg(s.cost.micros()).arg(end - first);
                for c in s.plan.checks.get(first..end).unwrap_or_default() {
                    if let Check::Budget { period, .. } = c {
                        cmd.arg(keep_secs(period));
                    }
                }
            }
        }
    }
    script.run::<i64>(conn, &cmd).await.map(|_| ())
}

/// Settles what the request path queued, a batch per call: while one call is in flight the next
/// batch gathers, so a busy gateway makes far fewer calls than requests and an idle one adds no delay.
async fn settler(inner: std::sync::Weak<Inner>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Settle>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let Some(inner) = inner.upgrade() else { return };
        let mut wait = Duration::from_millis(50);
        for attempt in 1..=6 {
            match send_settles(&inner.conn, &inner.settle, &batch).await {
                Ok(()) => break,
                Err(e) if attempt == 6 => tracing::error!(
                    error = %e,
                    leases = batch.len(),
                    "quota settle failed: the reservations will expire without their spend"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "quota settle failed, retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        inner
            .pending
            .fetch_sub(batch.len(), std::sync::atomic::Ordering::SeqCst);
        inner.settled.notify_waiters();
        batch.clear();
    }
}

/// Every third of the TTL, pushes the expiry of every running lease forward (a batch per call), so a
/// replica that dies frees its slots and reservations within one TTL, and a live one keeps them.
async fn renewer(inner: std::sync::Weak<Inner>, ttl: Duration) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let live: Vec<(u64, Expiring)> = match inner.live.lock() {
            Ok(l) => l.iter().map(|(id, e)| (*id, e.clone())).collect(),
            Err(_) => continue,
        };
        for chunk in live.chunks(BATCH) {
            let items: Vec<(&str, u64, &str)> = chunk
                .iter()
                .flat_map(|(lease, e)| {
                    e.keys.iter().enumerate().take(64).filter_map(move |(i, key)| {
                        match (e.par >> i & 1, e.bud >> i & 1) {
                            (1, _) => Some((key.as_str(), *lease, "par")),
                            (_, 1) => Some((key.as_str(), *lease, "bud")),
                            _ => None,
                        }
                    })
                })
                .collect();
            let mut cmd = inner.renew.cmd(items.len());
            for (key, _, _) in &items {
                cmd.arg(*key);
            }
            cmd.arg(ttl.as_millis() as u64);
            for (_, lease, kind) in &items {
                cmd.arg(*lease).arg(*kind);
            }
            if let Err(e) = inner.renew.run::<i64>(&inner.conn, &cmd).await {
                tracing::warn!(error = %e, leases = chunk.len(), "quota lease renewal failed; leases may expire early");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against the machine's Redis (127.0.0.1:6379 or `$TOLLGATE_TEST_REDIS_URL`), each run under its
    //! own key prefix; skipped when none answers, except under CI.
    #![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

    use super::*;

    async fn quota(ttl: Duration) -> Option<RedisQuota> {
        let url =
            std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let client = redis::Client::open(url.as_str()).expect("redis url");
        let conn = match redis::aio::ConnectionManager::new(client).await {
            Ok(c) => c,
            Err(e) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(!ci, "Redis is required under CI: {e}");
                eprintln!("SKIPPED: Redis not reachable at {url}: {e}");
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Some(RedisQuota::new(
            conn,
            &format!("tgunit:{}:{nanos}:", std::process::id()),
            ttl,
        ))
    }

    fn budget(cost: i64) -> Plan {
        Plan {
            checks: vec![Check::Budget {
                owner: "k1".into(),
                period: "total".into(),
                limit: Usd(1000),
                cost: Usd(cost),
            }],
            ..Plan::default()
        }
    }

    async fn acq(
        q: &RedisQuota,
        plan: &Plan,
        lease: u64,
    ) -> Result<Result<RateInfo, Rejection>, redis::RedisError> {
        q.acquire(plan, &q.keys(plan), lease).await
    }

    fn one_slot() -> Plan {
        Plan {
            checks: vec![Check::Parallel {
                owner: "k1".into(),
                max: 1,
            }],
            ..Plan::default()
        }
    }

    async fn totals(q: &RedisQuota) -> (i64, i64) {
        let (_, _, spent, reserved) = q.peek(&budget(0).checks[0]).await.unwrap();
        (spent, reserved)
    }

    #[tokio::test]
    async fn budget_reservations_keep_running_totals_and_expire_without_a_scan() {
        let Some(q) = quota(Duration::from_millis(300)).await else {
            return;
        };
        assert!(acq(&q, &budget(600), 1).await.unwrap().is_ok());
        // Its holder dies at once: nothing renews lease 1.
        q.inner.live.lock().unwrap().clear();
        assert!(
            acq(&q, &budget(600), 2).await.unwrap().is_err(),
            "600 + 600 > 1000"
        );
        assert_eq!(totals(&q).await, (0, 600));

        // Lease 1's holder died: its reservation expires and the next acquire drops it.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(acq(&q, &budget(600), 2).await.unwrap().is_ok());
        assert_eq!(totals(&q).await, (0, 600));

        // Settling replaces the reservation by the actual cost.
        q.settle(&budget(600), 2, 0, Usd(100)).await.unwrap();
        assert_eq!(totals(&q).await, (100, 0));
        assert!(
            acq(&q, &budget(900), 3).await.unwrap().is_ok(),
            "100 + 900 = 1000"
        );
        assert!(acq(&q, &budget(1), 4).await.unwrap().is_err());

        // A late settle of the expired lease 1 bills its cost but frees nothing it no longer holds.
        q.settle(&budget(600), 1, 0, Usd(50)).await.unwrap();
        assert_eq!(totals(&q).await, (150, 900));
    }

    #[tokio::test]
    async fn many_open_reservations_are_counted_exactly() {
        let Some(q) = quota(Duration::from_secs(30)).await else {
            return;
        };
        for lease in 0..500 {
            assert!(acq(&q, &budget(2), lease).await.unwrap().is_ok(), "{lease}");
        }
        assert_eq!(totals(&q).await, (0, 1000));
        assert!(
            acq(&q, &budget(1), 9999).await.unwrap().is_err(),
            "the budget is fully reserved"
        );
        for lease in 0..500 {
            q.settle(&budget(2), lease, 0, Usd(1)).await.unwrap();
        }
        assert_eq!(totals(&q).await, (500, 0));
    }

    #[tokio::test]
    async fn settles_queued_together_are_applied_by_the_settler() {
        let Some(q) = quota(Duration::from_secs(30)).await else {
            return;
        };
        let plan = budget(10);
        for lease in 0..100 {
            assert!(acq(&q, &plan, lease).await.unwrap().is_ok(), "{lease}");
        }
        assert_eq!(totals(&q).await, (0, 1000));
        assert_eq!(q.live_leases(), 100);
        for lease in 0..100 {
            q.settle_later(lease, plan.clone(), q.keys(&plan), 0, Usd(3));
        }
        assert_eq!(q.live_leases(), 0, "settled leases are no longer renewed");
        assert!(
            q.flush(Duration::from_secs(5)).await,
            "the settler drained its queue"
        );
        assert_eq!(totals(&q).await, (300, 0));
    }

    #[tokio::test]
    async fn running_leases_are_renewed_until_settled() {
        let Some(q) = quota(Duration::from_millis(300)).await else {
            return;
        };
        let plan = one_slot();
        assert!(acq(&q, &plan, 1).await.unwrap().is_ok());
        // Three TTLs later the slot is still held: the renewer kept it alive.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let refused = acq(&q, &plan, 2).await.unwrap().unwrap_err();
        assert_eq!(refused.kind, LimitKind::Parallel);
        q.settle_later(1, plan.clone(), q.keys(&plan), 0, Usd(0));
        assert!(q.flush(Duration::from_secs(5)).await);
        assert!(
            acq(&q, &plan, 2).await.unwrap().is_ok(),
            "the settled slot is free"
        );
    }

    #[tokio::test]
    async fn an_unsettled_lease_of_a_dead_holder_expires() {
        let Some(q) = quota(Duration::from_millis(300)).await else {
            return;
        };
        let plan = one_slot();
        assert!(acq(&q, &plan, 1).await.unwrap().is_ok());
        // The holder "dies": nothing renews lease 1 any more.
        q.inner.live.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(acq(&q, &plan, 2).await.unwrap().is_ok(), "the dead lease expired");
    }

    #[tokio::test]
    async fn scripts_are_reloaded_after_redis_forgot_them() {
        let Some(q) = quota(Duration::from_secs(30)).await else {
            return;
        };
        let mut conn = q.inner.conn.clone();
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        assert!(acq(&q, &budget(10), 1).await.unwrap().is_ok());
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        q.settle(&budget(10), 1, 0, Usd(4)).await.unwrap();
        assert_eq!(totals(&q).await, (4, 0));
    }

    #[tokio::test]
    async fn rate_windows_come_back_in_plan_order() {
        let Some(q) = quota(Duration::from_secs(30)).await else {
            return;
        };
        let plan = Plan {
            checks: vec![
                Check::Rate {
                    owner: "k1".into(),
                    kind: LimitKind::Requests,
                    limit: 10,
                    cost: 1,
                },
                Check::Budget {
                    owner: "k1".into(),
                    period: "total".into(),
                    limit: Usd(1000),
                    cost: Usd(1),
                },
                Check::Rate {
                    owner: "k1".into(),
                    kind: LimitKind::Tokens,
                    limit: 1000,
                    cost: 250,
                },
            ],
            ..Plan::default()
        };
        let info = acq(&q, &plan, 1).await.unwrap().unwrap();
        let (req, tok) = (info.requests.unwrap(), info.tokens.unwrap());
        assert_eq!((req.limit, req.remaining), (10, 9));
        assert!((5_000.0..=6_000.0).contains(&req.reset_ms), "{req:?}");
        assert_eq!((tok.limit, tok.remaining), (1000, 750));
        let info = acq(&q, &plan, 2).await.unwrap().unwrap();
        assert_eq!(info.tokens.unwrap().remaining, 500);
        assert_eq!(info.requests.unwrap().remaining, 8);
        // Over the token limit: refused by the third check, nothing reserved.
        let big = Plan {
            checks: vec![
                plan.checks[0].clone(),
                plan.checks[1].clone(),
                Check::Rate {
                    owner: "k1".into(),
                    kind: LimitKind::Tokens,
                    limit: 1000,
                    cost: 600,
                },
            ],
            ..Plan::default()
        };
        let refused = acq(&q, &big, 3).await.unwrap().unwrap_err();
        assert_eq!(refused.kind, LimitKind::Tokens);
        assert!(refused.retry_after_ms.is_some_and(|r| r > 0.0), "{refused:?}");
        assert_eq!(
            refused.info.requests.unwrap().remaining,
            8,
            "the refused request took nothing"
        );
        assert_eq!(totals(&q).await, (0, 2));
    }

    fn budgets(owner: &str, limits: [i64; 3], cost: i64) -> Vec<Check> {
        ["d:20261126", "m:202611", "total"]
            .iter()
            .zip(limits)
            .map(|(period, limit)| Check::Budget {
                owner: owner.into(),
                period: period.to_string(),
                limit: Usd(limit),
                cost: Usd(cost),
            })
            .collect()
    }

    #[tokio::test]
    async fn the_budgets_of_a_key_and_its_team_share_one_reservation_each() {
        let Some(q) = quota(Duration::from_millis(300)).await else {
            return;
        };
        let plan = |cost| Plan {
            checks: [
                budgets("k:1", [1000, 2000, 3000], cost),
                budgets("t:1", [5000, 400, 5000], cost),
            ]
            .concat(),
            ..Plan::default()
        };
        assert!(acq(&q, &plan(300), 1).await.unwrap().is_ok());
        let team_month = &plan(0).checks[4];
        assert_eq!(q.peek(team_month).await.unwrap(), (None, 0, 0, 300));
        // The team's monthly 400 refuses the next 300, and says whose limit it was.
        let refused = acq(&q, &plan(300), 2).await.unwrap().unwrap_err();
        assert_eq!((refused.kind, refused.owner.as_str()), (LimitKind::Budget, "t:1"));
        q.settle_later(1, plan(300), q.keys(&plan(300)), 0, Usd(50));
        assert!(q.flush(Duration::from_secs(5)).await);
        for c in &plan(0).checks {
            assert_eq!(q.peek(c).await.unwrap(), (None, 0, 50, 0), "{c:?}");
        }
        // A holder that dies: its reservation expires from both owners at the next acquire.
        assert!(acq(&q, &plan(300), 3).await.unwrap().is_ok());
        q.inner.live.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(acq(&q, &plan(300), 4).await.unwrap().is_ok(), "lease 3 expired");
        assert_eq!(q.peek(team_month).await.unwrap(), (None, 0, 50, 300));
    }

    #[tokio::test]
    async fn spend_recorded_by_version_2_is_carried_over() {
        let Some(q) = quota(Duration::from_secs(30)).await else {
            return;
        };
        let mut conn = q.inner.conn.clone();
        let old = budget(0).checks[0].prefixed_key(&q.inner.prefix);
        redis::cmd("HSET")
            .arg(&old)
            .arg("spent")
            .arg(500)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            totals(&q).await,
            (500, 0),
            "read through before the first acquire"
        );
        assert!(
            acq(&q, &budget(600), 1).await.unwrap().is_err(),
            "500 + 600 > 1000"
        );
        assert!(acq(&q, &budget(400), 2).await.unwrap().is_ok());
        q.settle(&budget(400), 2, 0, Usd(100)).await.unwrap();
        assert_eq!(totals(&q).await, (600, 0));

        // A counter a version 2 replica settles into before any version 3 acquire read it.
        let other = Plan {
            checks: budgets("k:2", [1000, 1000, 1000], 10),
            ..Plan::default()
        };
        let old = other.checks[2].prefixed_key(&q.inner.prefix);
        redis::cmd("HSET")
            .arg(&old)
            .arg("spent")
            .arg(70)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        q.settle(&other, 9, 0, Usd(5)).await.unwrap();
        assert_eq!(q.peek(&other.checks[2]).await.unwrap().2, 75);
        assert_eq!(q.peek(&other.checks[0]).await.unwrap().2, 5);
    }
}
