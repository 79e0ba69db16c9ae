//! Sessions on a real server through its HTTP interface: publish and subscribe with a
//! [`ClientPeer`] (ICE and DTLS over a UDP socket), DELETE of resources, and the
//! consent checks that keep idle sessions alive while the load runs.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cascade::unix_now;
use cascade_core::token::{Claims, Grant, TokenSecret, mint, mint_cluster};
use cascade_dataplane::srtp::{SrtpContext, SrtpProfile};
use cascade_peer::{ClientPeer, PeerRole};

/// How long ICE + DTLS may take for one peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer that finished ICE and DTLS.
pub(crate) struct Connected {
    pub(crate) socket: UdpSocket,
    /// Protects what this peer sends.
    pub(crate) tx: SrtpContext,
    /// Unprotects what the server sends.
    pub(crate) rx: SrtpContext,
    /// The resource URL (absolute).
    pub(crate) resource: String,
    pub(crate) peer: ClientPeer,
}

/// The HTTP side of one server: base URL, token secret, SRTP profile to offer.
#[derive(Clone)]
pub(crate) struct Signaller {
    http: reqwest::Client,
    base: String,
    secret: Arc<TokenSecret>,
    profile: SrtpProfile,
    bind_ip: IpAddr,
    /// Offers carry the transport-cc extension and feedback (`--twcc`); with
    /// `simulcast`, the publishers' only (see [`Self::connect`]).
    twcc: bool,
    /// Publishers offer three simulcast layers (`--simulcast`).
    simulcast: bool,
}

/// The SSRCs of a simulcast publisher's layers `q`, `h`, `f` (lowest first): the top
/// layer is its video SSRC (even), the others derived from it.
pub(crate) fn layer_ssrcs(video_ssrc: u32) -> [u32; 3] {
    [video_ssrc ^ 0x20, video_ssrc ^ 0x10, video_ssrc]
}

impl Signaller {
    pub(crate) fn new(base: &str, secret: &str, profile: SrtpProfile, bind_ip: IpAddr) -> Self {
        Self {
            http: http_client(),
            base: base.trim_end_matches('/').to_string(),
            secret: Arc::new(TokenSecret::parse(secret)),
            profile,
            bind_ip,
            twcc: false,
            simulcast: false,
        }
    }

    /// Offers with transport-cc (`twcc`) and publishers with three simulcast layers
    /// (`simulcast`, SSRCs from [`layer_ssrcs`]).
    pub(crate) fn set_offer_options(&mut self, twcc: bool, simulcast: bool) {
        self.twcc = twcc;
        self.simulcast = simulcast;
    }

    /// Publishers offer transport-cc.
    pub(crate) fn twcc(&self) -> bool {
        self.twcc
    }

    /// Publishers offer simulcast.
    pub(crate) fn simulcast(&self) -> bool {
        self.simulcast
    }

    pub(crate) fn token(&self, room: &str) -> anyhow::Result<String> {
        let now = unix_now();
        Ok(mint(
            &self.secret,
            &Claims {
                sub: "bench".into(),
                room: room.into(),
                grants: vec![Grant::Publish, Grant::Subscribe],
                exp: now + 6 * 3600,
                iat: now,
            },
        )?)
    }

    /// Publishes audio + video with the given SSRCs in `room`.
    pub(crate) async fn publish(
        &self,
        room: &str,
        token: &str,
        audio_ssrc: u32,
        video_ssrc: u32,
    ) -> anyhow::Result<Connected> {
        let url = format!("{}/rtc/v1/rooms/{room}/publish", self.base);
        self.connect(
            url,
            token,
            PeerRole::Publisher {
                audio_ssrc,
                video_ssrc,
            },
        )
        .await
    }

    /// Subscribes to one publication (its resource URL) in `room`.
    pub(crate) async fn subscribe(
        &self,
        room: &str,
        token: &str,
        resource: &str,
    ) -> anyhow::Result<Connected> {
        let url = format!(
            "{}/rtc/v1/rooms/{room}/subscribe?resource={}",
            self.base,
            percent_encode(resource)
        );
        self.connect(url, token, PeerRole::Subscriber).await
    }

    /// `POST /rtc/v1/rooms/{room}/subscribe?{query}` (e.g. `mode=mcu`), audio and
    /// video.
    pub(crate) async fn subscribe_with(
        &self,
        room: &str,
        token: &str,
        query: &str,
    ) -> anyhow::Result<Connected> {
        let url = format!("{}/rtc/v1/rooms/{room}/subscribe?{query}", self.base);
        self.connect(url, token, PeerRole::Subscriber).await
    }

    /// `DELETE {resource}`.
    pub(crate) async fn delete(&self, resource: &str, token: &str) -> anyhow::Result<()> {
        let resp = self.http.delete(resource).bearer_auth(token).send().await?;
        if !resp.status().is_success() {
            bail!("DELETE {resource}: {}", resp.status());
        }
        Ok(())
    }

    /// `POST {resource}/relay` as a cascade edge would, with a cluster token: the
    /// origin then copies the publication's packets to `relay_addr`.
    pub(crate) async fn open_relay(
        &self,
        resource: &str,
        cluster_token: &str,
        relay_addr: SocketAddr,
    ) -> anyhow::Result<cascade_core::sfu::RelayAnswer> {
        let url = format!("{resource}/relay");
        let resp = self
            .http
            .post(&url)
            .bearer_auth(cluster_token)
            .json(&serde_json::json!({ "relay_addr": relay_addr }))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if status.as_u16() != 201 {
            bail!("POST {url}: {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("relay answer of {url}: {body}"))
    }

    /// `GET /rtc/v1/rooms/{room}`: the room's publications.
    pub(crate) async fn room(&self, room: &str, token: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/rtc/v1/rooms/{room}", self.base);
        let resp = self.http.get(&url).bearer_auth(token).send().await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {url}: {body}"))
    }

    /// `GET /metrics`.
    pub(crate) async fn metrics(&self) -> anyhow::Result<String> {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .error_for_status()?;
        Ok(resp.text().await?)
    }

    async fn connect(&self, url: String, token: &str, role: PeerRole) -> anyhow::Result<Connected> {
        let mut peer = ClientPeer::new(role, &[self.profile])?;
        // A subscriber that negotiates transport-cc gets the server's estimate, which
        // starts at 300 kbps, is capped at 20 Mbps and only grows with feedback the
        // bench does not send: its layer would be paused at bench rates. With
        // simulcast, TWCC is therefore the publishers' only.
        let subscriber = matches!(role, PeerRole::Subscriber);
        if self.twcc && !(subscriber && self.simulcast) {
            peer = peer.twcc();
        }
        if let (true, PeerRole::Publisher { video_ssrc, .. }) = (self.simulcast, role) {
            peer = peer.simulcast(layer_ssrcs(video_ssrc));
        }
        let resp = self
            .http
            .post(&url)
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
        if status.as_u16() != 201 {
            bail!("POST {url}: {status}: {answer}");
        }
        let location = location.context("201 without Location")?;
        let resource = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let start = Instant::now();
        peer.accept_answer(&answer, start)?;
        let socket = tokio::net::UdpSocket::bind(SocketAddr::new(self.bind_ip, 0)).await?;
        let mut buf = vec![0u8; 2048];
        while peer.keys().is_none() {
            let now = Instant::now();
            if now > start + CONNECT_TIMEOUT {
                bail!("{url}: ICE/DTLS did not complete in {CONNECT_TIMEOUT:?}");
            }
            while let Some((dest, data)) = peer.poll_transmit(Instant::now()) {
                socket.send_to(&data, dest).await?;
            }
            let wait = peer
                .poll_timeout()
                .map_or(Duration::from_millis(20), |t| {
                    t.saturating_duration_since(now)
                })
                .clamp(Duration::from_millis(1), Duration::from_millis(50));
            if let Ok(Ok((n, _))) = tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
                peer.handle_receive(Instant::now(), &buf[..n])?;
            }
        }
        let keys = peer.keys().context("keys")?;
        let socket = socket.into_std()?;
        socket.connect(keys.server)?;
        Ok(Connected {
            socket,
            tx: SrtpContext::new(&keys.tx)?,
            rx: SrtpContext::new(&keys.rx)?,
            resource,
            peer,
        })
    }
}

/// A cluster service token (audience `cascade-cluster`) signed with `cluster_secret`,
/// valid for six hours.
pub(crate) fn cluster_token(cluster_secret: &str) -> anyhow::Result<String> {
    Ok(mint_cluster(
        &TokenSecret::parse(cluster_secret),
        "cascade-bench",
        unix_now(),
        6 * 3600,
    )?)
}

/// An HTTP client with bounded timeouts and no proxy (every server is local).
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .no_proxy()
        .build()
        .expect("building an HTTP client")
}

/// Percent-encodes a URL for use as a query value.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A peer whose consent checks the keepalive thread sends.
pub(crate) trait Consent: Send {
    fn poll(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)>;
}

impl Consent for ClientPeer {
    fn poll(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        self.poll_transmit(now)
    }
}

type Peers = Arc<Mutex<Vec<(Box<dyn Consent>, UdpSocket)>>>;

/// Keeps sessions alive: calls `poll_transmit` on every peer a few times a second
/// (consent checks every 5 s; the server drops a session after 30 s without one) and
/// sends what it returns from a clone of the peer's socket.
pub(crate) struct Keepalive {
    peers: Peers,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keepalive {
    pub(crate) fn start() -> Self {
        let peers: Peers = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let peers = peers.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("keepalive".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        {
                            let mut peers = peers.lock().unwrap_or_else(|p| p.into_inner());
                            let now = Instant::now();
                            for (peer, sock) in peers.iter_mut() {
                                while let Some((dest, data)) = peer.poll(now) {
                                    let _ = sock.send_to(&data, dest);
                                }
                            }
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                })
                .expect("spawning the keepalive thread")
        };
        Self {
            peers,
            stop,
            thread: Some(thread),
        }
    }

    /// Adds a connected peer; `socket` is a clone of its socket.
    pub(crate) fn add(&self, peer: impl Consent + 'static, socket: UdpSocket) {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Box::new(peer), socket));
    }

    /// Forgets every peer (their sessions are being deleted).
    pub(crate) fn clear(&self) {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
