"""Contract 8 at the API: a query over a time range answers the same from the
epochs in memory, from the store's raw epochs and from its rollups (1m, 1h),
on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict

from netspectra import analysis
from netspectra.api.history import History
from netspectra.api.queries import ApiError, Queries, key_pb
from netspectra.api.v1 import sensor_pb2 as pb
from netspectra.config import Config
from netspectra.source import StoreSource
from netspectra.store.base import Series
from netspectra.store.sqlite import SqliteStore
from netspectra.tasks import COUNTMIN
from tests.helpers.epochs import LAY
from tests.helpers.stores import RETENTION, T0, series_of_epochs

DAY = 86400.0
INFO = {"config": Config(), "interface": "eth0"}


@pytest.fixture(scope="module")
def epochs():
    return series_of_epochs(36)  # 3 whole minutes, one whole (partial) hour


def open_store(backend: str, request, path):
    """A store of `backend` (sqlite, chdb) written with the epochs' clock."""
    from tests.helpers.stores import unique_name

    if backend == "sqlite":
        return SqliteStore(path / f"{unique_name()}.db", RETENTION, clock=lambda: T0 + 3600)
    from netspectra.store.clickhouse import ClickHouseStore

    engine = request.getfixturevalue("chdb_engine")
    return ClickHouseStore(engine.url(unique_name("hq")), RETENTION, clock=lambda: T0 + 3600)


@pytest.fixture(scope="module", params=["sqlite", "chdb"])
def store(request, epochs, tmp_path_factory):
    st = open_store(request.param, request, tmp_path_factory.mktemp("h"))
    for s in epochs:
        st.write(s)
    yield st
    st.close()


def memory(epochs) -> Queries:
    h = History(1000, LAY)
    for s in epochs:
        h.add(s)
    return Queries(h, INFO, clock=lambda: T0 + 3600)


def from_store(store, epochs, now: float) -> Queries:
    """Queries whose memory holds only the newest epoch: older ranges go to the store,
    read at the resolution `now` makes the finest still kept."""
    h = History(1, LAY)
    h.add(epochs[-1])
    src = StoreSource(store, Series.of(epochs[0]), RETENTION, clock=lambda: now)
    return Queries(h, INFO, src, clock=lambda: now)


def tr(since: float, until: float | None = None) -> pb.TimeRange:
    r = pb.TimeRange()
    r.since.FromNanoseconds(int(since * 1e9))
    if until is not None:
        r.until.FromNanoseconds(int(until * 1e9))
    return r


def answers(q: Queries, rng: pb.TimeRange, keys: dict) -> dict:
    """Every windowed RPC over the range, without where the window came from."""
    out = {}
    for t in LAY.tasks:
        name = t.spec.name
        if t.spec.kind == COUNTMIN:
            for metric in (pb.METRIC_BYTES, pb.METRIC_PACKETS):
                out[f"top {name} {metric}"] = q.TopKeys(
                    pb.TopKeysRequest(task=name, metric=metric, limit=50, range=rng)
                )
        else:
            out[f"spreaders {name}"] = q.TopSpreaders(pb.TopSpreadersRequest(task=name, limit=50, range=rng))
        for i, k in enumerate(keys[name]):
            out[f"estimate {name} {i}"] = q.EstimateKey(pb.EstimateKeyRequest(task=name, key=k, range=rng))
    pages, token = [], ""
    while True:
        r = q.ListFlows(pb.ListFlowsRequest(range=rng, page_size=97, page_token=token))
        pages.append(r)
        token = r.next_page_token
        if not token:
            break
    out["flows"] = pages
    out["trace"] = q.TraceFlow(pb.TraceFlowRequest(key=keys["flow"][0], range=rng)).total
    out["totals"] = q.GetStatus(pb.GetStatusRequest(range=rng)).range.counters
    return {k: _plain(v) for k, v in out.items()}


def _plain(v):
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if hasattr(v, "DESCRIPTOR"):
        d = MessageToDict(v, preserving_proto_field_name=True)
        d.pop("epochs", None)  # which records were read: differs by design
        d.pop("range", None)
        return d
    return {k: _plain(x) for k, x in v.items()}


def some_keys(epochs) -> dict:
    """Keys worth asking about: each task's heavy hitters and spreaders, and a key never seen."""
    out = {}
    for t in LAY.tasks:
        name = t.spec.name
        found = [s.heavy[name].keys[:3] if name in s.heavy else s.spreaders[name][0][:3] for s in epochs]
        found.append(analysis.mask_keys(epochs[0].flows["key"][:2], t.spec.fields))  # keys of plain flows too
        ks = np.concatenate(found)
        msgs = [key_pb(k, t.spec.key) for k in (*ks[:3], *ks[-2:])]
        none = pb.Key()
        none.CopyFrom(msgs[0])
        if "src_ip" in t.spec.key:
            none.src_ip = "192.0.2.99"
        out[name] = [*msgs, none]
    return out


@pytest.mark.parametrize(
    "now, resolution",
    [(T0 + 3600, "raw"), (T0 + 3 * DAY, "1m"), (T0 + 40 * DAY, "1h")],
    ids=["raw", "1m", "1h"],
)
def test_a_range_answers_the_same_from_memory_and_from_the_store(store, epochs, now, resolution):
    rng = tr(T0, T0 + 180)  # all 36 epochs: few enough to read raw, while raw is kept
    keys = some_keys(epochs)
    want = answers(memory(epochs), rng, keys)
    q = from_store(store, epochs, now)
    assert q.TopKeys(pb.TopKeysRequest(task="src", range=rng)).epochs.source == f"store:{resolution}"
    got = answers(q, rng, keys)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == want[k], k
    # the planted traffic is really in there (not two empty answers)
    assert want["top src 1"]["keys"] and int(want["flows"][0]["total"]) > 100
    assert any(not s.exact for s in epochs) and not want["top src 1"].get("exact", False)


@pytest.mark.parametrize("backend", ["sqlite", "chdb"])
def test_exact_ranges_stay_exact_through_the_store(backend, request, tmp_path):
    ex = series_of_epochs(24, estimated_every=0)
    st = open_store(backend, request, tmp_path)
    for s in ex:
        st.write(s)
    rng = tr(T0, T0 + 3600)
    want = memory(ex).TopSpreaders(pb.TopSpreadersRequest(task="ports", range=rng))
    got = from_store(st, ex, T0 + 40 * DAY).TopSpreaders(pb.TopSpreadersRequest(task="ports", range=rng))
    assert got.exact and want.exact and got.epochs.source == "store:1h"
    assert _plain(got) == _plain(want)
    st.close()


def test_epoch_range_says_what_was_read(store, epochs):
    r = memory(epochs).TopKeys(pb.TopKeysRequest(task="src", range=tr(T0 + 60, T0 + 120)))
    assert (r.epochs.source, r.epochs.records, r.epochs.first, r.epochs.last) == ("memory", 12, 12, 23)
    assert r.epochs.start.ToNanoseconds() == int((T0 + 60) * 1e9)
    r = from_store(store, epochs, T0 + 3 * DAY).TopKeys(pb.TopKeysRequest(task="src", range=tr(T0 + 61, T0 + 119)))
    assert (r.epochs.source, r.epochs.records) == ("store:1m", 1)  # widened to the whole minute
    assert r.epochs.start.ToNanoseconds() == int((T0 + 60) * 1e9)


def test_range_errors_are_one_line_and_name_the_field(store, epochs):
    q = memory(epochs)
    cases = [
        (pb.TopKeysRequest(task="src", range=pb.TimeRange()), "range.since: required"),
        (pb.TopKeysRequest(task="src", range=tr(T0 + 60, T0)), "range.until: .* is not after range.since"),
        (pb.TopKeysRequest(task="src", epochs=2, range=tr(T0)), "epochs: give epochs or a range, not both"),
        (pb.TopKeysRequest(task="src", range=tr(T0 + 2 * DAY)), "range.since: .* is in the future"),
        (pb.TopKeysRequest(task="src", range=tr(T0 - DAY, T0 - 3600)), "range: no epoch was recorded from"),
    ]
    for req, msg in cases:
        with pytest.raises(ApiError, match=msg) as e:
            q.TopKeys(req)
        assert "\n" not in str(e.value)
    # memory only, no store, nothing yet: try again later (not a crash)
    with pytest.raises(ApiError, match=r"^no epoch has completed yet") as e:
        Queries(History(2, LAY), INFO, clock=lambda: T0 + 3600).TopKeys(pb.TopKeysRequest(task="src", range=tr(T0)))
    assert e.value.code == "UNAVAILABLE"
    # memory only, no store: a range older than what is kept says so
    h = History(2, LAY)
    for s in epochs:
        h.add(s)
    with pytest.raises(ApiError, match=r"before the oldest epoch kept .* history is off \(store.url: off\)") as e:
        Queries(h, INFO, clock=lambda: T0 + 3600).TopKeys(pb.TopKeysRequest(task="src", range=tr(T0)))
    assert e.value.code == "OUT_OF_RANGE"


def test_a_range_memory_holds_is_answered_from_memory(store, epochs):
    q = from_store(store, epochs, T0 + 3600)
    last = epochs[-1]
    r = q.TopKeys(pb.TopKeysRequest(task="src", range=tr(last.start)))
    assert (r.epochs.source, r.epochs.records) == ("memory", 1)
    assert q.store.reads == 0
    r = q.TopKeys(pb.TopKeysRequest(task="src", range=tr(last.start - 5, last.end)))
    assert r.epochs.source == "store:raw" and r.epochs.records == 2
    assert not math.isnan(r.bytes_error_bound)
    np.testing.assert_equal(q.store.reads, 2)


def test_http_takes_since_and_until(epochs):
    from netspectra.api.http import answer

    q = memory(epochs)
    status, body = answer(q, "/v1/top?task=src&since=2026-12-01T00:00:00Z&until=2026-12-01T00:01:00.000Z")
    assert status == 200, body
    assert (body["epochs"]["source"], body["epochs"]["records"]) == ("memory", 12)
    status, body = answer(q, "/v1/flows?since=2026-12-01T00:02:00Z")
    assert status == 200 and body["epochs"]["records"] == 12  # epochs 24..35
    for target, msg in (
        ("/v1/top?task=src&since=yesterday", "since: 'yesterday' is not a time"),
        ("/v1/top?task=src&until=1h", "until: needs since"),
        ("/v1/top?task=src&since=2h&epochs=2", "epochs: give epochs or a range, not both"),
    ):
        status, body = answer(q, target)
        assert status == 400 and body["error"].startswith(msg), body


def test_warm_ranks_the_kept_union_unless_told_not_to(epochs):
    """A sensor ranks its kept epochs' union before showing a new epoch; a
    collector (warm_union False) leaves that to the first query that asks."""

    def cached_windows(union: bool) -> set:
        h = History(12, LAY)
        q = Queries(h, INFO, clock=lambda: T0 + 3600)
        q.warm_union = union
        for s in epochs[:3]:
            q.warm(s, h.snapshots())
            h.add(s)
        return {k[-2:] for k in h.answers.keys() if k[0] == "top"}

    assert cached_windows(True) == {(0, 0), (1, 1), (2, 2), (0, 1), (0, 2)}
    assert cached_windows(False) == {(0, 0), (1, 1), (2, 2)}
