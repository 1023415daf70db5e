"""Real frames from a capture file into a veth pair (tcpreplay, from the other namespace)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def tcpreplay(v, capture: Path, *rate: str) -> None:
    """Send every record of `capture` out of v.dev_a (default: as fast as it
    goes; rate e.g. "--pps", "6000")."""
    cmd = ["tcpreplay", "-q", "-K", *(rate or ("--topspeed",)), "-i", v.dev_a, str(capture)]
    r = subprocess.run(["ip", "netns", "exec", v.ns_a, *cmd], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
