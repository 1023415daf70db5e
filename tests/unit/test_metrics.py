"""The Prometheus collector against a fresh registry, fed synthetic snapshots (no kernel)."""

import threading

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from netspectra import abi, analysis
from netspectra import packets as P
from netspectra.config import default_tasks
from netspectra.metrics import (
    EVENTS,
    OUTCOME_LABELS,
    PROTO_LABELS,
    SensorCollector,
    key_label,
    key_labels,
    registry_for,
    version,
)
from netspectra.sketch import HeavyHitters, SketchSet
from netspectra.snapshot import EpochSnapshot
from netspectra.tasks import layout

IF = "eth0"
LAY = layout(default_tasks())


def keys(srcs, dsts=None, sport=0, dport=0, proto=0):
    k = np.zeros(len(srcs), abi.KEY)
    for i, s in enumerate(srcs):
        k[i]["src"] = np.frombuffer(P.mapped(s), np.uint8)
        if dsts is not None:
            k[i]["dst"] = np.frombuffer(P.mapped(dsts[i]), np.uint8)
    k["sport"], k["dport"], k["proto"] = sport, dport, proto
    return k


def snapshot(
    seq=0,
    totals=None,
    nflows=3,
    heavy=None,
    spreaders=None,
    start=100.0,
    end=105.0,
    sketch_len=100,
    fill=None,
    exact=False,
):
    flows = np.zeros(nflows, analysis.FLOW_RECORD)
    t = np.zeros((abi.NCOUNTERS, 2), np.uint64)
    for name, (p, b) in (totals or {}).items():
        t[abi.C[name]] = (p, b)
    sk = SketchSet(LAY)
    sk.update(keys(["10.0.0.1"]), np.full(1, sketch_len))  # 1 packet of sketch_len bytes in every task
    return EpochSnapshot(
        seq=seq,
        start=start,
        end=end,
        totals=t,
        flows=flows,
        sketch=sk,
        heavy=heavy or {},
        spreaders=spreaders or {},
        processing_s=0.25,
        exact=exact,
        table_fill=nflows / 100 if fill is None else fill,  # a table of 100 flows per CPU
    )


def hh(srcs, packets, nbytes):
    return HeavyHitters(keys(srcs), np.array(packets, np.uint64), np.array(nbytes, np.uint64))


@pytest.fixture
def reg():
    return CollectorRegistry()


def make(reg, top=10, flow_capacity=100, mem=None):
    mem = mem if mem is not None else {"countmin": 4096, "flows": 8192}
    c = SensorCollector(IF, LAY, top, flow_capacity, mem, sensor="host1")
    reg.register(c)
    return c


def val(reg, name, **labels):
    return reg.get_sample_value(name, {"interface": IF, **labels})


TOTALS = {
    "all": (20, 2000),
    "out_ipv4": (12, 1200),
    "out_ipv6": (3, 300),
    "out_non_ip": (4, 400),
    "out_trunc_eth": (1, 100),
    "proto_tcp": (5, 500),
    "proto_udp": (7, 700),
    "proto_icmpv6": (3, 300),
    "frag_first": (2, 200),
    "ipv4_options": (1, 100),
    "flow_untracked": (6, 600),
    "cand_lost": (2, 0),
}


def test_before_any_epoch(reg):
    make(reg)
    info = {"version": version(), "abi": str(abi.ABI_VERSION), "sensor": "host1"}
    assert reg.get_sample_value("netspectra_build_info", info) == 1
    assert val(reg, "netspectra_packets_total", proto="udp") == 0
    assert val(reg, "netspectra_epochs_total") == 0
    assert val(reg, "netspectra_kernel_memory_bytes", map="countmin") == 4096
    assert val(reg, "netspectra_flows") is None  # no last epoch yet


def test_counters_accumulate_over_two_epochs(reg):
    c = make(reg)
    c.observe(snapshot(0, TOTALS))
    c.observe(snapshot(1, TOTALS))
    for label, (p, b) in {
        "tcp": (5, 500),
        "udp": (7, 700),
        "icmp": (0, 0),
        "icmpv6": (3, 300),
        "sctp": (0, 0),
        "other": (0, 0),
        "non_ip": (5, 500),  # all - ipv4 - ipv6
    }.items():
        assert val(reg, "netspectra_packets_total", proto=label) == 2 * p, label
        assert val(reg, "netspectra_bytes_total", proto=label) == 2 * b, label
    assert set(PROTO_LABELS) == {"tcp", "udp", "icmp", "icmpv6", "sctp", "other", "non_ip"}
    assert OUTCOME_LABELS[:4] == ("ipv4", "ipv6", "non_ip", "trunc_eth")
    for label in OUTCOME_LABELS:
        want = 2 * TOTALS.get("out_" + label, (0, 0))[0]
        assert val(reg, "netspectra_parse_outcome_packets_total", outcome=label) == want, label
    for ev in EVENTS:
        assert val(reg, "netspectra_packet_events_total", event=ev) == 2 * TOTALS.get(ev, (0, 0))[0], ev
    assert val(reg, "netspectra_flows_untracked_packets_total") == 12
    assert val(reg, "netspectra_candidates_lost_total") == 4
    assert val(reg, "netspectra_epochs_total") == 2


def test_counters_are_plain_ints_past_uint64(reg):
    c = make(reg)
    big = {"all": (2**63, 2**63), "out_ipv4": (2**63, 2**63), "proto_udp": (2**63, 2**63)}
    c.observe(snapshot(0, big))
    c.observe(snapshot(1, big))
    assert c._totals[abi.C["proto_udp"]] == [2**64, 2**64]  # no uint64 wrap-around
    assert "netspectra_packets_total" in generate_latest(reg).decode()


def test_last_epoch_gauges(reg):
    c = make(reg, flow_capacity=8)
    c.observe(snapshot(0, TOTALS, nflows=2, start=10.0, end=15.0))
    c.observe(snapshot(1, TOTALS, nflows=6, start=15.0, end=20.5, sketch_len=1000, fill=0.75))
    assert val(reg, "netspectra_flows") == 6
    assert val(reg, "netspectra_flow_table_fill_ratio") == 0.75
    assert val(reg, "netspectra_epoch_exact") == 0
    assert val(reg, "netspectra_epoch_duration_seconds") == 5.5
    assert val(reg, "netspectra_epoch_processing_seconds") == 0.25
    assert val(reg, "netspectra_last_epoch_timestamp_seconds") == 20.5
    for task in ("src", "flow"):  # e / width * N, N = 1 packet, 1000 bytes
        assert val(reg, "netspectra_sketch_error_bound", task=task, unit="packets") == pytest.approx(np.e / 65536)
        assert val(reg, "netspectra_sketch_error_bound", task=task, unit="bytes") == pytest.approx(np.e / 65536 * 1000)
    assert val(reg, "netspectra_sketch_error_bound", task="spread_dst", unit="packets") is None
    assert val(reg, "netspectra_kernel_memory_bytes", map="flows") == 8192


def test_heavy_hitters_top_k_by_packets(reg):
    c = make(reg, top=2)
    srcs = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    c.observe(snapshot(heavy={"src": hh(srcs, [10, 40, 30, 20], [5000, 100, 300, 200])}))
    assert val(reg, "netspectra_heavy_hitters", task="src") == 4
    assert val(reg, "netspectra_heavy_hitters", task="flow") == 0
    assert val(reg, "netspectra_heavy_hitter_packets", task="src", src_ip="10.0.0.2") == 40
    assert val(reg, "netspectra_heavy_hitter_bytes", task="src", src_ip="10.0.0.2") == 100
    assert val(reg, "netspectra_heavy_hitter_packets", task="src", src_ip="10.0.0.3") == 30
    assert val(reg, "netspectra_heavy_hitter_packets", task="src", src_ip="10.0.0.1") is None  # big by bytes only
    series = [s for m in reg.collect() if m.name == "netspectra_heavy_hitter_packets" for s in m.samples]
    assert len(series) == 2


def test_key_label_has_task_fields_in_order():
    k = keys(["10.0.0.1"], ["2001:db8::2"], sport=1234, dport=80, proto=6)[0]
    assert key_label(k, LAY, "flow") == "src_ip=10.0.0.1 dst_ip=2001:db8::2 src_port=1234 dst_port=80 proto=6"
    assert key_label(k, LAY, "src") == "src_ip=10.0.0.1"
    assert key_label(k, LAY, "fanin_src") == "dst_ip=2001:db8::2"
    # as labels: the query API's Key field names, only the task's fields
    assert key_labels(k, LAY, "flow") == {
        "src_ip": "10.0.0.1",
        "dst_ip": "2001:db8::2",
        "src_port": "1234",
        "dst_port": "80",
        "proto": "6",
    }
    assert key_labels(k, LAY, "fanin_src") == {"dst_ip": "2001:db8::2"}


# Process-wide series: not about one interface.
PROCESS_WIDE = ("netspectra_build_info", "netspectra_notifications_failed_total")


def test_every_per_interface_series_has_interface_and_process_metrics():
    c = SensorCollector(IF, LAY, 5, 100, {"countmin": 4096}, sensor="host1")
    reg = registry_for(c)
    c.alerting([("hh", "warning")], ["hook"])
    c.observe(
        snapshot(
            heavy={"src": hh(["10.0.0.1"], [50], [5000])},
            spreaders={"spread_dst": (keys(["10.0.0.9"]), np.array([300.0]))},
        )
    )
    names = set()
    for m in reg.collect():
        for s in m.samples:
            names.add(s.name)
            if s.name.startswith("netspectra_") and s.name not in PROCESS_WIDE:
                assert s.labels.get("interface") == IF, s
    assert {"netspectra_alerts_active", "netspectra_heavy_hitter_bytes", "netspectra_spreader_distinct"} <= names
    # this process, read from /proc at scrape time
    assert reg.get_sample_value("process_open_fds") >= 3
    assert reg.get_sample_value("process_resident_memory_bytes") > 1e6
    assert reg.get_sample_value("process_cpu_seconds_total") > 0


def test_series_disappear_when_a_key_leaves_the_top_k(reg):
    c = make(reg, top=1)
    c.observe(
        snapshot(
            heavy={"src": hh(["10.0.0.1"], [50], [5000])},
            spreaders={"spread_dst": (keys(["10.0.0.9"]), np.array([300.0]))},
        )
    )
    assert val(reg, "netspectra_heavy_hitter_packets", task="src", src_ip="10.0.0.1") == 50
    assert val(reg, "netspectra_spreader_distinct", task="spread_dst", src_ip="10.0.0.9") == 300.0
    c.observe(snapshot(heavy={"src": hh(["10.0.0.1", "10.0.0.2"], [5, 60], [1, 2])}))
    assert val(reg, "netspectra_heavy_hitter_packets", task="src", src_ip="10.0.0.1") is None
    assert val(reg, "netspectra_heavy_hitter_bytes", task="src", src_ip="10.0.0.1") is None
    assert val(reg, "netspectra_heavy_hitter_packets", task="src", src_ip="10.0.0.2") == 60
    assert val(reg, "netspectra_spreader_distinct", task="spread_dst", src_ip="10.0.0.9") is None
    assert val(reg, "netspectra_spreaders", task="spread_dst") == 0
    assert val(reg, "netspectra_heavy_hitters", task="src") == 2


def test_spreaders_top_k(reg):
    c = make(reg, top=3)
    dsts = [f"10.1.0.{i}" for i in range(10)]
    est = np.arange(10, dtype=np.float64) * 100 + 0.5
    c.observe(snapshot(spreaders={"fanin_src": (keys(["0.0.0.0"] * 10, dsts), est)}))
    assert val(reg, "netspectra_spreaders", task="fanin_src") == 10
    got = {
        tuple(sorted(s.labels.items())): s.value
        for m in reg.collect()
        if m.name == "netspectra_spreader_distinct"
        for s in m.samples
    }
    # the task's key fields as labels, and only those (fanin_src keys on dst_ip)
    assert got == {
        (("dst_ip", f"10.1.0.{i}"), ("interface", IF), ("task", "fanin_src")): i * 100 + 0.5 for i in (9, 8, 7)
    }


def test_label_sets_bounded_by_k_whatever_the_traffic(reg):
    c = make(reg, top=5)
    for epoch in range(20):
        srcs = [f"10.{epoch}.{i // 256}.{i % 256}" for i in range(500)]
        c.observe(snapshot(epoch, heavy={"src": hh(srcs, np.arange(500), np.arange(500))}))
    per_key = [
        s
        for m in reg.collect()
        if m.name.startswith(("netspectra_heavy_hitter_", "netspectra_spreader_"))
        for s in m.samples
    ]
    assert len(per_key) == 10  # 5 keys x (packets, bytes)


def test_own_registry_only():
    from prometheus_client import REGISTRY

    before = set(REGISTRY._collector_to_names)
    SensorCollector(IF, LAY, 10, 100)
    from netspectra.metrics import registry_for

    r = registry_for(SensorCollector(IF, LAY, 10, 100))
    assert r.get_sample_value("netspectra_epochs_total", {"interface": IF}) == 0
    assert set(REGISTRY._collector_to_names) == before


def test_scrapes_while_the_agent_observes(reg):
    c = make(reg, top=3)
    stop = threading.Event()
    errors = []

    def scrape():
        try:
            while not stop.is_set():
                text = generate_latest(reg).decode()
                for line in text.splitlines():
                    if line.startswith('netspectra_packets_total{interface="eth0",proto="udp"}'):
                        n = float(line.split()[-1])
                        assert n % 7 == 0  # never half an epoch
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=scrape) for _ in range(3)]
    for t in threads:
        t.start()
    srcs = [f"10.0.0.{i}" for i in range(20)]
    for i in range(200):
        c.observe(snapshot(i, {"proto_udp": (7, 70)}, heavy={"src": hh(srcs, np.arange(20) + i, np.arange(20))}))
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert val(reg, "netspectra_packets_total", proto="udp") == 1400
    assert val(reg, "netspectra_epochs_total") == 200


def test_exact_epoch_has_no_error_and_derives_no_sketch(reg):
    """An exact epoch's heavy hitters are sums of its flows: the bounds are 0,
    the gauge says exact, and the scrape never derives its (lazy) sketch."""
    c = make(reg)
    snap = snapshot(0, TOTALS, exact=True)
    flows = np.zeros(2, analysis.FLOW_RECORD)
    flows["key"] = keys(["10.0.0.1", "10.0.0.2"], ["10.9.0.1", "10.9.0.1"], 1, 2, 6)
    flows["packets"], flows["bytes"] = (3, 4), (300, 400)
    snap.flows, snap.sketch = flows, SketchSet.of_flows(LAY, flows)
    c.observe(snap)
    generate_latest(reg)
    assert val(reg, "netspectra_epoch_exact") == 1
    for task in ("src", "flow"):
        assert val(reg, "netspectra_sketch_error_bound", task=task, unit="packets") == 0
        assert val(reg, "netspectra_sketch_error_bound", task=task, unit="bytes") == 0
    assert not snap.sketch.derived
    assert snap.sketch.total("src") == (7, 700) and snap.sketch.derived  # derived on first use, exactly


def test_sink_delivery_is_exported(reg):
    """Each queued sink's epochs delivered, dropped (its spool full) and waiting,
    and whether it is up: what NetspectraEpochsLost and NetspectraStoreDown watch."""
    import io
    import time
    from types import SimpleNamespace

    from netspectra.sinks import Queued
    from tests.helpers.sinks import FaultySink

    c = make(reg)
    store = FaultySink("store")
    store.error = OSError(28, "No space left on device")
    q = Queued(store, "store", max_epochs=2, log=io.StringIO())
    c.watching_sinks([q])
    for i in range(5):
        q.on_epoch(SimpleNamespace(seq=i, flows=np.zeros(0, np.uint8), sketch=None))
    deadline = time.monotonic() + 5
    while q.stats().up and time.monotonic() < deadline:
        time.sleep(0.01)
    assert val(reg, "netspectra_sink_epochs_dropped_total", sink="store") == 3
    assert val(reg, "netspectra_sink_queued_epochs", sink="store") == 2
    assert val(reg, "netspectra_sink_up", sink="store") == 0
    assert val(reg, "netspectra_sink_errors_total", sink="store") >= 1
    store.error = None
    assert q.flush(10)
    assert val(reg, "netspectra_sink_epochs_delivered_total", sink="store") == 2
    assert val(reg, "netspectra_sink_up", sink="store") == 1
    q.close()


def test_combined_interfaces_one_exposition():
    """Several interfaces, one endpoint: each family once (the text format
    refuses a name twice), every interface's series under its label, the
    shares of process-wide counts added, build_info once."""
    from prometheus_client.parser import text_string_to_metric_families

    from netspectra.metrics import Combined

    a = SensorCollector("eth0", LAY, 10, 100, {"countmin": 1})
    b = SensorCollector("eth1", LAY, 10, 100, {"countmin": 2})
    for c in (a, b):
        c.process_interface = "eth0+eth1"
        c.alerting([("scanner", "warning")], ["hook"])
    a.observe(snapshot(totals={"all": (5, 500), "out_ipv4": (5, 500), "proto_udp": (5, 500)}))
    b.observe(snapshot(totals={"all": (7, 700), "out_ipv4": (7, 700), "proto_tcp": (7, 700)}))
    a.notification_failed("hook")
    b.notification_failed("hook")
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Combined([a, b]))
    text = generate_latest(reg).decode()
    names = [f.name for f in text_string_to_metric_families(text)]
    assert len(names) == len(set(names))
    get = reg.get_sample_value
    assert get("netspectra_packets_total", {"interface": "eth0", "proto": "udp"}) == 5
    assert get("netspectra_packets_total", {"interface": "eth1", "proto": "tcp"}) == 7
    assert get("netspectra_packets_total", {"interface": "eth1", "proto": "udp"}) == 0
    assert get("netspectra_kernel_memory_bytes", {"interface": "eth1", "map": "countmin"}) == 2
    assert get("netspectra_notifications_failed_total", {"notifier": "hook"}) == 2
    assert text.count("netspectra_build_info{") == 1
