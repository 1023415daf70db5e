"""Plain-Python reference of the sketch arithmetic: the test oracle.

Slow and obvious on purpose.  Every function works on Python ints, lists and
bytearrays, and follows the specification that netspectra/bpf/sensor.c and
netspectra/_sketch.pyx implement; tests/unit/test_sketch.py checks that the
Cython code produces bit-identical arrays.

Conventions:
  - A key is the 40 bytes of a struct ns_key, read as five little-endian
    64-bit words (key_words()).
  - Task parameters are plain keyword ints with the same names as the Cython
    functions: key_wmask (5 ints), seed, depth, width_log2, offset, and for
    SuperSpread elem_wmask, elem_seed, regs_log2.  `offset` is the task's
    TaskLayout.offset: in counters for Count-Min, in 8-register blocks for
    SuperSpread.  SuperSpread is a virtual HyperLogLog: width_log2 is the
    pool of M = 2**width_log2 registers, regs_log2 the s = 2**regs_log2
    virtual registers of each key, depth is always 1.
  - Count-Min state: a list of [packets, bytes] lists, one per counter.
  - SuperSpread state: a bytearray of registers.
  - Hash spec v2: ns_hash(w, m, seed) = fmix64(fold(w, m) ^ seed), where
    fold() skips the words whose mask is zero (see fold()).
"""

from __future__ import annotations

import math

from . import abi

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def key_words(key) -> tuple[int, ...]:
    """The five little-endian 64-bit words of a key (bytes-like of 40 bytes,
    a numpy abi.KEY scalar, or already a sequence of 5 ints)."""
    if isinstance(key, (tuple, list)) and len(key) == abi.KEY_WORDS:
        return tuple(int(w) for w in key)
    raw = key.tobytes() if hasattr(key, "tobytes") else bytes(key)
    if len(raw) != abi.KEY.itemsize:
        raise ValueError(f"a key is {abi.KEY.itemsize} bytes, got {len(raw)}")
    return tuple(int.from_bytes(raw[8 * i : 8 * i + 8], "little") for i in range(abi.KEY_WORDS))


def fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * abi.FMIX_1) & M64
    h ^= h >> 33
    h = (h * abi.FMIX_2) & M64
    h ^= h >> 33
    return h


def fold(words, wmask) -> int:
    """Hash spec v2, first stage: fold the masked key words into 64 bits.

    h = 0; for each word i whose mask is non-zero:
        h = (h ^ (w[i] & m[i])) * HASH_MUL mod 2**64;  h ^= h >> 32
    Words with a zero mask are skipped entirely (not folded in as zeros), so
    the fold depends only on the field set's words, not on the seed."""
    h = 0
    for i in range(abi.KEY_WORDS):
        if wmask[i] & M64:
            h = ((h ^ (words[i] & wmask[i])) * abi.HASH_MUL) & M64
            h ^= h >> 32
    return h


def ns_hash(words, wmask, seed: int) -> int:
    """Hash spec v2: 64-bit hash of the masked key words,
    fmix64(fold(words, wmask) ^ seed)."""
    return fmix64(fold(words, wmask) ^ (seed & M64))


def columns(h: int, depth: int, width_log2: int) -> list[int]:
    """Column of each row: (h1 + i*h2) mod 2^32, masked to the width."""
    h1 = h & M32
    h2 = ((h >> 32) | 1) & M32
    mask = (1 << width_log2) - 1
    return [((h1 + i * h2) & M32) & mask for i in range(depth)]


def cm_cells_of(words, *, key_wmask, seed, depth, width_log2, offset) -> list[int]:
    """Indices of the key's counters, one per row."""
    width = 1 << width_log2
    cols = columns(ns_hash(words, key_wmask, seed), depth, width_log2)
    return [offset + i * width + c for i, c in enumerate(cols)]


def cm_update(cells, words, length: int, *, key_wmask, seed, depth, width_log2, offset) -> None:
    for idx in cm_cells_of(words, key_wmask=key_wmask, seed=seed, depth=depth, width_log2=width_log2, offset=offset):
        cells[idx][0] = (cells[idx][0] + 1) & M64
        cells[idx][1] = (cells[idx][1] + length) & M64


def cm_query(cells, words, *, key_wmask, seed, depth, width_log2, offset) -> tuple[int, int]:
    """(packets, bytes) estimate: each the minimum over the rows."""
    idx = cm_cells_of(words, key_wmask=key_wmask, seed=seed, depth=depth, width_log2=width_log2, offset=offset)
    return min(cells[i][0] for i in idx), min(cells[i][1] for i in idx)


def ss_rank(he: int, regs_log2: int) -> tuple[int, int]:
    """(register j, rank) of an element hash."""
    j = he & ((1 << regs_log2) - 1)
    x = he >> regs_log2
    if x == 0:
        return j, 64 - regs_log2 + 1
    tz = 0
    while not (x >> tz) & 1:
        tz += 1
    return j, tz + 1


def ss_positions(hk: int, width_log2: int, regs_log2: int) -> list[int]:
    """Pool position of each of a key's s = 2**regs_log2 virtual registers:
    position j = (h1 + j*h2) mod 2^32, masked to the pool size M = 2**width_log2,
    with h1 = low 32 bits of the key hash, h2 = high 32 bits | 1."""
    h1 = hk & M32
    h2 = ((hk >> 32) | 1) & M32
    mask = (1 << width_log2) - 1
    return [((h1 + j * h2) & M32) & mask for j in range(1 << regs_log2)]


def ss_update(regs, words, *, key_wmask, seed, elem_wmask, elem_seed, depth, width_log2, regs_log2, offset) -> None:
    """Virtual HyperLogLog: the element picks the key's virtual register j and
    its rank; one pool register is raised to the rank.  depth must be 1."""
    if depth != 1:
        raise ValueError(f"SuperSpread depth must be 1, got {depth}")
    hk = ns_hash(words, key_wmask, seed)
    he = ns_hash(words, elem_wmask, elem_seed)
    j, rank = ss_rank(he, regs_log2)
    h1 = hk & M32
    h2 = ((hk >> 32) | 1) & M32
    pos = ((h1 + j * h2) & M32) & ((1 << width_log2) - 1)
    b = offset * abi.REGS_PER_BLOCK + pos
    regs[b] = max(regs[b], rank)


def hll_alpha(m: int) -> float:
    if m == 16:
        return 0.673
    if m == 32:
        return 0.697
    if m == 64:
        return 0.709
    return 0.7213 / (1.0 + 1.079 / m)


def hll_estimate(bucket) -> float:
    """HyperLogLog estimate of m registers, with the linear counting
    correction for small cardinalities (estimate <= 2.5 m and a zero register)."""
    m = len(bucket)
    s = 0.0
    zeros = 0
    for r in bucket:
        s += 2.0**-r
        if r == 0:
            zeros += 1
    e = hll_alpha(m) * m * m / s
    if e <= 2.5 * m and zeros > 0:
        e = m * math.log(m / zeros)
    return e


def ss_pool_estimate(regs, *, width_log2, offset) -> float:
    """E_M: HyperLogLog estimate of the task's whole pool of M registers (the
    distinct key-element pairs of all keys)."""
    b = offset * abi.REGS_PER_BLOCK
    return hll_estimate(regs[b : b + (1 << width_log2)])


def ss_estimate(
    regs, words, *, key_wmask, seed, depth, width_log2, regs_log2, offset, correct=True, pool=None
) -> float:
    """Distinct elements of a key (virtual HyperLogLog).

    E_s = HyperLogLog estimate over the key's s virtual registers (read in
    order j = 0..s-1).  correct=False: E_s (counts the other keys' elements
    that landed in the key's registers too).  correct=True: with the pool
    estimate E_M over all M registers,
        n = (M * s / (M - s)) * (E_s / s - E_M / M), clamped at 0.
    `pool` may pass ss_pool_estimate() of the same registers."""
    if depth != 1:
        raise ValueError(f"SuperSpread depth must be 1, got {depth}")
    base = offset * abi.REGS_PER_BLOCK
    hk = ns_hash(words, key_wmask, seed)
    e_s = hll_estimate([regs[base + p] for p in ss_positions(hk, width_log2, regs_log2)])
    if not correct:
        return e_s
    m_pool = 1 << width_log2
    s = 1 << regs_log2
    if pool is None:
        pool = ss_pool_estimate(regs, width_log2=width_log2, offset=offset)
    n = (m_pool * s / (m_pool - s)) * (e_s / s - pool / m_pool)
    return max(n, 0.0)


def merge_sum(percpu) -> list[int]:
    """Element-wise sum (mod 2^64) of per-CPU lists of uint64."""
    return [sum(col) & M64 for col in zip(*percpu)]


def merge_max(percpu) -> bytearray:
    """Element-wise max of per-CPU register arrays."""
    return bytearray(max(col) for col in zip(*percpu))
