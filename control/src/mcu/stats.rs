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
    /// What the counters already hold of this room.
    pub(crate) counted: Totals,
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

/// A room's totals since it started, to turn into counter increments.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Totals {
    audio_cpu_us: u64,
    video_cpu_us: u64,
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

    /// Sets the gauges from the figures of the rooms that run (`live`) and moves the
    /// counters by what every room (`live` and those that just ended) did since the
    /// last update.
    pub(crate) fn update(&self, live: &mut [&mut RoomStats], ended: &mut [&mut RoomStats]) {
        let (mut mixers, mut composers, mut audio_in, mut video_in, mut audio_out) =
            (0, 0, 0, 0, 0);
        for r in live.iter() {
            if r.audio.is_some() {
                mixers += 1;
                audio_in += r.inputs;
                audio_out += r.audio_outputs;
            }
            for v in &r.video {
                composers += 1;
                video_in += v.inputs;
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
        for r in live
            .iter_mut()
            .map(|r| &mut **r)
            .chain(ended.iter_mut().map(|r| &mut **r))
        {
            let t = Totals::of(r);
            let before = std::mem::replace(&mut r.counted, t);
            let up = |c: &IntCounterVec, kind: &str, now: u64, before: u64| {
                c.with_label_values(&[kind])
                    .inc_by(now.saturating_sub(before));
            };
            let secs = |now: u64, before: u64| now.saturating_sub(before) as f64 / 1e6;
            self.cpu
                .with_label_values(&["audio"])
                .inc_by(secs(t.audio_cpu_us, before.audio_cpu_us));
            self.cpu
                .with_label_values(&["video"])
                .inc_by(secs(t.video_cpu_us, before.video_cpu_us));
            up(&self.late, "audio", t.audio_late, before.audio_late);
            up(&self.late, "video", t.video_late, before.video_late);
            up(&self.lost, "audio", t.audio_lost, before.audio_lost);
            up(&self.lost, "video", t.video_lost, before.video_lost);
            for l in r.latencies.drain(..) {
                self.latency.observe(l.as_secs_f64());
            }
        }
    }
}

impl Totals {
    /// A room's totals. Its thread's CPU time is split by what the composers
    /// measured in their calls (video); the rest is the mixer's and the I/O (audio).
    fn of(r: &RoomStats) -> Self {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let cpu = us(r.cpu);
        let video_cpu = r.video.iter().map(|v| us(v.cpu)).sum::<u64>().min(cpu);
        let mut t = Self {
            audio_cpu_us: cpu - video_cpu,
            video_cpu_us: video_cpu,
            ..Self::default()
        };
        if let Some(a) = &r.audio {
            t.audio_late = a.late_packets;
            t.audio_lost = a.lost_packets;
        }
        for v in &r.video {
            t.video_late += v.late_packets;
            t.video_lost += v.lost_frames;
        }
        t
    }
}
