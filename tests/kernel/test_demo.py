"""`make demo` as a user runs it (shortened): the sensor's live view and its
query API find every planted pattern, the port scan included, and the demo
removes what it created."""

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root


def test_demo_finds_the_planted_patterns():
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    r = subprocess.run(
        [sys.executable, "-m", "netspectra.demo", "--seconds", "7", "--epoch", "2s"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "answers: exact" in out
    # the live view: the vertical scan of 198.51.100.7 (150 new ports a second, 2 s epochs)
    scans = re.findall(r"src_ip=192\.0\.2\.77 dst_ip=198\.51\.100\.7\s+(\d+) distinct", out)
    assert scans and max(int(n) for n in scans) >= 200
    assert "port_scan" in out and "super-spreader src_ip=192.0.2.66" in out  # alerts of both scanners
    # the query API, before the sensor stopped
    api = out.split("the query API answered")[1]
    assert re.search(r"spreaders port_scan .*\n.*\nSRC_IP\s+DST_IP.*\n192\.0\.2\.77\s+198\.51\.100\.7", api)
    assert "192.0.2.66" in api.split("# scanners")[1].split("$ netspectra")[0]
    assert "198.51.100.99" in api.split("# DDoS victims")[1].split("$ netspectra")[0]
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == before
