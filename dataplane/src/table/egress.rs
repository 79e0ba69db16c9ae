//! Egress: what leaves for a peer. RTP is copied into a send buffer, rewritten
//! (SSRC, payload type and, on layered routes, sequence number, timestamp and VP8
//! picture numbering), stamped with the transport-wide sequence number, protected and
//! queued; RTCP built in the scratch buffer is protected and queued the same way.
//!
//! It owns the last steps every outgoing packet takes. It must not decide what is
//! sent (ingress, retransmit, rtcp and timers do) or allocate.

use super::session::{RouteOut, Session, Slot};
use super::{ForwardingTable, TransmitSink};
use crate::ids::{Pt, Ssrc};
use crate::rewrite::{self, LayerPacket, Rewrite};
use crate::rtp;
use crate::stats::DropReason;

impl Session {
    /// Copies the plaintext `plain` into `slot` and returns its length there. When the
    /// peer negotiated transport sequence numbers (one-byte id) and the packet has no
    /// extension block, the copy gets one with the element in place, so that
    /// [`Self::finish_rtp`] overwrites it instead of moving the payload again.
    pub(super) fn copy_rtp(&self, slot: &mut [u8], plain: &[u8]) -> usize {
        let id = self.ext.transport_cc;
        let hl = rtp::FIXED_HEADER_LEN + 4 * usize::from(plain[0] & 0x0f);
        if id == 0 || id > 14 || plain[0] & 0x10 != 0 || plain.len() < hl {
            slot[..plain.len()].copy_from_slice(plain);
            return plain.len();
        }
        slot[..hl].copy_from_slice(&plain[..hl]);
        slot[hl..hl + 8].copy_from_slice(&[0xbe, 0xde, 0, 1, (id << 4) | 1, 0, 0, 0]);
        slot[hl + 8..plain.len() + 8].copy_from_slice(&plain[hl..]);
        slot[0] |= 0x10;
        plain.len() + 8
    }

    /// Stamps the next transport-wide sequence number into the plaintext packet
    /// `slot[..len]` (when negotiated), protects it and returns the datagram length
    /// (`None` when it cannot be protected).
    pub(super) fn finish_rtp(&mut self, slot: &mut [u8], len: usize, now_us: u64) -> Option<usize> {
        let mut len = len;
        let mut tseq = None;
        if self.ext.transport_cc != 0
            && let Some(log) = self.send_log.as_ref()
        {
            let seq = log.next_seq();
            if let Ok(n) = rtp::set_transport_seq(slot, len, self.ext.transport_cc, seq) {
                len = n;
                tseq = Some((seq, log));
            }
        }
        let n = self.tx.protect_rtp(slot, len).ok()?;
        if let Some((seq, log)) = tseq {
            log.record(seq, n, now_us);
        }
        self.tick_bytes += n as u64;
        Some(n)
    }
}

impl ForwardingTable {
    /// Sends a plaintext packet of a layered route through its subscriber stream's
    /// rewriter. True when the rewriter waits for a keyframe of the packet's layer.
    pub(super) fn send_layered(
        &mut self,
        now_us: u64,
        route: &RouteOut,
        plain: &[u8],
        pkt: &LayerPacket,
        pt: Pt,
        out: &mut impl TransmitSink,
    ) -> bool {
        let Some(sub) = self.sessions[route.subscriber].as_mut() else {
            return false;
        };
        let Some(l) = sub.layered_mut(route.subscriber_ssrc) else {
            return false;
        };
        let (seq, timestamp, switched) = match l.rewriter.rewrite(pkt, now_us) {
            Rewrite::Forward {
                seq,
                timestamp,
                switched,
            } => (seq, timestamp, switched),
            Rewrite::Drop(rewrite::DropCause::AwaitingKeyframe) => return true,
            Rewrite::Drop(_) => return false,
        };
        let len = plain.len();
        let slot = out.next_buffer();
        if slot.len() < len + 8 + sub.tx.profile().rtp_overhead() {
            return false;
        }
        let len = sub.copy_rtp(slot, plain);
        // The packet parsed before, so its fixed header is there to rewrite.
        let _ = rtp::set_ssrc(&mut slot[..len], route.subscriber_ssrc.0);
        let _ = rtp::set_payload_type(&mut slot[..len], pt.0);
        let _ = rtp::set_sequence(&mut slot[..len], seq.0);
        let _ = rtp::set_timestamp(&mut slot[..len], timestamp);
        if let Some(vp8) = sub
            .layered_mut(route.subscriber_ssrc)
            .and_then(|l| l.vp8.as_mut())
            && let Ok(h) = rtp::parse(&slot[..len])
        {
            vp8.forward(&mut slot[h.payload_range(len)], switched);
        }
        match sub.finish_rtp(slot, len, now_us) {
            Some(n) => {
                out.commit(n, sub.peer);
                self.stats.packets_out += 1;
                self.stats.bytes_out += n as u64;
            }
            None => self.stats.drop(DropReason::Malformed),
        }
        false
    }

    /// Copies a plaintext RTP packet into a send buffer, rewrites SSRC and payload
    /// type, protects it for subscriber `sub` and queues it.
    pub(super) fn send_rewritten(
        &mut self,
        now_us: u64,
        sub: Slot,
        plain: &[u8],
        ssrc: Ssrc,
        pt: Pt,
        out: &mut impl TransmitSink,
    ) {
        let Some(sub) = self.sessions[sub].as_mut() else {
            return;
        };
        let len = plain.len();
        let slot = out.next_buffer();
        if slot.len() < len + 8 + sub.tx.profile().rtp_overhead() {
            return;
        }
        let len = sub.copy_rtp(slot, plain);
        // The packet parsed before, so its fixed header is there to rewrite.
        let _ = rtp::set_ssrc(&mut slot[..len], ssrc.0);
        let _ = rtp::set_payload_type(&mut slot[..len], pt.0);
        match sub.finish_rtp(slot, len, now_us) {
            Some(n) => {
                out.commit(n, sub.peer);
                self.stats.packets_out += 1;
                self.stats.bytes_out += n as u64;
            }
            None => self.stats.drop(DropReason::Malformed),
        }
    }

    /// Protects `scratch[..len]` for session `idx` and queues it.
    pub(super) fn send_rtcp(&mut self, idx: Slot, len: usize, out: &mut impl TransmitSink) {
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        let slot = out.next_buffer();
        if slot.len() < len + s.tx.profile().rtcp_overhead() {
            return;
        }
        slot[..len].copy_from_slice(&self.scratch[..len]);
        match s.tx.protect_rtcp(slot, len) {
            Ok(n) => {
                out.commit(n, s.peer);
                self.stats.packets_out += 1;
                self.stats.bytes_out += n as u64;
            }
            Err(e) => tracing::debug!(error = %e, "SRTCP protect failed"),
        }
    }
}
