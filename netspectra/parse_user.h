/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Userspace build of the XDP parser (netspectra/bpf/parse.h) for the offline analyzer
 * (netspectra/_pcap.pxi).  The parser is the same source the kernel runs;
 * this shim only supplies what the BPF build gets from bcc, and adds the
 * link-layer dispatch a capture file needs (XDP only ever sees Ethernet).
 *
 * Build: setup.py puts netspectra/bpf/ and netspectra/ on the include path.
 */
#ifndef NETSPECTRA_PARSE_USER_H
#define NETSPECTRA_PARSE_USER_H

#include <linux/types.h>
#include <arpa/inet.h>
#include <string.h>

#define NS_USERSPACE 1
#ifndef bpf_ntohs
#define bpf_ntohs(x) ntohs(x)
#endif
#ifndef bpf_htons
#define bpf_htons(x) htons(x)
#endif
#ifdef __always_inline
#undef __always_inline
#endif
#define __always_inline inline __attribute__((always_inline))

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#pragma GCC diagnostic ignored "-Wpointer-arith"
#include "parse.h"
#pragma GCC diagnostic pop

/* Link types (https://www.tcpdump.org/linktypes.html). */
#define NS_LT_NULL 0
#define NS_LT_ETHERNET 1
#define NS_LT_RAW_12 12   /* DLT_RAW as most BSDs number it, written as-is by some tools */
#define NS_LT_RAW_14 14   /* DLT_RAW as OpenBSD numbers it */
#define NS_LT_RAW 101
#define NS_LT_LOOP 108
#define NS_LT_LINUX_SLL 113
#define NS_LT_IPV4 228
#define NS_LT_IPV6 229
#define NS_LT_LINUX_SLL2 276

/* Is `lt` a link type ns_parse_link() decodes? */
static inline int ns_link_supported(__u32 lt)
{
	switch (lt) {
	case NS_LT_NULL: case NS_LT_ETHERNET: case NS_LT_RAW: case NS_LT_RAW_12: case NS_LT_RAW_14: case NS_LT_LOOP:
	case NS_LT_LINUX_SLL: case NS_LT_IPV4: case NS_LT_IPV6: case NS_LT_LINUX_SLL2:
		return 1;
	}
	return 0;
}

/* BSD loopback address family -> outcome of the payload's family. */
static inline int ns_af_family(__u32 af)
{
	if (af == 2)
		return 4;
	if (af == 10 || af == 24 || af == 28 || af == 30)
		return 6;  /* Linux, NetBSD/OpenBSD, FreeBSD, Darwin AF_INET6 */
	return 0;
}

static inline void ns_parse_ip_at(struct ns_pkt *p, void *data, __u32 off, void *end, int family)
{
	if (family == 4)
		ns_parse_ipv4(p, data, off, end);
	else if (family == 6)
		ns_parse_ipv6(p, data, off, end);
	else
		p->outcome = NS_C_OUT_NON_IP;
}

/*
 * Parse one captured frame of link type `lt` (must be supported).  `p` must
 * be zeroed by the caller.  A frame shorter than its link-layer header is
 * NS_C_OUT_TRUNC_ETH, whatever the link type.
 */
static inline void ns_parse_link(struct ns_pkt *p, __u32 lt, void *data, void *end)
{
	__u8 *d = data;
	__u32 len = (__u32)((__u8 *)end - d);
	switch (lt) {
	case NS_LT_ETHERNET:
		ns_parse(p, data, end);
		return;
	case NS_LT_LINUX_SLL: {
		__be16 proto;
		if (len < 16) {
			p->outcome = NS_C_OUT_TRUNC_ETH;
			return;
		}
		memcpy(&proto, d + 14, 2);
		ns_parse_ethertype(p, data, 16, end, proto);
		return;
	}
	case NS_LT_LINUX_SLL2: {
		__be16 proto;
		if (len < 20) {
			p->outcome = NS_C_OUT_TRUNC_ETH;
			return;
		}
		memcpy(&proto, d, 2);
		ns_parse_ethertype(p, data, 20, end, proto);
		return;
	}
	case NS_LT_RAW:
	case NS_LT_RAW_12:
	case NS_LT_RAW_14:
		if (len < 1) {
			p->outcome = NS_C_OUT_TRUNC_IP;
			return;
		}
		ns_parse_ip_at(p, data, 0, end, d[0] >> 4);
		return;
	case NS_LT_IPV4:
		ns_parse_ipv4(p, data, 0, end);
		return;
	case NS_LT_IPV6:
		ns_parse_ipv6(p, data, 0, end);
		return;
	case NS_LT_NULL: {
		/* Host order of the machine that wrote the file: try both. */
		__u32 af;
		int fam;
		if (len < 4) {
			p->outcome = NS_C_OUT_TRUNC_ETH;
			return;
		}
		af = (__u32)d[0] | (__u32)d[1] << 8 | (__u32)d[2] << 16 | (__u32)d[3] << 24;
		fam = ns_af_family(af);
		if (!fam)
			fam = ns_af_family(__builtin_bswap32(af));
		if (!fam) {
			/* Some writers put an Ethernet type in the second 16-bit
			 * word (Wireshark reads it the same way). */
			__u16 et = (__u16)(d[2] << 8 | d[3]);
			fam = et == ETH_P_IP ? 4 : et == ETH_P_IPV6 ? 6 : 0;
		}
		ns_parse_ip_at(p, data, 4, end, fam);
		return;
	}
	case NS_LT_LOOP: {
		__u32 af;
		if (len < 4) {
			p->outcome = NS_C_OUT_TRUNC_ETH;
			return;
		}
		af = (__u32)d[0] << 24 | (__u32)d[1] << 16 | (__u32)d[2] << 8 | (__u32)d[3];
		ns_parse_ip_at(p, data, 4, end, ns_af_family(af));
		return;
	}
	}
	p->outcome = NS_C_OUT_NON_IP;
}

#endif /* NETSPECTRA_PARSE_USER_H */
