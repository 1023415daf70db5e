"""Sketch accuracy against exact truth on generated traffic (no kernel, no root).

One epoch of seeded traffic (a Zipf background of many flows, plus planted
heavy sources and flows, scanners and fan-in victims, and near misses of each
just under the thresholds) goes through SketchSet.update with the default
tasks; the answers the sensor would give are scored against exact counts
computed with np.unique on the same keys:

  heavy hitters   Count-Min tasks src and flow at 1e-4 of the packets:
                  recall, precision, overestimate vs e / width * N
  spreads         SuperSpread tasks spread_dst and fanin_src, keys with a true
                  distinct count >= 100: mean relative error (corrected and
                  plain estimator), by bucket of the true spread
  detection       analysis.spreaders() at the tasks' spread_threshold:
                  precision and recall over every key of the epoch
  hybrid          the sensor's own answers (snapshot.derive) with a flow table
                  that holds every flow (exact: recall = precision = 1, error 0)
                  and one that holds 1/10 of them (the rest untracked: sketch
                  estimates, candidates from the flows and from the untracked
                  packets' keys, as the kernel reports them)

When the defaults miss a goal, a grid of larger variants of the missing kind
(SuperSpread pool width/registers, or Count-Min depth/width) is scored the
same way and the smallest (by kernel memory per CPU and map set) that meets
the goals is reported.  Goals are reported with "within"; nothing fails.

    python -m bench.accuracy [--packets N] [--seed S]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import time

import numpy as np

from netspectra import abi
from netspectra.analysis import FLOW_RECORD, mask_keys, spreaders, unique_keys
from netspectra.config import load_config
from netspectra.sketch import SketchSet
from netspectra.snapshot import derive
from netspectra.tasks import COUNTMIN, SUPERSPREAD, layout

from ._common import emit, log, machine

HH_FRACTION = 1e-4
GOAL_HH_RECALL = 1.0
GOAL_HH_PRECISION = 0.98
GOAL_SPREAD_MRE = 0.05
GOAL_DETECT = 0.95
SPREAD_MIN = 100
SPREAD_BUCKETS = ((100, 300), (300, 1000), (1000, None))
# SuperSpread is a virtual HyperLogLog: width = pool registers M, registers = s per key.
SS_GRID = {"width": tuple(1 << i for i in range(18, 25)), "registers": (128, 256, 512, 1024, 2048)}
SEARCH_MAX_BYTES = 128 << 20  # variants above this per CPU and set are not scored
BAND = 1.2  # informational detection scores ignoring keys within a factor BAND of the threshold
CM_GRID = {"depth": (4, 5, 6), "width": (65536, 131072, 262144)}
EXAMPLES = 12  # misses / false alarms listed per task

# IPv4 address plan (all keys are IPv4-mapped): every planted group has its own range.
BG_SRC, BG_DST = 0x0A000000, 0xAC100000  # 10/8 sources, 172.16/12 destinations
HH_SRC, HH_FLOW_SRC = 0xC6120000, 0xC6121000  # 198.18.0.x / 198.18.16.x
SCAN_SRC, SCAN_DST = 0xC6122000, 0x64400000  # 198.18.32.x scanners -> 100.64/10
VICTIM_DST, VICTIM_SRC = 0xC6123000, 0x0B000000  # 198.18.48.x victims <- 11/8
PSCAN_SRC, PSCAN_DST = 0xC6124000, 0xC6125000  # 198.18.64.x port scanners -> 198.18.80.x


# --------------------------------------------------------------------- traffic


def make_keys(src, dst, sport, dport, proto) -> np.ndarray:
    """abi.KEY array of IPv4-mapped 5-tuples from uint32 addresses (vectorised)."""
    n = len(src)
    k = np.zeros(n, abi.KEY)
    for name, addr in (("src", src), ("dst", dst)):
        field = k[name]
        field[:, 10:12] = 0xFF
        field[:, 12:16] = np.asarray(addr, dtype=">u4").view(np.uint8).reshape(n, 4)
    k["sport"] = sport
    k["dport"] = dport
    k["proto"] = proto
    return k


class Traffic:
    """Packets as parallel arrays of uint32 addresses, ports and protocol, plus
    a description of what was planted."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.parts: list[tuple] = []
        self.planted: dict[str, list] = {}

    def add(self, src, dst, sport, dport, proto) -> None:
        n = len(src)
        b = lambda v, dt: np.broadcast_to(np.asarray(v, dtype=dt), (n,))  # noqa: E731
        self.parts.append(
            (b(src, np.uint32), b(dst, np.uint32), b(sport, np.uint16), b(dport, np.uint16), b(proto, np.uint8))
        )

    @property
    def packets(self) -> int:
        return sum(len(p[0]) for p in self.parts)

    def distinct(self, base: int, k: int, space: int) -> np.ndarray:
        return (base + self.rng.choice(space, k, replace=False)).astype(np.uint32)

    def keys(self) -> np.ndarray:
        cols = [np.concatenate([p[i] for p in self.parts]) for i in range(5)]
        return make_keys(*cols)


def log_uniform_ints(rng, n: int, lo: int, hi: int) -> np.ndarray:
    return np.round(np.exp(rng.uniform(math.log(lo), math.log(hi), n))).astype(np.int64)


def generate(args) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(args.seed)
    tr = Traffic(rng)
    thr = math.ceil(HH_FRACTION * args.packets)
    TCP, UDP = 6, 17

    # Heavy sources: their packets spread over 16 flows each (so the flows stay
    # small unless the source is huge); heavy 5-tuples: one flow each.  Near
    # misses just below the threshold test precision.
    src_mult = (1.01, 1.03, 1.1, 1.5, 3.0, 10.0, 50.0, 200.0)
    src_near = (0.9, 0.95, 0.98, 0.995)
    flow_mult = (1.01, 1.02, 1.05, 1.2, 2.0, 5.0, 20.0, 100.0)
    flow_near = (0.9, 0.95, 0.98, 0.995)
    for i, m in enumerate(src_mult + src_near):
        n = int(round(m * thr))
        j = rng.integers(0, 16, n)
        tr.add(np.full(n, HH_SRC + i), BG_DST + (j * 7919) % args.dsts, 20000 + j, 443, TCP)
    for i, m in enumerate(flow_mult + flow_near):
        n = int(round(m * thr))
        tr.add(np.full(n, HH_FLOW_SRC + i), BG_DST + i, 33000 + i, 53, UDP)
    tr.planted["heavy_sources_x_threshold"] = list(src_mult)
    tr.planted["heavy_flows_x_threshold"] = list(flow_mult)
    tr.planted["near_miss_sources_x_threshold"] = list(src_near)
    tr.planted["near_miss_flows_x_threshold"] = list(flow_near)

    # Scanners (one SYN per distinct destination, a few repeated) and fan-in
    # victims (one packet per distinct source); some exactly at the edges, and
    # near misses with 50..99.
    def spreads(n: int) -> np.ndarray:
        return np.concatenate(([100, 101, 105, 5000], log_uniform_ints(rng, n - 4, 100, 5000)))

    scan = spreads(args.scanners)
    scan_near = rng.integers(50, 100, args.near_spreaders)
    for i, k in enumerate(np.concatenate((scan, scan_near))):
        dst = tr.distinct(SCAN_DST, int(k), 1 << 22)
        dst = np.concatenate((dst, dst[: int(k) // 10]))  # retries: packets, not new elements
        tr.add(np.full(len(dst), SCAN_SRC + i), dst, 40000 + i, rng.integers(1, 1024, len(dst)), TCP)
    vict = spreads(args.victims)
    vict_near = rng.integers(50, 100, args.near_spreaders)
    for i, k in enumerate(np.concatenate((vict, vict_near))):
        src = tr.distinct(VICTIM_SRC, int(k), 1 << 24)
        tr.add(src, np.full(len(src), VICTIM_DST + i), rng.integers(1024, 65536, len(src)), 80, TCP)
    tr.planted["scanners_distinct_dst"] = sorted(int(x) for x in scan)
    tr.planted["victims_distinct_src"] = sorted(int(x) for x in vict)
    tr.planted["near_miss_spreaders_each"] = args.near_spreaders

    # Zipf background: flow f (rank f+1) gets a share of the remaining packets
    # proportional to 1 / rank**s, at least one packet; sources and
    # destinations uniform over their pools, random ports, TCP or UDP.
    nbg = args.packets - tr.packets
    if nbg < args.flows:
        raise SystemExit(f"--packets too small: {nbg} background packets for {args.flows} flows")
    w = 1.0 / np.arange(1, args.flows + 1, dtype=np.float64) ** args.zipf
    counts = 1 + rng.multinomial(nbg - args.flows, w / w.sum())
    fsrc = BG_SRC + rng.integers(0, args.srcs, args.flows)
    fdst = BG_DST + rng.integers(0, args.dsts, args.flows)
    fsport = rng.integers(1024, 65536, args.flows)
    fdport = rng.choice(np.array([53, 80, 123, 443, 993, 8080]), args.flows)
    fproto = np.where(rng.random(args.flows) < 0.7, TCP, UDP)
    idx = np.repeat(np.arange(args.flows), counts)
    tr.add(fsrc[idx], fdst[idx], fsport[idx], fdport[idx], fproto[idx])

    # Vertical port scans (one SYN per port of one host), on top of the packets
    # above and from a generator of their own, so the rest of the scenario and
    # the heavy-hitter threshold are what they were without them.
    prng = np.random.default_rng(args.seed + 1000)
    pscan = np.concatenate(([100, 101, 105, 5000], log_uniform_ints(prng, args.scanners - 4, 100, 5000)))
    pscan_near = prng.integers(50, 100, args.near_spreaders)
    for i, k in enumerate(np.concatenate((pscan, pscan_near))):
        ports = 1 + prng.permutation(65535)[: int(k)]
        tr.add(np.full(len(ports), PSCAN_SRC + i), np.full(len(ports), PSCAN_DST + i), 50000 + i, ports, TCP)
    tr.planted["port_scanners_distinct_ports"] = sorted(int(x) for x in pscan)

    keys = tr.keys()
    lengths = rng.integers(64, 1515, len(keys)).astype(np.uint64)
    tr.planted["heavy_hitter_threshold_packets"] = thr
    scenario = {
        "packets": len(keys),
        "background_packets": int(nbg),
        "background_flows": args.flows,
        "background_zipf_s": args.zipf,
        "background_sources": args.srcs,
        "background_destinations": args.dsts,
        "largest_background_flow_packets": int(counts.max()),
        "planted": tr.planted,
        "seed": args.seed,
    }
    return keys, lengths, scenario


# --------------------------------------------------------------------- truth


def _void(keys: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(keys, dtype=abi.KEY).view(np.dtype((np.void, abi.KEY.itemsize)))


def exact_counts(keys: np.ndarray, fields: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys masked to `fields` (as void), and packets per key."""
    u, c = np.unique(_void(mask_keys(keys, fields)), return_counts=True)
    return u, c


def exact_spreads(keys: np.ndarray, key_fields: int, elem_fields: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys (void) and their number of distinct elements."""
    pairs = np.unique(_void(mask_keys(keys, key_fields | elem_fields)))
    return exact_counts(pairs.view(abi.KEY), key_fields)


def lookup(sorted_void: np.ndarray, values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """values of keys in a sorted void array (every key must be present)."""
    q = _void(keys)
    i = np.searchsorted(sorted_void, q)
    assert np.all(sorted_void[np.minimum(i, len(sorted_void) - 1)] == q), "key missing from the truth"
    return values[i]


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


# --------------------------------------------------------------------- scoring


def score_heavy(sk: SketchSet, name: str, flow_keys: np.ndarray, truth, thr: int) -> dict:
    spec = sk.layout.by_name(name).spec
    uniq, count = truth
    cand = unique_keys(mask_keys(flow_keys, spec.fields))  # what the offline analyzer verifies
    hh = sk.verify(name, cand)
    true_hh = count >= thr
    got = np.zeros(len(uniq), bool)
    got[np.searchsorted(uniq, _void(hh.keys))] = True
    tp = int(np.sum(got & true_hh))
    fp_i, fn_i = np.flatnonzero(got & ~true_hh), np.flatnonzero(true_hh & ~got)
    est, _ = sk.query(name, uniq.view(abi.KEY))
    over = est.astype(np.float64) - count
    bound = sk.error_bound(name)
    return {
        "threshold_packets": thr,
        "candidates": len(cand),
        "true_heavy_hitters": int(true_hh.sum()),
        "reported": len(hh.keys),
        "recall": _ratio(tp, int(true_hh.sum())),
        "precision": _ratio(tp, len(hh.keys)),
        "false_positives_true_packets": sorted(int(count[i]) for i in fp_i)[-EXAMPLES:],
        "false_negatives_true_packets": sorted(int(count[i]) for i in fn_i)[:EXAMPLES],
        "never_underestimates": bool(over.min() >= 0),
        "error_bound_packets": round(bound, 2),
        "overestimate_max_packets": int(over.max()),
        "overestimate_mean_packets": round(float(over.mean()), 3),
        "overestimate_max_over_bound": round(float(over.max()) / bound, 4),
        "overestimate_mean_over_bound": round(float(over.mean()) / bound, 5),
        "share_of_keys_over_bound": round(float(np.mean(over > bound)), 6),
        "share_of_keys_over_bound_allowed": round(math.exp(-spec.depth), 6),
    }


def _rel(est: np.ndarray, true: np.ndarray) -> dict:
    if len(true) == 0:
        return {"keys": 0}
    rel = (est - true) / true
    return {
        "keys": len(true),
        "mean_relative_error": round(float(np.mean(np.abs(rel))), 4),
        "mean_signed_error": round(float(np.mean(rel)), 4),
        "max_relative_error": round(float(np.max(np.abs(rel))), 4),
    }


def score_spread(sk: SketchSet, name: str, flows: np.ndarray, truth, detected) -> dict:
    spec = sk.layout.by_name(name).spec
    uniq, true = truth
    big = true >= SPREAD_MIN
    q = uniq[big].view(abi.KEY)
    tb = true[big].astype(np.float64)
    out = {"keys": len(uniq), "true_spread_max": int(true.max())}
    for corrected, label in ((True, "corrected"), (False, "plain")):
        est = sk.spread(name, q, corrected=corrected)
        row = _rel(est, tb)
        for lo, hi in SPREAD_BUCKETS:
            sel = (tb >= lo) & (tb < hi if hi else True)
            row[f"{lo}-{hi - 1}" if hi else f"{lo}+"] = _rel(est[sel], tb[sel])
        out[f"spread_{label}"] = row

    # Detection: analysis.spreaders() over the epoch's exact flows (every key seen).
    thr = spec.spread_threshold
    rep_keys, rep_est = detected[name]
    true_pos = true >= thr
    got = np.zeros(len(uniq), bool)
    got[np.searchsorted(uniq, _void(rep_keys))] = True
    tp = int(np.sum(got & true_pos))
    fp_i, fn_i = np.flatnonzero(got & ~true_pos), np.flatnonzero(true_pos & ~got)
    est_all = sk.spread(name, uniq.view(abi.KEY))
    plain_hit = sk.spread(name, uniq.view(abi.KEY), corrected=False) >= thr
    tp_plain = int(np.sum(plain_hit & true_pos))
    clear_pos = true >= thr * BAND
    clear_neg = true < thr / BAND
    out["detection"] = {
        "threshold": thr,
        "true_spreaders": int(true_pos.sum()),
        "reported": len(rep_keys),
        "precision": _ratio(tp, len(rep_keys)),
        "recall": _ratio(tp, int(true_pos.sum())),
        f"recall_of_true_at_least_{BAND}x_threshold": _ratio(int(np.sum(got & clear_pos)), int(clear_pos.sum())),
        f"precision_counting_only_true_below_threshold_over_{BAND}_as_false": _ratio(
            len(rep_keys) - int(np.sum(got & clear_neg)), len(rep_keys)
        ),
        "false_positives_true_spread": sorted(int(true[i]) for i in fp_i)[-EXAMPLES:],
        "false_negatives_true_and_estimate": [
            [int(true[i]), round(float(est_all[i]), 1)] for i in fn_i[np.argsort(true[fn_i])][:EXAMPLES]
        ],
    }
    out["detection_plain_estimator"] = {
        "about": "informational: the same keys and threshold with spread(corrected=False)",
        "reported": int(plain_hit.sum()),
        "precision": _ratio(tp_plain, int(plain_hit.sum())),
        "recall": _ratio(tp_plain, int(true_pos.sum())),
    }
    return out


def ss_goals(res: dict) -> dict:
    g = {}
    for name, r in res.items():
        mre = r["spread_corrected"].get("mean_relative_error")
        d = r["detection"]
        g[f"{name}_spread_mean_relative_error"] = {
            "max": GOAL_SPREAD_MRE,
            "value": mre,
            "within": mre is not None and mre <= GOAL_SPREAD_MRE,
        }
        for m in ("precision", "recall"):
            v = d[m]
            g[f"{name}_detection_{m}"] = {"min": GOAL_DETECT, "value": v, "within": v is not None and v >= GOAL_DETECT}
    return g


def cm_goals(res: dict) -> dict:
    g = {}
    for name, r in res.items():
        g[f"{name}_recall"] = {
            "min": GOAL_HH_RECALL,
            "value": r["recall"],
            "within": (r["recall"] or 0) >= GOAL_HH_RECALL,
        }
        g[f"{name}_precision"] = {
            "min": GOAL_HH_PRECISION,
            "value": r["precision"],
            "within": (r["precision"] or 0) >= GOAL_HH_PRECISION,
        }
    return g


def memory(tasks) -> dict:
    """Kernel bytes of one CPU's slice of one map set (the sensor has two sets per CPU)."""
    lay = layout(tuple(tasks))
    cm = lay.cm_cells * abi.COUNTER.itemsize
    ss = lay.ss_blocks * abi.REGS_PER_BLOCK
    return {"cm_bytes": cm, "ss_bytes": ss, "per_cpu_per_set_bytes": cm + ss, "per_cpu_both_sets_bytes": 2 * (cm + ss)}


# --------------------------------------------------------------------- runs


class Epoch:
    def __init__(self, keys, lengths, thr):
        self.keys, self.lengths, self.thr = keys, lengths, thr
        self.flow_keys = np.unique(_void(keys)).view(abi.KEY)  # the epoch's exact flows
        self.flows = np.zeros(len(self.flow_keys), FLOW_RECORD)
        self.flows["key"] = self.flow_keys
        self._truth: dict = {}

    def truth(self, spec):
        k = (spec.kind, spec.fields, spec.elem_fields)
        if k not in self._truth:
            if spec.kind == COUNTMIN:
                self._truth[k] = exact_counts(self.keys, spec.fields)
            else:
                self._truth[k] = exact_spreads(self.keys, spec.fields, spec.elem_fields)
        return self._truth[k]

    def sketch(self, tasks) -> SketchSet:
        sk = SketchSet(layout(tuple(tasks)))
        sk.update(self.keys, self.lengths)
        return sk

    def run_cm(self, tasks) -> dict:
        sk = self.sketch(tasks)
        return {s.name: score_heavy(sk, s.name, self.flow_keys, self.truth(s), self.thr) for s in tasks}

    def run_ss(self, tasks) -> dict:
        sk = self.sketch(tasks)
        det = spreaders(sk, self.flows)
        return {s.name: score_spread(sk, s.name, self.flows, self.truth(s), det) for s in tasks}


def hybrid(ep: Epoch, tasks, capacity: int, rng) -> dict:
    """The sensor's answers through snapshot.derive() with a flow table that
    takes the first `capacity` flows of the epoch (packets in random order),
    scored against the truth."""
    order = rng.permutation(len(ep.keys))
    keys, lengths = ep.keys[order], ep.lengths[order]
    _, first, inv = np.unique(_void(keys), return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))  # flows in order of their first packet
    tracked = rank[inv.reshape(-1)] < capacity
    nflows = len(first)
    flows = np.zeros(min(capacity, nflows), FLOW_RECORD)
    fid = rank[inv.reshape(-1)][tracked]
    flows["key"] = keys[first[np.argsort(rank)][: len(flows)]]
    flows["packets"] = np.bincount(fid, minlength=len(flows))
    flows["bytes"] = np.bincount(fid, weights=lengths[tracked].astype(np.float64), minlength=len(flows))
    totals = np.zeros((abi.NCOUNTERS, 2), np.uint64)
    totals[abi.C["all"]] = (len(keys), int(lengths.sum()))
    totals[abi.C["flow_untracked"]] = (int((~tracked).sum()), int(lengths[~tracked].sum()))
    lay = layout(tuple(tasks))
    sk = SketchSet(lay)
    sk.update(keys, lengths)  # = the flows' sketch + the overflow arrays, bit for bit
    # the kernel's candidates: an untracked key whose overflow estimate reaches the threshold
    over = SketchSet(lay)
    over.update(keys[~tracked], lengths[~tracked])
    cands = []
    for t in lay.kind(COUNTMIN):
        u = unique_keys(mask_keys(keys[~tracked], t.spec.fields))
        if len(u):
            pk, _ = over.query(t.spec.name, u)
            hit = u[pk >= t.spec.hh_packets]
            c = np.zeros(len(hit), abi.CAND)
            c["task"], c["key"] = t.index, hit
            cands.append(c)
    cands = np.concatenate(cands) if cands else np.zeros(0, abi.CAND)
    snap = derive(0, 0.0, 1.0, totals, flows, sk, cands)
    out = {
        "flow_capacity": capacity,
        "flows": nflows,
        "untracked_packets": int((~tracked).sum()),
        "exact": snap.exact,
        "kernel_candidates": len(cands),
    }
    for t in lay.tasks:
        spec = t.spec
        uniq, true = ep.truth(spec)
        if spec.kind == COUNTMIN:
            got_keys, got = snap.heavy[spec.name].keys, snap.heavy[spec.name].packets
            pos = true >= spec.hh_packets
        else:
            got_keys, got = snap.spreaders[spec.name]
            pos = true >= spec.spread_threshold
        at = np.searchsorted(uniq, _void(got_keys))
        hit = np.zeros(len(uniq), bool)
        hit[at] = True
        tp = int(np.sum(hit & pos))
        err = np.abs(np.asarray(got, np.float64) - true[at]) / np.maximum(true[at], 1)
        out[spec.name] = {
            "true": int(pos.sum()),
            "reported": len(got_keys),
            "recall": _ratio(tp, int(pos.sum())),
            "precision": _ratio(tp, len(got_keys)),
            "max_relative_error_of_reported": round(float(err.max()), 4) if len(err) else 0.0,
        }
    return out


HH_TASKS = {t.name for t in load_config(None).tasks if t.kind == COUNTMIN}


def hybrid_goals(res: dict) -> dict:
    g = {}
    for label, r in res.items():
        exact = r["exact"]
        for name, v in r.items():
            if not isinstance(v, dict):
                continue
            # exact: everything right; estimated: the sketches' heavy-hitter and detection goals
            cm = name in HH_TASKS
            rmin = 1.0 if exact or cm else GOAL_DETECT
            pmin = 1.0 if exact else GOAL_HH_PRECISION if cm else GOAL_DETECT
            g[f"{label}_{name}_recall"] = {"min": rmin, "value": v["recall"], "within": (v["recall"] or 0) >= rmin}
            g[f"{label}_{name}_precision"] = {
                "min": pmin,
                "value": v["precision"],
                "within": (v["precision"] or 0) >= pmin,
            }
            if exact:
                e = v["max_relative_error_of_reported"]
                g[f"{label}_{name}_error"] = {"max": 0.0, "value": e, "within": e == 0.0}
    return g


def _shape(spec) -> dict:
    if spec.kind == SUPERSPREAD:
        return {"pool_registers": spec.width, "registers_per_key": spec.registers}
    return {"depth": spec.depth, "width": spec.width}


def search(ep: Epoch, fixed, kind: str, grid: dict, score, goals) -> dict:
    """Score every grid variant of the `kind` tasks (others as given), smallest
    memory first; report each compactly and the smallest meeting all goals /
    each goal."""
    names = list(grid)
    combos = [dict(zip(names, v)) for v in itertools.product(*grid.values())]
    variants = []
    for c in combos:
        full = [dataclasses.replace(t, **c) if t.kind == kind else t for t in fixed]
        variants.append((memory(full)["per_cpu_per_set_bytes"], c, full))
    variants.sort(key=lambda v: (v[0], v[1].get("depth", 0)))
    rows, first_all, first_goal = [], None, {}
    skipped = 0
    for mem, c, full in variants:
        if mem > SEARCH_MAX_BYTES:
            skipped += 1
            continue
        res = score(ep, [t for t in full if t.kind == kind])
        g = goals(res)
        row = {**c, "per_cpu_per_set_bytes": mem, "goals_met": all(x["within"] for x in g.values())}
        row.update({k: v["value"] for k, v in g.items()})
        for name, r in res.items():
            if "detection_plain_estimator" in r:
                p = r["detection_plain_estimator"]
                row[f"{name}_plain_detection_precision_recall"] = [p["precision"], p["recall"]]
                row[f"{name}_plain_spread_mean_relative_error"] = r["spread_plain"].get("mean_relative_error")
        rows.append(row)
        for k, v in g.items():
            if v["within"] and k not in first_goal:
                first_goal[k] = {**c, "per_cpu_per_set_bytes": mem}
        if row["goals_met"] and first_all is None:
            first_all = {**c, **memory(full), "results": res, "goals": g}
            log(f"accuracy: smallest {kind} variant meeting every goal: {c} ({mem} B per CPU and set)")
            break
    log(f"accuracy: scored {len(rows)} {kind} variants")
    return {
        "grid": grid,
        "note": (
            f"every variant applies to all {kind} tasks, others keep the defaults; memory = per CPU and map set; "
            f"scored smallest first until one meets every goal; variants above {SEARCH_MAX_BYTES} B not scored"
        ),
        "not_scored_over_memory_cap": skipped,
        "smallest_meeting_all_goals": first_all,
        "smallest_meeting_each_goal": first_goal,
        "variants": rows,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--flows", type=int, default=200_000, help="background flows")
    ap.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of background flow sizes")
    ap.add_argument("--srcs", type=int, default=50_000, help="background sources")
    ap.add_argument("--dsts", type=int, default=100_000, help="background destinations")
    ap.add_argument("--scanners", type=int, default=40)
    ap.add_argument("--victims", type=int, default=40)
    ap.add_argument("--near-spreaders", type=int, default=20, help="scanners and victims each with 50..99")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-search", action="store_true", help="score the defaults only")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    log(f"accuracy: generating {args.packets} packets (seed {args.seed})")
    keys, lengths, scenario = generate(args)
    n = len(keys)
    thr = scenario["planted"]["heavy_hitter_threshold_packets"]  # of the packets before the port scans
    ep = Epoch(keys, lengths, thr)
    scenario["distinct_5tuples"] = len(ep.flow_keys)
    log(
        f"accuracy: {n} packets, {len(ep.flow_keys)} flows, heavy-hitter threshold {thr} ({time.monotonic() - t0:.1f} s)"
    )

    defaults = load_config(None).tasks
    tasks = [dataclasses.replace(t, hh_packets=thr, hh_bytes=0) if t.kind == COUNTMIN else t for t in defaults]
    cm_tasks = [t for t in tasks if t.kind == COUNTMIN]
    ss_tasks = [t for t in tasks if t.kind == SUPERSPREAD]
    heavy = ep.run_cm(cm_tasks)
    spread = ep.run_ss(ss_tasks)
    rng = np.random.default_rng(args.seed + 1)
    nflows = len(ep.flow_keys)
    log("accuracy: the sensor's answers with a table of every flow and of 1/10 of them")
    hyb = {
        "table_holds_all": hybrid(ep, tasks, nflows, rng),
        "table_holds_tenth": hybrid(ep, tasks, nflows // 10, rng),
    }
    goals = {**cm_goals(heavy), **ss_goals(spread), **hybrid_goals(hyb)}
    log(
        f"accuracy: defaults scored ({time.monotonic() - t0:.1f} s): "
        + ", ".join(f"{k}={v['value']}" for k, v in goals.items())
    )

    out = {
        "benchmark": "accuracy",
        "machine": machine(),
        "scenario": scenario,
        "method": {
            "epoch": "all packets in one epoch; sketches are order-independent (sum / max), so no ordering",
            "truth": "np.unique over the packets' keys masked to each task's fields (and element fields)",
            "heavy_hitters": (
                f"TaskSpec hh_packets = ceil({HH_FRACTION} * packets), hh_bytes = 0; candidates = every distinct "
                "key of the task (unique_keys(mask_keys(flow keys))), as offline analysis has them; "
                "SketchSet.verify; true heavy hitter = exact count >= threshold; overestimate over every "
                "distinct key, bound = e / width * N"
            ),
            "spreads": (
                f"keys with exact distinct count >= {SPREAD_MIN}; relative error |est - true| / true of "
                "SketchSet.spread (corrected, the default) and corrected=False (plain)"
            ),
            "detection": (
                "analysis.spreaders(sketch, flows) with flows = every distinct 5-tuple of the epoch; "
                "true spreader = exact distinct count >= spread_threshold; precision/recall over all keys"
            ),
            "hybrid": (
                "packets in random order; the table takes the first flow_capacity flows (exact counts), the "
                "rest is untracked; the sketch is the per-packet sketch (= flows + overflow, bit for bit); the "
                "kernel's candidates are the untracked keys whose overflow Count-Min estimate reaches the "
                "threshold (one CPU); snapshot.derive() answers; heavy hitters at the tasks' hh_packets, "
                "spreaders at spread_threshold, scored against the truth"
            ),
        },
        "tasks": {t.name: {"kind": t.kind, **_shape(t)} for t in tasks},
        "memory_default": memory(tasks),
        "heavy_hitters": heavy,
        "spreads": spread,
        "hybrid": hyb,
        "goals": goals,
    }
    if not args.no_search:
        if not all(v["within"] for v in cm_goals(heavy).values()):
            log("accuracy: Count-Min defaults miss a goal; scoring variants")
            out["countmin_variants"] = search(ep, tasks, COUNTMIN, CM_GRID, Epoch.run_cm, cm_goals)
        if not all(v["within"] for v in ss_goals(spread).values()):
            log("accuracy: SuperSpread defaults miss a goal; scoring variants")
            out["superspread_variants"] = search(ep, tasks, SUPERSPREAD, SS_GRID, Epoch.run_ss, ss_goals)
    out["seconds"] = round(time.monotonic() - t0, 1)
    log(f"accuracy: done in {out['seconds']} s")
    emit(out)


if __name__ == "__main__":
    main()
