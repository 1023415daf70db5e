"""The sensor's Prometheus endpoint, live: the real CLI in a throwaway namespace,
real frames on a veth pair, scraped over HTTP from inside that namespace."""

import socket
import time
import urllib.request

import pytest

from netspectra import packets as P

from .test_cli import finish, start, wait_attached, xdp_id

pytestmark = pytest.mark.root


def free_port(v) -> int:
    with v.inside_b(), socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tmp_path, address: str) -> str:
    path = tmp_path / "metrics.yaml"
    path.write_text(f"sensor:\n  metrics_address: '{address}'\n")
    return str(path)


def scrape(v, port: int) -> dict[str, float]:
    """/metrics from inside the sensor's namespace, as {series: value}."""
    with v.inside_b():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def test_scrape_counts_the_frames_sent(veth, tmp_path):
    port = free_port(veth)
    proc = start(veth, "--epoch", "200ms", "--json", "--config", config(tmp_path, f"127.0.0.1:{port}"))
    try:
        wait_attached(veth, proc)
        dev = veth.dev_b
        m = scrape(veth, port)
        assert m[f'netspectra_packets_total{{interface="{dev}",proto="udp"}}'] == 0
        assert any(k.startswith("netspectra_build_info{") for k in m)
        assert m[f'netspectra_kernel_memory_bytes{{interface="{dev}",map="countmin"}}'] > 0

        sent = veth.send([P.frame("10.1.1.1", "10.2.2.2", P.UDP, 1, 2, size=100)] * 321)
        udp = f'netspectra_packets_total{{interface="{dev}",proto="udp"}}'
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = scrape(veth, port)
            if m[udp] >= sent:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # a few more epochs: nothing is counted twice
        m = scrape(veth, port)
        assert m[udp] == sent == 321
        assert m[f'netspectra_bytes_total{{interface="{dev}",proto="udp"}}'] == 321 * 100
        assert m[f'netspectra_parse_outcome_packets_total{{interface="{dev}",outcome="ipv4"}}'] == 321
        assert m[f'netspectra_epochs_total{{interface="{dev}"}}'] >= 2
        assert m[f'netspectra_last_epoch_timestamp_seconds{{interface="{dev}"}}'] > time.time() - 5
    finally:
        proc.terminate()
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert f"metrics http://127.0.0.1:{port}/metrics" in err
    assert xdp_id(veth) == 0
