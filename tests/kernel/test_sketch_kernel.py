"""One sketch, three places: the kernel's arrays equal SketchSet.update, bit for bit.

Frames go through the real XDP program (BPF_PROG_TEST_RUN, alternately
pinned to each CPU so several per-CPU slices fill); the per-CPU Count-Min and
SuperSpread arrays of the active set, merged with SketchSet.from_percpu,
must equal a SketchSet fed the same keys -- built here from the addresses
and ports the frames were made of, not from what the kernel recorded.

Also: heavy-hitter candidates have no false negatives, and a full flow
table loses nothing but exactness (totals and sketches still see every packet).
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import pytest

from netspectra import abi, analysis
from netspectra import packets as P
from netspectra.config import default_tasks
from netspectra.kernel import libbpf
from netspectra.sketch import SketchSet
from netspectra.tasks import COUNTMIN, SUPERSPREAD, TaskSpec

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
    0/0), cut TCP headers (ports 0/0), sizes 60..1514, some non-IP frames
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
        elif kind < 0.11:  # TCP header cut off
            l3 = (
                P.ipv6(src, dst, P.TCP, P.l4(P.TCP, sport, dport)[:10])
                if v6
                else P.ipv4(src, dst, P.TCP, P.l4(P.TCP, sport, dport)[:10])
            )
            f = P.eth(P.ETH_IPV6 if v6 else P.ETH_IP, vlans) + l3
            k = make_key(src, dst, 0, 0, P.TCP)
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


def kernel_sketch(prog, s) -> SketchSet:
    return SketchSet.from_percpu(prog.layout, prog.cm[s], prog.ss[s])


def assert_same(kernel: SketchSet, ref: SketchSet):
    assert np.array_equal(kernel.cm.view(np.uint64), ref.cm.view(np.uint64)), (
        f"Count-Min differs in {int((kernel.cm.view(np.uint64) != ref.cm.view(np.uint64)).sum())} words"
    )
    assert np.array_equal(kernel.ss, ref.ss), f"SuperSpread differs in {int((kernel.ss != ref.ss).sum())} registers"


@pytest.fixture
def small():
    p = load(SMALL_TASKS, flow_capacity=8192)
    yield p
    p.close()


def check_counts_nontrivial(sk: SketchSet, keys, lengths):
    """The comparison is not vacuous: every Count-Min task counted every IP
    packet, and SuperSpread registers are set."""
    for t in sk.layout.kind(COUNTMIN):
        assert sk.total(t.spec.name) == (len(keys), int(lengths.sum()))
    assert sk.ss.any()


def test_sketch_bit_identical_small_layout_two_sets(small):
    frames, keys, lengths, non_ip = traffic(3000, seed=1)
    s0 = small.active
    send_spread(small, frames)
    # the second set gets other traffic after a flip; the first must not move
    idle = small.flip()
    assert idle == s0
    frames1, keys1, lengths1, _ = traffic(1500, seed=2)
    send_spread(small, frames1)
    s1 = small.active
    assert s1 != s0

    for s, k, ln, fr, nn in ((s0, keys, lengths, frames, non_ip), (s1, keys1, lengths1, frames1, None)):
        ref = SketchSet(small.layout)
        ref.update(k, ln)
        ks = kernel_sketch(small, s)
        check_counts_nontrivial(ks, k, ln)
        assert_same(ks, ref)
        tot = small.take_totals(s)
        assert tuple(tot[abi.C["all"]]) == (len(fr), sum(len(f) for f in fr))
        assert tot[abi.C["out_ipv4"], 0] + tot[abi.C["out_ipv6"], 0] == len(k)
        if nn is not None:
            assert tot[abi.C["out_non_ip"], 0] == nn
    # more than one CPU slice was written when more than one CPU is allowed
    if len(cpus()) > 1:
        assert sum(bool(small.cm[s0][c].view(np.uint64).any()) for c in range(small.sizes.ncpus)) > 1


def test_sketch_bit_identical_default_tasks():
    p = load(None, flow_capacity=8192)
    try:
        frames, keys, lengths, _ = traffic(2000, seed=3)
        send_spread(p, frames)
        ref = SketchSet(p.layout)
        ref.update(keys, lengths)
        ks = kernel_sketch(p, p.active)
        check_counts_nontrivial(ks, keys, lengths)
        assert_same(ks, ref)
        assert [t.spec for t in p.layout.tasks] == list(default_tasks())
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


def test_heavy_hitter_candidates_no_false_negatives():
    p = load(hh_tasks(), flow_capacity=8192)
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
        cands = p.take_candidates(s)
        assert len(cands) > 0
        assert set(cands["set"].tolist()) == {s}
        assert int(cands["cpu"].max()) < p.sizes.ncpus and not cands["pad"].any()
        tot = p.take_totals(s)
        assert tot[abi.C["cand_lost"], 0] == 0
        sk = kernel_sketch(p, s)
        ref = SketchSet(p.layout)
        ref.update(keys, lengths)
        assert_same(sk, ref)  # the candidates come from this very sketch
        hh = analysis.heavy_hitters(sk, cands)
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
                assert bytes(u) in cand_set, f"{spec.name}: heavy key (true {tp} packets, {tb} bytes) not a candidate"
                assert bytes(u) in got, f"{spec.name}: heavy key missing from heavy_hitters()"
                ep, eb = got[bytes(u)]
                assert ep >= tp and eb >= tb
            # everything heavy_hitters() returns passed the whole-machine threshold
            for pk, by in got.values():
                assert (spec.hh_packets and pk >= spec.hh_packets) or (spec.hh_bytes and by >= spec.hh_bytes)
            assert len(got) < len(uniq) / 2, "threshold had no effect"
    finally:
        p.close()


# ------------------------------------------------------------------ full flow table


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
        send_spread(p, frames)  # flows in order: the first `cap` distinct ones get entries

        s = p.active
        sk = kernel_sketch(p, s)
        tot = p.take_totals(s)
        fkeys, fvals = p.take_flows(s)
        assert len(fkeys) == cap
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
        got = {k.tobytes(): (int(v["packets"].sum()), int(v["bytes"].sum())) for k, v in zip(fkeys, fvals, strict=True)}
        assert got == want
        # the sketches still saw every packet
        ref = SketchSet(p.layout)
        ref.update(keys, lengths)
        assert_same(sk, ref)
    finally:
        p.close()
