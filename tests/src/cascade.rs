//! Multi-server cascade tests: a [`Cluster`] of media servers, each in its own
//! network namespace, joined by the [`LinkEmulator`](crate::linkemu::LinkEmulator);
//! a [`VideoReceiver`] that counts what a synthetic subscriber gets and NACKs what it
//! misses (RFC 4585 generic NACK), reading retransmissions sent plainly or as RTX
//! (RFC 4588); numbered video a publisher sends ([`numbered_video`]); and a reader of
//! a resource's state events ([`ResourceEvents`], `GET {resource}/events`).
//!
//! It owns the test side only; what the servers do is what is under test.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cascade_dataplane::rtcp;

use crate::linkemu::{LinkEmulator, TUN_NAME};
use crate::media::{UdpPeer, rtp_packet};
use crate::netns::Netns;
use crate::{ServerProcess, mint_token};

/// The subnet every host of a [`Cluster`] shares: host `i` is `10.88.0.<i+1>`.
const SUBNET: [u8; 3] = [10, 88, 0];

/// Media servers in namespaces, joined by a link emulator. Fields drop in
/// order: the servers stop first, then the emulator, then the namespaces go.
#[derive(Debug)]
pub struct Cluster {
    pub servers: Vec<ServerProcess>,
    pub links: LinkEmulator,
    pub hosts: Vec<Netns>,
    /// The user token secret every server verifies.
    pub secret: String,
}

/// The arguments of a server that cascades with others over plain HTTP:
/// `--token-secret secret --cluster-secret cluster_secret --cluster-insecure-http`,
/// and the `CASCADE_DATAPLANE` backend when set.
pub fn cluster_args(secret: &str, cluster_secret: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--token-secret",
        secret,
        "--cluster-secret",
        cluster_secret,
        "--cluster-insecure-http",
    ]
    .map(String::from)
    .to_vec();
    args.extend(crate::dataplane_args());
    args
}

impl Cluster {
    /// `n` servers (`cascade serve` with `--cluster-secret cluster_secret
    /// --cluster-insecure-http`, the `CASCADE_DATAPLANE` backend when set, and
    /// `extra_args`), server `i` in namespace `labels[i]` on `10.88.0.<i+1>` with
    /// HTTP and media there, `one_way_delay` on every link between two servers.
    pub fn start(
        labels: &[&str],
        one_way_delay: Duration,
        secret: &str,
        cluster_secret: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let hosts: Vec<Netns> = labels
            .iter()
            .map(|l| Netns::new(l))
            .collect::<anyhow::Result<_>>()?;
        let mut builder = LinkEmulator::builder(one_way_delay);
        for (i, ns) in hosts.iter().enumerate() {
            builder.host(ns, &format!("{}/24", host_ip(i)))?;
        }
        let links = builder.start()?;
        let mut cluster = Cluster {
            servers: Vec::new(),
            links,
            hosts,
            secret: secret.to_owned(),
        };
        for (i, label) in labels.iter().enumerate() {
            let ip = host_ip(i).to_string();
            let listen = format!("{ip}:0");
            let mut args: Vec<String> = [
                "--http-listen",
                &listen,
                "--media-listen",
                &listen,
                "--public-ip",
                &ip,
            ]
            .map(String::from)
            .to_vec();
            args.extend(cluster_args(secret, cluster_secret));
            args.extend(extra_args.iter().map(|a| a.to_string()));
            let server = cluster.hosts[i]
                .spawn_server(&args)
                .with_context(|| format!("server {label} starts"))?;
            cluster.servers.push(server);
        }
        Ok(cluster)
    }

    /// The address of host `i`.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        host_ip(i)
    }

    /// A token for `room` every server of the cluster accepts.
    pub fn token(&self, room: &str, user: &str, grants: &[&str]) -> anyhow::Result<String> {
        mint_token(&self.secret, room, user, grants, None)
    }

    /// One metric of server `i`, read from its namespace.
    pub fn metric(&self, i: usize, name: &str) -> Option<f64> {
        self.hosts[i].metric(&self.servers[i].http_base, name)
    }

    /// Connects a synthetic peer to server `i` from its own namespace: the offer
    /// goes to `path`, the socket is bound on the host's address.
    pub fn connect(
        &self,
        i: usize,
        path: &str,
        token: &str,
        role: cascade_peer::PeerRole,
    ) -> anyhow::Result<UdpPeer> {
        let base = &self.servers[i].http_base;
        let bind = std::net::SocketAddr::from((self.ip(i), 0));
        self.hosts[i].block_on(|| crate::media::connect_from(base, bind, path, token, role))
    }

    /// The device of host `i` that every inter-server packet crosses (for
    /// nftables loss, say).
    pub fn link_device(&self) -> &'static str {
        TUN_NAME
    }
}

fn host_ip(i: usize) -> Ipv4Addr {
    let last = u8::try_from(i + 1).expect("fewer than 255 hosts");
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], last)
}

/// Payload bytes of [`numbered_video`] packets.
pub const NUMBERED_PAYLOAD: usize = 900;

/// The width and height [`numbered_video`] keyframes announce.
pub const NUMBERED_SIZE: (u16, u16) = (640, 360);

/// A plaintext VP8 (PT 96) video packet of `ssrc`: a whole keyframe in one packet
/// (RFC 7741 descriptor with the S bit, frame tag with the P bit clear, start code,
/// [`NUMBERED_SIZE`]), so a server that starts a subscriber on a keyframe can start
/// on any packet. Its payload ends with `index` (big-endian), so a receiver knows
/// which packet it got whatever the servers did to sequence numbers and SSRCs.
pub fn numbered_video(ssrc: u32, index: u32) -> Vec<u8> {
    let seq = index as u16;
    let mut p = rtp_packet(ssrc, seq, index.wrapping_mul(3000), 96, NUMBERED_PAYLOAD);
    let (w, h) = NUMBERED_SIZE;
    let vp8 = [
        0x10, // descriptor: S (start of partition 0), no extensions
        0x00, 0x00, 0x00, // frame tag: P = 0 (keyframe), version 0, shown
        0x9d, 0x01, 0x2a, // keyframe start code
    ];
    p[12..12 + vp8.len()].copy_from_slice(&vp8);
    p[12 + vp8.len()..12 + vp8.len() + 4].copy_from_slice(&[
        w.to_le_bytes()[0],
        w.to_le_bytes()[1],
        h.to_le_bytes()[0],
        h.to_le_bytes()[1],
    ]);
    let end = p.len();
    p[end - 4..].copy_from_slice(&index.to_be_bytes());
    p
}

/// The index [`numbered_video`] put at the end of `payload`.
fn index_of(payload: &[u8]) -> Option<u32> {
    let tail = payload.len().checked_sub(4).map(|at| &payload[at..])?;
    Some(u32::from_be_bytes(tail.try_into().ok()?))
}

/// The SSRCs the subscriber's answer announces for its video: the media SSRC
/// and its RTX SSRC when there is one.
pub fn video_ssrcs(answer: &str) -> anyhow::Result<(u32, Option<u32>)> {
    let sdp = cascade_core::sdp::parse(answer).context("the answer does not parse")?;
    sdp.media
        .iter()
        .find(|m| m.media_type == cascade_core::sdp::MediaType::Video)
        .and_then(|m| m.sender_ssrcs().first().copied())
        .context("no video SSRC in the answer")
}

/// How a [`VideoReceiver`] asks for what it misses.
#[derive(Debug, Clone, Copy)]
pub struct NackPolicy {
    /// Wait this long after a gap appears before the first NACK (reordering).
    pub first_after: Duration,
    /// Ask again for a packet still missing this long after the last request.
    pub retry_every: Duration,
    /// Requests per packet before giving up on it.
    pub max_requests: u32,
}

impl Default for NackPolicy {
    fn default() -> Self {
        // Chromium's order of magnitude: ask at once, again after about a round
        // trip (40 ms between servers plus processing), ten times at most.
        NackPolicy {
            first_after: Duration::from_millis(5),
            retry_every: Duration::from_millis(80),
            max_requests: 10,
        }
    }
}

/// What a [`VideoReceiver`] saw.
#[derive(Debug, Clone, Default)]
pub struct Reception {
    /// Distinct packets received (by [`numbered_video`] index), each with how.
    pub packets: BTreeMap<u32, Arrival>,
    /// Packets that came more than once.
    pub duplicates: u64,
    /// Sequence numbers asked for in NACKs (with repeats).
    pub nacked: u64,
    /// NACK packets sent.
    pub nack_packets: u64,
    /// Datagrams that were not readable video of this subscriber.
    pub other: u64,
}

/// How a packet reached the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// In the stream, first time.
    Original,
    /// As a retransmission on the media SSRC, after a NACK.
    Retransmitted,
    /// In an RTX packet (RFC 4588).
    Rtx,
}

impl Reception {
    /// Distinct packets with an index below `count`.
    pub fn received_below(&self, count: u32) -> usize {
        self.packets.range(..count).count()
    }

    /// Of those, how many came back after a NACK.
    pub fn recovered_below(&self, count: u32) -> usize {
        self.packets
            .range(..count)
            .filter(|(_, a)| **a != Arrival::Original)
            .count()
    }
}

/// Reads [`numbered_video`] packets a subscriber gets, optionally NACKing gaps.
#[derive(Debug)]
pub struct VideoReceiver {
    ssrc: u32,
    rtx_ssrc: Option<u32>,
    nack: Option<NackPolicy>,
    /// Subscriber sequence number minus index, once known.
    offset: Option<u16>,
    highest: Option<u32>,
    /// Missing index → (when it was found missing or last asked for, requests).
    missing: BTreeMap<u32, (Instant, u32)>,
    /// This receiver's RTCP SSRC.
    rtcp_ssrc: u32,
    seen: Reception,
}

impl VideoReceiver {
    /// A receiver for `peer`'s video, NACKing per `nack` (none when `None`).
    pub fn new(peer: &UdpPeer, nack: Option<NackPolicy>) -> anyhow::Result<Self> {
        let (ssrc, rtx_ssrc) = video_ssrcs(&peer.answer)?;
        Ok(VideoReceiver {
            ssrc,
            rtx_ssrc,
            nack,
            offset: None,
            highest: None,
            missing: BTreeMap::new(),
            rtcp_ssrc: rand::random(),
            seen: Reception::default(),
        })
    }

    /// Receives until `done` holds for what was received, or `deadline`, or no
    /// video for `idle` once some came; returns everything seen so far.
    pub fn run(
        &mut self,
        peer: &mut UdpPeer,
        deadline: Instant,
        idle: Duration,
        done: impl Fn(&Reception) -> bool,
    ) -> anyhow::Result<Reception> {
        peer.socket
            .set_read_timeout(Some(Duration::from_millis(5)))?;
        let mut buf = [0u8; 2048];
        let mut last_video = None::<Instant>;
        while !done(&self.seen) {
            let now = Instant::now();
            if now >= deadline || last_video.is_some_and(|t| now.duration_since(t) >= idle) {
                break;
            }
            if let Ok((n, _)) = peer.socket.recv_from(&mut buf)
                && self.handle(peer, &mut buf[..n])
            {
                last_video = Some(Instant::now());
            }
            self.send_nacks(peer, Instant::now())?;
        }
        Ok(self.seen.clone())
    }

    /// What was received so far.
    pub fn reception(&self) -> &Reception {
        &self.seen
    }

    /// Takes one datagram; true when it was video of this subscriber.
    fn handle(&mut self, peer: &mut UdpPeer, buf: &mut [u8]) -> bool {
        // RTP only (RFC 5761: RTCP packet types 192-223 sit where RTP's PT is).
        if buf.len() < 12 || !(128..192).contains(&buf[0]) || (192..224).contains(&buf[1]) {
            self.seen.other += 1;
            return false;
        }
        let Ok(len) = peer.rx.unprotect_rtp(buf) else {
            self.seen.other += 1;
            return false;
        };
        let Ok(h) = cascade_dataplane::rtp::parse(&buf[..len]) else {
            self.seen.other += 1;
            return false;
        };
        let payload = &buf[h.payload_range(len)];
        let (seq, index, arrival) = if h.ssrc == self.ssrc {
            let Some(index) = index_of(payload) else {
                self.seen.other += 1;
                return false;
            };
            let arrival = match self.missing.get(&index) {
                Some((_, requests)) if *requests > 0 => Arrival::Retransmitted,
                _ => Arrival::Original,
            };
            (h.sequence, index, arrival)
        } else if Some(h.ssrc) == self.rtx_ssrc {
            // RFC 4588: the original sequence number, then the original payload.
            let (Some(osn), Some(index)) = (payload.get(..2), index_of(payload)) else {
                self.seen.other += 1;
                return false;
            };
            (u16::from_be_bytes([osn[0], osn[1]]), index, Arrival::Rtx)
        } else {
            self.seen.other += 1;
            return false;
        };
        let offset = seq.wrapping_sub(index as u16);
        if self.offset.is_none() {
            self.offset = Some(offset);
        }
        if self.seen.packets.contains_key(&index) {
            self.seen.duplicates += 1;
            return true;
        }
        self.seen.packets.insert(index, arrival);
        self.missing.remove(&index);
        let now = Instant::now();
        let from = match self.highest {
            Some(h) if index > h => h + 1,
            Some(_) => index,
            // Everything before the first packet is missing too.
            None => 0,
        };
        for gap in from..index {
            if !self.seen.packets.contains_key(&gap) {
                self.missing.entry(gap).or_insert((now, 0));
            }
        }
        self.highest = Some(self.highest.map_or(index, |h| h.max(index)));
        true
    }

    /// Sends NACKs for what is missing and due, per the policy.
    fn send_nacks(&mut self, peer: &mut UdpPeer, now: Instant) -> anyhow::Result<()> {
        let (Some(policy), Some(offset)) = (self.nack, self.offset) else {
            return Ok(());
        };
        let mut due: Vec<u16> = Vec::new();
        self.missing.retain(|&index, (at, requests)| {
            let wait = if *requests == 0 {
                policy.first_after
            } else {
                policy.retry_every
            };
            if now.duration_since(*at) >= wait {
                if *requests >= policy.max_requests {
                    return false;
                }
                *requests += 1;
                *at = now;
                due.push((index as u16).wrapping_add(offset));
            }
            true
        });
        // Increasing (wrapping) order, as write_nack packs them; 64 per packet.
        for chunk in due.chunks(64) {
            let mut wire = [0u8; 512];
            let n = rtcp::write_nack(&mut wire, self.rtcp_ssrc, self.ssrc, chunk)?;
            let n = peer.tx.protect_rtcp(&mut wire, n)?;
            peer.socket.send_to(&wire[..n], peer.server)?;
            self.seen.nacked += chunk.len() as u64;
            self.seen.nack_packets += 1;
        }
        Ok(())
    }
}

/// One server-sent event: its `event:` name and its `data:` as JSON.
#[derive(Debug, Clone)]
pub struct ResourceEvent {
    pub event: String,
    pub data: serde_json::Value,
    /// When it was read.
    pub at: Instant,
}

/// `GET {resource}/events`, a `text/event-stream`, read event by event.
#[derive(Debug)]
pub struct ResourceEvents {
    response: reqwest::Response,
    buffer: String,
}

impl ResourceEvents {
    /// Opens the stream of `resource` (no token: the resource URL is the
    /// capability). The HTTP connection leaves from the calling thread's
    /// namespace.
    pub async fn open(resource: &str) -> anyhow::Result<Self> {
        // No overall timeout: the stream lasts as long as the resource.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .danger_accept_invalid_certs(true)
            .build()?;
        let url = format!("{resource}/events");
        let request = client
            .get(&url)
            .header("accept", "text/event-stream")
            .send();
        let response = tokio::time::timeout(Duration::from_secs(10), request)
            .await
            .with_context(|| format!("GET {url}: no answer within 10 s"))?
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if status != 200 || !kind.starts_with("text/event-stream") {
            let body = response.text().await.unwrap_or_default();
            bail!("GET {url}: {status} ({kind}): {body}");
        }
        Ok(ResourceEvents {
            response,
            buffer: String::new(),
        })
    }

    /// The next event, or `None` when the stream ended or `timeout` passed.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Option<ResourceEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(event) = self.take_event()? {
                return Ok(Some(event));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Err(_) => return Ok(None),
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(bytes))) => {
                    self.buffer
                        .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n"));
                }
                Ok(Err(e)) => return Err(e).context("reading the event stream"),
            }
        }
    }

    /// Parses one complete event out of the buffer (comments and events without
    /// data are skipped).
    fn take_event(&mut self) -> anyhow::Result<Option<ResourceEvent>> {
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            if data.is_empty() {
                continue;
            }
            let data = data.join("\n");
            let data = serde_json::from_str(&data)
                .with_context(|| format!("event {event:?} data is not JSON: {data}"))?;
            return Ok(Some(ResourceEvent {
                event,
                data,
                at: Instant::now(),
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn numbered_packets_are_keyframes_carrying_their_index() {
        let p = numbered_video(7, 0x0102_0304);
        let h = cascade_dataplane::rtp::parse(&p).unwrap();
        assert_eq!((h.ssrc, h.sequence, h.payload_type), (7, 0x0304, 96));
        let payload = &p[h.payload_range(p.len())];
        assert_eq!(index_of(payload), Some(0x0102_0304));
        assert!(cascade_dataplane::codec::vp8::keyframe_start(payload));
        assert_eq!(p.len(), 12 + NUMBERED_PAYLOAD);
    }

    #[test]
    fn host_addresses() {
        assert_eq!(host_ip(0), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(host_ip(2), Ipv4Addr::new(10, 88, 0, 3));
    }
}
