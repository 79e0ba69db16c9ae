//! SDP offer parsing, codec choice and answer writing for a server that is
//! ICE-lite, the DTLS server (`a=setup:passive`, or the client for a passive offer)
//! and speaks BUNDLE with rtcp-mux only.
//!
//! This module owns the text of session descriptions: parsing offers (RFC 8866 syntax
//! with the attributes of RFC 8839 ICE, RFC 8843 BUNDLE, RFC 5761 rtcp-mux, RFC 8853
//! simulcast, RFC 8851 rid, RFC 8285 extmap, RFC 4588 rtx and RFC 5576 ssrc), parsing
//! trickle fragments (RFC 8840), checking that an offer is one this server can serve,
//! choosing codecs, and writing answers. It must not do I/O, keep any session state or
//! decide which track goes where (that is `crate::sfu`'s job), and it never panics on
//! any input: everything malformed becomes a typed [`SdpError`] that names the line.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

/// Largest SDP (offer, answer or trickle fragment) accepted, in bytes.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Most m-lines accepted in one SDP.
pub const MAX_MEDIA: usize = 64;
/// Most lines accepted in one SDP.
pub const MAX_LINES: usize = 8192;
/// Most formats accepted on one m-line (RTP has 128 payload types).
pub const MAX_FORMATS: usize = 128;
/// Longest mid, rid, ICE ufrag or ICE password accepted.
const MAX_TOKEN_LEN: usize = 256;
/// Shortest ICE ufrag allowed by RFC 8839 §5.4.
const MIN_UFRAG_LEN: usize = 4;
/// Shortest ICE password allowed by RFC 8839 §5.4.
const MIN_PWD_LEN: usize = 22;
/// The placeholder port of bundled m-lines (RFC 8843, JSEP): the discard port.
const BUNDLED_PORT: u16 = 9;
/// Priority of the answer's single host candidate (type preference 126, local
/// preference 65535, component 1).
const HOST_PRIORITY: u32 = 2_130_706_431;

/// What is wrong with an SDP, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the SDP is {len} bytes long, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("the SDP has more than {max} {what}")]
    TooMany { what: &'static str, max: usize },
    #[error("the SDP is empty")]
    Empty,
    #[error("line {line_no}: {reason}")]
    BadLine { line_no: usize, reason: String },
    #[error("the SDP has no {line} line")]
    MissingLine { line: &'static str },
    #[error("the SDP has no active audio or video m-line")]
    NoMedia,
    #[error("m-line {m_line} (counting from 0) has no a={attr}")]
    MissingAttribute { attr: &'static str, m_line: usize },
    #[error("a=mid:{mid} is used by more than one m-line")]
    DuplicateMid { mid: String },
    #[error(
        "m-line {mid} uses protocol {protocol}; WebRTC media needs UDP/TLS/RTP/SAVPF \
         (or UDP/TLS/RTP/SAVP)"
    )]
    UnsupportedProtocol { mid: String, protocol: String },
    #[error(
        "m-line {mid} is not in the a=group:BUNDLE group \
         (this server carries all media on one transport)"
    )]
    NotBundled { mid: String },
    #[error("a=group:BUNDLE names mid {mid}, which no m-line has")]
    UnknownBundleMid { mid: String },
    #[error("m-line {mid} lacks a=rtcp-mux (RTP and RTCP must share one port)")]
    NoRtcpMux { mid: String },
    #[error("the SDP lacks a=ice-ufrag or a=ice-pwd")]
    MissingIceCredentials,
    #[error("the SDP has no a=fingerprint")]
    MissingFingerprint,
}

/// `a=setup:` (RFC 4145, RFC 8842): which side of DTLS an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
    HoldConn,
}

impl Setup {
    /// The attribute value (`active`, `passive`, `actpass`, `holdconn`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Setup::Active,
            Setup::Passive,
            Setup::ActPass,
            Setup::HoldConn,
        ]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

/// The `<media>` field of an m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaType {
    Audio,
    Video,
    Application,
    Other(String),
}

impl MediaType {
    /// The m-line spelling (`audio`, `video`, `application`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            MediaType::Audio => "audio",
            MediaType::Video => "video",
            MediaType::Application => "application",
            MediaType::Other(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "audio" => MediaType::Audio,
            "video" => MediaType::Video,
            "application" => MediaType::Application,
            other => MediaType::Other(other.to_owned()),
        }
    }
}

/// The direction attribute of an m-line (RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction an answer takes for this offered direction when it accepts
    /// everything offered: `sendonly` becomes `recvonly` and the reverse.
    pub const fn reverse(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// The attribute name (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the side that wrote this direction sends media.
    pub const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side that wrote this direction receives media.
    pub const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `<sess-id>` of the `o=` line.
    pub session_id: u64,
    /// Session-level `a=ice-lite`.
    pub ice_lite: bool,
    /// Session-level `a=ice-ufrag`.
    pub ice_ufrag: Option<String>,
    /// Session-level `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// Session-level `a=fingerprint` value (`sha-256 AB:..`), sha-256 preferred.
    pub fingerprint: Option<String>,
    /// Session-level `a=setup`.
    pub setup: Option<Setup>,
    /// The mids of the first `a=group:BUNDLE`, the BUNDLE tag first.
    pub bundle_mids: Vec<String>,
    /// The m-lines, in order.
    pub media: Vec<MediaDescription>,
}

/// One parsed m-line with its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media_type: MediaType,
    /// 0 for a rejected (or disabled) m-line. An m-line offered with port 0 and
    /// `a=bundle-only` (RFC 8843 §6) is not disabled: it is reported with port 9,
    /// the placeholder port of bundled m-lines.
    pub port: u16,
    /// `UDP/TLS/RTP/SAVPF`, `UDP/DTLS/SCTP`, ...
    pub protocol: String,
    /// The `<fmt>` list as written (payload types for RTP protocols).
    pub formats: Vec<String>,
    pub mid: Option<String>,
    /// The m-line's direction, else the session's, else `sendrecv`.
    pub direction: Direction,
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    /// `a=fingerprint` value (`sha-256 AB:..`), sha-256 preferred.
    pub fingerprint: Option<String>,
    pub setup: Option<Setup>,
    pub rtcp_mux: bool,
    pub rtcp_rsize: bool,
    /// The formats that have an `a=rtpmap` (or a well-known static payload type), in
    /// the m-line's order of preference.
    pub codecs: Vec<Codec>,
    /// The m-line's `a=extmap`s, then session-level ones with other ids.
    pub extmaps: Vec<ExtMap>,
    pub ssrcs: Vec<SsrcAttr>,
    pub ssrc_groups: Vec<SsrcGroup>,
    /// The first `a=msid` value (`<stream id> [<track id>]`).
    pub msid: Option<String>,
    pub rids: Vec<Rid>,
    /// The `a=simulcast` value (`send q;h;f`).
    pub simulcast: Option<String>,
    /// `a=candidate` values, without the `candidate:` prefix.
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

/// One RTP payload format: `a=rtpmap` with its `a=fmtp` and `a=rtcp-fb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub payload_type: u8,
    /// Encoding name as written (`opus`, `VP8`, `rtx`, ...).
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    /// The `a=fmtp` parameters (`apt=96`, `minptime=10;useinbandfec=1`).
    pub fmtp: Option<String>,
    /// Feedback types (`nack`, `nack pli`, `ccm fir`, `transport-cc`...), including
    /// the ones given for `*`.
    pub rtcp_fb: Vec<String>,
}

/// `a=extmap` (RFC 8285).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtMap {
    pub id: u8,
    pub uri: String,
    pub direction: Option<Direction>,
}

/// `a=ssrc:<ssrc> <attribute>[:<value>]` (RFC 5576).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcAttr {
    pub ssrc: u32,
    pub attribute: String,
    pub value: Option<String>,
}

/// `a=ssrc-group:<semantics> <ssrc>...` (RFC 5576).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    /// `FID`, `FEC-FR`, `SIM`, ...
    pub semantics: String,
    pub ssrcs: Vec<u32>,
}

/// `a=rid:<id> <send|recv> [<params>]` (RFC 8851).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rid {
    pub id: String,
    /// `send` or `recv`.
    pub direction: String,
    pub params: Option<String>,
}

/// An `application/trickle-ice-sdpfrag` body (RFC 8840).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SdpFragment {
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub mids: Vec<String>,
    /// `a=candidate` values, without the `candidate:` prefix.
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

/// Everything [`write_answer`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAnswer {
    pub session_id: u64,
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// `sha-256 AB:..`
    pub fingerprint: String,
    /// The server's single host candidate.
    pub candidate: SocketAddr,
    /// The server's DTLS role: `Passive` (DTLS server) unless the offer was passive.
    pub setup: Setup,
    /// One entry per offered m-line, in the offer's order.
    pub media: Vec<MediaAnswer>,
}

/// The answer to one offered m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAnswer {
    pub mid: String,
    pub media_type: MediaType,
    /// The offer's protocol, echoed.
    pub protocol: String,
    pub direction: Direction,
    /// Written with port 0 and nothing but its mid. Application m-lines, m-lines
    /// without codecs and m-lines without a mid are always written rejected.
    pub rejected: bool,
    /// The chosen codec first, then its rtx; payload types as in the offer.
    pub codecs: Vec<Codec>,
    pub extmaps: Vec<ExtMap>,
    /// The stream the server sends on this m-line, if any.
    pub send: Option<SendStream>,
    pub rtcp_rsize: bool,
    /// Simulcast layers (rids) received on this m-line: `a=rid:<id> recv` each and
    /// `a=simulcast:recv <ids>` (RFC 8853).
    pub recv_rids: Vec<String>,
}

/// A stream the server sends, announced with `a=msid` and `a=ssrc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendStream {
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    pub cname: String,
    pub stream_id: String,
    pub track_id: String,
}

// ---------------------------------------------------------------------------
// Helpers on parsed descriptions
// ---------------------------------------------------------------------------

/// Protocols accepted for active audio and video m-lines.
const WEBRTC_PROTOCOLS: [&str; 2] = [DEFAULT_PROTOCOL, "UDP/TLS/RTP/SAVP"];
/// The protocol of WebRTC media m-lines.
const DEFAULT_PROTOCOL: &str = "UDP/TLS/RTP/SAVPF";

impl SessionDescription {
    /// The m-line whose transport parameters apply to the BUNDLE group: the one
    /// named by the BUNDLE tag, else the first active one, else the first one.
    fn transport_media(&self) -> Option<&MediaDescription> {
        self.bundle_mids
            .first()
            .and_then(|tag| {
                self.media
                    .iter()
                    .find(|m| m.mid.as_deref() == Some(tag.as_str()))
            })
            .or_else(|| self.media.iter().find(|m| m.port != 0))
            .or_else(|| self.media.first())
    }

    /// The remote ICE ufrag and password: those of the first bundled m-line,
    /// else the session-level ones.
    pub fn ice_credentials(&self) -> Result<(String, String), SdpError> {
        let m = self.transport_media();
        let ufrag = m
            .and_then(|m| m.ice_ufrag.as_ref())
            .or(self.ice_ufrag.as_ref());
        let pwd = m.and_then(|m| m.ice_pwd.as_ref()).or(self.ice_pwd.as_ref());
        match (ufrag, pwd) {
            (Some(u), Some(p)) => Ok((u.clone(), p.clone())),
            _ => Err(SdpError::MissingIceCredentials),
        }
    }

    /// The remote DTLS fingerprint (`sha-256 AB:..`): that of the first bundled
    /// m-line, else the session-level one.
    pub fn fingerprint(&self) -> Result<String, SdpError> {
        self.transport_media()
            .and_then(|m| m.fingerprint.as_ref())
            .or(self.fingerprint.as_ref())
            .cloned()
            .ok_or(SdpError::MissingFingerprint)
    }

    /// The remote `a=setup`: that of the first bundled m-line, else the
    /// session-level one.
    pub fn setup(&self) -> Option<Setup> {
        self.transport_media().and_then(|m| m.setup).or(self.setup)
    }

    /// Checks that this is an offer this server can serve: every active audio or
    /// video m-line uses `UDP/TLS/RTP/SAVPF` (or `SAVP`), has a mid, is in the
    /// BUNDLE group and has rtcp-mux; there is at least one such m-line; every mid
    /// of the BUNDLE group exists; ICE credentials and a fingerprint are present.
    /// Application and other m-lines are allowed (the answer rejects them).
    pub fn validate_webrtc(&self) -> Result<(), SdpError> {
        if let Some(mid) = self
            .bundle_mids
            .iter()
            .find(|b| !self.media.iter().any(|m| m.mid.as_ref() == Some(*b)))
        {
            return Err(SdpError::UnknownBundleMid { mid: mid.clone() });
        }
        let mut active = 0usize;
        for (i, m) in self.media.iter().enumerate() {
            if m.port == 0 || !matches!(m.media_type, MediaType::Audio | MediaType::Video) {
                continue;
            }
            let Some(mid) = m.mid.as_ref() else {
                return Err(SdpError::MissingAttribute {
                    attr: "mid",
                    m_line: i,
                });
            };
            if !WEBRTC_PROTOCOLS.contains(&m.protocol.as_str()) {
                return Err(SdpError::UnsupportedProtocol {
                    mid: mid.clone(),
                    protocol: m.protocol.clone(),
                });
            }
            if !self.bundle_mids.contains(mid) {
                return Err(SdpError::NotBundled { mid: mid.clone() });
            }
            if !m.rtcp_mux {
                return Err(SdpError::NoRtcpMux { mid: mid.clone() });
            }
            active += 1;
        }
        if active == 0 {
            return Err(SdpError::NoMedia);
        }
        self.ice_credentials()?;
        self.fingerprint()?;
        Ok(())
    }
}

impl MediaDescription {
    /// The payload type of the rtx codec that retransmits `pt` (`a=fmtp:<rtx> apt=<pt>`).
    pub fn rtx_payload_for(&self, pt: u8) -> Option<u8> {
        self.codecs
            .iter()
            .find(|c| {
                c.name.eq_ignore_ascii_case("rtx")
                    && fmtp_param(c.fmtp.as_deref(), "apt").and_then(|v| v.parse::<u8>().ok())
                        == Some(pt)
            })
            .map(|c| c.payload_type)
    }

    /// The SSRCs this m-line's sender declares: each primary SSRC with its RTX SSRC
    /// from `a=ssrc-group:FID`. Simulcast layers (`SIM`) come first, in group order;
    /// RTX (`FID`) and FEC (`FEC-FR`, `FEC`) secondaries are never listed as primaries.
    pub fn sender_ssrcs(&self) -> Vec<(u32, Option<u32>)> {
        // Sets and maps keep this linear in the number of SSRC lines, which a
        // 64 KiB offer can make large.
        let mut secondary: HashSet<u32> = HashSet::new();
        let mut rtx_of: HashMap<u32, u32> = HashMap::new();
        for g in &self.ssrc_groups {
            if matches!(g.semantics.as_str(), "FID" | "FEC-FR" | "FEC") {
                secondary.extend(g.ssrcs.iter().skip(1));
            }
            if g.semantics == "FID"
                && let (Some(&primary), Some(&rtx)) = (g.ssrcs.first(), g.ssrcs.get(1))
            {
                rtx_of.entry(primary).or_insert(rtx);
            }
        }
        let sim = self
            .ssrc_groups
            .iter()
            .filter(|g| g.semantics == "SIM")
            .flat_map(|g| g.ssrcs.iter().copied());
        let grouped = self
            .ssrc_groups
            .iter()
            .filter_map(|g| g.ssrcs.first().copied());
        let declared = self.ssrcs.iter().map(|s| s.ssrc);
        let mut seen: HashSet<u32> = HashSet::new();
        let mut out: Vec<(u32, Option<u32>)> = Vec::new();
        for ssrc in sim.chain(grouped).chain(declared) {
            if !secondary.contains(&ssrc) && seen.insert(ssrc) {
                out.push((ssrc, rtx_of.get(&ssrc).copied()));
            }
        }
        out
    }

    /// The first `a=ssrc:<ssrc> cname:<cname>` value.
    /// The rids this m-line sends as simulcast layers (`a=simulcast:send`, first
    /// alternative of each, paused ones included), in the offer's order; each must
    /// have an `a=rid:<id> send`. Empty without simulcast.
    pub fn simulcast_send_rids(&self) -> Vec<String> {
        let Some(sc) = self.simulcast.as_deref() else {
            return Vec::new();
        };
        let mut words = sc.split_whitespace();
        let mut rids = Vec::new();
        while let (Some(dir), Some(list)) = (words.next(), words.next()) {
            if dir != "send" {
                continue;
            }
            for layer in list.split(';') {
                let Some(first) = layer.split(',').next() else {
                    continue;
                };
                let id = first.trim_start_matches('~');
                if self
                    .rids
                    .iter()
                    .any(|r| r.id == id && r.direction == "send")
                    && !rids.iter().any(|r| r == id)
                {
                    rids.push(id.to_owned());
                }
            }
        }
        rids
    }

    /// The id of the `a=extmap` with this URI, if offered.
    pub fn extmap_id(&self, uri: &str) -> Option<u8> {
        self.extmaps.iter().find(|e| e.uri == uri).map(|e| e.id)
    }

    pub fn cname(&self) -> Option<&str> {
        self.ssrcs
            .iter()
            .find(|s| s.attribute == "cname")
            .and_then(|s| s.value.as_deref())
    }
}

/// The value of `key` in `a=fmtp` parameters (`k=v;k=v`), keys case-insensitive.
fn fmtp_param<'a>(fmtp: Option<&'a str>, key: &str) -> Option<&'a str> {
    fmtp?
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
}

// ---------------------------------------------------------------------------
// Codec choice
// ---------------------------------------------------------------------------

fn is_codec(c: &Codec, name: &str, clock_rate: u32) -> bool {
    c.name.eq_ignore_ascii_case(name) && c.clock_rate == clock_rate
}

/// The first codec passing `filter` with the highest `rank` (ties keep offer order).
fn best(
    codecs: &[Codec],
    filter: impl Fn(&Codec) -> bool,
    rank: impl Fn(&Codec) -> u8,
) -> Option<&Codec> {
    let mut best: Option<(&Codec, u8)> = None;
    for c in codecs.iter().filter(|c| filter(c)) {
        let r = rank(c);
        if best.is_none_or(|(_, b)| r > b) {
            best = Some((c, r));
        }
    }
    best.map(|(c, _)| c)
}

/// H264 preference: packetization-mode 1, then 0; within each, profile-level-id
/// 42e01f, then other baseline/main profiles, then anything else.
fn h264_rank(c: &Codec) -> u8 {
    let fmtp = c.fmtp.as_deref();
    let mode = match fmtp_param(fmtp, "packetization-mode").unwrap_or("0") {
        "1" => 2,
        "0" => 1,
        _ => 0,
    };
    // RFC 6184 §8.1: an absent profile-level-id means 42000a (baseline, level 1).
    let plid = fmtp_param(fmtp, "profile-level-id")
        .unwrap_or("42000a")
        .to_ascii_lowercase();
    let profile = if plid == "42e01f" {
        3
    } else if plid.starts_with("42") || plid.starts_with("4d") {
        2
    } else {
        1
    };
    mode * 4 + profile
}

/// The H264 profile of a codec: the first 4 hex digits of profile-level-id
/// (profile_idc and profile-iop), lowercase.
fn h264_profile(c: &Codec) -> Option<String> {
    let plid = fmtp_param(c.fmtp.as_deref(), "profile-level-id").unwrap_or("42000a");
    if plid.len() == 6 && plid.bytes().all(|b| b.is_ascii_hexdigit()) {
        plid.get(..4).map(str::to_ascii_lowercase)
    } else {
        None
    }
}

/// A numeric fmtp parameter with a default (`profile-id` of VP9, `profile` of AV1).
fn fmtp_or<'a>(c: &'a Codec, key: &str, default: &'a str) -> &'a str {
    fmtp_param(c.fmtp.as_deref(), key).unwrap_or(default)
}

/// The codec this server forwards on an m-line: opus/48000/2 for audio; for video
/// VP8, then H264 (see [`h264_rank`]), then VP9 (profile 0 preferred), then AV1
/// (profile 0 preferred). rtx, red, ulpfec, flexfec and telephone-event are never
/// chosen.
pub fn choose_codec(media: &MediaDescription) -> Option<&Codec> {
    let codecs = &media.codecs;
    match media.media_type {
        MediaType::Audio => codecs
            .iter()
            .find(|c| is_codec(c, "opus", 48_000) && c.channels == Some(2)),
        MediaType::Video => codecs
            .iter()
            .find(|c| is_codec(c, "VP8", 90_000))
            .or_else(|| best(codecs, |c| is_codec(c, "H264", 90_000), h264_rank))
            .or_else(|| {
                best(
                    codecs,
                    |c| is_codec(c, "VP9", 90_000),
                    |c| u8::from(fmtp_or(c, "profile-id", "0") == "0"),
                )
            })
            .or_else(|| {
                best(
                    codecs,
                    |c| is_codec(c, "AV1", 90_000),
                    |c| u8::from(fmtp_or(c, "profile", "0") == "0"),
                )
            }),
        _ => None,
    }
}

/// The codec of `media` (a subscriber's m-line) that can carry what a publisher
/// sends in `codec`: same name (case-insensitive), clock rate and channel count;
/// for H264 the same packetization-mode and profile (the level may differ); for
/// VP9 the same profile-id and for AV1 the same profile.
pub fn find_compatible_codec<'a>(media: &'a MediaDescription, codec: &Codec) -> Option<&'a Codec> {
    media.codecs.iter().find(|c| {
        c.name.eq_ignore_ascii_case(&codec.name)
            && c.clock_rate == codec.clock_rate
            && c.channels.unwrap_or(1) == codec.channels.unwrap_or(1)
            && same_format_parameters(c, codec)
    })
}

fn same_format_parameters(a: &Codec, b: &Codec) -> bool {
    if a.name.eq_ignore_ascii_case("H264") {
        let mode = |c: &Codec| fmtp_or(c, "packetization-mode", "0").to_owned();
        let profile = h264_profile(a);
        mode(a) == mode(b) && profile.is_some() && profile == h264_profile(b)
    } else if a.name.eq_ignore_ascii_case("VP9") {
        fmtp_or(a, "profile-id", "0") == fmtp_or(b, "profile-id", "0")
    } else if a.name.eq_ignore_ascii_case("AV1") {
        fmtp_or(a, "profile", "0") == fmtp_or(b, "profile", "0")
    } else {
        true
    }
}

// ---------------------------------------------------------------------------
// Lexing
// ---------------------------------------------------------------------------

/// One `<type>=<value>` line.
struct Line<'a> {
    /// 1-based line number.
    no: usize,
    kind: u8,
    value: &'a str,
}

/// At most the first 32 characters of a value, for error messages.
fn shown(s: &str) -> &str {
    s.char_indices()
        .nth(32)
        .map_or(s, |(i, _)| s.get(..i).unwrap_or(s))
}

fn bad(line_no: usize, reason: impl Into<String>) -> SdpError {
    SdpError::BadLine {
        line_no,
        reason: reason.into(),
    }
}

/// Splits an SDP into lines, accepting CRLF and LF endings and blank lines only
/// at the end, and rejecting anything that is not `<lowercase letter>=<value>` or
/// that carries control characters.
fn split_lines(sdp: &str) -> Result<Vec<Line<'_>>, SdpError> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge {
            len: sdp.len(),
            max: MAX_SDP_LEN,
        });
    }
    let mut lines = Vec::new();
    let mut blank = None;
    for (i, raw) in sdp.split('\n').enumerate() {
        let no = i + 1;
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        if text.is_empty() {
            blank.get_or_insert(no);
            continue;
        }
        if let Some(b) = blank {
            return Err(bad(b, "empty line inside the SDP"));
        }
        if lines.len() >= MAX_LINES {
            return Err(SdpError::TooMany {
                what: "lines",
                max: MAX_LINES,
            });
        }
        let bytes = text.as_bytes();
        let (Some(&kind), Some(b'='), Some(value)) = (bytes.first(), bytes.get(1), text.get(2..))
        else {
            return Err(bad(no, "not a <type>=<value> line"));
        };
        if !kind.is_ascii_lowercase() {
            return Err(bad(no, "the type of a line must be a lowercase letter"));
        }
        if let Some(c) = control_char(value) {
            return Err(bad(no, format!("control character U+{:04X}", u32::from(c))));
        }
        lines.push(Line { no, kind, value });
    }
    if lines.is_empty() {
        return Err(SdpError::Empty);
    }
    Ok(lines)
}

/// The first control character (C0, DEL or C1) of a line other than tab.
fn control_char(s: &str) -> Option<char> {
    // Lines are nearly always printable ASCII: check bytes before decoding chars.
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if (b < 0x20 && b != b'\t') || b >= 0x7f {
            return s.chars().find(|c| c.is_control() && *c != '\t');
        }
        i += 1;
    }
    None
}

/// RFC 8866 `token` characters.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'{'..=b'~'
            )
    })
}

/// Splits `a=<name>[:<value>]`; the value is trimmed.
fn split_attribute<'a>(line: &Line<'a>) -> Result<(&'a str, Option<&'a str>), SdpError> {
    let (name, value) = match line.value.split_once(':') {
        Some((n, v)) => (n, Some(v.trim())),
        None => (line.value.trim_end(), None),
    };
    if !is_token(name) {
        return Err(bad(line.no, "the attribute name is not a token"));
    }
    Ok((name, value))
}

/// The non-empty value of `a=<name>:<value>`.
fn need<'a>(line: &Line<'_>, name: &str, value: Option<&'a str>) -> Result<&'a str, SdpError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(bad(line.no, format!("a={name} needs a value"))),
    }
}

fn set_once<T>(slot: &mut Option<T>, v: T, line: &Line<'_>, name: &str) -> Result<(), SdpError> {
    if slot.is_some() {
        return Err(bad(
            line.no,
            format!("a={name} appears twice at the same level"),
        ));
    }
    *slot = Some(v);
    Ok(())
}

fn parse_token(line: &Line<'_>, name: &str, value: Option<&str>) -> Result<String, SdpError> {
    let v = need(line, name, value)?;
    if !is_token(v) || v.len() > MAX_TOKEN_LEN {
        return Err(bad(
            line.no,
            format!("a={name} value is not a token of at most {MAX_TOKEN_LEN} characters"),
        ));
    }
    Ok(v.to_owned())
}

/// An ICE ufrag or password (RFC 8839 §5.4: ice-char = ALPHA / DIGIT / "+" / "/").
fn parse_ice(
    line: &Line<'_>,
    name: &str,
    value: Option<&str>,
    min: usize,
) -> Result<String, SdpError> {
    let v = need(line, name, value)?;
    let ice_chars = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !ice_chars || v.len() < min || v.len() > MAX_TOKEN_LEN {
        return Err(bad(
            line.no,
            format!("a={name} must be {min} to {MAX_TOKEN_LEN} ICE characters (A-Z a-z 0-9 + /)"),
        ));
    }
    Ok(v.to_owned())
}

/// `a=fingerprint:<hash-func> <fingerprint>`, whitespace normalised.
fn parse_fingerprint(line: &Line<'_>, value: Option<&str>) -> Result<String, SdpError> {
    let v = need(line, "fingerprint", value)?;
    let mut parts = v.split_ascii_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(hash), Some(fp), None) if is_token(hash) => Ok(format!("{hash} {fp}")),
        _ => Err(bad(
            line.no,
            "a=fingerprint must be <hash-function> <fingerprint>",
        )),
    }
}

fn is_sha256(fingerprint: &str) -> bool {
    fingerprint
        .split(' ')
        .next()
        .is_some_and(|h| h.eq_ignore_ascii_case("sha-256"))
}

/// An RTP payload type (0..=127).
fn parse_pt(line: &Line<'_>, s: &str) -> Result<u8, SdpError> {
    match s.parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err(bad(
            line.no,
            format!("{:?} is not an RTP payload type (0-127)", shown(s)),
        )),
    }
}

fn parse_extmap(line: &Line<'_>, value: Option<&str>) -> Result<ExtMap, SdpError> {
    let v = need(line, "extmap", value)?;
    let mut parts = v.split_ascii_whitespace();
    let (Some(head), Some(uri)) = (parts.next(), parts.next()) else {
        return Err(bad(line.no, "a=extmap must be <id>[/<direction>] <uri>"));
    };
    let (id, direction) = match head.split_once('/') {
        Some((id, dir)) => {
            let d = Direction::parse(dir).ok_or_else(|| {
                bad(
                    line.no,
                    format!("unknown a=extmap direction {:?}", shown(dir)),
                )
            })?;
            (id, Some(d))
        }
        None => (head, None),
    };
    let id = match id.parse::<u8>() {
        Ok(id) if id >= 1 => id,
        _ => {
            return Err(bad(
                line.no,
                format!("a=extmap id {:?} is not in 1-255", shown(id)),
            ));
        }
    };
    Ok(ExtMap {
        id,
        uri: uri.to_owned(),
        direction,
    })
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Attributes both the session and an m-line may carry.
#[derive(Default)]
struct Common {
    ice_ufrag: Option<String>,
    ice_pwd: Option<String>,
    fingerprint: Option<String>,
    setup: Option<Setup>,
    direction: Option<Direction>,
    extmaps: Vec<ExtMap>,
}

impl Common {
    /// Handles one of the shared attributes; `Ok(false)` for any other.
    fn attribute(
        &mut self,
        line: &Line<'_>,
        name: &str,
        value: Option<&str>,
    ) -> Result<bool, SdpError> {
        match name {
            "ice-ufrag" => {
                let v = parse_ice(line, name, value, MIN_UFRAG_LEN)?;
                set_once(&mut self.ice_ufrag, v, line, name)?;
            }
            "ice-pwd" => {
                let v = parse_ice(line, name, value, MIN_PWD_LEN)?;
                set_once(&mut self.ice_pwd, v, line, name)?;
            }
            "fingerprint" => {
                // RFC 8122 allows several; keep the first, or the first sha-256.
                let fp = parse_fingerprint(line, value)?;
                let replace = self
                    .fingerprint
                    .as_deref()
                    .is_none_or(|old| !is_sha256(old) && is_sha256(&fp));
                if replace {
                    self.fingerprint = Some(fp);
                }
            }
            "setup" => {
                let v = need(line, name, value)?;
                let s = Setup::parse(v)
                    .ok_or_else(|| bad(line.no, format!("unknown a=setup value {:?}", shown(v))))?;
                set_once(&mut self.setup, s, line, name)?;
            }
            "sendrecv" | "sendonly" | "recvonly" | "inactive" => {
                // Matched by the arm's pattern, so parse() always succeeds here.
                let d = Direction::parse(name).unwrap_or_default();
                set_once(&mut self.direction, d, line, "<direction>")?;
            }
            "extmap" => {
                let e = parse_extmap(line, value)?;
                if self.extmaps.iter().any(|x| x.id == e.id) {
                    return Err(bad(line.no, format!("a=extmap id {} is used twice", e.id)));
                }
                self.extmaps.push(e);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[derive(Default)]
struct SessionBuilder {
    session_id: Option<u64>,
    ice_lite: bool,
    bundle_mids: Option<Vec<String>>,
    common: Common,
}

impl SessionBuilder {
    fn origin(&mut self, line: &Line<'_>) -> Result<(), SdpError> {
        if self.session_id.is_some() {
            return Err(bad(line.no, "o= appears twice"));
        }
        let fields: Vec<&str> = line.value.split_ascii_whitespace().collect();
        let [_user, id, _version, _net, _addr_type, _addr] = fields.as_slice() else {
            return Err(bad(
                line.no,
                "o= must be <username> <sess-id> <sess-version> <nettype> <addrtype> <address>",
            ));
        };
        let id = id
            .parse::<u64>()
            .map_err(|_| bad(line.no, "the o= session id is not a 64-bit number"))?;
        self.session_id = Some(id);
        Ok(())
    }

    fn attribute(&mut self, line: &Line<'_>) -> Result<(), SdpError> {
        let (name, value) = split_attribute(line)?;
        if self.common.attribute(line, name, value)? {
            return Ok(());
        }
        match name {
            "ice-lite" => self.ice_lite = true,
            "group" => {
                let v = need(line, name, value)?;
                let mut parts = v.split_ascii_whitespace();
                let semantics = parts.next().unwrap_or_default();
                // Only the first BUNDLE group is kept: validation then flags every
                // m-line of a second group as not bundled.
                if semantics.eq_ignore_ascii_case("BUNDLE") && self.bundle_mids.is_none() {
                    let mut mids: Vec<String> = Vec::new();
                    for mid in parts {
                        if mids.len() >= MAX_MEDIA {
                            return Err(SdpError::TooMany {
                                what: "mids in a=group:BUNDLE",
                                max: MAX_MEDIA,
                            });
                        }
                        if !is_token(mid) || mid.len() > MAX_TOKEN_LEN {
                            return Err(bad(line.no, "a BUNDLE mid is not a token"));
                        }
                        if !mids.iter().any(|m| m == mid) {
                            mids.push(mid.to_owned());
                        }
                    }
                    self.bundle_mids = Some(mids);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

struct RtpMap {
    pt: u8,
    name: String,
    clock_rate: u32,
    channels: Option<u16>,
}

struct MediaBuilder {
    media_type: MediaType,
    port: u16,
    protocol: String,
    formats: Vec<String>,
    /// Whether the protocol is RTP, so the formats are payload types.
    rtp: bool,
    bundle_only: bool,
    mid: Option<String>,
    common: Common,
    rtcp_mux: bool,
    rtcp_rsize: bool,
    rtpmaps: Vec<RtpMap>,
    fmtps: Vec<(u8, String)>,
    /// Feedback per payload type; `None` for `*`.
    feedback: Vec<(Option<u8>, String)>,
    ssrcs: Vec<SsrcAttr>,
    ssrc_groups: Vec<SsrcGroup>,
    msid: Option<String>,
    rids: Vec<Rid>,
    simulcast: Option<String>,
    candidates: Vec<String>,
    end_of_candidates: bool,
}

/// Well-known static payload types (RFC 3551) an m-line may use without `a=rtpmap`.
fn static_payload(pt: u8) -> Option<(&'static str, u32)> {
    match pt {
        0 => Some(("PCMU", 8000)),
        8 => Some(("PCMA", 8000)),
        9 => Some(("G722", 8000)),
        _ => None,
    }
}

impl MediaBuilder {
    /// `m=<media> <port>[/<number of ports>] <proto> <fmt> ...`
    fn new(line: &Line<'_>) -> Result<Self, SdpError> {
        let mut parts = line.value.split_ascii_whitespace();
        let (Some(media), Some(port), Some(protocol)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(line.no, "m= must be <media> <port> <proto> <fmt> ..."));
        };
        if !is_token(media) {
            return Err(bad(line.no, "the m= media type is not a token"));
        }
        let (port, count) = match port.split_once('/') {
            Some((p, n)) => (p, Some(n)),
            None => (port, None),
        };
        let port = port.parse::<u16>().map_err(|_| {
            bad(
                line.no,
                format!("m= port {:?} is not in 0-65535", shown(port)),
            )
        })?;
        if count.is_some_and(|n| n.parse::<u16>().is_err()) {
            return Err(bad(line.no, "m= port count is not a number"));
        }
        let rtp = protocol.split('/').any(|p| p == "RTP");
        let mut formats: Vec<String> = Vec::new();
        for f in parts {
            if formats.len() >= MAX_FORMATS {
                return Err(SdpError::TooMany {
                    what: "formats on one m-line",
                    max: MAX_FORMATS,
                });
            }
            if rtp {
                parse_pt(line, f)?;
            }
            if !formats.iter().any(|x| x == f) {
                formats.push(f.to_owned());
            }
        }
        if formats.is_empty() {
            return Err(bad(line.no, "m= has no format"));
        }
        Ok(MediaBuilder {
            media_type: MediaType::parse(media),
            port,
            protocol: protocol.to_owned(),
            formats,
            rtp,
            bundle_only: false,
            mid: None,
            common: Common::default(),
            rtcp_mux: false,
            rtcp_rsize: false,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            feedback: Vec::new(),
            ssrcs: Vec::new(),
            ssrc_groups: Vec::new(),
            msid: None,
            rids: Vec::new(),
            simulcast: None,
            candidates: Vec::new(),
            end_of_candidates: false,
        })
    }

    fn attribute(&mut self, line: &Line<'_>) -> Result<(), SdpError> {
        let (name, value) = split_attribute(line)?;
        if self.common.attribute(line, name, value)? {
            return Ok(());
        }
        match name {
            "mid" => {
                let mid = parse_token(line, name, value)?;
                set_once(&mut self.mid, mid, line, name)?;
            }
            "rtcp-mux" => self.rtcp_mux = true,
            "rtcp-rsize" => self.rtcp_rsize = true,
            "bundle-only" => self.bundle_only = true,
            "rtpmap" if self.rtp => self.rtpmap(line, need(line, name, value)?)?,
            "fmtp" if self.rtp => self.fmtp(line, need(line, name, value)?)?,
            "rtcp-fb" if self.rtp => self.rtcp_fb(line, need(line, name, value)?)?,
            "ssrc" => self.ssrc(line, need(line, name, value)?)?,
            "ssrc-group" => self.ssrc_group(line, need(line, name, value)?)?,
            "msid" => {
                let v = need(line, name, value)?;
                if self.msid.is_none() {
                    self.msid = Some(v.split_ascii_whitespace().collect::<Vec<_>>().join(" "));
                }
            }
            "rid" => self.rid(line, need(line, name, value)?)?,
            "simulcast" => {
                let v = need(line, name, value)?;
                set_once(&mut self.simulcast, v.to_owned(), line, name)?;
            }
            "candidate" => self.candidates.push(need(line, name, value)?.to_owned()),
            "end-of-candidates" => self.end_of_candidates = true,
            _ => {}
        }
        Ok(())
    }

    /// `a=rtpmap:<pt> <encoding name>/<clock rate>[/<channels>]`
    fn rtpmap(&mut self, line: &Line<'_>, v: &str) -> Result<(), SdpError> {
        let Some((pt, encoding)) = v.split_once(|c: char| c.is_ascii_whitespace()) else {
            return Err(bad(line.no, "a=rtpmap must be <pt> <name>/<clock rate>"));
        };
        let pt = parse_pt(line, pt)?;
        let mut parts = encoding.trim().split('/');
        let (Some(name), Some(clock), channels, None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(
                line.no,
                "a=rtpmap must be <pt> <name>/<clock rate>[/<channels>]",
            ));
        };
        if !is_token(name) {
            return Err(bad(line.no, "the a=rtpmap encoding name is not a token"));
        }
        let clock_rate = match clock.parse::<u32>() {
            Ok(c) if c > 0 => c,
            _ => {
                return Err(bad(
                    line.no,
                    format!("a=rtpmap clock rate {:?} is invalid", shown(clock)),
                ));
            }
        };
        let channels = match channels.map(str::parse::<u16>) {
            None => None,
            Some(Ok(n)) if n > 0 => Some(n),
            Some(_) => return Err(bad(line.no, "a=rtpmap channel count is invalid")),
        };
        if self.rtpmaps.iter().any(|r| r.pt == pt) {
            return Err(bad(
                line.no,
                format!("a second a=rtpmap for payload type {pt}"),
            ));
        }
        self.rtpmaps.push(RtpMap {
            pt,
            name: name.to_owned(),
            clock_rate,
            channels,
        });
        Ok(())
    }

    /// `a=fmtp:<pt> <parameters>`
    fn fmtp(&mut self, line: &Line<'_>, v: &str) -> Result<(), SdpError> {
        let (pt, params) = v
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((v, ""));
        let pt = parse_pt(line, pt)?;
        let params = params.trim();
        if self.fmtps.iter().any(|(p, _)| *p == pt) {
            return Err(bad(
                line.no,
                format!("a second a=fmtp for payload type {pt}"),
            ));
        }
        if !params.is_empty() {
            self.fmtps.push((pt, params.to_owned()));
        }
        Ok(())
    }

    /// `a=rtcp-fb:<pt|*> <type> [<subtype>]`
    fn rtcp_fb(&mut self, line: &Line<'_>, v: &str) -> Result<(), SdpError> {
        let Some((pt, fb)) = v.split_once(|c: char| c.is_ascii_whitespace()) else {
            return Err(bad(line.no, "a=rtcp-fb must be <pt> <feedback type>"));
        };
        let pt = match pt {
            "*" => None,
            pt => Some(parse_pt(line, pt)?),
        };
        let fb = fb.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
        self.feedback.push((pt, fb));
        Ok(())
    }

    /// `a=ssrc:<ssrc> <attribute>[:<value>]`
    fn ssrc(&mut self, line: &Line<'_>, v: &str) -> Result<(), SdpError> {
        let Some((ssrc, rest)) = v.split_once(|c: char| c.is_ascii_whitespace()) else {
            return Err(bad(line.no, "a=ssrc must be <ssrc> <attribute>[:<value>]"));
        };
        let ssrc = ssrc.parse::<u32>().map_err(|_| {
            bad(
                line.no,
                format!("SSRC {:?} is not a 32-bit number", shown(ssrc)),
            )
        })?;
        let rest = rest.trim();
        let (attribute, value) = match rest.split_once(':') {
            Some((a, v)) => (a.trim(), Some(v.trim().to_owned())),
            None => (rest, None),
        };
        if !is_token(attribute) {
            return Err(bad(line.no, "the a=ssrc attribute name is not a token"));
        }
        self.ssrcs.push(SsrcAttr {
            ssrc,
            attribute: attribute.to_owned(),
            value,
        });
        Ok(())
    }

    /// `a=ssrc-group:<semantics> <ssrc> ...`
    fn ssrc_group(&mut self, line: &Line<'_>, v: &str) -> Result<(), SdpError> {
        let mut parts = v.split_ascii_whitespace();
        let semantics = parts.next().unwrap_or_default();
        if !is_token(semantics) {
            return Err(bad(line.no, "the a=ssrc-group semantics is not a token"));
        }
        let ssrcs = parts
            .map(|s| {
                s.parse::<u32>().map_err(|_| {
                    bad(
                        line.no,
                        format!("SSRC {:?} is not a 32-bit number", shown(s)),
                    )
                })
            })
            .collect::<Result<Vec<u32>, SdpError>>()?;
        if ssrcs.is_empty() {
            return Err(bad(line.no, "a=ssrc-group lists no SSRC"));
        }
        self.ssrc_groups.push(SsrcGroup {
            semantics: semantics.to_owned(),
            ssrcs,
        });
        Ok(())
    }

    /// `a=rid:<id> <send|recv> [<params>]`
    fn rid(&mut self, line: &Line<'_>, v: &str) -> Result<(), SdpError> {
        let mut parts = v.splitn(3, |c: char| c.is_ascii_whitespace());
        let (Some(id), Some(direction)) = (parts.next(), parts.next()) else {
            return Err(bad(line.no, "a=rid must be <id> <send|recv> [<params>]"));
        };
        // RFC 8851 §10: rid-id = 1*(alpha-numeric / "-" / "_").
        let id_ok = !id.is_empty()
            && id.len() <= MAX_TOKEN_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(bad(
                line.no,
                "a=rid id must be letters, digits, '-' and '_'",
            ));
        }
        if direction != "send" && direction != "recv" {
            return Err(bad(line.no, "a=rid direction must be send or recv"));
        }
        let params = parts.next().map(str::trim).filter(|p| !p.is_empty());
        self.rids.push(Rid {
            id: id.to_owned(),
            direction: direction.to_owned(),
            params: params.map(str::to_owned),
        });
        Ok(())
    }

    fn finish(self, session: &Common) -> MediaDescription {
        let mut codecs = Vec::new();
        if self.rtp {
            for f in &self.formats {
                // Formats of RTP m-lines were checked by parse_pt() in new().
                let Ok(pt) = f.parse::<u8>() else { continue };
                let (name, clock_rate, channels) = match self.rtpmaps.iter().find(|r| r.pt == pt) {
                    Some(r) => (r.name.clone(), r.clock_rate, r.channels),
                    None => match static_payload(pt) {
                        Some((name, clock)) => (name.to_owned(), clock, None),
                        None => continue,
                    },
                };
                codecs.push(Codec {
                    payload_type: pt,
                    name,
                    clock_rate,
                    channels,
                    fmtp: self
                        .fmtps
                        .iter()
                        .find(|(p, _)| *p == pt)
                        .map(|(_, f)| f.clone()),
                    rtcp_fb: self
                        .feedback
                        .iter()
                        .filter(|(p, _)| p.is_none_or(|p| p == pt))
                        .map(|(_, fb)| fb.clone())
                        .collect(),
                });
            }
        }
        let mut extmaps = self.common.extmaps;
        for e in &session.extmaps {
            if !extmaps.iter().any(|x| x.id == e.id) {
                extmaps.push(e.clone());
            }
        }
        MediaDescription {
            media_type: self.media_type,
            port: if self.port == 0 && self.bundle_only {
                BUNDLED_PORT
            } else {
                self.port
            },
            protocol: self.protocol,
            formats: self.formats,
            mid: self.mid,
            direction: self
                .common
                .direction
                .or(session.direction)
                .unwrap_or_default(),
            ice_ufrag: self.common.ice_ufrag,
            ice_pwd: self.common.ice_pwd,
            fingerprint: self.common.fingerprint,
            setup: self.common.setup,
            rtcp_mux: self.rtcp_mux,
            rtcp_rsize: self.rtcp_rsize,
            codecs,
            extmaps,
            ssrcs: self.ssrcs,
            ssrc_groups: self.ssrc_groups,
            msid: self.msid,
            rids: self.rids,
            simulcast: self.simulcast,
            candidates: self.candidates,
            end_of_candidates: self.end_of_candidates,
        }
    }
}

/// Parses a session description (RFC 8866 syntax). Accepts CRLF and LF line
/// endings, ignores unknown line types and attributes, and rejects lines that are
/// not `<letter>=<value>`, input over [`MAX_SDP_LEN`] bytes and more than
/// [`MAX_MEDIA`] m-lines. It checks syntax only; see
/// [`SessionDescription::validate_webrtc`] for what this server can serve.
pub fn parse(sdp: &str) -> Result<SessionDescription, SdpError> {
    let lines = split_lines(sdp)?;
    let mut lines = lines.iter();
    match lines.next() {
        Some(first) if first.kind == b'v' && first.value.trim() == "0" => {}
        Some(first) => return Err(bad(first.no, "the first line must be v=0")),
        None => return Err(SdpError::Empty),
    }
    let mut session = SessionBuilder::default();
    let mut media: Vec<MediaBuilder> = Vec::new();
    for line in lines {
        match line.kind {
            b'v' => return Err(bad(line.no, "v= may only be the first line")),
            b'o' if media.is_empty() => session.origin(line)?,
            b'o' => return Err(bad(line.no, "o= must come before the first m-line")),
            b'm' => {
                if media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooMany {
                        what: "m-lines",
                        max: MAX_MEDIA,
                    });
                }
                media.push(MediaBuilder::new(line)?);
            }
            b'a' => match media.last_mut() {
                Some(m) => m.attribute(line)?,
                None => session.attribute(line)?,
            },
            // s=, t=, c=, b=, i=, u=, e=, p=, r=, z=, k= and unknown types carry
            // nothing this server needs.
            _ => {}
        }
    }
    let session_id = session
        .session_id
        .ok_or(SdpError::MissingLine { line: "o=" })?;
    let media: Vec<MediaDescription> = media
        .into_iter()
        .map(|m| m.finish(&session.common))
        .collect();
    for (i, m) in media.iter().enumerate() {
        if let Some(mid) = &m.mid
            && media
                .iter()
                .skip(i + 1)
                .any(|o| o.mid.as_ref() == Some(mid))
        {
            return Err(SdpError::DuplicateMid { mid: mid.clone() });
        }
    }
    Ok(SessionDescription {
        session_id,
        ice_lite: session.ice_lite,
        ice_ufrag: session.common.ice_ufrag,
        ice_pwd: session.common.ice_pwd,
        fingerprint: session.common.fingerprint,
        setup: session.common.setup,
        bundle_mids: session.bundle_mids.unwrap_or_default(),
        media,
    })
}

/// Parses an `application/trickle-ice-sdpfrag` body (RFC 8840): ICE credentials,
/// mids, candidates and end-of-candidates, wherever they appear. Other lines must
/// still be `<letter>=<value>` and are ignored.
pub fn parse_sdpfrag(s: &str) -> Result<SdpFragment, SdpError> {
    let lines = match split_lines(s) {
        Err(SdpError::Empty) => return Ok(SdpFragment::default()),
        other => other?,
    };
    let mut frag = SdpFragment::default();
    let mut media = 0usize;
    for line in &lines {
        match line.kind {
            b'm' => {
                media += 1;
                if media > MAX_MEDIA {
                    return Err(SdpError::TooMany {
                        what: "m-lines",
                        max: MAX_MEDIA,
                    });
                }
            }
            b'a' => {
                let (name, value) = split_attribute(line)?;
                match name {
                    "ice-ufrag" => {
                        let v = parse_ice(line, name, value, MIN_UFRAG_LEN)?;
                        set_consistent(&mut frag.ice_ufrag, v, line, name)?;
                    }
                    "ice-pwd" => {
                        let v = parse_ice(line, name, value, MIN_PWD_LEN)?;
                        set_consistent(&mut frag.ice_pwd, v, line, name)?;
                    }
                    "mid" => {
                        let mid = parse_token(line, name, value)?;
                        if !frag.mids.contains(&mid) {
                            if frag.mids.len() >= MAX_MEDIA {
                                return Err(SdpError::TooMany {
                                    what: "mids",
                                    max: MAX_MEDIA,
                                });
                            }
                            frag.mids.push(mid);
                        }
                    }
                    "candidate" => frag.candidates.push(need(line, name, value)?.to_owned()),
                    "end-of-candidates" => frag.end_of_candidates = true,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(frag)
}

/// Sets a value that may be repeated (session and media level) but not changed.
fn set_consistent(
    slot: &mut Option<String>,
    v: String,
    line: &Line<'_>,
    name: &str,
) -> Result<(), SdpError> {
    match slot {
        Some(old) if *old != v => Err(bad(line.no, format!("conflicting a={name} values"))),
        Some(_) => Ok(()),
        None => {
            *slot = Some(v);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Answer writing
// ---------------------------------------------------------------------------

/// Accumulates CRLF-terminated lines. A control character in a value (which
/// would split or corrupt the line) is written as a space.
#[derive(Default)]
struct Out {
    s: String,
}

impl Out {
    fn line(&mut self, args: fmt::Arguments<'_>) {
        let start = self.s.len();
        // Writing into a String cannot fail.
        let _ = self.s.write_fmt(args);
        let dirty = self
            .s
            .get(start..)
            .is_some_and(|l| l.chars().any(char::is_control));
        if dirty {
            let clean: String = self
                .s
                .get(start..)
                .unwrap_or_default()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            // `start` was the length of the string before this line, so it is a
            // char boundary and truncate() cannot panic.
            self.s.truncate(start);
            self.s.push_str(&clean);
        }
        self.s.push_str("\r\n");
    }
}

macro_rules! w {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))
    };
}

/// Whether an m-line is written rejected: explicitly, or because this server
/// cannot accept it (data channels, no codec, no mid to bundle it with).
fn written_rejected(m: &MediaAnswer) -> bool {
    m.rejected || m.media_type == MediaType::Application || m.codecs.is_empty() || m.mid.is_empty()
}

/// The format of a rejected m-line: the first codec's payload type if there is
/// one, else a format valid for the protocol.
fn rejected_format(m: &MediaAnswer) -> String {
    if let Some(c) = m.codecs.first() {
        c.payload_type.to_string()
    } else if m.protocol.split('/').any(|p| p == "RTP") {
        "0".to_owned()
    } else if m.protocol == "DTLS/SCTP" {
        "5000".to_owned()
    } else if m.protocol.contains("SCTP") {
        "webrtc-datachannel".to_owned()
    } else {
        "0".to_owned()
    }
}

/// Writes the answer SDP (CRLF line endings): session-level `a=ice-lite`, BUNDLE of
/// the accepted mids, and per accepted m-line the ICE credentials, fingerprint,
/// `a=setup:passive`, direction, rtcp-mux, codecs, extmaps, the sent stream's
/// msid/ssrc lines and the single host candidate followed by end-of-candidates.
/// Rejected m-lines get port 0, a format and their mid only.
pub fn write_answer(answer: &SessionAnswer) -> String {
    let ip = answer.candidate.ip();
    let (family, unspecified, origin) = match ip {
        IpAddr::V4(_) => ("IP4", "0.0.0.0", "127.0.0.1"),
        IpAddr::V6(_) => ("IP6", "::", "::1"),
    };
    let mut out = Out::default();
    w!(out, "v=0");
    w!(out, "o=- {} 2 IN {family} {origin}", answer.session_id);
    w!(out, "s=-");
    w!(out, "t=0 0");
    w!(out, "a=ice-lite");
    let bundle: Vec<&str> = answer
        .media
        .iter()
        .filter(|m| !written_rejected(m))
        .map(|m| m.mid.as_str())
        .collect();
    if !bundle.is_empty() {
        w!(out, "a=group:BUNDLE {}", bundle.join(" "));
    }
    w!(out, "a=msid-semantic: WMS *");
    for m in &answer.media {
        let protocol = if m.protocol.is_empty() {
            DEFAULT_PROTOCOL
        } else {
            m.protocol.as_str()
        };
        let media_type = m.media_type.as_str();
        if written_rejected(m) {
            w!(out, "m={media_type} 0 {protocol} {}", rejected_format(m));
            w!(out, "c=IN {family} {unspecified}");
            if !m.mid.is_empty() {
                w!(out, "a=mid:{}", m.mid);
            }
            continue;
        }
        let mut codecs: Vec<&Codec> = Vec::new();
        for c in &m.codecs {
            if !codecs.iter().any(|k| k.payload_type == c.payload_type) {
                codecs.push(c);
            }
        }
        let pts: Vec<String> = codecs.iter().map(|c| c.payload_type.to_string()).collect();
        w!(
            out,
            "m={media_type} {BUNDLED_PORT} {protocol} {}",
            pts.join(" ")
        );
        w!(out, "c=IN {family} {unspecified}");
        w!(out, "a=mid:{}", m.mid);
        w!(out, "a=ice-ufrag:{}", answer.ice_ufrag);
        w!(out, "a=ice-pwd:{}", answer.ice_pwd);
        w!(out, "a=fingerprint:{}", answer.fingerprint);
        w!(out, "a=setup:{}", answer.setup.as_str());
        w!(out, "a={}", m.direction.as_str());
        w!(out, "a=rtcp-mux");
        if m.rtcp_rsize {
            w!(out, "a=rtcp-rsize");
        }
        for c in &codecs {
            let pt = c.payload_type;
            match c.channels {
                Some(ch) => w!(out, "a=rtpmap:{pt} {}/{}/{ch}", c.name, c.clock_rate),
                None => w!(out, "a=rtpmap:{pt} {}/{}", c.name, c.clock_rate),
            }
            if let Some(f) = c.fmtp.as_deref().filter(|f| !f.is_empty()) {
                w!(out, "a=fmtp:{pt} {f}");
            }
            for fb in &c.rtcp_fb {
                w!(out, "a=rtcp-fb:{pt} {fb}");
            }
        }
        let mut ids: Vec<u8> = Vec::new();
        for e in &m.extmaps {
            if ids.contains(&e.id) || e.id == 0 {
                continue;
            }
            ids.push(e.id);
            match e.direction {
                Some(d) => w!(out, "a=extmap:{}/{} {}", e.id, d.as_str(), e.uri),
                None => w!(out, "a=extmap:{} {}", e.id, e.uri),
            }
        }
        for rid in &m.recv_rids {
            w!(out, "a=rid:{rid} recv");
        }
        if !m.recv_rids.is_empty() {
            w!(out, "a=simulcast:recv {}", m.recv_rids.join(";"));
        }
        if let Some(s) = &m.send {
            let msid = format!("{} {}", s.stream_id, s.track_id);
            w!(out, "a=msid:{msid}");
            if let Some(rtx) = s.rtx_ssrc {
                w!(out, "a=ssrc-group:FID {} {rtx}", s.ssrc);
            }
            for ssrc in std::iter::once(s.ssrc).chain(s.rtx_ssrc) {
                w!(out, "a=ssrc:{ssrc} cname:{}", s.cname);
                w!(out, "a=ssrc:{ssrc} msid:{msid}");
            }
        }
        w!(
            out,
            "a=candidate:1 1 udp {HOST_PRIORITY} {ip} {} typ host",
            answer.candidate.port()
        );
        w!(out, "a=end-of-candidates");
    }
    out.s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const FP: &str = "sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08";

    /// Turns the LF-terminated samples below into the CRLF form clients send.
    fn crlf(s: &str) -> String {
        s.replace('\n', "\r\n")
    }

    /// A Chromium publisher (`getUserMedia` + two `sendonly` transceivers).
    const CHROME_PUBLISH: &str = "v=0
o=- 4215775240449105457 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS 5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Ay1c
a=ice-pwd:7rK3ds0QSlDv4BRF9vSqnAyd
a=ice-options:trickle
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendonly
a=msid:5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 0c9a2d6e-1b4f-4c8e-8f3a-2d7e5b9c1a40
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1001 cname:Wq3bS2rJ4b1xYz7K
a=ssrc:1001 msid:5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 0c9a2d6e-1b4f-4c8e-8f3a-2d7e5b9c1a40
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 35 36 103 104 107 108 109 114 115 116 117 118 119 120 121
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Ay1c
a=ice-pwd:7rK3ds0QSlDv4BRF9vSqnAyd
a=ice-options:trickle
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:13 urn:3gpp:video-orientation
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type
a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing
a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=sendonly
a=msid:5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 9b1f6c3d-5e2a-4f7b-8c0d-3a6e9f2b4c18
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 VP9/90000
a=rtcp-fb:98 goog-remb
a=rtcp-fb:98 transport-cc
a=rtcp-fb:98 ccm fir
a=rtcp-fb:98 nack
a=rtcp-fb:98 nack pli
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:100 VP9/90000
a=rtcp-fb:100 nack
a=rtcp-fb:100 nack pli
a=fmtp:100 profile-id=2
a=rtpmap:101 rtx/90000
a=fmtp:101 apt=100
a=rtpmap:35 AV1/90000
a=rtcp-fb:35 nack
a=rtcp-fb:35 nack pli
a=fmtp:35 level-idx=5;profile=0;tier=0
a=rtpmap:36 rtx/90000
a=fmtp:36 apt=35
a=rtpmap:103 H264/90000
a=rtcp-fb:103 nack
a=rtcp-fb:103 nack pli
a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:104 rtx/90000
a=fmtp:104 apt=103
a=rtpmap:107 H264/90000
a=rtcp-fb:107 nack
a=rtcp-fb:107 nack pli
a=fmtp:107 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
a=rtpmap:108 rtx/90000
a=fmtp:108 apt=107
a=rtpmap:109 H264/90000
a=rtcp-fb:109 goog-remb
a=rtcp-fb:109 transport-cc
a=rtcp-fb:109 ccm fir
a=rtcp-fb:109 nack
a=rtcp-fb:109 nack pli
a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:114 rtx/90000
a=fmtp:114 apt=109
a=rtpmap:115 H264/90000
a=fmtp:115 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f
a=rtpmap:116 rtx/90000
a=fmtp:116 apt=115
a=rtpmap:117 H264/90000
a=fmtp:117 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
a=rtpmap:118 rtx/90000
a=fmtp:118 apt=117
a=rtpmap:119 red/90000
a=rtpmap:120 rtx/90000
a=fmtp:120 apt=119
a=rtpmap:121 ulpfec/90000
a=ssrc-group:FID 2001 2002
a=ssrc:2001 cname:Wq3bS2rJ4b1xYz7K
a=ssrc:2001 msid:5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 9b1f6c3d-5e2a-4f7b-8c0d-3a6e9f2b4c18
a=ssrc:2002 cname:Wq3bS2rJ4b1xYz7K
a=ssrc:2002 msid:5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 9b1f6c3d-5e2a-4f7b-8c0d-3a6e9f2b4c18
";

    /// A Chromium subscriber: two `recvonly` transceivers, no msid, no SSRC.
    const CHROME_SUBSCRIBE: &str = "v=0
o=- 8330496521306040185 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:kR9s
a=ice-pwd:Zt0cV4l3yX2pQm8nB1wE7rTa
a=ice-options:trickle
a=fingerprint:sha-256 1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00:0F:1E:2D:3C:4B:5A:69:78:87:96:A5:B4:C3:D2:E1:F0
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 109 114 103 104 45 46
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:kR9s
a=ice-pwd:Zt0cV4l3yX2pQm8nB1wE7rTa
a=ice-options:trickle
a=fingerprint:sha-256 1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00:0F:1E:2D:3C:4B:5A:69:78:87:96:A5:B4:C3:D2:E1:F0
a=setup:actpass
a=mid:1
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 VP9/90000
a=rtcp-fb:98 nack
a=rtcp-fb:98 nack pli
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:109 H264/90000
a=rtcp-fb:109 nack
a=rtcp-fb:109 nack pli
a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:114 rtx/90000
a=fmtp:114 apt=109
a=rtpmap:103 H264/90000
a=rtcp-fb:103 nack
a=rtcp-fb:103 nack pli
a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f
a=rtpmap:104 rtx/90000
a=fmtp:104 apt=103
a=rtpmap:45 AV1/90000
a=rtcp-fb:45 nack
a=rtcp-fb:45 nack pli
a=fmtp:45 level-idx=5;profile=0;tier=0
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
";

    /// A Firefox publisher: session-level fingerprint and direction, its own
    /// payload type numbering (opus 109, VP8 120), SSRC group after the SSRCs.
    const FIREFOX_PUBLISH: &str = "v=0
o=mozilla...THIS_IS_SDPARTA-128.0 6853454353422213823 0 IN IP4 0.0.0.0
s=-
t=0 0
a=sendrecv
a=fingerprint:sha-256 3D:A1:0B:7E:55:C2:19:8F:4E:6B:DA:20:91:3C:77:E8:AF:02:5D:B6:C9:14:38:F0:6E:1A:82:D7:4B:90:E3:5C
a=group:BUNDLE 0 1
a=ice-options:trickle
a=msid-semantic:WMS *
m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1
a=fmtp:101 0-15
a=ice-pwd:2f5b4f3e1c9d8a7b6c5d4e3f2a1b0c9d
a=ice-ufrag:7d2b1e8f
a=mid:0
a=msid:{a1c5e2f0-3b4d-4e6f-8a9b-0c1d2e3f4a5b} {b2d6f3a1-4c5e-4f70-9bac-1d2e3f4a5b6c}
a=rtcp-mux
a=rtpmap:109 opus/48000/2
a=rtpmap:9 G722/8000/1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=setup:actpass
a=ssrc:3176340133 cname:{e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9}
m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98 123 122 119
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:5 urn:ietf:params:rtp-hdrext:toffset
a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1
a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1
a=fmtp:120 max-fs=12288;max-fr=60
a=fmtp:124 apt=120
a=fmtp:121 max-fs=12288;max-fr=60
a=fmtp:125 apt=121
a=fmtp:127 apt=126
a=fmtp:98 apt=97
a=fmtp:119 apt=122
a=ice-pwd:2f5b4f3e1c9d8a7b6c5d4e3f2a1b0c9d
a=ice-ufrag:7d2b1e8f
a=mid:1
a=msid:{a1c5e2f0-3b4d-4e6f-8a9b-0c1d2e3f4a5b} {c3e7a4b2-5d6f-4081-acbd-2e3f4a5b6c7d}
a=rtcp-fb:120 nack
a=rtcp-fb:120 nack pli
a=rtcp-fb:120 ccm fir
a=rtcp-fb:120 goog-remb
a=rtcp-fb:120 transport-cc
a=rtcp-fb:121 nack
a=rtcp-fb:121 nack pli
a=rtcp-fb:121 ccm fir
a=rtcp-fb:121 goog-remb
a=rtcp-fb:121 transport-cc
a=rtcp-fb:126 nack
a=rtcp-fb:126 nack pli
a=rtcp-fb:126 ccm fir
a=rtcp-fb:126 goog-remb
a=rtcp-fb:126 transport-cc
a=rtcp-fb:97 nack
a=rtcp-fb:97 nack pli
a=rtcp-fb:97 ccm fir
a=rtcp-fb:97 goog-remb
a=rtcp-fb:97 transport-cc
a=rtcp-fb:123 nack
a=rtcp-fb:123 nack pli
a=rtcp-fb:123 ccm fir
a=rtcp-fb:123 goog-remb
a=rtcp-fb:123 transport-cc
a=rtcp-fb:122 nack
a=rtcp-fb:122 nack pli
a=rtcp-fb:122 ccm fir
a=rtcp-fb:122 goog-remb
a=rtcp-fb:122 transport-cc
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:120 VP8/90000
a=rtpmap:124 rtx/90000
a=rtpmap:121 VP9/90000
a=rtpmap:125 rtx/90000
a=rtpmap:126 H264/90000
a=rtpmap:127 rtx/90000
a=rtpmap:97 H264/90000
a=rtpmap:98 rtx/90000
a=rtpmap:123 ulpfec/90000
a=rtpmap:122 red/90000
a=rtpmap:119 rtx/90000
a=setup:actpass
a=ssrc:1815113374 cname:{e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9}
a=ssrc:2473968036 cname:{e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9}
a=ssrc-group:FID 1815113374 2473968036
";

    /// OBS WHIP output (libdatachannel): session-level fingerprint, setup and ICE
    /// credentials after each m-line's attributes, the gathered candidates in the
    /// first m-line, H264 without rtx.
    const OBS_WHIP: &str = "v=0
o=rtc 3157928817 0 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=group:LS 0 1
a=msid-semantic:WMS *
a=ice-options:ice2,trickle
a=fingerprint:sha-256 A0:B1:C2:D3:E4:F5:06:17:28:39:4A:5B:6C:7D:8E:9F:A0:B1:C2:D3:E4:F5:06:17:28:39:4A:5B:6C:7D:8E:9F
m=audio 53150 UDP/TLS/RTP/SAVPF 111
c=IN IP4 192.168.1.20
a=mid:0
a=sendonly
a=ssrc:2884215402 cname:Dv8Yp6Yq4gnzr1Ix
a=ssrc:2884215402 msid:obs-stream audio
a=msid:obs-stream audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1
a=setup:actpass
a=ice-ufrag:zPvA
a=ice-pwd:1Wqy2Qp3gmJmY8eD2U0mX2
a=candidate:1 1 UDP 2122317823 192.168.1.20 53150 typ host
a=candidate:2 1 UDP 1686109951 203.0.113.7 53150 typ srflx raddr 0.0.0.0 rport 0
a=end-of-candidates
m=video 53150 UDP/TLS/RTP/SAVPF 96
c=IN IP4 192.168.1.20
a=mid:1
a=sendonly
a=ssrc:2884215403 cname:Dv8Yp6Yq4gnzr1Ix
a=ssrc:2884215403 msid:obs-stream video
a=msid:obs-stream video
a=rtcp-mux
a=rtpmap:96 H264/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 goog-remb
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1
a=setup:actpass
a=ice-ufrag:zPvA
a=ice-pwd:1Wqy2Qp3gmJmY8eD2U0mX2
";

    /// The FFmpeg WHIP muxer: fixed layout, H264 and opus, `a=setup:passive`.
    const FFMPEG_WHIP: &str = "v=0
o=FFmpeg 4489045141692799359 2 IN IP4 127.0.0.1
s=FFmpegPublishSession
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=ice-ufrag:6b8b4567
a=ice-pwd:327b23c6643c986966334873238e1f29
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:passive
a=mid:0
a=sendonly
a=msid:FFmpeg audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=ssrc:1681692777 cname:FFmpeg
a=ssrc:1681692777 msid:FFmpeg audio
m=video 9 UDP/TLS/RTP/SAVPF 106
c=IN IP4 0.0.0.0
a=ice-ufrag:6b8b4567
a=ice-pwd:327b23c6643c986966334873238e1f29
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:passive
a=mid:1
a=sendonly
a=msid:FFmpeg video
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:106 H264/90000
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=ssrc:1714636915 cname:FFmpeg
a=ssrc:1714636915 msid:FFmpeg video
";

    /// GStreamer webrtcbin (whipclientsink): `video0`/`audio1` mids, upper-case
    /// OPUS, mid and fingerprint after the SSRCs.
    const GSTREAMER_WHIP: &str = "v=0
o=- 1966146383413735474 0 IN IP4 0.0.0.0
s=-
t=0 0
a=ice-options:trickle
a=group:BUNDLE video0 audio1
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:Zr5c6bDiHTPZHjmOO+nBIuhKhjkMSCqk
a=ice-pwd:ppeyLprHGXBTTfTuA+1xmNK0c5ArPSnc
a=rtcp-mux
a=rtcp-rsize
a=sendonly
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 transport-cc
a=framerate:30
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=ssrc-group:FID 3484078950 3233196000
a=ssrc:3484078950 msid:user2957213236@host-5d1e60ae webrtctransceiver0
a=ssrc:3484078950 cname:user2957213236@host-5d1e60ae
a=ssrc:3233196000 msid:user2957213236@host-5d1e60ae webrtctransceiver0
a=ssrc:3233196000 cname:user2957213236@host-5d1e60ae
a=mid:video0
a=fingerprint:sha-256 5E:07:A1:C3:94:2B:6D:F0:18:8A:3C:E5:71:9F:0B:D2:46:AE:13:C8:7F:20:B9:64:DA:35:8E:01:F7:5C:A9:42
a=extmap:1 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:Zr5c6bDiHTPZHjmOO+nBIuhKhjkMSCqk
a=ice-pwd:ppeyLprHGXBTTfTuA+1xmNK0c5ArPSnc
a=rtcp-mux
a=rtcp-rsize
a=sendonly
a=rtpmap:111 OPUS/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 sprop-maxcapturerate=48000;sprop-stereo=0
a=ssrc:1869395345 msid:user2957213236@host-5d1e60ae webrtctransceiver1
a=ssrc:1869395345 cname:user2957213236@host-5d1e60ae
a=mid:audio1
a=fingerprint:sha-256 5E:07:A1:C3:94:2B:6D:F0:18:8A:3C:E5:71:9F:0B:D2:46:AE:13:C8:7F:20:B9:64:DA:35:8E:01:F7:5C:A9:42
";

    /// A Chromium publisher sending three simulcast layers (rid + simulcast, no SSRC).
    const CHROME_SIMULCAST: &str = "v=0
o=- 2954372283453386420 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Qm3p
a=ice-pwd:b8NfXc2LzVq9Rt4Ws1Yk0Ue6
a=ice-options:trickle
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:0
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=sendonly
a=msid:- 7c4f2a9e-1d3b-4e5f-9a8b-6c7d8e9f0a1b
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rid:q send
a=rid:h send
a=rid:f send max-width=1280;max-height=720
a=simulcast:send q;h;f
";

    /// Every sample, for the properties that must hold on all of them.
    fn samples() -> Vec<String> {
        [
            CHROME_PUBLISH,
            CHROME_SUBSCRIBE,
            FIREFOX_PUBLISH,
            OBS_WHIP,
            CHROME_SIMULCAST,
            FFMPEG_WHIP,
            GSTREAMER_WHIP,
        ]
        .into_iter()
        .map(crlf)
        .collect()
    }

    fn mid<'a>(sdp: &'a SessionDescription, mid: &str) -> &'a MediaDescription {
        sdp.media
            .iter()
            .find(|m| m.mid.as_deref() == Some(mid))
            .expect("sample has this mid")
    }

    fn pts(codecs: &[Codec]) -> Vec<u8> {
        codecs.iter().map(|c| c.payload_type).collect()
    }

    fn codec(pt: u8, name: &str, clock_rate: u32, fmtp: Option<&str>) -> Codec {
        Codec {
            payload_type: pt,
            name: name.to_owned(),
            clock_rate,
            channels: None,
            fmtp: fmtp.map(str::to_owned),
            rtcp_fb: Vec::new(),
        }
    }

    #[test]
    fn chrome_publisher_offer() {
        let sdp = parse(&crlf(CHROME_PUBLISH)).unwrap();
        sdp.validate_webrtc().unwrap();
        assert_eq!(sdp.session_id, 4_215_775_240_449_105_457);
        assert!(!sdp.ice_lite);
        assert_eq!(sdp.bundle_mids, ["0", "1"]);
        assert_eq!(sdp.ice_ufrag, None);
        assert_eq!(sdp.fingerprint, None);
        assert_eq!(
            sdp.ice_credentials().unwrap(),
            ("Ay1c".to_owned(), "7rK3ds0QSlDv4BRF9vSqnAyd".to_owned())
        );
        assert_eq!(sdp.fingerprint().unwrap(), FP);
        assert_eq!(sdp.setup(), Some(Setup::ActPass));
        assert_eq!(sdp.media.len(), 2);

        let audio = mid(&sdp, "0");
        assert_eq!(audio.media_type, MediaType::Audio);
        assert_eq!(audio.port, 9);
        assert_eq!(audio.protocol, "UDP/TLS/RTP/SAVPF");
        assert_eq!(audio.direction, Direction::SendOnly);
        assert!(audio.rtcp_mux && audio.rtcp_rsize);
        assert_eq!(pts(&audio.codecs), [111, 63, 9, 0, 8, 13, 110, 126]);
        let opus = choose_codec(audio).unwrap();
        assert_eq!(opus.payload_type, 111);
        assert_eq!(opus.channels, Some(2));
        assert_eq!(opus.fmtp.as_deref(), Some("minptime=10;useinbandfec=1"));
        assert_eq!(opus.rtcp_fb, ["transport-cc"]);
        assert_eq!(audio.rtx_payload_for(111), None);
        assert_eq!(audio.sender_ssrcs(), [(1001, None)]);
        assert_eq!(audio.cname(), Some("Wq3bS2rJ4b1xYz7K"));
        assert_eq!(
            audio.msid.as_deref(),
            Some("5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 0c9a2d6e-1b4f-4c8e-8f3a-2d7e5b9c1a40")
        );
        assert_eq!(audio.extmaps.len(), 4);
        assert_eq!(
            audio.extmaps[3],
            ExtMap {
                id: 4,
                uri: "urn:ietf:params:rtp-hdrext:sdes:mid".into(),
                direction: None
            }
        );
        assert!(audio.candidates.is_empty() && !audio.end_of_candidates);

        let video = mid(&sdp, "1");
        assert_eq!(video.media_type, MediaType::Video);
        assert_eq!(video.codecs.len(), 21);
        let vp8 = choose_codec(video).unwrap();
        assert_eq!((vp8.payload_type, vp8.name.as_str()), (96, "VP8"));
        assert_eq!(
            vp8.rtcp_fb,
            ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
        );
        assert_eq!(video.rtx_payload_for(96), Some(97));
        assert_eq!(video.rtx_payload_for(119), Some(120));
        assert_eq!(video.rtx_payload_for(121), None);
        assert_eq!(video.sender_ssrcs(), [(2001, Some(2002))]);
        let uris: Vec<&str> = video.extmaps.iter().map(|e| e.uri.as_str()).collect();
        assert!(uris.contains(&"http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"));
        assert!(uris.contains(
            &"http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
        ));
        assert!(uris.contains(&"urn:ietf:params:rtp-hdrext:sdes:mid"));
        assert_eq!(video.ssrc_groups[0].semantics, "FID");
    }

    #[test]
    fn lf_and_crlf_parse_alike() {
        for s in [CHROME_PUBLISH, FIREFOX_PUBLISH, OBS_WHIP] {
            assert_eq!(parse(s).unwrap(), parse(&crlf(s)).unwrap());
        }
        // No final line break is fine too.
        let trimmed = CHROME_PUBLISH.trim_end();
        assert_eq!(parse(trimmed).unwrap(), parse(CHROME_PUBLISH).unwrap());
    }

    #[test]
    fn chrome_video_codec_preferences() {
        let sdp = parse(CHROME_PUBLISH).unwrap();
        let mut video = mid(&sdp, "1").clone();
        let chosen = |m: &MediaDescription| choose_codec(m).map(|c| c.payload_type);

        // Without VP8: H264 packetization-mode=1 with 42e01f (109), not 103 (42001f),
        // 107/115 (mode 0) or 117 (main).
        video.codecs.retain(|c| c.name != "VP8");
        assert_eq!(chosen(&video), Some(109));
        assert_eq!(video.rtx_payload_for(109), Some(114));
        // Without 42e01f mode 1: the first other baseline/main mode-1 entry.
        video.codecs.retain(|c| c.payload_type != 109);
        assert_eq!(chosen(&video), Some(103));
        video
            .codecs
            .retain(|c| c.payload_type != 103 && c.payload_type != 117);
        // Only mode 0 left: 42e01f (115) before 42001f (107).
        assert_eq!(chosen(&video), Some(115));

        // Without H264: VP9 profile 0 (98), not profile 2 (100).
        video.codecs.retain(|c| c.name != "H264");
        assert_eq!(chosen(&video), Some(98));
        assert_eq!(video.rtx_payload_for(98), Some(99));
        video.codecs.retain(|c| c.name != "VP9");
        assert_eq!(chosen(&video), Some(35));
        assert_eq!(video.rtx_payload_for(35), Some(36));
        // Only rtx, red and ulpfec left: nothing to forward.
        video.codecs.retain(|c| c.name != "AV1");
        assert_eq!(chosen(&video), None);

        // Audio without opus: nothing (G722, PCMU, CN, telephone-event are not forwarded).
        let mut audio = mid(&sdp, "0").clone();
        audio.codecs.retain(|c| c.name != "opus");
        assert_eq!(choose_codec(&audio), None);
    }

    #[test]
    fn h264_ranking_prefers_mode_1_then_profile() {
        let mut m = parse(CHROME_SIMULCAST).unwrap().media.remove(0);
        m.codecs = vec![
            codec(
                100,
                "H264",
                90_000,
                Some("packetization-mode=0;profile-level-id=42e01f"),
            ),
            codec(
                101,
                "H264",
                90_000,
                Some("packetization-mode=1;profile-level-id=640c1f"),
            ),
            codec(
                102,
                "h264",
                90_000,
                Some("profile-level-id=4D001F;packetization-mode=1"),
            ),
            codec(
                103,
                "H264",
                90_000,
                Some("packetization-mode=1;profile-level-id=42001f"),
            ),
        ];
        assert_eq!(choose_codec(&m).unwrap().payload_type, 102);
        m.codecs.push(codec(
            104,
            "H264",
            90_000,
            Some("packetization-mode=1;profile-level-id=42E01F"),
        ));
        assert_eq!(choose_codec(&m).unwrap().payload_type, 104);
        // No fmtp at all means mode 0, baseline (RFC 6184 defaults).
        m.codecs = vec![
            codec(110, "H264", 90_000, None),
            codec(111, "H264", 90_000, Some("profile-level-id=640c1f")),
        ];
        assert_eq!(choose_codec(&m).unwrap().payload_type, 110);
        // A wrong clock rate is not the codec.
        m.codecs = vec![
            codec(96, "VP8", 8_000, None),
            codec(97, "AV1", 90_000, None),
        ];
        assert_eq!(choose_codec(&m).unwrap().payload_type, 97);
    }

    #[test]
    fn chrome_subscriber_offer() {
        let sdp = parse(&crlf(CHROME_SUBSCRIBE)).unwrap();
        sdp.validate_webrtc().unwrap();
        assert_eq!(sdp.media.len(), 2);
        for m in &sdp.media {
            assert_eq!(m.direction, Direction::RecvOnly);
            assert!(m.ssrcs.is_empty() && m.msid.is_none());
            assert!(m.sender_ssrcs().is_empty());
            assert_eq!(m.cname(), None);
        }
        assert_eq!(choose_codec(&sdp.media[0]).unwrap().payload_type, 111);
        assert_eq!(choose_codec(&sdp.media[1]).unwrap().payload_type, 96);
    }

    #[test]
    fn firefox_offer() {
        let sdp = parse(&crlf(FIREFOX_PUBLISH)).unwrap();
        sdp.validate_webrtc().unwrap();
        assert_eq!(sdp.session_id, 6_853_454_353_422_213_823);
        // Fingerprint only at session level, credentials only at media level.
        assert!(sdp.fingerprint.is_some() && sdp.media[0].fingerprint.is_none());
        assert!(sdp.fingerprint().unwrap().starts_with("sha-256 3D:A1:0B"));
        assert_eq!(
            sdp.ice_credentials().unwrap(),
            (
                "7d2b1e8f".to_owned(),
                "2f5b4f3e1c9d8a7b6c5d4e3f2a1b0c9d".to_owned()
            )
        );
        let audio = mid(&sdp, "0");
        // The m-line's direction overrides the session's a=sendrecv.
        assert_eq!(audio.direction, Direction::SendOnly);
        let opus = choose_codec(audio).unwrap();
        assert_eq!(opus.payload_type, 109);
        assert_eq!(
            opus.fmtp.as_deref(),
            Some("maxplaybackrate=48000;stereo=1;useinbandfec=1")
        );
        assert_eq!(audio.codecs[1].channels, Some(1));
        assert_eq!(
            audio.extmaps[1],
            ExtMap {
                id: 2,
                uri: "urn:ietf:params:rtp-hdrext:csrc-audio-level".into(),
                direction: Some(Direction::RecvOnly)
            }
        );
        assert_eq!(audio.sender_ssrcs(), [(3_176_340_133, None)]);
        assert!(!audio.rtcp_rsize);

        let video = mid(&sdp, "1");
        let vp8 = choose_codec(video).unwrap();
        assert_eq!((vp8.payload_type, vp8.name.as_str()), (120, "VP8"));
        assert_eq!(vp8.fmtp.as_deref(), Some("max-fs=12288;max-fr=60"));
        assert_eq!(vp8.rtcp_fb.len(), 5);
        assert_eq!(video.rtx_payload_for(120), Some(124));
        assert_eq!(video.rtx_payload_for(126), Some(127));
        // The FID group comes after the SSRC lines; the RTX SSRC is still no primary.
        assert_eq!(video.sender_ssrcs(), [(1_815_113_374, Some(2_473_968_036))]);
        assert_eq!(
            video.cname(),
            Some("{e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9}")
        );
        // Without VP8, Firefox's H264 126 (mode 1) beats 97 (mode 0).
        let mut v = video.clone();
        v.codecs.retain(|c| c.name != "VP8");
        assert_eq!(choose_codec(&v).unwrap().payload_type, 126);
    }

    #[test]
    fn session_level_direction_is_the_default() {
        let offer = CHROME_SIMULCAST
            .replace("a=sendonly\n", "")
            .replace("t=0 0\n", "t=0 0\na=recvonly\n");
        let sdp = parse(&offer).unwrap();
        assert_eq!(sdp.media[0].direction, Direction::RecvOnly);
        let offer = CHROME_SIMULCAST.replace("a=sendonly\n", "");
        assert_eq!(
            parse(&offer).unwrap().media[0].direction,
            Direction::SendRecv
        );
    }

    #[test]
    fn obs_libdatachannel_whip_offer() {
        let sdp = parse(&crlf(OBS_WHIP)).unwrap();
        sdp.validate_webrtc().unwrap();
        assert_eq!(sdp.session_id, 3_157_928_817);
        assert_eq!(sdp.setup, None);
        assert_eq!(sdp.setup(), Some(Setup::ActPass));
        assert_eq!(sdp.bundle_mids, ["0", "1"]);
        assert_eq!(
            sdp.ice_credentials().unwrap(),
            ("zPvA".to_owned(), "1Wqy2Qp3gmJmY8eD2U0mX2".to_owned())
        );
        assert!(sdp.fingerprint.is_some() && sdp.media[0].fingerprint.is_none());
        assert!(sdp.fingerprint().unwrap().starts_with("sha-256 A0:B1"));
        let audio = mid(&sdp, "0");
        assert_eq!(audio.port, 53150);
        assert_eq!(
            audio.candidates,
            [
                "1 1 UDP 2122317823 192.168.1.20 53150 typ host",
                "2 1 UDP 1686109951 203.0.113.7 53150 typ srflx raddr 0.0.0.0 rport 0"
            ]
        );
        assert!(audio.end_of_candidates);
        assert_eq!(choose_codec(audio).unwrap().payload_type, 111);
        assert_eq!(audio.sender_ssrcs(), [(2_884_215_402, None)]);
        assert_eq!(audio.msid.as_deref(), Some("obs-stream audio"));
        let video = mid(&sdp, "1");
        let h264 = choose_codec(video).unwrap();
        assert_eq!((h264.payload_type, h264.name.as_str()), (96, "H264"));
        assert_eq!(video.rtx_payload_for(96), None);
        assert_eq!(video.sender_ssrcs(), [(2_884_215_403, None)]);
        assert!(!video.end_of_candidates);
    }

    #[test]
    fn ffmpeg_whip_offer() {
        let sdp = parse(&crlf(FFMPEG_WHIP)).unwrap();
        sdp.validate_webrtc().unwrap();
        assert_eq!(sdp.session_id, 4_489_045_141_692_799_359);
        // FFmpeg offers to be the DTLS server; whether that is acceptable is the
        // caller's decision, the description only reports it.
        assert_eq!(sdp.setup(), Some(Setup::Passive));
        assert_eq!(
            sdp.ice_credentials().unwrap(),
            (
                "6b8b4567".to_owned(),
                "327b23c6643c986966334873238e1f29".to_owned()
            )
        );
        let audio = mid(&sdp, "0");
        assert_eq!(choose_codec(audio).unwrap().payload_type, 111);
        assert_eq!(audio.sender_ssrcs(), [(1_681_692_777, None)]);
        assert_eq!(audio.cname(), Some("FFmpeg"));
        let video = mid(&sdp, "1");
        assert_eq!(choose_codec(video).unwrap().payload_type, 106);
        assert_eq!(video.sender_ssrcs(), [(1_714_636_915, None)]);
        assert!(video.rtcp_rsize && !audio.rtcp_rsize);
    }

    #[test]
    fn gstreamer_whip_offer() {
        let sdp = parse(&crlf(GSTREAMER_WHIP)).unwrap();
        sdp.validate_webrtc().unwrap();
        assert_eq!(sdp.bundle_mids, ["video0", "audio1"]);
        // The BUNDLE tag (video0) is the first m-line here.
        assert_eq!(
            sdp.ice_credentials().unwrap(),
            (
                "Zr5c6bDiHTPZHjmOO+nBIuhKhjkMSCqk".to_owned(),
                "ppeyLprHGXBTTfTuA+1xmNK0c5ArPSnc".to_owned()
            )
        );
        assert!(sdp.fingerprint().unwrap().starts_with("sha-256 5E:07"));
        let video = mid(&sdp, "video0");
        assert_eq!(choose_codec(video).unwrap().payload_type, 96);
        assert_eq!(video.rtx_payload_for(96), Some(97));
        assert_eq!(video.sender_ssrcs(), [(3_484_078_950, Some(3_233_196_000))]);
        assert_eq!(video.cname(), Some("user2957213236@host-5d1e60ae"));
        let audio = mid(&sdp, "audio1");
        let opus = choose_codec(audio).unwrap();
        assert_eq!((opus.payload_type, opus.name.as_str()), (111, "OPUS"));
        // A Chromium subscriber's lower-case opus matches GStreamer's upper-case one.
        let sub = parse(CHROME_SUBSCRIBE).unwrap();
        assert_eq!(
            find_compatible_codec(mid(&sub, "0"), opus)
                .unwrap()
                .payload_type,
            111
        );
    }

    #[test]
    fn session_level_ice_credentials_and_setup() {
        // Older libdatachannel releases put everything at session level.
        let offer = OBS_WHIP
            .replace("a=setup:actpass\na=ice-ufrag:zPvA\na=ice-pwd:1Wqy2Qp3gmJmY8eD2U0mX2\n", "")
            .replace(
                "a=msid-semantic:WMS *\n",
                "a=msid-semantic:WMS *\na=setup:actpass\na=ice-ufrag:zPvA\na=ice-pwd:1Wqy2Qp3gmJmY8eD2U0mX2\n",
            );
        let sdp = parse(&offer).unwrap();
        sdp.validate_webrtc().unwrap();
        assert!(
            sdp.media
                .iter()
                .all(|m| m.ice_ufrag.is_none() && m.setup.is_none())
        );
        assert_eq!(sdp.setup, Some(Setup::ActPass));
        assert_eq!(sdp.setup(), Some(Setup::ActPass));
        assert_eq!(
            sdp.ice_credentials().unwrap(),
            ("zPvA".to_owned(), "1Wqy2Qp3gmJmY8eD2U0mX2".to_owned())
        );
        // Media-level values on the BUNDLE tag win over session-level ones.
        let offer = offer.replace(
            "a=mid:0\n",
            "a=mid:0\na=ice-ufrag:mEdI\na=ice-pwd:MediaLevelPassword0123\na=setup:active\n",
        );
        let sdp = parse(&offer).unwrap();
        assert_eq!(
            sdp.ice_credentials().unwrap(),
            ("mEdI".to_owned(), "MediaLevelPassword0123".to_owned())
        );
        assert_eq!(sdp.setup(), Some(Setup::Active));
    }

    #[test]
    fn bundle_only_lines_with_port_zero_are_active() {
        let offer = OBS_WHIP.replace(
            "m=video 53150 UDP/TLS/RTP/SAVPF 96\n",
            "m=video 0 UDP/TLS/RTP/SAVPF 96\na=bundle-only\n",
        );
        let sdp = parse(&offer).unwrap();
        sdp.validate_webrtc().unwrap();
        assert_eq!(mid(&sdp, "1").port, 9);
        // Without a=bundle-only, port 0 disables the m-line.
        let offer = OBS_WHIP.replace("m=video 53150 ", "m=video 0 ");
        assert_eq!(mid(&parse(&offer).unwrap(), "1").port, 0);
    }

    #[test]
    fn simulcast_offer() {
        let sdp = parse(&crlf(CHROME_SIMULCAST)).unwrap();
        sdp.validate_webrtc().unwrap();
        let m = &sdp.media[0];
        assert_eq!(m.simulcast.as_deref(), Some("send q;h;f"));
        let rids: Vec<(&str, &str, Option<&str>)> = m
            .rids
            .iter()
            .map(|r| (r.id.as_str(), r.direction.as_str(), r.params.as_deref()))
            .collect();
        assert_eq!(
            rids,
            [
                ("q", "send", None),
                ("h", "send", None),
                ("f", "send", Some("max-width=1280;max-height=720"))
            ]
        );
        assert!(m.sender_ssrcs().is_empty());
        assert_eq!(
            m.msid.as_deref(),
            Some("- 7c4f2a9e-1d3b-4e5f-9a8b-6c7d8e9f0a1b")
        );
        assert!(
            m.extmaps
                .iter()
                .any(|e| e.id == 10 && e.uri.ends_with("sdes:rtp-stream-id"))
        );
    }

    #[test]
    fn ssrc_groups_sim_fid_and_fec() {
        let offer = CHROME_SIMULCAST.replace(
            "a=rid:q send\n",
            "a=ssrc-group:SIM 11 12 13\n\
             a=ssrc-group:FID 11 21\n\
             a=ssrc-group:FID 12 22\n\
             a=ssrc-group:FID 13 23\n\
             a=ssrc-group:FEC-FR 11 31\n\
             a=ssrc:21 cname:x\n\
             a=ssrc:31 cname:x\n\
             a=ssrc:13 cname:x\n\
             a=ssrc:12 cname:x\n\
             a=ssrc:11 cname:x\n\
             a=ssrc:23 cname:x\n\
             a=ssrc:22 cname:x\n\
             a=ssrc:40 cname:x\n\
             a=rid:q send\n",
        );
        let sdp = parse(&offer).unwrap();
        assert_eq!(
            sdp.media[0].sender_ssrcs(),
            [(11, Some(21)), (12, Some(22)), (13, Some(23)), (40, None)]
        );
        assert_eq!(sdp.media[0].cname(), Some("x"));
    }

    #[test]
    fn many_ssrcs_in_a_large_offer() {
        let mut offer = CHROME_SIMULCAST.to_owned();
        let mut n = 0u32;
        while offer.len() < MAX_SDP_LEN - 100 {
            offer += &format!("a=ssrc-group:FID {} {}\na=ssrc:{} cname:c\n", n, n + 1, n);
            n += 2;
        }
        let sdp = parse(&offer).unwrap();
        let ssrcs = sdp.media[0].sender_ssrcs();
        assert_eq!(ssrcs.len(), usize::try_from(n / 2).unwrap());
        assert!(ssrcs.iter().all(|&(p, rtx)| rtx == Some(p + 1)));
    }

    #[test]
    fn compatible_codecs_between_publisher_and_subscriber() {
        let sub = parse(CHROME_SUBSCRIBE).unwrap();
        let (sub_audio, sub_video) = (mid(&sub, "0"), mid(&sub, "1"));
        let ff = parse(FIREFOX_PUBLISH).unwrap();
        let ff_vp8 = choose_codec(mid(&ff, "1")).unwrap();
        // Firefox's VP8 on 120 is Chromium's VP8 on 96.
        assert_eq!(
            find_compatible_codec(sub_video, ff_vp8)
                .unwrap()
                .payload_type,
            96
        );
        let ff_opus = choose_codec(mid(&ff, "0")).unwrap();
        assert_eq!(
            find_compatible_codec(sub_audio, ff_opus)
                .unwrap()
                .payload_type,
            111
        );
        // Opus with another channel count does not match.
        let mono = Codec {
            channels: Some(1),
            ..ff_opus.clone()
        };
        assert!(find_compatible_codec(sub_audio, &mono).is_none());
        // Same name, other kind of m-line: nothing.
        assert!(find_compatible_codec(sub_video, ff_opus).is_none());

        // H264: same mode and profile, level may differ; names case-insensitive.
        let h264 = |fmtp: &str| codec(100, "h264", 90_000, Some(fmtp));
        let got = |c: &Codec| find_compatible_codec(sub_video, c).map(|c| c.payload_type);
        assert_eq!(
            got(&h264("packetization-mode=1;profile-level-id=42e034")),
            Some(109)
        );
        assert_eq!(
            got(&h264("profile-level-id=42E01F;packetization-mode=1")),
            Some(109)
        );
        assert_eq!(
            got(&h264("packetization-mode=1;profile-level-id=640c34")),
            Some(103)
        );
        assert_eq!(
            got(&h264("packetization-mode=0;profile-level-id=42e01f")),
            None
        );
        assert_eq!(
            got(&h264("packetization-mode=1;profile-level-id=42001f")),
            None
        );
        assert_eq!(
            got(&h264("packetization-mode=1;profile-level-id=4d001f")),
            None
        );
        assert_eq!(got(&h264("packetization-mode=1;profile-level-id=zz")), None);
        // VP9: same profile-id (0 by default).
        assert_eq!(got(&codec(1, "VP9", 90_000, None)), Some(98));
        assert_eq!(
            got(&codec(1, "VP9", 90_000, Some("profile-id=0"))),
            Some(98)
        );
        assert_eq!(got(&codec(1, "VP9", 90_000, Some("profile-id=2"))), None);
        // AV1: same profile.
        assert_eq!(got(&codec(1, "AV1", 90_000, Some("profile=0"))), Some(45));
        assert_eq!(got(&codec(1, "AV1", 90_000, Some("profile=1"))), None);
        // Clock rate must match.
        assert_eq!(got(&codec(1, "VP8", 48_000, None)), None);
    }

    #[test]
    fn direction_reverse() {
        assert_eq!(Direction::SendOnly.reverse(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reverse(), Direction::SendOnly);
        assert_eq!(Direction::SendRecv.reverse(), Direction::SendRecv);
        assert_eq!(Direction::Inactive.reverse(), Direction::Inactive);
        assert!(Direction::SendRecv.sends() && Direction::SendRecv.receives());
        assert!(!Direction::Inactive.sends() && !Direction::Inactive.receives());
    }

    // -----------------------------------------------------------------------
    // Answers
    // -----------------------------------------------------------------------

    /// Answers an offer the way the SFU does: the chosen codec and its rtx on
    /// every usable audio/video m-line, everything else rejected.
    fn answer_for(offer: &SessionDescription, candidate: SocketAddr) -> SessionAnswer {
        let mut next_ssrc = 0x1000_0000u32;
        let media = offer
            .media
            .iter()
            .map(|m| {
                let usable = m.port != 0
                    && matches!(m.media_type, MediaType::Audio | MediaType::Video)
                    && m.mid.is_some();
                match choose_codec(m).filter(|_| usable) {
                    Some(c) => {
                        let mut codecs = vec![c.clone()];
                        let rtx = m.rtx_payload_for(c.payload_type);
                        if let Some(r) =
                            rtx.and_then(|pt| m.codecs.iter().find(|k| k.payload_type == pt))
                        {
                            codecs.push(r.clone());
                        }
                        let send = m.direction.receives().then(|| {
                            next_ssrc += 2;
                            SendStream {
                                ssrc: next_ssrc,
                                rtx_ssrc: rtx.map(|_| next_ssrc + 1),
                                cname: "cascade-1".into(),
                                stream_id: "pub1".into(),
                                track_id: format!("pub1-{}", m.mid.as_deref().unwrap_or("")),
                            }
                        });
                        MediaAnswer {
                            mid: m.mid.clone().unwrap_or_default(),
                            media_type: m.media_type.clone(),
                            protocol: m.protocol.clone(),
                            direction: m.direction.reverse(),
                            rejected: false,
                            codecs,
                            extmaps: m
                                .extmaps
                                .iter()
                                .filter(|e| e.uri.ends_with("sdes:mid"))
                                .cloned()
                                .collect(),
                            send,
                            rtcp_rsize: m.rtcp_rsize,
                            recv_rids: Vec::new(),
                        }
                    }
                    None => MediaAnswer {
                        mid: m.mid.clone().unwrap_or_default(),
                        media_type: m.media_type.clone(),
                        protocol: m.protocol.clone(),
                        direction: Direction::Inactive,
                        rejected: true,
                        codecs: Vec::new(),
                        extmaps: Vec::new(),
                        send: None,
                        rtcp_rsize: false,
                        recv_rids: Vec::new(),
                    },
                }
            })
            .collect();
        SessionAnswer {
            setup: Setup::Passive,
            session_id: 77,
            ice_ufrag: "srvU".into(),
            ice_pwd: "srvPassword0123456789ab".into(),
            fingerprint: FP.into(),
            candidate,
            media,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn publisher_answer_round_trips() {
        let offer = parse(&crlf(CHROME_PUBLISH)).unwrap();
        let text = write_answer(&answer_for(&offer, addr("203.0.113.5:40000")));
        assert!(text.ends_with("\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'));
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            &lines[..4],
            ["v=0", "o=- 77 2 IN IP4 127.0.0.1", "s=-", "t=0 0"]
        );
        assert!(lines.contains(&"a=ice-lite"));
        assert!(lines.contains(&"a=msid-semantic: WMS *"));

        let answer = parse(&text).unwrap();
        answer.validate_webrtc().unwrap();
        assert!(answer.ice_lite);
        assert_eq!(answer.session_id, 77);
        assert_eq!(answer.bundle_mids, ["0", "1"]);
        assert_eq!(answer.setup(), Some(Setup::Passive));
        assert_eq!(
            answer.ice_credentials().unwrap(),
            ("srvU".to_owned(), "srvPassword0123456789ab".to_owned())
        );
        assert_eq!(answer.fingerprint().unwrap(), FP);
        for m in &answer.media {
            assert_eq!(m.port, 9);
            assert_eq!(m.direction, Direction::RecvOnly);
            assert!(m.rtcp_mux && m.rtcp_rsize);
            assert_eq!(m.setup, Some(Setup::Passive));
            assert_eq!(
                m.candidates,
                ["1 1 udp 2130706431 203.0.113.5 40000 typ host"]
            );
            assert!(m.end_of_candidates);
            assert!(m.ssrcs.is_empty(), "a recvonly answer announces no SSRC");
        }
        let video = mid(&answer, "1");
        assert_eq!(video.formats, ["96", "97"]);
        assert_eq!(choose_codec(video).unwrap().payload_type, 96);
        assert_eq!(video.rtx_payload_for(96), Some(97));
        assert_eq!(video.extmaps.len(), 1);
        assert_eq!(video.extmaps[0].id, 4);
        assert_eq!(mid(&answer, "0").formats, ["111"]);
        assert_eq!(
            choose_codec(mid(&answer, "0")).unwrap().fmtp.as_deref(),
            Some("minptime=10;useinbandfec=1")
        );
    }

    #[test]
    fn subscriber_answer_announces_ssrcs() {
        let offer = parse(CHROME_SUBSCRIBE).unwrap();
        let text = write_answer(&answer_for(&offer, addr("198.51.100.1:3478")));
        assert!(text.contains("\r\na=msid:pub1 pub1-1\r\n"));
        assert!(text.contains("\r\na=ssrc-group:FID 268435460 268435461\r\n"));
        assert!(text.contains("\r\na=ssrc:268435460 cname:cascade-1\r\n"));
        assert!(text.contains("\r\na=ssrc:268435460 msid:pub1 pub1-1\r\n"));
        let answer = parse(&text).unwrap();
        answer.validate_webrtc().unwrap();
        let audio = mid(&answer, "0");
        assert_eq!(audio.direction, Direction::SendOnly);
        assert_eq!(audio.sender_ssrcs(), [(268_435_458, None)]);
        assert_eq!(audio.msid.as_deref(), Some("pub1 pub1-0"));
        let video = mid(&answer, "1");
        assert_eq!(video.sender_ssrcs(), [(268_435_460, Some(268_435_461))]);
        assert_eq!(video.cname(), Some("cascade-1"));
        assert_eq!(pts(&video.codecs), [96, 97]);
    }

    #[test]
    fn rejected_lines_have_port_zero_and_stay_out_of_bundle() {
        // A video m-line the server refuses and a data channel.
        let offer = format!(
            "{CHROME_PUBLISH}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\n\
             c=IN IP4 0.0.0.0\na=mid:2\na=sctp-port:5000\na=max-message-size:262144\n"
        )
        .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2");
        let offer = parse(&offer).unwrap();
        offer.validate_webrtc().unwrap();
        let mut answer = answer_for(&offer, addr("203.0.113.5:40000"));
        answer.media[1].rejected = true;
        answer.media[1].codecs.clear();
        let text = write_answer(&answer);
        assert!(
            text.contains("\r\nm=video 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\nm=")
        );
        assert!(text.contains("\r\nm=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\n"));
        assert!(text.contains("\r\na=group:BUNDLE 0\r\n"));
        let parsed = parse(&text).unwrap();
        parsed.validate_webrtc().unwrap();
        assert_eq!(parsed.bundle_mids, ["0"]);
        assert_eq!(parsed.media.len(), 3);
        for m in &parsed.media[1..] {
            assert_eq!(m.port, 0);
            assert!(m.ice_ufrag.is_none() && m.candidates.is_empty() && !m.rtcp_mux);
        }
        // An application m-line is rejected even if asked otherwise; the old SCTP
        // protocol gets its port-number format.
        answer.media[2].rejected = false;
        answer.media[2].protocol = "DTLS/SCTP".into();
        let text = write_answer(&answer);
        assert!(text.contains("\r\nm=application 0 DTLS/SCTP 5000\r\n"));
        // All rejected: no BUNDLE group at all.
        for m in &mut answer.media {
            m.rejected = true;
        }
        let text = write_answer(&answer);
        assert!(!text.contains("BUNDLE"));
        assert!(!text.contains("a=candidate"));
        assert_eq!(
            parse(&text).unwrap().validate_webrtc(),
            Err(SdpError::NoMedia)
        );
    }

    #[test]
    fn ipv6_answer() {
        let offer = parse(OBS_WHIP).unwrap();
        let text = write_answer(&answer_for(&offer, addr("[2001:db8::7]:40000")));
        assert!(text.starts_with("v=0\r\no=- 77 2 IN IP6 ::1\r\n"));
        assert!(text.contains("\r\nc=IN IP6 ::\r\n"));
        let answer = parse(&text).unwrap();
        answer.validate_webrtc().unwrap();
        assert_eq!(
            answer.media[0].candidates,
            ["1 1 udp 2130706431 2001:db8::7 40000 typ host"]
        );
    }

    #[test]
    fn answer_values_cannot_break_lines() {
        let offer = parse(CHROME_SUBSCRIBE).unwrap();
        let mut answer = answer_for(&offer, addr("203.0.113.5:40000"));
        answer.ice_pwd = "x\r\na=setup:active".into();
        if let Some(s) = answer.media[0].send.as_mut() {
            s.cname = "evil\ra=inactive".into();
        }
        let text = write_answer(&answer);
        assert!(!text.contains("\r\na=setup:active"));
        assert!(!text.contains("\r\na=inactive"));
        assert!(text.split("\r\n").all(|l| !l.contains(['\r', '\n'])));
    }

    #[test]
    fn answer_drops_duplicate_payload_types_and_extmap_ids() {
        let offer = parse(CHROME_PUBLISH).unwrap();
        let mut answer = answer_for(&offer, addr("203.0.113.5:40000"));
        let dup = answer.media[1].codecs[0].clone();
        answer.media[1].codecs.push(dup);
        let e = answer.media[1].extmaps[0].clone();
        answer.media[1].extmaps.push(e);
        let parsed = parse(&write_answer(&answer)).unwrap();
        assert_eq!(parsed.media[1].formats, ["96", "97"]);
        assert_eq!(parsed.media[1].extmaps.len(), 1);
    }

    // -----------------------------------------------------------------------
    // Errors
    // -----------------------------------------------------------------------

    fn without(sdp: &str, prefix: &str) -> String {
        sdp.lines()
            .filter(|l| !l.starts_with(prefix))
            .map(|l| format!("{l}\r\n"))
            .collect()
    }

    fn validate(sdp: &str) -> Result<(), SdpError> {
        parse(sdp)?.validate_webrtc()
    }

    #[test]
    fn missing_ice_credentials() {
        for attr in ["a=ice-ufrag", "a=ice-pwd"] {
            assert_eq!(
                validate(&without(CHROME_PUBLISH, attr)),
                Err(SdpError::MissingIceCredentials)
            );
            assert_eq!(
                validate(&without(OBS_WHIP, attr)),
                Err(SdpError::MissingIceCredentials)
            );
        }
        // What the end-to-end test sends: the attribute renamed into an unknown one.
        let renamed = crlf(CHROME_PUBLISH).replace("a=ice-ufrag", "a=x");
        assert_eq!(validate(&renamed), Err(SdpError::MissingIceCredentials));
    }

    #[test]
    fn missing_fingerprint() {
        for s in [CHROME_PUBLISH, FIREFOX_PUBLISH, OBS_WHIP] {
            assert_eq!(
                validate(&without(s, "a=fingerprint")),
                Err(SdpError::MissingFingerprint)
            );
        }
    }

    #[test]
    fn rtcp_mux_is_required() {
        let offer = CHROME_PUBLISH.replacen("a=rtcp-mux\n", "", 2);
        assert_eq!(
            validate(&offer),
            Err(SdpError::NoRtcpMux { mid: "0".into() })
        );
        let offer = CHROME_PUBLISH.replacen("a=rtcp-mux\n", "a=rtcp-mux-only\n", 1);
        assert_eq!(
            validate(&offer),
            Err(SdpError::NoRtcpMux { mid: "0".into() })
        );
    }

    #[test]
    fn bundle_is_required() {
        assert_eq!(
            validate(&without(CHROME_PUBLISH, "a=group:BUNDLE")),
            Err(SdpError::NotBundled { mid: "0".into() })
        );
        let offer = CHROME_PUBLISH.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
        assert_eq!(
            validate(&offer),
            Err(SdpError::NotBundled { mid: "1".into() })
        );
        // Two BUNDLE groups would need two transports.
        let offer =
            CHROME_PUBLISH.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0\na=group:BUNDLE 1");
        assert_eq!(
            validate(&offer),
            Err(SdpError::NotBundled { mid: "1".into() })
        );
        let offer = CHROME_PUBLISH.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 7");
        assert_eq!(
            validate(&offer),
            Err(SdpError::UnknownBundleMid { mid: "7".into() })
        );
        // A rejected (port 0) m-line need not be bundled.
        let offer = CHROME_PUBLISH
            .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0")
            .replace("m=video 9 ", "m=video 0 ");
        validate(&offer).unwrap();
    }

    #[test]
    fn protocol_and_mid_are_checked() {
        let offer = CHROME_PUBLISH.replacen("UDP/TLS/RTP/SAVPF", "RTP/AVP", 1);
        assert_eq!(
            validate(&offer),
            Err(SdpError::UnsupportedProtocol {
                mid: "0".into(),
                protocol: "RTP/AVP".into()
            })
        );
        let offer = CHROME_PUBLISH.replacen("UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP", 1);
        validate(&offer).unwrap();
        let offer = without(CHROME_PUBLISH, "a=mid:1").replace("BUNDLE 0 1", "BUNDLE 0");
        assert_eq!(
            validate(&offer),
            Err(SdpError::MissingAttribute {
                attr: "mid",
                m_line: 1
            })
        );
        let offer = CHROME_PUBLISH.replace("a=mid:1", "a=mid:0");
        assert_eq!(
            parse(&offer),
            Err(SdpError::DuplicateMid { mid: "0".into() })
        );
        // No active audio or video at all.
        let offer = CHROME_PUBLISH
            .replace("m=audio 9 ", "m=audio 0 ")
            .replace("m=video 9 ", "m=video 0 ");
        assert_eq!(validate(&offer), Err(SdpError::NoMedia));
        let header = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
        assert_eq!(validate(header), Err(SdpError::NoMedia));
    }

    fn bad_line(sdp: &str) -> usize {
        match parse(sdp) {
            Err(SdpError::BadLine { line_no, .. }) => line_no,
            other => panic!("expected BadLine for {sdp:?}, got {other:?}"),
        }
    }

    #[test]
    fn garbage_lines_are_rejected_with_their_number() {
        assert_eq!(bad_line("v=0\r\nthis is not sdp"), 2);
        assert_eq!(bad_line("hello"), 1);
        assert_eq!(bad_line("v=1\r\n"), 1);
        assert_eq!(bad_line("o=- 1 2 IN IP4 0.0.0.0\r\nv=0\r\n"), 1);
        let head = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
        for (line, why) in [
            ("A=foo", "uppercase type"),
            ("a", "no ="),
            ("=a", "no type"),
            ("é=1", "non-ASCII type"),
            ("a=", "empty attribute"),
            ("a=foo bar:1", "attribute name with a space"),
            ("a=ice-ufrag:ab", "ufrag too short"),
            ("a=ice-ufrag:ab cd ef", "ufrag with spaces"),
            ("a=ice-pwd:short", "password too short"),
            ("a=setup:sideways", "unknown setup"),
            ("a=fingerprint:sha-256", "fingerprint without value"),
            ("a=group:BUNDLE 0 \"1\"", "bundle mid not a token"),
            ("a=extmap:0 urn:x", "extmap id 0"),
            ("a=extmap:256 urn:x", "extmap id 256"),
            ("a=extmap:1/sideways urn:x", "extmap direction"),
            ("a=extmap:1", "extmap without uri"),
            ("a=x\0y", "NUL"),
            ("a=x\ry", "lone CR"),
            ("a=x\u{7f}", "DEL"),
            ("o=- 2 2 IN IP4 127.0.0.1", "second o="),
            ("m=audio 9 UDP/TLS/RTP/SAVPF", "no format"),
            ("m=audio 70000 UDP/TLS/RTP/SAVPF 111", "port out of range"),
            ("m=audio 9/x UDP/TLS/RTP/SAVPF 111", "bad port count"),
            ("m=audio 9 UDP/TLS/RTP/SAVPF 128", "payload type 128"),
            ("m=audio 9 UDP/TLS/RTP/SAVPF opus", "non-numeric RTP format"),
            ("m=audio", "short m-line"),
            ("", "blank line in the middle"),
        ] {
            let sdp = format!("{head}{line}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n");
            assert!(
                matches!(parse(&sdp), Err(SdpError::BadLine { line_no: 5, .. })),
                "{why}: {:?}",
                parse(&sdp)
            );
        }
        let media = "m=audio 9 UDP/TLS/RTP/SAVPF 111 96\r\n";
        for (line, why) in [
            ("a=mid:", "empty mid"),
            ("a=mid:a b", "mid with a space"),
            ("a=mid:0\r\na=mid:1", "two mids"),
            ("a=sendonly\r\na=recvonly", "two directions"),
            ("a=rtpmap:111", "rtpmap without encoding"),
            ("a=rtpmap:111 opus", "rtpmap without clock rate"),
            ("a=rtpmap:111 opus/0", "zero clock rate"),
            ("a=rtpmap:111 opus/48000/0", "zero channels"),
            ("a=rtpmap:111 opus/48000/2/9", "extra rtpmap field"),
            ("a=rtpmap:200 opus/48000/2", "rtpmap payload type 200"),
            (
                "a=rtpmap:111 opus/48000/2\r\na=rtpmap:111 opus/48000/2",
                "two rtpmaps",
            ),
            ("a=fmtp:x apt=1", "fmtp payload type"),
            ("a=fmtp:96 apt=111\r\na=fmtp:96 apt=111", "two fmtps"),
            ("a=rtcp-fb:111", "rtcp-fb without type"),
            ("a=rtcp-fb:-1 nack", "rtcp-fb payload type"),
            ("a=ssrc:4294967296 cname:x", "SSRC over 32 bits"),
            ("a=ssrc:1", "ssrc without attribute"),
            ("a=ssrc-group:FID", "empty group"),
            ("a=ssrc-group:FID 1 x", "non-numeric group SSRC"),
            ("a=rid:q sideways", "rid direction"),
            ("a=rid:q.1 send", "rid id"),
            ("a=simulcast:send q\r\na=simulcast:send h", "two simulcast"),
            ("a=candidate:", "empty candidate"),
            ("a=extmap:3 urn:x\r\na=extmap:3 urn:y", "extmap id twice"),
            ("o=- 1 2 IN IP4 127.0.0.1", "o= after m="),
        ] {
            let sdp = format!("{head}{media}{line}\r\n");
            assert!(
                matches!(parse(&sdp), Err(SdpError::BadLine { line_no: 6.., .. })),
                "{why}: {:?}",
                parse(&sdp)
            );
        }
        // The message names the line.
        let err = parse("v=0\r\nthis is not sdp").unwrap_err();
        assert!(err.to_string().starts_with("line 2: "), "{err}");
    }

    #[test]
    fn unknown_lines_and_attributes_are_ignored() {
        let sdp = format!(
            "{}a=x-google-flag:conference\r\nx=unknown type\r\nb=AS:2500\r\na=rtcp-fb:* nack\r\na=rtpmap:200x ignored\r\n",
            crlf(OBS_WHIP)
        );
        // The last m-line is RTP, so the odd rtpmap is a syntax error; without it,
        // everything else is accepted.
        assert!(matches!(parse(&sdp), Err(SdpError::BadLine { .. })));
        let sdp = sdp.replace("a=rtpmap:200x ignored\r\n", "");
        let parsed = parse(&sdp).unwrap();
        parsed.validate_webrtc().unwrap();
        // rtcp-fb for * reaches every codec of the m-line.
        assert_eq!(
            parsed.media[1].codecs[0].rtcp_fb,
            ["nack", "nack pli", "goog-remb", "nack"]
        );
        // Codec attributes on a data channel m-line are ignored, not parsed.
        let dc = format!(
            "{}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=fmtp:webrtc-datachannel x\r\n",
            crlf(OBS_WHIP)
        );
        let parsed = parse(&dc).unwrap();
        assert_eq!(parsed.media[2].media_type, MediaType::Application);
        assert!(parsed.media[2].codecs.is_empty());
        assert_eq!(parsed.media[2].formats, ["webrtc-datachannel"]);
        // Other media types are kept as written.
        let text = format!("{}m=text 0 RTP/AVP 98\r\n", crlf(OBS_WHIP));
        assert_eq!(
            parse(&text).unwrap().media[2].media_type,
            MediaType::Other("text".into())
        );
    }

    #[test]
    fn static_payload_types_need_no_rtpmap() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 0 8 9 18\r\na=mid:0\r\n";
        let parsed = parse(sdp).unwrap();
        let names: Vec<&str> = parsed.media[0]
            .codecs
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["PCMU", "PCMA", "G722"]);
        assert_eq!(parsed.media[0].formats, ["0", "8", "9", "18"]);
    }

    #[test]
    fn multiple_fingerprints_prefer_sha256() {
        let sdp = CHROME_SIMULCAST.replace(
            "a=fingerprint:sha-256",
            "a=fingerprint:sha-1 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33\n\
             a=fingerprint:sha-256",
        );
        assert_eq!(parse(&sdp).unwrap().fingerprint().unwrap(), FP);
    }

    #[test]
    fn size_and_count_limits() {
        let big = format!("v=0\r\n{}", "a=x\r\n".repeat(MAX_SDP_LEN / 5));
        assert!(matches!(parse(&big), Err(SdpError::TooLarge { .. })));
        assert!(matches!(
            parse_sdpfrag(&big),
            Err(SdpError::TooLarge { .. })
        ));
        let many_lines = format!("v=0\r\n{}", "a=\r\n".repeat(MAX_LINES + 1));
        assert!(many_lines.len() <= MAX_SDP_LEN);
        assert_eq!(
            parse(&many_lines),
            Err(SdpError::TooMany {
                what: "lines",
                max: MAX_LINES
            })
        );
        let mut many_media = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".to_owned();
        for i in 0..=MAX_MEDIA {
            many_media += &format!("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:{i}\r\n");
        }
        assert_eq!(
            parse(&many_media),
            Err(SdpError::TooMany {
                what: "m-lines",
                max: MAX_MEDIA
            })
        );
        let head = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
        let formats: Vec<String> = (0..=MAX_FORMATS).map(|i| format!("f{i}")).collect();
        let many_formats = format!("{head}m=application 9 X/Y {}\r\n", formats.join(" "));
        assert!(matches!(
            parse(&many_formats),
            Err(SdpError::TooMany {
                max: MAX_FORMATS,
                ..
            })
        ));
        let mids: Vec<String> = (0..=MAX_MEDIA).map(|i| i.to_string()).collect();
        let many_mids = format!("{head}a=group:BUNDLE {}\r\n", mids.join(" "));
        assert!(matches!(
            parse(&many_mids),
            Err(SdpError::TooMany { max: MAX_MEDIA, .. })
        ));
        let frag_mids: String = mids.iter().map(|m| format!("a=mid:{m}\r\n")).collect();
        assert!(matches!(
            parse_sdpfrag(&frag_mids),
            Err(SdpError::TooMany { max: MAX_MEDIA, .. })
        ));
        // Error messages quote at most 32 characters of the offending value.
        let long = format!("{head}m=audio {} RTP/AVP 0\r\n", "9".repeat(1000));
        let msg = parse(&long).unwrap_err().to_string();
        assert!(msg.len() < 100, "{msg}");
        assert_eq!(parse(""), Err(SdpError::Empty));
        assert_eq!(parse("\r\n\r\n"), Err(SdpError::Empty));
        assert_eq!(
            parse("v=0\r\ns=-\r\n"),
            Err(SdpError::MissingLine { line: "o=" })
        );
        // Not UTF-8 on the wire arrives as replacement characters: still no panic.
        let lossy = String::from_utf8_lossy(b"v=0\r\no=\xff\xfe 1 2 IN IP4 x\r\na=\xc3\r\n");
        assert!(parse(&lossy).is_err());
        // Oversized numbers.
        assert!(parse("v=0\r\no=- 18446744073709551616 2 IN IP4 127.0.0.1\r\n").is_err());
    }

    #[test]
    fn every_prefix_of_every_sample_is_handled() {
        for sample in samples() {
            let last_m = sample.rfind("\r\nm=").unwrap();
            for end in 0..=sample.len() {
                let Some(prefix) = sample.get(..end) else {
                    continue;
                };
                let parsed = parse(prefix);
                if let Ok(sdp) = &parsed {
                    exercise(sdp);
                }
                // Cut before the last m-line, a BUNDLE mid is missing.
                if end <= last_m {
                    assert!(
                        parsed.and_then(|s| s.validate_webrtc()).is_err(),
                        "prefix of {end} bytes validated"
                    );
                }
                let _ = parse_sdpfrag(prefix);
            }
        }
    }

    /// Calls every helper on a parsed description, and checks that an answer built
    /// from it parses back with the expected BUNDLE group.
    fn exercise(sdp: &SessionDescription) {
        let _ = sdp.validate_webrtc();
        let _ = sdp.ice_credentials();
        let _ = sdp.fingerprint();
        let _ = sdp.setup();
        static REFERENCE: std::sync::LazyLock<SessionDescription> =
            std::sync::LazyLock::new(|| parse(CHROME_SUBSCRIBE).unwrap());
        for m in &sdp.media {
            let _ = m.sender_ssrcs();
            let _ = m.cname();
            if let Some(c) = choose_codec(m) {
                let _ = m.rtx_payload_for(c.payload_type);
                for r in &REFERENCE.media {
                    let _ = find_compatible_codec(r, c);
                }
            }
            for c in &m.codecs {
                let _ = find_compatible_codec(m, c);
            }
        }
        let answer = answer_for(sdp, addr("192.0.2.1:4000"));
        let text = write_answer(&answer);
        let parsed = match parse(&text) {
            Ok(p) => p,
            Err(e) => panic!("answer does not parse: {e}\n{text}"),
        };
        let expected: Vec<&str> = answer
            .media
            .iter()
            .filter(|m| !m.rejected)
            .map(|m| m.mid.as_str())
            .collect();
        assert_eq!(parsed.bundle_mids, expected);
        assert_eq!(parsed.media.len(), sdp.media.len());
    }

    const SNIPPETS: &[&str] = &[
        "a=",
        "m=",
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
        "a=mid:",
        "a=mid:0\r\n",
        "a=rtpmap:96 ",
        "a=rtpmap:97 rtx/90000\r\n",
        "a=fmtp:97 apt=",
        "a=rtcp-fb:* ",
        "a=ssrc-group:FID ",
        "a=ssrc-group:SIM 1 2 3\r\n",
        "a=ssrc:",
        "a=group:BUNDLE ",
        "a=extmap:",
        "a=rid:",
        "a=simulcast:",
        "a=candidate:",
        "a=setup:passive\r\n",
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=fingerprint:",
        "a=sendrecv\r\n",
        "profile-level-id=",
        "packetization-mode=1",
        "4294967296",
        "4294967295",
        "65536",
        "256",
        "128",
        "127",
        "-1",
        "0",
        "\r\n",
        "\n",
        "\r",
        ":",
        " ",
        "/",
        ";",
        "=",
        "*",
        "é",
        "\u{0}",
        "\u{feff}",
    ];

    fn mutate(rng: &mut StdRng, data: &mut Vec<u8>) {
        let len = data.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] = match rng.random_range(0..3) {
                    0 => rng.random(),
                    1 => *b" :/=;0\r\n-*am9"
                        .get(rng.random_range(0..14))
                        .unwrap_or(&b'x'),
                    _ => rng.random_range(0x20..0x7f),
                };
            }
            1 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = (start + rng.random_range(1..64)).min(len);
                data.drain(start..end);
            }
            2 => {
                let at = rng.random_range(0..=len);
                let s = SNIPPETS[rng.random_range(0..SNIPPETS.len())];
                data.splice(at..at, s.bytes());
            }
            3 if len > 0 => {
                // Duplicate a line somewhere else.
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(
                        data.iter()
                            .enumerate()
                            .filter(|(_, b)| **b == b'\n')
                            .map(|(i, _)| i + 1),
                    )
                    .filter(|&i| i < len)
                    .collect();
                let from = starts[rng.random_range(0..starts.len())];
                let to = data[from..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(len, |p| from + p + 1);
                let line = data[from..to].to_vec();
                let at = starts[rng.random_range(0..starts.len())];
                data.splice(at..at, line);
            }
            4 => data.truncate(rng.random_range(0..=len)),
            5 if len > 0 => {
                // Replace a number-looking byte run with a large or odd number.
                let i = rng.random_range(0..len);
                let n: &[u8] = match rng.random_range(0..4) {
                    0 => b"99999999999999999999",
                    1 => b"0",
                    2 => b"255",
                    _ => b"127",
                };
                let end = data[i..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(len, |p| i + p);
                data.splice(i..end, n.iter().copied());
            }
            _ => {
                // Swap two lines' first bytes (changes line types).
                if len > 1 {
                    let a = rng.random_range(0..len);
                    let b = rng.random_range(0..len);
                    data.swap(a, b);
                }
            }
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let samples = samples();
        let mut rng = StdRng::seed_from_u64(0x005d_9c45_cade);
        let mut parsed_ok = 0usize;
        for i in 0..100_000 {
            let mut data = samples[i % samples.len()].clone().into_bytes();
            for _ in 0..rng.random_range(1..=4) {
                mutate(&mut rng, &mut data);
            }
            let text = String::from_utf8_lossy(&data);
            if let Ok(sdp) = parse(&text) {
                parsed_ok += 1;
                exercise(&sdp);
            }
            let _ = parse_sdpfrag(&text);
        }
        // The mutations must leave a fair share of offers parseable, or the
        // deeper helpers would go untested.
        assert!(parsed_ok > 10_000, "only {parsed_ok} mutated offers parsed");
    }

    // -----------------------------------------------------------------------
    // Trickle fragments
    // -----------------------------------------------------------------------

    #[test]
    fn sdpfrag_with_candidates() {
        let frag = crlf(
            "a=group:BUNDLE 0 1
a=ice-ufrag:EsAw
a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1
m=audio 9 UDP/TLS/RTP/SAVPF 111
a=mid:0
a=ice-ufrag:EsAw
a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1
a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2
a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0 ufrag EsAw network-id 1
a=end-of-candidates
",
        );
        let f = parse_sdpfrag(&frag).unwrap();
        assert_eq!(f.ice_ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.ice_pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert_eq!(f.mids, ["0"]);
        assert_eq!(f.candidates.len(), 3);
        assert_eq!(
            f.candidates[0],
            "1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1"
        );
        assert!(f.end_of_candidates);
    }

    #[test]
    fn sdpfrag_ice_restart_and_errors() {
        let f = parse_sdpfrag("a=ice-ufrag:ysXw\na=ice-pwd:vw5LmwG4y/e6dPP/zAP9Gp5k\n").unwrap();
        assert_eq!(f.ice_ufrag.as_deref(), Some("ysXw"));
        assert_eq!(f.ice_pwd.as_deref(), Some("vw5LmwG4y/e6dPP/zAP9Gp5k"));
        assert!(f.mids.is_empty() && f.candidates.is_empty() && !f.end_of_candidates);
        assert_eq!(parse_sdpfrag("").unwrap(), SdpFragment::default());
        assert_eq!(parse_sdpfrag("\r\n").unwrap(), SdpFragment::default());
        assert!(matches!(
            parse_sdpfrag("a=ice-ufrag:ysXw\na=ice-ufrag:abcd\n"),
            Err(SdpError::BadLine { line_no: 2, .. })
        ));
        assert!(matches!(
            parse_sdpfrag("a=candidate:1 1 udp 1 192.0.2.1 9 typ host\ngarbage\n"),
            Err(SdpError::BadLine { line_no: 2, .. })
        ));
        assert!(matches!(
            parse_sdpfrag("a=ice-pwd:short\n"),
            Err(SdpError::BadLine { line_no: 1, .. })
        ));
        assert!(matches!(
            parse_sdpfrag("a=mid:\n"),
            Err(SdpError::BadLine { line_no: 1, .. })
        ));
        let many = "m=audio 9 RTP/AVP 0\r\n".repeat(MAX_MEDIA + 1);
        assert!(matches!(
            parse_sdpfrag(&many),
            Err(SdpError::TooMany { .. })
        ));
    }
}
