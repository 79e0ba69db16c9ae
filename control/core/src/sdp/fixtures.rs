//! Test fixtures: SDP offers captured from real clients (Chromium, Firefox, OBS,
//! FFmpeg, GStreamer), kept as LF-terminated `.sdp` files under `fixtures/`, and
//! helpers that pick m-lines, build codecs and answer offers the way the SFU does.
//! Compiled for tests only.

use std::net::SocketAddr;

use crate::sdp::*;

/// The DTLS fingerprint of the Chromium, FFmpeg and simulcast samples, also the
/// server's own in the answers built here.
pub(super) const FP: &str = "sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08";

/// Turns the LF-terminated samples below (files under `fixtures/`, kept byte for
/// byte by `fixtures/.gitattributes`) into the CRLF form clients send.
pub(super) fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

/// A Chromium publisher (`getUserMedia` + two `sendonly` transceivers).
pub(super) const CHROME_PUBLISH: &str = include_str!("fixtures/chrome_publish.sdp");

/// A Chromium subscriber: two `recvonly` transceivers, no msid, no SSRC.
pub(super) const CHROME_SUBSCRIBE: &str = include_str!("fixtures/chrome_subscribe.sdp");

/// A Firefox publisher: session-level fingerprint and direction, its own
/// payload type numbering (opus 109, VP8 120), SSRC group after the SSRCs.
pub(super) const FIREFOX_PUBLISH: &str = include_str!("fixtures/firefox_publish.sdp");

/// OBS WHIP output (libdatachannel): session-level fingerprint, setup and ICE
/// credentials after each m-line's attributes, the gathered candidates in the
/// first m-line, H264 without rtx.
pub(super) const OBS_WHIP: &str = include_str!("fixtures/obs_whip.sdp");

/// The FFmpeg WHIP muxer: fixed layout, H264 and opus, `a=setup:passive`.
pub(super) const FFMPEG_WHIP: &str = include_str!("fixtures/ffmpeg_whip.sdp");

/// GStreamer webrtcbin (whipclientsink): `video0`/`audio1` mids, upper-case
/// OPUS, mid and fingerprint after the SSRCs.
pub(super) const GSTREAMER_WHIP: &str = include_str!("fixtures/gstreamer_whip.sdp");

/// A Chromium publisher sending three simulcast layers (rid + simulcast, no SSRC).
pub(super) const CHROME_SIMULCAST: &str = include_str!("fixtures/chrome_simulcast.sdp");

/// Every sample, for the properties that must hold on all of them.
pub(super) fn samples() -> Vec<String> {
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

pub(super) fn mid<'a>(sdp: &'a SessionDescription, mid: &str) -> &'a MediaDescription {
    sdp.media
        .iter()
        .find(|m| m.mid.as_deref() == Some(mid))
        .expect("sample has this mid")
}

pub(super) fn pts(codecs: &[Codec]) -> Vec<u8> {
    codecs.iter().map(|c| c.payload_type).collect()
}

pub(super) fn codec(pt: u8, name: &str, clock_rate: u32, fmtp: Option<&str>) -> Codec {
    Codec {
        payload_type: pt,
        name: name.to_owned(),
        clock_rate,
        channels: None,
        fmtp: fmtp.map(str::to_owned),
        rtcp_fb: Vec::new(),
    }
}

/// Answers an offer the way the SFU does: the chosen codec and its rtx on
/// every usable audio/video m-line, everything else rejected.
pub(super) fn answer_for(offer: &SessionDescription, candidate: SocketAddr) -> SessionAnswer {
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

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
