//! Cascade's data plane: everything that happens per packet. It owns the forwarding
//! table (changed only through [`command::Command`]s from control), RTP/RTCP parsing,
//! the SRTP transform, the I/O backends that move packets in batches, and the budget
//! that bounds what unvalidated sources may send up to control ([`budget`]).
//!
//! It decides only what must be decided per packet: it turns a subscriber's PLI or FIR
//! into a PLI for the publisher stream (the layer) it is forwarded from, asks for a
//! keyframe of a layer it switches a subscriber to (or whose keyframe its rewriter
//! waits for), sends at most one PLI per publisher stream per
//! [`table::PLI_INTERVAL`], and answers NACKs from its cache before asking the
//! publisher. It never decides policy: who may publish or subscribe, which codec, which
//! layer a subscriber gets, what to probe, or when a keyframe is wanted for any other
//! reason ([`command::Command::RequestKeyframe`]); control does, from the
//! [`command::MediaEvent`]s the data plane reports.

pub mod budget;
pub mod bwe;
pub mod codec;
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

pub use cascade_command::{command, demux, ids};
