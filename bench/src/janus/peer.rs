//! A client WebRTC peer, sans-IO, that can either offer (publish) or answer an offer
//! (subscribe to a server that offers, as Janus does), and takes whichever DTLS role
//! the SDP gives it. It runs the controlling side of ICE (the server is ICE-lite),
//! answers the server's own checks, and hands out the SRTP keys.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cascade_core::cert::{DtlsCertificate, Fingerprint};
use cascade_core::dtls::{DtlsEndpoint, DtlsEvent, DtlsRole};
use cascade_core::ice::IceCredentials;
use cascade_core::sdp::{self, MediaType, Setup};
use cascade_core::stun;
use cascade_dataplane::srtp::{SrtpKeyingMaterial, SrtpProfile};

const CHECK_INTERVAL: Duration = Duration::from_millis(200);
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);

/// Keys of a connected peer: `tx` protects what it sends, `rx` unprotects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys {
    pub(crate) server: SocketAddr,
    pub(crate) tx: SrtpKeyingMaterial,
    pub(crate) rx: SrtpKeyingMaterial,
}

pub(crate) struct FlexPeer {
    cert: DtlsCertificate,
    ice: IceCredentials,
    profiles: Vec<SrtpProfile>,
    /// Only candidates of this address are used.
    server_ip: IpAddr,
    remote_ice: Option<IceCredentials>,
    server: Option<SocketAddr>,
    dtls: Option<DtlsEndpoint>,
    checked: bool,
    next_check: Option<Instant>,
    keys: Option<Keys>,
    transmit: VecDeque<Vec<u8>>,
}

impl FlexPeer {
    pub(crate) fn new(profiles: &[SrtpProfile], server_ip: IpAddr) -> anyhow::Result<Self> {
        Ok(Self {
            cert: DtlsCertificate::generate(cascade::unix_now())?,
            ice: IceCredentials::random(&mut rand::rng()),
            profiles: profiles.to_vec(),
            server_ip,
            remote_ice: None,
            server: None,
            dtls: None,
            checked: false,
            next_check: None,
            keys: None,
            transmit: VecDeque::new(),
        })
    }

    fn transport_lines(&self, mid: &str, dir: &str, setup: &str) -> String {
        format!(
            "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n\
             a=fingerprint:{}\r\na=setup:{setup}\r\na=mid:{mid}\r\na={dir}\r\na=rtcp-mux\r\n",
            self.ice.ufrag,
            self.ice.pwd,
            self.cert.fingerprint().to_sdp()
        )
    }

    /// A sendonly offer: opus (PT 111) with `audio_ssrc`, VP8 (PT 96) with `video_ssrc`.
    pub(crate) fn publisher_offer(&self, audio_ssrc: u32, video_ssrc: u32) -> String {
        let id: u32 = rand::random();
        let mut s = format!(
            "v=0\r\no=- {id} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             a=group:BUNDLE 0 1\r\na=msid-semantic: WMS load\r\n"
        );
        s += "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        s += &self.transport_lines("0", "sendonly", "actpass");
        let _ = write!(
            s,
            "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
             a=msid:load audio\r\na=ssrc:{audio_ssrc} cname:load\r\n\
             a=ssrc:{audio_ssrc} msid:load audio\r\n"
        );
        s += "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
        s += &self.transport_lines("1", "sendonly", "actpass");
        let _ = write!(
            s,
            "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n\
             a=msid:load video\r\na=ssrc:{video_ssrc} cname:load\r\n\
             a=ssrc:{video_ssrc} msid:load video\r\n"
        );
        s
    }

    /// Reads the answer to [`Self::publisher_offer`].
    pub(crate) fn accept_answer(&mut self, answer: &str, now: Instant) -> anyhow::Result<()> {
        let sdp = sdp::parse(answer).context("parsing the answer")?;
        // Our offer said actpass: the answerer chose.
        let role = match sdp.setup() {
            Some(Setup::Active) => DtlsRole::Server,
            _ => DtlsRole::Client,
        };
        self.remote(&sdp, role, now)
    }

    /// Answers a server's offer with recvonly opus and VP8 (other m-lines rejected).
    pub(crate) fn answer_offer(&mut self, offer: &str, now: Instant) -> anyhow::Result<String> {
        let sdp = sdp::parse(offer).context("parsing the offer")?;
        let id: u32 = rand::random();
        let mut body = String::new();
        let mut mids = Vec::new();
        for m in &sdp.media {
            let mid = m.mid.clone().unwrap_or_default();
            let want = match m.media_type {
                MediaType::Audio => "opus",
                MediaType::Video => "vp8",
                _ => "",
            };
            let codec = m
                .codecs
                .iter()
                .find(|c| !want.is_empty() && c.name.eq_ignore_ascii_case(want));
            match codec {
                Some(c) if m.port != 0 => {
                    let kind = m.media_type.as_str();
                    let _ = write!(body, "m={kind} 9 UDP/TLS/RTP/SAVPF {}\r\n", c.payload_type);
                    body += &self.transport_lines(&mid, "recvonly", "active");
                    let channels = c.channels.map(|n| format!("/{n}")).unwrap_or_default();
                    let _ = write!(
                        body,
                        "a=rtpmap:{} {}/{}{channels}\r\n",
                        c.payload_type, c.name, c.clock_rate
                    );
                    if let Some(f) = &c.fmtp {
                        let _ = write!(body, "a=fmtp:{} {f}\r\n", c.payload_type);
                    }
                    mids.push(mid);
                }
                _ => {
                    let _ = write!(
                        body,
                        "m={} 0 {} {}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na=inactive\r\n",
                        m.media_type.as_str(),
                        m.protocol,
                        m.formats.first().map_or("0", String::as_str)
                    );
                }
            }
        }
        if mids.is_empty() {
            bail!("the offer has no opus or VP8 m-line");
        }
        // The offerer said actpass (or passive): we connect.
        self.remote(&sdp, DtlsRole::Client, now)?;
        Ok(format!(
            "v=0\r\no=- {id} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n\
             a=msid-semantic: WMS *\r\n{body}",
            mids.join(" ")
        ))
    }

    fn remote(
        &mut self,
        sdp: &sdp::SessionDescription,
        role: DtlsRole,
        now: Instant,
    ) -> anyhow::Result<()> {
        let (ufrag, pwd) = sdp.ice_credentials().context("ICE credentials")?;
        let fp = Fingerprint::parse_sdp(&sdp.fingerprint().context("fingerprint")?)
            .map_err(|e| anyhow::anyhow!("fingerprint: {e}"))?;
        let server = sdp
            .media
            .iter()
            .flat_map(|m| m.candidates.iter())
            .find_map(|c| udp_candidate(c).filter(|a| a.ip() == self.server_ip))
            .with_context(|| format!("no UDP candidate on {}", self.server_ip))?;
        self.dtls = Some(DtlsEndpoint::with_profiles(
            &self.cert,
            role,
            fp,
            &self.profiles,
            now,
        )?);
        self.remote_ice = Some(IceCredentials { ufrag, pwd });
        self.server = Some(server);
        self.next_check = Some(now);
        Ok(())
    }

    /// The next datagram for the server, if one is due.
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let server = self.server?;
        if let Some(d) = self.transmit.pop_front() {
            return Some((server, d));
        }
        if self.next_check.is_some_and(|t| t <= now) {
            let remote = self.remote_ice.as_ref()?;
            let username = format!("{}:{}", remote.ufrag, self.ice.ufrag);
            let req = stun::binding_request(
                stun::random_transaction_id(&mut rand::rng()),
                &username,
                0x6e7f_00ff,
                rand::random(),
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

    /// A STUN or DTLS datagram from `from`.
    pub(crate) fn handle_receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> anyhow::Result<()> {
        match data.first() {
            Some(0..=3) => {
                let Ok(msg) = stun::parse(data) else {
                    return Ok(());
                };
                match msg.class {
                    stun::StunClass::SuccessResponse => {
                        if let Some(remote) = self.remote_ice.as_ref()
                            && msg.verify_integrity(remote.pwd.as_bytes())
                            && !self.checked
                        {
                            self.checked = true;
                            self.next_check = Some(now + CONSENT_INTERVAL);
                        }
                    }
                    stun::StunClass::Request if msg.verify_integrity(self.ice.pwd.as_bytes()) => {
                        if let Ok(resp) = stun::binding_success_response(
                            msg.transaction_id,
                            from,
                            self.ice.pwd.as_bytes(),
                        ) {
                            self.transmit.push_back(resp);
                        }
                    }
                    _ => {}
                }
            }
            Some(20..=63) => {
                if let Some(d) = self.dtls.as_mut() {
                    d.handle_receive(now, data)?;
                    while let Some(ev) = d.poll_event() {
                        if let DtlsEvent::Connected { local, remote, .. } = ev
                            && let Some(server) = self.server
                        {
                            self.keys = Some(Keys {
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

    pub(crate) fn keys(&self) -> Option<Keys> {
        self.keys
    }
}

/// `foundation 1 udp prio 10.0.0.1 4000 typ host ...` → 10.0.0.1:4000 (UDP only).
fn udp_candidate(c: &str) -> Option<SocketAddr> {
    let f: Vec<&str> = c.split_whitespace().collect();
    if !f.get(2)?.eq_ignore_ascii_case("udp") {
        return None;
    }
    Some(SocketAddr::new(
        f.get(4)?.parse().ok()?,
        f.get(5)?.parse().ok()?,
    ))
}
