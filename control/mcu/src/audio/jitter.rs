//! The per-input jitter buffer: it holds an input's Opus payloads by RTP sequence
//! number, starts playing a fixed target delay after the first packet, hands them out
//! in sequence order one at a time, tells a lost packet (a gap with later packets
//! behind it) from an underrun (nothing buffered), and drops packets that arrive after
//! their playout point. It knows nothing of codecs; it never allocates once its slots
//! have grown to the largest payload seen.

use std::time::{Duration, Instant};

use super::codec::MAX_PAYLOAD;

/// Slots in the ring: 64 packets (1.28 s of 20 ms packets). A packet further ahead of
/// the playout point than this restarts the buffer (the sender jumped).
pub(crate) const SLOTS: usize = 64;
/// A packet this far behind the playout point is a sender restart, not a late packet.
const RESTART_BEHIND: i32 = 1000;

/// Delay from the first packet's arrival to its playout.
pub(crate) const TARGET_DELAY: Duration = Duration::from_millis(40);

#[derive(Debug, Default)]
struct Slot {
    seq: u16,
    filled: bool,
    /// Empty or oversized: kept as a placeholder, so that it is counted as a decoder
    /// error rather than as a loss.
    bad: bool,
    arrival: Option<Instant>,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No packet since creation or since [`JitterBuffer::go_idle`].
    Idle,
    /// Packets buffered; playout starts at `play_at`.
    Buffering {
        play_at: Instant,
    },
    Playing,
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Stored,
    /// After its playout point: dropped.
    Late,
    Duplicate,
    /// Too far from the playout point: the buffer restarted with this packet.
    Restarted,
}

/// What [`JitterBuffer::pull`] hands out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pulled<'a> {
    /// The next packet in sequence.
    Packet { payload: &'a [u8], arrival: Instant },
    /// The next packet arrived but cannot be Opus (empty or oversized).
    Bad,
    /// The next packet is missing while later ones are here: lost. `fec` is the packet
    /// after it, when present, whose in-band FEC may recover it.
    Lost { fec: Option<&'a [u8]> },
    /// Nothing to play: not started yet, or the buffer ran dry.
    Nothing,
}

pub(crate) struct JitterBuffer {
    slots: Vec<Slot>,
    phase: Phase,
    /// Sequence number of the next packet to play (while buffering: the lowest seen).
    next: u16,
    /// Highest sequence number stored.
    highest: u16,
    /// Filled slots.
    len: usize,
}

impl JitterBuffer {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            phase: Phase::Idle,
            next: 0,
            highest: 0,
            len: 0,
        }
    }

    /// Packets buffered.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_playing(&self) -> bool {
        self.phase == Phase::Playing
    }

    /// Forgets everything: the next packet starts a new playout (after the target
    /// delay), whatever its sequence number. For an input that stopped sending.
    pub(crate) fn go_idle(&mut self) {
        for slot in &mut self.slots {
            slot.filled = false;
        }
        self.len = 0;
        self.phase = Phase::Idle;
    }

    pub(crate) fn push(&mut self, now: Instant, seq: u16, payload: &[u8]) -> Pushed {
        let ahead = i32::from(seq.wrapping_sub(self.next) as i16);
        match self.phase {
            Phase::Idle => {
                self.restart(now, seq, payload);
                return Pushed::Stored;
            }
            Phase::Buffering { .. } if ahead < 0 => {
                // Earlier than any seen yet: it becomes the first to play, if the ring
                // still holds everything up to the highest.
                if usize::from(self.highest.wrapping_sub(seq)) < SLOTS {
                    self.next = seq;
                } else {
                    return Pushed::Late;
                }
            }
            Phase::Playing if ahead < -RESTART_BEHIND => {
                self.restart(now, seq, payload);
                return Pushed::Restarted;
            }
            Phase::Playing if ahead < 0 => return Pushed::Late,
            _ if ahead >= SLOTS as i32 => {
                self.restart(now, seq, payload);
                return Pushed::Restarted;
            }
            _ => {}
        }
        let slot = &mut self.slots[usize::from(seq) % SLOTS];
        if slot.filled && slot.seq == seq {
            return Pushed::Duplicate;
        }
        if !slot.filled {
            self.len += 1;
        }
        store(slot, now, seq, payload);
        if i32::from(seq.wrapping_sub(self.highest) as i16) > 0 || self.len == 1 {
            self.highest = seq;
        }
        Pushed::Stored
    }

    fn restart(&mut self, now: Instant, seq: u16, payload: &[u8]) {
        self.go_idle();
        self.phase = Phase::Buffering {
            play_at: now + TARGET_DELAY,
        };
        self.next = seq;
        self.highest = seq;
        self.len = 1;
        store(&mut self.slots[usize::from(seq) % SLOTS], now, seq, payload);
    }

    /// The next packet to play at `now`, in sequence order; advances the playout point
    /// unless there is nothing to play.
    pub(crate) fn pull(&mut self, now: Instant) -> Pulled<'_> {
        match self.phase {
            Phase::Idle => return Pulled::Nothing,
            Phase::Buffering { play_at } if now < play_at => return Pulled::Nothing,
            Phase::Buffering { .. } => self.phase = Phase::Playing,
            Phase::Playing => {}
        }
        if self.len == 0 {
            return Pulled::Nothing;
        }
        let seq = self.next;
        self.next = seq.wrapping_add(1);
        let index = usize::from(seq) % SLOTS;
        if self.slots[index].filled && self.slots[index].seq == seq {
            self.len -= 1;
            let slot = &mut self.slots[index];
            slot.filled = false;
            return match (slot.bad, slot.arrival) {
                (false, Some(arrival)) => Pulled::Packet {
                    payload: &slot.payload,
                    arrival,
                },
                _ => Pulled::Bad,
            };
        }
        let after = &self.slots[usize::from(self.next) % SLOTS];
        let fec =
            (after.filled && after.seq == self.next && !after.bad).then_some(&after.payload[..]);
        Pulled::Lost { fec }
    }
}

fn store(slot: &mut Slot, now: Instant, seq: u16, payload: &[u8]) {
    slot.seq = seq;
    slot.filled = true;
    slot.arrival = Some(now);
    slot.bad = payload.is_empty() || payload.len() > MAX_PAYLOAD;
    slot.payload.clear();
    if !slot.bad {
        slot.payload.extend_from_slice(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS20: Duration = Duration::from_millis(20);

    /// Pulls once; a packet is reported as its first payload byte.
    fn pull(jb: &mut JitterBuffer, now: Instant) -> String {
        match jb.pull(now) {
            Pulled::Packet { payload, .. } => format!("p{}", payload[0]),
            Pulled::Bad => "bad".into(),
            Pulled::Lost { fec: Some(p) } => format!("lost+fec{}", p[0]),
            Pulled::Lost { fec: None } => "lost".into(),
            Pulled::Nothing => "-".into(),
        }
    }

    #[test]
    fn reordered_packets_play_in_order_after_the_target_delay() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        let base = 65_533u16; // wraps
        for (k, off) in [1u16, 0, 3, 2, 4].into_iter().enumerate() {
            let seq = base.wrapping_add(off);
            assert_eq!(
                jb.push(t0 + MS20 * k as u32 / 4, seq, &[off as u8]),
                Pushed::Stored
            );
        }
        assert_eq!(pull(&mut jb, t0), "-", "not before the target delay");
        let start = t0 + TARGET_DELAY;
        let got: Vec<String> = (0..6).map(|k| pull(&mut jb, start + MS20 * k)).collect();
        assert_eq!(got, ["p0", "p1", "p2", "p3", "p4", "-"]);
    }

    #[test]
    fn a_packet_after_its_playout_point_is_late_and_dropped() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        jb.push(t0, 100, &[0]);
        jb.push(t0, 102, &[2]);
        let start = t0 + TARGET_DELAY;
        assert_eq!(pull(&mut jb, start), "p0");
        assert_eq!(pull(&mut jb, start + MS20), "lost+fec2");
        assert_eq!(jb.push(start + MS20, 101, &[1]), Pushed::Late);
        assert_eq!(jb.push(start + MS20, 100, &[0]), Pushed::Late);
        assert_eq!(pull(&mut jb, start + MS20 * 2), "p2");
        assert_eq!(jb.push(start, 103, &[3]), Pushed::Stored);
        assert_eq!(jb.push(start, 103, &[3]), Pushed::Duplicate);
        assert_eq!(jb.len(), 1);
    }

    #[test]
    fn a_gap_with_nothing_behind_it_is_an_underrun_not_a_loss() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        jb.push(t0, 7, &[7]);
        assert_eq!(pull(&mut jb, t0 + TARGET_DELAY), "p7");
        assert_eq!(pull(&mut jb, t0 + TARGET_DELAY + MS20), "-");
        // The delayed packet still plays: the playout point did not move.
        assert_eq!(jb.push(t0 + TARGET_DELAY + MS20, 8, &[8]), Pushed::Stored);
        assert_eq!(pull(&mut jb, t0 + TARGET_DELAY + MS20 * 2), "p8");
        assert!(jb.is_playing());
    }

    #[test]
    fn jumps_restart_and_bad_payloads_hold_their_place() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        jb.push(t0, 10, &[1]);
        jb.push(t0, 11, &[]);
        jb.push(t0, 12, &vec![9; MAX_PAYLOAD + 1]);
        let start = t0 + TARGET_DELAY;
        assert_eq!(pull(&mut jb, start), "p1");
        assert_eq!(pull(&mut jb, start), "bad");
        assert_eq!(pull(&mut jb, start), "bad");
        assert_eq!(
            jb.push(start, 10 + SLOTS as u16 + 20, &[5]),
            Pushed::Restarted
        );
        assert!(!jb.is_playing());
        assert_eq!(pull(&mut jb, start), "-");
        assert_eq!(pull(&mut jb, start + TARGET_DELAY), "p5");
        assert_eq!(
            jb.push(start, 30_000, &[6]),
            Pushed::Restarted,
            "far behind: a new sender"
        );
        jb.go_idle();
        assert_eq!(jb.len(), 0);
        assert_eq!(jb.push(start, 1, &[6]), Pushed::Stored);
    }
}
