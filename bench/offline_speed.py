"""Packets per second of netspectra.offline.analyze on one capture, best of N runs.

    python -m bench.offline_speed FILE.pcap [--runs 5]

Prints one JSON object: the Cython walk alone (parse + totals + flows +
sketches) and the whole analyze() (plus snapshot: heavy hitters, spreaders),
with the default sketch tasks and with none (`tasks: []`).  Generate a file
with `python -m bench.gen_capture`.  Never passes or fails on time.
"""

from __future__ import annotations

import argparse
import time

from netspectra import offline
from netspectra.config import Config

from ._common import emit


def walk_once(path: str, cfg) -> tuple[int, float]:
    f = offline._File(path)
    try:
        run = offline._Run(offline._layout(cfg), 0, None, True)
        t = time.perf_counter()
        f.reader.run(run.eng)
        dt = time.perf_counter() - t
        return f.reader.counts[0], dt
    finally:
        f.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    out = {"file": a.file, "runs": a.runs}
    for name, cfg in (("default_sketches", None), ("no_sketches", Config(tasks=()))):
        walks, totals = [], []
        for _ in range(a.runs):
            n, dt = walk_once(a.file, cfg)
            walks.append(dt)
            t = time.perf_counter()
            rep = offline.analyze([a.file], cfg)
            totals.append(time.perf_counter() - t)
        out[name] = {
            "packets": n,
            "flows": len(rep.overall.flows),
            "walk_best_s": round(min(walks), 4),
            "walk_mpps": round(n / min(walks) / 1e6, 2),
            "analyze_best_s": round(min(totals), 4),
            "analyze_mpps": round(n / min(totals) / 1e6, 2),
        }
    emit(out)


if __name__ == "__main__":
    main()
