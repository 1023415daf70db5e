"""`netspectra collector` against a real nats-server (JetStream): three
sensors' epochs merge into what one sensor would report for all their
traffic; duplicates, bad messages and restarts change nothing (contract 9).

Each test has its own stream, subject prefix and durable consumer.  The
sensors are simulated: their epochs are published here exactly as
netspectra/fleet/wire.py describes."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import nats
import numpy as np
import pytest
from prometheus_client import generate_latest

from netspectra import codec
from netspectra.alerts.rules import default_alerts
from netspectra.api.settings import ApiConfig
from netspectra.api.v1 import sensor_pb2 as pb
from netspectra.config import Config, SensorConfig
from netspectra.fleet import wire
from netspectra.fleet.collector import Collector, CollectorError, covers
from netspectra.fleet.config import CollectorConfig, FleetConfig
from netspectra.snapshot import layout_fingerprint, merge
from netspectra.store import Series, open_store
from netspectra.store.config import StoreConfig
from netspectra.tasks import layout
from tests.helpers.epochs import LAY, TASKS, epoch, packets
from tests.helpers.stores import RETENTION, same_records

W = 5.0
SENSORS = ("s1", "s2", "s3")
FP = layout_fingerprint(LAY)
ROOT = Path(__file__).resolve().parents[2]


# --- helpers --------------------------------------------------------------------------


def recent_windows(n: int) -> float:
    """The start of n consecutive windows that ended a little while ago."""
    return (math.floor(time.time() / W) - n - 2) * W


def publish(url: str, prefix: str, snaps, *, max_payload: int = 1 << 20, msg_id: str = "", codec_version=None,
            raw: list | None = None) -> list:  # fmt: skip
    """Publish epochs as a sensor does (codec record, chunks, headers); msg_id
    appended to the Nats-Msg-Id makes JetStream take a republished epoch
    again.  raw: (subject, data, headers) messages published as they are."""

    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        acks = []
        for s in snaps:
            eid = wire.epoch_id(s.origin.sensor, s.origin.interface, s.start)
            parts = wire.chunks(codec.encode(s), max_payload)
            for i, part in enumerate(parts):
                h = wire.headers(eid, i, len(parts), codec_version or codec.VERSION)
                h[wire.H_MSG_ID] += msg_id
                acks.append(await js.publish(wire.subject(prefix, s.origin.sensor), part, headers=h))
        for subject, data, headers in raw or ():
            acks.append(await js.publish(subject, data, headers=headers))
        await nc.close()
        return acks

    return asyncio.run(go())


def consumer_info(url: str, stream: str, durable: str):
    async def go():
        nc = await nats.connect(url)
        try:
            return await nc.jetstream().consumer_info(stream, durable)
        finally:
            await nc.close()

    return asyncio.run(go())


def wait_for(cond, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def settled(url: str, stream: str, durable: str) -> bool:
    info = consumer_info(url, stream, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


def configs(nats_server, tmp_path: Path, name: str, *, sensors=SENSORS, grace_s: float = 3.0, api: bool = False):
    fleet = FleetConfig(
        servers=(nats_server.url,),
        subject_prefix=f"t.{name}",
        stream=name.upper(),
        collector=CollectorConfig(durable=name, window_s=W, grace_s=grace_s, sensors=tuple(sensors), id="net"),
    )
    cfg = Config(
        sensor=SensorConfig(metrics_address=""),
        tasks=TASKS,
        alerts=default_alerts(TASKS),
        api=ApiConfig(address="", http_address="127.0.0.1:0" if api else ""),
        store=StoreConfig(url=str(tmp_path / f"{name}.db"), retention=tuple(RETENTION.items())),
        fleet=fleet,
    )
    return cfg


@contextmanager
def running(cfg, **kw):
    log = io.StringIO()
    c = Collector(cfg, log=log, **kw).start()
    c.log_text = log
    stop = threading.Event()
    failed: list = []

    def run():
        try:
            c.run(stop)
        except BaseException as e:  # reported by the test, not lost in the thread
            failed.append(e)

    t = threading.Thread(target=run, name="collector", daemon=True)
    t.start()
    try:
        wait_for(lambda: c.ready.is_set() or failed, 15, "the collector to consume")
        if failed:
            raise failed[0]
        yield c
    finally:
        stop.set()
        t.join(20)
        c.close()
    assert not t.is_alive(), "the collector did not stop"
    if failed:
        raise failed[0]


def split_traffic(rng, t: float, seq: int, n: int = 1500, untracked: str | None = None):
    """One traffic, three sensors: each a third of the packets; the port scan
    (source .200 over 80 ports of .201) split by port, so each sensor sees
    about 27 ports, below the `ports` task's threshold of 30.  Returns the
    sensors' epochs and the epoch one sensor would have made of it all."""
    keys, lengths = packets(rng, n)
    scan = keys["src"][:, 15] == 200
    part = np.where(scan, keys["dport"] % 3, np.arange(len(keys)) % 3)
    unt_all = np.zeros(len(keys), bool)
    snaps = []
    for i, s in enumerate(SENSORS):
        m = part == i
        unt = None
        if s == untracked:
            unt = rng.random(int(m.sum())) < 0.2
            unt_all[np.flatnonzero(m)[unt]] = True
        snaps.append(epoch(keys[m], lengths[m], sensor=s, untracked=unt, seq=seq, t=t))
    union = epoch(keys, lengths, untracked=unt_all if untracked else None, seq=seq, t=t)
    for s in (*snaps, union):  # flows_of() stamps by packet index; one clock for all
        s.flows["first_ns"], s.flows["last_ns"] = int(t * 1e9), int(t * 1e9) + 5
    return snaps, union


SCANNER = (b"\x00" * 10 + b"\xff\xff\x00\x00\x00\xc8", b"\x00" * 10 + b"\xff\xff\x00\x00\x00\xc9")


def has_scanner(snap) -> bool:
    keys, _ = snap.spreaders.get("ports", (np.zeros(0), None))
    return any((bytes(k["src"]), bytes(k["dst"])) == SCANNER for k in keys)


def stored(cfg, series: Series, since: float, until: float):
    st = open_store(cfg.store.url, RETENTION)
    try:
        return st.read(series, "raw", since, until)
    finally:
        st.close()


def network(since: float, until: float, cfg):
    return stored(cfg, Series("net", "network", FP), since, until)


# --- tests ----------------------------------------------------------------------------


def test_three_sensors_merge_into_what_one_sensor_sees_and_duplicates_change_nothing(nats_server, tmp_path):
    cfg = configs(nats_server, tmp_path, "merge3", api=True)
    t0 = recent_windows(2)
    rng = np.random.default_rng(11)
    win0, union0 = split_traffic(rng, t0, 0)
    win1, union1 = split_traffic(rng, t0 + W, 1, untracked="s3")  # s3's table overflowed: sketches merge too
    assert not any(has_scanner(s) for s in win0) and has_scanner(union0)
    with running(cfg) as c:
        url, prefix = nats_server.url, cfg.fleet.subject_prefix
        publish(url, prefix, win0[:1] + win0[2:])
        publish(url, prefix, win0[1:2], max_payload=wire.HEADROOM + 4096)  # s2 in 4 KiB chunks
        publish(url, prefix, win1[:1])
        publish(url, prefix, win1[:1], msg_id=".again")  # s1 again while its window is open
        publish(url, prefix, win1[1:])
        wait_for(lambda: c.stats()["applied"] == 2 and settled(url, "MERGE3", "merge3"), what="two windows applied")
        assert c.api.flush()
        merged = c.api.history.snapshots()
        assert [m.seq for m in merged] == [round(t0 / W), round(t0 / W) + 1]
        for m, parts, union in ((merged[0], win0, union0), (merged[1], win1, union1)):
            same_records(m, merge(parts))  # exactly snapshot.merge of the parts
            same_records(m, union)  # = what one sensor would have reported for all the traffic
            assert has_scanner(m)  # the scan no sensor saw is found network-wide
            assert m.origin.sensor == "net" and m.origin.interface == "network" and m.origin.layout == FP
        assert merged[0].exact and not merged[1].exact
        # the query API answers network-wide
        r = c.api.queries.TopSpreaders(pb.TopSpreadersRequest(task="ports", epochs=1))
        assert ("0.0.0.200", "0.0.0.201") in {(s.key.src_ip, s.key.dst_ip) for s in r.spreaders}
        st = c.stats()
        assert st["received"] == {"s1": 3, "s2": 2, "s3": 2} and st["duplicates"]["s1"] == 1
        assert st["windows"]["complete"] == 2 and st["late"] == {"s1": 0, "s2": 0, "s3": 0}

        # republished as they were: JetStream drops them (message ids), the collector never sees them
        acks = publish(url, prefix, win0 + win1)
        assert all(a.duplicate for a in acks)
        # republished with new message ids (a sensor replaying after the duplicate window): late, stored again
        # as each sensor's own epoch (idempotent), never merged into the closed windows
        publish(url, prefix, win0, msg_id=".replay")
        wait_for(lambda: sum(c.stats()["late"].values()) == 3 and settled(url, "MERGE3", "merge3"), what="late")
        assert c.store.flush()
        assert c.stats()["applied"] == 2 and len(c.api.history.snapshots()) == 2
        text = generate_latest(c.registry).decode()
    # the store: each merged window once, and every sensor epoch as its own series
    nets = network(t0, t0 + 2 * W, cfg)
    assert len(nets) == 2
    for got, parts in zip(nets, (win0, win1)):
        same_records(got, merge(parts))
    for i, s in enumerate(SENSORS):
        mine = stored(cfg, Series(s, "eth0", FP), t0, t0 + 2 * W)
        assert len(mine) == 2
        same_records(mine[0], win0[i])
        same_records(mine[1], win1[i])
    assert 'netspectra_collector_epochs_received_total{sensor="s1"} 4.0' in text
    assert 'netspectra_collector_duplicates_total{sensor="s1"} 1.0' in text
    assert 'netspectra_collector_late_total{sensor="s1"} 1.0' in text
    assert 'netspectra_collector_windows_total{closed="complete"} 2.0' in text
    assert "netspectra_collector_sensors 3.0" in text
    assert "netspectra_collector_consumer_pending 0.0" in text
    assert 'netspectra_collector_sensor_last_epoch_timestamp_seconds{sensor="s2"}' in text
    assert 'netspectra_packets_total{interface="network"' in text  # the merged windows' own epoch metrics


def test_bad_messages_are_refused_counted_and_acked(nats_server, tmp_path):
    cfg = configs(nats_server, tmp_path, "refuse", sensors=("s1", "s2"))
    t0 = recent_windows(1)
    rng = np.random.default_rng(5)
    keys, lengths = packets(rng, 300)
    good = [epoch(keys, lengths, sensor="s1", t=t0)]
    other_seed = tuple(replace(s, seed=s.seed + 100) if s.name == "src" else s for s in TASKS)
    wrong = epoch(keys, lengths, sensor="s9", t=t0, lay=layout(other_seed))
    # the same tasks with other names and thresholds (and any CPU count): the same arrays, accepted
    renamed = tuple(replace(s, name=s.name + "_x", hh_packets=s.hh_packets * 2) for s in TASKS)
    assert layout_fingerprint(layout(renamed, 64)) == FP == layout_fingerprint(layout(TASKS, 1))
    cousin = epoch(keys, lengths, sensor="s2", t=t0, lay=layout(renamed, 64))
    prefix = cfg.fleet.subject_prefix
    subj = wire.subject(prefix, "s7")
    garbage = [
        (subj, b"not a record", wire.headers("s7.eth0.1", 0, 1, codec.VERSION)),  # corrupt record
        (subj, b"hello", None),  # no headers at all
        (subj, b"x", {**wire.headers("s7.eth0.2", 0, 1, codec.VERSION), wire.H_CHUNK: "5/2"}),  # bad chunk header
    ]
    out = io.StringIO()
    with running(cfg, as_json=True, out=out) as c:
        url = nats_server.url
        publish(url, prefix, [wrong], raw=garbage)
        publish(url, prefix, good, codec_version=codec.VERSION + 1, msg_id=".new")  # a newer sensor's record
        publish(url, prefix, good + [cousin])
        wait_for(lambda: c.stats()["applied"] == 1 and settled(url, "REFUSE", "refuse"), what="settled")
        st = c.stats()
        log = c.log_text.getvalue()
    assert st["decode_errors"] == 3
    assert st["refused"] == {("s9", "layout"): 1, ("s1", "codec_version"): 1}
    assert st["received"] == {"s1": 1, "s2": 1} and st["windows"]["complete"] == 1
    assert "sensor s9: epoch refused: sketch layout" in log and "differs from this collector's" in log
    assert f"codec version {codec.VERSION + 1} is newer" in log
    assert all(len(line) < 300 for line in log.splitlines())
    (net,) = network(t0, t0 + W, cfg)
    same_records(net, merge(good + [epoch(keys, lengths, sensor="s2", t=t0)]))  # the cousin merged as ours
    (line,) = out.getvalue().splitlines()  # --json: one record per merged window
    rec = json.loads(line)
    assert rec["window"] == {"sensors": ["s1", "s2"], "missing": [], "closed": "complete"}
    assert (rec["start"], rec["end"], rec["origin"]["interface"]) == (t0, t0 + W, "network")
    assert rec["packets"] == 2 * len(keys)


def test_an_existing_stream_is_used_as_it_is(nats_server, tmp_path):
    cfg = configs(nats_server, tmp_path, "existing", sensors=("s1",))
    cfg = replace(cfg, fleet=replace(cfg.fleet, subject_prefix="x.existing.v1"))  # subjects overlap no other test's

    async def make():
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().add_stream(name="EXISTING", subjects=["x.existing.>"], max_age=3600.0)
        await nc.close()

    asyncio.run(make())
    t0 = recent_windows(1)
    s1 = epoch(*packets(np.random.default_rng(2), 100), sensor="s1", t=t0)
    with running(cfg) as c:
        publish(nats_server.url, cfg.fleet.subject_prefix, [s1])
        wait_for(lambda: c.stats()["applied"] == 1, what="the window")
        log = c.log_text.getvalue()
    assert "stream EXISTING exists with other settings: max_age 3600.0 (not 86400.0)" in log
    assert "using it as it is" in log and "created stream" not in log
    elsewhere = replace(cfg, fleet=replace(cfg.fleet, subject_prefix="u.existing"))
    with pytest.raises(CollectorError, match=r"stream EXISTING exists without the subjects u.existing.epochs.>"):
        with running(elsewhere):
            pass
    S = "netspectra.v1.epochs.>"
    for pattern, want in [(S, True), ("netspectra.>", True), (">", True), ("netspectra.v1.*.>", True),
                          ("netspectra.v1.epochs.*", False), ("other.>", False), ("netspectra.v1", False)]:  # fmt: skip
        assert covers(pattern, S) == want, pattern


def test_refuses_to_start_without_servers(tmp_path, nats_server):
    cfg = configs(nats_server, tmp_path, "noservers")
    with pytest.raises(CollectorError, match="fleet.servers is empty"):
        Collector(replace(cfg, fleet=replace(cfg.fleet, servers=()))).start()
    away = replace(cfg.fleet, servers=("nats://user:secret@127.0.0.1:1",))
    c = Collector(replace(cfg, fleet=away), log=io.StringIO()).start()
    try:
        with pytest.raises(CollectorError, match="cannot connect to NATS at nats://127.0.0.1:1: ") as e:
            c.run(threading.Event())
        assert "secret" not in str(e.value)
    finally:
        c.close()


def test_a_nats_outage_loses_nothing(nats_server, tmp_path):
    cfg = configs(nats_server, tmp_path, "outage")
    url, prefix = nats_server.url, cfg.fleet.subject_prefix
    t0 = recent_windows(1)
    win0, _ = split_traffic(np.random.default_rng(9), t0, 0, n=300)
    with running(cfg) as c:
        publish(url, prefix, win0[:2])
        wait_for(lambda: sum(c.stats()["received"].values()) == 2, what="two epochs held")
        nats_server.stop()
        try:
            time.sleep(cfg.fleet.collector.grace_s + 0.5)  # longer than the grace: nothing can arrive, none counts
            assert c.stats()["applied"] == 0
        finally:
            nats_server.start()
        publish(url, prefix, win0[2:])
        wait_for(lambda: c.stats()["applied"] == 1 and settled(url, "OUTAGE", "outage"), what="the window")
        st, log = c.stats(), c.log_text.getvalue()
    assert st["windows"]["complete"] == 1 and st["late"] == {"s1": 0, "s2": 0, "s3": 0}
    assert "NATS disconnected" in log and "NATS reconnected" in log
    (net,) = network(t0, t0 + W, cfg)
    same_records(net, merge(win0))


def test_the_command_says_where_it_reads_and_stops_on_sigterm(nats_server, tmp_path):
    from click.testing import CliRunner

    from netspectra.cli import main

    r = CliRunner().invoke(main, ["collector"])
    assert r.exit_code == 1 and r.output.strip().splitlines()[-1] == (
        "Error: fleet.servers is empty: set it to the NATS servers the sensors publish to"
    )
    conf = tmp_path / "collector.yaml"
    conf.write_text(
        'sensor: {metrics_address: ""}\napi: {address: "", http_address: ""}\nstore: {url: off}\n'
        f"fleet: {{servers: [{nats_server.url}], subject_prefix: t.cli, stream: CLI, collector: {{durable: cli, id: lab}}}}\n"
    )
    exe = Path(sys.executable).with_name("netspectra")
    proc = subprocess.Popen([str(exe), "collector", "--config", str(conf)], stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stderr.readline() for _ in range(2)]
        assert lines[0].startswith("netspectra: collector: created stream CLI"), lines
        assert lines[1].startswith(f"netspectra: collector lab on {nats_server.url}: stream CLI, subjects t.cli.epochs.>, "
                                   "consumer cli (ack wait 45s); windows 5s + grace 10s, sensors: whoever reports;"), lines  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=15)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert rest.strip() == "netspectra: collector lab stopped after 0 windows"


_CRASHER = """
import json, sys, threading
from netspectra.fleet.collector import Collector
from tests.unit.test_fleet_collector import configs_from
cfg, ack_wait = configs_from(json.loads(sys.argv[1]))
c = Collector(cfg, ack_wait_s=ack_wait).start()
async def never(msgs):  # applies (writes the store) but dies before acking anything
    pass
c._ack = never
c.run(threading.Event())
"""


def configs_from(args: dict):
    """configs() in the crashing subprocess of the restart test."""
    from types import SimpleNamespace

    cfg = configs(SimpleNamespace(url=args["url"]), Path(args["dir"]), args["name"])
    return cfg, args["ack_wait"]


def test_a_window_not_acked_comes_again_after_a_restart_and_is_applied_once(nats_server, tmp_path):
    url, name, ack_wait = nats_server.url, "restart", 3.0  # seconds: room for a loaded CI machine
    cfg = configs(nats_server, tmp_path, name)
    fleet = cfg.fleet
    t0 = recent_windows(2)
    rng = np.random.default_rng(3)
    win0, _ = split_traffic(rng, t0, 0, n=600)
    win1, _ = split_traffic(rng, t0 + W, 1, n=600)

    # 1. stopped cleanly while window 0 waits for a fourth sensor: its messages go back (nak) at once
    waiting = replace(fleet, collector=replace(fleet.collector, sensors=(*SENSORS, "s4"), grace_s=60.0))
    with running(replace(cfg, fleet=waiting), ack_wait_s=ack_wait) as c:
        publish(url, fleet.subject_prefix, win0)
        wait_for(lambda: sum(c.stats()["received"].values()) == 3, what="window 0 held")
        time.sleep(1.5 * ack_wait)  # held longer than ack_wait: kept alive with in_progress(), not redelivered
        assert consumer_info(url, name.upper(), name).num_redelivered == 0
        assert c.stats()["applied"] == 0 and sum(c.stats()["duplicates"].values()) == 0
    assert network(t0, t0 + 2 * W, cfg) == []

    # 2. killed (SIGKILL) after writing window 0 and 1 to the store, before acking them
    args = json.dumps({"url": url, "dir": str(tmp_path), "name": name, "ack_wait": ack_wait})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _CRASHER, args], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        publish(url, fleet.subject_prefix, win1)
        wait_for(lambda: len(network(t0, t0 + 2 * W, cfg)) == 2, 30, "the crashing collector to store two windows")
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
    assert consumer_info(url, name.upper(), name).num_ack_pending == 6, err.decode()[-2000:]

    # 3. the next collector gets them again once ack_wait passes, rebuilds both windows, applies them once
    with running(cfg, ack_wait_s=ack_wait) as c:
        wait_for(lambda: c.stats()["applied"] == 2 and settled(url, name.upper(), name), what="windows again")
        assert c.store.flush()
        assert c.history.sink.results["duplicate"] == 8  # 2 merged windows + 6 sensor epochs, already there
    nets = network(t0, t0 + 2 * W, cfg)
    assert len(nets) == 2
    same_records(nets[0], merge(win0))
    same_records(nets[1], merge(win1))
    assert len(stored(cfg, Series("s1", "eth0", FP), t0, t0 + 2 * W)) == 2


def test_store_sensors_false_keeps_only_the_windows(nats_server, tmp_path):
    """fleet.collector.store_sensors: false writes the merged windows only (half
    the store's work with many sensors); per-sensor history is then not kept."""
    cfg = configs(nats_server, tmp_path, "nosensors")
    cfg = replace(cfg, fleet=replace(cfg.fleet, collector=replace(cfg.fleet.collector, store_sensors=False)))
    url, prefix = nats_server.url, cfg.fleet.subject_prefix
    t0 = recent_windows(1)
    win0, _ = split_traffic(np.random.default_rng(5), t0, 0, n=300)
    with running(cfg) as c:
        publish(url, prefix, win0)
        wait_for(lambda: c.stats()["applied"] == 1 and settled(url, "NOSENSORS", "nosensors"), what="the window")
        assert c.store.flush()
    (net,) = network(t0, t0 + W, cfg)
    same_records(net, merge(win0))
    assert stored(cfg, Series("s1", "eth0", FP), t0, t0 + W) == []
