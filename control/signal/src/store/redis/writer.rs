//! The Redis engine's writer task and its notification subscription.
//!
//! The writer takes every pending write from its channel and sends them as one
//! pipeline of script calls, in the order they were queued; Redis answers once the
//! batch is in its append-only file (with `appendfsync always`), and only then is
//! each write answered. A failed pipeline fails every write of the batch: a send
//! may then have been stored without its sender knowing, which the sender's retry
//! with the same client id resolves (idempotent send).
//!
//! The subscription to `P:notify` turns every node's appends into wake-ups of this
//! node's inbox readers. When it breaks it is made again, and every reader is woken
//! once, since notifications may have been missed meanwhile.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSubStream};
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};
use tokio::sync::{mpsc, oneshot};

use super::{PREFIX, Scripts};
use crate::store::{AppendRequest, Appended, Destination, StoreError, Watchers, unix_ms};

/// Most writes sent in one pipeline.
const MAX_BATCH: usize = 1_024;
/// Wait before making a broken subscription again.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(250);

/// What the writer was asked to do.
pub(super) enum WriteOp {
    Append(AppendRequest, oneshot::Sender<Result<Appended, StoreError>>),
    Ack(String, u64, oneshot::Sender<Result<u64, StoreError>>),
}

/// The one task per node that writes.
pub(super) struct Writer {
    pub(super) conn: ConnectionManager,
    pub(super) scripts: Arc<Scripts>,
    pub(super) watchers: Arc<Watchers>,
    pub(super) retention_ms: u64,
}

impl Writer {
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<WriteOp>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let results = match self.send(&batch).await {
                Err(e) if is_noscript(&e) => {
                    // The server lost its scripts (a restart): nothing of the batch ran.
                    tracing::warn!("redis lost the scripts; loading them again");
                    match self.load_scripts().await {
                        Ok(()) => self.send(&batch).await,
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            match results {
                Ok(values) => {
                    self.watchers.committed();
                    for (op, value) in batch.drain(..).zip(values) {
                        self.answer(op, value);
                    }
                }
                Err(e) => {
                    tracing::error!("redis write failed: {e}");
                    let failure = StoreError::from(e);
                    for op in batch.drain(..) {
                        let _ = match op {
                            WriteOp::Append(_, tx) => tx.send(Err(failure.clone())).map_err(drop),
                            WriteOp::Ack(_, _, tx) => tx.send(Err(failure.clone())).map_err(drop),
                        };
                    }
                }
            }
        }
    }

    async fn load_scripts(&mut self) -> Result<(), RedisError> {
        let s = &self.scripts;
        for script in [&s.append, &s.ack, &s.trim] {
            script.load_async(&mut self.conn).await?;
        }
        Ok(())
    }

    /// Sends the batch as one pipeline; one reply per write, in order.
    async fn send(&mut self, batch: &[WriteOp]) -> Result<Vec<Value>, RedisError> {
        let mut pipe = redis::pipe();
        let now = unix_ms();
        for op in batch {
            match op {
                WriteOp::Append(req, _) => {
                    let (kind, target) = match &req.to {
                        Destination::User(u) => ("user", u),
                        Destination::Room(r) => ("room", r),
                    };
                    let stored = serde_json::to_string(&req.stored()).unwrap_or_default();
                    pipe.cmd("EVALSHA")
                        .arg(self.scripts.append.get_hash())
                        .arg(0)
                        .arg(PREFIX)
                        .arg(&req.sender)
                        .arg(&req.client_id)
                        .arg(kind)
                        .arg(target)
                        .arg(stored)
                        .arg(if req.sender_must_be_member { "1" } else { "0" })
                        .arg(now)
                        .arg(self.retention_ms);
                }
                WriteOp::Ack(user, seq, _) => {
                    pipe.cmd("EVALSHA")
                        .arg(self.scripts.ack.get_hash())
                        .arg(0)
                        .arg(PREFIX)
                        .arg(user)
                        .arg(*seq);
                }
            }
        }
        pipe.query_async(&mut self.conn).await
    }

    fn answer(&self, op: WriteOp, value: Value) {
        match op {
            WriteOp::Append(req, tx) => {
                let result = append_outcome(&req, value);
                if let Ok(a) = &result
                    && !a.duplicate
                {
                    // This node's readers learn at once; other nodes through `P:notify`.
                    self.watchers.publish(&a.deliveries);
                }
                let _ = tx.send(result);
            }
            WriteOp::Ack(_, _, tx) => {
                let result = redis::from_redis_value::<u64>(value)
                    .map_err(|e| StoreError::Storage(format!("redis ack reply: {e}")));
                let _ = tx.send(result);
            }
        }
    }
}

/// Reads the append script's `{status, deliveries JSON}`.
fn append_outcome(req: &AppendRequest, value: Value) -> Result<Appended, StoreError> {
    let (status, json): (i64, String) = redis::from_redis_value(value)
        .map_err(|e| StoreError::Storage(format!("redis append reply: {e}")))?;
    let deliveries = || {
        serde_json::from_str::<Vec<(String, u64)>>(&json)
            .map_err(|e| StoreError::Storage(format!("redis append deliveries: {e}")))
    };
    match status {
        0 => Ok(Appended {
            deliveries: deliveries()?,
            duplicate: false,
        }),
        1 => Ok(Appended {
            deliveries: deliveries()?,
            duplicate: true,
        }),
        _ => Err(StoreError::UnknownRoom(match &req.to {
            Destination::Room(r) | Destination::User(r) => r.clone(),
        })),
    }
}

fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Logs a warning when Redis would answer before its data is on disk.
pub(super) async fn warn_unless_durable(conn: &mut ConnectionManager) {
    let config: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("append*")
        .query_async(conn)
        .await;
    let Ok(pairs) = config else {
        tracing::warn!(
            "cannot read the redis configuration: check appendonly yes, appendfsync always"
        );
        return;
    };
    let get = |k: &str| {
        pairs
            .chunks(2)
            .find(|c| c[0] == k)
            .and_then(|c| c.get(1))
            .map(String::as_str)
    };
    if get("appendonly") != Some("yes") || get("appendfsync") != Some("always") {
        tracing::warn!(
            appendonly = get("appendonly"),
            appendfsync = get("appendfsync"),
            "redis does not write each batch to disk before answering: accepted messages \
             can be lost in a redis crash (set appendonly yes, appendfsync always)"
        );
    }
}

/// A subscription to the append notifications.
pub(super) async fn subscribe(client: &redis::Client) -> Result<PubSubStream, RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(format!("{PREFIX}:notify")).await?;
    Ok(pubsub.into_on_message())
}

/// Wakes this node's inbox readers for every append of any node, until the store
/// is gone.
pub(super) async fn notifications(
    client: redis::Client,
    mut messages: PubSubStream,
    watchers: Weak<Watchers>,
) {
    loop {
        while let Some(msg) = messages.next().await {
            let Some(watchers) = watchers.upgrade() else {
                return;
            };
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            if let Ok(deliveries) = serde_json::from_str::<Vec<(String, u64)>>(&payload) {
                watchers.publish(&deliveries);
            }
        }
        tracing::warn!("redis notification subscription lost; subscribing again");
        loop {
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
            if watchers.strong_count() == 0 {
                return;
            }
            match subscribe(&client).await {
                Ok(stream) => {
                    messages = stream;
                    break;
                }
                Err(e) => tracing::warn!("redis subscribe failed: {e}"),
            }
        }
        // Appends made while unsubscribed were not announced: every reader reads again.
        if let Some(watchers) = watchers.upgrade() {
            watchers.wake_all();
        }
    }
}
