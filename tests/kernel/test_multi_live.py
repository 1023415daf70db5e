"""One sensor process on two interfaces (issue 12): the real CLI in a throwaway
namespace with two veth links, different frames on each, checked exactly per
interface in the metrics, the query API (one interface, and all merged), the
--json records and the state files."""

import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from netspectra import packets as P
from netspectra.netns import VethPair

from .test_cli import cli, finish, one_line_error, start

pytestmark = pytest.mark.root


@pytest.fixture
def veth2(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPECTRA_RUN_DIR", str(tmp_path / "run"))
    with VethPair(links=2) as v:
        yield v


def free_ports(v, n: int) -> list[int]:
    with v.inside_b():
        socks = [socket.socket() for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in socks]
        for s in socks:
            s.close()
    return ports


def get(v, url: str):
    with v.inside_b(), urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def scrape(v, port: int) -> dict[str, float]:
    out = {}
    for line in get(v, f"http://127.0.0.1:{port}/metrics").splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def ask(v, port: int, path: str, **params) -> dict:
    return json.loads(get(v, f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"))


def flow_packets(answer: dict) -> dict[str, int]:
    return {f["key"]["src_ip"]: f["packets"] for f in answer["flows"]}


def until(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
            if got:
                return got
        except (OSError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check.__doc__ or check}")
        time.sleep(0.1)


def test_two_interfaces_one_process(veth2, tmp_path):
    dev0, dev1 = veth2.links[0][1], veth2.links[1][1]
    metrics, grpc, http = free_ports(veth2, 3)
    cfg = tmp_path / "multi.yaml"
    db = tmp_path / "history.db"
    cfg.write_text(f"api:\n  http_address: '127.0.0.1:{http}'\n  keep_epochs: 200\nstore:\n  url: '{db}'\n")
    proc = start(veth2, dev1, "--epoch", "200ms", "--json", "--config", str(cfg),
                 "--metrics-address", f"127.0.0.1:{metrics}", "--api-address", f"127.0.0.1:{grpc}")  # fmt: skip
    try:
        run = Path(os.environ["NETSPECTRA_RUN_DIR"])
        until(lambda: len(list(run.glob("*.json"))) == 2 or proc.poll() is not None)
        assert proc.poll() is None, finish(proc)[1]
        r = cli(veth2, "status", "--json")
        rows = {row["iface"]: row for row in json.loads(r.stdout)}
        assert set(rows) == {dev0, dev1} and rows[dev0]["pid"] == rows[dev1]["pid"] == proc.pid
        assert rows[dev0]["interfaces"] == [dev0, dev1]

        a, b = "10.1.1.1", "10.3.3.3"
        assert veth2.send([P.frame(a, "10.2.2.2", P.UDP, 1, 2, size=100)] * 123, link=0) == 123
        assert veth2.send([P.frame(b, "10.4.4.4", P.TCP, 3, 4, size=200)] * 77, link=1) == 77

        udp = [f'netspectra_packets_total{{interface="{d}",proto="udp"}}' for d in (dev0, dev1)]
        tcp = [f'netspectra_packets_total{{interface="{d}",proto="tcp"}}' for d in (dev0, dev1)]

        def counted():
            m = scrape(veth2, metrics)
            return m if m[udp[0]] >= 123 and m[tcp[1]] >= 77 else None

        until(counted)
        time.sleep(0.5)  # more epochs: nothing counted twice, nothing on the other interface
        m = scrape(veth2, metrics)
        assert (m[udp[0]], m[tcp[0]], m[udp[1]], m[tcp[1]]) == (123, 0, 0, 77)
        assert m[f'netspectra_bytes_total{{interface="{dev1}",proto="tcp"}}'] == 77 * 200
        for name in ("netspectra_flows", "netspectra_epoch_exact", "netspectra_kernel_memory_bytes"):
            assert {d for d in (dev0, dev1) if any(k.startswith(f'{name}{{interface="{d}"') for k in m)} == {dev0, dev1}
        assert sum(1 for k in m if k.startswith("netspectra_build_info{")) == 1
        assert f'netspectra_api_streams{{interface="{dev0}+{dev1}"}}' in m  # the process's one API
        for d in (dev0, dev1, f"{dev0}+{dev1}"):  # each interface's kept epochs, and the merge's
            assert m[f'netspectra_api_epochs_kept{{interface="{d}"}}'] >= 1

        # the query API: one interface ("/<iface>" or "<id>/<iface>"), or every interface merged
        one = ask(veth2, http, "/v1/flows", sensor=f"/{dev0}", epochs=200)
        assert flow_packets(one) == {a: 123} and one["epochs"]["interface"] == dev0
        other = ask(veth2, http, "/v1/flows", sensor=f"/{dev1}", epochs=200)
        assert flow_packets(other) == {b: 77} and other["epochs"]["interface"] == dev1

        def merged():
            got = ask(veth2, http, "/v1/flows", epochs=200)
            return got if flow_packets(got) == {a: 123, b: 77} else None

        every = until(merged)
        assert every["epochs"]["interface"] == f"{dev0}+{dev1}"
        top = ask(veth2, http, "/v1/top", task="src", metric="packets", epochs=200)
        assert [(k["key"]["src_ip"], k["packets"]) for k in top["keys"]] == [(a, 123), (b, 77)] and top["exact"]
        top1 = ask(veth2, http, "/v1/top", task="src", metric="packets", epochs=200, sensor=f"/{dev1}")
        assert [(k["key"]["src_ip"], k["packets"]) for k in top1["keys"]] == [(b, 77)]
        st = ask(veth2, http, "/v1/status")
        assert st["interfaces"] == [dev0, dev1] and st["interface"] == f"{dev0}+{dev1}"
        assert ask(veth2, http, "/v1/status", sensor=f"/{dev1}")["total"]["packets"] == 77
        with pytest.raises(urllib.error.HTTPError) as e:
            ask(veth2, http, "/v1/top", task="src", sensor="/nope0")
        body = json.loads(e.value.read())
        assert body["error"] == f"sensor: no interface 'nope0' on this sensor (interfaces: {dev0}, {dev1})"

        # detaching one interface stops the process (and both programs)
        r = cli(veth2, "detach", dev1)
        assert r.returncode == 0 and f"on {dev0}, {dev1}" in r.stdout, r.stderr
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert f"attached to {dev0}" in err and f"attached to {dev1}" in err
    recs = [json.loads(line) for line in out.splitlines()]
    assert {r["interface"] for r in recs} == {dev0, dev1}
    for dev, src, want in ((dev0, a, 123), (dev1, b, 77)):
        mine = [r for r in recs if r["interface"] == dev]
        assert all(r["origin"]["interface"] == dev for r in mine)
        assert sum(f["packets"] for r in mine for f in r["flows"] if f["src"] == src) == want
        assert not [f for r in mine for f in r["flows"] if f["src"] == (b if src == a else a)]
    assert not list(run.glob("*.json"))
    # history: each interface is a series of its own, every epoch stored, each frame once
    from netspectra.store.sqlite import SqliteStore

    st = SqliteStore(db, {"raw": 86400.0, "1m": 86400.0, "1h": 86400.0})
    series = {i.series.interface: i for i in st.series()}
    assert set(series) == {dev0, dev1}
    for dev, want in ((dev0, 123), (dev1, 77)):
        stored = st.read(series[dev].series, "raw", 0, time.time() + 60)
        assert len(stored) == len([r for r in recs if r["interface"] == dev])
        assert sum(int(f["packets"]) for s in stored for f in s.flows) == want
    st.close()
    with veth2.inside_b():
        from netspectra.kernel import libbpf

        assert [libbpf.xdp_query_id(socket.if_nametoindex(d)) for d in (dev0, dev1)] == [0, 0]


def test_interface_errors_are_one_line(veth2, tmp_path):
    dev0, dev1 = veth2.links[0][1], veth2.links[1][1]
    one_line_error(cli(veth2, "attach", dev0, dev1, dev0), "IFACE:", f"'{dev0}' is listed twice")
    one_line_error(cli(veth2, "attach"), "no interface to attach to", "sensor.interfaces")
    one_line_error(cli(veth2, "attach", dev0, "nsp-missing9"), "no such interface: nsp-missing9")
    one_line_error(
        cli(veth2, "attach", dev0, "--metrics-address", "nope"), "--metrics-address", "'nope' is not host:port"
    )
    one_line_error(cli(veth2, "attach", dev0, "--api-address", "1.2.3.4:0"), "--api-address", "port 0")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"sensor:\n  interfaces: [{dev0}, {dev0}]\n")
    one_line_error(cli(veth2, "attach", "--config", str(bad)), "bad.yaml", "sensor.interfaces", "listed twice")
