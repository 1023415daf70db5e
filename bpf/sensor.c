/* SPDX-License-Identifier: Apache-2.0 */
/*
 * netspectra XDP program: count every frame, never drop one.
 *
 *   1. parse the frame (parse.h) into a 5-tuple and an outcome;
 *   2. count it in this CPU's totals of the active map set;
 *   3. count it in the exact flow table of the active set (when full: counted
 *      as untracked, never evicted);
 *   4. update every configured sketch task (Count-Min rows, SuperSpread
 *      registers) in this CPU's slice, and report a Count-Min key to the ring
 *      buffer when its per-CPU estimate reaches the task's per-CPU threshold.
 *
 * The agent flips ns_ctl.active each epoch, then updates ns_barrier, which
 * returns only after every program that might still use the old set has
 * finished (an RCU grace period), so it reads a set nobody writes.
 *
 * Compile-time sizes (bcc -D flags, all required): NS_NCPUS, NS_CM_CELLS,
 * NS_SS_BLOCKS, NS_FLOW_CAPACITY, NS_RINGBUF_PAGES.
 */
#include <uapi/linux/bpf.h>

#include "netspectra.h"
#include "parse.h"

#if !defined(NS_NCPUS) || !defined(NS_CM_CELLS) || !defined(NS_SS_BLOCKS) || !defined(NS_FLOW_CAPACITY) || \
	!defined(NS_RINGBUF_PAGES)
#error "netspectra: NS_NCPUS, NS_CM_CELLS, NS_SS_BLOCKS, NS_FLOW_CAPACITY and NS_RINGBUF_PAGES must be set with -D"
#endif

/* Flow timestamps: CLOCK_MONOTONIC, or its tick-resolution variant, which
 * costs a few ns less per packet (sensor.timestamps: coarse). */
#ifdef NS_COARSE_CLOCK
#define NS_NOW() bpf_ktime_get_coarse_ns()
#else
#define NS_NOW() bpf_ktime_get_ns()
#endif

BPF_F_TABLE("array", u32, struct ns_ctl, ns_ctl, 1, BPF_F_MMAPABLE);
BPF_ARRAY(ns_cfg, struct ns_config, 1);
BPF_F_TABLE("array", u32, struct ns_totals, ns_totals, NS_NSETS * NS_NCPUS, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct ns_counter, ns_cm, NS_NSETS * NS_NCPUS * NS_CM_CELLS, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct ns_regs, ns_ss, NS_NSETS * NS_NCPUS * NS_SS_BLOCKS, BPF_F_MMAPABLE);
/* No LRU: a full table must not evict exact data (counted as untracked). */
BPF_F_TABLE("percpu_hash", struct ns_key, struct ns_flow, ns_flows0, NS_FLOW_CAPACITY, 0);
BPF_F_TABLE("percpu_hash", struct ns_key, struct ns_flow, ns_flows1, NS_FLOW_CAPACITY, 0);
BPF_RINGBUF_OUTPUT(ns_cand, NS_RINGBUF_PAGES);
BPF_ARRAY(ns_barrier_inner, u32, 1);
BPF_ARRAY_OF_MAPS(ns_barrier, "ns_barrier_inner", 1);

/* Fold the words a field set selects (see netspectra.h for the definition). */
static __always_inline u64 ns_fold(const u64 *w, const u64 *mask)
{
	u64 h = 0;
#pragma unroll
	for (int i = 0; i < NS_KEY_WORDS; i++) {
		if (mask[i]) {
			h = (h ^ (w[i] & mask[i])) * NS_HASH_MUL;
			h ^= h >> 32;
		}
	}
	return h;
}

/* A task's 64-bit hash: its field set's fold remixed with its seed.  Rows
 * are sliced from it as h1 + i*h2. */
static __always_inline u64 ns_fmix(u64 h)
{
	h ^= h >> 33;
	h *= NS_FMIX_1;
	h ^= h >> 33;
	h *= NS_FMIX_2;
	h ^= h >> 33;
	return h;
}

/* Trailing zeros of a non-zero word (BPF has no ctz instruction). */
static __always_inline u32 ns_ctz64(u64 x)
{
	u32 n = 0;
	if (!(x & 0xffffffffULL)) { n += 32; x >>= 32; }
	if (!(x & 0xffff)) { n += 16; x >>= 16; }
	if (!(x & 0xff)) { n += 8; x >>= 8; }
	if (!(x & 0xf)) { n += 4; x >>= 4; }
	if (!(x & 0x3)) { n += 2; x >>= 2; }
	if (!(x & 0x1)) n += 1;
	return n;
}

static __always_inline void ns_emit(struct ns_task *task, u32 t, u32 set, u32 cpu, const u64 *w,
				    struct ns_totals *tot)
{
	struct ns_cand *c = ns_cand.ringbuf_reserve(sizeof(struct ns_cand));
	if (!c) {
		if (tot)
			tot->c[NS_C_CAND_LOST].packets++;
		return;
	}
	c->task = t;
	c->set = set;
	c->cpu = cpu;
	c->pad = 0;
	u64 *kw = (u64 *)&c->key;
#pragma unroll
	for (int i = 0; i < NS_KEY_WORDS; i++)
		kw[i] = w[i] & task->key_wmask[i];
	ns_cand.ringbuf_submit(c, 0);
}

static __always_inline void ns_cm_update(struct ns_task *task, u32 t, u32 set, u32 cpu, const u64 *w, u64 fold,
					 u64 len, struct ns_flow *flow, struct ns_totals *tot)
{
	u64 h = ns_fmix(fold ^ task->seed);
	u32 h1 = (u32)h, h2 = (u32)(h >> 32) | 1;
	u32 wl = task->width_log2 & 31;
	u32 wmask = (1U << wl) - 1;
	u32 depth = task->depth;
	u32 base = (set * NS_NCPUS + cpu) * NS_CM_CELLS + task->offset;
	u64 minp = ~0ULL, minb = ~0ULL;

#pragma unroll
	for (u32 i = 0; i < NS_MAX_DEPTH; i++) {
		if (i < depth) {
			u32 idx = base + (i << wl) + ((h1 + i * h2) & wmask);
			struct ns_counter *c = ns_cm.lookup(&idx);
			if (!c)
				return;
			u64 p = c->packets, b = c->bytes;
			c->packets = p + 1;
			c->bytes = b + len;
			if (p < minp)
				minp = p;
			if (b < minb)
				minb = b;
		}
	}

	u64 tp = task->hh_packets, tb = task->hh_bytes;
	int over = (tp && minp + 1 >= tp) || (tb && minb + len >= tb);
	if (!over)
		return;
	if (flow) {
		/* One report per flow, CPU and epoch: the flow remembers it. */
		u8 bit = 1 << t;
		if (flow->reported & bit)
			return;
		flow->reported |= bit;
		ns_emit(task, t, set, cpu, w, tot);
		return;
	}
	/* Untracked flow (table full): report on crossing only. */
	if ((tp && minp < tp && minp + 1 >= tp) || (tb && minb < tb && minb + len >= tb))
		ns_emit(task, t, set, cpu, w, tot);
}

/*
 * SuperSpread as a virtual HyperLogLog: the task owns one pool of
 * M = 1 << width_log2 one-byte registers per CPU slice; a key owns
 * s = 1 << regs_log2 virtual registers of it, register j at pool position
 * (h1 + j * h2) mod 2^32 & (M - 1).  The element hash picks j and the rank,
 * so a packet raises exactly one register.
 */
static __always_inline void ns_ss_update(struct ns_task *task, u32 set, u32 cpu, u64 kfold, u64 efold)
{
	u64 hk = ns_fmix(kfold ^ task->seed);
	u64 he = ns_fmix(efold ^ task->elem_seed);
	u32 rl = task->regs_log2 & 15;
	u32 j = he & ((1U << rl) - 1);
	u64 x = he >> rl;
	u8 rank = x ? ns_ctz64(x) + 1 : 65 - rl;
	u32 h1 = (u32)hk, h2 = (u32)(hk >> 32) | 1;
	u32 wl = task->width_log2 & 31;
	u32 pos = (h1 + j * h2) & ((1U << wl) - 1);
	u32 idx = (set * NS_NCPUS + cpu) * NS_SS_BLOCKS + task->offset + (pos >> 3);
	struct ns_regs *r = ns_ss.lookup(&idx);
	if (!r)
		return;
	u8 *reg = &r->r[pos & 7];
	if (*reg < rank)
		*reg = rank;
}

/* This CPU's record of the flow in the active set, created if absent;
 * NULL only when the table is full. */
static __always_inline struct ns_flow *ns_flow_get(u32 set, struct ns_key *k)
{
	struct ns_flow fresh = {};
	struct ns_flow *f;
	if (set) {
		f = ns_flows1.lookup(k);
		if (!f) {
			ns_flows1.update(k, &fresh); /* fails only when full */
			f = ns_flows1.lookup(k);
		}
	} else {
		f = ns_flows0.lookup(k);
		if (!f) {
			ns_flows0.update(k, &fresh);
			f = ns_flows0.lookup(k);
		}
	}
	return f;
}

static __always_inline void ns_count(struct ns_counter *c, u64 len)
{
	c->packets++;
	c->bytes += len;
}

static __always_inline void ns_count_slot(struct ns_totals *tot, u32 slot, u64 len)
{
	if (slot < NS_NCOUNTERS) /* bounds the offset for the verifier */
		ns_count(&tot->c[slot], len);
}

int ns_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	u64 len = end - data;
	u32 zero = 0;
	u32 cpu = bpf_get_smp_processor_id();
	if (cpu >= NS_NCPUS)
		return XDP_PASS;

	struct ns_ctl *ctl = ns_ctl.lookup(&zero);
	u32 set = ctl ? (*(volatile u32 *)&ctl->active) & 1 : 0;

	struct ns_pkt p = {};
	ns_parse(&p, data, end);

	u32 slot = set * NS_NCPUS + cpu;
	struct ns_totals *tot = ns_totals.lookup(&slot);
	if (tot) {
		ns_count(&tot->c[NS_C_ALL], len);
		ns_count_slot(tot, p.outcome, len);
	}
	if (p.outcome != NS_C_OUT_IPV4 && p.outcome != NS_C_OUT_IPV6)
		return XDP_PASS;
	if (tot) {
		ns_count_slot(tot, p.proto_class, len);
#pragma unroll
		for (int e = NS_C_FRAG_FIRST; e <= NS_C_IPV4_OPTIONS; e++)
			if (p.events & NS_EV(e))
				ns_count(&tot->c[e], len);
	}

	/* Exact flow of the active set.  Reserve the entry before the sketches
	 * so they can mark it as reported. */
	struct ns_flow *flow = ns_flow_get(set, &p.key.k);
	if (!flow) {
		if (tot)
			ns_count(&tot->c[NS_C_FLOW_UNTRACKED], len);
	}

	struct ns_config *cfg = ns_cfg.lookup(&zero);
	if (cfg) {
		u64 fold[NS_MAX_FIELDSETS] = {};
		u32 nsets = cfg->nfieldsets;
#pragma unroll
		for (u32 i = 0; i < NS_MAX_FIELDSETS; i++)
			if (i < nsets)
				fold[i] = ns_fold(p.key.w, cfg->fieldset_wmask[i]);
#pragma unroll
		for (u32 t = 0; t < NS_MAX_TASKS; t++) {
			struct ns_task *task = &cfg->tasks[t];
			u64 kf = fold[task->key_set & (NS_MAX_FIELDSETS - 1)];
			if (task->kind == NS_TASK_CM)
				ns_cm_update(task, t, set, cpu, p.key.w, kf, len, flow, tot);
			else if (task->kind == NS_TASK_SS)
				ns_ss_update(task, set, cpu, kf, fold[task->elem_set & (NS_MAX_FIELDSETS - 1)]);
		}
	}

	if (flow) {
		u64 now = NS_NOW();
		if (!flow->packets) {
			/* New here (possibly created by another CPU: this CPU's
			 * slot starts zeroed). */
			flow->first_ns = now;
			flow->icmp_type = p.icmp_type;
			flow->icmp_code = p.icmp_code;
		}
		flow->packets++;
		flow->bytes += len;
		flow->last_ns = now;
		flow->tcp_flags |= p.tcp_flags;
	}
	return XDP_PASS;
}
