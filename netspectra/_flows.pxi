# Included by _sketch.pyx before _pcap.pxi: the agent's half of the heavy part.
#
# The XDP program updates the sketch tasks only for packets its flow table
# cannot hold; the epoch's sketch is the sketch of its exact flows plus those
# overflow arrays.  That is bit for bit the sketch of updating every packet:
# a Count-Min cell is a sum over the packets that hash to it (a flow adds its
# packets and bytes at once), a SuperSpread register is a max over the
# distinct (key, element) pairs (a flow is one pair, whatever its packets).
#
# Here, without the GIL: the sketch of a batch of flows (sketch_flows), the
# epoch's flows gathered from the kernel's per-CPU tables and merged over CPUs
# (flows_take), grouping flows by a key's fields (group_keys: exact per-key
# sums, flow counts, distinct elements), and the millisecond clock the
# program stamps flows with (run_clock).

from libc.stdint cimport int64_t

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int CLOCK_MONOTONIC
    int TIMER_ABSTIME
    int clock_gettime(int clk, timespec* ts)
    int clock_nanosleep(int clk, int flags, const timespec* req, timespec* rem)

cdef extern from "<sys/prctl.h>" nogil:
    int PR_SET_TIMERSLACK
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)

cdef extern from *:
    """
    #include <sys/mman.h>
    /* Scratch for a table of millions of flows: on 2 MiB pages where the
     * kernel gives them (transparent huge pages on madvise), so random
     * probes do not miss the TLB on every access. */
    static void *ns_big_alloc(size_t size) {
        void *p = NULL;
        if (size < (2u << 20))
            return malloc(size);
        if (posix_memalign(&p, 2u << 20, size))
            return NULL;
        madvise(p, size, MADV_HUGEPAGE);
        return p;
    }
    """
    void* ns_big_alloc(size_t size) nogil

cdef enum:
    _MAX_TASKS = 8
    _MAX_FIELDSETS = 8
    _BATCH = 8  # flows whose cells are prefetched together

ctypedef struct _Task:
    uint32_t kind
    uint32_t depth
    uint32_t wl
    uint32_t rl
    uint32_t key_set
    uint32_t elem_set
    Py_ssize_t offset
    uint64_t seed
    uint64_t elem_seed

ctypedef struct _Tasks:            # the sketch tasks of an abi.CONFIG record
    _Task t[_MAX_TASKS]
    uint64_t fsm[_MAX_FIELDSETS * 5]
    uint32_t nfs
    int n                          # tasks that are on


cdef int _tasks_init(_Tasks* ts, config) except -1:
    """Read the layout's abi.CONFIG record (what the kernel reads too)."""
    memset(ts, 0, sizeof(_Tasks))
    rec = config.reshape(-1)[0]
    ts.nfs = int(rec["nfieldsets"])
    if ts.nfs > _MAX_FIELDSETS:
        raise ValueError("too many field sets")
    if len(rec["tasks"]) != _MAX_TASKS:
        raise ValueError(f"the config record holds {len(rec['tasks'])} tasks, the engine {_MAX_TASKS}")
    fs = rec["fieldset_wmask"]
    cdef int i, k
    for i in range(_MAX_FIELDSETS):
        for k in range(5):
            ts.fsm[i * 5 + k] = <uint64_t>int(fs[i][k])
    for i in range(_MAX_TASKS):
        t = rec["tasks"][i]
        ts.t[i].kind = int(t["kind"])
        ts.t[i].depth = int(t["depth"])
        ts.t[i].wl = int(t["width_log2"])
        ts.t[i].rl = int(t["regs_log2"])
        ts.t[i].key_set = int(t["key_set"])
        ts.t[i].elem_set = int(t["elem_set"])
        ts.t[i].offset = int(t["offset"])
        ts.t[i].seed = <uint64_t>int(t["seed"])
        ts.t[i].elem_seed = <uint64_t>int(t["elem_seed"])
        if ts.t[i].kind:
            ts.n += 1
    return 0


cdef int _tasks_check(_Tasks* ts, Py_ssize_t ncells, Py_ssize_t nregs) except -1:
    """Every task fits the arrays (boundscheck is off: this is the check)."""
    cdef int i
    cdef _Task* t
    for i in range(_MAX_TASKS):
        t = &ts.t[i]
        if t.kind == 1:
            _check_cm(ncells, t.depth, t.wl, t.offset)
        elif t.kind == 2:
            _check_ss(nregs, t.depth, t.wl, t.rl, t.offset)
        elif t.kind != 0:
            raise ValueError(f"task {i}: unknown kind {t.kind}")
    return 0


ctypedef struct _Plan:
    # Cells one packet or flow updates: Count-Min pair indices, SuperSpread
    # register indices and ranks (one register per SuperSpread task).
    Py_ssize_t cm[_MAX_TASKS * 8]
    Py_ssize_t ss[_MAX_TASKS]
    uint8_t rank[_MAX_TASKS]
    int ncm
    int nss


cdef inline void _plan(const _Tasks* ts, const uint64_t* cm, const uint8_t* ss, const uint64_t* w,
                       _Plan* pl) noexcept nogil:
    """The sketch part of ns_sketch() (sensor.c) for one 5-tuple: fold each
    field set once, remix per task seed, slice rows h1 + i*h2 (SuperSpread:
    virtual register j at pool position h1 + j*h2); prefetch every cell."""
    cdef uint64_t fold[_MAX_FIELDSETS]
    cdef int i, t
    cdef uint32_t d
    cdef uint64_t h, he, x
    cdef uint32_t h1, h2, wmask, j, wl, rl
    cdef uint8_t rank
    cdef Py_ssize_t b
    cdef const _Task* tk
    pl.ncm = 0
    pl.nss = 0
    for i in range(_MAX_FIELDSETS):
        fold[i] = ns_fold(w, &ts.fsm[i * 5]) if <uint32_t>i < ts.nfs else 0
    for t in range(_MAX_TASKS):
        tk = &ts.t[t]
        if tk.kind == 1:  # Count-Min
            h = ns_fmix(fold[tk.key_set & (_MAX_FIELDSETS - 1)] ^ tk.seed)
            h1 = <uint32_t>h
            h2 = <uint32_t>(h >> 32) | 1u
            wl = tk.wl & 31
            wmask = (<uint32_t>1 << wl) - 1u
            for d in range(tk.depth):
                b = 2 * (tk.offset + (<Py_ssize_t>d << wl) + <Py_ssize_t>((h1 + d * h2) & wmask))
                __builtin_prefetch(&cm[b], 1, 1)
                pl.cm[pl.ncm] = b
                pl.ncm += 1
        elif tk.kind == 2:  # SuperSpread
            h = ns_fmix(fold[tk.key_set & (_MAX_FIELDSETS - 1)] ^ tk.seed)
            he = ns_fmix(fold[tk.elem_set & (_MAX_FIELDSETS - 1)] ^ tk.elem_seed)
            rl = tk.rl & 15
            j = <uint32_t>(he & ((<uint64_t>1 << rl) - 1))
            x = he >> rl
            rank = <uint8_t>(ns_ctz64(x) + 1) if x != 0 else <uint8_t>(65 - rl)
            h1 = <uint32_t>h
            h2 = <uint32_t>(h >> 32) | 1u
            wl = tk.wl & 31
            wmask = (<uint32_t>1 << wl) - 1u
            b = tk.offset * 8 + <Py_ssize_t>((h1 + j * h2) & wmask)
            __builtin_prefetch(&ss[b], 1, 1)
            pl.ss[pl.nss] = b
            pl.rank[pl.nss] = rank
            pl.nss += 1


cdef inline void _apply(uint64_t* cm, uint8_t* ss, const _Plan* pl, uint64_t packets, uint64_t nbytes) noexcept nogil:
    cdef int i
    cdef uint64_t* c
    for i in range(pl.ncm):
        c = &cm[pl.cm[i]]
        c[0] += packets
        c[1] += nbytes
    for i in range(pl.nss):
        if ss[pl.ss[i]] < pl.rank[i]:
            ss[pl.ss[i]] = pl.rank[i]


cdef inline uint64_t _rd64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef void _sketch_records(const _Tasks* ts, uint64_t* cm, uint8_t* ss, const uint8_t* base, Py_ssize_t n,
                          Py_ssize_t stride, Py_ssize_t pk_off, Py_ssize_t by_off) noexcept nogil:
    """Add n flow records (the 5-tuple in their first 40 bytes, packets and
    bytes at pk_off / by_off) to the sketch arrays, _BATCH flows at a time so
    the cache misses of a batch overlap."""
    cdef _Plan pl[_BATCH]
    cdef uint64_t w[_BATCH][5]
    cdef Py_ssize_t i0, i, m, k
    cdef const uint8_t* r
    if ts.n == 0:
        return
    i0 = 0
    while i0 < n:
        m = n - i0 if n - i0 < _BATCH else _BATCH
        for i in range(m):
            r = base + (i0 + i) * stride
            memcpy(&w[i][0], r, 40)
            _plan(ts, cm, ss, &w[i][0], &pl[i])
        for i in range(m):
            r = base + (i0 + i) * stride
            _apply(cm, ss, &pl[i], _rd64(r + pk_off), _rd64(r + by_off))
        i0 += m


def sketch_flows(config, cm, ss, flows):
    """Add the sketch of `flows` (an analysis.FLOW_RECORD array: 5-tuple,
    packets, bytes) to the arrays cm (abi.COUNTER cells) and ss (uint8
    registers) of the layout whose abi.CONFIG record is `config`, in place.
    Equal, bit for bit, to counting each flow's packets one by one."""
    cdef _Tasks ts
    _tasks_init(&ts, config)
    cdef uint64_t[::1] c = _u64_flat(cm, True)
    cdef uint8_t[::1] r = _u8_flat(ss, True)
    _tasks_check(&ts, c.shape[0] // 2, r.shape[0])
    fl = np.ascontiguousarray(flows).reshape(-1)
    names = fl.dtype.names or ()
    if not all(x in names for x in ("key", "packets", "bytes")) or fl.dtype.fields["key"][1] != 0:
        raise TypeError(f"flows must be records with key (first), packets and bytes, got {fl.dtype}")
    if fl.dtype.fields["key"][0].itemsize != _KEY_ITEMSIZE:
        raise TypeError("flow keys must be abi.KEY")
    cdef Py_ssize_t n = fl.shape[0], stride = fl.dtype.itemsize
    cdef Py_ssize_t pk = fl.dtype.fields["packets"][1], by = fl.dtype.fields["bytes"][1]
    if n == 0:
        return
    cdef const uint8_t[::1] raw = fl.view(np.uint8).reshape(-1)
    cdef uint64_t* cp = &c[0] if c.shape[0] else NULL
    cdef uint8_t* rp = &r[0] if r.shape[0] else NULL
    with nogil:
        _sketch_records(&ts, cp, rp, &raw[0], n, stride, pk, by)


# ---------------------------------------------------------------- reading the kernel's table

ctypedef packed struct _FlowRec:   # analysis.FLOW_RECORD (75 bytes)
    uint64_t key[5]
    uint64_t packets
    uint64_t bytes
    uint64_t first_ns
    uint64_t last_ns
    uint8_t tcp_flags
    uint8_t icmp_type
    uint8_t icmp_code

ctypedef struct _KFlow:            # struct ns_flow (netspectra/bpf/netspectra.h)
    uint64_t key[5]
    uint32_t gen
    uint8_t tcp_flags
    uint8_t icmp_type
    uint8_t icmp_code
    uint8_t pad
    uint64_t packets
    uint64_t bytes
    uint64_t first_ns
    uint64_t last_ns


cdef inline uint64_t _key_hash(const uint64_t* k) noexcept nogil:
    cdef uint64_t h = 0
    cdef int i
    for i in range(5):
        h = (h ^ k[i]) * HASH_MUL
        h ^= h >> 32
    return ns_fmix(h)


cdef inline bint _same5(const uint64_t* a, const uint64_t* b) noexcept nogil:
    return a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and a[3] == b[3] and a[4] == b[4]


def flows_take(entries, fidx, counts, record_dtype, uint64_t mono_to_wall_ns=0):
    """The epoch's flows from one map set of the kernel's table.

    entries: (ncpus, slots) abi.FLOW, the set's slices; fidx: (ncpus, cap)
    uint64, each CPU's claimed slots; counts: (ncpus,) how many
    (ns_totals.flows).  Returns a record_dtype (analysis.FLOW_RECORD) array,
    one record per 5-tuple: packets and bytes summed over CPUs, first seen the
    earliest, last seen the latest, TCP flags ORed, ICMP type/code of the CPU
    that saw the flow first; times shifted by mono_to_wall_ns.  Slot indices
    and counts come from kernel memory, so both are bounds-checked."""
    if np.dtype(record_dtype).itemsize != sizeof(_FlowRec):
        raise TypeError("record_dtype must be analysis.FLOW_RECORD")
    if entries.ndim != 2 or entries.dtype.itemsize != sizeof(_KFlow) or not entries.flags.c_contiguous:
        raise TypeError("entries must be a C-contiguous (ncpus, slots) abi.FLOW array")
    if fidx.ndim != 2 or fidx.dtype != np.uint64 or not fidx.flags.c_contiguous:
        raise TypeError("fidx must be a C-contiguous (ncpus, cap) uint64 array")
    cdef Py_ssize_t ncpus = entries.shape[0], nslots = entries.shape[1], cap = fidx.shape[1]
    if fidx.shape[0] != ncpus:
        raise ValueError("entries and fidx differ in CPUs")
    cnt = np.minimum(np.asarray(counts, dtype=np.uint64).reshape(-1), np.uint64(cap))
    if cnt.shape[0] != ncpus:
        raise ValueError("counts must hold one value per CPU")
    cdef Py_ssize_t total = int(cnt.sum()), busy = int(np.count_nonzero(cnt))
    out = np.zeros(total, dtype=record_dtype)
    if total == 0:
        return out
    cdef const uint8_t[::1] ev = entries.reshape(-1).view(np.uint8)
    cdef const uint64_t[:, ::1] iv = fidx
    cdef const uint64_t[::1] cv = cnt
    cdef uint8_t[::1] ov = out.view(np.uint8)
    cdef const _KFlow* ents = <const _KFlow*>&ev[0]
    cdef _FlowRec* recs = <_FlowRec*>&ov[0]
    cdef Py_ssize_t nout = 0, c, i, nidx = 0
    cdef uint64_t slot, h, hmask = 0
    cdef int64_t* index = NULL
    cdef Py_ssize_t j
    cdef const _KFlow* e
    cdef _FlowRec* o
    cdef bint merge = busy > 1, bad = False
    if merge:
        nidx = 1
        while nidx < 2 * total:
            nidx <<= 1
        index = <int64_t*>ns_big_alloc(nidx * sizeof(int64_t))
        if index == NULL:
            raise MemoryError()
        hmask = <uint64_t>nidx - 1
    with nogil:
        if merge:
            memset(index, 0, nidx * sizeof(int64_t))
        for c in range(ncpus):
            for i in range(<Py_ssize_t>cv[c]):
                slot = iv[c, i]
                if slot >= <uint64_t>nslots:
                    bad = True
                    continue
                e = &ents[c * nslots + <Py_ssize_t>slot]
                o = NULL
                if merge:
                    h = _key_hash(e.key)
                    j = <Py_ssize_t>(h & hmask)
                    while index[j] != 0:
                        if _same5(recs[index[j] - 1].key, e.key):
                            o = &recs[index[j] - 1]
                            break
                        j = <Py_ssize_t>((<uint64_t>j + 1) & hmask)
                if o == NULL:
                    o = &recs[nout]
                    nout += 1
                    if merge:
                        index[j] = nout
                    memcpy(o.key, e.key, 40)
                    o.packets = e.packets
                    o.bytes = e.bytes
                    o.first_ns = e.first_ns + mono_to_wall_ns
                    o.last_ns = e.last_ns + mono_to_wall_ns
                    o.tcp_flags = e.tcp_flags
                    o.icmp_type = e.icmp_type
                    o.icmp_code = e.icmp_code
                else:
                    o.packets += e.packets
                    o.bytes += e.bytes
                    if e.first_ns + mono_to_wall_ns < o.first_ns:
                        o.first_ns = e.first_ns + mono_to_wall_ns
                        o.icmp_type = e.icmp_type
                        o.icmp_code = e.icmp_code
                    if e.last_ns + mono_to_wall_ns > o.last_ns:
                        o.last_ns = e.last_ns + mono_to_wall_ns
                    o.tcp_flags |= e.tcp_flags
    free(index)
    if bad:
        raise ValueError("the kernel's flow list names a slot outside the table")
    return out[:nout]


# ---------------------------------------------------------------- grouping flows by key fields

cdef object _key_rows(obj, Py_ssize_t* stride):
    """A flat uint8 view of keys and the byte distance between two keys:
    abi.KEY or (n, 5) uint64 arrays, or records whose first field is the key
    (analysis.FLOW_RECORD), read in place."""
    a = np.asarray(obj)
    if a.dtype == np.uint64 and a.ndim == 2 and a.shape[1] == NWORDS:
        a = np.ascontiguousarray(a)
        stride[0] = 40
        return a.reshape(-1).view(np.uint8)
    a = a.reshape(-1)
    if a.dtype.names and a.dtype.names[0] == "key" and a.dtype.fields["key"][1] == 0:
        if a.dtype.fields["key"][0].itemsize != _KEY_ITEMSIZE:
            raise TypeError("record keys must be abi.KEY")
    elif a.dtype.itemsize != _KEY_ITEMSIZE or a.dtype.kind != "V":
        raise TypeError(f"keys must be abi.KEY, uint64 (n, 5) or records with a key first, got {a.dtype}")
    a = np.ascontiguousarray(a)
    stride[0] = a.dtype.itemsize
    return a.view(np.uint8).reshape(-1)


ctypedef struct _Slot:
    uint64_t hash
    int64_t group                  # + 1; 0 = empty


ctypedef struct _Group:            # one group of group_keys(): 64 bytes
    uint64_t key[5]
    uint64_t packets
    uint64_t bytes
    int64_t count

_GROUP = np.dtype({
    "names": ["key", "packets", "bytes", "count"],
    "formats": [("V", 40), "<u8", "<u8", "<i8"],
    "offsets": [0, 40, 48, 56],
    "itemsize": 64,
})


def group_keys(keys, key_wmask, packets=None, bytes=None):
    """Group keys by the fields of a word mask (exactly, by value).

    keys: abi.KEY, uint64 (n, 5), or records with the key first (the flows
    of an epoch, read in place).  Returns (ukeys, inverse, packets, bytes,
    count): the distinct keys masked to the fields (abi.KEY, first-seen
    order), the group of every key (int64), and per group the sums of packets
    and bytes (uint64, zeros when not given) and the number of keys.
    Hashing, no sort: O(n)."""
    cdef uint64_t m[NWORDS]
    _masks(key_wmask, m)
    cdef Py_ssize_t stride = 0
    raw = _key_rows(keys, &stride)
    cdef Py_ssize_t n = raw.shape[0] // stride if stride else 0
    pk = np.zeros(n, np.uint64) if packets is None else np.ascontiguousarray(packets, dtype=np.uint64).reshape(-1)
    by = np.zeros(n, np.uint64) if bytes is None else np.ascontiguousarray(bytes, dtype=np.uint64).reshape(-1)
    if pk.shape[0] != n or by.shape[0] != n:
        raise ValueError(f"{n} keys, {pk.shape[0]} packet counts, {by.shape[0]} byte counts")
    inverse = np.empty(n, np.int64)
    if n == 0:
        return np.zeros(0, _key_dtype()), inverse, np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int64)
    # Per-group scratch is malloc'd and freed here (the heap reuses it next
    # epoch); only the ng groups are copied out.
    cdef _Group* grp = <_Group*>ns_big_alloc(n * sizeof(_Group))
    if grp == NULL:
        raise MemoryError()
    cdef Py_ssize_t ng
    try:
        ng = _group(raw, stride, n, m, pk, by, inverse, grp)
        out = np.empty(ng, _GROUP)
        if ng:
            memcpy(<void*>cnp.PyArray_DATA(out), grp, ng * sizeof(_Group))
    finally:
        free(grp)
    return (
        np.ascontiguousarray(out["key"]).view(_key_dtype()).reshape(-1),
        inverse,
        np.ascontiguousarray(out["packets"]),
        np.ascontiguousarray(out["bytes"]),
        np.ascontiguousarray(out["count"]),
    )


cdef object _key_dtype():
    from . import abi
    return abi.KEY


cdef int _index_grow(_Slot** index, Py_ssize_t* nidx) noexcept nogil:
    """Double an open-addressing index, re-placing its slots by their hashes."""
    cdef Py_ssize_t n2 = nidx[0] * 2, i, j
    cdef uint64_t mask = <uint64_t>n2 - 1
    cdef _Slot* old = index[0]
    cdef _Slot* new = <_Slot*>ns_big_alloc(n2 * sizeof(_Slot))
    if new == NULL:
        return -1
    memset(new, 0, n2 * sizeof(_Slot))
    for i in range(nidx[0]):
        if old[i].group != 0:
            j = <Py_ssize_t>(old[i].hash & mask)
            while new[j].group != 0:
                j = <Py_ssize_t>((<uint64_t>j + 1) & mask)
            new[j] = old[i]
    free(old)
    index[0] = new
    nidx[0] = n2
    return 0


cdef Py_ssize_t _group(const uint8_t[::1] raw, Py_ssize_t stride, Py_ssize_t n, const uint64_t* m,
                       const uint64_t[::1] pv, const uint64_t[::1] bv, int64_t[::1] inv, _Group* grp) except -1:
    """Group n keys (at raw + i * stride) by the fields of mask m into grp;
    inv[i] = the group of key i.  The index starts small and doubles at half
    load, so few distinct keys stay in cache."""
    cdef Py_ssize_t nidx = 1024, i, j, g, ng = 0
    cdef uint64_t h
    cdef _Slot* index = <_Slot*>malloc(nidx * sizeof(_Slot))
    if index == NULL:
        raise MemoryError()
    cdef uint64_t a[5]
    cdef const uint64_t* b
    cdef const uint8_t* base = &raw[0]
    cdef int q
    cdef bint oom = False
    with nogil:
        memset(index, 0, nidx * sizeof(_Slot))
        for i in range(n):
            memcpy(a, base + i * stride, 40)
            for q in range(5):
                a[q] &= m[q]
            h = ns_fmix(ns_fold(a, m))
            j = <Py_ssize_t>(h & <uint64_t>(nidx - 1))
            g = -1
            while index[j].group != 0:
                if index[j].hash == h:
                    b = grp[index[j].group - 1].key
                    if b[0] == a[0] and b[1] == a[1] and b[2] == a[2] and b[3] == a[3] and b[4] == a[4]:
                        g = index[j].group - 1
                        break
                j = <Py_ssize_t>((<uint64_t>j + 1) & <uint64_t>(nidx - 1))
            if g < 0:
                g = ng
                memcpy(grp[g].key, a, 40)
                grp[g].packets = 0
                grp[g].bytes = 0
                grp[g].count = 0
                ng += 1
                index[j].hash = h
                index[j].group = ng
                if 2 * ng > nidx and _index_grow(&index, &nidx) < 0:
                    oom = True
                    break
            inv[i] = g
            grp[g].packets += pv[i]
            grp[g].bytes += bv[i]
            grp[g].count += 1
    free(index)
    if oom:
        raise MemoryError()
    return ng


def merge_records(parts, key_wmask):
    """Flow records of several epochs or sensors (a list of contiguous
    analysis.FLOW_RECORD arrays) -> (merged, hashes): one record per 5-tuple
    in first-seen order -- packets and bytes summed, first seen the earliest,
    last seen the latest, flags ORed, ICMP type/code of its first record --
    and each one's ns_hash under key_wmask (seed 0), by which the caller
    orders them.  Keys are compared whole; the hash only places them.  One
    pass over an open-addressing index: O(n), no sort, no concatenation."""
    cdef uint64_t m[NWORDS]
    _masks(key_wmask, m)
    parts = list(parts)
    if not parts:
        raise ValueError("no flows to merge")
    for p in parts:
        if p.dtype != parts[0].dtype or p.dtype.itemsize != sizeof(_FlowRec) or p.ndim != 1 \
                or not p.flags.c_contiguous:
            raise TypeError("flows must be C-contiguous analysis.FLOW_RECORD arrays")
    cdef Py_ssize_t n = sum(p.shape[0] for p in parts)
    out = np.empty(n, dtype=parts[0].dtype)
    hashes = np.empty(n, np.uint64)
    if n == 0:
        return out, hashes
    cdef uint8_t[::1] ov = out.view(np.uint8)
    cdef uint64_t[::1] hv = hashes
    cdef _FlowRec* recs = <_FlowRec*>&ov[0]
    cdef Py_ssize_t nidx = 1, i, j, np_, ng = 0
    while nidx < 2 * n:
        nidx <<= 1
    cdef uint64_t h, hmask = <uint64_t>nidx - 1
    cdef _Slot* index = <_Slot*>ns_big_alloc(nidx * sizeof(_Slot))
    if index == NULL:
        raise MemoryError()
    memset(index, 0, nidx * sizeof(_Slot))
    cdef const uint8_t[::1] iv
    cdef const _FlowRec* src
    cdef const _FlowRec* e
    cdef _FlowRec* o
    cdef uint64_t k[5]             # the key, aligned (records are packed)
    try:
        for p in parts:
            np_ = p.shape[0]
            if np_ == 0:
                continue
            iv = p.view(np.uint8)
            src = <const _FlowRec*>&iv[0]
            with nogil:
                for i in range(np_):
                    e = &src[i]
                    memcpy(k, e, 40)       # the key is the record's first field
                    h = ns_hash(k, m, 0)
                    j = <Py_ssize_t>(h & hmask)
                    o = NULL
                    while index[j].group != 0:
                        if index[j].hash == h and memcmp(&recs[index[j].group - 1], k, 40) == 0:
                            o = &recs[index[j].group - 1]
                            break
                        j = <Py_ssize_t>((<uint64_t>j + 1) & hmask)
                    if o == NULL:
                        memcpy(&recs[ng], e, sizeof(_FlowRec))
                        hv[ng] = h
                        ng += 1
                        index[j].hash = h
                        index[j].group = ng
                    else:
                        o.packets += e.packets
                        o.bytes += e.bytes
                        if e.first_ns < o.first_ns:
                            o.first_ns = e.first_ns
                        if e.last_ns > o.last_ns:
                            o.last_ns = e.last_ns
                        o.tcp_flags |= e.tcp_flags
    finally:
        free(index)
    return out[:ng], hashes[:ng]


# ---------------------------------------------------------------- the millisecond clock

def run_clock(clock, stop, long period_ns=1000000):
    """Publish CLOCK_MONOTONIC into clock[0] (a uint64 view of ns_ctl.clock_ns)
    every period_ns until stop[0] (a uint8 array) becomes non-zero.  Runs
    without the GIL: call it from a thread of its own."""
    cdef uint64_t[::1] cv = clock
    cdef uint8_t[::1] sv = stop
    if cv.shape[0] < 1 or sv.shape[0] < 1 or period_ns <= 0:
        raise ValueError("run_clock needs a clock word, a stop flag and a period > 0")
    cdef volatile uint64_t* out = <volatile uint64_t*>&cv[0]
    cdef volatile uint8_t* flag = <volatile uint8_t*>&sv[0]
    cdef timespec now, nxt
    with nogil:
        prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)  # wake on time, not up to 50 us late
        clock_gettime(CLOCK_MONOTONIC, &nxt)
        while flag[0] == 0:
            clock_gettime(CLOCK_MONOTONIC, &now)
            out[0] = <uint64_t>now.tv_sec * 1000000000ULL + <uint64_t>now.tv_nsec
            nxt.tv_nsec += period_ns
            while nxt.tv_nsec >= 1000000000:
                nxt.tv_nsec -= 1000000000
                nxt.tv_sec += 1
            if (now.tv_sec > nxt.tv_sec) or (now.tv_sec == nxt.tv_sec and now.tv_nsec > nxt.tv_nsec):
                nxt = now  # fell behind: do not burst
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &nxt, NULL)


cdef extern from *:
    """
    static inline void ns_ctl_flip(uint32_t *ctl, uint32_t set, uint32_t gen) {
        /* ns_ctl: active, gen[2], ...  The program reads active, then gen[active]:
         * store the generation first, then publish the set (release order). */
        __atomic_store_n(&ctl[1 + (set & 1)], gen, __ATOMIC_RELAXED);
        __atomic_store_n(&ctl[0], set & 1, __ATOMIC_RELEASE);
    }
    """
    void ns_ctl_flip(uint32_t* ctl, uint32_t set, uint32_t gen) nogil


def ctl_flip(ctl, uint32_t set, uint32_t gen):
    """Make map set `set` (0 or 1) the active one, its flow table at
    generation `gen` (slots of other generations are free).  ctl: the mmapped
    ns_ctl record viewed as uint32."""
    cdef uint32_t[::1] v = ctl
    if v.shape[0] < 3:
        raise ValueError("ctl must be a uint32 view of ns_ctl")
    ns_ctl_flip(&v[0], set, gen)
