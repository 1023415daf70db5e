"""The embedded store: one SQLite file (WAL, one writer, readers alongside).

Each record is a row of small columns (times, totals, flow count) and the
epoch's codec record: flows as compressed columns, not a row per flow.  A row
per flow writes about 100,000 flows/s here; a record per epoch about 380,000
(bench/store.py: 100k-flow epochs, both rollups included), ten times what a
sensor at 100,000 flows per 5 s epoch produces, twice over.

Rollups are merged in the same transaction as the epoch, so a crash leaves
either both or neither, and stored underived (merge(derived=False): heavy
hitters and spreaders are derived when read, not at every epoch).  Each
epoch rewrites its minute's 1m record; the minute joins its hour's 1h record
only once, when the series' next minute begins (the `pending` table names
the one minute per series not yet in its hour; a 1h read adds it).  So an
epoch costs one rollup rewrite, not two.  The open rollups stay decoded in
memory between epochs.
Durability: WAL with synchronous=NORMAL survives a killed process (a
committed epoch is never lost); a power cut may lose the last transactions,
never the file.
"""

from __future__ import annotations

import dataclasses
import itertools
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
    RESOLUTIONS,
    Series,
    SeriesInfo,
    Store,
    StoreError,
    Totals,
    bucket,
    expired_before,
    partition,
)

SCHEMA = 2  # 2: the pending table (schema 1 files have none pending: they open as they are)
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
-- per series, the 1m record not yet merged into its 1h record (the newest minute)
CREATE TABLE IF NOT EXISTS pending (series INTEGER PRIMARY KEY, start_ns INTEGER NOT NULL);
"""


def _ns(t: float) -> int:
    return int(round(t * 1e9))


def _hour(minute_ns: int) -> int:
    """The 1h bucket of a 1m bucket, in integers (no float rounding at the hour)."""
    return minute_ns - minute_ns % (RESOLUTIONS["1h"] * 10**9)


class SqliteStore(Store):
    def __init__(self, path: str | os.PathLike, retention: dict[str, float], clock=time.time):
        self.path = Path(path)
        self.clock = clock
        self.url = f"sqlite://{self.path}"
        self.retention = dict(retention)
        self._local = threading.local()
        self._series: dict[Series, int] = {}
        # (series, resolution) -> (bucket ns, epochs, rollup): the open 1m (pending) and 1h records, decoded
        self._open: dict[tuple[int, str], tuple[int, int, EpochSnapshot]] = {}
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
                elif row[0] < SCHEMA:  # older readers would miss the pending minute in 1h reads
                    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA,))
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

    def write(self, snap: EpochSnapshot, record: bytes | None = None) -> str:
        """record: snap's codec record when the caller has it (as received), else encoded here."""
        s = Series.of(snap)
        start = _ns(snap.start)
        if partition(snap.start, "raw") < expired_before(self.clock(), "raw", self.retention["raw"]):
            return "expired"
        db = self._db()
        opened: dict = {}
        try:
            with db:
                sid = self._series_id(db, s)
                if db.execute(
                    "SELECT 1 FROM records WHERE series = ? AND resolution = 'raw' AND start_ns = ?", (sid, start)
                ).fetchone():
                    return "duplicate"
                record = record or codec.encode(snap)
                self._put(db, sid, "raw", start, snap, 1, record)
                m = _ns(bucket(snap.start, "1m"))
                pend = self._pending(db, sid)
                if pend is not None and m > pend[0]:  # a new minute: the pending one joins its hour
                    self._add(db, sid, "1h", _hour(pend[0]), pend[1], pend[2], None, opened)
                    db.execute("DELETE FROM pending WHERE series = ?", (sid,))
                    pend = None
                if pend is None and not self._exists(db, sid, "1m", m):  # the minute opens: pending
                    db.execute("INSERT OR REPLACE INTO pending VALUES (?, ?)", (sid, m))
                    pend = (m,)
                late = pend is None or m != pend[0]  # a minute already in its hour
                self._add(db, sid, "1m", m, 1, snap, record, opened, late)
                if late:
                    self._add(db, sid, "1h", _hour(m), 1, snap, record, opened, late)
                db.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")
        except sqlite3.Error as e:
            self._open.clear()  # what is cached may not be what is stored
            raise StoreError(f"{self.path}: {_why(e)}") from None
        self._open.update(opened)
        return "written"

    def _pending(self, db, sid: int) -> tuple[int, int, EpochSnapshot] | None:
        """The series' pending minute: (bucket ns, epochs, rollup), or None."""
        row = db.execute("SELECT start_ns FROM pending WHERE series = ?", (sid,)).fetchone()
        return None if row is None else self._rollup(db, sid, "1m", row[0])

    def _add(self, db, sid: int, res: str, b: int, n: int, snap: EpochSnapshot, record: bytes | None,
             opened: dict, late: bool = False) -> None:  # fmt: skip
        """Merge n epochs (snap) into the rollup record of bucket b; record: snap's, when it is the bucket's
        first.  Noted in opened (kept decoded after the commit) unless late, where it only replaces a copy."""
        cur = self._rollup(db, sid, res, b)
        if cur is None:  # the bucket's first epoch(s): their record as it is
            roll, total = snap, n
            record = record or codec.encode(snap)
        else:
            roll = merge([cur[2], snap], seq=cur[2].seq, origin=cur[2].origin, derived=False)
            total = cur[1] + n
            record = codec.encode(roll)
        self._put(db, sid, res, b, roll, total, record)
        cached = self._open.get((sid, res))
        if not late or (cached is not None and cached[0] == b):
            opened[(sid, res)] = (b, total, roll)

    @staticmethod
    def _exists(db, sid: int, res: str, b: int) -> bool:
        return bool(
            db.execute(
                "SELECT 1 FROM records WHERE series = ? AND resolution = ? AND start_ns = ?", (sid, res, b)
            ).fetchone()
        )

    def _rollup(self, db, sid: int, res: str, b: int) -> tuple[int, int, EpochSnapshot] | None:
        """(bucket ns, epochs, snapshot) of a rollup bucket: the cached open one, or stored."""
        cached = self._open.get((sid, res))
        if cached is not None and cached[0] == b:
            return cached
        row = db.execute(
            "SELECT epochs, record FROM records WHERE series = ? AND resolution = ? AND start_ns = ?", (sid, res, b)
        ).fetchone()
        return None if row is None else (b, row[0], codec.decode(row[1]))

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
                self._settle_pending(db, expired_before(now, "1m", self.retention["1m"]))
                for res in PART_S:
                    cut = expired_before(now, res, self.retention[res])
                    out[res] = db.execute("DELETE FROM records WHERE resolution = ? AND part < ?", (res, cut)).rowcount
                if any(out.values()):
                    db.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {_why(e)}") from None
        self._open.clear()
        return out

    def _settle_pending(self, db, cut: int) -> None:
        """A pending minute about to expire joins its hour first (its series stopped before the next minute)."""
        rows = db.execute(
            "SELECT r.series, r.start_ns, r.epochs, r.record FROM pending p JOIN records r ON r.series = p.series"
            " AND r.resolution = '1m' AND r.start_ns = p.start_ns WHERE r.part < ?",
            (cut,),
        ).fetchall()
        for sid, m, n, record in rows:
            self._add(db, sid, "1h", _hour(m), n, codec.decode(record), record, {}, late=True)
            db.execute("DELETE FROM pending WHERE series = ?", (sid,))

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
        lo, hi = _ns(bucket(since, res)), _ns(until)
        sql = f"SELECT {cols}, start_ns FROM records WHERE series = ? AND resolution = ? AND start_ns >= ? AND start_ns < ?"
        args: tuple = (sid, res, lo, hi)
        if res == "1h":  # the pending minute is part of its hour
            sql += (
                f" UNION ALL SELECT {cols}, start_ns FROM records WHERE series = ? AND resolution = '1m'"
                " AND start_ns = (SELECT start_ns FROM pending WHERE series = ?) AND start_ns >= ? AND start_ns - start_ns % ? < ?"
            )
            args += (sid, sid, lo, RESOLUTIONS["1h"] * 10**9, hi)
        return self._query(sql + " ORDER BY start_ns", args)

    def read(self, series: Series, resolution: str, since: float, until: float) -> list[EpochSnapshot]:
        rows = self._rows("record", series, resolution, since, until)
        if resolution != "1h":
            return [codec.decode(r[0]) for r in rows]
        out = []
        for _, group in itertools.groupby(rows, key=lambda r: _hour(r[1])):
            recs = [r[0] for r in group]
            if len(recs) == 1:
                out.append(codec.decode(recs[0]))
            else:  # the hour's record and its pending minute: one record of the hour
                parts = [codec.decode(r, derived=False) for r in recs]
                out.append(merge(parts, seq=parts[0].seq, origin=parts[0].origin))
        return out

    def totals(self, series: Series, resolution: str, since: float, until: float) -> Totals:
        rows = self._rows("start_ns, end_ns, totals", series, resolution, since, until)
        tot = np.zeros((abi.NCOUNTERS, 2), np.uint64)
        for r in rows:
            tot += np.frombuffer(r[2], "<u8").reshape(abi.NCOUNTERS, 2)
        if not rows:
            return Totals(0, tot, 0.0, 0.0)
        # a 1h read counts a pending minute as part of its hour
        records = len({_hour(r[0]) for r in rows}) if resolution == "1h" else len(rows)
        return Totals(records, tot, rows[0][0] / 1e9, max(r[1] for r in rows) / 1e9)

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
