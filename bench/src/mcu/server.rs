//! The server half of `cascade-bench mcu`: what an MCU subscriber costs a running
//! `cascade serve`, and whether it changes the SFU's forwarding cost. One server on
//! loopback, one room, four publishers sending real media (the Opus and VP8 of the
//! in-process parts, SRTP-protected, 50 audio packets/s and the video at its frame
//! rate), each publication subscribed by three SFU subscribers. The server's threads
//! are read from `/proc` (schedstat) for `secs` without, then for `secs` with one
//! MCU subscriber (`subscribe?mode=mcu`, a token user who does not publish), and
//! split by name: data-plane workers (`cascade-dp*`), MCU threads (a name with
//! `mcu`), the rest (control, HTTP, runtime).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cascade::unix_now;
use cascade_core::token::{Claims, Grant, TokenSecret, mint};
use cascade_dataplane::srtp::{SrtpContext, SrtpProfile};
use serde::Serialize;

use super::vp8src::Frame;
use crate::load::Rig;
use crate::media::{AUDIO_PT, VIDEO_PT};
use crate::server::{ServerSpec, metric_sum};
use crate::signal::{Connected, Keepalive};
use crate::target::{Target, random_room};

/// Publishers in the room.
pub(crate) const PUBLISHERS: usize = 4;
/// SFU subscribers of each publication.
const SFU_SUBSCRIBERS: usize = 3;
/// How long the MCU subscriber may take to receive both its tracks.
const MCU_FIRST_MEDIA: Duration = Duration::from_secs(10);

/// What to run.
pub(crate) struct Config {
    pub(crate) server_bin: PathBuf,
    pub(crate) workers: usize,
    pub(crate) secs: f64,
    pub(crate) warmup: Duration,
    pub(crate) input_fps: u32,
}

/// CPU seconds of the server's threads over one phase, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ThreadCpu {
    pub(crate) total: f64,
    pub(crate) dataplane: f64,
    pub(crate) mcu: f64,
    pub(crate) other: f64,
    /// Thread names seen, with their CPU seconds in the phase.
    pub(crate) by_name: Vec<(String, f64)>,
}

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Phase {
    pub(crate) name: String,
    pub(crate) secs: f64,
    /// Cores (CPU seconds per second) of the server's threads.
    pub(crate) cores: ThreadCpu,
    /// Packets the server read and wrote (its counters), per second.
    pub(crate) packets_in_pps: Option<f64>,
    pub(crate) packets_out_pps: Option<f64>,
    /// Data-plane worker CPU per million packets the server wrote, seconds.
    pub(crate) dataplane_s_per_mpkt_out: Option<f64>,
    /// Packets the SFU subscribers received, per second.
    pub(crate) sfu_rx_pps: f64,
    /// Audio and video packets the MCU subscriber received and decrypted, per second.
    pub(crate) mcu_audio_pps: f64,
    pub(crate) mcu_video_pps: f64,
    /// `cascade_mcu_cpu_seconds_total` over the phase, per second (all kinds).
    pub(crate) mcu_metric_cores: Option<f64>,
}

/// The report of this part.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServerCost {
    pub(crate) publishers: usize,
    pub(crate) sfu_subscribers: usize,
    pub(crate) workers: usize,
    pub(crate) phases: Vec<Phase>,
    /// With minus without, cores: the whole process and its data-plane workers.
    pub(crate) added_cores: f64,
    pub(crate) added_dataplane_cores: f64,
    pub(crate) notes: Vec<String>,
}

/// Counters the receiver keeps.
#[derive(Default)]
struct RxCounts {
    sfu: AtomicU64,
    mcu_audio: AtomicU64,
    mcu_video: AtomicU64,
    mcu_undecryptable: AtomicU64,
}

/// Runs the part.
pub(crate) fn run(
    cfg: &Config,
    opus: &[Vec<Vec<u8>>],
    vp8: &[Vec<Frame>],
) -> anyhow::Result<ServerCost> {
    if opus.len() < PUBLISHERS || vp8.len() < PUBLISHERS {
        bail!("{PUBLISHERS} audio and video sources are needed");
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    );
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut spec = ServerSpec::on(&cfg.server_bin, loopback, Some(cfg.workers));
    spec.dataplane = None;
    let mut target = Target::cascade(&spec, SrtpProfile::AeadAes128Gcm, loopback, rt.clone())
        .context("starting cascade serve")?;
    let room = random_room("mcu");
    let mut rig = Rig::default();
    target.add_publishers(&mut rig, &room, PUBLISHERS)?;
    for p in 0..PUBLISHERS {
        target.add_subscribers(&mut rig, &room, p, SFU_SUBSCRIBERS)?;
    }
    let Target::Cascade(server) = &target else {
        bail!("not a cascade target");
    };
    let pid = server.server.pid();
    let sig = server.signaller().clone();
    let secret = server.server.secret.clone();

    let stop = AtomicBool::new(false);
    let counts = RxCounts::default();
    let (mcu_tx, mcu_rx) = mpsc::channel::<(UdpSocket, SrtpContext)>();
    let Rig {
        publishers,
        subscribers,
    } = &mut rig;
    let mut notes = Vec::new();
    let phases = std::thread::scope(|s| -> anyhow::Result<Vec<Phase>> {
        let sender = s.spawn(|| send_loop(publishers, opus, vp8, cfg.input_fps, &stop));
        let receiver = s.spawn(|| {
            recv_loop(
                subscribers.iter().map(|s| &s.socket).collect(),
                mcu_rx,
                &counts,
                &stop,
            )
        });
        let result = (|| -> anyhow::Result<Vec<Phase>> {
            std::thread::sleep(cfg.warmup);
            let without = measure(pid, &sig, &rt, &counts, "SFU only", cfg.secs)?;
            // The MCU subscriber: a user who does not publish, so it hears all four.
            let token = listener_token(&secret, &room)?;
            let conn = rt
                .block_on(sig.subscribe_with(&room, &token, "mode=mcu"))
                .context("the MCU subscribe")?;
            let Connected {
                socket,
                rx,
                resource,
                peer,
                ..
            } = conn;
            let keepalive = Keepalive::start();
            keepalive.add(peer, socket.try_clone()?);
            mcu_tx.send((socket, rx)).context("the receiver ended")?;
            let t = Instant::now();
            while counts.mcu_audio.load(Ordering::Relaxed) == 0
                || counts.mcu_video.load(Ordering::Relaxed) == 0
            {
                if t.elapsed() > MCU_FIRST_MEDIA {
                    notes.push(format!(
                        "the MCU subscriber got {} audio and {} video packets in {:?}",
                        counts.mcu_audio.load(Ordering::Relaxed),
                        counts.mcu_video.load(Ordering::Relaxed),
                        MCU_FIRST_MEDIA
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            notes.push(format!(
                "MCU subscriber's first audio and video after {:.0} ms",
                t.elapsed().as_secs_f64() * 1e3
            ));
            std::thread::sleep(cfg.warmup);
            let with = measure(pid, &sig, &rt, &counts, "SFU + 1 MCU subscriber", cfg.secs)?;
            let _ = rt.block_on(sig.delete(&resource, &token));
            drop(keepalive);
            Ok(vec![without, with])
        })();
        stop.store(true, Ordering::Relaxed);
        sender.join().expect("sender panicked")?;
        receiver.join().expect("receiver panicked");
        result
    })?;
    let undecryptable = counts.mcu_undecryptable.load(Ordering::Relaxed);
    if undecryptable > 0 {
        notes.push(format!(
            "{undecryptable} MCU packets failed SRTP authentication"
        ));
    }
    let _ = target.clear(&mut rig);
    let added = phases[1].cores.total - phases[0].cores.total;
    let added_dp = phases[1].cores.dataplane - phases[0].cores.dataplane;
    Ok(ServerCost {
        publishers: PUBLISHERS,
        sfu_subscribers: PUBLISHERS * SFU_SUBSCRIBERS,
        workers: cfg.workers,
        phases,
        added_cores: added,
        added_dataplane_cores: added_dp,
        notes,
    })
}

/// A subscribe-only token for a user who publishes nothing in `room`.
fn listener_token(secret: &str, room: &str) -> anyhow::Result<String> {
    let now = unix_now();
    Ok(mint(
        &TokenSecret::parse(secret),
        &Claims {
            sub: "mcu-listener".into(),
            room: room.into(),
            grants: vec![Grant::Subscribe],
            exp: now + 3600,
            iat: now,
        },
    )?)
}

/// Reads the server's threads and counters around `secs` seconds of load.
fn measure(
    pid: u32,
    sig: &crate::signal::Signaller,
    rt: &tokio::runtime::Runtime,
    counts: &RxCounts,
    name: &str,
    secs: f64,
) -> anyhow::Result<Phase> {
    // Once more on failure: the server closes an HTTP connection idle for the
    // length of a phase, and the first request on it fails.
    let metrics = || match rt
        .block_on(sig.metrics())
        .or_else(|_| rt.block_on(sig.metrics()))
    {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("mcu: GET /metrics: {e:#}");
            None
        }
    };
    let rx = || {
        (
            counts.sfu.load(Ordering::Relaxed),
            counts.mcu_audio.load(Ordering::Relaxed),
            counts.mcu_video.load(Ordering::Relaxed),
        )
    };
    let m0 = metrics();
    let r0 = rx();
    let t0 = threads_cpu(pid);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let t1 = threads_cpu(pid);
    let el = start.elapsed().as_secs_f64();
    let r1 = rx();
    let m1 = metrics();
    if t1.is_empty() {
        bail!("cascade serve (pid {pid}) is gone");
    }
    let mut cores = ThreadCpu::default();
    let mut by_name: HashMap<String, f64> = HashMap::new();
    for (tid, (comm, s1)) in &t1 {
        let s0 = t0.get(tid).map_or(0.0, |x| x.1);
        let c = (s1 - s0).max(0.0) / el;
        cores.total += c;
        if comm.starts_with("cascade-dp") {
            cores.dataplane += c;
        } else if comm.contains("mcu") {
            cores.mcu += c;
        } else {
            cores.other += c;
        }
        *by_name.entry(comm.clone()).or_default() += c;
    }
    let mut names: Vec<(String, f64)> = by_name.into_iter().collect();
    names.sort_by(|a, b| b.1.total_cmp(&a.1));
    cores.by_name = names;
    let delta = |name: &str| -> Option<f64> {
        let a = metric_sum(m0.as_deref()?, name)?;
        let b = metric_sum(m1.as_deref()?, name)?;
        Some((b - a) / el)
    };
    let packets_out_pps = delta("cascade_packets_out_total");
    Ok(Phase {
        name: name.into(),
        secs: el,
        dataplane_s_per_mpkt_out: packets_out_pps
            .filter(|p| *p > 0.0)
            .map(|p| cores.dataplane / p * 1e6),
        cores,
        packets_in_pps: delta("cascade_packets_in_total"),
        packets_out_pps,
        sfu_rx_pps: (r1.0 - r0.0) as f64 / el,
        mcu_audio_pps: (r1.1 - r0.1) as f64 / el,
        mcu_video_pps: (r1.2 - r0.2) as f64 / el,
        mcu_metric_cores: delta("cascade_mcu_cpu_seconds_total"),
    })
}

/// Every thread of `pid`: id → (name, CPU seconds so far, from schedstat).
fn threads_cpu(pid: u32) -> HashMap<u32, (String, f64)> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let dir = e.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        if let Some(ns) = ns {
            out.insert(tid, (comm.trim().to_string(), ns as f64 / 1e9));
        }
    }
    out
}

/// Paces every publisher's media until `stop`: one Opus packet per 20 ms and one VP8
/// frame (its packets back to back) per 1/`fps`, SRTP-protected with its keys.
fn send_loop(
    pubs: &mut [crate::load::Publisher],
    opus: &[Vec<Vec<u8>>],
    vp8: &[Vec<Frame>],
    fps: u32,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    crate::netio::tight_timer_slack();
    let audio_every = Duration::from_millis(20);
    let video_every = Duration::from_secs(1) / fps;
    let start = Instant::now();
    let (mut na, mut nv) = (0u32, 0u32);
    let mut seq: Vec<(u16, u16)> = (0..pubs.len())
        .map(|_| (rand::random(), rand::random()))
        .collect();
    let mut buf = vec![0u8; 1_500];
    while !stop.load(Ordering::Relaxed) {
        let next_a = start + audio_every * na;
        let next_v = start + video_every * nv;
        let due = next_a.min(next_v);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
            continue;
        }
        if next_a <= next_v {
            for (i, p) in pubs.iter_mut().enumerate() {
                let payload = &opus[i][na as usize % opus[i].len()];
                let ts = na.wrapping_mul(960);
                send(
                    p.tx.as_mut(),
                    &p.socket,
                    &mut buf,
                    AUDIO_PT,
                    false,
                    seq[i].0,
                    ts,
                    p.audio.ssrc,
                    payload,
                )?;
                seq[i].0 = seq[i].0.wrapping_add(1);
            }
            na += 1;
        } else {
            for (i, p) in pubs.iter_mut().enumerate() {
                let f = &vp8[i][nv as usize % vp8[i].len()];
                let ts = nv.wrapping_mul(90_000 / fps);
                let last = f.payloads.len() - 1;
                for (j, payload) in f.payloads.iter().enumerate() {
                    send(
                        p.tx.as_mut(),
                        &p.socket,
                        &mut buf,
                        VIDEO_PT,
                        j == last,
                        seq[i].1,
                        ts,
                        p.video.ssrc,
                        payload,
                    )?;
                    seq[i].1 = seq[i].1.wrapping_add(1);
                }
            }
            nv += 1;
        }
    }
    Ok(())
}

/// Writes one RTP packet into `buf`, protects it and sends it.
#[allow(clippy::too_many_arguments)]
fn send(
    tx: Option<&mut SrtpContext>,
    socket: &UdpSocket,
    buf: &mut [u8],
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &[u8],
) -> anyhow::Result<()> {
    let len = 12 + payload.len();
    buf[0] = 0x80;
    buf[1] = pt | if marker { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    buf[12..len].copy_from_slice(payload);
    let len = match tx {
        Some(ctx) => ctx.protect_rtp(buf, len).context("SRTP protect")?,
        None => len,
    };
    // A full socket buffer loses the packet, as the network would.
    let _ = socket.send(&buf[..len]);
    Ok(())
}

/// Reads every SFU subscriber's socket, and the MCU subscriber's once it arrives on
/// `mcu`, until `stop`; counts RTP packets (the MCU's by kind, after decrypting).
fn recv_loop(
    sfu: Vec<&UdpSocket>,
    mcu: mpsc::Receiver<(UdpSocket, SrtpContext)>,
    counts: &RxCounts,
    stop: &AtomicBool,
) {
    for s in &sfu {
        let _ = s.set_nonblocking(true);
    }
    let mut listener: Option<(UdpSocket, SrtpContext)> = None;
    let mut buf = vec![0u8; 2_048];
    while !stop.load(Ordering::Relaxed) {
        if listener.is_none()
            && let Ok(c) = mcu.try_recv()
        {
            let _ = c.0.set_nonblocking(true);
            listener = Some(c);
        }
        for s in &sfu {
            while let Ok(n) = s.recv(&mut buf) {
                if crate::media::rtp_header(&buf[..n]).is_some() {
                    counts.sfu.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some((socket, rx)) = listener.as_mut() {
            while let Ok(n) = socket.recv(&mut buf) {
                if crate::media::rtp_header(&buf[..n]).is_none() {
                    continue;
                }
                let audio = buf[1] & 0x7f == AUDIO_PT;
                if rx.unprotect_rtp(&mut buf[..n]).is_err() {
                    counts.mcu_undecryptable.fetch_add(1, Ordering::Relaxed);
                } else if audio {
                    counts.mcu_audio.fetch_add(1, Ordering::Relaxed);
                } else {
                    counts.mcu_video.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
