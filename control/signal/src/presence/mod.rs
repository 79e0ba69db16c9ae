//! Who is online: the live connections of each user, and the channel each one
//! receives presence events on. In memory only; presence is never stored. With the
//! Redis engine, [`cluster`] extends it across nodes.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::protocol::ServerFrame;

pub mod cluster;

use self::cluster::ClusterPresence;

/// Presence events queued per connection; more are dropped (presence is best effort).
const PRESENCE_QUEUE: usize = 256;

/// The connections of every online user.
#[derive(Debug, Default)]
pub struct Presence {
    inner: Mutex<Users>,
    cluster: Option<ClusterPresence>,
}

#[derive(Debug, Default)]
struct Users {
    next_id: u64,
    by_user: HashMap<String, HashMap<u64, mpsc::Sender<ServerFrame>>>,
}

/// One registered connection.
#[derive(Debug)]
pub struct Registration {
    pub id: u64,
    pub events: mpsc::Receiver<ServerFrame>,
    /// True when this is the user's only connection.
    pub first: bool,
}

impl Presence {
    /// Presence of one node, or of one node among others sharing `cluster`.
    pub fn new(cluster: Option<ClusterPresence>) -> Presence {
        Presence {
            inner: Mutex::default(),
            cluster,
        }
    }

    /// The cross-node side, with the Redis engine.
    pub fn cluster(&self) -> Option<&ClusterPresence> {
        self.cluster.as_ref()
    }

    /// The users with a connection to this node.
    pub fn local_users(&self) -> Vec<String> {
        let users = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        users.by_user.keys().cloned().collect()
    }

    /// True when a connection of `user` is on another live node.
    pub async fn online_elsewhere(&self, user: &str) -> bool {
        match &self.cluster {
            Some(c) => c.online_elsewhere(user).await,
            None => false,
        }
    }

    /// Registers a connection of `user`.
    pub fn register(&self, user: &str) -> Registration {
        let mut users = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        users.next_id += 1;
        let id = users.next_id;
        let (tx, events) = mpsc::channel(PRESENCE_QUEUE);
        let conns = users.by_user.entry(user.to_owned()).or_default();
        conns.insert(id, tx);
        let first = conns.len() == 1;
        if let (true, Some(c)) = (first, &self.cluster) {
            c.online(user);
        }
        Registration { id, events, first }
    }

    /// Removes connection `id` of `user`; true when it was the user's last.
    pub fn unregister(&self, user: &str, id: u64) -> bool {
        let mut users = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(conns) = users.by_user.get_mut(user) else {
            return false;
        };
        conns.remove(&id);
        if conns.is_empty() {
            users.by_user.remove(user);
            if let Some(c) = &self.cluster {
                c.offline(user);
            }
            true
        } else {
            false
        }
    }

    /// True when `user` has a connection, on this node or another.
    pub async fn is_online(&self, user: &str) -> bool {
        let here = {
            let users = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            users.by_user.contains_key(user)
        };
        here || self.online_elsewhere(user).await
    }

    /// Queues `frame` to every connection of each of `users`, on every node.
    pub fn notify(&self, users: &[String], frame: &ServerFrame) {
        if let (Some(c), ServerFrame::Presence { user, online }) = (&self.cluster, frame) {
            c.publish(users, user, *online);
        }
        self.notify_local(users, frame);
    }

    /// Queues `frame` to this node's connections of each of `users`.
    pub fn notify_local(&self, users: &[String], frame: &ServerFrame) {
        let users_map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for user in users {
            for tx in users_map
                .by_user
                .get(user)
                .into_iter()
                .flat_map(|c| c.values())
            {
                let _ = tx.try_send(frame.clone());
            }
        }
    }
}
