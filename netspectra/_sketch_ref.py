"""Plain-Python reference of the sketch arithmetic: the test oracle.

Slow and obvious on purpose.  Every function works on Python ints, lists and
bytearrays, and follows the specification that bpf/sensor.c and
netspectra/_sketch.pyx implement; tests/unit/test_sketch.py checks that the
Cython code produces bit-identical arrays.

Conventions:
  - A key is the 40 bytes of a struct ns_key, read as five little-endian
    64-bit words (key_words()).
  - Task parameters are plain keyword ints with the same names as the Cython
    functions: key_wmask (5 ints), seed, depth, width_log2, offset, and for
    SuperSpread elem_wmask, elem_seed, regs_log2.  `offset` is the task's
    TaskLayout.offset: in counters for Count-Min, in 8-register blocks for
    SuperSpread.
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


def ss_update(regs, words, *, key_wmask, seed, elem_wmask, elem_seed, depth, width_log2, regs_log2, offset) -> None:
    width = 1 << width_log2
    hk = ns_hash(words, key_wmask, seed)
    he = ns_hash(words, elem_wmask, elem_seed)
    j, rank = ss_rank(he, regs_log2)
    for i, c in enumerate(columns(hk, depth, width_log2)):
        b = offset * abi.REGS_PER_BLOCK + ((i * width + c) << regs_log2) + j
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
    """HyperLogLog estimate of one bucket of m registers, with the linear
    counting correction for small cardinalities."""
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


def ss_bucket_estimates(regs, *, depth, width_log2, regs_log2, offset) -> list[list[float]]:
    """HyperLogLog estimate of every bucket of a SuperSpread task: one list of
    width estimates per row."""
    width = 1 << width_log2
    m = 1 << regs_log2
    base = offset * abi.REGS_PER_BLOCK
    out = []
    for i in range(depth):
        row = []
        for c in range(width):
            b = base + ((i * width + c) << regs_log2)
            row.append(hll_estimate(regs[b : b + m]))
        out.append(row)
    return out


def ss_estimate(
    regs, words, *, key_wmask, seed, depth, width_log2, regs_log2, offset, correct=True, buckets=None
) -> float:
    """Distinct elements of a key.

    E_i = HyperLogLog estimate of the key's bucket in row i.
    correct=False (plain): min over rows of E_i.
    correct=True (noise-corrected): the bucket also counts the elements of
    every other key hashed there; the mean of the row's other buckets,
        noise_i = (sum over the row's buckets of E - E_i) / (width - 1)
    (0 when width == 1), estimates that noise, and the result is
        min over rows of max(E_i - noise_i, 0).
    The row sums are added left to right in bucket order (the Cython code
    does the same, so both give the same doubles).  `buckets` may pass
    ss_bucket_estimates() of the same registers to avoid recomputing it.
    """
    width = 1 << width_log2
    m = 1 << regs_log2
    hk = ns_hash(words, key_wmask, seed)
    if correct and buckets is None:
        buckets = ss_bucket_estimates(regs, depth=depth, width_log2=width_log2, regs_log2=regs_log2, offset=offset)
    best = math.inf
    for i, c in enumerate(columns(hk, depth, width_log2)):
        b = offset * abi.REGS_PER_BLOCK + ((i * width + c) << regs_log2)
        e = hll_estimate(regs[b : b + m])
        if correct:
            total = 0.0
            for x in buckets[i]:
                total += x
            noise = (total - e) / (width - 1) if width > 1 else 0.0
            e = max(e - noise, 0.0)
        best = min(best, e)
    return best


def merge_sum(percpu) -> list[int]:
    """Element-wise sum (mod 2^64) of per-CPU lists of uint64."""
    return [sum(col) & M64 for col in zip(*percpu)]


def merge_max(percpu) -> bytearray:
    """Element-wise max of per-CPU register arrays."""
    return bytearray(max(col) for col in zip(*percpu))
