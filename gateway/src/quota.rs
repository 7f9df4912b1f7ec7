//! The request path's view of quotas: pick the backend (Redis shared by every replica, or this
//! process's memory), apply the configured fail mode when Redis cannot answer, and settle leases.

use std::sync::{atomic::Ordering, Arc};

use tollgate_policy::{
    quota::{new_lease_id, Backend, Lease, LimitKind, LocalQuota, Plan, QuotaError},
    redis_quota::RedisQuota,
    Usd,
};

use crate::{
    config::{FailMode, FailModes},
    metrics::Metrics,
    usage::now_ms,
};

pub struct QuotaService {
    pub local: Arc<LocalQuota>,
    pub redis: Option<RedisQuota>,
    pub modes: FailModes,
    pub metrics: Arc<Metrics>,
}

impl QuotaService {
    fn mode(&self, kind: LimitKind) -> FailMode {
        match kind {
            LimitKind::Requests => self.modes.requests,
            LimitKind::Tokens => self.modes.tokens,
            LimitKind::Parallel => self.modes.parallel,
            LimitKind::Budget => self.modes.budget,
        }
    }

    /// Checks and reserves every limit of `plan`, or says which one refused.
    pub async fn acquire(&self, plan: Plan) -> Result<Lease, QuotaError> {
        let id = new_lease_id();
        if plan.checks.is_empty() {
            return Ok(Lease {
                id,
                plan,
                info: Default::default(),
                backend: Backend::Local(Arc::clone(&self.local)),
            });
        }
        if let Some(redis) = &self.redis {
            let keys = redis.keys(&plan);
            match redis.acquire(&plan, &keys, id).await {
                Ok(Ok(info)) => {
                    return Ok(Lease {
                        id,
                        plan,
                        info,
                        backend: Backend::Redis(redis.clone(), keys),
                    });
                }
                Ok(Err(rejection)) => {
                    self.metrics.reject(rejection.kind.as_str());
                    return Err(QuotaError::Rejected(rejection));
                }
                Err(e) => {
                    // A timed-out script may still run after we gave up on it: release what it may
                    // have reserved, or the leases leak for a whole TTL, and every later acquire
                    // scans them (an overload would feed on itself until the TTL passes).
                    let (redis, held) = (redis.clone(), plan.clone());
                    tokio::spawn(async move {
                        if let Err(e) = redis.settle(&held, id, 0, Usd(0)).await {
                            tracing::warn!(error = %e, "releasing a timed-out quota reservation failed; it will expire");
                        }
                    });
                    if let Some(c) = plan
                        .checks
                        .iter()
                        .find(|c| self.mode(c.kind()) == FailMode::FailClosed)
                    {
                        self.metrics.quota_store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, limit = c.kind().as_str(), "quota store unreachable: failing closed");
                        return Err(QuotaError::Unavailable(format!(
                            "the quota store is unreachable and the {} limit fails closed",
                            c.kind().as_str()
                        )));
                    }
                    self.metrics.quota_fallbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "quota store unreachable: using this replica's local limiter");
                }
            }
        }
        match self.local.acquire(&plan, id, now_ms() as f64) {
            Ok(info) => Ok(Lease {
                id,
                plan,
                info,
                backend: Backend::Local(Arc::clone(&self.local)),
            }),
            Err(rejection) => {
                self.metrics.reject(rejection.kind.as_str());
                Err(QuotaError::Rejected(rejection))
            }
        }
    }
}

/// Settles a lease with the actual tokens and cost; unknown values keep the estimate (a request whose
/// usage is unknown is charged what was reserved, so budgets never leak).
pub fn settle(lease: Lease, tokens: Option<u64>, cost: Option<Usd>) {
    // Saturating: a count past i64::MAX (a provider's absurd usage) must not wrap into a refund.
    let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let delta = tokens.map_or(0, |t| signed(t).saturating_sub(signed(lease.plan.est_tokens)));
    let cost = cost.unwrap_or(lease.plan.est_cost);
    match lease.backend {
        Backend::Local(q) => q.settle(&lease.plan, lease.id, delta, cost, now_ms() as f64),
        Backend::Redis(redis, keys) => redis.settle_later(lease.id, lease.plan, keys, delta, cost),
    }
}

/// Each limit of a key and its team, with what is left now: the body of `GET /admin/keys/{id}/usage`.
pub async fn status(
    q: &QuotaService,
    key: &tollgate_policy::KeyRecord,
    team: Option<&tollgate_policy::Team>,
) -> serde_json::Value {
    use serde_json::json;
    use tollgate_policy::quota::Check;
    let principal = tollgate_policy::Principal {
        key: Arc::new(key.clone()),
        team: team.map(|t| Arc::new(t.clone())),
    };
    let now = now_ms();
    let plan = Plan::for_principal(&principal, 0, Usd(0), now);
    let mut out = Vec::new();
    for c in &plan.checks {
        let (tat, in_flight, spent, reserved) = match &q.redis {
            Some(r) => {
                match r.peek(c).await {
                    Ok(v) => v,
                    Err(e) => {
                        out.push(json!({"limit": c.kind().as_str(), "error": format!("quota store unreachable: {e}")}));
                        continue;
                    }
                }
            }
            None => {
                let (tat, n) = q.local.peek(&c.state_key());
                let (spent, reserved) = q.local.budget_used(&c.state_key());
                (tat, n, spent, reserved)
            }
        };
        let entry = match c {
            Check::Rate {
                owner, kind, limit, ..
            } => {
                let interval = tollgate_policy::quota::MINUTE_MS / *limit as f64;
                let busy = tat.map_or(0.0, |t| (t - now as f64).max(0.0));
                let remaining = ((tollgate_policy::quota::MINUTE_MS - busy) / interval)
                    .floor()
                    .max(0.0) as u64;
                json!({"owner": owner, "limit": kind.as_str(), "per_minute": limit, "remaining": remaining, "reset_ms": busy.round()})
            }
            Check::Parallel { owner, max } => {
                json!({"owner": owner, "limit": "parallel", "max": max, "in_flight": in_flight})
            }
            Check::Budget {
                owner, period, limit, ..
            } => json!({
                "owner": owner, "limit": "budget", "period": period, "budget_usd": limit,
                "spent_usd": Usd(spent), "reserved_usd": Usd(reserved), "remaining_usd": Usd((limit.micros() - spent - reserved).max(0)),
            }),
        };
        out.push(entry);
    }
    serde_json::Value::Array(out)
}
