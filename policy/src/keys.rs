//! Virtual API keys and teams. A key is shown once at creation (`tg-` + 48 hex characters); only its
//! SHA-256 is stored. A key may belong to a team; a request must pass both the key's and the team's
//! limits and budgets. Authentication hashes the presented key and looks it up in an in-memory
//! [`Keyring`], reloaded whenever the store's version changes (any replica's write), and confirms the
//! match in constant time.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    glob::glob_match,
    money::Usd,
    store::{DocStore, Kind},
};

pub const KEY_PREFIX: &str = "tg-";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("store error: {0}")]
    Store(String),
    #[error("invalid key")]
    InvalidKey,
    #[error("key revoked")]
    Revoked,
    #[error("key expired")]
    Expired,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

/// Rate limits; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u64>,
}

/// Spend caps in USD per UTC day, UTC calendar month, and in total; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_usd: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_usd: Option<Usd>,
}

/// A key as stored: everything but the key itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// Model-name globs; empty means every model.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Unix seconds after which the key is refused.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Opt-in: keep this key's prompt and answer bodies for this long (`"30s"`, `"12h"`, `"7d"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_retention: Option<String>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub revoked: bool,
    /// Hex SHA-256 of the key; never shown by the admin API.
    pub key_hash: String,
}

impl KeyRecord {
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|g| glob_match(g, model))
    }

    /// The admin API's view: no hash.
    pub fn public(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.remove("key_hash");
        }
        v
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Team {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    pub created_at_ms: i64,
}

/// `POST /admin/keys` body.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub name: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub body_retention: Option<String>,
}

/// Distinguishes "absent" (`None`) from "null" (`Some(None)`) in PATCH bodies.
fn double<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /admin/keys/{id}` body: present fields replace, `null` clears `team` and `expires_at`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double")]
    pub team: Option<Option<String>>,
    pub limits: Option<Limits>,
    pub budgets: Option<Budgets>,
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "double")]
    pub expires_at: Option<Option<i64>>,
    pub revoked: Option<bool>,
    #[serde(default, deserialize_with = "double")]
    pub body_retention: Option<Option<String>>,
}

/// `POST /admin/teams` body; `id` is chosen by the caller (it appears in keys and JWT claims).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TeamPatch {
    pub name: Option<String>,
    pub limits: Option<Limits>,
    pub budgets: Option<Budgets>,
    pub metadata: Option<Map<String, Value>>,
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

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

fn parse<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T, PolicyError> {
    serde_json::from_str(doc).map_err(|e| PolicyError::Store(format!("corrupt record: {e}")))
}

fn dump<T: Serialize>(v: &T) -> Result<String, PolicyError> {
    serde_json::to_string(v).map_err(|e| PolicyError::Store(e.to_string()))
}

/// A PATCH field: a present value replaces the old one.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn validate_models(models: &[String]) -> Result<(), PolicyError> {
    if models.iter().any(|m| m.is_empty()) {
        return Err(PolicyError::Invalid("model globs must not be empty".into()));
    }
    Ok(())
}

/// `"30s"`, `"15m"`, `"12h"`, `"7d"` -> seconds (at least 1 s, at most 10 years).
pub fn parse_retention(s: &str) -> Result<u64, PolicyError> {
    let bad = || {
        PolicyError::Invalid(format!(
            "`body_retention` `{s}` must look like 30s, 15m, 12h or 7d"
        ))
    };
    let (num, unit) = s.trim().split_at(s.trim().len().saturating_sub(1));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    if secs == 0 || secs > 10 * 365 * 86_400 {
        return Err(bad());
    }
    Ok(secs)
}

fn validate_limits(l: &Limits) -> Result<(), PolicyError> {
    if [l.rpm, l.tpm, l.max_parallel].contains(&Some(0)) {
        return Err(PolicyError::Invalid(
            "limits must be positive (omit a limit for none)".into(),
        ));
    }
    Ok(())
}

/// Key and team management on top of a [`DocStore`]; every change is audited by the caller.
#[derive(Clone)]
pub struct Keys {
    pub store: DocStore,
}

impl Keys {
    pub fn new(store: DocStore) -> Keys {
        Keys { store }
    }

    async fn check_team(&self, team: Option<&str>) -> Result<(), PolicyError> {
        if let Some(t) = team {
            if self.store.get(Kind::Team, t).await?.is_none() {
                return Err(PolicyError::Invalid(format!("no team with id `{t}`")));
            }
        }
        Ok(())
    }

    pub async fn create(&self, spec: KeySpec) -> Result<NewKey, PolicyError> {
        if spec.name.trim().is_empty() {
            return Err(PolicyError::Invalid("`name` must not be empty".into()));
        }
        validate_models(&spec.models)?;
        validate_limits(&spec.limits)?;
        if let Some(r) = &spec.body_retention {
            parse_retention(r)?;
        }
        self.check_team(spec.team.as_deref()).await?;
        let key = format!("{KEY_PREFIX}{}", random_hex(24));
        let record = KeyRecord {
            id: format!("key_{}", random_hex(8)),
            name: spec.name,
            models: spec.models,
            team: spec.team,
            limits: spec.limits,
            budgets: spec.budgets,
            metadata: spec.metadata,
            expires_at: spec.expires_at,
            body_retention: spec.body_retention,
            created_at_ms: now_ms(),
            revoked: false,
            key_hash: hex::encode(hash_key(&key)),
        };
        self.store.put(Kind::Key, &record.id, dump(&record)?).await?;
        Ok(NewKey { record, key })
    }

    /// The record of `kind` with `id`, if any.
    async fn get_doc<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        id: &str,
    ) -> Result<Option<T>, PolicyError> {
        self.store.get(kind, id).await?.map(|d| parse(&d)).transpose()
    }

    /// Every record of `kind`, in the store's order.
    async fn all_docs<T: serde::de::DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>, PolicyError> {
        self.store.all(kind).await?.iter().map(|d| parse(d)).collect()
    }

    pub async fn get(&self, id: &str) -> Result<Option<KeyRecord>, PolicyError> {
        self.get_doc(Kind::Key, id).await
    }

    pub async fn list(&self) -> Result<Vec<KeyRecord>, PolicyError> {
        let mut keys: Vec<KeyRecord> = self.all_docs(Kind::Key).await?;
        keys.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(keys)
    }

    pub async fn update(&self, id: &str, patch: KeyPatch) -> Result<Option<KeyRecord>, PolicyError> {
        let Some(mut k) = self.get(id).await? else {
            return Ok(None);
        };
        if let Some(name) = patch.name {
            if name.trim().is_empty() {
                return Err(PolicyError::Invalid("`name` must not be empty".into()));
            }
            k.name = name;
        }
        if let Some(models) = patch.models {
            validate_models(&models)?;
            k.models = models;
        }
        if let Some(team) = patch.team {
            self.check_team(team.as_deref()).await?;
            k.team = team;
        }
        if let Some(limits) = patch.limits {
            validate_limits(&limits)?;
            k.limits = limits;
        }
        set(&mut k.budgets, patch.budgets);
        set(&mut k.metadata, patch.metadata);
        set(&mut k.expires_at, patch.expires_at);
        if let Some(retention) = patch.body_retention {
            if let Some(r) = &retention {
                parse_retention(r)?;
            }
            k.body_retention = retention;
        }
        set(&mut k.revoked, patch.revoked);
        self.store.put(Kind::Key, id, dump(&k)?).await?;
        Ok(Some(k))
    }

    /// Marks a key revoked (kept for the audit trail); `Ok(false)` when no such key exists.
    pub async fn revoke(&self, id: &str) -> Result<bool, PolicyError> {
        let patch = KeyPatch {
            revoked: Some(true),
            ..Default::default()
        };
        Ok(self.update(id, patch).await?.is_some())
    }

    pub async fn create_team(&self, spec: TeamSpec) -> Result<Team, PolicyError> {
        let valid_id = !spec.id.is_empty()
            && spec.id.len() <= 64
            && spec
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !valid_id {
            return Err(PolicyError::Invalid(
                "team `id` must be 1-64 characters of [A-Za-z0-9._-]".into(),
            ));
        }
        validate_limits(&spec.limits)?;
        if self.store.get(Kind::Team, &spec.id).await?.is_some() {
            return Err(PolicyError::Conflict(format!("team `{}` exists", spec.id)));
        }
        let team = Team {
            name: spec.name.unwrap_or_else(|| spec.id.clone()),
            id: spec.id,
            limits: spec.limits,
            budgets: spec.budgets,
            metadata: spec.metadata,
            created_at_ms: now_ms(),
        };
        self.store.put(Kind::Team, &team.id, dump(&team)?).await?;
        Ok(team)
    }

    pub async fn get_team(&self, id: &str) -> Result<Option<Team>, PolicyError> {
        self.get_doc(Kind::Team, id).await
    }

    pub async fn list_teams(&self) -> Result<Vec<Team>, PolicyError> {
        self.all_docs(Kind::Team).await
    }

    pub async fn update_team(&self, id: &str, patch: TeamPatch) -> Result<Option<Team>, PolicyError> {
        let Some(mut t) = self.get_team(id).await? else {
            return Ok(None);
        };
        set(&mut t.name, patch.name);
        if let Some(limits) = patch.limits {
            validate_limits(&limits)?;
            t.limits = limits;
        }
        set(&mut t.budgets, patch.budgets);
        set(&mut t.metadata, patch.metadata);
        self.store.put(Kind::Team, id, dump(&t)?).await?;
        Ok(Some(t))
    }

    /// Refuses while a key still belongs to the team.
    pub async fn delete_team(&self, id: &str) -> Result<bool, PolicyError> {
        if self
            .list()
            .await?
            .iter()
            .any(|k| k.team.as_deref() == Some(id) && !k.revoked)
        {
            return Err(PolicyError::Conflict(format!("team `{id}` still has keys")));
        }
        self.store.delete(Kind::Team, id).await
    }

    /// Appends to the audit log: who did what to which record, when.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: Value,
    ) -> Result<(), PolicyError> {
        let entry = serde_json::json!({"ts_ms": now_ms(), "actor": actor, "action": action, "target": target, "detail": detail});
        self.store.audit(entry.to_string()).await
    }

    pub async fn audit_log(&self, limit: usize) -> Result<Vec<Value>, PolicyError> {
        Ok(self
            .store
            .audit_log(limit)
            .await?
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect())
    }
}

/// What a successful authentication yields.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: Arc<KeyRecord>,
    pub team: Option<Arc<Team>>,
}

#[derive(Default)]
struct Index {
    by_hash: HashMap<[u8; 32], Arc<KeyRecord>>,
    teams: HashMap<String, Arc<Team>>,
}

/// The in-memory index used on every request.
#[derive(Default)]
pub struct Keyring {
    index: RwLock<Index>,
    /// One reload at a time: a periodic reload that listed the store just before an admin write
    /// must not replace the index after the admin's own reload (the new key would be refused until
    /// the next refresh).
    reloading: tokio::sync::Mutex<()>,
}

impl Keyring {
    /// Replaces the whole index.
    pub fn load(&self, keys: Vec<KeyRecord>, teams: Vec<Team>) {
        let mut by_hash = HashMap::with_capacity(keys.len());
        for k in keys {
            let mut hash = [0u8; 32];
            if hex::decode_to_slice(&k.key_hash, &mut hash).is_ok() {
                by_hash.insert(hash, Arc::new(k));
            }
        }
        let teams = teams.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect();
        if let Ok(mut g) = self.index.write() {
            *g = Index { by_hash, teams };
        }
    }

    /// Reloads from the store.
    pub async fn reload(&self, keys: &Keys) -> Result<(), PolicyError> {
        let _one_at_a_time = self.reloading.lock().await;
        let (k, t) = (keys.list().await?, keys.list_teams().await?);
        self.load(k, t);
        Ok(())
    }

    /// Resolves a presented key at unix time `now_s`.
    pub fn authenticate(&self, presented: &str, now_s: i64) -> Result<Principal, PolicyError> {
        let hash = hash_key(presented);
        let g = self.index.read().map_err(|_| PolicyError::InvalidKey)?;
        let key = g.by_hash.get(&hash).ok_or(PolicyError::InvalidKey)?;
        let mut stored = [0u8; 32];
        hex::decode_to_slice(&key.key_hash, &mut stored).map_err(|_| PolicyError::InvalidKey)?;
        if !bool::from(stored.ct_eq(&hash)) {
            return Err(PolicyError::InvalidKey);
        }
        if key.revoked {
            return Err(PolicyError::Revoked);
        }
        if key.expires_at.is_some_and(|e| now_s >= e) {
            return Err(PolicyError::Expired);
        }
        let team = key.team.as_ref().and_then(|t| g.teams.get(t)).cloned();
        Ok(Principal {
            key: Arc::clone(key),
            team,
        })
    }

    pub fn team(&self, id: &str) -> Option<Arc<Team>> {
        self.index.read().ok().and_then(|g| g.teams.get(id).cloned())
    }

    pub fn len(&self) -> usize {
        self.index.read().map_or(0, |g| g.by_hash.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteDocs;

    fn keys() -> Keys {
        Keys::new(DocStore::Sqlite(Arc::new(SqliteDocs::open(":memory:").unwrap())))
    }

    #[tokio::test]
    async fn create_authenticate_patch_revoke() {
        let keys = keys();
        let team = keys
            .create_team(TeamSpec {
                id: "t1".into(),
                name: None,
                limits: Limits::default(),
                budgets: Budgets::default(),
                metadata: Map::new(),
            })
            .await
            .unwrap();
        let spec = KeySpec {
            name: "ci".into(),
            models: vec!["gpt-*".into()],
            team: Some(team.id.clone()),
            ..Default::default()
        };
        let new = keys.create(spec).await.unwrap();
        assert!(new.key.starts_with("tg-") && new.key.len() == 51);
        let ring = Keyring::default();
        ring.reload(&keys).await.unwrap();
        let p = ring.authenticate(&new.key, 0).unwrap();
        assert_eq!(p.key.id, new.record.id);
        assert_eq!(p.team.unwrap().id, "t1");
        assert!(p.key.allows_model("gpt-4o") && !p.key.allows_model("claude"));
        assert!(matches!(
            ring.authenticate("tg-wrong", 0),
            Err(PolicyError::InvalidKey)
        ));

        let patch: KeyPatch =
            serde_json::from_str(r#"{"limits": {"rpm": 5}, "expires_at": 100, "team": null}"#).unwrap();
        let k = keys.update(&new.record.id, patch).await.unwrap().unwrap();
        assert_eq!(
            (k.limits.rpm, k.expires_at, k.team.as_deref()),
            (Some(5), Some(100), None)
        );
        ring.reload(&keys).await.unwrap();
        assert!(ring.authenticate(&new.key, 99).is_ok());
        assert!(matches!(
            ring.authenticate(&new.key, 100),
            Err(PolicyError::Expired)
        ));
        assert!(keys.revoke(&new.record.id).await.unwrap());
        assert!(!keys.revoke("key_missing").await.unwrap());
        ring.reload(&keys).await.unwrap();
        assert!(matches!(
            ring.authenticate(&new.key, 0),
            Err(PolicyError::Revoked)
        ));
        assert!(!new.record.public().to_string().contains(&new.record.key_hash));
    }

    #[tokio::test]
    async fn rejects_unknown_teams_and_bad_limits() {
        let keys = keys();
        let spec = KeySpec {
            name: "x".into(),
            team: Some("ghost".into()),
            ..Default::default()
        };
        assert!(matches!(keys.create(spec).await, Err(PolicyError::Invalid(_))));
        let spec: KeySpec = serde_json::from_str(r#"{"name": "x", "limits": {"rpm": 0}}"#).unwrap();
        assert!(matches!(keys.create(spec).await, Err(PolicyError::Invalid(_))));
        assert!(
            serde_json::from_str::<KeySpec>(r#"{"name": "x", "budgets": {"daily_usd": "abc"}}"#).is_err()
        );
        assert!(serde_json::from_str::<KeySpec>(r#"{"name": "x", "limits": {"rpd": 1}}"#).is_err());
    }

    #[test]
    fn stores_only_the_hash() {
        let dir = std::env::temp_dir().join(format!("tg-keys-{}", random_hex(4)));
        let path = dir.join("k.db");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let new = rt.block_on(async {
            let keys = Keys::new(DocStore::Sqlite(Arc::new(
                SqliteDocs::open(path.to_str().unwrap()).unwrap(),
            )));
            keys.create(KeySpec {
                name: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap()
        });
        drop(rt);
        let mut raw = std::fs::read(&path).unwrap();
        raw.extend(std::fs::read(dir.join("k.db-wal")).unwrap_or_default());
        let needle = new.key.as_bytes();
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        std::fs::remove_dir_all(dir).ok();
    }
}
