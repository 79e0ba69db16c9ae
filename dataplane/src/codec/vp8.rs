//! The VP8 RTP payload format (RFC 7741): whether a packet starts a keyframe and the
//! frame size its keyframe header carries (RFC 6386 §9.1), and where the payload
//! descriptor keeps the PictureID and TL0PICIDX, read and written in place.
//!
//! Parses network input: never panics, never allocates. It does not decide what the
//! indices should become across a layer switch ([`crate::rewrite::Vp8Continuity`] does).

/// True when an RTP payload in the VP8 format (RFC 7741) starts a keyframe: the payload
/// descriptor's S bit is set with partition index 0, and the VP8 payload header's P bit
/// is 0 with the keyframe start code (RFC 6386 §9.1) after it. Never panics.
pub fn keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    // S bit and PID (RFC 7741 §4.2).
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = payload.get(1) else {
            return false;
        };
        at = 2;
        if ext & 0x80 != 0 {
            // PictureID, 15 bits when its M bit is set.
            let Some(&pid) = payload.get(at) else {
                return false;
            };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    // VP8 payload header (RFC 7741 §4.3): 3-byte frame tag, P bit is the lowest bit
    // of the first byte; keyframes go on with the start code 9d 01 2a.
    match payload.get(at..at + 6) {
        Some(&[tag, _, _, 0x9d, 0x01, 0x2a]) => tag & 0x01 == 0,
        _ => false,
    }
}

/// Width and height of a VP8 keyframe whose payload (descriptor included) starts at
/// `payload`; `None` when it is not a keyframe start ([`keyframe_start`]) or is cut short
/// before the size. Never panics.
pub fn keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    if !keyframe_start(payload) {
        return None;
    }
    let start = payload.windows(3).position(|w| w == [0x9d, 0x01, 0x2a])?;
    let d = payload.get(start + 3..start + 7)?;
    Some((
        u16::from_le_bytes([d[0], d[1]]) & 0x3fff,
        u16::from_le_bytes([d[2], d[3]]) & 0x3fff,
    ))
}

/// Where a VP8 payload descriptor (RFC 7741 §4.2) keeps the indices a receiver
/// follows frames by: the PictureID (offset, and whether it is 15 bits wide) and the
/// TL0PICIDX (offset). `None` where the descriptor lacks one or is cut short.
pub(crate) fn picture_indices(payload: &[u8]) -> (Option<(usize, bool)>, Option<usize>) {
    let (Some(&first), Some(&ext)) = (payload.first(), payload.get(1)) else {
        return (None, None);
    };
    if first & 0x80 == 0 {
        return (None, None);
    }
    let mut at = 2;
    let mut picture_id = None;
    if ext & 0x80 != 0 {
        let Some(&b) = payload.get(at) else {
            return (None, None);
        };
        let wide = b & 0x80 != 0;
        let len = if wide { 2 } else { 1 };
        if payload.len() < at + len {
            return (None, None);
        }
        picture_id = Some((at, wide));
        at += len;
    }
    let tl0 = (ext & 0x40 != 0 && at < payload.len()).then_some(at);
    (picture_id, tl0)
}

/// Reads the PictureID at `at`, where [`picture_indices`] found it.
pub(crate) fn read_picture_id(payload: &[u8], at: usize, wide: bool) -> u16 {
    if wide {
        u16::from_be_bytes([payload[at] & 0x7f, payload[at + 1]])
    } else {
        u16::from(payload[at] & 0x7f)
    }
}

/// Writes PictureID `id` at `at`, where [`picture_indices`] found it, cut to the field's
/// width (7 or 15 bits, which stays as it was); returns the PictureID written.
pub(crate) fn write_picture_id(payload: &mut [u8], at: usize, wide: bool, id: u16) -> u16 {
    if wide {
        let id = id & 0x7fff;
        payload[at] = 0x80 | (id >> 8) as u8;
        payload[at + 1] = id as u8;
        id
    } else {
        let id = id & 0x7f;
        payload[at] = id as u8;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_vp8_keyframes() {
        let key_header = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        let delta_header = [0x11, 0x02, 0x00, 0xaa, 0xbb, 0xcc];
        // Minimal descriptor: S=1, PID=0.
        let mut p = vec![0x10];
        p.extend_from_slice(&key_header);
        assert!(keyframe_start(&p));
        // Extended: I with 15-bit picture id, L, T.
        let mut p = vec![0x90, 0xe0, 0x80 | 0x12, 0x34, 0x05, 0x40];
        p.extend_from_slice(&key_header);
        assert!(keyframe_start(&p));
        // Extended with a 7-bit picture id only.
        let mut p = vec![0x90, 0x80, 0x12];
        p.extend_from_slice(&key_header);
        assert!(keyframe_start(&p));
        // Interframe (P bit set).
        let mut p = vec![0x10];
        p.extend_from_slice(&delta_header);
        assert!(!keyframe_start(&p));
        // Not the start of a partition, or not partition 0.
        let mut p = vec![0x00];
        p.extend_from_slice(&key_header);
        assert!(!keyframe_start(&p));
        let mut p = vec![0x11];
        p.extend_from_slice(&key_header);
        assert!(!keyframe_start(&p));
        // Truncated anywhere.
        let mut p = vec![0x90, 0xe0, 0x80 | 0x12, 0x34, 0x05, 0x40];
        p.extend_from_slice(&key_header);
        for n in 0..12 {
            assert!(!keyframe_start(&p[..n]), "{n}");
        }
    }

    #[test]
    fn reads_vp8_keyframe_size() {
        // 640x480, with the two scaling bits set on both, after a minimal descriptor.
        let p = [
            0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0xe0, 0xc1,
        ];
        assert_eq!(keyframe_size(&p), Some((640, 480)));
        // Cut short inside the size, or not a keyframe.
        assert_eq!(keyframe_size(&p[..10]), None);
        let mut delta = p;
        delta[1] |= 0x01;
        assert_eq!(keyframe_size(&delta), None);
    }

    #[test]
    fn picture_ids_are_read_and_written_at_their_width() {
        // 15-bit PictureID 0x1234 and TL0PICIDX 5.
        let mut p = [0x90, 0xc0, 0x80 | 0x12, 0x34, 0x05, 0xaa];
        assert_eq!(picture_indices(&p), (Some((2, true)), Some(4)));
        assert_eq!(read_picture_id(&p, 2, true), 0x1234);
        assert_eq!(write_picture_id(&mut p, 2, true, 0x8001), 0x0001);
        assert_eq!(p, [0x90, 0xc0, 0x80, 0x01, 0x05, 0xaa]);
        // 7-bit PictureID, no TL0PICIDX.
        let mut p = [0x90, 0x80, 0x05, 0xaa];
        assert_eq!(picture_indices(&p), (Some((2, false)), None));
        assert_eq!(write_picture_id(&mut p, 2, false, 130), 2);
        assert_eq!(p, [0x90, 0x80, 0x02, 0xaa]);
        // No extension, or cut short.
        assert_eq!(picture_indices(&[0x10, 0x00, 0x9d]), (None, None));
        assert_eq!(picture_indices(&[0x90, 0x80, 0x85]), (None, None));
        assert_eq!(picture_indices(&[]), (None, None));
    }
}
