//! Where keys, teams and the audit log live: a small document store with two backends.
//! SQLite (embedded, one node) or Redis (shared by every replica). Records are JSON documents by
//! `(kind, id)`; a change counter ([`DocStore::version`]) lets every replica notice another's writes
//! and reload, so a key created or revoked anywhere is honoured everywhere within one refresh interval.

use std::{path::Path, sync::Arc, sync::Mutex};

use redis::AsyncCommands;
use rusqlite::{params, Connection, OptionalExtension};

use crate::keys::PolicyError;

/// A document collection name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Key,
    Team,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::Team => "team",
        }
    }
}

#[derive(Clone)]
pub enum DocStore {
    Sqlite(Arc<SqliteDocs>),
    Redis(RedisDocs),
}

impl From<rusqlite::Error> for PolicyError {
    fn from(e: rusqlite::Error) -> Self {
        PolicyError::Store(e.to_string())
    }
}

impl From<redis::RedisError> for PolicyError {
    fn from(e: redis::RedisError) -> Self {
        PolicyError::Store(format!("redis: {e}"))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PolicyError> + Send + 'static,
) -> Result<T, PolicyError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PolicyError::Store(e.to_string()))?
}

impl DocStore {
    pub async fn put(&self, kind: Kind, id: &str, doc: String) -> Result<(), PolicyError> {
        match self {
            DocStore::Sqlite(s) => {
                let (s, id) = (Arc::clone(s), id.to_string());
                blocking(move || s.put(kind, &id, &doc)).await
            }
            DocStore::Redis(r) => r.put(kind, id, doc).await,
        }
    }

    pub async fn get(&self, kind: Kind, id: &str) -> Result<Option<String>, PolicyError> {
        match self {
            DocStore::Sqlite(s) => {
                let (s, id) = (Arc::clone(s), id.to_string());
                blocking(move || s.get(kind, &id)).await
            }
            DocStore::Redis(r) => r.get(kind, id).await,
        }
    }

    pub async fn all(&self, kind: Kind) -> Result<Vec<String>, PolicyError> {
        match self {
            DocStore::Sqlite(s) => {
                let s = Arc::clone(s);
                blocking(move || s.all(kind)).await
            }
            DocStore::Redis(r) => r.all(kind).await,
        }
    }

    /// `Ok(false)` when nothing was there.
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<bool, PolicyError> {
        match self {
            DocStore::Sqlite(s) => {
                let (s, id) = (Arc::clone(s), id.to_string());
                blocking(move || s.delete(kind, &id)).await
            }
            DocStore::Redis(r) => r.delete(kind, id).await,
        }
    }

    pub async fn audit(&self, entry: String) -> Result<(), PolicyError> {
        match self {
            DocStore::Sqlite(s) => {
                let s = Arc::clone(s);
                blocking(move || s.audit(&entry)).await
            }
            DocStore::Redis(r) => r.audit(entry).await,
        }
    }

    /// Newest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<String>, PolicyError> {
        match self {
            DocStore::Sqlite(s) => {
                let s = Arc::clone(s);
                blocking(move || s.audit_log(limit)).await
            }
            DocStore::Redis(r) => r.audit_log(limit).await,
        }
    }

    /// Changes whenever anyone (this process or another) changed keys or teams.
    pub async fn version(&self) -> Result<i64, PolicyError> {
        match self {
            DocStore::Sqlite(s) => {
                let s = Arc::clone(s);
                blocking(move || s.version()).await
            }
            DocStore::Redis(r) => r.version().await,
        }
    }
}

/// The embedded backend. `:memory:` keeps everything in the process.
pub struct SqliteDocs {
    conn: Mutex<Connection>,
}

impl SqliteDocs {
    pub fn open(path: &str) -> Result<SqliteDocs, PolicyError> {
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
            "CREATE TABLE IF NOT EXISTS docs (kind TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,
                 PRIMARY KEY (kind, id));
             CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, entry TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO meta (name, value) VALUES ('version', 0);",
        )?;
        Ok(SqliteDocs {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, PolicyError> {
        self.conn
            .lock()
            .map_err(|_| PolicyError::Store("store lock poisoned".into()))
    }

    fn bump(conn: &Connection) -> Result<(), PolicyError> {
        conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'version'", [])?;
        Ok(())
    }

    pub fn put(&self, kind: Kind, id: &str, doc: &str) -> Result<(), PolicyError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO docs (kind, id, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc",
            params![kind.as_str(), id, doc],
        )?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    pub fn get(&self, kind: Kind, id: &str) -> Result<Option<String>, PolicyError> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT doc FROM docs WHERE kind = ?1 AND id = ?2",
                params![kind.as_str(), id],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn all(&self, kind: Kind) -> Result<Vec<String>, PolicyError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached("SELECT doc FROM docs WHERE kind = ?1 ORDER BY id")?;
        let rows = stmt.query_map([kind.as_str()], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }

    pub fn delete(&self, kind: Kind, id: &str) -> Result<bool, PolicyError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM docs WHERE kind = ?1 AND id = ?2",
            params![kind.as_str(), id],
        )?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(n > 0)
    }

    pub fn audit(&self, entry: &str) -> Result<(), PolicyError> {
        self.conn()?
            .execute("INSERT INTO audit (entry) VALUES (?1)", [entry])?;
        Ok(())
    }

    pub fn audit_log(&self, limit: usize) -> Result<Vec<String>, PolicyError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached("SELECT entry FROM audit ORDER BY seq DESC LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }

    pub fn version(&self) -> Result<i64, PolicyError> {
        Ok(self
            .conn()?
            .query_row("SELECT value FROM meta WHERE name = 'version'", [], |r| r.get(0))?)
    }
}

/// The shared backend: hashes `{prefix}key` and `{prefix}team` (id -> document), the list
/// `{prefix}audit` (newest first, capped), and the counter `{prefix}version`.
#[derive(Clone)]
pub struct RedisDocs {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

const AUDIT_CAP: isize = 100_000;

impl RedisDocs {
    pub fn new(conn: redis::aio::ConnectionManager, prefix: &str) -> RedisDocs {
        RedisDocs {
            conn,
            prefix: prefix.to_string(),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn put(&self, kind: Kind, id: &str, doc: String) -> Result<(), PolicyError> {
        let mut c = self.conn.clone();
        redis::pipe()
            .atomic()
            .hset(self.key(kind.as_str()), id, doc)
            .ignore()
            .incr(self.key("version"), 1)
            .ignore()
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    async fn get(&self, kind: Kind, id: &str) -> Result<Option<String>, PolicyError> {
        let mut c = self.conn.clone();
        Ok(c.hget(self.key(kind.as_str()), id).await?)
    }

    async fn all(&self, kind: Kind) -> Result<Vec<String>, PolicyError> {
        let mut c = self.conn.clone();
        let mut docs: Vec<(String, String)> = c.hgetall(self.key(kind.as_str())).await?;
        docs.sort();
        Ok(docs.into_iter().map(|(_, d)| d).collect())
    }

    async fn delete(&self, kind: Kind, id: &str) -> Result<bool, PolicyError> {
        let mut c = self.conn.clone();
        let (n,): (i64,) = redis::pipe()
            .atomic()
            .hdel(self.key(kind.as_str()), id)
            .incr(self.key("version"), 1)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(n > 0)
    }

    async fn audit(&self, entry: String) -> Result<(), PolicyError> {
        let mut c = self.conn.clone();
        redis::pipe()
            .lpush(self.key("audit"), entry)
            .ignore()
            .ltrim(self.key("audit"), 0, AUDIT_CAP - 1)
            .ignore()
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<String>, PolicyError> {
        let mut c = self.conn.clone();
        Ok(c.lrange(self.key("audit"), 0, limit as isize - 1).await?)
    }

    async fn version(&self) -> Result<i64, PolicyError> {
        let mut c = self.conn.clone();
        let v: Option<i64> = c.get(self.key("version")).await?;
        Ok(v.unwrap_or(0))
    }
}
