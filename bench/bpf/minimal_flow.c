/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark-only XDP programs: the reference points the sensor's per-packet
 * cost is compared with (bench/kernel_cost.py).  Never attached anywhere.
 *
 *   mf_noop  returns XDP_PASS and does nothing else.
 *   mf_parse ns_parse() (netspectra/bpf/parse.h, the sensor's parser) and nothing else.
 *   mf_flow  the minimal flow counter of flow-export agents: parse, then one
 *            per-CPU hash lookup of the 5-tuple; increment packets and bytes,
 *            or insert the entry when missing.
 *   mf_tab   the same counter in a table like the sensor's (with -DMF_SLOTS and
 *            -DMF_NCPUS): a BPF_F_MMAPABLE array sliced per CPU, open
 *            addressing with linear probing over struct ns_flow slots, a slot
 *            free when its generation is not mf_gen's: the flow table design
 *            alone, next to the per-CPU hash, with nothing else of the sensor.
 *
 * Knobs (-D) that add one piece of the sensor's hot path at a time, so the
 * benchmark can attribute its cost:
 *   MF_KTIME    a 40-byte value with first/last timestamps (bpf_ktime_get_ns
 *               per packet), as the sensor's per-CPU hash had
 *   MF_COARSE   with MF_KTIME: bpf_ktime_get_coarse_ns() instead (tick
 *               resolution, no clock read)
 *   MF_TOTALS   count the packet in a per-CPU totals array slot, like ns_totals
 *
 * Requires -DMF_CAPACITY=<entries> and -I<repo>/netspectra/bpf.
 */
#include <uapi/linux/bpf.h>

#include "netspectra.h"
#include "parse.h"

#ifndef MF_CAPACITY
#error "MF_CAPACITY must be set with -D"
#endif

#ifdef MF_KTIME
struct mf_timed { /* the per-flow value the sensor had in a per-CPU hash */
	__u64 packets;
	__u64 bytes;
	__u64 first_ns;
	__u64 last_ns;
	__u8 tcp_flags;
	__u8 pad[7];
};
typedef struct mf_timed mf_val;
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

#ifdef MF_SLOTS
BPF_F_TABLE("array", u32, struct ns_flow, mf_table, MF_NCPUS * MF_SLOTS, BPF_F_MMAPABLE);
BPF_ARRAY(mf_gen, u32, 1);

int mf_tab(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	u64 len = end - data;
	u32 zero = 0, cpu = bpf_get_smp_processor_id();
	struct ns_pkt p = {};
	ns_parse(&p, data, end);
	if (p.outcome != NS_C_OUT_IPV4 && p.outcome != NS_C_OUT_IPV6 || cpu >= MF_NCPUS)
		return XDP_PASS;
	u32 *g = mf_gen.lookup(&zero);
	u32 gen = g ? *g : 1;
	u64 h = 0;
#pragma unroll
	for (int i = 0; i < NS_KEY_WORDS; i++) {
		h = (h ^ p.key.w[i]) * NS_HASH_MUL;
		h ^= h >> 32;
	}
	h ^= h >> 33;
	h *= NS_FMIX_1;
	h ^= h >> 33;
	h *= NS_FMIX_2;
	h ^= h >> 33;
	for (u32 i = 0; i < NS_FLOW_PROBES; i++) {
		u32 idx = cpu * MF_SLOTS + (((u32)h + i) & (MF_SLOTS - 1));
		struct ns_flow *f = mf_table.lookup(&idx);
		if (!f)
			return XDP_PASS;
		u64 *k = (u64 *)&f->key;
		if (f->gen != gen) {
#pragma unroll
			for (int j = 0; j < NS_KEY_WORDS; j++)
				k[j] = p.key.w[j];
			f->gen = gen;
			f->packets = 1;
			f->bytes = len;
			return XDP_PASS;
		}
		if (k[0] == p.key.w[0] && k[1] == p.key.w[1] && k[2] == p.key.w[2] && k[3] == p.key.w[3] &&
		    k[4] == p.key.w[4]) {
			f->packets++;
			f->bytes += len;
			return XDP_PASS;
		}
	}
	return XDP_PASS;
}
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
