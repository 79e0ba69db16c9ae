//! `cascade-bench mcu`: what the MCU costs. In process, with the `cascade-mcu`
//! library and real codecs (libopus, libvpx): the mixer's CPU per participant at
//! several room sizes, the composer's CPU for a 640×360 grid of four inputs at
//! 15 fps, and the latency the mix adds under real-time pacing with jitter. Against
//! a release `cascade serve` on loopback: the server's CPU, split into data-plane
//! workers, MCU threads and the rest, with SFU subscribers only and then with one
//! MCU subscriber more. Results: a table on the terminal and JSON under `bench/out/`.

mod audio;
mod server;
mod video;
mod vp8src;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::report::opt;

/// Targets the figures are held against.
const TARGET_PCT_PER_PARTICIPANT: f64 = 1.0;
const TARGET_CORES_PER_GRID: f64 = 0.5;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) server_bin: PathBuf,
    pub(crate) workers: usize,
    /// Mixer sizes (inputs, each also a listener).
    pub(crate) sizes: Vec<usize>,
    /// Seconds of audio per mixer size (run as fast as possible).
    pub(crate) audio_secs: f64,
    /// Seconds of video composed (run as fast as possible).
    pub(crate) video_secs: f64,
    /// Frame rate of the composer's inputs (the publishers').
    pub(crate) input_fps: u8,
    /// Seconds of the real-time latency run, and its arrival jitter.
    pub(crate) latency_secs: f64,
    pub(crate) jitter: (Duration, Duration),
    /// Seconds of each server phase (without, with the MCU subscriber); 0 skips it.
    pub(crate) server_secs: f64,
    pub(crate) quick: bool,
}

/// The JSON report.
#[derive(Debug, Serialize)]
pub(crate) struct McuReport {
    pub(crate) scenario: &'static str,
    pub(crate) created_unix: u64,
    pub(crate) quick: bool,
    pub(crate) cpus: usize,
    pub(crate) mix_cpu: Vec<audio::MixCpu>,
    pub(crate) compose_cpu: Option<video::ComposeCpu>,
    pub(crate) mix_latency: Option<audio::MixLatency>,
    pub(crate) server: Option<server::ServerCost>,
    pub(crate) method: Vec<String>,
    pub(crate) failures: Vec<String>,
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, which is live and
    // writable; the clock id is a valid constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn method(cfg: &Config) -> Vec<String> {
    vec![
        format!(
            "mixer CPU: inputs fed with real Opus (48 kHz mono, 32 kbps tones + noise, encoded \
             beforehand), every input also a listener (its own minus-one output) plus one \
             shared output; {} s of 20 ms ticks as fast as possible on a virtual clock; \
             thread CPU (CLOCK_THREAD_CPUTIME_ID) / audio seconds / inputs",
            cfg.audio_secs
        ),
        format!(
            "composer CPU: a {}x{} grid at {} fps of four VP8 inputs at {} fps (moving \
             gradient + noise square, two 320x180, two 640x360, encoded beforehand with \
             libvpx), {} s of video as fast as possible; thread CPU / video seconds",
            video::WIDTH,
            video::HEIGHT,
            video::FPS,
            cfg.input_fps,
            cfg.video_secs
        ),
        format!(
            "mix latency: 4 inputs paced in real time, each packet delayed by a uniform \
             {}-{} ms (so packets reorder), mixer ticking every 20 ms on the wall clock; \
             AudioMixer::drain_latencies (arrival of the input packet -> the tick that \
             encoded it), the jitter buffer's delay included, network jitter not",
            cfg.jitter.0.as_millis(),
            cfg.jitter.1.as_millis()
        ),
        format!(
            "server: cascade serve --workers {} on loopback, {} publishers sending the Opus \
             above (50 pps) and VP8 at {} fps over SRTP, 3 SFU subscribers per \
             publication; per-thread CPU from /proc/<pid>/task/*/schedstat over {} s \
             without, then {} s with one MCU subscriber (a user who publishes nothing); \
             data plane = threads cascade-dp*, MCU = threads whose name has 'mcu'",
            cfg.workers,
            server::PUBLISHERS,
            cfg.input_fps,
            cfg.server_secs,
            cfg.server_secs
        ),
    ]
}

/// Runs every part (a failing part is reported, the others still run); returns the
/// table, the JSON path and how many parts failed.
pub(crate) fn run(cfg: &Config, out: &Path) -> anyhow::Result<(String, PathBuf, usize)> {
    let mut failures = Vec::new();
    let mut mix_cpu = Vec::new();
    let max_n = cfg
        .sizes
        .iter()
        .copied()
        .max()
        .unwrap_or(4)
        .max(server::PUBLISHERS);
    eprintln!("mcu: encoding {max_n} Opus sources and 4 VP8 sources");
    let opus = audio::sources(max_n);
    let vp8 = video::sources(cfg.input_fps);
    match &opus {
        Ok(src) => {
            for &n in &cfg.sizes {
                eprintln!("mcu: mixer with {n} inputs, {} s of audio", cfg.audio_secs);
                match audio::cpu_per_participant(n, cfg.audio_secs, src) {
                    Ok(r) => mix_cpu.push(r),
                    Err(e) => failures.push(format!("mixer N={n}: {e:#}")),
                }
            }
        }
        Err(e) => failures.push(format!("Opus sources: {e:#}")),
    }
    let compose_cpu = match &vp8 {
        Ok(src) => {
            eprintln!("mcu: composer, {} s of video", cfg.video_secs);
            video::cpu(cfg.video_secs, u32::from(cfg.input_fps), src)
                .map_err(|e| failures.push(format!("composer: {e:#}")))
                .ok()
        }
        Err(e) => {
            failures.push(format!("VP8 sources: {e:#}"));
            None
        }
    };
    let mix_latency = match &opus {
        Ok(src) => {
            eprintln!("mcu: mix latency, {} s in real time", cfg.latency_secs);
            audio::latency(4, cfg.latency_secs, cfg.jitter, src)
                .map_err(|e| failures.push(format!("mix latency: {e:#}")))
                .ok()
        }
        Err(_) => None,
    };
    let server = match (&opus, &vp8) {
        (Ok(o), Ok(v)) if cfg.server_secs > 0.0 => {
            eprintln!(
                "mcu: cascade serve, {} s without and {} s with an MCU subscriber",
                cfg.server_secs, cfg.server_secs
            );
            let scfg = server::Config {
                server_bin: cfg.server_bin.clone(),
                workers: cfg.workers,
                secs: cfg.server_secs,
                warmup: Duration::from_secs(if cfg.quick { 1 } else { 2 }),
                input_fps: u32::from(cfg.input_fps),
            };
            server::run(&scfg, o, v)
                .map_err(|e| failures.push(format!("server: {e:#}")))
                .ok()
        }
        _ => None,
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = McuReport {
        scenario: "mcu",
        created_unix: created,
        quick: cfg.quick,
        cpus: crate::procfs::cpus(),
        mix_cpu,
        compose_cpu,
        mix_latency,
        server,
        method: method(cfg),
        failures,
    };
    let stem = format!("mcu-{created}{}", if cfg.quick { "-quick" } else { "" });
    let path = crate::report::write_json(out, &stem, "mcu-latest", &report)?;
    Ok((table(&report), path, report.failures.len()))
}

/// "ok" or "OVER" against a target; "no media" when the codec path produced
/// nothing (the figure would then mean nothing).
fn verdict(worked: bool, ok: bool) -> &'static str {
    match (worked, ok) {
        (false, _) => "no media",
        (true, true) => "ok",
        (true, false) => "OVER",
    }
}

/// The terminal table.
pub(crate) fn table(r: &McuReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mcu mixer (Opus in, minus-one per listener + 1 shared output; target <= {TARGET_PCT_PER_PARTICIPANT} % of a core per participant)"
    );
    let _ = writeln!(
        s,
        "{:>6} {:>7} {:>8} {:>8} {:>12} {:>9} {:>9} {:>9}",
        "inputs", "outputs", "audio s", "CPU s", "%core/part.", "decoded", "conceal", "verdict"
    );
    for m in &r.mix_cpu {
        let _ = writeln!(
            s,
            "{:>6} {:>7} {:>8.1} {:>8.3} {:>12.3} {:>9} {:>9} {:>9}",
            m.inputs,
            m.outputs,
            m.audio_secs,
            m.cpu_secs,
            m.core_pct_per_participant,
            m.frames_decoded,
            m.frames_concealed,
            verdict(
                m.frames_decoded > 0 && m.payloads_out > 0,
                m.core_pct_per_participant <= TARGET_PCT_PER_PARTICIPANT
            )
        );
    }
    if let Some(c) = &r.compose_cpu {
        let _ = writeln!(
            s,
            "mcu composer: {} {}x{} @ {} fps of {} inputs at {} fps ({}): {:.1} s of video, \
             {:.3} CPU s = {:.3} cores (target <= {TARGET_CORES_PER_GRID}: {}); frames in {}, out {} ({} key), {:.0} kbps out",
            c.layout,
            c.width,
            c.height,
            c.fps,
            c.inputs.len(),
            c.input_fps,
            c.inputs.join(", "),
            c.video_secs,
            c.cpu_secs,
            c.cores,
            verdict(
                c.frames_in > 0 && c.frames_out > 0,
                c.cores <= TARGET_CORES_PER_GRID
            ),
            c.frames_in,
            c.frames_out,
            c.keyframes_out,
            c.bytes_out as f64 * 8.0 / c.video_secs / 1e3,
        );
    }
    if let Some(l) = &r.mix_latency {
        let _ = writeln!(
            s,
            "mcu mix latency ({} inputs, {:.0} s real time, arrival jitter {}-{} ms): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} frames; late {}, lost {}, concealed {}",
            l.inputs,
            l.secs,
            l.jitter_ms.0,
            l.jitter_ms.1,
            l.latency.p50_us / 1e3,
            l.latency.p99_us / 1e3,
            l.latency.max_us / 1e3,
            l.latency.samples,
            l.late_packets,
            l.lost_packets,
            l.frames_concealed,
        );
    }
    if let Some(sv) = &r.server {
        let _ = writeln!(
            s,
            "mcu server cost: {} publishers (Opus + VP8), {} SFU subscribers, --workers {} (cores = CPU s per s)",
            sv.publishers, sv.sfu_subscribers, sv.workers
        );
        let _ = writeln!(
            s,
            "{:<24} {:>7} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9}",
            "phase",
            "total",
            "dataplane",
            "mcu",
            "other",
            "pkts in/s",
            "out/s",
            "dp s/M out",
            "sfu rx/s",
            "mcu a/s",
            "mcu v/s"
        );
        for p in &sv.phases {
            let _ = writeln!(
                s,
                "{:<24} {:>7.4} {:>9.4} {:>7.4} {:>7.4} {:>9} {:>9} {:>9} {:>8.0} {:>8.1} {:>9.1}",
                p.name,
                p.cores.total,
                p.cores.dataplane,
                p.cores.mcu,
                p.cores.other,
                opt(p.packets_in_pps, 0),
                opt(p.packets_out_pps, 0),
                opt(p.dataplane_s_per_mpkt_out, 2),
                p.sfu_rx_pps,
                p.mcu_audio_pps,
                p.mcu_video_pps,
            );
        }
        let _ = writeln!(
            s,
            "added by the MCU subscriber: {:+.4} cores in total, {:+.4} in the data-plane workers",
            sv.added_cores, sv.added_dataplane_cores
        );
        if let Some(m) = sv.phases.get(1).and_then(|p| p.mcu_metric_cores) {
            let _ = writeln!(
                s,
                "the server's own cascade_mcu_cpu_seconds_total over the MCU phase: {m:.4} cores"
            );
        }
        for n in &sv.notes {
            let _ = writeln!(s, "note: {n}");
        }
    }
    for f in &r.failures {
        let _ = writeln!(s, "FAILED: {f}");
    }
    s
}
