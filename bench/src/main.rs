//! `cascade-bench`: the packet-rate bench of Cascade's fast path.
//!
//! It starts its own `cascade serve`, sets up real sessions through the HTTP
//! interface (ICE + DTLS over loopback UDP), sends paced synthetic SRTP from
//! publishers and checks it at subscribers (loss, duplicates, payload, one-way
//! latency). Scenarios: `fanout` (1 → N), `meeting` (N × (N−1)), `audio` (many small
//! packets). The same load runs against an in-process raw UDP relay (no crypto) as
//! the reference, against Cascade with AES-GCM and with AES-CM SRTP, and on each
//! data-plane backend the server accepts. Results: a table on the terminal, JSON and
//! an SVG plot under `bench/out/`. Two more scenarios, run only when named, measure
//! cascading between servers in network namespaces: `cascade` (an origin's fan-out
//! to relay peers with its eBPF fast path on and off) and `cascade-hop` (latency and
//! edge CPU per hop of M1 → M2 → M3); each writes its own JSON. `signal` measures
//! `cascade signal` (connections held, messages/s, latency) on both its engines, and
//! `mcu` the MCU (mixer and composer CPU, the mix's latency, a server's CPU with and
//! without an MCU subscriber).

mod affinity;
mod cascade_fanout;
mod cascade_hop;
mod cleanup;
mod janus;
mod load;
mod mcu;
mod media;
mod netio;
mod netns;
mod procfs;
mod relay;
mod report;
mod scenario;
mod server;
mod setup;
mod signal;
mod signal_load;
mod soak;
mod target;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cascade_dataplane::srtp::SrtpProfile;
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::{Report, ratios};
use crate::scenario::{Bench, FanoutTarget, RampConfig};
use crate::server::{ServerProcess, ServerSpec};
use crate::target::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// One publisher, N subscribers (N swept).
    Fanout,
    /// N publishers, each subscribed by the N−1 others.
    Meeting,
    /// Many audio-only publishers with two subscribers each.
    Audio,
    /// An origin's fan-out to N relay peers, eBPF on vs off (needs root; run only
    /// when named).
    Cascade,
    /// Latency and edge CPU per cascade hop, M1 → M2 → M3 (needs root; run only
    /// when named).
    CascadeHop,
    /// `cascade signal`: connections held, durable messages/s and delivery latency,
    /// embedded store vs Redis (run only when named).
    Signal,
    /// Time to the publish answer and to first media, HTTP/1.1+TLS vs HTTP/2+TLS vs
    /// HTTP/3, cold and warm, at 50 and 150 ms round trips (needs root; run only
    /// when named).
    Setup,
    /// Publish/subscribe churn for `--minutes`, reporting the server's RSS, open fds
    /// and sessions over time (run only when named).
    Soak,
    /// The MCU: mixer CPU per participant, composer CPU per 640x360 grid, the mix's
    /// added latency, and the server's CPU with and without an MCU subscriber (run
    /// only when named).
    Mcu,
}

/// `--ebpf` of the servers of `cascade-hop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EbpfArg {
    Auto,
    On,
    Off,
}

impl EbpfArg {
    fn arg(self) -> &'static str {
        match self {
            EbpfArg::Auto => "auto",
            EbpfArg::On => "on",
            EbpfArg::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    /// The in-process UDP relay without crypto (reference).
    RawRelay,
    /// Cascade, AEAD_AES_128_GCM, default backend (io_uring when accepted).
    Gcm,
    /// Cascade, AES_CM_128_HMAC_SHA1_80, default backend.
    Cm,
    /// Cascade, AEAD_AES_128_GCM on the userspace backend (fanout only).
    Userspace,
}

#[derive(Debug, Parser)]
#[command(
    name = "cascade-bench",
    about = "Packet-rate bench of Cascade's fast path against a raw UDP relay"
)]
struct Cli {
    /// Scenarios to run (default: all of them).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// A short sweep that finishes in well under three minutes.
    #[arg(long)]
    quick: bool,
    /// The `cascade` binary (default: next to this one).
    #[arg(long, env = "CASCADE_BIN")]
    server_bin: Option<PathBuf>,
    /// Where the JSON and SVG go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/out"))]
    out: PathBuf,
    /// Targets to run (default: all).
    #[arg(long = "target", value_enum, value_delimiter = ',')]
    targets: Vec<TargetKind>,
    /// Subscriber counts of the fanout sweep.
    #[arg(long, value_delimiter = ',')]
    fanout: Vec<usize>,
    /// Participant counts of the meeting scenario.
    #[arg(long, value_delimiter = ',')]
    meeting: Vec<usize>,
    /// Publishers in the audio scenario.
    #[arg(long, default_value_t = 50)]
    audio_publishers: usize,
    /// Subscribers of each audio publisher.
    #[arg(long, default_value_t = 2)]
    audio_subscribers: usize,
    /// Audio packets per second of each publisher at the nominal step.
    #[arg(long, default_value_t = 50.0)]
    audio_pps: f64,
    /// `--workers` of the server (the raw relay is one thread).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Seconds per ramp step.
    #[arg(long)]
    step_secs: Option<f64>,
    /// Seconds of the latency step (at half the highest rate).
    #[arg(long)]
    latency_secs: Option<f64>,
    /// Loss above which a rate fails, percent.
    #[arg(long, default_value_t = 1.0)]
    max_loss: f64,
    /// Decrypt and check every K-th packet (by sequence number) at the subscribers.
    #[arg(long, default_value_t = 8)]
    decrypt_every: u16,
    /// Also run the fanout load against another server (needs root).
    #[arg(long, value_enum)]
    vs: Option<Versus>,
    /// Minutes of the `soak` scenario.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Mixer sizes (inputs) of the `mcu` scenario.
    #[arg(long, value_delimiter = ',', default_values_t = [4, 10, 25])]
    mcu_inputs: Vec<usize>,
    /// Seconds of each server phase of `mcu` (without, then with an MCU subscriber;
    /// 0 skips the server part; default 15, 5 with --quick).
    #[arg(long)]
    mcu_server_secs: Option<f64>,
    /// No progress bar (e.g. when the output is a log).
    #[arg(long)]
    no_progress: bool,
    /// Relay peers of the `cascade` scenario.
    #[arg(long, default_value_t = 8)]
    relay_peers: usize,
    /// Video packets per second of the publisher in `cascade-hop`.
    #[arg(long, default_value_t = 2_000.0)]
    hop_pps: f64,
    /// Seconds of the measured step of `cascade-hop` (default 30, 10 with --quick).
    #[arg(long)]
    hop_secs: Option<f64>,
    /// `--ebpf` of the servers in `cascade-hop`.
    #[arg(long, value_enum, default_value_t = EbpfArg::Off)]
    hop_ebpf: EbpfArg,
    /// Publishers and subscribers of the Cascade targets offer transport-cc: the
    /// server stamps transport sequence numbers and sends transport feedback. With
    /// `--simulcast`, only the publishers (a subscriber's estimate would pause its
    /// layer: the bench sends no feedback).
    #[arg(long)]
    twcc: bool,
    /// Publishers of the Cascade targets send three simulcast layers (q, h, f at 1/4,
    /// 1/2 and 1 of the video rate, each packet a VP8 keyframe); subscribers receive f.
    #[arg(long)]
    simulcast: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Versus {
    Janus,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let started = Instant::now();
    let _ = media::now_ns();
    let server_bin = match &cli.server_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory for the bench binary")?
            .join("cascade"),
    };
    let mut scenarios = if cli.scenarios.is_empty() {
        vec![Scenario::Fanout, Scenario::Meeting, Scenario::Audio]
    } else {
        cli.scenarios.clone()
    };
    if scenarios.contains(&Scenario::Setup) {
        let cfg = setup::Config {
            server_bin: server_bin.clone(),
            runs: if cli.quick { 10 } else { 50 },
            rtts: vec![Duration::from_millis(50), Duration::from_millis(150)],
        };
        let mut report = setup::run(&cfg)?;
        report.created_unix = unix_now();
        let stem = format!("setup-{}{}", report.created_unix, quick_suffix(cli.quick));
        let path = report::write_json(&cli.out, &stem, "setup-latest", &report)?;
        println!("{}results: {}", setup::table(&report), path.display());
        for e in &report.errors {
            println!("error: {e}");
        }
        scenarios.retain(|s| *s != Scenario::Setup);
        if scenarios.is_empty() {
            return Ok(());
        }
    }
    if scenarios.contains(&Scenario::Signal) {
        let cfg = signal_load::Config::new(server_bin.clone(), cli.quick);
        let (table, path) = signal_load::run(&cfg, &cli.out)?;
        println!("{table}results: {}", path.display());
        scenarios.retain(|s| *s != Scenario::Signal);
        if scenarios.is_empty() {
            return Ok(());
        }
    }
    if scenarios.contains(&Scenario::Mcu) {
        let quick = cli.quick;
        let cfg = mcu::Config {
            server_bin: server_bin.clone(),
            workers: cli.workers,
            sizes: cli.mcu_inputs.clone(),
            audio_secs: if quick { 5.0 } else { 20.0 },
            video_secs: if quick { 5.0 } else { 20.0 },
            input_fps: 30,
            latency_secs: if quick { 5.0 } else { 15.0 },
            jitter: (Duration::ZERO, Duration::from_millis(30)),
            server_secs: cli
                .mcu_server_secs
                .unwrap_or(if quick { 5.0 } else { 15.0 }),
            quick,
        };
        let (table, path, failed) = mcu::run(&cfg, &cli.out)?;
        println!("{table}results: {}", path.display());
        if failed > 0 {
            anyhow::bail!("mcu: {failed} part(s) failed");
        }
        scenarios.retain(|s| *s != Scenario::Mcu);
        if scenarios.is_empty() {
            return Ok(());
        }
    }
    if scenarios.contains(&Scenario::Soak) {
        let cfg = soak::Config {
            server_bin: server_bin.clone(),
            minutes: cli.minutes,
            rooms: 20,
            churn: Duration::from_millis(500),
            burst: 50,
            sample: Duration::from_secs(10),
        };
        let (table, path) = soak::run(&cfg, &cli.out)?;
        println!("{table}results: {}", path.display());
        scenarios.retain(|s| *s != Scenario::Soak);
        if scenarios.is_empty() {
            return Ok(());
        }
    }
    let targets = if cli.targets.is_empty() {
        vec![
            TargetKind::RawRelay,
            TargetKind::Gcm,
            TargetKind::Cm,
            TargetKind::Userspace,
        ]
    } else {
        cli.targets.clone()
    };
    let quick = cli.quick;
    let fanout_ns = if !cli.fanout.is_empty() {
        cli.fanout.clone()
    } else if quick {
        vec![1, 10, 100]
    } else {
        vec![1, 10, 50, 100, 200, 500]
    };
    let userspace_ns = fanout_ns.clone();
    let meeting_ns = if !cli.meeting.is_empty() {
        cli.meeting.clone()
    } else if quick {
        vec![4]
    } else {
        vec![4, 8, 16]
    };
    let ramp = RampConfig {
        step: Duration::from_secs_f64(cli.step_secs.unwrap_or(if quick { 0.5 } else { 1.5 })),
        latency_step: Duration::from_secs_f64(cli.latency_secs.unwrap_or(if quick {
            1.0
        } else {
            3.0
        })),
        start_fwd_pps: if quick { 40_000.0 } else { 20_000.0 },
        max_doublings: if quick { 6 } else { 10 },
        bisections: if quick { 1 } else { 3 },
        max_loss_pct: cli.max_loss,
        decrypt_every: cli.decrypt_every,
        retry_failed: !quick,
        disturbed_cores: scenario::DISTURBED_CORES,
        remeasure_disturbed: false,
    };

    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    );
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let spec = |dataplane: Option<&'static str>| ServerSpec {
        bin: &server_bin,
        dataplane,
        workers: Some(cli.workers),
        http_listen: "127.0.0.1:0".into(),
        media_listen: "127.0.0.1:0".into(),
        netns: None,
        extra_args: Vec::new(),
        cpus: Vec::new(),
    };

    // Which data-plane backends does the server accept?
    let mut notes = Vec::new();
    let mut dataplanes = Vec::new();
    for d in ["uring", "userspace"] {
        let ok = match ServerProcess::start(&spec(Some(d))) {
            Ok(_) => true,
            Err(e) => {
                notes.push(format!("--dataplane {d} refused: {}", first_line(&e)));
                false
            }
        };
        dataplanes.push((d.to_string(), ok));
    }
    let has = |d: &str| dataplanes.iter().any(|(n, ok)| n == d && *ok);
    let default_dp = if has("uring") {
        Some("uring")
    } else if has("userspace") {
        Some("userspace")
    } else {
        Some("auto")
    };
    notes.push(format!(
        "cascade-gcm and cascade-cm run --dataplane {}; --workers {}; {} CPUs shared by server and load",
        default_dp.unwrap_or("auto"),
        cli.workers,
        procfs::cpus(),
    ));
    notes.push(
        "bg CPU: cores used by other processes (not the server, the bench or ksoftirqd) during \
         the step at the maximum; steps with more than 0.25 were run again"
            .into(),
    );

    let fanout = scenarios.contains(&Scenario::Fanout);
    let classic = cli.vs.is_some()
        || scenarios
            .iter()
            .any(|s| matches!(s, Scenario::Fanout | Scenario::Meeting | Scenario::Audio));
    let mut planned = 0u64;
    if scenarios.contains(&Scenario::Cascade) {
        planned += 2;
    }
    if scenarios.contains(&Scenario::CascadeHop) {
        planned += 1;
    }
    for t in targets.iter().filter(|_| classic) {
        planned += match t {
            TargetKind::RawRelay if fanout => fanout_ns.len() as u64,
            TargetKind::Gcm => {
                let mut n = 0;
                if fanout {
                    n += fanout_ns.len();
                }
                if scenarios.contains(&Scenario::Meeting) {
                    n += meeting_ns.len();
                }
                if scenarios.contains(&Scenario::Audio) {
                    n += 1;
                }
                n as u64
            }
            TargetKind::Cm if fanout => fanout_ns.len() as u64,
            TargetKind::Userspace if fanout && has("uring") && has("userspace") => {
                userspace_ns.len() as u64
            }
            _ => 0,
        };
    }
    if cli.vs.is_some() {
        planned += 2 * if quick && cli.fanout.is_empty() {
            3
        } else {
            fanout_ns.len() as u64
        };
    }
    let pb = if cli.no_progress {
        ProgressBar::with_draw_target(Some(planned), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(planned)
    };
    pb.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    if scenarios
        .iter()
        .any(|s| matches!(s, Scenario::Cascade | Scenario::CascadeHop))
    {
        cleanup::install();
    }
    let mut bench = Bench {
        ramp,
        pb: pb.clone(),
        steps: Vec::new(),
        results: Vec::new(),
        ksoftirqd: procfs::ksoftirqd_pids(),
    };

    let mut failures = Vec::new();
    if classic {
        // Every target is started first: the fanout sweep gives them turns at each N.
        let mut built: Vec<(String, Target, Vec<usize>)> = Vec::new();
        for t in &targets {
            let made = match t {
                TargetKind::RawRelay if fanout => {
                    Some(("raw-relay", Target::relay(loopback), fanout_ns.clone()))
                }
                TargetKind::Gcm => Some((
                    "cascade-gcm",
                    Target::cascade(
                        &spec(default_dp),
                        SrtpProfile::AeadAes128Gcm,
                        loopback,
                        rt.clone(),
                    ),
                    if fanout {
                        fanout_ns.clone()
                    } else {
                        Vec::new()
                    },
                )),
                TargetKind::Cm if fanout => Some((
                    "cascade-cm",
                    Target::cascade(
                        &spec(default_dp),
                        SrtpProfile::Aes128CmHmacSha1_80,
                        loopback,
                        rt.clone(),
                    ),
                    fanout_ns.clone(),
                )),
                TargetKind::Userspace if fanout && has("uring") && has("userspace") => Some((
                    "cascade-gcm-userspace",
                    Target::cascade(
                        &spec(Some("userspace")),
                        SrtpProfile::AeadAes128Gcm,
                        loopback,
                        rt.clone(),
                    ),
                    userspace_ns.clone(),
                )),
                _ => None,
            };
            match made {
                Some((name, Ok(mut target), ns)) => {
                    target.set_offer_options(cli.twcc, cli.simulcast);
                    built.push((name.to_string(), target, ns))
                }
                Some((name, Err(e), _)) => {
                    let msg = format!("{name}: {e:#}");
                    pb.println(format!("error: {msg}"));
                    failures.push(msg);
                }
                None => {}
            }
        }
        if fanout {
            let mut fts: Vec<FanoutTarget<'_>> = built
                .iter_mut()
                .filter(|(_, _, ns)| !ns.is_empty())
                .map(|(name, target, ns)| FanoutTarget {
                    name: name.clone(),
                    target,
                    ns: ns.clone(),
                })
                .collect();
            for f in bench.fanout(&mut fts) {
                pb.println(format!("error: {f}"));
                failures.push(f);
            }
        }
        if let Some((_, gcm, _)) = built.iter_mut().find(|(n, _, _)| n == "cascade-gcm") {
            if scenarios.contains(&Scenario::Meeting) {
                for &n in &meeting_ns {
                    if let Err(e) = bench.meeting(gcm, "cascade-gcm", n) {
                        let msg = format!("meeting N={n}: {e:#}");
                        pb.println(format!("error: {msg}"));
                        failures.push(msg);
                    }
                }
            }
            if scenarios.contains(&Scenario::Audio)
                && let Err(e) = bench.audio(
                    gcm,
                    "cascade-gcm",
                    cli.audio_publishers,
                    cli.audio_subscribers,
                    cli.audio_pps,
                )
            {
                let msg = format!("audio: {e:#}");
                pb.println(format!("error: {msg}"));
                failures.push(msg);
            }
        }
        drop(built);
        if let Some(Versus::Janus) = cli.vs {
            let janus_ns = if quick && cli.fanout.is_empty() {
                vec![1, 10, 50]
            } else {
                fanout_ns.clone()
            };
            let run = janus::versus::run(
                &mut bench,
                &server_bin,
                default_dp,
                cli.workers,
                &janus_ns,
                rt.clone(),
            );
            match run {
                Ok(mut n) => notes.append(&mut n),
                Err(e) => {
                    let msg = format!("--vs janus: {e:#}");
                    pb.println(format!("error: {msg}"));
                    failures.push(msg);
                }
            }
        }
    }
    let mut finished: Vec<(String, PathBuf)> = Vec::new();
    if scenarios.contains(&Scenario::Cascade) {
        let cfg = cascade_fanout::Config {
            server_bin: server_bin.clone(),
            dataplane: default_dp,
            workers: cli.workers,
            peers: cli.relay_peers,
            profile: SrtpProfile::AeadAes128Gcm,
        };
        match run_cascade(&mut bench, &cfg, quick, &cli, rt.clone()) {
            Ok((table, path, mut fails)) => {
                finished.push((table, path));
                failures.append(&mut fails);
            }
            Err(e) => {
                let msg = format!("cascade: {e:#}");
                pb.println(format!("error: {msg}"));
                failures.push(msg);
            }
        }
    }
    if scenarios.contains(&Scenario::CascadeHop) {
        let cfg = cascade_hop::Config {
            server_bin: server_bin.clone(),
            dataplane: default_dp,
            workers: cli.workers,
            profile: SrtpProfile::AeadAes128Gcm,
            ebpf: cli.hop_ebpf.arg(),
            video_pps: cli.hop_pps,
            duration: Duration::from_secs_f64(cli.hop_secs.unwrap_or(if quick {
                10.0
            } else {
                30.0
            })),
            warmup: Duration::from_secs(if quick { 1 } else { 2 }),
        };
        match run_hop(&mut bench, &cfg, quick, &cli, rt.clone()) {
            Ok(done) => finished.push(done),
            Err(e) => {
                let msg = format!("cascade-hop: {e:#}");
                pb.println(format!("error: {msg}"));
                failures.push(msg);
            }
        }
    }
    pb.finish_and_clear();

    if classic {
        let results: Vec<_> = bench
            .results
            .into_iter()
            .filter(|r| !r.scenario.starts_with("cascade"))
            .collect();
        let mut all_ratios = ratios(&results, "cascade-gcm", "raw-relay", Some(0.9));
        all_ratios.extend(ratios(&results, "cascade-cm", "raw-relay", Some(0.75)));
        all_ratios.extend(ratios(&results, "cascade-gcm-userspace", "raw-relay", None));
        for (num, den) in [
            ("cascade-gcm-veth", "janus-gcm"),
            ("cascade-cm-veth", "janus-cm"),
        ] {
            all_ratios.extend(ratios(&results, num, den, None));
        }
        for r in ratios(&results, "cascade-gcm", "cascade-gcm-userspace", None) {
            all_ratios.push(report::Ratio {
                what: "io_uring / userspace (cascade-gcm)".into(),
                ..r
            });
        }
        let table = report::table(&results, &all_ratios);
        println!("{table}");
        for n in &notes {
            println!("note: {n}");
        }
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let report = Report {
            created_unix: created,
            quick,
            cpus: procfs::cpus(),
            server_bin: server_bin.display().to_string(),
            server_workers: Some(cli.workers),
            dataplanes,
            notes,
            results,
            ratios: all_ratios,
            steps: bench
                .steps
                .into_iter()
                .filter(|r| !r.scenario.starts_with("cascade"))
                .collect(),
        };
        let stem = format!("bench-{created}{}", if quick { "-quick" } else { "" });
        let (json, svg) = report::write_files(&cli.out, &stem, &report)?;
        println!(
            "wrote {} and {} in {:.0} s",
            json.display(),
            svg.display(),
            started.elapsed().as_secs_f64()
        );
    }
    for (table, path) in &finished {
        println!("{table}");
        println!("wrote {}", path.display());
    }
    for f in &failures {
        println!("FAILED: {f}");
    }
    if !failures.is_empty() {
        anyhow::bail!("{} target(s) failed", failures.len());
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn quick_suffix(quick: bool) -> &'static str {
    if quick { "-quick" } else { "" }
}

/// `cascade`: runs it with its own ramp steps (at least a second: the CPU time is
/// sampled at the timer tick), prints nothing; returns the table, the JSON path and
/// the failures.
fn run_cascade(
    bench: &mut Bench,
    cfg: &cascade_fanout::Config,
    quick: bool,
    cli: &Cli,
    rt: Arc<tokio::runtime::Runtime>,
) -> anyhow::Result<(String, PathBuf, Vec<String>)> {
    if cfg.peers == 0 || cfg.peers > 32 {
        anyhow::bail!(
            "--relay-peers must be 1 to 32 (the kernel fan-out's limit), not {}",
            cfg.peers
        );
    }
    let ramp = RampConfig {
        step: Duration::from_secs_f64(cli.step_secs.unwrap_or(if quick { 1.0 } else { 2.0 })),
        latency_step: Duration::from_secs_f64(cli.latency_secs.unwrap_or(if quick {
            1.0
        } else {
            3.0
        })),
        start_fwd_pps: 40_000.0,
        max_doublings: 7,
        bisections: if quick { 1 } else { 3 },
        // Anything else on the origin's CPU counts as the origin's: be strict.
        disturbed_cores: 0.1,
        remeasure_disturbed: true,
        ..bench.ramp.clone()
    };
    let saved = std::mem::replace(&mut bench.ramp, ramp);
    let outcome = cascade_fanout::run(bench, cfg, rt);
    bench.ramp = saved;
    let outcome = outcome?;
    let created = unix_now();
    let report = cascade_fanout::report(bench, cfg, quick, created, outcome);
    let stem = format!("cascade-{created}{}", quick_suffix(quick));
    let path = report::write_json(&cli.out, &stem, "cascade-latest", &report)?;
    let mut table = cascade_fanout::table(&report);
    for m in &report.method {
        table.push_str(&format!("method: {m}\n"));
    }
    Ok((table, path, report.failures))
}

/// `cascade-hop`: returns the table and the JSON path.
fn run_hop(
    bench: &mut Bench,
    cfg: &cascade_hop::Config,
    quick: bool,
    cli: &Cli,
    rt: Arc<tokio::runtime::Runtime>,
) -> anyhow::Result<(String, PathBuf)> {
    let mut report = cascade_hop::run(bench, cfg, rt)?;
    report.created_unix = unix_now();
    report.quick = quick;
    let stem = format!("cascade-hop-{}{}", report.created_unix, quick_suffix(quick));
    let path = report::write_json(&cli.out, &stem, "cascade-hop-latest", &report)?;
    let mut table = cascade_hop::table(&report);
    for m in &report.method {
        table.push_str(&format!("method: {m}\n"));
    }
    Ok((table, path))
}

/// The most telling line of a server start error: the last non-empty one.
fn first_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim();
    line.chars().take(160).collect()
}
