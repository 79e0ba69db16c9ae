//! The durable state of `cascade signal`: per-user inboxes, acknowledgements, the
//! idempotency keys of sends and room membership.
//!
//! [`Store`] is the one type the rest of the service sees. Behind it is one of two
//! engines, chosen by [`StoreLocation`]:
//! - [`embedded`]: a redb file written by one group-commit thread; zero setup, one
//!   node.
//! - [`redis`]: a Redis server (Streams for the inboxes, Lua scripts for atomic
//!   appends, pub/sub for "an inbox grew"), shared by several `cascade signal` nodes
//!   behind any load balancer. The engine does the replication and persistence;
//!   the nodes keep no state of their own beyond who is connected to them.
//!
//! Both give the same guarantees: a send is reported accepted only once the engine
//! holds it durably, each recipient's inbox has one sequence 1, 2, 3, ... with no
//! gaps, a retry of (sender, client id) stores nothing new, and every node learns
//! through [`Store::subscribe`] that an inbox grew.
//!
//! It knows nothing of WebSockets, HTTP or media servers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

pub mod embedded;
pub mod redis;

/// What can go wrong with a store operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A send to a room that has no members, or of which the sender is not one.
    #[error("unknown room {0:?} (no members, or the sender is not one)")]
    UnknownRoom(String),
    /// The storage engine failed; nothing of the batch was committed.
    #[error("storage: {0}")]
    Storage(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
}

/// Where the state lives, from `--store`: a file path, or a `redis://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A redb file, created when missing.
    File(PathBuf),
    /// A Redis server (`redis://[user:password@]host[:port][/db]`, or `rediss://`).
    Redis(String),
}

impl StoreLocation {
    /// Reads `--store`: `redis://` and `rediss://` URLs name a Redis server,
    /// anything else is a file path.
    pub fn parse(s: &str) -> StoreLocation {
        if s.starts_with("redis://") || s.starts_with("rediss://") {
            StoreLocation::Redis(s.to_owned())
        } else {
            StoreLocation::File(PathBuf::from(s))
        }
    }

    /// The engine's name, for logs and metrics.
    pub fn engine(&self) -> &'static str {
        match self {
            StoreLocation::File(_) => "embedded",
            StoreLocation::Redis(_) => "redis",
        }
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::File(p) => write!(f, "{}", p.display()),
            // Never print a password that may be in the URL.
            StoreLocation::Redis(url) => match url.split_once('@') {
                Some((scheme_user, host)) => {
                    let scheme = scheme_user.split("://").next().unwrap_or("redis");
                    write!(f, "{scheme}://…@{host}")
                }
                None => f.write_str(url),
            },
        }
    }
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Destination {
    /// One user's inbox.
    User(String),
    /// The inbox of every member of the room but the sender.
    Room(String),
}

/// A send to be stored.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub sender: String,
    /// The sender's message id: a retry with the same id stores nothing new.
    pub client_id: String,
    pub to: Destination,
    pub body: serde_json::Value,
    /// A send to a room needs the sender to be a member (clients); backends may post
    /// to any room that has members.
    pub sender_must_be_member: bool,
}

impl AppendRequest {
    /// What an inbox entry of this send holds besides its sequence and time.
    fn stored(&self) -> StoredMessage {
        StoredMessage {
            from: self.sender.clone(),
            room: match &self.to {
                Destination::Room(room) => Some(room.clone()),
                Destination::User(_) => None,
            },
            id: self.client_id.clone(),
            body: self.body.clone(),
        }
    }
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Each recipient with the sequence the message got in its inbox.
    pub deliveries: Vec<(String, u64)>,
    /// True when (sender, client id) was already stored: `deliveries` are the first
    /// append's and nothing new was stored.
    pub duplicate: bool,
}

/// What an inbox entry holds besides its sequence and time.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredMessage {
    from: String,
    room: Option<String>,
    id: String,
    body: serde_json::Value,
}

impl StoredMessage {
    fn into_inbox(self, seq: u64, sent_at: u64) -> InboxMessage {
        InboxMessage {
            seq,
            sent_at,
            from: self.from,
            room: self.room,
            id: self.id,
            body: self.body,
        }
    }
}

/// A message read from an inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxMessage {
    pub seq: u64,
    /// Unix milliseconds at which the store accepted it.
    pub sent_at: u64,
    pub from: String,
    pub room: Option<String>,
    pub id: String,
    pub body: serde_json::Value,
}

/// What a trim removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrimReport {
    pub messages: u64,
    pub idempotency_keys: u64,
}

/// The store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Engine,
    watchers: std::sync::Arc<Watchers>,
}

#[derive(Clone)]
enum Engine {
    Embedded(embedded::EmbeddedStore),
    Redis(redis::RedisStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Per watched user, the last sequence committed to its inbox, and the number of
/// commits (batches) made.
#[derive(Default)]
pub(crate) struct Watchers {
    users: Mutex<HashMap<String, watch::Sender<u64>>>,
    commits: AtomicU64,
}

impl Watchers {
    /// Tells the watchers of each recipient that its inbox grew to `seq`.
    pub(crate) fn publish(&self, deliveries: &[(String, u64)]) {
        let mut map = self.users.lock().unwrap_or_else(|p| p.into_inner());
        for (user, seq) in deliveries {
            if let Some(tx) = map.get(user) {
                if tx.receiver_count() == 0 {
                    map.remove(user);
                } else {
                    tx.send_if_modified(|cur| {
                        let grew = *seq > *cur;
                        *cur = (*cur).max(*seq);
                        grew
                    });
                }
            }
        }
    }

    /// Wakes every watcher so that each reads its inbox again: used when
    /// notifications may have been missed (a lost connection to the engine).
    pub(crate) fn wake_all(&self) {
        let map = self.users.lock().unwrap_or_else(|p| p.into_inner());
        for tx in map.values() {
            tx.send_modify(|_| {});
        }
    }

    pub(crate) fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }
}

/// Resolves once the engine's writer has stopped and released what it holds.
#[derive(Debug)]
pub struct WriterDone(oneshot::Receiver<()>);

impl WriterDone {
    pub(crate) fn new() -> (oneshot::Sender<()>, WriterDone) {
        let (tx, rx) = oneshot::channel();
        (tx, WriterDone(rx))
    }

    /// Waits for the writer to finish (after every [`Store`] clone is dropped).
    pub async fn wait(&mut self) {
        let _ = (&mut self.0).await;
    }
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Store {
    /// Opens the store at `location` (creating a file store when missing) and starts
    /// its writer. Messages older than `retention_ms` are removed by [`Store::trim`].
    pub async fn open(
        location: &StoreLocation,
        retention_ms: u64,
    ) -> Result<(Store, WriterDone), StoreError> {
        let watchers = std::sync::Arc::new(Watchers::default());
        let (engine, done) = match location {
            StoreLocation::File(path) => {
                let (s, done) = embedded::EmbeddedStore::open(path, retention_ms, &watchers)?;
                (Engine::Embedded(s), done)
            }
            StoreLocation::Redis(url) => {
                let (s, done) = redis::RedisStore::open(url, retention_ms, &watchers).await?;
                (Engine::Redis(s), done)
            }
        };
        Ok((Store { engine, watchers }, done))
    }

    /// Queues an append; the returned receiver answers after the commit. Appends
    /// queued by one caller are committed in the order they were queued.
    pub async fn submit_append(
        &self,
        req: AppendRequest,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        match &self.engine {
            Engine::Embedded(s) => s.submit_append(req).await,
            Engine::Redis(s) => s.submit_append(req).await,
        }
    }

    /// Appends a message to the inbox of each recipient atomically; a retry of
    /// (sender, client id) returns the first result with `duplicate`.
    pub async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        self.submit_append(req)
            .await?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Records that `user` processed everything up to `seq` (never moves back, never
    /// past the last sequence assigned). Returns the last acknowledged sequence.
    pub async fn ack(&self, user: &str, seq: u64) -> Result<u64, StoreError> {
        match &self.engine {
            Engine::Embedded(s) => s.ack(user, seq).await,
            Engine::Redis(s) => s.ack(user, seq).await,
        }
    }

    /// Makes `user` a member of `room` (`member`), or removes it.
    pub async fn set_member(&self, room: &str, user: &str, member: bool) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Embedded(s) => s.set_member(room, user, member).await,
            Engine::Redis(s) => s.set_member(room, user, member).await,
        }
    }

    /// Makes `user` a member of `room`.
    pub async fn join(&self, room: &str, user: &str) -> Result<(), StoreError> {
        self.set_member(room, user, true).await
    }

    /// Removes `user` from `room`.
    pub async fn leave(&self, room: &str, user: &str) -> Result<(), StoreError> {
        self.set_member(room, user, false).await
    }

    /// Removes acknowledged inbox entries, and entries and idempotency keys older
    /// than the retention, as of `now_ms`. (The Redis engine removes acknowledged
    /// entries at the acknowledgement and lets idempotency keys expire by
    /// themselves, so its report counts only expired messages.)
    pub async fn trim(&self, now_ms: u64) -> Result<TrimReport, StoreError> {
        match &self.engine {
            Engine::Embedded(s) => s.trim(now_ms).await,
            Engine::Redis(s) => s.trim(now_ms).await,
        }
    }

    /// A watch of the last sequence committed to `user`'s inbox from now on; it
    /// changes after every commit that adds to the inbox, on any node.
    pub fn subscribe(&self, user: &str) -> watch::Receiver<u64> {
        let mut map = self
            .watchers
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(user.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Forgets `user`'s watch once nobody holds a receiver of it.
    pub fn release(&self, user: &str) {
        let mut map = self
            .watchers
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.get(user).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(user);
        }
    }

    /// Number of batches this node's writer committed.
    pub fn commits(&self) -> u64 {
        self.watchers.commits.load(Ordering::Relaxed)
    }

    /// The engine's name (`embedded` or `redis`).
    pub fn engine(&self) -> &'static str {
        match &self.engine {
            Engine::Embedded(_) => "embedded",
            Engine::Redis(_) => "redis",
        }
    }

    /// Up to `limit` messages of `user`'s inbox after `after_seq`, in sequence order.
    pub async fn read_after(
        &self,
        user: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<InboxMessage>, StoreError> {
        match &self.engine {
            Engine::Embedded(s) => s.read_after(user, after_seq, limit),
            Engine::Redis(s) => s.read_after(user, after_seq, limit).await,
        }
    }

    /// The last sequence `user` acknowledged (0 when none).
    pub async fn last_acked(&self, user: &str) -> Result<u64, StoreError> {
        match &self.engine {
            Engine::Embedded(s) => s.last_acked(user),
            Engine::Redis(s) => s.last_acked(user).await,
        }
    }

    /// The members of `room`, sorted.
    pub async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        match &self.engine {
            Engine::Embedded(s) => s.members(room),
            Engine::Redis(s) => s.members(room).await,
        }
    }

    /// The rooms `user` is a member of, sorted.
    pub async fn rooms_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        match &self.engine {
            Engine::Embedded(s) => s.rooms_of(user),
            Engine::Redis(s) => s.rooms_of(user).await,
        }
    }

    /// The Redis engine behind this store, if that is the engine (presence across
    /// nodes uses its connection).
    pub(crate) fn redis(&self) -> Option<&redis::RedisStore> {
        match &self.engine {
            Engine::Redis(s) => Some(s),
            Engine::Embedded(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_locations() {
        assert_eq!(
            StoreLocation::parse("redis://127.0.0.1:6379/0"),
            StoreLocation::Redis("redis://127.0.0.1:6379/0".into())
        );
        assert_eq!(
            StoreLocation::parse("/var/lib/cascade/signal.redb"),
            StoreLocation::File("/var/lib/cascade/signal.redb".into())
        );
        assert_eq!(
            StoreLocation::parse("redis://:hunter2@db:6379").to_string(),
            "redis://…@db:6379",
            "a password never reaches a log line"
        );
    }
}
