//! Quotas shared by every replica through Redis. One Lua script per acquire checks and reserves every
//! limit of a request atomically (the Redis server runs scripts one at a time, so no replica ever sees a
//! half-applied reservation); one script per settle applies the actual tokens and cost. Scripts are
//! loaded once and called by SHA (`EVALSHA`, reloaded on `NOSCRIPT`), and carry a version in their
//! name. Time comes from the Redis server (`TIME`), so replicas with skewed clocks still agree.
//!
//! Parallel-request leases and budget reservations expire after `lease_ttl` unless the holder renews
//! them (every third of the TTL while the request runs), so a replica that dies frees its slots.
//!
//! Every script costs O(log n) in the requests in flight, never O(n): a budget hash keeps running
//! `spent` and `reserved` totals beside one `r:<lease>` amount per reservation, and a sorted set
//! `<budget key>:exp` orders the reservations by expiry, so an acquire drops only what has expired.
//! (Version 1 summed every live reservation on each acquire: with thousands of open streams on one
//! budget each check took milliseconds inside Redis, which serialises all replicas.)

use std::{sync::Arc, time::Duration};

use redis::Script;

use crate::{
    money::Usd,
    quota::{Check, LimitKind, Plan, RateInfo, Rejection, Window, MINUTE_MS},
};

/// Check-and-reserve, all or nothing. ARGV[1] = lease id, ARGV[2] = lease TTL ms; then per key:
/// `rate limit period cost` | `par max` | `bud limit cost keep_s`. Returns
/// `{ok, failed_index, retry_after_ms, remaining_1, reset_ms_1, remaining_2, ...}`.
const ACQUIRE_V2: &str = r#"
-- tollgate_quota_acquire_v2
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local lease, ttl = ARGV[1], tonumber(ARGV[2])
local a, out, apply, failed, retry = 3, {}, {}, 0, '0'
local function fmt(x) return string.format('%.3f', x) end
for i = 1, #KEYS do
  local kind = ARGV[a]
  if kind == 'rate' then
    local limit, period, cost = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]); a = a + 4
    local interval = period / limit
    local base = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now)
    local new_tat = base + cost * interval
    if cost > 0 and new_tat - period > now + 0.000001 then
      if failed == 0 then failed = i; retry = fmt(new_tat - period - now) end
      out[#out+1] = fmt(math.max(0, math.floor((period - (base - now)) / interval)))
      out[#out+1] = fmt(base - now)
    else
      apply[#apply+1] = {'rate', KEYS[i], new_tat}
      out[#out+1] = fmt(math.max(0, math.floor((period - (new_tat - now)) / interval + 0.000000001)))
      out[#out+1] = fmt(new_tat - now)
    end
  elseif kind == 'par' then
    local max = tonumber(ARGV[a+1]); a = a + 2
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    local n = redis.call('ZCARD', KEYS[i])
    if n >= max then
      if failed == 0 then failed = i; retry = '1000' end
      out[#out+1] = '0'; out[#out+1] = '0'
    else
      apply[#apply+1] = {'par', KEYS[i]}
      out[#out+1] = fmt(max - n - 1); out[#out+1] = '0'
    end
  else
    local limit, cost, keep = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]); a = a + 4
    local exp = KEYS[i] .. ':exp'
    local dead = redis.call('ZRANGEBYSCORE', exp, '-inf', now)
    for _, l in ipairs(dead) do
      local amt = tonumber(redis.call('HGET', KEYS[i], 'r:' .. l) or '0') or 0
      redis.call('HDEL', KEYS[i], 'r:' .. l)
      if amt ~= 0 then redis.call('HINCRBY', KEYS[i], 'reserved', -amt) end
    end
    if #dead > 0 then redis.call('ZREMRANGEBYSCORE', exp, '-inf', now) end
    local totals = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
    local used = tonumber(totals[1] or '0') + tonumber(totals[2] or '0')
    if used + cost > limit then
      if failed == 0 then failed = i; retry = '-1' end
      out[#out+1] = fmt(math.max(0, limit - used)); out[#out+1] = '0'
    else
      apply[#apply+1] = {'bud', KEYS[i], cost, keep}
      out[#out+1] = fmt(limit - used - cost); out[#out+1] = '0'
    end
  end
end
if failed > 0 then
  return {0, failed, retry, unpack(out)}
end
for _, p in ipairs(apply) do
  if p[1] == 'rate' then
    redis.call('SET', p[2], fmt(p[3]), 'PX', math.ceil(p[3] - now) + 1000)
  elseif p[1] == 'par' then
    redis.call('ZADD', p[2], now + ttl, lease)
    redis.call('PEXPIRE', p[2], ttl * 2)
  else
    redis.call('HSET', p[2], 'r:' .. lease, p[3])
    redis.call('HINCRBY', p[2], 'reserved', p[3])
    redis.call('ZADD', p[2] .. ':exp', now + ttl, lease)
    if p[4] > 0 then
      redis.call('EXPIRE', p[2], p[4])
      redis.call('EXPIRE', p[2] .. ':exp', p[4])
    end
  end
end
return {1, 0, '0', unpack(out)}
"#;

/// Settle: per key `rate limit period delta` | `par` | `bud actual keep_s`.
const SETTLE_V2: &str = r#"
-- tollgate_quota_settle_v2
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local lease, a = ARGV[1], 2
for i = 1, #KEYS do
  local kind = ARGV[a]
  if kind == 'rate' then
    local limit, period, delta = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]); a = a + 4
    local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now)
    local new_tat = math.max(tat + delta * period / limit, now)
    redis.call('SET', KEYS[i], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
  elseif kind == 'par' then
    a = a + 1
    redis.call('ZREM', KEYS[i], lease)
  else
    local actual, keep = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]); a = a + 3
    -- Only a reservation still in the expiry set is still counted in `reserved`.
    if redis.call('ZREM', KEYS[i] .. ':exp', lease) == 1 then
      local amt = tonumber(redis.call('HGET', KEYS[i], 'r:' .. lease) or '0') or 0
      if amt ~= 0 then redis.call('HINCRBY', KEYS[i], 'reserved', -amt) end
    end
    redis.call('HDEL', KEYS[i], 'r:' .. lease)
    redis.call('HINCRBY', KEYS[i], 'spent', actual)
    if keep > 0 then redis.call('EXPIRE', KEYS[i], keep) end
  end
end
return 1
"#;

/// Renew: push the expiry of a running request's leases and reservations forward.
const RENEW_V2: &str = r#"
-- tollgate_quota_renew_v2
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local lease, ttl = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS do
  if ARGV[i + 2] == 'par' then
    redis.call('ZADD', KEYS[i], 'XX', now + ttl, lease)
  else
    redis.call('ZADD', KEYS[i] .. ':exp', 'XX', now + ttl, lease)
  end
end
return 1
"#;

#[derive(Clone)]
pub struct RedisQuota {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    scripts: Arc<[Script; 3]>,
    pub lease_ttl: Duration,
}

fn keep_secs(period: &str) -> u64 {
    match period.as_bytes().first() {
        Some(b'd') => 2 * 86_400,
        Some(b'm') => 33 * 86_400,
        _ => 0,
    }
}

impl RedisQuota {
    pub fn new(conn: redis::aio::ConnectionManager, prefix: &str, lease_ttl: Duration) -> RedisQuota {
        RedisQuota {
            conn,
            prefix: prefix.to_string(),
            scripts: Arc::new([
                Script::new(ACQUIRE_V2),
                Script::new(SETTLE_V2),
                Script::new(RENEW_V2),
            ]),
            lease_ttl,
        }
    }

    fn key(&self, c: &Check) -> String {
        format!("{}{}", self.prefix, c.state_key())
    }

    /// One round trip. `Ok(Err(_))` is a refusal; `Err(_)` means Redis could not answer.
    pub async fn acquire(
        &self,
        plan: &Plan,
        lease: u64,
    ) -> Result<Result<RateInfo, Rejection>, redis::RedisError> {
        let mut inv = self.scripts[0].prepare_invoke();
        inv.arg(lease).arg(self.lease_ttl.as_millis() as u64);
        for c in &plan.checks {
            inv.key(self.key(c));
            match c {
                Check::Rate { limit, cost, .. } => inv.arg("rate").arg(*limit).arg(MINUTE_MS).arg(*cost),
                Check::Parallel { max, .. } => inv.arg("par").arg(*max),
                Check::Budget {
                    period, limit, cost, ..
                } => inv
                    .arg("bud")
                    .arg(limit.micros())
                    .arg(cost.micros())
                    .arg(keep_secs(period)),
            };
        }
        let mut conn = self.conn.clone();
        let (ok, failed, retry, rest): (i64, usize, String, Vec<String>) = {
            let raw: Vec<redis::Value> = inv.invoke_async(&mut conn).await?;
            let text = |v: &redis::Value| -> String {
                match v {
                    redis::Value::Int(i) => i.to_string(),
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    redis::Value::SimpleString(s) => s.clone(),
                    _ => String::new(),
                }
            };
            let num = |v: Option<&redis::Value>| v.map(text).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
            (
                num(raw.first()),
                num(raw.get(1)) as usize,
                raw.get(2).map(text).unwrap_or_default(),
                raw.iter().skip(3).map(text).collect(),
            )
        };
        let mut info = RateInfo::default();
        for (i, c) in plan.checks.iter().enumerate() {
            if let Check::Rate { kind, limit, .. } = c {
                let remaining = rest.get(2 * i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) as u64;
                let reset_ms = rest
                    .get(2 * i + 1)
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(0.0);
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
        if ok == 1 {
            return Ok(Ok(info));
        }
        let c = plan.checks.get(failed.saturating_sub(1));
        let (kind, owner) = match c {
            Some(Check::Rate { kind, owner, .. }) => (*kind, owner.clone()),
            Some(Check::Parallel { owner, .. }) => (LimitKind::Parallel, owner.clone()),
            Some(Check::Budget { owner, .. }) => (LimitKind::Budget, owner.clone()),
            None => (LimitKind::Requests, String::new()),
        };
        let retry_after_ms = retry.parse::<f64>().ok().filter(|r| *r >= 0.0);
        Ok(Err(Rejection {
            kind,
            owner,
            retry_after_ms,
            info,
        }))
    }

    pub async fn settle(
        &self,
        plan: &Plan,
        lease: u64,
        token_delta: i64,
        cost: Usd,
    ) -> Result<(), redis::RedisError> {
        let mut inv = self.scripts[1].prepare_invoke();
        inv.arg(lease);
        let mut any = false;
        for c in &plan.checks {
            match c {
                Check::Rate {
                    kind: LimitKind::Tokens,
                    limit,
                    ..
                } if token_delta != 0 => {
                    inv.key(self.key(c))
                        .arg("rate")
                        .arg(*limit)
                        .arg(MINUTE_MS)
                        .arg(token_delta);
                }
                Check::Parallel { .. } => {
                    inv.key(self.key(c)).arg("par");
                }
                Check::Budget { period, .. } => {
                    inv.key(self.key(c))
                        .arg("bud")
                        .arg(cost.micros())
                        .arg(keep_secs(period));
                }
                Check::Rate { .. } => continue,
            }
            any = true;
        }
        if any {
            let mut conn = self.conn.clone();
            inv.invoke_async::<i64>(&mut conn).await?;
        }
        Ok(())
    }

    /// Keeps a running request's leases alive; returns `None` when the plan holds nothing that expires.
    pub fn spawn_renewal(&self, plan: &Plan, lease: u64) -> Option<tokio::task::JoinHandle<()>> {
        let items: Vec<(String, &'static str)> = plan
            .checks
            .iter()
            .filter_map(|c| match c {
                Check::Parallel { .. } => Some((self.key(c), "par")),
                Check::Budget { .. } => Some((self.key(c), "bud")),
                Check::Rate { .. } => None,
            })
            .collect();
        if items.is_empty() {
            return None;
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            let every = this.lease_ttl / 3;
            loop {
                tokio::time::sleep(every).await;
                let mut inv = this.scripts[2].prepare_invoke();
                inv.arg(lease).arg(this.lease_ttl.as_millis() as u64);
                for (k, kind) in &items {
                    inv.key(k).arg(*kind);
                }
                let mut conn = this.conn.clone();
                if let Err(e) = inv.invoke_async::<i64>(&mut conn).await {
                    tracing::warn!(error = %e, "quota lease renewal failed; the lease may expire early");
                }
            }
        }))
    }
}

impl RedisQuota {
    /// Reads a check's current state: `(tat, in_flight, spent, reserved)`; for the admin API.
    pub async fn peek(&self, c: &Check) -> Result<(Option<f64>, u64, i64, i64), redis::RedisError> {
        let key = self.key(c);
        let mut conn = self.conn.clone();
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
                // `reserved` may still count reservations that expired since the last acquire.
                let (spent, reserved): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
                    .arg(&key)
                    .arg("spent")
                    .arg("reserved")
                    .query_async(&mut conn)
                    .await?;
                Ok((None, 0, spent.unwrap_or(0), reserved.unwrap_or(0)))
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

    async fn totals(q: &RedisQuota) -> (i64, i64) {
        let (_, _, spent, reserved) = q.peek(&budget(0).checks[0]).await.unwrap();
        (spent, reserved)
    }

    #[tokio::test]
    async fn budget_reservations_keep_running_totals_and_expire_without_a_scan() {
        let Some(q) = quota(Duration::from_millis(300)).await else {
            return;
        };
        assert!(q.acquire(&budget(600), 1).await.unwrap().is_ok());
        assert!(
            q.acquire(&budget(600), 2).await.unwrap().is_err(),
            "600 + 600 > 1000"
        );
        assert_eq!(totals(&q).await, (0, 600));

        // Lease 1's holder died: its reservation expires and the next acquire drops it.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(q.acquire(&budget(600), 2).await.unwrap().is_ok());
        assert_eq!(totals(&q).await, (0, 600));

        // Settling replaces the reservation by the actual cost.
        q.settle(&budget(600), 2, 0, Usd(100)).await.unwrap();
        assert_eq!(totals(&q).await, (100, 0));
        assert!(
            q.acquire(&budget(900), 3).await.unwrap().is_ok(),
            "100 + 900 = 1000"
        );
        assert!(q.acquire(&budget(1), 4).await.unwrap().is_err());

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
            assert!(q.acquire(&budget(2), lease).await.unwrap().is_ok(), "{lease}");
        }
        assert_eq!(totals(&q).await, (0, 1000));
        assert!(
            q.acquire(&budget(1), 9999).await.unwrap().is_err(),
            "the budget is fully reserved"
        );
        for lease in 0..500 {
            q.settle(&budget(2), lease, 0, Usd(1)).await.unwrap();
        }
        assert_eq!(totals(&q).await, (500, 0));
    }
}
