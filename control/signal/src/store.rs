//! The durable state of `cascade signal`: per-user inboxes, acknowledgements, the
//! idempotency keys of sends and room membership, in one redb file.
//!
//! [`Store`] is the one type the rest of the service sees, so that another engine
//! can take its place behind the same methods. Every write goes through one writer
//! thread that takes all pending writes from a channel and commits them in one
//! transaction with [`redb::Durability::Immediate`] (group commit), then answers each:
//! a send is reported accepted only once it is on disk. After each commit the
//! writer publishes, per recipient, the last sequence it committed on a watch
//! channel ([`Store::subscribe`]), so that readers learn an inbox grew.
//!
//! It knows nothing of WebSockets, HTTP or media servers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use self::writer::{WriteOp, Writer};

mod writer;

/// Inbox entries: (user, seq) → (sent_at unix ms, JSON of [`StoredMessage`]).
const INBOX: TableDefinition<(&str, u64), (u64, &[u8])> = TableDefinition::new("inbox");
/// Per user: (last sequence assigned, last sequence acknowledged).
const USERS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("users");
/// (sender, client message id) → (created unix ms, JSON of the deliveries).
const IDEMPOTENCY: TableDefinition<(&str, &str), (u64, &[u8])> =
    TableDefinition::new("idempotency");
/// (room, user) → joined unix ms.
const MEMBERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("members");
/// (user, room) → joined unix ms: the same relation, looked up by user.
const USER_ROOMS: TableDefinition<(&str, &str), u64> = TableDefinition::new("user_rooms");

/// Writes waiting for the writer; a full channel makes senders wait.
const WRITE_QUEUE: usize = 16_384;
/// Most writes committed in one transaction.
const MAX_BATCH: usize = 4_096;

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

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(redb::Error::from(e).to_string())
            }
        }
    )*};
}
storage_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

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
    db: Arc<Database>,
    writes: mpsc::Sender<WriteOp>,
    watchers: Arc<Watchers>,
    /// Commits done by the writer (one per batch).
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Per watched user, the last sequence committed to its inbox.
#[derive(Default)]
struct Watchers(Mutex<HashMap<String, watch::Sender<u64>>>);

impl Watchers {
    fn publish(&self, deliveries: &[(String, u64)]) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
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
}

/// Resolves once the writer thread has stopped and released the database file.
#[derive(Debug)]
pub struct WriterDone(oneshot::Receiver<()>);

impl WriterDone {
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
    /// Opens (or creates) the store file and starts its writer thread. Messages older
    /// than `retention_ms` are removed by [`Store::trim`].
    pub fn open(path: &Path, retention_ms: u64) -> Result<(Store, WriterDone), StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(INBOX)?;
        txn.open_table(USERS)?;
        txn.open_table(IDEMPOTENCY)?;
        txn.open_table(MEMBERS)?;
        txn.open_table(USER_ROOMS)?;
        txn.commit()?;
        let db = Arc::new(db);
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        let (done_tx, done_rx) = oneshot::channel();
        let watchers = Arc::new(Watchers::default());
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writer = Writer {
            db: db.clone(),
            watchers: watchers.clone(),
            commits: commits.clone(),
            retention_ms,
        };
        std::thread::Builder::new()
            .name("signal-store".into())
            .spawn(move || {
                writer.run(rx);
                drop(done_tx);
            })
            .map_err(|e| StoreError::Storage(format!("cannot start the writer: {e}")))?;
        Ok((
            Store {
                db,
                writes,
                watchers,
                commits,
            },
            WriterDone(done_rx),
        ))
    }

    /// Queues an append; the returned receiver answers after the commit. Appends
    /// queued by one caller are committed in the order they were queued.
    pub async fn submit_append(
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

    /// Appends a message to the inbox of each recipient in one transaction; a
    /// retry of (sender, client id) returns the first result with `duplicate`.
    pub async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        self.submit_append(req)
            .await?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Records that `user` processed everything up to `seq` (never moves back, never
    /// past the last sequence assigned). Returns the last acknowledged sequence.
    pub async fn ack(&self, user: &str, seq: u64) -> Result<u64, StoreError> {
        self.write(|tx| WriteOp::Ack(user.to_owned(), seq, tx))
            .await
    }

    /// Makes `user` a member of `room`.
    pub async fn join(&self, room: &str, user: &str) -> Result<(), StoreError> {
        self.write(|tx| WriteOp::Join(room.to_owned(), user.to_owned(), tx))
            .await
    }

    /// Removes `user` from `room`.
    pub async fn leave(&self, room: &str, user: &str) -> Result<(), StoreError> {
        self.write(|tx| WriteOp::Leave(room.to_owned(), user.to_owned(), tx))
            .await
    }

    /// Removes acknowledged inbox entries, and entries and idempotency keys older
    /// than the retention, as of `now_ms`.
    pub async fn trim(&self, now_ms: u64) -> Result<TrimReport, StoreError> {
        self.write(|tx| WriteOp::Trim(now_ms, tx)).await
    }

    async fn write<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(op(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// A watch of the last sequence committed to `user`'s inbox from now on; it
    /// changes after every commit that adds to the inbox.
    pub fn subscribe(&self, user: &str) -> watch::Receiver<u64> {
        let mut map = self.watchers.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(user.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Forgets `user`'s watch once nobody holds a receiver of it.
    pub fn release(&self, user: &str) {
        let mut map = self.watchers.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(user).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(user);
        }
    }

    /// Number of transactions the writer committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Up to `limit` messages of `user`'s inbox after `after_seq`, in sequence order.
    pub fn read_after(
        &self,
        user: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<InboxMessage>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INBOX)?;
        let mut out = Vec::new();
        let Some(from) = after_seq.checked_add(1) else {
            return Ok(out);
        };
        for entry in table.range((user, from)..=(user, u64::MAX))?.take(limit) {
            let (key, value) = entry?;
            let (_, seq) = key.value();
            let (sent_at, bytes) = value.value();
            let stored: StoredMessage = serde_json::from_slice(bytes)
                .map_err(|e| StoreError::Storage(format!("inbox entry {user}/{seq}: {e}")))?;
            out.push(InboxMessage {
                seq,
                sent_at,
                from: stored.from,
                room: stored.room,
                id: stored.id,
                body: stored.body,
            });
        }
        Ok(out)
    }

    /// The last sequence `user` acknowledged (0 when none).
    pub fn last_acked(&self, user: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(USERS)?;
        Ok(table.get(user)?.map(|v| v.value().1).unwrap_or(0))
    }

    /// The members of `room`, sorted.
    pub fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MEMBERS)?;
        related(&table, room)
    }

    /// The rooms `user` is a member of, sorted.
    pub fn rooms_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(USER_ROOMS)?;
        related(&table, user)
    }
}

/// The second halves of the keys whose first half is `first`.
fn related(
    table: &impl ReadableTable<(&'static str, &'static str), u64>,
    first: &str,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for entry in table.range((first, "")..)? {
        let (key, _) = entry?;
        let (a, b) = key.value();
        if a != first {
            break;
        }
        out.push(b.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cascade-signal-store-{}-{name}-{}",
            std::process::id(),
            unix_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("store.redb")
    }

    fn req(sender: &str, id: &str, to: Destination) -> AppendRequest {
        AppendRequest {
            sender: sender.into(),
            client_id: id.into(),
            to,
            body: serde_json::json!({"text": id}),
            sender_must_be_member: true,
        }
    }

    #[tokio::test]
    async fn sequences_idempotency_ack_and_trim() {
        let path = temp_path("seq");
        let (store, mut done) = Store::open(&path, 60_000).unwrap();
        let bob = || Destination::User("bob".into());
        let a = store.append(req("alice", "m1", bob())).await.unwrap();
        assert_eq!(a.deliveries, vec![("bob".to_owned(), 1)]);
        assert!(!a.duplicate);
        let b = store.append(req("alice", "m2", bob())).await.unwrap();
        assert_eq!(b.deliveries, vec![("bob".to_owned(), 2)]);
        let again = store.append(req("alice", "m1", bob())).await.unwrap();
        assert_eq!(again.deliveries, vec![("bob".to_owned(), 1)]);
        assert!(again.duplicate);
        // Another sender may reuse the id.
        let carol = store.append(req("carol", "m1", bob())).await.unwrap();
        assert_eq!(carol.deliveries, vec![("bob".to_owned(), 3)]);

        let all = store.read_after("bob", 0, 10).unwrap();
        assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(all[2].from, "carol");
        assert_eq!(store.read_after("bob", 1, 1).unwrap()[0].id, "m2");

        assert_eq!(store.ack("bob", 2).await.unwrap(), 2);
        assert_eq!(
            store.ack("bob", 1).await.unwrap(),
            2,
            "acks never move back"
        );
        assert_eq!(
            store.ack("bob", 99).await.unwrap(),
            3,
            "nor past the last seq"
        );
        assert_eq!(store.last_acked("bob").unwrap(), 3);
        store.ack("bob", 2).await.unwrap();

        let trimmed = store.trim(unix_ms()).await.unwrap();
        assert_eq!(trimmed.messages, 3, "acknowledged entries go");
        assert_eq!(trimmed.idempotency_keys, 0);
        let d = store.append(req("alice", "m3", bob())).await.unwrap();
        assert_eq!(
            d.deliveries,
            vec![("bob".to_owned(), 4)],
            "sequences go on after a trim"
        );
        let expired = store.trim(unix_ms() + 120_000).await.unwrap();
        assert_eq!(
            expired,
            TrimReport {
                messages: 1,
                idempotency_keys: 4
            }
        );
        drop(store);
        done.wait().await;

        let (store, _done) = Store::open(&path, 60_000).unwrap();
        assert_eq!(store.last_acked("bob").unwrap(), 3, "acks survive a reopen");
        let e = store.append(req("alice", "m4", bob())).await.unwrap();
        assert_eq!(e.deliveries, vec![("bob".to_owned(), 5)]);
    }

    #[tokio::test]
    async fn rooms_reach_every_member_but_the_sender() {
        let (store, _done) = Store::open(&temp_path("rooms"), 60_000).unwrap();
        let room = || Destination::Room("r".into());
        assert!(matches!(
            store.append(req("alice", "x", room())).await,
            Err(StoreError::UnknownRoom(_))
        ));
        for user in ["alice", "bob", "carol"] {
            store.join("r", user).await.unwrap();
        }
        assert_eq!(store.members("r").unwrap(), vec!["alice", "bob", "carol"]);
        assert_eq!(store.rooms_of("bob").unwrap(), vec!["r"]);
        let mut watch = store.subscribe("carol");
        let a = store.append(req("alice", "x", room())).await.unwrap();
        assert_eq!(
            a.deliveries,
            vec![("bob".to_owned(), 1), ("carol".to_owned(), 1)]
        );
        assert!(watch.has_changed().unwrap());
        assert_eq!(*watch.borrow_and_update(), 1);
        assert_eq!(
            store.read_after("carol", 0, 10).unwrap()[0].room.as_deref(),
            Some("r")
        );
        store.leave("r", "bob").await.unwrap();
        assert_eq!(store.members("r").unwrap(), vec!["alice", "carol"]);
        assert!(store.rooms_of("bob").unwrap().is_empty());
    }
}
