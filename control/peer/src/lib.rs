//! A client-side WebRTC peer, sans-IO, for the load generator and tests: it writes an
//! offer (sendonly or recvonly audio + video), reads the server's answer, runs the
//! controlling side of ICE and the DTLS client, and hands out the SRTP keys. It is
//! what a browser does, reduced to what a server needs to be exercised; it is not used
//! by the server itself.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_command::keys::{SrtpKeyingMaterial, SrtpProfile};
use rand::Rng;

use cascade_core::cert::{DtlsCertificate, Fingerprint};
use cascade_core::dtls::{DtlsEndpoint, DtlsEvent, DtlsRole};
use cascade_core::ice::IceCredentials;
use cascade_core::stun;

/// How often a connectivity check is repeated until it succeeds, then as consent.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);

/// What the peer sends or receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// Sends audio (opus, PT 111) and video (VP8, PT 96, RTX 97).
    Publisher { audio_ssrc: u32, video_ssrc: u32 },
    /// Receives one audio and one video track.
    Subscriber,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("answer: {0}")]
    Answer(String),
    #[error("DTLS: {0}")]
    Dtls(String),
}

/// Keys and addresses of a connected peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerKeys {
    pub server: SocketAddr,
    /// Protects what this peer sends.
    pub tx: SrtpKeyingMaterial,
    /// Unprotects what the server sends.
    pub rx: SrtpKeyingMaterial,
}

/// The client side of one peer connection.
pub struct ClientPeer {
    role: PeerRole,
    cert: DtlsCertificate,
    local_ice: IceCredentials,
    profiles: Vec<SrtpProfile>,
    remote_ice: Option<IceCredentials>,
    server: Option<SocketAddr>,
    dtls: Option<DtlsEndpoint>,
    checked: bool,
    next_check: Option<Instant>,
    keys: Option<PeerKeys>,
    /// Offer `a=setup:passive` and be the DTLS server (as the FFmpeg WHIP muxer does).
    passive: bool,
    /// Offer the transport-wide sequence number extension and `transport-cc` feedback.
    twcc: bool,
    /// A publisher's video as three simulcast layers `q`, `h`, `f` with these SSRCs
    /// (declared by `a=ssrc-group:SIM`); its `video_ssrc` is then unused.
    simulcast: Option<[u32; 3]>,
}

/// The transport-wide congestion control header extension (its `a=extmap` URI).
pub const TWCC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// The rtp-stream-id header extension (RFC 8852), needed to offer simulcast.
pub const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// The rids of [`ClientPeer::simulcast`]'s layers, lowest first.
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

impl std::fmt::Debug for ClientPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPeer")
            .field("role", &self.role)
            .field("server", &self.server)
            .field("connected", &self.keys.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientPeer {
    /// A peer offering the given SRTP profiles (GCM and CM when empty).
    pub fn new(role: PeerRole, profiles: &[SrtpProfile]) -> Result<Self, PeerError> {
        Ok(Self {
            role,
            cert: DtlsCertificate::generate(unix_now())
                .map_err(|e| PeerError::Dtls(e.to_string()))?,
            local_ice: IceCredentials::random(&mut rand::rng()),
            profiles: if profiles.is_empty() {
                vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80]
            } else {
                profiles.to_vec()
            },
            remote_ice: None,
            server: None,
            dtls: None,
            checked: false,
            next_check: None,
            keys: None,
            passive: false,
            twcc: false,
            simulcast: None,
        })
    }

    /// Offers `a=setup:passive`: the server must then be the DTLS client.
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    /// Offers the transport-wide congestion control extension (`a=extmap` with
    /// [`TWCC_URI`] and `a=rtcp-fb:<pt> transport-cc` on both m-lines): the server then
    /// stamps transport sequence numbers on what it sends this peer and sends
    /// transport feedback for what it receives from it.
    pub fn twcc(mut self) -> Self {
        self.twcc = true;
        self
    }

    /// A publisher offers its video as three simulcast layers (rids `q`, `h`, `f`,
    /// `a=simulcast:send q;h;f`) whose SSRCs `ssrcs` are declared in that order by
    /// `a=ssrc-group:SIM`, without RTX. No effect on a subscriber.
    pub fn simulcast(mut self, ssrcs: [u32; 3]) -> Self {
        self.simulcast = Some(ssrcs);
        self
    }

    /// The SDP offer, as a browser would write it.
    pub fn offer(&self) -> String {
        let session_id: u32 = rand::rng().random();
        let mut s = format!(
            "v=0\r\no=- {session_id} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             a=group:BUNDLE 0 1\r\na=msid-semantic: WMS *\r\n"
        );
        let (dir, audio_ssrc, video_ssrc) = match self.role {
            PeerRole::Publisher {
                audio_ssrc,
                video_ssrc,
            } => ("sendonly", Some(audio_ssrc), Some(video_ssrc)),
            PeerRole::Subscriber => ("recvonly", None, None),
        };
        let common = |mid: &str| {
            format!(
                "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n\
                 a=ice-options:trickle\r\na=fingerprint:{}\r\na=setup:{}\r\na=mid:{mid}\r\n\
                 a={dir}\r\na=rtcp-mux\r\na=rtcp-rsize\r\n",
                self.local_ice.ufrag,
                self.local_ice.pwd,
                self.cert.fingerprint().to_sdp(),
                if self.passive { "passive" } else { "actpass" },
            )
        };
        let twcc_ext = if self.twcc {
            format!("a=extmap:3 {TWCC_URI}\r\n")
        } else {
            String::new()
        };
        let twcc_fb = |pt: u8| {
            if self.twcc {
                format!("a=rtcp-fb:{pt} transport-cc\r\n")
            } else {
                String::new()
            }
        };
        s += "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        s += &common("0");
        s += &twcc_ext;
        s += "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n";
        s += &twcc_fb(111);
        if let Some(ssrc) = audio_ssrc {
            s += &format!("a=msid:load audio\r\na=ssrc:{ssrc} cname:load\r\n");
        }
        s += "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n";
        s += &common("1");
        s += &twcc_ext;
        let layers = self.simulcast.filter(|_| video_ssrc.is_some());
        if layers.is_some() {
            s += &format!("a=extmap:4 {RID_URI}\r\n");
        }
        s += "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n\
              a=rtcp-fb:96 ccm fir\r\n";
        s += &twcc_fb(96);
        s += "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n";
        if let Some(ssrcs) = layers {
            for rid in SIMULCAST_RIDS {
                s += &format!("a=rid:{rid} send\r\n");
            }
            s += &format!("a=simulcast:send {}\r\n", SIMULCAST_RIDS.join(";"));
            s += &format!(
                "a=msid:load video\r\na=ssrc-group:SIM {} {} {}\r\n",
                ssrcs[0], ssrcs[1], ssrcs[2]
            );
            for ssrc in ssrcs {
                s += &format!("a=ssrc:{ssrc} cname:load\r\n");
            }
        } else if let Some(ssrc) = video_ssrc {
            let rtx = ssrc.wrapping_add(1);
            s += &format!(
                "a=msid:load video\r\na=ssrc-group:FID {ssrc} {rtx}\r\n\
                 a=ssrc:{ssrc} cname:load\r\na=ssrc:{rtx} cname:load\r\n"
            );
        }
        s
    }

    /// Reads the server's answer: ICE credentials, fingerprint, host candidate.
    pub fn accept_answer(&mut self, answer: &str, now: Instant) -> Result<(), PeerError> {
        let sdp = cascade_core::sdp::parse(answer).map_err(|e| PeerError::Answer(e.to_string()))?;
        let (ufrag, pwd) = sdp
            .ice_credentials()
            .map_err(|e| PeerError::Answer(e.to_string()))?;
        let fingerprint = sdp
            .fingerprint()
            .map_err(|e| PeerError::Answer(e.to_string()))?;
        let fingerprint =
            Fingerprint::parse_sdp(&fingerprint).map_err(|e| PeerError::Answer(e.to_string()))?;
        let server = sdp
            .media
            .iter()
            .flat_map(|m| m.candidates.iter())
            .find_map(|c| host_candidate(c))
            .ok_or_else(|| PeerError::Answer("no host candidate".into()))?;
        let dtls = DtlsEndpoint::with_profiles(
            &self.cert,
            if self.passive {
                DtlsRole::Server
            } else {
                DtlsRole::Client
            },
            fingerprint,
            &self.profiles,
            now,
        )
        .map_err(|e| PeerError::Dtls(e.to_string()))?;
        self.remote_ice = Some(IceCredentials { ufrag, pwd });
        self.server = Some(server);
        self.dtls = Some(dtls);
        self.next_check = Some(now);
        Ok(())
    }

    /// The next datagram to send to the server, if any is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let server = self.server?;
        if self.next_check.is_some_and(|t| t <= now) {
            let remote = self.remote_ice.as_ref()?;
            let username = format!("{}:{}", remote.ufrag, self.local_ice.ufrag);
            let req = stun::binding_request(
                stun::random_transaction_id(&mut rand::rng()),
                &username,
                0x6e7f_00ff,
                rand::rng().random(),
                true,
                remote.pwd.as_bytes(),
            )
            .ok()?;
            self.next_check = Some(
                now + if self.checked {
                    CONSENT_INTERVAL
                } else {
                    CHECK_INTERVAL
                },
            );
            return Some((server, req));
        }
        // DTLS starts once the connectivity check succeeded.
        if self.checked
            && let Some(d) = self.dtls.as_mut()
        {
            let _ = d.handle_timeout(now);
            if let Some(data) = d.poll_transmit() {
                return Some((server, data));
            }
        }
        None
    }

    /// When `poll_transmit` may have something next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let dtls = self.dtls.as_ref().and_then(DtlsEndpoint::poll_timeout);
        [self.next_check, dtls].into_iter().flatten().min()
    }

    /// A STUN or DTLS datagram from the server.
    pub fn handle_receive(&mut self, now: Instant, data: &[u8]) -> Result<(), PeerError> {
        match data.first() {
            Some(0..=3) => {
                if let (Ok(msg), Some(remote)) = (stun::parse(data), self.remote_ice.as_ref())
                    && msg.class == stun::StunClass::SuccessResponse
                    && msg.verify_integrity(remote.pwd.as_bytes())
                    && !self.checked
                {
                    self.checked = true;
                    self.next_check = Some(now + CONSENT_INTERVAL);
                }
            }
            Some(20..=63) => {
                if let Some(d) = self.dtls.as_mut() {
                    d.handle_receive(now, data)
                        .map_err(|e| PeerError::Dtls(e.to_string()))?;
                    while let Some(ev) = d.poll_event() {
                        if let DtlsEvent::Connected { local, remote, .. } = ev
                            && let Some(server) = self.server
                        {
                            self.keys = Some(PeerKeys {
                                server,
                                tx: local,
                                rx: remote,
                            });
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Keys once ICE and DTLS are done.
    pub fn keys(&self) -> Option<PeerKeys> {
        self.keys
    }
}

/// `1 1 udp 2130706431 127.0.0.1 8443 typ host` → 127.0.0.1:8443.
fn host_candidate(c: &str) -> Option<SocketAddr> {
    let f: Vec<&str> = c.split_whitespace().collect();
    let ip = f.get(4)?.parse().ok()?;
    let port = f.get(5)?.parse().ok()?;
    (f.get(7) == Some(&"host")).then_some(SocketAddr::new(ip, port))
}

/// Seconds since the Unix epoch (the issue time of the peer's certificate).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
