//! Ingress: a datagram from a peer. It is classified (STUN and DTLS go up to control,
//! charged to the upcall budget unless their source is validated), unprotected in
//! place and, once it authenticated, copied as it arrived to the session's cascade
//! peers. RTP
//! from a publisher is recorded (transport-wide arrival, loss and jitter, rate, audio
//! level, rtp-stream-id), unwrapped when it is a retransmission, cached for NACKs and
//! forwarded along the stream's routes; RTCP goes to [`super::rtcp`].
//!
//! It owns what the table learns from a publisher's packet. It must not build what
//! goes out (egress does) or allocate once the stream is known.

use std::net::SocketAddr;
use std::time::Instant;

use super::session::{InboundStream, Slot};
use super::{Disposition, ForwardingTable, MAX_INBOUND_STREAMS, TransmitSink, push_event};
use crate::codec;
use crate::command::{MediaEvent, MediaKind, ShortId};
use crate::demux::{self, PacketClass};
use crate::ids::{Pt, SeqNo, Ssrc};
use crate::rewrite::LayerPacket;
use crate::rtp;
use crate::srtp::SrtpError;
use crate::stats::DropReason;

impl ForwardingTable {
    /// Handles one received datagram in place in `buf`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        out: &mut impl TransmitSink,
    ) -> Disposition {
        self.stats.packets_in += 1;
        self.stats.bytes_in += buf.len() as u64;
        let disposition = match demux::classify(buf) {
            PacketClass::Stun | PacketClass::Dtls => {
                if self.is_validated(&from) {
                    Disposition::ToControl
                } else {
                    let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
                    if self.budget.admit(from, now_ms) {
                        Disposition::ToControl
                    } else {
                        Disposition::Dropped(DropReason::UpcallBudget)
                    }
                }
            }
            PacketClass::Other => Disposition::Dropped(DropReason::Malformed),
            class @ (PacketClass::Rtp | PacketClass::Rtcp) => match self.by_addr.get(&from) {
                None => Disposition::Dropped(DropReason::UnknownSource),
                Some(&idx) => {
                    // Copied as it arrived, to go to the cascade peers once it
                    // authenticates (unprotecting works in place).
                    self.relay_stash_len = None;
                    if self.sessions[idx]
                        .as_ref()
                        .is_some_and(|s| !s.cascade.is_empty())
                    {
                        self.stash_for_relay(buf);
                    }
                    if class == PacketClass::Rtp {
                        self.handle_rtp(now, idx, buf, out)
                    } else {
                        self.handle_rtcp(now, idx, buf, out)
                    }
                }
            },
        };
        if let Disposition::Dropped(reason) = disposition {
            self.stats.drop(reason);
        }
        disposition
    }

    /// Handles an SRTP packet from the session at `idx`: unprotects it in place,
    /// records it and forwards it along its stream's routes.
    fn handle_rtp(
        &mut self,
        now: Instant,
        idx: Slot,
        buf: &mut [u8],
        out: &mut impl TransmitSink,
    ) -> Disposition {
        let Some(publisher) = self.sessions[idx].as_mut() else {
            return Disposition::Dropped(DropReason::UnknownSource);
        };
        // RTP's SSRC is in clear at bytes 8..12 (demux checked the length).
        let ssrc = Ssrc(
            buf.get(8..12)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        );
        let mut len = match publisher.rx_for(ssrc).unprotect_rtp(buf) {
            Ok(len) => len,
            Err(e) => return Disposition::Dropped(srtp_drop_reason(&e)),
        };
        self.relay_stashed(idx, out);
        let Some(publisher) = self.sessions[idx].as_mut() else {
            return Disposition::Dropped(DropReason::UnknownSource);
        };
        let Ok(mut header) = rtp::parse(&buf[..len]) else {
            return Disposition::Dropped(DropReason::Malformed);
        };
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let ext = publisher.ext;
        if let Some(rec) = publisher.twcc.as_mut()
            && let Some(tseq) = rtp::transport_seq(&buf[..len], &header, ext.transport_cc)
        {
            rec.record(tseq, now_us);
        }
        let ssrc = Ssrc(header.ssrc);
        let mut si = match publisher.inbound.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => i,
            None if publisher.inbound.len() < MAX_INBOUND_STREAMS => {
                publisher.inbound.push(InboundStream::new(ssrc));
                publisher.inbound.len() - 1
            }
            None => return Disposition::Dropped(DropReason::NoRoute),
        };
        let session_id = publisher.id;
        if let Some(homes) = &self.homes {
            homes.set(idx.0, session_id, self.worker_index);
        }
        let stream = &mut publisher.inbound[si];
        stream.last_packet = Some(now);
        stream.bytes += len as u64;
        if ext.rid != 0 && !stream.identified {
            let pkt = &buf[..len];
            let rid = rtp::extension_element(pkt, &header, ext.rid)
                .map(|r| (r, false))
                .or_else(|| {
                    (ext.repaired_rid != 0)
                        .then(|| rtp::extension_element(pkt, &header, ext.repaired_rid))
                        .flatten()
                        .map(|r| (r, true))
                });
            if let Some((rid, repaired)) = rid
                && let Some(rid) = ShortId::new(rid)
            {
                stream.identified = true;
                let mid = (ext.mid != 0)
                    .then(|| rtp::extension_element(pkt, &header, ext.mid))
                    .flatten()
                    .and_then(ShortId::new);
                push_event(
                    &mut self.events,
                    MediaEvent::StreamIdentified {
                        session: session_id,
                        ssrc,
                        mid,
                        rid,
                        repaired,
                    },
                );
            }
        }
        if ext.audio_level != 0
            && let Some(&b) = rtp::extension_element(&buf[..len], &header, ext.audio_level)
                .and_then(|e| e.first())
        {
            stream.level = stream.level.min(b & 0x7f);
        }
        if let Some((primary, primary_pt)) = publisher.inbound[si].rtx_of {
            // A retransmission (RFC 4588): restore the original packet in place and
            // treat it as one of the primary stream.
            let Some(n) = unwrap_rtx(&mut buf[..len], &header, primary, primary_pt) else {
                return Disposition::Dropped(DropReason::Malformed);
            };
            len = n;
            let Ok(h) = rtp::parse(&buf[..len]) else {
                return Disposition::Dropped(DropReason::Malformed);
            };
            header = h;
            match publisher.inbound.iter().position(|s| s.ssrc == primary) {
                Some(i) => si = i,
                None => return Disposition::Handled,
            }
        } else {
            let stream = &mut publisher.inbound[si];
            let clock = match stream.kind {
                Some(MediaKind::Audio) => 48_000,
                _ => 90_000,
            };
            let arrival =
                now.saturating_duration_since(self.epoch).as_micros() as u64 * clock / 1_000_000;
            stream
                .seq
                .record(header.sequence, header.timestamp, arrival as u32);
        }
        if let Some(cache) = publisher.inbound[si].cache.as_mut() {
            cache.insert(SeqNo(header.sequence), &buf[..len]);
        }
        let n_routes = publisher.inbound[si].routes.len();
        // Whether the packet starts a keyframe, for layered routes (all of one stream
        // share a codec).
        let payload = header.payload_range(len);
        let keyframe_start = match publisher.inbound[si].routes.iter().find_map(|r| r.layered) {
            None => true,
            Some(format) => match codec::keyframe_start(format, &buf[payload]) {
                Some(start) => {
                    if let Some((w, h)) = start.size {
                        let stream = &mut publisher.inbound[si];
                        (stream.width, stream.height) = (w, h);
                    }
                    true
                }
                None => false,
            },
        };
        for r in 0..n_routes {
            // Routes are plain data: copy one out so the subscriber can be borrowed.
            let Some(route) = self.sessions[idx]
                .as_ref()
                .and_then(|p| p.inbound.get(si))
                .and_then(|s| s.routes.get(r).copied())
            else {
                break;
            };
            let Some(pt) = route.map_pt(Pt(header.payload_type)) else {
                self.stats.drop(DropReason::NoRoute);
                continue;
            };
            if route.layered.is_some() {
                let pkt = LayerPacket {
                    ssrc: Ssrc(header.ssrc),
                    seq: SeqNo(header.sequence),
                    timestamp: header.timestamp,
                    keyframe_start,
                };
                if self.send_layered(now_us, &route, &buf[..len], &pkt, pt, out) {
                    self.send_pli(now, idx, Ssrc(header.ssrc), out);
                }
                continue;
            }
            self.send_rewritten(
                now_us,
                route.subscriber,
                &buf[..len],
                route.subscriber_ssrc,
                pt,
                out,
            );
        }
        Disposition::Handled
    }
}

/// The drop counter a failed unprotect goes to.
pub(super) fn srtp_drop_reason(e: &SrtpError) -> DropReason {
    match e {
        SrtpError::Replayed => DropReason::Replayed,
        SrtpError::AuthenticationFailed => DropReason::AuthFailed,
        _ => DropReason::Malformed,
    }
}

/// Turns an RTX packet (RFC 4588: original sequence number, then the original
/// payload) back into the original packet, in place; returns its length.
fn unwrap_rtx(pkt: &mut [u8], header: &rtp::RtpHeader, ssrc: Ssrc, pt: Pt) -> Option<usize> {
    let payload = header.payload_range(pkt.len());
    if payload.len() < 2 {
        return None;
    }
    let hl = header.header_len;
    let osn = u16::from_be_bytes([pkt[payload.start], pkt[payload.start + 1]]);
    let body = payload.start + 2..payload.end;
    let len = hl + body.len();
    pkt.copy_within(body, hl);
    pkt[0] &= !0x20; // the original's padding is not carried over
    rtp::set_ssrc(&mut pkt[..len], ssrc.0).ok()?;
    rtp::set_payload_type(&mut pkt[..len], pt.0).ok()?;
    rtp::set_sequence(&mut pkt[..len], osn).ok()?;
    Some(len)
}
