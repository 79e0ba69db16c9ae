//! Liveness of cascade relays without sockets: servers, client peers and the
//! HTTP calls between servers (relay re-opens and closes) run in one simulated
//! network, stepped 50 ms at a time, where a server can die (it stops running and
//! its datagrams are lost). Covered: an origin closes the relay of an edge that
//! stopped probing it, or never probed it; in a chain M1 → M2 → M3, M3 reports
//! `reconnecting` while M2 does, and ends when M2's copy ends (M2 gives up on a dead
//! M1, or M1 says the publication is gone), with M2's onward relay closed; the chain
//! is live again when M1 answers again.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_command::command::Command;
use cascade_core::error::ApiError;
use cascade_core::sfu::{
    RELAY_CONSENT_TIMEOUT, RELAY_EDGE_TIMEOUT, RELAY_GIVE_UP, ResourceEvent, ResourceState, Sfu,
    SfuOutput,
};
use cascade_peer::{ClientPeer, PeerRole};

use common::{server, start};

const STEP: Duration = Duration::from_millis(50);

/// One media server of the simulated network.
struct Node {
    sfu: Sfu,
    media: SocketAddr,
    url: String,
    up: bool,
    /// Resource events it reported, with the simulated time since the start.
    events: Vec<(Duration, ResourceEvent)>,
    /// Data-plane commands it emitted.
    commands: Vec<Command>,
}

/// A client peer connected to one node.
struct Client {
    peer: ClientPeer,
    addr: SocketAddr,
    node: usize,
}

struct Net {
    nodes: Vec<Node>,
    clients: Vec<Client>,
    start: Instant,
    now: Instant,
}

impl Net {
    /// `n` servers, `m<i+1>` at `10.0.0.<i+1>:8443`.
    fn new(n: usize) -> Self {
        let start = start();
        let nodes = (0..n)
            .map(|i| {
                let media: SocketAddr = format!("10.0.0.{}:8443", i + 1).parse().unwrap();
                let url = format!("http://m{}.test", i + 1);
                Node {
                    sfu: server(&media.to_string(), &url, start, 10 + i as u64),
                    media,
                    url,
                    up: true,
                    events: Vec::new(),
                    commands: Vec::new(),
                }
            })
            .collect();
        Net {
            nodes,
            clients: Vec::new(),
            start,
            now: start,
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn node_of_url(&self, url: &str) -> Option<usize> {
        self.nodes.iter().position(|n| url.starts_with(&n.url))
    }

    /// Publishes on node `at` from a new client peer and connects it.
    fn publish(&mut self, at: usize, room: &str) -> String {
        let mut peer = ClientPeer::new(
            PeerRole::Publisher {
                audio_ssrc: 1111,
                video_ssrc: 2222,
            },
            &[],
        )
        .unwrap();
        let created = self.nodes[at]
            .sfu
            .publish(self.now, room, "alice", &peer.offer())
            .unwrap();
        peer.accept_answer(&created.answer, self.now).unwrap();
        self.add_client(peer, at);
        created.resource
    }

    /// Subscribes on node `at` to `resources` from a new client peer and connects it.
    fn subscribe(&mut self, at: usize, room: &str, resources: &[String]) -> String {
        let mut peer = ClientPeer::new(PeerRole::Subscriber, &[]).unwrap();
        let created = self.nodes[at]
            .sfu
            .subscribe(self.now, room, resources, &peer.offer())
            .unwrap();
        peer.accept_answer(&created.answer, self.now).unwrap();
        self.add_client(peer, at);
        created.resource
    }

    fn add_client(&mut self, peer: ClientPeer, node: usize) {
        let addr: SocketAddr = format!("10.1.0.{}:5000", self.clients.len() + 1)
            .parse()
            .unwrap();
        self.clients.push(Client { peer, addr, node });
        let end = self.now + Duration::from_secs(5);
        while self.clients.last().and_then(|c| c.peer.keys()).is_none() {
            assert!(self.now < end, "{addr} did not connect");
            self.step();
        }
    }

    /// Relays publication `id` of node `from` to node `to` as an edge gets it: the
    /// origin's answer, made a remote publication on the edge; returns its local id.
    fn relay(&mut self, from: usize, id: &str, to: usize) -> String {
        let url = self.nodes[from].sfu.resource_url(id);
        let edge = self.nodes[to].media;
        let answer = self.nodes[from].sfu.open_relay(self.now, id, edge).unwrap();
        let (local, dup) = self.nodes[to]
            .sfu
            .add_remote_publication(self.now, &url, answer)
            .unwrap();
        assert!(dup.is_none());
        local
    }

    /// Advances the simulated time by one step: timers of every running server,
    /// then datagrams and server-to-server calls until nothing is left to deliver.
    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        for n in self.nodes.iter_mut().filter(|n| n.up) {
            n.sfu.handle_timeout(now);
        }
        for _ in 0..20 {
            let mut any = false;
            for c in &mut self.clients {
                while let Some((_, data)) = c.peer.poll_transmit(now) {
                    let n = &mut self.nodes[c.node];
                    if n.up {
                        n.sfu.handle_datagram(now, c.addr, &data);
                    }
                }
            }
            for i in 0..self.nodes.len() {
                if !self.nodes[i].up {
                    continue;
                }
                while let Some(o) = self.nodes[i].sfu.poll_output() {
                    any = true;
                    self.deliver(i, o);
                }
            }
            if !any {
                break;
            }
        }
    }

    fn deliver(&mut self, from: usize, o: SfuOutput) {
        let now = self.now;
        let elapsed = self.elapsed();
        match o {
            SfuOutput::Transmit { dest, data } => {
                let src = self.nodes[from].media;
                if let Some(to) = self.nodes.iter_mut().find(|n| n.media == dest) {
                    if to.up {
                        to.sfu.handle_datagram(now, src, &data);
                    }
                } else if let Some(c) = self.clients.iter_mut().find(|c| c.addr == dest) {
                    let _ = c.peer.handle_receive(now, &data);
                }
            }
            SfuOutput::Event(e) => self.nodes[from].events.push((elapsed, e)),
            SfuOutput::Command(c) => self.nodes[from].commands.push(c),
            SfuOutput::Room(_) => {}
            SfuOutput::CloseRelay { relay } => {
                if let Some(to) = self.node_of_url(&relay)
                    && self.nodes[to].up
                {
                    let id = relay.rsplit('/').next().unwrap_or_default();
                    let _ = self.nodes[to].sfu.close_relay(id);
                }
            }
            SfuOutput::ReopenRelay { url } => {
                let edge = self.nodes[from].media;
                let result = match self.node_of_url(&url) {
                    Some(to) if self.nodes[to].up => {
                        let id = url.rsplit('/').next().unwrap_or_default().to_owned();
                        self.nodes[to].sfu.open_relay(now, &id, edge)
                    }
                    _ => Err(ApiError::new(
                        cascade_core::error::ErrorKind::BadGateway,
                        "origin_unreachable",
                        "connection refused",
                    )),
                };
                self.nodes[from].sfu.relay_reopened(now, &url, result);
            }
        }
    }

    /// Steps until `done` or `limit` of simulated time passed; returns the time taken.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> Duration {
        let from = self.now;
        while !done(self) {
            assert!(
                self.now - from < limit,
                "not within {limit:?} of simulated time"
            );
            self.step();
        }
        self.now - from
    }

    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end {
            self.step();
        }
    }

    fn state(&self, node: usize, id: &str) -> Option<ResourceState> {
        self.nodes[node].sfu.resource_info(id).map(|i| i.state)
    }

    /// The last state node `node` reported for `id`, and why.
    fn last_event(&self, node: usize, id: &str) -> Option<(ResourceState, &'static str)> {
        self.nodes[node]
            .events
            .iter()
            .rev()
            .find(|(_, e)| e.resource == id)
            .map(|(_, e)| (e.state, e.reason))
    }
}

#[test]
fn an_origin_closes_the_relay_of_an_edge_that_stopped_probing() {
    let mut net = Net::new(2);
    let publication = net.publish(0, "room");
    let remote = net.relay(0, &publication, 1);
    let _sub = net.subscribe(1, "room", std::slice::from_ref(&remote));
    // A live edge probes its relay: it stays open.
    net.run_for(RELAY_EDGE_TIMEOUT * 2);
    assert_eq!(net.nodes[0].sfu.relay_count(), 1);
    let edge = net.nodes[1].media;
    let copying = |net: &Net| {
        net.nodes[0].commands.iter().rev().find_map(|c| match c {
            Command::CascadeOut { peers, .. } => Some(peers.contains(&edge)),
            _ => None,
        })
    };
    assert_eq!(copying(&net), Some(true));

    // The edge dies (kill -9): the origin closes the relay and stops copying.
    net.nodes[1].up = false;
    let took = net.run_until(RELAY_EDGE_TIMEOUT + Duration::from_secs(2), |n| {
        n.nodes[0].sfu.relay_count() == 0
    });
    eprintln!("edge death → relay closed: {took:?} of simulated time");
    assert!(
        took >= RELAY_EDGE_TIMEOUT - Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(
        copying(&net),
        Some(false),
        "the data plane still copies to the dead edge"
    );
    // The feedback session of the dead edge left the data plane too.
    assert!(
        net.nodes[0]
            .commands
            .iter()
            .any(|c| matches!(c, Command::RemoveSession { .. }))
    );
}

#[test]
fn a_relay_never_probed_closes_after_the_timeout() {
    let mut net = Net::new(1);
    let publication = net.publish(0, "room");
    // An edge that dies before its first probe (edges probe a second after opening).
    let silent: SocketAddr = "10.9.9.9:9".parse().unwrap();
    let now = net.now;
    net.nodes[0]
        .sfu
        .open_relay(now, &publication, silent)
        .unwrap();
    let took = net.run_until(RELAY_EDGE_TIMEOUT + STEP * 2, |n| {
        n.nodes[0].sfu.relay_count() == 0
    });
    assert!(took >= RELAY_EDGE_TIMEOUT - STEP, "{took:?}");
}

/// A chain M1 → M2 → M3 with a subscriber on M3: (publication on M1, its copy on
/// M2, M3's subscription).
fn chain(net: &mut Net) -> (String, String, String) {
    let publication = net.publish(0, "room");
    let on_m2 = net.relay(0, &publication, 1);
    let on_m3 = net.relay(1, &on_m2, 2);
    let sub = net.subscribe(2, "room", std::slice::from_ref(&on_m3));
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.state(2, &sub), Some(ResourceState::Live));
    assert_eq!(net.nodes[0].sfu.relay_count(), 1);
    assert_eq!(net.nodes[1].sfu.relay_count(), 1);
    (publication, on_m2, sub)
}

#[test]
fn a_chain_reports_reconnecting_down_to_its_end_and_ends_when_the_middle_gives_up() {
    let mut net = Net::new(3);
    let (_publication, on_m2, sub) = chain(&mut net);

    // M1 dies: M2 goes reconnecting, and so does M3's subscription.
    net.nodes[0].up = false;
    let took = net.run_until(RELAY_CONSENT_TIMEOUT + Duration::from_secs(3), |n| {
        n.state(2, &sub) == Some(ResourceState::Reconnecting)
    });
    assert_eq!(net.state(1, &on_m2), Some(ResourceState::Reconnecting));
    assert_eq!(
        net.last_event(2, &sub),
        Some((ResourceState::Reconnecting, "upstream_unreachable"))
    );
    eprintln!("M1 death → M3 reconnecting: {took:?}");

    // M2 gives up on M1: its copy ends, its relay to M3 closes and M3's
    // subscription ends (M3 asks M2 again, and M2 no longer has it).
    let took = net.run_until(RELAY_GIVE_UP + Duration::from_secs(5), |n| {
        n.state(2, &sub) == Some(ResourceState::Ended)
    });
    eprintln!("then M3 ended after {took:?}");
    assert_eq!(net.state(1, &on_m2), None, "M2's copy is gone");
    assert_eq!(
        net.nodes[1].sfu.relay_count(),
        0,
        "M2's onward relay is closed"
    );
    assert_eq!(
        net.last_event(2, &sub),
        Some((ResourceState::Ended, "source_ended"))
    );
}

#[test]
fn a_chain_recovers_live_when_its_origin_comes_back() {
    let mut net = Net::new(3);
    let (_publication, on_m2, sub) = chain(&mut net);
    net.nodes[0].up = false;
    net.run_until(RELAY_CONSENT_TIMEOUT + Duration::from_secs(3), |n| {
        n.state(2, &sub) == Some(ResourceState::Reconnecting)
    });
    // M1 answers again (it was cut off, not restarted): everyone is live again.
    net.nodes[0].up = true;
    net.run_until(Duration::from_secs(6), |n| {
        n.state(2, &sub) == Some(ResourceState::Live)
    });
    assert_eq!(net.state(1, &on_m2), Some(ResourceState::Live));
    assert_eq!(net.nodes[1].sfu.relay_count(), 1);
}

#[test]
fn a_chain_ends_when_the_origin_says_the_publication_is_gone() {
    let mut net = Net::new(3);
    let (publication, on_m2, sub) = chain(&mut net);
    net.nodes[0].sfu.delete(&publication).unwrap();
    let took = net.run_until(Duration::from_secs(5), |n| {
        n.state(2, &sub) == Some(ResourceState::Ended)
    });
    eprintln!("publication deleted on M1 → M3's subscription ended: {took:?}");
    assert_eq!(net.state(1, &on_m2), None);
    assert_eq!(net.nodes[1].sfu.relay_count(), 0);
    assert_eq!(net.nodes[0].sfu.relay_count(), 0);
}
