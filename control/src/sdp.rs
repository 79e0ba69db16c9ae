//! SDP offer parsing, codec choice and answer writing for a server that is
//! ICE-lite, the DTLS server (`a=setup:passive`) and speaks BUNDLE with rtcp-mux only.
//!
//! This module owns the text of session descriptions: parsing offers (RFC 8866 syntax
//! with the attributes of RFC 8839 ICE, RFC 8843 BUNDLE, RFC 5761 rtcp-mux, RFC 8853
//! simulcast, RFC 8851 rid, RFC 8285 extmap, RFC 4588 rtx and RFC 5576 ssrc), parsing
//! trickle fragments (RFC 8840), checking that an offer is one this server can serve,
//! choosing codecs, and writing answers. It must not do I/O, keep any session state or
//! decide which track goes where (that is `crate::sfu`'s job), and it never panics on
//! any input: everything malformed becomes a typed [`SdpError`] that names the line.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

/// Largest SDP (offer, answer or trickle fragment) accepted, in bytes.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Most m-lines accepted in one SDP.
pub const MAX_MEDIA: usize = 64;
/// Most lines accepted in one SDP.
pub const MAX_LINES: usize = 8192;
/// Longest mid, rid, ICE ufrag or ICE password accepted.
const MAX_TOKEN_LEN: usize = 256;
/// Shortest ICE ufrag allowed by RFC 8839 §5.4.
const MIN_UFRAG_LEN: usize = 4;
/// Shortest ICE password allowed by RFC 8839 §5.4.
const MIN_PWD_LEN: usize = 22;
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
    #[error("the SDP has no a=ice-ufrag and a=ice-pwd")]
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
        [Setup::Active, Setup::Passive, Setup::ActPass, Setup::HoldConn]
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
    /// 0 for a rejected (or disabled) m-line.
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
const WEBRTC_PROTOCOLS: [&str; 2] = ["UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP"];

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
        self.transport_media()
            .and_then(|m| m.setup)
            .or(self.setup)
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
        let secondary = |ssrc: u32| {
            self.ssrc_groups.iter().any(|g| {
                matches!(g.semantics.as_str(), "FID" | "FEC-FR" | "FEC")
                    && g.ssrcs.iter().skip(1).any(|&s| s == ssrc)
            })
        };
        let rtx_of = |ssrc: u32| {
            self.ssrc_groups
                .iter()
                .filter(|g| g.semantics == "FID")
                .find(|g| g.ssrcs.first() == Some(&ssrc))
                .and_then(|g| g.ssrcs.get(1).copied())
        };
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
        let mut out: Vec<(u32, Option<u32>)> = Vec::new();
        for ssrc in sim.chain(grouped).chain(declared) {
            if !secondary(ssrc) && !out.iter().any(|(s, _)| *s == ssrc) {
                out.push((ssrc, rtx_of(ssrc)));
            }
        }
        out
    }

    /// The first `a=ssrc:<ssrc> cname:<cname>` value.
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
fn best<'a>(
    codecs: &'a [Codec],
    filter: impl Fn(&Codec) -> bool,
    rank: impl Fn(&Codec) -> u8,
) -> Option<&'a Codec> {
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
        if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(bad(
                no,
                format!("control character U+{:04X}", u32::from(c)),
            ));
        }
        lines.push(Line { no, kind, value });
    }
    if lines.is_empty() {
        return Err(SdpError::Empty);
    }
    Ok(lines)
}

/// RFC 8866 `token` characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            matches!(b, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'0'..=b'9' | b'A'..=b'Z' | b'^'..=b'~')
        })
}

/// Splits `a=<name>[:<value>]`; the value is trimmed.
fn split_attribute(line: &Line<'_>) -> Result<(&str, Option<&str>), SdpError> {
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
        return Err(bad(line.no, format!("a={name} appears twice at the same level")));
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
        _ => Err(bad(line.no, "a=fingerprint must be <hash-function> <fingerprint>")),
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
        _ => Err(bad(line.no, format!("{s:?} is not an RTP payload type (0-127)"))),
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
            let d = Direction::parse(dir)
                .ok_or_else(|| bad(line.no, format!("unknown a=extmap direction {dir:?}")))?;
            (id, Some(d))
        }
        None => (head, None),
    };
    let id = match id.parse::<u8>() {
        Ok(id) if id >= 1 => id,
        _ => return Err(bad(line.no, format!("a=extmap id {id:?} is not in 1-255"))),
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
                    .ok_or_else(|| bad(line.no, format!("unknown a=setup value {v:?}")))?;
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
                    let mut mids = Vec::new();
                    for mid in parts {
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
        let port = port
            .parse::<u16>()
            .map_err(|_| bad(line.no, format!("m= port {port:?} is not in 0-65535")))?;
        if count.is_some_and(|n| n.parse::<u16>().is_err()) {
            return Err(bad(line.no, "m= port count is not a number"));
        }
        let rtp = protocol.split('/').any(|p| p == "RTP");
        let mut formats: Vec<String> = Vec::new();
        for f in parts {
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
            "candidate" => self
                .candidates
                .push(need(line, name, value)?.to_owned()),
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
            return Err(bad(line.no, "a=rtpmap must be <pt> <name>/<clock rate>[/<channels>]"));
        };
        if !is_token(name) {
            return Err(bad(line.no, "the a=rtpmap encoding name is not a token"));
        }
        let clock_rate = match clock.parse::<u32>() {
            Ok(c) if c > 0 => c,
            _ => return Err(bad(line.no, format!("a=rtpmap clock rate {clock:?} is invalid"))),
        };
        let channels = match channels.map(str::parse::<u16>) {
            None => None,
            Some(Ok(n)) if n > 0 => Some(n),
            Some(_) => return Err(bad(line.no, "a=rtpmap channel count is invalid")),
        };
        if self.rtpmaps.iter().any(|r| r.pt == pt) {
            return Err(bad(line.no, format!("a second a=rtpmap for payload type {pt}")));
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
            return Err(bad(line.no, format!("a second a=fmtp for payload type {pt}")));
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
        let ssrc = ssrc
            .parse::<u32>()
            .map_err(|_| bad(line.no, format!("SSRC {ssrc:?} is not a 32-bit number")))?;
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
                s.parse::<u32>()
                    .map_err(|_| bad(line.no, format!("SSRC {s:?} is not a 32-bit number")))
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
            return Err(bad(line.no, "a=rid id must be letters, digits, '-' and '_'"));
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
                let (name, clock_rate, channels) =
                    match self.rtpmaps.iter().find(|r| r.pt == pt) {
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
            port: self.port,
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
            && media.iter().skip(i + 1).any(|o| o.mid.as_ref() == Some(mid))
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
                            frag.mids.push(mid);
                        }
                    }
                    "candidate" => frag
                        .candidates
                        .push(need(line, name, value)?.to_owned()),
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
    m.rejected
        || m.media_type == MediaType::Application
        || m.codecs.is_empty()
        || m.mid.is_empty()
}

/// The format of a rejected m-line: the first codec's payload type if there is
/// one, else a format valid for the protocol.
fn rejected_format(m: &MediaAnswer) -> String {
    if let Some(c) = m.codecs.first() {
        c.payload_type.to_string()
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
            WEBRTC_PROTOCOLS[0]
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
        w!(out, "m={media_type} 9 {protocol} {}", pts.join(" "));
        w!(out, "c=IN {family} {unspecified}");
        w!(out, "a=mid:{}", m.mid);
        w!(out, "a=ice-ufrag:{}", answer.ice_ufrag);
        w!(out, "a=ice-pwd:{}", answer.ice_pwd);
        w!(out, "a=fingerprint:{}", answer.fingerprint);
        w!(out, "a=setup:passive");
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
