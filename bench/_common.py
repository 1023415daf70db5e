"""Helpers shared by the benchmarks: traffic, CPU pinning, statistics, output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from netspectra import packets as P
from netspectra.kernel.program import BPF_DIR  # noqa: F401  (the sensor's sources, package data)

REPO = Path(__file__).resolve().parent.parent
BENCH_BPF_DIR = Path(__file__).resolve().parent / "bpf"


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def emit(result: dict) -> None:
    """The benchmark's one JSON object, on stdout."""
    json.dump(result, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def memory_mib(pid: int | str = "self") -> dict[str, float]:
    """A process's memory from /proc/<pid>/status, in MiB: VmRSS (all it
    maps: kernel maps and libraries included) and RssAnon (its own heap)."""
    out = {"VmRSS": 0.0, "RssAnon": 0.0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in out:
            out[name] = int(value.split()[0]) / 1024  # kB
    return out


def pin_cpu(cpu: int | None = None) -> int:
    """Pin this process to one CPU (the last allowed one by default):
    BPF_PROG_TEST_RUN runs the program on the calling CPU, so every run of
    every program uses the same CPU and the same per-CPU map slices."""
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {cpu})
    return cpu


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "kernel": platform.release(),
        "cpu_model": model,
        "online_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def hot_frame(size: int = 80) -> bytes:
    """The one hot flow: an IPv4/UDP frame of `size` bytes."""
    return P.frame("10.1.0.1", "10.2.0.1", P.UDP, 40000, 53, size=size)


def mix_frames(n: int = 100_000, seed: int = 1, v6_share: float = 0.2) -> list[bytes]:
    """`n` frames of `n` distinct 5-tuples, 64..100 bytes: 80% IPv4, 20%
    IPv6, half TCP (SYN) and half UDP; sources from a pool of n/20 hosts and
    destinations from n/5 (about 20 flows per source), random ports.
    Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    nsrc, ndst = max(1, n // 20), max(1, n // 5)
    seen: set[tuple] = set()
    out: list[bytes] = []
    while len(out) < n:
        m = n - len(out)
        src = rng.integers(0, nsrc, m)
        dst = rng.integers(0, ndst, m)
        sport = rng.integers(1024, 65536, m)
        dport = rng.integers(1, 65536, m)
        proto = np.where(rng.random(m) < 0.5, P.TCP, P.UDP)
        v6 = rng.random(m) < v6_share
        size = rng.integers(64, 101, m)
        for i in range(m):
            s, d = int(src[i]), int(dst[i])
            if v6[i]:
                sa, da = f"2001:db8:1::{s:x}", f"2001:db8:2::{d:x}"
            else:
                sa = f"10.{64 + (s >> 16)}.{(s >> 8) & 255}.{s & 255}"
                da = f"172.{16 + (d >> 16)}.{(d >> 8) & 255}.{d & 255}"
            key = (sa, da, int(proto[i]), int(sport[i]), int(dport[i]))
            if key in seen:
                continue
            seen.add(key)
            out.append(P.frame(sa, da, int(proto[i]), int(sport[i]), int(dport[i]), size=int(size[i])))
    return out


def summary(values: list[float], digits: int = 2) -> dict:
    """Median and min over rounds, plus the rounds themselves."""
    if not values:
        return {"median": None, "min": None, "rounds": []}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "rounds": [round(v, digits) for v in values],
    }


def percentiles(values, keys=("p50", "p99", "max"), digits: int = 2, scale: float = 1.0) -> dict:
    """The named statistics (pNN, max, mean) of values times scale, rounded;
    every one None when there are no values."""
    if len(values) == 0:
        return dict.fromkeys(keys)
    a = np.asarray(values, dtype=float) * scale
    whole = {"max": a.max, "mean": a.mean}
    return {k: round(float(whole[k]() if k in whole else np.percentile(a, float(k[1:]))), digits) for k in keys}
