//! Generic NACK (RFC 4585 §6.2.1): the view of a received one with the sequence
//! numbers it reports lost, and the builder that packs lost numbers into (PID, BLP)
//! items.
//!
//! Zero-copy and allocation-free; malformed input gives [`RtcpError::Truncated`], never
//! a panic. It does not decide what to retransmit or when to ask (the forwarding table
//! does).

use super::{FMT_NACK, PT_RTPFB, RtcpError, Writer, be32, fci};

/// Generic NACK (RFC 4585 §6.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    pub items: NackItems<'a>,
}

impl<'a> Nack<'a> {
    /// Reads a NACK body: the two SSRCs and at least one item.
    pub(super) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let t = RtcpError::Truncated;
        let fci = fci(body, 4)?;
        Ok(Nack {
            sender_ssrc: be32(body, 0).ok_or(t)?,
            media_ssrc: be32(body, 4).ok_or(t)?,
            items: NackItems { data: fci },
        })
    }

    /// Every sequence number the NACK reports lost, item by item: each PID, then the
    /// PID + n for every bit n-1 set in its BLP.
    pub fn lost_sequences(&self) -> impl Iterator<Item = u16> + 'a {
        self.items.clone().flat_map(|(pid, blp)| {
            std::iter::once(pid).chain(
                (0..16u16)
                    .filter(move |bit| blp & (1 << bit) != 0)
                    .map(move |bit| pid.wrapping_add(bit + 1)),
            )
        })
    }
}

/// The (PID, BLP) items of a generic NACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackItems<'a> {
    data: &'a [u8],
}

impl Iterator for NackItems<'_> {
    type Item = (u16, u16);

    fn next(&mut self) -> Option<(u16, u16)> {
        let (item, rest) = self.data.split_first_chunk::<4>()?;
        self.data = rest;
        Some((
            u16::from_be_bytes([item[0], item[1]]),
            u16::from_be_bytes([item[2], item[3]]),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.data.len() / 4;
        (n, Some(n))
    }
}

impl ExactSizeIterator for NackItems<'_> {}

/// Packs lost sequence numbers into NACK (PID, BLP) items. Numbers are expected in
/// increasing (wrapping) order; a number more than 16 after the current PID, or before
/// it, starts a new item; repeats of the PID are skipped.
#[derive(Debug, Clone)]
struct NackPacker<'a> {
    lost: &'a [u16],
}

impl Iterator for NackPacker<'_> {
    type Item = (u16, u16);

    fn next(&mut self) -> Option<(u16, u16)> {
        let (&pid, mut rest) = self.lost.split_first()?;
        let mut blp = 0u16;
        while let Some((&seq, tail)) = rest.split_first() {
            match seq.wrapping_sub(pid) {
                0 => {}
                d @ 1..=16 => blp |= 1 << (d - 1),
                _ => break,
            }
            rest = tail;
        }
        self.lost = rest;
        Some((pid, blp))
    }
}

/// Writes a generic NACK for the `lost` sequence numbers; returns its length. `Empty`
/// when `lost` is empty. Numbers are expected in increasing (wrapping) order: each item's
/// BLP takes the numbers up to 16 after its PID, a number further on or behind starts a
/// new item, and repeats of the PID are skipped.
pub fn write_nack(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    lost: &[u16],
) -> Result<usize, RtcpError> {
    if lost.is_empty() {
        return Err(RtcpError::Empty);
    }
    let items = NackPacker { lost }.count();
    let mut w = Writer::packet(buf, FMT_NACK, PT_RTPFB, 12 + 4 * items)?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    for (pid, blp) in (NackPacker { lost }) {
        w.bytes(&pid.to_be_bytes())?;
        w.bytes(&blp.to_be_bytes())?;
    }
    Ok(w.pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::RtcpKind;
    use crate::rtcp::tests::only;

    #[test]
    fn nack_round_trip_and_packing() {
        let lost = [65530u16, 65531, 65535, 0, 5, 9, 40, 41, 56, 57, 57, 10];
        let mut buf = [0u8; 64];
        let n = write_nack(&mut buf, 1, 2, &lost).unwrap();
        let RtcpKind::Nack(nack) = only(&buf[..n]) else {
            panic!()
        };
        assert_eq!((nack.sender_ssrc, nack.media_ssrc), (1, 2));
        let items: Vec<_> = nack.items.clone().collect();
        // 65530 covers up to 65530 + 16 = 10 (wrapping): 65531, 65535, 0, 5, 9;
        // 40 covers 41, 56; 57 starts a new item; 10 is behind it and starts another.
        assert_eq!(
            items,
            [
                (
                    65530,
                    (1 << 0) | (1 << 4) | (1 << 5) | (1 << 10) | (1 << 14)
                ),
                (40, (1 << 0) | (1 << 15)),
                (57, 0),
                (10, 0),
            ]
        );
        let mut got: Vec<u16> = nack.lost_sequences().collect();
        let mut want: Vec<u16> = lost.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        want.dedup();
        assert_eq!(got, want);
        assert_eq!(n, 12 + 4 * 4);
        assert_eq!(write_nack(&mut buf, 1, 2, &[]), Err(RtcpError::Empty));
        assert_eq!(
            write_nack(&mut [0u8; 15], 1, 2, &[1]),
            Err(RtcpError::BufferTooSmall)
        );
    }
}
