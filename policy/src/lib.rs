//! Policy: who may call (keys), what they may use (model globs), and, as the policy issue lands,
//! quotas, budgets and routing decisions. No HTTP framework here: the gateway adapts these to requests.

pub mod glob;
pub mod keys;

pub use keys::{hash_key, KeyRecord, KeyStore, Keyring, NewKey, PolicyError, SqliteKeyStore};
