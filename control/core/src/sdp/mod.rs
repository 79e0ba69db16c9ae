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
//!
//! One concern per file: `lex` splits text into lines and parses attribute values,
//! `builder` gathers the attributes of the session and of each m-line, `parse` reads
//! whole descriptions and trickle fragments, `types` holds the parsed forms and their
//! accessors, `validate` judges whether an offer can be served, `codec` chooses
//! codecs, `write` writes answers and `error` says what went wrong.

mod builder;
mod codec;
mod error;
mod lex;
mod parse;
mod types;
mod validate;
mod write;

#[cfg(test)]
mod fixtures;

pub use codec::{choose_codec, find_compatible_codec};
pub use error::SdpError;
pub use parse::{parse, parse_sdpfrag};
pub use types::{
    Codec, Direction, ExtMap, MediaAnswer, MediaDescription, MediaType, Rid, SdpFragment,
    SendStream, SessionAnswer, SessionDescription, Setup, SsrcAttr, SsrcGroup,
};
pub use write::write_answer;

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
/// The protocol of WebRTC media m-lines.
const DEFAULT_PROTOCOL: &str = "UDP/TLS/RTP/SAVPF";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::fixtures::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

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
}
