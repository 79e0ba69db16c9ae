//! Which server of the data centre serves a publish or subscribe for a room: the
//! placement decision for one HTTP request.
//!
//! Every server ranks the members by rendezvous hash of the room ([`super::rank`]):
//! the first is the room's owner. A request that reaches another member is sent to
//! the owner (a `307` redirect, or proxied). An owner at its capacity sends it on to
//! the next member in rank, with `spill=<rank>` in the query so that member serves it
//! (cascading the room's tracks from the owner) instead of sending it back; a full
//! spill member passes it further down the ranking, and the last one answers `503`.
//! Each server judges only its own load: no state is shared.
//!
//! A server that does not find itself among the members (it was just added and has
//! not resolved the list since, it was removed but still runs, or its member URL is
//! not the one the list gives) serves no room: it sends each request to the room's
//! owner among the members it sees, so it never becomes a second home of a room
//! another member owns. With no member at all, it serves everything itself.
//!
//! [`decide`] is pure; the HTTP side (redirect, proxy) lives in the server's shell.

use super::{Member, rank};

/// Query parameter that marks a request sent on by a full owner: the rank of the
/// member it was sent to.
pub const SPILL_PARAM: &str = "spill";

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it here. `owner` is set when this server takes it as spill-over from the
    /// room's owner (whose publications it then cascades).
    Here { owner: Option<Member> },
    /// Hand it to `member`; `spill` is that member's rank when it is not the owner.
    Elsewhere {
        member: Member,
        spill: Option<usize>,
    },
    /// This server and every member after it in rank are full.
    Full,
    /// This server is not among the members, and the request was sent on to it as
    /// spill-over by a member that lists it: neither serving it nor sending it back
    /// to the owner is safe, so it is refused (the client retries).
    NotMember,
}

/// Where a request for `room` that reached the server `me` (its base URL) goes.
/// `spill` is the request's spill rank, `full` whether this server is at capacity.
/// A server that is not among `members` sends everything to its owner among them
/// (and serves everything itself only when there are no members at all).
pub fn decide(
    room: &str,
    members: &[Member],
    me: &str,
    spill: Option<usize>,
    full: bool,
) -> Decision {
    let ranking = rank(room, members);
    let Some(pos) = ranking.iter().position(|m| same_url(&m.url, me)) else {
        return match (ranking.first(), spill) {
            (None, _) => Decision::Here { owner: None },
            (Some(_), Some(_)) => Decision::NotMember,
            (Some(owner), None) => Decision::Elsewhere {
                member: (*owner).clone(),
                spill: None,
            },
        };
    };
    if spill.is_none() && pos != 0 {
        return Decision::Elsewhere {
            member: ranking[0].clone(),
            spill: None,
        };
    }
    if !full {
        return Decision::Here {
            owner: (pos != 0).then(|| ranking[0].clone()),
        };
    }
    match ranking.get(pos + 1) {
        Some(next) => Decision::Elsewhere {
            member: (*next).clone(),
            spill: Some(pos + 1),
        },
        None => Decision::Full,
    }
}

/// Where the publications of `room` were before the members changed from `previous`
/// to `members`, when this server (`me`) is now the room's owner and that was
/// another member that is still there. A server that was a member before asks the
/// owner under the previous list; one that was not (it just joined, and the list it
/// had before may be partial or stale) asks the room's owner among the others, the
/// next in rank after itself, which is where the other members placed the room
/// while they did not know it. `None` with no previous list.
pub fn previous_owner<'a>(
    room: &str,
    members: &'a [Member],
    previous: &[Member],
    me: &str,
) -> Option<&'a Member> {
    if previous.is_empty() {
        return None;
    }
    let ranking = rank(room, members);
    if !same_url(&ranking.first()?.url, me) {
        return None;
    }
    let before = if previous.iter().any(|m| same_url(&m.url, me)) {
        let before = super::owner(room, previous)?;
        members.iter().find(|m| *m == before)?
    } else {
        ranking.get(1)?
    };
    (!same_url(&before.url, me)).then_some(before)
}

/// Two base URLs name the same server (case of scheme and host, trailing slash and
/// the scheme's default port aside).
pub fn same_url(a: &str, b: &str) -> bool {
    normalize(a) == normalize(b)
}

fn normalize(url: &str) -> String {
    let url = url.trim().trim_end_matches('/').to_ascii_lowercase();
    if let Some(rest) = url.strip_prefix("https://") {
        format!("https://{}", rest.strip_suffix(":443").unwrap_or(rest))
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("http://{}", rest.strip_suffix(":80").unwrap_or(rest))
    } else {
        url
    }
}

/// A member for a `--members` URL: its id is the URL's `host:port`, as SRV gives it.
pub fn member_from_url(url: &str) -> Option<Member> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    let has_port = match rest.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .is_some_and(|(_, tail)| tail.starts_with(':')),
        None => rest.contains(':'),
    };
    let id = if has_port {
        rest.to_ascii_lowercase()
    } else {
        format!("{}:{default_port}", rest.to_ascii_lowercase())
    };
    Some(Member::new(id, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (1..=n)
            .map(|i| member_from_url(&format!("https://m{i}.dc.test")).unwrap())
            .collect()
    }

    #[test]
    fn the_owner_serves_others_send_to_it() {
        let m = members(3);
        for room in ["a", "b", "room-17", "x"] {
            let ranking = rank(room, &m);
            let owner = ranking[0].clone();
            assert_eq!(
                decide(room, &m, &owner.url, None, false),
                Decision::Here { owner: None }
            );
            for other in &ranking[1..] {
                assert_eq!(
                    decide(room, &m, &other.url, None, false),
                    Decision::Elsewhere {
                        member: owner.clone(),
                        spill: None
                    },
                    "{room} at {}",
                    other.id
                );
            }
        }
    }

    #[test]
    fn a_full_owner_spills_down_the_ranking_to_the_end() {
        let m = members(3);
        let ranking: Vec<Member> = rank("r", &m).into_iter().cloned().collect();
        assert_eq!(
            decide("r", &m, &ranking[0].url, None, true),
            Decision::Elsewhere {
                member: ranking[1].clone(),
                spill: Some(1)
            }
        );
        // The spill member serves it, knowing the owner; it does not send it back.
        assert_eq!(
            decide("r", &m, &ranking[1].url, Some(1), false),
            Decision::Here {
                owner: Some(ranking[0].clone())
            }
        );
        assert_eq!(
            decide("r", &m, &ranking[1].url, Some(1), true),
            Decision::Elsewhere {
                member: ranking[2].clone(),
                spill: Some(2)
            }
        );
        assert_eq!(
            decide("r", &m, &ranking[2].url, Some(2), true),
            Decision::Full
        );
    }

    #[test]
    fn a_server_outside_the_members_sends_every_room_to_its_owner() {
        let m = members(3);
        for room in ["a", "b", "room-17", "x"] {
            let owner = rank(room, &m)[0].clone();
            for full in [false, true] {
                assert_eq!(
                    decide(room, &m, "https://elsewhere.test", None, full),
                    Decision::Elsewhere {
                        member: owner.clone(),
                        spill: None
                    }
                );
            }
            // Spill-over sent to it by a member that lists it: refused, not bounced.
            assert_eq!(
                decide(room, &m, "https://elsewhere.test", Some(1), false),
                Decision::NotMember
            );
        }
        // No members at all (placement has nothing to go on): it serves.
        assert_eq!(
            decide("r", &[], "https://m1.dc.test", None, false),
            Decision::Here { owner: None }
        );
    }

    #[test]
    fn a_new_owner_finds_the_room_where_it_was() {
        let four = members(4);
        let three: Vec<Member> = four[..3].to_vec();
        let new = &four[3];
        for i in 0..200 {
            let room = format!("room-{i}");
            let owner3 = rank(&room, &three)[0];
            let owner4 = rank(&room, &four)[0];
            // Partial, stale or full: what the newcomer saw before does not matter.
            for before in [&three[..1], &three[..]] {
                let found = previous_owner(&room, &four, before, &new.url);
                if owner4 == new {
                    assert_eq!(found, Some(owner3), "{room}");
                } else {
                    assert_eq!(found, None, "{room}: not the owner");
                }
            }
            // A member that was there before asks the previous owner.
            if owner4 != new {
                assert_eq!(previous_owner(&room, &four, &three, &owner4.url), None);
            }
        }
        // A member leaves: its rooms' new owners ask it no more (it is gone).
        let gone = &four[1];
        let rest: Vec<Member> = four.iter().filter(|m| *m != gone).cloned().collect();
        for i in 0..100 {
            let room = format!("room-{i}");
            let now = rank(&room, &rest)[0];
            assert_eq!(previous_owner(&room, &rest, &four, &now.url), None);
        }
        assert_eq!(previous_owner("r", &four, &[], &four[0].url), None);
    }

    #[test]
    fn urls_compare_without_default_ports_or_case() {
        assert!(same_url("https://M1.dc.test:443/", "https://m1.dc.test"));
        assert!(same_url("http://10.0.0.1:80", "http://10.0.0.1"));
        assert!(!same_url("http://10.0.0.1:8080", "http://10.0.0.1"));
        assert!(!same_url("https://10.0.0.1", "http://10.0.0.1"));
    }

    #[test]
    fn members_from_urls_get_srv_like_ids() {
        assert_eq!(
            member_from_url("https://m1.dc.test").unwrap().id,
            "m1.dc.test:443"
        );
        assert_eq!(
            member_from_url("http://10.0.0.1:8080/").unwrap().id,
            "10.0.0.1:8080"
        );
        assert_eq!(
            member_from_url("http://10.0.0.1").unwrap().id,
            "10.0.0.1:80"
        );
        assert_eq!(
            member_from_url("http://[fd00::1]:8080").unwrap().id,
            "[fd00::1]:8080"
        );
        assert_eq!(
            member_from_url("http://[fd00::1]").unwrap().id,
            "[fd00::1]:80"
        );
        assert!(member_from_url("ftp://x").is_none());
        assert!(member_from_url("https://x/path").is_none());
    }
}
