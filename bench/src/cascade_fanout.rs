//! `cascade-bench cascade`: the cascade fan-out of one origin server, with its eBPF
//! fast path on and then off, on the same topology in one run. The origin runs in a
//! server namespace behind a veth pair; in the load namespace one publisher (a real
//! session: HTTP, ICE, DTLS, paced SRTP) feeds it and N relay peers, opened with
//! `POST {resource}/relay` and a cluster token as edge servers would, are plain UDP
//! sockets that count, check and time what reaches them. The offered rate is ramped
//! as in the other scenarios to find the highest rate forwarded to the peers within
//! the loss threshold.
//!
//! CPU is counted per side of the link, not per process: with the TC fan-out the
//! copies are made in softirq, which the kernel runs on whatever CPU the packet is
//! processed on and charges (without IRQ time accounting) to whatever task was
//! running there. So the origin and the load get disjoint CPUs: the server is pinned
//! to CPU 0, the bench to the others, and Receive Packet Steering sends what each veth
//! end receives to its own side's CPUs (as a NIC's interrupts would on two hosts).
//! The origin's CPU time is then the busy time of CPU 0 (user, system, irq and
//! softirq from `/proc/stat`): the server process plus the kernel's packet work for
//! it, TC clones included. Steps during which other processes ran are repeated.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cascade_dataplane::srtp::{SrtpContext, SrtpProfile};
use serde::Serialize;

use crate::affinity;
use crate::load::{Rig, Subscriber};
use crate::netio::set_buffers;
use crate::netns::Netns;
use crate::report::{opt, pps};
use crate::scenario::{Bench, Label, RampResult, Setup, Shape, StepRecord};
use crate::server::ServerSpec;
use crate::signal::cluster_token;
use crate::target::{SUB_RCVBUF, Target, random_room};

/// The ratio the kernel fan-out is meant to reach over userspace.
const GOAL: f64 = 3.0;

/// What the scenario runs.
pub(crate) struct Config {
    pub(crate) server_bin: PathBuf,
    pub(crate) dataplane: Option<&'static str>,
    pub(crate) workers: usize,
    pub(crate) peers: usize,
    pub(crate) profile: SrtpProfile,
}

/// One mode's figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModeSummary {
    pub(crate) mode: String,
    pub(crate) max_forwarded_pps: f64,
    pub(crate) limited_by: String,
    pub(crate) loss_pct_at_max: Option<f64>,
    /// Busy seconds of the origin's CPUs per million packets delivered to the peers,
    /// at the highest rate that passed.
    pub(crate) origin_cpu_s_per_mpkt: Option<f64>,
    /// The server process's own part of it.
    pub(crate) server_process_cpu_s_per_mpkt: Option<f64>,
    /// Per second, at the highest rate that passed: copies made by the TC program,
    /// copies made in userspace, originals the TC program passed up to userspace.
    pub(crate) kernel_clones_per_s: Option<f64>,
    pub(crate) userspace_copies_per_s: Option<f64>,
    pub(crate) kernel_to_userspace_per_s: Option<f64>,
    pub(crate) kernel_skipped_per_s: Option<f64>,
    /// At the eBPF-off maximum's offered rate (eBPF on only).
    pub(crate) same_rate: Option<SameRate>,
    /// One-way latency publisher → relay peer at half the highest rate.
    pub(crate) latency_p50_us: Option<f64>,
    pub(crate) latency_p99_us: Option<f64>,
    /// Cores other processes used during the step at the maximum.
    pub(crate) bg_cores: Option<f64>,
}

/// A step of eBPF on at the rate eBPF off reached.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SameRate {
    pub(crate) offered_fwd_pps: f64,
    pub(crate) forwarded_pps: f64,
    pub(crate) loss_pct: f64,
    pub(crate) origin_cpu_s_per_mpkt: Option<f64>,
    pub(crate) server_process_cpu_s_per_mpkt: Option<f64>,
    /// Cores other processes used meanwhile.
    pub(crate) bg_cores: Option<f64>,
}

/// Origin CPU per forwarded packet of both modes at one offered rate of the ramp.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RateCompare {
    pub(crate) offered_fwd_pps: f64,
    pub(crate) off_origin_cpu_s_per_mpkt: f64,
    pub(crate) on_origin_cpu_s_per_mpkt: f64,
    pub(crate) off_server_process_cpu_s_per_mpkt: Option<f64>,
    pub(crate) on_server_process_cpu_s_per_mpkt: Option<f64>,
    /// off / on.
    pub(crate) ratio: f64,
}

/// The JSON report.
#[derive(Debug, Serialize)]
pub(crate) struct CascadeReport {
    pub(crate) scenario: &'static str,
    pub(crate) created_unix: u64,
    pub(crate) quick: bool,
    pub(crate) cpus: usize,
    pub(crate) server_bin: String,
    pub(crate) server_workers: usize,
    pub(crate) relay_peers: usize,
    pub(crate) srtp_profile: String,
    pub(crate) origin_cpus: Vec<usize>,
    pub(crate) load_cpus: Vec<usize>,
    pub(crate) method: Vec<String>,
    pub(crate) modes: Vec<ModeSummary>,
    /// eBPF on / eBPF off: highest forwarded rate.
    pub(crate) pps_ratio: Option<f64>,
    /// eBPF off / eBPF on: origin CPU per forwarded packet, each at its maximum.
    pub(crate) cpu_ratio_at_max: Option<f64>,
    /// The same at one offered rate (eBPF off's maximum).
    pub(crate) cpu_ratio_same_rate: Option<f64>,
    /// The same at every rate of the ramp both modes passed undisturbed.
    pub(crate) cpu_by_rate: Vec<RateCompare>,
    pub(crate) goal: f64,
    pub(crate) failures: Vec<String>,
    pub(crate) results: Vec<RampResult>,
    pub(crate) steps: Vec<StepRecord>,
}

/// The CPUs of the origin and of the load.
fn split_cpus() -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    let n = crate::procfs::cpus();
    if n < 2 {
        bail!("the cascade scenario needs two CPUs (one for the origin, one for the load)");
    }
    Ok((vec![0], (1..n).collect()))
}

/// How the CPU time is counted, for the report.
fn method(origin: &[usize], load: &[usize], disturbed_cores: f64) -> Vec<String> {
    vec![
        format!(
            "origin CPU = busy time (user+system+irq+softirq, /proc/stat) of CPU {origin:?}, \
             to which the server is pinned and the origin veth's receive processing is \
             steered (RPS); the bench runs on CPUs {load:?}, where the load veth's receive \
             processing is steered"
        ),
        "so the kernel's work for the origin (UDP receive, TC fan-out clones, the veth \
         transmit of every copy) counts for the origin whichever process caused it; the \
         XDP guard runs in the veth's NAPI poll on the sending CPU (the load's) and is \
         not counted"
            .into(),
        format!(
            "per million = origin CPU seconds over the step (send + drain) / packets the \
             relay peers received × 10^6; a step during which other processes (and the \
             children they reaped) used more than {disturbed_cores} core is measured again, \
             twice at most (bg CPU shows what remained)"
        ),
    ]
}

/// What a run found.
pub(crate) struct Outcome {
    pub(crate) modes: Vec<ModeSummary>,
    pub(crate) failures: Vec<String>,
    pub(crate) method: Vec<String>,
}

/// What every mode shares.
struct Shared<'a> {
    net: &'a Netns,
    cluster: &'a str,
    origin_cpus: &'a [usize],
    rt: Arc<tokio::runtime::Runtime>,
}

/// Runs the scenario: eBPF off, then on.
pub(crate) fn run(
    bench: &mut Bench,
    cfg: &Config,
    rt: Arc<tokio::runtime::Runtime>,
) -> anyhow::Result<Outcome> {
    let (origin_cpus, load_cpus) = split_cpus()?;
    let net = Netns::create().context("creating the network namespaces (needs root)")?;
    affinity::steer_receive(&net.server_ns, &net.server_if, &origin_cpus)?;
    affinity::steer_receive(&net.load_ns, &net.load_if, &load_cpus)?;
    let guard = net.enter_load()?;
    let pinned = affinity::pin_self(&load_cpus).context("pinning the bench")?;
    let cluster: String = (0..24)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    let mut summaries: Vec<ModeSummary> = Vec::new();
    let mut failures = Vec::new();
    let mut off_rate: Option<f64> = None;
    let shared = Shared {
        net: &net,
        cluster: &cluster,
        origin_cpus: &origin_cpus,
        rt,
    };
    for mode in ["off", "on"] {
        let r = run_mode(bench, cfg, &shared, mode, off_rate.filter(|_| mode == "on"));
        match r {
            Ok((result, same)) => {
                if mode == "off" {
                    off_rate = result.at_max.as_ref().map(|m| m.video_pps_per_publisher);
                }
                summaries.push(summary(&result, same.as_ref()));
            }
            Err(e) => {
                let msg = format!("cascade ebpf-{mode}: {e:#}");
                bench.pb.println(format!("error: {msg}"));
                failures.push(msg);
            }
        }
    }
    drop(shared);
    drop(pinned);
    drop(guard);
    drop(net);
    Ok(Outcome {
        modes: summaries,
        failures,
        method: method(&origin_cpus, &load_cpus, bench.ramp.disturbed_cores),
    })
}

/// One mode: its own server, publisher and relay peers. `same_rate`: a video rate
/// to measure at after the ramp.
fn run_mode(
    bench: &mut Bench,
    cfg: &Config,
    shared: &Shared<'_>,
    mode: &str,
    same_rate: Option<f64>,
) -> anyhow::Result<(RampResult, Option<StepRecord>)> {
    let Shared {
        net,
        cluster,
        origin_cpus,
        ..
    } = *shared;
    let name = format!("ebpf-{mode}");
    bench
        .pb
        .set_message(format!("cascade {name}: starting the origin"));
    let mut spec = ServerSpec::on(
        &cfg.server_bin,
        IpAddr::V4(net.server_ip),
        Some(cfg.workers),
    );
    spec.dataplane = cfg.dataplane;
    spec.netns = Some(&net.server_ns);
    spec.cpus = origin_cpus.to_vec();
    spec.extra_args = [
        "--ebpf",
        mode,
        "--media-interface",
        &net.server_if,
        "--cluster-secret",
        cluster,
        "--cluster-insecure-http",
    ]
    .map(String::from)
    .to_vec();
    let mut target = Target::cascade(
        &spec,
        cfg.profile,
        IpAddr::V4(net.load_ip),
        shared.rt.clone(),
    )
    .with_context(|| {
        if mode == "on" {
            "starting the origin with --ebpf on (the eBPF programs are in the binary only \
             when clang-19 and libbpf-dev were installed when it was built; and it needs root)"
                .to_string()
        } else {
            format!("starting the origin with --ebpf {mode}")
        }
    })?;
    target.account_cpus(origin_cpus, &bench.ksoftirqd);
    let attached = target.snapshot().fanout_clones.is_some();
    if (mode == "on") != attached {
        bail!(
            "--ebpf {mode}, but the server {} the eBPF counters",
            if attached { "shows" } else { "does not show" }
        );
    }
    let room = random_room("cascade");
    let mut rig = Rig::default();
    bench.pb.set_message(format!(
        "cascade {name}: publisher and {} relay peers",
        cfg.peers
    ));
    target.add_publishers(&mut rig, &room, 1)?;
    let token = cluster_token(cluster)?;
    let (relays, _keepalive) = open_relays(&target, &mut rig, net, cfg.peers, &token)?;
    // The relays reach the workers (and the kernel's map) through command queues.
    std::thread::sleep(Duration::from_millis(300));
    let label = Label {
        scenario: "cascade".into(),
        target: name.clone(),
        n: cfg.peers,
    };
    let run = (|| {
        let result = bench.ramp(
            &mut target,
            &mut rig,
            &label,
            Shape::Video,
            Setup::default(),
        )?;
        let same = match same_rate {
            Some(rate) => {
                let spec = bench.spec(Shape::Video, rate, bench.ramp.step);
                let mut rec = bench.try_rate(&mut target, &mut rig, &label, "same-rate", spec)?;
                // Its CPU time is the point: a step other processes disturbed is
                // measured again even when it passed; the least disturbed one is kept.
                let bg = |r: &StepRecord| r.other_cpu_s.unwrap_or(0.0);
                for _ in 0..2 {
                    if !rec.disturbed() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    let again = bench.measure(
                        &mut target,
                        &mut rig,
                        &label,
                        "same-rate-disturbed",
                        spec,
                    )?;
                    if bg(&again) < bg(&rec) || !again.disturbed() {
                        rec = again;
                    }
                }
                Some(rec)
            }
            None => None,
        };
        Ok((result, same))
    })();
    // Close the relays as an edge would, then the publisher.
    if let Some(c) = target.as_cascade() {
        for url in &relays {
            let _ = c.block_on(c.signaller().delete(url, &token));
        }
    }
    rig.subscribers.clear();
    let _ = target.clear(&mut rig);
    run
}

/// Opens `count` relays of the rig's publisher, each to its own UDP socket, which
/// joins the rig as a subscriber reading the publisher's SRTP with the relay keys.
/// Returns the relay URLs, and what keeps them open while it lives.
fn open_relays(
    target: &Target,
    rig: &mut Rig,
    net: &Netns,
    count: usize,
    token: &str,
) -> anyhow::Result<(Vec<String>, RelayKeepalive)> {
    let c = target
        .as_cascade()
        .context("relays need a cascade server")?;
    let resource = rig.publishers[0].resource.clone();
    let mut urls = Vec::new();
    let mut links = Vec::new();
    for _ in 0..count {
        let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(net.load_ip), 0))?;
        set_buffers(&socket, SUB_RCVBUF, 0);
        let addr = socket.local_addr()?;
        let answer = c.block_on(c.signaller().open_relay(&resource, token, addr))?;
        let keys = answer
            .srtp
            .material()
            .context("relay answer with unusable SRTP keys")?;
        let feedback = answer
            .feedback_srtp
            .material()
            .context("relay answer with unusable feedback keys")?;
        let relay_id = answer
            .relay
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        links.push((socket.try_clone()?, relay_id, feedback, answer.origin_media));
        socket.set_nonblocking(true)?;
        urls.push(answer.relay.clone());
        rig.subscribers.push(Subscriber {
            socket,
            rx: Some(SrtpContext::new(&keys)?),
            publisher: 0,
            streams: Vec::new(),
            resource: answer.relay,
            same_seq: true,
        });
    }
    Ok((urls, RelayKeepalive::start(links)?))
}

/// Probes each relay every second from its socket, as an edge does: an origin
/// closes a relay whose edge stopped probing it. The origin's answers reach the
/// rig's readers, which count them as other datagrams.
struct RelayKeepalive {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type RelayLink = (
    UdpSocket,
    String,
    cascade_dataplane::srtp::SrtpKeyingMaterial,
    SocketAddr,
);

impl RelayKeepalive {
    fn start(links: Vec<RelayLink>) -> anyhow::Result<Self> {
        use std::sync::atomic::Ordering;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("relay-keepalive".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    for (socket, relay, feedback, origin) in &links {
                        let tid = cascade_core::stun::random_transaction_id(&mut rand::rng());
                        if let Ok(probe) = cascade_core::sfu::relay_probe(relay, feedback, tid) {
                            let _ = socket.send_to(&probe, origin);
                        }
                    }
                    for _ in 0..20 {
                        if flag.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })?;
        Ok(RelayKeepalive {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for RelayKeepalive {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn per_second(v: Option<f64>, rec: &StepRecord) -> Option<f64> {
    v.map(|x| x / (rec.secs + rec.drain_secs).max(1e-6))
}

fn per_mpkt(cpu: Option<f64>, rec: &StepRecord) -> Option<f64> {
    let received = rec.forwarded_pps * rec.secs;
    cpu.filter(|_| received > 0.0).map(|c| c / received * 1e6)
}

fn summary(r: &RampResult, same: Option<&StepRecord>) -> ModeSummary {
    let m = r.at_max.as_ref();
    let h = r.at_half.as_ref();
    ModeSummary {
        mode: r.target.clone(),
        max_forwarded_pps: r.max_forwarded_pps,
        limited_by: r.limited_by.clone(),
        loss_pct_at_max: m.map(|m| m.loss_pct),
        origin_cpu_s_per_mpkt: m.and_then(|m| m.cpu_s_per_mpkt),
        server_process_cpu_s_per_mpkt: m.and_then(|m| per_mpkt(m.server_process_cpu_s, m)),
        kernel_clones_per_s: m.and_then(|m| per_second(m.kernel_clones, m)),
        userspace_copies_per_s: m.and_then(|m| per_second(m.relayed_userspace, m)),
        kernel_to_userspace_per_s: m.and_then(|m| per_second(m.kernel_to_userspace, m)),
        kernel_skipped_per_s: m.and_then(|m| per_second(m.kernel_skipped, m)),
        same_rate: same.map(|s| SameRate {
            offered_fwd_pps: s.offered_fwd_pps,
            forwarded_pps: s.forwarded_pps,
            loss_pct: s.loss_pct,
            origin_cpu_s_per_mpkt: s.cpu_s_per_mpkt,
            server_process_cpu_s_per_mpkt: per_mpkt(s.server_process_cpu_s, s),
            bg_cores: s.other_cpu_s.map(|c| c / (s.secs + s.drain_secs)),
        }),
        latency_p50_us: h.map(|h| h.latency.p50_us),
        latency_p99_us: h.map(|h| h.latency.p99_us),
        bg_cores: m.and_then(|m| m.other_cpu_s.map(|c| c / (m.secs + m.drain_secs))),
    }
}

/// The on/off ratios: highest rate, CPU per packet at the maxima and at one rate.
pub(crate) fn ratios(modes: &[ModeSummary]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let find = |m: &str| modes.iter().find(|s| s.mode == m);
    let (Some(on), Some(off)) = (find("ebpf-on"), find("ebpf-off")) else {
        return (None, None, None);
    };
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    (
        div(Some(on.max_forwarded_pps), Some(off.max_forwarded_pps)),
        div(off.origin_cpu_s_per_mpkt, on.origin_cpu_s_per_mpkt),
        div(
            off.origin_cpu_s_per_mpkt,
            on.same_rate.as_ref().and_then(|s| s.origin_cpu_s_per_mpkt),
        ),
    )
}

/// Both modes at each ramp rate both forwarded within the loss threshold with no
/// other process disturbing them (the ramp's rates are the same in both modes).
fn by_rate(steps: &[StepRecord], max_loss: f64) -> Vec<RateCompare> {
    let clean = |mode: &str| -> Vec<&StepRecord> {
        steps
            .iter()
            .filter(|s| {
                s.scenario == "cascade"
                    && s.target == mode
                    && s.phase.starts_with("ramp")
                    && s.passes(max_loss)
                    && !s.disturbed()
                    && s.cpu_s_per_mpkt.is_some()
            })
            .collect()
    };
    let (off, on) = (clean("ebpf-off"), clean("ebpf-on"));
    let mut out: Vec<RateCompare> = Vec::new();
    for a in &off {
        let Some(b) = on
            .iter()
            .rev()
            .find(|b| b.video_pps_per_publisher == a.video_pps_per_publisher)
        else {
            continue;
        };
        let (Some(x), Some(y)) = (a.cpu_s_per_mpkt, b.cpu_s_per_mpkt) else {
            continue;
        };
        if y <= 0.0 {
            continue;
        }
        let row = RateCompare {
            offered_fwd_pps: a.offered_fwd_pps,
            off_origin_cpu_s_per_mpkt: x,
            on_origin_cpu_s_per_mpkt: y,
            off_server_process_cpu_s_per_mpkt: per_mpkt(a.server_process_cpu_s, a),
            on_server_process_cpu_s_per_mpkt: per_mpkt(b.server_process_cpu_s, b),
            ratio: x / y,
        };
        // A rate measured twice: the later step wins.
        out.retain(|r| (r.offered_fwd_pps / a.offered_fwd_pps - 1.0).abs() > 0.01);
        out.push(row);
    }
    out.sort_by(|a, b| a.offered_fwd_pps.total_cmp(&b.offered_fwd_pps));
    out
}

/// The terminal table.
pub(crate) fn table(report: &CascadeReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cascade fan-out: 1 publisher -> {} relay peers; origin (--workers {}) on CPU {:?}, load on CPU {:?}",
        report.relay_peers, report.server_workers, report.origin_cpus, report.load_cpus
    );
    let _ = writeln!(
        s,
        "{:<9} {:>12} {:>9} {:>6} {:>10} {:>10} {:>11} {:>11} {:>11} {:>7} {:>7} {:>6}",
        "mode",
        "max fwd pps",
        "limit",
        "loss%",
        "origin s/M",
        "server s/M",
        "clones/s",
        "user cp/s",
        "up/s",
        "p50 µs",
        "p99 µs",
        "bg CPU"
    );
    for m in &report.modes {
        let _ = writeln!(
            s,
            "{:<9} {:>12} {:>9} {:>6} {:>10} {:>10} {:>11} {:>11} {:>11} {:>7} {:>7} {:>6}",
            m.mode,
            pps(m.max_forwarded_pps),
            m.limited_by,
            opt(m.loss_pct_at_max, 2),
            opt(m.origin_cpu_s_per_mpkt, 2),
            opt(m.server_process_cpu_s_per_mpkt, 2),
            m.kernel_clones_per_s.map_or("-".into(), pps),
            m.userspace_copies_per_s.map_or("-".into(), pps),
            m.kernel_to_userspace_per_s.map_or("-".into(), pps),
            opt(m.latency_p50_us, 0),
            opt(m.latency_p99_us, 0),
            opt(m.bg_cores, 2),
        );
        if let Some(sr) = &m.same_rate {
            let _ = writeln!(
                s,
                "{:<9} at eBPF off's maximum ({} pps offered): forwarded {} pps, loss {:.2}%, origin {} s/M, server {} s/M, bg CPU {}",
                "",
                pps(sr.offered_fwd_pps),
                pps(sr.forwarded_pps),
                sr.loss_pct,
                opt(sr.origin_cpu_s_per_mpkt, 2),
                opt(sr.server_process_cpu_s_per_mpkt, 2),
                opt(sr.bg_cores, 2),
            );
        }
    }
    if !report.cpu_by_rate.is_empty() {
        let _ = writeln!(
            s,
            "origin CPU s/M at the same offered rate (ramp steps both passed undisturbed):"
        );
        let _ = writeln!(
            s,
            "{:>12} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "offered pps", "off s/M", "on s/M", "off srv", "on srv", "off/on"
        );
        for r in &report.cpu_by_rate {
            let _ = writeln!(
                s,
                "{:>12} {:>10.2} {:>10.2} {:>10} {:>10} {:>8.2}",
                pps(r.offered_fwd_pps),
                r.off_origin_cpu_s_per_mpkt,
                r.on_origin_cpu_s_per_mpkt,
                opt(r.off_server_process_cpu_s_per_mpkt, 2),
                opt(r.on_server_process_cpu_s_per_mpkt, 2),
                r.ratio
            );
        }
    }
    let x = |v: Option<f64>| v.map_or("-".into(), |v| format!("×{v:.2}"));
    let met = |v: Option<f64>| match v {
        Some(v) if v >= report.goal => "met",
        Some(_) => "NOT met",
        None => "not measured",
    };
    let _ = writeln!(
        s,
        "eBPF on / off: max forwarded pps {} (goal ≥ {:.0}: {}); origin CPU per forwarded packet off/on {} at the maxima, {} at the same rate (goal ≥ {:.0}: {})",
        x(report.pps_ratio),
        report.goal,
        met(report.pps_ratio),
        x(report.cpu_ratio_at_max),
        x(report.cpu_ratio_same_rate),
        report.goal,
        met(report.cpu_ratio_same_rate.or(report.cpu_ratio_at_max)),
    );
    let _ = writeln!(
        s,
        "columns: origin s/M = origin CPU seconds per million packets delivered to the peers; \
         server s/M = the server process's part; clones/s = TC fan-out copies; user cp/s = \
         userspace copies (cascade_relayed_total); up/s = originals the TC program passed up \
         to the server"
    );
    s
}

/// The report of a run.
pub(crate) fn report(
    bench: &Bench,
    cfg: &Config,
    quick: bool,
    created_unix: u64,
    outcome: Outcome,
) -> CascadeReport {
    let Outcome {
        modes,
        failures,
        method,
    } = outcome;
    let (pps_ratio, cpu_ratio_at_max, cpu_ratio_same_rate) = ratios(&modes);
    let cpu_by_rate = by_rate(&bench.steps, bench.ramp.max_loss_pct);
    let (origin_cpus, load_cpus) = split_cpus().unwrap_or_default();
    CascadeReport {
        scenario: "cascade",
        created_unix,
        quick,
        cpus: crate::procfs::cpus(),
        server_bin: cfg.server_bin.display().to_string(),
        server_workers: cfg.workers,
        relay_peers: cfg.peers,
        srtp_profile: format!("{:?}", cfg.profile),
        origin_cpus,
        load_cpus,
        method,
        modes,
        pps_ratio,
        cpu_ratio_at_max,
        cpu_ratio_same_rate,
        cpu_by_rate,
        goal: GOAL,
        failures,
        results: bench
            .results
            .iter()
            .filter(|r| r.scenario == "cascade")
            .cloned()
            .collect(),
        steps: bench
            .steps
            .iter()
            .filter(|r| r.scenario == "cascade")
            .cloned()
            .collect(),
    }
}
