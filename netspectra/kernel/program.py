"""Load the XDP program with bcc and give the agent its maps as numpy arrays.

This module and its siblings are the only code that touches bpf(2).  What it
offers the agent: flip() the active map set, then read the idle one (totals,
sketch arrays and exact flows) without a syscall per key.
"""

from __future__ import annotations

import ctypes as ct
import importlib
import mmap
import platform
import sys
import threading
from importlib import resources
from pathlib import Path

import numpy as np

from .. import _sketch, abi
from ..analysis import FLOW_RECORD
from ..sketch import SketchSet
from ..tasks import Layout, Sizes
from . import libbpf

# The BPF C sources are package data (netspectra/bpf), so an installed wheel
# carries them; bcc compiles them from the file system at start.
BPF_DIR = Path(str(resources.files("netspectra") / "bpf"))

# Where distributions install bcc's Python module (pure Python over ctypes and
# libbcc.so, so any CPython 3 can import it): Debian/Ubuntu, then Fedora/RHEL/Arch.
_minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
BCC_PATHS = (
    "/usr/lib/python3/dist-packages",
    f"/usr/lib/{_minor}/site-packages",
    f"/usr/lib64/{_minor}/site-packages",
    f"/usr/local/lib/{_minor}/dist-packages",
)
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
            f"kernel headers for {rel} not found in {d}: install linux-headers-{rel} "
            f"(Debian/Ubuntu; kernel-devel-{rel} on Fedora), or see docs/install.md for a kernel without packaged headers"
        )


def check_sources(d: Path = BPF_DIR) -> None:
    if not (d / "sensor.c").is_file():
        raise KernelError(f"netspectra's BPF sources are missing ({d / 'sensor.c'}): reinstall netspectra")


def import_bcc(paths: tuple[str, ...] = BCC_PATHS):
    """bcc's Python module: the one importable here, else the distribution's.
    Only a directory that holds bcc is added, at the END of sys.path, so it
    never shadows what this environment installed."""
    try:
        return importlib.import_module("bcc")
    except ImportError:
        pass
    for d in paths:
        if (Path(d) / "bcc" / "__init__.py").is_file():
            if d not in sys.path:
                sys.path.append(d)
            break
    try:
        return importlib.import_module("bcc")
    except ImportError:
        raise KernelError(
            "bcc's Python module not found: install the distribution's package "
            "(python3-bpfcc on Debian/Ubuntu, python3-bcc on Fedora)"
        ) from None
    except OSError as e:  # the module is there, libbcc.so is not
        raise KernelError(
            f"bcc's library cannot be loaded ({e}): install python3-bpfcc (python3-bcc on Fedora)"
        ) from None


def _mmap_array(fd: int, dtype: np.dtype, shape: tuple[int, ...]) -> tuple[mmap.mmap, np.ndarray]:
    n = int(np.prod(shape))
    size = -(-n * dtype.itemsize // PAGE) * PAGE
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    arr = np.frombuffer(m, dtype=dtype, count=n).reshape(shape)
    return m, arr


class Program:
    """The compiled and loaded sensor program and views of its maps.

    flow_capacity: flows one CPU's table takes per epoch (0: no flow table,
    every packet goes to the sketches).  timestamps: "millisecond" (the
    program reads a clock this object advances every millisecond while
    start_clock() runs it, and the kernel clock otherwise), "precise" or
    "coarse" (netspectra.h: NS_TS_*).
    every_packet: every IP packet updates the sketch tasks, not only the
    packets the flow table cannot hold."""

    TIMESTAMPS = {"millisecond": abi.TS_MS, "precise": abi.TS_PRECISE, "coarse": abi.TS_COARSE}

    def __init__(
        self,
        layout: Layout,
        flow_capacity: int,
        ringbuf_pages: int,
        ncpus: int | None = None,
        timestamps: str = "millisecond",
        every_packet: bool = False,
    ):
        check_sources()
        check_headers()
        bcc = import_bcc()
        self.layout = layout
        self.every_packet = every_packet
        self.timestamps = timestamps
        self.sizes = Sizes(ncpus or possible_cpus(), layout.cm_cells, layout.ss_blocks, flow_capacity, ringbuf_pages)
        cflags = [f"-I{BPF_DIR}", *self.sizes.cflags(), f"-DNS_TIMESTAMPS={self.TIMESTAMPS[timestamps]}"]
        if every_packet:
            cflags.append("-DNS_SKETCH_EVERY_PACKET")
        try:
            self.bpf = bcc.BPF(src_file=str(BPF_DIR / "sensor.c").encode(), cflags=cflags)
            self.fn = self.bpf.load_func(b"ns_xdp", bcc.BPF.XDP)
        except Exception as e:  # bcc raises bare Exception with its own text
            raise KernelError(f"cannot compile or load {BPF_DIR / 'sensor.c'}: {str(e).splitlines()[0]}") from None
        self.prog_fd = self.fn.fd
        s = self.sizes
        self._mm = []
        self._ctl = self._map("ns_ctl", abi.CTL, (1,))
        self._ctl_words = self._ctl.view(np.uint32).reshape(-1)
        self.totals = self._map("ns_totals", abi.TOTALS, (abi.NSETS, s.ncpus))
        self.cm = self._map("ns_cm", abi.COUNTER, (abi.NSETS, s.ncpus, s.cm_cells))
        self.ss = self._map("ns_ss", np.dtype(np.uint8), (abi.NSETS, s.ncpus, s.ss_blocks * abi.REGS_PER_BLOCK))
        if s.flow_capacity:
            self.flows = self._map("ns_flows", abi.FLOW, (abi.NSETS, s.ncpus, s.flow_slots))
            self.fidx = self._map("ns_fidx", np.dtype(np.uint64), (abi.NSETS, s.ncpus, s.flow_capacity))
        else:
            self.flows = self.fidx = None
        # Set 0 is active at generation 1; every flip gives the set it
        # activates the next generation, so its old slots are free.
        self._gen = 1
        _sketch.ctl_flip(self._ctl_words, 0, self._gen)
        self._write_config()
        self._barrier_fd = self.bpf[b"ns_barrier"].map_fd
        self._barrier_inner = ct.c_uint32(self.bpf[b"ns_barrier_inner"].map_fd)
        self._cands: list[bytes] = []
        self.bpf[b"ns_cand"].open_ring_buffer(self._on_cand)
        self._clock = None

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

    # -- the millisecond clock --------------------------------------------
    @property
    def clock_running(self) -> bool:
        return self._clock is not None

    def start_clock(self, period_ns: int = 1_000_000) -> None:
        """Advance ns_ctl.clock_ns (CLOCK_MONOTONIC) every period_ns from a
        thread that runs without the GIL; flow timestamps read it for free.
        Where it is not running or falls behind (this process stopped or
        starved), the program reads the kernel clock itself (NS_CLOCK_LATE_NS).
        Only for timestamps="millisecond"."""
        if self.timestamps != "millisecond":
            return
        if self._clock is not None:
            return
        stop = np.zeros(1, np.uint8)
        word = self._ctl["clock_ns"].reshape(-1).view(np.uint64)
        t = threading.Thread(
            target=_sketch.run_clock, args=(word, stop, period_ns), name="netspectra-clock", daemon=True
        )
        t.start()
        self._clock = (t, stop)

    def stop_clock(self) -> None:
        if self._clock is not None:
            t, stop = self._clock
            stop[0] = 1
            t.join()
            self._clock = None

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
        """Switch programs to the other map set (its flow table emptied by a
        new generation); return the now-idle set, which no program writes
        any more."""
        old = self.active
        self._gen = self._gen % 0xFFFFFFFF + 1  # never 0: a slot nobody claimed has generation 0
        _sketch.ctl_flip(self._ctl_words, 1 - old, self._gen)
        self.barrier()
        return old

    # -- reading the idle set --------------------------------------------
    def take_totals(self, s: int) -> np.ndarray:
        """(NCOUNTERS, 2) uint64 packets/bytes summed over CPUs; zeroes them."""
        raw = self.totals[s]["c"].view(np.uint64).reshape(self.sizes.ncpus, abi.NCOUNTERS, 2)
        out = raw.sum(axis=0, dtype=np.uint64)
        raw.fill(0)
        return out

    def table_fill(self, s: int) -> float:
        """Set s's fullest per-CPU flow table: its flows / flow_capacity."""
        if not self.sizes.flow_capacity:
            return 0.0
        return int(self.totals[s]["flows"].max()) / self.sizes.flow_capacity

    def take_flows(self, s: int, mono_to_wall_ns: int = 0) -> np.ndarray:
        """The exact flows of set s (analysis.FLOW_RECORD, merged over CPUs,
        times shifted by mono_to_wall_ns); empties the set's table."""
        counts = self.totals[s]["flows"]
        if self.flows is None:
            return np.zeros(0, FLOW_RECORD)
        out = _sketch.flows_take(self.flows[s], self.fidx[s], counts, FLOW_RECORD, mono_to_wall_ns)
        counts.fill(0)
        return out

    def take_sketch(self, s: int, sk: SketchSet, untracked: int) -> bool:
        """Add set s's sketch arrays, merged over CPUs, to sk and zero them.
        With the sketch tasks updated only for untracked packets, nothing was
        written when none was untracked: then nothing is read (returns False)."""
        if not self.every_packet and not untracked:
            return False
        _sketch.merge_sum_u64(self.cm[s], out=sk.cm, clear=True, add=True)
        _sketch.merge_max_u8(self.ss[s], out=sk.ss, clear=True, add=True)
        return True

    def poll(self) -> None:
        """Move waiting candidate reports out of the ring buffer."""
        self.bpf.ring_buffer_consume()

    def take_candidates(self, s: int) -> np.ndarray:
        self.bpf.ring_buffer_consume()
        mine = [c for c in self._cands if int.from_bytes(c[4:8], "little") == s]
        self._cands = [c for c in self._cands if int.from_bytes(c[4:8], "little") != s]
        return np.frombuffer(b"".join(mine), dtype=abi.CAND)

    def close(self) -> None:
        self.stop_clock()
        for m in self._mm:
            try:
                m.close()
            except BufferError:
                pass  # a numpy view still refers to it; freed with the view
        self._mm.clear()
        self.bpf.cleanup()
