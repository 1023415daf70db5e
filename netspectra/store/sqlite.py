"""The embedded store: one SQLite file (WAL, one writer, readers alongside).

Each record is a row of small columns (times, totals, flow count) and the
epoch's codec record: flows as compressed columns, not a row per flow.  A row
per flow writes about 100,000 flows/s here; a record per epoch about 380,000
(bench/store.py: 100k-flow epochs, both rollups included), ten times what a
sensor at 100,000 flows per 5 s epoch produces, twice over.  Rollups are read, merged and written back in the
same transaction as the epoch, so a crash leaves either both or neither; the
open rollup of each series stays decoded in memory between epochs, and is
stored underived (merge(derived=False): its heavy hitters and spreaders are
derived when it is read, not at every epoch).

Durability: WAL with synchronous=NORMAL survives a killed process (a
committed epoch is never lost); a power cut may lose the last transactions,
never the file.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from .. import abi, codec
from ..snapshot import EpochSnapshot, merge
from .base import (
    PART_S,
    ROLLUPS,
    Series,
    SeriesInfo,
    Store,
    StoreError,
    Totals,
    bucket,
    expired_before,
    partition,
)

SCHEMA = 1
_I64 = (1 << 63) - 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS series (
  id INTEGER PRIMARY KEY,
  sensor TEXT NOT NULL, interface TEXT NOT NULL, layout TEXT NOT NULL,
  UNIQUE (sensor, interface, layout)
);
-- one row per epoch (raw) or per rollup bucket (1m, 1h)
CREATE TABLE IF NOT EXISTS records (
  series INTEGER NOT NULL REFERENCES series (id),
  resolution TEXT NOT NULL,
  start_ns INTEGER NOT NULL,  -- raw: the epoch's start; rollups: the bucket's
  end_ns INTEGER NOT NULL,
  part INTEGER NOT NULL,      -- retention partition (base.PART_S)
  epochs INTEGER NOT NULL,
  exact INTEGER NOT NULL,
  packets INTEGER NOT NULL, bytes INTEGER NOT NULL, flows INTEGER NOT NULL,
  totals BLOB NOT NULL,       -- (NCOUNTERS, 2) little-endian uint64
  record BLOB NOT NULL,       -- codec.encode()
  UNIQUE (series, resolution, start_ns)
);
CREATE INDEX IF NOT EXISTS records_part ON records (resolution, part);
"""


def _ns(t: float) -> int:
    return int(round(t * 1e9))


class SqliteStore(Store):
    def __init__(self, path: str | os.PathLike, retention: dict[str, float], clock=time.time):
        self.path = Path(path)
        self.clock = clock
        self.url = f"sqlite://{self.path}"
        self.retention = dict(retention)
        self._local = threading.local()
        self._series: dict[Series, int] = {}
        self._open: dict[tuple[int, str], tuple[int, EpochSnapshot]] = {}  # (series, res) -> (bucket ns, rollup)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            db = self._db()
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                db.executescript(_DDL)
                row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta VALUES ('schema', ?), ('version', 0)", (SCHEMA,))
                elif row[0] > SCHEMA:
                    raise StoreError(
                        f"{self.path}: written by a newer netspectra (schema {row[0]}, this one knows {SCHEMA})"
                    )
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open the store {self.path}: {_why(e)}") from None

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.isolation_level = "DEFERRED"  # `with db:` is then one transaction
            self._local.db = db
        return db

    # --- writing (one thread)

    def _series_id(self, db, s: Series) -> int:
        sid = self._series.get(s)
        if sid is None:
            db.execute(
                "INSERT OR IGNORE INTO series (sensor, interface, layout) VALUES (?, ?, ?)", dataclasses.astuple(s)
            )
            sid = db.execute(
                "SELECT id FROM series WHERE sensor = ? AND interface = ? AND layout = ?", dataclasses.astuple(s)
            ).fetchone()[0]
            self._series[s] = sid
        return sid

    def write(self, snap: EpochSnapshot) -> str:
        s = Series.of(snap)
        start = _ns(snap.start)
        if partition(snap.start, "raw") < expired_before(self.clock(), "raw", self.retention["raw"]):
            return "expired"
        db = self._db()
        opened = {}
        try:
            with db:
                sid = self._series_id(db, s)
                if db.execute(
                    "SELECT 1 FROM records WHERE series = ? AND resolution = 'raw' AND start_ns = ?", (sid, start)
                ).fetchone():
                    return "duplicate"
                record = codec.encode(snap)
                self._put(db, sid, "raw", start, snap, 1, record)
                for res in ROLLUPS:
                    b = _ns(bucket(snap.start, res))
                    cur = self._rollup(db, sid, res, b)
                    if cur is None:  # the bucket's first epoch: its record as it is
                        roll, n = snap, 1
                        self._put(db, sid, res, b, roll, n, record)
                    else:
                        roll = merge([cur[1], snap], seq=cur[1].seq, origin=cur[1].origin, derived=False)
                        n = cur[0] + 1
                        self._put(db, sid, res, b, roll, n, codec.encode(roll))
                    opened[(sid, res)] = (b, n, roll)
                db.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")
        except sqlite3.Error as e:
            self._open.clear()  # what is cached may not be what is stored
            raise StoreError(f"{self.path}: {_why(e)}") from None
        for k, (b, n, roll) in opened.items():
            self._open[k] = (b, (n, roll))
        return "written"

    def _rollup(self, db, sid: int, res: str, b: int) -> tuple[int, EpochSnapshot] | None:
        """(epochs, snapshot) of a rollup bucket: the cached open one, or stored."""
        cached = self._open.get((sid, res))
        if cached is not None and cached[0] == b:
            return cached[1]
        row = db.execute(
            "SELECT epochs, record FROM records WHERE series = ? AND resolution = ? AND start_ns = ?", (sid, res, b)
        ).fetchone()
        return None if row is None else (row[0], codec.decode(row[1]))

    def _put(self, db, sid: int, res: str, start_ns: int, snap: EpochSnapshot, epochs: int, record: bytes) -> None:
        t = snap.totals.astype("<u8")
        db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sid,
                res,
                start_ns,
                _ns(snap.end),
                partition(start_ns / 1e9, res),
                epochs,
                int(snap.exact),
                min(int(t[abi.C["all"], 0]), _I64),
                min(int(t[abi.C["all"], 1]), _I64),
                len(snap.flows),
                t.tobytes(),
                record,
            ),
        )

    def prune(self, now: float) -> dict[str, int]:
        db = self._db()
        out = {}
        try:
            with db:
                for res in PART_S:
                    cut = expired_before(now, res, self.retention[res])
                    out[res] = db.execute("DELETE FROM records WHERE resolution = ? AND part < ?", (res, cut)).rowcount
                if any(out.values()):
                    db.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {_why(e)}") from None
        self._open.clear()
        return out

    # --- reading (any thread)

    def _sid(self, s: Series) -> int | None:
        row = self._query(
            "SELECT id FROM series WHERE sensor = ? AND interface = ? AND layout = ?", dataclasses.astuple(s)
        )
        return row[0][0] if row else None

    def _query(self, sql: str, args=()) -> list:
        try:
            return self._db().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {_why(e)}") from None

    def _rows(self, cols: str, s: Series, res: str, since: float, until: float) -> list:
        sid = self._sid(s)
        if sid is None:
            return []
        return self._query(
            f"SELECT {cols} FROM records WHERE series = ? AND resolution = ? AND start_ns >= ? AND start_ns < ?"
            " ORDER BY start_ns",
            (sid, res, _ns(bucket(since, res)), _ns(until)),
        )

    def read(self, series: Series, resolution: str, since: float, until: float) -> list[EpochSnapshot]:
        return [codec.decode(r[0]) for r in self._rows("record", series, resolution, since, until)]

    def totals(self, series: Series, resolution: str, since: float, until: float) -> Totals:
        rows = self._rows("start_ns, end_ns, totals", series, resolution, since, until)
        tot = np.zeros((abi.NCOUNTERS, 2), np.uint64)
        for r in rows:
            tot += np.frombuffer(r[2], "<u8").reshape(abi.NCOUNTERS, 2)
        if not rows:
            return Totals(0, tot, 0.0, 0.0)
        return Totals(len(rows), tot, rows[0][0] / 1e9, max(r[1] for r in rows) / 1e9)

    def series(self) -> list[SeriesInfo]:
        rows = self._query(
            "SELECT s.sensor, s.interface, s.layout, min(r.start_ns), max(r.end_ns), count(*)"
            " FROM series s JOIN records r ON r.series = s.id AND r.resolution = 'raw' GROUP BY s.id ORDER BY s.id"
        )
        return [SeriesInfo(Series(a, b, c), lo / 1e9, hi / 1e9, n) for a, b, c, lo, hi, n in rows]

    def usage(self) -> dict[str, tuple[int, int]]:
        rows = self._query(
            "SELECT resolution, count(*), sum(length(record) + length(totals) + 64) FROM records GROUP BY resolution"
        )
        out = {res: (0, 0) for res in PART_S}
        out.update({r[0]: (r[1], r[2]) for r in rows})
        return out

    def version(self) -> int:
        return self._query("SELECT value FROM meta WHERE key = 'version'")[0][0]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _why(e: Exception) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)
