"""The epoch loop: flip the kernel's map sets, read the idle one, analyse it.

The kernel side is anything with flip() and take_*() (kernel.program.Program
in production); the rest is pure and testable without root.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import abi, analysis
from .packets import addr_str, addr_strings
from .sketch import HeavyHitters, SketchSet
from .tasks import Layout


@dataclass
class EpochSnapshot:
    seq: int
    start: float  # wall clock, seconds
    end: float
    totals: np.ndarray  # (NCOUNTERS, 2) uint64: packets, bytes
    flows: np.ndarray  # analysis.FLOW_RECORD
    sketch: SketchSet
    heavy: dict[str, HeavyHitters] = field(default_factory=dict)
    spreaders: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    candidates: int = 0  # candidate reports received from the kernel
    processing_s: float = 0.0  # time to flip, read and analyse the epoch

    @property
    def duration(self) -> float:
        return max(self.end - self.start, 1e-9)

    def counter(self, name: str) -> tuple[int, int]:
        row = self.totals[abi.C[name]]
        return int(row[0]), int(row[1])

    def to_json(self, max_flows: int | None = None) -> dict:
        """The --json record of an epoch (fields documented in docs/json.md).
        max_flows: only the largest flows by bytes (flows_total says how many)."""
        fl = self.flows
        extra = {}
        if max_flows is not None and len(fl) > max_flows:
            fl = fl[np.argsort(fl["bytes"], kind="stable")[::-1][:max_flows]]
            extra["flows_total"] = len(self.flows)
        return extra | {
            "epoch": self.seq,
            "start": round(self.start, 6),
            "end": round(self.end, 6),
            "packets": self.counter("all")[0],
            "bytes": self.counter("all")[1],
            "totals": {name: {"packets": int(p), "bytes": int(b)} for name, (p, b) in zip(abi.COUNTERS, self.totals)},
            "loss": {
                "flow_untracked_packets": self.counter("flow_untracked")[0],
                "flow_untracked_bytes": self.counter("flow_untracked")[1],
                "candidates_lost": self.counter("cand_lost")[0],
            },
            "flows": _flows_json(fl),
            "heavy_hitters": {
                task: [
                    {**key_json(k, self.sketch.layout, task), "packets": int(p), "bytes": int(b)}
                    for k, p, b in zip(hh.keys, hh.packets, hh.bytes)
                ]
                for task, hh in self.heavy.items()
            },
            "spreaders": {
                task: [
                    {**key_json(k, self.sketch.layout, task), "distinct": round(float(e), 1)} for k, e in zip(ks, es)
                ]
                for task, (ks, es) in self.spreaders.items()
            },
        }


_FLOW_COLUMNS = ("packets", "bytes", "first_ns", "last_ns", "tcp_flags", "icmp_type", "icmp_code")


def _flows_json(fl: np.ndarray) -> list[dict]:
    """The flow records of docs/json.md, built column by column (an epoch may
    hold a million flows: no per-flow numpy scalars or address objects)."""
    k = fl["key"]
    cols = [
        addr_strings(k["src"]),
        addr_strings(k["dst"]),
        k["proto"].tolist(),
        k["sport"].tolist(),
        k["dport"].tolist(),
        *(fl[c].tolist() for c in _FLOW_COLUMNS),
    ]
    names = ("src", "dst", "proto", "sport", "dport", "packets", "bytes", "first_seen_ns", "last_seen_ns",
             "tcp_flags", "icmp_type", "icmp_code")  # fmt: skip
    return [dict(zip(names, row)) for row in zip(*cols)]


def key_json(k, layout: Layout, task: str) -> dict:
    """The task's key fields of a masked key, by name."""
    out = {}
    for name in layout.by_name(task).spec.key:
        if name == "src_ip":
            out[name] = addr_str(k["src"])
        elif name == "dst_ip":
            out[name] = addr_str(k["dst"])
        elif name == "src_port":
            out[name] = int(k["sport"])
        elif name == "dst_port":
            out[name] = int(k["dport"])
        elif name == "proto":
            out[name] = int(k["proto"])
    return out


class Agent:
    def __init__(self, program, layout: Layout, clock=time.time, mono_ns=time.monotonic_ns):
        self.program = program
        self.layout = layout
        self.clock = clock
        self.mono_ns = mono_ns
        self.seq = 0
        self.epoch_start = clock()

    def epoch(self) -> EpochSnapshot:
        """Close the current epoch: flip, then read and clear the idle set."""
        t0 = time.perf_counter()
        p = self.program
        idle = p.flip()
        end = self.clock()
        offset = int(end * 1e9) - self.mono_ns()
        totals = p.take_totals(idle)
        keys, percpu = p.take_flows(idle)
        cands = p.take_candidates(idle)
        sk = SketchSet.from_percpu(self.layout, p.cm[idle], p.ss[idle], clear=True)
        flows = analysis.merge_flow_cpus(keys, percpu, offset)
        heavy = analysis.heavy_hitters(sk, cands)
        extra = np.concatenate([h.keys for h in heavy.values()]) if heavy else None
        snap = EpochSnapshot(
            seq=self.seq,
            start=self.epoch_start,
            end=end,
            totals=totals,
            flows=flows,
            sketch=sk,
            heavy=heavy,
            spreaders=analysis.spreaders(sk, flows, extra, complete=not totals[abi.C["flow_untracked"], 0]),
            candidates=len(cands),
            processing_s=time.perf_counter() - t0,
        )
        self.seq += 1
        self.epoch_start = end
        return snap

    def run(self, epoch_s: float, on_snapshot, stop: threading.Event, poll_s: float = 0.1) -> None:
        """Call on_snapshot every epoch until `stop` is set, then once more
        for the last partial epoch.  Between flips, drain the candidate ring
        buffer every poll_s so bursts of reports do not overflow it."""
        deadline = time.monotonic() + epoch_s
        poll = getattr(self.program, "poll", None)
        while not stop.wait(max(0.0, min(poll_s, deadline - time.monotonic()))):
            if time.monotonic() < deadline:
                if poll:
                    poll()
                continue
            on_snapshot(self.epoch())
            deadline += epoch_s
            if deadline < time.monotonic():  # fell behind: skip, do not burst
                deadline = time.monotonic() + epoch_s
        on_snapshot(self.epoch())
