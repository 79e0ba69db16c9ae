//! Room placement inside one data centre: rendezvous (highest random weight, HRW)
//! hashing of a room id over the data centre's members, and the decision it leads to
//! for a request ([`decide`]).
//!
//! Every server computes the same ranking from the same member list, so a room lands
//! on one server whichever server a request hit, with no state shared between them.
//! When a member joins or leaves, only the rooms it wins or held move. When the
//! owner is at capacity, the request spills to the next member in HRW order
//! ([`place`]), which cascades from the owner. A server missing from the list serves
//! no room that way: it sends requests to the owner among the members it sees.
//!
//! Everything here is pure: the member list comes from the shell (a fixed list, or
//! SRV records it resolves), and so does the answer to the client.

mod decide;

pub use decide::{Decision, SPILL_PARAM, decide, member_from_url, previous_owner, same_url};

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// SipHash keys of the placement hash. They are part of the placement contract:
/// changing them moves every room, so they never change.
const HRW_KEY0: u64 = 0x6361_7363_6164_6531; // "cascade1"
const HRW_KEY1: u64 = 0x7265_6e64_657a_766f; // "rendezvo"

/// One media server of a data centre.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    /// Stable identity used in the hash, e.g. `m1.example.test:443`.
    pub id: String,
    /// Base URL of the member's HTTP API, e.g. `https://m1.example.test`.
    pub url: String,
}

impl Member {
    pub fn new(id: impl Into<String>, url: impl Into<String>) -> Self {
        Member {
            id: id.into(),
            url: url.into(),
        }
    }
}

/// The rendezvous score of `member_id` for `key` (a room id, or any other key).
///
/// SipHash-1-3 with fixed keys over the length-prefixed key followed by the member
/// id: the same inputs give the same score in every process, on every platform and
/// in every version (std's `RandomState` is seeded per process and is never used here).
pub fn score(key: &str, member_id: &str) -> u64 {
    let mut h = SipHasher13::new_with_keys(HRW_KEY0, HRW_KEY1);
    h.write(&(key.len() as u64).to_le_bytes());
    h.write(key.as_bytes());
    h.write(member_id.as_bytes());
    h.finish()
}

/// Orders `items` by rendezvous score for `key`, highest first; equal scores (in
/// practice never) fall back to the id, so the order is total and deterministic.
pub fn rank_by<'a, T>(key: &str, items: &'a [T], id: impl Fn(&T) -> &str) -> Vec<&'a T> {
    let mut scored: Vec<(u64, &'a T)> = items.iter().map(|m| (score(key, id(m)), m)).collect();
    scored.sort_by(|(sa, a), (sb, b)| sb.cmp(sa).then_with(|| id(a).cmp(id(b))));
    scored.into_iter().map(|(_, m)| m).collect()
}

/// Every member, in HRW order for `room` (the owner first).
pub fn rank<'a>(room: &str, members: &'a [Member]) -> Vec<&'a Member> {
    rank_by(room, members, |m| m.id.as_str())
}

/// The member that owns `room`: the highest HRW score. `None` with no members.
pub fn owner<'a>(room: &str, members: &'a [Member]) -> Option<&'a Member> {
    members
        .iter()
        .map(|m| (score(room, &m.id), m))
        .max_by(|(sa, a), (sb, b)| sa.cmp(sb).then_with(|| b.id.cmp(&a.id)))
        .map(|(_, m)| m)
}

/// Where a new session of `room` goes: the first member in HRW order that is not
/// full. `None` when every member is full (or there are none).
pub fn place<'a>(
    room: &str,
    members: &'a [Member],
    is_full: impl Fn(&Member) -> bool,
) -> Option<&'a Member> {
    rank(room, members).into_iter().find(|m| !is_full(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (1..=n)
            .map(|i| {
                Member::new(
                    format!("m{i}.example.test:443"),
                    format!("https://m{i}.example.test"),
                )
            })
            .collect()
    }

    /// Reference SipHash-1-3 (c=1, d=3) written out from the algorithm's definition,
    /// to pin [`score`] to the definition rather than to one crate's behaviour.
    fn siphash13_reference(k0: u64, k1: u64, msg: &[u8]) -> u64 {
        let mut v0 = k0 ^ 0x736f_6d65_7073_6575;
        let mut v1 = k1 ^ 0x646f_7261_6e64_6f6d;
        let mut v2 = k0 ^ 0x6c79_6765_6e65_7261;
        let mut v3 = k1 ^ 0x7465_6462_7974_6573;
        let round = |v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64| {
            *v0 = v0.wrapping_add(*v1);
            *v1 = v1.rotate_left(13);
            *v1 ^= *v0;
            *v0 = v0.rotate_left(32);
            *v2 = v2.wrapping_add(*v3);
            *v3 = v3.rotate_left(16);
            *v3 ^= *v2;
            *v0 = v0.wrapping_add(*v3);
            *v3 = v3.rotate_left(21);
            *v3 ^= *v0;
            *v2 = v2.wrapping_add(*v1);
            *v1 = v1.rotate_left(17);
            *v1 ^= *v2;
            *v2 = v2.rotate_left(32);
        };
        let mut chunks = msg.chunks_exact(8);
        for c in &mut chunks {
            let m = u64::from_le_bytes(c.try_into().unwrap());
            v3 ^= m;
            round(&mut v0, &mut v1, &mut v2, &mut v3);
            v0 ^= m;
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        last[7] = msg.len() as u8;
        let m = u64::from_le_bytes(last);
        v3 ^= m;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
        v2 ^= 0xff;
        for _ in 0..3 {
            round(&mut v0, &mut v1, &mut v2, &mut v3);
        }
        v0 ^ v1 ^ v2 ^ v3
    }

    #[test]
    fn score_is_siphash13_of_the_length_prefixed_key_and_id() {
        for (room, id) in [
            ("", ""),
            ("demo", "m1.example.test:443"),
            (
                "a-much-longer-room-name-with-more-than-sixteen-bytes",
                "m2:1",
            ),
            ("ümlaut", "m3.example.test:8443"),
        ] {
            let mut msg = (room.len() as u64).to_le_bytes().to_vec();
            msg.extend_from_slice(room.as_bytes());
            msg.extend_from_slice(id.as_bytes());
            assert_eq!(
                score(room, id),
                siphash13_reference(HRW_KEY0, HRW_KEY1, &msg),
                "{room:?} {id:?}"
            );
        }
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(score("ab", "c"), score("a", "bc"));
    }

    #[test]
    fn same_inputs_same_owner_whatever_the_member_order() {
        let ms = members(5);
        let mut reversed = ms.clone();
        reversed.reverse();
        for i in 0..200 {
            let room = format!("room-{i}");
            let a = owner(&room, &ms).unwrap();
            let b = owner(&room, &reversed).unwrap();
            assert_eq!(a, b);
            assert_eq!(rank(&room, &ms), rank(&room, &reversed));
            assert_eq!(rank(&room, &ms)[0], a);
            assert_eq!(rank(&room, &ms).len(), 5);
        }
        assert!(owner("x", &[]).is_none());
        assert!(rank("x", &[]).is_empty());
    }

    #[test]
    fn rooms_spread_over_members() {
        let ms = members(4);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let o = owner(&format!("room-{i}"), &ms).unwrap();
            counts[ms.iter().position(|m| m == o).unwrap()] += 1;
        }
        for c in counts {
            assert!((800..=1200).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn adding_a_member_moves_about_a_quarter_only_to_it() {
        let three = members(3);
        let four = members(4);
        let new = &four[3];
        let mut moved = 0;
        for i in 0..1000 {
            let room = format!("room-{i}");
            let before = owner(&room, &three).unwrap();
            let after = owner(&room, &four).unwrap();
            if before != after {
                moved += 1;
                assert_eq!(after, new, "{room} moved to an old member");
            }
        }
        assert!((150..=350).contains(&moved), "moved {moved} of 1000");
    }

    #[test]
    fn removing_a_member_moves_only_its_rooms() {
        let four = members(4);
        let three: Vec<Member> = four
            .iter()
            .filter(|m| m.id != four[1].id)
            .cloned()
            .collect();
        for i in 0..1000 {
            let room = format!("room-{i}");
            let before = owner(&room, &four).unwrap();
            let after = owner(&room, &three).unwrap();
            if before.id != four[1].id {
                assert_eq!(before, after, "{room} moved though its owner stayed");
            } else {
                // It goes to its second choice.
                assert_eq!(after, rank(&room, &four)[1]);
            }
        }
    }

    #[test]
    fn spill_over_follows_hrw_order() {
        let ms = members(4);
        for i in 0..100 {
            let room = format!("room-{i}");
            let order = rank(&room, &ms);
            assert_eq!(place(&room, &ms, |_| false), Some(order[0]));
            let full0 = order[0].id.clone();
            assert_eq!(place(&room, &ms, |m| m.id == full0), Some(order[1]));
            let full: Vec<String> = order[..3].iter().map(|m| m.id.clone()).collect();
            assert_eq!(place(&room, &ms, |m| full.contains(&m.id)), Some(order[3]));
            assert_eq!(place(&room, &ms, |_| true), None);
        }
    }
}
