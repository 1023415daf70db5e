"""Stores for the contract suite: every backend behind one factory, and a
series of synthetic epochs to fill them with."""

from __future__ import annotations

import itertools

import numpy as np

from netspectra import abi
from netspectra.store.base import Series

from .epochs import epoch, packets

T0 = 1_796_083_200.0  # 2026-12-01 00:00:00 UTC: aligned to days, hours and minutes
EPOCH_S = 5.0
RETENTION = {"raw": 2 * 86400.0, "1m": 30 * 86400.0, "1h": 365 * 86400.0}
_names = itertools.count()


def series_of_epochs(n: int, t0: float = T0, sensor: str = "s1", estimated_every: int = 4, seed: int = 7):
    """n consecutive 5 s epochs from t0: the same background and planted keys
    each time (so rollups merge flows), every estimated_every-th one with some
    packets untracked (so rollups merge sketches too)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        keys, lengths = packets(rng, 600)
        unt = None
        if estimated_every and i % estimated_every == estimated_every - 1:
            unt = rng.random(len(keys)) < 0.2
        s = epoch(keys, lengths, sensor=sensor, untracked=unt, seq=i, t=t0 + i * EPOCH_S)
        out.append(s)
    return out


def same_records(a, b) -> None:
    """Two snapshots hold the same epoch data (flows as sets of 5-tuples)."""
    assert a.exact == b.exact
    assert (a.start, a.end) == (b.start, b.end)
    np.testing.assert_array_equal(a.totals, b.totals)
    fa, fb = _sorted(a.flows), _sorted(b.flows)
    for f in ("key", "packets", "bytes", "first_ns", "last_ns", "tcp_flags"):
        np.testing.assert_array_equal(fa[f], fb[f], err_msg=f)
    if not a.exact:
        np.testing.assert_array_equal(a.sketch.cm, b.sketch.cm)
        np.testing.assert_array_equal(a.sketch.ss, b.sketch.ss)
    assert set(a.heavy) == set(b.heavy)
    for name in a.heavy:
        assert _keyset(a.heavy[name].keys) == _keyset(b.heavy[name].keys), name


def _sorted(fl):
    raw = np.ascontiguousarray(fl["key"]).view(np.dtype((np.void, abi.KEY.itemsize))).reshape(-1)
    return fl[np.argsort(raw)]


def _keyset(keys) -> set:
    return {k.tobytes() for k in np.ascontiguousarray(keys)}


def series_key(snap) -> Series:
    return Series.of(snap)


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{next(_names)}"
