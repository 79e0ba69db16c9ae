//! Real peers over UDP for end-to-end tests: a [`ClientPeer`] driven through the HTTP
//! interface and a loopback socket until ICE and DTLS are done, then SRTP contexts to
//! send and receive media like a browser would; and a [`LivePeer`] that keeps its
//! ICE consent fresh on a thread of its own until it is killed.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cascade_dataplane::srtp::SrtpContext;
use cascade_peer::{ClientPeer, PeerRole};

use crate::{ServerProcess, http_client};

/// A connected peer: its socket, SRTP contexts and resource URL.
pub struct UdpPeer {
    pub socket: UdpSocket,
    pub server: std::net::SocketAddr,
    /// Protects what this peer sends.
    pub tx: SrtpContext,
    /// Unprotects what the server sends.
    pub rx: SrtpContext,
    pub resource: String,
    pub answer: String,
}

impl std::fmt::Debug for UdpPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpPeer")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// POSTs the peer's offer to `path` (e.g. `/rtc/v1/rooms/r/publish`) and runs ICE and
/// DTLS over a loopback socket until keys exist (10 s at most).
pub async fn connect(
    server: &ServerProcess,
    path: &str,
    token: &str,
    role: PeerRole,
) -> anyhow::Result<UdpPeer> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    connect_via(&server.http_base, socket, path, token, role).await
}

/// A plaintext RTP packet: VP8-ish payload type 96, `len` payload bytes.
pub fn rtp_packet(ssrc: u32, seq: u16, ts: u32, pt: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + len + 16);
    p.extend_from_slice(&[0x80, pt]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..len).map(|i| (i as u8).wrapping_add(seq as u8)));
    p
}

impl UdpPeer {
    /// Protects and sends one RTP packet to the server.
    pub fn send_rtp(&mut self, plain: &[u8]) -> anyhow::Result<()> {
        let mut buf = vec![0u8; plain.len() + 32];
        buf[..plain.len()].copy_from_slice(plain);
        let n = self.tx.protect_rtp(&mut buf, plain.len())?;
        self.socket.send_to(&buf[..n], self.server)?;
        Ok(())
    }
}

/// Like [`connect`], against the server at `http_base` and over `socket`, which the
/// caller bound wherever the peer should be (e.g. inside a network namespace). The
/// HTTP request leaves from the calling thread's network namespace.
pub async fn connect_via(
    http_base: &str,
    socket: UdpSocket,
    path: &str,
    token: &str,
    role: PeerRole,
) -> anyhow::Result<UdpPeer> {
    Ok(connect_peer(http_base, socket, path, token, role).await?.0)
}

/// Like [`connect`], but once the server created the resource, tells `created` its
/// URL and waits `hold` before starting ICE: a peer whose connectivity checks come
/// late (a slow browser, a lossy first hop).
pub async fn connect_late(
    server: &ServerProcess,
    path: &str,
    token: &str,
    role: PeerRole,
    hold: Duration,
    created: impl FnOnce(&str) + Send,
) -> anyhow::Result<UdpPeer> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let late = Late { hold, created };
    Ok(
        connect_peer_late(&server.http_base, socket, path, token, role, Some(late))
            .await?
            .0,
    )
}

/// What [`connect_late`] does between the answer and ICE.
struct Late<F> {
    hold: Duration,
    created: F,
}

/// [`connect_via`], also returning the client peer (to keep its consent fresh).
async fn connect_peer(
    http_base: &str,
    socket: UdpSocket,
    path: &str,
    token: &str,
    role: PeerRole,
) -> anyhow::Result<(UdpPeer, ClientPeer)> {
    connect_peer_late::<fn(&str)>(http_base, socket, path, token, role, None).await
}

async fn connect_peer_late<F: FnOnce(&str)>(
    http_base: &str,
    socket: UdpSocket,
    path: &str,
    token: &str,
    role: PeerRole,
    late: Option<Late<F>>,
) -> anyhow::Result<(UdpPeer, ClientPeer)> {
    let mut peer = ClientPeer::new(role, &[])?;
    let resp = http_client()
        .post(format!("{http_base}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(peer.offer())
        .send()
        .await?;
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let answer = resp.text().await?;
    if status != 201 {
        bail!("{path}: {status}: {answer}");
    }
    let resource = location.context("201 without Location")?;
    if let Some(late) = late {
        (late.created)(&resource);
        tokio::time::sleep(late.hold).await;
    }
    let udp = complete_connect(&mut peer, socket, path, answer, resource)?;
    Ok((udp, peer))
}

/// Runs ICE and DTLS for `peer`, whose offer the server answered with `answer` and
/// `resource` (over any HTTP version), over `socket` until keys exist (10 s at most).
pub fn complete_connect(
    peer: &mut ClientPeer,
    socket: UdpSocket,
    path: &str,
    answer: String,
    resource: String,
) -> anyhow::Result<UdpPeer> {
    let now = Instant::now();
    peer.accept_answer(&answer, now)?;
    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    // A peer that reads in bursts (a test thread) must not lose what the server sends
    // while it is busy; best effort, as it needs root.
    let _ = crate::netns::grow_receive_buffer(&socket, 8 << 20);
    let deadline = now + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while peer.keys().is_none() {
        if Instant::now() > deadline {
            bail!("{path}: ICE/DTLS did not complete in 10 s");
        }
        while let Some((dest, data)) = peer.poll_transmit(Instant::now()) {
            socket.send_to(&data, dest)?;
        }
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            peer.handle_receive(Instant::now(), &buf[..n])?;
        }
    }
    let keys = peer.keys().context("keys")?;
    let udp = UdpPeer {
        socket,
        server: keys.server,
        tx: SrtpContext::new(&keys.tx)?,
        rx: SrtpContext::new(&keys.rx)?,
        resource,
        answer,
    };
    Ok(udp)
}

/// A connected peer that lives as a browser does: a thread of its own sends ICE
/// consent checks (RFC 7675, every few seconds) and, for a publisher, paced
/// numbered video ([`crate::cascade::numbered_video`], 100 packets/s), and counts
/// the RTP packets it decrypts. [`LivePeer::kill`] (or dropping it) stops it at once
/// as a killed process stops: no `DELETE`, no DTLS close alert, its socket closed.
pub struct LivePeer {
    pub resource: String,
    pub answer: String,
    /// Where its socket was bound.
    pub local_addr: std::net::SocketAddr,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for LivePeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePeer")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl LivePeer {
    /// Connects like [`connect_from`] (the socket bound to `bind` in the calling
    /// thread's namespace); `video_ssrc`: the publisher's video SSRC to send on.
    pub async fn connect_from(
        http_base: &str,
        bind: std::net::SocketAddr,
        path: &str,
        token: &str,
        role: PeerRole,
        video_ssrc: Option<u32>,
    ) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
        let (udp, peer) = connect_peer(http_base, socket, path, token, role).await?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let resource = udp.resource.clone();
        let answer = udp.answer.clone();
        let local_addr = udp.socket.local_addr()?;
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::Builder::new()
                .name("live-peer".into())
                .spawn(move || live(udp, peer, video_ssrc, &received, &stop))?
        };
        Ok(LivePeer {
            resource,
            answer,
            local_addr,
            received,
            stop,
            thread: Some(thread),
        })
    }

    /// RTP packets decrypted so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Stops everything at once and closes the socket; returns when it is closed.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LivePeer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn live(
    mut udp: UdpPeer,
    mut peer: ClientPeer,
    video_ssrc: Option<u32>,
    received: &AtomicU64,
    stop: &AtomicBool,
) {
    let _ = udp.socket.set_read_timeout(Some(Duration::from_millis(2)));
    let mut buf = [0u8; 2048];
    let mut index = 0u32;
    let mut next_video = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while let Some((dest, data)) = peer.poll_transmit(now) {
            let _ = udp.socket.send_to(&data, dest);
        }
        if let Some(ssrc) = video_ssrc
            && now >= next_video
        {
            let _ = udp.send_rtp(&crate::cascade::numbered_video(ssrc, index));
            index += 1;
            next_video += Duration::from_millis(10);
        }
        if let Ok((n, _)) = udp.socket.recv_from(&mut buf) {
            let first = buf[0];
            if first <= 3 {
                let _ = peer.handle_receive(now, &buf[..n]);
            } else if (128..192).contains(&first)
                && !(192..224).contains(&buf[1])
                && udp.rx.unprotect_rtp(&mut buf[..n]).is_ok()
            {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// [`connect_via`] over a fresh socket bound to `bind` (in the calling thread's
/// network namespace).
pub async fn connect_from(
    http_base: &str,
    bind: std::net::SocketAddr,
    path: &str,
    token: &str,
    role: PeerRole,
) -> anyhow::Result<UdpPeer> {
    let socket = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
    connect_via(http_base, socket, path, token, role).await
}

/// The SRTP keys of a relay answer (`POST {resource}/relay`): its `srtp` object's
/// `profile`, `key` and `salt` (hex).
pub fn relay_keys(
    answer: &serde_json::Value,
) -> anyhow::Result<cascade_dataplane::srtp::SrtpKeyingMaterial> {
    use cascade_dataplane::srtp::{SrtpKeyingMaterial, SrtpProfile};
    let field = |name: &str| {
        answer["srtp"][name]
            .as_str()
            .with_context(|| format!("relay answer without srtp.{name}: {answer}"))
    };
    let profile = field("profile")?;
    let profile = SrtpProfile::from_openssl_name(profile)
        .with_context(|| format!("unknown SRTP profile {profile:?}"))?;
    let hex = |s: &str| -> anyhow::Result<Vec<u8>> {
        anyhow::ensure!(s.len().is_multiple_of(2) && s.is_ascii(), "not hex: {s:?}");
        (0..s.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&s[i..i + 2], 16).with_context(|| format!("not hex: {s:?}"))
            })
            .collect()
    };
    SrtpKeyingMaterial::new(profile, &hex(field("key")?)?, &hex(field("salt")?)?)
        .context("relay keys of the wrong length for their profile")
}
