//! The AV1 RTP payload format ("RTP Payload Format For AV1", AOMedia): whether a packet
//! starts a keyframe, from its aggregation header and first OBUs.
//!
//! Parses network input: never panics, never allocates. It does not parse OBU contents.

/// AV1 aggregation header bits (AV1 RTP payload format §4.4): Z (the first OBU element
/// continues a fragment), W (2 bits, the number of OBU elements, 0 when each has a
/// length field) and N (first packet of a coded video sequence).
const AV1_Z: u8 = 0x80;
const AV1_W_SHIFT: u8 = 4;
const AV1_N: u8 = 0x08;

/// AV1 OBU types (AV1 bitstream §6.2.2).
const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;

/// Reads an unsigned LEB128 value of at most 8 octets (AV1 bitstream §4.10.5), and
/// what follows it.
fn leb128(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, bytes.get(i + 1..)?));
        }
    }
    None
}

/// True when an RTP payload in the AV1 format ("RTP Payload Format For AV1",
/// AOMedia) starts a keyframe: the aggregation header (§4.4) has N set (the first
/// packet of a coded video sequence) and Z clear, and the first OBU element, after
/// any temporal delimiters (which §5 says receivers ignore), is a sequence header
/// OBU (which §5 puts first in its packet). OBU elements have a LEB128 length field
/// (§4.5), except the last one when W counts the elements. Never panics.
pub fn keyframe_start(payload: &[u8]) -> bool {
    let Some((&aggregation, mut rest)) = payload.split_first() else {
        return false;
    };
    if aggregation & AV1_Z != 0 || aggregation & AV1_N == 0 {
        return false;
    }
    let count = usize::from((aggregation >> AV1_W_SHIFT) & 0x03);
    let mut element = 1;
    loop {
        let obu = if element == count {
            // The last of W elements fills the rest of the packet.
            std::mem::take(&mut rest)
        } else {
            let Some((len, tail)) = leb128(rest) else {
                return false;
            };
            let Some((obu, tail)) = usize::try_from(len)
                .ok()
                .and_then(|n| tail.split_at_checked(n))
            else {
                return false;
            };
            rest = tail;
            obu
        };
        // OBU header (AV1 bitstream §5.3.2): forbidden bit, then the 4-bit type.
        match obu.first().map(|&h| (h & 0x80, (h >> 3) & 0x0f)) {
            Some((0, OBU_SEQUENCE_HEADER)) => return true,
            Some((0, OBU_TEMPORAL_DELIMITER)) if element != count => element += 1,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_av1_keyframes() {
        // OBU headers (type << 3): sequence header, temporal delimiter, frame.
        let mut sequence_header = vec![0x08, 0x00, 0x00, 0x00, 0x42, 0xa7, 0xbf, 0xe4];
        sequence_header.extend_from_slice(&[0x30, 0x20, 0x20]);
        let frame = [0x30, 0x10, 0x01, 0x50, 0x6e, 0x10];
        let sh_len = sequence_header.len() as u8;
        // N, W = 2: the sequence header with a length field, then the frame without.
        let mut key = vec![0x28, sh_len];
        key.extend_from_slice(&sequence_header);
        key.extend_from_slice(&frame);
        assert!(keyframe_start(&key));
        // Truncated before the sequence header element is whole.
        for n in 0..2 + sequence_header.len() {
            assert!(!keyframe_start(&key[..n]), "{n}");
        }
        // W = 1: the sequence header alone, without a length field.
        let mut p = vec![0x18];
        p.extend_from_slice(&sequence_header);
        assert!(keyframe_start(&p));
        // W = 0: a temporal delimiter (ignored), then the sequence header, then the
        // frame, each with a length field.
        let mut p = vec![0x08, 0x01, 0x10, sh_len];
        p.extend_from_slice(&sequence_header);
        p.push(frame.len() as u8);
        p.extend_from_slice(&frame);
        assert!(keyframe_start(&p));
        // W = 0 with a 130-octet sequence header: a two-octet LEB128 length.
        let mut p = vec![0x08, 0x82, 0x01, 0x08];
        p.resize(4 + 129, 0xab);
        assert!(keyframe_start(&p));
        assert!(!keyframe_start(&p[..p.len() - 1]), "length past the end");
        // N = 0 (a later packet, or a frame of the same sequence).
        let mut p = vec![0x20, sh_len];
        p.extend_from_slice(&sequence_header);
        p.extend_from_slice(&frame);
        assert!(!keyframe_start(&p));
        // Z = 1: the first element continues a fragment (and N with Z is invalid).
        let mut p = key.clone();
        p[0] |= 0x80;
        assert!(!keyframe_start(&p));
        // N set, but the first OBU is a frame, or only a temporal delimiter.
        let mut p = vec![0x18];
        p.extend_from_slice(&frame);
        assert!(!keyframe_start(&p));
        assert!(!keyframe_start(&[0x18, 0x10]));
        assert!(!keyframe_start(&[0x08, 0x01, 0x10]));
        // Forbidden bit set in the OBU header; empty element; empty payload.
        assert!(!keyframe_start(&[0x18, 0x88, 0x00]));
        assert!(!keyframe_start(&[0x08, 0x00, 0x01, 0x08]));
        assert!(!keyframe_start(&[]));
    }
}
