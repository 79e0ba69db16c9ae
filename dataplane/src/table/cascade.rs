//! Cascade edges: the server side of a link to another Cascade server. A publisher's
//! datagrams are copied, as they arrived, to the cascade peers control names
//! ([`Command::CascadeOut`](crate::command::Command::CascadeOut)); on the receiving edge, each relayed publisher is
//! unprotected with its own keys ([`Command::AddRelayedSource`](crate::command::Command::AddRelayedSource)); a relay's NACKs are
//! answered with the publisher's own packets, protected again exactly as the
//! publisher did ([`Command::RelayFeedback`](crate::command::Command::RelayFeedback)).
//!
//! It owns what the table does differently for a cascade peer. It must not rewrite a
//! relayed packet (the edge must read it like the original) or allocate per packet.

use std::net::SocketAddr;

use super::nack_cache::NackCache;
use super::session::{InboundStream, OutboundStream, Slot};
use super::{ForwardingTable, MAX_INBOUND_STREAMS, TransmitSink};
use crate::command::{MediaKind, SessionId};
use crate::ids::{SeqNo, Ssrc};
use crate::srtp::{SrtpContext, SrtpKeyingMaterial};

impl ForwardingTable {
    /// Applies [`Command::CascadeOut`](crate::command::Command::CascadeOut): the peers that get `publisher`'s datagrams as
    /// they arrived.
    pub(super) fn cascade_out(&mut self, publisher: SessionId, peers: Vec<SocketAddr>) {
        if let Some(&idx) = self.by_id.get(&publisher)
            && let Some(s) = self.sessions[idx].as_mut()
        {
            s.cascade = peers;
        }
    }

    /// Applies [`Command::AddRelayedSource`](crate::command::Command::AddRelayedSource): packets from `session` with a sender SSRC
    /// in `ssrcs` are unprotected with `rx`.
    pub(super) fn add_relayed_source(
        &mut self,
        session: SessionId,
        ssrcs: Vec<Ssrc>,
        rx: &SrtpKeyingMaterial,
    ) {
        if let Some(&idx) = self.by_id.get(&session)
            && let Some(s) = self.sessions[idx].as_mut()
        {
            match SrtpContext::new(rx) {
                Ok(ctx) => s.relayed.push((ssrcs, ctx)),
                Err(e) => tracing::error!(error = %e, "cannot key relayed source"),
            }
        }
    }

    /// Applies [`Command::RemoveRelayedSource`](crate::command::Command::RemoveRelayedSource).
    pub(super) fn remove_relayed_source(&mut self, session: SessionId, ssrcs: &[Ssrc]) {
        if let Some(&idx) = self.by_id.get(&session)
            && let Some(s) = self.sessions[idx].as_mut()
        {
            s.relayed
                .retain(|(x, _)| !x.iter().any(|v| ssrcs.contains(v)));
        }
    }

    /// Applies [`Command::RelayFeedback`](crate::command::Command::RelayFeedback): the relay's NACKs for `ssrcs` are answered
    /// from `publisher`'s caches of the streams in `cached`.
    pub(super) fn relay_feedback(
        &mut self,
        relay: SessionId,
        publisher: SessionId,
        ssrcs: Vec<Ssrc>,
        cached: Vec<Ssrc>,
    ) {
        let (Some(&r), Some(&p)) = (self.by_id.get(&relay), self.by_id.get(&publisher)) else {
            return;
        };
        if let Some(s) = self.sessions[r].as_mut() {
            for ssrc in ssrcs {
                if !s
                    .outbound
                    .iter()
                    .any(|o| o.subscriber_ssrc == ssrc && o.publisher == p)
                {
                    s.outbound.push(OutboundStream {
                        subscriber_ssrc: ssrc,
                        publisher: p,
                        publisher_ssrc: ssrc,
                        relay: true,
                    });
                }
            }
        }
        if let Some(publisher) = self.sessions[p].as_mut() {
            for ssrc in cached {
                if publisher.inbound_mut(ssrc).is_none()
                    && publisher.inbound.len() < MAX_INBOUND_STREAMS
                {
                    publisher.inbound.push(InboundStream::new(ssrc));
                }
                if let Some(stream) = publisher.inbound_mut(ssrc) {
                    stream.kind = Some(MediaKind::Video);
                    if stream.cache.is_none() {
                        stream.cache = Some(NackCache::new());
                    }
                }
            }
        }
    }

    /// Keeps a datagram, as it arrived, for [`Self::relay_stashed`] (before it is
    /// unprotected in place).
    pub(super) fn stash_for_relay(&mut self, buf: &[u8]) {
        let len = buf.len().min(self.relay_stash.len());
        self.relay_stash[..len].copy_from_slice(&buf[..len]);
        self.relay_stash_len = Some(len);
    }

    /// Copies the datagram [`Self::stash_for_relay`] kept to the cascade peers of the
    /// session at `idx`; called once it authenticated, so a forgery from the
    /// publisher's address is never multiplied by the number of peers.
    pub(super) fn relay_stashed(&mut self, idx: Slot, out: &mut impl TransmitSink) {
        let Some(len) = self.relay_stash_len.take() else {
            return;
        };
        let Some(s) = self.sessions[idx].as_ref() else {
            return;
        };
        let datagram = &self.relay_stash[..len];
        for &peer in &s.cascade {
            let slot = out.next_buffer();
            if slot.len() < len {
                continue;
            }
            slot[..len].copy_from_slice(datagram);
            out.commit(len, peer);
            self.stats.packets_out += 1;
            self.stats.bytes_out += len as u64;
            self.stats.relayed += 1;
        }
    }

    /// Resends the cached packet `seq` of publisher stream (`idx`, `ssrc`) to the
    /// cascade edge of session `edge` exactly as the publisher protected it (its keys,
    /// SSRC, sequence number and packet index), so the edge reads it like the original.
    /// False when the packet is not in the cache.
    pub(super) fn resend_to_relay(
        &mut self,
        idx: Slot,
        ssrc: Ssrc,
        edge: Slot,
        seq: SeqNo,
        out: &mut impl TransmitSink,
    ) -> bool {
        let Some(dest) = self.sessions[edge].as_ref().map(|s| s.peer) else {
            return false;
        };
        let Some(publisher) = self.sessions[idx].as_mut() else {
            return false;
        };
        let Some(plain) = publisher
            .inbound(ssrc)
            .and_then(|s| s.cache.as_ref())
            .and_then(|c| c.get(seq))
        else {
            return false;
        };
        let slot = out.next_buffer();
        let len = plain.len();
        if slot.len() < len + 16 {
            return true;
        }
        slot[..len].copy_from_slice(plain);
        let ctx = publisher.rx_for(ssrc);
        let Some(index) = ctx.received_index(ssrc.0, seq.0) else {
            return false;
        };
        if let Ok(n) = ctx.protect_rtp_at(slot, len, index) {
            out.commit(n, dest);
            self.stats.packets_out += 1;
            self.stats.bytes_out += n as u64;
            self.stats.retransmitted += 1;
            self.stats.relay_recovered += 1;
        }
        true
    }
}
