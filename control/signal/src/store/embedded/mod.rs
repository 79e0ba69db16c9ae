//! The embedded engine: inboxes, acknowledgements, idempotency keys and room
//! membership in one redb file.
//!
//! Every write goes through one writer thread that takes all pending writes from a
//! channel and commits them in one transaction with
//! [`redb::Durability::Immediate`] (group commit), then answers each: a send is
//! reported accepted only once it is on disk. After each commit the writer
//! publishes, per recipient, the last sequence it committed to the store's
//! watchers, so that readers learn an inbox grew. Reads are short read
//! transactions on the caller's thread.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use self::writer::{WriteOp, Writer};
use super::{
    AppendRequest, Appended, InboxMessage, StoreError, StoredMessage, TrimReport, Watchers,
    WriterDone,
};

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

/// The redb engine; cheap to clone.
#[derive(Clone)]
pub(crate) struct EmbeddedStore {
    db: Arc<Database>,
    writes: mpsc::Sender<WriteOp>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store file and starts its writer thread.
    pub(crate) fn open(
        path: &Path,
        retention_ms: u64,
        watchers: &Arc<Watchers>,
    ) -> Result<(EmbeddedStore, WriterDone), StoreError> {
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
        let (done_tx, done) = WriterDone::new();
        let writer = Writer {
            db: db.clone(),
            watchers: watchers.clone(),
            retention_ms,
        };
        std::thread::Builder::new()
            .name("signal-store".into())
            .spawn(move || {
                writer.run(rx);
                drop(done_tx);
            })
            .map_err(|e| StoreError::Storage(format!("cannot start the writer: {e}")))?;
        Ok((EmbeddedStore { db, writes }, done))
    }

    /// Queues an append; the returned receiver answers after the commit.
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
        self.write(|tx| WriteOp::Ack(user.to_owned(), seq, tx))
            .await
    }

    pub(crate) async fn set_member(
        &self,
        room: &str,
        user: &str,
        member: bool,
    ) -> Result<(), StoreError> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.write(|tx| match member {
            true => WriteOp::Join(room, user, tx),
            false => WriteOp::Leave(room, user, tx),
        })
        .await
    }

    pub(crate) async fn trim(&self, now_ms: u64) -> Result<TrimReport, StoreError> {
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

    /// Up to `limit` messages of `user`'s inbox after `after_seq`, in sequence order.
    pub(crate) fn read_after(
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
            out.push(stored.into_inbox(seq, sent_at));
        }
        Ok(out)
    }

    /// The last sequence `user` acknowledged (0 when none).
    pub(crate) fn last_acked(&self, user: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(USERS)?;
        Ok(table.get(user)?.map(|v| v.value().1).unwrap_or(0))
    }

    /// The members of `room`, sorted.
    pub(crate) fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MEMBERS)?;
        related(&table, room)
    }

    /// The rooms `user` is a member of, sorted.
    pub(crate) fn rooms_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
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
    use crate::store::{
        AppendRequest, Destination, Store, StoreError, StoreLocation, TrimReport, unix_ms,
    };

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
        let (store, mut done) = Store::open(&StoreLocation::File(path.clone()), 60_000)
            .await
            .unwrap();
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

        let all = store.read_after("bob", 0, 10).await.unwrap();
        assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(all[2].from, "carol");
        assert_eq!(store.read_after("bob", 1, 1).await.unwrap()[0].id, "m2");

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
        assert_eq!(store.last_acked("bob").await.unwrap(), 3);
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

        let (store, _done) = Store::open(&StoreLocation::File(path.clone()), 60_000)
            .await
            .unwrap();
        assert_eq!(
            store.last_acked("bob").await.unwrap(),
            3,
            "acks survive a reopen"
        );
        let e = store.append(req("alice", "m4", bob())).await.unwrap();
        assert_eq!(e.deliveries, vec![("bob".to_owned(), 5)]);
    }

    #[tokio::test]
    async fn rooms_reach_every_member_but_the_sender() {
        let (store, _done) = Store::open(&StoreLocation::File(temp_path("rooms")), 60_000)
            .await
            .unwrap();
        let room = || Destination::Room("r".into());
        assert!(matches!(
            store.append(req("alice", "x", room())).await,
            Err(StoreError::UnknownRoom(_))
        ));
        for user in ["alice", "bob", "carol"] {
            store.join("r", user).await.unwrap();
        }
        assert_eq!(
            store.members("r").await.unwrap(),
            vec!["alice", "bob", "carol"]
        );
        assert_eq!(store.rooms_of("bob").await.unwrap(), vec!["r"]);
        let mut watch = store.subscribe("carol");
        let a = store.append(req("alice", "x", room())).await.unwrap();
        assert_eq!(
            a.deliveries,
            vec![("bob".to_owned(), 1), ("carol".to_owned(), 1)]
        );
        assert!(watch.has_changed().unwrap());
        assert_eq!(*watch.borrow_and_update(), 1);
        assert_eq!(
            store.read_after("carol", 0, 10).await.unwrap()[0]
                .room
                .as_deref(),
            Some("r")
        );
        store.leave("r", "bob").await.unwrap();
        assert_eq!(store.members("r").await.unwrap(), vec!["alice", "carol"]);
        assert!(store.rooms_of("bob").await.unwrap().is_empty());
    }
}
