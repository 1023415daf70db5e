"""Run `netspectra-sensor attach` as a real process in a VethPair's namespace b
(any binary: the repository's, a fresh venv's, an installed one) and look at
the interface from outside."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from netspectra import packets as P
from netspectra.kernel import libbpf

# sudo's PATH reset: what root's shell finds, nothing of the repository or a venv
CLEAN_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


def xdp_id(v) -> int:
    with v.inside_b():
        return libbpf.xdp_query_id(socket.if_nametoindex(v.dev_b))


class SensorProc:
    """argv runs in namespace b with output to files (a pipe nobody reads would
    block it); run_dir is where the sensor keeps its state file."""

    def __init__(self, v, argv: list[str], run_dir: Path, cwd: str | None = None):
        self.v, self.run_dir = v, run_dir
        self.out = tempfile.TemporaryFile("w+")
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", v.ns_b, *argv], stdout=self.out, stderr=self.err, cwd=cwd or tempfile.gettempdir()
        )

    def finish(self, timeout: float = 30) -> tuple[str, str]:
        self.proc.wait(timeout=timeout)
        self.out.seek(0)
        self.err.seek(0)
        return self.out.read(), self.err.read()

    def wait_attached(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sensor exited early: {self.finish()[1]}")
            if xdp_id(self.v) and self.state_files():
                return
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError(f"sensor did not attach: {self.finish()[1]}")

    def state_files(self) -> list[Path]:
        """This sensor's state file (run_dir may be shared, e.g. /run/netspectra)."""
        return list(self.run_dir.glob(f"*.{self.v.dev_b}.json"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def attach_count_detach(v, argv: list[str], run_dir: Path, n: int = 123, sig=signal.SIGTERM) -> dict:
    """Start argv (an `attach <dev_b> --json` command), send n known frames,
    stop it with sig; assert it exits 0, reports exactly those frames and leaves
    no program on the interface.  Returns the last epoch."""
    s = SensorProc(v, argv, run_dir)
    try:
        s.wait_attached()
        v.send([P.frame("10.1.1.1", "10.2.2.2", P.UDP, 1, 2, size=100)] * n)
        time.sleep(0.2)
        s.proc.send_signal(sig)
        out, err = s.finish()
    finally:
        s.kill()
    assert s.proc.returncode == 0, err
    assert xdp_id(v) == 0
    epochs = [json.loads(line) for line in out.splitlines()]
    flows = [f for e in epochs for f in e["flows"] if f["src"] == "10.1.1.1"]
    assert [(f["dst"], f["sport"], f["dport"], f["proto"], f["packets"], f["bytes"]) for f in flows] == [
        ("10.2.2.2", 1, 2, 17, n, n * 100)
    ], flows
    assert not s.state_files()
    return epochs[-1]


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


def env_argv(*extra: str) -> list[str]:
    """`env -i` with sudo's PATH and the given VAR=value pairs."""
    return ["env", "-i", CLEAN_PATH, *extra]
