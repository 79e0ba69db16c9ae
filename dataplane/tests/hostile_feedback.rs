//! Feedback whose counts claim more than the server holds: transport feedback
//! claiming 65,535 statuses, NACKs repeating or spanning far more sequence numbers
//! than a stream's cache, several of them in one compound. What one datagram makes
//! the table do is bounded by the send log and the NACK cache.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use cascade_dataplane::bwe::HISTORY;
use cascade_dataplane::rtcp::{self, RtcpKind};
use cascade_dataplane::srtp::SrtpProfile;
use cascade_dataplane::table::{ForwardingTable, MAX_DATAGRAM, MAX_NACK_SEQS, TransmitSink};
use common::*;

/// Counts what the table sends, per destination, in one reused buffer; keeps the
/// last datagram to `keep`.
struct CountingSink {
    buf: Box<[u8; MAX_DATAGRAM]>,
    sent: HashMap<SocketAddr, usize>,
    keep: Option<SocketAddr>,
    kept: Vec<u8>,
}

impl CountingSink {
    fn new(keep: Option<SocketAddr>) -> Self {
        Self {
            buf: Box::new([0; MAX_DATAGRAM]),
            sent: HashMap::new(),
            keep,
            kept: Vec::new(),
        }
    }

    fn to(&self, dest: SocketAddr) -> usize {
        self.sent.get(&dest).copied().unwrap_or(0)
    }
}

impl TransmitSink for CountingSink {
    fn next_buffer(&mut self) -> &mut [u8] {
        &mut self.buf[..]
    }

    fn commit(&mut self, len: usize, dest: SocketAddr) {
        *self.sent.entry(dest).or_default() += 1;
        if self.keep == Some(dest) {
            self.kept = self.buf[..len].to_vec();
        }
    }
}

/// Protects the compound `plain` as `from`'s SRTCP and hands it to the table.
fn send_rtcp(table: &mut ForwardingTable, from: &mut Peer, plain: &[u8], sink: &mut CountingSink) {
    let mut wire = vec![0u8; plain.len() + 32];
    wire[..plain.len()].copy_from_slice(plain);
    let n = from.send.protect_rtcp(&mut wire, plain.len()).unwrap();
    table.handle_datagram(Instant::now(), from.addr, &mut wire[..n], sink);
}

/// A publisher (video SSRC 0xAAAA) routed to one subscriber (0xB002), and `packets`
/// of its media forwarded (sequence numbers 0..packets).
fn forwarding(subscriber_twcc: bool, packets: u16) -> (ForwardingTable, Peer, Peer, CountingSink) {
    let mut table = ForwardingTable::new(0);
    let now = Instant::now();
    let mut publisher = peer(SessionId(1), 5000, SrtpProfile::AeadAes128Gcm);
    let mut sub = peer(SessionId(2), 6000, SrtpProfile::AeadAes128Gcm);
    if subscriber_twcc {
        with_transport_cc(&mut sub, 5);
    }
    let mut sink = CountingSink::new(Some(publisher.addr));
    table.apply(now, publisher.install.clone(), &mut sink);
    table.apply(now, sub.install.clone(), &mut sink);
    table.apply(
        now,
        route(SessionId(1), 0xAAAA, SessionId(2), 0xB002, (96, 96)),
        &mut sink,
    );
    for seq in 0..packets {
        let mut wire = protect(&mut publisher.send, &rtp(0xAAAA, seq, 0, 96, 200));
        table.handle_datagram(now, publisher.addr, &mut wire, &mut sink);
    }
    assert_eq!(sink.to(sub.addr), usize::from(packets));
    (table, publisher, sub, sink)
}

/// A 44-byte transport feedback claiming 65,535 statuses from `base` on (runs of
/// "not received", the last two received).
fn feedback_claiming_everything(base: u16) -> Vec<u8> {
    let mut p = vec![0x8f, 0xcd, 0, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    p.extend_from_slice(&base.to_be_bytes());
    p.extend_from_slice(&65_535u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 1, 0]);
    for _ in 0..8 {
        p.extend_from_slice(&0x1fffu16.to_be_bytes());
    }
    p.extend_from_slice(&(65_535u16 - 8 * 0x1fff - 2).to_be_bytes());
    p.extend_from_slice(&0x2002u16.to_be_bytes());
    p.extend_from_slice(&[4, 4, 0, 0]);
    assert_eq!(p.len(), 44);
    p
}

#[test]
fn transport_feedback_bombs_in_one_compound_cost_at_most_the_send_log() {
    let (mut table, _publisher, mut sub, mut sink) = forwarding(true, 3000);
    // 27 bombs in one 1,188-byte compound: 27 x 65,535 statuses claimed.
    let bomb = feedback_claiming_everything(3000u16.wrapping_sub(65_535));
    let compound: Vec<u8> = std::iter::repeat_n(&bomb[..], 27)
        .flatten()
        .copied()
        .collect();
    let before = table.estimator(sub.id).unwrap().feedback_steps();
    send_rtcp(&mut table, &mut sub, &compound, &mut sink);
    let steps = table.estimator(sub.id).unwrap().feedback_steps() - before;
    eprintln!(
        "{} bytes claiming {} statuses: {steps} loop steps",
        compound.len(),
        27 * 65_535
    );
    assert!(steps > 0, "the feedback was read");
    // The send log's pass and the estimator's over the 2,048 packets the log holds,
    // plus skipping each feedback's chunks.
    assert!(steps <= 2 * HISTORY as u64 + 200, "{steps} steps");
}

#[test]
fn a_nack_repeating_sequence_numbers_gets_each_answered_once() {
    let (mut table, _publisher, mut sub, mut sink) = forwarding(false, 600);
    // 250 items, all the same: 500 and the 16 after it, 250 times over.
    let mut nack = vec![0x81, 0xcd, 0, 0, 0, 0, 0, 1, 0, 0, 0xb0, 0x02];
    for _ in 0..250 {
        nack.extend_from_slice(&500u16.to_be_bytes());
        nack.extend_from_slice(&0xffffu16.to_be_bytes());
    }
    let words = (nack.len() / 4 - 1) as u16;
    nack[2..4].copy_from_slice(&words.to_be_bytes());
    sink.sent.clear();
    send_rtcp(&mut table, &mut sub, &nack, &mut sink);
    assert_eq!(sink.to(sub.addr), 17, "500..=516, each resent once");
    assert_eq!(table.stats.retransmitted, 17);
}

#[test]
fn nacks_naming_more_than_the_cache_holds_are_cut_to_it() {
    let (mut table, publisher, mut sub, mut sink) = forwarding(false, 600);
    // One NACK naming 0..5049 (297 items of 17 sequence numbers): the cache holds
    // 88..600; at most MAX_NACK_SEQS of the named ones are looked at.
    let mut lost: Vec<u16> = (0..297 * 17).collect();
    let mut buf = [0u8; 1500];
    let n = rtcp::write_nack(&mut buf, 1, 0xB002, &lost).unwrap();
    sink.sent.clear();
    send_rtcp(&mut table, &mut sub, &buf[..n], &mut sink);
    let resent = sink.to(sub.addr);
    let mut upstream = sink.kept.clone();
    let mut publisher_rx = publisher.recv;
    let len = publisher_rx.unprotect_rtcp(&mut upstream).unwrap();
    let asked: usize = rtcp::packets(&upstream[..len])
        .map(|p| match p.unwrap().kind().unwrap() {
            RtcpKind::Nack(n) => n.lost_sequences().count(),
            _ => 0,
        })
        .sum();
    eprintln!(
        "NACK of {} sequence numbers: {resent} resent, {asked} asked upstream",
        lost.len()
    );
    assert_eq!(
        resent + asked,
        MAX_NACK_SEQS,
        "the first {MAX_NACK_SEQS} named"
    );
    assert_eq!(resent, MAX_NACK_SEQS - 88, "88..512 from the cache");

    // Ten NACKs in one compound, each naming every cached packet: the datagram as a
    // whole gets at most MAX_NACK_SEQS answers.
    lost = (88..600).collect();
    let n = rtcp::write_nack(&mut buf, 1, 0xB002, &lost).unwrap();
    let compound: Vec<u8> = std::iter::repeat_n(&buf[..n], 10)
        .flatten()
        .copied()
        .collect();
    assert!(compound.len() < 1500);
    sink.sent.clear();
    send_rtcp(&mut table, &mut sub, &compound, &mut sink);
    assert_eq!(sink.to(sub.addr), MAX_NACK_SEQS, "{:?}", sink.sent);
}
