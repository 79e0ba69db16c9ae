//! Cascade's data plane: everything that happens per packet. It owns the forwarding
//! table (changed only through [`command::Command`]s from control), RTP/RTCP parsing,
//! the SRTP transform and the I/O backends that move packets in batches. It never
//! decides policy (who may publish, which codec, when to ask for a keyframe): control does.

pub mod bwe;
pub mod handoff;
pub mod io;
pub mod rewrite;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
pub mod stats;
pub mod table;
pub mod twcc;
pub mod worker;

pub use cascade_command::{command, demux};
