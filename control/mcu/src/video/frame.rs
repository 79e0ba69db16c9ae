//! Planar I420 pictures (8-bit BT.601 studio range, chroma at half resolution) and the
//! scaler that draws one picture into a rectangle of another. It owns pixels only: no
//! codec, no layout policy.
//!
//! The scaler is bilinear in 16.16 fixed point, one plane at a time, with a plain copy
//! when the sizes match (the usual case: a simulcast layer picked to fit its cell).

/// A rectangle of a picture, in luma pixels. The composer keeps every edge even so
/// that the chroma planes line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

impl Rect {
    /// The largest rectangle of `src_width`:`src_height` aspect that fits in `self`,
    /// centred, with even edges (at least 2x2).
    pub fn fit(self, src_width: u16, src_height: u16) -> Rect {
        let (cw, ch) = (u32::from(self.width), u32::from(self.height));
        let (sw, sh) = (u32::from(src_width.max(1)), u32::from(src_height.max(1)));
        // Width-limited when the source is wider than the cell (sw/sh >= cw/ch).
        let (w, h) = if sw * ch >= sh * cw {
            (cw, (cw * sh / sw).min(ch))
        } else {
            ((ch * sw / sh).min(cw), ch)
        };
        let (w, h) = (even_down(w).max(2), even_down(h).max(2));
        let x = u32::from(self.x) + even_down((cw.saturating_sub(w)) / 2);
        let y = u32::from(self.y) + even_down((ch.saturating_sub(h)) / 2);
        // The values are bounded by the cell's own u16 edges.
        Rect {
            x: clamp_u16(x),
            y: clamp_u16(y),
            width: clamp_u16(w),
            height: clamp_u16(h),
        }
    }
}

fn even_down(v: u32) -> u32 {
    v & !1
}

fn clamp_u16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// Luma of black, and the neutral chroma value, in studio range.
pub const BLACK: Yuv = Yuv {
    y: 16,
    u: 128,
    v: 128,
};
/// The dark grey of a cell whose input has no picture yet.
pub const DARK_GREY: Yuv = Yuv {
    y: 48,
    u: 128,
    v: 128,
};

/// One colour as Y, Cb, Cr samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Yuv {
    pub y: u8,
    pub u: u8,
    pub v: u8,
}

/// One I420 picture: the Y plane then U then V, each tightly packed (stride = width).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct I420Frame {
    width: u16,
    height: u16,
    data: Vec<u8>,
}

impl I420Frame {
    /// A black picture. Odd sizes are allowed (chroma rounds up), as decoders produce them.
    pub fn new(width: u16, height: u16) -> Self {
        let mut frame = I420Frame {
            width,
            height,
            data: Vec::new(),
        };
        frame.resize(width, height);
        frame.fill(BLACK);
        frame
    }

    /// Changes the size, keeping the allocation when it is large enough; pixels are
    /// left unspecified (the caller overwrites them).
    pub fn resize(&mut self, width: u16, height: u16) {
        self.width = width;
        self.height = height;
        let (cw, ch) = chroma_size(width, height);
        let len = usize::from(width) * usize::from(height) + 2 * cw * ch;
        self.data.resize(len, 0);
    }

    pub fn width(&self) -> u16 {
        self.width
    }

    pub fn height(&self) -> u16 {
        self.height
    }

    /// Width and height of the U and V planes.
    pub fn chroma_size(&self) -> (usize, usize) {
        chroma_size(self.width, self.height)
    }

    /// The Y, U and V planes.
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let y_len = usize::from(self.width) * usize::from(self.height);
        let (cw, ch) = self.chroma_size();
        let (y, rest) = self.data.split_at(y_len);
        let (u, v) = rest.split_at(cw * ch);
        (y, u, v)
    }

    /// The Y, U and V planes, writable.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let y_len = usize::from(self.width) * usize::from(self.height);
        let (cw, ch) = self.chroma_size();
        let (y, rest) = self.data.split_at_mut(y_len);
        let (u, v) = rest.split_at_mut(cw * ch);
        (y, u, v)
    }

    /// Paints the whole picture one colour.
    pub fn fill(&mut self, colour: Yuv) {
        let (y, u, v) = self.planes_mut();
        y.fill(colour.y);
        u.fill(colour.u);
        v.fill(colour.v);
    }

    /// Paints `rect` (clipped to the picture; even edges expected) one colour.
    pub fn fill_rect(&mut self, rect: Rect, colour: Yuv) {
        let Some(rect) = self.clip(rect) else { return };
        let width = usize::from(self.width);
        let (cw, _) = self.chroma_size();
        let (y, u, v) = self.planes_mut();
        fill_plane(y, width, rect.luma(), colour.y);
        fill_plane(u, cw, rect.chroma(), colour.u);
        fill_plane(v, cw, rect.chroma(), colour.v);
    }

    /// The sample of each plane at luma position (x, y), or None outside the picture.
    pub fn pixel(&self, x: u16, y: u16) -> Option<Yuv> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let (cw, _) = self.chroma_size();
        let (py, pu, pv) = self.planes();
        let c = usize::from(y / 2) * cw + usize::from(x / 2);
        Some(Yuv {
            y: *py.get(usize::from(y) * usize::from(self.width) + usize::from(x))?,
            u: *pu.get(c)?,
            v: *pv.get(c)?,
        })
    }

    /// Draws `src` scaled to exactly `rect` of this picture (clipped to it).
    pub fn draw_scaled(&mut self, src: &I420Frame, rect: Rect) {
        let Some(rect) = self.clip(rect) else { return };
        if src.width == 0 || src.height == 0 {
            return;
        }
        let dst_width = usize::from(self.width);
        let (dst_cw, _) = self.chroma_size();
        let (src_cw, src_ch) = src.chroma_size();
        let (sy, su, sv) = src.planes();
        let src_luma = PlaneRef {
            data: sy,
            width: usize::from(src.width),
            height: usize::from(src.height),
        };
        let (dy, du, dv) = self.planes_mut();
        scale_plane(src_luma, dy, dst_width, rect.luma());
        for (s, d) in [(su, du), (sv, dv)] {
            let src_plane = PlaneRef {
                data: s,
                width: src_cw,
                height: src_ch,
            };
            scale_plane(src_plane, d, dst_cw, rect.chroma());
        }
    }

    fn clip(&self, rect: Rect) -> Option<Rect> {
        let x = rect.x.min(self.width);
        let y = rect.y.min(self.height);
        let width = rect.width.min(self.width - x);
        let height = rect.height.min(self.height - y);
        (width > 0 && height > 0).then_some(Rect {
            x,
            y,
            width,
            height,
        })
    }
}

fn chroma_size(width: u16, height: u16) -> (usize, usize) {
    (
        usize::from(width).div_ceil(2),
        usize::from(height).div_ceil(2),
    )
}

/// A rectangle of one plane, in that plane's samples.
#[derive(Clone, Copy)]
struct PlaneRect {
    x: usize,
    y: usize,
    width: usize,
    height: usize,
}

impl Rect {
    fn luma(self) -> PlaneRect {
        PlaneRect {
            x: usize::from(self.x),
            y: usize::from(self.y),
            width: usize::from(self.width),
            height: usize::from(self.height),
        }
    }

    fn chroma(self) -> PlaneRect {
        PlaneRect {
            x: usize::from(self.x) / 2,
            y: usize::from(self.y) / 2,
            width: usize::from(self.width).div_ceil(2),
            height: usize::from(self.height).div_ceil(2),
        }
    }
}

fn fill_plane(plane: &mut [u8], stride: usize, rect: PlaneRect, value: u8) {
    for row in plane
        .chunks_exact_mut(stride)
        .skip(rect.y)
        .take(rect.height)
    {
        if let Some(span) = row.get_mut(rect.x..rect.x + rect.width) {
            span.fill(value);
        } else if let Some(span) = row.get_mut(rect.x..) {
            span.fill(value);
        }
    }
}

#[derive(Clone, Copy)]
struct PlaneRef<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
}

/// Bilinear scaling of a whole source plane into `rect` of the destination plane.
fn scale_plane(src: PlaneRef<'_>, dst: &mut [u8], dst_stride: usize, rect: PlaneRect) {
    if src.width == 0 || src.height == 0 || rect.width == 0 || rect.height == 0 {
        return;
    }
    let rows = dst
        .chunks_exact_mut(dst_stride)
        .skip(rect.y)
        .take(rect.height);
    if src.width == rect.width && src.height == rect.height {
        for (row, src_row) in rows.zip(src.data.chunks_exact(src.width)) {
            if let Some(span) = row.get_mut(rect.x..rect.x + rect.width) {
                span.copy_from_slice(src_row);
            }
        }
        return;
    }
    // Sample centres map as (d + 0.5) * s / d - 0.5, in 16.16 fixed point, clamped.
    let columns: Vec<(usize, usize, u32)> = (0..rect.width)
        .map(|d| source_position(d, rect.width, src.width))
        .collect();
    for (d, row) in rows.enumerate() {
        let (y0, y1, fy) = source_position(d, rect.height, src.height);
        let (Some(r0), Some(r1)) = (
            src.data.get(y0 * src.width..(y0 + 1) * src.width),
            src.data.get(y1 * src.width..(y1 + 1) * src.width),
        ) else {
            return;
        };
        let Some(span) = row.get_mut(rect.x..rect.x + rect.width) else {
            return;
        };
        for (out, &(x0, x1, fx)) in span.iter_mut().zip(&columns) {
            let top = lerp(sample(r0, x0), sample(r0, x1), fx);
            let bottom = lerp(sample(r1, x0), sample(r1, x1), fx);
            // lerp of values <= 255 << 8 stays <= 255 << 8; the shift brings it to u8.
            *out = u8::try_from((lerp(top, bottom, fy) + 128) >> 8).unwrap_or(u8::MAX);
        }
    }
}

fn sample(row: &[u8], x: usize) -> u32 {
    row.get(x).map_or(0, |&v| u32::from(v) << 8)
}

/// a + (b - a) * f / 65536 on values scaled by 256.
fn lerp(a: u32, b: u32, f: u32) -> u32 {
    let (a, b, f) = (i64::from(a), i64::from(b), i64::from(f));
    u32::try_from(a + (((b - a) * f) >> 16)).unwrap_or(0)
}

/// The two source samples that destination sample `d` of `dst_len` falls between, and
/// the weight of the second (16.16).
fn source_position(d: usize, dst_len: usize, src_len: usize) -> (usize, usize, u32) {
    let pos = ((2 * d as u64 + 1) * src_len as u64 * 0x1_0000 / (2 * dst_len as u64))
        .saturating_sub(0x8000);
    let i0 = ((pos >> 16) as usize).min(src_len - 1);
    let i1 = (i0 + 1).min(src_len - 1);
    (i0, i1, (pos & 0xFFFF) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: Yuv = Yuv {
        y: 81,
        u: 90,
        v: 240,
    };

    #[test]
    fn fit_keeps_the_aspect_and_centres() {
        let cell = Rect {
            x: 0,
            y: 0,
            width: 320,
            height: 360,
        };
        let r = cell.fit(640, 360);
        assert_eq!((r.width, r.height), (320, 180));
        assert_eq!((r.x, r.y), (0, 90));
        let r = cell.fit(100, 400);
        assert_eq!((r.width, r.height), (90, 360));
        assert_eq!(r.x, 114);
    }

    #[test]
    fn scaling_a_solid_picture_keeps_its_colour_and_stays_in_its_rect() {
        let mut src = I420Frame::new(320, 180);
        src.fill(RED);
        let mut dst = I420Frame::new(640, 360);
        let rect = Rect {
            x: 100,
            y: 50,
            width: 214,
            height: 120,
        };
        dst.draw_scaled(&src, rect);
        assert_eq!(dst.pixel(100, 50), Some(RED));
        assert_eq!(dst.pixel(313, 169), Some(RED));
        assert_eq!(dst.pixel(200, 100), Some(RED));
        assert_eq!(dst.pixel(99, 50), Some(BLACK));
        assert_eq!(dst.pixel(314, 100), Some(BLACK));
        assert_eq!(dst.pixel(200, 170), Some(BLACK));
        // Upscaling too.
        let mut big = I420Frame::new(640, 360);
        big.draw_scaled(
            &src,
            Rect {
                x: 0,
                y: 0,
                width: 640,
                height: 360,
            },
        );
        assert_eq!(big.pixel(639, 359), Some(RED));
    }

    #[test]
    fn scaling_halves_a_gradient_smoothly() {
        let mut src = I420Frame::new(4, 2);
        let (y, _, _) = src.planes_mut();
        y.copy_from_slice(&[0, 100, 200, 250, 0, 100, 200, 250]);
        let mut dst = I420Frame::new(2, 2);
        dst.draw_scaled(
            &src,
            Rect {
                x: 0,
                y: 0,
                width: 2,
                height: 2,
            },
        );
        let (y, _, _) = dst.planes();
        assert_eq!(y, &[50, 225, 50, 225]);
    }

    #[test]
    fn fill_rect_clips_to_the_picture() {
        let mut f = I420Frame::new(16, 16);
        f.fill_rect(
            Rect {
                x: 8,
                y: 8,
                width: 100,
                height: 100,
            },
            DARK_GREY,
        );
        assert_eq!(f.pixel(15, 15), Some(DARK_GREY));
        assert_eq!(f.pixel(7, 15), Some(BLACK));
        f.fill_rect(
            Rect {
                x: 40,
                y: 40,
                width: 2,
                height: 2,
            },
            DARK_GREY,
        );
    }
}
