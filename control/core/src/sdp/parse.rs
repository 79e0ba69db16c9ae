//! Reading SDP text: [`parse`] reads a whole session description, [`parse_sdpfrag`]
//! a trickle fragment. They check the structure (v= first, o= before the m-lines,
//! the limits, unique mids) and leave whether an offer can be served to
//! `SessionDescription::validate_webrtc`.

use crate::sdp::builder::{MediaBuilder, SessionBuilder};
use crate::sdp::lex::{Line, bad, need, parse_ice, parse_token, split_attribute, split_lines};
use crate::sdp::{
    MAX_MEDIA, MIN_PWD_LEN, MIN_UFRAG_LEN, MediaDescription, SdpError, SdpFragment,
    SessionDescription,
};

/// Parses a session description (RFC 8866 syntax). Accepts CRLF and LF line
/// endings, ignores unknown line types and attributes, and rejects lines that are
/// not `<letter>=<value>`, input over [`MAX_SDP_LEN`](crate::sdp::MAX_SDP_LEN)
/// bytes and more than [`MAX_MEDIA`] m-lines. It checks syntax only; see
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::fixtures::*;
    use crate::sdp::{Direction, ExtMap, MediaType, Setup, choose_codec, find_compatible_codec};

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
