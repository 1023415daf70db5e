"""The port-scan default task, live: a real SYN scan of about 1000 ports of one
host (nDPI's synscan.pcap) replayed through a veth pair into the real sensor
CLI.  The scanner must show in the live view, the Prometheus metrics, the
sensor's own alerts and the query API -- exactly, since the flow table holds
every flow of the scan."""

import time
from pathlib import Path

import pytest

from tests.helpers.replay import tcpreplay

from .test_api_live import query_json
from .test_cli import finish, start, wait_attached, xdp_id
from .test_metrics_live import free_port, scrape

pytestmark = pytest.mark.root

SYNSCAN = Path(__file__).resolve().parents[3] / "shared" / "pcaps" / "ndpi__synscan.pcap"
SCANNER, TARGET, PORTS = "172.16.0.8", "64.13.134.52", 1000  # distinct ports, per tshark


def test_syn_scan_reported_by_view_metrics_alerts_and_api(veth, tmp_path):
    assert SYNSCAN.exists(), f"{SYNSCAN} missing (../shared/pcaps)"
    port = free_port(veth)
    cfg = tmp_path / "scan.yaml"
    cfg.write_text(f"sensor:\n  metrics_address: '127.0.0.1:{port}'\n")
    proc = start(veth, "--epoch", "1s", "--config", str(cfg))
    labels = {"interface": veth.dev_b, "task": "port_scan", "src_ip": SCANNER, "dst_ip": TARGET}  # key fields as labels
    series = "netspectra_spreader_distinct{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    fired = f'netspectra_alerts_fired_total{{interface="{veth.dev_b}",rule="port_scan"}}'
    seen, alerts = [], 0.0
    try:
        wait_attached(veth, proc)
        tcpreplay(veth, SYNSCAN)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (seen and alerts):
            m = scrape(veth, port)
            if series in m:
                seen.append(m[series])
            alerts = m.get(fired, 0.0)
            time.sleep(0.2)
        # metrics: the last epoch's spreads (the replay may straddle a flip: then a part of it)
        assert seen and max(seen) >= 100, f"no port_scan series {series} in the metrics"
        assert alerts >= 1, "the port_scan alert did not fire"
        # API: the window of every kept epoch holds the whole scan, counted from the exact flows
        top = query_json(veth, "spreaders", "port_scan", "--epochs", "12")
        first = top["spreaders"][0]
        assert (first["key"]["src_ip"], first["key"]["dst_ip"]) == (SCANNER, TARGET)
        assert first["distinct"] == PORTS
    finally:
        proc.terminate()
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert xdp_id(veth) == 0
    # the live view: a port scan, its key and its distinct ports
    assert "port scans [port_scan: distinct dst_port per src_ip+dst_ip]: 1" in out
    assert f"src_ip={SCANNER} dst_ip={TARGET}" in out
    assert "answers: exact" in out
