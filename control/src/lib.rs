//! The `cascade` media server's control plane: HTTP API, tokens, SDP negotiation,
//! ICE-lite, DTLS and rooms. It decides what the data plane forwards and tells it
//! only through `cascade_dataplane::command::Command`; it never touches a media packet
//! on the forwarding path.

pub mod api;
pub mod cert;
pub mod cluster_tls;
pub mod config;
pub mod dns;
pub mod dtls;
pub mod error;
pub mod ice;
pub mod kernel;
pub mod metrics;
pub mod peer;
pub mod placement;
pub mod routing;
pub mod sdp;
pub mod server;
pub mod session;
pub mod sfu;
pub mod speaker;
pub mod stun;
pub mod token;
