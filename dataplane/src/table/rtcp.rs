//! RTCP from peers and keyframe requests. From a subscriber: reports (round-trip
//! time for its estimator), PLI and FIR (turned into a rate-limited PLI to the
//! publisher of the layer it is forwarded), NACK (to [`super::retransmit`]), transport
//! feedback and REMB (its estimator). From a publisher: sender reports, forwarded to
//! each subscriber in its SSRC and timestamp space.
//!
//! It owns the translation of feedback between the two sides. It must not decide when
//! a subscriber needs a keyframe beyond what it asked for (control and layer switches
//! do), or allocate.

use std::time::Instant;

use super::ingress::srtp_drop_reason;
use super::session::{InboundStream, OutboundStream, Slot};
use super::{
    Disposition, ForwardingTable, MAX_INBOUND_STREAMS, MAX_NACK_SEQS, PLI_INTERVAL, TransmitSink,
    push_event,
};
use crate::bwe::HISTORY;
use crate::command::MediaEvent;
use crate::ids::Ssrc;
use crate::rtcp::{self, RtcpKind};
use crate::stats::DropReason;
use crate::twcc::TwccFeedback;

impl ForwardingTable {
    /// Handles an SRTCP packet from the session at `idx`: unprotects it in place and
    /// acts on each packet of the compound.
    pub(super) fn handle_rtcp(
        &mut self,
        now: Instant,
        idx: Slot,
        buf: &mut [u8],
        out: &mut impl TransmitSink,
    ) -> Disposition {
        let Some(session) = self.sessions[idx].as_mut() else {
            return Disposition::Dropped(DropReason::UnknownSource);
        };
        // The sender SSRC of SRTCP is in clear at bytes 4..8 (demux checked the length).
        let ssrc = Ssrc(
            buf.get(4..8)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        );
        let len = match session.rx_for(ssrc).unprotect_rtcp(buf) {
            Ok(len) => len,
            Err(e) => return Disposition::Dropped(srtp_drop_reason(&e)),
        };
        self.relay_stashed(idx, out);
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        // Counts in the packet drive loops (transport feedback statuses, NACK bitmaps,
        // several of them per compound): what one datagram may make the table walk is
        // bounded by what it holds, the send log's packets and a stream's NACK cache.
        let mut feedback_left = HISTORY;
        let mut nacks_left = MAX_NACK_SEQS;
        // The packet is copied to the scratch buffer only when something in it needs
        // an answer; iterate over the plaintext in `buf`.
        for pkt in rtcp::packets(&buf[..len]) {
            let Ok(pkt) = pkt else {
                return Disposition::Dropped(DropReason::Malformed);
            };
            let Ok(kind) = pkt.kind() else {
                continue;
            };
            match kind {
                RtcpKind::SenderReport(sr) => {
                    self.round_trip(idx, sr.reports.clone(), now_us);
                    self.forward_sender_report(now, idx, &sr, out);
                }
                RtcpKind::ReceiverReport(rr) => self.round_trip(idx, rr.reports, now_us),
                RtcpKind::Pli(pli) => {
                    self.keyframe_from_subscriber(now, idx, Ssrc(pli.media_ssrc), out)
                }
                RtcpKind::Fir(fir) => {
                    for (ssrc, _) in fir.entries.clone() {
                        self.keyframe_from_subscriber(now, idx, Ssrc(ssrc), out);
                    }
                }
                RtcpKind::Nack(nack) => {
                    self.collect_nack(&nack, nacks_left);
                    nacks_left -= self.nack_scratch.len();
                    if !self.nack_scratch.is_empty() {
                        self.nack_from_subscriber(now_us, idx, Ssrc(nack.media_ssrc), out);
                    }
                }
                RtcpKind::TransportCc(t) => {
                    if let Some(s) = self.sessions[idx].as_mut()
                        && let (Some(bwe), Some(log)) = (s.bwe.as_mut(), s.send_log.as_ref())
                        && feedback_left > 0
                        && let Ok(fb) = TwccFeedback::parse_fci(t.sender_ssrc, t.media_ssrc, t.body)
                    {
                        let work = log.apply_feedback(bwe, &fb, now_us, feedback_left);
                        feedback_left -= work.statuses.min(feedback_left);
                        if s.probe_bps > 0
                            && let Some(acked) = bwe.acked_bps()
                        {
                            bwe.on_probe_result(acked * 9 / 10);
                        }
                        self.check_estimate(idx);
                    }
                }
                RtcpKind::Remb(r) => {
                    if let Some(bwe) = self.sessions[idx].as_mut().and_then(|s| s.bwe.as_mut()) {
                        bwe.on_remb(r.bitrate_bps);
                        self.check_estimate(idx);
                    }
                }
                _ => {}
            }
        }
        Disposition::Handled
    }

    /// Puts the sequence numbers `nack` reports lost into `nack_scratch`, each once
    /// and at most `limit` of them.
    fn collect_nack(&mut self, nack: &rtcp::Nack<'_>, limit: usize) {
        self.nack_scratch.clear();
        for seq in nack.lost_sequences() {
            if self.nack_scratch.len() >= limit {
                break;
            }
            let (word, bit) = (usize::from(seq / 64), seq % 64);
            if self.nack_seen[word] & (1 << bit) != 0 {
                continue;
            }
            self.nack_seen[word] |= 1 << bit;
            self.nack_scratch.push(seq);
        }
        for &seq in &self.nack_scratch {
            self.nack_seen[usize::from(seq / 64)] &= !(1 << (seq % 64));
        }
    }

    /// Feeds session `idx`'s estimator the round-trip time its report blocks show
    /// about the sender reports the server sent it.
    fn round_trip(&mut self, idx: Slot, blocks: rtcp::ReportBlocks<'_>, now_us: u64) {
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        let (Some(bwe), Some(log)) = (s.bwe.as_mut(), s.send_log.as_ref()) else {
            return;
        };
        for b in blocks {
            if let Some(rtt) = log.rtt_us(b.last_sr, b.delay_since_last_sr, now_us) {
                bwe.set_rtt(rtt);
            }
        }
    }

    /// Reports session `idx`'s estimate to control when it moved by more than 10 %.
    fn check_estimate(&mut self, idx: Slot) {
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        let Some(bps) = s.bwe.as_ref().map(|b| b.estimate_bps()) else {
            return;
        };
        if s.reported_bps == 0 || bps.abs_diff(s.reported_bps) * 10 > s.reported_bps {
            s.reported_bps = bps;
            push_event(
                &mut self.events,
                MediaEvent::Estimate { session: s.id, bps },
            );
        }
    }

    /// Forwards a publisher's sender report to every subscriber of its stream, in the
    /// subscriber's SSRC (and, on layered routes, timestamp) space.
    fn forward_sender_report(
        &mut self,
        now: Instant,
        idx: Slot,
        sr: &rtcp::SenderReport<'_>,
        out: &mut impl TransmitSink,
    ) {
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let Some(publisher) = self.sessions[idx].as_mut() else {
            return;
        };
        let ssrc = Ssrc(sr.ssrc);
        let Some(stream) = publisher.inbound_mut(ssrc) else {
            return;
        };
        stream.last_sr = Some(((sr.ntp_time >> 16) as u32, now));
        for r in 0..stream.routes.len() {
            let Some(route) = self.sessions[idx]
                .as_ref()
                .and_then(|p| p.inbound(ssrc))
                .and_then(|s| s.routes.get(r).copied())
            else {
                break;
            };
            let rtp_time = if route.layered.is_some() {
                // Only the forwarded layer's reports, in the outbound timestamp space.
                let Some(t) = self
                    .layered(route.subscriber, route.subscriber_ssrc)
                    .and_then(|l| l.rewriter.outbound_timestamp(ssrc, sr.rtp_time))
                else {
                    continue;
                };
                t
            } else {
                sr.rtp_time
            };
            let Ok(n) = rtcp::write_sender_report(
                &mut self.scratch[..],
                route.subscriber_ssrc.0,
                sr.ntp_time,
                rtp_time,
                sr.packet_count,
                sr.octet_count,
                &[],
            ) else {
                continue;
            };
            if let Some(log) = self.sessions[route.subscriber]
                .as_ref()
                .and_then(|s| s.send_log.as_ref())
            {
                log.record_report((sr.ntp_time >> 16) as u32, now_us);
            }
            self.send_rtcp(route.subscriber, n, out);
        }
    }

    /// The publisher stream behind a subscriber's SSRC.
    pub(super) fn outbound(&self, sub_idx: Slot, subscriber_ssrc: Ssrc) -> Option<OutboundStream> {
        self.sessions[sub_idx]
            .as_ref()?
            .outbound
            .iter()
            .find(|o| o.subscriber_ssrc == subscriber_ssrc)
            .copied()
    }

    /// Turns a subscriber's keyframe request for `subscriber_ssrc` into a PLI for the
    /// publisher stream (the layer) it is forwarded from.
    fn keyframe_from_subscriber(
        &mut self,
        now: Instant,
        sub_idx: Slot,
        subscriber_ssrc: Ssrc,
        out: &mut impl TransmitSink,
    ) {
        let Some(o) = self.outbound(sub_idx, subscriber_ssrc) else {
            return;
        };
        let layer = self
            .layered(sub_idx, subscriber_ssrc)
            .and_then(|l| l.rewriter.current().or(l.rewriter.target()));
        self.send_pli(now, o.publisher, layer.unwrap_or(o.publisher_ssrc), out);
    }

    /// Sends a PLI for `media_ssrc` to the publisher at `idx`, at most once per
    /// [`PLI_INTERVAL`].
    pub(super) fn send_pli(
        &mut self,
        now: Instant,
        idx: Slot,
        media_ssrc: Ssrc,
        out: &mut impl TransmitSink,
    ) {
        let Some(publisher) = self.sessions[idx].as_mut() else {
            return;
        };
        let sender = publisher.rtcp_ssrc;
        // The publisher's packets may reach another worker than this request: the
        // stream's rate-limiting state is then created here.
        if publisher.inbound_mut(media_ssrc).is_none()
            && publisher.inbound.len() < MAX_INBOUND_STREAMS
        {
            publisher.inbound.push(InboundStream::new(media_ssrc));
        }
        let Some(stream) = publisher.inbound_mut(media_ssrc) else {
            return;
        };
        if stream
            .last_pli
            .is_some_and(|t| now.saturating_duration_since(t) < PLI_INTERVAL)
        {
            return;
        }
        stream.last_pli = Some(now);
        if let Ok(n) = rtcp::write_pli(&mut self.scratch[..], sender.0, media_ssrc.0) {
            self.send_rtcp(idx, n, out);
        }
    }
}
