//! The generic cell rate algorithm, the one rate limiter behind requests-per-minute and
//! tokens-per-minute, in memory and (as the same arithmetic in Lua) in Redis. State is one number,
//! the theoretical arrival time (TAT). A limit of `L` per `period` admits a burst of `L`, then one
//! unit every `period / L`. Costs can be refunded or charged after the fact (token reconciliation).

/// Milliseconds as floats: Lua numbers are doubles, and ms since the epoch keep sub-µs precision.
pub type Ms = f64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// Units left in the current burst after this request (0 when rejected).
    pub remaining: u64,
    /// Time until the limit is fully replenished.
    pub reset_ms: Ms,
    /// When rejected: time until this request would be admitted.
    pub retry_after_ms: Ms,
}

/// Checks `cost` units against `limit` per `period_ms`; returns the verdict and the new TAT to store
/// when allowed.
pub fn check(tat: Ms, now: Ms, limit: u64, period_ms: Ms, cost: u64) -> (Verdict, Ms) {
    let interval = period_ms / limit.max(1) as f64;
    let base = tat.max(now);
    let new_tat = base + cost as f64 * interval;
    let allow_at = new_tat - period_ms;
    if cost > 0 && allow_at > now + 1e-6 {
        let remaining_time = period_ms - (base - now);
        return (
            Verdict {
                allowed: false,
                remaining: (remaining_time / interval).floor().max(0.0) as u64,
                reset_ms: base - now,
                retry_after_ms: allow_at - now,
            },
            tat,
        );
    }
    (
        Verdict {
            allowed: true,
            remaining: ((period_ms - (new_tat - now)) / interval + 1e-9).floor().max(0.0) as u64,
            reset_ms: new_tat - now,
            retry_after_ms: 0.0,
        },
        new_tat,
    )
}

/// Adjusts a stored TAT by `delta` units after the fact (negative refunds, never below `now`).
pub fn adjust(tat: Ms, now: Ms, limit: u64, period_ms: Ms, delta: i64) -> Ms {
    let interval = period_ms / limit.max(1) as f64;
    (tat.max(now) + delta as f64 * interval).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_a_burst_of_limit_then_one_per_interval() {
        let (mut tat, now) = (0.0, 1_000_000.0);
        let mut ok = 0;
        for _ in 0..80 {
            let (v, t) = check(tat, now, 50, 60_000.0, 1);
            if v.allowed {
                ok += 1;
                tat = t;
            }
        }
        assert_eq!(ok, 50);
        let (v, _) = check(tat, now, 50, 60_000.0, 1);
        assert!(!v.allowed && (v.retry_after_ms - 1200.0).abs() < 1e-6);
        let (v, _) = check(tat, now + 1200.0, 50, 60_000.0, 1);
        assert!(v.allowed);
    }

    #[test]
    fn token_costs_and_refunds() {
        let now = 0.0;
        let (v, tat) = check(0.0, now, 1000, 60_000.0, 900);
        assert!(v.allowed && v.remaining == 100);
        assert!(!check(tat, now, 1000, 60_000.0, 200).0.allowed);
        let tat = adjust(tat, now, 1000, 60_000.0, -500);
        let (v, _) = check(tat, now, 1000, 60_000.0, 200);
        assert!(v.allowed && v.remaining == 400);
        assert!(
            !check(0.0, now, 10, 60_000.0, 11).0.allowed,
            "a cost above the limit never passes"
        );
    }
}
