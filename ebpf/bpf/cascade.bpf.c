// SPDX-License-Identifier: Apache-2.0
/*
 * Cascade's kernel programs, in one object so they share their maps:
 *
 *  - xdp_guard    (XDP): judges UDP packets to the media port by their first
 *                 byte (RFC 7983): STUN passes within a per-source budget,
 *                 DTLS and SRTP/SRTCP pass only from 5-tuples in ALLOW, the rest
 *                 is dropped. Anything it cannot parse or that is not for the
 *                 media port passes untouched.
 *  - sk_steer     (SK_REUSEPORT): sends a peer's packets to the worker socket
 *                 STEER names; unknown peers are left to the kernel's hash.
 *  - tc_fanout    (TC ingress): clones a cascade source's SRTP/SRTCP to each
 *                 peer in its FANOUT entry with rewritten addresses, ports and
 *                 checksums; the original goes up only if local subscribers want
 *                 it.
 *
 * The programs never decide policy: userspace fills ALLOW, STEER, FANOUT and
 * CONFIG, and reads COUNTERS.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <stddef.h>

#include "cascade_parse.h"

#define NS_PER_SEC 1000000000ull

/* RFC 7983 first-byte ranges. */
#define FIRST_STUN_MAX 3
#define FIRST_DTLS_MIN 20
#define FIRST_DTLS_MAX 63
#define FIRST_RTP_MIN 128
#define FIRST_RTP_MAX 191

#define STUN_HEADER_LEN 20
#define STUN_MAGIC_COOKIE 0x2112A442

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cascade_guard_config);
} CONFIG SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct cascade_flow_key);
	__type(value, __u32);
} ALLOW SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct cascade_source_key);
	__type(value, struct cascade_stun_bucket);
} STUN_BUDGET SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct cascade_flow_key);
	__type(value, __u32);
} STEER SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, CASCADE_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u32); /* a socket fd, from userspace */
} WORKERS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct cascade_flow_key);
	__type(value, struct cascade_fanout_entry);
} FANOUT SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CASCADE_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} COUNTERS SEC(".maps");

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&COUNTERS, &counter);
	if (value)
		*value += 1;
}

static __always_inline const struct cascade_guard_config *config(void)
{
	__u32 zero = 0;
	const struct cascade_guard_config *cfg = bpf_map_lookup_elem(&CONFIG, &zero);
	if (!cfg || !cfg->media_port)
		return NULL;
	return cfg;
}

/* ------------------------------------------------------------------------ */
/* XDP guard                                                                 */
/* ------------------------------------------------------------------------ */

/* The exact 5-tuple, or the same peer to any local address on our port. */
static __always_inline int flow_allowed(const struct cascade_udp *p)
{
	struct cascade_flow_key key = {};

	cascade_flow_from_packet(p, &key);
	if (bpf_map_lookup_elem(&ALLOW, &key))
		return 1;
	__builtin_memset(key.local_addr, 0, sizeof(key.local_addr));
	return bpf_map_lookup_elem(&ALLOW, &key) != NULL;
}

/*
 * Per-source token bucket: `stun_rate` packets per second, `stun_burst` at
 * once. Updates from several CPUs may race; the budget is approximate, never
 * unbounded.
 */
static __always_inline int stun_within_budget(const struct cascade_guard_config *cfg,
					      const struct cascade_udp *p)
{
	struct cascade_source_key key = {};
	struct cascade_stun_bucket *bucket;
	__u64 rate = cfg->stun_rate;
	__u64 burst = cfg->stun_burst ? cfg->stun_burst : 1;
	__u64 cap, now, elapsed, max_elapsed, tokens;

	if (!rate)
		return 1;
	cap = burst * NS_PER_SEC;
	__builtin_memcpy(key.addr, p->saddr, 16);
	key.family = p->family;
	now = bpf_ktime_get_ns();

	bucket = bpf_map_lookup_elem(&STUN_BUDGET, &key);
	if (!bucket) {
		struct cascade_stun_bucket fresh = {
			.tokens = cap - NS_PER_SEC,
			.last_ns = now,
		};
		/* A full LRU evicts; a failed insert only forgets this source. */
		bpf_map_update_elem(&STUN_BUDGET, &key, &fresh, BPF_ANY);
		return 1;
	}

	elapsed = now > bucket->last_ns ? now - bucket->last_ns : 0;
	/* Past this the bucket is full anyway; also keeps elapsed * rate small. */
	max_elapsed = cap / rate;
	if (elapsed > max_elapsed)
		elapsed = max_elapsed;
	tokens = bucket->tokens + elapsed * rate;
	if (tokens > cap)
		tokens = cap;
	bucket->last_ns = now;
	if (tokens < NS_PER_SEC) {
		bucket->tokens = tokens;
		return 0;
	}
	bucket->tokens = tokens - NS_PER_SEC;
	return 1;
}

static __always_inline int drop(__u32 counter)
{
	count(counter);
	return XDP_DROP;
}

static __always_inline int pass(__u32 counter)
{
	count(counter);
	return XDP_PASS;
}

SEC("xdp")
int xdp_guard(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	const struct cascade_guard_config *cfg = config();
	struct cascade_udp p = {};
	__u8 *payload;
	__u8 first;
	int parsed;

	if (!cfg)
		return XDP_PASS;

	parsed = cascade_parse_udp(data, end, &p);
	if (parsed == CASCADE_PARSE_NOT_UDP)
		return pass(CASCADE_GUARD_PASS_NOT_UDP);
	if (parsed == CASCADE_PARSE_UNPARSED)
		return pass(CASCADE_GUARD_PASS_UNPARSED);
	if (p.dport != cfg->media_port)
		return pass(CASCADE_GUARD_PASS_OTHER_PORT);
	/* From here on the packet is for the media port: judge it. */
	if (parsed == CASCADE_PARSE_UDP_CUT || p.udp_len <= sizeof(struct udphdr))
		return drop(CASCADE_GUARD_TRUNCATED);

	payload = data + p.l4_off + sizeof(struct udphdr);
	if ((void *)(payload + 1) > end)
		return drop(CASCADE_GUARD_TRUNCATED);
	first = payload[0];

	if (first <= FIRST_STUN_MAX) {
		__be32 cookie;

		if ((void *)(payload + STUN_HEADER_LEN) > end)
			return drop(CASCADE_GUARD_GARBAGE);
		__builtin_memcpy(&cookie, payload + 4, sizeof(cookie));
		if (cookie != bpf_htonl(STUN_MAGIC_COOKIE))
			return drop(CASCADE_GUARD_GARBAGE);
		/* Consent checks of established sessions do not spend the budget. */
		if (flow_allowed(&p) || stun_within_budget(cfg, &p))
			return pass(CASCADE_GUARD_STUN_PASS);
		return drop(CASCADE_GUARD_STUN_OVER_BUDGET);
	}
	if (first >= FIRST_DTLS_MIN && first <= FIRST_DTLS_MAX) {
		if (flow_allowed(&p))
			return pass(CASCADE_GUARD_DTLS_ALLOWED);
		return drop(CASCADE_GUARD_DTLS_UNKNOWN_SOURCE);
	}
	if (first >= FIRST_RTP_MIN && first <= FIRST_RTP_MAX) {
		if (flow_allowed(&p))
			return pass(CASCADE_GUARD_MEDIA_ALLOWED);
		return drop(CASCADE_GUARD_MEDIA_UNKNOWN_SOURCE);
	}
	return drop(CASCADE_GUARD_GARBAGE);
}

/* ------------------------------------------------------------------------ */
/* sk_reuseport steering                                                     */
/* ------------------------------------------------------------------------ */

SEC("sk_reuseport")
int sk_steer(struct sk_reuseport_md *md)
{
	struct cascade_flow_key key = {};
	__u32 *worker;
	__u32 index;

	if (md->ip_protocol != IPPROTO_UDP)
		return SK_PASS;
	if (md->eth_protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes_relative(md, offsetof(struct iphdr, saddr), key.peer_addr,
						4, BPF_HDR_START_NET))
			return SK_PASS;
		key.family = CASCADE_FAMILY_V4;
	} else if (md->eth_protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes_relative(md, offsetof(struct ipv6hdr, saddr), key.peer_addr,
						16, BPF_HDR_START_NET))
			return SK_PASS;
		key.family = CASCADE_FAMILY_V6;
	} else {
		return SK_PASS;
	}
	/* The data of a UDP reuseport lookup starts at the UDP header. */
	if (bpf_skb_load_bytes(md, offsetof(struct udphdr, source), &key.peer_port,
			       sizeof(key.peer_port)))
		return SK_PASS;

	worker = bpf_map_lookup_elem(&STEER, &key);
	if (!worker) {
		count(CASCADE_STEER_HASHED);
		return SK_PASS;
	}
	index = *worker;
	/* An empty slot or a socket of another group: the kernel hashes instead. */
	if (bpf_sk_select_reuseport(md, &WORKERS, &index, 0))
		count(CASCADE_STEER_FAILED);
	else
		count(CASCADE_STEER_SELECTED);
	return SK_PASS;
}

/* ------------------------------------------------------------------------ */
/* TC cascade fan-out                                                        */
/* ------------------------------------------------------------------------ */

/* The rewritable part of a packet: MACs, addresses, ports. */
struct header_tuple {
	__u8 macs[12]; /* destination then source, as in the Ethernet header */
	__u8 addrs[32]; /* source then destination; IPv4 uses addrs[0..8] */
	__be16 ports[2]; /* source, destination */
};

/*
 * Rewrites the packet from `cur` to `next`: Ethernet addresses, IP addresses
 * (and the IPv4 header checksum), UDP ports and the UDP checksum (addresses
 * through the pseudo-header, ports directly). A zero IPv4 UDP checksum stays
 * zero. Works on the skb through helpers, so it holds for any ip_summed state:
 * with CHECKSUM_PARTIAL only the pseudo-header seed is updated.
 */
static __always_inline int rewrite(struct __sk_buff *skb, __u8 family, __u32 l3_off,
				   __u32 l4_off, const struct header_tuple *cur,
				   const struct header_tuple *next)
{
	__u32 check_off = l4_off + offsetof(struct udphdr, check);
	__s64 addr_diff, port_diff;
	__u64 l4_flags;

	port_diff = bpf_csum_diff((__be32 *)cur->ports, 4, (__be32 *)next->ports, 4, 0);
	if (port_diff < 0)
		return -1;

	if (family == CASCADE_FAMILY_V4) {
		addr_diff = bpf_csum_diff((__be32 *)cur->addrs, 8, (__be32 *)next->addrs, 8, 0);
		if (addr_diff < 0)
			return -1;
		if (bpf_l3_csum_replace(skb, l3_off + offsetof(struct iphdr, check), 0, addr_diff,
					0))
			return -1;
		l4_flags = BPF_F_MARK_MANGLED_0;
		if (bpf_l4_csum_replace(skb, check_off, 0, addr_diff, l4_flags | BPF_F_PSEUDO_HDR))
			return -1;
		if (bpf_skb_store_bytes(skb, l3_off + offsetof(struct iphdr, saddr), next->addrs, 8,
					0))
			return -1;
	} else {
		addr_diff =
			bpf_csum_diff((__be32 *)cur->addrs, 32, (__be32 *)next->addrs, 32, 0);
		if (addr_diff < 0)
			return -1;
		/* BPF_F_IPV6 keeps skb->csum right; older kernels refuse the flag. */
		l4_flags = BPF_F_IPV6;
		if (bpf_l4_csum_replace(skb, check_off, 0, addr_diff, l4_flags | BPF_F_PSEUDO_HDR)) {
			l4_flags = 0;
			if (bpf_l4_csum_replace(skb, check_off, 0, addr_diff, BPF_F_PSEUDO_HDR))
				return -1;
		}
		if (bpf_skb_store_bytes(skb, l3_off + offsetof(struct ipv6hdr, saddr), next->addrs,
					32, 0))
			return -1;
	}

	if (bpf_l4_csum_replace(skb, check_off, 0, port_diff, l4_flags))
		return -1;
	if (bpf_skb_store_bytes(skb, l4_off, next->ports, 4, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, 0, next->macs, 12, 0))
		return -1;
	return 0;
}

static __always_inline void tuple_for_peer(const struct cascade_fanout_peer *peer,
					   struct header_tuple *t)
{
	__builtin_memcpy(t->macs, peer->peer_mac, 6);
	__builtin_memcpy(t->macs + 6, peer->local_mac, 6);
	if (peer->family == CASCADE_FAMILY_V4) {
		__builtin_memcpy(t->addrs, peer->local_addr, 4);
		__builtin_memcpy(t->addrs + 4, peer->peer_addr, 4);
	} else {
		__builtin_memcpy(t->addrs, peer->local_addr, 16);
		__builtin_memcpy(t->addrs + 16, peer->peer_addr, 16);
	}
	t->ports[0] = peer->local_port;
	t->ports[1] = peer->peer_port;
}

/* Parses the packet, pulling headers into the linear area once if needed. */
static __always_inline int tc_parse(struct __sk_buff *skb, struct cascade_udp *p, __u8 *first)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	int parsed = cascade_parse_udp(data, end, p);
	__u8 *payload;

	if (parsed == CASCADE_PARSE_UNPARSED || parsed == CASCADE_PARSE_UDP_CUT) {
		__u32 want = skb->len < 256 ? skb->len : 256;

		if (bpf_skb_pull_data(skb, want))
			return -1;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		__builtin_memset(p, 0, sizeof(*p));
		parsed = cascade_parse_udp(data, end, p);
	}
	if (parsed != CASCADE_PARSE_UDP)
		return -1;
	payload = data + p->l4_off + sizeof(struct udphdr);
	if ((void *)(payload + 1) > end)
		return -1;
	*first = payload[0];
	return 0;
}

SEC("classifier")
int tc_fanout(struct __sk_buff *skb)
{
	const struct cascade_guard_config *cfg = config();
	const struct cascade_fanout_entry *entry;
	struct cascade_flow_key key = {};
	struct header_tuple orig = {}, cur, next;
	struct cascade_udp p = {};
	__u8 first;
	__u32 n;

	if (!cfg)
		return TC_ACT_OK;
	if (tc_parse(skb, &p, &first))
		return TC_ACT_OK;
	if (p.dport != cfg->media_port || first < FIRST_RTP_MIN || first > FIRST_RTP_MAX)
		return TC_ACT_OK;

	__builtin_memcpy(key.peer_addr, p.saddr, 16);
	key.peer_port = p.sport;
	key.family = p.family;
	entry = bpf_map_lookup_elem(&FANOUT, &key);
	if (!entry)
		return TC_ACT_OK;

	/*
	 * Tagged frames and GRO-merged packets (several datagrams in one skb)
	 * cannot be rewritten as one datagram: userspace gets them.
	 */
	if (p.vlan_tags || skb->vlan_present || skb->gso_segs > 1) {
		count(CASCADE_FANOUT_SKIPPED);
		return TC_ACT_OK;
	}

	if (bpf_skb_load_bytes(skb, 0, orig.macs, 12))
		return TC_ACT_OK;
	if (p.family == CASCADE_FAMILY_V4) {
		__builtin_memcpy(orig.addrs, p.saddr, 4);
		__builtin_memcpy(orig.addrs + 4, p.daddr, 4);
	} else {
		__builtin_memcpy(orig.addrs, p.saddr, 16);
		__builtin_memcpy(orig.addrs + 16, p.daddr, 16);
	}
	orig.ports[0] = p.sport;
	orig.ports[1] = p.dport;
	cur = orig;

	n = entry->count;
	for (__u32 i = 0; i < CASCADE_MAX_FANOUT_PEERS; i++) {
		const struct cascade_fanout_peer *peer;

		if (i >= n)
			break;
		peer = &entry->peers[i];
		/* The loader never mixes families; a stale entry is skipped. */
		if (peer->family != p.family) {
			count(CASCADE_FANOUT_CLONE_ERRORS);
			continue;
		}
		__builtin_memset(&next, 0, sizeof(next));
		tuple_for_peer(peer, &next);
		if (rewrite(skb, p.family, p.l3_off, p.l4_off, &cur, &next)) {
			/* Headers may be half rewritten: nothing may go up. */
			count(CASCADE_FANOUT_CLONE_ERRORS);
			return TC_ACT_SHOT;
		}
		cur = next;
		if (bpf_clone_redirect(skb, peer->ifindex, 0))
			count(CASCADE_FANOUT_CLONE_ERRORS);
		else
			count(CASCADE_FANOUT_CLONES);
	}

	if (!(entry->flags & CASCADE_FANOUT_LOCAL_SUBSCRIBERS)) {
		count(CASCADE_FANOUT_CONSUMED);
		return TC_ACT_SHOT;
	}
	if (rewrite(skb, p.family, p.l3_off, p.l4_off, &cur, &orig)) {
		count(CASCADE_FANOUT_CLONE_ERRORS);
		return TC_ACT_SHOT;
	}
	count(CASCADE_FANOUT_TO_USERSPACE);
	return TC_ACT_OK;
}
