"""The fleet end to end: three real sensors on three veth links, each seeing
a third of one generated traffic, publish to a real nats-server; `netspectra
collector` merges their epochs, and `netspectra query` against the collector
answers for all the traffic: every flow exact, and a port scan split across
the three sensors -- below the threshold on each -- found network-wide.
Then the collector is killed and restarted, NATS stopped and started, and a
sensor SIGKILLed and restarted: nothing is lost and nothing counted twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netspectra import packets as P
from netspectra.netns import VethPair

from .test_cli import BIN

pytestmark = pytest.mark.root

QUERY = Path(sys.executable).parent / "netspectra"
STREAM, PREFIX = "E2E", "e2e.v1"
SENSORS = ("edge0", "edge1", "edge2")
SCANNER, TARGET, PORTS = "10.9.9.9", "10.2.2.2", 150  # 50 ports per sensor: port_scan threshold is 100
FLOWS = [  # (src, dst, proto, sport, dport, packets, size)
    ("10.1.1.1", "10.2.2.2", P.UDP, 1001, 53, 30, 100),
    ("10.1.1.2", "10.2.2.3", P.TCP, 40000, 443, 21, 700),
    ("2001:db8::1", "2001:db8::2", P.TCP, 5555, 80, 12, 300),
]


def traffic() -> list[tuple[bytes, int]]:
    """(frame, link): the planted flows spread over the three links, and the
    port scan's ports dealt out so each sensor sees a third of them."""
    out = []
    for src, dst, proto, sport, dport, n, size in FLOWS:
        out += [(P.frame(src, dst, proto, sport, dport, size=size), i % 3) for i in range(n)]
    out += [(P.frame(SCANNER, TARGET, P.TCP, 33333, 1000 + p, size=60), p % 3) for p in range(PORTS)]
    return out


def want_flows() -> dict:
    w = {(s, d, pr, sp, dp): (n, n * size) for s, d, pr, sp, dp, n, size in FLOWS}
    for p in range(PORTS):
        w[(SCANNER, TARGET, P.TCP, 33333, 1000 + p)] = (1, 60)
    return w


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    from tests.helpers.nats import NatsServer, free_port

    monkeypatch.setenv("NETSPECTRA_RUN_DIR", str(tmp_path / "run"))
    with VethPair(links=3) as v:
        srv = NatsServer(tmp_path / "nats", netns=v.ns_b).start()
        fl = (
            f"fleet:\n  servers: [{srv.url}]\n  stream: {STREAM}\n  subject_prefix: {PREFIX}\n"
            "  collector:\n    window: 1s\n    grace: 3s\n    sensors: [edge0, edge1, edge2]\n    id: net\n"
        )
        api = free_port()
        (tmp_path / "collector.yaml").write_text(
            f"sensor:\n  metrics_address: ''\napi:\n  address: 127.0.0.1:{api}\n  http_address: ''\n"
            f"  keep_epochs: 100\nstore:\n  url: {tmp_path / 'net.db'}\n{fl}"
        )
        for i, name in enumerate(SENSORS):
            (tmp_path / f"{name}.yaml").write_text(
                f"sensor:\n  metrics_address: ''\n  id: {name}\napi:\n  address: ''\n  http_address: ''\n"
                f"store:\n  url: 'off'\n{fl}  spool_dir: {tmp_path / ('spool' + str(i))}\n"
            )
        procs: list = []
        try:
            yield v, srv, tmp_path, api, procs
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            srv.stop()


def spawn(v, tmp_path, *argv, name: str):
    out = open(tmp_path / f"{name}.out", "a+")
    err = open(tmp_path / f"{name}.err", "a+")
    return subprocess.Popen(["ip", "netns", "exec", v.ns_b, *map(str, argv)], stdout=out, stderr=err)


def start_collector(v, tmp_path):
    return spawn(v, tmp_path, QUERY, "collector", "--config", tmp_path / "collector.yaml", name="collector")


def query(v, api, *args) -> dict:
    r = subprocess.run(
        ["ip", "netns", "exec", v.ns_b, str(QUERY), "query", "--server", f"127.0.0.1:{api}", "--json", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def flows(v, api) -> dict:
    doc = query(v, api, "flows", "--since", "10m", "--all", "-n", "1000")
    return {
        (f["key"]["src_ip"], f["key"]["dst_ip"], f["key"]["proto"], f["key"].get("src_port", 0),
         f["key"].get("dst_port", 0)): (int(f["packets"]), int(f["bytes"]))
        for f in doc.get("flows", [])
    }  # fmt: skip


def attached(tmp_path, pid: int) -> bool:
    """The sensor process `pid` wrote its state file (it has attached)."""
    from netspectra.sensor import read_state

    return any((read_state(f) or {}).get("pid") == pid for f in (tmp_path / "run").glob("*.json"))


def same_flows(v, api, want: dict):
    """The collector's flows when they are want, else AssertionError saying how they differ."""
    got = flows(v, api)
    if got != want:
        diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
        raise AssertionError(f"{len(diff)} flows differ (got, want): {dict(list(diff.items())[:5])}")
    return got


def wait_for(fn, what: str, timeout: float = 40.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except AssertionError as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"{what}: {last}")


def test_three_sensors_merge_into_one_network_view(fleet):
    v, srv, tmp_path, api, procs = fleet
    procs.append(start_collector(v, tmp_path))
    for i, name in enumerate(SENSORS):
        procs.append(spawn(v, tmp_path, BIN, "attach", v.links[i][1], "--epoch", "1s",
                           "--config", tmp_path / f"{name}.yaml", name=name))  # fmt: skip
    wait_for(lambda: len(list((tmp_path / "run").glob("*.json"))) == 3, "three sensors attached")
    wait_for(lambda: query(v, api, "status").get("epochs_completed"), "the collector's first window")

    sent = 0
    for frame, link in traffic():
        sent += v.send([frame], link=link)
    want = want_flows()
    assert sent == sum(n for n, _ in want.values())

    got = wait_for(lambda: same_flows(v, api, want), "every flow, network-wide")
    assert got == want
    # the scan: 50 ports on each sensor (threshold 100), 150 network-wide
    spread = query(v, api, "spreaders", "port_scan", "--since", "10m")
    assert spread["exact"] is True
    assert {(s["key"]["src_ip"], s["key"]["dst_ip"]): s["distinct"] for s in spread["spreaders"]}[
        (SCANNER, TARGET)
    ] == PORTS

    # kill the collector, stop NATS for a few windows, bring both back: nothing lost, nothing twice
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    srv.stop()
    more = [(P.frame("10.5.5.5", "10.6.6.6", P.UDP, 7, 7, size=200), i % 3) for i in range(30)]
    for frame, link in more:
        v.send([frame], link=link)
    time.sleep(3)
    srv.start()
    procs[0] = start_collector(v, tmp_path)
    want[("10.5.5.5", "10.6.6.6", P.UDP, 7, 7)] = (30, 6000)
    got = wait_for(lambda: same_flows(v, api, want), "every flow after the outages", timeout=60)
    assert got == want
    st = query(v, api, "status", "--since", "10m")
    assert int(st["range"]["total"]["packets"]) == sent + 30

    # SIGKILL a sensor (its closed epochs are published or in its disk spool) and start it again
    procs[2].send_signal(signal.SIGKILL)
    procs[2].wait()
    procs[2] = spawn(v, tmp_path, BIN, "attach", v.links[1][1], "--epoch", "1s",
                     "--config", tmp_path / "edge1.yaml", name="edge1")  # fmt: skip
    wait_for(lambda: attached(tmp_path, procs[2].pid), "the sensor attached again")
    v.send([P.frame("10.7.7.7", "10.8.8.8", P.UDP, 9, 9, size=100)] * 15, link=1)
    want[("10.7.7.7", "10.8.8.8", P.UDP, 9, 9)] = (15, 1500)
    got = wait_for(lambda: same_flows(v, api, want), "every flow after a sensor's SIGKILL", timeout=60)
    assert got == want
    # stop everything cleanly: the sensors' spools are empty
    for p in procs[1:]:
        p.terminate()
        p.wait(timeout=30)
    assert not any(list((tmp_path / f"spool{i}").glob("*.rec")) for i in range(3))
    assert os.path.exists(tmp_path / "net.db")
