/* SPDX-License-Identifier: Apache-2.0 */
/*
 * netspectra kernel/user ABI: every struct, constant and map name that both the
 * XDP program (netspectra/bpf/sensor.c) and the Python agent (netspectra/abi.py) use.
 *
 * Python cannot include this file; netspectra/abi.py mirrors it once and
 * tests/unit/test_abi.py fails when the two disagree (sizes, offsets, values,
 * map names).  Change both together.
 *
 * Contract of the shared layout:
 *  - All multi-byte fields are host order (little-endian x86_64/arm64); ports
 *    are stored host order so the hash sees the same words in C and Python.
 *  - Every map that userspace reads in bulk is a BPF_F_MMAPABLE array sliced
 *    [set][cpu][...]: a program writes only its own CPU's slice of the active
 *    set, so the hot path needs no atomics, and the agent reads the idle set
 *    through mmap with no per-key syscall.
 *  - Sizes that shape maps (NS_NCPUS, NS_CM_CELLS, ...) arrive as -D flags at
 *    compile time; what a task does (fields, seeds, thresholds) is data in the
 *    config map.  One compiled program serves any configuration.
 */
#ifndef NETSPECTRA_H
#define NETSPECTRA_H

#define NS_ABI_VERSION 2

#define NS_NSETS 2          /* map sets: one active, one being read */
#define NS_MAX_TASKS 8      /* sketch tasks (Count-Min + SuperSpread) */
#define NS_MAX_DEPTH 8      /* rows per sketch */
#define NS_MAX_FIELDSETS 8  /* distinct key/element field sets over all tasks */
#define NS_KEY_WORDS 5      /* struct ns_key as 64-bit words */
#define NS_MAX_VLAN 4       /* 802.1Q / 802.1ad tags parsed */
#define NS_MAX_MPLS 8       /* MPLS labels parsed */
#define NS_MAX_IPV6_EXT 6   /* IPv6 extension headers walked */
#define NS_FLOW_PROBES 32   /* slots a flow may occupy: its hash slot and the next 31 */
#define NS_SEEN_SLOTS 4096  /* per set and CPU: candidate keys already reported */
#define NS_SEEN_PROBES 8

/*
 * Data plane (sensor.c): the exact flow table is the heavy part; only packets
 * the table cannot hold (a full table, or 32 probes all taken) update the
 * sketch tasks and report heavy-hitter candidates -- the light part.  The
 * agent adds the sketch of the epoch's flows to those overflow arrays, which
 * gives bit for bit the arrays of updating every packet (Count-Min is linear,
 * a register depends only on the distinct key/element pairs).  Built with
 * -DNS_SKETCH_EVERY_PACKET, every IP packet updates the sketches (sketch-only
 * deployments); the agent then takes the kernel's arrays as they are.
 *
 * Flow timestamps (-DNS_TIMESTAMPS=): NS_TS_MS reads the agent's millisecond
 * clock from ns_ctl (falling back to the kernel clock when the agent's is more
 * than NS_CLOCK_LATE_NS behind the kernel's coarse clock), NS_TS_PRECISE
 * reads CLOCK_MONOTONIC per packet, NS_TS_COARSE its tick-resolution variant.
 */
#define NS_TS_MS 0
#define NS_TS_PRECISE 1
#define NS_TS_COARSE 2
#define NS_CLOCK_LATE_NS 2000000ULL

/*
 * Hash (sensor.c, netspectra/_sketch.pyx, netspectra/_sketch_ref.py):
 *   fold(w, m): h = 0; for each word i with m[i] != 0: h = (h ^ (w[i] & m[i])) * MUL; h ^= h >> 32
 *   hash(w, m, seed) = fmix64(fold(w, m) ^ seed)
 * A fold depends only on the field set, so the program folds each distinct
 * field set once per packet and every task remixes it with its own seed.
 */
#define NS_HASH_MUL 0x9E3779B97F4A7C15ULL
#define NS_FMIX_1 0xFF51AFD7ED558CCDULL
#define NS_FMIX_2 0xC4CEB9FE1A85EC53ULL

/* Key fields a task can select (bit mask). */
#define NS_F_SRC_IP 0x01
#define NS_F_DST_IP 0x02
#define NS_F_SRC_PORT 0x04
#define NS_F_DST_PORT 0x08
#define NS_F_PROTO 0x10

/* Task kinds. */
#define NS_TASK_OFF 0
#define NS_TASK_CM 1          /* Count-Min: packets and bytes per key */
#define NS_TASK_SS 2          /* SuperSpread: distinct elements per key */

/*
 * Counter slots in the totals array, per set and CPU.  Every packet is counted
 * once in NS_C_ALL, once in exactly one outcome slot (NS_C_OUT_*) and, if it
 * parsed as IP, once in exactly one protocol slot (NS_C_PROTO_*).  The NS_C_*
 * slots after that count events.
 */
#define NS_C_ALL 0
/* parse outcomes */
#define NS_C_OUT_IPV4 1         /* parsed IPv4 */
#define NS_C_OUT_IPV6 2         /* parsed IPv6 */
#define NS_C_OUT_NON_IP 3       /* ARP, LLDP, ... (an ethertype we do not parse) */
#define NS_C_OUT_TRUNC_ETH 4    /* shorter than an Ethernet header */
#define NS_C_OUT_TRUNC_VLAN 5   /* VLAN tag, PPPoE header or MPLS label cut off */
#define NS_C_OUT_VLAN_DEPTH 6   /* more than NS_MAX_VLAN tags or NS_MAX_MPLS labels */
#define NS_C_OUT_TRUNC_IP 7     /* IPv4/IPv6 header cut off */
#define NS_C_OUT_BAD_IPV4 8     /* version != 4 or IHL < 5 */
#define NS_C_OUT_BAD_IPV6 9     /* version != 6 */
#define NS_C_NOUTCOMES 10
/* protocol classes of IP packets */
#define NS_C_PROTO_TCP 10
#define NS_C_PROTO_UDP 11
#define NS_C_PROTO_ICMP 12
#define NS_C_PROTO_ICMPV6 13
#define NS_C_PROTO_SCTP 14
#define NS_C_PROTO_OTHER 15
/* events (IP packets, counted in addition to the above) */
#define NS_C_FRAG_FIRST 16      /* first fragment (offset 0, more fragments) */
#define NS_C_FRAG_LATER 17      /* non-first fragment: ports 0/0 */
#define NS_C_L4_TRUNC 18        /* L4 header cut off (ports only if their 4 bytes are there) */
#define NS_C_IPV6_EXT_TRUNC 19  /* extension chain cut off */
#define NS_C_IPV6_EXT_LIMIT 20  /* more than NS_MAX_IPV6_EXT headers */
#define NS_C_FLOW_UNTRACKED 21  /* flow table full: not in exact flows */
#define NS_C_CAND_LOST 22       /* candidate ring buffer full */
#define NS_C_IPV4_OPTIONS 23    /* IPv4 header with options */
#define NS_NCOUNTERS 24

/* The 5-tuple.  IPv4 addresses are ::ffff:a.b.c.d. 40 bytes = 5 words. */
struct ns_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;    /* TCP/UDP/SCTP port, host order; 0 otherwise */
	__u16 dport;
	__u8 proto;     /* IPv4 protocol / IPv6 upper-layer header */
	__u8 pad[3];
};

/*
 * One slot of the exact flow table (ns_flows): open addressing over a CPU's
 * slice of NS_FLOW_SLOTS slots, linear probing.  A slot belongs to the set's
 * current generation (ns_ctl.gen[set]) or is free, so the agent never clears
 * the table: it bumps the generation when the set becomes active again.
 */
struct ns_flow {
	struct ns_key key;
	__u32 gen;        /* generation of the set that owns the slot */
	__u8 tcp_flags;   /* OR of all TCP flags seen */
	__u8 icmp_type;   /* of the flow's first ICMP/ICMPv6 packet */
	__u8 icmp_code;
	__u8 pad;
	__u64 packets;
	__u64 bytes;      /* frame bytes as seen by XDP (L2 header included) */
	__u64 first_ns;   /* CLOCK_MONOTONIC */
	__u64 last_ns;
};

/* A heavy-hitter candidate key already reported by this CPU in this set. */
struct ns_seen {
	__u64 hash;       /* the task's 64-bit key hash */
	__u32 gen;
	__u32 task;
};

/* Count-Min cell and totals slot. */
struct ns_counter {
	__u64 packets;
	__u64 bytes;
};

/* All counters of one CPU in one set: one map lookup per packet.  `flows`
 * is the length of the CPU's list of claimed slots (ns_fidx). */
struct ns_totals {
	struct ns_counter c[NS_NCOUNTERS];
	__u64 flows;
	__u64 pad;
};

/* Eight SuperSpread registers (one array element; byte i = register).  A
 * SuperSpread task is one pool of 1 << width_log2 registers (a virtual
 * HyperLogLog, see ns_ss_update in sensor.c). */
struct ns_regs {
	__u8 r[8];
};

/*
 * One sketch task.  key_wmask/elem_wmask select the task's fields as masks
 * over the five 64-bit words of struct ns_key, so a task hashes its key with
 * five AND/XOR/MUL steps and no copying.
 */
struct ns_task {
	__u64 key_wmask[NS_KEY_WORDS];
	__u64 elem_wmask[NS_KEY_WORDS];  /* SuperSpread: the counted element */
	__u64 seed;
	__u64 elem_seed;
	__u64 hh_packets;   /* Count-Min: per-CPU candidate threshold, 0 = off */
	__u64 hh_bytes;
	__u32 kind;         /* NS_TASK_* */
	__u32 depth;        /* Count-Min rows, 1..NS_MAX_DEPTH; SuperSpread: 1 (unused) */
	__u32 width_log2;   /* Count-Min: counters per row; SuperSpread: pool registers M */
	__u32 regs_log2;    /* SuperSpread: virtual registers per key s = 1 << regs_log2 (< M) */
	__u32 offset;       /* first element of this task in a CPU's slice */
	__u32 fields;       /* NS_F_* of the key (informational) */
	__u32 elem_fields;  /* NS_F_* of the element (informational) */
	__u32 key_set;      /* index of the key's field set in ns_config */
	__u32 elem_set;     /* SuperSpread: index of the element's field set */
	__u32 pad;
};

struct ns_config {
	__u64 fieldset_wmask[NS_MAX_FIELDSETS][NS_KEY_WORDS];
	__u32 nfieldsets;
	__u32 pad;
	struct ns_task tasks[NS_MAX_TASKS];
};

/* Written by userspace through mmap; read by the program once per packet. */
struct ns_ctl {
	__u32 active;           /* map set being written: 0 or 1 */
	__u32 gen[NS_NSETS];    /* flow-table generation of each set, never 0 */
	__u32 pad;
	__u64 clock_ns;         /* the agent's millisecond clock (CLOCK_MONOTONIC), 0 = none */
};

/* Heavy-hitter candidate sent through the ring buffer. */
struct ns_cand {
	__u32 task;
	__u32 set;
	__u32 cpu;
	__u32 pad;
	struct ns_key key;  /* masked to the task's fields */
};

/*
 * Map names (bcc tables).  Array sizes in elements:
 *   ns_ctl     1                                  struct ns_ctl, mmapable
 *   ns_cfg     1                                  struct ns_config
 *   ns_totals  NS_NSETS * NS_NCPUS                struct ns_totals, mmapable
 *   ns_cm      NS_NSETS * NS_NCPUS * NS_CM_CELLS  struct ns_counter, mmapable
 *   ns_ss      NS_NSETS * NS_NCPUS * NS_SS_BLOCKS struct ns_regs, mmapable
 *   ns_flows   NS_NSETS * NS_NCPUS * NS_FLOW_SLOTS   struct ns_flow, mmapable
 *   ns_fidx    NS_NSETS * NS_NCPUS * NS_FLOW_CAP     __u64 slot index, mmapable: the
 *              slots a CPU claimed in a set, in order (ns_totals.flows of them)
 *              (both absent when NS_FLOW_CAP is 0: no flow table, sketches only)
 *   ns_seen    NS_NSETS * NS_NCPUS * NS_SEEN_SLOTS   struct ns_seen
 *   ns_cand    ring buffer of struct ns_cand
 *   ns_barrier array of maps; updating it waits for running programs
 */

#endif /* NETSPECTRA_H */
