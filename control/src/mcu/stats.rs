//! What the MCU threads report (each room thread writes its [`RoomStats`] once a
//! second) and the Prometheus metrics made of it: mixers, composers, inputs and
//! outputs, CPU time, late and lost input frames, and the mix's added latency.

use std::time::Duration;

use cascade_mcu::audio::AudioStats;
use cascade_mcu::video::VideoStats;
use prometheus::{
    CounterVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// One room thread's latest figures (totals since it started).
#[derive(Debug, Default)]
pub(crate) struct RoomStats {
    pub(crate) inputs: usize,
    pub(crate) audio_outputs: usize,
    pub(crate) audio: Option<AudioStats>,
    pub(crate) video: Vec<VideoStats>,
    /// The thread's CPU time.
    pub(crate) cpu: Duration,
    /// Added latencies of the mix not yet observed by the histogram.
    pub(crate) latencies: Vec<Duration>,
}

/// The MCU's metrics, registered with the server's registry.
#[derive(Debug, Clone)]
pub(crate) struct McuMetrics {
    mixers: IntGauge,
    composers: IntGauge,
    inputs: IntGaugeVec,
    outputs: IntGaugeVec,
    cpu: CounterVec,
    late: IntCounterVec,
    lost: IntCounterVec,
    latency: Histogram,
}

/// Totals summed over the rooms, to turn into counter increments.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Totals {
    cpu_us: u64,
    audio_late: u64,
    audio_lost: u64,
    video_late: u64,
    video_lost: u64,
}

impl McuMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let mixers = IntGauge::new("cascade_mcu_mixers", "Rooms with an MCU audio mixer")?;
        let composers = IntGauge::new(
            "cascade_mcu_composers",
            "MCU video compositions (one per room, layout and resolution)",
        )?;
        let inputs = IntGaugeVec::new(
            Opts::new(
                "cascade_mcu_inputs",
                "Publications mixed or composed, by kind",
            ),
            &["kind"],
        )?;
        let outputs = IntGaugeVec::new(
            Opts::new(
                "cascade_mcu_outputs",
                "MCU output streams (audio: one per set of excluded voices), by kind",
            ),
            &["kind"],
        )?;
        let cpu = CounterVec::new(
            Opts::new(
                "cascade_mcu_cpu_seconds_total",
                "CPU time of the MCU threads",
            ),
            &["kind"],
        )?;
        let late = IntCounterVec::new(
            Opts::new(
                "cascade_mcu_input_frames_late_total",
                "Input packets or frames that came after their playout time, by kind",
            ),
            &["kind"],
        )?;
        let lost = IntCounterVec::new(
            Opts::new(
                "cascade_mcu_input_frames_lost_total",
                "Input frames lost (audio: concealed; video: incomplete or undecodable), by kind",
            ),
            &["kind"],
        )?;
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "cascade_mcu_mix_latency_seconds",
                "Added latency of the audio mix: input packet arrival to the mixed frame's send",
            )
            .buckets(vec![
                0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5,
            ]),
        )?;
        registry.register(Box::new(mixers.clone()))?;
        registry.register(Box::new(composers.clone()))?;
        registry.register(Box::new(inputs.clone()))?;
        registry.register(Box::new(outputs.clone()))?;
        registry.register(Box::new(cpu.clone()))?;
        registry.register(Box::new(late.clone()))?;
        registry.register(Box::new(lost.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        for kind in ["audio", "video"] {
            for v in [&inputs, &outputs] {
                v.with_label_values(&[kind]);
            }
            cpu.with_label_values(&[kind]);
            for v in [&late, &lost] {
                v.with_label_values(&[kind]);
            }
        }
        Ok(Self {
            mixers,
            composers,
            inputs,
            outputs,
            cpu,
            late,
            lost,
            latency,
        })
    }

    /// Sets the gauges from every room's figures and moves the counters by what
    /// changed since `last` (returned anew). A room that ended takes its totals
    /// with it: counters never go back.
    pub(crate) fn update(&self, rooms: &mut [&mut RoomStats], last: Totals) -> Totals {
        let mut t = Totals::default();
        let (mut mixers, mut composers, mut audio_in, mut video_in, mut audio_out) =
            (0, 0, 0, 0, 0);
        for r in rooms.iter_mut() {
            if let Some(a) = &r.audio {
                mixers += 1;
                audio_in += r.inputs;
                audio_out += r.audio_outputs;
                t.audio_late += a.late_packets;
                t.audio_lost += a.lost_packets;
            }
            for v in &r.video {
                composers += 1;
                video_in += v.inputs;
                t.video_late += v.late_packets;
                t.video_lost += v.lost_frames;
            }
            t.cpu_us += u64::try_from(r.cpu.as_micros()).unwrap_or(u64::MAX);
            for l in r.latencies.drain(..) {
                self.latency.observe(l.as_secs_f64());
            }
        }
        self.mixers.set(mixers);
        self.composers.set(composers);
        self.inputs
            .with_label_values(&["audio"])
            .set(audio_in as i64);
        self.inputs
            .with_label_values(&["video"])
            .set(video_in as i64);
        self.outputs
            .with_label_values(&["audio"])
            .set(audio_out as i64);
        self.outputs.with_label_values(&["video"]).set(composers);
        let up = |c: &IntCounterVec, kind: &str, now: u64, before: u64| {
            c.with_label_values(&[kind])
                .inc_by(now.saturating_sub(before));
        };
        // One thread per room does both: its CPU time counts as the room's audio
        // when it mixes only, else as video (the larger share by far).
        let kind = if composers > 0 { "video" } else { "audio" };
        self.cpu
            .with_label_values(&[kind])
            .inc_by(t.cpu_us.saturating_sub(last.cpu_us) as f64 / 1e6);
        up(&self.late, "audio", t.audio_late, last.audio_late);
        up(&self.late, "video", t.video_late, last.video_late);
        up(&self.lost, "audio", t.audio_lost, last.audio_lost);
        up(&self.lost, "video", t.video_lost, last.video_lost);
        // Totals of rooms that end drop out of the sum: keep the larger.
        Totals {
            cpu_us: t.cpu_us.max(last.cpu_us),
            audio_late: t.audio_late.max(last.audio_late),
            audio_lost: t.audio_lost.max(last.audio_lost),
            video_late: t.video_late.max(last.video_late),
            video_lost: t.video_lost.max(last.video_lost),
        }
    }
}
