//! Virtual API keys. A key is shown once at creation (`tg-` + 48 hex characters); only its SHA-256 is
//! stored. Authentication hashes the presented key, looks the hash up in an in-memory [`Keyring`]
//! (refreshed from the store, so keys created or revoked by another process are honoured within a
//! refresh interval) and confirms the match in constant time.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::glob::glob_match;

pub const KEY_PREFIX: &str = "tg-";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("key store error: {0}")]
    Store(String),
    #[error("invalid key")]
    InvalidKey,
    #[error("key revoked")]
    Revoked,
}

impl From<rusqlite::Error> for PolicyError {
    fn from(e: rusqlite::Error) -> Self {
        PolicyError::Store(e.to_string())
    }
}

/// A key as stored: everything but the key itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// Model-name globs; empty means every model.
    pub models: Vec<String>,
    pub created_at_ms: i64,
    pub revoked: bool,
    #[serde(skip)]
    pub hash: [u8; 32],
}

impl KeyRecord {
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|g| glob_match(g, model))
    }
}

/// A freshly created key: the record plus the one-time plaintext.
#[derive(Debug)]
pub struct NewKey {
    pub record: KeyRecord,
    pub key: String,
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Where keys live. Implementations are synchronous; callers on an async runtime use `spawn_blocking`.
pub trait KeyStore: Send + Sync {
    fn create(&self, name: &str, models: &[String]) -> Result<NewKey, PolicyError>;
    fn list(&self) -> Result<Vec<KeyRecord>, PolicyError>;
    /// Marks a key revoked; `Ok(false)` when no such key exists.
    fn revoke(&self, id: &str) -> Result<bool, PolicyError>;
}

/// The embedded store: one SQLite database (a file, or `:memory:`).
pub struct SqliteKeyStore {
    conn: Mutex<Connection>,
}

impl SqliteKeyStore {
    pub fn open(path: &str) -> Result<Self, PolicyError> {
        let conn = if path == ":memory:" {
            Connection::open_in_memory()?
        } else {
            if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| PolicyError::Store(e.to_string()))?;
            }
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS api_keys (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                key_hash BLOB NOT NULL UNIQUE,
                models TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL,
                revoked INTEGER NOT NULL DEFAULT 0
            );",
        )?;
        Ok(SqliteKeyStore {
            conn: Mutex::new(conn),
        })
    }

    /// Changes whenever another connection (process) committed to the database: a cheap "did anything
    /// change" check before reloading.
    pub fn data_version(&self) -> Result<i64, PolicyError> {
        Ok(self.conn()?.query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, PolicyError> {
        self.conn
            .lock()
            .map_err(|_| PolicyError::Store("key store lock poisoned".into()))
    }
}

impl KeyStore for SqliteKeyStore {
    fn create(&self, name: &str, models: &[String]) -> Result<NewKey, PolicyError> {
        let key = format!("{KEY_PREFIX}{}", random_hex(24));
        let record = KeyRecord {
            id: format!("key_{}", random_hex(8)),
            name: name.to_string(),
            models: models.to_vec(),
            created_at_ms: now_ms(),
            revoked: false,
            hash: hash_key(&key),
        };
        let models_json =
            serde_json::to_string(&record.models).map_err(|e| PolicyError::Store(e.to_string()))?;
        self.conn()?.execute(
            "INSERT INTO api_keys (id, name, key_hash, models, created_at_ms, revoked) VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            params![record.id, record.name, &record.hash[..], models_json, record.created_at_ms],
        )?;
        Ok(NewKey { record, key })
    }

    fn list(&self) -> Result<Vec<KeyRecord>, PolicyError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, name, key_hash, models, created_at_ms, revoked FROM api_keys ORDER BY created_at_ms, id",
        )?;
        let rows = stmt.query_map([], |row| {
            let hash: Vec<u8> = row.get(2)?;
            let models: String = row.get(3)?;
            Ok(KeyRecord {
                id: row.get(0)?,
                name: row.get(1)?,
                hash: hash.try_into().unwrap_or([0u8; 32]),
                models: serde_json::from_str(&models).unwrap_or_default(),
                created_at_ms: row.get(4)?,
                revoked: row.get::<_, i64>(5)? != 0,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn revoke(&self, id: &str) -> Result<bool, PolicyError> {
        let conn = self.conn()?;
        let found: Option<i64> = conn
            .query_row("SELECT revoked FROM api_keys WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        if found.is_none() {
            return Ok(false);
        }
        conn.execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1", [id])?;
        Ok(true)
    }
}

/// The in-memory index used on every request: SHA-256 of the key -> record.
#[derive(Default)]
pub struct Keyring {
    by_hash: RwLock<HashMap<[u8; 32], Arc<KeyRecord>>>,
}

impl Keyring {
    /// Replaces the whole index with the store's current content.
    pub fn load(&self, records: Vec<KeyRecord>) {
        let map = records.into_iter().map(|r| (r.hash, Arc::new(r))).collect();
        if let Ok(mut guard) = self.by_hash.write() {
            *guard = map;
        }
    }

    /// Resolves a presented key. Revoked keys fail with [`PolicyError::Revoked`].
    pub fn authenticate(&self, presented: &str) -> Result<Arc<KeyRecord>, PolicyError> {
        let hash = hash_key(presented);
        let guard = self.by_hash.read().map_err(|_| PolicyError::InvalidKey)?;
        let record = guard.get(&hash).ok_or(PolicyError::InvalidKey)?;
        if !bool::from(record.hash.ct_eq(&hash)) {
            return Err(PolicyError::InvalidKey);
        }
        if record.revoked {
            return Err(PolicyError::Revoked);
        }
        Ok(Arc::clone(record))
    }

    pub fn len(&self) -> usize {
        self.by_hash.read().map_or(0, |g| g.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_authenticate_revoke() {
        let store = SqliteKeyStore::open(":memory:").unwrap();
        let new = store.create("ci", &["gpt-*".to_string()]).unwrap();
        assert!(new.key.starts_with("tg-") && new.key.len() == 51);
        let ring = Keyring::default();
        ring.load(store.list().unwrap());
        let rec = ring.authenticate(&new.key).unwrap();
        assert_eq!(rec.id, new.record.id);
        assert!(rec.allows_model("gpt-4o") && !rec.allows_model("claude"));
        assert!(matches!(
            ring.authenticate("tg-wrong"),
            Err(PolicyError::InvalidKey)
        ));
        assert!(store.revoke(&new.record.id).unwrap());
        assert!(!store.revoke("key_missing").unwrap());
        ring.load(store.list().unwrap());
        assert!(matches!(ring.authenticate(&new.key), Err(PolicyError::Revoked)));
    }

    #[test]
    fn stores_only_the_hash() {
        let dir = std::env::temp_dir().join(format!("tg-keys-{}", random_hex(4)));
        let path = dir.join("k.db");
        let store = SqliteKeyStore::open(path.to_str().unwrap()).unwrap();
        let new = store.create("x", &[]).unwrap();
        drop(store);
        let raw = std::fs::read(&path).unwrap();
        let wal = std::fs::read(dir.join("k.db-wal")).unwrap_or_default();
        let needle = new.key.as_bytes();
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        assert!(!wal.windows(needle.len()).any(|w| w == needle));
        std::fs::remove_dir_all(dir).ok();
    }
}
