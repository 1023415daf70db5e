"""One sketch, three places: the epoch's arrays equal per-packet updating, bit for bit.

Frames go through the real XDP program (BPF_PROG_TEST_RUN, alternately
pinned to each CPU so several per-CPU slices fill).  In the hybrid data plane
the kernel updates its sketch arrays only for packets the flow table cannot
hold; the epoch's sketch is the Cython sketch of the drained flows plus those
arrays (Agent.epoch).  It must equal the plain-Python per-packet reference
(netspectra/_sketch_ref.py) fed the same keys -- built here from the
addresses and ports the frames were made of, not from what the kernel
recorded -- with a roomy table, a table that fills mid-epoch, no table
(capacity 0), and in the every-packet mode.

Also: heavy-hitter candidates for keys seen only in untracked packets have no
false negatives (even for keys whose rows collisions filled before they
arrived), and a full table loses nothing but exactness.
"""

from __future__ import annotations

import contextlib
import os
import random
import time

import numpy as np
import pytest

from netspectra import _sketch, abi, analysis
from netspectra import packets as P
from netspectra.config import default_tasks
from netspectra.kernel import libbpf
from netspectra.kernel.program import Program, possible_cpus
from netspectra.sketch import SketchSet
from netspectra.snapshot import derive
from netspectra.tasks import COUNTMIN, SUPERSPREAD, TaskSpec, layout
from tests.helpers.reference import reference_sketch

from .conftest import load

pytestmark = pytest.mark.root

FIVE = ("src_ip", "dst_ip", "src_port", "dst_port", "proto")
SMALL_TASKS = (
    TaskSpec("src", COUNTMIN, ("src_ip",), depth=4, width=4096, seed=11),
    TaskSpec("flow", COUNTMIN, FIVE, depth=3, width=4096, seed=12),
    TaskSpec(
        "spread",
        SUPERSPREAD,
        ("src_ip",),
        ("dst_ip", "dst_port"),
        width=4096,  # pool registers (virtual HyperLogLog)
        registers=64,
        seed=13,
        elem_seed=14,
    ),
    TaskSpec("fanin", SUPERSPREAD, ("dst_ip", "proto"), ("src_ip",), width=2048, registers=128, seed=15, elem_seed=16),
)


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


@contextlib.contextmanager
def pinned(cpu: int):
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def make_key(src, dst, sport, dport, proto) -> np.ndarray:
    k = np.zeros(1, abi.KEY)
    k["src"] = np.frombuffer(P.mapped(src), np.uint8)
    k["dst"] = np.frombuffer(P.mapped(dst), np.uint8)
    k["sport"], k["dport"], k["proto"] = sport, dport, proto
    return k


def traffic(n: int, seed: int):
    """n varied frames: (frames, keys (abi.KEY of the IP ones), lengths of the IP ones, n_non_ip).
    Mixed IPv4/IPv6, VLAN tags, TCP/UDP/ICMP/SCTP/GRE, later fragments (ports
    0/0), cut TCP headers (ports 0/0 when cut before them), sizes 60..1514, some non-IP frames
    that must not reach the sketches."""
    rng = random.Random(seed)
    frames, keys, lengths = [], [], []
    non_ip = 0
    for _ in range(n):
        v6 = rng.random() < 0.4
        if v6:
            src = f"2001:db8:{rng.randrange(40):x}::{rng.randrange(1, 30):x}"
            dst = f"2001:db8:ff::{rng.randrange(1, 200):x}"
        else:
            src = f"10.{rng.randrange(4)}.{rng.randrange(30)}.{rng.randrange(1, 20)}"
            dst = f"192.0.2.{rng.randrange(1, 250)}"
        proto = rng.choice([P.TCP, P.TCP, P.UDP, P.UDP, P.ICMP if not v6 else P.ICMPV6, P.SCTP])
        sport, dport = rng.randrange(1, 65536), rng.choice([22, 53, 80, 443, rng.randrange(1, 65536)])
        if proto in (P.ICMP, P.ICMPV6):
            sport = dport = 0
        size = rng.choice([60, 64, 128, 576, 1500, 1514, rng.randrange(60, 1515)])
        vlans = rng.choice([(), (), (), (10,), (10, 20)])
        kind = rng.random()
        if kind < 0.04:
            f = P.pad(P.eth(P.ETH_ARP, vlans) + bytes(28))
            frames.append(f)
            non_ip += 1
            continue
        if kind < 0.08 and not v6:  # later fragment: ports 0/0
            f = P.pad(P.eth(P.ETH_IP, vlans) + P.ipv4(src, dst, proto, bytes(rng.randrange(8, 200)), frag_offset=1480))
            k = make_key(src, dst, 0, 0, proto)
        elif kind < 0.08:
            pl = P.frag6(proto, 1448, more=True) + bytes(rng.randrange(8, 200))
            f = P.eth(P.ETH_IPV6, vlans) + P.ipv6(src, dst, 44, pl)
            k = make_key(src, dst, 0, 0, proto)
        elif kind < 0.11:  # TCP header cut off: ports only if their 4 bytes are there
            cut = rng.choice([3, 10])
            l3 = (
                P.ipv6(src, dst, P.TCP, P.l4(P.TCP, sport, dport)[:cut])
                if v6
                else P.ipv4(src, dst, P.TCP, P.l4(P.TCP, sport, dport)[:cut])
            )
            f = P.eth(P.ETH_IPV6 if v6 else P.ETH_IP, vlans) + l3
            k = make_key(src, dst, *((sport, dport) if cut >= 4 else (0, 0)), P.TCP)
        elif kind < 0.13:  # GRE: no ports
            f = P.eth(P.ETH_IPV6 if v6 else P.ETH_IP, vlans) + (
                P.ipv6(src, dst, P.GRE, bytes(40)) if v6 else P.ipv4(src, dst, P.GRE, bytes(40))
            )
            k = make_key(src, dst, 0, 0, P.GRE)
        else:
            f = P.frame(src, dst, proto, sport, dport, size=size, vlans=vlans)
            k = make_key(src, dst, sport, dport, proto)
        frames.append(f)
        keys.append(k)
        lengths.append(len(f))
    return frames, np.concatenate(keys), np.array(lengths, dtype=np.uint64), non_ip


def send_spread(prog, frames):
    """Send frames in order, in chunks pinned in turn to each allowed CPU."""
    cs = cpus()
    chunk = max(1, len(frames) // (3 * len(cs)))
    for start in range(0, len(frames), chunk):
        with pinned(cs[(start // chunk) % len(cs)]):
            for j in range(start, min(start + chunk, len(frames))):
                assert libbpf.test_run(prog.prog_fd, frames[j])[0] == 2


def take_epoch(prog, s):
    """What Agent.epoch() reads from set s: (totals, flows, sketch, candidates,
    whether the kernel's arrays were read)."""
    totals = prog.take_totals(s)
    flows = prog.take_flows(s)
    cands = prog.take_candidates(s)
    sk = SketchSet(prog.layout)
    if not prog.every_packet:
        sk.add_flows(flows)
    read = prog.take_sketch(s, sk, int(totals[abi.C["flow_untracked"], 0]))
    return totals, flows, sk, cands, read


def assert_same(got: SketchSet, ref: SketchSet):
    assert np.array_equal(got.cm.view(np.uint64), ref.cm.view(np.uint64)), (
        f"Count-Min differs in {int((got.cm.view(np.uint64) != ref.cm.view(np.uint64)).sum())} words"
    )
    assert np.array_equal(got.ss, ref.ss), f"SuperSpread differs in {int((got.ss != ref.ss).sum())} registers"


def check_counts_nontrivial(sk: SketchSet, keys, lengths):
    """The comparison is not vacuous: every Count-Min task counted every IP
    packet, and SuperSpread registers are set."""
    for t in sk.layout.kind(COUNTMIN):
        assert sk.total(t.spec.name) == (len(keys), int(lengths.sum()))
    assert sk.ss.any()


def kernel_arrays_written(prog, s) -> bool:
    return bool(prog.cm[s].view(np.uint64).any() or prog.ss[s].any())


# (flow capacity per CPU, every_packet): a roomy table, one that fills
# mid-epoch, no table, and the every-packet mode with a roomy and a tiny table.
MODES = [(8192, False), (40, False), (0, False), (8192, True), (40, True)]


@pytest.mark.parametrize(("capacity", "every_packet"), MODES)
def test_epoch_sketch_bit_identical_to_per_packet_reference(capacity, every_packet):
    p = Program(layout(SMALL_TASKS, possible_cpus()), capacity, 64, timestamps="precise", every_packet=every_packet)
    try:
        frames, keys, lengths, non_ip = traffic(3000, seed=1)
        s0 = p.active
        send_spread(p, frames)
        # the second set gets other traffic after a flip; the first must not move
        assert p.flip() == s0
        frames1, keys1, lengths1, _ = traffic(1500, seed=2)
        send_spread(p, frames1)
        s1 = p.active
        assert s1 != s0
        for s, k, ln, fr, nn in ((s0, keys, lengths, frames, non_ip), (s1, keys1, lengths1, frames1, None)):
            written = kernel_arrays_written(p, s)
            # more than one CPU's slices counted, when more than one CPU is allowed
            busy = p.totals[s]["c"][:, abi.C["all"]]["packets"] > 0
            assert busy.sum() == min(len(cpus()), 2) or len(cpus()) > 2
            tot, flows, sk, _, read = take_epoch(p, s)
            untracked = int(tot[abi.C["flow_untracked"], 0])
            # which arrays the kernel wrote is what the mode says
            if every_packet:
                assert written and read
            elif capacity >= 8192:
                assert untracked == 0 and not written and not read  # 0 ms spent on them
            else:
                assert untracked > 0 and written and read
            if capacity == 0:
                assert untracked == len(k) and len(flows) == 0
            # flows + untracked == what crossed (IP packets), exactly
            assert int(flows["packets"].sum()) + untracked == len(k)
            assert int(flows["bytes"].sum()) + int(tot[abi.C["flow_untracked"], 1]) == int(ln.sum())
            check_counts_nontrivial(sk, k, ln)
            assert_same(sk, reference_sketch(p.layout, k, ln))
            assert tuple(tot[abi.C["all"]]) == (len(fr), sum(len(f) for f in fr))
            assert tot[abi.C["out_ipv4"], 0] + tot[abi.C["out_ipv6"], 0] == len(k)
            if nn is not None:
                assert tot[abi.C["out_non_ip"], 0] == nn
            # read and cleared: the next use of the set starts from zero
            assert not kernel_arrays_written(p, s) and not p.totals[s]["c"].view(np.uint64).any()
            assert not p.totals[s]["flows"].any()
    finally:
        p.close()


@pytest.mark.parametrize("every_packet", [False, True])
def test_epoch_sketch_bit_identical_default_tasks(every_packet):
    p = Program(layout(default_tasks(), possible_cpus()), 40, 64, timestamps="precise", every_packet=every_packet)
    try:
        frames, keys, lengths, _ = traffic(2000, seed=3)
        send_spread(p, frames)
        ref = SketchSet(p.layout)
        ref.update(keys, lengths)  # the Cython per-packet update (itself checked against _sketch_ref)
        tot, flows, sk, _, _ = take_epoch(p, p.active)
        assert 0 < int(tot[abi.C["flow_untracked"], 0]) < len(keys)
        check_counts_nontrivial(sk, keys, lengths)
        assert_same(sk, ref)
        assert [t.spec for t in p.layout.tasks] == list(default_tasks())
    finally:
        p.close()


def test_flows_on_several_cpus_merge():
    """A flow whose packets land on several CPUs is one record: packets and
    bytes summed, first seen the earliest, flags ORed."""
    cs = cpus()
    if len(cs) < 2:
        pytest.skip("needs two CPUs")  # CI machines have two
    p = load(SMALL_TASKS, flow_capacity=64)
    try:
        syn = P.frame("10.9.0.1", "10.9.0.2", P.TCP, 4000, 80, size=80, flags=0x02)
        ack = P.frame("10.9.0.1", "10.9.0.2", P.TCP, 4000, 80, size=200, flags=0x10)
        with pinned(cs[0]):
            libbpf.test_run(p.prog_fd, syn)
        time.sleep(0.005)
        with pinned(cs[1]):
            for _ in range(3):
                libbpf.test_run(p.prog_fd, ack)
        s = p.active
        assert [int(p.totals[s]["flows"][c]) for c in cs[:2]] == [1, 1]
        flows = p.take_flows(s)
        assert len(flows) == 1
        f = flows[0]
        assert (int(f["packets"]), int(f["bytes"]), int(f["tcp_flags"])) == (4, 80 + 3 * 200, 0x12)
        assert f["first_ns"] < f["last_ns"]
    finally:
        p.close()


# ------------------------------------------------------------------ heavy hitters

T_SRC = 40  # packets per epoch, whole-machine threshold
T_FLOW = 25
B_DST = 60_000  # bytes


def hh_tasks():
    return (
        TaskSpec("hh_src", COUNTMIN, ("src_ip",), depth=4, width=1024, seed=21, hh_packets=T_SRC),
        TaskSpec("hh_flow", COUNTMIN, FIVE, depth=4, width=1024, seed=22, hh_packets=T_FLOW),
        TaskSpec("hh_dst", COUNTMIN, ("dst_ip",), depth=4, width=1024, seed=23, hh_bytes=B_DST),
        TaskSpec("spread", SUPERSPREAD, ("src_ip",), ("dst_ip",), width=1024, registers=64, seed=24, elem_seed=25),
    )


@pytest.mark.parametrize("capacity", [0, 30, 8192])
def test_heavy_hitters_no_false_negatives(capacity):
    """Every key whose true epoch count reaches a threshold is reported, and
    never below its true count: from the kernel's candidates alone with no
    flow table, from flows + candidates with a table that fills, exactly from
    the flows with a roomy one."""
    p = load(hh_tasks(), flow_capacity=capacity)
    try:
        rng = random.Random(5)
        # (frame, key, count): heavy sources spread over several flows, exactly-at-
        # threshold sources split evenly over the CPUs, heavy and exact-threshold
        # flows, and many light keys just below every threshold.
        sends = []

        def add(src, dst, sport, dport, proto, count, size=100):
            f = P.frame(src, dst, proto, sport, dport, size=size)
            sends.append((f, make_key(src, dst, sport, dport, proto), count))

        for i in range(8):  # heavy sources: T_SRC..3*T_SRC over 5 flows each, no flow heavy
            n = rng.randrange(T_SRC, 3 * T_SRC)
            for j in range(5):
                add(f"10.50.0.{i + 1}", f"192.0.2.{j + 1}", 1000 + j, 80, P.TCP, n // 5 + (j < n % 5))
        for i in range(4):  # exactly T_SRC, half on each CPU (pigeonhole edge)
            for _ in range(2):
                add(f"10.51.0.{i + 1}", "192.0.2.200", 2000 + i, 443, P.UDP, T_SRC // 2)
        for i in range(6):  # heavy flows, one at exactly T_FLOW
            add(f"2001:db8:5::{i + 1}", "2001:db8:6::1", 3000 + i, 53, P.UDP, T_FLOW if i == 0 else T_FLOW + 7 * i)
        for i in range(400):  # light: below every threshold
            add(
                f"10.52.{i // 200}.{i % 200 + 1}",
                f"198.51.100.{i % 50 + 1}",
                4000 + i,
                22,
                P.TCP,
                rng.randrange(1, T_FLOW // 2),
            )
        for i in range(3):  # heavy in bytes only, few packets
            add("10.53.0.1", f"203.0.113.{i + 1}", 5000 + i, 80, P.TCP, 41 + i, size=1500)
        rng.shuffle(sends)
        # split every send over the CPUs (as packets of one key would arrive)
        frames, keys, lengths = [], [], []
        cs = cpus()
        for f, k, c in sends:
            parts = [c // len(cs) + (j < c % len(cs)) for j in range(len(cs))]
            for cpu, n in zip(cs, parts, strict=True):
                if n:
                    frames.append((cpu, f, n))
            keys.append(k.repeat(c))
            lengths.append(np.full(c, len(f), np.uint64))
        # One pin per CPU (migrating is slow), one run per packet: a test run
        # with repeat > 1 costs tens of ms (the kernel swaps the XDP dispatcher).
        for cpu in cs:
            with pinned(cpu):
                for c, f, n in frames:
                    if c == cpu:
                        for _ in range(n):
                            assert libbpf.test_run(p.prog_fd, f)[0] == 2
        keys = np.concatenate(keys)
        lengths = np.concatenate(lengths)

        s = p.active
        tot, flows, sk, cands, _ = take_epoch(p, s)
        assert tot[abi.C["cand_lost"], 0] == 0
        untracked = int(tot[abi.C["flow_untracked"], 0])
        assert (untracked == 0) == (capacity == 8192)
        if untracked:
            assert len(cands) > 0
            assert set(cands["set"].tolist()) == {s}
            assert int(cands["cpu"].max()) < p.sizes.ncpus and not cands["pad"].any()
        else:
            assert len(cands) == 0  # keys of tracked flows are never reported
        ref = SketchSet(p.layout)
        ref.update(keys, lengths)
        assert_same(sk, ref)
        snap = derive(0, 0.0, 1.0, tot, flows, sk, cands)
        assert snap.exact == (untracked == 0)
        hh = snap.heavy
        assert set(hh) == {"hh_src", "hh_flow", "hh_dst"}

        for t in p.layout.kind(COUNTMIN):
            spec = t.spec
            mine = np.ascontiguousarray(cands[cands["task"] == t.index]["key"])
            # reported keys are masked to the task's fields
            assert np.array_equal(analysis.mask_keys(mine, spec.fields).view(np.uint8), mine.view(np.uint8))
            cand_set = {bytes(k) for k in mine.view(np.dtype((np.void, 40)))}
            masked = analysis.mask_keys(keys, spec.fields)
            raw = masked.view(np.dtype((np.void, 40)))
            uniq, inv = np.unique(raw, return_inverse=True)
            true_p = np.bincount(inv, minlength=len(uniq))
            true_b = np.bincount(inv, weights=lengths.astype(np.float64), minlength=len(uniq)).astype(np.uint64)
            heavy = (true_p >= spec.hh_packets) if spec.hh_packets else (true_b >= spec.hh_bytes)
            assert heavy.sum() >= 3, f"{spec.name}: test traffic has too few heavy keys"
            assert (~heavy).sum() >= 50
            got = {
                bytes(k): (int(pk), int(by))
                for k, pk, by in zip(
                    hh[spec.name].keys.view(np.dtype((np.void, 40))),
                    hh[spec.name].packets,
                    hh[spec.name].bytes,
                    strict=True,
                )
            }
            for u, tp, tb in zip(uniq[heavy], true_p[heavy], true_b[heavy], strict=True):
                if capacity == 0:  # no flow table: the kernel's reports are the only source of keys
                    assert bytes(u) in cand_set, f"{spec.name}: heavy key (true {tp} packets, {tb} bytes) not reported"
                assert bytes(u) in got, f"{spec.name}: heavy key missing from the heavy hitters"
                ep, eb = got[bytes(u)]
                assert ep >= tp and eb >= tb
                if snap.exact:
                    assert (ep, eb) == (tp, tb)
            if snap.exact:  # exactly the true heavy keys
                assert len(got) == int(heavy.sum())
            # everything reported passed the whole-machine threshold
            for pk, by in got.values():
                assert (spec.hh_packets and pk >= spec.hh_packets) or (spec.hh_bytes and by >= spec.hh_bytes)
            assert len(got) < len(uniq) / 2, "threshold had no effect"
    finally:
        p.close()


def test_candidate_reported_although_collisions_filled_its_rows():
    """A key that arrives when its Count-Min cells are already past the
    per-CPU threshold (filled by other keys) is still reported once: the
    kernel remembers reported keys, it does not wait for a crossing."""
    thr = 20
    tasks = (TaskSpec("tiny", COUNTMIN, ("src_ip",), depth=2, width=64, seed=31, hh_packets=thr),)
    p = load(tasks, flow_capacity=0)
    try:
        cs = cpus()
        with pinned(cs[0]):
            for i in range(2000):  # 2000 light sources over 64 cells: every cell far past thr
                libbpf.test_run(p.prog_fd, P.frame(f"10.60.{i // 200}.{i % 200 + 1}", "192.0.2.1", P.UDP, 1, 2))
            heavy = P.frame("10.61.0.1", "192.0.2.1", P.UDP, 1, 2)
            for _ in range(thr):
                libbpf.test_run(p.prog_fd, heavy)
        s = p.active
        cands = p.take_candidates(s)
        reported = analysis.mask_keys(np.ascontiguousarray(cands["key"]), abi.F_SRC_IP)
        want = analysis.mask_keys(make_key("10.61.0.1", "192.0.2.1", 1, 2, P.UDP), abi.F_SRC_IP)
        hits = int((reported.view(np.dtype((np.void, 40))) == want.view(np.dtype((np.void, 40)))[0]).sum())
        assert hits == 1, f"the heavy key was reported {hits} times"
        # and each light key at most once per CPU (the table remembers them too)
        u, n = np.unique(reported.view(np.dtype((np.void, 40))), return_counts=True)
        assert n.max() <= 1 and len(u) > 1000
    finally:
        p.close()


# ------------------------------------------------------------------ the flow table


def flow_hash_slot(keys: np.ndarray, slots: int) -> np.ndarray:
    """The first slot the kernel probes for each key: fmix64 of the fold of
    every word (hash spec v2 with all-ones masks and seed 0), low bits."""
    return _sketch.hash_keys(keys, (2**64 - 1,) * abi.KEY_WORDS, 0) & np.uint64(slots - 1)


def test_flow_table_full():
    cap, nflows = 64, 200
    p = load(SMALL_TASKS, flow_capacity=cap)
    try:
        rng = random.Random(9)
        frames, keys, lengths, flow_of = [], [], [], []
        for i in range(nflows):
            v6 = i % 3 == 0
            src = f"2001:db8:7::{i + 1:x}" if v6 else f"10.70.{i // 250}.{i % 250 + 1}"
            dst = "2001:db8:8::1" if v6 else "192.0.2.9"
            for _ in range(i % 3 + 1):
                f = P.frame(src, dst, P.UDP, 10000 + i, 53, size=rng.randrange(60, 1515))
                frames.append(f)
                keys.append(make_key(src, dst, 10000 + i, 53, P.UDP))
                lengths.append(len(f))
                flow_of.append(i)
        keys = np.concatenate(keys)
        lengths = np.array(lengths, dtype=np.uint64)
        flow_of = np.array(flow_of)
        with pinned(cpus()[0]):  # one CPU's table: the first `cap` distinct flows get slots
            for f in frames:
                libbpf.test_run(p.prog_fd, f)

        s = p.active
        tot, flows, sk, _, read = take_epoch(p, s)
        assert len(flows) == cap and read
        tracked = flow_of < cap
        assert tuple(tot[abi.C["all"]]) == (len(frames), int(lengths.sum()))
        assert tuple(tot[abi.C["out_ipv4"]] + tot[abi.C["out_ipv6"]]) == (len(frames), int(lengths.sum()))
        assert tuple(tot[abi.C["flow_untracked"]]) == (int((~tracked).sum()), int(lengths[~tracked].sum()))
        # the tracked flows are exactly the first `cap`, each exact
        want = {}
        for k, ln, fi in zip(keys, lengths, flow_of, strict=True):
            if fi < cap:
                pk, by = want.get(k.tobytes(), (0, 0))
                want[k.tobytes()] = (pk + 1, by + int(ln))
        got = {f["key"].tobytes(): (int(f["packets"]), int(f["bytes"])) for f in flows}
        assert got == want
        # the sketches still saw every packet
        ref = SketchSet(p.layout)
        ref.update(keys, lengths)
        assert_same(sk, ref)
    finally:
        p.close()


def test_flow_whose_probes_are_all_taken_is_untracked():
    """33 flows hashing to one slot: the first 32 take the slot and the 31
    after it, the 33rd is untracked although the table is nearly empty."""
    cap = 1024
    p = load(SMALL_TASKS, flow_capacity=cap)
    try:
        slots = p.sizes.flow_slots
        assert slots == 2048
        rng = np.random.default_rng(4)
        cand = np.zeros(200_000, abi.KEY)
        cand["src"][:, 10:12] = 0xFF
        cand["src"][:, 12:] = rng.integers(0, 256, (len(cand), 4))
        cand["dst"][:, 10:12] = 0xFF
        cand["dst"][:, 12:] = (192, 0, 2, 1)
        cand["proto"], cand["sport"], cand["dport"] = P.UDP, 5000, 53
        home = flow_hash_slot(cand, slots)
        same = cand[home == home[0]][: abi.FLOW_PROBES + 1]
        assert len(same) == abi.FLOW_PROBES + 1
        with pinned(cpus()[0]):
            for k in same:
                f = P.frame(P.addr_str(k["src"]), P.addr_str(k["dst"]), P.UDP, 5000, 53, size=100)
                libbpf.test_run(p.prog_fd, f)
        tot, flows, _, _, _ = take_epoch(p, p.active)
        assert len(flows) == abi.FLOW_PROBES
        assert tuple(tot[abi.C["flow_untracked"]]) == (1, 100)
        assert flows["key"][-1].tobytes() != same[-1].tobytes()
    finally:
        p.close()


def test_new_generation_frees_the_table():
    """After a set is read, its next epoch starts empty without clearing: a
    flow seen again gets fresh counters, and slots of the old generation are
    reused (no flow of the old epoch comes back)."""
    p = load(SMALL_TASKS, flow_capacity=16)
    try:
        with pinned(cpus()[0]):
            a = [P.frame(f"10.80.0.{i + 1}", "192.0.2.1", P.UDP, 1, 2, size=100) for i in range(16)]
            for f in a:
                libbpf.test_run(p.prog_fd, f)
            s = p.active
            p.flip()
            assert len(take_epoch(p, s)[1]) == 16
            p.flip()  # back to s, now at a new generation
            assert p.active == s
            for f in a[:3]:
                libbpf.test_run(p.prog_fd, f)
                libbpf.test_run(p.prog_fd, f)
            for i in range(13):  # the table takes 16 flows again: 3 old keys + 13 new ones
                libbpf.test_run(p.prog_fd, P.frame(f"10.81.0.{i + 1}", "192.0.2.1", P.UDP, 1, 2, size=100))
            tot, flows, _, _, _ = take_epoch(p, s)
        assert int(tot[abi.C["flow_untracked"], 0]) == 0
        assert len(flows) == 16
        assert sorted(flows["packets"].tolist()) == [1] * 13 + [2] * 3
        assert int(flows["bytes"].sum()) == 19 * 100
    finally:
        p.close()


# ------------------------------------------------------------------ timestamps


def test_millisecond_clock_timestamps():
    """The default timestamps come from the agent's clock, published every
    millisecond: a flow's first/last seen lie within a few ms before the
    packet.  With the clock stopped, the program reads the kernel clock once
    the agent's is NS_CLOCK_LATE_NS behind."""
    p = load(SMALL_TASKS, flow_capacity=64)
    try:
        assert p.timestamps == "millisecond" and not p.clock_running
        p.start_clock()
        with pinned(cpus()[0]):
            time.sleep(0.01)
            stamps = []
            for i in range(20):
                before = time.monotonic_ns()
                libbpf.test_run(p.prog_fd, P.frame(f"10.90.0.{i + 1}", "192.0.2.1", P.UDP, 1, 2))
                stamps.append((before, time.monotonic_ns()))
                time.sleep(0.002)
            p.stop_clock()
            time.sleep(0.05)  # the published clock is now 50 ms old
            before = time.monotonic_ns()
            libbpf.test_run(p.prog_fd, P.frame("10.91.0.1", "192.0.2.1", P.UDP, 1, 2))
            late = (before, time.monotonic_ns())
        flows = p.take_flows(p.active)
        got = {P.addr_str(k): int(t) for k, t in zip(flows["key"]["src"], flows["first_ns"])}
        assert len(got) == 21
        for i, (b, a) in enumerate(stamps):
            ts = got[f"10.90.0.{i + 1}"]
            # published at most ~1 ms (plus wake-up latency) before the packet, never after
            assert b - 5_000_000 <= ts <= a, f"flow {i}: {(b - ts) / 1e6:.3f} ms before the packet"
        b, a = late
        assert b <= got["10.91.0.1"] <= a  # the kernel clock, not the frozen one
    finally:
        p.close()
