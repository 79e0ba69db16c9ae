//! The VP9 RTP payload format (RFC 9628): the payload descriptor parsed whole (flexible
//! and non-flexible mode, scalability structure included), whether a packet starts a
//! keyframe and the frame size the scalability structure carries.
//!
//! Parses network input: never panics, never allocates. It does not read the VP9
//! bitstream after the descriptor.

use super::FrameSize;

/// VP9 payload descriptor bits (RFC 9628 §4.2): picture ID present, inter-picture
/// predicted, layer indices present, flexible mode, start of frame, scalability
/// structure present.
const VP9_I: u8 = 0x80;
const VP9_P: u8 = 0x40;
const VP9_L: u8 = 0x20;
const VP9_F: u8 = 0x10;
const VP9_B: u8 = 0x08;
const VP9_V: u8 = 0x02;

/// What keyframe detection reads from a VP9 payload descriptor.
struct Vp9Descriptor<'a> {
    /// The first octet: I, P, L, F, B, E, V and Z.
    flags: u8,
    /// Spatial layer id from the layer indices; 0 without them.
    sid: u8,
    /// Width and height of the first spatial layer, when the scalability structure
    /// carries them.
    size: Option<FrameSize>,
    /// The VP9 frame data after the descriptor.
    frame: &'a [u8],
}

/// Parses a whole VP9 payload descriptor (RFC 9628 §4.2), flexible or non-flexible;
/// `None` when it runs past the end of the payload.
fn descriptor(payload: &[u8]) -> Option<Vp9Descriptor<'_>> {
    let (&flags, mut rest) = payload.split_first()?;
    if flags & VP9_I != 0 {
        // Picture ID, 15 bits when its M bit is set.
        let (&pid, tail) = rest.split_first()?;
        rest = if pid & 0x80 != 0 {
            tail.get(1..)?
        } else {
            tail
        };
    }
    let mut sid = 0;
    if flags & VP9_L != 0 {
        // Layer indices: TID (3 bits), U, SID (3 bits), D; then TL0PICIDX in
        // non-flexible mode.
        let (&layers, tail) = rest.split_first()?;
        sid = (layers >> 1) & 0x07;
        rest = if flags & VP9_F == 0 {
            tail.get(1..)?
        } else {
            tail
        };
    }
    if flags & VP9_F != 0 && flags & VP9_P != 0 {
        // Flexible mode reference indices: up to three P_DIFF octets, each with its
        // N bit set when another follows.
        for i in 0..3 {
            let (&diff, tail) = rest.split_first()?;
            rest = tail;
            if diff & 0x01 == 0 {
                break;
            }
            if i == 2 {
                return None;
            }
        }
    }
    let mut size = None;
    if flags & VP9_V != 0 {
        (size, rest) = scalability_structure(rest)?;
    }
    Some(Vp9Descriptor {
        flags,
        sid,
        size,
        frame: rest,
    })
}

/// Parses a VP9 scalability structure (RFC 9628 §4.2.1): the width and height of the
/// first spatial layer when its Y bit is set (and they are not zero), and what
/// follows the structure.
fn scalability_structure(ss: &[u8]) -> Option<(Option<FrameSize>, &[u8])> {
    let (&head, mut rest) = ss.split_first()?;
    // N_S (3 bits) is the number of spatial layers minus one, then the Y and G bits.
    let layers = usize::from(head >> 5) + 1;
    let mut size = None;
    if head & 0x10 != 0 {
        // 16-bit width and height of each spatial layer, in network byte order.
        let &[w0, w1, h0, h1] = rest.first_chunk::<4>()?;
        let (w, h) = (u16::from_be_bytes([w0, w1]), u16::from_be_bytes([h0, h1]));
        size = (w > 0 && h > 0).then_some((w, h));
        rest = rest.get(4 * layers..)?;
    }
    if head & 0x08 != 0 {
        // Picture group: N_G, then per picture T (3 bits), U, R (2 bits) and R
        // P_DIFF octets.
        let (&pictures, tail) = rest.split_first()?;
        rest = tail;
        for _ in 0..pictures {
            let (&picture, tail) = rest.split_first()?;
            rest = tail.get(usize::from((picture >> 2) & 0x03)..)?;
        }
    }
    Some((size, rest))
}

/// The VP9 keyframe start, if `payload` is one, with the size its scalability
/// structure carries.
pub(super) fn keyframe(payload: &[u8]) -> Option<Option<FrameSize>> {
    let d = descriptor(payload)?;
    let start = d.flags & VP9_B != 0 && d.flags & VP9_P == 0 && d.sid == 0;
    (start && !d.frame.is_empty()).then_some(d.size)
}

/// True when an RTP payload in the VP9 format (RFC 9628) starts a keyframe: the
/// payload descriptor (§4.2, flexible or non-flexible mode, parsed whole including a
/// scalability structure) has the B bit (start of a frame) set and the P bit
/// (inter-picture predicted) clear, and, when it carries layer indices, spatial layer
/// 0 (with spatial scalability the first layer starts the picture); frame data
/// follows. Never panics.
pub fn keyframe_start(payload: &[u8]) -> bool {
    keyframe(payload).is_some()
}

/// Width and height of a VP9 keyframe whose payload (descriptor included) is
/// `payload`, from the first spatial layer of its scalability structure (RFC 9628
/// §4.2.1, V and Y bits); `None` when it is not a keyframe start
/// ([`keyframe_start`]) or carries no size. Never panics.
pub fn keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    keyframe(payload).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_vp9_keyframes() {
        // Start of a VP9 keyframe's uncompressed header: frame marker, sync code.
        let frame = [0x82, 0x49, 0x83, 0x42, 0x00];
        // Non-flexible keyframe: I (15-bit picture id), L (TID 0, SID 0, TL0PICIDX),
        // B, V; the SS has one spatial layer of 1280x720 (Y) and a picture group of
        // two (G), the second with one reference.
        let mut key = vec![0xaa, 0x80 | 0x12, 0x34, 0x00, 0x05];
        key.extend_from_slice(&[0x18, 0x05, 0x00, 0x02, 0xd0, 0x02, 0x00, 0x24, 0x01]);
        let descriptor = key.len();
        key.extend_from_slice(&frame);
        assert!(keyframe_start(&key));
        assert_eq!(keyframe_size(&key), Some((1280, 720)));
        // Truncated anywhere in the descriptor, or with no frame data after it.
        for n in 0..=descriptor {
            assert!(!keyframe_start(&key[..n]), "{n}");
            assert_eq!(keyframe_size(&key[..n]), None, "{n}");
        }
        // Minimal descriptor (B only): a keyframe start of unknown size.
        let mut p = vec![0x08];
        p.extend_from_slice(&frame);
        assert!(keyframe_start(&p));
        assert_eq!(keyframe_size(&p), None);
        // Three spatial layers (N_S = 2): the size is the first layer's.
        let mut p = vec![0x0a, 0x50];
        p.extend_from_slice(&[0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68]);
        p.extend_from_slice(&[0x05, 0x00, 0x02, 0xd0]);
        p.extend_from_slice(&frame);
        assert!(keyframe_start(&p));
        assert_eq!(keyframe_size(&p), Some((320, 180)));
        // Flexible mode keyframe: I (7-bit picture id), L (SID 0, no TL0PICIDX), F, B.
        let mut p = vec![0xb8, 0x12, 0x00];
        p.extend_from_slice(&frame);
        assert!(keyframe_start(&p));
        // Flexible mode inter frame: P with two P_DIFF octets (N set on the first).
        let mut p = vec![0xd8, 0x12, 0x03, 0x04, 0x86, 0x00, 0x40];
        assert!(!keyframe_start(&p));
        // ...whose P_DIFF chain runs past three octets or past the end.
        p = vec![0xd8, 0x12, 0x03, 0x03, 0x03, 0x03, 0x86];
        assert!(!keyframe_start(&p));
        assert!(!keyframe_start(&[0xd8, 0x12, 0x03]));
        // Continuation packet of the keyframe (B clear).
        let mut p = vec![0xa0, 0x12, 0x00, 0x05];
        p.extend_from_slice(&[0x11, 0x22, 0x33]);
        assert!(!keyframe_start(&p));
        // Spatial layer 1 of an SVC picture (SID 1, D) with P clear and B set: not a
        // switch point; the same packet on spatial layer 0 is.
        let mut p = vec![0xa8, 0x12, 0x03, 0x05];
        p.extend_from_slice(&frame);
        assert!(!keyframe_start(&p));
        p[2] = 0x00;
        assert!(keyframe_start(&p));
        assert!(!keyframe_start(&[]));
    }
}
