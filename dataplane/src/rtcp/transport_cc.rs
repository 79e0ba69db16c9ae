//! Transport-wide congestion-control feedback (RTPFB FMT 15), framed only: the two
//! SSRCs and the raw feedback control information.
//!
//! It must not parse the FCI; [`crate::twcc::TwccFeedback`] does.

use super::{RtcpError, be32};

/// Transport-wide congestion-control feedback; the FCI is left for its own parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportCc<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    /// The feedback control information, after the two SSRCs.
    pub body: &'a [u8],
}

impl<'a> TransportCc<'a> {
    /// Reads the two SSRCs of a transport-cc body and keeps the rest raw.
    pub(super) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let t = RtcpError::Truncated;
        Ok(TransportCc {
            sender_ssrc: be32(body, 0).ok_or(t)?,
            media_ssrc: be32(body, 4).ok_or(t)?,
            body: body.get(8..).ok_or(t)?,
        })
    }
}
