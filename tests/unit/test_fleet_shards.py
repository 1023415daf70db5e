"""Scaling out (docs/fleet.md, "Scaling out"): two shard collectors each merge
some of the sensors and publish their merged windows as partials; a top
collector merges the partials into exactly the window one collector of all
the sensors makes (snapshot.merge is associative).  Real nats-server, one
stream; the sensors are simulated as in test_fleet_collector."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import nats
import numpy as np
from prometheus_client import generate_latest

from netspectra.fleet import wire
from netspectra.snapshot import merge
from netspectra.store import Series
from tests.helpers.stores import same_records
from tests.unit.test_fleet_collector import (
    FP,
    SENSORS,
    W,
    configs,
    network,
    publish,
    recent_windows,
    running,
    settled,
    split_traffic,
    stored,
    wait_for,
)

SHARDS = {"A": ("s1", "s2"), "B": ("s3",)}


def shard_configs(nats_server, tmp_path):
    """Shard A (s1, s2), shard B (s3) and the top collector (partials of A and B),
    each with its own durable and store."""
    base = configs(nats_server, tmp_path, "shards")
    f, cc = base.fleet, base.fleet.collector
    out = {}
    for shard, sensors in SHARDS.items():
        col = replace(cc, durable=f"shard-{shard}", id=shard, sensors=sensors, subjects=sensors, publish=True)
        fleet = replace(f, collector=col, spool_dir=str(tmp_path / "spool"))
        out[shard] = replace(base, fleet=fleet, store=replace(base.store, url=str(tmp_path / f"{shard}.db")))
    top = replace(cc, durable="top", id="net", sensors=tuple(SHARDS), source="partials", grace_s=6.0)
    out["top"] = replace(base, fleet=replace(f, collector=top))
    return out


def test_shards_and_a_top_collector_merge_what_one_collector_merges(nats_server, tmp_path):
    cfgs = shard_configs(nats_server, tmp_path)
    url, prefix = nats_server.url, cfgs["top"].fleet.subject_prefix

    async def old_stream():  # made before shards existed: the shards add the partials' subjects
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(name="SHARDS", subjects=[wire.subjects(prefix)])
        await nc.close()

    asyncio.run(old_stream())
    t0 = recent_windows(2)
    rng = np.random.default_rng(17)
    win0, union0 = split_traffic(rng, t0, 0)
    win1, union1 = split_traffic(rng, t0 + W, 1, untracked="s3")  # s3's table overflowed: sketches merge too
    with running(cfgs["A"]) as a, running(cfgs["B"]) as b, running(cfgs["top"]) as top:
        assert top.filters == [f"{prefix}.partials.>"]
        assert a.filters == [f"{prefix}.epochs.s1", f"{prefix}.epochs.s2"] and b.filters == [f"{prefix}.epochs.s3"]
        publish(url, prefix, win0 + win1)
        durables = ("shard-A", "shard-B", "top")
        wait_for(
            lambda: top.stats()["applied"] == 2 and all(settled(url, "SHARDS", d) for d in durables),
            30,
            "the top collector's two windows, every message acked",
        )
        assert a.store.flush() and b.store.flush() and top.store.flush()
        sta, stb, stt = a.stats(), b.stats(), top.stats()
        pubs = a.publisher.stats(), b.publisher.stats()
        log = a.log_text.getvalue()
        exposed = generate_latest(a.registry).decode()  # a shard exports its publisher like a sensor
    assert 'netspectra_fleet_epochs_published_total{interface="network"} 2.0' in exposed
    assert 'netspectra_fleet_epochs_dropped_total{interface="network"} 0.0' in exposed
    assert 'netspectra_fleet_connected{interface="network"} 1.0' in exposed
    # each shard consumed only its own sensors' subjects, and published one partial per window
    assert sta["received"] == {"s1": 2, "s2": 2} and stb["received"] == {"s3": 2}
    assert sta["windows"]["complete"] == stb["windows"]["complete"] == 2
    assert all(p.published == 2 and p.dropped == 0 for p in pubs)
    assert f"stream SHARDS: added the subjects {prefix}.partials.>" in log
    # the top collector merged the partials: exactly the merge of every sensor's epochs
    assert stt["received"] == {"A": 2, "B": 2} and stt["windows"]["complete"] == 2
    assert stt["late"] == {"A": 0, "B": 0} and stt["decode_errors"] == 0 and not stt["refused"]
    nets = network(t0, t0 + 2 * W, cfgs["top"])
    assert len(nets) == 2
    for got, parts, union in zip(nets, (win0, win1), (union0, union1)):
        same_records(got, merge(parts))  # what one collector of all three sensors stores
        same_records(got, union)
        assert got.origin.sensor == "net" and got.origin.interface == "network"
    assert nets[0].exact and not nets[1].exact
    # the partials are the shards' own series: the shards' merged windows, and stored as such by the top
    for shard, sensors in SHARDS.items():
        parts = [[w for w in win if w.origin.sensor in sensors] for win in (win0, win1)]
        mine = stored(cfgs[shard], Series(shard, "network", FP), t0, t0 + 2 * W)
        at_top = stored(cfgs["top"], Series(shard, "network", FP), t0, t0 + 2 * W)
        assert len(mine) == len(at_top) == 2
        for x, y, p in zip(mine, at_top, parts):
            same_records(x, merge(p))
            same_records(y, merge(p))
        for s in sensors:  # each sensor's own epochs in its shard's store, not the top's
            assert len(stored(cfgs[shard], Series(s, "eth0", FP), t0, t0 + 2 * W)) == 2
            assert stored(cfgs["top"], Series(s, "eth0", FP), t0, t0 + 2 * W) == []
    assert set(SENSORS) == {s for ss in SHARDS.values() for s in ss}
