//! Safe owners of libvpx's VP8 encoder and decoder (through `env-libvpx-sys`): every
//! `unsafe` call of the codec is in this file. An `Encoder` turns I420 pictures into
//! VP8 frames for real-time sending; a `Decoder` turns VP8 frames into I420 pictures.
//! Each frees its libvpx context on drop.

use std::ffi::CStr;
use std::os::raw::{c_int, c_uint, c_ulong};
use std::ptr;

use vpx_sys as sys;

use super::VideoError;
use super::frame::I420Frame;

/// Speed of the real-time encoder (libvpx `cpu-used`; negative values fix the speed
/// instead of letting libvpx adapt it to measured encoding time, which keeps the
/// output independent of the machine's load).
const CPU_USED: c_int = -12;

fn codec_error(
    ctx: *mut sys::vpx_codec_ctx_t,
    what: &str,
    err: sys::vpx_codec_err_t,
) -> VideoError {
    // SAFETY: `ctx` is a live context (or null, which libvpx answers with a fixed
    // string); both functions return pointers to static or context-owned C strings.
    let detail = unsafe {
        let text = if ctx.is_null() {
            sys::vpx_codec_err_to_string(err)
        } else {
            sys::vpx_codec_error(ctx)
        };
        if text.is_null() {
            String::new()
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        }
    };
    VideoError::Codec(format!("{what}: {detail} ({err:?})"))
}

fn check(
    ctx: *mut sys::vpx_codec_ctx_t,
    what: &str,
    err: sys::vpx_codec_err_t,
) -> Result<(), VideoError> {
    if err == sys::vpx_codec_err_t::VPX_CODEC_OK {
        Ok(())
    } else {
        Err(codec_error(ctx, what, err))
    }
}

/// Settings of the real-time VP8 encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderConfig {
    pub width: u16,
    pub height: u16,
    pub fps: u8,
    pub bitrate_bps: u32,
    /// Longest interval between keyframes, in frames.
    pub keyframe_interval: u32,
}

/// One encoded VP8 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    pub keyframe: bool,
}

/// A libvpx VP8 encoder: realtime deadline, error resilient, no lag, CBR, one thread.
pub struct Encoder {
    // Boxed: libvpx keeps pointers to the context and the configuration.
    ctx: Box<sys::vpx_codec_ctx_t>,
    cfg: Box<sys::vpx_codec_enc_cfg_t>,
    width: u16,
    height: u16,
    pts: i64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bitrate_kbps", &self.cfg.rc_target_bitrate)
            .finish()
    }
}

// SAFETY: the libvpx context is owned by this value alone and used only through
// `&mut self`; libvpx keeps no thread-local state for it.
unsafe impl Send for Encoder {}

impl Encoder {
    pub fn new(config: EncoderConfig) -> Result<Self, VideoError> {
        if config.width < 16
            || config.height < 16
            || !config.width.is_multiple_of(2)
            || !config.height.is_multiple_of(2)
        {
            return Err(VideoError::BadConfig(
                "the picture size must be even and at least 16x16",
            ));
        }
        if config.fps == 0 {
            return Err(VideoError::BadConfig("the frame rate must be at least 1"));
        }
        let mut cfg = Box::<sys::vpx_codec_enc_cfg_t>::new_uninit();
        // SAFETY: `cfg` points to writable memory of the right type, which libvpx fills
        // (every field) when it answers OK.
        let err = unsafe {
            sys::vpx_codec_enc_config_default(sys::vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0)
        };
        check(ptr::null_mut(), "default VP8 encoder configuration", err)?;
        // SAFETY: initialised by the successful call above.
        let mut cfg = unsafe { cfg.assume_init() };
        cfg.g_w = c_uint::from(config.width);
        cfg.g_h = c_uint::from(config.height);
        cfg.g_timebase = sys::vpx_rational {
            num: 1,
            den: c_int::from(config.fps),
        };
        cfg.g_threads = 1;
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = sys::VPX_ERROR_RESILIENT_DEFAULT;
        cfg.g_pass = sys::vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.rc_end_usage = sys::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = kbps(config.bitrate_bps);
        cfg.rc_dropframe_thresh = 0;
        cfg.rc_resize_allowed = 0;
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        cfg.kf_mode = sys::vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = config.keyframe_interval.max(1);
        // SAFETY: as above, zero is a valid (uninitialised) context for init to fill.
        let mut ctx: Box<sys::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `ctx` and `cfg` are valid, boxed (stable addresses) and outlive the
        // context, which `Drop` destroys.
        let err = unsafe {
            sys::vpx_codec_enc_init_ver(
                &mut *ctx,
                sys::vpx_codec_vp8_cx(),
                &*cfg,
                0,
                sys::VPX_ENCODER_ABI_VERSION as c_int,
            )
        };
        if err != sys::vpx_codec_err_t::VPX_CODEC_OK {
            // Init failed: there is nothing to destroy.
            return Err(codec_error(ptr::null_mut(), "VP8 encoder init", err));
        }
        let mut encoder = Encoder {
            ctx,
            cfg,
            width: config.width,
            height: config.height,
            pts: 0,
        };
        encoder.control(sys::vp8e_enc_control_id::VP8E_SET_CPUUSED, CPU_USED)?;
        encoder.control(sys::vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY, 0)?;
        encoder.control(sys::vp8e_enc_control_id::VP8E_SET_TOKEN_PARTITIONS, 0)?;
        // Keyframes at most 3x the size of an average frame, as real-time senders do.
        encoder.control(
            sys::vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT,
            300,
        )?;
        encoder.control(sys::vp8e_enc_control_id::VP8E_SET_STATIC_THRESHOLD, 1)?;
        Ok(encoder)
    }

    fn control(&mut self, id: sys::vp8e_enc_control_id, value: c_int) -> Result<(), VideoError> {
        // SAFETY: the context is live; these controls take one int argument.
        let err = unsafe { sys::vpx_codec_control_(&mut *self.ctx, id as c_int, value) };
        check(&mut *self.ctx, "VP8 encoder control", err)
    }

    /// The target bitrate, applied from the next frame.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), VideoError> {
        self.cfg.rc_target_bitrate = kbps(bps);
        // SAFETY: the context is live; `cfg` is a valid configuration it may keep.
        let err = unsafe { sys::vpx_codec_enc_config_set(&mut *self.ctx, &*self.cfg) };
        check(&mut *self.ctx, "VP8 encoder bitrate", err)
    }

    pub fn bitrate_bps(&self) -> u32 {
        self.cfg.rc_target_bitrate.saturating_mul(1000)
    }

    /// Encodes one picture of the configured size (one frame interval long).
    /// Returns None when the encoder produced no frame.
    pub fn encode(
        &mut self,
        picture: &I420Frame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, VideoError> {
        if picture.width() != self.width || picture.height() != self.height {
            return Err(VideoError::BadConfig(
                "picture size differs from the encoder's",
            ));
        }
        let (y, u, v) = picture.planes();
        let (cw, _) = picture.chroma_size();
        // SAFETY: all-zero is a valid vpx_image_t; the fields libvpx reads are set below.
        let mut image: sys::vpx_image_t = unsafe { std::mem::zeroed() };
        image.fmt = sys::vpx_img_fmt::VPX_IMG_FMT_I420;
        image.cs = sys::vpx_color_space::VPX_CS_BT_601;
        image.range = sys::vpx_color_range::VPX_CR_STUDIO_RANGE;
        image.w = c_uint::from(self.width);
        image.h = c_uint::from(self.height);
        image.d_w = image.w;
        image.d_h = image.h;
        image.bit_depth = 8;
        image.bps = 12;
        image.x_chroma_shift = 1;
        image.y_chroma_shift = 1;
        // libvpx only reads the input picture; the planes outlive the call.
        image.planes = [
            y.as_ptr().cast_mut(),
            u.as_ptr().cast_mut(),
            v.as_ptr().cast_mut(),
            ptr::null_mut(),
        ];
        let (yw, cw) = (
            c_int::from(self.width),
            c_int::try_from(cw).unwrap_or(c_int::MAX),
        );
        image.stride = [yw, cw, cw, 0];
        let flags = if keyframe {
            sys::VPX_EFLAG_FORCE_KF as sys::vpx_enc_frame_flags_t
        } else {
            0
        };
        // SAFETY: the context is live and `image` describes planes that are valid for
        // reads of width x height (luma) and half that (chroma) for this call.
        let err = unsafe {
            sys::vpx_codec_encode(
                &mut *self.ctx,
                &image,
                self.pts,
                1,
                flags,
                sys::VPX_DL_REALTIME as c_ulong,
            )
        };
        check(&mut *self.ctx, "VP8 encode", err)?;
        self.pts += 1;
        let mut out = None;
        let mut iter: sys::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: the context is live; `iter` is the iterator libvpx hands back.
            let pkt = unsafe { sys::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            // SAFETY: a non-null packet stays valid until the next call on the context.
            let Some(pkt) = (unsafe { pkt.as_ref() }) else {
                break;
            };
            if pkt.kind != sys::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: `kind` says the union holds a frame; `buf`/`sz` describe bytes
            // owned by the encoder until the next call on the context.
            let (data, flags) = unsafe {
                let frame = pkt.data.frame;
                let len = usize::try_from(frame.sz).unwrap_or(0);
                let bytes = if frame.buf.is_null() || len == 0 {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(frame.buf.cast::<u8>(), len)
                };
                (bytes.to_vec(), frame.flags)
            };
            out = Some(EncodedFrame {
                data,
                keyframe: flags & sys::VPX_FRAME_IS_KEY != 0,
            });
        }
        Ok(out)
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed once, here.
        unsafe {
            sys::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

fn kbps(bps: u32) -> c_uint {
    (bps / 1000).max(1)
}

/// A libvpx VP8 decoder (one thread).
pub struct Decoder {
    // Boxed: libvpx keeps a pointer to the context.
    ctx: Box<sys::vpx_codec_ctx_t>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

// SAFETY: as for `Encoder`, the context is owned alone and used through `&mut self`.
unsafe impl Send for Decoder {}

impl Decoder {
    pub fn new() -> Result<Self, VideoError> {
        let cfg = sys::vpx_codec_dec_cfg_t {
            threads: 1,
            w: 0,
            h: 0,
        };
        // SAFETY: zero is a valid uninitialised context for init to fill.
        let mut ctx: Box<sys::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `ctx` is boxed and outlives the decoder; `cfg` is only read by init.
        let err = unsafe {
            sys::vpx_codec_dec_init_ver(
                &mut *ctx,
                sys::vpx_codec_vp8_dx(),
                &cfg,
                0,
                sys::VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        if err != sys::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(codec_error(ptr::null_mut(), "VP8 decoder init", err));
        }
        Ok(Decoder { ctx })
    }

    /// Decodes one VP8 frame into `picture` (resized to the frame's size). Returns
    /// false when the frame produced no picture. An error, or a picture libvpx marks
    /// corrupted, means the stream needs a keyframe.
    pub fn decode(&mut self, frame: &[u8], picture: &mut I420Frame) -> Result<bool, VideoError> {
        if frame.is_empty() {
            return Err(VideoError::Corrupted);
        }
        let len = c_uint::try_from(frame.len()).map_err(|_| VideoError::Corrupted)?;
        // SAFETY: the context is live; `frame` is valid for reads of `len` bytes.
        let err = unsafe {
            sys::vpx_codec_decode(&mut *self.ctx, frame.as_ptr(), len, ptr::null_mut(), 0)
        };
        check(&mut *self.ctx, "VP8 decode", err)?;
        let mut corrupted: c_int = 0;
        // SAFETY: the context is live; this control writes one int through the pointer.
        let err = unsafe {
            sys::vpx_codec_control_(
                &mut *self.ctx,
                sys::vp8_dec_control_id::VP8D_GET_FRAME_CORRUPTED as c_int,
                &mut corrupted as *mut c_int,
            )
        };
        check(&mut *self.ctx, "VP8 decoder state", err)?;
        let mut got = false;
        let mut iter: sys::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: the context is live; `iter` is the iterator libvpx hands back.
            let image = unsafe { sys::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            // SAFETY: a non-null image stays valid until the next decode call.
            let Some(image) = (unsafe { image.as_ref() }) else {
                break;
            };
            if corrupted != 0 {
                continue;
            }
            // SAFETY: libvpx hands out I420 pictures whose planes hold d_h rows (chroma:
            // half, rounded up) of `stride` bytes each.
            unsafe { copy_image(image, picture)? };
            got = true;
        }
        if corrupted != 0 {
            return Err(VideoError::Corrupted);
        }
        Ok(got)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed once, here.
        unsafe {
            sys::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

/// Copies a decoded 8-bit I420 picture into `picture`.
///
/// # Safety
/// `image`'s planes must be valid for the rows and strides it describes.
unsafe fn copy_image(image: &sys::vpx_image_t, picture: &mut I420Frame) -> Result<(), VideoError> {
    if image.fmt != sys::vpx_img_fmt::VPX_IMG_FMT_I420 {
        return Err(VideoError::Codec(format!(
            "unexpected decoded format {:?}",
            image.fmt
        )));
    }
    let (Ok(width), Ok(height)) = (u16::try_from(image.d_w), u16::try_from(image.d_h)) else {
        return Err(VideoError::Corrupted);
    };
    picture.resize(width, height);
    let (cw, ch) = picture.chroma_size();
    let (y, u, v) = picture.planes_mut();
    let planes: [(&mut [u8], usize, usize); 3] = [
        (y, usize::from(width), usize::from(height)),
        (u, cw, ch),
        (v, cw, ch),
    ];
    for (i, (dst, w, h)) in planes.into_iter().enumerate() {
        let (src, stride) = (image.planes[i], image.stride[i]);
        let Ok(stride) = usize::try_from(stride) else {
            return Err(VideoError::Corrupted);
        };
        if src.is_null() || stride < w {
            return Err(VideoError::Corrupted);
        }
        for (row, out) in dst.chunks_exact_mut(w).take(h).enumerate() {
            // SAFETY: the caller guarantees `h` rows of `stride` bytes, of which the
            // first `w` are the picture.
            let line = unsafe { std::slice::from_raw_parts(src.add(row * stride), w) };
            out.copy_from_slice(line);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::frame::Yuv;
    use super::*;

    fn config(bitrate_bps: u32) -> EncoderConfig {
        EncoderConfig {
            width: 320,
            height: 180,
            fps: 15,
            bitrate_bps,
            keyframe_interval: 45,
        }
    }

    #[test]
    fn a_solid_picture_survives_encode_and_decode() {
        let colour = Yuv {
            y: 145,
            u: 54,
            v: 34,
        };
        let mut picture = I420Frame::new(320, 180);
        picture.fill(colour);
        let mut enc = Encoder::new(config(300_000)).unwrap();
        let mut dec = Decoder::new().unwrap();
        let mut out = I420Frame::new(2, 2);
        for i in 0..5 {
            let frame = enc
                .encode(&picture, false)
                .unwrap()
                .expect("no frame dropping");
            assert_eq!(frame.keyframe, i == 0);
            assert_eq!(super::super::vp8_rtp::is_keyframe(&frame.data), i == 0);
            assert!(dec.decode(&frame.data, &mut out).unwrap());
        }
        assert_eq!((out.width(), out.height()), (320, 180));
        let p = out.pixel(160, 90).unwrap();
        assert!(
            p.y.abs_diff(colour.y) <= 3
                && p.u.abs_diff(colour.u) <= 3
                && p.v.abs_diff(colour.v) <= 3,
            "{p:?}"
        );
        assert!(enc.encode(&picture, true).unwrap().unwrap().keyframe);
    }

    #[test]
    fn a_decoder_rejects_garbage_without_a_picture() {
        let mut dec = Decoder::new().unwrap();
        let mut out = I420Frame::new(2, 2);
        assert!(
            dec.decode(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xff], &mut out)
                .is_err()
        );
        assert!(dec.decode(&[], &mut out).is_err());
    }

    #[test]
    fn bad_sizes_are_refused() {
        let mut c = config(100_000);
        c.width = 321;
        assert!(matches!(Encoder::new(c), Err(VideoError::BadConfig(_))));
        let mut enc = Encoder::new(config(100_000)).unwrap();
        assert!(enc.encode(&I420Frame::new(16, 16), false).is_err());
    }
}
