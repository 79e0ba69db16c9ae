//! The load generator: publishers send paced RTP (SRTP-protected when a context is
//! set) in `sendmmsg` batches from one thread; one receiver thread reads every
//! subscriber socket through `epoll` + `recvmmsg`, checks continuity by sequence
//! number, and decrypts a sample of packets to check their payload and measure the
//! one-way latency from the send time they carry.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cascade_dataplane::srtp::SrtpContext;

use crate::media::{Arrival, StreamRx, StreamTx, now_ns, read_stamp, rtp_header};
use crate::netio::{BATCH, Batch, Epoll, tight_timer_slack};

/// Largest number of latency samples kept per step.
const MAX_SAMPLES: usize = 2_000_000;
/// The receiver ends a step once nothing arrived for this long after the last send.
const QUIET: Duration = Duration::from_millis(60);
/// ... or at the latest this long after the last send; what is still queued then is
/// read and discarded.
const DRAIN_MAX: Duration = Duration::from_millis(2_000);
/// Packets received later than this after the last send are a backlog: the forwarder
/// (or the receiver) did not keep up with the offered rate, its queues grew.
const GRACE: Duration = Duration::from_millis(50);
/// In throughput mode, packets one `recvmmsg` should find waiting on a socket...
const COALESCE_PACKETS: f64 = 16.0;
/// ... polling at least this often (well inside [`GRACE`], so that the receiver's own
/// polling never looks like a backlog).
const MAX_PAUSE: Duration = Duration::from_millis(4);
/// Pacing tick of the sender.
const TICK: Duration = Duration::from_micros(200);

/// One publishing socket.
pub(crate) struct Publisher {
    pub(crate) socket: UdpSocket,
    /// `None`: plain RTP (the raw relay).
    pub(crate) tx: Option<SrtpContext>,
    pub(crate) audio: StreamTx,
    pub(crate) video: StreamTx,
    /// Lower simulcast layers (`--simulcast`), each with its rate as a fraction of the
    /// video rate; `video` is then the top layer, the one subscribers get. Their
    /// packets count as ingress, never as expected at subscribers.
    pub(crate) layers: Vec<(StreamTx, f64)>,
    /// Next transport-wide sequence number, when the publisher negotiated
    /// transport-cc (`--twcc`): every packet then carries one.
    pub(crate) transport_seq: Option<u16>,
    /// The publisher's resource URL on the server (empty for the raw relay).
    pub(crate) resource: String,
}

/// One subscribing socket, fed by one publisher.
pub(crate) struct Subscriber {
    pub(crate) socket: UdpSocket,
    /// `None`: plain RTP (the raw relay).
    pub(crate) rx: Option<SrtpContext>,
    /// Index of the publisher in [`Rig::publishers`].
    pub(crate) publisher: usize,
    pub(crate) streams: Vec<StreamRx>,
    pub(crate) resource: String,
    /// The server forwards the publisher's sequence numbers unchanged.
    pub(crate) same_seq: bool,
}

/// Every socket of a scenario.
#[derive(Default)]
pub(crate) struct Rig {
    pub(crate) publishers: Vec<Publisher>,
    pub(crate) subscribers: Vec<Subscriber>,
}

/// What one step sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepSpec {
    /// Video packets per second and publisher.
    pub(crate) video_pps: f64,
    /// Audio packets per second and publisher.
    pub(crate) audio_pps: f64,
    pub(crate) duration: Duration,
    /// Latency samples from packets sent earlier than this into the step are ignored.
    pub(crate) warmup: Duration,
    /// Decrypt (and check) the packets whose sequence number is a multiple of this.
    pub(crate) decrypt_every: u16,
    /// Throughput mode: the receiver pauses between polls so that each `recvmmsg`
    /// returns many packets (cheaper per packet; latency samples then include the
    /// pause). Off for latency steps, which read every packet as soon as it arrives.
    pub(crate) coalesce: bool,
    /// Also keep the latency samples of each subscriber apart
    /// ([`StepCounts::latency_ns_by_subscriber`]).
    pub(crate) per_subscriber_latency: bool,
}

/// What one step measured on the client side.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepCounts {
    /// Wall time the sender ran.
    pub(crate) send_secs: f64,
    /// Packets the publishers were asked to send.
    pub(crate) target_ingress: u64,
    /// Packets the kernel accepted from the publishers (lower simulcast layers
    /// included).
    pub(crate) sent: u64,
    /// Packets not sent because the sender fell behind its schedule.
    pub(crate) skipped: u64,
    /// Packets the kernel refused (full buffers).
    pub(crate) send_failed: u64,
    /// Packets the subscribers should have received.
    pub(crate) expected: u64,
    /// Distinct packets received.
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    /// Packets older than the continuity window (reordered far, or duplicates).
    pub(crate) late: u64,
    /// Sampled packets that failed SRTP authentication.
    pub(crate) auth_failed: u64,
    /// Sampled packets whose payload was not what was sent.
    pub(crate) corrupt: u64,
    /// Datagrams that were not RTP (RTCP, STUN).
    pub(crate) other: u64,
    /// Receive time minus send time of sampled packets, in ns.
    pub(crate) latency_ns: Vec<u32>,
    /// The same, per subscriber (only with [`StepSpec::per_subscriber_latency`]).
    pub(crate) latency_ns_by_subscriber: Vec<Vec<u32>>,
    /// Bytes queued at the server's and at the subscribers' sockets when the last
    /// packet was sent (who held the backlog).
    pub(crate) queued_at_end: (u64, u64),
    /// Distinct packets received more than [`GRACE`] after the last send.
    pub(crate) backlog: u64,
    /// Datagrams still queued after [`DRAIN_MAX`], discarded uncounted.
    pub(crate) flushed: u64,
    /// Time from the last send until the receiver saw the network quiet.
    pub(crate) drain_secs: f64,
    /// Highest loss of any one subscriber, in percent.
    pub(crate) worst_subscriber_loss_pct: f64,
    /// Subscribers that received nothing although their publisher sent.
    pub(crate) silent_subscribers: usize,
}

impl Rig {
    /// Video packets the publishers send per packet of their top layer (1 without
    /// simulcast).
    pub(crate) fn video_factor(&self) -> f64 {
        self.publishers
            .first()
            .map_or(1.0, |p| 1.0 + p.layers.iter().map(|l| l.1).sum::<f64>())
    }

    /// Runs one step: the sender paces packets for `spec.duration`, the receiver
    /// counts until the network is quiet again.
    /// `probe` is called once, when the last packet was sent, and returns the bytes
    /// queued at the server's and at the subscribers' sockets.
    pub(crate) fn step(
        &mut self,
        spec: &StepSpec,
        probe: &(dyn Fn() -> (u64, u64) + Sync),
    ) -> StepCounts {
        let sender_done = AtomicBool::new(false);
        let start = Instant::now();
        let start_ns = now_ns();
        let Rig {
            publishers,
            subscribers,
        } = self;
        let (send, recv) = std::thread::scope(|s| {
            let sender = s.spawn(|| {
                let r = send_loop(publishers, spec, start);
                sender_done.store(true, Ordering::Release);
                r
            });
            let receiver = s.spawn(|| {
                let warm_ns = start_ns + spec.warmup.as_nanos() as u64;
                recv_loop(subscribers, spec, warm_ns, &sender_done, probe)
            });
            (
                sender.join().expect("sender thread panicked"),
                receiver.join().expect("receiver thread panicked"),
            )
        });
        let (mut counts, per_sub) = recv;
        counts.send_secs = send.secs;
        counts.target_ingress = send.target;
        counts.sent = send.sent.iter().sum::<u64>() + send.layer_sent;
        counts.skipped = send.skipped;
        counts.send_failed = send.failed;
        counts.expected = self
            .subscribers
            .iter()
            .map(|s| send.sent.get(s.publisher).copied().unwrap_or(0))
            .sum();
        for (sub, got) in self.subscribers.iter().zip(&per_sub) {
            let want = send.sent.get(sub.publisher).copied().unwrap_or(0);
            if want == 0 {
                continue;
            }
            if *got == 0 {
                counts.silent_subscribers += 1;
            }
            let loss = 100.0 * (1.0 - *got as f64 / want as f64);
            counts.worst_subscriber_loss_pct = counts.worst_subscriber_loss_pct.max(loss);
        }
        counts
    }
}

struct SendResult {
    secs: f64,
    target: u64,
    /// Per publisher, lower simulcast layers left out.
    sent: Vec<u64>,
    /// Packets of lower simulcast layers.
    layer_sent: u64,
    skipped: u64,
    failed: u64,
}

/// Writes the next packet of `stream` into `batch` (with a transport-wide sequence
/// number when the publisher has them), protected with `tx` when set. False when
/// protecting failed (nothing is queued then).
fn queue(
    batch: &mut Batch,
    stream: &mut StreamTx,
    transport_seq: &mut Option<u16>,
    tx: Option<&mut SrtpContext>,
) -> bool {
    let buf = batch.next_mut();
    let tseq = transport_seq.as_mut().map(next_transport_seq);
    let len = stream.write_next(buf, now_ns(), tseq);
    let len = match tx {
        Some(ctx) => match ctx.protect_rtp(buf, len) {
            Ok(n) => n,
            Err(_) => return false,
        },
        None => len,
    };
    batch.push(len, None);
    true
}

/// Sends what `batch` holds on `fd`: (datagrams sent, datagrams that failed).
fn flush(batch: &mut Batch, fd: std::os::fd::RawFd) -> (u64, u64) {
    if batch.len() == 0 {
        return (0, 0);
    }
    let queued = batch.len();
    let ok = batch.send(fd);
    (ok as u64, (queued - ok) as u64)
}

/// Returns the next transport-wide sequence number and advances it.
fn next_transport_seq(seq: &mut u16) -> u16 {
    let s = *seq;
    *seq = seq.wrapping_add(1);
    s
}

fn send_loop(pubs: &mut [Publisher], spec: &StepSpec, start: Instant) -> SendResult {
    tight_timer_slack();
    let n = pubs.len();
    let mut batch = Batch::new();
    let mut issued = vec![(0u64, 0u64); n];
    let mut layer_issued: Vec<Vec<u64>> = pubs.iter().map(|p| vec![0; p.layers.len()]).collect();
    let mut sent = vec![0u64; n];
    let mut layer_sent = 0u64;
    let mut skipped = 0u64;
    let mut failed = 0u64;
    let dur = spec.duration.as_secs_f64();
    // The most packets one stream may owe after a stall; beyond, they are skipped.
    let cap = |rate: f64| (rate * 0.005).max(64.0) as u64;
    let (cap_v, cap_a) = (cap(spec.video_pps), cap(spec.audio_pps));
    let mut end_el;
    loop {
        let el = start.elapsed().as_secs_f64();
        end_el = el.min(dur);
        let due_v = (spec.video_pps * end_el) as u64;
        let due_a = (spec.audio_pps * end_el) as u64;
        for (i, p) in pubs.iter_mut().enumerate() {
            let (iv, ia) = &mut issued[i];
            if due_v > *iv + cap_v {
                skipped += due_v - cap_v - *iv;
                *iv = due_v - cap_v;
            }
            if due_a > *ia + cap_a {
                skipped += due_a - cap_a - *ia;
                *ia = due_a - cap_a;
            }
            let fd = p.socket.as_raw_fd();
            while *iv < due_v || *ia < due_a {
                // Audio first: it is small and rarer.
                let stream = if *ia < due_a {
                    *ia += 1;
                    &mut p.audio
                } else {
                    *iv += 1;
                    &mut p.video
                };
                if !queue(&mut batch, stream, &mut p.transport_seq, p.tx.as_mut()) {
                    failed += 1;
                    continue;
                }
                if batch.is_full() {
                    let (ok, lost) = flush(&mut batch, fd);
                    sent[i] += ok;
                    failed += lost;
                }
            }
            let (ok, lost) = flush(&mut batch, fd);
            sent[i] += ok;
            failed += lost;
            // Lower simulcast layers, in batches of their own (not expected downstream).
            for ((layer, frac), issued) in p.layers.iter_mut().zip(&mut layer_issued[i]) {
                let rate = spec.video_pps * *frac;
                let due = (rate * end_el) as u64;
                let cap = cap(rate);
                if due > *issued + cap {
                    skipped += due - cap - *issued;
                    *issued = due - cap;
                }
                while *issued < due {
                    *issued += 1;
                    if !queue(&mut batch, layer, &mut p.transport_seq, p.tx.as_mut()) {
                        failed += 1;
                        continue;
                    }
                    if batch.is_full() {
                        let (ok, lost) = flush(&mut batch, fd);
                        layer_sent += ok;
                        failed += lost;
                    }
                }
                let (ok, lost) = flush(&mut batch, fd);
                layer_sent += ok;
                failed += lost;
            }
        }
        if el >= dur {
            break;
        }
        std::thread::sleep(TICK);
    }
    let target = ((spec.video_pps + spec.audio_pps) * dur) as u64 * n as u64
        + pubs
            .iter()
            .flat_map(|p| &p.layers)
            .map(|(_, frac)| (spec.video_pps * frac * dur) as u64)
            .sum::<u64>();
    SendResult {
        secs: end_el,
        target,
        sent,
        layer_sent,
        skipped,
        failed,
    }
}

fn recv_loop(
    subs: &mut [Subscriber],
    spec: &StepSpec,
    warm_ns: u64,
    sender_done: &AtomicBool,
    probe: &(dyn Fn() -> (u64, u64) + Sync),
) -> (StepCounts, Vec<u64>) {
    let mut c = StepCounts::default();
    if spec.per_subscriber_latency {
        c.latency_ns_by_subscriber = vec![Vec::new(); subs.len()];
    }
    let mut per_sub = vec![0u64; subs.len()];
    let mut ep = match Epoll::new(subs.len()) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("epoll: {e}");
            return (c, per_sub);
        }
    };
    for (i, s) in subs.iter().enumerate() {
        if let Err(e) = ep.add(s.socket.as_raw_fd(), i as u64) {
            eprintln!("epoll_ctl: {e}");
        }
    }
    let mut batch = Batch::new();
    let every = spec.decrypt_every.max(1);
    let mut last_rx = Instant::now();
    let mut done_at: Option<Instant> = None;
    let mut ready: Vec<u64> = Vec::with_capacity(subs.len());
    let mut poll_start = Instant::now();
    let mut on_time = true;
    let mut received_on_time = 0;
    // Packets per second reaching one subscriber socket.
    let per_socket = spec.video_pps + spec.audio_pps;
    let pause = if spec.coalesce && per_socket > 0.0 {
        Duration::from_secs_f64((COALESCE_PACKETS / per_socket).min(MAX_PAUSE.as_secs_f64()))
    } else {
        Duration::ZERO
    };
    if !pause.is_zero() {
        tight_timer_slack();
    }
    loop {
        ready.clear();
        ready.extend(ep.wait(2));
        if !ready.is_empty() {
            poll_start = Instant::now();
        }
        for &tok in &ready {
            let Some(sub) = subs.get_mut(tok as usize) else {
                continue;
            };
            let fd = sub.socket.as_raw_fd();
            loop {
                let k = batch.recv(fd);
                if k == 0 {
                    break;
                }
                let t = now_ns();
                last_rx = Instant::now();
                for j in 0..k {
                    let d = batch.datagram_mut(j);
                    handle(
                        sub,
                        d,
                        t,
                        Sampling { every, warm_ns },
                        &mut c,
                        tok as usize,
                        &mut per_sub[tok as usize],
                    );
                }
                if k < BATCH {
                    break;
                }
            }
        }
        if !pause.is_zero() && !ready.is_empty() {
            // Poll periodically: the time spent reading counts toward the pause.
            let left = pause.saturating_sub(poll_start.elapsed());
            if !left.is_zero() {
                std::thread::sleep(left);
            }
        }
        if sender_done.load(Ordering::Acquire) {
            let now = Instant::now();
            let done = *done_at.get_or_insert_with(|| {
                c.queued_at_end = probe();
                now
            });
            if on_time && now.duration_since(done) >= GRACE {
                on_time = false;
                received_on_time = c.received;
            }
            if now.duration_since(last_rx.max(done)) >= QUIET
                || now.duration_since(done) >= DRAIN_MAX
            {
                c.drain_secs = now.duration_since(done).as_secs_f64();
                break;
            }
        }
    }
    if on_time {
        received_on_time = c.received;
    }
    c.backlog = c.received - received_on_time;
    // Whatever is still queued would spill into the next step: discard it.
    for sub in subs.iter() {
        let fd = sub.socket.as_raw_fd();
        loop {
            let k = batch.recv(fd);
            c.flushed += k as u64;
            if k == 0 {
                break;
            }
        }
    }
    (c, per_sub)
}

/// Which received packets give a latency sample: every `every`-th sequence number,
/// sent after `warm_ns`.
#[derive(Clone, Copy)]
struct Sampling {
    every: u16,
    warm_ns: u64,
}

fn handle(
    sub: &mut Subscriber,
    d: &mut [u8],
    t: u64,
    Sampling { every, warm_ns }: Sampling,
    c: &mut StepCounts,
    index: usize,
    per_sub: &mut u64,
) {
    let Some(h) = rtp_header(d) else {
        c.other += 1;
        return;
    };
    let stream = match sub.streams.iter().position(|s| s.ssrc == h.ssrc) {
        Some(i) => &mut sub.streams[i],
        None => {
            sub.streams.push(StreamRx::new(h.ssrc));
            let last = sub.streams.len() - 1;
            &mut sub.streams[last]
        }
    };
    match stream.record(h.seq) {
        Arrival::New => {}
        Arrival::Duplicate => {
            c.duplicates += 1;
            return;
        }
        Arrival::Late => c.late += 1,
    }
    c.received += 1;
    *per_sub += 1;
    if h.seq % every != 0 {
        return;
    }
    let plain = match sub.rx.as_mut() {
        Some(ctx) => match ctx.unprotect_rtp(d) {
            Ok(n) => n,
            Err(_) => {
                c.auth_failed += 1;
                return;
            }
        },
        None => d.len(),
    };
    match read_stamp(&d[..plain], sub.same_seq) {
        Some(sent) if sent >= warm_ns => {
            if c.latency_ns.len() < MAX_SAMPLES {
                let ns = t.saturating_sub(sent).min(u64::from(u32::MAX)) as u32;
                c.latency_ns.push(ns);
                if let Some(v) = c.latency_ns_by_subscriber.get_mut(index) {
                    v.push(ns);
                }
            }
        }
        Some(_) => {}
        None => c.corrupt += 1,
    }
}
