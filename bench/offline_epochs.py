"""What each epoch of `netspectra analyze --epoch` costs, beyond its records.

    python -m bench.offline_epochs [--epochs 1000] [--flows 8] [--rounds 3]

Writes a capture of `--epochs` epochs of 100 ms, each with `--flows` UDP
flows of one record, and times analyze() over it with --epoch 100ms (one
snapshot per epoch, dropped as the CLI does: keep_epochs=False), with and
without rendering each epoch's table, against the same capture analysed as
one epoch.  Reported: the per-epoch cost in ms (median over rounds).  Prints
one JSON object on stdout; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import time
from pathlib import Path

from netspectra import packets as P
from netspectra.offline import analyze
from netspectra.view import render

from ._common import emit, log, machine, summary


def capture(path: Path, epochs: int, flows: int) -> int:
    recs = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    frames = [P.frame("10.0.0.1", f"10.1.{i >> 8}.{i & 255}", P.UDP, 1000, 53, size=100) for i in range(flows)]
    for k in range(epochs):
        t = k * 100_000  # us: one epoch of 100 ms each
        for f in frames:
            recs.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(f), len(f)) + f)
    path.write_bytes(b"".join(recs))
    return path.stat().st_size


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--flows", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "epochs.pcap"
        size = capture(path, a.epochs, a.flows)
        p = [str(path)]
        runs: dict[str, list[float]] = {"one_epoch": [], "epochs": [], "epochs_rendered": []}
        for r in range(a.rounds):
            log(f"round {r + 1}/{a.rounds}")
            runs["one_epoch"].append(timed(lambda: analyze(p, keep_epochs=False)))
            runs["epochs"].append(timed(lambda: analyze(p, epoch_s=0.1, keep_epochs=False)))
            runs["epochs_rendered"].append(
                timed(lambda: analyze(p, epoch_s=0.1, keep_epochs=False, on_epoch=lambda s: render(s, "x", top=10)))
            )
    base = summary(runs["one_epoch"], 4)["median"]
    per = {k: round((summary(v, 4)["median"] - base) / a.epochs * 1e3, 3) for k, v in runs.items() if k != "one_epoch"}
    emit(
        {
            "bench": "offline_epochs",
            "machine": machine(),
            "capture": {"bytes": size, "epochs": a.epochs, "flows_per_epoch": a.flows},
            "seconds": {k: summary(v, 4) for k, v in runs.items()},
            "ms_per_epoch": per,  # beyond the one-epoch run of the same capture
        }
    )


if __name__ == "__main__":
    main()
