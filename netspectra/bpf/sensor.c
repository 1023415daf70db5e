/* SPDX-License-Identifier: Apache-2.0 */
/*
 * netspectra XDP program: count every frame, never drop one.
 *
 *   1. parse the frame (parse.h) into a 5-tuple and an outcome;
 *   2. count it in this CPU's totals of the active map set;
 *   3. count it in this CPU's exact flow table of the active set (the heavy
 *      part; open addressing, NS_FLOW_PROBES probes, never evicts);
 *   4. only if the table cannot hold its flow (the light part; every IP packet
 *      with -DNS_SKETCH_EVERY_PACKET): count it as untracked, update every
 *      configured sketch task (Count-Min rows, SuperSpread registers) in this
 *      CPU's slice, and report a Count-Min key to the ring buffer the first
 *      time its per-CPU estimate reaches the task's per-CPU threshold.  Keys of
 *      tracked flows need no report: the agent reads them from the table.
 *
 * The agent flips ns_ctl.active each epoch, then updates ns_barrier, which
 * returns only after every program that might still use the old set has
 * finished (an RCU grace period), so it reads a set nobody writes.
 *
 * Compile-time sizes (bcc -D flags, all required): NS_NCPUS, NS_CM_CELLS,
 * NS_SS_BLOCKS, NS_FLOW_CAP (flows a CPU's table takes per epoch; 0 = no
 * table), NS_FLOW_SLOTS (a power of two > NS_FLOW_CAP), NS_RINGBUF_PAGES.
 * Options: NS_TIMESTAMPS (NS_TS_*, default NS_TS_MS), NS_SKETCH_EVERY_PACKET.
 */
#include <uapi/linux/bpf.h>

#include "netspectra.h"
#include "parse.h"

#if !defined(NS_NCPUS) || !defined(NS_CM_CELLS) || !defined(NS_SS_BLOCKS) || !defined(NS_FLOW_CAP) || \
	!defined(NS_FLOW_SLOTS) || !defined(NS_RINGBUF_PAGES)
#error "netspectra: NS_NCPUS, NS_CM_CELLS, NS_SS_BLOCKS, NS_FLOW_CAP, NS_FLOW_SLOTS and NS_RINGBUF_PAGES must be set with -D"
#endif
#if NS_FLOW_CAP > 0 && ((NS_FLOW_SLOTS & (NS_FLOW_SLOTS - 1)) || NS_FLOW_SLOTS <= NS_FLOW_CAP)
#error "netspectra: NS_FLOW_SLOTS must be a power of two above NS_FLOW_CAP"
#endif
#ifndef NS_TIMESTAMPS
#define NS_TIMESTAMPS NS_TS_MS
#endif

BPF_F_TABLE("array", u32, struct ns_ctl, ns_ctl, 1, BPF_F_MMAPABLE);
BPF_ARRAY(ns_cfg, struct ns_config, 1);
BPF_F_TABLE("array", u32, struct ns_totals, ns_totals, NS_NSETS * NS_NCPUS, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct ns_counter, ns_cm, NS_NSETS * NS_NCPUS * NS_CM_CELLS, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct ns_regs, ns_ss, NS_NSETS * NS_NCPUS * NS_SS_BLOCKS, BPF_F_MMAPABLE);
#if NS_FLOW_CAP > 0
/* No eviction: a flow the table cannot hold is counted as untracked. */
BPF_F_TABLE("array", u32, struct ns_flow, ns_flows, NS_NSETS * NS_NCPUS * NS_FLOW_SLOTS, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, u64, ns_fidx, NS_NSETS * NS_NCPUS * NS_FLOW_CAP, BPF_F_MMAPABLE);
#endif
BPF_ARRAY(ns_seen, struct ns_seen, NS_NSETS * NS_NCPUS * NS_SEEN_SLOTS);
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

/* First time this CPU sees task t's key h over the threshold in this set?
 * Remembered in a small gen-tagged table; when all its probes are taken the
 * key is reported again (a duplicate, never a miss). */
static __always_inline int ns_first_report(u32 set, u32 cpu, u32 gen, u32 t, u64 h)
{
	u32 base = (set * NS_NCPUS + cpu) * NS_SEEN_SLOTS;
	u32 i0 = (u32)(h >> 32);
	for (u32 i = 0; i < NS_SEEN_PROBES; i++) {
		u32 idx = base + ((i0 + i) & (NS_SEEN_SLOTS - 1));
		struct ns_seen *s = ns_seen.lookup(&idx);
		if (!s)
			return 1;
		if (s->gen != gen) {
			s->hash = h;
			s->gen = gen;
			s->task = t;
			return 1;
		}
		if (s->hash == h && s->task == t)
			return 0;
	}
	return 1;
}

static __always_inline void ns_cm_update(struct ns_task *task, u32 t, u32 set, u32 cpu, u32 gen, const u64 *w,
					 u64 fold, u64 len, int untracked, struct ns_totals *tot)
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
			u64 p = c->packets + 1, b = c->bytes + len;
			c->packets = p;
			c->bytes = b;
			if (p < minp)
				minp = p;
			if (b < minb)
				minb = b;
		}
	}

	/* Keys of tracked flows are known to the agent (they are in the table). */
	if (!untracked)
		return;
	u64 tp = task->hh_packets, tb = task->hh_bytes;
	if (((tp && minp >= tp) || (tb && minb >= tb)) && ns_first_report(set, cpu, gen, t, h))
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

#if NS_FLOW_CAP > 0
/* This CPU's slot of the flow in the active set, claimed if absent; NULL when
 * the CPU's table took NS_FLOW_CAP flows already or all NS_FLOW_PROBES slots
 * the flow may use belong to other flows. */
static __always_inline struct ns_flow *ns_flow_get(u32 set, u32 cpu, u32 gen, const u64 *w, struct ns_totals *tot)
{
	u64 h = 0;
#pragma unroll
	for (int i = 0; i < NS_KEY_WORDS; i++) {
		h = (h ^ w[i]) * NS_HASH_MUL; /* ns_fold() of every word */
		h ^= h >> 32;
	}
	h = ns_fmix(h);
	u32 base = (set * NS_NCPUS + cpu) * NS_FLOW_SLOTS;
	u32 i0 = (u32)h;
	for (u32 i = 0; i < NS_FLOW_PROBES; i++) {
		u32 slot = (i0 + i) & (NS_FLOW_SLOTS - 1);
		u32 idx = base + slot;
		struct ns_flow *f = ns_flows.lookup(&idx);
		if (!f)
			return NULL;
		if (f->gen != gen) {
			/* Free (another generation's): claim it, and list it for the agent. */
			u64 n = tot->flows;
			if (n >= NS_FLOW_CAP)
				return NULL;
			u32 li = (set * NS_NCPUS + cpu) * NS_FLOW_CAP + (u32)n;
			u64 *l = ns_fidx.lookup(&li);
			if (!l)
				return NULL;
			*l = slot;
			tot->flows = n + 1;
			u64 *k = (u64 *)&f->key;
#pragma unroll
			for (int j = 0; j < NS_KEY_WORDS; j++)
				k[j] = w[j];
			f->gen = gen;
			f->packets = 0;
			f->bytes = 0;
			f->tcp_flags = 0;
			return f;
		}
		const u64 *k = (const u64 *)&f->key;
		if (k[0] == w[0] && k[1] == w[1] && k[2] == w[2] && k[3] == w[3] && k[4] == w[4])
			return f;
	}
	return NULL;
}
#endif

static __always_inline u64 ns_now(struct ns_ctl *ctl)
{
#if NS_TIMESTAMPS == NS_TS_PRECISE
	return bpf_ktime_get_ns();
#elif NS_TIMESTAMPS == NS_TS_COARSE
	return bpf_ktime_get_coarse_ns();
#else
	/* The agent's clock, unless it fell behind (agent stopped or starved). */
	u64 now = *(volatile u64 *)&ctl->clock_ns;
	if (bpf_ktime_get_coarse_ns() > now + NS_CLOCK_LATE_NS)
		now = bpf_ktime_get_ns();
	return now;
#endif
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

/* Count an IP packet into every sketch task of this CPU's slice. */
static __always_inline void ns_sketch(u32 set, u32 cpu, u32 gen, const u64 *w, u64 len, int untracked,
				      struct ns_totals *tot)
{
	u32 zero = 0;
	struct ns_config *cfg = ns_cfg.lookup(&zero);
	if (!cfg)
		return;
	u64 fold[NS_MAX_FIELDSETS] = {};
	u32 nsets = cfg->nfieldsets;
#pragma unroll
	for (u32 i = 0; i < NS_MAX_FIELDSETS; i++)
		if (i < nsets)
			fold[i] = ns_fold(w, cfg->fieldset_wmask[i]);
#pragma unroll
	for (u32 t = 0; t < NS_MAX_TASKS; t++) {
		struct ns_task *task = &cfg->tasks[t];
		u64 kf = fold[task->key_set & (NS_MAX_FIELDSETS - 1)];
		if (task->kind == NS_TASK_CM)
			ns_cm_update(task, t, set, cpu, gen, w, kf, len, untracked, tot);
		else if (task->kind == NS_TASK_SS)
			ns_ss_update(task, set, cpu, kf, fold[task->elem_set & (NS_MAX_FIELDSETS - 1)]);
	}
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
	if (!ctl)
		return XDP_PASS;
	u32 set = (*(volatile u32 *)&ctl->active) & 1;
	u32 gen = *(volatile u32 *)&ctl->gen[set];

	struct ns_pkt p = {};
	ns_parse(&p, data, end);

	u32 slot = set * NS_NCPUS + cpu;
	struct ns_totals *tot = ns_totals.lookup(&slot);
	if (!tot)
		return XDP_PASS;
	ns_count(&tot->c[NS_C_ALL], len);
	ns_count_slot(tot, p.outcome, len);
	if (p.outcome != NS_C_OUT_IPV4 && p.outcome != NS_C_OUT_IPV6)
		return XDP_PASS;
	ns_count_slot(tot, p.proto_class, len);
	if (p.events) {
#pragma unroll
		for (int e = NS_C_FRAG_FIRST; e <= NS_C_IPV4_OPTIONS; e++)
			if (p.events & NS_EV(e))
				ns_count(&tot->c[e], len);
	}

#if NS_FLOW_CAP > 0
	struct ns_flow *flow = ns_flow_get(set, cpu, gen, p.key.w, tot);
#else
	struct ns_flow *flow = NULL;
#endif
	if (!flow) {
		ns_count(&tot->c[NS_C_FLOW_UNTRACKED], len);
		ns_sketch(set, cpu, gen, p.key.w, len, 1, tot);
		return XDP_PASS;
	}
#ifdef NS_SKETCH_EVERY_PACKET
	ns_sketch(set, cpu, gen, p.key.w, len, 0, tot);
#endif
	u64 now = ns_now(ctl);
	if (!flow->packets) {
		flow->first_ns = now;
		flow->icmp_type = p.icmp_type;
		flow->icmp_code = p.icmp_code;
	}
	flow->packets++;
	flow->bytes += len;
	flow->last_ns = now;
	flow->tcp_flags |= p.tcp_flags;
	return XDP_PASS;
}
