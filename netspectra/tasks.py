"""Sketch tasks as data: what the config file names, and how it lands in the kernel.

A task is a Count-Min (packets and bytes per key) or a SuperSpread (distinct
elements per key).  A SuperSpread task is a virtual HyperLogLog: one pool of
`width` one-byte registers shared by all keys, `registers` virtual registers
per key scattered over it; its depth is always 1.  layout() places the tasks of a configuration in the shared
sketch arrays and returns the ns_config record the XDP program reads, plus the
per-CPU array sizes that become -D flags.  The offline analyzer and the
Cython merge code use the same Layout, so kernel, live and offline arrays have
one shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from . import abi

COUNTMIN = "countmin"
SUPERSPREAD = "superspread"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # COUNTMIN or SUPERSPREAD
    key: tuple[str, ...]  # field names, see abi.FIELD_BITS
    element: tuple[str, ...] = ()  # SuperSpread only: what is counted distinct
    depth: int = 4  # Count-Min rows (SuperSpread: unused, laid out as 1)
    width: int = 65536  # Count-Min: counters per row; SuperSpread: pool registers M; a power of two
    registers: int = 64  # SuperSpread: virtual registers per key s, a power of two, 8 <= s < width
    seed: int = 0
    elem_seed: int = 0
    hh_packets: int = 0  # Count-Min: heavy-hitter threshold per epoch, 0 = off
    hh_bytes: int = 0
    spread_threshold: int = 0  # SuperSpread: distinct count reported as a spreader, 0 = off

    @property
    def fields(self) -> int:
        return abi.fields_from_names(self.key)

    @property
    def elem_fields(self) -> int:
        return abi.fields_from_names(self.element)


def spread_kind(spec: TaskSpec) -> str:
    """What a SuperSpread task's reported keys are, in words (singular)."""
    if "dst_port" in spec.element and "dst_ip" in spec.key:
        return "port scan"
    if "src_ip" in spec.key:
        return "super-spreader"
    return "fan-in victim" if "dst_ip" in spec.key else "spreader"


@dataclass(frozen=True)
class TaskLayout:
    index: int
    spec: TaskSpec
    offset: int  # first element in a CPU slice (counters or register blocks)
    size: int  # elements in a CPU slice

    @property
    def width_log2(self) -> int:
        return self.spec.width.bit_length() - 1

    @property
    def regs_log2(self) -> int:
        return self.spec.registers.bit_length() - 1


@dataclass(frozen=True)
class Layout:
    tasks: tuple[TaskLayout, ...]
    cm_cells: int  # struct ns_counter per CPU slice (NS_CM_CELLS)
    ss_blocks: int  # struct ns_regs per CPU slice (NS_SS_BLOCKS)
    config: np.ndarray = field(compare=False, repr=False)  # abi.CONFIG record

    def by_name(self, name: str) -> TaskLayout:
        for t in self.tasks:
            if t.spec.name == name:
                return t
        raise KeyError(name)

    def kind(self, kind: str) -> list[TaskLayout]:
        return [t for t in self.tasks if t.spec.kind == kind]


def specs_to_json(specs) -> list[dict]:
    """Task specs as plain JSON-able dicts (sketch files, epoch records)."""
    return [dataclasses.asdict(s) for s in specs]


def specs_from_json(items) -> tuple[TaskSpec, ...]:
    """The inverse of specs_to_json(); ValueError on anything else."""
    out = []
    try:
        for d in items:
            d = dict(d)
            d["key"] = tuple(d["key"])
            d["element"] = tuple(d.get("element", ()))
            out.append(TaskSpec(**d))
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f"not a list of task specs ({e})") from None
    return tuple(out)


def hh_per_cpu(threshold: int, ncpus: int) -> int:
    """Per-CPU candidate threshold: if a key reaches `threshold` over all CPUs,
    then by pigeonhole some CPU saw at least ceil(threshold / ncpus)."""
    if threshold <= 0:
        return 0
    return max(1, -(-threshold // ncpus))


def layout(specs: list[TaskSpec] | tuple[TaskSpec, ...], ncpus: int = 1) -> Layout:
    if len(specs) > abi.MAX_TASKS:
        raise ValueError(f"at most {abi.MAX_TASKS} sketch tasks, got {len(specs)}")
    cfg = np.zeros(1, dtype=abi.CONFIG)
    fieldsets: list[int] = []  # distinct NS_F_* sets, folded once per packet

    def fieldset(fields: int) -> int:
        if fields not in fieldsets:
            if len(fieldsets) == abi.MAX_FIELDSETS:
                raise ValueError(f"the tasks use more than {abi.MAX_FIELDSETS} distinct field sets (keys and elements)")
            fieldsets.append(fields)
            cfg[0]["fieldset_wmask"][len(fieldsets) - 1] = abi.field_wmask(fields)
        return fieldsets.index(fields)

    placed = []
    cm_cells = 0
    ss_blocks = 0
    for i, s in enumerate(specs):
        t = cfg[0]["tasks"][i]
        t["key_wmask"] = abi.field_wmask(s.fields)
        t["seed"] = s.seed
        t["depth"] = s.depth if s.kind == COUNTMIN else 1
        t["width_log2"] = s.width.bit_length() - 1
        t["fields"] = s.fields
        t["key_set"] = fieldset(s.fields)
        if s.kind == COUNTMIN:
            size = s.depth * s.width
            t["kind"] = abi.TASK_CM
            t["offset"] = cm_cells
            t["hh_packets"] = hh_per_cpu(s.hh_packets, ncpus)
            t["hh_bytes"] = hh_per_cpu(s.hh_bytes, ncpus)
            placed.append(TaskLayout(i, s, cm_cells, size))
            cm_cells += size
        elif s.kind == SUPERSPREAD:
            if s.width < abi.REGS_PER_BLOCK or not 8 <= s.registers < s.width:
                raise ValueError(
                    f"task {s.name}: superspread needs a pool of >= {abi.REGS_PER_BLOCK} registers (width) "
                    f"and 8 <= registers < width, got width {s.width}, registers {s.registers}"
                )
            size = s.width // abi.REGS_PER_BLOCK  # one pool of M = width registers
            t["kind"] = abi.TASK_SS
            t["elem_wmask"] = abi.field_wmask(s.elem_fields)
            t["elem_seed"] = s.elem_seed
            t["regs_log2"] = s.registers.bit_length() - 1
            t["elem_fields"] = s.elem_fields
            t["elem_set"] = fieldset(s.elem_fields)
            t["offset"] = ss_blocks
            placed.append(TaskLayout(i, s, ss_blocks, size))
            ss_blocks += size
        else:
            raise ValueError(f"task {s.name}: unknown kind {s.kind!r}")
    cfg[0]["nfieldsets"] = len(fieldsets)
    # BPF arrays need at least one element, and mmap at least one page.
    return Layout(tuple(placed), max(cm_cells, 256), max(ss_blocks, 512), cfg)


def flow_slots(capacity: int) -> int:
    """Slots of one CPU's flow table for `capacity` flows per epoch: the power
    of two at least twice the capacity, so the table is at most half full and
    the NS_FLOW_PROBES slots a flow may use are practically never all taken
    before `capacity` flows are in (0: no table)."""
    return 1 << (2 * capacity - 1).bit_length() if capacity > 0 else 0


@dataclass(frozen=True)
class Sizes:
    """The sizes that shape the kernel's maps (bcc -D flags)."""

    ncpus: int
    cm_cells: int
    ss_blocks: int
    flow_capacity: int  # flows one CPU's table takes per epoch; 0 = no table
    ringbuf_pages: int

    @property
    def flow_slots(self) -> int:
        return flow_slots(self.flow_capacity)

    def cflags(self) -> list[str]:
        return [
            f"-DNS_NCPUS={self.ncpus}",
            f"-DNS_CM_CELLS={self.cm_cells}",
            f"-DNS_SS_BLOCKS={self.ss_blocks}",
            f"-DNS_FLOW_CAP={self.flow_capacity}",
            f"-DNS_FLOW_SLOTS={self.flow_slots}",
            f"-DNS_RINGBUF_PAGES={self.ringbuf_pages}",
        ]

    def memory(self) -> dict[str, int]:
        """Kernel memory of the maps in bytes, by map (both sets, every CPU)."""
        per_cpu = abi.NSETS * self.ncpus
        return {
            "totals": per_cpu * abi.TOTALS.itemsize,
            "countmin": per_cpu * self.cm_cells * abi.COUNTER.itemsize,
            "superspread": per_cpu * self.ss_blocks * abi.REGS_PER_BLOCK,
            "flows": per_cpu * (self.flow_slots * abi.FLOW.itemsize + self.flow_capacity * 8),
            "seen": per_cpu * abi.SEEN_SLOTS * abi.SEEN.itemsize,
            "candidates": self.ringbuf_pages * PAGE_SIZE,
        }


PAGE_SIZE = 4096
