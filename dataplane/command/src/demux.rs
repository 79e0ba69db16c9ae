//! Classifies a datagram arriving on the shared media port by its first bytes (RFC 7983
//! §7, RFC 5761 §4), so the caller can hand it to ICE, DTLS, SRTP or SRTCP. It only
//! looks at the first two bytes and the length; it does not validate the packet, which
//! the handler for its class must still do.

/// What kind of packet a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketClass {
    /// STUN (ICE connectivity checks): first byte 0..=3, at least the 20-byte header.
    Stun,
    /// DTLS: first byte 20..=63.
    Dtls,
    /// (S)RTP: first byte 128..=191 and a second byte outside the RTCP range.
    Rtp,
    /// (S)RTCP: first byte 128..=191 and packet type 192..=223.
    Rtcp,
    /// Anything else (ZRTP, TURN channel data, garbage, too short).
    Other,
}

/// Length of a STUN message header.
const STUN_HEADER_LEN: usize = 20;
/// Length of the fixed RTP header.
const RTP_HEADER_LEN: usize = 12;
/// Length of the fixed RTCP header (including the sender SSRC).
const RTCP_HEADER_LEN: usize = 8;

/// Classifies `pkt` by RFC 7983's first-byte ranges; RTP and RTCP are told apart by the
/// second byte as RFC 5761 §4 describes (RTCP packet types 192..=223 sit where an RTP
/// marker bit plus payload types 64..=95 would, which RTP must not use when muxed).
pub fn classify(pkt: &[u8]) -> PacketClass {
    let Some(&first) = pkt.first() else {
        return PacketClass::Other;
    };
    match first {
        0..=3 if pkt.len() >= STUN_HEADER_LEN => PacketClass::Stun,
        20..=63 => PacketClass::Dtls,
        128..=191 => match pkt.get(1) {
            Some(192..=223) if pkt.len() >= RTCP_HEADER_LEN => PacketClass::Rtcp,
            Some(192..=223) => PacketClass::Other,
            Some(_) if pkt.len() >= RTP_HEADER_LEN => PacketClass::Rtp,
            _ => PacketClass::Other,
        },
        _ => PacketClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(first: u8, second: u8, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        if let Some(b) = p.get_mut(0) {
            *b = first;
        }
        if let Some(b) = p.get_mut(1) {
            *b = second;
        }
        p
    }

    #[test]
    fn stun() {
        assert_eq!(classify(&with(0, 1, 20)), PacketClass::Stun);
        assert_eq!(classify(&with(1, 1, 100)), PacketClass::Stun);
        assert_eq!(classify(&with(3, 0, 20)), PacketClass::Stun);
        assert_eq!(classify(&with(0, 1, 19)), PacketClass::Other, "short STUN");
        assert_eq!(classify(&with(4, 1, 20)), PacketClass::Other);
    }

    #[test]
    fn dtls() {
        for b in [20u8, 22, 23, 63] {
            assert_eq!(classify(&with(b, 0xfe, 13)), PacketClass::Dtls, "{b}");
        }
        assert_eq!(classify(&[22]), PacketClass::Dtls);
        assert_eq!(classify(&with(19, 0, 20)), PacketClass::Other);
        assert_eq!(classify(&with(64, 0, 20)), PacketClass::Other);
    }

    #[test]
    fn rtp_and_rtcp() {
        assert_eq!(classify(&with(0x80, 96, 12)), PacketClass::Rtp);
        assert_eq!(classify(&with(0x80, 0x80 | 111, 100)), PacketClass::Rtp);
        assert_eq!(classify(&with(0xbf, 191, 12)), PacketClass::Rtp);
        assert_eq!(classify(&with(0x80, 224, 12)), PacketClass::Rtp);
        assert_eq!(
            classify(&with(0x80, 96, 11)),
            PacketClass::Other,
            "short RTP"
        );
        for pt in [192u8, 200, 201, 205, 206, 223] {
            assert_eq!(classify(&with(0x81, pt, 8)), PacketClass::Rtcp, "{pt}");
        }
        assert_eq!(
            classify(&with(0x81, 200, 7)),
            PacketClass::Other,
            "short RTCP"
        );
        assert_eq!(classify(&with(127, 200, 28)), PacketClass::Other);
        assert_eq!(classify(&with(192, 200, 28)), PacketClass::Other);
    }

    #[test]
    fn edge_cases() {
        assert_eq!(classify(&[]), PacketClass::Other);
        assert_eq!(classify(&[0x80]), PacketClass::Other);
        assert_eq!(classify(&[0]), PacketClass::Other);
        assert_eq!(classify(&[255; 50]), PacketClass::Other);
        assert_eq!(classify(&[100; 50]), PacketClass::Other);
    }
}
