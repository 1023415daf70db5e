"""Test doubles for the sink seam (netspectra.sinks): a sink that keeps what
it gets, and one that can be stalled or made to fail on demand."""

from __future__ import annotations

import threading


class InMemorySink:
    """Keeps every epoch it is given, in order."""

    def __init__(self, name: str = "memory"):
        self.name = name
        self.epochs: list = []
        self.closed = False

    def on_epoch(self, snap) -> None:
        self.epochs.append(snap)

    def close(self) -> None:
        self.closed = True


class FaultySink(InMemorySink):
    """An InMemorySink that blocks while `gate` is clear and raises `error`
    (an exception instance) while it is set."""

    def __init__(self, name: str = "faulty"):
        super().__init__(name)
        self.gate = threading.Event()
        self.gate.set()
        self.error: Exception | None = None
        self.attempts = 0

    def on_epoch(self, snap) -> None:
        self.attempts += 1
        self.gate.wait()
        if self.error is not None:
            raise self.error
        super().on_epoch(snap)
