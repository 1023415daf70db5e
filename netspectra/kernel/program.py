"""Load the XDP program with bcc and give the agent its maps as numpy arrays.

This module and its siblings are the only code that touches bpf(2).  What it
offers the agent: flip() the active map set, then read the idle one (totals,
sketch arrays and exact flows) without a syscall per key.
"""

from __future__ import annotations

import ctypes as ct
import mmap
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import abi
from ..tasks import Layout
from . import libbpf

BPF_DIR = Path(__file__).resolve().parent.parent.parent / "bpf"
PAGE = mmap.PAGESIZE


class KernelError(Exception):
    """A one-line, user-facing reason why the kernel part cannot run."""


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """Number of possible CPUs (what per-CPU maps and bpf_get_smp_processor_id() span)."""
    text = Path(path).read_text().strip()
    hi = 0
    for part in text.split(","):
        hi = max(hi, int(part.split("-")[-1]))
    return hi + 1


def headers_dir(release: str | None = None, root: str = "/lib/modules") -> Path:
    return Path(root) / (release or platform.release()) / "build"


def check_headers(release: str | None = None, root: str = "/lib/modules") -> None:
    d = headers_dir(release, root)
    if not (d / "include").is_dir() and not Path("/sys/kernel/kheaders.tar.xz").exists():
        rel = release or platform.release()
        raise KernelError(
            f"kernel headers for {rel} not found ({d}): install linux-headers-{rel}, "
            "or run `make deps` to link the distribution's headers (XDP needs only UAPI headers)"
        )


def import_bcc():
    try:
        import bcc
    except ImportError as e:
        raise KernelError(
            "the bcc Python module is not importable: install python3-bpfcc and run `make venv` "
            f"(the venv links /usr/lib/python3/dist-packages/bcc) ({e})"
        ) from None
    return bcc


def _mmap_array(fd: int, dtype: np.dtype, shape: tuple[int, ...]) -> tuple[mmap.mmap, np.ndarray]:
    n = int(np.prod(shape))
    size = -(-n * dtype.itemsize // PAGE) * PAGE
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    arr = np.frombuffer(m, dtype=dtype, count=n).reshape(shape)
    return m, arr


@dataclass(frozen=True)
class Sizes:
    ncpus: int
    cm_cells: int
    ss_blocks: int
    flow_capacity: int
    ringbuf_pages: int

    def cflags(self) -> list[str]:
        return [
            f"-DNS_NCPUS={self.ncpus}",
            f"-DNS_CM_CELLS={self.cm_cells}",
            f"-DNS_SS_BLOCKS={self.ss_blocks}",
            f"-DNS_FLOW_CAPACITY={self.flow_capacity}",
            f"-DNS_RINGBUF_PAGES={self.ringbuf_pages}",
        ]

    def memory(self) -> dict[str, int]:
        """Kernel memory of the maps, in bytes (flows: preallocated entries)."""
        flow_entry = abi.KEY.itemsize + abi.FLOW.itemsize * self.ncpus + 64  # + htab_elem overhead
        return {
            "totals": abi.NSETS * self.ncpus * abi.TOTALS.itemsize,
            "countmin": abi.NSETS * self.ncpus * self.cm_cells * abi.COUNTER.itemsize,
            "superspread": abi.NSETS * self.ncpus * self.ss_blocks * abi.REGS_PER_BLOCK,
            "flows": abi.NSETS * self.flow_capacity * flow_entry,
            "candidates": self.ringbuf_pages * PAGE,
        }


class Program:
    """The compiled and loaded sensor program and views of its maps."""

    def __init__(
        self,
        layout: Layout,
        flow_capacity: int,
        ringbuf_pages: int,
        ncpus: int | None = None,
        coarse_clock: bool = False,
    ):
        check_headers()
        bcc = import_bcc()
        self.layout = layout
        self.sizes = Sizes(ncpus or possible_cpus(), layout.cm_cells, layout.ss_blocks, flow_capacity, ringbuf_pages)
        cflags = [f"-I{BPF_DIR}", *self.sizes.cflags(), *(["-DNS_COARSE_CLOCK"] if coarse_clock else [])]
        try:
            self.bpf = bcc.BPF(src_file=str(BPF_DIR / "sensor.c").encode(), cflags=cflags)
            self.fn = self.bpf.load_func(b"ns_xdp", bcc.BPF.XDP)
        except Exception as e:  # bcc raises bare Exception with its own text
            raise KernelError(f"cannot compile or load bpf/sensor.c: {str(e).splitlines()[0]}") from None
        self.prog_fd = self.fn.fd
        s = self.sizes
        self._mm = []
        self._ctl = self._map("ns_ctl", abi.CTL, (1,))
        self.totals = self._map("ns_totals", abi.TOTALS, (abi.NSETS, s.ncpus))
        self.cm = self._map("ns_cm", abi.COUNTER, (abi.NSETS, s.ncpus, s.cm_cells))
        self.ss = self._map("ns_ss", np.dtype(np.uint8), (abi.NSETS, s.ncpus, s.ss_blocks * abi.REGS_PER_BLOCK))
        self.flow_fds = (self.bpf[b"ns_flows0"].map_fd, self.bpf[b"ns_flows1"].map_fd)
        self._write_config()
        self._barrier_fd = self.bpf[b"ns_barrier"].map_fd
        self._barrier_inner = ct.c_uint32(self.bpf[b"ns_barrier_inner"].map_fd)
        # Drain buffers, allocated once: agent memory does not grow with traffic.
        self._fkeys = np.zeros(flow_capacity, dtype=abi.KEY)
        self._fvals = np.zeros((flow_capacity, s.ncpus), dtype=abi.FLOW)
        self._cands: list[bytes] = []
        self.bpf[b"ns_cand"].open_ring_buffer(self._on_cand)

    def _map(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        m, arr = _mmap_array(self.bpf[name.encode()].map_fd, dtype, shape)
        self._mm.append(m)
        return arr

    def _write_config(self) -> None:
        raw = self.layout.config.tobytes()
        key = ct.c_uint32(0)
        val = ct.create_string_buffer(raw, len(raw))
        libbpf.map_update(self.bpf[b"ns_cfg"].map_fd, key, val)

    def _on_cand(self, ctx, data, size) -> int:
        self._cands.append(ct.string_at(data, size))
        return 0

    # -- epoch flip ------------------------------------------------------
    @property
    def active(self) -> int:
        return int(self._ctl["active"][0])

    def barrier(self) -> None:
        """Return once no program that started before this call still runs.
        Updating an array-of-maps waits for an RCU grace period (the XDP hook
        runs under RCU), which is the guarantee we need and nothing more."""
        libbpf.map_update(self._barrier_fd, ct.c_uint32(0), self._barrier_inner)

    def flip(self) -> int:
        """Switch programs to the other map set; return the now-idle set,
        which no program writes any more."""
        old = self.active
        self._ctl["active"][0] = 1 - old
        self.barrier()
        return old

    # -- reading the idle set --------------------------------------------
    def take_totals(self, s: int) -> np.ndarray:
        """(NCOUNTERS, 2) uint64 packets/bytes summed over CPUs; zeroes the set."""
        raw = self.totals[s].view(np.uint64).reshape(self.sizes.ncpus, abi.NCOUNTERS, 2)
        out = raw.sum(axis=0, dtype=np.uint64)
        raw.fill(0)
        return out

    def take_flows(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Drain set s's flow table: (keys, per-CPU values), views of buffers
        that the next take_flows() overwrites."""
        n = libbpf.lookup_and_delete_batch(self.flow_fds[s], self._fkeys, self._fvals, batch=8192)
        return self._fkeys[:n], self._fvals[:n]

    def poll(self) -> None:
        """Move waiting candidate reports out of the ring buffer."""
        self.bpf.ring_buffer_consume()

    def take_candidates(self, s: int) -> np.ndarray:
        self.bpf.ring_buffer_consume()
        mine = [c for c in self._cands if int.from_bytes(c[4:8], "little") == s]
        self._cands = [c for c in self._cands if int.from_bytes(c[4:8], "little") != s]
        return np.frombuffer(b"".join(mine), dtype=abi.CAND)

    def close(self) -> None:
        for m in self._mm:
            try:
                m.close()
            except BufferError:
                pass  # a numpy view still refers to it; freed with the view
        self._mm.clear()
        self.bpf.cleanup()
