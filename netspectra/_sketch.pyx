# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Sketch hot paths: key hashing, Count-Min, SuperSpread, per-CPU merge.

Bit-identical to ns_hash() and the sketch updates of netspectra/bpf/sensor.c; the plain
Python oracle is netspectra/_sketch_ref.py.  Every per-key or per-element loop
is C over typed memoryviews and runs without the GIL; the Python level of each
function only checks shapes and bounds (boundscheck is off, so those checks are
what keeps a bad layout from writing outside an array).

Task parameters are plain ints: key_wmask (5 word masks), seed, depth,
width_log2, offset (TaskLayout.offset: counters for Count-Min, 8-register
blocks for SuperSpread) and, for SuperSpread, elem_wmask, elem_seed, regs_log2.

Hash spec v2 (ns_hash): fmix64(fold(w, m) ^ seed), where fold starts at 0 and
folds only the words whose mask is non-zero:
h = (h ^ (w[i] & m[i])) * HASH_MUL; h ^= h >> 32.
"""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.math cimport log, ldexp
from libc.string cimport memcmp, memcpy, memset

cnp.import_array()

cdef extern from *:
    """
    static inline int ns_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    /* Row kernels with restrict so the compiler vectorizes them. */
    static void ns_add_u64(uint64_t *restrict dst, const uint64_t *restrict src, Py_ssize_t n) {
        for (Py_ssize_t k = 0; k < n; k++) dst[k] += src[k];
    }
    static void ns_max_u8(uint8_t *restrict dst, const uint8_t *restrict src, Py_ssize_t n) {
        for (Py_ssize_t k = 0; k < n; k++) dst[k] = src[k] > dst[k] ? src[k] : dst[k];
    }
    """
    int ns_ctz64(unsigned long long x) nogil
    void ns_add_u64(uint64_t* dst, const uint64_t* src, Py_ssize_t n) nogil
    void ns_max_u8(uint8_t* dst, const uint8_t* src, Py_ssize_t n) nogil

cdef enum:
    NWORDS = 5

cdef uint64_t HASH_MUL = 0x9E3779B97F4A7C15ULL
cdef uint64_t FMIX_1 = 0xFF51AFD7ED558CCDULL
cdef uint64_t FMIX_2 = 0xC4CEB9FE1A85EC53ULL

_KEY_ITEMSIZE = 40
_MAX_DEPTH = 8


# ---------------------------------------------------------------- helpers (GIL)

cdef object _key_words(keys):
    """(n, 5) uint64 view of a contiguous abi.KEY array (copied only if not
    contiguous); a (n, 5) uint64 array passes through."""
    a = np.asarray(keys)
    if a.dtype == np.uint64 and a.ndim == 2 and a.shape[1] == NWORDS:
        return np.ascontiguousarray(a)
    if a.dtype.itemsize != _KEY_ITEMSIZE or a.dtype.kind != "V":
        raise TypeError(f"keys must be an abi.KEY array or uint64 (n, 5), got {a.dtype}")
    a = np.ascontiguousarray(a.reshape(-1))
    return a.view(np.uint8).view("<u8").reshape(-1, NWORDS)


cdef int _masks(object wmask, uint64_t* out) except -1:
    ws = [int(w) for w in wmask]
    if len(ws) != NWORDS:
        raise ValueError(f"a word mask has {NWORDS} words, got {len(ws)}")
    for i in range(NWORDS):
        out[i] = <uint64_t>ws[i]
    return 0


cdef object _u64_flat(cells, bint writable):
    """Flat uint64 view of Count-Min cells (abi.COUNTER array, uint64 (n, 2) or
    flat uint64 of even length) without copying."""
    a = cells
    if not isinstance(a, np.ndarray):
        raise TypeError("cells must be a numpy array")
    if not a.flags.c_contiguous:
        raise ValueError("cells must be C-contiguous")
    if writable and not a.flags.writeable:
        raise ValueError("cells must be writable")
    if a.dtype.itemsize == 16 and a.dtype.names == ("packets", "bytes"):
        return a.reshape(-1).view("<u8")
    if a.dtype == np.uint64:
        f = a.reshape(-1)
        if f.shape[0] % 2:
            raise ValueError("uint64 cells must hold (packets, bytes) pairs")
        return f
    raise TypeError(f"cells must be abi.COUNTER or uint64, got {a.dtype}")


cdef object _u8_flat(regs, bint writable):
    a = regs
    if not isinstance(a, np.ndarray):
        raise TypeError("regs must be a numpy array")
    if not a.flags.c_contiguous:
        raise ValueError("regs must be C-contiguous")
    if writable and not a.flags.writeable:
        raise ValueError("regs must be writable")
    if a.dtype.itemsize != 1 and not (a.dtype.kind == "V" and a.dtype.itemsize == 8):
        raise TypeError(f"regs must be uint8 registers, got {a.dtype}")
    return a.reshape(-1).view(np.uint8)


cdef int _check_geom(int depth, int width_log2) except -1:
    if depth < 1 or depth > _MAX_DEPTH:
        raise ValueError(f"depth must be 1..{_MAX_DEPTH}, got {depth}")
    if width_log2 < 0 or width_log2 > 31:
        raise ValueError(f"width_log2 must be 0..31, got {width_log2}")
    return 0


cdef int _check_cm(Py_ssize_t ncells, int depth, int width_log2, Py_ssize_t offset) except -1:
    _check_geom(depth, width_log2)
    if offset < 0 or offset + (<Py_ssize_t>depth << width_log2) > ncells:
        raise ValueError(
            f"Count-Min task [{offset}, {offset + (depth << width_log2)}) outside {ncells} cells")
    return 0


cdef int _check_ss(Py_ssize_t nregs, int depth, int width_log2, int regs_log2, Py_ssize_t offset) except -1:
    """A SuperSpread task is a virtual HyperLogLog: one pool of M = 2**width_log2
    registers (M >= 8, a whole number of 8-register blocks), s = 2**regs_log2
    virtual registers per key (s < M), depth 1."""
    if depth != 1:
        raise ValueError(f"SuperSpread depth must be 1 (one register pool), got {depth}")
    if width_log2 < 3 or width_log2 > 31:
        raise ValueError(f"SuperSpread width_log2 (pool size) must be 3..31, got {width_log2}")
    if regs_log2 < 3 or regs_log2 > 15:
        raise ValueError(f"regs_log2 must be 3..15 (the kernel masks it with 15), got {regs_log2}")
    if regs_log2 >= width_log2:
        raise ValueError(f"regs_log2 ({regs_log2}) must be below width_log2 ({width_log2}): s < M")
    cdef Py_ssize_t lo = offset * 8
    cdef Py_ssize_t hi = lo + (<Py_ssize_t>1 << width_log2)
    if offset < 0 or hi > nregs:
        raise ValueError(f"SuperSpread task registers [{lo}, {hi}) outside {nregs}")
    return 0


# ---------------------------------------------------------------- kernels (nogil)

cdef inline uint64_t ns_fold(const uint64_t* w, const uint64_t* m) noexcept nogil:
    """Hash spec v2, first stage: fold the masked words, skipping every word
    whose mask is zero."""
    cdef uint64_t h = 0
    cdef int i
    for i in range(NWORDS):
        if m[i] != 0:
            h = (h ^ (w[i] & m[i])) * HASH_MUL
            h ^= h >> 32
    return h


cdef inline uint64_t ns_fmix(uint64_t h) noexcept nogil:
    """fmix64, the second stage of hash spec v2 (ns_fmix in netspectra/bpf/sensor.c)."""
    h ^= h >> 33
    h *= FMIX_1
    h ^= h >> 33
    h *= FMIX_2
    h ^= h >> 33
    return h


cdef inline uint64_t ns_hash(const uint64_t* w, const uint64_t* m, uint64_t seed) noexcept nogil:
    """Hash spec v2: fmix64(fold(w, m) ^ seed)."""
    return ns_fmix(ns_fold(w, m) ^ seed)


cdef inline void _cols(uint64_t h, int depth, int width_log2, Py_ssize_t* idx) noexcept nogil:
    """Bucket index (row * width + column) of each row."""
    cdef uint32_t h1 = <uint32_t>h
    cdef uint32_t h2 = <uint32_t>(h >> 32) | 1u
    cdef uint32_t mask = (<uint32_t>1 << width_log2) - 1u
    cdef uint32_t c
    cdef int i
    for i in range(depth):
        c = (h1 + <uint32_t>i * h2) & mask
        idx[i] = (<Py_ssize_t>i << width_log2) + c


cdef inline double _hll_estimate(double sm, Py_ssize_t zeros, Py_ssize_t m) noexcept nogil:
    """HyperLogLog estimate of m registers from sum(2**-register) and the
    number of zero registers (linear counting while <= 2.5 m)."""
    cdef double alpha, e, dm = <double>m
    if m == 16:
        alpha = 0.673
    elif m == 32:
        alpha = 0.697
    elif m == 64:
        alpha = 0.709
    else:
        alpha = 0.7213 / (1.0 + 1.079 / dm)
    e = alpha * dm * dm / sm
    if e <= 2.5 * dm and zeros > 0:
        e = dm * log(dm / <double>zeros)
    return e


cdef double _hll(const uint8_t* r, Py_ssize_t m, const double* inv2) noexcept nogil:
    cdef double s = 0.0
    cdef Py_ssize_t j, zeros = 0
    for j in range(m):
        s += inv2[r[j]]
        if r[j] == 0:
            zeros += 1
    return _hll_estimate(s, zeros, m)


# ---------------------------------------------------------------- public API

def hash_keys(keys, key_wmask, seed):
    """ns_hash of every key under the word masks and seed -> uint64 array."""
    cdef uint64_t m[NWORDS]
    _masks(key_wmask, m)
    cdef uint64_t s = <uint64_t>int(seed)
    cdef const uint64_t[:, ::1] w = _key_words(keys)
    cdef Py_ssize_t n = w.shape[0], k
    out = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    with nogil:
        for k in range(n):
            o[k] = ns_hash(&w[k, 0], m, s)
    return out


def cm_update(cells, keys, lengths, *, key_wmask, seed, depth, width_log2, offset):
    """Count keys[k] as one packet of lengths[k] bytes into a Count-Min task, in place."""
    cdef uint64_t m[NWORDS]
    _masks(key_wmask, m)
    cdef uint64_t s = <uint64_t>int(seed)
    cdef int d = depth, wl = width_log2
    cdef uint64_t[::1] c = _u64_flat(cells, True)
    cdef Py_ssize_t off = offset
    _check_cm(c.shape[0] // 2, d, wl, off)
    cdef const uint64_t[:, ::1] w = _key_words(keys)
    cdef const uint64_t[::1] ln = np.ascontiguousarray(lengths, dtype=np.uint64).reshape(-1)
    cdef Py_ssize_t n = w.shape[0], k, b
    if ln.shape[0] != n:
        raise ValueError(f"{n} keys but {ln.shape[0]} lengths")
    cdef Py_ssize_t idx[8]
    cdef int i
    cdef uint64_t L
    with nogil:
        for k in range(n):
            _cols(ns_hash(&w[k, 0], m, s), d, wl, idx)
            L = ln[k]
            for i in range(d):
                b = 2 * (off + idx[i])
                c[b] += 1
                c[b + 1] += L


cdef void _cm_query(const uint64_t[::1] c, const uint64_t[:, ::1] w, const uint64_t* m, uint64_t s,
                    int d, int wl, Py_ssize_t off, uint64_t[::1] op, uint64_t[::1] ob) noexcept nogil:
    cdef Py_ssize_t idx[8]
    cdef Py_ssize_t k, b, n = w.shape[0]
    cdef int i
    cdef uint64_t p, y
    for k in range(n):
        _cols(ns_hash(&w[k, 0], m, s), d, wl, idx)
        b = 2 * (off + idx[0])
        p = c[b]
        y = c[b + 1]
        for i in range(1, d):
            b = 2 * (off + idx[i])
            if c[b] < p:
                p = c[b]
            if c[b + 1] < y:
                y = c[b + 1]
        op[k] = p
        ob[k] = y


def cm_query(cells, keys, *, key_wmask, seed, depth, width_log2, offset):
    """Count-Min estimates -> (packets, bytes) uint64 arrays, each the minimum over rows."""
    cdef uint64_t m[NWORDS]
    _masks(key_wmask, m)
    cdef uint64_t s = <uint64_t>int(seed)
    cdef int d = depth, wl = width_log2
    cdef const uint64_t[::1] c = _u64_flat(cells, False)
    cdef Py_ssize_t off = offset
    _check_cm(c.shape[0] // 2, d, wl, off)
    cdef const uint64_t[:, ::1] w = _key_words(keys)
    n = w.shape[0]
    pk = np.empty(n, dtype=np.uint64)
    by = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] op = pk, ob = by
    with nogil:
        _cm_query(c, w, m, s, d, wl, off, op, ob)
    return pk, by


def ss_update(regs, keys, *, key_wmask, seed, elem_wmask, elem_seed, depth, width_log2, regs_log2, offset):
    """Virtual HyperLogLog update, in place: the element hash picks the key's
    virtual register j and its rank; pool register (h1 + j*h2) mod 2**32 & (M-1)
    is raised to the rank (one register per key)."""
    cdef uint64_t km[NWORDS]
    cdef uint64_t em[NWORDS]
    _masks(key_wmask, km)
    _masks(elem_wmask, em)
    cdef uint64_t ks = <uint64_t>int(seed), es = <uint64_t>int(elem_seed)
    cdef int d = depth, wl = width_log2, rl = regs_log2
    cdef uint8_t[::1] r = _u8_flat(regs, True)
    cdef Py_ssize_t off = offset
    _check_ss(r.shape[0], d, wl, rl, off)
    cdef const uint64_t[:, ::1] w = _key_words(keys)
    cdef Py_ssize_t n = w.shape[0], k, b, base = off * 8
    cdef uint64_t hk, he, x
    cdef uint32_t j, h1, h2
    cdef uint32_t mask = (<uint32_t>1 << wl) - 1u
    cdef uint8_t rank
    with nogil:
        for k in range(n):
            he = ns_hash(&w[k, 0], em, es)
            j = <uint32_t>(he & ((<uint64_t>1 << rl) - 1))
            x = he >> rl
            if x != 0:
                rank = <uint8_t>(ns_ctz64(x) + 1)
            else:
                rank = <uint8_t>(64 - rl + 1)
            hk = ns_hash(&w[k, 0], km, ks)
            h1 = <uint32_t>hk
            h2 = <uint32_t>(hk >> 32) | 1u
            b = base + <Py_ssize_t>((h1 + j * h2) & mask)
            if r[b] < rank:
                r[b] = rank


cdef void _inv2_table(double* inv2) noexcept:
    cdef int i
    for i in range(256):
        inv2[i] = ldexp(1.0, -i)


def ss_pool_estimate(regs, *, width_log2, offset):
    """E_M: HyperLogLog estimate over the whole pool of M = 2**width_log2
    registers of a SuperSpread task (linear counting when many are zero)."""
    cdef int wl = width_log2
    cdef const uint8_t[::1] r = _u8_flat(regs, False)
    cdef Py_ssize_t off = offset
    if wl < 3 or wl > 31:
        raise ValueError(f"SuperSpread width_log2 (pool size) must be 3..31, got {wl}")
    if off < 0 or off * 8 + (<Py_ssize_t>1 << wl) > r.shape[0]:
        raise ValueError(f"SuperSpread pool [{off * 8}, {off * 8 + (1 << wl)}) outside {r.shape[0]}")
    cdef double inv2[256]
    cdef double e
    _inv2_table(inv2)
    with nogil:
        e = _hll(&r[off * 8], <Py_ssize_t>1 << wl, inv2)
    return e


def ss_estimate(regs, keys, *, key_wmask, seed, depth, width_log2, regs_log2, offset, correct=True, pool=None):
    """Distinct-element estimate of every key -> float64 array (virtual HyperLogLog).

    E_s: HyperLogLog of the key's s = 2**regs_log2 virtual registers (pool
    positions (h1 + j*h2) mod 2**32 & (M-1), j = 0..s-1; linear counting below
    2.5 s).  Other keys' elements that land in those registers raise it.

    correct=True (default): with E_M the estimate of the whole pool of
    M = 2**width_log2 registers (computed once per call),
        n = (M * s / (M - s)) * (E_s / s - E_M / M), clamped at 0:
    each register holds about E_M / M elements of all keys, so this removes
    the expected share of the other keys.  Unbiased up to the HLL error.

    correct=False: E_s alone (never much below the truth, inflated by noise).
    pool: E_M computed earlier by ss_pool_estimate() of the same registers
    (a point query then costs s register reads, not a pass over the pool).
    """
    cdef uint64_t km[NWORDS]
    _masks(key_wmask, km)
    cdef uint64_t ks = <uint64_t>int(seed)
    cdef int d = depth, wl = width_log2, rl = regs_log2
    cdef bint corr = bool(correct)
    cdef const uint8_t[::1] r = _u8_flat(regs, False)
    cdef Py_ssize_t off = offset
    _check_ss(r.shape[0], d, wl, rl, off)
    cdef const uint64_t[:, ::1] w = _key_words(keys)
    cdef Py_ssize_t n = w.shape[0], k, base = off * 8
    cdef uint32_t s = <uint32_t>1 << rl, j, h1, h2
    cdef uint32_t mask = (<uint32_t>1 << wl) - 1u
    cdef uint64_t hk
    cdef double M = <double>(<Py_ssize_t>1 << wl), S = <double>s
    out = np.empty(n, dtype=np.float64)
    cdef double[::1] o = out
    cdef double inv2[256]
    cdef double sm, e, scale
    cdef double e_pool = -1.0 if pool is None else <double>float(pool)
    cdef Py_ssize_t zeros
    cdef uint8_t v
    _inv2_table(inv2)
    scale = M * S / (M - S)
    with nogil:
        if corr and n and e_pool < 0.0:
            e_pool = _hll(&r[base], <Py_ssize_t>1 << wl, inv2)
        for k in range(n):
            hk = ns_hash(&w[k, 0], km, ks)
            h1 = <uint32_t>hk
            h2 = <uint32_t>(hk >> 32) | 1u
            sm = 0.0
            zeros = 0
            for j in range(s):
                v = r[base + <Py_ssize_t>((h1 + j * h2) & mask)]
                sm += inv2[v]
                if v == 0:
                    zeros += 1
            e = _hll_estimate(sm, zeros, s)
            if corr:
                e = scale * (e / S - e_pool / M)
                if e < 0.0:
                    e = 0.0
            o[k] = e
    return out


cdef object _percpu_2d(percpu, object dtype, bint clear):
    a = percpu
    if not isinstance(a, np.ndarray):
        raise TypeError("percpu must be a numpy array")
    if not a.flags.c_contiguous:
        raise ValueError("percpu must be C-contiguous")
    if clear and not a.flags.writeable:
        raise ValueError("clear=True needs a writable percpu array")
    if a.ndim < 1:
        raise ValueError("percpu must be (ncpus, ...)")
    ncpus = a.shape[0]
    a = a.reshape(ncpus, int(np.prod(a.shape[1:], dtype=np.int64)))
    if a.dtype != dtype:
        if a.dtype.kind not in "uiV" or (a.dtype.itemsize % np.dtype(dtype).itemsize):
            raise TypeError(f"percpu dtype {a.dtype} cannot be viewed as {np.dtype(dtype)}")
        a = a.view(dtype)
    return a


cdef object _out_for(object out, Py_ssize_t n, object dtype):
    if out is None:
        return np.empty(n, dtype=dtype)
    if not isinstance(out, np.ndarray) or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be a writable C-contiguous numpy array")
    o = out.reshape(-1)
    if o.dtype != dtype:
        o = o.view(dtype)
    if o.shape[0] != n:
        raise ValueError(f"out holds {o.shape[0]} elements, need {n}")
    return o


def merge_sum_u64(percpu, out=None, clear=False, add=False):
    """Sum (mod 2**64) of the per-CPU rows of a (ncpus, ...) array viewed as uint64.

    Returns `out` (a new flat uint64 array if None; a given out is filled
    through a flat uint64 view, so an abi.COUNTER out works).  add=True adds
    the sum to what `out` holds instead of overwriting it.  clear=True also
    zeroes `percpu` in the same pass (the next epoch's counters start at 0),
    which saves a second walk over the memory.
    """
    cdef bint clr = bool(clear), acc = bool(add)
    if acc and out is None:
        raise ValueError("add=True needs an out array")
    a = _percpu_2d(percpu, np.uint64, clr)
    cdef Py_ssize_t ncpus = a.shape[0], n = a.shape[1]
    o = _out_for(out, n, np.uint64)
    cdef uint64_t[::1] ov = o
    if ncpus == 0:
        if not acc:
            ov[:] = 0
        return out if out is not None else o
    cdef const uint64_t[:, ::1] src = a
    cdef uint64_t* dst = &ov[0] if n else NULL
    cdef const uint64_t* row
    cdef Py_ssize_t c
    if n:
        with nogil:
            if acc:
                ns_add_u64(dst, &src[0, 0], n)
            else:
                memcpy(dst, &src[0, 0], n * sizeof(uint64_t))
            if clr:
                memset(<void*>&src[0, 0], 0, n * sizeof(uint64_t))
            for c in range(1, ncpus):
                row = &src[c, 0]
                ns_add_u64(dst, row, n)
                if clr:
                    memset(<void*>row, 0, n * sizeof(uint64_t))
    return out if out is not None else o


def merge_max_u8(percpu, out=None, clear=False, add=False):
    """Element-wise max of the per-CPU rows of a (ncpus, ...) uint8 register array.

    Same contract as merge_sum_u64 (flat uint8 result, optional out, add=True
    maxes into what `out` holds, clear=True zeroes percpu in the same pass).
    """
    cdef bint clr = bool(clear), acc = bool(add)
    if acc and out is None:
        raise ValueError("add=True needs an out array")
    a = _percpu_2d(percpu, np.uint8, clr)
    cdef Py_ssize_t ncpus = a.shape[0], n = a.shape[1]
    o = _out_for(out, n, np.uint8)
    cdef uint8_t[::1] ov = o
    if ncpus == 0:
        if not acc:
            ov[:] = 0
        return out if out is not None else o
    cdef const uint8_t[:, ::1] src = a
    cdef uint8_t* dst = &ov[0] if n else NULL
    cdef const uint8_t* row
    cdef Py_ssize_t c
    if n:
        with nogil:
            if acc:
                ns_max_u8(dst, &src[0, 0], n)
            else:
                memcpy(dst, &src[0, 0], n)
            if clr:
                memset(<void*>&src[0, 0], 0, n)
            for c in range(1, ncpus):
                row = &src[c, 0]
                ns_max_u8(dst, row, n)
                if clr:
                    memset(<void*>row, 0, n)
    return out if out is not None else o


def verify_candidates(cells, keys, *, key_wmask, seed, depth, width_log2, offset, hh_packets=0, hh_bytes=0):
    """Heavy-hitter check of candidate keys against a merged Count-Min task.

    Returns (keys, packets, bytes): the unique candidates (after masking with
    key_wmask) whose packet estimate reaches hh_packets or whose byte estimate
    reaches hh_bytes (a threshold of 0 is unused), in key byte order, with
    their estimates.  Since Count-Min never underestimates, no key whose true
    count reaches a threshold is dropped.
    """
    hp = int(hh_packets)
    hb = int(hh_bytes)
    cdef uint64_t m[NWORDS]
    _masks(key_wmask, m)
    # distinct masked keys by hashing (np.unique over (n, 5) words sorts: 10x slower)
    w = group_keys(keys, key_wmask)[0].view("<u8").reshape(-1, NWORDS)
    pk, by = cm_query(cells, w, key_wmask=key_wmask, seed=seed, depth=depth, width_log2=width_log2, offset=offset)
    sel = np.zeros(w.shape[0], dtype=bool)
    if hp > 0:
        sel |= pk >= np.uint64(hp)
    if hb > 0:
        sel |= by >= np.uint64(hb)
    hits = np.flatnonzero(sel)
    hits = hits[np.lexsort(w[hits].T[::-1])] if len(hits) else hits  # in key word order, as documented
    from . import abi
    out_keys = np.ascontiguousarray(w[hits]).view(np.uint8).view(abi.KEY).reshape(-1)
    return out_keys, pk[hits], by[hits]


# The agent's half of the heavy part (flows -> sketches, grouping, the clock).
include "_flows.pxi"
# Offline analysis of capture files (netspectra/offline.py).
include "_pcap.pxi"
