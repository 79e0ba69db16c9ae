//! The parsed forms of session descriptions and trickle fragments, the inputs of
//! answer writing, and the accessors that read transport parameters, rtx payload
//! types, SSRCs and simulcast layers out of a parsed description. Nothing here
//! reads or writes SDP text.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use crate::sdp::SdpError;
use crate::sdp::codec::fmtp_param;

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

    pub(super) fn parse(s: &str) -> Option<Self> {
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

    pub(super) fn parse(s: &str) -> Self {
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

    pub(super) fn parse(s: &str) -> Option<Self> {
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

/// Everything [`write_answer`](crate::sdp::write_answer) needs.
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

    /// The first `a=ssrc:<ssrc> cname:<cname>` value.
    pub fn cname(&self) -> Option<&str> {
        self.ssrcs
            .iter()
            .find(|s| s.attribute == "cname")
            .and_then(|s| s.value.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::fixtures::*;
    use crate::sdp::{MAX_SDP_LEN, parse};

    #[test]
    fn direction_reverse() {
        assert_eq!(Direction::SendOnly.reverse(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reverse(), Direction::SendOnly);
        assert_eq!(Direction::SendRecv.reverse(), Direction::SendRecv);
        assert_eq!(Direction::Inactive.reverse(), Direction::Inactive);
        assert!(Direction::SendRecv.sends() && Direction::SendRecv.receives());
        assert!(!Direction::Inactive.sends() && !Direction::Inactive.receives());
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
}
