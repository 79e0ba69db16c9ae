//! Presence across the nodes of one Redis engine.
//!
//! Each node keeps, in Redis, the set of users connected to it
//! (`P:online:{node}`) and a heartbeat (`P:nodes`, node → unix ms). A user is
//! online when a node that beat within [`NODE_DEAD_AFTER`] lists it. Presence
//! events are published on `P:presence` and each node hands them to its own
//! connections. A node that stops beating (killed) is swept by the first other
//! node to notice: its users that are not online elsewhere are announced offline.
//!
//! Presence stays best effort, as on one node: nothing of it is stored with the
//! messages, and an event can be lost while a node reconnects to Redis.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::store::redis::PREFIX;
use crate::store::unix_ms;

/// How often a node beats and rewrites its set of connected users.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node silent for this long is dead; its users go offline.
pub const NODE_DEAD_AFTER: Duration = Duration::from_secs(8);

/// A presence event as it crosses nodes.
#[derive(Debug, Serialize, Deserialize)]
struct Event {
    node: String,
    users: Vec<String>,
    user: String,
    online: bool,
}

/// What a node changes in Redis, in order.
#[derive(Debug)]
pub(crate) enum Change {
    Online(String),
    Offline(String),
    Publish(String),
}

/// This node's side of presence in Redis.
#[derive(Debug)]
pub struct ClusterPresence {
    node: String,
    conn: ConnectionManager,
    changes: mpsc::UnboundedSender<Change>,
}

/// Is `user` in the set of a live node other than `node`?
const ONLINE_ELSEWHERE: &str = r#"
local nodes = redis.call('ZRANGEBYSCORE', ARGV[1] .. ':nodes', ARGV[4], '+inf')
for _, n in ipairs(nodes) do
  if n ~= ARGV[2] and redis.call('SISMEMBER', ARGV[1] .. ':online:' .. n, ARGV[3]) == 1 then
    return 1
  end
end
return 0
"#;

impl ClusterPresence {
    /// Starts this node's presence in Redis under a fresh node id.
    pub(crate) fn start(
        conn: ConnectionManager,
    ) -> (ClusterPresence, mpsc::UnboundedReceiver<Change>) {
        let node = format!("{:016x}", rand_node_id());
        let (changes, rx) = mpsc::unbounded_channel();
        (
            ClusterPresence {
                node,
                conn,
                changes,
            },
            rx,
        )
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub(super) fn online(&self, user: &str) {
        let _ = self.changes.send(Change::Online(user.to_owned()));
    }

    pub(super) fn offline(&self, user: &str) {
        let _ = self.changes.send(Change::Offline(user.to_owned()));
    }

    /// Publishes a presence event for the other nodes' connections of `users`.
    pub(super) fn publish(&self, users: &[String], user: &str, online: bool) {
        let event = Event {
            node: self.node.clone(),
            users: users.to_vec(),
            user: user.to_owned(),
            online,
        };
        if let Ok(json) = serde_json::to_string(&event) {
            let _ = self.changes.send(Change::Publish(json));
        }
    }

    /// True when a live node other than this one has a connection of `user`.
    pub async fn online_elsewhere(&self, user: &str) -> bool {
        let since = unix_ms().saturating_sub(NODE_DEAD_AFTER.as_millis() as u64);
        let r: Result<i64, _> = redis::Script::new(ONLINE_ELSEWHERE)
            .arg(PREFIX)
            .arg(&self.node)
            .arg(user)
            .arg(since)
            .invoke_async(&mut self.conn.clone())
            .await;
        matches!(r, Ok(1))
    }
}

fn rand_node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(unix_ms() as u128 ^ u128::from(std::process::id()));
    h.finish()
}

/// Carries this node's changes to Redis in order, beats, rewrites the node's set of
/// users, and sweeps dead nodes; `local_users` lists this node's connected users,
/// `gone_offline` is told the users of a swept node that are not online elsewhere.
pub(crate) async fn run(
    presence: Weak<super::Presence>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    mut conn: ConnectionManager,
    gone_offline: mpsc::UnboundedSender<String>,
) {
    let mut beat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { return };
                let Some(p) = presence.upgrade() else { return };
                let Some(cluster) = p.cluster() else { return };
                let key = format!("{PREFIX}:online:{}", cluster.node());
                let r: redis::RedisResult<()> = match change {
                    Change::Online(user) => conn.sadd(&key, user).await,
                    Change::Offline(user) => conn.srem(&key, user).await,
                    Change::Publish(json) => conn.publish(format!("{PREFIX}:presence"), json).await,
                };
                if let Err(e) = r {
                    tracing::warn!("presence update to redis failed: {e}");
                }
            }
            _ = beat.tick() => {
                let Some(p) = presence.upgrade() else { return };
                let Some(cluster) = p.cluster() else { return };
                if let Err(e) = heartbeat(&mut conn, cluster.node(), &p.local_users(), &gone_offline).await {
                    tracing::warn!("presence heartbeat to redis failed: {e}");
                }
            }
        }
    }
}

async fn heartbeat(
    conn: &mut ConnectionManager,
    node: &str,
    users: &[String],
    gone_offline: &mpsc::UnboundedSender<String>,
) -> redis::RedisResult<()> {
    let now = unix_ms();
    let key = format!("{PREFIX}:online:{node}");
    let nodes = format!("{PREFIX}:nodes");
    let mut pipe = redis::pipe();
    pipe.atomic().del(&key);
    if !users.is_empty() {
        pipe.sadd(&key, users);
    }
    pipe.zadd(&nodes, node, now);
    let () = pipe.query_async(conn).await?;
    let dead_before = now.saturating_sub(NODE_DEAD_AFTER.as_millis() as u64);
    let dead: Vec<String> = conn.zrangebyscore(&nodes, 0, dead_before).await?;
    for other in dead {
        // The one node whose ZREM removes it sweeps it.
        let removed: i64 = conn.zrem(&nodes, &other).await?;
        if removed != 1 {
            continue;
        }
        let key = format!("{PREFIX}:online:{other}");
        let users: Vec<String> = conn.smembers(&key).await?;
        let () = conn.del(&key).await?;
        tracing::info!(
            node = other,
            users = users.len(),
            "swept a node that stopped beating"
        );
        for user in users {
            let _ = gone_offline.send(user);
        }
    }
    Ok(())
}

/// Hands presence events published by other nodes to this node's connections.
pub(crate) async fn deliver(client: redis::Client, presence: Weak<super::Presence>) {
    loop {
        let stream = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(format!("{PREFIX}:presence")).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        match stream.await {
            Ok(mut messages) => {
                while let Some(msg) = messages.next().await {
                    let Some(p) = presence.upgrade() else { return };
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let Ok(event) = serde_json::from_str::<Event>(&payload) else {
                        continue;
                    };
                    if p.cluster().is_some_and(|c| c.node() == event.node) {
                        continue;
                    }
                    p.notify_local(
                        &event.users,
                        &crate::protocol::ServerFrame::Presence {
                            user: event.user,
                            online: event.online,
                        },
                    );
                }
            }
            Err(e) => tracing::warn!("presence subscription failed: {e}"),
        }
        if presence.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
