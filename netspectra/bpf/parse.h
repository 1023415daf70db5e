/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packet parser of the XDP program.
 *
 * ns_parse() reads one frame and fills struct ns_pkt.  It never reads past
 * data_end and never fails: every frame gets exactly one outcome
 * (NS_C_OUT_*); only NS_C_OUT_IPV4/IPV6 frames carry a 5-tuple.  What it
 * decodes, and how it attributes what it cannot:
 *   Ethernet, then up to NS_MAX_VLAN 802.1Q/802.1ad tags (more: VLAN_DEPTH),
 *   then IPv4/IPv6, or a PPPoE session header (PPP IPv4 0x0021 / IPv6 0x0057;
 *   other PPP protocols are NON_IP), or an MPLS label stack of up to
 *   NS_MAX_MPLS labels (deeper: VLAN_DEPTH) whose payload is IPv4/IPv6 by its
 *   version nibble (anything else NON_IP).  A VLAN tag, PPPoE header or MPLS
 *   label cut off is TRUNC_VLAN: TRUNC_VLAN and VLAN_DEPTH keep their names
 *   (counter slots, metrics, stored epochs) and cover every L2 shim.
 *   IPv4 with options; IPv6 with up to NS_MAX_IPV6_EXT hop-by-hop, routing,
 *   fragment and destination-options headers.  AH, ESP and anything else
 *   end the walk and are the flow's protocol.  If the chain is cut off or too
 *   long, the last next-header read is the protocol, ports are 0/0.
 *   Fragments (both families): the first fragment carries the ports; later
 *   fragments count under (src, dst, proto, 0, 0).  An IPv6 atomic fragment
 *   (offset 0, M=0) is not a fragment.  This is what tshark shows without
 *   reassembly, so offline and live counts agree per 5-tuple.
 *   TCP/UDP/SCTP ports when their 4 bytes are inside both the frame and the
 *   IP datagram (its length field; Ethernet padding is not a header), as
 *   tshark reads them, else 0/0; TCP flags, ICMP/ICMPv6 type and code only
 *   when the whole header is there.  A header cut short is L4_TRUNC.
 *   Outer addresses win: tunnels are counted under their outer header.
 */
#ifndef NETSPECTRA_PARSE_H
#define NETSPECTRA_PARSE_H

#ifdef NS_USERSPACE
/* The offline analyzer compiles this same parser (netspectra/parse_user.h). */
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#else
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>
#endif

#include "netspectra.h"

#define NS_IPPROTO_ICMPV6 58
#define NS_IPPROTO_SCTP 132
#define NS_IP6_HOPOPTS 0
#define NS_IP6_ROUTING 43
#define NS_IP6_FRAGMENT 44
#define NS_IP6_DSTOPTS 60
#define NS_ETH_P_PPP_SES 0x8864
#define NS_ETH_P_MPLS_UC 0x8847
#define NS_ETH_P_MPLS_MC 0x8848
#define NS_PPP_IP 0x0021
#define NS_PPP_IPV6 0x0057

struct ns_vlan {
	__be16 tci;
	__be16 proto;
};

/* PPPoE session header (RFC 2516) and the PPP protocol field after it. */
struct ns_pppoe {
	__u8 ver_type;
	__u8 code;
	__be16 session;
	__be16 length;
	__be16 ppp_proto;
};

struct ns_ip6_ext {
	__u8 nexthdr;
	__u8 len;       /* in 8-byte units, not counting the first 8 bytes */
};

struct ns_ip6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | M */
	__be32 id;
};

union ns_keyw {
	struct ns_key k;
	__u64 w[NS_KEY_WORDS];
};

struct ns_pkt {
	union ns_keyw key;
	__u32 outcome;      /* NS_C_OUT_* */
	__u32 proto_class;  /* NS_C_PROTO_*, for IP */
	__u32 events;       /* bit (NS_C_x - NS_C_FRAG_FIRST) per event */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 pad;
};

#define NS_EV(c) (1u << ((c) - NS_C_FRAG_FIRST))

/* room: bytes of the IP datagram from l4 on (its length field), so Ethernet
 * padding is never read as a header; NS_ROOM_ANY when the length is 0
 * (TSO/BIG TCP, jumbograms).  Every read is also checked against end for the
 * verifier. */
#define NS_ROOM_ANY 0xffffffffU

/* TCP/UDP/SCTP: the ports whenever their 4 bytes are inside both the frame
 * and the datagram (as tshark reads them); a header shorter than `hlen` is
 * still L4_TRUNC.  Returns 1 when the whole header is there, and only then
 * may the caller read past the ports (the verifier knows th + hlen <= end). */
static __always_inline int ns_ports(struct ns_pkt *p, void *l4, void *end, __u32 room, __u32 hlen)
{
	__be16 *ports = l4;
	if (l4 + 4 <= end && room >= 4) {
		p->key.k.sport = bpf_ntohs(ports[0]);
		p->key.k.dport = bpf_ntohs(ports[1]);
	}
	if (l4 + hlen > end || room < hlen) {
		p->events |= NS_EV(NS_C_L4_TRUNC);
		return 0;
	}
	return 1;
}

static __always_inline void ns_l4(struct ns_pkt *p, void *l4, void *end, __u8 proto, __u32 room)
{
	p->key.k.proto = proto;
	switch (proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;
		p->proto_class = NS_C_PROTO_TCP;
		if (ns_ports(p, l4, end, room, sizeof(*th)))
			p->tcp_flags = ((__u8 *)th)[13];
		return;
	}
	case IPPROTO_UDP:
		p->proto_class = NS_C_PROTO_UDP;
		ns_ports(p, l4, end, room, sizeof(struct udphdr));
		return;
	case NS_IPPROTO_SCTP:
		p->proto_class = NS_C_PROTO_SCTP;
		ns_ports(p, l4, end, room, 12); /* SCTP common header */
		return;
	case IPPROTO_ICMP:
	case NS_IPPROTO_ICMPV6: {
		__u8 *ih = l4;
		p->proto_class = proto == IPPROTO_ICMP ? NS_C_PROTO_ICMP : NS_C_PROTO_ICMPV6;
		if (l4 + 4 > end || room < 4)
			goto trunc;
		p->icmp_type = ih[0];
		p->icmp_code = ih[1];
		return;
	}
	default:
		p->proto_class = NS_C_PROTO_OTHER;
		return;
	}
trunc:
	p->events |= NS_EV(NS_C_L4_TRUNC);
}

static __always_inline void ns_proto_only(struct ns_pkt *p, __u8 proto)
{
	p->key.k.proto = proto;
	switch (proto) {
	case IPPROTO_TCP: p->proto_class = NS_C_PROTO_TCP; break;
	case IPPROTO_UDP: p->proto_class = NS_C_PROTO_UDP; break;
	case NS_IPPROTO_SCTP: p->proto_class = NS_C_PROTO_SCTP; break;
	case IPPROTO_ICMP: p->proto_class = NS_C_PROTO_ICMP; break;
	case NS_IPPROTO_ICMPV6: p->proto_class = NS_C_PROTO_ICMPV6; break;
	default: p->proto_class = NS_C_PROTO_OTHER;
	}
}

static __always_inline void ns_parse_ipv4(struct ns_pkt *p, void *data, __u32 off, void *end)
{
	struct iphdr *ip = data + off;
	if ((void *)(ip + 1) > end) {
		p->outcome = NS_C_OUT_TRUNC_IP;
		return;
	}
	if (ip->version != 4 || ip->ihl < 5) {
		p->outcome = NS_C_OUT_BAD_IPV4;
		return;
	}
	__u32 hlen = ip->ihl * 4;
	void *l4 = (void *)ip + hlen;
	if (l4 > end) {
		p->outcome = NS_C_OUT_TRUNC_IP;
		return;
	}
	p->outcome = NS_C_OUT_IPV4;
	if (hlen > 20)
		p->events |= NS_EV(NS_C_IPV4_OPTIONS);
	p->key.k.src[10] = 0xff;
	p->key.k.src[11] = 0xff;
	p->key.k.dst[10] = 0xff;
	p->key.k.dst[11] = 0xff;
	__builtin_memcpy(&p->key.k.src[12], &ip->saddr, 4);
	__builtin_memcpy(&p->key.k.dst[12], &ip->daddr, 4);

	__u16 frag = bpf_ntohs(ip->frag_off);
	if (frag & 0x1fff) {
		p->events |= NS_EV(NS_C_FRAG_LATER);
		ns_proto_only(p, ip->protocol);
		return;
	}
	if (frag & 0x2000)
		p->events |= NS_EV(NS_C_FRAG_FIRST);
	__u32 tot = bpf_ntohs(ip->tot_len);
	ns_l4(p, l4, end, ip->protocol, tot == 0 ? NS_ROOM_ANY : tot >= hlen ? tot - hlen : 0);
}

static __always_inline void ns_parse_ipv6(struct ns_pkt *p, void *data, __u32 off, void *end)
{
	struct ipv6hdr *ip6 = data + off;
	if ((void *)(ip6 + 1) > end) {
		p->outcome = NS_C_OUT_TRUNC_IP;
		return;
	}
	if (ip6->version != 6) {
		p->outcome = NS_C_OUT_BAD_IPV6;
		return;
	}
	p->outcome = NS_C_OUT_IPV6;
	__builtin_memcpy(p->key.k.src, &ip6->saddr, 16);
	__builtin_memcpy(p->key.k.dst, &ip6->daddr, 16);

	__u8 nh = ip6->nexthdr;
	void *hdr = ip6 + 1;
	int later = 0;
#pragma unroll
	for (int i = 0; i < NS_MAX_IPV6_EXT; i++) {
		if (nh == NS_IP6_HOPOPTS || nh == NS_IP6_ROUTING || nh == NS_IP6_DSTOPTS) {
			struct ns_ip6_ext *e = hdr;
			if ((void *)(e + 1) > end)
				goto ext_trunc;
			nh = e->nexthdr;
			hdr += (e->len + 1) * 8;
		} else if (nh == NS_IP6_FRAGMENT) {
			struct ns_ip6_frag *f = hdr;
			if ((void *)(f + 1) > end)
				goto ext_trunc;
			nh = f->nexthdr;
			__u16 fo = bpf_ntohs(f->frag_off);
			if (fo & 0xfff8) {
				/* A later fragment's payload is the middle of the
				 * original packet, not a header: stop here. */
				later = 1;
				break;
			} else if (fo & 1) {
				p->events |= NS_EV(NS_C_FRAG_FIRST);
			}
			hdr += sizeof(*f);
		} else {
			break;
		}
	}
	if (later) {
		p->events |= NS_EV(NS_C_FRAG_LATER);
		ns_proto_only(p, nh);
		return;
	}
	if (nh == NS_IP6_HOPOPTS || nh == NS_IP6_ROUTING || nh == NS_IP6_DSTOPTS || nh == NS_IP6_FRAGMENT) {
		p->events |= NS_EV(NS_C_IPV6_EXT_LIMIT);
		ns_proto_only(p, nh);
		return;
	}
	if (hdr > end)
		goto ext_trunc;
	__u32 plen = bpf_ntohs(ip6->payload_len);
	__u32 used = hdr - (void *)(ip6 + 1);
	ns_l4(p, hdr, end, nh, plen == 0 ? NS_ROOM_ANY : plen >= used ? plen - used : 0);
	return;
ext_trunc:
	p->events |= NS_EV(NS_C_IPV6_EXT_TRUNC);
	ns_proto_only(p, nh);
}

/* From an ethertype at data + off: VLAN tags, then a PPPoE session header or
 * an MPLS label stack, then IPv4/IPv6.  Every path ends in the one call of
 * each IP parser at the bottom: inlined once, not once per path. */
static __always_inline void ns_parse_ethertype(struct ns_pkt *p, void *data, __u32 off, void *end, __be16 proto)
{
#pragma unroll
	for (int i = 0; i < NS_MAX_VLAN; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct ns_vlan *v = data + off;
		if ((void *)(v + 1) > end) {
			p->outcome = NS_C_OUT_TRUNC_VLAN;
			return;
		}
		proto = v->proto;
		off += sizeof(*v);
	}
	if (proto == bpf_htons(NS_ETH_P_PPP_SES)) {
		struct ns_pppoe *s = data + off;
		if ((void *)(s + 1) > end) {
			p->outcome = NS_C_OUT_TRUNC_VLAN;
			return;
		}
		off += sizeof(*s);
		if (s->ppp_proto == bpf_htons(NS_PPP_IP))
			proto = bpf_htons(ETH_P_IP);
		else if (s->ppp_proto == bpf_htons(NS_PPP_IPV6))
			proto = bpf_htons(ETH_P_IPV6);
		else
			proto = 0; /* LCP, IPCP, ...: not IP */
	} else if (proto == bpf_htons(NS_ETH_P_MPLS_UC) || proto == bpf_htons(NS_ETH_P_MPLS_MC)) {
		int bottom = 0;
#pragma unroll
		for (int i = 0; i < NS_MAX_MPLS; i++) {
			__u8 *l = data + off;
			if ((void *)(l + 4) > end) {
				p->outcome = NS_C_OUT_TRUNC_VLAN;
				return;
			}
			off += 4;
			if (l[2] & 1) {
				bottom = 1;
				break;
			}
		}
		if (!bottom) {
			p->outcome = NS_C_OUT_VLAN_DEPTH;
			return;
		}
		/* No type field: the version nibble tells (a pseudowire control
		 * word, 0, is not IP). */
		__u8 *v = data + off;
		if ((void *)(v + 1) > end) {
			p->outcome = NS_C_OUT_TRUNC_IP;
			return;
		}
		proto = *v >> 4 == 4 ? bpf_htons(ETH_P_IP) : *v >> 4 == 6 ? bpf_htons(ETH_P_IPV6) : 0;
	}
	if (proto == bpf_htons(ETH_P_IP))
		ns_parse_ipv4(p, data, off, end);
	else if (proto == bpf_htons(ETH_P_IPV6))
		ns_parse_ipv6(p, data, off, end);
	else if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		p->outcome = NS_C_OUT_VLAN_DEPTH;
	else
		p->outcome = NS_C_OUT_NON_IP;
}

/* An Ethernet frame. */
static __always_inline void ns_parse(struct ns_pkt *p, void *data, void *end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end) {
		p->outcome = NS_C_OUT_TRUNC_ETH;
		return;
	}
	ns_parse_ethertype(p, data, sizeof(*eth), end, eth->h_proto);
}

#endif /* NETSPECTRA_PARSE_H */
