"""History store: insert throughput, query latency over time ranges, bytes stored.

    python -m bench.store [--backends sqlite,chdb] [--dir DIR] [--quick]
                          [--flows 100000] [--epochs 24] [--history-flows 10000]
                          [--hours 24] [--budget 600] [--rounds 5]

Every backend is measured the same way in one run, each in stores of its own
(SQLite: a file per store; chdb: one in-process engine directory, a database
per store, since chdb runs one engine per process).  A backend that cannot be
opened (or fails) is reported as "unavailable: <reason>".

  insert   --epochs epochs of --flows flows each (5 s apart, from an hour
           boundary) written into a fresh store with Store.write(): all exact,
           then again with every 4th epoch estimated (10% of the flows
           untracked, so the epoch and every rollup it joins carry the 20 MiB
           sketch).  Wall and CPU time of write() alone (epochs are built
           beforehand).  Goal, on one core: 10x a sensor at 100,000 flows per
           5 s epoch = 200,000 flows/s.
  queries  --hours of history at --history-flows flows per epoch (all exact by
           default), then TopKeys(task "src") and ListFlows (first page of 100)
           over the last hour and the last 24 hours, through Queries and
           StoreSource with a clock at the history's end, so the resolution is
           the one a live query gets (1 h -> 60 1m rollups, 24 h -> 24 1h
           rollups).  The full history (17,280 epochs) is written only when
           the write rate measured on its first epochs says it fits --budget;
           otherwise the hours before the last --dense-hours get one epoch
           every `stride` (up to one a minute): what a query reads -- the 1h
           rollups, and the last hour's 1m rollups -- keeps the size of the
           real thing, since the same flows recur (see "history" in the output).
  bytes    Store.usage() of those stores: per raw epoch, per 1m and 1h rollup,
           at --flows and at --history-flows.

Prints one JSON object on stdout (progress on stderr); never passes or fails on time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from netspectra import abi, analysis
from netspectra.config import default_tasks
from netspectra.sketch import SketchSet
from netspectra.snapshot import EpochSnapshot, Origin, derive, layout_fingerprint
from netspectra.tasks import layout

from ._common import emit, log, machine, summary

GOAL_FLOWS_PER_S = 200_000  # 10 x 100,000 flows per 5 s epoch
T0 = 1_796_083_200.0  # 2026-12-01 00:00:00 UTC: aligned to days, hours and minutes
EPOCH_S = 5.0
HOUR_EPOCHS = int(3600 / EPOCH_S)
RETENTION = {"raw": 2 * 86400.0, "1m": 30 * 86400.0, "1h": 365 * 86400.0}
POPULATION = 1.1  # distinct 5-tuples per flow of an epoch
UNTRACKED = 0.1  # share of flows an estimated epoch's table could not hold
STRIDES = (1, 2, 3, 4, 6, 12)  # epochs of the sparse hours: every n-th (12 = one a minute)
PROBE_EPOCHS = 36  # written densely first, to measure the history's write rate

METHOD = {
    "traffic": (
        "a population of 1.1 x flows distinct 5-tuples (1 in 8 sources IPv6, sources Zipf-like over flows/25, "
        "destinations over flows/2, TCP 2/3) with fixed Zipf(1.1) packet rates; each epoch draws `flows` of them "
        "(seeded by epoch number, so every backend gets the same epochs), packets 1 + Poisson(rate), bytes = "
        "packets x the flow's packet size; derive() with the default tasks, layout(default_tasks(), ncpus=2). "
        "Estimated epochs: the sketch of all drawn flows (SketchSet.add_flows), 10% of the flows dropped from "
        "the flows as untracked (their packets in the flow_untracked counter)"
    ),
    "insert": (
        "time.perf_counter() and time.process_time() (every thread of the process: chdb's engine threads too) "
        "around each Store.write(); flows_per_s = flows written / wall s, flows_per_cpu_s = flows / CPU s, "
        "flows_per_s_one_core = flows / max(wall, CPU) s: what one core sustains; meets_goal compares that "
        "to goal_flows_per_s. Background work a backend does after write() returns (ClickHouse merges) is "
        "only counted if it happens during a later write()"
    ),
    "queries": (
        "Queries(History(1, layout) holding only the newest epoch, info, StoreSource(store, series, retention, "
        "clock), clock) with clock = the history's end, requests with range.since = end - span and no until. "
        "cold: open_store() then the first request (open time reported apart); uncached: the store already "
        "open, a new StoreSource (its cache empty), as after every new epoch (the store's version changes); "
        "warm: the same request again on the same Queries (cached window and ranking). Medians over rounds. "
        "The OS page cache is not dropped (the files are fresh). chdb: opening a store after the last one "
        "closed starts the in-process engine again (open_ms, about 0.5 s on a large history, against a few "
        "tens of ms while another store is open), so its cold figures follow an engine start"
    ),
    "bytes": (
        "Store.usage() per resolution divided by its records: SQLite the record blobs plus 64 bytes a row, "
        "ClickHouse the compressed bytes of the tables' active parts (flows and epochs): right after writing, "
        "a rollup table still holds a part per insert until background merges aggregate them, so every store "
        "is measured again at the end of the backend's run (usage_minutes_later; the bytes figures use those). "
        "Merges only run while the engine is up: the insert stores, closed right after writing, may stay "
        "unmerged, so their ClickHouse rollup figures are upper bounds"
    ),
}


# --- synthetic traffic -----------------------------------------------------------------------


class Traffic:
    """Epochs of `flows` flows drawn from one population of POPULATION x flows
    5-tuples with fixed rates: the same flows recur with varied counts, so a
    rollup holds at most the population, as rollups of a real link level off."""

    def __init__(self, lay, flows: int, seed: int = 1):
        self.lay, self.flows, self.seed = lay, flows, seed
        self.origin = Origin(sensor="bench", interface="eth0", layout=layout_fingerprint(lay))
        rng = np.random.default_rng(seed)
        self.keys = _population(int(flows * POPULATION), rng)
        n = len(self.keys)
        rate = 1.0 / rng.permutation(np.arange(1, n + 1)) ** 1.1  # a few heavy flows, a long tail
        self.rate = rate * 8 * n / rate.sum()  # about 9 packets per flow on average
        self.size = rng.choice([64, 64, 64, 128, 256, 576, 1024, 1514], n).astype(np.uint64)

    def epoch(self, i: int, estimated: bool = False) -> EpochSnapshot:
        """Epoch number i (starting at T0 + i x EPOCH_S), the same for a given seed."""
        r = np.random.default_rng((self.seed, i))
        t = T0 + i * EPOCH_S
        act = np.sort(r.choice(len(self.keys), self.flows, replace=False))
        fl = np.zeros(self.flows, analysis.FLOW_RECORD)
        fl["key"] = self.keys[act]
        fl["packets"] = 1 + r.poisson(self.rate[act])
        fl["bytes"] = fl["packets"] * self.size[act]
        fl["first_ns"] = int(t * 1e9) + r.integers(0, 4_000_000_000, self.flows)
        fl["last_ns"] = fl["first_ns"] + r.integers(0, 1_000_000_000, self.flows)
        fl["tcp_flags"] = np.where(fl["key"]["proto"] == 6, 0x18, 0)
        totals = np.zeros((abi.NCOUNTERS, 2), np.uint64)
        totals[abi.C["all"]] = (fl["packets"].sum(), fl["bytes"].sum())
        if estimated:  # the kernel's sketch saw every packet; the flow table missed some flows
            sk = SketchSet(self.lay)
            sk.add_flows(fl)
            lost = r.random(self.flows) < UNTRACKED
            totals[abi.C["flow_untracked"]] = (fl["packets"][lost].sum(), fl["bytes"][lost].sum())
            fl = fl[~lost]
        else:
            sk = SketchSet.of_flows(self.lay, fl)
        snap = derive(i, t, t + EPOCH_S, totals, fl, sk)
        snap.origin = self.origin
        return snap


def _population(n: int, rng) -> np.ndarray:
    """n distinct abi.KEY 5-tuples (IPv4 as v4-mapped addresses)."""
    k = np.zeros(n, abi.KEY)
    nsrc = max(1, n // 25)
    w = 1.0 / np.arange(1, nsrc + 1) ** 0.8
    src = rng.choice(nsrc, n, p=w / w.sum())
    dst = rng.integers(0, max(1, n // 2), n)
    v6 = src % 8 == 7
    for field, a, net in (("src", src, 10), ("dst", dst, 172)):
        b = k[field]
        b[~v6, 10:12], b[~v6, 12] = 0xFF, net
        b[v6, 0], b[v6, 1] = 0x20, 0x01
        b[:, 13], b[:, 14], b[:, 15] = (a >> 16) & 255, (a >> 8) & 255, a & 255
    k["sport"] = rng.integers(1024, 65536, n)
    k["dport"] = rng.choice([80, 443, 53, 8080, 22, 3306], n)
    k["proto"] = np.where(rng.random(n) < 2 / 3, 6, 17)
    _, first = np.unique(k.view(np.dtype((np.void, abi.KEY.itemsize))), return_index=True)
    return k[np.sort(first)]


# --- stores --------------------------------------------------------------------------------


class Backend:
    """Opens stores of one backend under the scratch directory, by name."""

    def __init__(self, name: str, root: Path):
        self.name, self.root = name, root

    def url(self, store: str) -> str:
        if self.name == "sqlite":
            return f"sqlite://{self.root / 'sqlite' / store}.db"
        return f"chdb://{self.root / 'chdb'}?database={store}"  # one engine per process: one directory

    def open(self, store: str, now: float):
        from netspectra.store import open_store

        return open_store(self.url(store), RETENTION, clock=lambda: now)


def brief(values: list[float], digits: int) -> dict:
    """Median, 90th percentile and max of many values (summary() without the rounds)."""
    p50, p90 = np.percentile(values, [50, 90])
    return {"median": round(p50, digits), "p90": round(p90, digits), "max": round(max(values), digits)}


def usage_of(be: Backend, name: str, now: float) -> dict:
    st = be.open(name, now)
    try:
        return sizes(st.usage())
    finally:
        st.close()


def sizes(usage: dict) -> dict:
    return {
        res: {"records": n, "bytes": b, "bytes_per_record": round(b / n) if n else None}
        for res, (n, b) in usage.items()
    }


# --- insert --------------------------------------------------------------------------------


def bench_insert(be: Backend, traffic: Traffic, epochs: int, estimated_every: int) -> dict:
    """Write `epochs` epochs into a fresh store, timing each write()."""
    snaps = [traffic.epoch(i, _estimated(i, estimated_every)) for i in range(epochs)]
    flows = sum(len(s.flows) for s in snaps)
    name = f"insert_{traffic.flows}_{estimated_every or 'exact'}"
    st = be.open(name, T0 + epochs * EPOCH_S)
    try:
        wall, cpu, results = [], [], []
        for s in snaps:
            w, c = time.perf_counter(), time.process_time()
            results.append(st.write(s))
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
        usage = st.usage()
    finally:
        st.close()
    if results.count("written") != epochs:
        raise RuntimeError(f"insert: write() returned {sorted(set(results))}, expected 'written' for every epoch")
    wall_s, cpu_s = sum(wall), sum(cpu)
    one_core = flows / max(wall_s, cpu_s)
    return {
        "epochs": epochs,
        "estimated_epochs": sum(not s.exact for s in snaps),
        "flows": flows,
        "flows_per_s": round(flows / wall_s),
        "flows_per_cpu_s": round(flows / cpu_s),
        "flows_per_s_one_core": round(one_core),
        "meets_goal": one_core >= GOAL_FLOWS_PER_S,
        "s_per_epoch": summary(wall, 3),
        "cpu_s_per_epoch": summary(cpu, 3),
        "store": name,
        "usage": sizes(usage),
    }


def _estimated(i: int, every: int) -> bool:
    return bool(every) and i % every == every - 1


# --- history -------------------------------------------------------------------------------


def write_history(st, traffic: Traffic, hours: int, dense_hours: int, budget_s: float, estimated_every: int):
    """Write `hours` of epochs in time order: densely if the rate measured on
    the first PROBE_EPOCHS says all of it fits budget_s, else every stride-th
    epoch before the last dense_hours.  Returns (what was written, newest epoch)."""
    total = hours * HOUR_EPOCHS
    dense_from = (hours - dense_hours) * HOUR_EPOCHS
    start = time.perf_counter()
    write_s, written, last = [], 0, None

    def put(i: int) -> None:
        nonlocal written, last
        last = traffic.epoch(i, _estimated(i, estimated_every))
        w = time.perf_counter()
        if st.write(last) != "written":
            raise RuntimeError(f"history: epoch {i} was not written")
        write_s.append(time.perf_counter() - w)
        written += 1

    probe = min(PROBE_EPOCHS, total)
    for i in range(probe):
        put(i)
    per_epoch = (time.perf_counter() - start) / probe  # building the epoch included: that is the wait
    rest = range(probe, total)

    def count(stride: int) -> int:  # epochs still to write with this stride
        return sum(1 for i in rest if i >= dense_from or i % stride == 0)

    stride = next((s for s in STRIDES if count(s) * per_epoch <= budget_s), STRIDES[-1])
    todo = count(stride)
    log(f"  history: {per_epoch * 1000:.1f} ms/epoch -> all {total} epochs ~{total * per_epoch:.0f} s; "
        f"writing every {stride} epoch(s) before the last {dense_hours} h: {todo + probe} epochs "
        f"~{todo * per_epoch:.0f} s")  # fmt: skip
    shown = time.perf_counter()
    for i in rest:
        if i >= dense_from or i % stride == 0:
            put(i)
            if time.perf_counter() - shown > 30:
                shown = time.perf_counter()
                log(f"  history: {written}/{todo + probe} epochs, {shown - start:.0f} s")
    sparse = f"before the newest {dense_hours} hour(s) (every epoch of those)" if dense_hours else "throughout"
    info = {
        "hours": hours,
        "flows_per_epoch": traffic.flows,
        "estimated_every": estimated_every,
        "epochs_at_full_density": total,
        "epochs_written": written,
        "dense_hours": dense_hours if stride > 1 else hours,
        "stride_before_dense": stride,
        "note": (
            "every epoch of the range written"
            if stride == 1
            else f"the first {probe} epochs, then {sparse} one epoch in {stride} ({60 / (stride * EPOCH_S):g} "
            f"a minute): each 1h rollup still merges "
            f"{HOUR_EPOCHS // stride}+ epochs drawn from the same {len(traffic.keys)} flows, so it holds "
            "about as many flows as a full hour's"
        ),
        "ms_per_epoch_measured_first": round(per_epoch * 1000, 2),
        "full_density_estimate_s": round(total * per_epoch),
        "took_s": round(time.perf_counter() - start, 1),
        "write_s_per_epoch": brief(write_s, 4),
        "write_flows_per_s": round(traffic.flows * written / sum(write_s)),
    }
    return info, last


# --- queries -------------------------------------------------------------------------------


def query_runner(st, last: EpochSnapshot, now: float):
    """Queries over `st` as the API builds them: memory holds only the newest
    epoch, so an older range goes to the store at the resolution `now` picks."""
    from netspectra.api.history import History
    from netspectra.api.queries import Queries
    from netspectra.config import Config
    from netspectra.source import StoreSource
    from netspectra.store import Series

    h = History(1, last.sketch.layout)
    h.add(last)
    src = StoreSource(st, Series.of(last), RETENTION, clock=lambda: now)
    return Queries(h, {"config": Config(), "interface": "eth0"}, src, clock=lambda: now)


def requests(span: float, now: float) -> dict:
    from netspectra.api.v1 import sensor_pb2 as pb

    rng = pb.TimeRange()
    rng.since.FromNanoseconds(int((now - span) * 1e9))
    return {
        "TopKeys": lambda q: q.TopKeys(pb.TopKeysRequest(task="src", range=rng)),
        "ListFlows": lambda q: q.ListFlows(pb.ListFlowsRequest(range=rng, page_size=100)),
    }


def timed(call, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = call(*args)
    return (time.perf_counter() - t) * 1000, out


def bench_queries(be: Backend, name: str, last: EpochSnapshot, now: float, spans: dict, rounds: int) -> dict:
    out = {}
    for label, span in spans.items():
        for rpc, call in requests(span, now).items():
            log(f"  {rpc} over {label}")
            cold, opens = [], []
            for _ in range(rounds):  # a store just opened
                ms, st = timed(be.open, name, now)
                opens.append(ms)
                try:
                    c, resp = timed(call, query_runner(st, last, now))
                finally:
                    st.close()
                cold.append(c)
            st = be.open(name, now)
            try:
                uncached = [timed(call, query_runner(st, last, now))[0] for _ in range(rounds)]
                q = query_runner(st, last, now)
                call(q)
                warm = [timed(call, q)[0] for _ in range(rounds)]
            finally:
                st.close()
            e = resp.epochs
            answer = {"keys": len(resp.keys)} if rpc == "TopKeys" else {"total": resp.total, "page": len(resp.flows)}
            out.setdefault(label, {})[rpc] = {
                "resolution": e.source,
                "records_read": e.records,
                "answer": answer,
                "cold_ms": summary(cold, 1),
                "open_ms": summary(opens, 1),
                "uncached_ms": summary(uncached, 1),
                "warm_ms": summary(warm, 2),
            }
    return out


# --- one backend ---------------------------------------------------------------------------


def run_backend(be: Backend, args, lay) -> dict:
    out = {"url": be.url("NAME")}
    t = time.perf_counter()
    traffic = Traffic(lay, args.flows)
    out["insert"] = {}
    for label, every in (("exact", 0), (f"every_{args.estimated_every}th_estimated", args.estimated_every)):
        log(f"{be.name}: insert, {args.epochs} epochs of {args.flows} flows, {label}")
        out["insert"][label] = r = bench_insert(be, traffic, args.epochs, every)
        log(f"  {r['flows_per_s_one_core']} flows/s on one core, {r['s_per_epoch']['median']} s/epoch")
    out["insert_took_s"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    log(f"{be.name}: history, {args.hours} h of {args.history_flows}-flow epochs")
    hist = Traffic(lay, args.history_flows, seed=2)
    now = T0 + args.hours * 3600
    name = f"history_{args.history_flows}"
    st = be.open(name, now)
    try:
        out["history"], last = write_history(
            st, hist, args.hours, args.dense_hours, args.budget, args.history_estimated_every
        )
        hist_usage = st.usage()
    finally:
        st.close()
    spans = {"1h": 3600.0} if args.hours < 24 else {"1h": 3600.0, "24h": 86400.0}
    out["queries"] = bench_queries(be, name, last, now, spans, args.rounds)
    out["history_and_queries_took_s"] = round(time.perf_counter() - t, 1)
    # every store again, minutes later: ClickHouse aggregates a rollup's parts in background merges
    later = {"history": usage_of(be, name, now)}
    for r in out["insert"].values():
        r["usage_minutes_later"] = later[r["store"]] = usage_of(be, r["store"], T0 + args.epochs * EPOCH_S)

    exact, mixed = (later[r["store"]] for r in out["insert"].values())
    n, k = args.epochs, next(r["estimated_epochs"] for r in out["insert"].values() if r["estimated_epochs"])
    out["bytes"] = {
        f"raw_epoch_{args.flows}_flows": exact["raw"]["bytes_per_record"],
        # the mixed run less its exact epochs at the exact run's mean (both runs draw epoch i alike)
        f"raw_epoch_{args.flows}_flows_estimated": round(
            (mixed["raw"]["bytes"] - exact["raw"]["bytes_per_record"] * (n - k)) / k
        ),
        f"1m_rollup_{args.flows}_flows": exact["1m"]["bytes_per_record"],
        f"1h_rollup_{args.flows}_flows": exact["1h"]["bytes_per_record"],
        f"1m_rollup_{args.flows}_flows_with_estimated": mixed["1m"]["bytes_per_record"],
        f"raw_epoch_{args.history_flows}_flows": later["history"]["raw"]["bytes_per_record"],
        f"1m_rollup_{args.history_flows}_flows": later["history"]["1m"]["bytes_per_record"],
        f"1h_rollup_{args.history_flows}_flows": later["history"]["1h"]["bytes_per_record"],
        "history_usage_after_writing": sizes(hist_usage),
        "history_usage": later["history"],
        "note": (
            f"{args.flows}-flow rollups from the insert runs ({args.epochs} epochs: the 1h rollup holds "
            f"{args.epochs * EPOCH_S / 60:g} minute(s), but already about all {int(args.flows * POPULATION)} "
            f"flows of the population); {args.history_flows}-flow figures from the history store (its sparse "
            "hours' 1m rollups hold fewer epochs, see history.note)"
        ),
    }
    return out


# --- main ----------------------------------------------------------------------------------


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="sqlite,chdb", help="comma-separated: sqlite, chdb")
    ap.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one, removed at the end)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run in under a minute")
    ap.add_argument("--flows", type=int, help="flows per epoch of the insert runs (default 100000)")
    ap.add_argument("--epochs", type=int, help="epochs of each insert run (default 24: 2 minutes)")
    ap.add_argument("--estimated-every", type=int, default=4, help="the second insert run: every n-th estimated")
    ap.add_argument("--history-flows", type=int, help="flows per epoch of the query history (default 10000)")
    ap.add_argument("--history-estimated-every", type=int, default=0, help="0: every history epoch exact")
    ap.add_argument("--hours", type=int, help="hours of query history (default 24; 1h and 24h queries)")
    ap.add_argument("--dense-hours", type=int, help="newest hours always written in full (default 1)")
    ap.add_argument("--budget", type=float, help="seconds the history may take per backend (default 600)")
    ap.add_argument("--rounds", type=int, help="rounds of each query measurement (default 5)")
    args = ap.parse_args(argv)
    defaults = dict(flows=100_000, epochs=24, history_flows=10_000, hours=24, dense_hours=1, budget=600, rounds=5)
    if args.quick:  # every phase once, small: the 1h query over 2 h of 1000-flow epochs
        defaults.update(flows=10_000, epochs=12, history_flows=1000, hours=2, dense_hours=0, budget=5, rounds=2)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.hours < 2 or not 0 <= args.dense_hours < args.hours:
        ap.error("--hours must be at least 2 and --dense-hours below it")
    if args.estimated_every < 1:
        ap.error("--estimated-every must be at least 1")

    lay = layout(default_tasks(), ncpus=2)
    root = args.dir or Path(tempfile.mkdtemp(prefix="netspectra-storebench-"))
    root.mkdir(parents=True, exist_ok=True)
    results, took = {}, {}
    load = {"start": [round(x, 2) for x in os.getloadavg()]}  # other work on the machine skews wall times
    try:
        for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
            t = time.perf_counter()
            try:
                if name not in ("sqlite", "chdb"):
                    raise ValueError("unknown backend (sqlite, chdb)")
                results[name] = run_backend(Backend(name, root.absolute()), args, lay)
            except Exception as e:  # a backend not written yet, or broken: report it, measure the others
                log(f"{name}: unavailable\n{traceback.format_exc()}")
                results[name] = f"unavailable: {type(e).__name__}: {e}".splitlines()[0]
            took[name] = round(time.perf_counter() - t, 1)
    finally:
        load["end"] = [round(x, 2) for x in os.getloadavg()]
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)

    emit(
        {
            "benchmark": "store",
            "machine": machine() | {"load_average_1_5_15m": load},
            "config": {
                "quick": args.quick,
                "tasks": [t.spec.name for t in lay.tasks],
                "insert_flows_per_epoch": args.flows,
                "insert_epochs": args.epochs,
                "estimated_every": args.estimated_every,
                "history_flows_per_epoch": args.history_flows,
                "history_hours": args.hours,
                "history_budget_s": args.budget,
                "rounds": args.rounds,
                "epoch_s": EPOCH_S,
                "retention_s": RETENTION,
                "scratch": str(root) + ("" if args.dir else " (removed)"),
            },
            "method": METHOD,
            "goal_flows_per_s": GOAL_FLOWS_PER_S,
            "meets_goal": {
                name: {k: v["meets_goal"] for k, v in r["insert"].items()}
                for name, r in results.items()
                if isinstance(r, dict)
            },
            "took_s": took,
            "backends": results,
        }
    )


if __name__ == "__main__":
    main()
