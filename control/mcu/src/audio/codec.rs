//! The Opus codec as the mixer uses it: thin wrappers over libopus (through the `opus`
//! crate) that fix the format (48 kHz, mono), turn the library's errors into
//! [`McuError`], and refuse what libopus must not see (empty or oversized payloads).
//! No codec logic lives here.

use opus::{Application, Bitrate, Channels};

use crate::McuError;

/// Sample rate of everything the mixer handles.
pub(crate) const SAMPLE_RATE: u32 = 48_000;
/// Samples in the longest Opus packet (120 ms at 48 kHz, RFC 6716 §3.2.5).
pub(crate) const MAX_PACKET_SAMPLES: usize = 5760;
/// Largest payload handed to the decoder: a 120 ms packet of six 1275-byte frames plus
/// its framing (RFC 6716 §3.4 R2, R5) stays below it. Longer payloads are not Opus.
pub(crate) const MAX_PAYLOAD: usize = 8000;
/// Room for one encoded output frame (RFC 6716 recommends 4000 bytes).
pub(crate) const MAX_ENCODED: usize = 4000;

/// A mono 48 kHz Opus decoder (stereo packets are downmixed by libopus).
pub(crate) struct OpusDecoder {
    inner: opus::Decoder,
}

impl OpusDecoder {
    pub(crate) fn new() -> Result<Self, McuError> {
        Ok(Self {
            inner: opus::Decoder::new(SAMPLE_RATE, Channels::Mono)?,
        })
    }

    /// Decodes one packet into `out` (at least [`MAX_PACKET_SAMPLES`] long); returns
    /// the samples decoded.
    pub(crate) fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, McuError> {
        check_payload(payload)?;
        Ok(self.inner.decode(payload, out, false)?)
    }

    /// Recovers the packet before `next` from `next`'s in-band FEC data (or conceals it
    /// when `next` carries none), `samples` long (the lost packet's duration).
    pub(crate) fn decode_fec(
        &mut self,
        next: &[u8],
        out: &mut [i16],
        samples: usize,
    ) -> Result<usize, McuError> {
        check_payload(next)?;
        let out = out.get_mut(..samples).ok_or_else(|| too_long(samples))?;
        Ok(self.inner.decode(next, out, true)?)
    }

    /// Packet-loss concealment (libopus PLC) of `samples` samples (a multiple of 2.5 ms).
    pub(crate) fn conceal(&mut self, out: &mut [i16], samples: usize) -> Result<usize, McuError> {
        let out = out.get_mut(..samples).ok_or_else(|| too_long(samples))?;
        Ok(self.inner.decode(&[], out, false)?)
    }
}

fn check_payload(payload: &[u8]) -> Result<(), McuError> {
    if payload.is_empty() || payload.len() > MAX_PAYLOAD {
        return Err(McuError::Codec(format!(
            "payload of {} bytes is not an Opus packet",
            payload.len()
        )));
    }
    Ok(())
}

fn too_long(samples: usize) -> McuError {
    McuError::InvalidParameter(format!("{samples} samples exceed the output buffer"))
}

/// A mono 48 kHz Opus encoder for one mixed output: constant bitrate target, DTX off.
pub(crate) struct OpusEncoder {
    inner: opus::Encoder,
}

impl OpusEncoder {
    pub(crate) fn new(bitrate_bps: u32) -> Result<Self, McuError> {
        let bitrate = i32::try_from(bitrate_bps)
            .ok()
            .filter(|b| (6_000..=510_000).contains(b))
            .ok_or_else(|| {
                McuError::InvalidParameter(format!(
                    "Opus bitrate {bitrate_bps} outside 6000..=510000"
                ))
            })?;
        let mut inner = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Audio)?;
        inner.set_bitrate(Bitrate::Bits(bitrate))?;
        inner.set_dtx(false)?;
        inner.set_complexity(COMPLEXITY)?;
        Ok(Self { inner })
    }

    /// Encodes one frame of `pcm` into `out`; returns the payload length.
    pub(crate) fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, McuError> {
        Ok(self.inner.encode(pcm, out)?)
    }
}

/// Encoder complexity (0..=10; libopus defaults to 9): 5 costs little audible quality.
/// The application is `Audio`, not `Voip`: a mix is several voices at once, and at the
/// usual bitrates (32 kb/s and up) libopus then codes it with CELT, which costs a
/// third of the CPU time of SILK in the `Voip` mode (measured: 0.37 % against 0.95 % of
/// a core per mixed participant, 10 inputs and 10 minus-one outputs at 32 kb/s).
const COMPLEXITY: i32 = 5;
