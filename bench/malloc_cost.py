"""What netspectra.malloc costs and saves: glibc's default allocator against
a fixed mmap threshold, side by side on the same work.

    python -m bench.malloc_cost [--flows 100000] [--epochs 40] [--keep 12]

Each mode runs in a child process of its own (mallopt cannot be undone) on
the default tasks, pinned to one CPU.  Per epoch, as the sensor does: a
synthetic flow table of --flows flows is read (flows_take), its sketch
arrays derived and the epoch derived; the last --keep epochs are kept, and a
query thread merges their sketches (a window's answer) and drops the result.
Reported per mode: CPU ms per epoch (median, p90) and the child's anonymous
memory (RssAnon) at the end and at most.  No root needed; no kernel.
Prints one JSON object; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import deque

import numpy as np

from ._common import emit, log, machine, memory_mib, pin_cpu


def rss_anon_mib() -> float:
    return memory_mib()["RssAnon"]


def child(mode: str, flows: int, epochs: int, keep: int, cpu: int | None) -> dict:
    from netspectra import _sketch, abi, analysis, malloc
    from netspectra.config import load_config
    from netspectra.sketch import SketchSet
    from netspectra.snapshot import derive
    from netspectra.tasks import layout

    from .epoch_read import synthetic_table

    if mode == "fixed":
        assert malloc.keep_large_blocks_mapped()
    pin_cpu(cpu)
    lay = layout(load_config(None).tasks, 2)
    entries, fidx, counts = synthetic_table(flows, 2, np.random.default_rng(3))
    kept: deque = deque(maxlen=keep)
    cpu_ms, peak = [], 0.0

    def query() -> None:  # as api.queries merges a window's sketches
        merged = kept[0].sketch.copy()
        for s in list(kept)[1:]:
            merged.merge(s.sketch)
        int(merged.cm["packets"].sum())  # the answer reads it

    for e in range(epochs):
        t = time.process_time()
        fl = _sketch.flows_take(entries, fidx, counts, analysis.FLOW_RECORD)
        totals = np.zeros((abi.NCOUNTERS, 2), np.uint64)
        sk = SketchSet.of_flows(lay, fl)
        _ = sk.cm  # derived, as for an epoch a query reads
        kept.append(derive(e, float(e), float(e + 1), totals, fl, sk))
        q = threading.Thread(target=query)  # another thread, as the API's
        q.start()
        q.join()
        cpu_ms.append((time.process_time() - t) * 1e3)
        peak = max(peak, rss_anon_mib())
    warm = cpu_ms[keep:] or cpu_ms
    return {
        "cpu_ms_per_epoch": {"p50": round(float(np.median(warm)), 1), "p90": round(float(np.percentile(warm, 90)), 1)},
        "rss_anon_mib": {"last": round(rss_anon_mib(), 1), "max": round(peak, 1)},
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.malloc_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--keep", type=int, default=12)
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed)")
    ap.add_argument("--child", choices=("default", "fixed"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.flows, args.epochs, args.keep, args.cpu)))
        return
    result: dict = {"benchmark": "malloc_cost", "machine": machine(), "flows": args.flows, "epochs": args.epochs}
    for mode in ("default", "fixed", "default", "fixed"):  # interleaved: drift hits both
        log(f"malloc_cost: {mode} ({args.epochs} epochs of {args.flows} flows)")
        cmd = [sys.executable, "-m", "bench.malloc_cost", "--child", mode, "--flows", str(args.flows)]
        cmd += ["--epochs", str(args.epochs), "--keep", str(args.keep)]
        cmd += ["--cpu", str(args.cpu)] if args.cpu is not None else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        result.setdefault(mode, []).append(json.loads(out))
    result["method"] = {
        "default": "glibc's dynamic mmap threshold (up to 32 MiB)",
        "fixed": "netspectra.malloc.keep_large_blocks_mapped(): blocks from 1 MiB mapped on their own",
        "cpu": "process CPU time per epoch after the first --keep epochs, both runs of each mode",
    }
    emit(result)


if __name__ == "__main__":
    main()
