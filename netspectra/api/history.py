"""The epochs a sensor keeps for queries, and the live feeds of epochs and alerts.

The epoch loop calls History.add(snapshot) and History.alerts(events, active);
query threads read windows of the last N epochs.  Memory is bounded: at most
keep_epochs snapshots (each holds its merged sketches and exact flows) and
at most max_bytes of them with what queries derived from them (indexes), the
oldest leaving first; a small cache of merged windows, and bounded subscriber
queues.  A subscriber
that falls a whole queue behind is dropped (told so) rather than allowed to
hold memory.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from .. import abi
from ..source import Cache, Window

SUBSCRIBER_QUEUE = 256


def nbytes(obj, _seen: set | None = None) -> int:
    """The bytes of the numpy arrays `obj` holds (through dicts, lists, tuples
    and object attributes; each array once), which is what a kept epoch costs:
    its flows, sketches and the indexes queries build over them."""
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


_CLOSED = object()


class Subscription:
    """A bounded feed of items for one stream.  get() returns an item, None on
    timeout, or raises Overflow / Closed."""

    class Overflow(Exception):
        pass

    class Closed(Exception):
        pass

    def __init__(self, size: int = SUBSCRIBER_QUEUE):
        self._q: queue.Queue = queue.Queue(size)
        self.overflowed = False

    def put(self, item) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.overflowed = True

    def close(self) -> None:
        while True:
            try:
                self._q.put_nowait(_CLOSED)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    pass

    def get(self, timeout: float):
        if self.overflowed:
            raise Subscription.Overflow
        try:
            item = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            raise Subscription.Closed
        return item


class History:
    """The last `keep` EpochSnapshots, cumulative counters since start, the
    alerts firing now, and the subscribers of both feeds.  Thread-safe.
    An EpochSource (netspectra/source.py) for the epochs it keeps."""

    def __init__(self, keep: int, layout, max_streams: int = 32, max_bytes: int = 0):
        self.keep = keep
        self.layout = layout
        self.max_streams = max_streams
        self.max_bytes = max_bytes  # 0: only `keep` bounds them
        self._lock = threading.Lock()
        self._snaps: deque = deque(maxlen=keep)
        self.kept_bytes = 0
        self.dropped_for_memory = 0  # epochs that left before keep_epochs did, for max_bytes
        self._cache = Cache()
        self._per_epoch: dict = {}  # (seq, name) -> value, dropped with the epoch
        self.completed = 0
        self.cumulative = np.zeros((abi.NCOUNTERS, 2), np.uint64)
        self.active_alerts: list = []
        self._epoch_subs: set[Subscription] = set()
        self._alert_subs: set[Subscription] = set()
        self.closed = False

    # --- the writer side (the epoch loop)

    def add(self, snap) -> None:
        with self._lock:
            self._snaps.append(snap)
            kept = {s.seq for s in self._snaps}
            newest = self._snaps[-1].seq
            self._per_epoch = {k: v for k, v in self._per_epoch.items() if k[0] in kept or k[0] > newest}
            self._fit()
            self.completed += 1
            self.cumulative += snap.totals.astype(np.uint64)
            subs = list(self._epoch_subs)
        for s in subs:
            s.put(snap)

    def _fit(self) -> None:
        """Drop the oldest epochs beyond max_bytes (the newest always stays).
        Sizes are taken again each time: queries grow an epoch (its flow
        groups, indexes) after it was added.  Under the lock."""
        seen: set = set()
        sizes = {s.seq: nbytes(s, seen) for s in self._snaps}
        for (seq, _), v in self._per_epoch.items():
            sizes[seq] = sizes.get(seq, 0) + nbytes(v, seen)
        total = sum(sizes.values())
        while self.max_bytes and len(self._snaps) > 1 and total > self.max_bytes:
            gone = self._snaps.popleft()
            total -= sizes.pop(gone.seq, 0)
            self._per_epoch = {k: v for k, v in self._per_epoch.items() if k[0] != gone.seq}
            self.dropped_for_memory += 1
        self.kept_bytes = total

    def alerts(self, events, active) -> None:
        with self._lock:
            self.active_alerts = list(active)
            subs = list(self._alert_subs)
        for ev in events:
            for s in subs:
                s.put(ev)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            subs = self._epoch_subs | self._alert_subs
        for s in subs:
            s.close()

    # --- readers

    def since_start(self) -> tuple[int, np.ndarray]:
        """(epochs completed, (NCOUNTERS, 2) totals since start), consistent with each other."""
        with self._lock:
            return self.completed, self.cumulative.copy()

    def cut_note(self) -> str:
        """Why fewer epochs are kept than api.keep_epochs, for query answers
        ("" when none left early)."""
        with self._lock:
            if not self.dropped_for_memory:
                return ""
            return (
                f"{self.dropped_for_memory} epochs left before api.keep_epochs for api.max_memory "
                f"({self.max_bytes} bytes; {len(self._snaps)} kept now)"
            )

    def snapshots(self) -> list:
        with self._lock:
            return list(self._snaps)

    def latest(self):
        with self._lock:
            return self._snaps[-1] if self._snaps else None

    def window(self, n: int, last: int | None = None) -> Window:
        """The last n kept snapshots ending at epoch `last` (default: the
        newest), oldest first; fewer when fewer are kept.  Empty when `last`
        is no longer (or not yet) kept."""
        snaps = self.snapshots()
        if last is not None:
            idx = [i for i, s in enumerate(snaps) if s.seq == last]
            snaps = snaps[: idx[0] + 1] if idx else []
        return self._window(snaps[-n:])

    def _window(self, snaps: list) -> Window:
        return Window(snaps, self, (snaps[0].seq, snaps[-1].seq) if snaps else ())

    def range(self, since: float, until: float, complete: bool = False) -> Window | None:
        """The kept epochs starting in [since, until), or None when epochs
        that started after `since` may be gone: older than the oldest kept,
        or (complete) dropped since start."""
        snaps = self.snapshots()
        if not snaps or (since < snaps[0].start and (complete or self.completed > len(snaps))):
            return None
        return self._window([s for s in snaps if since <= s.start < until])

    def cached(self, key: tuple, compute: Callable):
        """compute() once per key (keys name the epochs they depend on)."""
        return self._cache.get(key, compute)

    def per_epoch(self, snap, name, compute: Callable):
        """compute() once per kept epoch (an index over its flows, ...), and
        for an epoch being warmed before add() (newer than every kept one)."""
        seq = snap.seq
        with self._lock:
            if (seq, name) in self._per_epoch:
                return self._per_epoch[(seq, name)]
        value = compute()
        with self._lock:
            if any(s.seq == seq for s in self._snaps) or all(s.seq < seq for s in self._snaps):
                self._per_epoch[(seq, name)] = value
                if self._snaps and self.max_bytes:
                    self._fit()
        return value

    # --- feeds

    def subscribe(self, feed: str, replay: bool) -> tuple[Subscription, list]:
        """A new subscription to "epochs" or "alerts" and, if replay, what is
        kept now (snapshots, or the alerts firing), taken atomically with it so
        nothing is missed or sent twice.  Raises OverflowError at max_streams."""
        sub = Subscription(SUBSCRIBER_QUEUE)
        with self._lock:
            subs = self._epoch_subs if feed == "epochs" else self._alert_subs
            if len(self._epoch_subs) + len(self._alert_subs) >= self.max_streams:
                raise OverflowError(f"too many open streams (api.max_streams = {self.max_streams})")
            if self.closed:
                sub.close()
            subs.add(sub)
            backlog = (list(self._snaps) if feed == "epochs" else list(self.active_alerts)) if replay else []
        return sub, backlog

    def open_streams(self) -> int:
        with self._lock:
            return len(self._epoch_subs) + len(self._alert_subs)

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._epoch_subs.discard(sub)
            self._alert_subs.discard(sub)
