//! In-place SSRC rewriting of one RTCP packet, for forwarding feedback and reports
//! between a subscriber's and a publisher's SSRC spaces.
//!
//! It checks the header and length before writing and never panics on what it is
//! given; it does not choose the SSRCs (the forwarding table does).

use super::{FMT_FIR, HEADER_LEN, PT_PSFB, PT_RTPFB, RtcpError};

/// Checks that `pkt` starts with a version-2 RTCP header and returns the packet's
/// length per its length field, limited to `pkt.len()`.
fn framed_len(pkt: &[u8]) -> Result<usize, RtcpError> {
    let head: &[u8; HEADER_LEN] = pkt.first_chunk().ok_or(RtcpError::TooShort)?;
    if head[0] >> 6 != 2 {
        return Err(RtcpError::BadVersion(head[0] >> 6));
    }
    let total = (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1) * 4;
    Ok(total.min(pkt.len()))
}

/// Rewrites the media-source SSRC of the single RTPFB or PSFB packet at the start of
/// `pkt`, in place. For a FIR, whose common media-source field stays 0 (RFC 5104), the
/// SSRC of every FCI entry is rewritten instead. Other packet types give `NotFeedback`
/// and leave `pkt` untouched.
pub fn rewrite_media_ssrc(pkt: &mut [u8], media_ssrc: u32) -> Result<(), RtcpError> {
    let len = framed_len(pkt)?;
    // framed_len checked the 4-byte header.
    let (fmt, pt) = (pkt[0] & 0x1f, pkt[1]);
    if pt != PT_RTPFB && pt != PT_PSFB {
        return Err(RtcpError::NotFeedback);
    }
    let packet = pkt.get_mut(..len).ok_or(RtcpError::TooShort)?;
    if pt == PT_PSFB && fmt == FMT_FIR {
        let entries = packet.get_mut(12..).ok_or(RtcpError::Truncated)?;
        for entry in entries.chunks_exact_mut(8) {
            // Every chunk is 8 bytes long.
            entry[..4].copy_from_slice(&media_ssrc.to_be_bytes());
        }
        return Ok(());
    }
    packet
        .get_mut(8..12)
        .ok_or(RtcpError::Truncated)?
        .copy_from_slice(&media_ssrc.to_be_bytes());
    Ok(())
}

/// Rewrites the sender SSRC (bytes 4..8: the reporter of SR/RR, the packet sender of
/// feedback, the first source of SDES/BYE) of the single packet at the start of `pkt`.
pub fn rewrite_sender_ssrc(pkt: &mut [u8], sender_ssrc: u32) -> Result<(), RtcpError> {
    let len = framed_len(pkt)?;
    pkt.get_mut(..len)
        .and_then(|p| p.get_mut(4..8))
        .ok_or(RtcpError::Truncated)?
        .copy_from_slice(&sender_ssrc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::tests::only;
    use crate::rtcp::{
        Pli, RtcpKind, packets, write_fir, write_nack, write_pli, write_receiver_report,
    };

    #[test]
    fn ssrc_rewriting() {
        let mut buf = [0u8; 64];
        let n = write_pli(&mut buf, 1, 2).unwrap();
        rewrite_media_ssrc(&mut buf[..n], 0x99).unwrap();
        rewrite_sender_ssrc(&mut buf[..n], 0x77).unwrap();
        assert_eq!(
            only(&buf[..n]),
            RtcpKind::Pli(Pli {
                sender_ssrc: 0x77,
                media_ssrc: 0x99
            })
        );
        let n = write_fir(&mut buf, 1, 2, 3).unwrap();
        rewrite_media_ssrc(&mut buf[..n], 0x99).unwrap();
        let RtcpKind::Fir(fir) = only(&buf[..n]) else {
            panic!()
        };
        assert_eq!(fir.entries.collect::<Vec<_>>(), [(0x99, 3)]);
        assert_eq!(&buf[8..12], &[0, 0, 0, 0]);
        // Only the packet at the start is touched, per its own length field.
        let mut compound = [0u8; 64];
        let a = write_nack(&mut compound, 1, 2, &[5]).unwrap();
        let b = write_pli(&mut compound[a..], 1, 2).unwrap();
        let offset = packets(&compound[..a + b]).nth(1).unwrap().unwrap().offset;
        assert_eq!(offset, a);
        rewrite_media_ssrc(&mut compound[offset..], 0x42).unwrap();
        let kinds: Vec<_> = packets(&compound[..a + b])
            .map(|p| p.unwrap().kind().unwrap())
            .collect();
        let [RtcpKind::Nack(nack), RtcpKind::Pli(pli)] = &kinds[..] else {
            panic!()
        };
        assert_eq!(nack.media_ssrc, 2);
        assert_eq!(pli.media_ssrc, 0x42);
        // Wrong type, short and bad input.
        let n = write_receiver_report(&mut buf, 1, &[]).unwrap();
        assert_eq!(
            rewrite_media_ssrc(&mut buf[..n], 5),
            Err(RtcpError::NotFeedback)
        );
        assert_eq!(rewrite_sender_ssrc(&mut buf[..n], 5), Ok(()));
        assert_eq!(
            rewrite_sender_ssrc(&mut buf[..6], 5),
            Err(RtcpError::Truncated)
        );
        assert_eq!(rewrite_sender_ssrc(&mut [], 5), Err(RtcpError::TooShort));
        assert_eq!(
            rewrite_media_ssrc(&mut [0x81, 206, 0, 2, 0, 0, 0, 1], 5),
            Err(RtcpError::Truncated)
        );
        assert_eq!(
            rewrite_media_ssrc(&mut [0x01, 206, 0, 2], 5),
            Err(RtcpError::BadVersion(0))
        );
    }
}
