"""What an epoch costs the agent: flip, read and merge the idle map set.

    python -m bench.epoch_read [--epochs 20] [--flows 100000] [--repeats 3]

With the default configuration loaded into the real program (bpf/sensor.c,
nothing attached; traffic comes from BPF_PROG_TEST_RUN) it times
  sketches  flip() + SketchSet.from_percpu(clear=True) of the default sketch
            arrays, filled with random counters and registers through mmap
  flows     Program.take_flows() + analysis.merge_flow_cpus() of `flows`
            real entries of the per-CPU flow hash
  agent     Agent.epoch() with `flows` flows, for context, with a profile
Prints one JSON object; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np

from netspectra import abi, analysis
from netspectra.agent import Agent
from netspectra.config import load_config
from netspectra.kernel import libbpf
from netspectra.kernel.program import Program, possible_cpus
from netspectra.sketch import SketchSet
from netspectra.tasks import layout

from ._common import emit, log, machine, mix_frames, pin_cpu, summary

GOAL_SKETCH_MS = 5.0
GOAL_FLOW_RATE = 1_000_000
EVICT_BYTES = 96 << 20  # larger than the L3 of the machines we run on

METHOD = {
    "sketches": (
        "per epoch: random counters (0..999) and SuperSpread registers (0..31) are copied into the "
        "active set's ns_cm/ns_ss slices of every CPU through the mmapped views; then timed: "
        "idle = flip() (ns_ctl store + barrier map update, which waits for an RCU grace period; "
        "flip_cpu_ms is the thread's CPU time in it, the rest is sleeping) and "
        "SketchSet.from_percpu(layout, cm[idle], ss[idle], clear=True). 'cold': a buffer larger "
        "than the last-level cache is written between the fill and the read, as after an epoch of "
        "traffic that touched other memory; 'warm': not. Median/min over epochs."
    ),
    "flows": (
        "per repeat: `flows` distinct frames are run once each through BPF_PROG_TEST_RUN (real "
        "entries of the active set's per-CPU hash), flip(), then timed: take_flows(idle) "
        "(batched lookup-and-delete + copies) and merge_flow_cpus(). entries/s = flows / (take + "
        "merge). Extra rows time the kernel batch call alone, at the program's batch size and at "
        "one batch for the whole table, on the same kind of table."
    ),
    "agent": (
        "Agent.epoch() after `flows` frames through test_run (real flows and real sketch updates); "
        "median over repeats; the profile is one more such epoch under cProfile (cumulative s, "
        "profiler overhead included, so only the proportions matter)."
    ),
}


def evict(scratch: np.ndarray) -> None:
    scratch += 1  # read and write every line


def fill_frames(prog: Program, frames: list[bytes]) -> None:
    fd, tr = prog.prog_fd, libbpf.test_run
    for f in frames:
        tr(fd, f, 1)


def clean(prog: Program) -> None:
    """Drain both sets completely (two flips)."""
    for _ in range(2):
        idle = prog.flip()
        prog.take_totals(idle)
        prog.take_flows(idle)
        prog.take_candidates(idle)
        prog.cm[idle].fill(0)
        prog.ss[idle].fill(0)


def bench_sketches(prog: Program, lay, epochs: int, rng) -> dict:
    cm_rand = np.zeros_like(prog.cm[0])
    cm_rand.view(np.uint64)[...] = rng.integers(0, 1000, cm_rand.view(np.uint64).shape, dtype=np.uint64)
    ss_rand = rng.integers(0, 32, prog.ss[0].shape, dtype=np.uint8)
    expect_cm = cm_rand.view(np.uint64).sum(axis=0, dtype=np.uint64)
    expect_ss = ss_rand.max(axis=0)
    scratch = np.zeros(EVICT_BYTES // 8, np.uint64)
    out = {}
    checked = True
    for mode in ("cold", "warm"):
        flips, merges, totals, flip_cpu = [], [], [], []
        for e in range(epochs):
            act = prog.active
            np.copyto(prog.cm[act], cm_rand)
            np.copyto(prog.ss[act], ss_rand)
            if mode == "cold":
                evict(scratch)
            c0 = time.thread_time()
            t0 = time.perf_counter()
            idle = prog.flip()
            t1 = time.perf_counter()
            flip_cpu.append((time.thread_time() - c0) * 1e3)
            sk = SketchSet.from_percpu(lay, prog.cm[idle], prog.ss[idle], clear=True)
            t2 = time.perf_counter()
            flips.append((t1 - t0) * 1e3)
            merges.append((t2 - t1) * 1e3)
            totals.append((t2 - t0) * 1e3)
            if e == 0:  # the merge is right and the set is cleared
                checked &= bool(np.array_equal(sk.cm.reshape(-1).view(np.uint64), expect_cm.reshape(-1)))
                checked &= bool(np.array_equal(sk.ss.reshape(-1), expect_ss.reshape(-1)))
                checked &= not prog.cm[idle].view(np.uint64).any() and not prog.ss[idle].any()
        out[mode] = {
            "flip_read_merge_ms": summary(totals, 3),
            "flip_ms": summary(flips, 3),
            "flip_cpu_ms": summary(flip_cpu, 3),
            "read_merge_clear_ms": summary(merges, 3),
        }
    out["bytes_per_epoch"] = {
        "countmin": int(prog.cm[0].nbytes),
        "superspread": int(prog.ss[0].nbytes),
    }
    out["merge_checked"] = checked
    return out


def bench_flows(prog: Program, frames: list[bytes], repeats: int) -> dict:
    takes, merges, rates, counts = [], [], [], []
    for r in range(repeats):
        clean(prog)
        fill_frames(prog, frames)
        idle = prog.flip()
        t0 = time.perf_counter()
        keys, percpu = prog.take_flows(idle)
        t1 = time.perf_counter()
        flows = analysis.merge_flow_cpus(keys, percpu, 0)
        t2 = time.perf_counter()
        counts.append(len(flows))
        takes.append((t1 - t0) * 1e3)
        merges.append((t2 - t1) * 1e3)
        rates.append(len(flows) / (t2 - t0))
        log(f"epoch_read: flows repeat {r + 1}/{repeats}: {len(flows)} entries, {len(flows) / (t2 - t0) / 1e6:.2f} M/s")

    # The kernel batch call alone, on buffers of our own, by batch size.
    cap = prog.sizes.flow_capacity
    kbuf = np.zeros(cap, dtype=abi.KEY)
    vbuf = np.zeros((cap, prog.sizes.ncpus), dtype=abi.FLOW)
    kernel = {}
    for batch in (8192, cap):
        times = []
        for _ in range(repeats):
            clean(prog)
            fill_frames(prog, frames)
            idle = prog.flip()
            t0 = time.perf_counter()
            n = libbpf.lookup_and_delete_batch(prog.flow_fds[idle], kbuf, vbuf, batch=batch)
            times.append((time.perf_counter() - t0) * 1e3)
        kernel[f"batch_{batch}"] = {
            "ms": summary(times, 3),
            "entries": n,
            "entries_per_s": round(n / (min(times) / 1e3)),
        }
    n0 = counts[0] or 1
    copy_t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        kbuf[:n0].copy()
        vbuf[:n0].copy()
        copy_t.append((time.perf_counter() - t0) * 1e3)
    return {
        "entries": counts,
        "take_flows_ms": summary(takes, 3),
        "merge_flow_cpus_ms": summary(merges, 3),
        "entries_per_s": summary(rates, 0),
        "kernel_lookup_and_delete_batch": kernel,
        "copy_of_drained_buffers_ms": summary(copy_t, 3),
    }


def bench_agent(prog: Program, lay, frames: list[bytes], repeats: int) -> dict:
    agent = Agent(prog, lay)
    times, nflows = [], []
    for _ in range(repeats):
        clean(prog)
        fill_frames(prog, frames)
        t0 = time.perf_counter()
        snap = agent.epoch()
        times.append((time.perf_counter() - t0) * 1e3)
        nflows.append(len(snap.flows))
    clean(prog)
    fill_frames(prog, frames)
    pr = cProfile.Profile()
    pr.enable()
    snap = agent.epoch()
    pr.disable()
    st = pstats.Stats(pr)
    rows = []
    for (file, line, fn), (_cc, nc, _tt, ct, _callers) in st.stats.items():
        if "netspectra" in file or fn.startswith("<built-in method") or fn.startswith("<method"):
            rows.append((ct, f"{file.split('/')[-1]}:{line}({fn})", nc))
    rows.sort(reverse=True)
    return {
        "epoch_ms": summary(times, 2),
        "flows": nflows,
        "heavy_hitters": {k: len(v.keys) for k, v in snap.heavy.items()},
        "spreaders": {k: len(v[0]) for k, v in snap.spreaders.items()},
        "profile_top_cumulative_s": [{"fn": name, "cum_s": round(ct, 4), "calls": nc} for ct, name, nc in rows[:15]],
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.epoch_read", description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed)")
    args = ap.parse_args(argv)

    cfg = load_config(None)
    if args.flows > cfg.sensor.flow_capacity:
        ap.error(f"--flows must not exceed the default flow_capacity {cfg.sensor.flow_capacity}")
    cpu = pin_cpu(args.cpu)
    ncpus = possible_cpus()
    lay = layout(cfg.tasks, ncpus)
    log(f"epoch_read: pinned to CPU {cpu}; building {args.flows} frames")
    frames = mix_frames(args.flows)
    rng = np.random.default_rng(3)
    log("epoch_read: loading the sensor program")
    prog = Program(lay, cfg.sensor.flow_capacity, cfg.sensor.ringbuf_pages, ncpus)
    try:
        log("epoch_read: sketches")
        sk = bench_sketches(prog, lay, args.epochs, rng)
        log("epoch_read: flows")
        fl = bench_flows(prog, frames, args.repeats)
        log("epoch_read: Agent.epoch")
        ag = bench_agent(prog, lay, frames, args.repeats)
        clean(prog)
    finally:
        prog.close()

    sketch_ms = sk["cold"]["flip_read_merge_ms"]["median"]
    rate = fl["entries_per_s"]["median"]
    emit(
        {
            "benchmark": "epoch_read",
            "machine": machine(),
            "config": {
                "pinned_cpu": cpu,
                "possible_cpus": ncpus,
                "tasks": [t.name for t in cfg.tasks],
                "flow_capacity": cfg.sensor.flow_capacity,
                "epochs": args.epochs,
                "flows": args.flows,
                "repeats": args.repeats,
            },
            "method": METHOD,
            "sketch_flip_read_merge_ms": sketch_ms,
            "sketch_read_merge_ms_without_flip": sk["cold"]["read_merge_clear_ms"]["median"],
            "flow_drain_entries_per_s": rate,
            "agent_epoch_ms_100k_flows": ag["epoch_ms"]["median"],
            "goals": {
                "sketch_flip_read_merge_ms": {"max": GOAL_SKETCH_MS, "within": sketch_ms <= GOAL_SKETCH_MS},
                "flow_drain_entries_per_s": {"min": GOAL_FLOW_RATE, "within": rate >= GOAL_FLOW_RATE},
            },
            "sketches": sk,
            "flows": fl,
            "agent": ag,
        }
    )


if __name__ == "__main__":
    main()
