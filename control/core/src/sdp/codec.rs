//! Codec choice: the codec the server forwards on an m-line, the codec of a
//! subscriber's m-line that can carry what a publisher sends, and the `a=fmtp`
//! parameters both depend on (H.264 packetization mode and profile, VP9 and AV1
//! profiles). Works on parsed descriptions only.

use crate::sdp::{Codec, MediaDescription, MediaType};

/// The value of `key` in `a=fmtp` parameters (`k=v;k=v`), keys case-insensitive.
pub(super) fn fmtp_param<'a>(fmtp: Option<&'a str>, key: &str) -> Option<&'a str> {
    fmtp?
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::fixtures::*;
    use crate::sdp::parse;

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
}
