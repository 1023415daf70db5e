"""Public sketch API: one SketchSet holds every task of a Layout.

A SketchSet is the userspace twin of one CPU slice of the kernel's ns_cm and
ns_ss arrays (same shape, same bits): `cm` is an abi.COUNTER array of
layout.cm_cells counters and `ss` a uint8 array of layout.ss_blocks * 8
registers.  Sketches built here, by the XDP program (after the per-CPU merge)
or by the offline analyzer merge exactly: Count-Min by addition, SuperSpread
registers by max.

    sk = SketchSet(lay)
    sk.update(keys, lengths)                  # full 5-tuples, frame lengths
    pk, by = sk.query("top_src", keys)        # Count-Min estimates
    est = sk.spread("scanners", keys)         # distinct elements per key (noise-corrected)
    raw = sk.spread("scanners", keys, corrected=False)  # raw HLL of the key's virtual registers
    hh = sk.verify("top_src", candidate_keys) # heavy hitters of the epoch

Per-CPU kernel slices: SketchSet.from_percpu(lay, cm_percpu, ss_percpu) sums /
maxes the (ncpus, ...) arrays in Cython without the GIL; clear=True zeroes
the per-CPU arrays in the same pass (for the idle map set before it becomes
active again).  Otherwise clear them with ndarray.fill(0).
"""

from __future__ import annotations

import json
import math
import threading
from typing import NamedTuple

import numpy as np

from . import _sketch, abi
from .tasks import COUNTMIN, SUPERSPREAD, Layout, TaskLayout, specs_from_json, specs_to_json
from .tasks import layout as make_layout

FORMAT_VERSION = 1


class HeavyHitters(NamedTuple):
    keys: np.ndarray  # abi.KEY, masked to the task's key fields, unique
    packets: np.ndarray  # uint64 Count-Min estimates
    bytes: np.ndarray  # uint64

    @classmethod
    def unranked(cls, keys: np.ndarray) -> HeavyHitters:
        """Candidate keys with no counts yet: an underived record's (derive() verifies them)."""
        return cls(keys, np.zeros(len(keys), np.uint64), np.zeros(len(keys), np.uint64))


def task_params(lay: Layout, t: TaskLayout) -> dict:
    """Keyword parameters of the _sketch / _sketch_ref functions for a task,
    taken from the ns_config record the kernel reads (so both use the same)."""
    row = lay.config[0]["tasks"][t.index]
    p = {
        "key_wmask": tuple(int(w) for w in row["key_wmask"]),
        "seed": int(row["seed"]),
        "depth": int(row["depth"]),
        "width_log2": int(row["width_log2"]),
        "offset": int(row["offset"]),
    }
    if t.spec.kind == SUPERSPREAD:
        p["elem_wmask"] = tuple(int(w) for w in row["elem_wmask"])
        p["elem_seed"] = int(row["elem_seed"])
        p["regs_log2"] = int(row["regs_log2"])
    return p


def _ss_query_params(p: dict) -> dict:
    return {k: v for k, v in p.items() if k not in ("elem_wmask", "elem_seed")}


class SketchSet:
    """The Count-Min counters and SuperSpread registers of every task of a layout.

    A sketch made by of_flows() holds its flows until its arrays are first
    read (cm, ss, any query): an epoch whose answers all come from its exact
    flows never pays for the arrays (20 MiB with the default tasks)."""

    def __init__(self, layout: Layout, cm: np.ndarray | None = None, ss: np.ndarray | None = None):
        self.layout = layout
        nregs = layout.ss_blocks * abi.REGS_PER_BLOCK
        if cm is None:
            cm = np.zeros(layout.cm_cells, dtype=abi.COUNTER)
        if ss is None:
            ss = np.zeros(nregs, dtype=np.uint8)
        if cm.dtype != abi.COUNTER or cm.shape != (layout.cm_cells,):
            raise ValueError(f"cm must be abi.COUNTER ({layout.cm_cells},), got {cm.dtype} {cm.shape}")
        if ss.dtype != np.uint8 or ss.shape != (nregs,):
            raise ValueError(f"ss must be uint8 ({nregs},), got {ss.dtype} {ss.shape}")
        self._cm = cm
        self._ss = ss
        self._flows: np.ndarray | None = None  # of_flows(): not yet in the arrays
        self._lock = threading.Lock()
        self._params = {t.spec.name: task_params(layout, t) for t in layout.tasks}

    # ------------------------------------------------------------ building

    @classmethod
    def of_flows(cls, layout: Layout, flows: np.ndarray) -> SketchSet:
        """The sketch of flows (analysis.FLOW_RECORD), computed when its arrays
        are first read (add_flows(), bit for bit the per-packet arrays)."""
        sk = cls.__new__(cls)
        sk.layout = layout
        sk._cm = sk._ss = None
        sk._flows = flows
        sk._lock = threading.Lock()
        sk._params = {t.spec.name: task_params(layout, t) for t in layout.tasks}
        return sk

    @property
    def derived(self) -> bool:
        """Whether the arrays exist (False: an of_flows() sketch nobody read yet)."""
        return self._flows is None

    def _derive(self) -> None:
        with self._lock:
            if self._flows is None:
                return
            self._cm = np.zeros(self.layout.cm_cells, dtype=abi.COUNTER)
            self._ss = np.zeros(self.layout.ss_blocks * abi.REGS_PER_BLOCK, dtype=np.uint8)
            _sketch.sketch_flows(self.layout.config, self._cm, self._ss, self._flows)
            self._flows = None

    @property
    def cm(self) -> np.ndarray:
        if self._flows is not None:
            self._derive()
        return self._cm

    @property
    def ss(self) -> np.ndarray:
        if self._flows is not None:
            self._derive()
        return self._ss

    @classmethod
    def from_percpu(
        cls, layout: Layout, cm_percpu: np.ndarray, ss_percpu: np.ndarray, clear: bool = False
    ) -> SketchSet:
        """Merge per-CPU slices: cm_percpu is (ncpus, cm_cells) abi.COUNTER (or
        anything C-contiguous that views as (ncpus, 2 * cm_cells) uint64),
        ss_percpu is (ncpus, ss_blocks * 8) uint8 (or (ncpus, ss_blocks) of
        8-byte blocks).  Count-Min counters are summed, registers maxed.
        clear=True zeroes both per-CPU arrays in the same pass."""
        sk = cls(layout)
        _sketch.merge_sum_u64(cm_percpu, out=sk.cm, clear=clear)
        _sketch.merge_max_u8(ss_percpu, out=sk.ss, clear=clear)
        return sk

    def add_flows(self, flows: np.ndarray) -> None:
        """Count flows (analysis.FLOW_RECORD: 5-tuple, packets, bytes) into
        every task at once: bit for bit what counting their packets one by
        one gives (Count-Min adds each flow's totals, a SuperSpread register
        sees each distinct key/element pair)."""
        _sketch.sketch_flows(self.layout.config, self.cm, self.ss, flows)

    def update(self, keys: np.ndarray, lengths) -> None:
        """Count packets into every task: keys are full abi.KEY 5-tuples (each
        task's hash applies its own field masks), lengths their byte counts."""
        keys = np.ascontiguousarray(keys, dtype=abi.KEY).reshape(-1)
        lengths = np.ascontiguousarray(np.broadcast_to(np.asarray(lengths, dtype=np.uint64), keys.shape))
        for t in self.layout.tasks:
            p = self._params[t.spec.name]
            if t.spec.kind == COUNTMIN:
                _sketch.cm_update(self.cm, keys, lengths, **p)
            else:
                _sketch.ss_update(self.ss, keys, **p)

    def merge(self, other: SketchSet) -> SketchSet:
        """In place: add other's counters, max its registers.  Returns self.
        An underived of_flows() sketch adds its flows (the same bits) and
        stays underived."""
        if other.layout != self.layout:
            raise ValueError("cannot merge sketches of different layouts")
        flows = other._flows
        if flows is not None:
            self.add_flows(flows)
            return self
        cm = self.cm.view(np.uint64)
        np.add(cm, other.cm.view(np.uint64), out=cm)
        np.maximum(self.ss, other.ss, out=self.ss)
        return self

    def copy(self) -> SketchSet:
        flows = self._flows
        if flows is not None:  # still underived: so is the copy
            return SketchSet.of_flows(self.layout, flows)
        return SketchSet(self.layout, self.cm.copy(), self.ss.copy())

    def clear(self) -> None:
        self.cm.fill(0)
        self.ss.fill(0)

    # ------------------------------------------------------------ queries

    def _task(self, name: str, kind: str) -> tuple[TaskLayout, dict]:
        t = self.layout.by_name(name)
        if t.spec.kind != kind:
            raise ValueError(f"task {name!r} is a {t.spec.kind}, not a {kind}")
        return t, self._params[name]

    def query(self, name: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Count-Min (packets, bytes) estimates of keys (uint64 arrays); never below the truth."""
        _, p = self._task(name, COUNTMIN)
        return _sketch.cm_query(self.cm, keys, **p)

    def spread(self, name: str, keys: np.ndarray, corrected: bool = True, pool: float | None = None) -> np.ndarray:
        """SuperSpread distinct-element estimates of keys (float64).

        A SuperSpread task is a virtual HyperLogLog: one pool of M = width
        registers shared by all keys; each key owns s = registers virtual
        registers scattered over the pool, and a packet raises one of them.
        E_s is the HyperLogLog estimate over the key's s registers, E_M the
        estimate over the whole pool (every key's elements).

        corrected=True (default): n = (M * s / (M - s)) * (E_s / s - E_M / M),
        clamped at 0.  Each register also holds about E_M / M elements of the
        other keys; this removes that share.  Error: the HLL error of the key
        (about 1.04 / sqrt(s)) plus the random share of other keys in its
        registers, which grows with E_M * s / M; a larger pool lowers it.

        corrected=False: E_s alone.  Never much below the truth, but every key
        looks at least as large as the noise in its registers.

        pool: E_M from pool_estimate(name) of these registers, for repeated
        point queries (E_M is otherwise computed over the whole pool per call)."""
        _, p = self._task(name, SUPERSPREAD)
        return _sketch.ss_estimate(self.ss, keys, correct=corrected, pool=pool, **_ss_query_params(p))

    def pool_estimate(self, name: str) -> float:
        """E_M: the HyperLogLog estimate of a SuperSpread task's whole pool."""
        _, p = self._task(name, SUPERSPREAD)
        return _sketch.ss_pool_estimate(self.ss, width_log2=p["width_log2"], offset=p["offset"])

    def total(self, name: str) -> tuple[int, int]:
        """(packets, bytes) counted by a Count-Min task: the sum of its first row."""
        t, p = self._task(name, COUNTMIN)
        row = self.cm[p["offset"] : p["offset"] + t.spec.width]
        return int(row["packets"].sum(dtype=np.uint64)), int(row["bytes"].sum(dtype=np.uint64))

    def error_bound(self, name: str, bytes: bool = False) -> float:
        """e / width * N: with probability >= 1 - e**-depth an estimate exceeds
        the true count by at most this (N = packets, or bytes, counted by the task)."""
        t, _ = self._task(name, COUNTMIN)
        n = self.total(name)[1 if bytes else 0]
        return math.e / t.spec.width * n

    def verify(self, name: str, cand_keys: np.ndarray) -> HeavyHitters:
        """The unique candidates whose merged estimate reaches the task's total
        thresholds (spec.hh_packets or spec.hh_bytes; 0 = unused)."""
        t, p = self._task(name, COUNTMIN)
        keys, pk, by = _sketch.verify_candidates(
            self.cm, cand_keys, hh_packets=t.spec.hh_packets, hh_bytes=t.spec.hh_bytes, **p
        )
        return HeavyHitters(keys, pk, by)

    # ------------------------------------------------------------ files

    def save(self, path) -> None:
        """Write an .npz: cm, ss and the task specs as JSON (no pickles)."""
        meta = {
            "format": FORMAT_VERSION,
            "abi": abi.ABI_VERSION,
            "cm_cells": self.layout.cm_cells,
            "ss_blocks": self.layout.ss_blocks,
            "tasks": specs_to_json(t.spec for t in self.layout.tasks),
        }
        with open(path, "wb") as f:
            np.savez(f, cm=self.cm, ss=self.ss, meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path) -> SketchSet:
        with np.load(path, allow_pickle=False) as z:
            try:
                meta = json.loads(str(z["meta"]))
                cm = z["cm"]
                ss = z["ss"]
            except KeyError as e:
                raise ValueError(f"{path}: not a netspectra sketch file (missing {e})") from None
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported sketch file format {meta.get('format')!r}")
        lay = make_layout(specs_from_json(meta["tasks"]))
        if (lay.cm_cells, lay.ss_blocks) != (meta["cm_cells"], meta["ss_blocks"]):
            raise ValueError(f"{path}: array sizes do not match the task specs")
        return cls(lay, np.ascontiguousarray(cm, dtype=abi.COUNTER), np.ascontiguousarray(ss, dtype=np.uint8))
