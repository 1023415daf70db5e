"""Per-packet cost of the XDP program, next to two reference points.

    python -m bench.kernel_cost [--rounds 5] [--flows 100000] [--no-breakdown]

Runs, through BPF_PROG_TEST_RUN on one pinned CPU and interleaved round by
round so machine noise hits all programs alike:
  noop          an XDP program that returns XDP_PASS
  minimal_flow  parse + one per-CPU hash lookup/insert of the 5-tuple,
                packets and bytes (bench/bpf/minimal_flow.c)
  sensor        netspectra/bpf/sensor.c with the default configuration (hybrid: the
                flow table holds every flow, the sketch tasks see nothing;
                the agent's millisecond clock running, as at high rates)
and, unless --no-breakdown, variants that attribute the sensor's cost: parse
only; the minimal counter with timestamps (precise / coarse) and totals; the
same counter in the sensor's own table design (mf_tab); the sensor without
tasks, with each timestamp source, in the every-packet sketch mode (all tasks,
one kind of task) and with no flow table (every packet on the light path, the
cost once the table is full).  Prints one JSON object; never passes or fails
on time.
"""

from __future__ import annotations

import argparse
import ctypes as ct
import statistics
import time

import numpy as np

from netspectra import abi
from netspectra.config import load_config
from netspectra.kernel import libbpf
from netspectra.kernel.program import Program, import_bcc, possible_cpus
from netspectra.tasks import COUNTMIN, SUPERSPREAD, flow_slots, layout

from ._common import BENCH_BPF_DIR, BPF_DIR, emit, hot_frame, log, machine, mix_frames, pin_cpu, summary

XDP_PASS = 2
GOAL_HOT_RATIO = 1.25  # sensor / minimal_flow, one hot flow
GOAL_MIX_RATIO = 1.2  # sensor / minimal_flow, the 100k-flow mix
MAIN = ("noop", "minimal_flow", "sensor")

METHOD = {
    "timer": (
        "ns per packet is the kernel's own BPF_PROG_TEST_RUN duration (ktime around the run loop, "
        "divided by repeat); Python and syscall overhead are outside it. The loop's fixed overhead "
        "(local_bh_disable, run context, timer read) is in every program's number, hence the noop "
        "program and the *_minus_noop values."
    ),
    "pinning": "the process is pinned to one CPU: every run uses the same CPU and per-CPU map slices",
    "hot": (
        "one 80-byte IPv4/UDP frame, test_run(repeat=hot_repeat) per call, mean of calls_per_round "
        "calls; the flow entry, sketch cells and code stay in L1 (best case)"
    ),
    "mix": (
        "flows distinct 5-tuples (80% IPv4, 20% IPv6, TCP/UDP, 64..100 bytes), one test_run call "
        "per frame, per-packet cost = mean over calls of the kernel duration. Per round: "
        "mix_new_flow = first pass (repeat=1), every packet creates its flow entry; "
        "mix = second pass in a fresh random order (repeat=1), every packet updates an existing "
        "entry among `flows` live ones: the steady state of a many-flow epoch, with the syscall "
        "between packets evicting some cache as real traffic between packets of a flow would; "
        "mix_repeatN (noop, minimal_flow, sensor only) = a sample of mix_repeat_sample frames per round "
        "with repeat=N: the first run of each call pays the cache misses, the others are hot, so it "
        "understates the cost (the hot-cache effect of repeat). Only a sample because every test_run "
        "with repeat > 1 swaps the program into the XDP dispatcher and back (bpf_prog_change_xdp: two "
        "synchronize_rcu, ~17 ms per call here); with repeat=1 it is not swapped in, so mix runs reach "
        "the program by an indirect call (noop pays it too) and hot runs by the dispatcher's direct call. "
        "Flow tables are drained between rounds (the sensor: flip() + take_flows(), both sets; mf_tab: a new "
        "generation)."
    ),
    "rounds": (
        "each scenario runs all programs one after the other (rotating order) before the next "
        "scenario; reported: median and min over rounds. Derived values are computed per round "
        "(same round, same noise) and then the median/min taken."
    ),
    "ratio": (
        "sensor_over_minimal_{hot,mix}_ratio = sensor ns / minimal_flow ns, both including the "
        "test-run loop overhead (the *_net variant subtracts noop from both)"
    ),
    "capacity": (
        "every table is sized for the flows: the per-CPU hashes hold `flow_capacity` entries; the "
        "sensor's flow_capacity is `flow_capacity` flows per CPU (2x as many slots, the sensor's sizing); "
        "mf_tab has the sensor's slot count"
    ),
}


class Subject:
    """One loaded program under test."""

    def __init__(self, name: str, fd: int, about: str, drain=None, close=None):
        self.name, self.fd, self.about = name, fd, about
        self._drain, self._close = drain, close
        self.results: dict[str, list[float]] = {}
        self.drained: list[int] = []
        self.untracked: list[int] = []

    def reset(self) -> None:
        if self._drain:
            self.drained.append(self._drain(self))

    def close(self) -> None:
        if self._close:
            self._close()


def _drain_table(table, value_size: int, ncpus: int, capacity: int):
    """Empty a bcc per-CPU hash with batched lookup-and-delete; returns a
    drain function that reports how many entries it removed."""
    keys = np.zeros((capacity, abi.KEY.itemsize), np.uint8)
    vals = np.zeros((capacity, ncpus * value_size), np.uint8)

    def drain(_subject) -> int:
        return libbpf.lookup_and_delete_batch(table.map_fd, keys, vals, batch=8192)

    return drain


def load_minimal(capacity: int, ncpus: int, knobs: tuple[str, ...] = ()):
    bcc = import_bcc()
    slots = flow_slots(capacity)
    cflags = [f"-I{BPF_DIR}", f"-DMF_CAPACITY={capacity}", f"-DMF_SLOTS={slots}", f"-DMF_NCPUS={ncpus}"]
    b = bcc.BPF(src_file=str(BENCH_BPF_DIR / "minimal_flow.c").encode(), cflags=cflags + [f"-D{k}" for k in knobs])
    fns = {n: b.load_func(n.encode(), bcc.BPF.XDP) for n in ("mf_noop", "mf_parse", "mf_flow", "mf_tab")}
    vsize = 40 if "MF_KTIME" in knobs else 16
    return b, fns, _drain_table(b[b"mf_flows"], vsize, ncpus, capacity)


def table_drain(b):
    """mf_tab's tables empty by a new generation, as the sensor's do."""
    gen = b[b"mf_gen"]
    n = [1]

    def drain(_subject) -> int:
        n[0] += 1
        gen[ct.c_int(0)] = ct.c_uint32(n[0])
        return 0

    return drain


def load_sensor(name: str, tasks, capacity: int, ncpus: int, about: str, clock: bool = True, **kw) -> Subject:
    """The sensor program; its millisecond clock runs (as the agent runs it
    at high packet rates) unless clock=False."""
    prog = Program(layout(tuple(tasks), ncpus), capacity, 64, ncpus, **kw)
    if clock:
        prog.start_clock()

    def drain(subject: Subject) -> int:
        # Two flips: both map sets end up idle once, drained and cleared, and
        # the programs write the set they wrote before.
        n = 0
        untracked = 0
        for _ in range(2):
            idle = prog.flip()
            tot = prog.take_totals(idle)
            untracked += int(tot[abi.C["flow_untracked"]][0])
            n += len(prog.take_flows(idle))
            prog.take_candidates(idle)
            prog.cm[idle].fill(0)
            prog.ss[idle].fill(0)
        subject.untracked.append(untracked)
        return n

    return Subject(name, prog.prog_fd, about, drain, prog.close)


def run_hot(s: Subject, frame: bytes, repeat: int, calls: int) -> float:
    libbpf.test_run(s.fd, frame, 1000)  # creates the flow entry, warms up
    return statistics.fmean(libbpf.test_run(s.fd, frame, repeat)[1] for _ in range(calls))


def run_pass(s: Subject, frames: list[bytes], order: np.ndarray, repeat: int) -> float:
    fd, tr = s.fd, libbpf.test_run
    total = 0
    for i in order:
        total += tr(fd, frames[i], repeat)[1]
    return total / len(order)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.kernel_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--hot-repeat", type=int, default=200_000)
    ap.add_argument("--hot-calls", type=int, default=3)
    ap.add_argument("--mix-repeat", type=int, default=4)
    ap.add_argument("--mix-repeat-sample", type=int, default=100, help="frames per round run with --mix-repeat")
    ap.add_argument("--capacity", type=int, default=131072, help="flow table entries of every program")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed)")
    ap.add_argument("--no-breakdown", action="store_true", help="only noop, minimal_flow and sensor")
    args = ap.parse_args(argv)
    if args.flows > args.capacity:
        ap.error("--flows must not exceed --capacity (the tables would fill)")

    cpu = pin_cpu(args.cpu)
    ncpus = possible_cpus()
    log(f"kernel_cost: pinned to CPU {cpu}; building {args.flows} frames")
    hot = hot_frame()
    frames = mix_frames(args.flows)

    tasks = load_config(None).tasks
    cm_tasks = [t for t in tasks if t.kind == COUNTMIN]
    ss_tasks = [t for t in tasks if t.kind == SUPERSPREAD]
    subjects: list[Subject] = []
    bccs = []
    try:
        log("kernel_cost: compiling and loading programs")
        b, fns, drain = load_minimal(args.capacity, ncpus)
        bccs.append(b)
        subjects.append(Subject("noop", fns["mf_noop"].fd, "return XDP_PASS"))
        subjects.append(
            Subject("minimal_flow", fns["mf_flow"].fd, "parse + per-CPU hash lookup/insert, packets+bytes", drain)
        )
        names = ", ".join(t.name for t in tasks)
        subjects.append(
            load_sensor(
                "sensor",
                tasks,
                args.capacity,
                ncpus,
                f"netspectra/bpf/sensor.c, default config (hybrid, ms clock): {names}",
            )
        )
        if not args.no_breakdown:
            subjects.append(
                Subject("parse_only", fns["mf_parse"].fd, "ns_parse() of netspectra/bpf/parse.h and nothing else")
            )
            subjects.append(
                Subject(
                    "minimal_table",
                    fns["mf_tab"].fd,
                    "parse + the sensor's table design (per-CPU mmapable array, linear probing, generations), "
                    "packets+bytes",
                    table_drain(b),
                )
            )
            for name, knobs, about in (
                ("minimal_flow_ktime", ("MF_KTIME",), "minimal_flow + 40-byte value, bpf_ktime_get_ns() first/last"),
                (
                    "minimal_flow_coarse",
                    ("MF_KTIME", "MF_COARSE"),
                    "minimal_flow + 40-byte value, bpf_ktime_get_coarse_ns() first/last",
                ),
                (
                    "minimal_flow_ktime_totals",
                    ("MF_KTIME", "MF_TOTALS"),
                    "minimal_flow + 40-byte value, bpf_ktime_get_ns() first/last, a per-CPU totals counter",
                ),
            ):
                bk, fk, dk = load_minimal(args.capacity, ncpus, knobs)
                bccs.append(bk)
                subjects.append(Subject(name, fk["mf_flow"].fd, about, dk))
            cap = args.capacity
            for name, t, kw, about in (
                ("sensor_no_tasks", (), {}, "sensor.c with tasks=()"),
                ("sensor_precise", tasks, {"timestamps": "precise"}, "sensor, bpf_ktime_get_ns() per packet"),
                (
                    "sensor_ms_no_clock",
                    tasks,
                    {"clock": False},
                    "sensor, millisecond timestamps with the agent's clock stopped (below the rate that pays for "
                    "it): a coarse clock check, then bpf_ktime_get_ns()",
                ),
                ("sensor_coarse", tasks, {"timestamps": "coarse"}, "sensor, bpf_ktime_get_coarse_ns() per packet"),
                ("sensor_every_packet", tasks, {"every_packet": True}, f"sensor, every packet updates {names}"),
                (
                    "sensor_every_packet_cm",
                    cm_tasks,
                    {"every_packet": True},
                    "every packet updates the default Count-Min tasks",
                ),
                (
                    "sensor_every_packet_ss",
                    ss_tasks,
                    {"every_packet": True},
                    "every packet updates the default SuperSpread tasks",
                ),
            ):
                subjects.append(load_sensor(name, t, cap, ncpus, about, **kw))
            subjects.append(
                load_sensor(
                    "sensor_untracked",
                    tasks,
                    0,
                    ncpus,
                    "sensor with flow_capacity 0: every packet takes the light path (the cost once the table is full)",
                )
            )

        for s in subjects:
            act, _ = libbpf.test_run(s.fd, hot, 1)
            if act != XDP_PASS:
                raise RuntimeError(f"{s.name} returned XDP action {act}, expected XDP_PASS")
            s.reset()
            s.drained.clear()
            s.untracked.clear()

        rng = np.random.default_rng(7)
        n = len(frames)
        t0 = time.monotonic()
        for r in range(args.rounds):
            rot = r % len(subjects)
            ordered = subjects[rot:] + subjects[:rot]
            first, second = rng.permutation(n), rng.permutation(n)
            sample = rng.choice(n, min(n, args.mix_repeat_sample), replace=False)
            for s in ordered:
                s.results.setdefault("hot", []).append(run_hot(s, hot, args.hot_repeat, args.hot_calls))
            for scen, order in (("mix_new_flow", first), ("mix", second)):
                for s in ordered:
                    s.results.setdefault(scen, []).append(run_pass(s, frames, order, 1))
            if args.mix_repeat > 1 and len(sample):
                for s in ordered:
                    if s.name in MAIN:
                        s.results.setdefault(f"mix_repeat{args.mix_repeat}", []).append(
                            run_pass(s, frames, sample, args.mix_repeat)
                        )
            for s in subjects:
                s.reset()
            log(
                f"kernel_cost: round {r + 1}/{args.rounds} done ({time.monotonic() - t0:.0f} s): "
                + ", ".join(
                    f"{s.name} hot {s.results['hot'][-1]:.0f} mix {s.results['mix'][-1]:.0f}" for s in subjects[:3]
                )
            )

        result = report(args, cpu, ncpus, n, subjects)
    finally:
        for s in subjects:
            try:
                s.close()
            except Exception as e:  # keep closing the others
                log(f"kernel_cost: closing {s.name}: {e}")
        for b in bccs:
            b.cleanup()
    emit(result)


def _per_round(a: list[float], b: list[float], op) -> dict:
    return summary([op(x, y) for x, y in zip(a, b)], 3)


def report(args, cpu: int, ncpus: int, nflows: int, subjects: list[Subject]) -> dict:
    by = {s.name: s for s in subjects}
    noop = by["noop"].results
    programs = {}
    for s in subjects:
        row = {"about": s.about}
        for scen, vals in s.results.items():
            row[f"{scen}_ns"] = summary(vals)
            if s.name != "noop" and scen in noop:
                row[f"{scen}_minus_noop_ns"] = _per_round(vals, noop[scen], lambda x, y: x - y)
        if s._drain:
            row["flows_drained_per_round"] = s.drained
        if s.untracked:
            row["flow_untracked_packets_per_round"] = s.untracked
        programs[s.name] = row

    sen, mini = by["sensor"].results, by["minimal_flow"].results
    hot_delta = _per_round(sen["hot"], noop["hot"], lambda x, y: x - y)
    hot_ratio = _per_round(sen["hot"], mini["hot"], lambda x, y: x / y)
    ratio = _per_round(sen["mix"], mini["mix"], lambda x, y: x / y)
    net = [(s - z) / (m - z) for s, m, z in zip(sen["mix"], mini["mix"], noop["mix"])]

    out = {
        "benchmark": "kernel_cost",
        "machine": machine(),
        "config": {
            "pinned_cpu": cpu,
            "possible_cpus": ncpus,
            "rounds": args.rounds,
            "flows": nflows,
            "hot_repeat": args.hot_repeat,
            "hot_calls_per_round": args.hot_calls,
            "mix_repeat": args.mix_repeat,
            "mix_repeat_sample": args.mix_repeat_sample,
            "flow_capacity": args.capacity,
        },
        "method": METHOD,
        "programs": programs,
        "sensor_minus_noop_hot_ns": hot_delta["median"],
        "sensor_minus_noop_hot_ns_rounds": hot_delta,
        "sensor_over_minimal_hot_ratio": hot_ratio["median"],
        "sensor_over_minimal_hot_ratio_rounds": hot_ratio,
        "sensor_over_minimal_mix_ratio": ratio["median"],
        "sensor_over_minimal_mix_ratio_rounds": ratio,
        "sensor_over_minimal_mix_ratio_net": summary(net, 3),
        "goals": {
            "sensor_over_minimal_hot_ratio": {"max": GOAL_HOT_RATIO, "within": hot_ratio["median"] <= GOAL_HOT_RATIO},
            "sensor_over_minimal_mix_ratio": {"max": GOAL_MIX_RATIO, "within": ratio["median"] <= GOAL_MIX_RATIO},
        },
    }
    if "sensor_no_tasks" in by:
        out["breakdown"] = breakdown(by)
    return out


def breakdown(by: dict[str, Subject]) -> dict:
    """Median per-round differences between variants: what each piece costs."""

    def diff(a: str, b: str, scen: str) -> float:
        return round(statistics.median(x - y for x, y in zip(by[a].results[scen], by[b].results[scen])), 2)

    steps = [
        ("parse", "parse_only", "noop", "ns_parse() (Ethernet, VLAN, IPv4/IPv6, L4)"),
        ("flow_hash_minimal", "minimal_flow", "parse_only", "one per-CPU hash lookup (+ insert when new), 16 B value"),
        (
            "own_table_vs_hash",
            "minimal_table",
            "minimal_flow",
            "the sensor's table design (mmapable array, probing, generations) instead of a per-CPU hash",
        ),
        ("ktime_value", "minimal_flow_ktime", "minimal_flow", "bpf_ktime_get_ns() + 40 B value with timestamps"),
        ("coarse_value", "minimal_flow_coarse", "minimal_flow", "bpf_ktime_get_coarse_ns() + 40 B value"),
        ("totals_counter", "minimal_flow_ktime_totals", "minimal_flow_ktime", "one per-CPU totals counter"),
        (
            "timestamps_precise",
            "sensor_precise",
            "sensor",
            "bpf_ktime_get_ns() per packet instead of the agent's millisecond clock",
        ),
        ("timestamps_coarse", "sensor_coarse", "sensor", "bpf_ktime_get_coarse_ns() instead of the millisecond clock"),
        (
            "timestamps_ms_clock_stopped",
            "sensor_ms_no_clock",
            "sensor",
            "millisecond timestamps while the agent's clock is stopped (low packet rates): the kernel clock per packet",
        ),
        ("tasks_while_tracked", "sensor", "sensor_no_tasks", "the default tasks while the table holds (hybrid)"),
        ("every_packet_all_tasks", "sensor_every_packet", "sensor", "every packet updates the default tasks"),
        ("every_packet_countmin", "sensor_every_packet_cm", "sensor", "every packet updates the Count-Min tasks"),
        ("every_packet_superspread", "sensor_every_packet_ss", "sensor", "every packet updates the SuperSpread tasks"),
        (
            "untracked_packet",
            "sensor_untracked",
            "sensor",
            "a packet the table cannot hold (light path) vs a tracked one",
        ),
        ("sensor_vs_minimal_flow", "sensor", "minimal_flow", "everything the sensor adds to the minimal flow counter"),
    ]
    out = {}
    for name, a, b, about in steps:
        out[name] = {"about": about, "variant": a, "minus": b}
        for scen in ("hot", "mix", "mix_new_flow"):
            out[name][f"{scen}_ns"] = diff(a, b, scen)
    return out


if __name__ == "__main__":
    main()
