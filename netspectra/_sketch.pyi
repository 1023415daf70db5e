"""Type stub of netspectra/_sketch.pyx: sketch hot paths (hashing, Count-Min,
SuperSpread as a virtual HyperLogLog, per-CPU merge).  Bit-identical to
netspectra/bpf/sensor.c; oracle in netspectra/_sketch_ref.py.

Hash spec v2: ns_hash(w, m, seed) = fmix64(fold(w, m) ^ seed); fold starts at
0 and folds only the words whose mask is non-zero.

Task parameters are plain ints, as produced by netspectra.sketch.task_params():
key_wmask / elem_wmask are 5 word masks (abi.field_wmask), depth 1..8
(SuperSpread: 1), width_log2 0..31 (SuperSpread: the pool, 3..31),
regs_log2 3..15 and below width_log2, offset is TaskLayout.offset (counters
for Count-Min, 8-register blocks for SuperSpread).  Keys are C-contiguous abi.KEY
arrays (or uint64 (n, 5)).  Bounds are checked before any loop runs; every
loop over keys or array elements runs in C without the GIL.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

def hash_keys(keys: npt.NDArray, key_wmask: Sequence[int], seed: int) -> npt.NDArray[np.uint64]:
    """ns_hash of every key under the word masks and seed."""

def cm_update(
    cells: npt.NDArray,
    keys: npt.NDArray,
    lengths: npt.ArrayLike,
    *,
    key_wmask: Sequence[int],
    seed: int,
    depth: int,
    width_log2: int,
    offset: int,
) -> None:
    """Count keys[k] as one packet of lengths[k] bytes, in place.

    cells: writable C-contiguous abi.COUNTER array (or uint64 (n, 2) / flat
    uint64 pairs), typically SketchSet.cm or one CPU's slice.
    """

def cm_query(
    cells: npt.NDArray,
    keys: npt.NDArray,
    *,
    key_wmask: Sequence[int],
    seed: int,
    depth: int,
    width_log2: int,
    offset: int,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """(packets, bytes) estimates, each the minimum over the rows (never below the truth)."""

def ss_update(
    regs: npt.NDArray,
    keys: npt.NDArray,
    *,
    key_wmask: Sequence[int],
    seed: int,
    elem_wmask: Sequence[int],
    elem_seed: int,
    depth: int,
    width_log2: int,
    regs_log2: int,
    offset: int,
) -> None:
    """Virtual HyperLogLog update, in place: each key's element raises one
    register of the task's pool of M = 2**width_log2 registers (depth must be
    1): virtual register j = he & (s-1) of the key, s = 2**regs_log2 < M, sits
    at pool position (h1 + j*h2) mod 2**32 & (M-1); register = max(register, rank).

    regs: writable C-contiguous uint8 registers (or 8-byte ns_regs blocks).
    """

def ss_pool_estimate(
    regs: npt.NDArray,
    *,
    width_log2: int,
    offset: int,
) -> float:
    """E_M: HyperLogLog estimate over the task's whole pool of 2**width_log2
    registers (linear counting when the estimate is <= 2.5 M and a register is 0)."""

def ss_estimate(
    regs: npt.NDArray,
    keys: npt.NDArray,
    *,
    key_wmask: Sequence[int],
    seed: int,
    depth: int,
    width_log2: int,
    regs_log2: int,
    offset: int,
    correct: bool = True,
    pool: float | None = None,
) -> npt.NDArray[np.float64]:
    """Distinct elements per key (virtual HyperLogLog, depth 1).  E_s: the
    HyperLogLog estimate of the key's s = 2**regs_log2 virtual registers
    (linear counting below 2.5 s).

    correct=True (default): n = (M*s / (M-s)) * (E_s/s - E_M/M), clamped at
    0, with E_M the pool estimate over all M = 2**width_log2 registers
    (computed once per call): removes the other keys' expected share of the
    key's registers.

    correct=False: E_s alone (inflated by the other keys' elements)."""

def merge_sum_u64(
    percpu: npt.NDArray, out: npt.NDArray | None = None, clear: bool = False, add: bool = False
) -> npt.NDArray:
    """Sum mod 2**64 over axis 0 of a C-contiguous (ncpus, ...) array viewed as uint64.

    Returns out (filled through a flat uint64 view, so an abi.COUNTER out
    works) or a new flat uint64 array.  add=True adds to what out holds
    (out required).  clear=True zeroes percpu in the same pass.
    """

def merge_max_u8(
    percpu: npt.NDArray, out: npt.NDArray | None = None, clear: bool = False, add: bool = False
) -> npt.NDArray:
    """Max over axis 0 of a C-contiguous (ncpus, ...) register array viewed as uint8.

    Same contract as merge_sum_u64 (add=True maxes into out).
    """

def verify_candidates(
    cells: npt.NDArray,
    keys: npt.NDArray,
    *,
    key_wmask: Sequence[int],
    seed: int,
    depth: int,
    width_log2: int,
    offset: int,
    hh_packets: int = 0,
    hh_bytes: int = 0,
) -> tuple[npt.NDArray, npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """(keys, packets, bytes) of the unique candidates (masked with key_wmask,
    sorted by key words) whose estimate reaches hh_packets or hh_bytes
    (0 = threshold unused).  No false negatives: estimates never undercount."""

# ---------------------------------------------------------------- the heavy part (_flows.pxi)

def sketch_flows(config: npt.NDArray, cm: npt.NDArray, ss: npt.NDArray, flows: npt.NDArray) -> None:
    """Add the sketch of flows (records with the 5-tuple first, packets and
    bytes: analysis.FLOW_RECORD) to cm / ss of the layout whose abi.CONFIG
    record is config, in place: bit for bit counting each flow's packets one
    by one (a Count-Min cell adds the flow's totals, a register sees its one
    key/element pair).  Bounds of every task are checked first."""

def flows_take(
    entries: npt.NDArray, fidx: npt.NDArray, counts: npt.ArrayLike, record_dtype: np.dtype, mono_to_wall_ns: int = 0
) -> npt.NDArray:
    """The flows of one map set of the kernel's table: entries (ncpus, slots)
    abi.FLOW, fidx (ncpus, cap) uint64 slot lists, counts per CPU.  One
    record (record_dtype = analysis.FLOW_RECORD) per 5-tuple, merged over
    CPUs; times shifted by mono_to_wall_ns.  Counts are clamped to cap; a
    listed slot outside the table raises ValueError."""

def group_keys(
    keys: npt.NDArray,
    key_wmask: Sequence[int],
    packets: npt.ArrayLike | None = None,
    bytes: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray, npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """(distinct keys masked to the fields (abi.KEY, first-seen order),
    inverse (group of every key), packets and bytes summed per group, keys
    per group).  keys: abi.KEY, uint64 (n, 5) or records with the key first,
    read in place.  O(n) hashing, exact."""

def run_clock(clock: npt.NDArray, stop: npt.NDArray, period_ns: int = 1000000) -> None:
    """Write CLOCK_MONOTONIC into clock[0] (uint64) every period_ns until
    stop[0] (uint8) is non-zero; runs without the GIL (a thread of its own)."""

def ctl_flip(ctl: npt.NDArray, set: int, gen: int) -> None:
    """ns_ctl as uint32 words: store gen[set], then active = set (release order)."""

# ---------------------------------------------------------------- offline capture walk (_pcap.pxi)
# Private to netspectra.offline: the per-packet path over a memory-mapped
# capture, parsing with netspectra/bpf/parse.h and counting like netspectra/bpf/sensor.c (byte
# count = the record's original length).

PCAP_DONE: int  # end of the file
PCAP_ERROR: int  # damage: see PcapReader.error
PCAP_EPOCH: int  # a record's timestamp starts a new epoch (not consumed)
PCAP_YIELD: int  # reached yield_pos (progress)
PCAP_BLOCK: int  # a pcapng section or interface block for Python to read
PCAP_SHRUNK: int  # SIGBUS: the mapped file shrank under the walk (what was counted stays)
PCAP_E_TRUNC_HDR: int
PCAP_E_TRUNC_REC: int
PCAP_E_BLOCK_LEN: int
PCAP_E_BLOCK_TRUNC: int
PCAP_E_BLOCK_TRAILER: int
PCAP_E_BLOCK_SHORT: int
PCAP_E_CAPLEN_BLOCK: int
PCAP_E_IFACE: int

class PcapEngine:
    """Totals, the exact flow table (unbounded, C) and the sketch arrays of
    the current epoch, plus the flows of finished epochs."""

    def __init__(self, config: npt.NDArray, cm: npt.NDArray, ss: npt.NDArray, epoch_ns: int = 0) -> None: ...
    def set_sketch(self, cm: npt.NDArray, ss: npt.NDArray) -> None: ...
    @property
    def started(self) -> bool: ...
    @property
    def t0(self) -> int: ...
    @property
    def time_range(self) -> tuple[int, int] | None: ...
    @property
    def pending_ts(self) -> int: ...
    epoch_end: int
    def take_totals(self) -> npt.NDArray[np.uint64]:
        """(NCOUNTERS, 2) of the current epoch; zeroes them."""
    def current_flows(self, record_dtype: np.dtype) -> npt.NDArray: ...
    def total_flows(self, record_dtype: np.dtype) -> npt.NDArray: ...
    def sketch_flows(self) -> None:
        """Add the current epoch's flows to its sketch arrays (once, as it closes)."""
    def end_epoch(self) -> int:
        """Fold the current flows into the total, clear them; returns flows lost to OOM."""

class PcapReader:
    """One capture buffer (mmap) being walked."""

    def __init__(self, buf, pcapng: bool, swap: bool, pos: int, frac_mul: int = 1000) -> None: ...
    def release(self) -> None: ...
    def add_iface(
        self, linktype: int, snaplen: int, mul: int = 1000, div: int = 1, shift: int = -1, offset_ns: int = 0
    ) -> None: ...
    def take_ifaces(self) -> list[tuple[int, int, int]]:
        """[(linktype, skipped packets, skipped bytes)]; forgets the interfaces."""
    @property
    def nifaces(self) -> int: ...
    pos: int
    swap: bool
    yield_pos: int
    @property
    def counts(self) -> tuple[int, int, int]:
        """(records, original bytes, records with original length < captured length)."""
    @property
    def error(self) -> tuple[int, int, int, int]:
        """(PCAP_E_* code, byte offset, a, b)."""
    def run(self, eng: PcapEngine) -> int:
        """Walk until PCAP_DONE/ERROR/EPOCH/YIELD/BLOCK."""
