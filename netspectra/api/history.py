"""The epochs a sensor keeps for queries, and the live feeds of epochs and alerts.

The epoch loop calls History.add(snapshot) and History.alerts(events, active);
query threads read windows of the last N epochs.  Memory is bounded: at most
keep_epochs snapshots (each holds its merged sketches and exact flows), and
one byte budget (api.max_memory) for them, what queries derived from them
(indexes) and the cached answers: a quarter of it (at most CACHE_BYTES) for
the answers, the rest for the epochs, the oldest leaving first; and bounded
subscriber queues.  A subscriber
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
from ..source import CACHE_BYTES, Cache, Window, nbytes

SUBSCRIBER_QUEUE = 256
ANSWERS_SHARE = 4  # 1/ANSWERS_SHARE of max_bytes (at most CACHE_BYTES) goes to cached answers


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
        self.max_bytes = max_bytes  # 0: only `keep` bounds the epochs, CACHE_BYTES the answers
        answers = min(CACHE_BYTES, max_bytes // ANSWERS_SHARE) if max_bytes else CACHE_BYTES
        self.epochs_max_bytes = max_bytes - answers if max_bytes else 0
        self.answers = Cache(answers)  # every answer of this History's Queries (scoped views for store sources)
        self._lock = threading.Lock()
        self._snaps: deque = deque(maxlen=keep)
        self.kept_bytes = 0
        self.dropped_for_memory = 0  # epochs that left before keep_epochs did, for max_bytes
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
        """Drop the oldest epochs beyond their share of max_bytes (the newest always stays).
        Sizes are taken again each time: queries grow an epoch (its flow
        groups, indexes) after it was added.  Under the lock."""
        seen: set = set()
        sizes = {s.seq: nbytes(s, seen) for s in self._snaps}
        for (seq, _), v in self._per_epoch.items():
            sizes[seq] = sizes.get(seq, 0) + nbytes(v, seen)
        total = sum(sizes.values())
        while self.epochs_max_bytes and len(self._snaps) > 1 and total > self.epochs_max_bytes:
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

    def memory(self) -> tuple[int, int, int]:
        """(epochs kept, their bytes with their indexes, bytes of cached answers)."""
        with self._lock:
            return len(self._snaps), self.kept_bytes, self.answers.bytes

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
        return self.answers.get(key, compute)

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
                if self._snaps:
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
