"""snapshot.merge() and the layout fingerprint: epochs of several sensors (or
several epochs of one) add up to exactly the snapshot of all their traffic,
and epochs of another sketch layout are refused (no kernel, no root)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from netspectra import analysis
from netspectra.config import default_tasks
from netspectra.sketch import SketchSet
from netspectra.snapshot import Origin, layout_fingerprint, merge, merge_flows
from netspectra.tasks import layout
from tests.helpers.epochs import LAY, TASKS, V, epoch, packets


def flow_dict(fl):
    return {bytes(f["key"].tobytes()): (int(f["packets"]), int(f["bytes"])) for f in fl}


def answers(s):
    hh = {n: sorted(zip(h.keys.view(V).tolist(), h.packets.tolist(), h.bytes.tolist())) for n, h in s.heavy.items()}
    sp = {n: sorted(zip(k.view(V).tolist(), np.asarray(c).tolist())) for n, (k, c) in s.spreaders.items()}
    return hh, sp


def test_merge_of_sensors_equals_the_snapshot_of_all_traffic():
    rng = np.random.default_rng(1)
    keys, lengths = packets(rng, 9000)
    part = rng.integers(0, 3, len(keys))  # which of three sensors saw each packet
    parts = [epoch(keys[part == i], lengths[part == i], f"s{i}") for i in range(3)]
    whole = epoch(keys, lengths)
    m = merge(parts)
    assert m.exact and not m.sketch.derived  # exact parts: the sketch of the merged flows, when read
    assert flow_dict(m.flows) == flow_dict(whole.flows)
    assert np.array_equal(m.totals, whole.totals)
    assert answers(m) == answers(whole)
    assert all(len(h.keys) for h in whole.heavy.values()) and all(len(k) for k, _ in whole.spreaders.values())
    # ... and a heavy hitter of all traffic may be under the threshold on each sensor
    assert any(len(whole.heavy["src"].keys) > len(p.heavy["src"].keys) for p in parts)
    assert np.array_equal(m.sketch.cm, whole.sketch.cm) and np.array_equal(m.sketch.ss, whole.sketch.ss)
    assert m.origin == Origin(layout=layout_fingerprint(LAY))  # no one sensor
    assert (m.start, m.end, m.seq) == (0.0, 5.0, 0)


def test_merge_with_untracked_packets_is_estimated_and_misses_nothing():
    rng = np.random.default_rng(2)
    keys, lengths = packets(rng, 9000)
    part = rng.integers(0, 2, len(keys))
    lost = (part == 1) & (rng.random(len(keys)) < 0.3)  # sensor 1's table overflowed
    parts = [epoch(keys[part == 0], lengths[part == 0], "a"), epoch(keys[part == 1], lengths[part == 1], "b",
                                                                     untracked=lost[part == 1])]  # fmt: skip
    m = merge(parts)
    assert not m.exact
    ref = SketchSet(LAY)
    ref.update(keys, lengths)
    assert np.array_equal(m.sketch.cm, ref.cm) and np.array_equal(m.sketch.ss, ref.ss)  # every packet, once
    truth = epoch(keys, lengths)
    got = {k: p for k, p in zip(m.heavy["src"].keys.view(V).tolist(), m.heavy["src"].packets.tolist())}
    for k, p in zip(truth.heavy["src"].keys.view(V).tolist(), truth.heavy["src"].packets.tolist()):
        assert got.get(k, -1) >= p  # no true heavy hitter missed, never below the truth


def test_merge_of_epochs_of_one_sensor():
    rng = np.random.default_rng(3)
    keys, lengths = packets(rng, 4000)
    half = len(keys) // 2
    a = epoch(keys[:half], lengths[:half], "edge", seq=7, t=100.0)
    b = epoch(keys[half:], lengths[half:], "edge", seq=8, t=105.0)
    m = merge([a, b])
    assert (m.seq, m.start, m.end, m.origin.sensor) == (7, 100.0, 110.0, "edge")
    assert flow_dict(m.flows) == flow_dict(epoch(keys, lengths).flows)
    # a flow in both epochs: first seen the earliest, last seen the latest
    both = set(flow_dict(a.flows)) & set(flow_dict(b.flows))
    f = m.flows[[bytes(k.tobytes()) in both for k in m.flows["key"]]][0]
    fa = next(x for x in a.flows if x["key"].tobytes() == f["key"].tobytes())
    fb = next(x for x in b.flows if x["key"].tobytes() == f["key"].tobytes())
    assert (int(f["first_ns"]), int(f["last_ns"])) == (int(fa["first_ns"]), int(fb["last_ns"]))
    assert merge([a]).flows.tobytes() == a.flows.tobytes()
    assert merge_flows([]).dtype == analysis.FLOW_RECORD


def test_other_layouts_are_refused_by_name():
    rng = np.random.default_rng(4)
    keys, lengths = packets(rng, 500)
    a = epoch(keys, lengths, "edge-1")
    other = layout(tuple(dataclasses.replace(t, seed=t.seed + 1) if t.name == "src" else t for t in TASKS), 2)
    b = epoch(keys, lengths, "edge-2")
    b.sketch = SketchSet.of_flows(other, b.flows)
    with pytest.raises(ValueError, match=r"cannot merge epochs of different sketch layouts: sensor edge-1 \(eth0\)"
                                         r" epoch 0 has layout [0-9a-f]{16}, sensor edge-2 \(eth0\) epoch 0 has"):  # fmt: skip
        merge([a, b])
    with pytest.raises(ValueError, match="nothing to merge"):
        merge([])


def test_layout_fingerprint_covers_what_makes_arrays_mergeable():
    base = layout(default_tasks(), 2)
    fp = layout_fingerprint(base)
    assert len(fp) == 16 and fp == layout_fingerprint(layout(default_tasks(), 64))  # CPUs: not in the arrays
    renamed = tuple(dataclasses.replace(t, hh_packets=7, spread_threshold=3) for t in default_tasks())
    assert layout_fingerprint(layout(renamed, 2)) == fp  # thresholds change reports, not arrays
    for change in ({"seed": 1}, {"width": 1 << 20}, {"key": ("dst_ip",)}):
        t0 = dataclasses.replace(default_tasks()[0], **change)
        assert layout_fingerprint(layout((t0, *default_tasks()[1:]), 2)) != fp, change
