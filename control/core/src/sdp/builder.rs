//! Gathers the attributes of the session and of each m-line while an SDP is read,
//! enforcing the rules of each level (one a=mid, one a=setup, distinct extmap ids,
//! one a=rtpmap per payload type, ...), and turns each m-line into a
//! [`MediaDescription`] with its codecs. The order of lines is `parse`'s business.

use crate::sdp::lex::{
    Line, bad, is_sha256, is_token, need, parse_extmap, parse_fingerprint, parse_ice, parse_pt,
    parse_token, shown, split_attribute,
};
use crate::sdp::{
    BUNDLED_PORT, Codec, Direction, ExtMap, MAX_FORMATS, MAX_MEDIA, MAX_TOKEN_LEN, MIN_PWD_LEN,
    MIN_UFRAG_LEN, MediaDescription, MediaType, Rid, SdpError, Setup, SsrcAttr, SsrcGroup,
};

/// Sets an attribute's value, which may appear only once at its level.
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

/// Attributes both the session and an m-line may carry.
#[derive(Default)]
pub(super) struct Common {
    pub(super) ice_ufrag: Option<String>,
    pub(super) ice_pwd: Option<String>,
    pub(super) fingerprint: Option<String>,
    pub(super) setup: Option<Setup>,
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
pub(super) struct SessionBuilder {
    pub(super) session_id: Option<u64>,
    pub(super) ice_lite: bool,
    pub(super) bundle_mids: Option<Vec<String>>,
    pub(super) common: Common,
}

impl SessionBuilder {
    pub(super) fn origin(&mut self, line: &Line<'_>) -> Result<(), SdpError> {
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

    pub(super) fn attribute(&mut self, line: &Line<'_>) -> Result<(), SdpError> {
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

pub(super) struct MediaBuilder {
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
    pub(super) fn new(line: &Line<'_>) -> Result<Self, SdpError> {
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

    pub(super) fn attribute(&mut self, line: &Line<'_>) -> Result<(), SdpError> {
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

    pub(super) fn finish(self, session: &Common) -> MediaDescription {
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

#[cfg(test)]
mod tests {
    use crate::sdp::fixtures::*;
    use crate::sdp::{Direction, MediaType, SdpError, parse};

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
}
