//! One room's MCU thread, off the forwarding hot path. It reads the room's
//! publications as a cascade edge would (relays to its input socket, packets still
//! under each publisher's SRTP keys, relay probes to keep them open, keyframe requests
//! over the relays' feedback keys), feeds the audio mixer and the video composers, and
//! sends each mixed or composed stream from a socket of its own into the data plane,
//! as a local publisher would: SRTP under the local source's keys, sender reports, and
//! keyframes when the data plane passes a subscriber's PLI on.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cascade_command::demux::{self, PacketClass};
use cascade_command::keys::SrtpKeyingMaterial;
use cascade_dataplane::rtcp::{self, RtcpKind};
use cascade_dataplane::rtp;
use cascade_dataplane::srtp::SrtpContext;
use cascade_mcu::InputId;
use cascade_mcu::audio::{AudioMixer, FRAME, OutputId};
use cascade_mcu::rtp_out::RtpStream;
use cascade_mcu::video::{Composer, ComposerConfig};
use rand::Rng;

use super::stats::RoomStats;

/// Opus and VP8 payload types of the mixed streams (the data plane maps them to each
/// subscriber's).
pub(super) const OPUS_PT: u8 = 111;
pub(super) const VP8_PT: u8 = 96;
/// Encoder rate of every mixed audio output.
const AUDIO_BPS: u32 = 32_000;
/// How often each relay is probed and each output sends a sender report.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Room for an SRTP tag after the largest datagram.
const BUF: usize = 1500 + 64;

/// An instruction from the MCU manager to a room thread.
pub(super) enum Cmd {
    /// Read a publication relayed to the input socket.
    AddInput {
        input: InputId,
        relay_id: String,
        /// The publisher's keys (what its packets are protected with).
        keys: SrtpKeyingMaterial,
        /// The relays' feedback keys (what this side protects its RTCP with).
        feedback: SrtpKeyingMaterial,
        audio_ssrc: Option<u32>,
        video_ssrc: Option<u32>,
    },
    /// The SSRCs of an input changed (a layer learnt, another layer chosen).
    UpdateInput {
        input: InputId,
        audio_ssrc: Option<u32>,
        video_ssrc: Option<u32>,
    },
    RemoveInput {
        input: InputId,
    },
    /// A mixed audio stream without `excluded`'s voices, sent from `socket`.
    AddAudio {
        handle: u64,
        excluded: Vec<InputId>,
        out: Output,
    },
    /// A composed video stream.
    AddVideo {
        handle: u64,
        config: ComposerConfig,
        out: Output,
    },
    RemoveOutput {
        handle: u64,
    },
    /// The encoder rate of a composition (its subscribers' estimate).
    SetBitrate {
        handle: u64,
        bps: u32,
    },
    SetSpeaker(Option<InputId>),
}

/// Where and how one local source's stream goes into the data plane.
pub(super) struct Output {
    pub(super) socket: UdpSocket,
    pub(super) ssrc: u32,
    /// Keys to protect the stream with.
    pub(super) rx: SrtpKeyingMaterial,
    /// Keys the data plane protects its feedback with.
    pub(super) tx: SrtpKeyingMaterial,
}

struct Input {
    relay_id: String,
    srtp: SrtpContext,
    audio_ssrc: Option<u32>,
    video_ssrc: Option<u32>,
}

struct Sender {
    socket: UdpSocket,
    protect: SrtpContext,
    feedback: SrtpContext,
    stream: RtpStream,
}

enum Producer {
    Audio(OutputId),
    Video(Box<Composer>),
}

struct Out {
    producer: Producer,
    sender: Sender,
}

/// The state of one room thread.
pub(super) struct RoomThread {
    media: SocketAddr,
    input_socket: UdpSocket,
    inputs: HashMap<InputId, Input>,
    feedback: Option<(SrtpKeyingMaterial, SrtpContext)>,
    mixer: Option<AudioMixer>,
    outputs: HashMap<u64, Out>,
    cname: String,
    epoch: Instant,
    next_audio: Option<Instant>,
    next_probe: Instant,
    stats: Arc<Mutex<RoomStats>>,
    buf: Vec<u8>,
    wire: Vec<u8>,
    audio_out: Vec<(OutputId, Vec<u8>)>,
    video_out: Vec<Vec<u8>>,
    wanted: Vec<InputId>,
    latencies: Vec<Duration>,
}

impl RoomThread {
    pub(super) fn new(
        media: SocketAddr,
        input_socket: UdpSocket,
        stats: Arc<Mutex<RoomStats>>,
    ) -> Self {
        let now = Instant::now();
        Self {
            media,
            input_socket,
            inputs: HashMap::new(),
            feedback: None,
            mixer: None,
            outputs: HashMap::new(),
            cname: format!("cascade-mcu-{:08x}", rand::rng().random::<u32>()),
            epoch: now,
            next_audio: None,
            next_probe: now,
            stats,
            buf: vec![0; BUF],
            wire: Vec::with_capacity(BUF),
            audio_out: Vec::new(),
            video_out: Vec::new(),
            wanted: Vec::new(),
            latencies: Vec::new(),
        }
    }

    /// Runs until the manager drops its end of `cmds`.
    pub(super) fn run(mut self, cmds: Receiver<Cmd>) {
        loop {
            loop {
                match cmds.try_recv() {
                    Ok(c) => self.apply(c),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            let deadline = self.next_deadline(now);
            let wait = deadline
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(20));
            let _ = self.input_socket.set_read_timeout(Some(wait));
            match self.input_socket.recv_from(&mut self.buf) {
                Ok((n, from)) if from == self.media => self.on_input(n),
                _ => {}
            }
            self.read_feedback();
            self.run_timers(Instant::now());
        }
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let video = self.outputs.values().filter_map(|o| match &o.producer {
            Producer::Video(c) => Some(c.next_frame()),
            Producer::Audio(_) => None,
        });
        video
            .chain(self.next_audio)
            .chain(Some(self.next_probe))
            .min()
            .unwrap_or(now + FRAME)
    }

    fn apply(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::AddInput {
                input,
                relay_id,
                keys,
                feedback,
                audio_ssrc,
                video_ssrc,
            } => {
                let Ok(srtp) = SrtpContext::new(&keys) else {
                    tracing::warn!(input, "MCU input with unusable keys");
                    return;
                };
                if self.feedback.as_ref().is_none_or(|(k, _)| *k != feedback)
                    && let Ok(ctx) = SrtpContext::new(&feedback)
                {
                    self.feedback = Some((feedback, ctx));
                }
                self.inputs.insert(
                    input,
                    Input {
                        relay_id,
                        srtp,
                        audio_ssrc,
                        video_ssrc,
                    },
                );
                if let Some(m) = self.mixer.as_mut() {
                    m.add_input(input);
                }
                for o in self.outputs.values_mut() {
                    if let Producer::Video(c) = &mut o.producer {
                        c.add_input(input);
                    }
                }
                // Probe the new relay at once.
                self.next_probe = Instant::now();
            }
            Cmd::UpdateInput {
                input,
                audio_ssrc,
                video_ssrc,
            } => {
                if let Some(i) = self.inputs.get_mut(&input) {
                    i.audio_ssrc = audio_ssrc;
                    i.video_ssrc = video_ssrc;
                }
            }
            Cmd::RemoveInput { input } => {
                self.inputs.remove(&input);
                if let Some(m) = self.mixer.as_mut() {
                    m.remove_input(input);
                }
                for o in self.outputs.values_mut() {
                    if let Producer::Video(c) = &mut o.producer {
                        c.remove_input(input);
                    }
                }
            }
            Cmd::AddAudio {
                handle,
                excluded,
                out,
            } => {
                if self.mixer.is_none() {
                    match AudioMixer::new(AUDIO_BPS) {
                        Ok(mut m) => {
                            for i in self.inputs.keys() {
                                m.add_input(*i);
                            }
                            self.mixer = Some(m);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the audio mixer did not start");
                            return;
                        }
                    }
                }
                let Some(m) = self.mixer.as_mut() else {
                    return;
                };
                let id = match m.output(&excluded) {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!(error = %e, "no audio output");
                        return;
                    }
                };
                if let Some(sender) = self.sender(out, OPUS_PT, 48_000) {
                    self.outputs.insert(
                        handle,
                        Out {
                            producer: Producer::Audio(id),
                            sender,
                        },
                    );
                    self.next_audio.get_or_insert_with(Instant::now);
                }
            }
            Cmd::AddVideo {
                handle,
                config,
                out,
            } => {
                let mut composer = match Composer::new(config) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "the video composer did not start");
                        return;
                    }
                };
                let mut ids: Vec<InputId> = self.inputs.keys().copied().collect();
                ids.sort_unstable();
                for i in ids {
                    composer.add_input(i);
                }
                if let Some(sender) = self.sender(out, VP8_PT, 90_000) {
                    self.outputs.insert(
                        handle,
                        Out {
                            producer: Producer::Video(Box::new(composer)),
                            sender,
                        },
                    );
                }
            }
            Cmd::RemoveOutput { handle } => {
                if let Some(Out {
                    producer: Producer::Audio(id),
                    ..
                }) = self.outputs.remove(&handle)
                    && let Some(m) = self.mixer.as_mut()
                {
                    m.release(id);
                }
                if !self
                    .outputs
                    .values()
                    .any(|o| matches!(o.producer, Producer::Audio(_)))
                {
                    self.next_audio = None;
                }
            }
            Cmd::SetBitrate { handle, bps } => {
                if let Some(Out {
                    producer: Producer::Video(c),
                    ..
                }) = self.outputs.get_mut(&handle)
                {
                    c.set_bitrate(bps);
                }
            }
            Cmd::SetSpeaker(speaker) => {
                for o in self.outputs.values_mut() {
                    if let Producer::Video(c) = &mut o.producer {
                        c.set_speaker(speaker);
                    }
                }
            }
        }
    }

    fn sender(&self, out: Output, pt: u8, clock_rate: u32) -> Option<Sender> {
        let protect = SrtpContext::new(&out.rx).ok()?;
        let feedback = SrtpContext::new(&out.tx).ok()?;
        out.socket.set_nonblocking(true).ok()?;
        let mut rng = rand::rng();
        let stream = RtpStream::new(
            out.ssrc,
            pt,
            clock_rate,
            rng.random(),
            rng.random(),
            self.epoch,
        );
        Some(Sender {
            socket: out.socket,
            protect,
            feedback,
            stream,
        })
    }

    /// A datagram the data plane copied to the input socket.
    fn on_input(&mut self, n: usize) {
        let now = Instant::now();
        if demux::classify(&self.buf[..n]) != PacketClass::Rtp {
            return;
        }
        let Ok(hdr) = rtp::parse_header(&self.buf[..n]) else {
            return;
        };
        let Some((&id, input)) = self
            .inputs
            .iter_mut()
            .find(|(_, i)| i.audio_ssrc == Some(hdr.ssrc) || i.video_ssrc == Some(hdr.ssrc))
        else {
            return;
        };
        let Ok(len) = input.srtp.unprotect_rtp(&mut self.buf[..n]) else {
            return;
        };
        let pkt = &self.buf[..len];
        let Ok(hdr) = rtp::parse(pkt) else {
            return;
        };
        let payload = &pkt[hdr.payload_range(len)];
        if input.audio_ssrc == Some(hdr.ssrc) {
            if let Some(m) = self.mixer.as_mut() {
                m.push_rtp(now, id, hdr.sequence, hdr.timestamp, payload);
            }
            return;
        }
        for o in self.outputs.values_mut() {
            if let Producer::Video(c) = &mut o.producer {
                c.push_rtp(now, id, hdr.sequence, hdr.timestamp, hdr.marker, payload);
            }
        }
    }

    /// The data plane's feedback to the outputs: a subscriber's PLI or FIR asks the
    /// composition for a keyframe.
    fn read_feedback(&mut self) {
        for o in self.outputs.values_mut() {
            while let Ok(n) = o.sender.socket.recv(&mut self.buf) {
                let Ok(len) = o.sender.feedback.unprotect_rtcp(&mut self.buf[..n]) else {
                    continue;
                };
                let wants_keyframe = rtcp::packets(&self.buf[..len]).any(|p| {
                    p.is_ok_and(|p| matches!(p.kind(), Ok(RtcpKind::Pli(_)) | Ok(RtcpKind::Fir(_))))
                });
                if wants_keyframe && let Producer::Video(c) = &mut o.producer {
                    c.request_keyframe();
                }
            }
        }
    }

    fn run_timers(&mut self, now: Instant) {
        if let Some(due) = self.next_audio
            && now >= due
        {
            self.mix_audio(now, due);
            // Catch up after a stall rather than burst.
            let next = due + FRAME;
            self.next_audio = Some(if next + FRAME * 5 < now {
                now + FRAME
            } else {
                next
            });
        }
        self.compose_video(now);
        if now >= self.next_probe {
            self.next_probe = now + PROBE_EVERY;
            self.probe_relays();
            self.sender_reports(now);
            self.publish_stats();
        }
    }

    /// Mixes the frame due at `due` (its capture instant: frames are due every
    /// [`FRAME`] exactly, so their timestamps step by one frame).
    fn mix_audio(&mut self, now: Instant, due: Instant) {
        let Some(m) = self.mixer.as_mut() else {
            return;
        };
        self.audio_out.clear();
        m.tick(now, &mut self.audio_out);
        m.drain_latencies(&mut self.latencies);
        for (id, payload) in self.audio_out.drain(..) {
            for o in self.outputs.values_mut() {
                if matches!(o.producer, Producer::Audio(a) if a == id) {
                    send_rtp(
                        &mut o.sender,
                        self.media,
                        due,
                        true,
                        &payload,
                        &mut self.wire,
                    );
                }
            }
        }
    }

    fn compose_video(&mut self, now: Instant) {
        for o in self.outputs.values_mut() {
            let Producer::Video(c) = &mut o.producer else {
                continue;
            };
            if now < c.next_frame() {
                continue;
            }
            self.video_out.clear();
            if c.tick(now, &mut self.video_out) {
                let last = self.video_out.len().saturating_sub(1);
                for (i, p) in self.video_out.iter().enumerate() {
                    send_rtp(&mut o.sender, self.media, now, i == last, p, &mut self.wire);
                }
            }
            c.keyframe_requests(now, &mut self.wanted);
        }
        if self.wanted.is_empty() {
            return;
        }
        self.wanted.sort_unstable();
        self.wanted.dedup();
        let wanted = std::mem::take(&mut self.wanted);
        for id in &wanted {
            if let Some(ssrc) = self.inputs.get(id).and_then(|i| i.video_ssrc) {
                self.send_feedback_pli(ssrc);
            }
        }
        self.wanted = wanted;
        self.wanted.clear();
    }

    /// A PLI for publisher stream `media_ssrc`, over the relays' feedback keys: the
    /// data plane passes it to the publisher, as it does an edge's.
    fn send_feedback_pli(&mut self, media_ssrc: u32) {
        let Some((_, ctx)) = self.feedback.as_mut() else {
            return;
        };
        let mut buf = [0u8; 64];
        let Ok(n) = rtcp::write_pli(&mut buf, 1, media_ssrc) else {
            return;
        };
        if let Ok(len) = ctx.protect_rtcp(&mut buf, n) {
            let _ = self.input_socket.send_to(&buf[..len], self.media);
        }
    }

    /// Keeps every relay open (an origin closes a relay nobody probes).
    fn probe_relays(&mut self) {
        let Some((keys, _)) = &self.feedback else {
            return;
        };
        let mut rng = rand::rng();
        for i in self.inputs.values() {
            if let Ok(p) = cascade_core::sfu::relay_probe(&i.relay_id, keys, rng.random()) {
                let _ = self.input_socket.send_to(&p, self.media);
            }
        }
    }

    fn sender_reports(&mut self, now: Instant) {
        let wall = SystemTime::now();
        for o in self.outputs.values_mut() {
            self.wire.clear();
            o.sender
                .stream
                .sender_report(now, wall, &self.cname, &mut self.wire);
            let n = self.wire.len();
            self.wire.resize(n + 32, 0);
            if let Ok(len) = o.sender.protect.protect_rtcp(&mut self.wire, n) {
                let _ = o.sender.socket.send_to(&self.wire[..len], self.media);
            }
        }
    }

    fn publish_stats(&mut self) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.cpu = thread_cpu_time();
        s.inputs = self.inputs.len();
        s.audio = self.mixer.as_ref().map(AudioMixer::stats);
        s.video = self
            .outputs
            .values()
            .filter_map(|o| match &o.producer {
                Producer::Video(c) => Some(c.stats()),
                Producer::Audio(_) => None,
            })
            .collect();
        s.audio_outputs = self
            .outputs
            .values()
            .filter(|o| matches!(o.producer, Producer::Audio(_)))
            .count();
        s.latencies.append(&mut self.latencies);
    }
}

/// Wraps `payload` in the sender's RTP stream, protects it and sends it to the data
/// plane.
fn send_rtp(
    s: &mut Sender,
    media: SocketAddr,
    capture: Instant,
    marker: bool,
    payload: &[u8],
    wire: &mut Vec<u8>,
) {
    s.stream.write_packet(capture, marker, payload, wire);
    let n = wire.len();
    wire.resize(n + 32, 0);
    if let Ok(len) = s.protect.protect_rtp(wire, n) {
        let _ = s.socket.send_to(&wire[..len], media);
    }
}

/// The calling thread's CPU time.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; the clock id is valid.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}
