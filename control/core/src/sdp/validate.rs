//! Whether a parsed offer is one this server can serve: WebRTC media protocols,
//! one BUNDLE group, rtcp-mux, ICE credentials and a fingerprint. Syntax is the
//! parser's business; this judges a well-formed description and changes nothing.

use crate::sdp::{DEFAULT_PROTOCOL, MediaType, SdpError, SessionDescription};

/// Protocols accepted for active audio and video m-lines.
const WEBRTC_PROTOCOLS: [&str; 2] = [DEFAULT_PROTOCOL, "UDP/TLS/RTP/SAVP"];

impl SessionDescription {
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

#[cfg(test)]
mod tests {
    use crate::sdp::fixtures::*;
    use crate::sdp::{SdpError, parse};

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
}
