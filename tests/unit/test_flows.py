"""The agent's half of the heavy part, against plain references (no kernel).

sketch_flows / SketchSet.of_flows   the sketch of flows == per-packet updating
                                    with the plain-Python oracle, bit for bit
group_keys, FlowGroups              exact per-key sums, flow counts, distinct
                                    elements == np.unique over the packets
flows_take                          the kernel table's per-CPU slices gathered
                                    and merged as the ABI says; bad slot lists
                                    from kernel memory refused
derive                              exact answers from complete flows
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netspectra import _sketch, abi, analysis
from netspectra.config import default_tasks
from netspectra.sketch import SketchSet
from netspectra.snapshot import FlowGroups, derive
from netspectra.tasks import COUNTMIN, SUPERSPREAD, TaskSpec, layout
from tests.helpers.reference import reference_sketch

HSET = settings(derandomize=True, deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
SMALL = layout(
    [
        TaskSpec("a", COUNTMIN, ("src_ip",), depth=3, width=256, seed=1),
        TaskSpec("b", COUNTMIN, ("src_ip", "dst_ip", "src_port", "dst_port", "proto"), depth=2, width=128, seed=2),
        TaskSpec("c", SUPERSPREAD, ("src_ip",), ("dst_ip",), width=1024, registers=64, seed=3, elem_seed=4),
        TaskSpec("d", SUPERSPREAD, ("src_ip", "dst_ip"), ("dst_port",), width=2048, registers=128, seed=5, elem_seed=6),
    ]
)


def packets(rng, n: int, hosts: int = 6, ports: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """n packets over a few hosts and ports (many repeated 5-tuples), with lengths."""
    k = np.zeros(n, abi.KEY)
    k["src"][:, 10:12] = k["dst"][:, 10:12] = 0xFF
    k["src"][:, 15] = rng.integers(0, hosts, n)
    k["dst"][:, 15] = rng.integers(0, hosts, n)
    k["sport"], k["dport"] = rng.integers(0, 3, n), rng.integers(0, ports, n)
    k["proto"] = rng.choice([6, 17], n)
    return k, rng.integers(60, 1515, n).astype(np.uint64)


def flows_of(keys, lengths) -> np.ndarray:
    """The exact flows of packets: one record per distinct 5-tuple."""
    u, inv = np.unique(keys.view(np.dtype((np.void, 40))), return_inverse=True)
    fl = np.zeros(len(u), analysis.FLOW_RECORD)
    fl["key"] = u.view(abi.KEY)
    fl["packets"] = np.bincount(inv.reshape(-1), minlength=len(u))
    fl["bytes"] = np.bincount(inv.reshape(-1), weights=lengths.astype(np.float64), minlength=len(u))
    return fl


@HSET
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400))
def test_sketch_of_flows_equals_per_packet_reference(seed, n):
    rng = np.random.default_rng(seed)
    keys, lengths = packets(rng, n)
    want = reference_sketch(SMALL, keys, lengths)
    got = SketchSet.of_flows(SMALL, flows_of(keys, lengths))
    assert np.array_equal(got.cm.view(np.uint64), want.cm.view(np.uint64))
    assert np.array_equal(got.ss, want.ss)


def test_sketch_of_flows_plus_overflow_equals_every_packet():
    """Flows of some packets + the per-packet sketch of the others == the
    sketch of all packets (what the agent adds to the kernel's arrays)."""
    rng = np.random.default_rng(7)
    keys, lengths = packets(rng, 3000, hosts=30, ports=200)
    lay = layout(default_tasks())
    tracked = rng.random(len(keys)) < 0.7
    sk = SketchSet(lay)
    sk.update(keys[~tracked], lengths[~tracked])  # the overflow arrays
    sk.add_flows(flows_of(keys[tracked], lengths[tracked]))
    want = SketchSet(lay)
    want.update(keys, lengths)
    assert np.array_equal(sk.cm, want.cm) and np.array_equal(sk.ss, want.ss)
    assert want.cm["packets"].any() and want.ss.any()


def test_lazy_sketch_is_derived_once_on_first_use():
    rng = np.random.default_rng(8)
    keys, lengths = packets(rng, 500)
    sk = SketchSet.of_flows(SMALL, flows_of(keys, lengths))
    assert not sk.derived
    assert sk.layout is SMALL  # the layout needs no derivation
    got = []
    threads = [threading.Thread(target=lambda: got.append(sk.total("a"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sk.derived and set(got) == {(500, int(lengths.sum()))}
    cm = sk.cm
    assert sk.cm is cm  # derived once, kept


def test_sketch_flows_refuses_what_is_not_flows():
    sk = SketchSet(SMALL)
    with pytest.raises(TypeError, match="records with key"):
        _sketch.sketch_flows(SMALL.config, sk.cm, sk.ss, np.zeros(3, np.uint64))
    small = np.zeros(16, abi.COUNTER)
    with pytest.raises(ValueError, match="outside"):
        _sketch.sketch_flows(SMALL.config, small, sk.ss, np.zeros(1, analysis.FLOW_RECORD))


# --- group_keys and FlowGroups ----------------------------------------------------


def unique_sums(keys, fields, pk, by):
    m = analysis.mask_keys(keys, fields).view(np.dtype((np.void, 40)))
    u, inv = np.unique(m, return_inverse=True)
    inv = inv.reshape(-1)
    return (
        {
            bytes(k): (int(a), int(b), int(c))
            for k, a, b, c in zip(
                u,
                np.bincount(inv, weights=pk.astype(np.float64), minlength=len(u)),
                np.bincount(inv, weights=by.astype(np.float64), minlength=len(u)),
                np.bincount(inv, minlength=len(u)),
                strict=True,
            )
        },
        inv,
    )


@pytest.mark.parametrize("fields", [0x01, 0x02, 0x03, 0x08, 0x1F, 0x0C])
@pytest.mark.parametrize("form", ["records", "keys", "words"])
def test_group_keys_equals_unique(fields, form):
    rng = np.random.default_rng(fields)
    keys, lengths = packets(rng, 5000, hosts=50, ports=300)
    fl = flows_of(keys, lengths)
    arg = {"records": fl, "keys": np.ascontiguousarray(fl["key"])}.get(form)
    if arg is None:
        arg = np.ascontiguousarray(fl["key"]).view(np.uint64).reshape(-1, 5)
    uk, inv, pk, by, cnt = _sketch.group_keys(arg, abi.field_wmask(fields), fl["packets"], fl["bytes"])
    want, _ = unique_sums(fl["key"], fields, fl["packets"], fl["bytes"])
    got = {bytes(k): (int(a), int(b), int(c)) for k, a, b, c in zip(uk.view(np.dtype((np.void, 40))), pk, by, cnt)}
    assert got == want
    assert uk.dtype == abi.KEY and np.array_equal(analysis.mask_keys(uk, fields).view(np.uint8), uk.view(np.uint8))
    # inverse: each flow's group holds its masked key; groups in first-seen order
    mk = analysis.mask_keys(fl["key"], fields)
    assert np.array_equal(uk[inv].view(np.uint8), mk.view(np.uint8))
    assert np.all(np.diff(np.array([np.flatnonzero(inv == g)[0] for g in range(len(uk))])) > 0)


def test_group_keys_empty_and_bad_input():
    uk, inv, pk, by, cnt = _sketch.group_keys(np.zeros(0, abi.KEY), abi.field_wmask(1))
    assert len(uk) == len(inv) == len(pk) == len(cnt) == 0
    with pytest.raises(TypeError):
        _sketch.group_keys(np.zeros(3, np.uint32), abi.field_wmask(1))
    with pytest.raises(ValueError, match="packet counts"):
        _sketch.group_keys(np.zeros(3, abi.KEY), abi.field_wmask(1), np.zeros(2, np.uint64))


def test_flow_groups_distinct_equals_unique_pairs():
    rng = np.random.default_rng(3)
    keys, lengths = packets(rng, 20000, hosts=12, ports=400)
    fl = flows_of(keys, lengths)
    for kf, ef in ((0x01, 0x02), (0x02, 0x01), (0x03, 0x08)):
        pairs = np.unique(analysis.mask_keys(fl["key"], kf | ef).view(np.dtype((np.void, 40))))
        ks, counts = np.unique(analysis.mask_keys(pairs.view(abi.KEY), kf).view(np.dtype((np.void, 40))),
                               return_counts=True)  # fmt: skip
        nflows, _ = unique_sums(fl["key"], kf, fl["packets"], fl["bytes"])
        for min_flows in (1, 40, 10**9):
            for prior in ((), (0x01,), (0x02,), (0x01, 0x02)):  # coarser groupings at hand, or not
                g = FlowGroups(fl)
                for f in prior:
                    g.by(f)
                got_k, got_c = g.distinct(kf, ef, min_flows)
                got = dict(zip(got_k.view(np.dtype((np.void, 40))).tolist(), got_c.tolist()))
                want = {k: int(c) for k, c in zip(ks.tolist(), counts, strict=True) if nflows[bytes(k)][2] >= min_flows}
                assert got == want, (kf, ef, min_flows, prior)


def test_derive_exact_equals_the_truth():
    rng = np.random.default_rng(11)
    keys, lengths = packets(rng, 30000, hosts=40, ports=3000)
    fl = flows_of(keys, lengths)
    big_bytes = int(np.quantile(fl["bytes"], 0.99))
    tasks = [
        TaskSpec("s", COUNTMIN, ("src_ip",), width=1024, seed=9, hh_packets=760),
        TaskSpec("f", COUNTMIN, ("src_ip", "dst_ip", "src_port", "dst_port", "proto"), width=1024, hh_bytes=big_bytes),
        TaskSpec("p", SUPERSPREAD, ("src_ip", "dst_ip"), ("dst_port",), width=4096, registers=64, spread_threshold=30),
    ]
    lay = layout(tasks)
    totals = np.zeros((abi.NCOUNTERS, 2), np.uint64)
    snap = derive(0, 0.0, 1.0, totals, fl, SketchSet.of_flows(lay, fl))
    assert snap.exact and not snap.sketch.derived  # nothing read the sketch
    want, _ = unique_sums(keys, 0x01, np.ones(len(keys), np.uint64), lengths)
    hh = snap.heavy["s"]
    got = {bytes(k): (int(p), int(b)) for k, p, b in zip(hh.keys.view(np.dtype((np.void, 40))), hh.packets, hh.bytes)}
    assert got == {k: (p, b) for k, (p, b, _) in want.items() if p >= 760}
    assert 0 < len(got) < len(want)
    assert list(hh.packets) == sorted(hh.packets, reverse=True)
    big = fl[fl["bytes"] >= big_bytes]
    assert sorted(snap.heavy["f"].bytes.tolist()) == sorted(big["bytes"].tolist()) and len(big)
    ks, counts = snap.spreaders["p"]
    pairs = np.unique(analysis.mask_keys(keys, 0x0B).view(np.dtype((np.void, 40))))
    pk, pc = np.unique(analysis.mask_keys(pairs.view(abi.KEY), 0x03).view(np.dtype((np.void, 40))), return_counts=True)
    assert dict(zip(ks.view(np.dtype((np.void, 40))).tolist(), counts.tolist())) == {
        k: float(c) for k, c in zip(pk.tolist(), pc, strict=True) if c >= 30
    }
    assert len(ks)


# --- flows_take: the kernel's table ----------------------------------------------------


def kernel_table(ncpus: int, slots: int, cap: int, rows: list[list[tuple]]):
    """Slices of struct ns_flow: rows[c] = [(slot, key byte, packets, bytes, first, last, flags, icmp)]."""
    entries = np.zeros((ncpus, slots), abi.FLOW)
    fidx = np.zeros((ncpus, cap), np.uint64)
    counts = np.zeros(ncpus, np.uint64)
    for c, row in enumerate(rows):
        for i, (slot, kb, p, b, first, last, flags, icmp) in enumerate(row):
            e = entries[c, slot]
            e["key"]["src"][15] = kb
            e["gen"] = 7
            e["packets"], e["bytes"], e["first_ns"], e["last_ns"] = p, b, first, last
            e["tcp_flags"], e["icmp_type"] = flags, icmp
            entries[c, slot] = e
            fidx[c, i] = slot
        counts[c] = len(row)
    return entries, fidx, counts


def test_flows_take_merges_over_cpus():
    rows = [
        [(5, 1, 2, 200, 1000, 1500, 0x02, 8), (9, 2, 1, 60, 1100, 1100, 0, 0)],
        [(3, 1, 3, 300, 900, 2000, 0x10, 0), (7, 3, 4, 400, 1200, 1300, 0x01, 0)],
        [],
    ]
    entries, fidx, counts = kernel_table(3, 16, 8, rows)
    fl = _sketch.flows_take(entries, fidx, counts, analysis.FLOW_RECORD, 10_000)
    got = {int(f["key"]["src"][15]): f for f in fl}
    assert sorted(got) == [1, 2, 3]
    f = got[1]
    assert (int(f["packets"]), int(f["bytes"])) == (5, 500)
    assert (int(f["first_ns"]), int(f["last_ns"])) == (10_900, 12_000)  # earliest / latest, shifted
    assert int(f["tcp_flags"]) == 0x12 and int(f["icmp_type"]) == 0  # ICMP of the earliest CPU
    assert (int(got[3]["packets"]), int(got[2]["bytes"])) == (4, 60)
    # one busy CPU: no merging needed, same answer shape
    e1, i1, c1 = kernel_table(1, 16, 8, rows[:1])
    assert len(_sketch.flows_take(e1, i1, c1, analysis.FLOW_RECORD)) == 2


def test_flows_take_distrusts_kernel_memory():
    entries, fidx, counts = kernel_table(2, 16, 4, [[(3, 1, 1, 60, 1, 1, 0, 0)], []])
    fidx[0, 0] = 16  # a slot outside the table
    with pytest.raises(ValueError, match="outside the table"):
        _sketch.flows_take(entries, fidx, counts, analysis.FLOW_RECORD)
    counts[:] = (10**9, 0)  # more than the list holds: read no further than the list
    fidx[0, :] = 3
    fl = _sketch.flows_take(entries, fidx, counts, analysis.FLOW_RECORD)
    assert len(fl) == 4 and set(fl["packets"].tolist()) == {1}  # the list's 4 entries, nothing beyond
    with pytest.raises(TypeError):
        _sketch.flows_take(entries.view(np.uint8), fidx, counts, analysis.FLOW_RECORD)


def test_merge_into_adds():
    a = np.arange(12, dtype=np.uint64).reshape(3, 4)
    out = np.full(4, 100, np.uint64)
    _sketch.merge_sum_u64(a, out=out, add=True)
    assert out.tolist() == [112, 115, 118, 121]
    r = np.array([[1, 9, 3], [4, 2, 0]], np.uint8)
    o = np.array([5, 5, 5], np.uint8)
    _sketch.merge_max_u8(r, out=o, add=True, clear=True)
    assert o.tolist() == [5, 9, 5] and not r.any()
    with pytest.raises(ValueError, match="needs an out"):
        _sketch.merge_sum_u64(a, add=True)


def test_ctl_flip_stores_generation_then_set():
    ctl = np.zeros(1, abi.CTL)
    words = ctl.view(np.uint32).reshape(-1)
    _sketch.ctl_flip(words, 1, 42)
    assert (int(ctl["active"][0]), ctl["gen"][0].tolist()) == (1, [0, 42])
    _sketch.ctl_flip(words, 0, 43)
    assert (int(ctl["active"][0]), ctl["gen"][0].tolist()) == (0, [43, 42])


def test_merge_and_copy_keep_underived_sketches_underived():
    """Merging an exact epoch's sketch into a window adds its flows (same bits)
    without deriving its own arrays; a copy of an underived sketch is one too."""
    rng = np.random.default_rng(12)
    k1, l1 = packets(rng, 400)
    k2, l2 = packets(rng, 300)
    a, b = SketchSet.of_flows(SMALL, flows_of(k1, l1)), SketchSet.of_flows(SMALL, flows_of(k2, l2))
    c = a.copy()
    assert not c.derived and not a.derived
    c.merge(b)
    assert not b.derived
    want = SketchSet(SMALL)
    want.update(np.concatenate([k1, k2]), np.concatenate([l1, l2]))
    assert np.array_equal(c.cm, want.cm) and np.array_equal(c.ss, want.ss)
    assert not a.derived and not b.derived
