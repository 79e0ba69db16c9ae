//! Splits SDP text into numbered `<type>=<value>` lines and parses single attribute
//! values (tokens, ICE credentials, fingerprints, payload types, extmaps). It knows
//! nothing of session or media structure; every error it returns names its line.

use crate::sdp::{Direction, ExtMap, MAX_LINES, MAX_SDP_LEN, MAX_TOKEN_LEN, SdpError};

/// One `<type>=<value>` line.
pub(super) struct Line<'a> {
    /// 1-based line number.
    pub(super) no: usize,
    pub(super) kind: u8,
    pub(super) value: &'a str,
}

/// At most the first 32 characters of a value, for error messages.
pub(super) fn shown(s: &str) -> &str {
    s.char_indices()
        .nth(32)
        .map_or(s, |(i, _)| s.get(..i).unwrap_or(s))
}

pub(super) fn bad(line_no: usize, reason: impl Into<String>) -> SdpError {
    SdpError::BadLine {
        line_no,
        reason: reason.into(),
    }
}

/// Splits an SDP into lines, accepting CRLF and LF endings and blank lines only
/// at the end, and rejecting anything that is not `<lowercase letter>=<value>` or
/// that carries control characters.
pub(super) fn split_lines(sdp: &str) -> Result<Vec<Line<'_>>, SdpError> {
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
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'{'..=b'~'
            )
    })
}

/// Splits `a=<name>[:<value>]`; the value is trimmed.
pub(super) fn split_attribute<'a>(line: &Line<'a>) -> Result<(&'a str, Option<&'a str>), SdpError> {
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
pub(super) fn need<'a>(
    line: &Line<'_>,
    name: &str,
    value: Option<&'a str>,
) -> Result<&'a str, SdpError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(bad(line.no, format!("a={name} needs a value"))),
    }
}

pub(super) fn parse_token(
    line: &Line<'_>,
    name: &str,
    value: Option<&str>,
) -> Result<String, SdpError> {
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
pub(super) fn parse_ice(
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
pub(super) fn parse_fingerprint(line: &Line<'_>, value: Option<&str>) -> Result<String, SdpError> {
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

pub(super) fn is_sha256(fingerprint: &str) -> bool {
    fingerprint
        .split(' ')
        .next()
        .is_some_and(|h| h.eq_ignore_ascii_case("sha-256"))
}

/// An RTP payload type (0..=127).
pub(super) fn parse_pt(line: &Line<'_>, s: &str) -> Result<u8, SdpError> {
    match s.parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err(bad(
            line.no,
            format!("{:?} is not an RTP payload type (0-127)", shown(s)),
        )),
    }
}

pub(super) fn parse_extmap(line: &Line<'_>, value: Option<&str>) -> Result<ExtMap, SdpError> {
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

#[cfg(test)]
mod tests {
    use crate::sdp::fixtures::*;
    use crate::sdp::{SdpError, parse};

    #[test]
    fn lf_and_crlf_parse_alike() {
        for s in [CHROME_PUBLISH, FIREFOX_PUBLISH, OBS_WHIP] {
            assert_eq!(parse(s).unwrap(), parse(&crlf(s)).unwrap());
        }
        // No final line break is fine too.
        let trimmed = CHROME_PUBLISH.trim_end();
        assert_eq!(parse(trimmed).unwrap(), parse(CHROME_PUBLISH).unwrap());
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
}
