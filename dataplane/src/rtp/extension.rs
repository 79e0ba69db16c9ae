//! Header-extension elements the server writes into outgoing RTP (RFC 8285), and the
//! transport-wide sequence number element (draft-holmer-rmcat-transport-wide-cc-
//! extensions-01 §2) read from incoming and written into outgoing packets.
//!
//! It owns in-place element writing: overwrite, reuse of the block's padding, growing
//! or adding a block. It must not allocate, and it finds existing elements with
//! [`super::extension_element`] rather than parsing them again.

use super::{ONE_BYTE_PROFILE, RtpError, RtpHeader};

/// Why a header extension could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// The packet is not a valid RTP packet.
    #[error(transparent)]
    Rtp(#[from] RtpError),
    /// Id 0 (and 15 in the one-byte form) cannot name an element.
    #[error("header extension id {0} cannot name an element")]
    BadId(u8),
    /// The packet's extension block is neither RFC 8285 form, or its one-byte form
    /// cannot hold this id, or it ends with an element that overruns the block.
    #[error("header extension block cannot take the element")]
    UnsupportedBlock,
    /// An element with this id is there, with another length.
    #[error("existing header extension element has length {0}")]
    LengthMismatch(usize),
    /// The buffer has no room to grow the header.
    #[error("buffer too small to insert the header extension")]
    BufferTooSmall,
}

/// The transport-wide sequence number carried in extension element `ext_id` of `pkt`
/// (whose header is `hdr`), in either RFC 8285 form. `None` when the element is absent
/// or is not two bytes long.
pub fn transport_seq(pkt: &[u8], hdr: &RtpHeader, ext_id: u8) -> Option<u16> {
    match crate::rtp::extension_element(pkt, hdr, ext_id)? {
        [a, b] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Stamps transport-wide sequence number `seq` into element `ext_id` of the plaintext
/// RTP packet in `buf[..len]` and returns the packet's new length.
///
/// An existing two-byte element is overwritten in place. Otherwise the element is added:
/// into the extension block's trailing padding when it fits, else by growing the block
/// (or adding one, one-byte form for ids up to 14, two-byte form above) and moving the
/// payload back; `buf` must then have room beyond `len`. On error `buf` is unchanged.
pub fn set_transport_seq(
    buf: &mut [u8],
    len: usize,
    ext_id: u8,
    seq: u16,
) -> Result<usize, ExtensionError> {
    set_element(buf, len, ext_id, &seq.to_be_bytes())
}

/// Writes extension element `id` with `data` (1..=16 bytes) into the packet in
/// `buf[..len]`; see [`set_transport_seq`].
fn set_element(buf: &mut [u8], len: usize, id: u8, data: &[u8]) -> Result<usize, ExtensionError> {
    let pkt = buf.get(..len).ok_or(ExtensionError::BufferTooSmall)?;
    let hdr = super::parse_header(pkt)?;
    if id == 0 {
        return Err(ExtensionError::BadId(id));
    }
    if let Some(existing) = crate::rtp::extension_element(pkt, &hdr, id) {
        if existing.len() != data.len() {
            return Err(ExtensionError::LengthMismatch(existing.len()));
        }
        // `existing` borrows from `pkt`, so its address lies within `pkt`.
        let at = existing.as_ptr() as usize - pkt.as_ptr() as usize;
        buf[at..at + data.len()].copy_from_slice(data);
        return Ok(len);
    }
    let Some(ext) = hdr.extension else {
        // No block yet: add one after the CSRCs.
        let two_byte = id > 14;
        let element_len = data.len() + if two_byte { 2 } else { 1 };
        let block_len = element_len.next_multiple_of(4);
        let grow = 4 + block_len;
        let at = hdr.header_len;
        if len + grow > buf.len() {
            return Err(ExtensionError::BufferTooSmall);
        }
        buf.copy_within(at..len, at + grow);
        let profile = if two_byte { 0x1000 } else { ONE_BYTE_PROFILE };
        buf[at..at + 2].copy_from_slice(&profile.to_be_bytes());
        // block_len <= 20, so the word count fits.
        buf[at + 2..at + 4].copy_from_slice(&((block_len / 4) as u16).to_be_bytes());
        let written = write_element(&mut buf[at + 4..at + 4 + block_len], two_byte, id, data);
        buf[at + 4 + written..at + 4 + block_len].fill(0);
        buf[0] |= 0x10;
        return Ok(len + grow);
    };
    let two_byte = if ext.profile == ONE_BYTE_PROFILE {
        if id > 14 {
            return Err(ExtensionError::BadId(id));
        }
        false
    } else if ext.profile & 0xfff0 == 0x1000 {
        true
    } else {
        return Err(ExtensionError::UnsupportedBlock);
    };
    let block = pkt
        .get(ext.range())
        .ok_or(ExtensionError::UnsupportedBlock)?;
    let used = used_len(block, two_byte).ok_or(ExtensionError::UnsupportedBlock)?;
    let element_len = data.len() + if two_byte { 2 } else { 1 };
    if ext.len - used >= element_len {
        // Trailing padding (all zero, or it would have parsed as elements) has room.
        write_element(
            &mut buf[ext.offset + used..ext.range().end],
            two_byte,
            id,
            data,
        );
        return Ok(len);
    }
    let new_block_len = (used + element_len).next_multiple_of(4);
    let words = u16::try_from(new_block_len / 4).map_err(|_| ExtensionError::UnsupportedBlock)?;
    let grow = new_block_len - ext.len;
    let end = ext.range().end;
    if len + grow > buf.len() {
        return Err(ExtensionError::BufferTooSmall);
    }
    buf.copy_within(end..len, end + grow);
    let block = &mut buf[ext.offset..ext.offset + new_block_len];
    let written = write_element(&mut block[used..], two_byte, id, data);
    block[used + written..].fill(0);
    buf[ext.offset - 2..ext.offset].copy_from_slice(&words.to_be_bytes());
    Ok(len + grow)
}

/// Writes one element at the start of `out` (which has room) and returns its length.
fn write_element(out: &mut [u8], two_byte: bool, id: u8, data: &[u8]) -> usize {
    let head = if two_byte {
        out[0] = id;
        // data is at most 16 bytes.
        out[1] = data.len() as u8;
        2
    } else {
        out[0] = (id << 4) | (data.len() as u8 - 1);
        1
    };
    out[head..head + data.len()].copy_from_slice(data);
    head + data.len()
}

/// Bytes of an extension block up to the end of its last element (the rest is
/// padding). `None` when an element overruns the block or, in the one-byte form, id 15
/// ends parsing (elements written after it would be ignored).
fn used_len(block: &[u8], two_byte: bool) -> Option<usize> {
    let mut used = 0;
    let mut i = 0;
    while let Some(&b) = block.get(i) {
        if b == 0 {
            i += 1;
            continue;
        }
        let end = if two_byte {
            i + 2 + usize::from(*block.get(i + 1)?)
        } else if b >> 4 == 15 {
            return None;
        } else {
            i + 2 + usize::from(b & 0x0f)
        };
        if end > block.len() {
            return None;
        }
        used = end;
        i = end;
    }
    Some(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp_packet(ext: Option<(u16, &[u8])>, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        if let Some((profile, data)) = ext {
            p[0] |= 0x10;
            p.extend_from_slice(&profile.to_be_bytes());
            p.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(data);
        }
        p.extend_from_slice(payload);
        p
    }

    fn read_seq(pkt: &[u8], id: u8) -> Option<u16> {
        let h = crate::rtp::parse(pkt).unwrap();
        transport_seq(pkt, &h, id)
    }

    #[test]
    fn reads_transport_seq_in_both_forms() {
        // One-byte form: id 1 (audio level, 1 byte), id 3 (transport seq, 2 bytes).
        let p = rtp_packet(
            Some((ONE_BYTE_PROFILE, &[0x10, 0x7f, 0x31, 0xab, 0xcd, 0, 0, 0])),
            b"x",
        );
        assert_eq!(read_seq(&p, 3), Some(0xabcd));
        assert_eq!(
            read_seq(&p, 1),
            None,
            "one-byte element is not a sequence number"
        );
        assert_eq!(read_seq(&p, 5), None);
        // Two-byte form, id 200.
        let p = rtp_packet(Some((0x1000, &[200, 2, 0x12, 0x34])), b"x");
        assert_eq!(read_seq(&p, 200), Some(0x1234));
        assert_eq!(read_seq(&rtp_packet(None, b"x"), 3), None);
    }

    #[test]
    fn overwrites_existing_transport_seq_in_place() {
        let mut p = rtp_packet(
            Some((ONE_BYTE_PROFILE, &[0x10, 0x7f, 0x31, 0xab, 0xcd, 0, 0, 0])),
            b"pay",
        );
        let orig = p.clone();
        let len = p.len();
        assert_eq!(set_transport_seq(&mut p, len, 3, 0x0102), Ok(len));
        assert_eq!(read_seq(&p, 3), Some(0x0102));
        let diff: Vec<usize> = (0..len).filter(|&i| p[i] != orig[i]).collect();
        assert_eq!(diff, [19, 20]);
        let mut p = rtp_packet(Some((0x1000, &[7, 2, 0, 0])), b"pay");
        let len = p.len();
        assert_eq!(set_transport_seq(&mut p, len, 7, 0xfffe), Ok(len));
        assert_eq!(read_seq(&p, 7), Some(0xfffe));
    }

    #[test]
    fn inserts_transport_seq_where_missing() {
        // No extension at all: a one-byte block is added, payload moves back 8 bytes.
        let mut buf = rtp_packet(None, b"payload");
        let len = buf.len();
        buf.resize(64, 0xee);
        let n = set_transport_seq(&mut buf, len, 5, 0x4242).unwrap();
        assert_eq!(n, len + 8);
        let h = crate::rtp::parse(&buf[..n]).unwrap();
        assert_eq!(transport_seq(&buf[..n], &h, 5), Some(0x4242));
        assert_eq!(&buf[h.payload_range(n)], b"payload");
        // Id above 14: a two-byte block.
        let mut buf = rtp_packet(None, b"payload");
        buf.resize(64, 0);
        let n = set_transport_seq(&mut buf, len, 100, 9).unwrap();
        let h = crate::rtp::parse(&buf[..n]).unwrap();
        assert_eq!(h.extension.unwrap().profile, 0x1000);
        assert_eq!(transport_seq(&buf[..n], &h, 100), Some(9));
        assert_eq!(&buf[h.payload_range(n)], b"payload");
        // Trailing padding of an existing block is reused when the element fits in it.
        let mut buf = rtp_packet(
            Some((ONE_BYTE_PROFILE, &[0x10, 0x55, 0, 0, 0, 0, 0, 0])),
            b"pl",
        );
        let len = buf.len();
        assert_eq!(set_transport_seq(&mut buf, len, 3, 0x0a0b), Ok(len));
        let h = crate::rtp::parse(&buf).unwrap();
        assert_eq!(transport_seq(&buf, &h, 3), Some(0x0a0b));
        assert_eq!(
            crate::rtp::extension_element(&buf, &h, 1),
            Some(&[0x55][..])
        );
        // Not enough padding: the block grows by one word.
        let mut buf = rtp_packet(Some((ONE_BYTE_PROFILE, &[0x10, 0x55, 0, 0])), b"pl");
        let len = buf.len();
        buf.resize(40, 0);
        let n = set_transport_seq(&mut buf, len, 3, 0x0c0d).unwrap();
        assert_eq!(n, len + 4);
        let h = crate::rtp::parse(&buf[..n]).unwrap();
        assert_eq!(h.extension.unwrap().len, 8);
        assert_eq!(transport_seq(&buf[..n], &h, 3), Some(0x0c0d));
        assert_eq!(
            crate::rtp::extension_element(&buf[..n], &h, 1),
            Some(&[0x55][..])
        );
        assert_eq!(&buf[h.payload_range(n)], b"pl");
    }

    #[test]
    fn refuses_what_it_cannot_write() {
        let mut p = rtp_packet(None, b"x");
        let len = p.len();
        assert_eq!(
            set_transport_seq(&mut p, len, 3, 1),
            Err(ExtensionError::BufferTooSmall)
        );
        assert_eq!(
            set_transport_seq(&mut p, len, 0, 1),
            Err(ExtensionError::BadId(0))
        );
        let mut p = rtp_packet(Some((ONE_BYTE_PROFILE, &[0x10, 0x55, 0, 0])), b"x");
        let len = p.len();
        assert_eq!(
            set_transport_seq(&mut p, len, 20, 1),
            Err(ExtensionError::BadId(20))
        );
        assert_eq!(
            set_transport_seq(&mut p, len, 1, 1),
            Err(ExtensionError::LengthMismatch(1))
        );
        let mut p = rtp_packet(Some((0xabcd, &[1, 2, 3, 4])), b"x");
        let len = p.len();
        assert_eq!(
            set_transport_seq(&mut p, len, 3, 1),
            Err(ExtensionError::UnsupportedBlock)
        );
        assert!(matches!(
            set_transport_seq(&mut [0x80; 8], 8, 3, 1),
            Err(ExtensionError::Rtp(RtpError::TooShort))
        ));
    }
}
