"""EpochSource: where the query API finds the epochs of a window.

Two sources answer the same queries (api/queries.py):

  api.history.History  the epochs a running sensor keeps in memory (the last
                       api.keep_epochs), by count or by time range;
  StoreSource          a store (netspectra/store) over any time range, read
                       at the finest resolution that suits the range.

A Window is the list of snapshots (epochs or rollups) a query reads, oldest
first, with the key its derived answers are cached under: the epochs it
holds, or for a store the range, resolution and the store's version, so a
cached answer never outlives what it was computed from.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

CACHE_BYTES = 256 << 20  # merged windows and derived rankings kept (LRU, by size)
CACHE_ENTRIES = 64
FUTURE_S = 86400.0  # an open range ends this far after now (clocks differ; epochs do not start later)


class Window(list):
    """Snapshots answering one query, oldest first."""

    def __init__(self, snaps, source, key: tuple, label: str = "memory"):
        super().__init__(snaps)
        self.source = source
        self.key = key
        self.label = label  # where from: "memory", "store:raw", "store:1m", "store:1h"


class EpochSource(Protocol):
    def range(self, since: float, until: float) -> Window | None:
        """The window of [since, until) (by start time), or None when this
        source does not hold its start."""

    def cached(self, key: tuple, compute: Callable): ...

    def per_epoch(self, snap, name, compute: Callable): ...


class Cache:
    """compute() once per key, LRU by size.  Keys name what they depend on,
    so a value never goes stale; it just ages out.  Concurrent askers of one
    key wait for a single computation; other keys proceed."""

    def __init__(self, max_bytes: int = CACHE_BYTES, max_entries: int = CACHE_ENTRIES):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._d: OrderedDict = OrderedDict()  # key -> (value, bytes)
        self._bytes = 0
        self._lock = threading.Lock()
        self._inflight: dict = {}

    def keys(self) -> list:
        with self._lock:
            return list(self._d)

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes

    def scoped(self, prefix) -> Scoped:
        """A view of this cache whose keys start with `prefix`: several
        sources share one bound without their keys meeting."""
        return Scoped(self, prefix)

    def get(self, key: tuple, compute: Callable):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key][0]
            gate = self._inflight.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._d:
                    return self._d[key][0]
            try:
                value = compute()
            except BaseException:
                with self._lock:
                    self._inflight.pop(key, None)  # a failing key leaves nothing behind
                raise
            size = nbytes(value)
            with self._lock:
                self._inflight.pop(key, None)
                self._d[key] = (value, size)
                self._bytes += size
                while len(self._d) > 1 and (self._bytes > self.max_bytes or len(self._d) > self.max_entries):
                    _, (_, old) = self._d.popitem(last=False)
                    self._bytes -= old
            return value


class Scoped:
    """Cache.scoped(prefix)."""

    def __init__(self, cache: Cache, prefix):
        self.cache, self.prefix = cache, prefix

    def get(self, key: tuple, compute: Callable):
        return self.cache.get((self.prefix, *key), compute)


def nbytes(obj, _seen: set | None = None) -> int:
    """The bytes of the numpy arrays `obj` holds (through dicts, lists, tuples
    and object attributes; each array once), which is what a kept epoch or a
    cached answer costs: flows, sketches, rankings, indexes."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        base = obj if obj.base is None else obj.base  # a view costs nothing of its own
        if isinstance(base, np.ndarray) and base is not obj:
            return nbytes(base, seen)
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(nbytes(k, seen) + nbytes(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset, deque)):
        return sum(nbytes(v, seen) for v in obj)
    if isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return 0
    attrs = getattr(obj, "__dict__", None)
    if attrs is None and hasattr(obj, "__slots__"):
        attrs = {k: getattr(obj, k, None) for k in obj.__slots__}
    return nbytes(attrs, seen) if attrs else 0


class StoreSource:
    """Time ranges of one series of a store.  Reads go through a cache keyed
    by the store's version: repeated and paged queries over the same range
    read and merge once, until something is written."""

    def __init__(self, store, series, retention: dict[str, float], clock=time.time):
        self._store = store  # a Store, or a store.sink.StoreHandle that opens it when needed
        self.series = series
        self.retention = dict(retention)
        self.clock = clock
        self.cache = Cache()
        self.reads = 0  # records read from the store (for status and tests)

    @property
    def store(self):
        get = getattr(self._store, "get", None)
        return get() if get is not None else self._store

    def _plan(self, since: float, until: float) -> tuple[str, float]:
        """(resolution, until): the finest resolution that suits the range,
        and its end made finite (a store takes finite times)."""
        from .store.base import choose_resolution

        now = self.clock()
        until = min(until, now + FUTURE_S)
        return choose_resolution(since, min(until, now), now, self.retention), until

    def range(self, since: float, until: float) -> Window:
        from .store.base import bucket

        res, until = self._plan(since, until)
        key = ("store", res, bucket(since, res), until, self.store.version())

        def read():
            snaps = self.store.read(self.series, res, since, until)
            self.reads += len(snaps)
            return snaps

        return Window(self.cache.get(("read", *key), read), self, key, f"store:{res}")

    def totals(self, since: float, until: float):
        res, until = self._plan(since, until)
        return self.store.totals(self.series, res, since, until)

    def cached(self, key: tuple, compute: Callable):
        return self.cache.get(key, compute)

    def per_epoch(self, snap, name, compute: Callable):
        return self.cache.get(("epoch", snap.start, snap.end, snap.seq, self.store.version(), name), compute)
