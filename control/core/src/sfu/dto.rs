//! The SFU's public data types: what the shell's HTTP API writes as JSON (room and
//! resource events, `GET` bodies, relay answers) or reads (subscription preferences, an
//! origin's relay answer), and the results of publish, subscribe and `PATCH`. Plain
//! data with serde derives and key conversions: no SFU state and no decisions here.
//! Field and variant names are the wire format; renaming one breaks clients.

use cascade_command::keys::SrtpKeyingMaterial;
use serde::Serialize;
use std::net::SocketAddr;

use super::ResourceId;

/// One event of a room's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomEvent {
    #[serde(skip)]
    pub room: String,
    #[serde(flatten)]
    pub kind: RoomEventKind,
}

/// What happened; `type` in the JSON, and the SSE event name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomEventKind {
    PublicationAdded {
        resource: String,
        user: String,
    },
    PublicationRemoved {
        resource: String,
        user: String,
    },
    /// The dominant speaker changed (`resource` is the publication's URL).
    ActiveSpeaker {
        resource: String,
        user: String,
    },
}

impl RoomEventKind {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            RoomEventKind::PublicationAdded { .. } => "publication_added",
            RoomEventKind::PublicationRemoved { .. } => "publication_removed",
            RoomEventKind::ActiveSpeaker { .. } => "active_speaker",
        }
    }
}

/// A subscriber's wishes for one delivered video track.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackPreferences {
    /// Highest layer, 0 being the lowest bit rate.
    pub max_layer: Option<u8>,
    /// Largest frame size wanted (layers whose size is known and larger are skipped).
    pub max_width: Option<u16>,
    pub max_height: Option<u16>,
    /// Send no video on this track.
    pub paused: bool,
}

/// `PATCH {subscription}` JSON body: preferences for the video track on m-line `mid`,
/// or for every video track without one. Fields left out take their defaults (no
/// limit, not paused).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionPreferences {
    #[serde(default)]
    pub mid: Option<String>,
    #[serde(default)]
    pub max_layer: Option<u8>,
    #[serde(default)]
    pub max_width: Option<u16>,
    #[serde(default)]
    pub max_height: Option<u16>,
    #[serde(default)]
    pub paused: bool,
}

impl SubscriptionPreferences {
    /// What applies to each matching track.
    pub fn track(&self) -> TrackPreferences {
        TrackPreferences {
            max_layer: self.max_layer,
            max_width: self.max_width,
            max_height: self.max_height,
            paused: self.paused,
        }
    }
}

/// Where a resource is in its life, as `GET {resource}` and its event stream show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Waiting for the peer's ICE and DTLS.
    Connecting,
    /// Media flows (or can: a subscription with every source available).
    Live,
    /// A source relayed from another server is lost; the relay is being re-opened.
    Reconnecting,
    /// Gone: deleted, or (for a subscription) every source it had is gone.
    Ended,
}

/// One state change of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceEvent {
    pub resource: ResourceId,
    pub state: ResourceState,
    /// Why, in one stable word: `connected`, `origin_unreachable`, `relay_reopened`,
    /// `source_ended`, `deleted`...
    pub reason: &'static str,
}

/// `GET {resource}` body.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceInfo {
    pub id: ResourceId,
    pub kind: &'static str,
    pub room: String,
    pub state: ResourceState,
    /// For a subscription: the resource URLs of its sources (on this server, or
    /// their origin's for relayed ones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// For a publication relayed here from another server: its origin resource URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relayed_from: Option<String>,
}

/// What an edge needs to receive a relayed publication.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct RelayAnswer {
    pub relay: String,
    /// The room of the publication (the edge serves it only to that room's tokens).
    pub room: String,
    /// The user who published it (an MCU leaves a listener's own voice out of its
    /// mix); empty from servers that do not say.
    #[serde(default)]
    pub user: String,
    /// Keys the edge protects its RTCP to the origin with (keyframe requests, NACKs).
    pub feedback_srtp: RelayKeys,
    /// The origin's media address: relayed packets come from it.
    pub origin_media: SocketAddr,
    pub srtp: RelayKeys,
    pub tracks: Vec<RelayTrack>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RelayKeys {
    pub profile: String,
    pub key: String,
    pub salt: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RelayTrack {
    pub kind: String,
    pub mid: String,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    pub codec: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    pub fmtp: Option<String>,
    pub payload_type: u8,
    pub rtx_payload_type: Option<u8>,
    /// Simulcast layers whose SSRCs the origin knows (when the relay opened).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<RelayLayer>,
}

/// One simulcast layer of a relayed track.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RelayLayer {
    pub rid: String,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
}

/// `GET /rtc/v1/rooms/{room}` body.
#[derive(Debug, Serialize)]
pub struct RoomInfo {
    pub room: String,
    pub publications: Vec<PublicationInfo>,
}

#[derive(Debug, Serialize)]
pub struct PublicationInfo {
    pub resource: String,
    pub user: String,
    pub tracks: Vec<TrackInfo>,
    /// For a publication relayed here from another server: its origin resource URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relayed_from: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TrackInfo {
    pub kind: &'static str,
    pub mid: String,
}

/// Result of a successful publish or subscribe.
#[derive(Debug)]
pub struct Created {
    pub resource: ResourceId,
    pub answer: String,
}

/// Result of a trickle/restart PATCH.
#[derive(Debug, PartialEq, Eq)]
pub enum Patched {
    /// Candidates noted (an ICE-lite server learns addresses from checks): 204.
    NoContent,
    /// ICE restarted: our new credentials, as an sdpfrag body.
    Restarted(String),
}

impl From<&SrtpKeyingMaterial> for RelayKeys {
    fn from(k: &SrtpKeyingMaterial) -> Self {
        Self {
            profile: k.profile.openssl_name().to_owned(),
            key: hex::encode(k.key),
            salt: hex::encode(k.salt()),
        }
    }
}

impl RelayKeys {
    /// The keying material these hex strings describe.
    pub fn material(&self) -> Option<SrtpKeyingMaterial> {
        let profile = cascade_command::keys::SrtpProfile::from_openssl_name(&self.profile)?;
        let key = hex::decode(&self.key).ok()?;
        let salt = hex::decode(&self.salt).ok()?;
        SrtpKeyingMaterial::new(profile, &key, &salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::relay_link::random_keys;
    use crate::testing;

    /// Keys survive the hex round trip of a relay answer; anything malformed is no key.
    #[test]
    fn relay_keys_round_trip_and_refuse_malformed_hex() {
        let keys = random_keys(&mut testing::rng());
        let wire = RelayKeys::from(&keys);
        assert_eq!(wire.profile, keys.profile.openssl_name());
        assert_eq!(wire.material(), Some(keys));
        for bad in [
            RelayKeys {
                profile: "ROT13".into(),
                ..wire.clone()
            },
            RelayKeys {
                key: "not hex".into(),
                ..wire.clone()
            },
            RelayKeys {
                salt: wire.salt[2..].to_owned(),
                ..wire.clone()
            },
        ] {
            assert_eq!(bad.material(), None, "{bad:?}");
        }
    }
}
