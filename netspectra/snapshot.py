"""EpochSnapshot, the one record of an epoch; derive() builds it, merge() adds epochs up.

The live agent and the offline analyzer both hand derive() an epoch's totals,
its exact flows and its sketch (already the sketch of every packet: flows
plus what the flow table could not hold), and get the same analysis:

  exact      the flows are complete (no packet was untracked): heavy hitters
             and spreaders are then computed from the flows, exactly (sums
             per key, distinct elements per key), and carry no error;
  estimated  otherwise: candidates (every key of the flows, plus the keys the
             kernel reported for untracked packets) are verified against the
             merged Count-Min sketch (never below the truth, so no true heavy
             hitter is missed), spreads are SuperSpread estimates.

Every snapshot carries its Origin (which sensor, boot, interface and sketch
layout): merge() adds up epochs of one layout only -- several epochs of one
sensor, or one epoch of several sensors -- and refuses any other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from . import _sketch, abi, analysis
from .analysis import FlowGroups
from .jsontext import Chunks, array
from .packets import addr_str, addr_strings
from .sketch import HeavyHitters, SketchSet
from .tasks import COUNTMIN, SUPERSPREAD, Layout

_VOID = np.dtype((np.void, abi.KEY.itemsize))
_FLOW_WMASK = abi.field_wmask(0x1F)  # the 5-tuple
_HASH_BITS = np.uint64(2**64 - 1)  # tests narrow it to force collisions


@dataclass(frozen=True)
class Origin:
    """Who produced an epoch (OpenTelemetry's Resource for epochs): enough for
    a collector to merge, de-duplicate and refuse what does not fit."""

    sensor: str = ""  # sensor.id (default: the host name)
    boot: str = ""  # the host's boot id (/proc/sys/kernel/random/boot_id); "" offline
    interface: str = ""  # the attached interface; "" for a capture file or a merge
    layout: str = ""  # layout_fingerprint() of the sketch tasks


def boot_id(path: str = "/proc/sys/kernel/random/boot_id") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


# What of a task decides the bits of its arrays (its name and thresholds do not).
_ARRAY_SHAPING = ("kind", "fields", "elem_fields", "depth", "width", "registers", "seed", "elem_seed")


def layout_fingerprint(layout: Layout) -> str:
    """16 hex digits over everything that makes two sketches mergeable: the
    ABI and hash constants, the array sizes and, per task, its kind, fields,
    shape, seeds and place in the arrays.  Thresholds and names are left out:
    they change what is reported, not the arrays."""
    desc = {
        "abi": abi.ABI_VERSION,
        "hash": [abi.HASH_MUL, abi.FMIX_1, abi.FMIX_2],
        "cm_cells": layout.cm_cells,
        "ss_blocks": layout.ss_blocks,
        "tasks": [[*(getattr(t.spec, a) for a in _ARRAY_SHAPING), t.offset] for t in layout.tasks],
    }
    return hashlib.sha256(json.dumps(desc, separators=(",", ":")).encode()).hexdigest()[:16]


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
    exact: bool = False  # flows complete: heavy hitters and spreads are exact, not estimates
    table_fill: float = 0.0  # the fullest CPU's flow table: its flows / sensor.flow_capacity (live only)
    origin: Origin = field(default_factory=Origin)
    _groups: FlowGroups | None = field(default=None, repr=False, compare=False)

    @property
    def groups(self) -> FlowGroups:
        """The flows grouped by field sets, each grouping made once (derive()
        makes those of the tasks; queries reuse them)."""
        if self._groups is None or self._groups.flows is not self.flows:
            self._groups = FlowGroups(self.flows)
        return self._groups

    @property
    def duration(self) -> float:
        return max(self.end - self.start, 1e-9)

    def counter(self, name: str) -> tuple[int, int]:
        row = self.totals[abi.C[name]]
        return int(row[0]), int(row[1])

    def to_json(self, max_flows: int | None = None, *, streamed: bool = False) -> dict:
        """The --json record of an epoch (fields documented in docs/json.md).
        max_flows: only the largest flows by bytes (flows_total says how many).
        streamed: `flows` is a jsontext.Chunks that formats the flows a batch
        at a time as jsontext.write writes it (the same text, without a dict
        per flow in memory)."""
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
            "exact": self.exact,
            "origin": dataclasses.asdict(self.origin),
            "flow_table_fill": round(self.table_fill, 4),
            "totals": {name: {"packets": int(p), "bytes": int(b)} for name, (p, b) in zip(abi.COUNTERS, self.totals)},
            "loss": {
                "flow_untracked_packets": self.counter("flow_untracked")[0],
                "flow_untracked_bytes": self.counter("flow_untracked")[1],
                "candidates_lost": self.counter("cand_lost")[0],
            },
            "flows": _flows_text(fl) if streamed else _flows_json(fl),
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


_FLOW_BATCH = 8192  # flows formatted at a time when streamed: ~2 MB of text


def _flows_text(fl: np.ndarray) -> Chunks:
    """json.dumps(_flows_json(fl)), formatted _FLOW_BATCH flows at a time."""
    batches = (json.dumps(_flows_json(fl[i : i + _FLOW_BATCH]))[1:-1] for i in range(0, len(fl), _FLOW_BATCH))
    return array(batches)


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


# --- derive --------------------------------------------------------------------------


def _largest_first(keys: np.ndarray, values: np.ndarray, *more) -> tuple:
    order = np.argsort(values, kind="stable")[::-1]
    return (keys[order], values[order], *(m[order] for m in more))


def merge_flows(parts: list[np.ndarray]) -> np.ndarray:
    """Flows of several epochs or sensors -> one record per 5-tuple (packets
    and bytes summed exactly, first seen the earliest, last seen the latest,
    flags ORed, ICMP type/code of the first part), ordered by 64-bit key
    hash, then key bytes: the same order whatever the parts, so a merge of
    merges is the merge of all.  Grouping is by hashing (O(n)), in C."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros(0, analysis.FLOW_RECORD)
    if len(parts) == 1:
        return parts[0]
    out, h = _sketch.merge_records([np.ascontiguousarray(p) for p in parts], _FLOW_WMASK)
    h &= _HASH_BITS
    order = np.argsort(h)
    hs = h[order]
    if np.any(hs[1:] == hs[:-1]):  # two 5-tuples share a hash: ties by key bytes (memcmp: big-endian words)
        w = np.ascontiguousarray(out["key"]).view(">u8").reshape(-1, 5)
        order = np.lexsort((w[:, 4], w[:, 3], w[:, 2], w[:, 1], w[:, 0], h))
    return out[order]


def merge(
    snaps: list[EpochSnapshot], seq: int | None = None, origin: Origin | None = None, derived: bool = True
) -> EpochSnapshot:
    """The snapshot of several epochs or sensors together: totals added, flows
    summed per 5-tuple, Count-Min counters added and registers maxed, then
    derive()d again (so exact only if every part was).  Bit for bit what one
    sensor would report for all their traffic.  Parts of another sketch layout
    are refused (ValueError naming both).  seq defaults to the first part's,
    origin to the parts' common sensor and layout.

    derived=False skips derive(): the heavy hitters are then only the parts'
    keys (the candidates a later derive() verifies; their counts 0) and there
    are no spreaders -- a record to store (codec derives it when read), not
    to report."""
    if not snaps:
        raise ValueError("nothing to merge")
    first = snaps[0]
    fp = layout_fingerprint(first.sketch.layout)
    for s in snaps[1:]:
        other = layout_fingerprint(s.sketch.layout)
        if other != fp or s.sketch.layout != first.sketch.layout:
            raise ValueError(
                f"cannot merge epochs of different sketch layouts: {_who(first)} has layout {fp}, "
                f"{_who(s)} has {other} (tasks, seeds and sizes must be the same everywhere)"
            )
    totals = sum((s.totals.astype(np.uint64) for s in snaps[1:]), first.totals.astype(np.uint64))
    flows = merge_flows([s.flows for s in snaps])
    if all(s.exact for s in snaps):  # the sketch of the merged flows, derived when read
        sketch = SketchSet.of_flows(first.sketch.layout, flows)
    else:
        sketch = first.sketch.copy()
        for s in snaps[1:]:
            sketch.merge(s.sketch)
    if not derived:
        return _underived(snaps, seq, origin, totals, flows, sketch, fp)
    # The parts' heavy hitters are candidates too (keys seen only in untracked packets).
    lay = first.sketch.layout
    cands = [_cands(lay.by_name(name).index, hh.keys) for s in snaps for name, hh in s.heavy.items() if len(hh.keys)]
    snap = derive(
        first.seq if seq is None else seq,
        min(s.start for s in snaps),
        max(s.end for s in snaps),
        totals,
        flows,
        sketch,
        np.concatenate(cands) if cands else None,
    )
    snap.candidates = sum(s.candidates for s in snaps)
    sensors = {s.origin.sensor for s in snaps}
    snap.origin = origin or Origin(sensor=sensors.pop() if len(sensors) == 1 else "", layout=fp)
    return snap


def _underived(snaps, seq, origin, totals, flows, sketch, fp) -> EpochSnapshot:
    """merge(derived=False): the parts' heavy-hitter keys, unranked, as candidates."""
    heavy: dict[str, list] = {}
    for s in snaps:
        for name, hh in s.heavy.items():
            heavy.setdefault(name, []).append(hh.keys)
    keys = {name: analysis.unique_keys(np.concatenate(ks)) for name, ks in heavy.items()}
    first = snaps[0]
    sensors = {s.origin.sensor for s in snaps}
    return EpochSnapshot(
        seq=first.seq if seq is None else seq,
        start=min(s.start for s in snaps),
        end=max(s.end for s in snaps),
        totals=totals,
        flows=flows,
        sketch=sketch,
        heavy={n: HeavyHitters.unranked(k) for n, k in keys.items()},
        candidates=sum(s.candidates for s in snaps),
        exact=all(s.exact for s in snaps),
        origin=origin or Origin(sensor=sensors.pop() if len(sensors) == 1 else "", layout=fp),
    )


def _who(s: EpochSnapshot) -> str:
    o = s.origin
    return f"sensor {o.sensor or '?'}" + (f" ({o.interface})" if o.interface else "") + f" epoch {s.seq}"


def _cands(task: int, keys: np.ndarray) -> np.ndarray:
    c = np.zeros(len(keys), abi.CAND)
    c["task"], c["key"] = task, keys
    return c


def derive(
    seq: int,
    start: float,
    end: float,
    totals: np.ndarray,
    flows: np.ndarray,
    sketch: SketchSet,
    candidates: np.ndarray | None = None,
    processing_s: float = 0.0,
) -> EpochSnapshot:
    """The snapshot of an epoch: heavy hitters of every Count-Min task with a
    threshold and spreaders of every SuperSpread task with one, exact when the
    flows are complete (totals show no untracked packet), estimated from the
    sketch otherwise.  candidates: abi.CAND reports of keys seen only in
    untracked packets (the kernel's ring buffer; None offline)."""
    exact = not int(totals[abi.C["flow_untracked"], 0])
    lay = sketch.layout
    groups = FlowGroups(flows)
    heavy: dict[str, HeavyHitters] = {}
    for t in lay.kind(COUNTMIN):
        spec = t.spec
        if not (spec.hh_packets or spec.hh_bytes):
            continue
        keys, _, pk, by, _ = groups.by(spec.fields)
        if exact:
            sel = np.zeros(len(keys), bool)
            if spec.hh_packets:
                sel |= pk >= spec.hh_packets
            if spec.hh_bytes:
                sel |= by >= spec.hh_bytes
            keys, pk, by = keys[sel], np.asarray(pk[sel], np.uint64), np.asarray(by[sel], np.uint64)
        else:
            cand = keys
            if candidates is not None and len(candidates):
                mine = candidates["key"][candidates["task"] == t.index]
                cand = np.concatenate([keys, analysis.mask_keys(mine, spec.fields)])
            keys, pk, by = sketch.verify(spec.name, np.ascontiguousarray(cand))
        heavy[spec.name] = HeavyHitters(*_largest_first(keys, pk, by))
    spreaders: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if exact:
        for t in lay.kind(SUPERSPREAD):
            thr = t.spec.spread_threshold
            if thr:
                keys, count = groups.distinct(t.spec.fields, t.spec.elem_fields, thr)
                hit = count >= thr
                spreaders[t.spec.name] = _largest_first(keys[hit], count[hit].astype(np.float64))
    else:
        extra = np.concatenate([h.keys for h in heavy.values()]) if heavy else None
        spreaders = analysis.spreaders(sketch, flows, extra, complete=False, groups=groups)
    return EpochSnapshot(
        seq=seq,
        start=start,
        end=end,
        totals=totals,
        flows=flows,
        sketch=sketch,
        heavy=heavy,
        spreaders=spreaders,
        candidates=0 if candidates is None else len(candidates),
        processing_s=processing_s,
        exact=exact,
        _groups=groups,
    )


def rebind(snap: EpochSnapshot, lay) -> EpochSnapshot:
    """An epoch of a layout with the same fingerprint as `lay` but other task
    names or thresholds (they do not change the arrays), as an epoch of
    `lay`: so a collector merges a sensor's epochs and reports them with its
    own thresholds."""
    if snap.sketch.layout == lay:
        return snap
    old = snap.sketch.layout
    if snap.sketch.derived:
        sk = SketchSet(lay, snap.sketch.cm, snap.sketch.ss)
    else:
        sk = SketchSet.of_flows(lay, snap.flows)
    names = {o.spec.name: n.spec.name for o, n in zip(old.tasks, lay.tasks)}
    heavy = {names[k]: HeavyHitters(h.keys, h.packets, h.bytes) for k, h in snap.heavy.items() if k in names}
    return dataclasses.replace(snap, sketch=sk, heavy=heavy, spreaders={}, _groups=None)
