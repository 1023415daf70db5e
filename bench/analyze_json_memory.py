"""Peak memory of `netspectra analyze --json`: streamed, next to the whole document it replaced.

    python -m bench.analyze_json_memory [--flows 1000000] [--epoch 0.1]

Writes bench.gen_capture.distinct_flows(--flows) (one packet per flow, 1 µs
apart) into a temporary directory and runs, each in a child process whose
peak RSS is read with os.wait4 (ru_maxrss), stdout into a temporary file:

  table     `netspectra analyze FILE`: the analysis alone (the floor)
  whole     `analyze --json` as the CLI did it before it was streamed (the
            same calls): each epoch's dict kept, Report.to_json(), one
            click.echo(json.dumps(doc))
  streamed  `netspectra analyze --json FILE` (today's CLI)

and checks that whole and streamed wrote the same bytes.  With --epoch S,
whole and streamed also report each epoch of S seconds.  Prints one JSON
object; never passes or fails on memory.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._common import emit, log, machine
from .gen_capture import distinct_flows

_WHOLE = """
import json, sys, click
from netspectra.config import load_config
from netspectra.offline import analyze
epoch, epochs = float(sys.argv[2]) or None, []
rep = analyze([sys.argv[1]], load_config(None), epoch_s=epoch, keep_epochs=False,
              on_epoch=(lambda s: epochs.append(s.to_json())) if epoch else None)
doc = rep.to_json()
doc["epochs"] = epochs
click.echo(json.dumps(doc))
"""
_CLI = "import sys; from netspectra.cli import main; main(sys.argv[1:])"


def run(argv: list[str], out: Path) -> dict:
    t0 = time.perf_counter()
    with open(out, "w") as fh:
        p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.PIPE)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if p.returncode != 0:
        log(f"{argv}: exit {p.returncode}: {err[-500:]}")
    return {"exit": p.returncode, "peak_rss_mib": round(ru.ru_maxrss / 1024, 1), "wall_s": round(wall, 2)}


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for b in iter(lambda: fh.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--epoch", type=float, default=0.0, help="also report epochs of this many seconds (>= 0.1)")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cap = d / "flows.pcap"
        cap.write_bytes(distinct_flows(args.flows))
        log(f"{cap}: {args.flows} flows, {cap.stat().st_size >> 20} MiB")
        epoch = ["--epoch", f"{args.epoch}s"] if args.epoch else []
        res = {}
        for name, argv in [
            ("table", [py, "-c", _CLI, "analyze", str(cap)]),
            ("whole", [py, "-c", _WHOLE, str(cap), str(args.epoch)]),
            ("streamed", [py, "-c", _CLI, "analyze", "--json", *epoch, str(cap)]),
        ]:
            log(f"{name} ...")
            res[name] = run(argv, d / f"{name}.out")
            res[name]["output_bytes"] = (d / f"{name}.out").stat().st_size
        same = sha(d / "whole.out") == sha(d / "streamed.out")
    per_flow = {
        k: round((res[k]["peak_rss_mib"] - res["table"]["peak_rss_mib"]) * 1024 * 1024 / max(args.flows, 1), 1)
        for k in ("whole", "streamed")
    }
    emit(
        {
            "bench": "analyze_json_memory",
            "machine": machine(),
            "flows": args.flows,
            "epoch_s": args.epoch or None,
            "runs": res,
            "bytes_per_flow_above_table": per_flow,
            "identical_output": same,
            "method": "peak RSS (ru_maxrss of os.wait4) of one child process per run; stdout to a file",
        }
    )


if __name__ == "__main__":
    main()
