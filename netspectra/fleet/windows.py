"""Network-wide windows: which sensor epochs the collector merges together.

Pure bookkeeping, no NATS (the collector feeds it; tests drive it by hand):

  add(snap, token, now)
                     puts a sensor's epoch into window floor(start / window_s),
                     the window its start falls in.  The token (whatever the
                     caller must acknowledge once the epoch is applied: its
                     NATS messages) is held with it.  Returns a Verdict:
                       added      held in an open window;
                       duplicate  that window already holds this epoch
                                  (same wire.epoch_id): the token is handed
                                  back to be acked, the epoch is not merged twice;
                       late       its window is already closed: the caller
                                  stores it as that sensor's own epoch, never
                                  merges it into the closed window.
  close_ready(now)   the windows that are done, oldest first, each with its
                     epochs and the tokens to ack once applied.

A window is done when every awaited sensor has reported past its end (its
newest epoch ends at or after the window's end), or when `now` passes its
grace: grace_s after the window's end, and at least grace_s after its first
epoch arrived (epochs that come in a burst -- a sensor's spool after a NATS
outage -- are merged together, not judged by how old they are);
restart_grace(now) gives every open window a fresh grace (after the caller
could not read for a while).  Awaited: the `expected` sensors, or when none are
configured, every sensor that reported up to this window (its newest epoch
ended at or after the window's start - grace_s: a sensor that went silent
stops being waited for; and since who reports is only known after a while,
the windows of the first grace_s after the first epoch close by grace
only).  Windows close in order, so the merged windows
have increasing numbers; a done window waits for an older one still open
(at most until that one's grace ends).  More than max_open open windows
close the oldest whatever it still waits for (memory stays bounded).

`now` is the caller's clock for grace: the collector passes the newest
stream time it read (so a backlog replayed after a restart closes its windows
as they closed live) or the wall clock once it has read everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import wire

ADDED, DUPLICATE, LATE = "added", "duplicate", "late"
EPSILON_S = 1e-3  # an epoch ending this close before a window's end counts as reaching it
MAX_OPEN = 64


class Verdict(NamedTuple):
    kind: str  # ADDED, DUPLICATE or LATE
    index: int  # the window the epoch's start falls in
    token: Any = None  # DUPLICATE and LATE: the epoch's token, for the caller to ack (after storing, if late)


@dataclass
class SensorStats:
    received: int = 0  # epochs add()ed, whatever became of them
    duplicates: int = 0
    late: int = 0
    last_epoch: float = -math.inf  # end of its newest epoch (wall clock of the sensor)


@dataclass
class Closed:
    """A window that is done: merge its epochs, apply, then ack its tokens."""

    index: int
    start: float
    end: float
    epochs: list  # EpochSnapshot, by sensor then start
    tokens: list  # one per epoch
    how: str  # "complete" (every awaited sensor reported), "grace" or "forced" (max_open)
    missing: tuple[str, ...] = ()  # awaited sensors it closed without

    @property
    def sensors(self) -> tuple[str, ...]:
        return tuple(sorted({s.origin.sensor for s in self.epochs}))


@dataclass
class _Open:
    index: int
    opened: float = -math.inf  # the caller's clock when its first epoch arrived
    epochs: dict = field(default_factory=dict)  # epoch id -> (snap, token)


class Windows:
    def __init__(self, window_s: float, grace_s: float, expected: tuple[str, ...] = (), max_open: int = MAX_OPEN):
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        if grace_s < 0:
            raise ValueError(f"grace_s must not be negative, got {grace_s!r}")
        self.window_s = float(window_s)
        self.grace_s = float(grace_s)
        self.expected = tuple(sorted(set(expected)))
        self.max_open = max(1, max_open)
        self._open: dict[int, _Open] = {}
        self._horizon: int | None = None  # every window below this index is closed
        self._first: int | None = None  # the first window opened (expected=(): sensors are discovered)
        self.sensors: dict[str, SensorStats] = {}
        self.received = 0
        self.duplicates = 0
        self.late = 0
        self.closed = 0
        self.closed_by: dict[str, int] = {"complete": 0, "grace": 0, "forced": 0}

    # --- geometry

    def index(self, t: float) -> int:
        return math.floor(t / self.window_s)

    def bounds(self, index: int) -> tuple[float, float]:
        return index * self.window_s, (index + 1) * self.window_s

    # --- feeding

    def add(self, snap, token=None, now: float | None = None) -> Verdict:
        """now: the caller's clock (as given to close_ready) as the epoch arrives."""
        o = snap.origin
        st = self.sensors.setdefault(o.sensor, SensorStats())
        st.received += 1
        self.received += 1
        k = self.index(snap.start)
        w = self._open.get(k)
        eid = wire.epoch_id(o.sensor, o.interface, snap.start)
        if w is not None and eid in w.epochs:
            st.duplicates += 1
            self.duplicates += 1
            return Verdict(DUPLICATE, k, token)
        st.last_epoch = max(st.last_epoch, snap.end)
        if w is None and self._horizon is not None and k < self._horizon:
            st.late += 1
            self.late += 1
            return Verdict(LATE, k, token)
        if w is None:
            w = self._open[k] = _Open(k, -math.inf if now is None else now)
            self._first = k if self._first is None else min(self._first, k)
        w.epochs[eid] = (snap, token)
        return Verdict(ADDED, k)

    # --- closing

    def awaited(self, index: int) -> tuple[str, ...]:
        """The sensors window `index` waits for."""
        if self.expected:
            return self.expected
        start, _ = self.bounds(index)
        return tuple(sorted(s for s, st in self.sensors.items() if st.last_epoch >= start - self.grace_s))

    def missing(self, index: int) -> tuple[str, ...]:
        """The awaited sensors that have not reported past the window's end yet."""
        _, end = self.bounds(index)
        gone = SensorStats()
        return tuple(s for s in self.awaited(index) if self.sensors.get(s, gone).last_epoch < end - EPSILON_S)

    def _discovering(self, index: int) -> bool:
        """Without expected sensors, whether window `index` starts within
        grace_s of the first window: who reports is not known yet."""
        if self.expected or self._first is None:
            return False
        return self.bounds(index)[0] - self.grace_s < self.bounds(self._first)[0]

    def close_ready(self, now: float) -> list[Closed]:
        out = []
        for k in sorted(self._open):
            _, end = self.bounds(k)
            missing = self.missing(k)
            if not missing and not self._discovering(k):
                how = "complete"
            elif now >= max(end, self._open[k].opened) + self.grace_s:
                how = "grace"
            elif len(self._open) > self.max_open:
                how = "forced"
            else:
                break  # later windows wait for this one: closed windows go out in order
            out.append(self._close(k, how, missing))
        return out

    def close_oldest(self) -> list[Closed]:
        """The oldest open window, whatever it still waits for (the caller
        cannot hold more epochs)."""
        if not self._open:
            return []
        k = min(self._open)
        return [self._close(k, "forced", self.missing(k))]

    def close_all(self) -> list[Closed]:
        """Every open window, as it stands (for tests and tools; the collector
        does not close windows at exit: their epochs come back on restart)."""
        return [self._close(k, "forced", self.missing(k)) for k in sorted(self._open)]

    def _close(self, k: int, how: str, missing: tuple[str, ...]) -> Closed:
        w = self._open.pop(k)
        self._horizon = max(self._horizon if self._horizon is not None else k + 1, k + 1)
        self.closed += 1
        self.closed_by[how] += 1
        items = sorted(w.epochs.values(), key=lambda it: (it[0].origin.sensor, it[0].origin.interface, it[0].start))
        start, end = self.bounds(k)
        return Closed(k, start, end, [s for s, _ in items], [t for _, t in items], how, missing)

    def restart_grace(self, now: float) -> None:
        """Every open window waits at least grace_s from `now`."""
        for w in self._open.values():
            w.opened = max(w.opened, now)

    # --- what is held

    def held(self) -> list:
        """The tokens of every epoch in an open window (to keep them alive, or give them back)."""
        return [t for w in self._open.values() for _, t in w.epochs.values()]

    def open_windows(self) -> int:
        return len(self._open)

    @property
    def horizon(self) -> int | None:
        return self._horizon
