"""An EpochSnapshot to bytes and back (proto/netspectra/v1/epoch.proto).

    data = encode(snap)          # bytes: an EpochRecord
    snap = decode(data)          # an EpochSnapshot that answers like the original

The record holds what the epoch cannot be derived from: origin, time range,
totals, exact flows (one compressed column per field), the task specs, and
-- only when some packet was untracked -- the sketch arrays.  An exact epoch's
sketch is the sketch of its flows, so it is not stored (20 MiB of arrays with
the default tasks, against a few MiB of compressed flows at 100,000 flows);
the decoded epoch derives it on first use, bit for bit the same.  Heavy
hitters and spreaders are derived again on decode (snapshot.derive), with the
reported heavy-hitter keys as candidates, so an estimated epoch keeps the keys
the kernel reported for its untracked packets.

Versioned: a record of a newer VERSION than this reader is refused, as is
anything that is not a record; every error is a one-line ValueError.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import zstandard
from google.protobuf.message import DecodeError

from . import abi, analysis
from .api.v1 import epoch_pb2 as pb
from .sketch import HeavyHitters, SketchSet
from .snapshot import EpochSnapshot, Origin, derive, layout_fingerprint
from .tasks import layout, specs_from_json, specs_to_json

VERSION = 1
LEVEL = 3  # zstd level: ~500 MB/s here, within a few % of the ratio of level 9
_FLOW_FIELDS = ("packets", "bytes", "first_ns", "last_ns", "tcp_flags", "icmp_type", "icmp_code")


class CodecError(ValueError):
    """Bytes that are not an epoch record this reader can read."""


def encode(snap: EpochSnapshot, compression: str = "zstd") -> bytes:
    if compression not in ("zstd", "none"):
        raise ValueError(f"compression must be zstd or none, got {compression!r}")
    cctx = zstandard.ZstdCompressor(level=LEVEL) if compression == "zstd" else None
    rec = pb.EpochRecord(
        version=VERSION,
        compression=compression,
        origin=pb.EpochOrigin(**vars(snap.origin)),
        seq=snap.seq,
        start=snap.start,
        end=snap.end,
        exact=snap.exact,
        table_fill=snap.table_fill,
        candidates=snap.candidates,
        processing_s=snap.processing_s,
        tasks_json=_tasks_json(snap.sketch.layout),
    )

    def put(name: str, a: np.ndarray) -> None:
        raw = np.ascontiguousarray(a).tobytes()
        rec.arrays.add(
            name=name,
            dtype=a.dtype.str,
            shape=list(a.shape),
            data=cctx.compress(raw) if cctx else raw,
            raw_size=len(raw),
        )

    put("totals", snap.totals.astype("<u8"))
    fl = snap.flows
    put("flows.key", np.ascontiguousarray(fl["key"]).view(np.uint8).reshape(len(fl), abi.KEY.itemsize))
    for f in _FLOW_FIELDS:
        put(f"flows.{f}", np.ascontiguousarray(fl[f]))
    if not snap.exact:
        put("sketch.cm", snap.sketch.cm.view("<u8"))
        put("sketch.ss", snap.sketch.ss)
    lay = snap.sketch.layout
    heavy = [(lay.by_name(n).index, h.keys) for n, h in snap.heavy.items() if len(h.keys)]
    if heavy:
        put("heavy.task", np.concatenate([np.full(len(k), i, "<u4") for i, k in heavy]))
        put("heavy.key", np.concatenate([k for _, k in heavy]).view(np.uint8).reshape(-1, abi.KEY.itemsize))
    return rec.SerializeToString(deterministic=True)


def decode(data: bytes, derived: bool = True) -> EpochSnapshot:
    """derived=False skips derive(): heavy hitters are the record's keys with
    zero counts, no spreaders (merge(derived=False)'s form: a part to merge)."""
    rec = pb.EpochRecord()
    try:
        rec.ParseFromString(data)
    except DecodeError:
        raise CodecError(f"not an epoch record ({len(data)} bytes that do not parse)") from None
    if rec.version == 0 or not rec.arrays:
        raise CodecError("not an epoch record (no version or no arrays)")
    if rec.version > VERSION:
        raise CodecError(f"epoch record version {rec.version} is newer than this reader ({VERSION}): upgrade")
    if rec.compression not in ("zstd", "none"):
        raise CodecError(f"epoch record compressed with {rec.compression!r}, unknown here")
    arrays = {a.name: a for a in rec.arrays}
    dctx = zstandard.ZstdDecompressor() if rec.compression == "zstd" else None

    def get(name: str, required: bool = True) -> np.ndarray | None:
        a = arrays.get(name)
        if a is None:
            if required:
                raise CodecError(f"epoch record without {name}")
            return None
        try:
            raw = dctx.decompress(a.data, max_output_size=a.raw_size) if dctx else a.data
            out = np.frombuffer(raw, dtype=np.dtype(a.dtype)).reshape(tuple(a.shape))
        except (zstandard.ZstdError, TypeError, ValueError) as e:
            raise CodecError(f"epoch record: array {name} is damaged ({e})") from None
        return out

    try:
        lay = layout(specs_from_json(_unjson(rec.tasks_json)))
    except ValueError as e:
        raise CodecError(f"epoch record: bad task specs ({e})") from None
    if rec.origin.layout and rec.origin.layout != layout_fingerprint(lay):
        raise CodecError("epoch record: its tasks do not match its layout fingerprint")
    totals = np.array(get("totals"), dtype=np.uint64)
    if totals.shape != (abi.NCOUNTERS, 2):
        raise CodecError(f"epoch record: totals of shape {totals.shape}, expected ({abi.NCOUNTERS}, 2)")
    keys = get("flows.key")
    n = keys.shape[0] if keys.ndim == 2 and keys.shape[1] == abi.KEY.itemsize else -1
    if n < 0:
        raise CodecError("epoch record: flow keys are not 40-byte rows")
    flows = np.zeros(n, analysis.FLOW_RECORD)
    flows["key"] = np.ascontiguousarray(keys).view(abi.KEY).reshape(n)
    for f in _FLOW_FIELDS:
        col = get(f"flows.{f}")
        if col.shape != (n,):
            raise CodecError(f"epoch record: flows.{f} holds {col.shape[0]} values for {n} flows")
        flows[f] = col
    if rec.exact:
        sketch = SketchSet.of_flows(lay, flows)
    else:
        cm, ss = get("sketch.cm"), get("sketch.ss")
        try:
            sketch = SketchSet(lay, np.ascontiguousarray(cm).reshape(-1).view(abi.COUNTER).copy(), ss.copy())
        except ValueError as e:
            raise CodecError(f"epoch record: sketch arrays do not fit the tasks ({e})") from None
    cands = None
    task, hkeys = get("heavy.task", False), get("heavy.key", False)
    if task is not None and hkeys is not None and len(task) == len(hkeys):
        cands = np.zeros(len(task), abi.CAND)
        cands["task"] = task
        cands["key"] = np.ascontiguousarray(hkeys).view(abi.KEY).reshape(-1)
    if derived:
        snap = derive(rec.seq, rec.start, rec.end, totals, flows, sketch, cands)
    else:
        snap = EpochSnapshot(rec.seq, rec.start, rec.end, totals, flows, sketch, exact=rec.exact,
                             heavy=_candidate_keys(lay, cands))  # fmt: skip
    snap.candidates = rec.candidates
    snap.table_fill = rec.table_fill
    snap.processing_s = rec.processing_s
    o = rec.origin
    snap.origin = Origin(o.sensor, o.boot, o.interface, o.layout)
    return snap


@functools.lru_cache(maxsize=16)
def _tasks_json(lay) -> str:
    return _json(specs_to_json(t.spec for t in lay.tasks))


def _candidate_keys(lay, cands: np.ndarray | None) -> dict[str, HeavyHitters]:
    if cands is None:
        return {}
    out = {}
    for t in lay.tasks:
        keys = cands["key"][cands["task"] == t.index]
        if len(keys):
            out[t.spec.name] = HeavyHitters.unranked(keys)
    return out


def _json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def _unjson(text: str):
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"not JSON: {e}") from None
