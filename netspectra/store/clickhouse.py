"""The ClickHouse store: a row per flow, rollups made by the server.

One client code path (clickhouse-connect) serves a real server over HTTP(S)
and chdb, the same engine in-process (tests, CI, a single host):

    clickhouse://[user:pass@]host[:port]/database   HTTP, port 8123
    clickhouses://[user:pass@]host[:port]/database  HTTPS, port 8443
    chdb:///abs/dir[?database=NAME]                 in-process, database "netspectra"

Tables, in the URL's database (created and migrated on open; docs/history.md):

  flows, epochs          raw: a row per flow of each epoch (MergeTree), a row
                         per epoch (times, totals, the sketch arrays of an
                         estimated epoch, heavy-hitter keys, task specs);
  flows_1m, flows_1h     AggregatingMergeTree fed by materialized views from
  epochs_1m, epochs_1h   flows and epochs: per series and bucket, flows summed
                         per 5-tuple, totals and Count-Min added, registers
                         maxed, heavy keys united.

An exact epoch stores no sketch (it is the sketch of its flows).  A rollup
holding exact and estimated epochs therefore keeps, per 5-tuple, the packets
and bytes that came from exact epochs apart (xpackets, xbytes, xflows): its
sketch is the sum of the estimated epochs' arrays plus the sketch of those
flows -- bit for bit snapshot.merge() of its epochs, since a flow's sketch is
additive (Count-Min) and a max over key/element pairs (SuperSpread).

Partitions follow base.PART_S (the `period` column); prune() drops whole
partitions, and with the wall clock the tables also carry a TTL on the
partition's end plus its retention (ttl_only_drop_parts), so a server drops
them even when no netspectra prunes.  Writes are idempotent: an epoch that is
in `epochs` is a duplicate, and every insert carries a deduplication token per
(series, start, table), so a write retried after a failure half-way (flows
in, epoch row not) does not count its flows twice, in the rollups either.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
import struct
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from .. import abi, analysis
from ..sketch import SketchSet
from ..snapshot import EpochSnapshot, Origin, derive, layout_fingerprint
from ..tasks import layout as make_layout
from ..tasks import specs_from_json, specs_to_json
from .base import PART_S, RESOLUTIONS, Series, SeriesInfo, Store, StoreError, Totals, bucket, expired_before, partition

SCHEMA = 1
DEFAULT_DATABASE = "netspectra"
MIN_SERVER = (22, 4)
DEDUP_WINDOW = 10_000  # insert blocks remembered per table (non_replicated_deduplication_window)
USAGE_MAX_AGE_S = 60.0  # usage() is re-measured after a change, or once this old
_SUFFIX = {"raw": "", "1m": "_1m", "1h": "_1h"}
_NS = 1_000_000_000
_DT_MAX = 4_294_967_295  # the last second a DateTime holds (2106)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_HEAVY = 4 + abi.KEY.itemsize  # a heavy-hitter key as stored: task index (u32 LE) + abi.KEY

# A flow row as RowBinary, after the series' three strings.
_FLOW_ROW = [("start_ns", "<i8"), ("period", "<i8"), ("exact", "u1"), ("src", "u1", 16), ("dst", "u1", 16),
             ("sport", "<u2"), ("dport", "<u2"), ("proto", "u1"), ("packets", "<u8"), ("bytes", "<u8"),
             ("first_ns", "<u8"), ("last_ns", "<u8"), ("tcp_flags", "u1"), ("icmp_type", "u1"), ("icmp_code", "u1")]  # fmt: skip
_FLOW_COLS = [f[0] for f in _FLOW_ROW]
# Flows as read back (RowBinary of the SELECTs in _flows): the 5-tuple columns
# are, byte for byte, the first 37 bytes of abi.KEY, and the counters those of
# analysis.FLOW_RECORD after the key; a rollup's add what came from exact epochs.
_FLOW_IN = np.dtype([("start_ns", "<i8"), ("tuple", "u1", 37), ("rest", "u1", 35)])
_ROLLUP_FLOW_IN = np.dtype(_FLOW_IN.descr + [("xpackets", "<u8"), ("xbytes", "<u8"), ("xflows", "<u8")])
_FLOW_VALUES = "packets, bytes, first_ns, last_ns, tcp_flags, icmp_type, icmp_code"
assert analysis.FLOW_RECORD.names[1:] == tuple(_FLOW_VALUES.split(", ")) and analysis.FLOW_RECORD.itemsize == 40 + 35
assert abi.KEY.fields["proto"][1] == 36 and abi.KEY.fields["pad"][1] == 37


# --- schema ------------------------------------------------------------------------------

_SERIES_COLS = """
  sensor LowCardinality(String),
  interface LowCardinality(String),
  layout LowCardinality(String),
  start_ns Int64 CODEC(DoubleDelta, ZSTD(1)),
  period Int64 CODEC(DoubleDelta, ZSTD(1)),"""
_TUPLE_COLS = """
  src IPv6 CODEC(ZSTD(1)),
  dst IPv6 CODEC(ZSTD(1)),
  sport UInt16,
  dport UInt16,
  proto UInt8,"""
_KEY = "sensor, interface, layout, start_ns"
_TUPLE = "src, dst, sport, dport, proto"


def _settings(granularity: int = 8192) -> str:
    return (
        f"SETTINGS index_granularity = {granularity}, ttl_only_drop_parts = 1,"
        f" non_replicated_deduplication_window = {DEDUP_WINDOW}"
    )


def _ddl(db: str) -> list[str]:
    """Schema 1: every table and view, in creation order."""
    out = [
        f"""CREATE TABLE IF NOT EXISTS {db}.flows ({_SERIES_COLS}
  exact UInt8,  -- the flow belongs to an exact epoch{_TUPLE_COLS}
  packets UInt64 CODEC(T64, ZSTD(1)),
  bytes UInt64 CODEC(T64, ZSTD(1)),
  first_ns UInt64 CODEC(Delta, ZSTD(1)),
  last_ns UInt64 CODEC(Delta, ZSTD(1)),
  tcp_flags UInt8,
  icmp_type UInt8,
  icmp_code UInt8
) ENGINE = MergeTree PARTITION BY period ORDER BY ({_KEY}, {_TUPLE}) {_settings()}""",
        f"""CREATE TABLE IF NOT EXISTS {db}.epochs ({_SERIES_COLS}
  start Float64,
  end Float64,
  seq UInt64,
  boot LowCardinality(String),
  exact UInt8,
  flows UInt64,
  candidates UInt64,
  table_fill Float64,
  processing_s Float64,
  totals Array(UInt64),  -- (NCOUNTERS, 2) row-major: packets, bytes
  cm Array(UInt64) CODEC(ZSTD(3)),  -- Count-Min (packets, bytes) cells; empty for an exact epoch
  ss Array(UInt8) CODEC(ZSTD(3)),  -- SuperSpread registers; empty for an exact epoch
  heavy Array(FixedString({_HEAVY})),  -- heavy-hitter keys: task index (u32 LE) + 40-byte key
  tasks LowCardinality(String),  -- the task specs (JSON): the layout
  ver UInt64  -- store version at the write (version())
) ENGINE = MergeTree PARTITION BY period ORDER BY ({_KEY}) {_settings(256)}""",
    ]
    for res in ("1m", "1h"):
        step, part = RESOLUTIONS[res] * _NS, PART_S[res] * _NS
        out += [
            f"""CREATE TABLE IF NOT EXISTS {db}.flows_{res} ({_SERIES_COLS}{_TUPLE_COLS}
  packets SimpleAggregateFunction(sum, UInt64),
  bytes SimpleAggregateFunction(sum, UInt64),
  first_ns SimpleAggregateFunction(min, UInt64),
  last_ns SimpleAggregateFunction(max, UInt64),
  tcp_flags SimpleAggregateFunction(groupBitOr, UInt8),
  icmp AggregateFunction(argMin, UInt16, Int64),  -- type << 8 | code of the earliest epoch
  xpackets SimpleAggregateFunction(sum, UInt64),  -- of these, from exact epochs
  xbytes SimpleAggregateFunction(sum, UInt64),
  xflows SimpleAggregateFunction(sum, UInt64)  -- rows from exact epochs
) ENGINE = AggregatingMergeTree PARTITION BY period ORDER BY ({_KEY}, {_TUPLE}) {_settings()}""",
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flows_{res}_mv TO {db}.flows_{res} AS
SELECT sensor, interface, layout, b AS start_ns, intDiv(b, {part}) AS period, {_TUPLE},
  sum(p) AS packets, sum(y) AS bytes, min(f) AS first_ns, max(l) AS last_ns, groupBitOr(t) AS tcp_flags,
  argMinState(i, e) AS icmp, sum(if(x = 1, p, 0)) AS xpackets, sum(if(x = 1, y, 0)) AS xbytes,
  toUInt64(sum(x)) AS xflows
FROM (SELECT sensor, interface, layout, intDiv(start_ns, {step}) * {step} AS b, start_ns AS e, exact AS x,
        {_TUPLE}, packets AS p, bytes AS y, first_ns AS f, last_ns AS l, tcp_flags AS t,
        bitOr(bitShiftLeft(toUInt16(icmp_type), 8), toUInt16(icmp_code)) AS i
      FROM {db}.flows)
GROUP BY sensor, interface, layout, b, {_TUPLE}""",
            f"""CREATE TABLE IF NOT EXISTS {db}.epochs_{res} ({_SERIES_COLS}
  epochs SimpleAggregateFunction(sum, UInt64),
  start SimpleAggregateFunction(min, Float64),
  end SimpleAggregateFunction(max, Float64),
  seq AggregateFunction(argMin, UInt64, Int64),  -- of the earliest epoch
  boot_min SimpleAggregateFunction(min, String),
  boot_max SimpleAggregateFunction(max, String),
  exact SimpleAggregateFunction(min, UInt8),
  flows SimpleAggregateFunction(sum, UInt64),
  candidates SimpleAggregateFunction(sum, UInt64),
  totals AggregateFunction(sumForEach, Array(UInt64)),
  cm AggregateFunction(sumForEach, Array(UInt64)),  -- of the estimated epochs only
  ss AggregateFunction(maxForEach, Array(UInt8)),
  heavy SimpleAggregateFunction(groupUniqArrayArray, Array(FixedString({_HEAVY}))),
  tasks SimpleAggregateFunction(any, String)
) ENGINE = AggregatingMergeTree PARTITION BY period ORDER BY ({_KEY}) {_settings(256)}""",
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.epochs_{res}_mv TO {db}.epochs_{res} AS
SELECT sensor, interface, layout, b AS start_ns, intDiv(b, {part}) AS period,
  toUInt64(count()) AS epochs, min(s0) AS start, max(s1) AS end, argMinState(q, e) AS seq,
  min(o) AS boot_min, max(o) AS boot_max, min(x) AS exact, sum(n) AS flows, sum(c) AS candidates,
  sumForEachState(tt) AS totals, sumForEachState(k) AS cm, maxForEachState(r) AS ss,
  groupUniqArrayArray(h) AS heavy, any(j) AS tasks
FROM (SELECT sensor, interface, layout, intDiv(start_ns, {step}) * {step} AS b, start_ns AS e,
        start AS s0, end AS s1, seq AS q, toString(boot) AS o, exact AS x, flows AS n, candidates AS c,
        totals AS tt, cm AS k, ss AS r, heavy AS h, toString(tasks) AS j
      FROM {db}.epochs)
GROUP BY sensor, interface, layout, b""",
        ]
    out += [
        f"""CREATE TABLE IF NOT EXISTS {db}.changes (
  ver UInt64,
  what LowCardinality(String),
  at DateTime
) ENGINE = MergeTree ORDER BY ver
TTL at + INTERVAL 30 DAY SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}""",
        f"""CREATE TABLE IF NOT EXISTS {db}.settings (
  key String,
  value String,
  ver UInt64
) ENGINE = ReplacingMergeTree(ver) ORDER BY key SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}""",
    ]
    return out


def _tables(res: str) -> tuple[str, str]:
    """(flows table, epochs table) of a resolution."""
    return f"flows{_SUFFIX[res]}", f"epochs{_SUFFIX[res]}"


DATA_TABLES = tuple(t for res in RESOLUTIONS for t in _tables(res))


def _ttl(res: str, retention_s: float) -> str:
    """A partition expires once its end is older than the resolution's retention."""
    keep = math.ceil(retention_s)
    return f"toDateTime(least((period + 1) * {PART_S[res]} + {keep}, {_DT_MAX}))"


# --- RowBinary -----------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return _varint(len(b)) + b


def _array(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    return _varint(len(a)) + a.tobytes()


_SCALARS = {"Int64": "<q", "UInt64": "<Q", "UInt8": "<B", "Float64": "<d"}
_ARRAYS = {
    "Array(UInt64)": np.dtype("<u8"),
    "Array(UInt8)": np.dtype("u1"),
    f"Array(FixedString({_HEAVY}))": np.dtype([("task", "<u4"), ("key", abi.KEY)]),
}


class _Rows:
    """A cursor over RowBinary bytes."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def fixed(self, fmt: str):
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def varint(self) -> int:
        n = shift = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def string(self) -> str:
        n = self.varint()
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        return s.decode()

    def value(self, typ: str):
        """A value of a ClickHouse type (those of _RECORD)."""
        if typ in _SCALARS:
            return self.fixed(_SCALARS[typ])
        if typ == "String":
            return self.string()
        return self.array(_ARRAYS[typ])

    def array(self, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = self.varint()
        a = np.frombuffer(self.data, dtype, n, self.pos).copy()
        self.pos += n * dtype.itemsize
        return a


# --- URLs ------------------------------------------------------------------------------


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _public(url: str) -> str:
    from . import describe

    return describe(url)


def _one_line(e: BaseException) -> str:
    """The reason in an exception of the client: the server's, or the socket's."""
    text = str(e).strip() or type(e).__name__
    # the server: "... Code: 81. DB::Exception: Database x does not exist. (UNKNOWN_DATABASE) (version ...)"
    m = re.search(r"Code: \d+\. DB::Exception: (.*)", text)
    if m:
        line = re.sub(r"\s*\(version [^)]*\)\s*$", "", m.group(1).strip())
    else:  # the connection: "... Failed to establish a new connection: [Errno 111] Connection refused"))"
        m = re.search(r"\[Errno -?\d+\] ([^\"')]+)", text)
        if m:
            line = m.group(1).strip()
        elif "timed out" in text.lower():
            line = "timed out"
        else:
            line = text.splitlines()[0].strip()
    return line[:300]


def _connect(url: str):
    """(clickhouse-connect client, database) of a store URL; raises StoreError."""
    shown = _public(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if scheme == "chdb":
        if parts.netloc or not parts.path.startswith("/"):
            raise StoreError(f"{shown}: chdb:// takes an absolute directory, as in chdb:///var/lib/netspectra/ch")
        unknown = set(query) - {"database"}
        database = query.get("database") or DEFAULT_DATABASE
    else:
        unknown = set(query) - {"verify", "ca_cert", "connect_timeout"}
        database = unquote(parts.path.strip("/")) or DEFAULT_DATABASE
    if unknown:
        raise StoreError(f"{shown}: unknown URL parameter {sorted(unknown)[0]}")
    if not _NAME.match(database):
        raise StoreError(f"{shown}: {database!r} is not a database name (letters, digits, _)")
    if not _have("clickhouse_connect"):
        raise StoreError(f"{scheme}:// needs the clickhouse-connect package (pip install 'netspectra[clickhouse]')")
    if scheme == "chdb" and not _have("chdb"):
        raise StoreError("chdb:// needs the chdb package (pip install chdb)")
    import clickhouse_connect

    try:
        if scheme == "chdb":
            client = clickhouse_connect.get_client(interface="chdb", path=unquote(parts.path))
        else:
            secure = scheme == "clickhouses"
            try:
                port = parts.port
            except ValueError:
                raise StoreError(f"{shown}: the port is not a number") from None
            kw = {}
            if "verify" in query:
                kw["verify"] = query["verify"].lower() not in ("0", "false", "no", "off")
            if "ca_cert" in query:
                kw["ca_cert"] = query["ca_cert"]
            client = clickhouse_connect.get_client(
                host=parts.hostname or "localhost",
                port=port or (8443 if secure else 8123),
                username=unquote(parts.username) if parts.username else "default",
                password=unquote(parts.password) if parts.password else "",
                secure=secure,
                connect_timeout=float(query.get("connect_timeout", 10)),
                send_receive_timeout=300,
                autogenerate_session_id=False,  # readers and the writer share the client
                client_name="netspectra",
                **kw,
            )
    except StoreError:
        raise
    except Exception as e:
        raise StoreError(f"cannot open the store {shown}: {_one_line(e)}") from None
    version = tuple(int(x) for x in re.findall(r"\d+", str(client.server_version))[:2])
    if version and version < MIN_SERVER:
        client.close()
        raise StoreError(
            f"{shown}: ClickHouse {client.server_version} is too old (netspectra needs {MIN_SERVER[0]}.{MIN_SERVER[1]}+)"
        )
    return client, database


# --- the store -------------------------------------------------------------------------


def _ns(t: float) -> int:
    return int(round(t * 1e9))


def _json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


class ClickHouseStore(Store):
    def __init__(self, url: str, retention: dict[str, float], clock=time.time, ttl: bool | None = None):
        """ttl: True puts the retention into the tables as TTL (the server then
        drops expired partitions by its own clock, and hides their rows), False
        takes it out; None (default) is True with the wall clock and otherwise
        leaves the tables as they are (a new database gets none): a store given
        another clock (tests, `analyze --store` of old captures) must not have
        its epochs expired by the server's clock, nor undo a sensor's TTL."""
        self.url = url
        self.shown = _public(url)
        self.clock = clock
        self.retention = dict(retention)
        self.ttl = True if ttl is None and clock is time.time else ttl
        self._lock = threading.Lock()  # the version counter and caches
        self._layouts: dict[str, object] = {}
        self._usage: tuple[int, float, dict] | None = None
        self._closed = False
        self._client, self.database = _connect(url)
        self.db = f"`{self.database}`"
        self._ver = 0
        try:
            self._migrate()
            self._sync_ttl()
            self._ver = self.version()
        except StoreError as e:
            self._client.close()
            raise StoreError(f"cannot open the store {self.shown}: {str(e).split(': ', 1)[-1]}") from None

    # --- the client, with every error as one StoreError line

    def _call(self, fn, *args, **kw):
        if self._closed:
            raise StoreError(f"{self.shown}: the store is closed")
        try:
            return fn(*args, **kw)
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"{self.shown}: {_one_line(e)}") from None

    def _command(self, sql: str, params: dict | None = None, settings: dict | None = None):
        return self._call(self._client.command, sql, parameters=params, settings=settings)

    def _raw(self, sql: str, params: dict | None = None) -> bytes:
        return self._call(self._client.raw_query, sql, parameters=params, fmt="RowBinary")

    def _scalar(self, sql: str, params: dict | None = None):
        rows = self._call(self._client.query, sql, parameters=params).result_rows
        return rows[0][0] if rows else None

    def _insert(self, table: str, columns: list[str], data: bytes, token: str) -> None:
        settings = {
            "insert_deduplicate": 1,
            "insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
        }
        compression = None
        if self.url.split("://", 1)[0].lower() != "chdb" and len(data) > 65536:
            import zstandard

            data, compression = zstandard.ZstdCompressor(level=1).compress(data), "zstd"
        self._call(
            self._client.raw_insert,
            f"{self.db}.{table}",
            columns,
            data,
            settings=settings,
            fmt="RowBinary",
            compression=compression,
        )

    # --- schema

    def _migrate(self) -> None:
        exists = self._scalar("SELECT count() FROM system.databases WHERE name = {d:String}", {"d": self.database})
        if not exists:
            self._command(f"CREATE DATABASE IF NOT EXISTS {self.db}")
        self._command(
            f"CREATE TABLE IF NOT EXISTS {self.db}.schema_version (version UInt32, applied DateTime DEFAULT now(),"
            f" netspectra String DEFAULT '') ENGINE = MergeTree ORDER BY version"
        )
        current = int(self._scalar(f"SELECT max(version) FROM {self.db}.schema_version") or 0)
        if current > SCHEMA:
            raise StoreError(f"{self.shown}: written by a newer netspectra (schema {current}, this one knows {SCHEMA})")
        if current < 1:
            for sql in _ddl(self.db):
                self._command(sql)
            self._command(f"INSERT INTO {self.db}.schema_version (version) VALUES (1)")

    def _setting(self, key: str) -> str | None:
        return self._scalar(f"SELECT value FROM {self.db}.settings FINAL WHERE key = {{k:String}}", {"k": key})

    def _sync_ttl(self) -> None:
        """TTL clauses as wanted (retention, or none): ALTERed only when they changed."""
        if self.ttl is None:
            return
        want = _json({res: math.ceil(self.retention[res]) for res in RESOLUTIONS}) if self.ttl else "off"
        have = self._setting("ttl") or "off"
        if want == have:
            return
        for res in RESOLUTIONS:
            for table in _tables(res):
                if self.ttl:
                    self._command(
                        f"ALTER TABLE {self.db}.{table} MODIFY TTL {_ttl(res, self.retention[res])}",
                        settings={"materialize_ttl_after_modify": 0},
                    )
                elif have != "off":
                    self._command(f"ALTER TABLE {self.db}.{table} REMOVE TTL")
        self._command(
            f"INSERT INTO {self.db}.settings (key, value, ver) VALUES ('ttl', {{v:String}}, {{n:UInt64}})",
            {"v": want, "n": time.time_ns()},
        )

    # --- writing (one thread)

    def _next_ver(self) -> int:
        with self._lock:
            self._ver = max(self._ver + 1, time.time_ns())
            return self._ver

    def _where(self, s: Series) -> tuple[str, dict]:
        return (
            "sensor = {s:String} AND interface = {i:String} AND layout = {l:String}",
            {"s": s.sensor, "i": s.interface, "l": s.layout},
        )

    def write(self, snap: EpochSnapshot, record: bytes | None = None) -> str:  # a row per flow: no record kept
        s = Series.of(snap)
        if partition(snap.start, "raw") < expired_before(self.clock(), "raw", self.retention["raw"]):
            return "expired"
        start_ns = _ns(snap.start)
        where, params = self._where(s)
        if self._scalar(
            f"SELECT count() FROM {self.db}.epochs WHERE {where} AND start_ns = {{t:Int64}}", {**params, "t": start_ns}
        ):
            return "duplicate"
        period = partition(start_ns / 1e9, "raw")
        token = hashlib.sha256(_json([s.sensor, s.interface, s.layout, start_ns]).encode()).hexdigest()[:32]
        series = _string(s.sensor) + _string(s.interface) + _string(s.layout)
        fl = snap.flows
        if len(fl):
            self._insert("flows", ["sensor", "interface", "layout", *_FLOW_COLS],
                         self._flow_rows(series, start_ns, period, snap.exact, fl), f"{token}:flows")  # fmt: skip
        self._insert("epochs", _EPOCH_COLS, series + self._epoch_row(snap, start_ns, period), f"{token}:epochs")
        return "written"

    @staticmethod
    def _flow_rows(series: bytes, start_ns: int, period: int, exact: bool, fl: np.ndarray) -> bytes:
        dt = np.dtype([("series", f"V{len(series)}"), *_FLOW_ROW])
        rows = np.zeros(len(fl), dt)
        rows["series"] = np.frombuffer(series, f"V{len(series)}")[0]
        rows["start_ns"], rows["period"], rows["exact"] = start_ns, period, int(exact)
        k = fl["key"]
        for f in ("src", "dst", "sport", "dport", "proto"):
            rows[f] = k[f]
        for f in ("packets", "bytes", "first_ns", "last_ns", "tcp_flags", "icmp_type", "icmp_code"):
            rows[f] = fl[f]
        return rows.tobytes()

    def _epoch_row(self, snap: EpochSnapshot, start_ns: int, period: int) -> bytes:
        lay = snap.sketch.layout
        heavy = [(lay.by_name(n).index, h.keys) for n, h in snap.heavy.items() if len(h.keys)]
        hk = np.zeros(sum(len(k) for _, k in heavy), [("task", "<u4"), ("key", abi.KEY)])
        i = 0
        for task, keys in heavy:
            hk["task"][i : i + len(keys)], hk["key"][i : i + len(keys)] = task, keys
            i += len(keys)
        if snap.exact:
            cm, ss = np.zeros(0, "<u8"), np.zeros(0, "u1")
        else:
            cm, ss = snap.sketch.cm.view("<u8").reshape(-1), snap.sketch.ss
        return b"".join(
            [
                struct.pack("<qqddQ", start_ns, period, snap.start, snap.end, snap.seq),
                _string(snap.origin.boot),
                struct.pack(
                    "<BQQdd", int(snap.exact), len(snap.flows), snap.candidates, snap.table_fill, snap.processing_s
                ),  # fmt: skip
                _array(snap.totals.astype("<u8").reshape(-1)),
                _array(cm),
                _array(ss),
                _varint(len(hk)) + hk.tobytes(),
                _string(_json(specs_to_json(t.spec for t in lay.tasks))),
                struct.pack("<Q", self._next_ver()),
            ]
        )

    def prune(self, now: float) -> dict[str, int]:
        out = {}
        for res in RESOLUTIONS:
            cut = expired_before(now, res, self.retention[res])
            flows, epochs = _tables(res)
            rows = self._call(
                self._client.query,
                "SELECT DISTINCT table, partition FROM system.parts WHERE database = {d:String}"
                " AND table IN ({a:String}, {b:String}) AND active",
                parameters={"d": self.database, "a": flows, "b": epochs},
            ).result_rows
            gone = sorted({(t, p) for t, p in rows if int(p) < cut})
            out[res] = 0
            if not gone:
                continue
            out[res] = int(
                self._scalar(
                    f"SELECT count() FROM (SELECT 1 FROM {self.db}.{epochs} WHERE period < {{c:Int64}}"
                    f" GROUP BY {_KEY})",
                    {"c": cut},
                )
            )
            for table, p in gone:
                self._command(f"ALTER TABLE {self.db}.{table} DROP PARTITION {int(p)}")
        if any(out.values()):
            self._command(
                f"INSERT INTO {self.db}.changes (ver, what, at) VALUES ({{v:UInt64}}, 'prune', now())",
                {"v": self._next_ver()},
            )
        return out

    # --- reading (any thread)

    def _layout(self, tasks: str):
        lay = self._layouts.get(tasks)
        if lay is None:
            try:
                lay = make_layout(specs_from_json(json.loads(tasks)))
            except ValueError as e:
                raise StoreError(f"{self.shown}: stored task specs do not parse ({e})") from None
            self._layouts[tasks] = lay
        return lay

    def _epochs(self, s: Series, res: str, since: float, until: float, full: bool = True) -> list[dict]:
        """The records starting in [bucket(since), until), oldest first: every
        column of _RECORD (or, full=False, only times and totals)."""
        where, params = self._where(s)
        params |= {"a": _ns(bucket(since, res)), "b": _ns(until)}
        cols = [c for c in _RECORD if full or c[0] in ("start_ns", "start", "end", "totals")]
        exprs = ", ".join(f"CAST({raw if res == 'raw' else rollup}, '{t}')" for _, raw, rollup, t in cols)
        _, table = _tables(res)
        data = self._raw(
            f"SELECT {exprs} FROM {self.db}.{table} WHERE {where} AND start_ns >= {{a:Int64}} AND start_ns < {{b:Int64}}"
            + (" ORDER BY start_ns" if res == "raw" else " GROUP BY start_ns ORDER BY start_ns"),
            params,
        )
        r, out = _Rows(data), []
        while r.more():
            out.append({name: r.value(t) for name, _, _, t in cols})
        return out

    def _flows(self, s: Series, res: str, lo: int, hi: int) -> np.ndarray:
        """Flows of the records starting in [lo, hi] ns, by start_ns (_FLOW_IN or _ROLLUP_FLOW_IN)."""
        where, params = self._where(s)
        params |= {"a": lo, "b": hi}
        table, _ = _tables(res)
        cond = f"{where} AND start_ns >= {{a:Int64}} AND start_ns <= {{b:Int64}}"
        if res == "raw":
            sql = f"SELECT start_ns, {_TUPLE}, {_FLOW_VALUES} FROM {self.db}.{table} WHERE {cond} ORDER BY start_ns"
            return np.frombuffer(self._raw(sql, params), _FLOW_IN)
        sql = (
            f"SELECT start_ns, {_TUPLE}, toUInt64(sum(packets)), toUInt64(sum(bytes)), toUInt64(min(first_ns)),"
            " toUInt64(max(last_ns)), toUInt8(groupBitOr(tcp_flags)), toUInt8(bitShiftRight(argMinMerge(icmp), 8)),"
            " toUInt8(bitAnd(argMinMerge(icmp), 255)), toUInt64(sum(xpackets)), toUInt64(sum(xbytes)),"
            f" toUInt64(sum(xflows)) FROM {self.db}.{table} WHERE {cond} GROUP BY start_ns, {_TUPLE} ORDER BY start_ns"
        )
        return np.frombuffer(self._raw(sql, params), _ROLLUP_FLOW_IN)

    @staticmethod
    def _records(rows: np.ndarray) -> np.ndarray:
        fl = np.zeros(len(rows), analysis.FLOW_RECORD)
        b = fl.view(np.uint8).reshape(len(fl), analysis.FLOW_RECORD.itemsize)
        b[:, :37] = rows["tuple"]
        b[:, 40:] = rows["rest"]
        return fl

    def read(self, series: Series, resolution: str, since: float, until: float) -> list[EpochSnapshot]:
        recs = self._epochs(series, resolution, since, until)
        if not recs:
            return []
        rows = self._flows(series, resolution, recs[0]["start_ns"], recs[-1]["start_ns"])
        starts = rows["start_ns"]
        out = []
        for rec in recs:
            lo, hi = np.searchsorted(starts, rec["start_ns"], "left"), np.searchsorted(starts, rec["start_ns"], "right")
            out.append(self._snapshot(series, resolution, rec, rows[lo:hi]))
        return out

    def _snapshot(self, s: Series, res: str, rec: dict, rows: np.ndarray) -> EpochSnapshot:
        lay = self._layout(rec["tasks"])
        if s.layout and s.layout != layout_fingerprint(lay):
            raise StoreError(f"{self.shown}: the stored tasks of {s} do not match its layout fingerprint")
        flows = self._records(rows)
        totals = rec["totals"].reshape(abi.NCOUNTERS, 2)
        try:
            if rec["exact"]:
                sketch = SketchSet.of_flows(lay, flows)
            else:
                sketch = SketchSet(lay, rec["cm"].view(abi.COUNTER), rec["ss"])
                if res != "raw":  # the exact epochs' share: the sketch of their flows
                    x = rows["xflows"] > 0
                    if x.any():
                        xf = flows[x].copy()
                        xf["packets"], xf["bytes"] = rows["xpackets"][x], rows["xbytes"][x]
                        sketch.add_flows(xf)
        except ValueError as e:
            raise StoreError(
                f"{self.shown}: the sketch of {s} at {rec['start']} does not fit its tasks ({e})"
            ) from None
        cands = None
        if len(rec["heavy"]):
            cands = np.zeros(len(rec["heavy"]), abi.CAND)
            cands["task"], cands["key"] = rec["heavy"]["task"], rec["heavy"]["key"]
        snap = derive(rec["seq"], rec["start"], rec["end"], totals, flows, sketch, cands)
        snap.candidates = rec["candidates"]
        snap.table_fill, snap.processing_s = rec["table_fill"], rec["processing_s"]
        boot = rec["boot_min"] if rec["boot_min"] == rec["boot_max"] else ""
        snap.origin = Origin(s.sensor, boot, s.interface, s.layout)
        return snap

    def totals(self, series: Series, resolution: str, since: float, until: float) -> Totals:
        recs = self._epochs(series, resolution, since, until, full=False)
        tot = np.zeros((abi.NCOUNTERS, 2), np.uint64)
        for r in recs:
            tot += r["totals"].reshape(abi.NCOUNTERS, 2)
        if not recs:
            return Totals(0, tot, 0.0, 0.0)
        first = recs[0]["start"] if resolution == "raw" else recs[0]["start_ns"] / 1e9
        return Totals(len(recs), tot, first, max(r["end"] for r in recs))

    def series(self) -> list[SeriesInfo]:
        rows = self._call(
            self._client.query,
            "SELECT toString(sensor), toString(interface), toString(layout), min(start), max(end), count()"
            f" FROM {self.db}.epochs GROUP BY sensor, interface, layout ORDER BY min(start), sensor, interface, layout",
        ).result_rows
        return [SeriesInfo(Series(a, b, c), float(lo), float(hi), int(n)) for a, b, c, lo, hi, n in rows]

    def usage(self) -> dict[str, tuple[int, int]]:
        """Records per resolution and the compressed bytes of their tables'
        active parts.  Background merges change those bytes without changing
        any record, so the figure is measured again only after a write or a
        prune (version()), or once USAGE_MAX_AGE_S old."""
        ver = self.version()
        with self._lock:
            cached = self._usage
        if cached is not None and cached[0] == ver and time.monotonic() - cached[1] < USAGE_MAX_AGE_S:
            return dict(cached[2])
        size = dict(
            self._call(
                self._client.query,
                "SELECT table, sum(data_compressed_bytes) FROM system.parts WHERE database = {d:String} AND active"
                " GROUP BY table",
                parameters={"d": self.database},
            ).result_rows
        )
        out = {}
        for res in RESOLUTIONS:
            flows, epochs = _tables(res)
            n = self._scalar(f"SELECT count() FROM (SELECT 1 FROM {self.db}.{epochs} GROUP BY {_KEY})")
            out[res] = (int(n), int(size.get(flows, 0)) + int(size.get(epochs, 0)))
        with self._lock:
            self._usage = (ver, time.monotonic(), out)
        return dict(out)

    def version(self) -> int:
        v = self._scalar(
            f"SELECT greatest((SELECT max(ver) FROM {self.db}.epochs), (SELECT max(ver) FROM {self.db}.changes))"
        )
        return int(v or 0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._client.close()
            except Exception:
                pass


_EPOCH_COLS = ["sensor", "interface", "layout", "start_ns", "period", "start", "end", "seq", "boot", "exact", "flows",
               "candidates", "table_fill", "processing_s", "totals", "cm", "ss", "heavy", "tasks", "ver"]  # fmt: skip
# A record as read(): (name, from a raw epoch row, from a rollup's rows (GROUP BY start_ns), type)
_RECORD = [
    ("start_ns", "start_ns", "start_ns", "Int64"),  # the epoch's, or the bucket's
    ("start", "start", "min(start)", "Float64"),
    ("end", "end", "max(end)", "Float64"),
    ("seq", "seq", "argMinMerge(seq)", "UInt64"),
    ("boot_min", "boot", "min(boot_min)", "String"),
    ("boot_max", "boot", "max(boot_max)", "String"),
    ("exact", "exact", "min(exact)", "UInt8"),
    ("candidates", "candidates", "sum(candidates)", "UInt64"),
    ("table_fill", "table_fill", "0", "Float64"),
    ("processing_s", "processing_s", "0", "Float64"),
    ("epochs", "1", "sum(epochs)", "UInt64"),
    ("totals", "totals", "sumForEachMerge(totals)", "Array(UInt64)"),
    ("cm", "cm", "sumForEachMerge(cm)", "Array(UInt64)"),
    ("ss", "ss", "maxForEachMerge(ss)", "Array(UInt8)"),
    ("heavy", "heavy", "groupUniqArrayArray(heavy)", f"Array(FixedString({_HEAVY}))"),
    ("tasks", "tasks", "any(tasks)", "String"),
]
