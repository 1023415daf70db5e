/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark-only XDP programs: the reference points the sensor's per-packet
 * cost is compared with (bench/kernel_cost.py).  Never attached anywhere.
 *
 *   mf_noop  returns XDP_PASS and does nothing else.
 *   mf_parse ns_parse() (bpf/parse.h, the sensor's parser) and nothing else.
 *   mf_flow  the minimal flow counter of flow-export agents: parse, then one
 *            per-CPU hash lookup of the 5-tuple; increment packets and bytes,
 *            or insert the entry when missing.
 *
 * Knobs (-D) that add one piece of the sensor's hot path at a time, so the
 * benchmark can attribute its cost:
 *   MF_KTIME    a 48-byte value with first/last timestamps (bpf_ktime_get_ns
 *               per packet), like struct ns_flow
 *   MF_COARSE   with MF_KTIME: bpf_ktime_get_coarse_ns() instead (tick
 *               resolution, no clock read)
 *   MF_TOTALS   count the packet in a per-CPU totals array slot, like ns_totals
 *
 * Requires -DMF_CAPACITY=<entries> and -I<repo>/bpf.
 */
#include <uapi/linux/bpf.h>

#include "netspectra.h"
#include "parse.h"

#ifndef MF_CAPACITY
#error "MF_CAPACITY must be set with -D"
#endif

#ifdef MF_KTIME
typedef struct ns_flow mf_val;
#else
struct mf_counter {
	__u64 packets;
	__u64 bytes;
};
typedef struct mf_counter mf_val;
#endif

BPF_F_TABLE("percpu_hash", struct ns_key, mf_val, mf_flows, MF_CAPACITY, 0);
#ifdef MF_TOTALS
BPF_PERCPU_ARRAY(mf_totals, struct ns_counter, 1);
#endif

int mf_noop(struct xdp_md *ctx)
{
	return XDP_PASS;
}

int mf_parse(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ns_pkt p = {};
	ns_parse(&p, data, end);
	/* Use every parsed field so the compiler keeps the whole parse. */
	u64 x = p.outcome ^ ((u64)p.proto_class << 8) ^ ((u64)p.events << 16) ^ ((u64)p.tcp_flags << 40) ^
		((u64)p.icmp_type << 48) ^ ((u64)p.icmp_code << 56);
#pragma unroll
	for (int i = 0; i < NS_KEY_WORDS; i++)
		x ^= p.key.w[i];
	return x == 0x5a5a5a5a5a5a5a5aULL ? XDP_DROP : XDP_PASS;
}

int mf_flow(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	u64 len = end - data;
	struct ns_pkt p = {};
	ns_parse(&p, data, end);
#ifdef MF_TOTALS
	u32 zero = 0;
	struct ns_counter *tot = mf_totals.lookup(&zero);
	if (tot) {
		tot->packets++;
		tot->bytes += len;
	}
#endif
	if (p.outcome != NS_C_OUT_IPV4 && p.outcome != NS_C_OUT_IPV6)
		return XDP_PASS;

	mf_val *v = mf_flows.lookup(&p.key.k);
#ifdef MF_KTIME
#ifdef MF_COARSE
	u64 now = bpf_ktime_get_coarse_ns();
#else
	u64 now = bpf_ktime_get_ns();
#endif
	if (v) {
		v->packets++;
		v->bytes += len;
		v->last_ns = now;
		v->tcp_flags |= p.tcp_flags;
	} else {
		mf_val fresh = {.packets = 1, .bytes = len, .first_ns = now, .last_ns = now, .tcp_flags = p.tcp_flags};
		mf_flows.update(&p.key.k, &fresh);
	}
#else
	if (v) {
		v->packets++;
		v->bytes += len;
	} else {
		mf_val fresh = {.packets = 1, .bytes = len};
		mf_flows.update(&p.key.k, &fresh);
	}
#endif
	return XDP_PASS;
}
