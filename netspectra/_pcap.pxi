# Included at the end of _sketch.pyx: the offline analyzer's per-packet path.
#
# A capture file is memory-mapped by netspectra/offline.py and walked here in
# C without the GIL: every record is parsed with the XDP program's own parser
# (netspectra/bpf/parse.h, compiled for userspace through netspectra/parse_user.h) and
# counted exactly as netspectra/bpf/sensor.c counts a frame in its hybrid mode -- totals
# slots, the exact flow table; the sketch tasks only for a record the table
# cannot hold, the flows entering them when the epoch closes (sketch_flows) --
# except that the byte count is the record's original (on-the-wire) length.
# The flow table here is an unbounded open-addressing hash table
# (insertion-ordered entries, growing), so nothing is untracked unless memory
# runs out.
#
# The walk returns to Python only for: the end of the file, damage (error
# code, byte offset), a record whose timestamp starts a new epoch (not
# consumed; Python cuts a snapshot and resumes), a progress point, and
# pcapng section/interface blocks (parsed in offline.py).

from libc.stdlib cimport malloc, realloc, free
from libc.stdint cimport uint16_t, int64_t

cdef extern from "parse_user.h" nogil:
    union ns_keyw:
        uint64_t w[5]
    struct ns_pkt:
        ns_keyw key
        uint32_t outcome
        uint32_t proto_class
        uint32_t events
        uint8_t tcp_flags
        uint8_t icmp_type
        uint8_t icmp_code
    void ns_parse_link(ns_pkt* p, uint32_t lt, void* data, void* end)
    int ns_link_supported(uint32_t lt)

cdef extern from *:
    """
    /* Capture timestamp units -> ns: binary fractions through 128 bits. */
    static inline uint64_t ns_ts_scale(uint64_t ts, uint64_t mul, uint64_t div, int shift) {
        if (shift >= 0)
            return (uint64_t)(((unsigned __int128)ts * 1000000000ull) >> shift);
        if (div > 1)
            return ts / div;
        return ts * mul;
    }
    static inline uint32_t ns_rd32(const uint8_t *p, int swap) {
        uint32_t v; memcpy(&v, p, 4); return swap ? __builtin_bswap32(v) : v;
    }
    static inline uint16_t ns_rd16(const uint8_t *p, int swap) {
        uint16_t v; memcpy(&v, p, 2); return swap ? __builtin_bswap16(v) : v;
    }
    """
    uint64_t ns_ts_scale(uint64_t ts, uint64_t mul, uint64_t div, int shift) noexcept nogil
    uint32_t ns_rd32(const uint8_t* p, int swap) noexcept nogil
    uint16_t ns_rd16(const uint8_t* p, int swap) noexcept nogil
    void __builtin_prefetch(const void* addr, int rw, int locality) noexcept nogil

cdef extern from *:
    """
    /* The walk reads a memory-mapped file: a file that shrinks under it
       (logrotate's copytruncate) makes a read past its new end raise SIGBUS.
       While a walk runs, this thread's SIGBUS jumps back to ns_walk_guarded,
       which returns -1: the walk stops there, everything counted before stays.
       Any other SIGBUS goes to the handler found at install (Python's
       faulthandler, or the default: the process dies as it would have).
       The jump can only leave a load from the mapping: those are in the
       parser and the record reads, never inside malloc or a table update. */
    #include <setjmp.h>
    #include <signal.h>
    static __thread sigjmp_buf *ns_bus_jmp;
    static struct sigaction ns_bus_prev;
    static void ns_bus_handler(int sig, siginfo_t *si, void *uc) {
        if (ns_bus_jmp)
            siglongjmp(*ns_bus_jmp, 1);
        if (ns_bus_prev.sa_flags & SA_SIGINFO) {
            ns_bus_prev.sa_sigaction(sig, si, uc);
        } else if (ns_bus_prev.sa_handler != SIG_DFL && ns_bus_prev.sa_handler != SIG_IGN) {
            ns_bus_prev.sa_handler(sig);
        } else {
            signal(sig, SIG_DFL);
            raise(sig);
        }
    }
    /* (Re)installed before each walk: faulthandler.enable() may have replaced it since. */
    static void ns_bus_install(void) {
        struct sigaction sa, cur;
        if (sigaction(SIGBUS, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == ns_bus_handler)
            return;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = ns_bus_handler;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, &ns_bus_prev);
    }
    typedef int (*ns_walk_fn)(void *, void *);
    static int ns_walk_guarded(ns_walk_fn walk, void *e, void *r) {
        sigjmp_buf jb;
        volatile int rc = -1;
        if (sigsetjmp(jb, 1) == 0) {
            ns_bus_jmp = &jb;
            rc = walk(e, r);
        }
        ns_bus_jmp = NULL;
        return rc;
    }
    """
    ctypedef int (*ns_walk_fn)(void*, void*) noexcept nogil
    void ns_bus_install() noexcept nogil
    int ns_walk_guarded(ns_walk_fn walk, void* e, void* r) noexcept nogil

cdef enum:
    _NCOUNTERS = 24
    _C_ALL = 0
    _C_OUT_IPV4 = 1
    _C_OUT_IPV6 = 2
    _C_PROTO_FIRST = 10
    _C_FRAG_FIRST = 16
    _C_IPV4_OPTIONS = 23
    _C_FLOW_UNTRACKED = 21

# walk results (PCAP_* in Python)
cdef enum:
    _R_DONE = 0
    _R_ERROR = 1
    _R_EPOCH = 2
    _R_YIELD = 3
    _R_BLOCK = 4
    _R_BUS = -1  # SIGBUS: the mapped file shrank under the walk (ns_walk_guarded)

# damage codes (offline.py words them)
cdef enum:
    _E_TRUNC_HDR = 1      # record header cut off: (available, needed)
    _E_TRUNC_REC = 2      # record data cut off: (available, needed)
    _E_BLOCK_LEN = 3      # pcapng block length not a multiple of 4 or < 12: (length, 0)
    _E_BLOCK_TRUNC = 4    # pcapng block runs past the end of the file: (available, length)
    _E_BLOCK_TRAILER = 5  # pcapng trailing length differs: (length, trailer)
    _E_BLOCK_SHORT = 6    # pcapng packet block too short for its fields: (type, length)
    _E_CAPLEN_BLOCK = 7   # pcapng captured length exceeds the block: (caplen, room)
    _E_IFACE = 8          # pcapng packet names an undefined interface: (id, defined)

PCAP_DONE, PCAP_ERROR, PCAP_EPOCH, PCAP_YIELD, PCAP_BLOCK, PCAP_SHRUNK = 0, 1, 2, 3, 4, -1
PCAP_E_TRUNC_HDR, PCAP_E_TRUNC_REC, PCAP_E_BLOCK_LEN, PCAP_E_BLOCK_TRUNC = 1, 2, 3, 4
PCAP_E_BLOCK_TRAILER, PCAP_E_BLOCK_SHORT, PCAP_E_CAPLEN_BLOCK, PCAP_E_IFACE = 5, 6, 7, 8


ctypedef struct _FlowEnt:          # 80 bytes
    uint64_t key[5]
    uint64_t packets
    uint64_t bytes
    uint64_t first_ns
    uint64_t last_ns
    uint8_t tcp_flags
    uint8_t icmp_type
    uint8_t icmp_code
    uint8_t pad[5]

ctypedef struct _FlowTab:
    _FlowEnt* ents                 # insertion order
    Py_ssize_t n
    Py_ssize_t cap
    uint64_t* slots                # (hash >> 32) << 32 | (entry index + 1); 0 = empty
    Py_ssize_t nslots              # power of two, load <= 1/2

ctypedef struct _Engine:
    uint64_t totals[_NCOUNTERS * 2]
    _FlowTab cur                   # flows of the current epoch (all, without epochs)
    _FlowTab total                 # flows of finished epochs
    uint64_t* cm                   # current Count-Min cells (packets, bytes pairs)
    uint8_t* ss                    # current SuperSpread registers
    _Tasks ts
    int epochs
    int have_t0
    uint64_t t0
    uint64_t epoch_end
    uint64_t pending_ts            # timestamp of the record that ended the epoch
    uint64_t tmin
    uint64_t tmax

ctypedef struct _Iface:
    uint32_t linktype
    uint32_t snaplen
    uint64_t mul
    uint64_t div
    int shift
    int64_t offset_ns
    uint64_t skip_packets          # records of an unsupported link type
    uint64_t skip_bytes

ctypedef struct _Reader:
    const uint8_t* base
    Py_ssize_t size
    Py_ssize_t pos
    Py_ssize_t yield_pos
    int swap
    int pcapng
    uint64_t frac_mul              # classic pcap: 1000 (µs) or 1 (ns)
    _Iface* ifaces
    Py_ssize_t nif
    uint64_t last_ts
    uint64_t packets
    uint64_t bytes
    uint64_t orig_lt_caplen
    int err
    Py_ssize_t err_off
    uint64_t err_a
    uint64_t err_b


cdef uint64_t _ALL_WORDS[5]
_ALL_WORDS[0] = 0xFFFFFFFFFFFFFFFFULL
_ALL_WORDS[1] = 0xFFFFFFFFFFFFFFFFULL
_ALL_WORDS[2] = 0xFFFFFFFFFFFFFFFFULL
_ALL_WORDS[3] = 0xFFFFFFFFFFFFFFFFULL
_ALL_WORDS[4] = 0xFFFFFFFFFFFFFFFFULL


# ---------------------------------------------------------------- flow table

cdef inline uint64_t _flow_hash(const uint64_t* k) noexcept nogil:
    return ns_fmix(ns_fold(k, _ALL_WORDS))


cdef int _tab_init(_FlowTab* t) noexcept nogil:
    t.n = 0
    t.cap = 1024
    t.nslots = 2048
    t.ents = <_FlowEnt*>malloc(t.cap * sizeof(_FlowEnt))
    t.slots = <uint64_t*>malloc(t.nslots * sizeof(uint64_t))
    if t.ents == NULL or t.slots == NULL:
        return -1
    memset(t.slots, 0, t.nslots * sizeof(uint64_t))
    return 0


cdef void _tab_free(_FlowTab* t) noexcept nogil:
    free(t.ents)
    free(t.slots)
    t.ents = NULL
    t.slots = NULL
    t.n = t.cap = t.nslots = 0


cdef void _tab_clear(_FlowTab* t) noexcept nogil:
    t.n = 0
    if t.slots != NULL:
        memset(t.slots, 0, t.nslots * sizeof(uint64_t))


cdef int _tab_grow(_FlowTab* t) noexcept nogil:
    cdef Py_ssize_t ns = t.nslots * 2, i, j
    cdef uint64_t h
    cdef uint64_t mask = <uint64_t>ns - 1
    cdef uint64_t* s = <uint64_t*>malloc(ns * sizeof(uint64_t))
    if s == NULL:
        return -1
    memset(s, 0, ns * sizeof(uint64_t))
    for i in range(t.n):
        h = _flow_hash(t.ents[i].key)
        j = <Py_ssize_t>(h & mask)
        while s[j] != 0:
            j = <Py_ssize_t>((<uint64_t>j + 1) & mask)
        s[j] = ((h >> 32) << 32) | <uint64_t>(i + 1)
    free(t.slots)
    t.slots = s
    t.nslots = ns
    return 0


cdef _FlowEnt* _tab_get(_FlowTab* t, const uint64_t* k) noexcept nogil:
    """The entry of key k, created zeroed if absent; NULL when out of memory."""
    cdef uint64_t h = _flow_hash(k)
    cdef uint64_t mask, s, tag = h >> 32
    cdef Py_ssize_t j
    cdef _FlowEnt* e
    cdef _FlowEnt* ne
    if (t.n + 1) * 2 > t.nslots:
        if _tab_grow(t) < 0:
            return NULL
    mask = <uint64_t>t.nslots - 1
    j = <Py_ssize_t>(h & mask)
    while True:
        s = t.slots[j]
        if s == 0:
            break
        if (s >> 32) == tag:
            e = &t.ents[(s & 0xFFFFFFFFULL) - 1]
            if (e.key[0] == k[0] and e.key[1] == k[1] and e.key[2] == k[2]
                    and e.key[3] == k[3] and e.key[4] == k[4]):
                return e
        j = <Py_ssize_t>((<uint64_t>j + 1) & mask)
    if t.n >= <Py_ssize_t>0xFFFFFFFEULL:
        return NULL
    if t.n == t.cap:
        ne = <_FlowEnt*>realloc(t.ents, 2 * t.cap * sizeof(_FlowEnt))
        if ne == NULL:
            return NULL
        t.ents = ne
        t.cap *= 2
    e = &t.ents[t.n]
    memset(e, 0, sizeof(_FlowEnt))
    memcpy(e.key, k, 5 * sizeof(uint64_t))
    t.n += 1
    t.slots[j] = (tag << 32) | <uint64_t>t.n
    return e


cdef Py_ssize_t _tab_merge(_FlowTab* dst, _FlowTab* src) noexcept nogil:
    """Fold src's flows into dst (src's flows are later in time).  Returns the
    number of flows that could not be merged (out of memory)."""
    cdef Py_ssize_t i, lost = 0
    cdef _FlowEnt* a
    cdef _FlowEnt* b
    for i in range(src.n):
        b = &src.ents[i]
        a = _tab_get(dst, b.key)
        if a == NULL:
            lost += 1
            continue
        if a.packets == 0:
            memcpy(a, b, sizeof(_FlowEnt))
            continue
        a.packets += b.packets
        a.bytes += b.bytes
        if b.first_ns < a.first_ns:
            a.first_ns = b.first_ns
        if b.last_ns > a.last_ns:
            a.last_ns = b.last_ns
        a.tcp_flags |= b.tcp_flags
    return lost


# ---------------------------------------------------------------- one packet

cdef inline int _packet(_Engine* e, _Iface* itf, const uint8_t* data, uint32_t caplen,
                        uint64_t length, uint64_t ts) noexcept nogil:
    """Count one record.  Returns 1 (nothing counted) when its timestamp
    starts a new epoch."""
    cdef ns_pkt p
    cdef _Plan pl
    cdef uint32_t ev
    cdef uint64_t* tot = e.totals
    cdef _FlowEnt* f
    if not ns_link_supported(itf.linktype):
        itf.skip_packets += 1
        itf.skip_bytes += length
        return 0
    if not e.have_t0:
        e.have_t0 = 1
        e.t0 = ts
        e.tmin = ts
        e.tmax = ts
        e.epoch_end = ts + (e.epoch_end if e.epochs else 0)  # epoch_end held epoch_ns until t0
        if e.epoch_end < ts:
            e.epoch_end = 0xFFFFFFFFFFFFFFFFULL
    elif e.epochs and ts >= e.epoch_end and e.epoch_end != 0xFFFFFFFFFFFFFFFFULL:
        # (an epoch whose end cannot be represented runs to the end of time: else a
        # record stamped 2^64-1 ns would start the same epoch again and again)
        e.pending_ts = ts
        return 1
    if ts < e.tmin:
        e.tmin = ts
    if ts > e.tmax:
        e.tmax = ts

    memset(&p, 0, sizeof(ns_pkt))
    ns_parse_link(&p, itf.linktype, <void*>data, <void*>(data + caplen))
    tot[2 * _C_ALL] += 1
    tot[2 * _C_ALL + 1] += length
    if p.outcome < _NCOUNTERS:
        tot[2 * p.outcome] += 1
        tot[2 * p.outcome + 1] += length
    if p.outcome != _C_OUT_IPV4 and p.outcome != _C_OUT_IPV6:
        return 0
    if p.proto_class < _NCOUNTERS:
        tot[2 * p.proto_class] += 1
        tot[2 * p.proto_class + 1] += length
    if p.events:
        for ev in range(_C_FRAG_FIRST, _C_IPV4_OPTIONS + 1):
            if p.events & (1u << (ev - _C_FRAG_FIRST)):
                tot[2 * ev] += 1
                tot[2 * ev + 1] += length

    # The heavy part: the flow table.  Only a packet it cannot hold (out of
    # memory) goes to the sketches now; the rest enter them as flows when the
    # epoch closes (PcapEngine.sketch_flows), as in the kernel.
    f = _tab_get(&e.cur, <const uint64_t*>p.key.w)
    if f == NULL:
        tot[2 * _C_FLOW_UNTRACKED] += 1
        tot[2 * _C_FLOW_UNTRACKED + 1] += length
        if e.ts.n:
            _plan(&e.ts, e.cm, e.ss, <const uint64_t*>p.key.w, &pl)
            _apply(e.cm, e.ss, &pl, 1, length)
        return 0
    if f.packets == 0:
        f.first_ns = ts
        f.last_ns = ts
        f.icmp_type = p.icmp_type
        f.icmp_code = p.icmp_code
    f.packets += 1
    f.bytes += length
    if ts < f.first_ns:
        f.first_ns = ts
    if ts > f.last_ns:
        f.last_ns = ts
    f.tcp_flags |= p.tcp_flags
    return 0


# ---------------------------------------------------------------- file walks

cdef inline int _fail(_Reader* r, int code, Py_ssize_t off, uint64_t a, uint64_t b) noexcept nogil:
    r.err = code
    r.err_off = off
    r.err_a = a
    r.err_b = b
    r.pos = off
    return _R_ERROR


cdef int _walk_pcap(_Engine* e, _Reader* r) noexcept nogil:
    cdef const uint8_t* b = r.base
    cdef Py_ssize_t pos = r.pos, size = r.size, avail
    cdef uint32_t caplen, orig
    cdef uint64_t ts
    cdef int sw = r.swap
    cdef _Iface* itf = &r.ifaces[0]
    while True:
        if pos >= size:
            r.pos = pos
            return _R_DONE
        if pos >= r.yield_pos:
            r.pos = pos
            return _R_YIELD
        avail = size - pos
        if avail < 16:
            return _fail(r, _E_TRUNC_HDR, pos, <uint64_t>avail, 16)
        caplen = ns_rd32(b + pos + 8, sw)
        orig = ns_rd32(b + pos + 12, sw)
        if <uint64_t>caplen > <uint64_t>(avail - 16):
            return _fail(r, _E_TRUNC_REC, pos, <uint64_t>avail, 16 + <uint64_t>caplen)
        ts = <uint64_t>ns_rd32(b + pos, sw) * 1000000000ULL + <uint64_t>ns_rd32(b + pos + 4, sw) * r.frac_mul
        if _packet(e, itf, b + pos + 16, caplen, orig, ts):
            r.pos = pos
            return _R_EPOCH
        r.packets += 1
        r.bytes += orig
        if orig < caplen:
            r.orig_lt_caplen += 1
        pos += 16 + <Py_ssize_t>caplen


cdef int _walk_pcapng(_Engine* e, _Reader* r) noexcept nogil:
    cdef const uint8_t* b = r.base
    cdef const uint8_t* blk
    cdef Py_ssize_t pos = r.pos, size = r.size, avail
    cdef uint32_t btype, blen, caplen, orig, ifid
    cdef uint64_t ts, raw
    cdef int sw
    cdef _Iface* itf
    while True:
        if pos >= size:
            r.pos = pos
            return _R_DONE
        if pos >= r.yield_pos:
            r.pos = pos
            return _R_YIELD
        sw = r.swap
        avail = size - pos
        blk = b + pos
        if avail < 12:
            return _fail(r, _E_BLOCK_TRUNC, pos, <uint64_t>avail, 12)
        btype = ns_rd32(blk, sw)
        if btype == 0x0A0D0D0A:  # section header: offline.py reads it
            r.pos = pos
            return _R_BLOCK
        blen = ns_rd32(blk + 4, sw)
        if blen < 12 or (blen & 3):
            return _fail(r, _E_BLOCK_LEN, pos, blen, 0)
        if <uint64_t>blen > <uint64_t>avail:
            return _fail(r, _E_BLOCK_TRUNC, pos, <uint64_t>avail, blen)
        if ns_rd32(blk + blen - 4, sw) != blen:
            return _fail(r, _E_BLOCK_TRAILER, pos, blen, ns_rd32(blk + blen - 4, sw))
        if btype == 1:  # interface description: offline.py reads it
            r.pos = pos
            return _R_BLOCK
        if btype == 6 or btype == 2:  # enhanced / obsolete packet block
            if blen < 32:
                return _fail(r, _E_BLOCK_SHORT, pos, btype, blen)
            ifid = ns_rd32(blk + 8, sw) if btype == 6 else ns_rd16(blk + 8, sw)
            caplen = ns_rd32(blk + 20, sw)
            orig = ns_rd32(blk + 24, sw)
            if caplen > blen - 32:
                return _fail(r, _E_CAPLEN_BLOCK, pos, caplen, blen - 32)
            if ifid >= r.nif:
                return _fail(r, _E_IFACE, pos, ifid, <uint64_t>r.nif)
            itf = &r.ifaces[ifid]
            raw = (<uint64_t>ns_rd32(blk + 12, sw) << 32) | ns_rd32(blk + 16, sw)
            ts = ns_ts_scale(raw, itf.mul, itf.div, itf.shift) + <uint64_t>itf.offset_ns
            if _packet(e, itf, blk + 28, caplen, orig, ts):
                r.pos = pos
                return _R_EPOCH
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            if blen < 16:
                return _fail(r, _E_BLOCK_SHORT, pos, btype, blen)
            if r.nif == 0:
                return _fail(r, _E_IFACE, pos, 0, 0)
            itf = &r.ifaces[0]
            orig = ns_rd32(blk + 8, sw)
            caplen = orig if orig < blen - 16 else blen - 16
            if itf.snaplen and caplen > itf.snaplen:
                caplen = itf.snaplen
            ts = r.last_ts
            if _packet(e, itf, blk + 12, caplen, orig, ts):
                r.pos = pos
                return _R_EPOCH
        else:
            pos += blen
            continue
        r.last_ts = ts
        r.packets += 1
        r.bytes += orig
        if orig < caplen:
            r.orig_lt_caplen += 1
        pos += blen


# ---------------------------------------------------------------- Python side

_FLOWENT = np.dtype({
    "names": ["key", "packets", "bytes", "first_ns", "last_ns", "tcp_flags", "icmp_type", "icmp_code"],
    "formats": [("<u8", 5), "<u8", "<u8", "<u8", "<u8", "u1", "u1", "u1"],
    "offsets": [0, 40, 48, 56, 64, 72, 73, 74],
    "itemsize": 80,
})


cdef object _tab_export(_FlowTab* t, object record_dtype):
    """The table's flows (insertion order) as a record_dtype array."""
    cdef Py_ssize_t n = t.n
    raw = np.empty(n, dtype=_FLOWENT)
    cdef uint8_t[::1] rv
    if n:
        rv = raw.view(np.uint8)
        memcpy(&rv[0], t.ents, n * sizeof(_FlowEnt))
    out = np.zeros(n, dtype=record_dtype)
    if n:
        out["key"] = np.ascontiguousarray(raw["key"]).view(out.dtype["key"]).reshape(n)
        for name in ("packets", "bytes", "first_ns", "last_ns", "tcp_flags", "icmp_type", "icmp_code"):
            out[name] = raw[name]
    return out


cdef class PcapEngine:
    """Counting state of an offline analysis: totals, exact flows and the
    sketch arrays of the current epoch, plus the flows of finished epochs.

    Private to netspectra.offline."""
    cdef _Engine e
    cdef object _cm
    cdef object _ss

    def __cinit__(self):
        memset(&self.e, 0, sizeof(_Engine))
        if _tab_init(&self.e.cur) < 0 or _tab_init(&self.e.total) < 0:
            raise MemoryError()

    def __dealloc__(self):
        _tab_free(&self.e.cur)
        _tab_free(&self.e.total)

    def __init__(self, config, cm, ss, epoch_ns=0):
        """config: the layout's abi.CONFIG record; cm/ss: the first epoch's
        sketch arrays (SketchSet.cm / .ss); epoch_ns: 0 = no epochs."""
        _tasks_init(&self.e.ts, config)
        self.set_sketch(cm, ss)
        self.e.epochs = epoch_ns > 0
        self.e.epoch_end = <uint64_t>int(epoch_ns)  # becomes t0 + epoch_ns at the first packet

    def set_sketch(self, cm, ss):
        """Count into these arrays from now on (checked against the tasks)."""
        cdef uint64_t[::1] c = _u64_flat(cm, True)
        cdef uint8_t[::1] r = _u8_flat(ss, True)
        _tasks_check(&self.e.ts, c.shape[0] // 2, r.shape[0])
        self._cm = cm
        self._ss = ss
        self.e.cm = &c[0] if c.shape[0] else NULL
        self.e.ss = &r[0] if r.shape[0] else NULL

    @property
    def started(self):
        return bool(self.e.have_t0)

    @property
    def t0(self):
        return int(self.e.t0)

    @property
    def time_range(self):
        """(min, max) capture timestamp counted, ns; None before any packet."""
        return (int(self.e.tmin), int(self.e.tmax)) if self.e.have_t0 else None

    @property
    def pending_ts(self):
        return int(self.e.pending_ts)

    @property
    def epoch_end(self):
        return int(self.e.epoch_end)

    @epoch_end.setter
    def epoch_end(self, value):
        self.e.epoch_end = <uint64_t>min(int(value), 0xFFFFFFFFFFFFFFFF)

    def take_totals(self):
        """(NCOUNTERS, 2) uint64 totals of the current epoch; zeroes them."""
        out = np.empty((_NCOUNTERS, 2), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        memcpy(&o[0, 0], self.e.totals, sizeof(self.e.totals))
        memset(self.e.totals, 0, sizeof(self.e.totals))
        return out

    def current_flows(self, record_dtype):
        return _tab_export(&self.e.cur, record_dtype)

    def total_flows(self, record_dtype):
        return _tab_export(&self.e.total, record_dtype)

    def sketch_flows(self):
        """Add the current epoch's flows to its sketch arrays (once, when the
        epoch closes: packets of tracked flows skipped them)."""
        cdef _FlowTab* t = &self.e.cur
        if t.n == 0:
            return
        with nogil:
            _sketch_records(&self.e.ts, self.e.cm, self.e.ss, <const uint8_t*>t.ents, t.n, sizeof(_FlowEnt),
                            40, 48)

    def end_epoch(self):
        """Fold the current epoch's flows into the total and clear them.
        Returns the number of flows that could not be kept (out of memory)."""
        cdef Py_ssize_t lost
        with nogil:
            lost = _tab_merge(&self.e.total, &self.e.cur)
            _tab_clear(&self.e.cur)
        return lost


cdef class PcapReader:
    """One memory-mapped capture file being walked.  Private to netspectra.offline."""
    cdef _Reader r
    cdef object _buf
    cdef const uint8_t[::1] _view

    def __cinit__(self):
        memset(&self.r, 0, sizeof(_Reader))

    def __dealloc__(self):
        free(self.r.ifaces)
        self.r.ifaces = NULL

    def __init__(self, buf, bint pcapng, bint swap, Py_ssize_t pos, uint64_t frac_mul=1000):
        self._buf = buf
        self._view = buf
        self.r.base = &self._view[0] if self._view.shape[0] else NULL
        self.r.size = self._view.shape[0]
        self.r.pos = pos
        self.r.yield_pos = self.r.size
        self.r.pcapng = pcapng
        self.r.swap = swap
        self.r.frac_mul = frac_mul

    def release(self):
        """Drop the buffer (so an mmap can close)."""
        self._view = None
        self._buf = None
        self.r.base = NULL
        self.r.size = 0

    def add_iface(self, uint32_t linktype, uint32_t snaplen, uint64_t mul=1000, uint64_t div=1,
                  int shift=-1, int64_t offset_ns=0):
        cdef _Iface* n = <_Iface*>realloc(self.r.ifaces, (self.r.nif + 1) * sizeof(_Iface))
        if n == NULL:
            raise MemoryError()
        self.r.ifaces = n
        memset(&n[self.r.nif], 0, sizeof(_Iface))
        n[self.r.nif].linktype = linktype
        n[self.r.nif].snaplen = snaplen
        n[self.r.nif].mul = mul
        n[self.r.nif].div = div
        n[self.r.nif].shift = shift
        n[self.r.nif].offset_ns = offset_ns
        self.r.nif += 1

    def take_ifaces(self):
        """[(linktype, skipped packets, skipped bytes)] of the interfaces so far; forgets them."""
        out = [(int(self.r.ifaces[i].linktype), int(self.r.ifaces[i].skip_packets),
                int(self.r.ifaces[i].skip_bytes)) for i in range(self.r.nif)]
        self.r.nif = 0
        return out

    @property
    def nifaces(self):
        return self.r.nif

    @property
    def pos(self):
        return self.r.pos

    @pos.setter
    def pos(self, Py_ssize_t value):
        self.r.pos = value

    @property
    def swap(self):
        return bool(self.r.swap)

    @swap.setter
    def swap(self, bint value):
        self.r.swap = value

    @property
    def yield_pos(self):
        return self.r.yield_pos

    @yield_pos.setter
    def yield_pos(self, Py_ssize_t value):
        self.r.yield_pos = value

    @property
    def counts(self):
        """(records, original bytes, records whose original length < captured length)."""
        return int(self.r.packets), int(self.r.bytes), int(self.r.orig_lt_caplen)

    @property
    def error(self):
        """(code, byte offset, a, b) of the damage that stopped the walk."""
        return int(self.r.err), int(self.r.err_off), int(self.r.err_a), int(self.r.err_b)

    def run(self, PcapEngine eng):
        """Walk from pos until the end, damage, an epoch boundary, yield_pos
        or a pcapng block for Python.  Returns PCAP_* (PCAP_SHRUNK: the
        mapped file shrank under the walk; pos is then not advanced)."""
        cdef int rc
        if self.r.base == NULL and self.r.size:
            raise ValueError("reader released")
        with nogil:
            ns_bus_install()
            if self.r.pcapng:
                rc = ns_walk_guarded(<ns_walk_fn>_walk_pcapng, &eng.e, &self.r)
            else:
                rc = ns_walk_guarded(<ns_walk_fn>_walk_pcap, &eng.e, &self.r)
        return rc
