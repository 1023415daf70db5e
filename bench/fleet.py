"""Fleet: what one collector merges, how soon, and what each sensor epoch costs on the wire.

    python -m bench.fleet [--quick] [--flows 10000,100000] [--sensors 100]
                          [--windows 3] [--rounds 3] [--latency-windows 1,5]
                          [--latency-epochs 20,8] [--no-discover]

Issue 11's benchmarks, with the default tasks (layout(default_tasks(), ncpus=2)
on the sensors; the collector's own layout(cfg.tasks), as it runs) and
synthetic sensors: each sensor's epoch draws its flows from its own population
of 5-tuples (sources in the sensor's own prefix, so distinct per sensor) plus
10% from a pool of transit 5-tuples common to all sensors (merged across
sensors); Zipf packet rates, 1/8 IPv6.

  bytes      the codec record of one sensor epoch (zstd, and uncompressed)
             against its in-memory size (flows nbytes + the sketch arrays), for
             exact and estimated epochs (10% of the flows untracked) at each
             --flows; chunks at the real server's max_payload; encode/decode CPU.
  merge      the collector's merge path without NATS, pinned to one CPU, CPU time
             (time.process_time): decode each of --sensors records, Windows.add,
             close_ready, rebind + snapshot.merge of the window -- per
             sensor-epoch; then the collector's sinks on the merged window (its
             real objects: metrics, alert rules, the query API's warm-up with
             api.keep_epochs windows kept, the SQLite store writing every sensor
             epoch and the window into existing rollups: a collector's steady
             state), and a cProfile of the decode + merge and of the warm-up.
  collector  the real Collector (in this process, pinned to the same CPU) against
             a real nats-server: --windows windows x --sensors sensors published
             first (a backlog), then the time and CPU from the collector's start
             until every window was merged, visible in the query API, stored and
             acked -- with store.url off and with a temporary SQLite store; CPU by
             step (decode, merge, API warm-up, store writes, the rest).
             Goal: >= 20 sensor-epochs/s of 10,000 flows (100 sensors, 5 s epochs).
  latency    real Publisher sinks (one per sensor, in a child process, on_epoch
             at each epoch's end, sensors' epochs spread evenly over the window)
             and the real collector live; from the end of a sensor's epoch until
             the merged window is visible in the collector's API history (the
             moment History.add runs, i.e. queryable).  Goal: <= 2 epochs.

Another benchmark may share the machine: every phase reports the CPU time
other processes used meanwhile (machine.shared says whether any did), and
"ratios" compares figures measured side by side in this run.  Prints one JSON object on stdout (progress
on stderr); never passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import io
import math
import multiprocessing as mp
import os
import pstats
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from netspectra import abi, analysis, codec
from netspectra.config import default_tasks
from netspectra.sketch import SketchSet
from netspectra.snapshot import EpochSnapshot, Origin, derive, layout_fingerprint, merge
from netspectra.tasks import layout

from ._common import emit, log, machine, summary

GOAL_SENSOR_EPOCHS_PER_S = 20.0  # 100 sensors x one 10,000-flow epoch per 5 s
GOAL_FLOWS = 10_000
GOAL_LATENCY_EPOCHS = 2.0
SHARED = 0.10  # share of a sensor's flows drawn from the transit pool common to all sensors
POPULATION = 1.1  # a sensor's own 5-tuples per flow of an epoch (the same flows recur)
UNTRACKED = 0.10  # share of flows an estimated epoch's table could not hold
MAX_WINDOW_FLOWS = 2_000_000  # sensors x flows of one merged window, at most (memory)
GRACE_S = 10.0  # fleet.collector.grace default
COLLECTOR_ID = "bench-collector"
MIXED_ESTIMATED = 0.10  # the merge run's mixed window: this share of its sensors estimated

METHOD = {
    "traffic": (
        "per sensor: a population of 1.1 x 0.9 x flows own 5-tuples (sources in the sensor's own prefix: distinct "
        "across sensors; destinations from one common server space), each epoch draws 90% of its flows from it "
        "and 10% from a pool of 0.2 x flows transit 5-tuples common to every sensor; packets 1 + Poisson(Zipf(1.1) "
        "rate), about 9 per flow; derive() with the default tasks. Estimated epochs: the sketch of every flow, "
        "10% of the flows then dropped as untracked (their packets in flow_untracked)"
    ),
    "bytes": (
        "codec.encode() (zstd level 3, and compression='none') of one sensor epoch; raw = flows.nbytes plus the "
        "Count-Min and SuperSpread arrays (cm.nbytes + ss.nbytes) the epoch holds in memory once its sketch is "
        "read; chunks = wire.chunks(record, the server's max_payload); CPU medians of a few rounds"
    ),
    "merge": (
        "one process pinned to one CPU; time.process_time() around: codec.decode of every sensor's record + "
        "Windows.add (the collector's bookkeeping, its sensors listed), close_ready, then rebind + "
        "snapshot.merge of the window as Collector._apply does; per sensor-epoch = window CPU / sensors. "
        "sinks: the same merged window handed to the real objects of a started Collector (not consuming): "
        "SensorCollector.observe, the AlertSink, Queries.warm + History.add (what the API thread does before "
        "a window is visible), and the StoreSink of a temporary SQLite store writing every sensor epoch and "
        "the merged window (what the store thread does before the window's messages are acked)"
    ),
    "collector": (
        "a real nats-server 2.x (JetStream, file storage, started before pinning: not pinned); the stream made "
        "as the collector makes it, then windows x sensors records published (each sensor in order, chunked "
        "and with the headers of fleet/wire.py), then Collector(cfg).start() and run() in a thread of this "
        "process, pinned to one CPU, its sensors listed (each window closes complete when its last epoch "
        "arrives), grace 60 s (never reached), query API on, alert rules the defaults, metrics endpoint off. "
        "Timed from on_ready (stream and consumer there) until every window was merged (applied), visible "
        "(History.add), written by the store (off: n/a) and every message acked. CPU = this process's "
        "process_time() over that span (the collector's threads: loop, decode/merge workers, API, store); "
        "nats-server's CPU apart. sensor_epochs_per_cpu_s = sensor-epochs / CPU s (what a core of its own "
        "sustains); sensor_epochs_per_s = sensor-epochs / wall s (as measured, on a machine maybe shared). "
        "cpu_s_by_step: thread CPU inside the collector's own calls of codec.decode, snapshot.merge, "
        "Queries.warm (the API thread, before a window is visible) and the store sink's writes, wrapped for the "
        "run; rest = the process's CPU less those (consumer loop, NATS client, metrics and alert sinks, acks)"
    ),
    "latency": (
        "a child process runs one Publisher (the real sink: encode, spool on disk with fsync, publish from its "
        "own thread) per sensor; sensor i's epochs are [T + kW + i W/S, T + (k+1)W + i W/S) and on_epoch is "
        "called at each epoch's end (the sensors' epochs spread evenly over the window, as unsynchronised "
        "sensors are). The collector (this process, not pinned) has window W, grace 10 s, and either lists the "
        "sensors or takes whoever reports (the default config: the windows of its first grace close by grace, the "
        "next grace's wait behind them: that run gets 2 x grace / W more epochs, and those windows are reported "
        "apart as first_windows). "
        "visible = the moment the merged window is added to the API history (a StreamEpochs subscriber gets "
        "it then; it is queryable). from_first_end: visible - the end of the window's earliest-ending sensor "
        "epoch (the window's end: the longest any sensor waits); from_last_end: visible - the end of its "
        "latest-ending one (what the collector adds: publish, NATS, decode, merge, sinks). In epochs: / W. "
        "Sensors per run: the goal's rate, 20 sensor-epochs/s (W x 20, at most --sensors)"
    ),
    "shared_machine": (
        "other_processes_cores = CPU time of every other user-space process (/proc/<pid>/stat: not this "
        "process, its children, nats-server; not kernel threads) / wall time of the phase: how much of the "
        "machine other work took meanwhile (shared: at least 0.2 in some phase). other_cores = the whole "
        "machine's busy time (/proc/stat) less this process, nats-server and the sensors' child: other "
        "processes plus kernel work (writeback of the SQLite store's writes shows there)"
    ),
}


# --- synthetic sensors -------------------------------------------------------------------------


def sensor_id(i: int) -> str:
    return f"sensor-{i:03d}"


def _keys(rng, n: int, site: int | None) -> np.ndarray:
    """About n distinct abi.KEY 5-tuples (v4-mapped IPv4, 1 host in 8 IPv6).
    site: the sensor's index (sources in its own prefix), None: the transit pool."""
    m = int(n * 1.05) + 16
    k = np.zeros(m, abi.KEY)
    hosts = max(16, n // 25)
    w = 1.0 / np.arange(1, hosts + 1) ** 0.8  # a few busy hosts
    h = rng.choice(hosts, m, p=w / w.sum())
    d = rng.integers(0, max(64, n // 2), m)
    v6 = h % 8 == 7
    s = k["src"]
    if site is None:  # transit: 100.64.0.0/10, 2001:db8:ffff::/48
        s[~v6, 10:12], s[~v6, 12], s[~v6, 13] = 0xFF, 100, 64 + ((h[~v6] >> 16) & 63)
        s[v6, 0:6] = (0x20, 0x01, 0x0D, 0xB8, 0xFF, 0xFF)
    else:  # the sensor's site: 10+site>>8 . site&255 . h, 2001:db8:site::h
        s[~v6, 10:12], s[~v6, 12], s[~v6, 13] = 0xFF, 11 + (site >> 8), site & 255
        s[v6, 0:6] = (0x20, 0x01, 0x0D, 0xB8, site >> 8, site & 255)
    s[:, 14], s[:, 15] = (h >> 8) & 255, h & 255
    t = k["dst"]
    t[~v6, 10:12], t[~v6, 12], t[~v6, 13] = 0xFF, 172, 16 + ((d[~v6] >> 16) & 15)
    t[v6, 0:6] = (0x20, 0x01, 0x0D, 0xB8, 0xFF, 0xFE)
    t[:, 14], t[:, 15] = (d >> 8) & 255, d & 255
    k["sport"] = rng.integers(1024, 65536, m)
    k["dport"] = rng.choice([443, 443, 80, 53, 8080, 22, 3306, 123], m)
    k["proto"] = np.where(rng.random(m) < 2 / 3, 6, 17)
    _, first = np.unique(k.view(np.dtype((np.void, abi.KEY.itemsize))), return_index=True)
    k = k[np.sort(first)]
    return k[:n]


class Fleet:
    """Epochs of `flows` flows for sensors 0, 1, ...: each draws 90% from its
    own population (distinct across sensors), 10% from a transit pool shared
    by all.  Deterministic for a given seed."""

    def __init__(self, lay, flows: int, seed: int = 1):
        self.lay, self.flows, self.seed = lay, flows, seed
        self.fp = layout_fingerprint(lay)
        self.n_shared = int(round(flows * SHARED))
        self.n_own = flows - self.n_shared
        rng = np.random.default_rng((seed, 0))
        self.pool = self._population(rng, max(1, 2 * self.n_shared), None)
        self._own: dict[int, tuple] = {}

    @staticmethod
    def _population(rng, n: int, site: int | None) -> tuple:
        keys = _keys(rng, n, site)
        rate = 1.0 / rng.permutation(np.arange(1, len(keys) + 1)) ** 1.1
        rate *= 8 * len(keys) / rate.sum()
        size = rng.choice([64, 64, 64, 128, 256, 576, 1024, 1514], len(keys)).astype(np.uint64)
        return keys, rate, size

    def own(self, i: int) -> tuple:
        if i not in self._own:
            self._own[i] = self._population(np.random.default_rng((self.seed, 1, i)), int(self.n_own * POPULATION), i)
        return self._own[i]

    def epoch(self, i: int, seq: int, start: float, epoch_s: float, estimated: bool = False) -> EpochSnapshot:
        r = np.random.default_rng((self.seed, 2, i, seq))
        parts = []
        for (keys, rate, size), n in ((self.own(i), self.n_own), (self.pool, self.n_shared)):
            pick = r.choice(len(keys), min(n, len(keys)), replace=False)
            parts.append((keys[pick], rate[pick], size[pick]))
        keys = np.concatenate([p[0] for p in parts])
        rate = np.concatenate([p[1] for p in parts])
        size = np.concatenate([p[2] for p in parts])
        n = len(keys)
        fl = np.zeros(n, analysis.FLOW_RECORD)
        fl["key"] = keys
        fl["packets"] = 1 + r.poisson(rate)
        fl["bytes"] = fl["packets"] * size
        span = int(epoch_s * 1e9)
        fl["first_ns"] = int(start * 1e9) + r.integers(0, max(1, span * 4 // 5), n)
        fl["last_ns"] = fl["first_ns"] + r.integers(0, max(1, span // 5), n)
        fl["tcp_flags"] = np.where(keys["proto"] == 6, 0x18, 0)
        totals = np.zeros((abi.NCOUNTERS, 2), np.uint64)
        totals[abi.C["all"]] = (fl["packets"].sum(), fl["bytes"].sum())
        if estimated:  # the kernel's sketch saw every packet; the flow table missed some flows
            sk = SketchSet(self.lay)
            sk.add_flows(fl)
            lost = r.random(n) < UNTRACKED
            totals[abi.C["flow_untracked"]] = (fl["packets"][lost].sum(), fl["bytes"][lost].sum())
            fl = fl[~lost]
        else:
            sk = SketchSet.of_flows(self.lay, fl)
        snap = derive(seq, start, start + epoch_s, totals, fl, sk)
        snap.origin = Origin(sensor=sensor_id(i), boot="", interface="eth0", layout=self.fp)
        return snap


def packets_of(snap) -> int:
    return int(snap.totals[abi.C["all"], 0])


# --- machine accounting ------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (its threads), seconds."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _machine_busy_s() -> float:
    """CPU seconds every CPU spent not idle since boot (/proc/stat)."""
    try:
        vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    busy = sum(vals[:8]) - vals[3] - vals[4]  # all but idle and iowait (guest is inside user)
    return busy / os.sysconf("SC_CLK_TCK")


def _other_processes_cpu_s(skip: set[int]) -> dict[int, float]:
    """utime + stime of every user-space process but ours, our children and `skip` (kernel threads,
    e.g. writeback, are left out: they work for whoever writes, us included)."""
    me, tck, out = os.getpid(), os.sysconf("SC_CLK_TCK"), {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in skip or int(d) == me:
            continue
        try:
            f = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(f[1]) == me or int(f[6]) & 0x00200000:  # our child, or PF_KTHREAD
            continue
        out[int(d)] = (int(f[11]) + int(f[12])) / tck
    return out


class Meter:
    """Wall time, this process's CPU, nats-server's, other processes' and the whole machine's, over a span."""

    def __init__(self, nats_pid: int | None = None):
        self.nats_pid = nats_pid
        self.start()

    def start(self) -> None:
        self.w0, self.c0, self.m0 = time.perf_counter(), time.process_time(), _machine_busy_s()
        self.n0 = _proc_cpu_s(self.nats_pid) if self.nats_pid else 0.0
        self.p0 = _other_processes_cpu_s({self.nats_pid or -1})

    def stop(self, child_cpu_s: float = 0.0) -> dict:
        """child_cpu_s: what our child (the sensors) used meanwhile, if any."""
        wall, cpu = time.perf_counter() - self.w0, time.process_time() - self.c0
        nats_s = (_proc_cpu_s(self.nats_pid) - self.n0) if self.nats_pid else 0.0
        procs = sum(v - self.p0.get(pid, 0.0) for pid, v in _other_processes_cpu_s({self.nats_pid or -1}).items())
        machine = _machine_busy_s() - self.m0 - cpu - nats_s - child_cpu_s
        out = {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "nats_server_cpu_s": round(nats_s, 3),
            "other_processes_cores": round(max(0.0, procs) / wall, 2) if wall > 0 else None,
            "other_cores": round(max(0.0, machine) / wall, 2) if wall > 0 else None,
        }
        if child_cpu_s:
            out["sensors_child_cpu_s"] = round(child_cpu_s, 3)
        return out


def pin_one_cpu() -> int:
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {allowed[-1]})
    return allowed[-1]


# --- bytes on the wire -------------------------------------------------------------------------


def bench_bytes(lay, flows: int, max_payload: int, rounds: int) -> dict:
    from netspectra.fleet import wire

    fleet = Fleet(lay, flows, seed=5)
    out = {}
    for kind, est in (("exact", False), ("estimated", True)):
        snap = fleet.epoch(0, 0, 1_796_083_200.0, 5.0, estimated=est)
        enc, dec, raw_enc = [], [], []
        for _ in range(rounds):
            t = time.process_time()
            rec = codec.encode(snap)
            enc.append((time.process_time() - t) * 1e3)
            t = time.process_time()
            codec.decode(rec)
            dec.append((time.process_time() - t) * 1e3)
        t = time.process_time()
        plain = codec.encode(snap, compression="none")
        raw_enc.append((time.process_time() - t) * 1e3)
        sk = snap.sketch
        flows_b = int(snap.flows.nbytes)
        sketch_b = int(sk.cm.nbytes + sk.ss.nbytes)
        chunks = wire.chunks(rec, max_payload)
        out[kind] = {
            "flows": len(snap.flows),
            "record_bytes": len(rec),
            "record_bytes_uncompressed": len(plain),
            "bytes_per_flow": round(len(rec) / len(snap.flows), 1),
            "flows_nbytes": flows_b,
            "sketch_arrays_nbytes": sketch_b,
            "raw_nbytes": flows_b + sketch_b,
            "record_over_raw": round(len(rec) / (flows_b + sketch_b), 4),
            "record_over_flows_nbytes": round(len(rec) / flows_b, 3),
            "zstd_ratio": round(len(plain) / len(rec), 2),
            "chunks": len(chunks),
            "chunk_bytes_max": max(len(c) for c in chunks),
            "encode_cpu_ms": round(statistics.median(enc), 2),
            "decode_cpu_ms": round(statistics.median(dec), 2),
            "sketch_in_record": not snap.exact,
        }
        log(f"  bytes {flows} {kind}: record {len(rec) / 1e6:.3f} MB ({len(chunks)} chunk(s)), "
            f"raw {(flows_b + sketch_b) / 1e6:.1f} MB, encode {out[kind]['encode_cpu_ms']} ms")  # fmt: skip
    return out


# --- the merge path, pure ----------------------------------------------------------------------


def make_config(url: str, name: str, window_s: float, grace_s: float, sensors: tuple, store: str, tmp: Path):
    """The collector's Config: the default tasks and alert rules, query API on HTTP (loopback, any port)."""
    from netspectra.alerts.rules import default_alerts
    from netspectra.api.settings import ApiConfig
    from netspectra.config import Config, SensorConfig
    from netspectra.fleet.config import CollectorConfig, FleetConfig
    from netspectra.store.config import StoreConfig

    tasks = default_tasks()
    fleet = FleetConfig(
        servers=(url,),
        subject_prefix=f"bench.{name}",
        stream=name.upper(),
        collector=CollectorConfig(durable=name, window_s=window_s, grace_s=grace_s, sensors=sensors, id=COLLECTOR_ID),
    )
    return Config(
        sensor=SensorConfig(metrics_address="", id=COLLECTOR_ID),
        tasks=tasks,
        alerts=default_alerts(tasks),
        api=ApiConfig(address="", http_address="127.0.0.1:0"),
        store=StoreConfig(url="off" if store == "off" else str(tmp / f"{name}.db")),
        fleet=fleet,
    )


def window_records(fleet: Fleet, sensors: int, k: int, window_s: float, estimated: set = frozenset()):
    """Window k's records (one epoch per sensor, starts spread over the
    window) and the packets they carry."""
    recs, pk = [], 0
    for i in range(sensors):
        start = k * window_s + window_s * i / sensors
        snap = fleet.epoch(i, k, start, window_s, estimated=i in estimated)
        pk += packets_of(snap)
        recs.append(codec.encode(snap))
    return recs, pk


def merge_window(records: list[bytes], c) -> tuple[dict, EpochSnapshot, list, list]:
    """What the collector does with a window's records, without NATS: decode,
    check, Windows.add; close_ready; rebind + merge.  CPU seconds of each."""
    from netspectra.fleet.collector import rebind
    from netspectra.fleet.windows import Windows

    cc = c.fleet.collector
    w = Windows(cc.window_s, cc.grace_s, tuple(cc.sensors))
    t0 = time.process_time()
    for rec in records:
        snap = codec.decode(rec)
        if (snap.origin.layout or layout_fingerprint(snap.sketch.layout)) != c.fingerprint:
            raise RuntimeError("layout refused")
        w.add(snap, rec, 0.0)  # the token: its record, stored as received
    t1 = time.process_time()
    closed = w.close_ready(0.0)
    if len(closed) != 1 or closed[0].how != "complete":
        raise RuntimeError(f"expected one complete window, got {[(x.index, x.how) for x in closed]}")
    win = closed[0]
    parts = [rebind(s, c.layout) for s in win.epochs]
    snap = merge(parts, win.index, c.origin)
    snap.start, snap.end = win.start, win.end
    t2 = time.process_time()
    return {"decode_s": t1 - t0, "merge_s": t2 - t1}, snap, win.epochs, win.tokens


def bench_merge(lay, flows: int, sensors: int, rounds: int, tmp: Path, estimated_share: float = 0.0,
                profile: bool = False) -> dict:  # fmt: skip
    from netspectra.fleet.collector import Collector

    window_s = 5.0
    fleet = Fleet(lay, flows)
    est = set(range(0, sensors, max(1, round(1 / estimated_share)))) if estimated_share else set()
    name = f"merge{flows}{'m' if est else ''}"
    cfg = make_config("nats://127.0.0.1:1", name, window_s, GRACE_S, tuple(sensor_id(i) for i in range(sensors)),
                      "sqlite", tmp)  # fmt: skip
    c = Collector(cfg, log=io.StringIO()).start()  # the real sinks; nothing consumed
    hist = c.api.history
    try:
        alerts = next(s for s in c.fanout.sinks if getattr(s, "name", "") == "alerts")
        decode, merge_s, sinks, checked, merged_flows = [], [], {}, True, 0
        per_min = round(60 / window_s)  # windows k_base - 1 .. k_base + rounds - 1 in one minute (one 1m rollup)
        k_base = (math.floor(time.time() / 60) - 10) * per_min + 1  # recent windows, in the past
        for r in range(rounds):
            k = k_base + r
            recs, pk = window_records(fleet, sensors, k, window_s, est)
            t, snap, parts, precs = merge_window(recs, c)
            decode.append(t["decode_s"])
            merge_s.append(t["merge_s"])
            checked &= packets_of(snap) == pk and int(snap.flows["packets"].sum()) == sum(
                int(p.flows["packets"].sum()) for p in parts
            )
            merged_flows = len(snap.flows)
            if r == 0:  # a collector running a while: the API keeps api.keep_epochs windows, the store
                # has this minute's rollups of every series (a write merges into them): fill both, untimed
                def earlier(x, j):
                    return dataclasses.replace(x, seq=x.seq - j, start=x.start - j * window_s, end=x.end - j * window_s)

                for j in range(hist.keep - 1, 0, -1):
                    hist.add(earlier(snap, j))
                for x in (*parts, snap):
                    c.history.sink.on_epoch(earlier(x, 1))
            for step, secs in run_sinks(c, alerts, snap, parts, precs).items():
                sinks.setdefault(step, []).append(secs)
            log(f"  merge {flows} x {sensors}{' (mixed)' if est else ''} round {r + 1}/{rounds}: decode "
                f"{t['decode_s']:.2f} s, merge {t['merge_s']:.2f} s, sinks "
                f"{sum(v[-1] for v in sinks.values()):.2f} s CPU "
                f"(API warm-up {sinks['api_warm_and_add'][-1]:.2f} s)")  # fmt: skip
        prof = prof_warm = None
        if profile:
            recs, _ = window_records(fleet, sensors, k_base + rounds, window_s, est)
            pr = cProfile.Profile()
            pr.enable()
            _, snap, _, _ = merge_window(recs, c)
            pr.disable()
            prof = profile_rows(pr)
            pr = cProfile.Profile()
            pr.enable()
            c.api.queries.warm(snap, hist.snapshots())
            pr.disable()
            prof_warm = profile_rows(pr, 8)
        exact_merged = snap.exact
        keep = hist.keep
    finally:
        c.close()
    per = [(d + m) / sensors for d, m in zip(decode, merge_s)]
    no_store = ("metrics_observe", "alert_rules", "api_warm_and_add")
    with_sinks = {
        "store_off": statistics.median([p + sum(sinks[k][i] for k in no_store) / sensors for i, p in enumerate(per)]),
        "store_sqlite": statistics.median([p + sum(v[i] for v in sinks.values()) / sensors for i, p in enumerate(per)]),
    }
    med = statistics.median(per)
    return {
        "flows_per_sensor_epoch": flows,
        "sensors": sensors,
        "estimated_sensors": len(est),
        "merged_flows": merged_flows,
        "merged_exact": exact_merged,
        "checked": bool(checked),
        "decode_cpu_s_per_window": summary(decode, 3),
        "merge_cpu_s_per_window": summary(merge_s, 3),
        "cpu_ms_per_sensor_epoch": summary([p * 1e3 for p in per], 2),
        "sensor_epochs_per_cpu_s": round(1 / med, 1),
        "sinks_cpu_s_per_window": {k: summary(v, 3) for k, v in sinks.items()},
        "api_kept_windows": keep,
        "with_sinks_cpu_ms_per_sensor_epoch": {k: round(v * 1e3, 2) for k, v in with_sinks.items()},
        "with_sinks_sensor_epochs_per_cpu_s": {k: round(1 / v, 1) for k, v in with_sinks.items()},
        "profile_decode_and_merge": prof,
        "profile_api_warm": prof_warm,
    }


def run_sinks(c, alerts, snap, parts, records) -> dict:
    """The merged window through the collector's sinks, each step's CPU seconds."""
    steps = {
        "metrics_observe": lambda: c.metrics.observe(snap),
        "alert_rules": lambda: alerts.on_epoch(snap),
        "api_warm_and_add": lambda: (c.api.queries.warm(snap, c.api.history.snapshots()), c.api.history.add(snap)),
        "store_sensor_epochs": lambda: [c.history.sink.write(p, r) for p, r in zip(parts, records)],  # as received
        "store_merged_window": lambda: c.history.sink.on_epoch(snap),
    }
    out = {}
    for step, fn in steps.items():
        t0 = time.process_time()
        fn()
        out[step] = time.process_time() - t0
    return out


def profile_rows(pr: cProfile.Profile, n: int = 14) -> dict:
    st = pstats.Stats(pr)
    total = st.total_tt
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():
        ours = "netspectra" in file or file == "~"
        rows.append((ct, tt, f"{file.split('/')[-1]}:{line}({fn})", nc, ours))
    cum = sorted((r for r in rows if r[4]), reverse=True)
    own = sorted(rows, key=lambda r: r[1], reverse=True)
    return {
        "total_s": round(total, 3),
        "top_cumulative": [{"fn": f, "cum_s": round(c, 3), "calls": k} for c, _t, f, k, _ in cum[:n]],
        "top_self": [{"fn": f, "self_s": round(t, 3), "calls": k} for _c, t, f, k, _ in own[:n]],
    }


# --- the collector, end to end -----------------------------------------------------------------


async def _make_stream(url: str, fleet) -> int:
    import nats
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig

    from netspectra.fleet import wire

    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(
                name=fleet.stream,
                subjects=[wire.subjects(fleet.subject_prefix)],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=fleet.max_age_s,
                duplicate_window=fleet.duplicate_window_s,
            )
        )
        return nc.max_payload
    finally:
        await nc.close()


async def _publish(url: str, fleet, records: list[tuple[str, str, float, bytes]]) -> tuple[int, int]:
    """Publish (sensor, interface, start, record) as a sensor does; (messages, bytes)."""
    import nats

    from netspectra.fleet import wire

    nc = await nats.connect(url)
    js = nc.jetstream()
    msgs = nbytes = 0
    try:
        for sensor, iface, start, rec in records:
            eid = wire.epoch_id(sensor, iface, start)
            parts = wire.chunks(rec, nc.max_payload)
            for i, part in enumerate(parts):
                h = wire.headers(eid, i, len(parts), codec.VERSION)
                await js.publish(wire.subject(fleet.subject_prefix, sensor), part, stream=fleet.stream, headers=h)
                msgs += 1
                nbytes += len(part)
    finally:
        await nc.close()
    return msgs, nbytes


async def _drop_stream(url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(stream)
    except Exception:
        pass
    finally:
        await nc.close()


class Running:
    """A started Collector consuming in a thread.  Records when each merged
    window was handed to the sinks, became visible (History.add) and when its
    last epoch was added; and the CPU time (of the thread doing it) of each
    step: decode, merge, the API's warm-up, store writes -- by wrapping the
    collector's own calls for this run."""

    STEPS = ("decode", "merge", "api_warm", "store_write")

    def __init__(self, cfg):
        from netspectra.fleet import collector as mod

        self.log = io.StringIO()
        self.c = c = mod.Collector(cfg, log=self.log).start()
        self.stop = threading.Event()
        self.failed: list = []
        self.ready_at: tuple[float, float] | None = None
        self.fanned: dict[int, float] = {}
        self.visible: dict[int, float] = {}
        self.last_add: dict[int, float] = {}
        self.packets: dict[int, int] = {}
        self.cpu = dict.fromkeys(self.STEPS, 0.0)
        self.calls = dict.fromkeys(self.STEPS, 0)
        self._lock = threading.Lock()
        fan, add = c.fanout.on_epoch, c.windows.add

        def on_epoch(snap):
            self.fanned[snap.seq] = time.time()
            fan(snap)

        def windows_add(snap, token=None, now=None):
            v = add(snap, token, now)
            self.last_add[v.index] = time.time()
            return v

        c.fanout.on_epoch, c.windows.add = on_epoch, windows_add
        c.api.queries.warm = self._timed("api_warm", c.api.queries.warm)  # skipped by the API thread when behind
        if c.history.sink is not None:
            c.history.sink.write = self._timed("store_write", c.history.sink.write)
        self._mod, self._saved = mod, (mod.codec, mod.merge)
        mod.codec = _TimedCodec(self._timed("decode", codec.decode))  # the collector's module globals, this run
        mod.merge = self._timed("merge", mod.merge)
        self.sub, _ = c.api.history.subscribe("epochs", replay=False)
        self._watch = threading.Thread(target=self._watch_history, name="bench-watch", daemon=True)
        self._watch.start()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while self.ready_at is None and not self.failed and time.monotonic() < deadline:
            time.sleep(0.002)
        if self.failed or self.ready_at is None:
            self.close()
            raise RuntimeError("the collector did not get ready within 30 s:\n" + self.log.getvalue())

    def _timed(self, step: str, fn):
        def timed(*a, **kw):
            t = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                with self._lock:
                    self.cpu[step] += time.thread_time() - t
                    self.calls[step] += 1

        return timed

    def _run(self) -> None:
        try:
            self.c.run(
                self.stop, on_ready=lambda: setattr(self, "ready_at", (time.perf_counter(), time.process_time()))
            )
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            self.failed.append(e)

    def _watch_history(self) -> None:
        while not self.stop.is_set():
            try:
                snap = self.sub.get(0.05)
            except Exception:
                return
            if snap is not None:
                self.visible[snap.seq] = time.time()
                self.packets[snap.seq] = packets_of(snap)

    def stored(self) -> int:
        sink = self.c.history.sink
        return sum(sink.results.values()) if sink is not None else 0

    def breakdown(self, cpu_s: float) -> dict:
        """The process's CPU over the run, by step (the rest: the consumer loop -- NATS client,
        asyncio, wire, windows, metrics and alert sinks, acks -- and the other threads)."""
        with self._lock:
            out = {k: round(v, 3) for k, v in self.cpu.items()}
            calls = dict(self.calls)
        out["rest"] = round(cpu_s - sum(self.cpu.values()), 3)
        out["calls"] = calls
        return out

    def close(self) -> str:
        self.stop.set()
        self._thread.join(30)
        self._watch.join(5)
        self.c.close()
        self._mod.codec, self._mod.merge = self._saved
        if self.failed:
            raise self.failed[0]
        return self.log.getvalue()


class _TimedCodec:
    """netspectra.codec with decode() timed (for the collector module, during a run)."""

    def __init__(self, decode):
        self.decode = decode

    def __getattr__(self, name):
        return getattr(codec, name)


def bench_collector(srv, lay, flows: int, sensors: int, windows: int, store: str, tmp: Path, run: int) -> dict:
    window_s = 5.0
    ids = tuple(sensor_id(i) for i in range(sensors))
    name = f"bench{run}x{flows}{store}"
    cfg = make_config(srv.url, name, window_s, 60.0, ids, store, tmp)
    fleet = Fleet(lay, flows, seed=2)
    k0 = math.floor(time.time() / window_s) - windows - 2  # recent windows, in the past
    log(f"  collector {flows} x {sensors} x {windows} windows, store {store}: building records")
    records, expected = [], {}
    for k in range(k0, k0 + windows):
        recs, pk = window_records(fleet, sensors, k, window_s)
        expected[k] = pk
        records += [(sensor_id(i), "eth0", k * window_s + window_s * i / sensors, r) for i, r in enumerate(recs)]
    rec_bytes = sum(len(r[3]) for r in records)
    asyncio.run(_make_stream(srv.url, cfg.fleet))
    t = time.perf_counter()
    msgs, sent = asyncio.run(_publish(srv.url, cfg.fleet, records))
    publish_s = time.perf_counter() - t
    log(f"  published {len(records)} epochs ({msgs} messages, {sent / 1e6:.1f} MB) in {publish_s:.1f} s")
    del records
    r = Running(cfg)
    marks = {}
    try:
        meter = Meter(srv.proc.pid)
        t0, c0 = r.ready_at
        meter.w0, meter.c0 = t0, c0  # from the moment it consumes
        m = len(expected) * sensors
        deadline = time.monotonic() + max(120.0, 2.0 * m)
        want_stored = m + windows if store != "off" else 0
        want = 4 if store != "off" else 3
        while time.monotonic() < deadline:
            now = time.perf_counter()
            if "merged" not in marks and r.c.applied >= windows:
                marks["merged"] = now
            if "visible" not in marks and len(r.visible) >= windows:
                marks["visible"] = now
            if store != "off" and "stored" not in marks and r.stored() >= want_stored:
                marks["stored"] = now
            if "acked" not in marks and r.c.acked >= msgs:
                marks["acked"] = now
            if len(marks) == want:
                break
            time.sleep(0.005)
        use = meter.stop()
        stats = r.c.stats()
        split = r.breakdown(use["cpu_s"])
        done_after = {k: round(v - t0, 3) for k, v in sorted(marks.items(), key=lambda kv: kv[1])}
    finally:
        text = r.close()
        asyncio.run(_drop_stream(srv.url, cfg.fleet.stream))
    if len(marks) < want:
        raise RuntimeError(f"the collector did not finish ({sorted(marks)} of merged, visible, stored, acked): {stats}"
                           f"\n{text}")  # fmt: skip
    checked = r.packets == expected
    wall, cpu = use["wall_s"], use["cpu_s"]
    done = max(marks.values()) - t0
    out = {
        "store": "off" if store == "off" else "sqlite (temporary file)",
        "store_mode": store,
        "flows_per_sensor_epoch": flows,
        "sensors": sensors,
        "windows": windows,
        "sensor_epochs": m,
        "messages": msgs,
        "record_bytes_total": rec_bytes,
        "publish_s": round(publish_s, 2),
        "done_after_s": done_after,
        "sensor_epochs_per_s": round(m / wall, 2),
        "sensor_epochs_per_s_until_merged": round(m / (marks["merged"] - t0), 2),
        "api_windows_warmed": f"{r.calls['api_warm']} of {windows}",
        "cpu_s_by_step": split,
        "sensor_epochs_per_cpu_s": round(m / cpu, 2),
        "cpu_ms_per_sensor_epoch": round(cpu / m * 1e3, 2),
        "cpu_per_wall": round(cpu / wall, 2),
        "usage": use,
        "windows_closed": stats["windows"],
        "late": sum(stats["late"].values()),
        "decode_errors": stats["decode_errors"],
        "checked": bool(checked),
    }
    log(f"  -> {m} sensor-epochs in {done:.1f} s ({out['sensor_epochs_per_s']}/s), CPU {cpu:.1f} s "
        f"({out['sensor_epochs_per_cpu_s']}/CPU s); other processes {use['other_processes_cores']} cores")  # fmt: skip
    return out


# --- latency: real publishers, live --------------------------------------------------------------


def _sensors_child(conn, p: dict) -> None:
    """The sensors: one Publisher each, on_epoch at each epoch's end."""
    try:
        from netspectra.fleet.config import FleetConfig
        from netspectra.fleet.publisher import Publisher

        lay = layout(default_tasks(), ncpus=2)
        fleet = Fleet(lay, p["flows"], seed=3)
        S, W = p["sensors"], p["window_s"]
        base = {(i, v): fleet.epoch(i, v, 0.0, W) for i in range(S) for v in range(2)}  # two epochs per sensor
        pubs = []
        for i in range(S):
            cfg = FleetConfig(servers=(p["url"],), subject_prefix=p["prefix"], stream=p["stream"],
                              spool_dir=str(Path(p["spool"]) / f"s{i}"))  # fmt: skip
            pubs.append(Publisher(cfg, sensor_id(i), log=io.StringIO()))
        deadline = time.monotonic() + 30
        while not all(pb.stats().connected for pb in pubs) and time.monotonic() < deadline:
            time.sleep(0.05)
        now = time.time()
        k0 = math.floor(now / W) + 1  # the first window whose epochs all end in the future
        conn.send(("start", k0, time.process_time()))
        events = sorted(((k0 + k + 1) * W + W * i / S, i, k0 + k) for k in range(p["epochs"]) for i in range(S))
        lag, enc = [], []
        for end, i, k in events:
            time.sleep(max(0.0, end - time.time()))
            b = base[(i, k % 2)]
            start = end - W
            fl = b.flows.copy()
            shift = int(start * 1e9)
            fl["first_ns"] += shift
            fl["last_ns"] += shift
            snap = dataclasses.replace(b, seq=k, start=start, end=end, flows=fl, _groups=None)
            t = time.perf_counter()
            pubs[i].on_epoch(snap)
            enc.append(time.perf_counter() - t)
            lag.append(time.time() - end)
        deadline = time.monotonic() + 60
        while any(pb.stats().spool_depth for pb in pubs) and time.monotonic() < deadline:
            time.sleep(0.05)
        st = [pb.stats() for pb in pubs]
        for pb in pubs:
            pb.close(timeout=1.0)
        conn.send(("done", {
            "on_epoch_s": {"median": round(statistics.median(enc), 4), "max": round(max(enc), 4)},
            "on_epoch_returned_after_end_s": {"median": round(statistics.median(lag), 4), "max": round(max(lag), 4)},
            "published": sum(s.published for s in st),
            "dropped": sum(s.dropped for s in st),
            "chunks": sum(s.chunks for s in st),
            "bytes_sent": sum(s.bytes_sent for s in st),
            "errors": sorted({s.last_error for s in st if s.last_error})[:3],
            "cpu_s": round(time.process_time(), 3),
        }))  # fmt: skip
    except BaseException as e:  # noqa: BLE001 - the parent reports it
        conn.send(("error", f"{type(e).__name__}: {e}"))


def bench_latency(srv, flows: int, sensors: int, window_s: float, epochs: int, listed: bool, tmp: Path,
                  run: int, store: str) -> dict:  # fmt: skip
    from bench import fleet as this  # the child imports the module by name

    ids = tuple(sensor_id(i) for i in range(sensors)) if listed else ()
    name = f"lat{run}w{int(window_s * 1000)}{'l' if listed else 'd'}"
    cfg = make_config(srv.url, name, window_s, GRACE_S, ids, store, tmp)
    spool = tmp / f"{name}-spool"
    r = Running(cfg)
    ctx = mp.get_context("spawn")
    parent, child_end = ctx.Pipe()
    params = {"url": srv.url, "prefix": cfg.fleet.subject_prefix, "stream": cfg.fleet.stream, "flows": flows,
              "sensors": sensors, "window_s": window_s, "epochs": epochs, "spool": str(spool)}  # fmt: skip
    proc = ctx.Process(target=this._sensors_child, args=(child_end, params), name="bench-sensors", daemon=True)
    meter = None
    try:
        proc.start()
        log(f"  latency W={window_s:g}s, {sensors} sensors x {flows} flows, sensors "
            f"{'listed' if listed else 'whoever reports'}, {epochs} epochs; store {store}")  # fmt: skip
        if not parent.poll(180):
            raise RuntimeError("the sensors did not start within 180 s")
        kind, k0, *child_cpu0 = parent.recv()
        if kind == "error":
            raise RuntimeError(f"sensors: {k0}")
        meter = Meter(srv.proc.pid)
        if not parent.poll(epochs * window_s + 120):
            raise RuntimeError("the sensors did not finish")
        kind, sens = parent.recv()
        if kind == "error":
            raise RuntimeError(f"sensors: {sens}")
        want = set(range(k0, k0 + epochs))
        deadline = time.monotonic() + GRACE_S + 5 * window_s + 30
        while not want <= set(r.visible) and time.monotonic() < deadline:
            time.sleep(0.02)
        use = meter.stop(child_cpu_s=sens["cpu_s"] - child_cpu0[0])
        stats = r.c.stats()
        split = r.breakdown(use["cpu_s"])
    finally:
        text = r.close()
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
        asyncio.run(_drop_stream(srv.url, cfg.fleet.stream))
        shutil.rmtree(spool, ignore_errors=True)
    offs = [window_s * i / sensors for i in range(sensors)]
    rows = []
    for k in sorted(want):
        if k not in r.visible:
            continue
        end = (k + 1) * window_s
        v = r.visible[k]
        rows.append({
            "window": k,
            "from_first_end_s": round(v - (end + min(offs)), 3),
            "from_last_end_s": round(v - (end + max(offs)), 3),
            "last_epoch_added_after_its_end_s": round(r.last_add.get(k, float("nan")) - (end + max(offs)), 3),
            "merged_after_last_added_s": round(r.fanned.get(k, float("nan")) - r.last_add.get(k, float("nan")), 3),
            "visible_after_merged_s": round(v - r.fanned.get(k, float("nan")), 3),
        })  # fmt: skip
    # sensors not listed: the windows of the first grace close by grace (who reports is being discovered),
    # and the windows behind them wait (windows close in order) until the last of them closed, a grace later
    steady = [x for x in rows if listed or x["window"] * window_s >= k0 * window_s + 2 * GRACE_S]
    first = [x["from_first_end_s"] for x in steady]
    last = [x["from_last_end_s"] for x in steady]
    missing = sorted(want - set(r.visible))

    def stat(vals):
        return {"median": round(statistics.median(vals), 3), "max": round(max(vals), 3)} if vals else None

    out = {
        "window_s": window_s,
        "grace_s": GRACE_S,
        "collector_sensors": "listed" if listed else "whoever reports ([])",
        "sensors": sensors,
        "flows_per_sensor_epoch": flows,
        "sensor_epochs_per_s": round(sensors / window_s, 1),
        "store": "off" if store == "off" else "sqlite (temporary file)",
        "windows_measured": len(steady),
        "windows_missing": missing,
        "latency_from_first_end_s": stat(first),
        "latency_from_last_end_s": stat(last),
        "latency_from_first_end_epochs": stat([x / window_s for x in first]),
        "latency_from_last_end_epochs": stat([x / window_s for x in last]),
        "meets_goal": bool(first) and not missing and max(first) <= GOAL_LATENCY_EPOCHS * window_s,
        "breakdown_median_s": {
            k: round(statistics.median([x[k] for x in steady]), 3)
            for k in ("last_epoch_added_after_its_end_s", "merged_after_last_added_s", "visible_after_merged_s")
        }
        if steady
        else None,
        "windows_closed": stats["windows"],
        "late": sum(stats["late"].values()),
        "api_windows_warmed": f"{r.calls['api_warm']} of {len(r.visible)}",
        "collector_cores": round(use["cpu_s"] / use["wall_s"], 2),
        "cpu_s_by_step": split,
        "sensors_side": sens,
        "usage": use,
        "per_window": rows,
    }
    if not listed:
        early = [x["from_first_end_s"] for x in rows if x not in steady]
        out["first_windows"] = {
            "what": "the windows of the first 2 x grace after the first epoch, left out above: the first grace's "
            "close by grace, the next wait behind them",
            "windows": len(early),
            "latency_from_first_end_s": stat(early),
        }
    if missing:
        out["collector_log_tail"] = text.splitlines()[-5:]
    lf = out["latency_from_first_end_epochs"]
    log(f"  -> {len(steady)} windows: from the first epoch end median {lf and lf['median']} max {lf and lf['max']} "
        f"epochs; other processes {use['other_processes_cores']} cores")  # fmt: skip
    return out


# --- main ----------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run in under a minute")
    ap.add_argument("--flows", help="flows per sensor epoch, comma-separated (default 10000,100000)")
    ap.add_argument("--sensors", type=int, help="sensors per window (default 100; fewer for larger epochs, "
                    f"at most {MAX_WINDOW_FLOWS:,} flows per window)")  # fmt: skip
    ap.add_argument("--windows", type=int, help="windows the collector run merges (default 3)")
    ap.add_argument("--rounds", type=int, help="windows of the pure merge measurement (default 3)")
    ap.add_argument("--latency-windows", help="window lengths of the latency runs, s (default 1,5)")
    ap.add_argument("--latency-epochs", help="epochs per latency run, one per window length (default 20,8)")
    ap.add_argument("--latency-store", choices=("off", "sqlite"), default="sqlite")
    ap.add_argument(
        "--no-discover", action="store_true", help="skip the latency run with sensors: [] (whoever reports)"
    )
    ap.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one, removed at the end)")
    args = ap.parse_args(argv)
    d = dict(flows="10000,100000", sensors=100, windows=3, rounds=3, latency_windows="1,5", latency_epochs="20,8")
    if args.quick:
        d.update(flows="10000", sensors=20, windows=2, rounds=1, latency_windows="1", latency_epochs="8")
        args.no_discover = True
    for k, v in d.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    flows_list = sorted(_ints(args.flows))
    lat_w = _floats(args.latency_windows)
    lat_e = _ints(args.latency_epochs)
    if len(lat_e) == 1:
        lat_e *= len(lat_w)
    if not 1 <= args.rounds <= 10 or args.windows < 1:
        ap.error("--rounds: 1..10 (the windows of one minute); --windows at least 1")
    if len(lat_e) != len(lat_w) or not flows_list or args.sensors < 1:
        ap.error("--latency-epochs: one count per --latency-windows value; --flows and --sensors positive")

    def sensors_for(flows: int) -> int:
        return max(2, min(args.sensors, MAX_WINDOW_FLOWS // flows))

    from tests.helpers.nats import NatsServer

    started = time.perf_counter()
    load = {"start": [round(x, 2) for x in os.getloadavg()]}
    whole = Meter()
    root = args.dir or Path(tempfile.mkdtemp(prefix="netspectra-fleetbench-"))
    root.mkdir(parents=True, exist_ok=True)
    lay = layout(default_tasks(), ncpus=2)
    srv = NatsServer(root / "nats").start()  # before pinning: nats-server keeps every CPU
    took, out = {}, {}
    try:
        max_payload = asyncio.run(_make_stream(srv.url, make_config(srv.url, "probe", 5, 10, (), "off", root).fleet))
        asyncio.run(_drop_stream(srv.url, "PROBE"))

        t = time.perf_counter()
        log("fleet: bytes on the wire")
        out["bytes"] = {str(f): bench_bytes(lay, f, max_payload, 1 if args.quick else 3) for f in flows_list}
        took["bytes"] = round(time.perf_counter() - t, 1)

        affinity = os.sched_getaffinity(0)
        cpu = pin_one_cpu()
        log(f"fleet: pinned to CPU {cpu}")
        t = time.perf_counter()
        log("fleet: the merge path (no NATS)")
        out["merge"] = {}
        for i, f in enumerate(flows_list):
            m = Meter(srv.proc.pid)
            r = bench_merge(lay, f, sensors_for(f), args.rounds, root, profile=i == 0)
            r["usage"] = m.stop()
            out["merge"][str(f)] = r
        if not args.quick:
            f = flows_list[0]
            m = Meter(srv.proc.pid)
            r = bench_merge(lay, f, sensors_for(f), args.rounds, root, estimated_share=MIXED_ESTIMATED)
            r["usage"] = m.stop()
            out["merge"][f"{f}_mixed"] = r
        took["merge"] = round(time.perf_counter() - t, 1)

        t = time.perf_counter()
        log("fleet: the collector end to end (backlog through nats-server)")
        out["collector"] = {}
        run = 0
        for f in flows_list:
            for store in ("off", "sqlite"):
                run += 1
                out["collector"][f"{f}_store_{store}"] = bench_collector(
                    srv, lay, f, sensors_for(f), args.windows, store, root, run
                )
        took["collector"] = round(time.perf_counter() - t, 1)
        os.sched_setaffinity(0, affinity)

        t = time.perf_counter()
        log("fleet: latency (publishers in a child process, collector live)")
        out["latency"] = {}
        lat_flows = flows_list[0]
        runs = [(w, e, True) for w, e in zip(lat_w, lat_e)]
        if not args.no_discover:
            runs.append((lat_w[0], lat_e[0] + math.ceil(2 * GRACE_S / lat_w[0]), False))
        for j, (w, e, listed) in enumerate(runs):
            s = max(1, min(args.sensors, round(GOAL_SENSOR_EPOCHS_PER_S * w)))
            key = f"window_{w:g}s_{'listed' if listed else 'whoever_reports'}"
            out["latency"][key] = bench_latency(srv, lat_flows, s, w, e, listed, root, j, args.latency_store)
        took["latency"] = round(time.perf_counter() - t, 1)
    finally:
        srv.stop()
        load["end"] = [round(x, 2) for x in os.getloadavg()]
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    use = whole.stop()
    took["total"] = round(time.perf_counter() - started, 1)

    # --- goals and ratios, from figures measured side by side in this run
    gf = GOAL_FLOWS if GOAL_FLOWS in flows_list else flows_list[0]
    off, sql = out["collector"][f"{gf}_store_off"], out["collector"][f"{gf}_store_sqlite"]
    pure = out["merge"][str(gf)]
    goal_rate = GOAL_SENSOR_EPOCHS_PER_S * GOAL_FLOWS / gf if gf != GOAL_FLOWS else GOAL_SENSOR_EPOCHS_PER_S
    goals = {
        "collector_sensor_epochs_per_s": {
            "flows_per_sensor_epoch": gf,
            "min": goal_rate,
            "why": "100 sensors x one 10,000-flow epoch per 5 s",
            "judged_on": "sensor_epochs_per_cpu_s of the end-to-end run (a core of its own; the machine may be "
            "shared, so the wall-clock rate is reported next to it)",
        }
    }
    for label, r in (("store_off", off), ("store_sqlite", sql)):
        goals["collector_sensor_epochs_per_s"][label] = {
            "sensor_epochs_per_cpu_s": r["sensor_epochs_per_cpu_s"],
            "sensor_epochs_per_s_wall": r["sensor_epochs_per_s"],
            "meets_goal": r["sensor_epochs_per_cpu_s"] >= goal_rate,
            "headroom": round(r["sensor_epochs_per_cpu_s"] / goal_rate, 2),
            "meets_goal_wall_as_measured": r["sensor_epochs_per_s"] >= goal_rate,
            "headroom_wall_as_measured": round(r["sensor_epochs_per_s"] / goal_rate, 2),
        }
    goals["collector_sensor_epochs_per_s"]["pure_merge_path"] = {
        "what": "decode + Windows + merge only (no NATS, no sinks)",
        "sensor_epochs_per_cpu_s": pure["sensor_epochs_per_cpu_s"],
        "meets_goal": pure["sensor_epochs_per_cpu_s"] >= goal_rate,
        "headroom": round(pure["sensor_epochs_per_cpu_s"] / goal_rate, 2),
    }
    for mode, rate in pure["with_sinks_sensor_epochs_per_cpu_s"].items():
        goals["collector_sensor_epochs_per_s"][f"steady_state_with_sinks_{mode}"] = {
            "what": f"the merge path plus every sink's CPU on each window, the API keeping {pure['api_kept_windows']} "
            "windows (the backlog run's API holds only the few windows merged so far, so warms cheaper)",
            "sensor_epochs_per_cpu_s": rate,
            "meets_goal": rate >= goal_rate,
            "headroom": round(rate / goal_rate, 2),
        }
    goals["latency_epochs"] = {
        "max": GOAL_LATENCY_EPOCHS,
        "judged_on": "latency_from_first_end (the longest a sensor's epoch waits), max over the windows",
        **{
            k: {
                "median": (v["latency_from_first_end_epochs"] or {}).get("median"),
                "max": (v["latency_from_first_end_epochs"] or {}).get("max"),
                "meets_goal": v["meets_goal"],
            }
            for k, v in out["latency"].items()
        },
    }
    ratios = {
        "collector_cpu_over_pure_merge_cpu": {
            k: round(
                r["cpu_ms_per_sensor_epoch"]
                / out["merge"][str(r["flows_per_sensor_epoch"])]["cpu_ms_per_sensor_epoch"]["median"],
                2,
            )
            for k, r in out["collector"].items()
        },  # fmt: skip
        "collector_cpu_over_pure_merge_with_sinks_cpu": {
            k: round(
                r["cpu_ms_per_sensor_epoch"]
                / out["merge"][str(r["flows_per_sensor_epoch"])]["with_sinks_cpu_ms_per_sensor_epoch"][
                    f"store_{r['store_mode']}"
                ],
                2,
            )
            for k, r in out["collector"].items()
        },  # fmt: skip
        "sqlite_over_off_cpu": {
            str(f): round(
                out["collector"][f"{f}_store_sqlite"]["cpu_ms_per_sensor_epoch"]
                / out["collector"][f"{f}_store_off"]["cpu_ms_per_sensor_epoch"],
                2,
            )
            for f in flows_list
        },  # fmt: skip
        "wall_over_cpu": {k: round(1 / r["cpu_per_wall"], 2) for k, r in out["collector"].items()},
    }
    if len(flows_list) > 1:
        a, b = flows_list[0], flows_list[-1]
        ratios[f"cpu_per_flow_{b}_over_{a}"] = {
            "pure_merge": round(
                (out["merge"][str(b)]["cpu_ms_per_sensor_epoch"]["median"] / b)
                / (out["merge"][str(a)]["cpu_ms_per_sensor_epoch"]["median"] / a), 2),
            "collector_store_off": round(
                (out["collector"][f"{b}_store_off"]["cpu_ms_per_sensor_epoch"] / b)
                / (out["collector"][f"{a}_store_off"]["cpu_ms_per_sensor_epoch"] / a), 2),
        }  # fmt: skip
    if f"{flows_list[0]}_mixed" in out["merge"]:
        f = flows_list[0]
        ratios["mixed_over_exact_pure_merge_cpu"] = round(
            out["merge"][f"{f}_mixed"]["cpu_ms_per_sensor_epoch"]["median"]
            / out["merge"][str(f)]["cpu_ms_per_sensor_epoch"]["median"], 2)  # fmt: skip
    phases = [r["usage"] for sec in ("merge", "collector", "latency") for r in out.get(sec, {}).values()]
    others = [u["other_processes_cores"] for u in phases if u["other_processes_cores"] is not None]
    machine_others = [u["other_cores"] for u in phases if u["other_cores"] is not None]
    shared = bool(others) and max(others) >= 0.2

    emit(
        {
            "benchmark": "fleet",
            "machine": machine()
            | {
                "shared": shared,
                "shared_note": (
                    "other processes used the machine during this run (other_processes_cores per phase, e.g. "
                    "another benchmark): wall-clock figures are pessimistic; CPU-time figures and the ratios, "
                    "measured side by side in this run, are the ones to compare"
                    if shared
                    else "no other significant load was measured during this run"
                ),
                "other_processes_cores_per_phase": {"min": min(others, default=None), "max": max(others, default=None)},
                "other_cores_per_phase_with_kernel_work": {
                    "min": min(machine_others, default=None),
                    "max": max(machine_others, default=None),
                },
                "load_average_1_5_15m": load,
            },  # fmt: skip
            "config": {
                "quick": args.quick,
                "tasks": [t.spec.name for t in lay.tasks],
                "sensor_layout": "layout(default_tasks(), ncpus=2)",
                "flows_per_sensor_epoch": flows_list,
                "sensors": {str(f): sensors_for(f) for f in flows_list},
                "collector_windows": args.windows,
                "merge_rounds": args.rounds,
                "shared_flows": SHARED,
                "nats_max_payload": max_payload,
                "pinned_cpu_for_merge_and_collector": cpu,
                "latency": {
                    "window_s": lat_w,
                    "epochs": lat_e,
                    "grace_s": GRACE_S,
                    "store": args.latency_store,
                    "flows_per_sensor_epoch": lat_flows,
                },  # fmt: skip
            },
            "method": METHOD,
            "goals": goals,
            "meets_goal": {
                "collector_store_off": goals["collector_sensor_epochs_per_s"]["store_off"]["meets_goal"],
                "collector_store_sqlite": goals["collector_sensor_epochs_per_s"]["store_sqlite"]["meets_goal"],
                "latency": {k: v["meets_goal"] for k, v in out["latency"].items()},
            },
            "headroom": {
                "collector_store_off": goals["collector_sensor_epochs_per_s"]["store_off"]["headroom"],
                "collector_store_sqlite": goals["collector_sensor_epochs_per_s"]["store_sqlite"]["headroom"],
            },
            "ratios": ratios,
            "took_s": took,
            "usage_whole_run": use,
            **out,
        }
    )


if __name__ == "__main__":
    main()
