"""What a Prometheus scrape of the sensor costs: collect + text exposition.

    python -m bench.scrape [--series 1000] [--rounds 50]

The default configuration (4 tasks: 2 Count-Min, 2 SuperSpread) with K chosen
so that the per-key series (heavy hitter packets and bytes of each Count-Min
task, spreader distinct counts of each SuperSpread task) number at least
`series`; every task has more candidates than K, so each exports exactly K
keys.  One synthetic epoch is observed, then generate_latest() on a registry
holding only the sensor's collector is timed `rounds` times (the same work as
an HTTP scrape, minus the socket).  Also reports observe(), which runs once
per epoch on the agent thread.  Prints one JSON object; never passes or fails
on time.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from prometheus_client import generate_latest

from netspectra import abi, analysis
from netspectra.config import load_config
from netspectra.metrics import SensorCollector, registry_for
from netspectra.sketch import HeavyHitters, SketchSet
from netspectra.snapshot import EpochSnapshot
from netspectra.tasks import COUNTMIN, SUPERSPREAD, layout

from ._common import emit, log, machine, summary

GOAL_MS = 50.0


def random_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    k = np.zeros(n, abi.KEY)
    k["src"][:, 10:12] = 0xFF
    k["src"][:, 12:] = rng.integers(0, 256, (n, 4), dtype=np.uint8)
    k["dst"][:, 10:12] = 0xFF
    k["dst"][:, 12:] = rng.integers(0, 256, (n, 4), dtype=np.uint8)
    k["sport"] = rng.integers(1024, 65536, n)
    k["dport"] = rng.integers(1, 1024, n)
    k["proto"] = rng.choice([6, 17], n)
    return k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=1000, help="per-key (top-K) series to export, at least")
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()

    cfg = load_config(None)
    lay = layout(cfg.tasks)
    cm = [t.spec.name for t in lay.kind(COUNTMIN)]
    ss = [t.spec.name for t in lay.kind(SUPERSPREAD)]
    per_key = 2 * len(cm) + len(ss)  # series per top-K key of every task
    k = math.ceil(args.series / per_key)
    rng = np.random.default_rng(1)
    n = 2 * k  # candidates per task: more than K, so top-K is selected
    heavy = {
        name: HeavyHitters(
            random_keys(rng, n),
            rng.integers(1000, 10**7, n).astype(np.uint64),
            rng.integers(10**6, 10**10, n).astype(np.uint64),
        )
        for name in cm
    }
    spreaders = {name: (random_keys(rng, n), rng.uniform(100, 10**5, n)) for name in ss}
    sk = SketchSet(lay)
    pk = random_keys(rng, 10_000)
    sk.update(pk, rng.integers(60, 1500, len(pk)))
    totals = np.zeros((abi.NCOUNTERS, 2), np.uint64)
    totals[abi.C["all"]] = (10**7, 10**10)
    flows = np.zeros(1000, analysis.FLOW_RECORD)
    snap = EpochSnapshot(0, 0.0, cfg.sensor.epoch_s, totals, flows, sk, heavy, spreaders, processing_s=0.01)

    collector = SensorCollector("eth0", lay, k, cfg.sensor.flow_capacity, {"countmin": 1, "superspread": 2})
    reg = registry_for(collector)
    t0 = time.perf_counter()
    collector.observe(snap)
    observe_ms = (time.perf_counter() - t0) * 1e3

    body = generate_latest(reg)  # warm up
    samples = sum(len(m.samples) for m in reg.collect())
    topk = sum(
        len(m.samples)
        for m in reg.collect()
        if m.name
        in ("netspectra_heavy_hitter_packets", "netspectra_heavy_hitter_bytes", "netspectra_spreader_distinct")
    )
    times = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        generate_latest(reg)
        times.append((time.perf_counter() - t0) * 1e3)
    s = summary(times, 3)
    log(f"scrape: {topk} top-K series (K={k}), {samples} samples, {len(body)} bytes: median {s['median']} ms")
    emit(
        {
            "benchmark": "scrape",
            "method": (
                "default config; one synthetic epoch observed; generate_latest() on a registry holding only "
                "the sensor collector (collect + text exposition), timed per round"
            ),
            "top_k": k,
            "topk_series": topk,
            "samples": samples,
            "exposition_bytes": len(body),
            "scrape_ms": s,
            "goal_ms": GOAL_MS,
            "within_goal": s["median"] <= GOAL_MS,
            "observe_ms": round(observe_ms, 3),
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
