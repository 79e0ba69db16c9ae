//! Answering NACKs. A subscriber's NACK is handed to the worker that receives the
//! publisher's media when that is another one ([`crate::handoff`]); otherwise it is
//! answered from the publisher stream's
//! [`NackCache`](super::nack_cache::NackCache) (as RTX when the subscriber
//! negotiated it, renumbered on layered streams), and what the cache does not hold is
//! asked of the publisher. Cascade edges get the publisher's own packets again
//! ([`super::cascade`]).
//!
//! It owns the one way a retransmission is built ([`write_retransmission`]). It must
//! not ask a publisher for what the cache holds, or allocate.

use std::net::SocketAddr;
use std::time::Instant;

use super::session::Slot;
use super::{ForwardingTable, TransmitSink};
use crate::handoff::NackHandoff;
use crate::ids::{Pt, SeqNo, Ssrc};
use crate::rewrite::Vp8Continuity;
use crate::rtcp;
use crate::rtp::{self, RtpHeader};
use crate::stats::DropReason;

impl ForwardingTable {
    /// Answers a NACK another worker handed here.
    pub fn handle_handoff(&mut self, now: Instant, h: &NackHandoff, out: &mut impl TransmitSink) {
        let Some(&idx) = self.by_id.get(&h.subscriber) else {
            return;
        };
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        self.nack_scratch.clear();
        self.nack_scratch.extend_from_slice(h.seqs());
        self.in_handoff = true;
        self.nack_from_subscriber(now_us, idx, h.subscriber_ssrc, out);
        self.in_handoff = false;
    }

    /// Hands the NACK in `nack_scratch` to the publisher's home worker when that is
    /// another worker; true when it did.
    fn hand_off_nack(&mut self, publisher: Slot, sub_idx: Slot, subscriber_ssrc: Ssrc) -> bool {
        if self.in_handoff {
            return false;
        }
        let (Some(homes), Some(p), Some(sub)) = (
            self.homes.as_ref(),
            self.sessions[publisher].as_ref(),
            self.sessions[sub_idx].as_ref(),
        ) else {
            return false;
        };
        let Some(home) = homes
            .get(publisher.0, p.id)
            .filter(|&w| w != self.worker_index)
        else {
            return false;
        };
        let mut rest = &self.nack_scratch[..];
        while !rest.is_empty() {
            let (h, n) = NackHandoff::new(sub.id, subscriber_ssrc, rest);
            if self.handoffs.len() < self.handoffs.capacity() {
                self.handoffs.push((home, h));
            } else {
                self.stats.drop(DropReason::WorkerBusy);
            }
            rest = &rest[n..];
        }
        true
    }

    /// Answers a subscriber's NACK from the publisher stream's cache; asks the
    /// publisher only for what the server itself does not have.
    pub(super) fn nack_from_subscriber(
        &mut self,
        now_us: u64,
        sub_idx: Slot,
        subscriber_ssrc: Ssrc,
        out: &mut impl TransmitSink,
    ) {
        let Some(o) = self.outbound(sub_idx, subscriber_ssrc) else {
            return;
        };
        // The cache and the rewriters of this stream are where its media arrives.
        if self.hand_off_nack(o.publisher, sub_idx, subscriber_ssrc) {
            return;
        }
        // Here the mapping is this worker's own: it forwards the stream, or no other
        // worker is known to.
        let layered = self
            .layered(sub_idx, subscriber_ssrc)
            .map(|l| l.rewriter.current());
        if let Some(current) = layered {
            // Sequence numbers of the rewritten stream: answer from the caches of the
            // layers they came from; ask the publisher for the forwarded layer's rest
            // (nothing when no layer is forwarded).
            let mut missing = 0;
            for i in 0..self.nack_scratch.len() {
                let seq = SeqNo(self.nack_scratch[i]);
                if self.retransmit_layered(now_us, sub_idx, subscriber_ssrc, seq, out) {
                    continue;
                }
                let source = self
                    .layered(sub_idx, subscriber_ssrc)
                    .and_then(|l| l.rewriter.source_of(seq));
                tracing::debug!(
                    seq = seq.0,
                    ?source,
                    ?current,
                    "layered NACK not answered from the cache"
                );
                if let (Some((layer, orig)), Some(current)) = (source, current)
                    && layer == current
                {
                    self.nack_scratch[missing] = orig.0;
                    missing += 1;
                }
            }
            self.nack_scratch.truncate(missing);
            if let Some(current) = current {
                self.nack_publisher(o.publisher, current, out);
            }
            return;
        }
        // A cascade edge has no route here (it gets the publisher's packets as they
        // arrived): its NACKs go to the publisher, whose retransmissions it gets too.
        let route = self.sessions[o.publisher]
            .as_ref()
            .and_then(|p| p.inbound(o.publisher_ssrc))
            .and_then(|s| s.routes.iter().position(|r| r.subscriber == sub_idx));
        if route.is_some() || o.relay {
            let mut missing = 0;
            for i in 0..self.nack_scratch.len() {
                let seq = SeqNo(self.nack_scratch[i]);
                let sent = match route {
                    Some(r) => self.retransmit(now_us, o.publisher, o.publisher_ssrc, r, seq, out),
                    None => self.resend_to_relay(o.publisher, o.publisher_ssrc, sub_idx, seq, out),
                };
                if !sent {
                    self.nack_scratch[missing] = seq.0;
                    missing += 1;
                }
            }
            self.nack_scratch.truncate(missing);
        }
        self.nack_publisher(o.publisher, o.publisher_ssrc, out);
    }

    /// Asks the publisher at `idx` for the sequence numbers left in `nack_scratch` of
    /// its stream `media_ssrc` (nothing when none is left).
    fn nack_publisher(&mut self, idx: Slot, media_ssrc: Ssrc, out: &mut impl TransmitSink) {
        if self.nack_scratch.is_empty() {
            return;
        }
        let Some(sender) = self.sessions[idx].as_ref().map(|p| p.rtcp_ssrc) else {
            return;
        };
        if let Ok(n) = rtcp::write_nack(
            &mut self.scratch[..],
            sender.0,
            media_ssrc.0,
            &self.nack_scratch,
        ) {
            self.send_rtcp(idx, n, out);
        }
    }

    /// Sends the cached packet `seq` of publisher stream (`idx`, `ssrc`) to the
    /// subscriber of route `r`: as RTX when the subscriber has it, else as the
    /// original. False when the packet is not in the cache.
    fn retransmit(
        &mut self,
        now_us: u64,
        idx: Slot,
        ssrc: Ssrc,
        r: usize,
        seq: SeqNo,
        out: &mut impl TransmitSink,
    ) -> bool {
        let slot = out.next_buffer();
        // Build the packet while the publisher's stream is borrowed...
        let (len, sub_idx) = {
            let Some(stream) = self.sessions[idx]
                .as_mut()
                .and_then(|p| p.inbound_mut(ssrc))
            else {
                return false;
            };
            let Some(route) = stream.routes.get_mut(r) else {
                return false;
            };
            let Some(plain) = stream.cache.as_ref().and_then(|c| c.get(seq)) else {
                return false;
            };
            let Ok(header) = rtp::parse(plain) else {
                return false;
            };
            let Some(pt) = route.map_pt(Pt(header.payload_type)) else {
                return false;
            };
            let resend = Retransmission {
                ssrc: route.subscriber_ssrc,
                pt,
                // A plain route keeps the publisher's numbering: the packet's own.
                seq,
                timestamp: None,
                rtx: route.rtx.map(|(ssrc, pt)| (ssrc, pt, route.rtx_seq)),
                vp8: None,
            };
            let Some(len) = write_retransmission(slot, plain, &header, &resend) else {
                return true;
            };
            if route.rtx.is_some() {
                route.rtx_seq = route.rtx_seq.wrapping_add(1);
            }
            (len, route.subscriber)
        };
        // ...then protect it for the subscriber.
        if let Some((n, peer)) = self.protect_retransmission(sub_idx, slot, len, now_us) {
            out.commit(n, peer);
        }
        true
    }

    /// Answers a NACK of outbound sequence number `out_seq` of the layered subscriber
    /// stream `subscriber_ssrc` from the cache of the layer it was sent from (as RTX
    /// when the subscriber has it). False when the packet is not there.
    fn retransmit_layered(
        &mut self,
        now_us: u64,
        sub_idx: Slot,
        subscriber_ssrc: Ssrc,
        out_seq: SeqNo,
        out: &mut impl TransmitSink,
    ) -> bool {
        let Some(l) = self.layered(sub_idx, subscriber_ssrc) else {
            return false;
        };
        let Some((layer, orig)) = l.rewriter.source_of(out_seq) else {
            return false;
        };
        let slot = out.next_buffer();
        let Some(stream) = self.sessions[l.publisher]
            .as_ref()
            .and_then(|p| p.inbound(layer))
        else {
            return false;
        };
        let Some(pt) = stream
            .routes
            .iter()
            .find(|r| r.subscriber == sub_idx)
            .and_then(|r| {
                let h = rtp::parse(stream.cache.as_ref()?.get(orig)?).ok()?;
                r.map_pt(Pt(h.payload_type))
            })
        else {
            return false;
        };
        let Some(plain) = stream.cache.as_ref().and_then(|c| c.get(orig)) else {
            return false;
        };
        let Ok(header) = rtp::parse(plain) else {
            return false;
        };
        // Only the forwarded layer's timestamps map; older layers' packets are lost.
        let Some(ts) = l.rewriter.outbound_timestamp(layer, header.timestamp) else {
            return false;
        };
        let resend = Retransmission {
            ssrc: subscriber_ssrc,
            pt,
            seq: out_seq,
            timestamp: Some(ts),
            rtx: l.rtx.map(|(ssrc, pt)| (ssrc, pt, l.rtx_seq)),
            vp8: l.vp8,
        };
        let Some(len) = write_retransmission(slot, plain, &header, &resend) else {
            return true;
        };
        if let Some(l) = self.sessions[sub_idx]
            .as_mut()
            .and_then(|s| s.layered_mut(subscriber_ssrc))
            && l.rtx.is_some()
        {
            l.rtx_seq = l.rtx_seq.wrapping_add(1);
        }
        if let Some((n, peer)) = self.protect_retransmission(sub_idx, slot, len, now_us) {
            out.commit(n, peer);
        }
        true
    }

    /// Protects the retransmission in `slot[..len]` for the subscriber at `sub_idx`
    /// and counts it; returns the datagram length and where it goes.
    fn protect_retransmission(
        &mut self,
        sub_idx: Slot,
        slot: &mut [u8],
        len: usize,
        now_us: u64,
    ) -> Option<(usize, SocketAddr)> {
        let sub = self.sessions[sub_idx].as_mut()?;
        let n = sub.finish_rtp(slot, len, now_us)?;
        self.stats.packets_out += 1;
        self.stats.bytes_out += n as u64;
        self.stats.retransmitted += 1;
        Some((n, sub.peer))
    }
}

/// How a cached packet reaches the subscriber that asked for it again.
struct Retransmission {
    /// The subscriber's SSRC and payload type of the original stream.
    ssrc: Ssrc,
    pt: Pt,
    /// The sequence number the subscriber knows the packet by (the OSN of an RTX
    /// packet).
    seq: SeqNo,
    /// The timestamp the subscriber knows it by, when it differs from the cached one.
    timestamp: Option<u32>,
    /// The subscriber's RTX SSRC, payload type and the RTX sequence number to use,
    /// when it negotiated RTX.
    rtx: Option<(Ssrc, Pt, SeqNo)>,
    /// The VP8 numbering shifts of a layered stream.
    vp8: Option<Vp8Continuity>,
}

/// Writes the retransmission of the cached plaintext packet `plain` (parsed as
/// `header`) into `slot`: an RTX packet (RFC 4588: original sequence number, then the
/// original payload, no padding) when `r` has RTX, else the original packet rewritten
/// for the subscriber. Returns its length; `None` when `slot` lacks room for the
/// packet, two bytes of OSN and the largest SRTP tag.
fn write_retransmission(
    slot: &mut [u8],
    plain: &[u8],
    header: &RtpHeader,
    r: &Retransmission,
) -> Option<usize> {
    if slot.len() < plain.len() + 2 + 8 + 16 {
        return None;
    }
    // The packet parsed before, so its fixed header is there to rewrite.
    let len = match r.rtx {
        Some((rtx_ssrc, rtx_pt, rtx_seq)) => {
            let payload = header.payload_range(plain.len());
            let hl = header.header_len;
            let len = hl + 2 + payload.len();
            slot[..hl].copy_from_slice(&plain[..hl]);
            slot[0] &= !0x20; // no padding in the RTX packet
            slot[hl..hl + 2].copy_from_slice(&r.seq.0.to_be_bytes());
            slot[hl + 2..len].copy_from_slice(&plain[payload]);
            let _ = rtp::set_ssrc(&mut slot[..len], rtx_ssrc.0);
            let _ = rtp::set_payload_type(&mut slot[..len], rtx_pt.0);
            let _ = rtp::set_sequence(&mut slot[..len], rtx_seq.0);
            if let Some(vp8) = r.vp8 {
                vp8.resend(&mut slot[hl + 2..len]);
            }
            len
        }
        None => {
            let len = plain.len();
            slot[..len].copy_from_slice(plain);
            let _ = rtp::set_ssrc(&mut slot[..len], r.ssrc.0);
            let _ = rtp::set_payload_type(&mut slot[..len], r.pt.0);
            let _ = rtp::set_sequence(&mut slot[..len], r.seq.0);
            if let Some(vp8) = r.vp8 {
                vp8.resend(&mut slot[header.payload_range(len)]);
            }
            len
        }
    };
    if let Some(ts) = r.timestamp {
        let _ = rtp::set_timestamp(&mut slot[..len], ts);
    }
    Some(len)
}
