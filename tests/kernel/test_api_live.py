"""The query API, live: the real sensor on a veth pair in a throwaway namespace,
known frames sent through it, and `netspectra query` (the real client, over
gRPC, inside that namespace) returning exactly the planted flows and counts."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from netspectra import packets as P

from .test_cli import finish, start, wait_attached, xdp_id

pytestmark = pytest.mark.root

QUERY = Path(sys.executable).parent / "netspectra"
KEEP = 200  # epochs kept: at 200 ms, 40 s of history covers the whole test

# (src, dst, proto, sport, dport, packets, frame size): distinct counts and sizes, so order is known
PLANTED = [
    ("10.1.1.1", "10.2.2.2", P.UDP, 1001, 53, 40, 100),
    ("10.1.1.2", "10.2.2.2", P.UDP, 1002, 53, 30, 300),
    ("10.1.1.3", "10.2.2.9", P.TCP, 40000, 443, 20, 1400),
    ("10.1.1.3", "10.2.2.9", P.TCP, 40001, 443, 10, 64),
    ("2001:db8::1", "2001:db8::2", P.TCP, 5555, 80, 25, 700),
]


def query(v, *args, check=True):
    """`netspectra query ...` run inside the sensor's namespace."""
    r = subprocess.run(
        ["ip", "netns", "exec", v.ns_b, str(QUERY), "query", *args], capture_output=True, text=True, timeout=60
    )
    if check:
        assert r.returncode == 0, r.stderr
    return r


def query_json(v, *args):
    return json.loads(query(v, "--json", *args).stdout)


@pytest.fixture
def sensor(veth, tmp_path):
    cfg = tmp_path / "api.yaml"
    cfg.write_text(f"sensor:\n  metrics_address: ''\napi:\n  keep_epochs: {KEEP}\n")
    proc = start(veth, "--epoch", "200ms", "--json", "--config", str(cfg))
    try:
        wait_attached(veth, proc)
        yield proc
    finally:
        proc.terminate()
        finish(proc)


def send_planted(v) -> int:
    frames = []
    for src, dst, proto, sport, dport, n, size in PLANTED:
        frames += [P.frame(src, dst, proto, sport, dport, size=size)] * n
    return v.send(frames)


def wait_counted(v, packets: int, timeout: float = 15.0) -> dict:
    """GetStatus until every sent frame is counted in a completed epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = query_json(v, "status")
        if st["total"]["packets"] >= packets:
            return st
        time.sleep(0.2)
    raise AssertionError(f"sensor counted {st['total']['packets']} of {packets} packets")


def test_query_top_and_flows_return_the_planted_traffic(veth, sensor):
    sent = send_planted(veth)
    assert sent == sum(p[5] for p in PLANTED)
    st = wait_counted(veth, sent)
    assert st["total"] == {"packets": sent, "bytes": sum(p[5] * p[6] for p in PLANTED)}
    assert st["interface"] == veth.dev_b and st["xdp_mode"] in ("native", "generic")
    assert st["keep_epochs"] == KEEP and st["epochs_completed"] >= 1
    assert st["kernel_memory_total"] > 0
    assert st["latest"]["exact"] is True  # the table held every packet

    # every exact flow, summed over all kept epochs (the traffic may straddle a flip)
    flows = query_json(veth, "flows", "--epochs", str(KEEP), "--all", "-n", "2")["flows"]
    got = {
        (f["key"]["src_ip"], f["key"]["dst_ip"], f["key"]["proto"], f["key"]["src_port"], f["key"]["dst_port"]): (
            f["packets"],
            f["bytes"],
        )
        for f in flows
    }
    assert len(flows) == len(PLANTED)
    assert got == {(s, d, pr, sp, dp): (n, n * size) for s, d, pr, sp, dp, n, size in PLANTED}
    # largest bytes first
    assert [f["bytes"] for f in flows] == sorted((p[5] * p[6] for p in PLANTED), reverse=True)

    # the flow task's top keys by packets: exactly the planted flows, in order, exact counts
    top = query_json(veth, "top", "flow", "--by", "packets", "--epochs", str(KEEP), "-n", "10")
    want = sorted(PLANTED, key=lambda p: -p[5])
    assert top["exact"] is True and (top["packets_error_bound"], top["bytes_error_bound"], top["confidence"]) == (
        0,
        0,
        1,
    )
    assert [(k["key"]["src_ip"], k["key"]["src_port"], k["packets"], k["bytes"]) for k in top["keys"]] == [
        (s, sp, n, n * size) for s, _, _, sp, _, n, size in want
    ]
    # the src task: per-source sums
    top = query_json(veth, "top", "src", "--epochs", str(KEEP))
    by_src = {}
    for s, _, _, _, _, n, size in PLANTED:
        p, b = by_src.get(s, (0, 0))
        by_src[s] = (p + n, b + n * size)
    assert {k["key"]["src_ip"]: (k["packets"], k["bytes"]) for k in top["keys"]} == by_src
    assert top["exact"] is True

    # fan-in: distinct sources per destination, exact
    fanin = query_json(veth, "spreaders", "fanin_src", "--epochs", str(KEEP))
    assert (fanin["exact"], fanin["relative_error"]) == (True, 0)
    assert {s["key"]["dst_ip"]: (s["distinct"], s["flows"]) for s in fanin["spreaders"]} == {
        "10.2.2.2": (2, 2),
        "10.2.2.9": (1, 2),
        "2001:db8::2": (1, 1),
    }

    # filters, estimate and trace through the same client
    tcp443 = query_json(
        veth, "flows", "--epochs", str(KEEP), "--proto", "tcp", "--dport", "443", "--src", "10.1.1.0/24"
    )
    assert sorted(f["key"]["src_port"] for f in tcp443["flows"]) == [40000, 40001] and tcp443["total"] == 2
    est = query_json(veth, "estimate", "src", "10.1.1.3", "--epochs", str(KEEP))
    assert (est["packets"], est["bytes"]) == (30, 20 * 1400 + 10 * 64)
    assert est["exact"] is True and (est["packets_error_bound"], est["bytes_error_bound"]) == (0, 0)
    est = query_json(veth, "estimate", "spread_dst", "10.1.1.3", "--epochs", str(KEEP))
    assert (est["distinct"], est["relative_error"], est["exact"]) == (1, 0, True)
    tr = query_json(
        veth, "trace", "src_ip=2001:db8::1", "dst_ip=2001:db8::2", "proto=tcp", "src_port=5555", "dst_port=80"
    )
    assert tr["total"] == {"packets": 25, "bytes": 25 * 700}

    # the table output names the flows too
    text = query(veth, "flows", "--epochs", str(KEEP)).stdout
    assert "10.1.1.3" in text and "2001:db8::1" in text and f"{len(PLANTED)} of {len(PLANTED)} matching flows" in text

    # HTTP/JSON answers the same question
    with veth.inside_b():
        with urllib.request.urlopen(f"http://127.0.0.1:9783/v1/flows?epochs={KEEP}&page_size=100", timeout=10) as r:
            http = json.loads(r.read())
    assert http["total"] == len(PLANTED)
    assert sum(f["packets"] for f in http["flows"]) == sent


def test_watch_epochs_streams_live_epochs(veth, sensor):
    r = query(veth, "--json", "watch-epochs", "--count", "3")
    epochs = [json.loads(line) for line in r.stdout.splitlines()]
    seqs = [e["epoch"] for e in epochs]
    assert len(seqs) == 3 and seqs == sorted(seqs) and len(set(seqs)) == 3


def test_query_finds_the_sensor_by_interface(veth, sensor):
    st = query_json(veth, "--iface", veth.dev_b, "status")
    assert st["interface"] == veth.dev_b
    r = query(veth, "--iface", "nosuchdev0", "status", check=False)
    assert r.returncode == 1 and "no netspectra sensor is attached to nosuchdev0" in r.stderr
    r = query(veth, "--iface", veth.dev_b, "--server", "127.0.0.1:9782", "status", check=False)
    assert r.returncode == 1 and "give --iface or --server, not both" in r.stderr


def test_query_errors_are_one_line(veth, sensor):
    r = query(veth, "top", "spread_dst", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "task: 'spread_dst' is a superspread task" in r.stderr
    r = query(veth, "--server", "127.0.0.1:1", "status", check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "cannot reach the sensor at 127.0.0.1:1" in r.stderr


def test_sensor_exit_closes_the_api(veth, sensor):
    sensor.terminate()
    out, err = finish(sensor)
    assert sensor.returncode == 0, err
    assert "query API grpc://127.0.0.1:9782 and http://127.0.0.1:9783/v1/" in err
    assert xdp_id(veth) == 0
    r = query(veth, "status", check=False)
    assert r.returncode == 1 and "cannot reach the sensor" in r.stderr
