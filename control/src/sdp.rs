//! SDP (RFC 8866) as a WebRTC media server needs it: parsing offers (RFC 8839 ICE,
//! RFC 8843 BUNDLE, RFC 5761 rtcp-mux, RFC 8285 extmap, RFC 4588 RTX, RFC 8851/8853
//! rid and simulcast), choosing codecs, writing answers for a server that is ICE-lite,
//! DTLS passive, BUNDLE + rtcp-mux only, and parsing trickle sdpfrags (RFC 8840).
//! Every error is typed and says where; nothing here panics on input, does I/O or
//! holds session state.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// Largest SDP accepted.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Most m-lines accepted.
pub const MAX_MEDIA: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is empty")]
    Empty,
    #[error("SDP is larger than {MAX_SDP_LEN} bytes")]
    TooLarge,
    #[error("more than {MAX_MEDIA} m-lines")]
    TooManyMedia,
    #[error("line {line_no}: {reason}")]
    BadLine { line_no: usize, reason: String },
    #[error("the SDP must start with v=0")]
    NoVersion,
    #[error("no m-line")]
    NoMedia,
    #[error("m-line {mid:?}: missing a={attr}")]
    MissingAttribute { attr: &'static str, mid: String },
    #[error("no a=ice-ufrag / a=ice-pwd")]
    MissingIceCredentials,
    #[error("no a=fingerprint")]
    MissingFingerprint,
    #[error("m-line {mid:?}: protocol {protocol:?} is not UDP/TLS/RTP/SAVPF")]
    UnsupportedProtocol { mid: String, protocol: String },
    #[error("m-line {mid:?} is not in the BUNDLE group")]
    NotBundled { mid: String },
    #[error("m-line {mid:?} has no a=rtcp-mux")]
    NoRtcpMux { mid: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
    HoldConn,
}

impl Setup {
    fn parse(v: &str) -> Option<Self> {
        match v {
            "active" => Some(Self::Active),
            "passive" => Some(Self::Passive),
            "actpass" => Some(Self::ActPass),
            "holdconn" => Some(Self::HoldConn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaType {
    Audio,
    Video,
    Application,
    Other(String),
}

impl MediaType {
    fn parse(v: &str) -> Self {
        match v {
            "audio" => Self::Audio,
            "video" => Self::Video,
            "application" => Self::Application,
            o => Self::Other(o.to_owned()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Application => "application",
            Self::Other(o) => o,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(v: &str) -> Option<Self> {
        match v {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// The direction an answer takes for this offered direction.
    pub fn reverse(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            d => d,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub payload_type: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    pub fmtp: Option<String>,
    pub rtcp_fb: Vec<String>,
}

impl Codec {
    /// A parameter of the fmtp line (`apt`, `packetization-mode`, ...).
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp.as_deref()?.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
        })
    }

    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// Not a media codec of its own: retransmission, redundancy, FEC, DTMF, comfort noise.
    fn is_auxiliary(&self) -> bool {
        ["rtx", "red", "ulpfec", "flexfec-03", "telephone-event", "CN"]
            .iter()
            .any(|n| self.is(n))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtMap {
    pub id: u8,
    pub uri: String,
    pub direction: Option<Direction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcAttr {
    pub ssrc: u32,
    pub attribute: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    pub semantics: String,
    pub ssrcs: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rid {
    pub id: String,
    pub direction: String,
    pub params: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media_type: MediaType,
    pub port: u16,
    pub protocol: String,
    pub formats: Vec<String>,
    pub mid: Option<String>,
    pub direction: Direction,
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub fingerprint: Option<String>,
    pub setup: Option<Setup>,
    pub rtcp_mux: bool,
    pub rtcp_rsize: bool,
    pub codecs: Vec<Codec>,
    pub extmaps: Vec<ExtMap>,
    pub ssrcs: Vec<SsrcAttr>,
    pub ssrc_groups: Vec<SsrcGroup>,
    pub msid: Option<String>,
    pub rids: Vec<Rid>,
    pub simulcast: Option<String>,
    /// Values of `a=candidate:` lines, without the `candidate:` prefix.
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

impl MediaDescription {
    fn new(media_type: MediaType, port: u16, protocol: String, formats: Vec<String>) -> Self {
        Self {
            media_type,
            port,
            protocol,
            formats,
            mid: None,
            direction: Direction::SendRecv,
            ice_ufrag: None,
            ice_pwd: None,
            fingerprint: None,
            setup: None,
            rtcp_mux: false,
            rtcp_rsize: false,
            codecs: Vec::new(),
            extmaps: Vec::new(),
            ssrcs: Vec::new(),
            ssrc_groups: Vec::new(),
            msid: None,
            rids: Vec::new(),
            simulcast: None,
            candidates: Vec::new(),
            end_of_candidates: false,
        }
    }

    fn mid_or_empty(&self) -> String {
        self.mid.clone().unwrap_or_default()
    }

    fn codec_mut(&mut self, pt: u8) -> Option<&mut Codec> {
        self.codecs.iter_mut().find(|c| c.payload_type == pt)
    }

    /// The RTX payload type whose `apt` is `pt`.
    pub fn rtx_payload_for(&self, pt: u8) -> Option<u8> {
        self.codecs
            .iter()
            .find(|c| c.is("rtx") && c.fmtp_param("apt").and_then(|a| a.parse().ok()) == Some(pt))
            .map(|c| c.payload_type)
    }

    /// Primary SSRCs with their RTX SSRC (from `a=ssrc-group:FID`), in order.
    pub fn sender_ssrcs(&self) -> Vec<(u32, Option<u32>)> {
        let mut secondary = Vec::new();
        let mut out: Vec<(u32, Option<u32>)> = Vec::new();
        for g in &self.ssrc_groups {
            match (g.semantics.as_str(), g.ssrcs.as_slice()) {
                ("FID", [primary, rtx, ..]) => {
                    out.push((*primary, Some(*rtx)));
                    secondary.push(*rtx);
                }
                ("FEC-FR", [_, fec, ..]) => secondary.push(*fec),
                _ => {}
            }
        }
        for s in &self.ssrcs {
            if !secondary.contains(&s.ssrc) && !out.iter().any(|(p, _)| *p == s.ssrc) {
                out.push((s.ssrc, None));
            }
        }
        out
    }

    /// The `cname` of the first SSRC that has one.
    pub fn cname(&self) -> Option<&str> {
        self.ssrcs
            .iter()
            .find(|s| s.attribute == "cname")
            .and_then(|s| s.value.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub session_id: u64,
    pub ice_lite: bool,
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub fingerprint: Option<String>,
    pub setup: Option<Setup>,
    pub bundle_mids: Vec<String>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// The first m-line that carries media (BUNDLE tag) or else the first.
    fn first_media(&self) -> Option<&MediaDescription> {
        self.media
            .iter()
            .find(|m| m.port != 0)
            .or(self.media.first())
    }

    /// ICE credentials: media level of the first active m-line, else session level.
    pub fn ice_credentials(&self) -> Result<(String, String), SdpError> {
        let m = self.first_media();
        let ufrag = m.and_then(|m| m.ice_ufrag.clone()).or(self.ice_ufrag.clone());
        let pwd = m.and_then(|m| m.ice_pwd.clone()).or(self.ice_pwd.clone());
        match (ufrag, pwd) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok((u, p)),
            _ => Err(SdpError::MissingIceCredentials),
        }
    }

    /// The `a=fingerprint` value: media level of the first active m-line, else session.
    pub fn fingerprint(&self) -> Result<String, SdpError> {
        self.first_media()
            .and_then(|m| m.fingerprint.clone())
            .or(self.fingerprint.clone())
            .ok_or(SdpError::MissingFingerprint)
    }

    pub fn setup(&self) -> Option<Setup> {
        self.first_media().and_then(|m| m.setup).or(self.setup)
    }

    /// Checks what a WebRTC offer must have for this server.
    pub fn validate_webrtc(&self) -> Result<(), SdpError> {
        if self.media.is_empty() {
            return Err(SdpError::NoMedia);
        }
        for m in &self.media {
            if m.port == 0 || !matches!(m.media_type, MediaType::Audio | MediaType::Video) {
                continue;
            }
            let mid = m.mid_or_empty();
            if !matches!(m.protocol.as_str(), "UDP/TLS/RTP/SAVPF" | "UDP/TLS/RTP/SAVP") {
                return Err(SdpError::UnsupportedProtocol {
                    mid,
                    protocol: m.protocol.clone(),
                });
            }
            if m.mid.is_none() {
                return Err(SdpError::MissingAttribute { attr: "mid", mid });
            }
            if !self.bundle_mids.contains(&mid) {
                return Err(SdpError::NotBundled { mid });
            }
            if !m.rtcp_mux {
                return Err(SdpError::NoRtcpMux { mid });
            }
        }
        self.ice_credentials()?;
        self.fingerprint()?;
        Ok(())
    }
}

fn bad(line_no: usize, reason: impl Into<String>) -> SdpError {
    SdpError::BadLine {
        line_no,
        reason: reason.into(),
    }
}

/// Parses an SDP offer or answer.
pub fn parse(sdp: &str) -> Result<SessionDescription, SdpError> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge);
    }
    if sdp.trim().is_empty() {
        return Err(SdpError::Empty);
    }
    let mut session = SessionDescription {
        session_id: 0,
        ice_lite: false,
        ice_ufrag: None,
        ice_pwd: None,
        fingerprint: None,
        setup: None,
        bundle_mids: Vec::new(),
        media: Vec::new(),
    };
    let mut saw_version = false;
    for (i, raw) in sdp.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(bad(line_no, "not a <letter>=<value> line"));
        }
        // Index 2 is a char boundary: the first two bytes are ASCII.
        let value = &line[2..];
        match b[0] {
            b'v' => {
                if value != "0" || saw_version {
                    return Err(SdpError::NoVersion);
                }
                saw_version = true;
            }
            _ if !saw_version => return Err(SdpError::NoVersion),
            b'o' => {
                session.session_id = value
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            }
            b'm' => {
                if session.media.len() == MAX_MEDIA {
                    return Err(SdpError::TooManyMedia);
                }
                let mut f = value.split_whitespace();
                let (Some(kind), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
                    return Err(bad(line_no, "m-line needs <media> <port> <proto> <fmt>..."));
                };
                let port = port
                    .split('/')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| bad(line_no, "bad port"))?;
                session.media.push(MediaDescription::new(
                    MediaType::parse(kind),
                    port,
                    proto.to_owned(),
                    f.map(str::to_owned).collect(),
                ));
            }
            b'a' => {
                let (name, val) = match value.split_once(':') {
                    Some((n, v)) => (n, Some(v)),
                    None => (value, None),
                };
                match session.media.last_mut() {
                    Some(m) => media_attribute(m, name, val, line_no)?,
                    None => session_attribute(&mut session, name, val, line_no)?,
                }
            }
            _ => {}
        }
    }
    if !saw_version {
        return Err(SdpError::NoVersion);
    }
    Ok(session)
}

fn session_attribute(
    s: &mut SessionDescription,
    name: &str,
    val: Option<&str>,
    line_no: usize,
) -> Result<(), SdpError> {
    match (name, val) {
        ("ice-lite", _) => s.ice_lite = true,
        ("ice-ufrag", Some(v)) => s.ice_ufrag = Some(v.trim().to_owned()),
        ("ice-pwd", Some(v)) => s.ice_pwd = Some(v.trim().to_owned()),
        ("fingerprint", Some(v)) => s.fingerprint = Some(v.trim().to_owned()),
        ("setup", Some(v)) => {
            s.setup = Some(Setup::parse(v.trim()).ok_or_else(|| bad(line_no, "bad a=setup"))?);
        }
        ("group", Some(v)) => {
            let mut f = v.split_whitespace();
            if f.next() == Some("BUNDLE") {
                s.bundle_mids.extend(f.map(str::to_owned));
            }
        }
        _ => {}
    }
    Ok(())
}

fn parse_pt(v: &str, line_no: usize) -> Result<u8, SdpError> {
    v.parse::<u8>()
        .ok()
        .filter(|pt| *pt < 128)
        .ok_or_else(|| bad(line_no, format!("bad payload type {v:?}")))
}

fn media_attribute(
    m: &mut MediaDescription,
    name: &str,
    val: Option<&str>,
    line_no: usize,
) -> Result<(), SdpError> {
    if let Some(d) = Direction::parse(name) {
        m.direction = d;
        return Ok(());
    }
    fn need<'v>(v: Option<&'v str>, name: &str, line_no: usize) -> Result<&'v str, SdpError> {
        v.ok_or_else(|| bad(line_no, format!("a={name} needs a value")))
    }
    match name {
        "mid" => m.mid = Some(need(val, name, line_no)?.trim().to_owned()),
        "ice-ufrag" => m.ice_ufrag = Some(need(val, name, line_no)?.trim().to_owned()),
        "ice-pwd" => m.ice_pwd = Some(need(val, name, line_no)?.trim().to_owned()),
        "fingerprint" => m.fingerprint = Some(need(val, name, line_no)?.trim().to_owned()),
        "setup" => {
            m.setup = Some(Setup::parse(need(val, name, line_no)?.trim()).ok_or_else(|| bad(line_no, "bad a=setup"))?);
        }
        "rtcp-mux" => m.rtcp_mux = true,
        "rtcp-rsize" => m.rtcp_rsize = true,
        "msid" => m.msid = Some(need(val, name, line_no)?.trim().to_owned()),
        "simulcast" => m.simulcast = Some(need(val, name, line_no)?.trim().to_owned()),
        "end-of-candidates" => m.end_of_candidates = true,
        "candidate" => m.candidates.push(need(val, name, line_no)?.trim().to_owned()),
        "rtpmap" => {
            let v = need(val, name, line_no)?;
            let (pt, rest) = v
                .split_once(' ')
                .ok_or_else(|| bad(line_no, "a=rtpmap:<pt> <name>/<rate>"))?;
            let pt = parse_pt(pt.trim(), line_no)?;
            let mut parts = rest.trim().split('/');
            let codec_name = parts.next().filter(|n| !n.is_empty());
            let rate = parts.next().and_then(|r| r.parse::<u32>().ok());
            let (Some(codec_name), Some(clock_rate)) = (codec_name, rate) else {
                return Err(bad(line_no, "a=rtpmap:<pt> <name>/<rate>"));
            };
            let channels = match parts.next() {
                Some(c) => Some(c.parse().map_err(|_| bad(line_no, "bad channel count"))?),
                None => None,
            };
            let codec = Codec {
                payload_type: pt,
                name: codec_name.to_owned(),
                clock_rate,
                channels,
                fmtp: None,
                rtcp_fb: Vec::new(),
            };
            match m.codec_mut(pt) {
                Some(c) => {
                    c.name = codec.name;
                    c.clock_rate = codec.clock_rate;
                    c.channels = codec.channels;
                }
                None => m.codecs.push(codec),
            }
        }
        "fmtp" => {
            let v = need(val, name, line_no)?;
            let (pt, params) = v
                .split_once(' ')
                .ok_or_else(|| bad(line_no, "a=fmtp:<pt> <params>"))?;
            let pt = parse_pt(pt.trim(), line_no)?;
            if let Some(c) = m.codec_mut(pt) {
                c.fmtp = Some(params.trim().to_owned());
            }
        }
        "rtcp-fb" => {
            let v = need(val, name, line_no)?;
            let (pt, fb) = v
                .split_once(' ')
                .ok_or_else(|| bad(line_no, "a=rtcp-fb:<pt> <feedback>"))?;
            let fb = fb.trim().to_owned();
            if pt == "*" {
                for c in &mut m.codecs {
                    c.rtcp_fb.push(fb.clone());
                }
            } else if let Some(c) = m.codec_mut(parse_pt(pt.trim(), line_no)?) {
                c.rtcp_fb.push(fb);
            }
        }
        "extmap" => {
            let v = need(val, name, line_no)?;
            let (id, uri) = v
                .split_once(' ')
                .ok_or_else(|| bad(line_no, "a=extmap:<id> <uri>"))?;
            let (id, direction) = match id.split_once('/') {
                Some((i, d)) => (i, Direction::parse(d)),
                None => (id, None),
            };
            let id = id
                .parse::<u8>()
                .ok()
                .filter(|i| (1..=255).contains(i))
                .ok_or_else(|| bad(line_no, "bad extmap id"))?;
            let uri = uri.split_whitespace().next().unwrap_or_default().to_owned();
            m.extmaps.push(ExtMap { id, uri, direction });
        }
        "ssrc" => {
            let v = need(val, name, line_no)?;
            let (ssrc, rest) = match v.split_once(' ') {
                Some((s, r)) => (s, Some(r)),
                None => (v, None),
            };
            let ssrc = ssrc
                .parse::<u32>()
                .map_err(|_| bad(line_no, "bad SSRC"))?;
            let (attribute, value) = match rest.map(|r| r.split_once(':').unwrap_or((r, ""))) {
                Some((a, v)) => (a.trim().to_owned(), (!v.is_empty()).then(|| v.to_owned())),
                None => (String::new(), None),
            };
            if m.ssrcs.len() < 64 {
                m.ssrcs.push(SsrcAttr {
                    ssrc,
                    attribute,
                    value,
                });
            }
        }
        "ssrc-group" => {
            let v = need(val, name, line_no)?;
            let mut f = v.split_whitespace();
            let semantics = f.next().unwrap_or_default().to_owned();
            let ssrcs = f
                .map(|s| s.parse::<u32>().map_err(|_| bad(line_no, "bad SSRC in group")))
                .collect::<Result<Vec<_>, _>>()?;
            if m.ssrc_groups.len() < 16 {
                m.ssrc_groups.push(SsrcGroup { semantics, ssrcs });
            }
        }
        "rid" => {
            let v = need(val, name, line_no)?;
            let mut f = v.split_whitespace();
            let (Some(id), Some(direction)) = (f.next(), f.next()) else {
                return Err(bad(line_no, "a=rid:<id> send|recv"));
            };
            m.rids.push(Rid {
                id: id.to_owned(),
                direction: direction.to_owned(),
                params: f.next().map(str::to_owned),
            });
        }
        _ => {}
    }
    Ok(())
}

/// Preferred codec of an m-line: opus for audio; VP8, then H264 (packetization-mode 1,
/// constrained baseline 42e01f first), VP9, AV1 for video.
pub fn choose_codec(media: &MediaDescription) -> Option<&Codec> {
    let primaries = || media.codecs.iter().filter(|c| !c.is_auxiliary());
    match media.media_type {
        MediaType::Audio => primaries().find(|c| c.is("opus") && c.clock_rate == 48_000),
        MediaType::Video => {
            let h264_rank = |c: &Codec| {
                let mode1 = c.fmtp_param("packetization-mode") == Some("1");
                let profile = c
                    .fmtp_param("profile-level-id")
                    .unwrap_or("")
                    .to_ascii_lowercase();
                match (mode1, profile.as_str()) {
                    (true, "42e01f") => 0,
                    (true, "42001f") => 1,
                    (true, _) => 2,
                    _ => 3,
                }
            };
            primaries()
                .find(|c| c.is("VP8"))
                .or_else(|| {
                    primaries()
                        .filter(|c| c.is("H264"))
                        .min_by_key(|c| h264_rank(c))
                })
                .or_else(|| primaries().find(|c| c.is("VP9")))
                .or_else(|| primaries().find(|c| c.is("AV1")))
        }
        _ => None,
    }
}

/// The codec of `media` that can carry a stream encoded with `codec` unchanged.
pub fn find_compatible_codec<'a>(media: &'a MediaDescription, codec: &Codec) -> Option<&'a Codec> {
    let h264_profile = |c: &Codec| {
        c.fmtp_param("profile-level-id")
            .map(|p| p.get(..4).unwrap_or(p).to_ascii_lowercase())
            .unwrap_or_else(|| "4200".into())
    };
    media.codecs.iter().find(|c| {
        if !c.name.eq_ignore_ascii_case(&codec.name) || c.clock_rate != codec.clock_rate {
            return false;
        }
        if c.is("opus") || media.media_type == MediaType::Audio {
            return c.channels.unwrap_or(1) == codec.channels.unwrap_or(1);
        }
        if c.is("H264") {
            return c.fmtp_param("packetization-mode").unwrap_or("0")
                == codec.fmtp_param("packetization-mode").unwrap_or("0")
                && h264_profile(c) == h264_profile(codec);
        }
        if c.is("VP9") {
            return c.fmtp_param("profile-id").unwrap_or("0")
                == codec.fmtp_param("profile-id").unwrap_or("0");
        }
        true
    })
}

/// An `application/trickle-ice-sdpfrag` body (RFC 8840).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdpFragment {
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub mids: Vec<String>,
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

pub fn parse_sdpfrag(s: &str) -> Result<SdpFragment, SdpError> {
    if s.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge);
    }
    let mut f = SdpFragment::default();
    for (i, raw) in s.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(bad(i + 1, "not a <letter>=<value> line"));
        }
        if b[0] != b'a' {
            continue;
        }
        // The first two bytes are ASCII, so 2 is a char boundary.
        let value = &line[2..];
        let (name, val) = match value.split_once(':') {
            Some((n, v)) => (n, Some(v.trim().to_owned())),
            None => (value, None),
        };
        match name {
            "ice-ufrag" => f.ice_ufrag = val,
            "ice-pwd" => f.ice_pwd = val,
            "mid" => f.mids.extend(val),
            "candidate" => f.candidates.extend(val),
            "end-of-candidates" => f.end_of_candidates = true,
            _ => {}
        }
    }
    Ok(f)
}

/// A stream the server sends on an m-line of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendStream {
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    pub cname: String,
    pub stream_id: String,
    pub track_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAnswer {
    pub mid: String,
    pub media_type: MediaType,
    pub protocol: String,
    pub direction: Direction,
    /// Port 0: the m-line is refused.
    pub rejected: bool,
    /// Chosen codec first, then its RTX; payload types as offered.
    pub codecs: Vec<Codec>,
    pub extmaps: Vec<ExtMap>,
    pub send: Option<SendStream>,
    pub rtcp_rsize: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAnswer {
    pub session_id: u64,
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// `sha-256 AB:...`
    pub fingerprint: String,
    pub candidate: SocketAddr,
    pub media: Vec<MediaAnswer>,
}

/// Writes an answer (CRLF line endings).
pub fn write_answer(a: &SessionAnswer) -> String {
    let (family, any) = match a.candidate {
        SocketAddr::V4(_) => ("IP4", "0.0.0.0"),
        SocketAddr::V6(_) => ("IP6", "::"),
    };
    let mut s = String::with_capacity(2048);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- {} 2 IN {family} {}\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n",
        a.session_id,
        a.candidate.ip()
    );
    let bundle: Vec<&str> = a
        .media
        .iter()
        .filter(|m| !m.rejected)
        .map(|m| m.mid.as_str())
        .collect();
    if !bundle.is_empty() {
        let _ = write!(s, "a=group:BUNDLE {}\r\n", bundle.join(" "));
    }
    s.push_str("a=msid-semantic: WMS *\r\n");
    for m in &a.media {
        if m.rejected {
            match m.media_type {
                MediaType::Application => {
                    let _ = write!(s, "m=application 0 {} webrtc-datachannel\r\n", m.protocol);
                }
                _ => {
                    let pt = m.codecs.first().map_or(0, |c| c.payload_type);
                    let _ = write!(s, "m={} 0 {} {pt}\r\n", m.media_type.as_str(), m.protocol);
                }
            }
            let _ = write!(s, "c=IN {family} {any}\r\na=mid:{}\r\na=inactive\r\n", m.mid);
            continue;
        }
        let pts: Vec<String> = m.codecs.iter().map(|c| c.payload_type.to_string()).collect();
        let _ = write!(
            s,
            "m={} 9 {} {}\r\nc=IN {family} {any}\r\na=mid:{}\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n\
             a=fingerprint:{}\r\na=setup:passive\r\na={}\r\na=rtcp-mux\r\n",
            m.media_type.as_str(),
            m.protocol,
            pts.join(" "),
            m.mid,
            a.ice_ufrag,
            a.ice_pwd,
            a.fingerprint,
            m.direction.as_str(),
        );
        if m.rtcp_rsize {
            s.push_str("a=rtcp-rsize\r\n");
        }
        for c in &m.codecs {
            let _ = write!(s, "a=rtpmap:{} {}/{}", c.payload_type, c.name, c.clock_rate);
            if let Some(ch) = c.channels {
                let _ = write!(s, "/{ch}");
            }
            s.push_str("\r\n");
            if let Some(f) = &c.fmtp {
                let _ = write!(s, "a=fmtp:{} {f}\r\n", c.payload_type);
            }
            for fb in &c.rtcp_fb {
                let _ = write!(s, "a=rtcp-fb:{} {fb}\r\n", c.payload_type);
            }
        }
        for e in &m.extmaps {
            let _ = write!(s, "a=extmap:{} {}\r\n", e.id, e.uri);
        }
        if let Some(send) = &m.send {
            let _ = write!(s, "a=msid:{} {}\r\n", send.stream_id, send.track_id);
            if let Some(rtx) = send.rtx_ssrc {
                let _ = write!(s, "a=ssrc-group:FID {} {rtx}\r\n", send.ssrc);
            }
            for ssrc in std::iter::once(send.ssrc).chain(send.rtx_ssrc) {
                let _ = write!(
                    s,
                    "a=ssrc:{ssrc} cname:{}\r\na=ssrc:{ssrc} msid:{} {}\r\n",
                    send.cname, send.stream_id, send.track_id
                );
            }
        }
        let _ = write!(
            s,
            "a=candidate:1 1 udp 2130706431 {} {} typ host\r\na=end-of-candidates\r\n",
            a.candidate.ip(),
            a.candidate.port()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_PUBLISH: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jigyRnPW\r\na=ice-options:trickle\r\n\
a=fingerprint:sha-256 19:E2:1C:3B:4B:9F:81:E6:B8:5C:F4:A5:A8:D8:73:04:BB:05:2F:70:9F:04:A9:0E:05:E9:26:33:E8:70:88:A2\r\n\
a=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendonly\r\na=msid:stream audio0\r\na=rtcp-mux\r\na=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:1001 cname:abc\r\na=ssrc:1001 msid:stream audio0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jigyRnPW\r\na=ice-options:trickle\r\n\
a=fingerprint:sha-256 19:E2:1C:3B:4B:9F:81:E6:B8:5C:F4:A5:A8:D8:73:04:BB:05:2F:70:9F:04:A9:0E:05:E9:26:33:E8:70:88:A2\r\n\
a=setup:actpass\r\na=mid:1\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=sendonly\r\na=msid:stream video0\r\na=rtcp-mux\r\na=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\n\
a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:45 AV1/90000\r\na=rtpmap:46 rtx/90000\r\na=fmtp:46 apt=45\r\n\
a=ssrc-group:FID 2001 2002\r\na=ssrc:2001 cname:abc\r\na=ssrc:2002 cname:abc\r\n";

    const FIREFOX: &str = "v=0\r\no=mozilla...THIS_IS_SDPARTA-99.0 5057837225736476420 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 A1:B2:C3:D4:E5:F6:07:18:29:3A:4B:5C:6D:7E:8F:90:A1:B2:C3:D4:E5:F6:07:18:29:3A:4B:5C:6D:7E:8F:90\r\n\
a=group:BUNDLE 0 1\r\na=ice-options:trickle\r\na=msid-semantic:WMS *\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\na=ice-pwd:0cd3e1e6a3c0a3f4a1e2b3c4d5e6f7a8\r\n\
a=ice-ufrag:8a1b2c3d\r\na=mid:0\r\na=rtcp-mux\r\na=rtpmap:109 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
a=setup:actpass\r\na=ssrc:3001 cname:{x}\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\na=ice-pwd:0cd3e1e6a3c0a3f4a1e2b3c4d5e6f7a8\r\n\
a=ice-ufrag:8a1b2c3d\r\na=mid:1\r\na=rtcp-fb:120 nack\r\na=rtcp-fb:120 nack pli\r\na=rtcp-fb:120 ccm fir\r\na=rtcp-mux\r\n\
a=rtpmap:120 VP8/90000\r\na=rtpmap:124 rtx/90000\r\na=fmtp:124 apt=120\r\na=rtpmap:121 VP9/90000\r\n\
a=rtpmap:125 rtx/90000\r\na=fmtp:125 apt=121\r\na=setup:actpass\r\n\
a=ssrc:4001 cname:{x}\r\na=ssrc:4002 cname:{x}\r\na=ssrc-group:FID 4001 4002\r\n";

    #[test]
    fn chrome_offer() {
        let s = parse(CHROME_PUBLISH).unwrap();
        s.validate_webrtc().unwrap();
        assert_eq!(s.media.len(), 2);
        assert_eq!(s.bundle_mids, ["0", "1"]);
        let (u, p) = s.ice_credentials().unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("EsAw", "bP+XJMM09aR8AiX1jigyRnPW"));
        assert_eq!(s.setup(), Some(Setup::ActPass));
        let audio = &s.media[0];
        assert_eq!(audio.direction, Direction::SendOnly);
        assert_eq!(choose_codec(audio).unwrap().payload_type, 111);
        assert_eq!(audio.sender_ssrcs(), vec![(1001, None)]);
        let video = &s.media[1];
        let vp8 = choose_codec(video).unwrap();
        assert_eq!((vp8.payload_type, vp8.name.as_str()), (96, "VP8"));
        assert_eq!(video.rtx_payload_for(96), Some(97));
        assert_eq!(video.rtx_payload_for(102), Some(103));
        assert_eq!(video.sender_ssrcs(), vec![(2001, Some(2002))]);
        assert_eq!(video.cname(), Some("abc"));
        assert!(vp8.rtcp_fb.contains(&"nack pli".to_owned()));
        assert_eq!(video.extmaps[0].id, 3);
    }

    #[test]
    fn firefox_offer_with_session_fingerprint_and_other_pts() {
        let s = parse(FIREFOX).unwrap();
        s.validate_webrtc().unwrap();
        assert!(s.fingerprint().unwrap().starts_with("sha-256 A1:B2"));
        assert_eq!(choose_codec(&s.media[0]).unwrap().payload_type, 109);
        assert_eq!(choose_codec(&s.media[1]).unwrap().payload_type, 120);
        assert_eq!(s.media[1].rtx_payload_for(120), Some(124));
        assert_eq!(s.media[1].sender_ssrcs(), vec![(4001, Some(4002))]);
    }

    #[test]
    fn codec_preferences_and_compatibility() {
        let sdp = CHROME_PUBLISH.replace("a=rtpmap:96 VP8/90000\r\n", "a=rtpmap:96 VP7/90000\r\n");
        let s = parse(&sdp).unwrap();
        let h264 = choose_codec(&s.media[1]).unwrap();
        assert_eq!(h264.name, "H264");
        let firefox = parse(FIREFOX).unwrap();
        assert!(find_compatible_codec(&firefox.media[1], h264).is_none());
        let vp8 = choose_codec(&parse(CHROME_PUBLISH).unwrap().media[1]).unwrap().clone();
        assert_eq!(find_compatible_codec(&firefox.media[1], &vp8).unwrap().payload_type, 120);
        let opus = choose_codec(&firefox.media[0]).unwrap().clone();
        let chrome = parse(CHROME_PUBLISH).unwrap();
        assert_eq!(find_compatible_codec(&chrome.media[0], &opus).unwrap().payload_type, 111);
    }

    #[test]
    fn offers_missing_essentials() {
        let cases = [
            (CHROME_PUBLISH.replace("a=ice-ufrag:EsAw\r\n", ""), SdpError::MissingIceCredentials),
            (
                CHROME_PUBLISH.replace("a=fingerprint:", "a=x-fingerprint:"),
                SdpError::MissingFingerprint,
            ),
            (
                CHROME_PUBLISH.replace("a=rtcp-mux\r\n", ""),
                SdpError::NoRtcpMux { mid: "0".into() },
            ),
            (
                CHROME_PUBLISH.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0"),
                SdpError::NotBundled { mid: "1".into() },
            ),
            (
                CHROME_PUBLISH.replace("UDP/TLS/RTP/SAVPF 111", "RTP/AVP 111"),
                SdpError::UnsupportedProtocol {
                    mid: "0".into(),
                    protocol: "RTP/AVP".into(),
                },
            ),
        ];
        for (sdp, want) in cases {
            assert_eq!(parse(&sdp).unwrap().validate_webrtc(), Err(want));
        }
        assert_eq!(parse(""), Err(SdpError::Empty));
        assert_eq!(parse("o=- 1 1 IN IP4 0.0.0.0\r\n"), Err(SdpError::NoVersion));
        assert!(matches!(parse("v=0\r\nhello\r\n"), Err(SdpError::BadLine { line_no: 2, .. })));
        assert!(matches!(
            parse("v=0\r\nm=audio x UDP/TLS/RTP/SAVPF 1\r\n"),
            Err(SdpError::BadLine { .. })
        ));
        assert!(matches!(
            parse("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 1\r\na=rtpmap:300 x/1\r\n"),
            Err(SdpError::BadLine { .. })
        ));
        assert_eq!(parse(&"v=0\r\n".repeat(20_000)), Err(SdpError::TooLarge));
        assert_eq!(parse("v=0\r\n").unwrap().validate_webrtc(), Err(SdpError::NoMedia));
    }

    #[test]
    fn every_prefix_and_random_mutation_is_handled() {
        use rand::{Rng, SeedableRng};
        for end in 0..CHROME_PUBLISH.len() {
            if CHROME_PUBLISH.is_char_boundary(end) {
                let _ = parse(&CHROME_PUBLISH[..end]).map(|s| s.validate_webrtc());
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(8866);
        let base = CHROME_PUBLISH.as_bytes();
        for _ in 0..100_000 {
            let mut b = base.to_vec();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            let s = String::from_utf8_lossy(&b);
            if let Ok(d) = parse(&s) {
                let _ = d.validate_webrtc();
                for m in &d.media {
                    let _ = choose_codec(m);
                    let _ = m.sender_ssrcs();
                }
            }
            let _ = parse_sdpfrag(&s);
        }
    }

    #[test]
    fn answer_round_trips() {
        let offer = parse(CHROME_PUBLISH).unwrap();
        let vp8 = choose_codec(&offer.media[1]).unwrap().clone();
        let rtx = offer.media[1].codecs.iter().find(|c| c.payload_type == 97).unwrap().clone();
        let answer = SessionAnswer {
            session_id: 42,
            ice_ufrag: "abcd".into(),
            ice_pwd: "0123456789abcdefghijklmn".into(),
            fingerprint: "sha-256 AA:BB".into(),
            candidate: "127.0.0.1:8443".parse().unwrap(),
            media: vec![
                MediaAnswer {
                    mid: "0".into(),
                    media_type: MediaType::Audio,
                    protocol: "UDP/TLS/RTP/SAVPF".into(),
                    direction: Direction::Inactive,
                    rejected: true,
                    codecs: vec![],
                    extmaps: vec![],
                    send: None,
                    rtcp_rsize: false,
                },
                MediaAnswer {
                    mid: "1".into(),
                    media_type: MediaType::Video,
                    protocol: "UDP/TLS/RTP/SAVPF".into(),
                    direction: Direction::SendOnly,
                    rejected: false,
                    codecs: vec![vp8, rtx],
                    extmaps: vec![],
                    send: Some(SendStream {
                        ssrc: 7,
                        rtx_ssrc: Some(8),
                        cname: "c".into(),
                        stream_id: "s".into(),
                        track_id: "t".into(),
                    }),
                    rtcp_rsize: true,
                },
            ],
        };
        let text = write_answer(&answer);
        let back = parse(&text).unwrap();
        back.validate_webrtc().unwrap();
        assert!(back.ice_lite);
        assert_eq!(back.bundle_mids, ["1"]);
        assert_eq!(back.media[0].port, 0);
        let v = &back.media[1];
        assert_eq!(v.setup, Some(Setup::Passive));
        assert_eq!(v.direction, Direction::SendOnly);
        assert_eq!(v.sender_ssrcs(), vec![(7, Some(8))]);
        assert_eq!(v.candidates, ["1 1 udp 2130706431 127.0.0.1 8443 typ host"]);
        assert_eq!(v.rtx_payload_for(96), Some(97));
        assert!(text.lines().all(|l| !l.is_empty()) && text.ends_with("\r\n"));
    }

    #[test]
    fn sdpfrag() {
        let f = parse_sdpfrag(
            "a=ice-ufrag:EsAw\r\na=ice-pwd:pw\r\na=mid:0\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n",
        )
        .unwrap();
        assert_eq!(f.ice_ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.mids, ["0"]);
        assert_eq!(f.candidates.len(), 1);
        assert!(f.end_of_candidates);
        assert!(parse_sdpfrag("garbage").is_err());
    }
}
