//! The H.264 RTP payload format (RFC 6184): whether a packet starts a keyframe.
//!
//! Parses network input: never panics, never allocates. It does not look inside NAL
//! units beyond their type.

/// NAL unit types that start an H.264 keyframe: IDR slice and sequence parameter set.
fn starts_keyframe(nal_type: u8) -> bool {
    matches!(nal_type, 5 | 7)
}

/// True when an RTP payload in the H.264 format (RFC 6184) starts a keyframe: a single
/// NAL unit packet holding an IDR slice or an SPS, a STAP-A aggregating one, or the
/// first fragment (S bit) of an FU-A of one. Never panics.
pub fn keyframe_start(payload: &[u8]) -> bool {
    let Some(&header) = payload.first() else {
        return false;
    };
    match header & 0x1f {
        t @ 1..=23 => starts_keyframe(t),
        24 => {
            // STAP-A (§5.7.1): 16-bit size, then the NAL unit, repeated.
            let mut rest = &payload[1..];
            while let Some((size, tail)) = rest.split_first_chunk::<2>() {
                let size = usize::from(u16::from_be_bytes(*size));
                let Some(nal) = tail.get(..size) else {
                    return false;
                };
                if nal.first().is_some_and(|&h| starts_keyframe(h & 0x1f)) {
                    return true;
                }
                rest = &tail[size..];
            }
            false
        }
        28 => {
            // FU-A (§5.8): FU header S bit and the fragmented NAL unit's type.
            payload
                .get(1)
                .is_some_and(|&fu| fu & 0x80 != 0 && starts_keyframe(fu & 0x1f))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_h264_keyframes() {
        // Single NAL units: IDR (0x65), SPS (0x67), non-IDR slice (0x41), PPS (0x68).
        assert!(keyframe_start(&[0x65, 0x88, 0x84]));
        assert!(keyframe_start(&[0x67, 0x42, 0xc0, 0x1f]));
        assert!(!keyframe_start(&[0x41, 0x9a]));
        assert!(!keyframe_start(&[0x68, 0xce]));
        // STAP-A with SPS + PPS, and with two non-IDR units.
        assert!(keyframe_start(&[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68]));
        assert!(keyframe_start(&[0x78, 0, 1, 0x68, 0, 2, 0x65, 0x88]));
        assert!(!keyframe_start(&[0x78, 0, 1, 0x68, 0, 2, 0x41, 0x9a]));
        // STAP-A whose size runs past the end.
        assert!(!keyframe_start(&[0x78, 0, 9, 0x67, 0x42]));
        // FU-A of an IDR: start fragment yes, middle and end no; FU-A of a P slice no.
        assert!(keyframe_start(&[0x7c, 0x85, 0x88]));
        assert!(!keyframe_start(&[0x7c, 0x05, 0x88]));
        assert!(!keyframe_start(&[0x7c, 0x45, 0x88]));
        assert!(!keyframe_start(&[0x7c, 0x81, 0x9a]));
        assert!(!keyframe_start(&[0x7c]));
        assert!(!keyframe_start(&[]));
    }
}
