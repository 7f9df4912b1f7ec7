//! Quotas and budgets: check-and-reserve every limit that applies to a request in one atomic step,
//! then settle the actual tokens and cost when the request ends.
//!
//! The gateway builds a [`Plan`] (the key's and its team's requests-per-minute, tokens-per-minute with
//! the estimated tokens, parallel-request lease, and budgets with the estimated maximum cost) and calls
//! [`Quota::acquire`]. Either every check passes and all are reserved together, or none is. The
//! returned [`Lease`] is settled exactly once ([`Lease::settle`]): token estimates are corrected to
//! the actual count, the budget reservation becomes the actual cost, the parallel slot is freed.
//!
//! Backends: [`LocalQuota`] (one node, in memory) and Redis (one Lua script per acquire, another per
//! settle, so every replica shares exact counters; see `redis_quota.rs`). Both run the same
//! arithmetic: GCRA for rates ([`crate::gcra`]), reservations with expiry for budgets and leases.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::{gcra, keys::Principal, money::Usd};

pub const MINUTE_MS: f64 = 60_000.0;

/// Which limit a check enforces (and which fail mode applies when Redis is unreachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests,
    Tokens,
    Parallel,
    Budget,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
            LimitKind::Parallel => "parallel",
            LimitKind::Budget => "budget",
        }
    }
}

/// One limit of one owner (`k:<key id>` or `t:<team id>`).
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// `cost` units against `limit` per minute (GCRA).
    Rate {
        owner: String,
        kind: LimitKind,
        limit: u64,
        cost: u64,
    },
    /// At most `max` requests in flight.
    Parallel { owner: String, max: u64 },
    /// `spent + reserved + cost <= limit` within `period` (`d:YYYYMMDD`, `m:YYYYMM`, `total`).
    Budget {
        owner: String,
        period: String,
        limit: Usd,
        cost: Usd,
    },
}

impl Check {
    pub fn kind(&self) -> LimitKind {
        match self {
            Check::Rate { kind, .. } => *kind,
            Check::Parallel { .. } => LimitKind::Parallel,
            Check::Budget { .. } => LimitKind::Budget,
        }
    }

    /// The state's name (Redis key suffix, local map key).
    pub fn state_key(&self) -> String {
        self.prefixed_key("")
    }

    /// `prefix` + the state's name, built in one allocation (the request path makes several per
    /// request, and `format!` costs several times more).
    pub fn prefixed_key(&self, prefix: &str) -> String {
        let (tag, owner, tail) = match self {
            Check::Rate { owner, kind, .. } => ("q:", owner, kind.as_str()),
            Check::Parallel { owner, .. } => ("q:", owner, "par"),
            Check::Budget { owner, period, .. } => ("b:", owner, period.as_str()),
        };
        let mut key = String::with_capacity(prefix.len() + tag.len() + owner.len() + 1 + tail.len());
        for part in [prefix, tag, owner, ":", tail] {
            key.push_str(part);
        }
        key
    }
}

/// Everything to check for one request.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub checks: Vec<Check>,
    pub est_tokens: u64,
    pub est_cost: Usd,
}

/// UTC civil date from unix days (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The budget periods in force at `now_ms`: `("d:YYYYMMDD", seconds to keep)`, `("m:YYYYMM", ...)`.
pub fn periods(now_ms: i64) -> [(String, u64); 2] {
    let (y, m, d) = civil(now_ms.div_euclid(86_400_000));
    // Zero-padded digits by hand: `format!` with widths costs about ten times more, on every request.
    let digits = |s: &mut String, n: u32, width: u32| {
        for p in (0..width).rev() {
            s.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
        }
    };
    let mut month = String::with_capacity(8);
    month.push_str("m:");
    digits(&mut month, y.clamp(0, 9999) as u32, 4);
    digits(&mut month, m, 2);
    let mut day = String::with_capacity(10);
    day.push('d');
    day.push_str(&month[1..]);
    digits(&mut day, d, 2);
    [(day, 2 * 86_400), (month, 33 * 86_400)]
}

impl Plan {
    /// The checks for a principal: key first, then team; estimates from the request.
    pub fn for_principal(p: &Principal, est_tokens: u64, est_cost: Usd, now_ms: i64) -> Plan {
        let mut checks = Vec::new();
        let [(day, _), (month, _)] = periods(now_ms);
        let total = "total".to_string();
        let owners = std::iter::once((["k:", &p.key.id].concat(), p.key.limits, p.key.budgets)).chain(
            p.team
                .iter()
                .map(|t| (["t:", &t.id].concat(), t.limits, t.budgets)),
        );
        for (owner, limits, budgets) in owners {
            if let Some(limit) = limits.rpm {
                checks.push(Check::Rate {
                    owner: owner.clone(),
                    kind: LimitKind::Requests,
                    limit,
                    cost: 1,
                });
            }
            if let Some(limit) = limits.tpm {
                checks.push(Check::Rate {
                    owner: owner.clone(),
                    kind: LimitKind::Tokens,
                    limit,
                    cost: est_tokens,
                });
            }
            if let Some(max) = limits.max_parallel {
                checks.push(Check::Parallel {
                    owner: owner.clone(),
                    max,
                });
            }
            for (limit, period) in [
                (budgets.daily_usd, &day),
                (budgets.monthly_usd, &month),
                (budgets.total_usd, &total),
            ] {
                if let Some(limit) = limit {
                    checks.push(Check::Budget {
                        owner: owner.clone(),
                        period: period.clone(),
                        limit,
                        cost: est_cost,
                    });
                }
            }
        }
        Plan {
            checks,
            est_tokens,
            est_cost,
        }
    }
}

/// Limit, remaining and reset of the tightest request and token limits, for OpenAI's
/// `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateInfo {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: f64,
}

impl RateInfo {
    /// Keeps the window with the least remaining per kind.
    pub fn note(&mut self, kind: LimitKind, w: Window) {
        let slot = match kind {
            LimitKind::Requests => &mut self.requests,
            LimitKind::Tokens => &mut self.tokens,
            _ => return,
        };
        if slot.is_none_or(|s| w.remaining < s.remaining) {
            *slot = Some(w);
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub kind: LimitKind,
    /// `k:<id>` or `t:<id>`: whose limit.
    pub owner: String,
    /// When a retry may pass; `None` for budgets (they reset with their period).
    pub retry_after_ms: Option<f64>,
    pub info: RateInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("limit reached")]
    Rejected(Rejection),
    #[error("quota store unavailable: {0}")]
    Unavailable(String),
}

/// In-memory state of one node.
#[derive(Default)]
pub struct LocalQuota {
    state: Mutex<LocalState>,
}

#[derive(Default)]
struct LocalState {
    tats: HashMap<String, f64>,
    parallel: HashMap<String, u64>,
    budgets: HashMap<String, BudgetState>,
}

#[derive(Default)]
struct BudgetState {
    spent: i64,
    reserved: HashMap<u64, i64>,
}

impl LocalQuota {
    /// Checks every item; reserves all or nothing.
    pub fn acquire(&self, plan: &Plan, lease: u64, now_ms: f64) -> Result<RateInfo, Rejection> {
        let Ok(mut st) = self.state.lock() else {
            return Ok(RateInfo::default());
        };
        let mut info = RateInfo::default();
        let mut first_fail: Option<Rejection> = None;
        let mut new_tats = Vec::new();
        for c in &plan.checks {
            let key = c.state_key();
            let fail = match c {
                Check::Rate {
                    owner,
                    kind,
                    limit,
                    cost,
                } => {
                    let tat = st.tats.get(&key).copied().unwrap_or(0.0);
                    let (v, new_tat) = gcra::check(tat, now_ms, *limit, MINUTE_MS, *cost);
                    info.note(
                        *kind,
                        Window {
                            limit: *limit,
                            remaining: v.remaining,
                            reset_ms: v.reset_ms,
                        },
                    );
                    if v.allowed {
                        new_tats.push((key, new_tat));
                        None
                    } else {
                        Some((*kind, owner, Some(v.retry_after_ms)))
                    }
                }
                Check::Parallel { owner, max } => (st.parallel.get(&key).copied().unwrap_or(0) >= *max)
                    .then_some((LimitKind::Parallel, owner, Some(1000.0))),
                Check::Budget {
                    owner, limit, cost, ..
                } => {
                    let b = st.budgets.get(&key);
                    let used = b.map_or(0, |b| b.spent + b.reserved.values().sum::<i64>());
                    (used + cost.micros() > limit.micros()).then_some((LimitKind::Budget, owner, None))
                }
            };
            if let (None, Some((kind, owner, retry))) = (&first_fail, fail) {
                first_fail = Some(Rejection {
                    kind,
                    owner: owner.clone(),
                    retry_after_ms: retry,
                    info: RateInfo::default(),
                });
            }
        }
        if let Some(mut r) = first_fail {
            r.info = info;
            return Err(r);
        }
        for (k, t) in new_tats {
            st.tats.insert(k, t);
        }
        for c in &plan.checks {
            match c {
                Check::Parallel { .. } => *st.parallel.entry(c.state_key()).or_default() += 1,
                Check::Budget { cost, .. } => {
                    st.budgets
                        .entry(c.state_key())
                        .or_default()
                        .reserved
                        .insert(lease, cost.micros());
                }
                Check::Rate { .. } => {}
            }
        }
        Ok(info)
    }

    /// Settles a lease: tokens corrected by `token_delta`, budget reservations become `cost`.
    pub fn settle(&self, plan: &Plan, lease: u64, token_delta: i64, cost: Usd, now_ms: f64) {
        let Ok(mut st) = self.state.lock() else { return };
        for c in &plan.checks {
            let key = c.state_key();
            match c {
                Check::Rate {
                    kind: LimitKind::Tokens,
                    limit,
                    ..
                } if token_delta != 0 => {
                    let tat = st.tats.get(&key).copied().unwrap_or(0.0);
                    st.tats
                        .insert(key, gcra::adjust(tat, now_ms, *limit, MINUTE_MS, token_delta));
                }
                Check::Parallel { .. } => {
                    if let Some(n) = st.parallel.get_mut(&key) {
                        *n = n.saturating_sub(1);
                    }
                }
                Check::Budget { .. } => {
                    let b = st.budgets.entry(key).or_default();
                    b.reserved.remove(&lease);
                    b.spent += cost.micros();
                }
                Check::Rate { .. } => {}
            }
        }
    }

    /// The stored TAT of a rate and the in-flight count of a parallel limit, for the admin API.
    pub fn peek(&self, state_key: &str) -> (Option<f64>, u64) {
        self.state
            .lock()
            .map(|st| {
                (
                    st.tats.get(state_key).copied(),
                    st.parallel.get(state_key).copied().unwrap_or(0),
                )
            })
            .unwrap_or((None, 0))
    }

    /// Current spend and reservations of a budget state, for the admin API.
    pub fn budget_used(&self, state_key: &str) -> (i64, i64) {
        self.state
            .lock()
            .ok()
            .and_then(|st| {
                st.budgets
                    .get(state_key)
                    .map(|b| (b.spent, b.reserved.values().sum()))
            })
            .unwrap_or((0, 0))
    }

    /// Drops state that no longer matters (replenished rates, idle slots, past budget periods), so
    /// memory tracks the active keys, not every key ever seen.
    pub fn sweep(&self, now_ms: f64, current_periods: &[String]) {
        let Ok(mut st) = self.state.lock() else { return };
        st.tats.retain(|_, tat| *tat > now_ms);
        st.parallel.retain(|_, n| *n > 0);
        st.budgets.retain(|k, b| {
            let period_current =
                k.ends_with(":total") || current_periods.iter().any(|p| k.ends_with(p.as_str()));
            period_current || !b.reserved.is_empty()
        });
    }
}

/// A granted reservation. Settle it exactly once; the gateway's usage guard does, on every path.
pub struct Lease {
    pub id: u64,
    pub plan: Plan,
    pub info: RateInfo,
    pub backend: Backend,
}

/// Which store granted a lease (a Redis outage under `fail_open` grants locally).
#[derive(Clone)]
pub enum Backend {
    Local(Arc<LocalQuota>),
    /// The store and the lease's Redis keys (one per check of the plan, in order).
    Redis(crate::redis_quota::RedisQuota, Arc<[String]>),
}

pub fn new_lease_id() -> u64 {
    rand::random::<u64>() >> 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Budgets, KeyRecord, Limits, Team};
    use serde_json::Map;

    fn principal(limits: Limits, budgets: Budgets, team: Option<(Limits, Budgets)>) -> Principal {
        let key = KeyRecord {
            id: "key_a".into(),
            name: "a".into(),
            models: vec![],
            team: team.map(|_| "t1".into()),
            limits,
            budgets,
            metadata: Map::new(),
            expires_at: None,
            body_retention: None,
            created_at_ms: 0,
            revoked: false,
            key_hash: String::new(),
        };
        let team = team.map(|(limits, budgets)| {
            Arc::new(Team {
                id: "t1".into(),
                name: "t1".into(),
                limits,
                budgets,
                metadata: Map::new(),
                created_at_ms: 0,
            })
        });
        Principal {
            key: Arc::new(key),
            team,
        }
    }

    #[test]
    fn periods_are_utc_days_and_months() {
        assert_eq!(periods(0)[0].0, "d:19700101");
        assert_eq!(periods(1_795_637_369_000)[0].0, "d:20261125");
        assert_eq!(periods(1_795_637_369_000)[1].0, "m:202611");
        assert_eq!(periods(951_782_400_000)[0].0, "d:20000229");
    }

    #[test]
    fn key_and_team_limits_both_apply_all_or_nothing() {
        let q = LocalQuota::default();
        let p = principal(
            Limits {
                rpm: Some(3),
                ..Default::default()
            },
            Budgets::default(),
            Some((
                Limits {
                    rpm: Some(2),
                    ..Default::default()
                },
                Budgets::default(),
            )),
        );
        let plan = Plan::for_principal(&p, 10, Usd(0), 0);
        assert!(q.acquire(&plan, 1, 0.0).is_ok());
        assert!(q.acquire(&plan, 2, 0.0).is_ok());
        let r = q.acquire(&plan, 3, 0.0).unwrap_err();
        assert_eq!((r.kind, r.owner.as_str()), (LimitKind::Requests, "t:t1"));
        // The key's own counter was not charged by the refused request: after the team window
        // frees one slot (30 s), exactly one more passes.
        assert!(q.acquire(&plan, 4, 30_000.0).is_ok());
        assert!(q.acquire(&plan, 5, 30_000.0).is_err());
    }

    #[test]
    fn budgets_reserve_then_settle_to_actual_cost() {
        let q = LocalQuota::default();
        let budgets = Budgets {
            total_usd: Some(Usd(1_000)),
            ..Default::default()
        };
        let p = principal(
            Limits {
                max_parallel: Some(5),
                ..Default::default()
            },
            budgets,
            None,
        );
        let plan = Plan::for_principal(&p, 0, Usd(600), 0);
        assert!(q.acquire(&plan, 1, 0.0).is_ok());
        let r = q.acquire(&plan, 2, 0.0).unwrap_err();
        assert_eq!(r.kind, LimitKind::Budget);
        q.settle(&plan, 1, 0, Usd(100), 0.0);
        assert!(
            q.acquire(&plan, 3, 0.0).is_ok(),
            "100 spent + 600 reserved fits 1000"
        );
        q.settle(&plan, 3, 0, Usd(900), 0.0);
        assert_eq!(q.budget_used("b:k:key_a:total"), (1_000, 0));
        assert!(q.acquire(&plan, 4, 0.0).is_err());
    }

    #[test]
    fn parallel_slots_are_freed_on_settle_and_sweep_forgets_idle_state() {
        let q = LocalQuota::default();
        let p = principal(
            Limits {
                max_parallel: Some(1),
                tpm: Some(100),
                ..Default::default()
            },
            Budgets::default(),
            None,
        );
        let plan = Plan::for_principal(&p, 50, Usd(0), 0);
        assert!(q.acquire(&plan, 1, 0.0).is_ok());
        assert_eq!(q.acquire(&plan, 2, 0.0).unwrap_err().kind, LimitKind::Parallel);
        q.settle(&plan, 1, -40, Usd(0), 0.0);
        let info = q.acquire(&plan, 3, 0.0).unwrap();
        assert_eq!(
            info.tokens.unwrap().remaining,
            40,
            "10 actual + 50 reserved of 100"
        );
        q.settle(&plan, 3, 0, Usd(0), 0.0);
        q.sweep(1e9, &[]);
        assert!(q.state.lock().unwrap().tats.is_empty());
    }
}
