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


class FlowGroups:
    """The flows of an epoch grouped by a field set, computed once per field
    set (tasks keyed alike share it): distinct masked keys, and per key the
    exact packets, bytes and number of flows.  Threads may share it: a race
    computes a grouping twice, never a wrong one."""

    def __init__(self, flows: np.ndarray):
        self.flows = flows
        self._by: dict[int, tuple] = {}

    def by(self, fields: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(keys masked to `fields`, inverse, packets, bytes, flows per key)."""
        if fields not in self._by:
            fl = self.flows
            if fields == 0x1F:  # flows are distinct 5-tuples already
                n = len(fl)
                self._by[fields] = (fl["key"], np.arange(n), fl["packets"], fl["bytes"], np.ones(n, np.int64))
            else:
                self._by[fields] = _sketch.group_keys(fl, abi.field_wmask(fields), fl["packets"], fl["bytes"])
        return self._by[fields]

    def distinct(self, key_fields: int, elem_fields: int, min_flows: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Exact distinct elements per key, for the keys with at least
        min_flows flows (a key with fewer flows has fewer distinct elements):
        (keys, counts)."""
        mine = self._flows_of_keys_with(key_fields, min_flows)
        if not len(mine):
            return np.zeros(0, abi.KEY), np.zeros(0, np.int64)
        pairs = _sketch.group_keys(mine, abi.field_wmask(key_fields | elem_fields))[0]
        keys, _, _, _, count = _sketch.group_keys(pairs, abi.field_wmask(key_fields))
        return keys, count

    def _flows_of_keys_with(self, fields: int, min_flows: int) -> np.ndarray:
        """The flows of the keys (masked to `fields`) that have at least
        min_flows flows.  A grouping by fewer fields at hand narrows the flows
        first (a key has no more flows than any coarser key it falls in), so
        a key pair such as (src_ip, dst_ip) is rarely grouped over all flows."""
        flows = self.flows

        def surviving(f: int) -> int:
            n = self._by[f][4]
            return int(n[n >= min_flows].sum())

        coarser = [f for f in self._by if f != fields and f & fields == f]
        if fields not in self._by and coarser:
            _, inv, _, _, nflows = self._by[min(coarser, key=surviving)]
            many = nflows >= min_flows
            if not many.all():
                flows = flows[many[inv]]
            if not len(flows):
                return flows
            _, inv, _, _, nflows = _sketch.group_keys(flows, abi.field_wmask(fields))
        else:
            _, inv, _, _, nflows = self.by(fields)
        many = nflows >= min_flows
        return flows if many.all() else flows[many[inv]]


def spreaders(
    sketch: SketchSet,
    flows: np.ndarray,
    extra_keys: np.ndarray | None = None,
    complete: bool = True,
    groups: FlowGroups | None = None,
) -> dict[str, tuple]:
    """Per SuperSpread task with a threshold: (keys, estimates) of the keys
    whose distinct count reaches it, largest first.  Keys to test come from the
    epoch's exact flows (grouped by `groups`, the epoch's own when given) and
    any extra keys (heavy-hitter candidates).

    complete: the flows are every flow of the epoch (no flow_untracked).  Then
    a key needs at least `threshold` flows to have `threshold` distinct
    elements, so keys with fewer are not estimated: no true spreader is
    skipped, and the estimator cannot report those keys falsely."""
    groups = FlowGroups(flows) if groups is None else groups
    out = {}
    for t in sketch.layout.kind(SUPERSPREAD):
        thr = t.spec.spread_threshold
        if not thr:
            continue
        keys, _, _, _, nflows = groups.by(t.spec.fields)
        if complete:
            keys = keys[nflows >= thr]
        elif extra_keys is not None and len(extra_keys):
            keys = unique_keys(np.concatenate([keys, mask_keys(extra_keys, t.spec.fields)]))
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
