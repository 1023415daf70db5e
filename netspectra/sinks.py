"""Where closed epochs go: EpochSink, and the bounded worker in front of each.

A sink is anything with on_epoch(snapshot) and close(): the terminal view,
the metrics, the alert engine, the query API's history, the store.  The
epoch loop hands each epoch to a Fanout of Queued sinks: every sink has its
own bounded queue and thread (OpenTelemetry's exporter behind a batch
processor), so a slow, stuck or failing sink never delays an epoch or the
other sinks (contract 10).

A sink that raises SinkRefused gave up on that epoch for good (it is counted
as failed); any other exception is an outage: the same epoch is retried,
with backoff, while the next ones wait in the queue.  What does not fit in
the queue (its epochs, or its bytes) is dropped and counted.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from .logline import say

RETRY_FIRST_S = 0.2
RETRY_MAX_S = 10.0


class EpochSink(Protocol):
    def on_epoch(self, snap) -> None: ...

    def close(self) -> None: ...


class SinkRefused(Exception):
    """This epoch can never be delivered (e.g. another sketch layout): drop it."""


@dataclass
class SinkStats:
    delivered: int = 0  # epochs on_epoch() took
    dropped: int = 0  # epochs that did not fit in the queue (or were still queued at close)
    failed: int = 0  # epochs the sink refused (SinkRefused)
    errors: int = 0  # failed attempts (outages), retried
    queued: int = 0  # epochs waiting now
    queued_bytes: int = 0
    up: bool = True  # False from a failed attempt until the next success


def snapshot_bytes(snap) -> int:
    """What an epoch holds in memory while it waits: its flows and, if
    derived, its sketch arrays."""
    n = getattr(getattr(snap, "flows", None), "nbytes", 0)
    sk = getattr(snap, "sketch", None)
    if sk is not None and getattr(sk, "derived", True):
        n += getattr(getattr(sk, "cm", None), "nbytes", 0) + getattr(getattr(sk, "ss", None), "nbytes", 0)
    return n + 1024


class Queued:
    """One sink behind a bounded queue (max_epochs and max_bytes) and a thread
    of its own.  on_epoch() never blocks."""

    def __init__(self, sink, name: str, max_epochs: int = 64, max_bytes: int = 1 << 30, log=sys.stderr):
        self.sink = sink
        self.name = name
        self.max_epochs = max_epochs
        self.max_bytes = max_bytes
        self.log = log
        self._q: deque = deque()
        self._cv = threading.Condition()
        self._stats = SinkStats()
        self._closing = False
        self._busy = False
        self._warned = False  # said that the queue is full
        self._refusals: set = set()  # reasons of refused epochs said so far
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)
        self._thread.start()

    def on_epoch(self, snap) -> None:
        size = snapshot_bytes(snap)
        with self._cv:
            st = self._stats
            if self._closing or len(self._q) >= self.max_epochs or st.queued_bytes + size > self.max_bytes:
                st.dropped += 1
                first = not self._closing and not self._warned
                self._warned = True
            else:
                self._q.append((snap, size))
                st.queued, st.queued_bytes = len(self._q), st.queued_bytes + size
                self._cv.notify()
                return
        if first:  # once: a sink that stays stuck would otherwise say so every epoch
            self._say(
                f"queue full ({len(self._q)} epochs, {st.queued_bytes >> 20} MiB): epochs are dropped while it stays "
                "full (netspectra_sink_epochs_dropped_total)"
            )

    def stats(self) -> SinkStats:
        with self._cv:
            return SinkStats(**vars(self._stats))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued epoch was delivered (or dropped)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._q or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (for at most `timeout` seconds while the sink
        is down), count the rest as dropped, then close the sink."""
        self.flush(timeout)
        with self._cv:
            self._closing = True
            lost = len(self._q)
            self._stats.dropped += lost
            self._q.clear()
            self._stats.queued = self._stats.queued_bytes = 0
            self._cv.notify_all()
        self._thread.join(timeout=max(1.0, timeout))
        if lost:
            self._say(f"{lost} epochs still queued at exit were dropped")
        try:
            self.sink.close()
        except Exception as e:
            self._say(f"close failed: {type(e).__name__}: {e}")

    def _say(self, text: str) -> None:
        # never blocks: on_epoch() and the worker (holding the lock on_epoch() takes) say things
        say(self.log, f"netspectra: {self.name}: {text}")

    def _run(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            with self._cv:
                while not self._q and not self._closing:
                    self._cv.wait()
                if not self._q:
                    return
                snap, size = self._q[0]
                self._busy = True
            try:
                self.sink.on_epoch(snap)
                outcome = "delivered"
            except SinkRefused as e:
                outcome = "failed"
                if str(e) not in self._refusals:  # each reason once, with the first epoch it cost
                    self._refusals.add(str(e))
                    self._say(f"epoch {getattr(snap, 'seq', '?')} refused: {e}")
            except Exception as e:
                outcome = "retry"
                with self._cv:
                    first = self._stats.up
                    self._stats.errors += 1
                    self._stats.up = False
                if first:
                    self._say(f"down ({type(e).__name__}: {e}); epochs wait in its queue and are retried")
            with self._cv:
                st = self._stats
                self._busy = False
                if outcome == "retry":
                    if self._closing:
                        return
                    self._cv.wait(delay)  # close() wakes it
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                if self._q and self._q[0][0] is snap:
                    self._q.popleft()
                    st.queued_bytes -= size
                st.queued = len(self._q)
                if outcome == "delivered":
                    st.delivered += 1
                    if not st.up:
                        self._say("back up")
                    st.up = True
                else:
                    st.failed += 1
                delay = RETRY_FIRST_S
                self._cv.notify_all()


class Fanout:
    """Hands each epoch to every sink in turn.  Sinks that may block belong
    behind Queued; a sink that raises here is reported once per error type
    and does not stop the others."""

    def __init__(self, sinks: list, log=sys.stderr):
        self.sinks = list(sinks)
        self.log = log
        self._said: set = set()

    def on_epoch(self, snap) -> None:
        for s in self.sinks:
            try:
                s.on_epoch(snap)
            except Exception as e:
                what = (id(s), type(e))
                if what not in self._said:
                    self._said.add(what)
                    say(self.log, f"netspectra: {_name(s)}: {type(e).__name__}: {e}")  # in the epoch loop

    def queued(self) -> list[Queued]:
        return [s for s in self.sinks if isinstance(s, Queued)]

    def close(self) -> None:
        for s in self.sinks:
            try:
                s.close()
            except Exception as e:
                say(self.log, f"netspectra: {_name(s)}: close failed: {type(e).__name__}: {e}")


def _name(sink) -> str:
    return getattr(sink, "name", type(sink).__name__)


class FuncSink:
    """A sink made of a function (and an optional close)."""

    def __init__(self, name: str, on_epoch, close=None):
        self.name = name
        self._on_epoch = on_epoch
        self._close = close

    def on_epoch(self, snap) -> None:
        self._on_epoch(snap)

    def close(self) -> None:
        if self._close is not None:
            self._close()
