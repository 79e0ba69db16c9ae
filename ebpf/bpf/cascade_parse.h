/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ethernet / VLAN / IPv4 / IPv6 / UDP parsing with bounds checks, shared by the
 * XDP guard and the TC fan-out. It only reads; what a packet means is decided
 * by the programs. Every read is checked against `end`, and a packet cut before
 * its UDP destination port is reported as such, so the caller can pass what it
 * cannot judge.
 */
#ifndef CASCADE_PARSE_H
#define CASCADE_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "cascade_maps.h"

/* VLAN tags (802.1Q / 802.1ad) skipped before the IP header. */
#define CASCADE_MAX_VLAN_TAGS 2
/* IPv6 extension headers (hop-by-hop, routing, destination options) skipped. */
#define CASCADE_MAX_IPV6_EXT 4

enum cascade_parse_result {
	/* A complete UDP header: every field of `cascade_udp` is set. */
	CASCADE_PARSE_UDP = 0,
	/* Not IPv4/IPv6 UDP, or an IP fragment: not ours to judge. */
	CASCADE_PARSE_NOT_UDP,
	/* Cut before the UDP destination port: cannot tell whom it is for. */
	CASCADE_PARSE_UNPARSED,
	/* Ports known (sport, dport, l4_off set) but the UDP header is cut. */
	CASCADE_PARSE_UDP_CUT,
};

struct cascade_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct cascade_udp {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u16 udp_len; /* host order, from the UDP header */
	__u16 l3_off;
	__u16 l4_off;
	__u8 family;
	__u8 vlan_tags;
};

static __always_inline int cascade_parse_udp(void *data, void *end, struct cascade_udp *p)
{
	struct ethhdr *eth = data;
	__u32 off = sizeof(struct ethhdr);
	__be16 proto;

	if ((void *)(eth + 1) > end)
		return CASCADE_PARSE_UNPARSED;
	proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < CASCADE_MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct cascade_vlan_hdr *vh = data + off;
		if ((void *)(vh + 1) > end)
			return CASCADE_PARSE_UNPARSED;
		proto = vh->proto;
		off += sizeof(struct cascade_vlan_hdr);
		p->vlan_tags++;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		__u32 ihl;

		if ((void *)(ip + 1) > end)
			return CASCADE_PARSE_UNPARSED;
		if (ip->protocol != IPPROTO_UDP)
			return CASCADE_PARSE_NOT_UDP;
		/* More-fragments bit or a fragment offset: no (whole) UDP header. */
		if (ip->frag_off & bpf_htons(0x3fff))
			return CASCADE_PARSE_NOT_UDP;
		ihl = ip->ihl * 4;
		/* A malformed header is the IP stack's to drop. */
		if (ihl < sizeof(struct iphdr))
			return CASCADE_PARSE_NOT_UDP;
		p->family = CASCADE_FAMILY_V4;
		__builtin_memcpy(p->saddr, &ip->saddr, 4);
		__builtin_memcpy(p->daddr, &ip->daddr, 4);
		p->l3_off = off;
		off += ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		__u8 next;

		if ((void *)(ip6 + 1) > end)
			return CASCADE_PARSE_UNPARSED;
		p->family = CASCADE_FAMILY_V6;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		p->l3_off = off;
		next = ip6->nexthdr;
		off += sizeof(struct ipv6hdr);

#pragma unroll
		for (int i = 0; i < CASCADE_MAX_IPV6_EXT; i++) {
			if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
			    next != IPPROTO_DSTOPTS)
				break;
			struct ipv6_opt_hdr *oh = data + off;
			if ((void *)(oh + 1) > end)
				return CASCADE_PARSE_UNPARSED;
			next = oh->nexthdr;
			off += ((__u32)oh->hdrlen + 1) * 8;
		}
		/* Fragments and anything still unparsed are not ours to judge. */
		if (next != IPPROTO_UDP)
			return CASCADE_PARSE_NOT_UDP;
	} else {
		return CASCADE_PARSE_NOT_UDP;
	}

	struct udphdr *udp = data + off;
	p->l4_off = off;
	/* The destination port is the first thing we need: 4 bytes in. */
	if ((void *)udp + 4 > end)
		return CASCADE_PARSE_UNPARSED;
	p->sport = udp->source;
	p->dport = udp->dest;
	if ((void *)(udp + 1) > end)
		return CASCADE_PARSE_UDP_CUT;
	p->udp_len = bpf_ntohs(udp->len);
	return CASCADE_PARSE_UDP;
}

/* The incoming tuple as a flow key: the packet's source is our peer. */
static __always_inline void cascade_flow_from_packet(const struct cascade_udp *p,
						     struct cascade_flow_key *k)
{
	__builtin_memcpy(k->peer_addr, p->saddr, 16);
	__builtin_memcpy(k->local_addr, p->daddr, 16);
	k->peer_port = p->sport;
	k->local_port = p->dport;
	k->family = p->family;
}

#endif /* CASCADE_PARSE_H */
