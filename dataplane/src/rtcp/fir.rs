//! Full intra request (RFC 5104 §4.3.1): its view with the (SSRC, sequence number)
//! entries, and its builder.
//!
//! Zero-copy; malformed input gives [`RtcpError::Truncated`], never a panic. It does
//! not decide when a keyframe is asked for.

use super::{FMT_FIR, PT_PSFB, RtcpError, Writer, be32, fci};

/// Full intra request (RFC 5104 §4.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fir<'a> {
    pub sender_ssrc: u32,
    pub entries: FirEntries<'a>,
}

impl<'a> Fir<'a> {
    /// Reads a FIR body: the sender SSRC, the unused media SSRC and whole entries.
    pub(super) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let t = RtcpError::Truncated;
        Ok(Fir {
            sender_ssrc: be32(body, 0).ok_or(t)?,
            entries: FirEntries {
                data: fci(body, 8)?,
            },
        })
    }
}

/// The (SSRC, command sequence number) entries of a FIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirEntries<'a> {
    data: &'a [u8],
}

impl Iterator for FirEntries<'_> {
    type Item = (u32, u8);

    fn next(&mut self) -> Option<(u32, u8)> {
        let (entry, rest) = self.data.split_first_chunk::<8>()?;
        self.data = rest;
        Some((
            u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]),
            entry[4],
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.data.len() / 8;
        (n, Some(n))
    }
}

impl ExactSizeIterator for FirEntries<'_> {}

/// Writes a FIR with one entry for `media_ssrc`; returns its length (20). The common
/// media-source field is 0 as RFC 5104 §4.3.1.2 requires.
pub fn write_fir(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    seq_nr: u8,
) -> Result<usize, RtcpError> {
    let mut w = Writer::packet(buf, FMT_FIR, PT_PSFB, 20)?;
    w.u32(sender_ssrc)?;
    w.u32(0)?;
    w.u32(media_ssrc)?;
    w.bytes(&[seq_nr, 0, 0, 0])?;
    Ok(w.pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::RtcpKind;
    use crate::rtcp::tests::only;

    #[test]
    fn fir_round_trip() {
        let mut buf = [0u8; 40];
        let n = write_fir(&mut buf, 7, 0xdead_beef, 42).unwrap();
        assert_eq!(n, 20);
        assert_eq!(&buf[..4], &[0x84, 206, 0, 4]);
        assert_eq!(&buf[8..12], &[0, 0, 0, 0], "media field is 0");
        let RtcpKind::Fir(fir) = only(&buf[..n]) else {
            panic!()
        };
        assert_eq!(fir.sender_ssrc, 7);
        assert_eq!(fir.entries.collect::<Vec<_>>(), [(0xdead_beef, 42)]);
    }
}
