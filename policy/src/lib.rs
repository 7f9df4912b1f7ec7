//! Policy: who may call (keys, teams), what they may use (model globs), how much (quotas and budgets),
//! and what it costs (pricing). No HTTP framework here: the gateway adapts these to requests.

pub mod gcra;
pub mod glob;
pub mod keys;
pub mod money;
pub mod pricing;
pub mod quota;
pub mod redis_quota;
pub mod store;

pub use keys::{hash_key, KeyRecord, KeySpec, Keyring, Keys, NewKey, PolicyError, Principal, Team};
pub use money::Usd;
