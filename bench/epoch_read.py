"""What an epoch costs the agent: flip, read the idle map set, derive the epoch.

    python -m bench.epoch_read [--flows 100000] [--repeats 5] [--scale 1000000]

With the default configuration loaded into the real program (netspectra/bpf/sensor.c,
nothing attached; traffic comes from BPF_PROG_TEST_RUN) it measures, as CPU
time of the calling thread (the RCU wait in flip() sleeps, it costs no CPU):
  agent     Agent.epoch() after `flows` distinct flows went through the program,
            split into its steps, and the epoch's sketch derived from its flows
            (lazy: only when something reads it), with a profile
  flows     reading `flows` flows: the sensor's table (take_flows: gather by the
            per-CPU slot lists, merge over CPUs) next to draining the same flows
            from a per-CPU hash (the minimal flow counter of bench/bpf, the
            sensor's previous design) with batched lookup-and-delete
  overflow  the kernel's sketch arrays read, merged over CPUs and cleared
            (random counters), cold and warm: paid only in epochs where
            packets were untracked (0 otherwise), and every epoch in the
            every_packet mode
  scale     the userspace steps at --scale flows, on synthetic tables (no kernel):
            flows_take, derive() and the sketch of the flows
  clock     what the millisecond clock thread costs (process CPU over a few
            seconds with it running, minus without) and how far behind the
            published clock is when read
Prints one JSON object; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np

from netspectra import _sketch, abi, analysis
from netspectra.agent import Agent
from netspectra.config import load_config
from netspectra.kernel import libbpf
from netspectra.kernel.program import Program, possible_cpus
from netspectra.sketch import SketchSet
from netspectra.snapshot import derive
from netspectra.tasks import flow_slots, layout

from ._common import emit, log, machine, mix_frames, pin_cpu, summary
from .kernel_cost import load_minimal

GOAL_EPOCH_CPU_MS = 20.0  # Agent.epoch() at 100k flows
EVICT_BYTES = 96 << 20  # larger than the last-level cache of most machines we run on

METHOD = {
    "cpu": "time.thread_time() of the agent's thread: flip() waits for an RCU grace period asleep",
    "agent": (
        "per repeat: `flows` distinct frames (80% IPv4, 20% IPv6) run once each through BPF_PROG_TEST_RUN on "
        "the pinned CPU, then Agent.epoch() is timed, and each of its steps is timed once more by hand on the "
        "next repeat's traffic (flip, take_totals, take_flows, take_candidates, take_sketch, derive). "
        "sketch_on_first_use_ms: reading the exact epoch's sketch (SketchSet.of_flows) for the first time."
    ),
    "flows": (
        "the same `flows` frames into the sensor's table and into a per-CPU hash of the same capacity "
        "(bench/bpf/minimal_flow.c mf_flows), then take_flows() (gather + merge) vs "
        "lookup_and_delete_batch of the whole hash (the syscall alone, 8192 entries per call)"
    ),
    "overflow": (
        "random counters (0..999) and registers (0..31) copied into the active set's slices, flip, then "
        "Program.take_sketch(add, clear); cold: a buffer larger than the LLC is written between"
    ),
    "clock": (
        "the pinned process idles for a few seconds with the clock thread stopped, then running: the "
        "difference in process CPU time; then 2000 reads of the published clock against CLOCK_MONOTONIC"
    ),
    "scale": (
        "synthetic per-CPU tables (entries spread over all CPUs, 1/4 of the flows on two CPUs) read with "
        "flows_take(), derive() of the exact epoch, and SketchSet.add_flows(): userspace only"
    ),
}


def fill(prog_fd: int, frames: list[bytes]) -> None:
    for f in frames:
        libbpf.test_run(prog_fd, f, 1)


def clean(prog: Program) -> None:
    """Drain both sets completely (two flips)."""
    for _ in range(2):
        idle = prog.flip()
        prog.take_totals(idle)
        prog.take_flows(idle)
        prog.take_candidates(idle)
        prog.cm[idle].fill(0)
        prog.ss[idle].fill(0)


def cpu_ms(f, *args):
    t0 = time.thread_time()
    out = f(*args)
    return (time.thread_time() - t0) * 1e3, out


def bench_agent(prog: Program, lay, frames: list[bytes], repeats: int) -> dict:
    agent = Agent(prog, lay)
    epoch, sketch, steps, nflows, exact = [], [], {}, [], []
    for r in range(repeats):
        clean(prog)
        fill(prog.prog_fd, frames)
        ms, snap = cpu_ms(agent.epoch)
        epoch.append(ms)
        nflows.append(len(snap.flows))
        exact.append(snap.exact)
        ms, _ = cpu_ms(lambda s=snap: s.sketch.cm)
        sketch.append(ms)
        # the same steps by hand, each timed
        fill(prog.prog_fd, frames)
        t = {}
        t["flip"], idle = cpu_ms(prog.flip)
        t["take_totals"], totals = cpu_ms(prog.take_totals, idle)
        t["take_flows"], flows = cpu_ms(prog.take_flows, idle)
        t["take_candidates"], cands = cpu_ms(prog.take_candidates, idle)
        sk = SketchSet.of_flows(lay, flows)
        t["take_sketch"], read = cpu_ms(prog.take_sketch, idle, sk, int(totals[abi.C["flow_untracked"], 0]))
        assert not read, "nothing overflowed: the kernel's arrays must not be read"
        t["derive"], _ = cpu_ms(derive, 0, 0.0, 1.0, totals, flows, sk, cands)
        for k, v in t.items():
            steps.setdefault(k, []).append(v)
        log(f"epoch_read: agent repeat {r + 1}/{repeats}: epoch {epoch[-1]:.1f} ms CPU, sketch {sketch[-1]:.1f} ms")
    clean(prog)
    fill(prog.prog_fd, frames)
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
        "epoch_cpu_ms": summary(epoch, 2),
        "steps_cpu_ms": {k: summary(v, 2) for k, v in steps.items()},
        "sketch_on_first_use_cpu_ms": summary(sketch, 2),
        "flows": nflows,
        "exact": exact,
        "heavy_hitters": {k: len(v.keys) for k, v in snap.heavy.items()},
        "spreaders": {k: len(v[0]) for k, v in snap.spreaders.items()},
        "profile_top_cumulative_s": [{"fn": name, "cum_s": round(ct, 4), "calls": nc} for ct, name, nc in rows[:15]],
    }


def bench_flows(prog: Program, frames: list[bytes], capacity: int, ncpus: int, repeats: int) -> dict:
    b, fns, drain = load_minimal(capacity, ncpus)
    try:
        take, hashed, n_take, n_hash = [], [], [], []
        for _ in range(repeats):
            clean(prog)
            fill(prog.prog_fd, frames)
            idle = prog.flip()
            prog.take_totals(idle)
            ms, flows = cpu_ms(prog.take_flows, idle)
            take.append(ms)
            n_take.append(len(flows))
            fill(fns["mf_flow"].fd, frames)
            ms, n = cpu_ms(drain, None)
            hashed.append(ms)
            n_hash.append(n)
    finally:
        b.cleanup()
    return {
        "sensor_table_take_flows_cpu_ms": summary(take, 2),
        "sensor_table_entries": n_take,
        "percpu_hash_lookup_and_delete_batch_cpu_ms": summary(hashed, 2),
        "percpu_hash_entries": n_hash,
    }


def bench_overflow(prog: Program, lay, epochs: int, rng) -> dict:
    cm_rand = np.zeros_like(prog.cm[0])
    cm_rand.view(np.uint64)[...] = rng.integers(0, 1000, cm_rand.view(np.uint64).shape, dtype=np.uint64)
    ss_rand = rng.integers(0, 32, prog.ss[0].shape, dtype=np.uint8)
    scratch = np.zeros(EVICT_BYTES // 8, np.uint64)
    out, checked = {}, True
    for mode in ("cold", "warm"):
        times = []
        for e in range(epochs):
            act = prog.active
            np.copyto(prog.cm[act], cm_rand)
            np.copyto(prog.ss[act], ss_rand)
            if mode == "cold":
                scratch += 1
            idle = prog.flip()
            sk = SketchSet(lay)
            ms, _ = cpu_ms(prog.take_sketch, idle, sk, 1)
            times.append(ms)
            if e == 0:
                checked &= bool(np.array_equal(sk.cm.view(np.uint64), cm_rand.view(np.uint64).sum(axis=0)))
                checked &= bool(np.array_equal(sk.ss, ss_rand.max(axis=0)))
                checked &= not prog.cm[idle].view(np.uint64).any() and not prog.ss[idle].any()
        out[mode] = summary(times, 3)
    out["bytes_per_cpu"] = {"countmin": int(prog.cm[0, 0].nbytes), "superspread": int(prog.ss[0, 0].nbytes)}
    out["merge_checked"] = checked
    return out


def bench_clock(prog: Program, seconds: float = 4.0) -> dict:
    def cpu_percent() -> float:
        t0, w0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        return 100 * (time.process_time() - t0) / (time.monotonic() - w0)

    prog.stop_clock()
    idle = cpu_percent()
    prog.start_clock()
    running = cpu_percent()
    lag = []
    for _ in range(2000):
        lag.append((time.monotonic_ns() - int(prog._ctl["clock_ns"][0])) / 1e6)
        time.sleep(0.0003)
    prog.stop_clock()
    lag = np.array(lag)
    return {
        "clock_thread_cpu_percent": round(running - idle, 3),
        "published_clock_behind_ms": {
            "p50": round(float(np.percentile(lag, 50)), 3),
            "p99": round(float(np.percentile(lag, 99)), 3),
            "max": round(float(lag.max()), 3),
        },
    }


def synthetic_table(n: int, ncpus: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(entries (ncpus, slots), fidx (ncpus, cap), counts) holding n distinct
    flows, a quarter of them on two CPUs (as flows whose packets RSS spreads)."""
    cap = n
    slots = flow_slots(cap)
    keys = np.zeros(n, abi.KEY)
    keys["src"][:, 10:12] = keys["dst"][:, 10:12] = 0xFF
    keys["src"][:, 12:] = rng.integers(0, 256, (n, 4))
    keys["dst"][:, 12:] = rng.integers(0, 256, (n, 4))
    keys["sport"], keys["dport"], keys["proto"] = rng.integers(1024, 65536, n), rng.integers(1, 65536, n), 6
    entries = np.zeros((ncpus, slots), abi.FLOW)
    fidx = np.zeros((ncpus, cap), np.uint64)
    counts = np.zeros(ncpus, np.uint64)
    cpu_of = rng.integers(0, ncpus, n)
    for c in range(ncpus):
        mine = np.flatnonzero((cpu_of == c) | ((np.arange(n) % 4 == 0) & (cpu_of == (c + 1) % ncpus)))
        where = rng.choice(slots, len(mine), replace=False).astype(np.uint64)
        e = entries[c]
        e["key"][where] = keys[mine]
        e["packets"][where], e["bytes"][where] = 3, 300
        e["first_ns"][where], e["last_ns"][where] = 1, 2
        fidx[c, : len(mine)] = where
        counts[c] = len(mine)
    return entries, fidx, counts


def bench_scale(lay, n: int, ncpus: int, rng) -> dict:
    log(f"epoch_read: synthetic tables of {n} flows on {ncpus} CPUs")
    entries, fidx, counts = synthetic_table(n, ncpus, rng)
    take, dv, skt = [], [], []
    for _ in range(3):
        ms, flows = cpu_ms(_sketch.flows_take, entries, fidx, counts, analysis.FLOW_RECORD)
        take.append(ms)
        totals = np.zeros((abi.NCOUNTERS, 2), np.uint64)
        ms, _ = cpu_ms(derive, 0, 0.0, 1.0, totals, flows, SketchSet.of_flows(lay, flows))
        dv.append(ms)
        sk = SketchSet.of_flows(lay, flows)
        ms, _ = cpu_ms(lambda s=sk: s.cm)
        skt.append(ms)
    return {
        "flows": len(flows),
        "flows_take_cpu_ms": summary(take, 1),
        "derive_cpu_ms": summary(dv, 1),
        "sketch_of_flows_cpu_ms": summary(skt, 1),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.epoch_read", description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10, help="epochs of the overflow measurement")
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scale", type=int, default=1_000_000, help="flows of the userspace scaling run (0: skip)")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed)")
    args = ap.parse_args(argv)

    cfg = load_config(None)
    cpu = pin_cpu(args.cpu)
    ncpus = possible_cpus()
    lay = layout(cfg.tasks, ncpus)
    capacity = max(cfg.sensor.flow_capacity, args.flows)  # the frames all run on one CPU
    log(f"epoch_read: pinned to CPU {cpu}; building {args.flows} frames")
    frames = mix_frames(args.flows)
    rng = np.random.default_rng(3)
    log(f"epoch_read: loading the sensor program (flow_capacity {capacity} per CPU)")
    prog = Program(lay, capacity, cfg.sensor.ringbuf_pages, ncpus)
    try:
        log("epoch_read: Agent.epoch")
        ag = bench_agent(prog, lay, frames, args.repeats)
        log("epoch_read: flows")
        fl = bench_flows(prog, frames, capacity, ncpus, args.repeats)
        log("epoch_read: overflow arrays")
        ov = bench_overflow(prog, lay, args.epochs, rng)
        clean(prog)
        log("epoch_read: the millisecond clock")
        ck = bench_clock(prog)
    finally:
        prog.close()
    sc = bench_scale(lay, args.scale, ncpus, rng) if args.scale else None

    epoch_ms = ag["epoch_cpu_ms"]["median"]
    emit(
        {
            "benchmark": "epoch_read",
            "machine": machine(),
            "config": {
                "pinned_cpu": cpu,
                "possible_cpus": ncpus,
                "tasks": [t.name for t in cfg.tasks],
                "flow_capacity_per_cpu": capacity,
                "flows": args.flows,
                "repeats": args.repeats,
                "scale_flows": args.scale,
            },
            "method": METHOD,
            "agent_epoch_cpu_ms": epoch_ms,
            "sketch_on_first_use_cpu_ms": ag["sketch_on_first_use_cpu_ms"]["median"],
            "overflow_arrays_cpu_ms_when_nothing_overflowed": ag["steps_cpu_ms"]["take_sketch"]["median"],
            "overflow_arrays_cpu_ms_when_read_cold": ov["cold"]["median"],
            "millisecond_clock_cpu_percent": ck["clock_thread_cpu_percent"],
            "goals": {"agent_epoch_cpu_ms": {"max": GOAL_EPOCH_CPU_MS, "within": epoch_ms <= GOAL_EPOCH_CPU_MS}},
            "agent": ag,
            "flows": fl,
            "overflow": ov,
            "clock": ck,
            "scale": sc,
        }
    )


if __name__ == "__main__":
    main()
