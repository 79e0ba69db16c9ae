//! Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb), a PSFB
//! application-layer feedback message: its view and its builder.
//!
//! Zero-copy and allocation-free; malformed input gives [`RtcpError::Truncated`], never
//! a panic. It does not decide what the estimate means for the send rate (`bwe` does).

use super::{FMT_AFB, PT_PSFB, RtcpError, SsrcList, Writer, be32};

/// Whether a PSFB application-layer feedback body carries a REMB (its unique
/// identifier after the two SSRCs).
pub(super) fn is_remb(body: &[u8]) -> bool {
    body.get(8..12) == Some(b"REMB")
}

/// Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remb<'a> {
    pub sender_ssrc: u32,
    /// Mantissa << exponent; saturates at `u64::MAX`.
    pub bitrate_bps: u64,
    pub ssrcs: SsrcList<'a>,
}

impl<'a> Remb<'a> {
    /// Reads a REMB body (one [`is_remb`] accepted).
    pub(super) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let t = RtcpError::Truncated;
        let n = usize::from(*body.get(12).ok_or(t)?);
        let exp = u32::from(*body.get(13).ok_or(t)? >> 2);
        let mantissa = u64::from(be32(body, 12).ok_or(t)? & 0x3_ffff);
        let bitrate_bps = if mantissa.leading_zeros() < exp {
            u64::MAX
        } else {
            mantissa << exp
        };
        Ok(Remb {
            sender_ssrc: be32(body, 0).ok_or(t)?,
            bitrate_bps,
            ssrcs: SsrcList {
                data: body.get(16..16 + 4 * n).ok_or(t)?,
            },
        })
    }
}

/// Writes a REMB for up to 255 SSRCs; returns its length. The bitrate is encoded as an
/// 18-bit mantissa and a 6-bit exponent, rounding down.
pub fn write_remb(
    buf: &mut [u8],
    sender_ssrc: u32,
    bitrate_bps: u64,
    ssrcs: &[u32],
) -> Result<usize, RtcpError> {
    let n = u8::try_from(ssrcs.len()).map_err(|_| RtcpError::TooManyItems)?;
    let mut mantissa = bitrate_bps;
    let mut exp = 0u32;
    while mantissa >= 1 << 18 {
        mantissa >>= 1;
        exp += 1;
    }
    // exp <= 46 and mantissa < 2^18, so both fit their fields.
    let encoded = (exp << 18) | mantissa as u32;
    let mut w = Writer::packet(buf, FMT_AFB, PT_PSFB, 20 + 4 * ssrcs.len())?;
    w.u32(sender_ssrc)?;
    w.u32(0)?;
    w.bytes(b"REMB")?;
    w.u32((u32::from(n) << 24) | encoded)?;
    for &ssrc in ssrcs {
        w.u32(ssrc)?;
    }
    Ok(w.pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::RtcpKind;
    use crate::rtcp::tests::only;

    #[test]
    fn remb_round_trip() {
        let mut buf = [0u8; 64];
        for bitrate in [
            0u64,
            1,
            262_143,
            262_144,
            1_500_000,
            2_500_000_000,
            u64::MAX,
        ] {
            let n = write_remb(&mut buf, 3, bitrate, &[10, 20]).unwrap();
            assert_eq!(n, 28);
            let RtcpKind::Remb(remb) = only(&buf[..n]) else {
                panic!()
            };
            assert_eq!(remb.sender_ssrc, 3);
            assert_eq!(remb.ssrcs.collect::<Vec<_>>(), [10, 20]);
            // Rounded down to 18 significant bits.
            assert!(remb.bitrate_bps <= bitrate);
            assert!(bitrate - remb.bitrate_bps <= bitrate >> 17, "{bitrate}");
        }
        assert_eq!(
            write_remb(&mut buf, 3, 1, &[0; 256]),
            Err(RtcpError::TooManyItems)
        );
    }
}
