//! Periodic work, driven by [`ForwardingTable::poll_timeout`] and
//! [`ForwardingTable::handle_timeout`]: every [`FAST_TICK`] audio levels go up to
//! control, transport feedback goes to publishers and padding probes go to
//! subscribers; every [`RR_INTERVAL`] stream rates go up to control and receiver
//! reports go to publishers.
//!
//! It owns the timers and what runs on them. It must not read the clock (time is
//! passed in) or allocate.

use std::time::Instant;

use super::session::Slot;
use super::{FAST_TICK, ForwardingTable, RR_INTERVAL, TransmitSink, push_event};
use crate::command::{MediaEvent, MediaKind};
use crate::rtcp::{self, ReportBlock};
use crate::rtp;

/// Bytes of padding in one probe packet.
const PROBE_PADDING: usize = 240;
/// Most probe packets per subscriber per tick.
const MAX_PROBES_PER_TICK: usize = 16;

impl ForwardingTable {
    /// When [`ForwardingTable::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_rr, self.next_fast) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs timers: transport feedback, audio levels and probes every [`FAST_TICK`],
    /// receiver reports to publishers and layer bit rates every [`RR_INTERVAL`].
    pub fn handle_timeout(&mut self, now: Instant, out: &mut impl TransmitSink) {
        if self.next_fast.is_some_and(|t| now >= t) {
            self.next_fast = if self.by_id.is_empty() {
                None
            } else {
                Some(now + FAST_TICK)
            };
            let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
            for idx in (0..self.sessions.len()).map(Slot) {
                self.fast_tick(idx, now_us, out);
            }
        }
        let Some(due) = self.next_rr else {
            return;
        };
        if now < due {
            return;
        }
        self.next_rr = if self.by_id.is_empty() {
            None
        } else {
            Some(now + RR_INTERVAL)
        };
        for idx in (0..self.sessions.len()).map(Slot) {
            let Some(s) = self.sessions[idx].as_mut() else {
                continue;
            };
            self.report_scratch.clear();
            let session = s.id;
            for stream in s.inbound.iter_mut().filter(|i| i.rtx_of.is_none()) {
                if stream.kind != Some(MediaKind::Audio) && stream.bytes > 0 {
                    let bps = stream.bytes * 8 * 1000 / RR_INTERVAL.as_millis().max(1) as u64;
                    stream.bytes = 0;
                    push_event(
                        &mut self.events,
                        MediaEvent::StreamRate {
                            session,
                            ssrc: stream.ssrc,
                            bps,
                            width: stream.width,
                            height: stream.height,
                        },
                    );
                }
                // Report only streams this worker received recently.
                if stream
                    .last_packet
                    .is_none_or(|t| now.saturating_duration_since(t) > 5 * RR_INTERVAL)
                {
                    continue;
                }
                let (lsr, dlsr) = match stream.last_sr {
                    Some((lsr, at)) => {
                        let d = now.saturating_duration_since(at);
                        // DLSR is in units of 1/65536 s.
                        (lsr, (d.as_secs_f64() * 65536.0) as u32)
                    }
                    None => (0, 0),
                };
                let r = stream.seq.report();
                self.report_scratch.push(ReportBlock {
                    ssrc: stream.ssrc.0,
                    fraction_lost: r.fraction_lost,
                    cumulative_lost: r.cumulative_lost,
                    extended_highest_seq: r.extended_highest_seq,
                    jitter: r.jitter,
                    last_sr: lsr,
                    delay_since_last_sr: dlsr,
                });
            }
            if self.report_scratch.is_empty() {
                continue;
            }
            let sender = s.rtcp_ssrc;
            if let Ok(n) =
                rtcp::write_receiver_report(&mut self.scratch[..], sender.0, &self.report_scratch)
            {
                self.send_rtcp(idx, n, out);
            }
        }
    }

    /// One session's share of the fast timer: audio levels up to control, transport
    /// feedback to the peer, probe padding.
    fn fast_tick(&mut self, idx: Slot, now_us: u64, out: &mut impl TransmitSink) {
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        for stream in &mut s.inbound {
            if stream.level < 127 {
                push_event(
                    &mut self.events,
                    MediaEvent::AudioLevel {
                        session: s.id,
                        ssrc: stream.ssrc,
                        level: stream.level,
                        period_ms: FAST_TICK.as_millis() as u16,
                    },
                );
                stream.level = 127;
            }
        }
        if s.twcc.as_ref().is_some_and(|t| t.has_feedback()) {
            let media = s.inbound.first().map_or(0, |i| i.ssrc.0);
            let sender = s.rtcp_ssrc;
            for _ in 0..4 {
                let Some(rec) = self.sessions[idx].as_mut().and_then(|s| s.twcc.as_mut()) else {
                    break;
                };
                match rec.build_feedback(&mut self.scratch[..1200], sender.0, media) {
                    Ok(Some(n)) => {
                        let more = rec.has_feedback();
                        self.send_rtcp(idx, n, out);
                        if !more {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        }
        self.probe(idx, now_us, out);
    }

    /// Pads the path to session `idx` up to its probe rate for this tick, with
    /// padding-only packets on a video stream's RTX SSRC (receivers discard them; their
    /// transport feedback shows what the path carries).
    fn probe(&mut self, idx: Slot, now_us: u64, out: &mut impl TransmitSink) {
        let Some(s) = self.sessions[idx].as_ref() else {
            return;
        };
        if s.probe_bps == 0 || s.ext.transport_cc == 0 {
            if let Some(s) = self.sessions[idx].as_mut() {
                s.tick_bytes = 0;
            }
            return;
        }
        // The worker that forwards a layer to the subscriber pads (one, as a rule).
        // With every layer paused none does: then the publisher's home worker (where
        // its layers arrive, and would be forwarded from) pads, so that a subscriber
        // whose path came back can be found to fit a layer again.
        let forwarding = s
            .layered
            .iter()
            .enumerate()
            .filter(|(_, l)| l.rewriter.current().is_some())
            .find_map(|(i, l)| Some((i, l.rtx?)));
        let chosen = forwarding.or_else(|| {
            s.layered
                .iter()
                .enumerate()
                .filter(|(_, l)| self.is_home_of(l.publisher))
                .find_map(|(i, l)| Some((i, l.rtx?)))
        });
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        let sent = std::mem::take(&mut s.tick_bytes);
        let Some((li, (rtx_ssrc, rtx_pt))) = chosen else {
            return;
        };
        let budget = s.probe_bps / 8 * FAST_TICK.as_millis() as u64 / 1000;
        let mut padding = budget.saturating_sub(sent);
        let mut n = 0;
        while padding > 0 && n < MAX_PROBES_PER_TICK {
            n += 1;
            let l = &mut s.layered[li];
            let seq = l.rtx_seq;
            l.rtx_seq = seq.wrapping_add(1);
            let slot = out.next_buffer();
            let len = rtp::FIXED_HEADER_LEN + PROBE_PADDING;
            if slot.len() < len + 8 + s.tx.profile().rtp_overhead() {
                return;
            }
            slot[..len].fill(0);
            slot[0] = 0xa0; // version 2, padding
            slot[1] = rtx_pt.0 & 0x7f;
            slot[2..4].copy_from_slice(&seq.0.to_be_bytes());
            slot[8..12].copy_from_slice(&rtx_ssrc.0.to_be_bytes());
            slot[len - 1] = PROBE_PADDING as u8;
            match s.finish_rtp(slot, len, now_us) {
                Some(n) => {
                    out.commit(n, s.peer);
                    padding = padding.saturating_sub(n as u64);
                    self.stats.packets_out += 1;
                    self.stats.bytes_out += n as u64;
                }
                None => return,
            }
        }
        s.tick_bytes = 0;
    }
}
