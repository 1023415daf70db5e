"""Soak: the real sensor under steady mixed traffic, queries and a slow alert receiver.

    python -m bench.soak [--minutes 10] [--epoch 100ms] [--rate 3000] [--keep30-s 20]

Root.  The sensor CLI (`netspectra-sensor attach`) runs on a veth pair in
throwaway namespaces (netspectra.netns.VethPair) with --epoch epochs, its
HTTP/JSON API and /metrics on the namespace's loopback, and two webhook
notifiers: one whose receiver answers and then trickles one byte a second
(tests/helpers/peers.Trickler) and a healthy one beside it.  For --minutes a
sender puts --rate frames/s on the wire in 10 ms ticks: a pool of 20,000
distinct flows (80% IPv4, 20% IPv6) and one heavy hitter (a third of them),
plus, two seconds of every four, a scanner at 2,500 frames/s more (one source
to 2,000 destinations in turn, so the `spread_dst` task reports it at 100 ms
epochs and the alert fires and resolves, which keeps the notifiers busy).  --query-threads clients query the HTTP API
concurrently (keep-alive): /v1/top, /v1/flows and /v1/spreaders over every
kept epoch, one request each --query-pause s.  Every --sample s the sensor
process's RSS (VmRSS) and open fds are sampled.

At the end the sender stops, the sensor is scraped once every frame sent is
counted (sent == sum of netspectra_packets_total, waited for up to 10 s), and
the sensor is stopped with SIGTERM (exit code reported).

Then, unless --keep30-s 0: the issue's "326 -> 812 MiB with 30 kept epochs"
case: api.keep_epochs 30, sensor.flow_capacity 0 (every epoch is estimated, so
each kept epoch holds its sketch arrays, ~20 MiB with the default tasks) under
the same traffic and query load, once with the default api.max_memory (1 GiB)
and once with --keep30-bound (256MiB): max RSS against the bound.

Prints one JSON object on stdout (progress on stderr); never passes or fails
on time or memory.  tests/kernel/test_soak_live.py runs run_soak() for ~20 s.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from netspectra import packets as P

from ._common import emit, log, machine, memory_mib, mix_frames

BIN = Path(sys.executable).parent / "netspectra-sensor"
METRICS_PORT = 9781
HTTP_PORT = 9783
SCAN_DSTS = 2000
SCAN_PERIOD_S = 4.0  # the scanner is active the first half of every period
SCAN_RATE = 2500  # frames/s while active: 250 destinations per 100 ms epoch, over the task's threshold of 100


def parse_duration(text: str) -> float:
    for unit, f in (("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * f
    raise argparse.ArgumentTypeError(f"{text!r}: not a duration like 100ms, 1s")


# --- the sensor process ---------------------------------------------------------------------


class Sensor:
    """`netspectra-sensor attach` in namespace b of `v`, output to files."""

    def __init__(self, v, config: str, epoch: str, workdir: Path):
        self.v = v
        self.anon_max = 0.0  # MiB
        self.cfg = workdir / f"sensor{time.monotonic_ns()}.yaml"
        self.cfg.write_text(config)
        self.out = open(str(self.cfg) + ".out", "w+")
        self.err = open(str(self.cfg) + ".err", "w+")
        env = {**os.environ, "NETSPECTRA_RUN_DIR": str(workdir / "run"), "NETSPECTRA_DATA_DIR": str(workdir / "data")}
        # `ip netns exec` execs the sensor: self.proc.pid is the sensor's pid
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", v.ns_b, str(BIN), "attach", v.dev_b, "--epoch", epoch, "--config", str(self.cfg)],
            stdout=self.out,
            stderr=self.err,
            env=env,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /metrics shows a first epoch."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench.soak: sensor exited early: {self.stderr()[-2000:]}")
            try:
                if self.metrics().get("netspectra_epochs_total", 0) >= 1:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"bench.soak: sensor not ready in {timeout} s: {self.stderr()[-2000:]}")

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics summed by metric name (labels dropped), plus
        `name{label="value"}` sums for the labels of interest."""
        with self.v.inside_b():
            c = http.client.HTTPConnection("127.0.0.1", METRICS_PORT, timeout=10)
            c.connect()  # the socket belongs to the namespace it is made in
        try:
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode()
        finally:
            c.close()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + float(value)
            if name == "netspectra_notifications_failed_total":
                out[name_labels] = float(value)
            if name == "netspectra_api_memory_bytes":
                part = name_labels.split('part="', 1)[1].split('"', 1)[0]
                out[f"api_{part}"] = out.get(f"api_{part}", 0.0) + float(value)
        return out

    def rss_fds(self) -> tuple[float, int]:
        pid = self.proc.pid
        mem = memory_mib(pid)
        self.anon_max = max(self.anon_max, mem["RssAnon"])  # without the kernel maps' and libraries' pages
        return mem["VmRSS"], len(os.listdir(f"/proc/{pid}/fd"))

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def sensor_config(trickle_url: str, healthy_url: str, keep_epochs: int, extra_sensor: str = "", max_memory="") -> str:
    return f"""sensor:
  metrics_address: "127.0.0.1:{METRICS_PORT}"
{extra_sensor}api:
  address: ""
  http_address: "127.0.0.1:{HTTP_PORT}"
  keep_epochs: {keep_epochs}
{f"  max_memory: {max_memory}" if max_memory else ""}
alerts:
  repeat_interval: 5s
  rules:
    - {{name: scanner, kind: super_spreader, task: spread_dst, threshold: 100}}
  notifiers:
    - {{name: slow, kind: webhook, url: "{trickle_url}", timeout: 2s, retries: 1, backoff: 100ms}}
    - {{name: healthy, kind: webhook, url: "{healthy_url}"}}
"""


# --- traffic, queries, sampling --------------------------------------------------------------


class Traffic:
    """Frames at `rate`/s in 10 ms ticks until stopped; counts what it sent."""

    def __init__(self, v, rate: float):
        self.v, self.rate = v, rate
        self.mix = mix_frames(20_000, seed=3)
        self.heavy = P.frame("10.9.9.9", "172.20.0.1", P.TCP, 44444, 443, size=1000)
        self.scan = [
            P.frame("10.66.6.6", f"172.30.{d >> 8}.{d & 255}", P.TCP, 50000, 80, size=64) for d in range(SCAN_DSTS)
        ]
        self.sent = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> Traffic:
        self.thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self.thread.join()
        return self.sent

    def _run(self) -> None:
        tick = 0.01
        per_tick = self.rate * tick
        t0 = time.monotonic()
        due = 0.0
        i_mix = i_scan = 0
        scan_due = 0.0
        k = 0
        while not self._stop.is_set():
            k += 1
            due += per_tick
            n = int(due)
            due -= n
            scanning = ((time.monotonic() - t0) % SCAN_PERIOD_S) < SCAN_PERIOD_S / 2
            frames = []
            for j in range(n):
                if j % 3 == 0:
                    frames.append(self.heavy)
                else:
                    frames.append(self.mix[i_mix % len(self.mix)])
                    i_mix += 1
            if scanning:
                scan_due += SCAN_RATE * tick
                for _ in range(int(scan_due)):
                    frames.append(self.scan[i_scan % SCAN_DSTS])
                    i_scan += 1
                scan_due -= int(scan_due)
            self.sent += self.v.send(frames)
            self._stop.wait(max(0.0, t0 + k * tick - time.monotonic()))


class Queries:
    """`threads` keep-alive HTTP clients in namespace b, each cycling through
    top / flows / spreaders over every kept epoch, or (windows="each") over
    windows of 1, 2, ... keep_epochs epochs in turn: every request a window
    not cached yet, as a hostile client would ask."""

    def __init__(self, v, keep_epochs: int, threads: int, pause: float, windows: str = "all"):
        self.v, self.pause = v, pause
        sizes = range(1, keep_epochs + 1) if windows == "each" else [keep_epochs]
        self.paths = [
            path
            for n in sizes
            for path in (
                f"/v1/top?task=src&limit=10&epochs={n}",
                f"/v1/flows?page_size=100&epochs={n}",
                f"/v1/spreaders?task=spread_dst&limit=10&epochs={n}",
            )
        ]
        self.lat_ms: list[float] = []
        self.status: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self) -> Queries:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        for t in self.threads:
            t.join()
        lat = np.array(self.lat_ms) if self.lat_ms else np.zeros(1)
        return {
            "requests": len(self.lat_ms),
            "status": self.status,
            "errors": self.errors,
            "latency_ms": {f"p{q}": round(float(np.percentile(lat, q)), 2) for q in (50, 99)}
            | {"max": round(float(lat.max()), 2)},
        }

    def _count(self, table: dict, key: str) -> None:
        with self._lock:
            table[key] = table.get(key, 0) + 1

    def _run(self, i: int) -> None:
        conn = None
        k = i
        while not self._stop.is_set():
            path = self.paths[k % len(self.paths)]
            k += 1
            try:
                if conn is None:
                    with self.v.inside_b():
                        conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=30)
                        conn.connect()
                t = time.perf_counter()
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                with self._lock:
                    self.lat_ms.append((time.perf_counter() - t) * 1e3)
                self._count(self.status, str(r.status))
            except (OSError, http.client.HTTPException) as e:
                self._count(self.errors, type(e).__name__)
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()


def slope_mib_per_min(samples: list[tuple[float, float, int]], warmup_s: float) -> float | None:
    pts = [(t, rss) for t, rss, _ in samples if t >= warmup_s]
    if len(pts) < 3:
        return None
    t, rss = np.array(pts).T
    return round(float(np.polyfit(t / 60.0, rss, 1)[0]), 3)


def run_soak(
    v,
    workdir: Path,
    duration_s: float,
    epoch: str = "100ms",
    rate: float = 3000,
    keep_epochs: int = 12,
    query_threads: int = 4,
    query_pause: float = 0.05,
    sample_s: float = 2.0,
    warmup_s: float | None = None,
    extra_sensor: str = "",
    max_memory: str = "",
    windows: str = "all",
) -> dict:
    """One soak on VethPair `v`; returns the figures (see the module doc)."""
    from tests.helpers.peers import Receiver, Trickler

    with v.inside_b():  # the receivers listen on the sensor namespace's loopback
        trickler, healthy = Trickler(), Receiver()
    sensor = Sensor(v, sensor_config(trickler.url, healthy.url, keep_epochs, extra_sensor, max_memory), epoch, workdir)
    warmup_s = min(30.0, duration_s / 4) if warmup_s is None else warmup_s
    samples: list[tuple[float, float, int]] = []
    api_max = {"epochs_kept": 0, "epochs_bytes": 0, "answers_bytes": 0, "both_bytes": 0}
    try:
        sensor.wait_ready()
        traffic = Traffic(v, rate).start()
        queries = Queries(v, keep_epochs, query_threads, query_pause, windows).start()
        t0 = time.monotonic()
        next_log = 0.0
        while (el := time.monotonic() - t0) < duration_s:
            rss, fds = sensor.rss_fds()
            samples.append((el, rss, fds))
            m = sensor.metrics()  # what the query API holds (api.max_memory)
            for k, v in (
                ("epochs_kept", m.get("netspectra_api_epochs_kept", 0)),
                ("epochs_bytes", m.get("api_epochs", 0)),
                ("answers_bytes", m.get("api_answers", 0)),
                ("both_bytes", m.get("api_epochs", 0) + m.get("api_answers", 0)),
            ):
                api_max[k] = max(api_max[k], int(v))
            if el >= next_log:
                log(f"bench.soak: {el:5.0f} s  rss {rss:7.1f} MiB  fds {fds}  sent {traffic.sent}")
                next_log += 30
            time.sleep(min(sample_s, max(0.0, duration_s - el)))
        sent = traffic.stop()
        q = queries.stop()
        rss, fds = sensor.rss_fds()
        samples.append((time.monotonic() - t0, rss, fds))
        deadline = time.monotonic() + 10
        while True:
            m = sensor.metrics()
            counted = int(m.get("netspectra_packets_total", 0))
            if counted >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        code = sensor.stop()
        trickler.close()
        healthy.close()
    after = [s for s in samples if s[0] >= warmup_s] or samples
    failed = {
        k.split('notifier="', 1)[1].split('"', 1)[0]: int(val)
        for k, val in m.items()
        if k.startswith("netspectra_notifications_failed_total{")
    }
    return {
        "duration_s": round(samples[-1][0], 1),
        "epoch": epoch,
        "rate_fps": rate,
        "keep_epochs": keep_epochs,
        "frames_sent": sent,
        "frames_counted": counted,
        "every_frame_counted": counted == sent,
        "epochs": int(m.get("netspectra_epochs_total", 0)),
        "sink_epochs_dropped": int(m.get("netspectra_sink_epochs_dropped_total", 0)),
        "alerts_fired": int(m.get("netspectra_alerts_fired_total", 0)),
        "notifications_failed": failed,
        "webhook_posts_received": {"healthy": len(healthy.got), "slow_connections": trickler.accepted},
        "rss_mib": {
            "first": round(samples[0][1], 1),
            "after_warmup": round(after[0][1], 1),
            "last": round(samples[-1][1], 1),
            "max": round(max(s[1] for s in samples), 1),
            "max_anonymous": round(sensor.anon_max, 1),
            "slope_mib_per_min_after_warmup": slope_mib_per_min(samples, warmup_s),
        },
        "fds": {
            "first": samples[0][2],
            "after_warmup": after[0][2],
            "last": samples[-1][2],
            "max": max(s[2] for s in samples),
            "max_after_warmup": max(s[2] for s in after),
        },
        "api_memory_max": api_max
        | {k.replace("bytes", "mib"): round(v / 2**20, 1) for k, v in api_max.items() if k.endswith("bytes")},
        "warmup_s": warmup_s,
        "samples": len(samples),
        "queries": q,
        "sensor_exit_code": code,
        "sensor_stderr_tail": sensor.stderr().strip().splitlines()[-5:],
    }


def main(argv=None) -> None:
    from netspectra.netns import VethPair

    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="soak length [10]")
    ap.add_argument("--epoch", default="100ms", help="sensor epoch [100ms]")
    ap.add_argument("--rate", type=float, default=3000, help="frames per second sent [3000]")
    ap.add_argument("--query-threads", type=int, default=4, help="concurrent HTTP query clients [4]")
    ap.add_argument("--query-pause", type=float, default=0.05, help="pause between a client's requests, s [0.05]")
    ap.add_argument("--sample", type=float, default=2.0, help="RSS/fd sampling interval, s [2]")
    ap.add_argument("--keep30-s", type=float, default=20.0, help="length of each keep_epochs=30 run, 0 = skip [20]")
    ap.add_argument(
        "--query-windows", choices=("all", "each"), default="all",
        help="windows asked: all kept epochs, or each size in turn (uncached) [all]",
    )  # fmt: skip
    ap.add_argument("--keep30-bound", default="256MiB", help="api.max_memory of the bounded keep-30 run [256MiB]")
    args = ap.parse_args(argv)
    try:
        parse_duration(args.epoch)
    except argparse.ArgumentTypeError as e:
        ap.error(f"--epoch {e}")
    if args.minutes <= 0 or args.rate <= 0 or args.query_threads < 0 or args.sample <= 0:
        ap.error("--minutes, --rate and --sample must be > 0, --query-threads >= 0")
    if os.geteuid() != 0:
        ap.error("needs root (veth pairs, namespaces, XDP)")
    result: dict = {"benchmark": "soak", "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="netspectra-soak-") as tmp:
        with VethPair() as v:
            log(f"bench.soak: {args.minutes} min at {args.epoch} epochs, {args.rate} frames/s")
            result["soak"] = run_soak(
                v, Path(tmp), args.minutes * 60, args.epoch, args.rate, 12, args.query_threads, args.query_pause,
                args.sample,
            )  # fmt: skip
        if args.keep30_s > 0:
            result["keep_epochs_30"] = {}
            for label, bound in (
                ("default_max_memory_1GiB", ""),
                (f"max_memory_{args.keep30_bound}", args.keep30_bound),
            ):
                with VethPair() as v:
                    log(f"bench.soak: keep_epochs 30, flow_capacity 0, {label}, {args.keep30_s} s")
                    r = run_soak(
                        v, Path(tmp), args.keep30_s, args.epoch, args.rate, 30, args.query_threads, args.query_pause,
                        1.0, warmup_s=5.0, extra_sensor="  flow_capacity: 0\n", max_memory=bound,
                        windows=args.query_windows,
                    )  # fmt: skip
                result["keep_epochs_30"][label] = {
                    "api.max_memory": bound or "1GiB",
                    "query_threads": args.query_threads,
                    "query_windows": args.query_windows,
                    "rss_mib": r["rss_mib"],
                    "api_memory_max": r["api_memory_max"],
                    "queries": r["queries"],
                    "every_frame_counted": r["every_frame_counted"],
                    "epochs": r["epochs"],
                }
    result["method"] = {
        "rss": "VmRSS of the sensor process (/proc/<pid>/status), every `sample` s; slope: least squares over samples after warm-up",
        "fds": "entries of /proc/<pid>/fd",
        "counted": "sum of netspectra_packets_total over proto after the sender stopped (waited up to 10 s for the last epoch)",
    }
    emit(result)


if __name__ == "__main__":
    main()
