//! Per-codec RTP payload parsing: whether a packet starts a keyframe and the frame
//! size it announces ([`keyframe_start`], dispatching on the route's
//! [`KeyframeFormat`]), and the VP8 payload descriptor's PictureID and TL0PICIDX, read
//! and written in place. One file per payload format: [`vp8`] (RFC 7741), [`h264`]
//! (RFC 6184), [`vp9`] (RFC 9628), [`av1`] (AOMedia AV1 RTP payload format).
//!
//! Everything here parses network input: it never panics and never allocates. It knows
//! nothing of streams, layers, sequence numbers or what to do with a keyframe (see
//! [`crate::rewrite`] and the forwarding table).

pub mod av1;
pub mod h264;
pub mod vp8;
pub mod vp9;

use crate::command::KeyframeFormat;

/// A frame's width and height in pixels.
pub type FrameSize = (u16, u16);

/// A packet that starts a keyframe, from [`keyframe_start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeStart {
    /// The frame's width and height, where the payload carries them (VP8 keyframes,
    /// VP9 keyframes with a scalability structure that has them).
    pub size: Option<FrameSize>,
}

/// Whether an RTP payload of a stream whose keyframes are recognised by `format` starts
/// a keyframe, with the frame size it carries; `None` when it does not. With
/// [`KeyframeFormat::Any`] every packet does. Never panics.
pub fn keyframe_start(format: KeyframeFormat, payload: &[u8]) -> Option<KeyframeStart> {
    match format {
        KeyframeFormat::Any => Some(KeyframeStart { size: None }),
        KeyframeFormat::H264 => {
            h264::keyframe_start(payload).then_some(KeyframeStart { size: None })
        }
        KeyframeFormat::Vp8 => {
            vp8::keyframe_size(payload).map(|size| KeyframeStart { size: Some(size) })
        }
        KeyframeFormat::Vp9 => vp9::keyframe(payload).map(|size| KeyframeStart { size }),
        KeyframeFormat::Av1 => av1::keyframe_start(payload).then_some(KeyframeStart { size: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    const FORMATS: [KeyframeFormat; 5] = [
        KeyframeFormat::Vp8,
        KeyframeFormat::H264,
        KeyframeFormat::Vp9,
        KeyframeFormat::Av1,
        KeyframeFormat::Any,
    ];

    #[test]
    fn dispatches_on_the_keyframe_format() {
        // A VP8 keyframe of 640x480 behind a minimal descriptor.
        let vp8 = [
            0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
        ];
        let sized = Some(KeyframeStart {
            size: Some((640, 480)),
        });
        let unsized_ = Some(KeyframeStart { size: None });
        assert_eq!(keyframe_start(KeyframeFormat::Vp8, &vp8), sized);
        assert_eq!(keyframe_start(KeyframeFormat::H264, &vp8), None);
        assert_eq!(keyframe_start(KeyframeFormat::Any, &vp8), unsized_);
        assert_eq!(keyframe_start(KeyframeFormat::Any, &[]), unsized_);
        assert_eq!(
            keyframe_start(KeyframeFormat::H264, &[0x65, 0x88]),
            unsized_
        );
        assert_eq!(
            keyframe_start(KeyframeFormat::Av1, &[0x18, 0x08, 0x00]),
            unsized_
        );
        // VP9: B only (no size), then with a one-layer scalability structure.
        let frame = [0x82, 0x49, 0x83, 0x42, 0x00];
        let mut vp9 = vec![0x08];
        vp9.extend_from_slice(&frame);
        assert_eq!(keyframe_start(KeyframeFormat::Vp9, &vp9), unsized_);
        let mut vp9 = vec![0x0a, 0x10, 0x05, 0x00, 0x02, 0xd0];
        vp9.extend_from_slice(&frame);
        assert_eq!(
            keyframe_start(KeyframeFormat::Vp9, &vp9),
            Some(KeyframeStart {
                size: Some((1280, 720))
            })
        );
        assert_eq!(keyframe_start(KeyframeFormat::Vp9, &vp8), None);
    }

    #[test]
    fn random_payloads_never_panic() {
        let mut rng = StdRng::seed_from_u64(6184);
        let mut buf = [0u8; 32];
        let mut hits = 0;
        for _ in 0..100_000 {
            let n = rng.random_range(0..buf.len());
            rng.fill(&mut buf[..n]);
            hits += usize::from(vp8::keyframe_start(&buf[..n]));
            hits += usize::from(h264::keyframe_start(&buf[..n]));
            hits += usize::from(vp9::keyframe_start(&buf[..n]));
            hits += usize::from(vp9::keyframe_size(&buf[..n]).is_some());
            hits += usize::from(av1::keyframe_start(&buf[..n]));
            let _ = vp8::keyframe_size(&buf[..n]);
            let _ = vp8::picture_indices(&buf[..n]);
            for format in FORMATS {
                let _ = keyframe_start(format, &buf[..n]);
            }
        }
        assert!(hits > 0);
    }
}
