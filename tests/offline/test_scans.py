"""The default tasks find the scans of real captures, offline, exactly.

nDPI's synscan.pcap is one host SYN-scanning about 1000 TCP ports of another
(tshark: 1000 distinct destination ports from 172.16.0.8 to 64.13.134.52): a
vertical scan, one destination, so the per-source spread (spread_dst) stays at
1 and only the port_scan task can see it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from netspectra import packets as P
from netspectra.offline import analyze

from .conftest import CORPUS, require

SYNSCAN = CORPUS / "ndpi__synscan.pcap"
SCANNER, TARGET, PORTS = "172.16.0.8", "64.13.134.52", 1000
BIN = Path(sys.executable).parent / "netspectra"


def scans(snap) -> dict[tuple[str, str], float]:
    keys, counts = snap.spreaders["port_scan"]
    return {(P.addr_str(k["src"]), P.addr_str(k["dst"])): float(c) for k, c in zip(keys, counts)}


def test_synscan_reported_exactly():
    require(SYNSCAN.exists(), f"{SYNSCAN} missing")
    rep = analyze([str(SYNSCAN)])
    snap = rep.overall
    assert snap.exact  # the offline table holds every flow: counted, not estimated
    assert (snap.origin.sensor, snap.origin.interface) == (socket.gethostname(), "")
    assert scans(snap) == {(SCANNER, TARGET): PORTS}
    assert len(snap.spreaders["spread_dst"][0]) == 0  # one destination: no super-spreader
    # in 5 s epochs the scan is cut in pieces; each piece of >= 100 ports is reported exactly
    rep = analyze([str(SYNSCAN)], epoch_s=5.0)
    parts = [scans(e).get((SCANNER, TARGET), 0.0) for e in rep.epochs]
    assert max(parts) >= 100 and all(p == int(p) for p in parts)


def test_analyze_cli_names_the_port_scan():
    require(SYNSCAN.exists(), f"{SYNSCAN} missing")
    r = subprocess.run([str(BIN), "analyze", str(SYNSCAN)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "port scans [port_scan: distinct dst_port per src_ip+dst_ip]: 1" in r.stdout
    assert f"src_ip={SCANNER} dst_ip={TARGET}" in r.stdout and f"{PORTS} distinct" in r.stdout
    r = subprocess.run([str(BIN), "analyze", "--json", "--top", "5", str(SYNSCAN)], capture_output=True, text=True)
    j = json.loads(r.stdout)["overall"]
    assert j["exact"] and j["spreaders"]["port_scan"] == [{"src_ip": SCANNER, "dst_ip": TARGET, "distinct": PORTS}]
