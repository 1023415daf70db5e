"""A collector's query API with a sensor filter (issue 11): a request naming
`sensor` is answered over that sensor's own epochs, as the collector stored
them (the sensor's series in its store), exactly as a query over only those
epochs; requests without it still answer over the merged, network-wide
windows.  Errors are one line naming the field.  Through Queries, HTTP
(api.http.answer) and `netspectra query --sensor`."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from netspectra.api.history import History
from netspectra.api.http import answer, to_json
from netspectra.api.queries import ApiError, Queries
from netspectra.api.settings import ApiConfig
from netspectra.api.v1 import sensor_pb2 as pb
from netspectra.config import Config
from netspectra.snapshot import Origin, layout_fingerprint, merge, rebind
from netspectra.source import StoreSource
from netspectra.store.base import Series
from netspectra.store.sqlite import SqliteStore
from netspectra.tasks import layout
from tests.helpers.epochs import LAY, TASKS, epoch, packets
from tests.helpers.stores import EPOCH_S, RETENTION, T0, series_of_epochs
from tests.unit.test_history_queries import answers, some_keys, tr

NOW = T0 + 3600
N = 12  # epochs per sensor: one minute
FP = layout_fingerprint(LAY)
ID = "lab"  # the collector's id
KEEP = 4  # merged windows the collector keeps in memory


def collector_config(ident: str = ID) -> Config:
    cfg = Config()
    return dataclasses.replace(cfg, sensor=dataclasses.replace(cfg.sensor, id=ident))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two sensors' epochs, each its own series, and their merged windows as
    the collector's network series: what a collector writes to its store."""
    edge1 = series_of_epochs(N, sensor="edge1", seed=7)
    edge2 = series_of_epochs(N, sensor="edge2", seed=11, estimated_every=3)
    origin = Origin(ID, "", "network", FP)
    merged = [merge([a, b], seq=i, origin=origin) for i, (a, b) in enumerate(zip(edge1, edge2))]
    path = tmp_path_factory.mktemp("collector") / "history.db"
    store = SqliteStore(path, RETENTION, clock=lambda: NOW)
    for a, b, m in zip(edge1, edge2, merged):  # a window's sensor epochs first, then the window
        for s in (a, b, m):
            assert store.write(s) == "written"
    yield {"edge1": edge1, "edge2": edge2, "merged": merged, "store": store, "url": f"sqlite://{path}"}
    store.close()


def collector_queries(store, merged, history_on: bool = True) -> Queries:
    """Queries as the collector builds them (Collector.start -> sensor.start_api):
    the last merged windows in memory, its network series in the store."""
    h = History(KEEP, LAY)
    for m in merged[-KEEP:]:
        h.add(m)
    info = {
        "pid": 1,
        "started": T0,
        "config": collector_config(),
        "interface": "network",
        "ifindex": 0,
        "epoch_s": EPOCH_S,
        "collector": ID,
    }
    src = StoreSource(store, Series(ID, "network", FP), RETENTION, clock=lambda: NOW) if history_on else None
    return Queries(h, info, src, clock=lambda: NOW)


@pytest.fixture(scope="module")
def coll(fleet) -> Queries:
    return collector_queries(fleet["store"], fleet["merged"])


def memory(epochs, sensor_id: str = "") -> Queries:
    """Queries over exactly these epochs, in memory: the reference."""
    h = History(1000, LAY)
    for s in epochs:
        h.add(s)
    return Queries(h, {"config": collector_config(sensor_id), "interface": "eth0"}, clock=lambda: NOW)


class Asking:
    """A Queries whose every request names `sensor` (as `netspectra query --sensor` does)."""

    def __init__(self, q: Queries, sensor: str):
        self.q, self.sensor = q, sensor

    def __getattr__(self, name):
        method = getattr(self.q, name)

        def call(req):
            req.sensor = self.sensor
            return method(req)

        return call


def without_tokens(a: dict) -> dict:
    """answers() without the flow pages' tokens: a token names the series it pages."""
    for page in a["flows"]:
        page.pop("next_page_token", None)
    return a


def err(call, req) -> ApiError:
    with pytest.raises(ApiError) as e:
        call(req)
    assert "\n" not in str(e.value), str(e.value)
    return e.value


MINUTE = tr(T0, T0 + N * EPOCH_S)


@pytest.mark.parametrize("sensor", ["edge1", "edge2", "edge1/eth0"])
def test_a_sensor_filter_answers_over_that_sensors_epochs_only(fleet, coll, sensor):
    epochs = fleet[sensor.split("/")[0]]
    keys = some_keys(epochs)
    got = without_tokens(answers(Asking(coll, sensor), MINUTE, keys))
    assert got == without_tokens(answers(memory(epochs), MINUTE, keys))
    assert got != without_tokens(answers(coll, MINUTE, keys))  # not the network's
    r = coll.TopKeys(pb.TopKeysRequest(task="src", range=MINUTE, sensor=sensor))
    assert (r.epochs.source, r.epochs.records) == ("store:raw", N)
    assert r.epochs.start.ToSeconds() == T0 and r.epochs.end.ToSeconds() == T0 + N * EPOCH_S
    st = coll.GetStatus(pb.GetStatusRequest(range=MINUTE, sensor=sensor))
    assert st.interface == "network" and st.range.epochs.records == N  # the rest stays the collector's
    assert st.range.total.packets == sum(int(s.totals[0, 0]) for s in epochs)


def test_the_network_answers_are_unchanged(fleet, coll):
    keys = some_keys(fleet["merged"])
    want = answers(memory(fleet["merged"]), MINUTE, keys)
    assert answers(coll, MINUTE, keys) == want
    assert answers(Asking(coll, ID), MINUTE, keys) == want  # its own id: the network, as a sensor's own id
    assert answers(Asking(coll, f"{ID}/network"), MINUTE, keys) == want
    assert coll.TopKeys(pb.TopKeysRequest(task="src", sensor=ID)).epochs.source == "memory"  # no range needed


def test_a_range_the_collector_keeps_in_memory_is_read_from_the_sensors_series(fleet, coll):
    kept = tr(T0 + (N - KEEP) * EPOCH_S, T0 + N * EPOCH_S)  # the merged windows in memory
    assert coll.TopKeys(pb.TopKeysRequest(task="src", range=kept)).epochs.source == "memory"
    r = coll.TopKeys(pb.TopKeysRequest(task="src", range=kept, sensor="edge2", limit=20))
    want = memory(fleet["edge2"]).TopKeys(pb.TopKeysRequest(task="src", range=kept, limit=20))
    assert (r.epochs.source, r.epochs.records) == ("store:raw", KEEP)
    assert list(r.keys) == list(want.keys) and r.bytes_error_bound == want.bytes_error_bound


def test_flow_pages_are_bound_to_the_sensor(coll):
    first = coll.ListFlows(pb.ListFlowsRequest(range=MINUTE, page_size=50, sensor="edge1"))
    assert first.next_page_token
    more = pb.ListFlowsRequest(range=MINUTE, page_size=50, sensor="edge1", page_token=first.next_page_token)
    assert coll.ListFlows(more).flows[0] != first.flows[0]
    for other in ("", "edge2"):
        e = err(
            coll.ListFlows, pb.ListFlowsRequest(range=MINUTE, page_size=50, sensor=other, page_token=more.page_token)
        )
        assert e.field == "page_token" and "sensor" in str(e)


def test_sensor_filter_errors_are_one_line_naming_the_field(fleet, coll):
    e = err(coll.TopKeys, pb.TopKeysRequest(task="src", sensor="edge1"))
    assert (e.field, e.code) == ("sensor", "INVALID_ARGUMENT")
    assert str(e).startswith("sensor: needs a range (since/until)")
    for call, req in [
        (coll.GetStatus, pb.GetStatusRequest(sensor="edge1")),
        (coll.ListFlows, pb.ListFlowsRequest(sensor="edge1", epochs=2)),
        (coll.TraceFlow, pb.TraceFlowRequest(sensor="edge1", key=some_keys(fleet["edge1"])["flow"][0])),
        (coll.TopSpreaders, pb.TopSpreadersRequest(task="scan", sensor="edge1")),
        (coll.EstimateKey, pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip="10.0.0.1"), sensor="edge1")),
    ]:
        assert str(err(call, req)).startswith("sensor: needs a range"), req

    e = err(coll.TopKeys, pb.TopKeysRequest(task="src", range=MINUTE, sensor="edge9"))
    assert (e.field, e.code) == ("sensor", "NOT_FOUND")
    assert str(e) == "sensor: no epochs of sensor 'edge9' in the collector's store (sensors: edge1, edge2)"
    e = err(coll.TopKeys, pb.TopKeysRequest(task="src", range=MINUTE, sensor="edge1/eth7"))
    assert e.code == "NOT_FOUND" and "'edge1/eth7'" in str(e)
    for bad in ("edge1/", "/eth0", "x" * 500):
        e = err(coll.TopKeys, pb.TopKeysRequest(task="src", range=MINUTE, sensor=bad))
        assert e.field == "sensor" and len(str(e)) < 200
    e = err(coll.TopKeys, pb.TopKeysRequest(task="src", range=tr(T0 - 600, T0 - 300), sensor="edge1"))
    assert (e.field, e.code) == ("range", "NOT_FOUND") and "of sensor edge1/eth0" in str(e)

    off = collector_queries(fleet["store"], fleet["merged"], history_on=False)
    e = err(off.TopKeys, pb.TopKeysRequest(task="src", range=MINUTE, sensor="edge1"))
    assert (e.field, e.code) == ("sensor", "FAILED_PRECONDITION") and "store.url: off" in str(e)


def test_a_sensor_accepts_only_its_own_id(fleet):
    q = memory(fleet["edge1"], sensor_id="edge1")
    want = q.TopKeys(pb.TopKeysRequest(task="src", epochs=3))
    for own in ("edge1", "edge1/eth0"):
        assert q.TopKeys(pb.TopKeysRequest(task="src", epochs=3, sensor=own)) == want
    e = err(q.TopKeys, pb.TopKeysRequest(task="src", epochs=3, sensor="edge2"))
    assert (e.field, e.code) == ("sensor", "INVALID_ARGUMENT")
    assert str(e) == "sensor: this is sensor 'edge1'; ask a collector for other sensors"
    assert str(err(q.GetStatus, pb.GetStatusRequest(sensor="edge2"))).startswith("sensor: this is sensor 'edge1'")


def test_a_sensor_with_several_interfaces_is_asked_as_sensor_slash_interface(tmp_path):
    store = SqliteStore(tmp_path / "h.db", RETENTION, clock=lambda: NOW)
    by_iface = {}
    for iface, seed in (("eth0", 1), ("eth1", 2)):
        epochs = series_of_epochs(4, sensor="edge3", seed=seed)
        for s in epochs:
            s.origin = dataclasses.replace(s.origin, interface=iface)
            store.write(s)
        by_iface[iface] = epochs
    merged = [merge([a, b], seq=i, origin=Origin(ID, "", "network", FP)) for i, (a, b) in
              enumerate(zip(by_iface["eth0"], by_iface["eth1"]))]  # fmt: skip
    for m in merged:
        store.write(m)
    q = collector_queries(store, merged)
    rng = tr(T0, T0 + 20)
    e = err(q.TopKeys, pb.TopKeysRequest(task="src", range=rng, sensor="edge3"))
    assert (e.field, e.code) == ("sensor", "INVALID_ARGUMENT")
    assert str(e) == (
        "sensor: sensor 'edge3' has several series in the collector's store; "
        "give one as sensor/interface: edge3/eth0, edge3/eth1"
    )
    for iface, epochs in by_iface.items():
        got = q.TopKeys(pb.TopKeysRequest(task="src", range=rng, sensor=f"edge3/{iface}", limit=50))
        assert list(got.keys) == list(memory(epochs).TopKeys(pb.TopKeysRequest(task="src", range=rng, limit=50)).keys)
    store.close()


def test_a_sensor_with_other_task_names_is_answered_with_the_collectors(tmp_path):
    """Same arrays, other names and thresholds: the collector took its epochs (the
    fingerprint matches), so a query names the collector's tasks."""
    renamed = tuple(dataclasses.replace(t, name=f"their_{t.name}", hh_packets=t.hh_packets * 2) for t in TASKS)
    theirs = layout(renamed)
    assert layout_fingerprint(theirs) == FP and theirs != LAY
    rng_ = np.random.default_rng(3)
    epochs = []
    for i in range(4):
        keys, lengths = packets(rng_, 600)
        unt = rng_.random(len(keys)) < 0.2 if i == 3 else None
        epochs.append(epoch(keys, lengths, sensor="edge4", untracked=unt, seq=i, t=T0 + i * EPOCH_S, lay=theirs))
    store = SqliteStore(tmp_path / "h.db", RETENTION, clock=lambda: NOW)
    merged = []
    for i, s in enumerate(epochs):
        store.write(s)
        merged.append(merge([rebind(s, LAY)], seq=i, origin=Origin(ID, "", "network", FP)))
        store.write(merged[-1])
    q = collector_queries(store, merged)
    rng = tr(T0, T0 + 20)
    for task in ("src", "flow"):
        got = q.TopKeys(pb.TopKeysRequest(task=task, range=rng, sensor="edge4", limit=30))
        want = q.TopKeys(pb.TopKeysRequest(task=task, range=rng, limit=30))  # the network is this one sensor
        assert got.task == task and not got.exact
        assert list(got.keys) == list(want.keys) and got.bytes_error_bound == want.bytes_error_bound
    got = q.TopSpreaders(pb.TopSpreadersRequest(task="scan", range=rng, sensor="edge4"))
    assert list(got.spreaders) == list(q.TopSpreaders(pb.TopSpreadersRequest(task="scan", range=rng)).spreaders)
    store.close()


# --- HTTP ----------------------------------------------------------------------------------


SINCE, UNTIL = "2026-12-01T00:00:00Z", "2026-12-01T00:01:00Z"  # MINUTE


def test_http_sensor_parameter(fleet, coll):
    status, body = answer(coll, f"/v1/top?task=src&limit=20&since={SINCE}&until={UNTIL}&sensor=edge1")
    assert status == 200, body
    assert body == to_json(coll.TopKeys(pb.TopKeysRequest(task="src", limit=20, range=MINUTE, sensor="edge1")))
    want = memory(fleet["edge1"]).TopKeys(pb.TopKeysRequest(task="src", limit=20, range=MINUTE))
    assert body["keys"] == to_json(want)["keys"] and body["epochs"]["source"] == "store:raw"
    status, body = answer(coll, f"/v1/status?since={SINCE}&until={UNTIL}&sensor=edge2")
    assert status == 200 and body["range"]["total"]["packets"] == sum(int(s.totals[0, 0]) for s in fleet["edge2"])
    for path in ("flows", "trace?src_ip=10.0.0.1&dst_ip=10.0.0.2&proto=icmp", "spreaders?task=scan",
                 "estimate?task=src&src_ip=10.0.0.1"):  # fmt: skip
        sep = "&" if "?" in path else "?"
        status, body = answer(coll, f"/v1/{path}{sep}since={SINCE}&until={UNTIL}&sensor=edge1")
        assert status == 200, (path, body)
    assert answer(coll, "/v1/top?task=src&sensor=edge1") == (
        400,
        {"error": "sensor: needs a range (since/until): a sensor's own epochs are read from the store",
         "code": "INVALID_ARGUMENT"},
    )  # fmt: skip
    status, body = answer(coll, f"/v1/flows?since={SINCE}&sensor=edge9")
    assert status == 404 and body["error"].startswith("sensor: no epochs of sensor 'edge9'")
    status, body = answer(coll, "/v1/tasks?sensor=edge1")
    assert status == 400 and body["error"].startswith("sensor: unknown parameter for /v1/tasks")


# --- netspectra query --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(fleet):
    from netspectra.api.server import ApiServer

    q = collector_queries(fleet["store"], fleet["merged"])
    log = io.StringIO()
    srv = ApiServer(ApiConfig(address="127.0.0.1:0", http_address="", keep_epochs=KEEP), q, q.h, log=log).start()
    yield f"127.0.0.1:{srv.grpc_port}"
    srv.stop(0)
    assert log.getvalue() == "", log.getvalue()


def query(*args):
    from netspectra.cli import main

    return CliRunner().invoke(main, ["query", *args])


def one_line_error(r, *needles) -> None:
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    for n in needles:
        assert n in r.output, r.output


def test_cli_sensor_asks_a_collector_for_one_sensor(fleet, server):
    want = to_json(memory(fleet["edge1"]).TopKeys(pb.TopKeysRequest(task="src", limit=5, range=MINUTE)))
    window = ("--since", SINCE, "--until", UNTIL)
    for sel in (["--sensor", "edge1"], ["--sensor", "edge1", "--interface", "eth0"]):
        r = query("--server", server, *sel, "--json", "top", "src", "-n", "5", *window)
        assert r.exit_code == 0, r.output
        got = json.loads(r.output)
        assert got["epochs"]["source"] == "store:raw" and got["keys"] == want["keys"]
    network = json.loads(query("--server", server, "--json", "top", "src", "-n", "5", *window).output)
    assert network["keys"] != want["keys"]
    r = query("--server", server, "--sensor", "edge1", "status", *window)
    assert r.exit_code == 0, r.output
    total = sum(int(s.totals[0, 0]) for s in fleet["edge1"])
    assert "\nrange      " in r.output and f": {total} packets" in r.output

    one_line_error(query("--server", server, "--sensor", "edge1", "top", "src"), "sensor: needs a range")
    one_line_error(
        query("--server", server, "--sensor", "edge9", "flows", "--since", SINCE),
        "sensor: no epochs of sensor 'edge9' in the collector's store (sensors: edge1, edge2)",
    )
    # --interface alone asks for an interface of the server itself: a collector has none
    one_line_error(query("--server", server, "--interface", "eth0", "top"), "sensor: '/eth0'", "--sensor")
    one_line_error(query("--server", server, "--sensor", "edge1", "watch-epochs", "--count", "1"), "--sensor")


def test_cli_sensor_with_store_still_chooses_the_series(fleet):
    url = fleet["url"]
    one_line_error(query("--store", url, "top", "src"), "holds several series", "--sensor edge1 --interface eth0")
    r = query("--store", url, "--sensor", "edge1", "--json", "top", "src", "-n", "5")
    assert r.exit_code == 0, r.output
    want = memory(fleet["edge1"]).TopKeys(pb.TopKeysRequest(task="src", limit=5, range=MINUTE))
    assert json.loads(r.output)["keys"] == to_json(want)["keys"]
    r = query("--store", url, "--sensor", ID, "--interface", "network", "--json", "flows", "-n", "1")
    assert r.exit_code == 0 and json.loads(r.output)["epochs"]["records"] == N
    one_line_error(query("--store", url, "--sensor", "edge9", "top"), "holds no epochs of sensor 'edge9'")
