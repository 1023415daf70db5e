"""The Store contract (netspectra/store/base.py), one suite for every backend:
what goes in comes back (raw and rolled up), replays change nothing,
retention drops whole partitions, and a reopened store holds what was
committed."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from netspectra import abi
from netspectra.snapshot import merge
from netspectra.store.base import PART_S, Series, StoreError, bucket, choose_resolution
from tests.helpers.stores import RETENTION, T0, same_records, series_of_epochs, unique_name

NOW = T0 + 6 * 3600


@pytest.fixture(scope="module")
def epochs():
    """30 epochs from T0 (2.5 minutes): minute buckets of 12, 12 and 6 epochs."""
    return series_of_epochs(30)


@pytest.fixture(params=["sqlite", "chdb"])
def make_store(request, tmp_path):
    """make(name=None, retention=..., clock=...) -> a Store; the same name
    opens the same store again (chdb: the same database of the session's engine)."""
    opened = []

    def make(name=None, retention=RETENTION, clock=lambda: NOW):
        name = name or unique_name()
        if request.param == "sqlite":
            from netspectra.store.sqlite import SqliteStore

            st = SqliteStore(tmp_path / f"{name}.db", retention, clock=clock)
        elif request.param == "chdb":
            from netspectra.store.clickhouse import ClickHouseStore

            st = ClickHouseStore(request.getfixturevalue("chdb_engine").url(name), retention, clock=clock)
        opened.append(st)
        return st

    yield make
    for st in opened:
        st.close()


def test_raw_epochs_come_back_as_they_went_in(make_store, epochs):
    st = make_store()
    for s in epochs:
        assert st.write(s) == "written"
    ser = Series.of(epochs[0])
    got = st.read(ser, "raw", T0, T0 + 3600)
    assert len(got) == len(epochs)
    for a, b in zip(got, epochs):
        same_records(a, b)
        assert a.origin == b.origin and a.seq == b.seq
    assert {x.exact for x in got} == {True, False}  # both kinds went through
    # a range selects by start time: [since, until)
    assert [x.seq for x in st.read(ser, "raw", T0 + 10, T0 + 30)] == [2, 3, 4, 5]


def test_rollups_are_the_merge_of_their_epochs(make_store, epochs):
    st = make_store()
    for s in epochs:
        st.write(s)
    ser = Series.of(epochs[0])
    minutes = st.read(ser, "1m", T0, T0 + 3600)
    assert [m.start for m in minutes] == [T0, T0 + 60, T0 + 120]
    for m in minutes:
        part = [s for s in epochs if bucket(s.start, "1m") == m.start]
        same_records(m, merge(part))
    (hour,) = st.read(ser, "1h", T0, T0 + 3600)
    same_records(hour, merge(epochs))
    assert not hour.exact  # one estimated epoch makes the rollup estimated


def test_a_replayed_epoch_counts_once(make_store, epochs):
    st = make_store()
    for s in epochs[:20]:
        st.write(s)
    ser = Series.of(epochs[0])
    version, usage = st.version(), st.usage()
    before = st.read(ser, "1h", T0, T0 + 3600)
    assert [st.write(s) for s in epochs[:20]] == ["duplicate"] * 20
    assert st.version() == version and st.usage() == usage
    for s in epochs[20:]:  # the rest, then everything again out of order
        st.write(s)
    assert {st.write(s) for s in reversed(epochs)} == {"duplicate"}
    (hour,) = st.read(ser, "1h", T0, T0 + 3600)
    same_records(hour, merge(epochs))
    assert int(hour.totals[abi.C["all"], 0]) == sum(int(s.totals[abi.C["all"], 0]) for s in epochs)
    assert before[0].start == hour.start


def test_epochs_written_out_of_order_roll_up_the_same(make_store, epochs):
    st = make_store()
    for s in epochs[::-1]:
        st.write(s)
    ser = Series.of(epochs[0])
    (hour,) = st.read(ser, "1h", T0, T0 + 3600)
    same_records(hour, merge(epochs))


def test_totals_without_reading_flows(make_store, epochs):
    st = make_store()
    for s in epochs:
        st.write(s)
    ser = Series.of(epochs[0])
    for res in ("raw", "1m", "1h"):
        t = st.totals(ser, res, T0, T0 + 3600)
        np.testing.assert_array_equal(t.totals, sum(s.totals.astype(np.uint64) for s in epochs))
        assert (t.start, t.end) == (T0, epochs[-1].end)
    assert st.totals(ser, "raw", T0 + 3600, T0 + 7200).records == 0


def test_series_are_kept_apart(make_store, epochs):
    st = make_store()
    other = series_of_epochs(3, sensor="s2", seed=9)
    for s in epochs[:5] + other:
        st.write(s)
    infos = {i.series.sensor: i for i in st.series()}
    assert set(infos) == {"s1", "s2"}
    assert infos["s1"].epochs == 5 and infos["s2"].epochs == 3
    assert (infos["s2"].first, infos["s2"].last) == (T0, other[-1].end)
    assert len(st.read(Series.of(other[0]), "raw", T0, T0 + 3600)) == 3
    assert st.read(Series("nobody", "eth0", "0"), "raw", T0, T0 + 3600) == []


def test_a_reopened_store_holds_what_was_committed(make_store, epochs):
    name = unique_name()
    st = make_store(name)
    for s in epochs[:13]:
        st.write(s)
    st.close()
    st = make_store(name)
    ser = Series.of(epochs[0])
    assert len(st.read(ser, "raw", T0, T0 + 3600)) == 13
    for s in epochs[13:]:  # the open minute continues where it stopped
        st.write(s)
    for m in st.read(ser, "1m", T0, T0 + 3600):
        same_records(m, merge([s for s in epochs if bucket(s.start, "1m") == m.start]))


def test_retention_drops_whole_expired_partitions(make_store):
    # raw partitions are hours: epochs in three hours, kept 2 h
    hours = [series_of_epochs(2, t0=T0 + h * 3600, seed=h) for h in range(3)]
    retention = dict(RETENTION, raw=2 * 3600.0)
    clock = [T0 + 3600]
    st = make_store(retention=retention, clock=lambda: clock[0])
    for h in hours:
        for s in h:
            assert st.write(s) == "written"
    ser = Series.of(hours[0][0])
    # the first hour is wholly older than 2 h from T0+3h on, not a second before
    assert st.prune(T0 + 3 * 3600 - 1) == {"raw": 0, "1m": 0, "1h": 0}
    assert st.prune(T0 + 3 * 3600) == {"raw": 2, "1m": 0, "1h": 0}
    assert [s.start for s in st.read(ser, "raw", T0, T0 + 4 * 3600)] == [s.start for s in hours[1] + hours[2]]
    assert len(st.read(ser, "1m", T0, T0 + 4 * 3600)) == 3  # rollups have their own retention
    # an epoch of an expired partition is not written (it would count twice in the rollups)
    clock[0] = T0 + 3 * 3600
    assert st.write(hours[0][0]) == "expired"
    assert len(st.read(ser, "1m", T0, T0 + 60)) == 1
    # rollups go by their own partitions: 1m rollups by day
    assert PART_S["1m"] == 86400
    out = st.prune(T0 + 86400 + RETENTION["1m"])
    assert out["1m"] == 3 and out["raw"] == 4 and out["1h"] == 0
    assert st.read(ser, "1m", T0, T0 + 86400) == []
    assert len(st.read(ser, "1h", T0, T0 + 86400)) == 3


def test_usage_counts_records_and_bytes(make_store, epochs):
    st = make_store()
    for s in epochs:
        st.write(s)
    u = st.usage()
    assert u["raw"][0] == 30 and u["1m"][0] == 3 and u["1h"][0] == 1
    assert all(b > 0 for _, b in u.values())


def test_choose_resolution():
    day = 86400.0
    now = T0 + 10 * day
    assert choose_resolution(now - 600, now, now, RETENTION) == "raw"  # 120 epochs
    assert choose_resolution(now - 3600, now, now, RETENTION) == "1m"  # 720 epochs: too many raw
    assert choose_resolution(now - day, now, now, RETENTION) == "1h"  # 1440 minutes: too many
    assert choose_resolution(now - 3 * day - 600, now - 3 * day, now, RETENTION) == "1m"  # raw expired
    assert choose_resolution(now - 40 * day, now - 40 * day + 600, now, RETENTION) == "1h"


def test_a_store_that_cannot_be_opened_says_why_in_one_line(tmp_path):
    from netspectra.store.sqlite import SqliteStore

    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"x" * 4096)
    with pytest.raises(StoreError, match=r"cannot open the store .*not-a-db: file is not a database") as e:
        SqliteStore(bad, RETENTION)
    assert "\n" not in str(e.value)


# --- SQLite: a minute joins its hour once ---------------------------------------------------


def test_sqlite_a_minute_joins_its_hour_once_when_the_next_begins(tmp_path):
    """Each epoch rewrites its minute; the newest minute of a series is
    pending (not yet in its hour's record) and joins the hour when the next
    minute begins, so an epoch rewrites one rollup, not two.  Reads of 1h
    include the pending minute; a reopened store, a late epoch into a minute
    already in its hour, a file of schema 1 (every minute in its hour) and
    retention of a pending minute all keep every epoch counted once."""
    import sqlite3

    from netspectra.store.sqlite import SqliteStore

    eps = series_of_epochs(40, t0=T0 + 3600 - 120)  # minutes :58 :59 | :00 :01 (12, 12, 12, 4)
    late = eps.pop(3)  # written after its minute joined its hour
    path = tmp_path / "h.db"
    st = SqliteStore(path, RETENTION, clock=lambda: NOW)
    ser = Series.of(eps[0])

    def hours(eps) -> list:
        return [[s for s in eps if bucket(s.start, "1h") == h] for h in sorted({bucket(s.start, "1h") for s in eps})]

    def check(store, eps) -> None:
        got = store.read(ser, "1h", T0, T0 + 3 * 3600)
        want = [merge(h) for h in hours(eps)]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            same_records(g, w)
        assert store.totals(ser, "1h", T0, T0 + 3 * 3600).records == len(want)
        minutes = sorted({bucket(s.start, "1m") for s in eps})
        for m, rec in zip(minutes, store.read(ser, "1m", T0, T0 + 3 * 3600), strict=True):
            same_records(rec, merge([s for s in eps if bucket(s.start, "1m") == m]))

    def stored() -> tuple[list, list]:
        db = sqlite3.connect(path)
        try:
            return (
                db.execute("SELECT start_ns FROM pending").fetchall(),
                db.execute("SELECT epochs FROM records WHERE resolution = '1h' ORDER BY start_ns").fetchall(),
            )
        finally:
            db.close()

    for s in eps[:20]:
        st.write(s)
    # minute :58 (11 epochs, one to come late) in its hour; :59 pending (9 epochs)
    assert stored() == ([(int((T0 + 3540) * 1e9),)], [(11,)])
    st.close()
    st = SqliteStore(path, RETENTION, clock=lambda: NOW)  # nothing cached: the pending minute is read back
    for s in eps[20:30]:
        st.write(s)
    assert st.write(late) == "written"  # minute :58 is in its hour already: both take it
    eps.insert(3, late)
    assert stored() == ([(int((T0 + 3600) * 1e9),)], [(24,)])  # :00 pending, its hour has no record yet
    check(st, eps[:31])
    # a file of schema 1 had every minute in its hour: settle the pending one so, and go on
    with st._db() as db:
        st._settle_pending(db, cut=2**62)
        db.execute("UPDATE meta SET value = 1 WHERE key = 'schema'")
    st.close()
    st = SqliteStore(path, RETENTION, clock=lambda: NOW)
    assert stored()[0] == [] and st._query("SELECT value FROM meta WHERE key = 'schema'") == [(2,)]
    for s in eps[31:]:
        st.write(s)
    check(st, eps)
    # retention drops the minutes: the pending one joins its hour first
    assert stored()[0] != []
    out = st.prune(T0 + 86400 * 2 + RETENTION["1m"])
    assert out["1m"] == 4 and stored()[0] == []
    got = st.read(ser, "1h", T0, T0 + 3 * 3600)
    for g, w in zip(got, [merge(h) for h in hours(eps)], strict=True):
        same_records(g, w)
    st.close()


# --- ClickHouse (on chdb: the same SQL as a server runs) ------------------------------------


@pytest.fixture
def ch_store(chdb_engine):
    """make(name=None, retention=..., **kw) -> a ClickHouseStore in the session's chdb engine."""
    from netspectra.store.clickhouse import ClickHouseStore

    opened = []

    def make(name=None, retention=RETENTION, **kw):
        kw.setdefault("clock", lambda: NOW)
        st = ClickHouseStore(chdb_engine.url(name or unique_name("ch")), retention, **kw)
        opened.append(st)
        return st

    yield make
    for st in opened:
        st.close()


def _create_queries(engine, db: str) -> dict[str, str]:
    return dict(engine.rows("SELECT name, create_table_query FROM system.tables WHERE database = {d:String}", d=db))


def _ttl_of(sql: str) -> tuple[int, int] | None:
    """(partition seconds, retention seconds) of a table's TTL clause, as the server shows it."""
    m = re.search(r"TTL toDateTime\(least\(\(\(period \+ 1\) \* (\d+)\) \+ (\d+), 4294967295\)\)", sql)
    return (int(m.group(1)), int(m.group(2))) if m else None


def test_clickhouse_schema_partitions_and_ttl(ch_store, chdb_engine):
    from netspectra.store.base import partition
    from netspectra.store.clickhouse import DATA_TABLES, SCHEMA

    # with the wall clock the schema carries the retention as TTL
    st = ch_store(clock=time.time)
    t0 = (time.time() // 3600 - 1) * 3600  # the previous hour
    for s in series_of_epochs(3, t0=t0):
        assert st.write(s) == "written"
    tables = _create_queries(chdb_engine, st.database)
    for name in ("flows_1m_mv", "flows_1h_mv", "epochs_1m_mv", "epochs_1h_mv"):
        assert tables[name].startswith("CREATE MATERIALIZED VIEW"), name
    parts = set(
        chdb_engine.rows(
            "SELECT table, partition FROM system.parts WHERE database = {d:String} AND active", d=st.database
        )
    )
    for name in DATA_TABLES:
        res = name.split("_")[1] if "_" in name else "raw"
        sql = tables[name]
        assert "PARTITION BY period" in sql and _ttl_of(sql) == (PART_S[res], RETENTION[res]), name
        assert "ttl_only_drop_parts = 1" in sql and "non_replicated_deduplication_window = 10000" in sql, name
        assert (name, str(partition(t0, res))) in parts, name
    assert "AggregatingMergeTree" in tables["epochs_1m"] and "sumForEach" in tables["epochs_1m"]
    assert chdb_engine.rows(f"SELECT max(version) FROM {st.database}.schema_version") == [(SCHEMA,)]
    # another retention is ALTERed into the TTL when the store is opened again
    st.close()
    st = ch_store(st.database, retention=dict(RETENTION, raw=3 * 86400.0), clock=time.time)
    assert _ttl_of(_create_queries(chdb_engine, st.database)["flows"]) == (3600, 3 * 86400)
    assert len(st.read(Series.of(series_of_epochs(1)[0]), "raw", t0, t0 + 3600)) == 3
    # a store with another clock (analyze --store) leaves the sensor's TTL as it is
    st.close()
    st = ch_store(st.database, retention=dict(RETENTION, raw=86400.0))
    assert _ttl_of(_create_queries(chdb_engine, st.database)["flows"]) == (3600, 3 * 86400)


def test_clickhouse_keeps_ttl_out_of_a_store_with_another_clock(ch_store, chdb_engine):
    from netspectra.store.clickhouse import DATA_TABLES

    # a store with its own clock (a replayed capture, a test) holds epochs the
    # server's clock finds expired: under a TTL they would not be read back
    old = T0 - 300 * 86400
    past = series_of_epochs(2, t0=old)
    ser = Series.of(past[0])
    for ttl in (None, True):
        st = ch_store(clock=lambda: old + 3600, ttl=ttl)
        assert [st.write(s) for s in past] == ["written"] * 2
        tables = _create_queries(chdb_engine, st.database)
        assert {_ttl_of(tables[name]) is not None for name in DATA_TABLES} == {bool(ttl)}
        assert len(st.read(ser, "raw", old, old + 3600)) == (0 if ttl else 2)


def test_clickhouse_a_write_retried_after_a_failure_counts_once(ch_store, chdb_engine, epochs):
    st = ch_store()
    real, calls = st._insert, []

    def fail_once_after(failing: str):
        """The next insert into `failing` is stored (in the table and its rollups)
        but its reply is lost: the write raises, as on a dropped connection."""

        def insert(table, columns, data, token):
            calls.append(table)
            real(table, columns, data, token)
            if table == failing and calls.count(table) == 1:
                raise StoreError(f"{st.shown}: connection reset")

        calls.clear()
        st._insert = insert

    ser = Series.of(epochs[0])
    fail_once_after("flows")
    with pytest.raises(StoreError, match="connection reset"):
        st.write(epochs[0])  # its flows are in (and in flows_1m, flows_1h), its epoch row is not
    assert st.read(ser, "raw", T0, T0 + 3600) == []
    for s in epochs:  # the retry sends the same flows again, with the same tokens
        assert st.write(s) == "written"
    assert calls[:3] == ["flows", "flows", "epochs"]
    (first,) = st.read(ser, "raw", T0, T0 + 1)
    same_records(first, epochs[0])
    for m in st.read(ser, "1m", T0, T0 + 3600):
        same_records(m, merge([s for s in epochs if bucket(s.start, "1m") == m.start]))
    (hour,) = st.read(ser, "1h", T0, T0 + 3600)
    same_records(hour, merge(epochs))
    n = chdb_engine.rows(f"SELECT count() FROM {st.database}.flows WHERE start_ns = {{t:Int64}}", t=int(T0 * 1e9))
    assert n == [(len(epochs[0].flows),)]
    # all of it stored, the reply lost: the retry finds the epoch
    later = series_of_epochs(1, t0=T0 + 600, seed=3)[0]
    fail_once_after("epochs")
    with pytest.raises(StoreError, match="connection reset"):
        st.write(later)
    assert st.write(later) == "duplicate"
    same_records(st.read(ser, "1h", T0, T0 + 3600)[0], merge([*epochs, later]))


def test_clickhouse_a_stopped_client_raises_store_error_in_one_line(ch_store, epochs):
    st = ch_store()
    st.write(epochs[0])
    st._client.close()  # as when the server goes away
    for call in (lambda: st.write(epochs[1]), lambda: st.read(Series.of(epochs[0]), "raw", T0, T0 + 60), st.version):
        with pytest.raises(StoreError) as e:
            call()
        assert "\n" not in str(e.value) and str(e.value).startswith(st.shown)
    st.close()
    with pytest.raises(StoreError, match="the store is closed"):
        st.usage()


def test_clickhouse_urls_that_cannot_be_opened_say_why_in_one_line(ch_store, monkeypatch):
    from netspectra.store import clickhouse
    from netspectra.store.clickhouse import ClickHouseStore

    cases = {
        "clickhouse://ns:s3cret@127.0.0.1:1/history": r"^cannot open the store clickhouse://127\.0\.0\.1:1/history: ",
        "chdb://relative/dir": "takes an absolute directory",
        "chdb:///tmp/x?database=no-dash": "is not a database name",
        "clickhouse://127.0.0.1:1/db?pool=9": "unknown URL parameter pool",
    }
    for url, why in cases.items():
        with pytest.raises(StoreError, match=why) as e:
            ClickHouseStore(url, RETENTION)
        assert "\n" not in str(e.value) and "s3cret" not in str(e.value)
    monkeypatch.setattr(clickhouse, "_have", lambda module: module != "chdb")
    with pytest.raises(StoreError, match=r"^chdb:// needs the chdb package \(pip install chdb\)$"):
        ClickHouseStore("chdb:///tmp/x", RETENTION)


def test_clickhouse_refuses_a_newer_schema(ch_store, chdb_engine):
    st = ch_store()
    st.close()
    chdb_engine.client.command(f"INSERT INTO {st.database}.schema_version (version) VALUES (99)")
    with pytest.raises(StoreError, match=r"written by a newer netspectra \(schema 99, this one knows 1\)"):
        ch_store(st.database)
