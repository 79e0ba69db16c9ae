//! Who copies each publisher's packets to its cascade peers, and what the kernel
//! guard lets through. The data-plane workers copy on [`Command::CascadeOut`]; with a
//! kernel fast path the kernel clones instead ([`Command::KernelFanout`]), and the
//! workers stop copying once the eBPF shell reports that the kernel took the request.
//! A refused request leaves the copying to the workers, and one the kernel could not
//! take yet (a peer's link-layer address still unresolved) is asked again a second
//! later.
//!
//! The SFU tells it each publication's cascade peers ([`CascadeFanout::set_peers`]);
//! it learns the rest from the commands the SFU emits ([`CascadeFanout::observe`]): a
//! session's address and extensions, its local routes, the addresses ICE validated
//! and its removal, after which it revokes those addresses. So every kernel decision
//! is stated in a command, and the shell that writes the eBPF maps keeps no state.
//! It does no I/O and reads no clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_command::command::{Command, SessionId};
use cascade_command::ids::Ssrc;

/// How long a kernel request refused for an unresolved neighbour waits before it is
/// made again (the workers' copies make the kernel resolve it meanwhile).
pub const KERNEL_RETRY: Duration = Duration::from_secs(1);

/// What the eBPF shell reports for a [`Command::KernelFanout`] with peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelOutcome {
    /// The kernel clones the packets to every peer.
    Taken,
    /// The kernel did not take it; `retry`: it may once a peer's neighbour entry is
    /// resolved, so ask again later.
    Refused { retry: bool },
}

/// What the kernel is asked to do for one publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KernelPlan {
    source: SocketAddr,
    peers: Vec<SocketAddr>,
    originals_up: bool,
}

/// What is known of one session from the commands emitted for it.
#[derive(Debug, Default)]
struct SessionFacts {
    /// Where its media comes from, once installed.
    source: Option<SocketAddr>,
    /// It negotiated transport-wide feedback or audio levels: userspace must see
    /// every packet it sends.
    every_packet: bool,
    /// Addresses ICE validated for it (to revoke when it goes).
    validated: Vec<SocketAddr>,
    /// As a publisher: its local routes (subscriber, publisher SSRC).
    routes: HashSet<(SessionId, Ssrc)>,
}

/// The cascade copying of one publisher.
#[derive(Debug, Default)]
struct PublisherFanout {
    /// Its cascade peers.
    peers: Vec<SocketAddr>,
    /// What the workers were last told to copy to.
    workers: Vec<SocketAddr>,
    /// What the kernel was last asked to carry, and whether the shell confirmed it.
    asked: Option<(KernelPlan, bool)>,
    /// The source whose packets the kernel was last confirmed to clone.
    carrying: Option<SocketAddr>,
    /// A plan the kernel refused: not asked again until `retry_at`, or until the
    /// plan changes.
    refused: Option<KernelPlan>,
    retry_at: Option<Instant>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct CascadeFanout {
    /// A kernel fast path is attached.
    kernel: bool,
    sessions: HashMap<SessionId, SessionFacts>,
    publishers: HashMap<SessionId, PublisherFanout>,
    /// Peers on this host (an MCU's inputs): copies to them are the workers'.
    local_peers: HashSet<SocketAddr>,
}

impl CascadeFanout {
    /// `kernel`: whether an eBPF fast path can clone packets.
    pub(super) fn new(kernel: bool) -> Self {
        Self {
            kernel,
            ..Self::default()
        }
    }

    /// `peer` is a socket of this host: the kernel never carries copies to it (they
    /// would leave by the interface), the workers do.
    pub(super) fn add_local_peer(&mut self, peer: SocketAddr) {
        self.local_peers.insert(peer);
    }

    /// The cascade peers of `publisher` are now `peers` (empty: none).
    pub(super) fn set_peers(
        &mut self,
        publisher: SessionId,
        peers: Vec<SocketAddr>,
        out: &mut VecDeque<Command>,
    ) {
        let f = self.publishers.entry(publisher).or_default();
        if f.peers != peers {
            f.refused = None;
            f.retry_at = None;
        }
        f.peers = peers;
        self.reconcile(publisher, out);
    }

    /// Learns from a command the SFU emits; what follows from it goes to `out`.
    pub(super) fn observe(&mut self, cmd: &Command, out: &mut VecDeque<Command>) {
        match cmd {
            Command::InstallSession {
                id,
                peer,
                extensions,
                ..
            } => {
                let s = self.sessions.entry(*id).or_default();
                s.source = Some(*peer);
                s.every_packet = extensions.transport_cc != 0 || extensions.audio_level != 0;
                self.reconcile(*id, out);
            }
            Command::UpdatePeer { id, peer } => {
                self.sessions.entry(*id).or_default().source = Some(*peer);
                self.reconcile(*id, out);
            }
            Command::PeerValidated { id, peer } => {
                let s = self.sessions.entry(*id).or_default();
                if !s.validated.contains(peer) {
                    s.validated.push(*peer);
                }
            }
            Command::Route(r) => {
                let s = self.sessions.entry(r.publisher).or_default();
                let first = s.routes.is_empty();
                s.routes.insert((r.subscriber, r.publisher_ssrc));
                if first {
                    self.reconcile(r.publisher, out);
                }
            }
            Command::Unroute {
                publisher,
                publisher_ssrc,
                subscriber,
            } => {
                let emptied = self.sessions.get_mut(publisher).is_some_and(|s| {
                    s.routes.remove(&(*subscriber, *publisher_ssrc)) && s.routes.is_empty()
                });
                if emptied {
                    self.reconcile(*publisher, out);
                }
            }
            Command::RemoveSession { id } => self.remove(*id, out),
            _ => {}
        }
    }

    /// The eBPF shell's report on `request`, a [`Command::KernelFanout`] with peers.
    /// A report on a request that a later one replaced changes nothing: the later
    /// one is carried out after it, and reported too.
    pub(super) fn handle_kernel_outcome(
        &mut self,
        now: Instant,
        request: &Command,
        outcome: KernelOutcome,
        out: &mut VecDeque<Command>,
    ) {
        let Command::KernelFanout {
            publisher,
            source,
            peers,
            originals_up,
        } = request
        else {
            return;
        };
        let Some(f) = self.publishers.get_mut(publisher) else {
            return;
        };
        let Some((plan, taken)) = f.asked.as_mut() else {
            return;
        };
        if plan.source != *source || plan.peers != *peers || plan.originals_up != *originals_up {
            return;
        }
        match outcome {
            KernelOutcome::Taken => {
                *taken = true;
                f.carrying = Some(*source);
                f.refused = None;
                f.retry_at = None;
                set_workers(*publisher, f, Vec::new(), out);
            }
            KernelOutcome::Refused { retry } => {
                if let Some(old) = f.carrying.take() {
                    // The workers now carry every peer: the kernel must not keep
                    // cloning to the peers of an earlier set, or they get doubles.
                    out.push_back(clear(*publisher, old));
                }
                f.refused = f.asked.take().map(|(plan, _)| plan);
                f.retry_at = retry.then(|| now + KERNEL_RETRY);
                let peers = f.peers.clone();
                set_workers(*publisher, f, peers, out);
            }
        }
    }

    /// Asks the kernel again for the plans whose retry time has come.
    pub(super) fn handle_timeout(&mut self, now: Instant, out: &mut VecDeque<Command>) {
        let due: Vec<SessionId> = self
            .publishers
            .iter()
            .filter(|(_, f)| f.retry_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(f) = self.publishers.get_mut(&id) {
                f.retry_at = None;
                f.refused = None;
            }
            self.reconcile(id, out);
        }
    }

    /// When [`CascadeFanout::handle_timeout`] should run next.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.publishers.values().filter_map(|f| f.retry_at).min()
    }

    /// Brings the workers' and the kernel's copying of `publisher` in line with
    /// what is known of it.
    fn reconcile(&mut self, publisher: SessionId, out: &mut VecDeque<Command>) {
        let Some(f) = self.publishers.get_mut(&publisher) else {
            return;
        };
        let facts = self.sessions.get(&publisher);
        let wanted = match facts.and_then(|s| s.source) {
            Some(source)
                if self.kernel
                    && !f.peers.is_empty()
                    && !f.peers.iter().any(|p| self.local_peers.contains(p)) =>
            {
                Some(KernelPlan {
                    source,
                    peers: f.peers.clone(),
                    originals_up: facts.is_some_and(|s| s.every_packet || !s.routes.is_empty()),
                })
            }
            _ => None,
        };
        let Some(plan) = wanted else {
            let asked = f.asked.take().map(|(plan, _)| plan.source);
            let carried = f.carrying.take();
            for source in asked.into_iter().chain(carried) {
                if !out.contains(&clear(publisher, source)) {
                    out.push_back(clear(publisher, source));
                }
            }
            f.refused = None;
            f.retry_at = None;
            let peers = f.peers.clone();
            set_workers(publisher, f, peers, out);
            return;
        };
        if f.refused.as_ref() == Some(&plan) {
            // Refused as it stands: the workers copy until it may be asked again.
            let peers = f.peers.clone();
            set_workers(publisher, f, peers, out);
            return;
        }
        f.refused = None;
        f.retry_at = None;
        if f.asked.as_ref().is_some_and(|(asked, _)| *asked == plan) {
            return;
        }
        if let Some(old) = f.carrying
            && old != plan.source
        {
            out.push_back(clear(publisher, old));
            f.carrying = None;
        }
        out.push_back(Command::KernelFanout {
            publisher,
            source: plan.source,
            peers: plan.peers.clone(),
            originals_up: plan.originals_up,
        });
        f.asked = Some((plan, false));
        if f.carrying.is_none() {
            // Until the kernel says it took it, the workers copy.
            let peers = f.peers.clone();
            set_workers(publisher, f, peers, out);
        }
    }

    /// Forgets session `id`: revokes what ICE validated for it, stops the kernel
    /// cloning its packets, and lets its publishers' originals stay in the kernel
    /// when it was their last local subscriber.
    fn remove(&mut self, id: SessionId, out: &mut VecDeque<Command>) {
        if let Some(s) = self.sessions.remove(&id) {
            for peer in s.validated {
                out.push_back(Command::PeerRevoked { id, peer });
            }
        }
        if let Some(f) = self.publishers.remove(&id) {
            let asked = f.asked.map(|(plan, _)| plan.source);
            for source in asked.into_iter().chain(f.carrying) {
                if !out.contains(&clear(id, source)) {
                    out.push_back(clear(id, source));
                }
            }
        }
        let emptied: Vec<SessionId> = self
            .sessions
            .iter_mut()
            .filter_map(|(p, s)| {
                let before = s.routes.len();
                s.routes.retain(|(sub, _)| *sub != id);
                (before > 0 && s.routes.is_empty()).then_some(*p)
            })
            .collect();
        for p in emptied {
            self.reconcile(p, out);
        }
    }
}

/// Tells the workers to copy `publisher`'s packets to `peers`, when that changes
/// what they were told.
fn set_workers(
    publisher: SessionId,
    f: &mut PublisherFanout,
    peers: Vec<SocketAddr>,
    out: &mut VecDeque<Command>,
) {
    if f.workers != peers {
        f.workers = peers.clone();
        out.push_back(Command::CascadeOut { publisher, peers });
    }
}

/// Stops the kernel cloning the packets from `source`.
fn clear(publisher: SessionId, source: SocketAddr) -> Command {
    Command::KernelFanout {
        publisher,
        source,
        peers: Vec::new(),
        originals_up: true,
    }
}

#[cfg(test)]
mod tests {
    use cascade_command::command::{ExtensionIds, MAX_PT_MAP, MediaKind, Route};
    use cascade_command::ids::Pt;
    use cascade_command::keys::{SrtpKeyingMaterial, SrtpProfile};

    use super::*;

    const PUB: SessionId = SessionId(1);
    const SUB: SessionId = SessionId(2);

    fn addr(last: u8) -> SocketAddr {
        ([10, 0, 0, last], 5000).into()
    }

    fn keys() -> SrtpKeyingMaterial {
        SrtpKeyingMaterial::new(SrtpProfile::AeadAes128Gcm, &[1; 16], &[2; 12]).unwrap()
    }

    fn install(id: SessionId, peer: SocketAddr, transport_cc: u8) -> Command {
        Command::InstallSession {
            id,
            peer,
            rx: keys(),
            tx: keys(),
            rtcp_ssrc: Ssrc(0x100),
            extensions: ExtensionIds {
                transport_cc,
                ..Default::default()
            },
        }
    }

    fn route(publisher: SessionId, subscriber: SessionId) -> Command {
        Command::Route(Route {
            publisher,
            publisher_ssrc: Ssrc(0xAAAA),
            subscriber,
            subscriber_ssrc: Ssrc(0xBBBB),
            kind: MediaKind::Audio,
            pt_map: [(Pt(111), Pt(111)); MAX_PT_MAP],
            pt_map_len: 1,
            publisher_rtx: None,
            subscriber_rtx: None,
            layered: None,
        })
    }

    fn drain(out: &mut VecDeque<Command>) -> Vec<Command> {
        out.drain(..).collect()
    }

    fn kernel(peers: &[SocketAddr], originals_up: bool) -> Command {
        Command::KernelFanout {
            publisher: PUB,
            source: addr(1),
            peers: peers.to_vec(),
            originals_up,
        }
    }

    fn workers(peers: &[SocketAddr]) -> Command {
        Command::CascadeOut {
            publisher: PUB,
            peers: peers.to_vec(),
        }
    }

    /// Reports `outcome` for the last kernel request with peers among `sent`.
    fn answer(
        f: &mut CascadeFanout,
        now: Instant,
        sent: &[Command],
        outcome: KernelOutcome,
        out: &mut VecDeque<Command>,
    ) {
        let request = sent
            .iter()
            .rev()
            .find(|c| matches!(c, Command::KernelFanout { peers, .. } if !peers.is_empty()))
            .expect("a kernel request was sent");
        f.handle_kernel_outcome(now, request, outcome, out);
    }

    /// A kernel-backed publisher at addr(1) whose packets the kernel clones to
    /// `peers`, confirmed, and what was sent on the way.
    fn carried(peers: &[SocketAddr]) -> (CascadeFanout, Instant, Vec<Command>) {
        let mut f = CascadeFanout::new(true);
        let mut out = VecDeque::new();
        let now = crate::testing::start();
        f.observe(&install(PUB, addr(1), 0), &mut out);
        f.set_peers(PUB, peers.to_vec(), &mut out);
        let sent = drain(&mut out);
        answer(&mut f, now, &sent, KernelOutcome::Taken, &mut out);
        assert_eq!(drain(&mut out), [workers(&[])]);
        (f, now, sent)
    }

    #[test]
    fn without_a_kernel_the_workers_copy() {
        let mut f = CascadeFanout::new(false);
        let mut out = VecDeque::new();
        f.observe(&install(PUB, addr(1), 0), &mut out);
        f.set_peers(PUB, vec![addr(9)], &mut out);
        assert_eq!(drain(&mut out), [workers(&[addr(9)])]);
        f.set_peers(PUB, vec![], &mut out);
        assert_eq!(drain(&mut out), [workers(&[])]);
    }

    #[test]
    fn the_workers_copy_until_the_kernel_takes_it() {
        let mut f = CascadeFanout::new(true);
        let mut out = VecDeque::new();
        let now = crate::testing::start();
        f.observe(&install(PUB, addr(1), 0), &mut out);
        assert!(drain(&mut out).is_empty());
        f.set_peers(PUB, vec![addr(9)], &mut out);
        let sent = drain(&mut out);
        assert_eq!(sent, [kernel(&[addr(9)], false), workers(&[addr(9)])]);
        answer(&mut f, now, &sent, KernelOutcome::Taken, &mut out);
        assert_eq!(drain(&mut out), [workers(&[])]);
        // Nothing changed: nothing to say.
        f.set_peers(PUB, vec![addr(9)], &mut out);
        assert!(drain(&mut out).is_empty());
    }

    #[test]
    fn copies_to_a_local_peer_stay_with_the_workers() {
        let (mut f, _, sent) = carried(&[addr(9)]);
        let mut out = VecDeque::new();
        f.add_local_peer(addr(7));
        f.set_peers(PUB, vec![addr(7), addr(9)], &mut out);
        // The kernel stops cloning; the workers copy to both.
        assert_eq!(
            drain(&mut out),
            [clear(PUB, addr(1)), workers(&[addr(7), addr(9)])]
        );
        assert!(sent.contains(&kernel(&[addr(9)], false)));
        // Without the local peer the kernel is asked again.
        f.set_peers(PUB, vec![addr(9)], &mut out);
        assert_eq!(drain(&mut out)[0], kernel(&[addr(9)], false));
    }

    #[test]
    fn a_publisher_not_yet_installed_waits_for_its_address() {
        let mut f = CascadeFanout::new(true);
        let mut out = VecDeque::new();
        f.set_peers(PUB, vec![addr(9)], &mut out);
        assert_eq!(drain(&mut out), [workers(&[addr(9)])]);
        f.observe(&install(PUB, addr(1), 0), &mut out);
        assert_eq!(drain(&mut out), [kernel(&[addr(9)], false)]);
    }

    #[test]
    fn originals_go_up_while_there_are_local_subscribers_or_feedback() {
        let (mut f, now, _) = carried(&[addr(9)]);
        let mut out = VecDeque::new();
        f.observe(&route(PUB, SUB), &mut out);
        let sent = drain(&mut out);
        assert_eq!(sent, [kernel(&[addr(9)], true)]);
        answer(&mut f, now, &sent, KernelOutcome::Taken, &mut out);
        // The workers were not copying and still are not.
        assert!(drain(&mut out).is_empty());
        // The last local subscriber goes: originals stay in the kernel again.
        f.observe(&Command::RemoveSession { id: SUB }, &mut out);
        assert_eq!(drain(&mut out), [kernel(&[addr(9)], false)]);
        // Transport-wide feedback needs every packet.
        let mut f = CascadeFanout::new(true);
        f.observe(&install(PUB, addr(1), 3), &mut out);
        f.set_peers(PUB, vec![addr(9)], &mut out);
        assert_eq!(
            drain(&mut out),
            [kernel(&[addr(9)], true), workers(&[addr(9)])]
        );
    }

    #[test]
    fn an_unresolved_neighbour_is_asked_again_and_the_workers_copy_meanwhile() {
        let mut f = CascadeFanout::new(true);
        let mut out = VecDeque::new();
        let now = crate::testing::start();
        f.observe(&install(PUB, addr(1), 0), &mut out);
        f.set_peers(PUB, vec![addr(9)], &mut out);
        let sent = drain(&mut out);
        answer(
            &mut f,
            now,
            &sent,
            KernelOutcome::Refused { retry: true },
            &mut out,
        );
        // The workers were already copying; the kernel had nothing to clear.
        assert!(drain(&mut out).is_empty());
        assert_eq!(f.poll_timeout(), Some(now + KERNEL_RETRY));
        f.handle_timeout(now + KERNEL_RETRY / 2, &mut out);
        assert!(drain(&mut out).is_empty());
        f.handle_timeout(now + KERNEL_RETRY, &mut out);
        let sent = drain(&mut out);
        assert_eq!(sent, [kernel(&[addr(9)], false)]);
        assert_eq!(f.poll_timeout(), None);
        answer(&mut f, now, &sent, KernelOutcome::Taken, &mut out);
        assert_eq!(drain(&mut out), [workers(&[])]);
    }

    #[test]
    fn a_refusal_for_good_waits_for_a_change_and_clears_what_the_kernel_had() {
        let (mut f, now, _) = carried(&[addr(9)]);
        let mut out = VecDeque::new();
        f.set_peers(PUB, vec![addr(9), addr(8)], &mut out);
        let sent = drain(&mut out);
        assert_eq!(sent, [kernel(&[addr(9), addr(8)], false)]);
        answer(
            &mut f,
            now,
            &sent,
            KernelOutcome::Refused { retry: false },
            &mut out,
        );
        assert_eq!(
            drain(&mut out),
            [kernel(&[], true), workers(&[addr(9), addr(8)])]
        );
        assert_eq!(f.poll_timeout(), None);
        // A local subscriber changes the plan: asked again.
        f.observe(&route(PUB, SUB), &mut out);
        assert_eq!(drain(&mut out), [kernel(&[addr(9), addr(8)], true)]);
    }

    #[test]
    fn a_report_on_a_replaced_request_changes_nothing() {
        let (mut f, now, first) = carried(&[addr(9)]);
        let mut out = VecDeque::new();
        f.set_peers(PUB, vec![addr(8)], &mut out);
        let second = drain(&mut out);
        assert_eq!(second, [kernel(&[addr(8)], false)]);
        // A late refusal of the first request: the second one stands.
        answer(
            &mut f,
            now,
            &first,
            KernelOutcome::Refused { retry: true },
            &mut out,
        );
        assert!(drain(&mut out).is_empty());
        assert_eq!(f.poll_timeout(), None);
        answer(&mut f, now, &second, KernelOutcome::Taken, &mut out);
        assert!(drain(&mut out).is_empty());
    }

    #[test]
    fn a_new_address_moves_the_kernel_fanout() {
        let (mut f, _, _) = carried(&[addr(9)]);
        let mut out = VecDeque::new();
        f.observe(
            &Command::UpdatePeer {
                id: PUB,
                peer: addr(2),
            },
            &mut out,
        );
        assert_eq!(
            drain(&mut out),
            [
                kernel(&[], true),
                Command::KernelFanout {
                    publisher: PUB,
                    source: addr(2),
                    peers: vec![addr(9)],
                    originals_up: false,
                },
                // The old fan-out is gone: the workers copy until the new one is in.
                workers(&[addr(9)]),
            ]
        );
    }

    #[test]
    fn a_removed_session_is_revoked_and_its_fanout_cleared() {
        let mut f = CascadeFanout::new(true);
        let mut out = VecDeque::new();
        let now = crate::testing::start();
        for peer in [addr(1), addr(3), addr(1)] {
            f.observe(&Command::PeerValidated { id: PUB, peer }, &mut out);
        }
        f.observe(&install(PUB, addr(1), 0), &mut out);
        f.set_peers(PUB, vec![addr(9)], &mut out);
        let sent = drain(&mut out);
        answer(&mut f, now, &sent, KernelOutcome::Taken, &mut out);
        drain(&mut out);
        f.observe(&Command::RemoveSession { id: PUB }, &mut out);
        assert_eq!(
            drain(&mut out),
            [
                Command::PeerRevoked {
                    id: PUB,
                    peer: addr(1)
                },
                Command::PeerRevoked {
                    id: PUB,
                    peer: addr(3)
                },
                kernel(&[], true),
            ]
        );
        // A late report for it changes nothing.
        answer(&mut f, now, &sent, KernelOutcome::Taken, &mut out);
        assert!(drain(&mut out).is_empty());
    }
}
