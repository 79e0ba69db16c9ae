//! Publisher-side VP8 for the bench: moving test content (a diagonal gradient that
//! scrolls and a noise square that travels across it) encoded with the MCU library's
//! own libvpx encoder at a publisher's settings and cut into RTP payloads by its
//! packetizer (RFC 7741 descriptor with S bit and PictureID). Everything here runs
//! before a measurement starts.

use anyhow::{Context, bail};
use cascade_mcu::video::frame::I420Frame;
use cascade_mcu::video::vp8_rtp::Vp8Packetizer;
use cascade_mcu::video::vpx::{Encoder, EncoderConfig};

/// One encoded frame as RTP payloads (descriptor included), in order; the last one
/// carries the marker.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) payloads: Vec<Vec<u8>>,
    pub(crate) keyframe: bool,
}

/// Draws frame `n` of the test content: the gradient scrolls by 4 pixels a frame, its
/// tint depends on `seed`, and a square of noise a quarter of the height high moves
/// across it.
fn draw(pic: &mut I420Frame, n: usize, seed: u8) {
    let (w, h) = (usize::from(pic.width()), usize::from(pic.height()));
    let (y_plane, u, v) = pic.planes_mut();
    for (y, row) in y_plane.chunks_exact_mut(w).enumerate() {
        for (x, p) in row.iter_mut().enumerate() {
            *p = ((x + y + 4 * n) & 0xff) as u8;
        }
    }
    let side = h / 4;
    let x0 = (n * 6) % (w - side);
    let y0 = (n * 3) % (h - side);
    for row in y_plane.chunks_exact_mut(w).skip(y0).take(side) {
        for p in &mut row[x0..x0 + side] {
            *p = rand::random();
        }
    }
    u.fill(64u8.wrapping_add(seed.wrapping_mul(40)));
    v.fill(192u8.wrapping_sub(seed.wrapping_mul(40)));
}

/// `frames` frames of moving content at `width`×`height`, `fps`, `bitrate_bps`,
/// packetized (the first a keyframe, no other keyframe: a loop over them restarts
/// cleanly at the first).
pub(crate) fn encode(
    width: u16,
    height: u16,
    fps: u8,
    bitrate_bps: u32,
    frames: usize,
    seed: u8,
) -> anyhow::Result<Vec<Frame>> {
    let mut enc = Encoder::new(EncoderConfig {
        width,
        height,
        fps,
        bitrate_bps,
        keyframe_interval: u32::MAX,
    })
    .context("VP8 encoder")?;
    let mut pic = I420Frame::new(width, height);
    let mut packetizer = Vp8Packetizer::new(0);
    let mut out = Vec::with_capacity(frames);
    for n in 0..frames {
        draw(&mut pic, n, seed);
        let Some(f) = enc.encode(&pic, n == 0).context("VP8 encode")? else {
            continue;
        };
        let mut payloads = Vec::new();
        packetizer.packetize(&f.data, &mut payloads);
        out.push(Frame {
            payloads,
            keyframe: f.keyframe,
        });
    }
    if out.first().is_none_or(|f| !f.keyframe) {
        bail!("the encoder did not start with a keyframe");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_keyframe_then_deltas() {
        let f = encode(320, 180, 15, 300_000, 5, 1).unwrap();
        assert_eq!(f.len(), 5);
        assert!(f[0].keyframe);
        assert!(f[1..].iter().all(|x| !x.keyframe));
        assert!(f.iter().all(|x| !x.payloads.is_empty()));
    }
}
