//! The store's one writer thread: it takes every pending write from the channel,
//! carries them out in one redb transaction, commits it with
//! [`Durability::Immediate`], then answers each write and publishes the inboxes that
//! grew. A storage error fails the whole batch and nothing of it stays.

use std::collections::HashMap;
use std::sync::Arc;

use redb::{Database, Durability, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use super::{IDEMPOTENCY, INBOX, MAX_BATCH, MEMBERS, USER_ROOMS, USERS, related};
use crate::store::{
    AppendRequest, Appended, Destination, StoreError, TrimReport, Watchers, unix_ms,
};

/// What the writer was asked to do.
pub(super) enum WriteOp {
    Append(AppendRequest, oneshot::Sender<Result<Appended, StoreError>>),
    Ack(String, u64, oneshot::Sender<Result<u64, StoreError>>),
    Join(String, String, oneshot::Sender<Result<(), StoreError>>),
    Leave(String, String, oneshot::Sender<Result<(), StoreError>>),
    Trim(u64, oneshot::Sender<Result<TrimReport, StoreError>>),
}

/// The one thread that writes.
pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) watchers: Arc<Watchers>,
    pub(super) retention_ms: u64,
}

/// A write's answer, held until the commit.
enum Reply {
    Append(
        oneshot::Sender<Result<Appended, StoreError>>,
        Result<Appended, StoreError>,
    ),
    Ack(oneshot::Sender<Result<u64, StoreError>>, u64),
    Unit(oneshot::Sender<Result<(), StoreError>>),
    Trim(oneshot::Sender<Result<TrimReport, StoreError>>, TrimReport),
}

impl Reply {
    fn send(self, failure: Option<&StoreError>) {
        let _ = match (self, failure) {
            (Reply::Append(tx, _), Some(e)) => tx.send(Err(e.clone())).map_err(drop),
            (Reply::Append(tx, r), None) => tx.send(r).map_err(drop),
            (Reply::Ack(tx, _), Some(e)) => tx.send(Err(e.clone())).map_err(drop),
            (Reply::Ack(tx, v), None) => tx.send(Ok(v)).map_err(drop),
            (Reply::Unit(tx), Some(e)) => tx.send(Err(e.clone())).map_err(drop),
            (Reply::Unit(tx), None) => tx.send(Ok(())).map_err(drop),
            (Reply::Trim(tx, _), Some(e)) => tx.send(Err(e.clone())).map_err(drop),
            (Reply::Trim(tx, r), None) => tx.send(Ok(r)).map_err(drop),
        };
    }
}

impl Reply {
    /// The reply of an op that was not carried out (its batch failed).
    fn unanswered(op: WriteOp) -> Reply {
        match op {
            WriteOp::Append(_, tx) => Reply::Append(tx, Err(StoreError::Closed)),
            WriteOp::Ack(_, _, tx) => Reply::Ack(tx, 0),
            WriteOp::Join(_, _, tx) | WriteOp::Leave(_, _, tx) => Reply::Unit(tx),
            WriteOp::Trim(_, tx) => Reply::Trim(tx, TrimReport::default()),
        }
    }
}

impl Writer {
    pub(super) fn run(self, mut rx: mpsc::Receiver<WriteOp>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let mut replies = Vec::with_capacity(batch.len());
            let mut committed = Vec::new();
            let mut ops = batch.into_iter();
            let outcome = self.commit(&mut ops, &mut replies, &mut committed);
            match &outcome {
                Ok(()) => self.watchers.publish(&committed),
                Err(e) => {
                    tracing::error!("store commit failed: {e}");
                    replies.extend(ops.map(Reply::unanswered));
                }
            }
            for reply in replies {
                reply.send(outcome.as_ref().err());
            }
        }
    }

    /// Applies the ops in one transaction and commits it; on an error the
    /// transaction is dropped (nothing of it stays) and the ops not yet taken stay
    /// in `ops`.
    fn commit(
        &self,
        ops: &mut std::vec::IntoIter<WriteOp>,
        replies: &mut Vec<Reply>,
        committed: &mut Vec<(String, u64)>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = Tables {
                inbox: txn.open_table(INBOX)?,
                users: txn.open_table(USERS)?,
                idempotency: txn.open_table(IDEMPOTENCY)?,
                members: txn.open_table(MEMBERS)?,
                user_rooms: txn.open_table(USER_ROOMS)?,
            };
            let now = unix_ms();
            for op in ops.by_ref() {
                let (reply, failure) = t.apply(op, now, self.retention_ms, committed);
                replies.push(reply);
                if let Some(e) = failure {
                    return Err(e);
                }
            }
        }
        txn.commit()?;
        self.watchers.committed();
        Ok(())
    }
}

/// The tables of one write transaction.
struct Tables<'txn> {
    inbox: redb::Table<'txn, (&'static str, u64), (u64, &'static [u8])>,
    users: redb::Table<'txn, &'static str, (u64, u64)>,
    idempotency: redb::Table<'txn, (&'static str, &'static str), (u64, &'static [u8])>,
    members: redb::Table<'txn, (&'static str, &'static str), u64>,
    user_rooms: redb::Table<'txn, (&'static str, &'static str), u64>,
}

impl Tables<'_> {
    /// Carries out one op; a storage error fails the whole transaction.
    fn apply(
        &mut self,
        op: WriteOp,
        now: u64,
        retention_ms: u64,
        committed: &mut Vec<(String, u64)>,
    ) -> (Reply, Option<StoreError>) {
        fn storage<T>(r: &Result<T, StoreError>) -> Option<StoreError> {
            match r {
                Err(e @ (StoreError::Storage(_) | StoreError::Closed)) => Some(e.clone()),
                _ => None,
            }
        }
        match op {
            WriteOp::Append(req, tx) => {
                let r = self.append(&req, now);
                if let Ok(a) = &r
                    && !a.duplicate
                {
                    committed.extend(a.deliveries.iter().cloned());
                }
                let failure = storage(&r);
                (Reply::Append(tx, r), failure)
            }
            WriteOp::Ack(user, seq, tx) => {
                let r = self.ack(&user, seq);
                let failure = storage(&r);
                (Reply::Ack(tx, r.unwrap_or(0)), failure)
            }
            WriteOp::Join(room, user, tx) => {
                let r = self.membership(&room, &user, true);
                (Reply::Unit(tx), storage(&r))
            }
            WriteOp::Leave(room, user, tx) => {
                let r = self.membership(&room, &user, false);
                (Reply::Unit(tx), storage(&r))
            }
            WriteOp::Trim(now_ms, tx) => {
                let r = self.trim(now_ms.saturating_sub(retention_ms));
                let failure = storage(&r);
                (Reply::Trim(tx, r.unwrap_or_default()), failure)
            }
        }
    }

    fn membership(&mut self, room: &str, user: &str, member: bool) -> Result<(), StoreError> {
        if member {
            let now = unix_ms();
            self.members.insert((room, user), now)?;
            self.user_rooms.insert((user, room), now)?;
        } else {
            self.members.remove((room, user))?;
            self.user_rooms.remove((user, room))?;
        }
        Ok(())
    }

    fn append(&mut self, req: &AppendRequest, now: u64) -> Result<Appended, StoreError> {
        let key = (req.sender.as_str(), req.client_id.as_str());
        if let Some(first) = self.idempotency.get(key)? {
            let (_, bytes) = first.value();
            let deliveries: Vec<(String, u64)> = serde_json::from_slice(bytes)
                .map_err(|e| StoreError::Storage(format!("idempotency entry: {e}")))?;
            return Ok(Appended {
                deliveries,
                duplicate: true,
            });
        }
        let recipients = match &req.to {
            Destination::User(user) => vec![user.clone()],
            Destination::Room(room) => {
                let members = related(&self.members, room)?;
                if members.is_empty()
                    || (req.sender_must_be_member && !members.contains(&req.sender))
                {
                    return Err(StoreError::UnknownRoom(room.clone()));
                }
                members.into_iter().filter(|m| *m != req.sender).collect()
            }
        };
        let stored =
            serde_json::to_vec(&req.stored()).map_err(|e| StoreError::Storage(e.to_string()))?;
        let mut deliveries = Vec::with_capacity(recipients.len());
        for user in recipients {
            let (last, acked) = self
                .users
                .get(user.as_str())?
                .map(|v| v.value())
                .unwrap_or((0, 0));
            let seq = last + 1;
            self.users.insert(user.as_str(), (seq, acked))?;
            self.inbox
                .insert((user.as_str(), seq), (now, stored.as_slice()))?;
            deliveries.push((user, seq));
        }
        let encoded =
            serde_json::to_vec(&deliveries).map_err(|e| StoreError::Storage(e.to_string()))?;
        self.idempotency.insert(key, (now, encoded.as_slice()))?;
        Ok(Appended {
            deliveries,
            duplicate: false,
        })
    }

    fn ack(&mut self, user: &str, seq: u64) -> Result<u64, StoreError> {
        let Some((last, acked)) = self.users.get(user)?.map(|v| v.value()) else {
            return Ok(0);
        };
        let acked = acked.max(seq.min(last));
        self.users.insert(user, (last, acked))?;
        Ok(acked)
    }

    fn trim(&mut self, cutoff_ms: u64) -> Result<TrimReport, StoreError> {
        let mut acked = HashMap::new();
        for entry in self.users.iter()? {
            let (user, v) = entry?;
            acked.insert(user.value().to_owned(), v.value().1);
        }
        let mut report = TrimReport::default();
        self.inbox.retain(|(user, seq), (sent_at, _)| {
            let keep = sent_at >= cutoff_ms && seq > acked.get(user).copied().unwrap_or(0);
            report.messages += u64::from(!keep);
            keep
        })?;
        self.idempotency.retain(|_, (created, _)| {
            let keep = created >= cutoff_ms;
            report.idempotency_keys += u64::from(!keep);
            keep
        })?;
        Ok(report)
    }
}
