//! The cluster engine: the same inboxes in a Redis server shared by several
//! `cascade signal` nodes.
//!
//! Layout under the prefix `P` (`cascade:signal`):
//! - `P:inbox:{user}`: a Redis Stream per user; the entry id is `{seq}-0`, so the
//!   stream's order is the inbox order and `XRANGE` resumes after any sequence.
//! - `P:seq` / `P:acked`: hashes of the last sequence assigned / acknowledged.
//! - `P:idem:{sender}\0{client id}`: the deliveries of a stored send, expiring after
//!   the retention (the idempotency window).
//! - `P:members:{room}` / `P:rooms:{user}`: room membership, both ways.
//! - `P:notify`: a pub/sub channel on which every append publishes its deliveries,
//!   so that every node wakes the readers of the inboxes that grew.
//!
//! An append is one Lua script (idempotency check, sequence, `XADD` to each
//! recipient, idempotency key, notification), so it is atomic whatever the number of
//! nodes. Writes are queued to one writer task per node, which sends everything
//! pending as one pipeline: with `appendfsync always` Redis writes the whole batch
//! to its append-only file before it answers (group commit), and only then is a
//! send reported accepted. The scripts touch keys they compute, so the engine needs
//! one Redis server (standalone or behind Sentinel), not Redis Cluster.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, RedisError, Script};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::writer::{WriteOp, Writer, notifications, subscribe, warn_unless_durable};
use super::{AppendRequest, Appended, InboxMessage, StoreError, StoredMessage};
use super::{TrimReport, Watchers, WriterDone};

mod writer;

/// Prefix of every key and channel.
pub const PREFIX: &str = "cascade:signal";
/// Writes waiting for the writer; a full channel makes senders wait.
const WRITE_QUEUE: usize = 16_384;

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        StoreError::Storage(format!("redis: {e}"))
    }
}

/// The scripts, loaded at start and called by hash.
struct Scripts {
    append: Script,
    ack: Script,
    trim: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            append: Script::new(include_str!("append.lua")),
            ack: Script::new(include_str!("ack.lua")),
            trim: Script::new(include_str!("trim.lua")),
        }
    }
}

/// The Redis engine; cheap to clone.
#[derive(Clone)]
pub(crate) struct RedisStore {
    conn: ConnectionManager,
    client: redis::Client,
    writes: mpsc::Sender<WriteOp>,
    scripts: Arc<Scripts>,
    retention_ms: u64,
    /// Aborts the notification task when the last clone goes.
    _notifier: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RedisStore {
    /// Connects, loads the scripts, subscribes to the notifications and starts the
    /// writer task.
    pub(crate) async fn open(
        url: &str,
        retention_ms: u64,
        watchers: &Arc<Watchers>,
    ) -> Result<(RedisStore, WriterDone), StoreError> {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_connection_manager().await?;
        let scripts = Arc::new(Scripts::new());
        for script in [&scripts.append, &scripts.ack, &scripts.trim] {
            script.load_async(&mut conn).await?;
        }
        warn_unless_durable(&mut conn).await;
        // Subscribed before the first client is served, so no append is missed.
        let subscription = subscribe(&client).await?;
        let notifier = tokio::spawn(notifications(
            client.clone(),
            subscription,
            Arc::downgrade(watchers),
        ));
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        let (done_tx, done) = WriterDone::new();
        let writer = Writer {
            conn: conn.clone(),
            scripts: scripts.clone(),
            watchers: watchers.clone(),
            retention_ms: retention_ms.max(1),
        };
        let retention_ms = retention_ms.max(1);
        tokio::spawn(async move {
            writer.run(rx).await;
            drop(done_tx);
        });
        Ok((
            RedisStore {
                conn,
                client,
                writes,
                scripts,
                retention_ms,
                _notifier: Arc::new(AbortOnDrop(notifier)),
            },
            done,
        ))
    }

    /// The client, for other pub/sub subscriptions (presence).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A connection for commands of other modules (presence).
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(crate) async fn submit_append(
        &self,
        req: AppendRequest,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(WriteOp::Append(req, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    pub(crate) async fn ack(&self, user: &str, seq: u64) -> Result<u64, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(WriteOp::Ack(user.to_owned(), seq, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn set_member(
        &self,
        room: &str,
        user: &str,
        member: bool,
    ) -> Result<(), StoreError> {
        let members = format!("{PREFIX}:members:{room}");
        let rooms = format!("{PREFIX}:rooms:{user}");
        let mut pipe = redis::pipe();
        pipe.atomic();
        if member {
            pipe.sadd(&members, user).sadd(&rooms, room);
        } else {
            pipe.srem(&members, user).srem(&rooms, room);
        }
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Removes every inbox entry older than the retention, user by user.
    pub(crate) async fn trim(&self, now_ms: u64) -> Result<TrimReport, StoreError> {
        let mut conn = self.conn.clone();
        let users: Vec<String> = conn.hkeys(format!("{PREFIX}:seq")).await?;
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        let mut report = TrimReport::default();
        for user in users {
            loop {
                let removed: u64 = self
                    .scripts
                    .trim
                    .arg(PREFIX)
                    .arg(&user)
                    .arg(cutoff)
                    .invoke_async(&mut conn)
                    .await?;
                report.messages += removed;
                if removed < 1000 {
                    break;
                }
            }
        }
        Ok(report)
    }

    pub(crate) async fn read_after(
        &self,
        user: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<InboxMessage>, StoreError> {
        let Some(from) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        let reply: StreamRangeReply = self
            .conn
            .clone()
            .xrange_count(
                format!("{PREFIX}:inbox:{user}"),
                format!("{from}-0"),
                "+",
                limit,
            )
            .await?;
        reply
            .ids
            .into_iter()
            .map(|entry| {
                let bad = |what: &str| {
                    StoreError::Storage(format!("inbox entry {user}/{}: {what}", entry.id))
                };
                let seq = entry
                    .id
                    .split('-')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| bad("id"))?;
                let sent_at: u64 = entry.get("t").ok_or_else(|| bad("no time"))?;
                let json: Vec<u8> = entry.get("m").ok_or_else(|| bad("no message"))?;
                let stored: StoredMessage =
                    serde_json::from_slice(&json).map_err(|e| bad(&e.to_string()))?;
                Ok(stored.into_inbox(seq, sent_at))
            })
            .collect()
    }

    pub(crate) async fn last_acked(&self, user: &str) -> Result<u64, StoreError> {
        let acked: Option<u64> = self
            .conn
            .clone()
            .hget(format!("{PREFIX}:acked"), user)
            .await?;
        Ok(acked.unwrap_or(0))
    }

    pub(crate) async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        self.sorted_set(format!("{PREFIX}:members:{room}")).await
    }

    pub(crate) async fn rooms_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.sorted_set(format!("{PREFIX}:rooms:{user}")).await
    }

    async fn sorted_set(&self, key: String) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = self.conn.clone().smembers(key).await?;
        out.sort();
        Ok(out)
    }
}
