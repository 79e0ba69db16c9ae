//! Picture loss indication (RFC 4585 §6.3.1): its view and its builder.
//!
//! Malformed input gives [`RtcpError::Truncated`], never a panic. It does not decide
//! when a keyframe is asked for (the forwarding table rate-limits PLIs).

use super::{FMT_PLI, PT_PSFB, RtcpError, Writer, be32};

/// Picture loss indication (RFC 4585 §6.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pli {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
}

impl Pli {
    /// Reads a PLI body: the two SSRCs.
    pub(super) fn parse(body: &[u8]) -> Result<Self, RtcpError> {
        let t = RtcpError::Truncated;
        Ok(Pli {
            sender_ssrc: be32(body, 0).ok_or(t)?,
            media_ssrc: be32(body, 4).ok_or(t)?,
        })
    }
}

/// Writes a PLI; returns its length (12).
pub fn write_pli(buf: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtcpError> {
    let mut w = Writer::packet(buf, FMT_PLI, PT_PSFB, 12)?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    Ok(w.pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::RtcpKind;
    use crate::rtcp::tests::only;

    #[test]
    fn pli_round_trip() {
        let mut buf = [0u8; 12];
        assert_eq!(write_pli(&mut buf, 1, 2), Ok(12));
        assert_eq!(buf, [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(
            only(&buf),
            RtcpKind::Pli(Pli {
                sender_ssrc: 1,
                media_ssrc: 2
            })
        );
        assert_eq!(
            write_pli(&mut [0u8; 11], 1, 2),
            Err(RtcpError::BufferTooSmall)
        );
    }
}
