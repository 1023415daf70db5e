"""The Store contract: epochs in, the same epochs (or their rollups) out.

A store keeps, per series (one sensor's interface with one sketch layout):

  raw  every epoch as it was closed (codec record: totals, exact flows, and
       the sketch when some packet was untracked);
  1m   and 1h rollups: the epochs that start in each minute or hour, merged
       (snapshot.merge: flows summed per 5-tuple, Count-Min added, registers
       maxed), so a query over a day reads 24 records instead of 17,280.

A query over records of any resolution answers exactly what the same query
over the epochs themselves answers (contract 8): merging is exact, and the
heavy-hitter candidates of a rollup are those of its epochs.

Writes are idempotent: an epoch is known by (series, start time), and
writing it again changes nothing.  Retention drops whole partitions (PART_S
of each resolution) once all of a partition is older than its retention;
an epoch older than the raw retention is not written at all (it could no
longer be told apart from a replay).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..snapshot import EpochSnapshot

# resolution -> seconds per record (raw: one epoch, whatever its length)
RESOLUTIONS = {"raw": 0, "1m": 60, "1h": 3600}
ROLLUPS = ("1m", "1h")
# resolution -> seconds per partition: what retention drops at once
PART_S = {"raw": 3600, "1m": 86400, "1h": 30 * 86400}
# a range is answered from the finest resolution that needs at most this many
# records (and still holds the range's start)
MAX_RECORDS = 240
TYPICAL_EPOCH_S = 5.0  # to size raw ranges before any record is read


class StoreError(Exception):
    """The store cannot be opened or used: a one-line reason naming it."""


@dataclass(frozen=True)
class Series:
    """One stream of epochs: a sensor's interface with one sketch layout
    (another layout -- other tasks, seeds or sizes -- is another series)."""

    sensor: str
    interface: str
    layout: str

    @classmethod
    def of(cls, snap: EpochSnapshot) -> Series:
        o = snap.origin
        return cls(o.sensor, o.interface, o.layout)

    def __str__(self) -> str:
        return f"{self.sensor or '?'}/{self.interface or '-'} (layout {self.layout})"


@dataclass(frozen=True)
class SeriesInfo:
    series: Series
    first: float  # start of its oldest raw epoch kept
    last: float  # end of its newest
    epochs: int  # raw epochs kept


@dataclass(frozen=True)
class Totals:
    """The totals of a range: records read, (NCOUNTERS, 2) uint64, time covered."""

    records: int
    totals: object
    start: float
    end: float


def bucket(t: float, resolution: str) -> float:
    """Start of the record of `resolution` that an epoch starting at t belongs to."""
    step = RESOLUTIONS[resolution]
    return t if not step else math.floor(t / step) * step


def partition(t: float, resolution: str) -> int:
    return math.floor(t / PART_S[resolution])


def expired_before(now: float, resolution: str, retention_s: float) -> int:
    """Partitions of `resolution` numbered below this are wholly older than its retention."""
    return math.floor((now - retention_s) / PART_S[resolution])


def choose_resolution(since: float, until: float, now: float, retention: dict[str, float]) -> str:
    """The finest resolution that still holds `since` and needs at most
    MAX_RECORDS records for [since, until); else the coarsest."""
    for res, step in RESOLUTIONS.items():
        if since < now - retention.get(res, math.inf):
            continue
        if (until - since) / (step or TYPICAL_EPOCH_S) <= MAX_RECORDS:
            return res
    return list(RESOLUTIONS)[-1]


class Store:
    """What every backend implements.  write() is called from one thread (the
    store's sink worker); the readers from any thread."""

    url: str

    def write(self, snap: EpochSnapshot, record: bytes | None = None) -> str:
        """Store an epoch and fold it into every rollup, all or nothing.
        Returns "written", "duplicate" (already stored: nothing changed) or
        "expired" (older than the raw retention: not stored).  record: the
        epoch's codec record, when the caller has it (a store that keeps
        records need not encode it again)."""
        raise NotImplementedError

    def read(self, series: Series, resolution: str, since: float, until: float) -> list[EpochSnapshot]:
        """The records of `resolution` starting in [bucket(since), until), oldest first."""
        raise NotImplementedError

    def totals(self, series: Series, resolution: str, since: float, until: float) -> Totals:
        """The summed totals of what read() would return, without the flows."""
        raise NotImplementedError

    def series(self) -> list[SeriesInfo]:
        raise NotImplementedError

    def prune(self, now: float) -> dict[str, int]:
        """Drop the partitions past their retention; records dropped per resolution."""
        raise NotImplementedError

    def usage(self) -> dict[str, tuple[int, int]]:
        """Per resolution: (records, bytes stored)."""
        raise NotImplementedError

    def version(self) -> int:
        """Changes whenever a write or prune changes what read() returns."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
