//! Routing decisions: the order in which a request tries targets (the model's own, by its strategy,
//! then its fallback models'), and per-target health: a circuit breaker (opens after consecutive
//! failures or a failure ratio, lets one probe through after a cooldown) and a latency EWMA for the
//! least-latency strategy.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::Rng;
use tollgate_adapters::Operation;

use crate::config::{Config, Model, ModelTarget, RoutingConfig, Strategy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

impl Circuit {
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Default)]
struct TargetHealth {
    consecutive_failures: u32,
    window: VecDeque<bool>,
    open_until: Option<Instant>,
    probing: bool,
    /// Latency EWMA in ms; `None` until the first success.
    ewma_ms: Option<f64>,
}

/// Health of every target, shared by all requests of this replica.
#[derive(Default)]
pub struct Health {
    targets: Mutex<HashMap<String, TargetHealth>>,
}

const EWMA_ALPHA: f64 = 0.3;

impl Health {
    /// May this target be tried now? An open circuit past its cooldown admits exactly one probe.
    pub fn admit(&self, id: &str) -> bool {
        let Ok(mut all) = self.targets.lock() else {
            return true;
        };
        let h = all.entry(id.to_string()).or_default();
        match h.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) if h.probing => false,
            Some(_) => {
                h.probing = true;
                true
            }
        }
    }

    /// Records an attempt's outcome; a failure may open the circuit, a success closes it.
    pub fn record(&self, id: &str, ok: bool, latency: Duration, cfg: &RoutingConfig) {
        let Ok(mut all) = self.targets.lock() else { return };
        let h = all.entry(id.to_string()).or_default();
        h.window.push_back(ok);
        while h.window.len() > cfg.breaker_window as usize {
            h.window.pop_front();
        }
        if ok {
            h.consecutive_failures = 0;
            h.open_until = None;
            h.probing = false;
            let ms = latency.as_secs_f64() * 1000.0;
            h.ewma_ms = Some(h.ewma_ms.map_or(ms, |e| e + EWMA_ALPHA * (ms - e)));
            return;
        }
        h.consecutive_failures += 1;
        let failures = h.window.iter().filter(|ok| !**ok).count();
        let seen_enough = h.window.len() * 2 >= cfg.breaker_window as usize;
        let ratio_tripped = seen_enough && failures as f64 / h.window.len() as f64 >= cfg.breaker_error_ratio;
        if h.probing || h.consecutive_failures >= cfg.breaker_failures || ratio_tripped {
            h.open_until = Some(Instant::now() + Duration::from_millis(cfg.breaker_cooldown_ms));
            h.probing = false;
            h.window.clear();
            tracing::warn!(target = id, "circuit opened");
        }
    }

    pub fn circuit(&self, id: &str) -> Circuit {
        let Ok(all) = self.targets.lock() else {
            return Circuit::Closed;
        };
        match all.get(id).and_then(|h| h.open_until) {
            None => Circuit::Closed,
            Some(until) if Instant::now() < until => Circuit::Open,
            Some(_) => Circuit::HalfOpen,
        }
    }

    fn ewma(&self, id: &str) -> f64 {
        self.targets
            .lock()
            .ok()
            .and_then(|all| all.get(id).and_then(|h| h.ewma_ms))
            .unwrap_or(0.0)
    }

    /// Every target's circuit, for `/metrics`.
    pub fn snapshot(&self) -> Vec<(String, Circuit)> {
        let ids: Vec<String> = self
            .targets
            .lock()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default();
        let mut out: Vec<(String, Circuit)> = ids
            .into_iter()
            .map(|id| {
                let c = self.circuit(&id);
                (id, c)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// One model's targets in the order this request tries them.
fn order<'a>(model: &'a Model, op: Operation, health: &Health) -> Vec<&'a ModelTarget> {
    let serves = |t: &&ModelTarget| {
        t.provider
            .adapter
            .as_ref()
            .is_none_or(|a| a.for_model(&t.model).supports(op))
    };
    let mut targets: Vec<&ModelTarget> = model
        .targets
        .iter()
        .filter(|t| t.provider.available)
        .filter(serves)
        .collect();
    let mut rng = rand::rng();
    match model.strategy {
        Strategy::Ordered => {}
        Strategy::Weighted => {
            // Weighted random order without replacement (Efraimidis-Spirakis keys).
            let mut keyed: Vec<(f64, &ModelTarget)> = targets
                .iter()
                .map(|t| (rng.random::<f64>().powf(1.0 / f64::from(t.weight.max(1))), *t))
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
            targets = keyed.into_iter().map(|(_, t)| t).collect();
        }
        Strategy::LeastLatency => {
            targets.sort_by(|a, b| health.ewma(&a.id).total_cmp(&health.ewma(&b.id)));
            // Power of two choices: the faster of two random targets goes first, so a slightly
            // slower target still gets traffic and its EWMA stays current.
            if targets.len() > 2 {
                let i = rng.random_range(0..targets.len());
                let mut j = rng.random_range(0..targets.len() - 1);
                if j >= i {
                    j += 1;
                }
                let pick = if health.ewma(&targets[i].id) <= health.ewma(&targets[j].id) {
                    i
                } else {
                    j
                };
                let first = targets.remove(pick);
                targets.insert(0, first);
            }
        }
    }
    targets
}

/// The request's attempt order: the model's targets, then each fallback model's (when the key may
/// use it), each target once.
pub fn plan<'a>(
    config: &'a Config,
    model: &'a Arc<Model>,
    op: Operation,
    health: &Health,
    allowed: impl Fn(&str) -> bool,
) -> Vec<(&'a ModelTarget, &'a Model)> {
    let mut out: Vec<(&ModelTarget, &Model)> = order(model, op, health)
        .into_iter()
        .map(|t| (t, model.as_ref()))
        .collect();
    for name in &model.fallbacks {
        let Some(fb) = config.models.get(name) else {
            continue;
        };
        if !allowed(&fb.name) {
            continue;
        }
        for t in order(fb, op, health) {
            if !out.iter().any(|(o, _)| o.id == t.id) {
                out.push((t, fb.as_ref()));
            }
        }
    }
    out
}

/// Exponential backoff with full jitter: a random wait in `[base * 2^n / 2, base * 2^n]`, capped.
pub fn backoff(cfg: &RoutingConfig, attempt: u32) -> Duration {
    let ceiling = cfg
        .retry_base_ms
        .saturating_mul(1u64 << attempt.min(16))
        .min(cfg.retry_max_ms)
        .max(1);
    Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RoutingConfig {
        RoutingConfig {
            breaker_failures: 3,
            breaker_cooldown_ms: 50,
            ..RoutingConfig::default()
        }
    }

    #[test]
    fn circuit_opens_after_consecutive_failures_then_admits_one_probe() {
        let h = Health::default();
        let c = cfg();
        for _ in 0..3 {
            assert!(h.admit("t"));
            h.record("t", false, Duration::ZERO, &c);
        }
        assert_eq!(h.circuit("t"), Circuit::Open);
        assert!(!h.admit("t"));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(h.circuit("t"), Circuit::HalfOpen);
        assert!(h.admit("t"), "one probe");
        assert!(!h.admit("t"), "only one");
        h.record("t", false, Duration::ZERO, &c);
        assert_eq!(h.circuit("t"), Circuit::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.admit("t"));
        h.record("t", true, Duration::from_millis(5), &c);
        assert_eq!(h.circuit("t"), Circuit::Closed);
        assert!(h.admit("t") && h.admit("t"));
    }

    #[test]
    fn failure_ratio_opens_the_circuit() {
        let h = Health::default();
        let c = RoutingConfig {
            breaker_failures: 100,
            breaker_window: 10,
            breaker_error_ratio: 0.5,
            ..cfg()
        };
        for i in 0..4 {
            h.record("t", i % 2 == 0, Duration::ZERO, &c);
        }
        assert_eq!(
            h.circuit("t"),
            Circuit::Closed,
            "fewer calls than half the window: no verdict yet"
        );
        h.record("t", true, Duration::ZERO, &c);
        h.record("t", false, Duration::ZERO, &c);
        assert_eq!(
            h.circuit("t"),
            Circuit::Open,
            "3 failures in 6 calls reach the 0.5 ratio"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = RoutingConfig {
            retry_base_ms: 100,
            retry_max_ms: 1000,
            ..RoutingConfig::default()
        };
        for _ in 0..50 {
            let b0 = backoff(&c, 0).as_millis();
            assert!((50..=100).contains(&b0));
            let b5 = backoff(&c, 5).as_millis();
            assert!((500..=1000).contains(&b5));
        }
    }
}
