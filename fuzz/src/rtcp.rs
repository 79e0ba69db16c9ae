//! RTCP: a compound packet walked packet by packet, each interpreted (reports, SDES,
//! BYE, NACK, transport-cc, PLI, FIR, REMB) and its contents iterated to the end, and
//! the SSRC rewrites the forwarder applies to a copy.

use cascade_dataplane::rtcp::{self, RtcpKind};
use cascade_dataplane::twcc::TwccFeedback;

/// Walks `data` as a compound RTCP packet.
pub fn run(data: &[u8]) {
    let mut copy = data.to_vec();
    for packet in rtcp::packets(data) {
        let Ok(packet) = packet else {
            break;
        };
        assert!(packet.offset + packet.raw.len() <= data.len());
        let _ = packet.sender_ssrc();
        match packet.kind() {
            Ok(RtcpKind::SenderReport(sr)) => {
                let _ = sr.reports.count();
            }
            Ok(RtcpKind::ReceiverReport(rr)) => {
                let _ = rr.reports.count();
            }
            Ok(RtcpKind::Bye(bye)) => {
                let _ = bye.ssrcs.count();
                let _ = bye.reason;
            }
            Ok(RtcpKind::Nack(nack)) => {
                // At most 17 sequence numbers per 4-byte item.
                let lost = nack.lost_sequences().count();
                assert!(lost <= packet.body.len() / 4 * 17, "{lost}");
            }
            Ok(RtcpKind::TransportCc(tcc)) => {
                if let Ok(fb) = TwccFeedback::parse_fci(tcc.sender_ssrc, tcc.media_ssrc, tcc.body) {
                    let _ = fb.reference_us();
                    let _ = fb.packets().count();
                }
            }
            Ok(RtcpKind::Fir(fir)) => {
                let _ = fir.entries.count();
            }
            Ok(RtcpKind::Remb(remb)) => {
                let _ = remb.bitrate_bps;
                let _ = remb.ssrcs.count();
            }
            Ok(RtcpKind::Sdes(_) | RtcpKind::Pli(_) | RtcpKind::Other) | Err(_) => {}
        }
        let range = packet.offset..packet.offset + packet.raw.len();
        if let Some(raw) = copy.get_mut(range) {
            let _ = rtcp::rewrite_media_ssrc(raw, 0x0102_0304);
            let _ = rtcp::rewrite_sender_ssrc(raw, 0x0506_0708);
        }
    }
    let _ = TwccFeedback::parse(data).map(|fb| fb.packets().count());
}
