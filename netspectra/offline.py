"""Offline analysis of capture files: the live sensor's report, from pcap/pcapng.

    rep = analyze(["a.pcap", "b.pcapng"], config=None, epoch_s=5.0)
    rep.overall        # agent.EpochSnapshot over all files
    rep.epochs         # one EpochSnapshot per non-empty epoch of capture time
    rep.skipped        # {linktype: [packets, bytes]} of records not analysed
    rep.errors         # ["FILE: byte N: what is wrong"] of damaged files
    rep.files          # [{"path", "format", "packets", "bytes", "linktypes", ...}]

Every record is parsed by the XDP program's own parser (netspectra/bpf/parse.h, compiled
for userspace) and counted exactly as netspectra/bpf/sensor.c counts a frame: totals
slots and exact flows; the sketch tasks see each epoch's flows when it closes
(and, per packet, what the flow table could not hold), so the sketch arrays
are bit-identical to the kernel's for the same frames -- except that the byte
count is the record's original length (tshark's frame.len).  The epoch's
analysis is snapshot.derive(), as live.  The
per-packet path is Cython over the memory-mapped file (_pcap.pxi), without
the GIL and without a Python object per packet.  docs/offline.md describes
the formats, link types, epochs and every decision about damaged input.
"""

from __future__ import annotations

import mmap
import os
import socket
import stat
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from . import _sketch, abi, analysis, jsontext
from .config import Config, default_tasks
from .sketch import SketchSet
from .snapshot import EpochSnapshot, Origin, derive, layout_fingerprint
from .tasks import Layout
from .tasks import layout as make_layout

__all__ = ["OfflineError", "JsonReport", "Report", "analyze", "LINKTYPE_NAMES", "SUPPORTED_LINKTYPES"]

LINKTYPE_NAMES = {
    0: "NULL",
    1: "ETHERNET",
    12: "RAW (12)",
    14: "RAW (14)",
    101: "RAW",
    108: "LOOP",
    113: "LINUX_SLL",
    228: "IPV4",
    229: "IPV6",
    276: "LINUX_SLL2",
}
SUPPORTED_LINKTYPES = frozenset(LINKTYPE_NAMES)

_PCAP_MAGIC = {  # first 4 bytes, read little-endian -> (file byte order, fraction unit in ns)
    0xA1B2C3D4: ("<", 1000),
    0xD4C3B2A1: (">", 1000),
    0xA1B23C4D: ("<", 1),
    0x4D3CB2A1: (">", 1),
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D
_LT_RESERVED = 0x03FF0000  # libpcap LT_RESERVED1: must be zero
_LT_MASK = 0x03FFFFFF  # the link type proper (upper bits: FCS length)
_PROGRESS_CHUNK = 8 << 20  # bytes between progress updates
_HOST = "<" if sys.byteorder == "little" else ">"


class OfflineError(Exception):
    """A capture file that cannot be read at all; str() is one line naming the
    file and, where it applies, the byte offset."""


@dataclass
class Report:
    overall: EpochSnapshot
    epochs: list[EpochSnapshot] = field(default_factory=list)
    skipped: dict[int, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)

    def to_json(self, top: int | None = None) -> dict:
        """The `netspectra analyze --json` object (docs/offline.md), whole in
        memory (about 1.2 KB per flow); JsonReport writes the same text streamed."""
        return self._json(_snapshot_json(self.overall, top), [_snapshot_json(s, top) for s in self.epochs])

    def _json(self, overall, epochs) -> dict:
        return {
            "files": self.files,
            "overall": overall,
            "epochs": epochs,
            "skipped_linktypes": {str(k): {"packets": v[0], "bytes": v[1]} for k, v in sorted(self.skipped.items())},
            "errors": self.errors,
        }


def _snapshot_json(s: EpochSnapshot, top: int | None, streamed: bool = False) -> dict:
    d = s.to_json(max_flows=top, streamed=streamed)
    if top is not None:
        d.setdefault("flows_total", len(s.flows))
    return d


class JsonReport:
    """`netspectra analyze --json` written as it is formatted: exactly the text
    of json.dumps(Report.to_json(top)) (keep_epochs=True), with the flows
    formatted a batch at a time instead of a dict per flow held in memory.

    Each epoch's record is formatted as it closes (epoch(), an on_epoch
    callback) into an unnamed temporary file ($TMPDIR): it comes after
    `overall` in the document, and `overall` and `files` are known only at
    the end.  finish() writes the document and copies the epochs in."""

    def __init__(self, out: TextIO, top: int | None = None):
        self.out, self.top = out, top
        self.spool: TextIO | None = None
        self.first = True

    def epoch(self, snap: EpochSnapshot) -> None:
        if self.spool is None:
            self.spool = tempfile.TemporaryFile("w+", encoding="ascii")  # json.dumps text is ASCII
        if not self.first:
            self.spool.write(", ")
        self.first = False
        jsontext.write(_snapshot_json(snap, self.top, streamed=True), self.spool)
        self.spool.flush()  # a full $TMPDIR fails here, where the caller says so, not later in finish()

    def _epochs(self):
        yield "["
        if self.spool is not None:  # the records, already joined by ", "
            self.spool.seek(0)
            yield from iter(lambda: self.spool.read(1 << 20), "")
        yield "]"

    def finish(self, rep: Report) -> None:
        doc = rep._json(_snapshot_json(rep.overall, self.top, streamed=True), jsontext.Chunks(self._epochs()))
        jsontext.write(doc, self.out)
        self.out.write("\n")
        self.out.flush()
        self.close()

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None


class _Shrunk(Exception):
    """The mapped file shrank while it was read (e.g. logrotate's copytruncate)."""


class _Damage(Exception):
    def __init__(self, offset: int, what: str):
        super().__init__(what)
        self.offset = offset
        self.what = what


# ---------------------------------------------------------------- file headers


class _File:
    """An open, memory-mapped capture whose file header has been checked."""

    def __init__(self, path: str):
        self.path = path
        self.format = ""
        self.mm = None
        self.size = 0
        self.fd = -1  # kept open: a mapped file that shrinks is told by its size
        try:
            # O_NONBLOCK: opening a FIFO that no one writes must not wait for a writer
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            st = os.fstat(self.fd)
            if stat.S_ISFIFO(st.st_mode):  # a FIFO or a pipe (/dev/stdin): read it whole
                self.mm = _read_stream(self.fd, path)
                self.size = len(self.mm)
            elif not stat.S_ISREG(st.st_mode):
                raise OfflineError(f"{path}: {_KINDS.get(stat.S_IFMT(st.st_mode), 'not a regular file')}, not a capture file")  # fmt: skip
            else:
                self.size = st.st_size
                if self.size == 0:
                    raise OfflineError(f"{path}: byte 0: empty file, not a capture")
                self.mm = mmap.mmap(self.fd, 0, access=mmap.ACCESS_READ)
        except OSError as e:
            self.close()
            raise OfflineError(f"{path}: cannot read: {e.strerror or e}") from None
        except BaseException:
            self.close()
            raise
        try:
            self._open()
        except _Damage as d:
            self.close()
            raise OfflineError(f"{path}: byte {d.offset}: {d.what}") from None
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        mm = self.mm
        if self.size < 4:
            raise _Damage(0, f"not a pcap or pcapng file (only {self.size} bytes)")
        (magic,) = struct.unpack_from("<I", mm, 0)
        if magic in _PCAP_MAGIC:
            order, frac = _PCAP_MAGIC[magic]
            self.format = "pcap"
            if self.size < 24:
                raise _Damage(0, f"truncated pcap file header ({self.size} of 24 bytes)")
            major, minor, _, _, snaplen, lt = struct.unpack_from(order + "HHiIII", mm, 4)
            if major != 2:
                raise _Damage(4, f"unsupported pcap version {major}.{minor}")
            if lt & _LT_RESERVED:
                raise _Damage(20, f"link type field 0x{lt:08x} has reserved bits set (0x{lt & _LT_RESERVED:08x})")
            self.reader = _sketch.PcapReader(mm, False, order != _HOST, 24, frac)
            self.reader.add_iface(lt & _LT_MASK, snaplen)
        elif magic == _PCAPNG_SHB:
            self.format = "pcapng"
            self.reader = _sketch.PcapReader(mm, True, False, 0)
            self.section(0)
        else:
            raise _Damage(0, f"not a pcap or pcapng file (magic 0x{magic:08x})")

    def section(self, pos: int) -> None:
        """Read the pcapng section header block at pos: byte order, version."""
        mm, avail = self.mm, self.size - pos
        if avail < 12:
            raise _Damage(pos, f"truncated section header block ({avail} of 28 bytes)")
        (bom,) = struct.unpack_from("<I", mm, pos + 8)
        if bom == _PCAPNG_BOM:
            order = "<"
        elif bom == 0x4D3C2B1A:
            order = ">"
        else:
            raise _Damage(pos + 8, f"bad pcapng byte-order magic 0x{bom:08x}")
        (blen,) = struct.unpack_from(order + "I", mm, pos + 4)
        self._check_block(pos, blen, order, 28, "section header")
        major, minor = struct.unpack_from(order + "HH", mm, pos + 12)
        # libpcap and tshark read 1.0 and 1.2 (written by some old tools) only.
        if (major, minor) not in ((1, 0), (1, 2)):
            raise _Damage(pos + 12, f"unsupported pcapng version {major}.{minor}")
        for _ in _options(mm, pos + 24, pos + blen - 4, order):
            pass
        self.order = order
        self.reader.swap = order != _HOST
        self.reader.pos = pos + blen

    def interface(self, pos: int) -> None:
        """Read a pcapng interface description block: link type, snaplen,
        if_tsresol (option 9) and if_tsoffset (option 14)."""
        mm, order = self.mm, self.order
        (blen,) = struct.unpack_from(order + "I", mm, pos + 4)
        self._check_block(pos, blen, order, 20, "interface description")
        lt, _, snaplen = struct.unpack_from(order + "HHI", mm, pos + 8)
        mul, div, shift, offset_ns = 1000, 1, -1, 0  # default resolution: microseconds
        for code, off, ln in _options(mm, pos + 16, pos + blen - 4, order):
            if code == 9 and ln >= 1:
                v = mm[off]
                if v & 0x80:
                    shift = v & 0x7F
                    if shift > 63:
                        raise _Damage(off, f"unsupported if_tsresol 2^-{shift}")
                else:
                    if v > 19:
                        raise _Damage(off, f"unsupported if_tsresol 10^-{v}")
                    shift = -1
                    mul, div = (10 ** (9 - v), 1) if v <= 9 else (1, 10 ** (v - 9))
            elif code == 14 and ln >= 8:
                (secs,) = struct.unpack_from(order + "q", mm, off)
                offset_ns = secs * 1_000_000_000
                if not -(1 << 63) <= offset_ns < (1 << 63):
                    raise _Damage(off, f"if_tsoffset {secs} s out of range")
        self.reader.add_iface(lt, snaplen, mul, div, shift, offset_ns)
        self.reader.pos = pos + blen

    def _check_block(self, pos: int, blen: int, order: str, minimum: int, what: str) -> None:
        avail = self.size - pos
        if blen % 4 or blen < minimum:
            raise _Damage(pos + 4, f"bad {what} block length {blen}")
        if blen > avail:
            raise _Damage(pos, f"truncated {what} block ({avail} of {blen} bytes)")
        (trail,) = struct.unpack_from(order + "I", self.mm, pos + blen - 4)
        if trail != blen:
            raise _Damage(pos + blen - 4, f"{what} block length mismatch ({blen} at start, {trail} at end)")

    def shrunk(self) -> int | None:
        """The file's size now if it is smaller than when mapped (None if not,
        and always for a stream, read whole)."""
        if not isinstance(self.mm, mmap.mmap):
            return None
        now = os.fstat(self.fd).st_size
        return now if now < self.size else None

    def close(self) -> None:
        r = getattr(self, "reader", None)
        if r is not None:
            r.release()
        if isinstance(self.mm, mmap.mmap):
            try:
                self.mm.close()
            except BufferError:  # a view still alive: the GC closes it
                pass
        self.mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFSOCK: "a socket",
}
STREAM_MAX = 1 << 30  # what a pipe or FIFO may bring: it is held in memory


def _read_stream(fd: int, path: str) -> bytes:
    """Everything a pipe or FIFO brings until its writer closes it.  A FIFO
    that no one has opened for writing reads as end of file at once (fd is
    non-blocking): that is refused rather than waited for."""
    try:
        first = os.read(fd, 1 << 16)
    except BlockingIOError:  # a writer, no data yet
        first = None
    if first == b"":
        raise OfflineError(f"{path}: a FIFO or pipe with no writer (nothing to read)")
    os.set_blocking(fd, True)
    chunks, size = [first or b""], len(first or b"")
    while chunk := os.read(fd, 1 << 20):
        size += len(chunk)
        if size > STREAM_MAX:
            raise OfflineError(f"{path}: more than {STREAM_MAX >> 20} MiB from a pipe; save it to a file first")
        chunks.append(chunk)
    if not size:
        raise OfflineError(f"{path}: byte 0: empty stream, not a capture")
    return b"".join(chunks)


def _options(mm, off: int, end: int, order: str):
    """(code, value offset, length) of each option in [off, end)."""
    while off + 4 <= end:
        code, ln = struct.unpack_from(order + "HH", mm, off)
        if code == 0:
            return
        if off + 4 + ln > end:
            raise _Damage(off, f"option {code} of length {ln} overruns its block ({end - off - 4} bytes left)")
        yield code, off + 4, ln
        off += 4 + ((ln + 3) & ~3)


def _damage_text(code: int, a: int, b: int) -> str:
    S = _sketch
    if code == S.PCAP_E_TRUNC_HDR:
        return f"truncated record header ({a} of {b} bytes)"
    if code == S.PCAP_E_TRUNC_REC:
        return f"truncated record ({a} of {b} bytes)"
    if code == S.PCAP_E_BLOCK_LEN:
        return f"bad block length {a}"
    if code == S.PCAP_E_BLOCK_TRUNC:
        return f"truncated block ({a} of {b} bytes)"
    if code == S.PCAP_E_BLOCK_TRAILER:
        return f"block length mismatch ({a} at start, {b} at end)"
    if code == S.PCAP_E_BLOCK_SHORT:
        return f"packet block (type {a}) too short: {b} bytes"
    if code == S.PCAP_E_CAPLEN_BLOCK:
        return f"captured length {a} exceeds the block's {b} data bytes"
    if code == S.PCAP_E_IFACE:
        return f"packet of interface {a}, but the section defines {b}"
    return f"damage (code {code})"


# ---------------------------------------------------------------- progress


class _Progress:
    def __init__(self, total: int, out=None):
        self.total = max(total, 1)
        self.out = out or sys.stderr
        self.done = 0
        self.last = 0.0
        self.t0 = time.monotonic()

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        frac = min(done / self.total, 1.0)
        width = 30
        fill = int(frac * width)
        rate = done / max(now - self.t0, 1e-9) / 1e6
        self.out.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}%  {rate:7.1f} MB/s")
        self.out.flush()

    def close(self) -> None:
        self.update(self.done, force=True)
        self.out.write("\n")
        self.out.flush()


# ---------------------------------------------------------------- analysis


class _Run:
    def __init__(self, lay: Layout, epoch_ns: int, on_epoch, keep_epochs: bool, sensor_id: str | None = None):
        self.lay = lay
        self.epoch_ns = epoch_ns
        self.on_epoch = on_epoch
        self.keep = keep_epochs
        self.sk = SketchSet(lay)
        self.eng = _sketch.PcapEngine(lay.config, self.sk.cm, self.sk.ss, epoch_ns)
        self.overall_sk = SketchSet(lay) if epoch_ns else self.sk
        self.overall_totals = np.zeros((abi.NCOUNTERS, 2), dtype=np.uint64)
        self.epochs: list[EpochSnapshot] = []
        self.k = 0  # index of the current epoch
        self.lost = 0
        self.origin = Origin(
            sensor=socket.gethostname() if sensor_id is None else sensor_id, layout=layout_fingerprint(lay)
        )

    def cut(self) -> None:
        """Close the current epoch (if it counted anything) and start the one
        holding the pending record."""
        e = self.eng
        totals = e.take_totals()
        if totals[abi.C["all"], 0]:
            flows = e.current_flows(analysis.FLOW_RECORD)
            if totals[abi.C["flow_untracked"], 0]:  # records went to the arrays: they are the epoch's
                e.sketch_flows()
                sk = self.sk
                self.sk = SketchSet(self.lay)
                e.set_sketch(self.sk.cm, self.sk.ss)
            else:  # the arrays are untouched (still zero) and count the next epoch; the
                # epoch's sketch is its flows' (the same bits), derived only if read:
                # 20 MiB of arrays allocated and added per epoch cost ~3 ms
                sk = SketchSet.of_flows(self.lay, flows)
            start = (e.t0 + self.k * self.epoch_ns) / 1e9
            snap = derive(self.k, start, start + self.epoch_ns / 1e9, totals, flows, sk)
            snap.origin = self.origin
            self.overall_totals += totals
            self.overall_sk.merge(sk)
            self.lost += e.end_epoch()
            if self.on_epoch is not None:
                self.on_epoch(snap)
            if self.keep:
                self.epochs.append(snap)

    def next_epoch(self) -> None:
        e = self.eng
        self.cut()
        self.k = (e.pending_ts - e.t0) // self.epoch_ns
        e.epoch_end = e.t0 + (self.k + 1) * self.epoch_ns

    def finish(self) -> EpochSnapshot:
        e = self.eng
        rng = e.time_range
        start, end = (rng[0] / 1e9, rng[1] / 1e9) if rng else (0.0, 0.0)
        if self.epoch_ns:
            self.cut()
            flows = e.total_flows(analysis.FLOW_RECORD)
            totals = self.overall_totals
        else:
            e.sketch_flows()
            flows = e.current_flows(analysis.FLOW_RECORD)
            totals = e.take_totals()
        if self.lost:  # out of memory while merging epochs: never silent
            totals[abi.C["flow_untracked"], 0] += np.uint64(self.lost)
        snap = derive(0, start, end, totals, flows, self.overall_sk)
        snap.origin = self.origin
        return snap


def _layout(config: Config | None) -> Layout:
    # One "CPU": the thresholds in the config record are the totals.
    tasks = config.tasks if config is not None else default_tasks()
    return make_layout(tasks, 1)


def analyze(
    paths: list[str],
    config: Config | None = None,
    epoch_s: float | None = None,
    progress: bool = False,
    *,
    on_epoch: Callable[[EpochSnapshot], None] | None = None,
    keep_epochs: bool = True,
) -> Report:
    """Analyse capture files as one stream (in the order given).

    epoch_s: also cut the stream into epochs of capture time, epoch k
    covering [t0 + k*epoch_s, t0 + (k+1)*epoch_s) where t0 is the first
    counted packet's timestamp; only non-empty epochs are reported, each with
    seq = k.  on_epoch is called with each epoch's snapshot as it closes;
    keep_epochs=False does not keep them in Report.epochs (bounded memory on
    long captures).  progress: draw a progress bar on stderr.

    Raises OfflineError when a file cannot be read at all (checked for every
    file before any is analysed); damage after a file's header is reported in
    Report.errors and the records before it are counted.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if epoch_s is not None and not epoch_s > 0:
        raise ValueError(f"epoch_s must be > 0, got {epoch_s}")
    epoch_ns = int(round(epoch_s * 1e9)) if epoch_s else 0
    files: list[_File] = []
    try:
        for p in paths:
            files.append(_File(p))
        run = _Run(_layout(config), epoch_ns, on_epoch, keep_epochs, config.sensor.sensor_id if config else None)
        bar = _Progress(sum(f.size for f in files)) if progress else None
        rep = Report(overall=None)  # type: ignore[arg-type]
        base = 0
        for f in files:
            info = _read(f, run, rep, bar, base)
            rep.files.append(info)
            base += f.size
            f.close()
        rep.overall = run.finish()
        rep.epochs = run.epochs
        if bar:
            bar.close()
        return rep
    finally:
        for f in files:
            f.close()


def _read(f: _File, run: _Run, rep: Report, bar: _Progress | None, base: int) -> dict:
    S = _sketch
    r = f.reader
    lts: dict[int, list[int]] = {}

    def drop_ifaces():
        for lt, pk, by in r.take_ifaces():
            lts.setdefault(lt, [0, 0])
            if pk:
                slot = rep.skipped.setdefault(lt, [0, 0])
                slot[0] += pk
                slot[1] += by

    def chunk():
        r.yield_pos = r.pos + _PROGRESS_CHUNK if bar else f.size

    chunk()
    while True:
        try:
            rc = r.run(run.eng)
            if rc == S.PCAP_DONE:
                break
            if rc == S.PCAP_EPOCH:
                run.next_epoch()
            elif rc == S.PCAP_YIELD:
                bar.update(base + r.pos)
                chunk()
            elif rc == S.PCAP_SHRUNK:
                raise _Shrunk()
            elif rc == S.PCAP_BLOCK:
                if f.shrunk() is not None:  # its header is read in Python, where SIGBUS cannot be caught
                    raise _Shrunk()
                (btype,) = struct.unpack_from(f.order + "I", f.mm, r.pos)
                if btype == 1:
                    f.interface(r.pos)
                else:  # a new section: its own byte order and interfaces
                    drop_ifaces()
                    f.section(r.pos)
            else:
                code, off, a, b = r.error
                rep.errors.append(f"{f.path}: byte {off}: {_damage_text(code, a, b)}")
                break
        except _Damage as d:
            rep.errors.append(f"{f.path}: byte {d.offset}: {d.what}")
            break
        except _Shrunk:
            now = f.shrunk()
            rep.errors.append(
                f"{f.path}: byte {now if now is not None else f.size}: truncated while being read "
                f"({f.size} bytes when opened, {now} now; what was read before is counted)"
            )
            break
    drop_ifaces()
    if bar:
        bar.update(base + f.size)
    packets, nbytes, odd = r.counts
    info = {
        "path": f.path,
        "format": f.format,
        "packets": packets,
        "bytes": nbytes,
        "linktypes": sorted(lts),
    }
    if odd:
        info["orig_len_below_caplen"] = odd
    return info
