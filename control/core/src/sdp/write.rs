//! Writes answer SDPs from a [`SessionAnswer`]: CRLF lines, values that cannot
//! break a line, one BUNDLE group of the accepted m-lines, rejected m-lines with
//! port 0. It decides nothing: what to accept and send is the caller's choice.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::sdp::{BUNDLED_PORT, Codec, DEFAULT_PROTOCOL, MediaAnswer, MediaType, SessionAnswer};

/// Priority of the answer's single host candidate (type preference 126, local
/// preference 65535, component 1).
const HOST_PRIORITY: u32 = 2_130_706_431;

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
    use crate::sdp::fixtures::*;
    use crate::sdp::{Direction, SdpError, Setup, choose_codec, parse, write_answer};

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
}
