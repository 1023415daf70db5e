"""Python mirror of netspectra/bpf/netspectra.h: the kernel/user ABI.

Every struct is a numpy dtype with explicit offsets, so arrays read from the
kernel (mmap, batch lookups, ring buffer) are viewed without copying.
tests/unit/test_abi.py compiles the C header and fails on any drift.
"""

from __future__ import annotations

import numpy as np

ABI_VERSION = 2

NSETS = 2
MAX_TASKS = 8
MAX_DEPTH = 8
MAX_FIELDSETS = 8
KEY_WORDS = 5
MAX_VLAN = 4
MAX_MPLS = 8
MAX_IPV6_EXT = 6
FLOW_PROBES = 32  # slots a flow may occupy in a CPU's table
SEEN_SLOTS = 4096  # per set and CPU: candidate keys already reported
SEEN_PROBES = 8

# Flow timestamp sources (-DNS_TIMESTAMPS=...): the agent's millisecond clock,
# CLOCK_MONOTONIC per packet, or its tick-resolution variant.
TS_MS = 0
TS_PRECISE = 1
TS_COARSE = 2
CLOCK_LATE_NS = 2_000_000  # the program reads the kernel clock when the agent's is this far behind

HASH_MUL = 0x9E3779B97F4A7C15
FMIX_1 = 0xFF51AFD7ED558CCD
FMIX_2 = 0xC4CEB9FE1A85EC53

F_SRC_IP = 0x01
F_DST_IP = 0x02
F_SRC_PORT = 0x04
F_DST_PORT = 0x08
F_PROTO = 0x10
FIELD_BITS = {
    "src_ip": F_SRC_IP,
    "dst_ip": F_DST_IP,
    "src_port": F_SRC_PORT,
    "dst_port": F_DST_PORT,
    "proto": F_PROTO,
}

TASK_OFF = 0
TASK_CM = 1
TASK_SS = 2

# Counter slots of the totals array, in index order (see netspectra.h).
COUNTERS = (
    "all",
    "out_ipv4",
    "out_ipv6",
    "out_non_ip",
    "out_trunc_eth",
    "out_trunc_vlan",
    "out_vlan_depth",
    "out_trunc_ip",
    "out_bad_ipv4",
    "out_bad_ipv6",
    "proto_tcp",
    "proto_udp",
    "proto_icmp",
    "proto_icmpv6",
    "proto_sctp",
    "proto_other",
    "frag_first",
    "frag_later",
    "l4_trunc",
    "ipv6_ext_trunc",
    "ipv6_ext_limit",
    "flow_untracked",
    "cand_lost",
    "ipv4_options",
)
C = {name: i for i, name in enumerate(COUNTERS)}
NCOUNTERS = len(COUNTERS)
NOUTCOMES = C["proto_tcp"]
OUTCOMES = COUNTERS[1:NOUTCOMES]
PROTO_CLASSES = COUNTERS[NOUTCOMES : C["frag_first"]]

KEY = np.dtype(
    {
        "names": ["src", "dst", "sport", "dport", "proto", "pad"],
        "formats": [("u1", 16), ("u1", 16), "<u2", "<u2", "u1", ("u1", 3)],
        "offsets": [0, 16, 32, 34, 36, 37],
        "itemsize": 40,
    }
)

FLOW = np.dtype(
    {
        "names": [
            "key",
            "gen",
            "tcp_flags",
            "icmp_type",
            "icmp_code",
            "pad",
            "packets",
            "bytes",
            "first_ns",
            "last_ns",
        ],
        "formats": [KEY, "<u4", "u1", "u1", "u1", "u1", "<u8", "<u8", "<u8", "<u8"],
        "offsets": [0, 40, 44, 45, 46, 47, 48, 56, 64, 72],
        "itemsize": 80,
    }
)

SEEN = np.dtype(
    {"names": ["hash", "gen", "task"], "formats": ["<u8", "<u4", "<u4"], "offsets": [0, 8, 12], "itemsize": 16}
)

COUNTER = np.dtype({"names": ["packets", "bytes"], "formats": ["<u8", "<u8"], "offsets": [0, 8], "itemsize": 16})

TOTALS = np.dtype([("c", COUNTER, (NCOUNTERS,)), ("flows", "<u8"), ("pad", "<u8")])

REGS_PER_BLOCK = 8  # struct ns_regs

TASK = np.dtype(
    {
        "names": [
            "key_wmask",
            "elem_wmask",
            "seed",
            "elem_seed",
            "hh_packets",
            "hh_bytes",
            "kind",
            "depth",
            "width_log2",
            "regs_log2",
            "offset",
            "fields",
            "elem_fields",
            "key_set",
            "elem_set",
            "pad",
        ],
        "formats": [
            ("<u8", KEY_WORDS),
            ("<u8", KEY_WORDS),
            "<u8",
            "<u8",
            "<u8",
            "<u8",
            "<u4",
            "<u4",
            "<u4",
            "<u4",
            "<u4",
            "<u4",
            "<u4",
            "<u4",
            "<u4",
            "<u4",
        ],
        "offsets": [0, 40, 80, 88, 96, 104, 112, 116, 120, 124, 128, 132, 136, 140, 144, 148],
        "itemsize": 152,
    }
)

CONFIG = np.dtype(
    {
        "names": ["fieldset_wmask", "nfieldsets", "pad", "tasks"],
        "formats": [("<u8", (MAX_FIELDSETS, KEY_WORDS)), "<u4", "<u4", (TASK, MAX_TASKS)],
        "offsets": [0, 320, 324, 328],
        "itemsize": 328 + TASK.itemsize * MAX_TASKS,
    }
)

CTL = np.dtype(
    {
        "names": ["active", "gen", "pad", "clock_ns"],
        "formats": ["<u4", ("<u4", NSETS), "<u4", "<u8"],
        "offsets": [0, 4, 12, 16],
        "itemsize": 24,
    }
)

CAND = np.dtype(
    {
        "names": ["task", "set", "cpu", "pad", "key"],
        "formats": ["<u4", "<u4", "<u4", "<u4", KEY],
        "offsets": [0, 4, 8, 12, 16],
        "itemsize": 56,
    }
)

# bcc table names, as declared in netspectra/bpf/sensor.c.
MAP_NAMES = (
    "ns_ctl",
    "ns_cfg",
    "ns_totals",
    "ns_cm",
    "ns_ss",
    "ns_flows",
    "ns_fidx",
    "ns_seen",
    "ns_cand",
    "ns_barrier",
    "ns_barrier_inner",
)

# Byte offsets of the key fields, for building field word masks.
_FIELD_SPANS = {
    F_SRC_IP: (0, 16),
    F_DST_IP: (16, 32),
    F_SRC_PORT: (32, 34),
    F_DST_PORT: (34, 36),
    F_PROTO: (36, 37),
}


def field_wmask(fields: int) -> tuple[int, ...]:
    """The five 64-bit word masks that keep exactly `fields` of a struct ns_key."""
    mask = bytearray(KEY.itemsize)
    for bit, (lo, hi) in _FIELD_SPANS.items():
        if fields & bit:
            mask[lo:hi] = b"\xff" * (hi - lo)
    return tuple(int.from_bytes(mask[8 * i : 8 * i + 8], "little") for i in range(KEY_WORDS))


def fields_from_names(names) -> int:
    bits = 0
    for n in names:
        bits |= FIELD_BITS[n]
    return bits


def field_names(bits: int) -> list[str]:
    return [n for n, b in FIELD_BITS.items() if bits & b]
