//! Who may open a new peer session: this server's own caps (sessions, tracks) and
//! the caps per client (token subject, source address). Counting lives here, beside
//! the sessions, so a session that ends in any way (`DELETE`, consent expiry, DTLS
//! close, never connecting) stops counting at once: there is no second ledger in the
//! shell to drift. The shell passes the client's address in as plain data, as it
//! passes datagrams' addresses; it keeps what only HTTP knows (connections, event
//! streams) and the measured ingress bit rate.

use std::net::IpAddr;
use std::time::Instant;

use super::resource::{Resource, ResourceId};
use super::{Created, Sfu};
use crate::error::{ApiError, ErrorKind};

/// Caps on what this server holds. `None`: no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionLimits {
    /// Peer sessions on this server.
    pub max_sessions: Option<usize>,
    /// Media tracks (published plus delivered).
    pub max_tracks: Option<usize>,
    /// Peer sessions one token subject holds.
    pub per_subject: Option<usize>,
    /// Peer sessions created from one source address (IPv6: one /64).
    pub per_source: Option<usize>,
}

/// Who asks for a session: the token's subject and the request's source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub subject: String,
    /// `None` when the shell does not know it (then only the subject cap applies).
    pub source: Option<IpAddr>,
}

impl Client {
    pub fn new(subject: impl Into<String>, source: Option<IpAddr>) -> Self {
        Self {
            subject: subject.into(),
            source: source.map(address_key),
        }
    }
}

pub use cascade_command::addr::address_key;

impl Sfu {
    /// Sets the caps new sessions are checked against (existing ones stay).
    pub fn set_limits(&mut self, limits: SessionLimits) {
        self.limits = limits;
    }

    /// Whether `client` may open one more session now: `Unavailable`
    /// (`server_full`) when this server is at a cap, `TooManyRequests` when the
    /// client's subject or address is.
    pub fn admit(&mut self, client: &Client) -> Result<(), ApiError> {
        let l = self.limits;
        // Sessions that ended no longer count (and are forgotten here).
        let sessions = &self.sessions;
        self.clients.retain(|id, _| sessions.contains_key(id));
        if let Some(max) = l.max_sessions
            && self.sessions.len() >= max
        {
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                "server_full",
                format!("this server holds its maximum of {max} sessions"),
            ));
        }
        if let Some(max) = l.max_tracks
            && self.track_count() >= max
        {
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                "server_full",
                format!("this server forwards its maximum of {max} tracks"),
            ));
        }
        if let Some(max) = l.per_subject
            && self
                .clients
                .values()
                .filter(|c| c.subject == client.subject)
                .count()
                >= max
        {
            return Err(ApiError::new(
                ErrorKind::TooManyRequests,
                "too_many_sessions_for_subject",
                format!(
                    "user {:?} holds its maximum of {max} sessions on this server",
                    client.subject
                ),
            ));
        }
        if let (Some(max), Some(source)) = (l.per_source, client.source)
            && self
                .clients
                .values()
                .filter(|c| c.source == Some(source))
                .count()
                >= max
        {
            return Err(ApiError::new(
                ErrorKind::TooManyRequests,
                "too_many_sessions_from_address",
                format!("address {source} holds its maximum of {max} sessions on this server"),
            ));
        }
        Ok(())
    }

    /// [`Sfu::publish`] for `client`, within the caps ([`Sfu::admit`]).
    pub fn publish_for(
        &mut self,
        now: Instant,
        room: &str,
        client: &Client,
        offer: &str,
    ) -> Result<Created, ApiError> {
        self.admit(client)?;
        let created = self.publish(now, room, &client.subject, offer)?;
        self.count_client(&created.resource, client);
        Ok(created)
    }

    /// [`Sfu::subscribe`] for `client`, within the caps ([`Sfu::admit`]).
    pub fn subscribe_for(
        &mut self,
        now: Instant,
        room: &str,
        client: &Client,
        resources: &[ResourceId],
        offer: &str,
    ) -> Result<Created, ApiError> {
        self.admit(client)?;
        let created = self.subscribe(now, room, resources, offer)?;
        self.count_client(&created.resource, client);
        Ok(created)
    }

    fn count_client(&mut self, resource: &str, client: &Client) {
        if let Some(session) = self.resources.get(resource).map(Resource::session) {
            self.clients.insert(session, client.clone());
        }
    }
}
