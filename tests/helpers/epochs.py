"""Synthetic epochs: packets with planted heavy hitters and a port scan, and
the snapshot a sensor would close over them (flows complete, or some packets
untracked)."""

from __future__ import annotations

import numpy as np

from netspectra import abi, analysis
from netspectra.sketch import SketchSet
from netspectra.snapshot import Origin, derive, layout_fingerprint
from netspectra.tasks import COUNTMIN, SUPERSPREAD, TaskSpec, layout

TASKS = (
    TaskSpec("src", COUNTMIN, ("src_ip",), width=1024, seed=1, hh_packets=300),
    TaskSpec(
        "flow", COUNTMIN, ("src_ip", "dst_ip", "src_port", "dst_port", "proto"), width=1024, seed=2, hh_packets=40
    ),
    TaskSpec(
        "scan",
        SUPERSPREAD,
        ("src_ip",),
        ("dst_ip",),
        width=8192,
        registers=64,
        seed=3,
        elem_seed=4,
        spread_threshold=50,
    ),  # fmt: skip
    TaskSpec(
        "ports",
        SUPERSPREAD,
        ("src_ip", "dst_ip"),
        ("dst_port",),
        width=8192,
        registers=64,
        seed=5,
        elem_seed=6,
        spread_threshold=30,
    ),  # fmt: skip
)
LAY = layout(TASKS, 2)
V = np.dtype((np.void, 40))


def packets(rng, n):
    """n background packets (20 sources, 120 destinations), plus heavy flows
    (ports 1000+) and a port scan (source 200 over 80 ports of one host), shuffled."""
    k = np.zeros(n + 6 * 60 + 80 * 2, abi.KEY)
    k["src"][:, 10:12] = k["dst"][:, 10:12] = 0xFF
    k["src"][:n, 15] = rng.integers(0, 20, n)
    k["dst"][:n, 15] = rng.integers(0, 120, n)
    k["sport"][:n], k["dport"][:n] = rng.integers(0, 4, n), rng.integers(0, 60, n)
    k["src"][n : n + 360, 15] = np.repeat(np.arange(6), 60)
    k["sport"][n : n + 360] = 1000 + np.repeat(np.arange(6), 60)
    k["src"][n + 360 :, 15], k["dst"][n + 360 :, 15] = 200, 201
    k["dport"][n + 360 :] = np.tile(np.arange(2000, 2080), 2)
    k["proto"] = 6
    k = k[rng.permutation(len(k))]
    return k, rng.integers(60, 1515, len(k)).astype(np.uint64)


def flows_of(keys, lengths, t0=0):
    u, first, inv = np.unique(keys.view(V), return_index=True, return_inverse=True)
    fl = np.zeros(len(u), analysis.FLOW_RECORD)
    fl["key"] = u.view(abi.KEY)
    fl["packets"] = np.bincount(inv.reshape(-1), minlength=len(u))
    fl["bytes"] = np.bincount(inv.reshape(-1), weights=lengths.astype(np.float64), minlength=len(u))
    fl["first_ns"], fl["last_ns"] = t0 + first, t0 + first + 5
    return fl


def epoch(keys, lengths, sensor="", untracked=None, seq=0, t=0.0, lay=LAY):
    """An epoch as a sensor closes it; untracked: a mask of packets its table
    could not hold (in the sketch, not in the flows)."""
    tracked = np.ones(len(keys), bool) if untracked is None else ~untracked
    totals = np.zeros((abi.NCOUNTERS, 2), np.uint64)
    totals[abi.C["all"]] = totals[abi.C["out_ipv4"]] = (len(keys), int(lengths.sum()))
    totals[abi.C["flow_untracked"]] = (int((~tracked).sum()), int(lengths[~tracked].sum()))
    fl = flows_of(keys[tracked], lengths[tracked], int(t * 1e9))
    if untracked is None:
        sk = SketchSet.of_flows(lay, fl)
    else:
        sk = SketchSet(lay)
        sk.update(keys, lengths)
    snap = derive(seq, t, t + 5.0, totals, fl, sk)
    snap.origin = Origin(sensor=sensor, interface="eth0", layout=layout_fingerprint(lay))
    return snap
