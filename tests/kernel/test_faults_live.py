"""Faults under a live sensor (issue 13): the interface deleted, a --json
reader that never reads, SIGHUP.  Real veth pairs, a real pipe, real signals."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .test_cli import BIN, finish, start, wait_attached, xdp_id
from .test_metrics_live import config, free_port, scrape

pytestmark = pytest.mark.root


def run_files():
    return list(Path(os.environ["NETSPECTRA_RUN_DIR"]).glob("*"))


def test_deleted_interface_stops_the_sensor_with_one_line(veth):
    proc = start(veth, "--epoch", "100ms")
    wait_attached(veth, proc)
    subprocess.run(["ip", "-n", veth.ns_b, "link", "del", veth.dev_b], check=True)  # its peer goes with it
    gone = time.monotonic()
    try:
        out, err = finish(proc, timeout=10)
    finally:
        proc.kill()  # when it does not notice
    assert time.monotonic() - gone < 3  # a few 100 ms epochs, not forever
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert veth.dev_b in last and "gone" in last, err
    assert "Traceback" not in err and "detached from" not in err, err
    assert not run_files()


def test_json_into_a_pipe_nobody_reads_keeps_the_epochs_going(veth, tmp_path):
    port = free_port(veth)
    r, w = os.pipe()  # never read: full after 64 KiB
    err = open(tmp_path / "err", "w+")
    cmd = ["ip", "netns", "exec", veth.ns_b, str(BIN), "attach", veth.dev_b, "--epoch", "100ms", "--json"]
    proc = subprocess.Popen([*cmd, "--config", config(tmp_path, f"127.0.0.1:{port}")], stdout=w, stderr=err)
    os.close(w)
    proc.out, proc.err = open(os.devnull), err
    dev = veth.dev_b
    epochs = f'netspectra_epochs_total{{interface="{dev}"}}'
    dropped = f'netspectra_sink_epochs_dropped_total{{interface="{dev}",sink="view"}}'
    try:
        wait_attached(veth, proc)
        # Each --json line is ~20 KiB of sketch summary or more: the pipe fills within a few epochs,
        # the view's queue (64 epochs) within ~7 s; after that every epoch is dropped, none late.
        deadline = time.monotonic() + 30
        m = scrape(veth, port)
        while m.get(dropped, 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
            m = scrape(veth, port)
        assert m.get(dropped, 0) >= 5, sorted(k for k in m if "sink" in k)
        e0, t0 = m[epochs], time.monotonic()
        time.sleep(2)
        m = scrape(veth, port)
        pace = (m[epochs] - e0) / (time.monotonic() - t0)
        assert pace > 5, pace  # 10 epochs a second, loosely: two shared cores
        assert m[dropped] > 5
        warned = Path(err.name).read_text()
        assert warned.count("view: queue full") == 1, warned  # said once, while it happens
    finally:
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            proc.wait(timeout=30)
        finally:
            os.close(r)
            proc.kill()
    assert time.monotonic() - sent < 5  # the stalled reader does not hold the exit either
    err.seek(0)
    text = err.read()
    assert proc.returncode == 0, text
    assert text.count("view: queue full") == 1 and text.count("output stalled") == 1, text
    assert "Traceback" not in text and "Fatal" not in text, text
    assert xdp_id(veth) == 0 and not run_files()


def test_sighup_exits_non_zero_so_systemd_restarts(veth):
    proc = start(veth, "--epoch", "100ms")
    wait_attached(veth, proc)
    proc.send_signal(signal.SIGHUP)
    try:
        _, err = finish(proc)
    finally:
        proc.kill()
    assert proc.returncode == 129, err  # Restart=on-failure restarts it (a clean exit 0 would not)
    assert "SIGHUP" in err and "Traceback" not in err, err
    assert xdp_id(veth) == 0 and not run_files()
