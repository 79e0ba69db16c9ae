//! What the load runs against: a `cascade serve` process (sessions set up through its
//! HTTP interface) or the in-process raw relay. Both hand out the same publisher and
//! subscriber sockets and report CPU time, forwarded packets and memory the same way.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cascade_dataplane::srtp::SrtpProfile;

use crate::janus::JanusTarget;
use crate::load::{Publisher, Rig, Subscriber};
use crate::media::{AUDIO_PT, StreamTx, VIDEO_PT};
use crate::netio::set_buffers;
use crate::procfs::{UdpPort, sum_ports, udp_ports};
use crate::relay::RawRelay;
use crate::server::{ServerProcess, ServerSpec, metric_series, metric_sum};
use crate::signal::{Connected, Keepalive, Signaller, layer_ssrcs};

/// Concurrent session setups.
const SETUP_CONCURRENCY: usize = 16;
/// Socket buffers of the load generator's sockets.
pub(crate) const SUB_RCVBUF: usize = 2 << 20;
const PUB_SNDBUF: usize = 4 << 20;

/// Readings taken before and after a step.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// The server's CPU seconds: its process's, or with [`Target::account_cpus`] the
    /// busy time of its CPUs.
    pub(crate) cpu_s: Option<f64>,
    pub(crate) packets_in: Option<f64>,
    pub(crate) packets_out: Option<f64>,
    pub(crate) drops: Option<f64>,
    /// The server process's own CPU seconds (set with [`Target::account_cpus`]).
    pub(crate) process_cpu_s: Option<f64>,
    /// CPU seconds of every process but the server, the bench and the softirq
    /// threads, by pid (set with [`Target::account_cpus`]).
    pub(crate) others: Option<HashMap<u32, f64>>,
    /// `cascade_relayed_total`: packets copied to cascade peers in userspace.
    pub(crate) relayed: Option<f64>,
    /// The TC fan-out's counters (`cascade_ebpf_packets{counter=...}`): clones sent,
    /// originals passed up to userspace, packets it left to userspace untouched.
    pub(crate) fanout_clones: Option<f64>,
    pub(crate) fanout_to_userspace: Option<f64>,
    pub(crate) fanout_skipped: Option<f64>,
}

/// A `cascade serve` under load.
pub(crate) struct CascadeTarget {
    pub(crate) server: ServerProcess,
    sig: Signaller,
    rt: Arc<tokio::runtime::Runtime>,
    keepalive: Keepalive,
    tokens: HashMap<String, String>,
    /// CPUs whose busy time is the server's CPU time (empty: its process's time).
    cpus: Vec<usize>,
    /// Processes left out of [`Snapshot::others`] besides the server.
    not_others: Vec<u32>,
}

/// The load's other end.
pub(crate) enum Target {
    Cascade(Box<CascadeTarget>),
    Relay(RawRelay),
    Janus(Box<JanusTarget>),
}

impl Target {
    pub(crate) fn cascade(
        spec: &ServerSpec<'_>,
        profile: SrtpProfile,
        bind_ip: IpAddr,
        rt: Arc<tokio::runtime::Runtime>,
    ) -> anyhow::Result<Self> {
        let server = ServerProcess::start(spec)?;
        let sig = Signaller::new(&server.http_base, &server.secret, profile, bind_ip);
        Ok(Target::Cascade(Box::new(CascadeTarget {
            server,
            sig,
            rt,
            keepalive: Keepalive::start(),
            tokens: HashMap::new(),
            cpus: Vec::new(),
            not_others: Vec::new(),
        })))
    }

    /// Counts the busy time of `cpus` (everything that ran there: the server, the
    /// kernel's packet processing, ...) as the server's CPU time, and reads the CPU
    /// time of every other process (but `not_others`) to see whether something else
    /// ran meanwhile. For a server pinned to `cpus`.
    pub(crate) fn account_cpus(&mut self, cpus: &[usize], not_others: &[u32]) {
        if let Target::Cascade(c) = self {
            c.cpus = cpus.to_vec();
            c.not_others = not_others.to_vec();
            c.not_others.push(std::process::id());
            c.not_others.push(c.server.pid());
        }
    }

    /// Offers of the sessions set up from now on: transport-cc (`twcc`), publishers
    /// with three simulcast layers (`simulcast`). Cascade targets only.
    pub(crate) fn set_offer_options(&mut self, twcc: bool, simulcast: bool) {
        if let Target::Cascade(c) = self {
            c.sig.set_offer_options(twcc, simulcast);
        }
    }

    /// The `cascade serve` behind this target, if it is one.
    pub(crate) fn as_cascade(&self) -> Option<&CascadeTarget> {
        match self {
            Target::Cascade(c) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn relay(bind_ip: IpAddr) -> anyhow::Result<Self> {
        let IpAddr::V4(ip) = bind_ip else {
            bail!("the raw relay is IPv4 only");
        };
        Ok(Target::Relay(RawRelay::start(
            std::net::SocketAddrV4::new(ip, 0),
        )?))
    }

    /// Queue and drop counters of the server's media sockets.
    pub(crate) fn server_udp(&self) -> UdpPort {
        match self {
            Target::Cascade(c) => {
                let ports = udp_ports(&format!("/proc/{}/net", c.server.pid()));
                sum_ports(&ports, Some(&[c.server.media.port()].into()))
            }
            Target::Relay(r) => {
                let ports = udp_ports("/proc/self/net");
                sum_ports(&ports, Some(&[r.addr.port()].into()))
            }
            // Every UDP socket of Janus's namespace: one port per PeerConnection.
            Target::Janus(j) => sum_ports(&udp_ports(&format!("/proc/{}/net", j.pid())), None),
        }
    }

    /// Resident memory of the server, KiB (not for the in-process relay).
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        match self {
            Target::Cascade(c) => crate::procfs::rss_kib(c.server.pid()),
            Target::Relay(_) => None,
            Target::Janus(j) => crate::procfs::rss_kib(j.pid()),
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        match self {
            Target::Cascade(c) => {
                let text = c.rt.block_on(c.sig.metrics()).ok();
                let process_cpu_s = crate::procfs::process_cpu_seconds(c.server.pid());
                let (cpu_s, others) = if c.cpus.is_empty() {
                    (process_cpu_s, None)
                } else {
                    (
                        crate::procfs::cpus_busy_seconds(&c.cpus),
                        Some(crate::procfs::processes_cpu_seconds(&c.not_others)),
                    )
                };
                let t = text.as_deref();
                let ebpf = |counter: &str| {
                    t.and_then(|t| {
                        metric_series(t, &format!("cascade_ebpf_packets{{counter=\"{counter}\"}}"))
                    })
                };
                Snapshot {
                    cpu_s,
                    packets_in: t.and_then(|t| metric_sum(t, "cascade_packets_in_total")),
                    packets_out: t.and_then(|t| metric_sum(t, "cascade_packets_out_total")),
                    drops: t.and_then(|t| metric_sum(t, "cascade_drops_total")),
                    process_cpu_s: (!c.cpus.is_empty()).then_some(process_cpu_s).flatten(),
                    others,
                    relayed: t.and_then(|t| metric_sum(t, "cascade_relayed_total")),
                    fanout_clones: ebpf("fanout_clones"),
                    fanout_to_userspace: ebpf("fanout_to_userspace"),
                    fanout_skipped: ebpf("fanout_skipped"),
                }
            }
            Target::Relay(r) => Snapshot {
                cpu_s: r.cpu_seconds(),
                packets_out: Some(r.stats.packets_out.load(Ordering::Relaxed) as f64),
                drops: Some(r.stats.send_failed.load(Ordering::Relaxed) as f64),
                ..Snapshot::default()
            },
            Target::Janus(j) => Snapshot {
                cpu_s: crate::procfs::process_cpu_seconds(j.pid()),
                ..Snapshot::default()
            },
        }
    }

    /// Checks the server still runs (it may have crashed under load).
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        match self {
            Target::Cascade(c) => {
                if !c.server.is_running() {
                    bail!("cascade serve exited: {}", c.server.stderr_tail());
                }
                Ok(())
            }
            Target::Janus(j) => j.check_alive(),
            Target::Relay(_) => Ok(()),
        }
    }

    /// Adds `count` publishers in `room` (audio + video each).
    pub(crate) fn add_publishers(
        &mut self,
        rig: &mut Rig,
        room: &str,
        count: usize,
    ) -> anyhow::Result<()> {
        match self {
            Target::Cascade(c) => {
                let token = c.token(room)?;
                let ssrcs: Vec<(u32, u32)> = (0..count)
                    .map(|_| (rand::random::<u32>() | 1, rand::random::<u32>() & !1))
                    .collect();
                let sig = c.sig.clone();
                let room = room.to_string();
                let connected = c.rt.block_on(run_bounded(
                    ssrcs
                        .iter()
                        .map(|&(a, v)| {
                            let (sig, room, token) = (sig.clone(), room.clone(), token.clone());
                            async move { sig.publish(&room, &token, a, v).await }
                        })
                        .collect(),
                ))?;
                for (conn, (a, v)) in connected.into_iter().zip(ssrcs) {
                    set_buffers(&conn.socket, 0, PUB_SNDBUF);
                    let clone = conn.socket.try_clone()?;
                    let Connected {
                        socket,
                        tx,
                        resource,
                        peer,
                        ..
                    } = conn;
                    c.keepalive.add(peer, clone);
                    let (video, layers) = if c.sig.simulcast() {
                        // Layers q, h, f at 1/4, 1/2 and 1 of the video rate; f is
                        // the one subscribers get (see the README, Benchmarks).
                        let [q, h, f] = layer_ssrcs(v);
                        (
                            StreamTx::new(f, VIDEO_PT).keyframes(),
                            vec![
                                (StreamTx::new(q, VIDEO_PT).keyframes(), 0.25),
                                (StreamTx::new(h, VIDEO_PT).keyframes(), 0.5),
                            ],
                        )
                    } else {
                        (StreamTx::new(v, VIDEO_PT), Vec::new())
                    };
                    rig.publishers.push(Publisher {
                        socket,
                        tx: Some(tx),
                        audio: StreamTx::new(a, AUDIO_PT),
                        video,
                        layers,
                        transport_seq: c.sig.twcc().then_some(0),
                        resource,
                    });
                }
            }
            Target::Relay(r) => {
                for _ in 0..count {
                    let socket =
                        UdpSocket::bind(SocketAddr::new(r.addr.ip().to_owned().into(), 0))?;
                    socket.connect(r.addr)?;
                    socket.set_nonblocking(true)?;
                    set_buffers(&socket, 0, PUB_SNDBUF);
                    rig.publishers.push(Publisher {
                        socket,
                        tx: None,
                        audio: StreamTx::new(rand::random(), AUDIO_PT),
                        video: StreamTx::new(rand::random(), VIDEO_PT),
                        layers: Vec::new(),
                        transport_seq: None,
                        resource: String::new(),
                    });
                }
            }
            Target::Janus(j) => j.add_publishers(rig, count)?,
        }
        Ok(())
    }

    /// Adds `count` subscribers of publisher `publisher` of `rig`, in `room`.
    pub(crate) fn add_subscribers(
        &mut self,
        rig: &mut Rig,
        room: &str,
        publisher: usize,
        count: usize,
    ) -> anyhow::Result<()> {
        if count == 0 {
            return Ok(());
        }
        match self {
            Target::Cascade(c) => {
                let resource = rig.publishers[publisher].resource.clone();
                c.subscribe(rig, room, publisher, &resource, count)?;
            }
            Target::Relay(r) => {
                let want = r.stats.subscribers.load(Ordering::Acquire) + count;
                let mut new = Vec::with_capacity(count);
                for _ in 0..count {
                    let socket = UdpSocket::bind(SocketAddr::new((*r.addr.ip()).into(), 0))?;
                    socket.connect(r.addr)?;
                    socket.set_nonblocking(true)?;
                    set_buffers(&socket, SUB_RCVBUF, 0);
                    new.push(socket);
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                while r.stats.subscribers.load(Ordering::Acquire) < want {
                    if Instant::now() > deadline {
                        bail!("raw relay: subscribers did not register");
                    }
                    for s in &new {
                        let _ = s.send(b"h");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                for socket in new {
                    rig.subscribers.push(Subscriber {
                        socket,
                        rx: None,
                        publisher,
                        streams: Vec::new(),
                        resource: String::new(),
                        same_seq: true,
                    });
                }
            }
            Target::Janus(j) => j.add_subscribers(rig, publisher, count)?,
        }
        Ok(())
    }

    /// Ends every session of `rig` (DELETE on the server) and empties it.
    pub(crate) fn clear(&mut self, rig: &mut Rig) -> anyhow::Result<()> {
        match self {
            Target::Cascade(c) => {
                c.keepalive.clear();
                let sig = c.sig.clone();
                let mut jobs = Vec::new();
                let tokens = c.tokens.clone();
                let resources = rig
                    .subscribers
                    .iter()
                    .map(|s| s.resource.clone())
                    .chain(rig.publishers.iter().map(|p| p.resource.clone()));
                for resource in resources {
                    let (sig, tokens) = (sig.clone(), tokens.clone());
                    jobs.push(async move {
                        // Any of the bench's tokens may delete (one room per scenario).
                        let mut last = Ok(());
                        for t in tokens.values() {
                            last = sig.delete(&resource, t).await;
                            if last.is_ok() {
                                break;
                            }
                        }
                        last
                    });
                }
                let r = c.rt.block_on(run_bounded(jobs));
                c.tokens.clear();
                rig.publishers.clear();
                rig.subscribers.clear();
                r.map(|_| ())
            }
            Target::Relay(r) => {
                r.reset();
                rig.publishers.clear();
                rig.subscribers.clear();
                Ok(())
            }
            Target::Janus(j) => j.clear(rig),
        }
    }
}

impl CascadeTarget {
    /// The server's HTTP side.
    pub(crate) fn signaller(&self) -> &Signaller {
        &self.sig
    }

    /// Runs a future of the bench's HTTP work to completion.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Adds `count` subscribers of `resource` (any server's resource URL) in `room`,
    /// fed by publisher `publisher` of `rig`.
    pub(crate) fn subscribe(
        &mut self,
        rig: &mut Rig,
        room: &str,
        publisher: usize,
        resource: &str,
        count: usize,
    ) -> anyhow::Result<()> {
        let token = self.token(room)?;
        let sig = self.sig.clone();
        let room = room.to_string();
        let resource = resource.to_string();
        let connected = self.rt.block_on(run_bounded(
            (0..count)
                .map(|_| {
                    let (sig, room, token, resource) =
                        (sig.clone(), room.clone(), token.clone(), resource.clone());
                    async move { sig.subscribe(&room, &token, &resource).await }
                })
                .collect(),
        ))?;
        for conn in connected {
            set_buffers(&conn.socket, SUB_RCVBUF, 0);
            let clone = conn.socket.try_clone()?;
            let Connected {
                socket,
                rx,
                resource,
                peer,
                ..
            } = conn;
            self.keepalive.add(peer, clone);
            rig.subscribers.push(Subscriber {
                socket,
                rx: Some(rx),
                publisher,
                streams: Vec::new(),
                resource,
                // A layered route renumbers (layer switches stay contiguous).
                same_seq: !self.sig.simulcast(),
            });
        }
        Ok(())
    }

    /// A user token of this server for `room` (publish and subscribe).
    pub(crate) fn token(&mut self, room: &str) -> anyhow::Result<String> {
        if let Some(t) = self.tokens.get(room) {
            return Ok(t.clone());
        }
        let t = self.sig.token(room)?;
        self.tokens.insert(room.to_string(), t.clone());
        Ok(t)
    }
}

/// Runs futures with at most [`SETUP_CONCURRENCY`] at once; results in order; the
/// first error fails the whole.
async fn run_bounded<T, F>(jobs: Vec<F>) -> anyhow::Result<Vec<T>>
where
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(SETUP_CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, job.await)
        });
    }
    let mut out: Vec<Option<T>> = Vec::new();
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        let (i, r) = r.context("setup task panicked")?;
        match r {
            Ok(v) => {
                if out.len() <= i {
                    out.resize_with(i + 1, || None);
                }
                out[i] = Some(v);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(out.into_iter().flatten().collect())
}

/// A fresh room name.
pub(crate) fn random_room(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}
