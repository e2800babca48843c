//! Session stores the server driver carries the core's [`StoreOp`](crate::proto::server::StoreOp)s out
//! against: in memory (one map shared by the workers of a process), or
//! Redis (shared by processes and hosts).
//!
//! Records are JSON under `PREFIX` + UUID, with the session lifetime as
//! TTL (`SET key value PX lifetime`), so a session nobody refreshes is
//! forgotten by the store itself. The shared key of retry tokens lives
//! under `PREFIX` + `secret` when no `--secret-file` is given: the first
//! instance to start creates it (`SET NX`), the others read it.
//!
//! Redis may go away at any time. Every failure marks the store down;
//! a monitor task pings it with a backoff (250 ms doubling to 5 s) and
//! marks it up when it answers. The driver reads [`SessionStore::is_up`]
//! on every turn and tells the core, which then refuses new sessions while
//! the sessions it holds carry on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

use crate::clock;
use crate::proto::server::SessionRecord;

/// Why a store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not a Redis URL.
    #[error("bad session store URL {url:?}: {reason} (expected redis://HOST:PORT/DB)")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis did not answer or refused the command.
    #[error("session store: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored value is not a record.
    #[error("session store: bad record under {key}: {reason}")]
    BadRecord {
        /// The key.
        key: String,
        /// Why it does not parse.
        reason: String,
    },
}

/// The default key prefix of records in Redis.
pub const DEFAULT_PREFIX: &str = "risp:";

/// First pause before pinging a store that went down.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between two pings of a store that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a store that is up is pinged.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for one Redis command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A session store. Cheap to clone: clones share the store.
#[derive(Clone)]
pub struct SessionStore {
    kind: Kind,
    up: Arc<AtomicBool>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Memory(_) => "memory",
            Kind::Redis { .. } => "redis",
        };
        f.debug_struct("SessionStore")
            .field("kind", &kind)
            .field("up", &self.is_up())
            .finish()
    }
}

#[derive(Clone)]
enum Kind {
    /// Records with their deadlines, in this process.
    Memory(Arc<Mutex<MemoryMap>>),
    /// Redis, through a connection that reconnects by itself.
    Redis {
        conn: ConnectionManager,
        prefix: Arc<str>,
    },
}

/// The in-memory store's map.
#[derive(Default)]
struct MemoryMap {
    records: HashMap<Uuid, (SessionRecord, Instant)>,
    /// Writes since the last sweep of expired records.
    writes: usize,
}

impl SessionStore {
    /// A store in this process's memory (the workers of one server share
    /// it through clones).
    pub fn memory() -> Self {
        Self {
            kind: Kind::Memory(Arc::default()),
            up: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Connects to Redis at `url` (`redis://HOST:PORT/DB`); fails if it
    /// does not answer a PING now.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(MIN_BACKOFF)
            .set_max_delay(MAX_BACKOFF);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        let store = Self {
            kind: Kind::Redis {
                conn,
                prefix: prefix.into(),
            },
            up: Arc::new(AtomicBool::new(true)),
        };
        store.ping().await?;
        Ok(store)
    }

    /// Whether the store answered its latest command.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn mark<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        let ok = r.is_ok();
        if self.up.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::warn!("session store reachable again");
            } else if let Err(e) = &r {
                tracing::warn!(error = %e, "session store unreachable: new sessions are refused until it answers");
            }
        }
        r
    }

    /// Asks the store whether it answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let r = match &self.kind {
            Kind::Memory(_) => Ok(()),
            Kind::Redis { conn, .. } => {
                let mut conn = conn.clone();
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(StoreError::from)
            }
        };
        self.mark(r)
    }

    /// Writes records (TTL: each one's lifetime) and removes sessions, in
    /// this order, in one round trip.
    pub async fn write(&self, puts: &[SessionRecord], removes: &[Uuid]) -> Result<(), StoreError> {
        let r = match &self.kind {
            Kind::Memory(map) => {
                let now = clock::now();
                if let Ok(mut m) = map.lock() {
                    for r in puts {
                        m.records.insert(r.uuid, (r.clone(), now + r.lifetime()));
                    }
                    for u in removes {
                        m.records.remove(u);
                    }
                    m.writes += puts.len();
                    if m.writes > 4 * m.records.len().max(1024) {
                        m.writes = 0;
                        m.records.retain(|_, (_, deadline)| *deadline > now);
                    }
                }
                Ok(())
            }
            Kind::Redis { conn, prefix } => {
                let mut pipe = redis::pipe();
                for r in puts {
                    let value = serde_json::to_string(r).unwrap_or_default();
                    pipe.cmd("SET")
                        .arg(format!("{prefix}{}", r.uuid))
                        .arg(value)
                        .arg("PX")
                        .arg(r.lifetime_ms.max(1))
                        .ignore();
                }
                for u in removes {
                    pipe.cmd("DEL").arg(format!("{prefix}{u}")).ignore();
                }
                let mut conn = conn.clone();
                pipe.query_async::<()>(&mut conn)
                    .await
                    .map_err(StoreError::from)
            }
        };
        self.mark(r)
    }

    /// The record of `uuid`, if the store holds a live one.
    pub async fn get(&self, uuid: Uuid) -> Result<Option<SessionRecord>, StoreError> {
        let r = match &self.kind {
            Kind::Memory(map) => {
                let now = clock::now();
                Ok(map.lock().ok().and_then(|m| {
                    m.records
                        .get(&uuid)
                        .filter(|(_, deadline)| *deadline > now)
                        .map(|(r, _)| r.clone())
                }))
            }
            Kind::Redis { conn, prefix } => {
                let key = format!("{prefix}{uuid}");
                let mut conn = conn.clone();
                match redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut conn)
                    .await
                {
                    Ok(None) => Ok(None),
                    Ok(Some(v)) => {
                        serde_json::from_str(&v)
                            .map(Some)
                            .map_err(|e| StoreError::BadRecord {
                                key,
                                reason: e.to_string(),
                            })
                    }
                    Err(e) => Err(e.into()),
                }
            }
        };
        match r {
            // A bad record is the record's problem, not the store's.
            Err(StoreError::BadRecord { key, reason }) => {
                tracing::warn!(%key, %reason, "session store: ignoring a record that does not parse");
                Ok(None)
            }
            r => self.mark(r),
        }
    }

    /// The key of retry tokens every instance sharing this store uses:
    /// `proposed` if no instance has stored one yet, else the stored one.
    /// The in-memory store returns `proposed`.
    pub async fn shared_secret(&self, proposed: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let Kind::Redis { conn, prefix } = &self.kind else {
            return Ok(proposed);
        };
        let key = format!("{prefix}secret");
        let mut conn = conn.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&proposed[..])
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        let stored: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        <[u8; 32]>::try_from(stored.as_slice()).map_err(|_| StoreError::BadRecord {
            key,
            reason: format!("{} bytes, expected 32", stored.len()),
        })
    }

    /// What keeps [`is_up`](Self::is_up) current while nothing else is
    /// sent: for Redis, a future that pings the store every second while
    /// it is up, with a doubling backoff while it is down, and never ends
    /// (every failed command marks the store down too; this is what marks
    /// it up again). `None` for the in-memory store, which is always up.
    /// The server builder runs it beside its workers and stops it at
    /// shutdown.
    pub(crate) fn monitor(&self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        if !matches!(self.kind, Kind::Redis { .. }) {
            return None;
        }
        let store = self.clone();
        Some(async move {
            let mut backoff = MIN_BACKOFF;
            loop {
                let pause = if store.ping().await.is_ok() {
                    backoff = MIN_BACKOFF;
                    PING_EVERY
                } else {
                    let b = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    b
                };
                tokio::time::sleep(pause).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u128, lifetime_ms: u64) -> SessionRecord {
        SessionRecord {
            uuid: Uuid::from_u128(n),
            seed: 7,
            len: 100,
            token: [1; 8],
            lifetime_ms,
            checkpoint_index: 0,
            checkpoint_sum: 0,
        }
    }

    #[tokio::test]
    async fn the_memory_store_keeps_removes_and_expires_records() {
        let s = SessionStore::memory();
        let (a, b) = (record(1, 60_000), record(2, 0));
        s.write(&[a.clone(), b.clone()], &[]).await.unwrap();
        assert_eq!(s.get(a.uuid).await.unwrap(), Some(a.clone()));
        // A lifetime of 0 is already over.
        assert_eq!(s.get(b.uuid).await.unwrap(), None);
        let clone = s.clone();
        clone.write(&[], &[a.uuid]).await.unwrap();
        assert_eq!(s.get(a.uuid).await.unwrap(), None);
        assert!(s.is_up());
        assert_eq!(s.shared_secret([9; 32]).await.unwrap(), [9; 32]);
    }
}
