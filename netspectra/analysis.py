"""Spreaders and flow arithmetic over an epoch's data (snapshot.derive uses them).

Pure functions of numpy arrays and a SketchSet: no kernel, no root.
"""

from __future__ import annotations

import numpy as np

from . import _sketch, abi
from .sketch import SketchSet
from .tasks import SUPERSPREAD

# One exact flow of an epoch, merged over CPUs; times are wall-clock ns.
FLOW_RECORD = np.dtype(
    [
        ("key", abi.KEY),
        ("packets", "<u8"),
        ("bytes", "<u8"),
        ("first_ns", "<u8"),
        ("last_ns", "<u8"),
        ("tcp_flags", "u1"),
        ("icmp_type", "u1"),
        ("icmp_code", "u1"),
    ]
)


def mask_keys(keys: np.ndarray, fields: int) -> np.ndarray:
    """Keys with every field outside `fields` zeroed (the form a task reports)."""
    words = np.ascontiguousarray(keys, dtype=abi.KEY).view("<u8").reshape(-1, abi.KEY_WORDS)
    masked = words & np.array(abi.field_wmask(fields), dtype=np.uint64)
    return masked.view(abi.KEY).reshape(-1)


_ALL_FIELDS = abi.field_wmask(0x1F)


def unique_keys(keys: np.ndarray, return_counts: bool = False):
    """Distinct keys in first-seen order (and how often each occurs).  Sorts
    64-bit hashes rather than 40-byte keys (several times faster); equal hashes
    are checked byte by byte, and a true collision falls back to comparing
    whole keys."""
    keys = np.ascontiguousarray(keys, dtype=abi.KEY).reshape(-1)
    if len(keys) == 0:
        return (keys, np.zeros(0, np.int64)) if return_counts else keys
    h = _sketch.hash_keys(keys, _ALL_FIELDS, 0)
    order = np.argsort(h)
    dup = h[order[1:]] == h[order[:-1]]
    raw = keys.view(np.dtype((np.void, abi.KEY.itemsize)))
    if dup.any() and not np.array_equal(raw[order[1:]][dup], raw[order[:-1]][dup]):
        _, idx, counts = np.unique(raw, return_index=True, return_counts=True)
    else:
        starts = np.flatnonzero(np.concatenate(([True], ~dup)))
        idx = np.minimum.reduceat(order, starts)  # first occurrence of each
        counts = np.diff(np.append(starts, len(keys)))
    if not return_counts:
        return keys[np.sort(idx)]
    first = np.argsort(idx)
    return keys[idx[first]], counts[first]


def spreaders(
    sketch: SketchSet, flows: np.ndarray, extra_keys: np.ndarray | None = None, complete: bool = True
) -> dict[str, tuple]:
    """Per SuperSpread task with a threshold: (keys, estimates) of the keys
    whose distinct count reaches it, largest first.  Keys to test come from the
    epoch's exact flows and any extra keys (heavy-hitter candidates).

    complete: the flows are every flow of the epoch (no flow_untracked).  Then
    a key needs at least `threshold` flows to have `threshold` distinct
    elements, so keys with fewer are not estimated: no true spreader is
    skipped, and the estimator cannot report those keys falsely."""
    out = {}
    for t in sketch.layout.kind(SUPERSPREAD):
        thr = t.spec.spread_threshold
        if not thr:
            continue
        pool = flows["key"] if len(flows) else np.zeros(0, abi.KEY)
        if complete:
            keys, nflows = unique_keys(mask_keys(pool, t.spec.fields), return_counts=True)
            keys = keys[nflows >= thr]
        else:
            if extra_keys is not None and len(extra_keys):
                pool = np.concatenate([pool, extra_keys])
            keys = unique_keys(mask_keys(pool, t.spec.fields))
        if len(keys) == 0:
            out[t.spec.name] = (keys, np.zeros(0))
            continue
        est = sketch.spread(t.spec.name, keys)
        hit = est >= thr
        keys, est = keys[hit], est[hit]
        order = np.argsort(est, kind="stable")[::-1]
        out[t.spec.name] = (keys[order], est[order])
    return out


def top_by(flows: np.ndarray, fields: int, metric: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate exact flows by a field subset; top n by metric ('bytes' or
    'packets').  Returns (keys, packets, bytes)."""
    if len(flows) == 0:
        z = np.zeros(0, np.uint64)
        return np.zeros(0, abi.KEY), z, z
    keys = mask_keys(flows["key"], fields)
    raw = keys.view(np.dtype((np.void, abi.KEY.itemsize)))
    uniq, inv = np.unique(raw, return_inverse=True)
    pk = np.bincount(inv, weights=flows["packets"].astype(np.float64)).astype(np.uint64)
    by = np.bincount(inv, weights=flows["bytes"].astype(np.float64)).astype(np.uint64)
    order = np.argsort(by if metric == "bytes" else pk, kind="stable")[::-1][:n]
    return uniq[order].view(abi.KEY).reshape(-1), pk[order], by[order]
