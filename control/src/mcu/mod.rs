//! MCU subscribe (`?mode=mcu`): one mixed audio track and one composed video track
//! per subscription, made on this server from the room's publications (local ones
//! and those relayed here from other servers alike).
//!
//! Each room with MCU subscribers has one thread (`room`), off the forwarding hot
//! path: the data plane copies the room's publications to it through ordinary
//! cascade relays (opened here on this server's own SFU, to the thread's input
//! socket), and it sends each output stream back into the data plane from a socket of
//! its own as a local source (`Sfu::add_local_source`), to which the subscription is
//! an ordinary SFU subscription. So the forwarding path changes in nothing, and costs
//! nothing more, until an MCU subscriber exists.
//!
//! Outputs are shared: listeners who contribute nothing share one mixed audio stream;
//! a listener whose token user publishes in the room gets its own, without its voice
//! (minus-one); every subscriber of one (layout, width, height, fps) shares one
//! composition. This manager keeps the room threads in line with the SFU four times a
//! second (`refresh`): publications that joined or left, layers learnt, subscriptions
//! gone, the compositions' bit rate from their subscribers' estimates, the active
//! speaker; and it turns the threads' figures into metrics (`stats`).

mod room;
mod stats;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cascade_command::command::MediaKind;
use cascade_core::error::ApiError;
use cascade_core::sdp::Codec;
use cascade_core::sfu::{Client, LocalTrack, RoomEventKind, Sfu};
use cascade_mcu::InputId;
use cascade_mcu::video::{ComposerConfig, Layout};
use rand::Rng;

use room::{Cmd, OPUS_PT, Output, RoomThread, VP8_PT};
use stats::{McuMetrics, RoomStats};

/// How often the manager brings the room threads in line with the SFU.
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);

/// Composition bit rates: the default start, and the range estimates move it in.
const VIDEO_START_BPS: u32 = 800_000;
const VIDEO_MIN_BPS: u32 = 100_000;
const VIDEO_MAX_BPS: u32 = 2_500_000;

/// What an MCU subscribe asks for (its query parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct McuOptions {
    pub layout: Layout,
    pub width: u16,
    pub height: u16,
    pub fps: u8,
}

impl McuOptions {
    /// `layout`, `width`, `height` and `fps` from a query string (defaults: a
    /// 640x360 grid at 15 fps); out-of-range values are refused.
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        let mut o = Self {
            layout: Layout::Grid,
            width: 640,
            height: 360,
            fps: 15,
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let num = |lo: u32, hi: u32| -> Result<u32, ApiError> {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| (lo..=hi).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "bad_mcu_option",
                            format!("{k}={v}: expected a number from {lo} to {hi}"),
                        )
                    })
            };
            match &*k {
                "layout" => {
                    o.layout = match &*v {
                        "grid" => Layout::Grid,
                        "speaker" => Layout::Speaker,
                        _ => {
                            return Err(ApiError::bad_request(
                                "bad_mcu_option",
                                format!("layout={v}: expected grid or speaker"),
                            ));
                        }
                    }
                }
                // Even sizes: the composition is I420.
                "width" => o.width = (num(160, 1920)? & !1) as u16,
                "height" => o.height = (num(90, 1080)? & !1) as u16,
                "fps" => o.fps = num(1, 30)? as u8,
                _ => {}
            }
        }
        Ok(o)
    }
}

/// One output stream shared by several subscriptions.
#[derive(Debug)]
struct Shared {
    handle: u64,
    /// The local source it is fed to.
    resource: String,
    refs: usize,
}

/// What the manager knows of one input.
#[derive(Debug)]
struct InputState {
    id: InputId,
    relay_id: String,
    user: String,
    audio_ssrc: Option<u32>,
    video_ssrc: Option<u32>,
}

/// What an MCU subscription holds.
#[derive(Debug)]
struct McuSubscription {
    /// The excluded inputs of its audio output, when it has one.
    audio: Option<Vec<InputId>>,
    video: Option<McuOptions>,
    /// It mixes every publication of the room, not only the ones it named.
    room_wide: bool,
}

/// One room with MCU subscribers.
struct RoomMcu {
    cmds: mpsc::Sender<Cmd>,
    input_addr: SocketAddr,
    stats: Arc<Mutex<RoomStats>>,
    /// Inputs by publication id.
    inputs: HashMap<String, InputState>,
    next_input: InputId,
    /// Publications named by subscriptions (besides the room's, for room-wide ones).
    named: Vec<String>,
    audio: HashMap<Vec<InputId>, Shared>,
    video: HashMap<McuOptions, Shared>,
    subscriptions: HashMap<String, McuSubscription>,
    speaker: Option<InputId>,
}

/// The MCU of this server: its rooms and metrics.
pub struct Mcu {
    /// The data plane's media address, where the threads send.
    media: SocketAddr,
    rooms: Mutex<HashMap<String, RoomMcu>>,
    metrics: McuMetrics,
    next_handle: Mutex<u64>,
}

impl std::fmt::Debug for Mcu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mcu")
            .field("media", &self.media)
            .finish_non_exhaustive()
    }
}

/// What an MCU subscribe created.
#[derive(Debug)]
pub struct McuCreated {
    pub resource: String,
    pub answer: String,
}

impl Mcu {
    /// An MCU that feeds the data plane at `media`, with its metrics in `registry`.
    pub fn new(media: SocketAddr, registry: &prometheus::Registry) -> anyhow::Result<Self> {
        Ok(Self {
            media,
            rooms: Mutex::new(HashMap::new()),
            metrics: McuMetrics::new(registry)?,
            next_handle: Mutex::new(1),
        })
    }

    fn handle(&self) -> u64 {
        let mut h = self.next_handle.lock().unwrap_or_else(|p| p.into_inner());
        *h += 1;
        *h
    }

    /// A socket of this host for one stream to or from the data plane.
    fn socket(&self) -> Result<UdpSocket, ApiError> {
        let ip: IpAddr = self.media.ip();
        UdpSocket::bind((ip, 0)).map_err(|e| ApiError::internal(format!("MCU socket on {ip}: {e}")))
    }

    /// Creates an MCU subscription in `room` for `user`: of the publications `named`
    /// (relayed here already when they are other servers'), or of every publication
    /// of the room when `named` is empty. Runs under the SFU's lock (`sfu`).
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        &self,
        sfu: &mut Sfu,
        now: Instant,
        room: &str,
        client: &Client,
        user: &str,
        named: &[String],
        opts: McuOptions,
        offer: &str,
    ) -> Result<McuCreated, ApiError> {
        let wants_video = offer.contains("m=video");
        let wants_audio = offer.contains("m=audio");
        if !wants_audio && !wants_video {
            return Err(ApiError::no_common_codec(
                "an MCU subscribe offers an audio or a video m-line to receive",
            ));
        }
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if !rooms.contains_key(room) {
            rooms.insert(room.to_owned(), self.start_room(room)?);
        }
        let Some(r) = rooms.get_mut(room) else {
            return Err(ApiError::internal("MCU room vanished"));
        };
        sfu.add_local_relay_peer(r.input_addr);
        for n in named {
            if !r.named.contains(n) {
                r.named.push(n.clone());
            }
        }
        let wanted = if named.is_empty() {
            sfu.room_publications(room)
        } else {
            named.to_vec()
        };
        for p in &wanted {
            add_input(r, sfu, now, p);
        }
        // Minus-one: the subscriber's own publications are not in its mix.
        let mut excluded: Vec<InputId> = r
            .inputs
            .values()
            .filter(|i| !user.is_empty() && i.user == user)
            .map(|i| i.id)
            .collect();
        excluded.sort_unstable();
        let mut sources = Vec::new();
        if wants_audio {
            sources.push(self.audio_output(r, sfu, now, room, &excluded)?);
        }
        if wants_video {
            sources.push(self.video_output(r, sfu, now, room, opts)?);
        }
        let created = match sfu.subscribe_for(now, room, client, &sources, offer) {
            Ok(c) => c,
            Err(e) => {
                if wants_audio {
                    release_audio(r, sfu, &excluded);
                }
                if wants_video {
                    release_video(r, sfu, opts);
                }
                return Err(e);
            }
        };
        r.subscriptions.insert(
            created.resource.clone(),
            McuSubscription {
                audio: wants_audio.then_some(excluded),
                video: wants_video.then_some(opts),
                room_wide: named.is_empty(),
            },
        );
        tracing::info!(room, inputs = r.inputs.len(), "MCU subscription created");
        Ok(McuCreated {
            resource: created.resource,
            answer: created.answer,
        })
    }

    fn start_room(&self, room: &str) -> Result<RoomMcu, ApiError> {
        let input = self.socket()?;
        let input_addr = input
            .local_addr()
            .map_err(|e| ApiError::internal(format!("MCU socket: {e}")))?;
        let stats = Arc::new(Mutex::new(RoomStats::default()));
        let (tx, rx) = mpsc::channel();
        let thread = RoomThread::new(self.media, input, stats.clone());
        std::thread::Builder::new()
            .name("cascade-mcu".into())
            .spawn(move || thread.run(rx))
            .map_err(|e| ApiError::internal(format!("MCU thread: {e}")))?;
        tracing::info!(room, input = %input_addr, "MCU room started");
        Ok(RoomMcu {
            cmds: tx,
            input_addr,
            stats,
            inputs: HashMap::new(),
            next_input: 1,
            named: Vec::new(),
            audio: HashMap::new(),
            video: HashMap::new(),
            subscriptions: HashMap::new(),
            speaker: None,
        })
    }

    /// A new local source in `room` with one track of `kind`, fed from a new socket:
    /// what the room thread needs to send it, its resource id and a fresh handle.
    fn new_output(
        &self,
        sfu: &mut Sfu,
        now: Instant,
        room: &str,
        kind: MediaKind,
    ) -> Result<(Output, String, u64), ApiError> {
        let socket = self.socket()?;
        let peer = local_addr(&socket)?;
        let ssrc = rand::rng().random::<u32>() | 1;
        let codec = match kind {
            MediaKind::Audio => opus_codec(),
            MediaKind::Video => vp8_codec(),
        };
        let src = sfu.add_local_source(now, room, peer, &[LocalTrack { kind, codec, ssrc }]);
        let out = Output {
            socket,
            ssrc,
            rx: src.rx,
            tx: src.tx,
        };
        Ok((out, src.resource, self.handle()))
    }

    /// The local source of the mix without `excluded`, created on first use.
    fn audio_output(
        &self,
        r: &mut RoomMcu,
        sfu: &mut Sfu,
        now: Instant,
        room: &str,
        excluded: &[InputId],
    ) -> Result<String, ApiError> {
        if let Some(s) = r.audio.get_mut(excluded) {
            s.refs += 1;
            return Ok(s.resource.clone());
        }
        let (out, resource, handle) = self.new_output(sfu, now, room, MediaKind::Audio)?;
        let _ = r.cmds.send(Cmd::AddAudio {
            handle,
            excluded: excluded.to_vec(),
            out,
        });
        let shared = Shared {
            handle,
            resource: resource.clone(),
            refs: 1,
        };
        r.audio.insert(excluded.to_vec(), shared);
        Ok(resource)
    }

    /// The local source of the composition `opts`, created on first use.
    fn video_output(
        &self,
        r: &mut RoomMcu,
        sfu: &mut Sfu,
        now: Instant,
        room: &str,
        opts: McuOptions,
    ) -> Result<String, ApiError> {
        if let Some(s) = r.video.get_mut(&opts) {
            s.refs += 1;
            return Ok(s.resource.clone());
        }
        let (out, resource, handle) = self.new_output(sfu, now, room, MediaKind::Video)?;
        let config = ComposerConfig {
            layout: opts.layout,
            width: opts.width,
            height: opts.height,
            fps: opts.fps,
            bitrate_bps: VIDEO_START_BPS,
        };
        let _ = r.cmds.send(Cmd::AddVideo {
            handle,
            config,
            out,
        });
        if let Some(s) = r.speaker {
            let _ = r.cmds.send(Cmd::SetSpeaker(Some(s)));
        }
        let shared = Shared {
            handle,
            resource: resource.clone(),
            refs: 1,
        };
        r.video.insert(opts, shared);
        Ok(resource)
    }

    /// Brings every room thread in line with the SFU (see the module documentation)
    /// and updates the metrics. Call it every [`REFRESH_EVERY`].
    pub fn refresh(&self, sfu: &mut Sfu, now: Instant) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let mut ended = Vec::new();
        for (name, r) in rooms.iter_mut() {
            refresh_room(name, r, sfu, now);
            if r.subscriptions.is_empty() {
                ended.push(name.clone());
            }
        }
        let stopped: Vec<RoomMcu> = ended
            .iter()
            .filter_map(|name| {
                let r = rooms.remove(name)?;
                stop_room(name, &r, sfu);
                Some(r)
            })
            .collect();
        let mut live: Vec<_> = rooms
            .values()
            .map(|r| r.stats.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let mut gone: Vec<_> = stopped
            .iter()
            .map(|r| r.stats.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let mut live: Vec<&mut RoomStats> = live.iter_mut().map(|g| &mut **g).collect();
        let mut gone: Vec<&mut RoomStats> = gone.iter_mut().map(|g| &mut **g).collect();
        self.metrics.update(&mut live, &mut gone);
    }
}

fn local_addr(s: &UdpSocket) -> Result<SocketAddr, ApiError> {
    s.local_addr()
        .map_err(|e| ApiError::internal(format!("MCU socket: {e}")))
}

fn opus_codec() -> Codec {
    Codec {
        payload_type: OPUS_PT,
        name: "opus".into(),
        clock_rate: 48_000,
        channels: Some(2),
        fmtp: Some("minptime=10;useinbandfec=1".into()),
        rtcp_fb: vec!["transport-cc".into()],
    }
}

fn vp8_codec() -> Codec {
    Codec {
        payload_type: VP8_PT,
        name: "VP8".into(),
        clock_rate: 90_000,
        channels: None,
        fmtp: None,
        rtcp_fb: vec![
            "nack".into(),
            "nack pli".into(),
            "ccm fir".into(),
            "transport-cc".into(),
        ],
    }
}

/// The SSRCs of publication `id` to read: its audio track's, and the video layer
/// that fits a cell of a grid of `inputs` inputs on the widest composition.
fn input_ssrcs(sfu: &Sfu, id: &str, cell_width: u16) -> Option<(String, Option<u32>, Option<u32>)> {
    let (user, tracks) = sfu.publication_tracks(id)?;
    let audio = tracks
        .iter()
        .find(|t| t.kind == MediaKind::Audio && t.codec.name.eq_ignore_ascii_case("opus"))
        .map(|t| t.ssrc)
        .filter(|s| *s != 0);
    let video = tracks
        .iter()
        .find(|t| t.kind == MediaKind::Video && t.codec.name.eq_ignore_ascii_case("VP8"))
        .and_then(|t| {
            if t.layers.is_empty() {
                return Some(t.ssrc).filter(|s| *s != 0);
            }
            let known: Vec<_> = t.layers.iter().filter(|l| l.ssrc.is_some()).collect();
            // The smallest layer at least as wide as the cell; the widest otherwise;
            // with no size known yet, the middle one.
            let fits = known
                .iter()
                .filter(|l| l.width >= cell_width)
                .min_by_key(|l| l.width)
                .or_else(|| known.iter().filter(|l| l.width > 0).max_by_key(|l| l.width));
            let pick = fits.or_else(|| known.get(known.len() / 2));
            pick.and_then(|l| l.ssrc)
        });
    Some((user.to_owned(), audio, video))
}

fn cell_width(r: &RoomMcu, inputs: usize) -> u16 {
    let widest = r.video.keys().map(|o| o.width).max().unwrap_or(0);
    let cols = (inputs.max(1) as f64).sqrt().ceil() as u16;
    widest / cols.max(1)
}

/// Opens a relay of publication `id` to the room thread and adds it as an input;
/// nothing when it is one already or when its publisher has not connected yet (the
/// next refresh tries again).
fn add_input(r: &mut RoomMcu, sfu: &mut Sfu, now: Instant, id: &str) {
    if r.inputs.contains_key(id) {
        return;
    }
    let width = cell_width(r, r.inputs.len() + 1);
    let Some((user, audio_ssrc, video_ssrc)) = input_ssrcs(sfu, id, width) else {
        return;
    };
    let answer = match sfu.open_relay(now, id, r.input_addr) {
        Ok(a) => a,
        Err(_) => return,
    };
    let (Some(keys), Some(feedback)) = (answer.srtp.material(), answer.feedback_srtp.material())
    else {
        return;
    };
    let relay_id = answer
        .relay
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let input = r.next_input;
    r.next_input += 1;
    let _ = r.cmds.send(Cmd::AddInput {
        input,
        relay_id: relay_id.clone(),
        keys,
        feedback,
        audio_ssrc,
        video_ssrc,
    });
    r.inputs.insert(
        id.to_owned(),
        InputState {
            id: input,
            relay_id,
            user,
            audio_ssrc,
            video_ssrc,
        },
    );
}

fn release_audio(r: &mut RoomMcu, sfu: &mut Sfu, key: &[InputId]) {
    if let Some(s) = r.audio.get_mut(key) {
        s.refs -= 1;
        if s.refs == 0
            && let Some(s) = r.audio.remove(key)
        {
            let _ = r.cmds.send(Cmd::RemoveOutput { handle: s.handle });
            sfu.remove_local_source(&s.resource);
        }
    }
}

fn release_video(r: &mut RoomMcu, sfu: &mut Sfu, key: McuOptions) {
    if let Some(s) = r.video.get_mut(&key) {
        s.refs -= 1;
        if s.refs == 0
            && let Some(s) = r.video.remove(&key)
        {
            let _ = r.cmds.send(Cmd::RemoveOutput { handle: s.handle });
            sfu.remove_local_source(&s.resource);
        }
    }
}

fn refresh_room(room: &str, r: &mut RoomMcu, sfu: &mut Sfu, now: Instant) {
    // Subscriptions that ended release their outputs; the others' estimates set
    // their composition's rate.
    let mut rates: HashMap<McuOptions, u64> = HashMap::new();
    let gone: Vec<String> = r
        .subscriptions
        .iter()
        .filter_map(|(id, s)| match sfu.subscription_estimate(id) {
            None => Some(id.clone()),
            Some(estimate) => {
                if let (Some(v), Some(e)) = (s.video, estimate) {
                    let min = rates.entry(v).or_insert(u64::MAX);
                    *min = (*min).min(e);
                }
                None
            }
        })
        .collect();
    for id in gone {
        if let Some(s) = r.subscriptions.remove(&id) {
            if let Some(a) = &s.audio {
                release_audio(r, sfu, a);
            }
            if let Some(v) = s.video {
                release_video(r, sfu, v);
            }
        }
    }
    for (opts, bps) in rates {
        if let Some(s) = r.video.get(&opts) {
            // Leave room for the audio and the headers.
            let bps = (bps.saturating_sub(64_000) * 9 / 10)
                .clamp(u64::from(VIDEO_MIN_BPS), u64::from(VIDEO_MAX_BPS));
            let _ = r.cmds.send(Cmd::SetBitrate {
                handle: s.handle,
                bps: bps as u32,
            });
        }
    }
    // Publications that left; those that joined.
    let left: Vec<String> = r
        .inputs
        .keys()
        .filter(|id| sfu.publication_tracks(id).is_none())
        .cloned()
        .collect();
    for id in left {
        if let Some(i) = r.inputs.remove(&id) {
            let _ = r.cmds.send(Cmd::RemoveInput { input: i.id });
        }
    }
    r.named.retain(|id| sfu.publication_tracks(id).is_some());
    let mut wanted = r.named.clone();
    if r.subscriptions.values().any(|s| s.room_wide) {
        for p in sfu.room_publications(room) {
            if !wanted.contains(&p) {
                wanted.push(p);
            }
        }
    }
    for p in &wanted {
        add_input(r, sfu, now, p);
    }
    // Layers learnt or a better fit for the cell.
    let width = cell_width(r, r.inputs.len());
    for (id, i) in r.inputs.iter_mut() {
        if let Some((_, audio, video)) = input_ssrcs(sfu, id, width)
            && (audio, video) != (i.audio_ssrc, i.video_ssrc)
        {
            i.audio_ssrc = audio;
            i.video_ssrc = video;
            let _ = r.cmds.send(Cmd::UpdateInput {
                input: i.id,
                audio_ssrc: audio,
                video_ssrc: video,
            });
        }
    }
    // The active speaker, for speaker layouts.
    let speaker = sfu.active_speaker(room).and_then(|e| match e.kind {
        RoomEventKind::ActiveSpeaker { resource, .. } => sfu
            .resource_id_of(&resource)
            .and_then(|id| r.inputs.get(&id))
            .map(|i| i.id),
        _ => None,
    });
    if speaker != r.speaker {
        r.speaker = speaker;
        let _ = r.cmds.send(Cmd::SetSpeaker(speaker));
    }
}

/// Stops a room without subscribers: its thread ends when its channel closes; its
/// relays and local sources go.
fn stop_room(room: &str, r: &RoomMcu, sfu: &mut Sfu) {
    for i in r.inputs.values() {
        let _ = sfu.close_relay(&i.relay_id);
    }
    for s in r.audio.values().chain(r.video.values()) {
        sfu.remove_local_source(&s.resource);
    }
    tracing::info!(room, "MCU room stopped");
}
