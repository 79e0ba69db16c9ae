/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Map layouts shared by Cascade's kernel programs and their loader.
 *
 * Every struct here has a twin in ebpf/src/maps.rs with the same fields in the
 * same order; both sides assert the sizes. No implicit padding (explicit `pad`
 * fields are always zero) and addresses and ports are in network byte order, so
 * a key is built by copying bytes straight out of the packet.
 */
#ifndef CASCADE_MAPS_H
#define CASCADE_MAPS_H

#include <linux/types.h>

#define CASCADE_FAMILY_V4 4
#define CASCADE_FAMILY_V6 6

/* Most cascade peers one source is cloned to by the TC fan-out. */
#define CASCADE_MAX_FANOUT_PEERS 32

/* cascade_fanout_entry.flags: the original packet also goes up to userspace. */
#define CASCADE_FANOUT_LOCAL_SUBSCRIBERS 1u

/* Sockets a reuseport group can steer to (REUSEPORT_SOCKARRAY size). */
#define CASCADE_MAX_WORKERS 256

/*
 * A UDP 5-tuple seen from this server: `peer` is the remote end (the source of
 * an incoming packet), `local` is ours (its destination). An IPv4 address fills
 * the first 4 bytes of its 16 and leaves the rest zero.
 *
 * ALLOW is keyed by the full tuple; a key whose `local_addr` is all zero matches
 * any local address on that port. STEER and FANOUT are keyed by the peer alone:
 * their `local_addr` and `local_port` are zero.
 */
struct cascade_flow_key {
	__u8 peer_addr[16];
	__u8 local_addr[16];
	__be16 peer_port;
	__be16 local_port;
	__u8 family; /* CASCADE_FAMILY_V4 or CASCADE_FAMILY_V6 */
	__u8 pad[3];
};

/* Key of the per-source STUN budget: a source address alone. */
struct cascade_source_key {
	__u8 addr[16];
	__u8 family;
	__u8 pad[3];
};

/* Token bucket of one source; `tokens` counts packets times 10^9. */
struct cascade_stun_bucket {
	__u64 tokens;
	__u64 last_ns;
};

/* CONFIG[0]: what the XDP guard and the TC fan-out judge. */
struct cascade_guard_config {
	__be16 media_port; /* 0: not configured, everything passes */
	__u16 pad;
	__u32 stun_rate;  /* STUN packets per second per source address; 0: no limit */
	__u32 stun_burst; /* bucket size, in packets */
	__u32 flags;      /* reserved, zero */
};

/* One cascade peer: where a clone goes and which addresses it carries. */
struct cascade_fanout_peer {
	__u8 peer_addr[16];  /* new destination address */
	__u8 local_addr[16]; /* new source address (ours) */
	__u8 peer_mac[6];    /* new destination MAC (next hop) */
	__u8 local_mac[6];   /* new source MAC (egress interface) */
	__be16 peer_port;
	__be16 local_port;
	__u32 ifindex; /* egress interface */
	__u8 family;
	__u8 pad[3];
};

/* FANOUT value: the peers a source's SRTP/SRTCP is cloned to. */
struct cascade_fanout_entry {
	struct cascade_fanout_peer peers[CASCADE_MAX_FANOUT_PEERS];
	__u32 count;
	__u32 flags; /* CASCADE_FANOUT_LOCAL_SUBSCRIBERS */
};

/* COUNTERS indices (a per-CPU array of __u64). The labels live in maps.rs. */
enum cascade_counter {
	CASCADE_GUARD_PASS_NOT_UDP = 0,
	CASCADE_GUARD_PASS_UNPARSED,
	CASCADE_GUARD_PASS_OTHER_PORT,
	CASCADE_GUARD_STUN_PASS,
	CASCADE_GUARD_STUN_OVER_BUDGET,
	CASCADE_GUARD_DTLS_ALLOWED,
	CASCADE_GUARD_DTLS_UNKNOWN_SOURCE,
	CASCADE_GUARD_MEDIA_ALLOWED,
	CASCADE_GUARD_MEDIA_UNKNOWN_SOURCE,
	CASCADE_GUARD_GARBAGE,
	CASCADE_GUARD_TRUNCATED,
	CASCADE_FANOUT_CLONES,
	CASCADE_FANOUT_CLONE_ERRORS,
	CASCADE_FANOUT_TO_USERSPACE,
	CASCADE_FANOUT_CONSUMED,
	CASCADE_FANOUT_SKIPPED,
	CASCADE_STEER_SELECTED,
	CASCADE_STEER_HASHED,
	CASCADE_STEER_FAILED,
	CASCADE_COUNTER_COUNT,
};

_Static_assert(sizeof(struct cascade_flow_key) == 40, "cascade_flow_key layout");
_Static_assert(sizeof(struct cascade_source_key) == 20, "cascade_source_key layout");
_Static_assert(sizeof(struct cascade_stun_bucket) == 16, "cascade_stun_bucket layout");
_Static_assert(sizeof(struct cascade_guard_config) == 16, "cascade_guard_config layout");
_Static_assert(sizeof(struct cascade_fanout_peer) == 56, "cascade_fanout_peer layout");
_Static_assert(sizeof(struct cascade_fanout_entry) == 56 * 32 + 8, "cascade_fanout_entry layout");
_Static_assert(CASCADE_COUNTER_COUNT == 19, "counter labels in maps.rs");

#endif /* CASCADE_MAPS_H */
