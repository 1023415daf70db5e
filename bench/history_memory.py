"""Memory per epoch kept for queries (api.keep_epochs, api.max_memory).

    python -m bench.history_memory [--flows 20000] [--epochs 6]

A synthetic capture (bench.api_latency.build_capture: --flows distinct flows
per epoch) goes through offline.analyze with the default tasks; its epochs go
into a History and every query kind runs over all of them (so the indexes
queries build per epoch exist too).  Prints JSON: bytes per kept epoch as
History counts them (numpy arrays, what api.max_memory bounds) before and
after the queries, and the process's RSS growth per epoch for comparison.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench._common import emit, log, machine


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flows", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()

    from bench.api_latency import build_capture
    from netspectra import offline
    from netspectra.api.history import History, nbytes
    from netspectra.api.queries import Queries
    from netspectra.api.v1 import sensor_pb2 as pb
    from netspectra.config import Config
    from netspectra.tasks import layout

    cfg = Config()
    with tempfile.TemporaryDirectory(prefix="netspectra-histmem-") as tmp:
        cap = Path(tmp) / "capture.pcap"
        build_capture(cap, args.flows, args.epochs, 3, 5.0, 1)
        rep = offline.analyze([str(cap)], cfg, epoch_s=5.0)
    snaps = rep.epochs
    log(f"{len(snaps)} epochs of ~{args.flows} flows")
    h = History(len(snaps), layout(cfg.tasks, 1), max_bytes=1 << 62)  # a bound never reached: sizes kept current
    base = rss()
    for s in snaps:
        h.add(s)
    added = rss()
    q = Queries(h, {"interface": "bench"}, clock=lambda: snaps[-1].end)
    t = time.perf_counter()
    n = len(snaps)
    for task in ("src", "flow"):
        q.TopKeys(pb.TopKeysRequest(task=task, limit=10, epochs=n))
    for task in ("spread_dst", "fanin_src", "port_scan"):
        q.TopSpreaders(pb.TopSpreadersRequest(task=task, limit=10, epochs=n))
    q.ListFlows(pb.ListFlowsRequest(page_size=100, epochs=n))
    q.ListFlows(pb.ListFlowsRequest(page_size=100, epochs=n, filter=pb.FlowFilter(src="10.64.0.1")))
    queried = rss()
    flows = sum(len(s.flows) for s in snaps)
    emit(
        {
            "bench": "history_memory",
            "machine": machine(),
            "epochs": n,
            "flows_per_epoch": round(flows / n),
            "snapshot_bytes_per_epoch": round(sum(nbytes(s) for s in snaps) / n),
            "kept_bytes_per_epoch_after_queries": round(h.kept_bytes / n),
            "kept_bytes_per_flow_after_queries": round(h.kept_bytes / flows, 1),
            "rss_growth_per_epoch_added": round((added - base) / n),
            "rss_growth_per_epoch_with_queries": round((queried - base) / n),
            "queries_s": round(time.perf_counter() - t, 3),
        }
    )


if __name__ == "__main__":
    main()
