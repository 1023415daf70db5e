"""`netspectra-sensor` as users run it: attach, status, detach, signals, errors.

The sensor runs as a real process inside a throwaway network namespace; we
look at the interface from outside to see what it leaves behind.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netspectra import packets as P
from netspectra.kernel import libbpf

pytestmark = pytest.mark.root

BIN = Path(sys.executable).parent / "netspectra-sensor"


def cli(v, *args, env=None, timeout=60, prefix=()):
    return subprocess.run(
        ["ip", "netns", "exec", v.ns_b, *prefix, str(BIN), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def start(v, *args):
    """The sensor in the background; its output goes to files (a pipe nobody
    reads would block it)."""
    out = open(Path(os.environ["NETSPECTRA_RUN_DIR"]).parent / f"out{time.monotonic_ns()}", "w+")
    err = open(out.name + ".err", "w+")
    p = subprocess.Popen(["ip", "netns", "exec", v.ns_b, str(BIN), "attach", v.dev_b, *args], stdout=out, stderr=err)
    p.out, p.err = out, err
    return p


def finish(p, timeout=30):
    p.wait(timeout=timeout)
    p.out.seek(0)
    p.err.seek(0)
    return p.out.read(), p.err.read()


def xdp_id(v):
    with v.inside_b():
        return libbpf.xdp_query_id(socket.if_nametoindex(v.dev_b))


def wait_attached(v, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sensor exited early: {finish(proc)[1]}")
        if xdp_id(v) and list(Path(os.environ["NETSPECTRA_RUN_DIR"]).glob("*.json")):
            return
        time.sleep(0.05)
    raise AssertionError("sensor did not attach")


def one_line_error(r, *needles):
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


def test_sigterm_reports_last_epoch_and_detaches(veth):
    proc = start(veth, "--epoch", "30s", "--json")
    wait_attached(veth, proc)
    veth.send([P.frame("10.1.1.1", "10.2.2.2", P.UDP, 1, 2, size=100)] * 123)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert "native mode" in err  # auto: veth supports native XDP, and the sensor says what it got
    assert f"compiling the XDP program for {veth.dev_b}" in err and re.search(r"bpf_link\) in \d+\.\d s", err)
    assert xdp_id(veth) == 0
    epochs = [json.loads(line) for line in out.splitlines()]
    assert len(epochs) == 1  # the partial epoch, read at exit
    flows = [f for f in epochs[0]["flows"] if f["src"] == "10.1.1.1"]
    assert flows == [dict(flows[0], packets=123, bytes=12300)]
    assert flows[0]["dst"] == "10.2.2.2" and (flows[0]["sport"], flows[0]["dport"], flows[0]["proto"]) == (1, 2, 17)
    assert not list(Path(os.environ["NETSPECTRA_RUN_DIR"]).glob("*.json"))


@pytest.mark.parametrize(
    "sig, status, line",
    [
        (signal.SIGINT, 130, "interrupted while compiling; nothing attached"),
        (signal.SIGTERM, 0, "SIGTERM while compiling; nothing attached"),  # systemctl stop: a clean stop
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_ctrl_c_or_sigterm_while_compiling_exits_cleanly(veth, sig, status, line):
    proc = start(veth, "--epoch", "1s")
    deadline = time.monotonic() + 30
    while "compiling the XDP program" not in Path(proc.err.name).read_text():
        assert proc.poll() is None and time.monotonic() < deadline, "no compiling line"
        time.sleep(0.02)
    time.sleep(0.2)  # into LLVM (1-13 s)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = finish(proc, timeout=20)
    took = time.monotonic() - sent
    assert "attached to" not in err, "compiled before the signal: nothing tested"
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"netspectra: compiling the XDP program for {veth.dev_b} (bcc, a few seconds)...",
        f"netspectra: {line}",
    ]
    assert took < 10, took  # no wait for LLVM to finish (loose: two shared cores)
    assert xdp_id(veth) == 0
    assert not list(Path(os.environ["NETSPECTRA_RUN_DIR"]).glob("*"))


def test_sigkill_leaves_no_program_attached(veth):
    proc = start(veth, "--epoch", "1s")
    wait_attached(veth, proc)
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5  # the link is released with the last fd
    while xdp_id(veth) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert xdp_id(veth) == 0
    # status notices the dead sensor and cleans its state
    r = cli(veth, "status")
    assert "stale" in r.stdout
    assert "no netspectra sensor is running" in cli(veth, "status").stdout


def test_status_detach_and_second_sensor_refused(veth):
    proc = start(veth, "--epoch", "200ms", "--mode", "generic")
    try:
        wait_attached(veth, proc)
        r = cli(veth, "status")
        assert r.returncode == 0 and f"{veth.dev_b}: running, pid" in r.stdout and "generic mode" in r.stdout
        assert "query API 127.0.0.1:9782" in r.stdout

        one_line_error(cli(veth, "attach", veth.dev_b), "already attached", veth.dev_b)

        r = cli(veth, "detach", veth.dev_b)
        assert r.returncode == 0 and "stopped sensor" in r.stdout, r.stderr
        proc.wait(timeout=10)
        assert proc.returncode == 0
        assert xdp_id(veth) == 0
        one_line_error(cli(veth, "detach", veth.dev_b), "no netspectra sensor is attached")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_foreign_xdp_program_refused(veth):
    from bcc import BPF

    b = BPF(text=b"int other(struct xdp_md *ctx) { return XDP_PASS; }")
    fn = b.load_func(b"other", BPF.XDP)
    with veth.inside_b():
        link = libbpf.xdp_link(fn.fd, socket.if_nametoindex(veth.dev_b))
    try:
        one_line_error(cli(veth, "attach", veth.dev_b), "another XDP program", "already attached")
        one_line_error(cli(veth, "detach", veth.dev_b), "not attached by netspectra")
        assert xdp_id(veth)  # untouched
    finally:
        os.close(link)
        b.cleanup()


def test_errors_are_one_line(veth, tmp_path):
    one_line_error(cli(veth, "attach", "nsp-nonexistent0"), "no such interface: nsp-nonexistent0")

    bad = tmp_path / "bad.yaml"
    bad.write_text("sensor:\n  epoch: 5x\n")
    one_line_error(cli(veth, "attach", veth.dev_b, "--config", str(bad)), "bad.yaml", "sensor.epoch")
    bad.write_text("tasks:\n  - name: a\n    kind: countmin\n    key: [src_ip]\n    widht: 1024\n")
    one_line_error(cli(veth, "attach", veth.dev_b, "--config", str(bad)), "tasks[0].widht", "width")

    # without privileges
    r = cli(veth, "attach", veth.dev_b, prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                                 "--inh-caps=-all", "--bounding-set=-all"))  # fmt: skip
    one_line_error(r, "needs root")

    # without kernel headers: hide /lib/modules in a private mount namespace
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         f"mount -t tmpfs none /lib/modules && ip netns exec {veth.ns_b} {BIN} attach {veth.dev_b}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    one_line_error(r, "kernel headers", "not found", "linux-headers-")
    assert xdp_id(veth) == 0


@pytest.mark.parametrize(
    ("section", "key", "what"),
    [("sensor", "metrics_address", "metrics"), ("api", "address", "gRPC"), ("api", "http_address", "HTTP")],
)
def test_listen_address_in_use_is_a_one_line_error(veth, tmp_path, section, key, what):
    """Metrics, gRPC and HTTP/JSON listeners: a port in use stops the sensor
    before it attaches, naming the address and the option."""
    with veth.inside_b():
        busy = socket.socket()
    with busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        cfg = tmp_path / "busy.yaml"
        cfg.write_text(f"{section}:\n  {key}: '{address}'\n")
        r = cli(veth, "attach", veth.dev_b, "--config", str(cfg))
        one_line_error(r, f"cannot serve {what} on {address} ({section}.{key})")
    assert xdp_id(veth) == 0


def test_config_print_defaults_loads_back(tmp_path):
    r = subprocess.run([str(BIN), "config", "--print-defaults"], capture_output=True, text=True)
    assert r.returncode == 0
    f = tmp_path / "d.yaml"
    f.write_text(r.stdout)
    r = subprocess.run([str(BIN), "config", "--check", str(f)], capture_output=True, text=True)
    assert r.returncode == 0 and "ok (5 tasks, epoch 5s)" in r.stdout
