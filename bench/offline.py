"""Offline analysis speed: `netspectra analyze` next to nfpcapd and tshark, same file, same run.

    python -m bench.offline [--packets 1000000] [--flows 200000] [--rounds 3]
                            [--cpu 1] [--tshark-packets 0] [--workdir DIR]

Generates a capture with bench.gen_capture (Zipf flows, 1 in 8 over IPv6)
into a temporary directory, then times, interleaved round by round (order
rotating), every tool on that file, each pinned to one CPU:

  netspectra in-process   analyze() with `tasks: []` (exact flows only) and
                          with the default sketch tasks, plus the Cython walk
                          alone (no snapshot); the file is in the page cache
  netspectra CLI          `netspectra analyze FILE` (table, the default
                          output) and `netspectra analyze --json FILE` (every
                          flow as JSON), both configs, as `taskset -c CPU`
                          subprocesses: wall time including interpreter start
  nfpcapd                 `nfpcapd -r FILE -w DIR` (nfdump: pcap to nfcapd
                          flow records on disk), `taskset -c CPU`, wall time
                          until it exits; checked to have processed every packet
  tshark                  `tshark -q -z conv,ip -r FILE`, `taskset -c CPU`;
                          with --tshark-packets N on an N-packet prefix and
                          scaled (said so in the JSON; tshark slows down as
                          its conversation table grows, so scaling flatters it)

One untimed warm-up round first (page cache, and the CLI outputs are checked
against the capture).  Reported: median over rounds (and min, max, rounds).
Prints one JSON object on stdout; progress on stderr.  Never passes or fails
on time.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netspectra import offline
from netspectra.config import Config

from ._common import REPO, emit, log, machine, pin_cpu, summary

GOAL_MPPS = 3.0
GOAL_TSHARK_RATIO = 100.0

METHOD = {
    "capture": (
        "bench.gen_capture: Ethernet pcap (microsecond, little-endian), TCP/UDP over IPv4 and "
        "1 in 8 over IPv6, 64..1514-byte frames, flow popularity half Zipf(1.1) and half uniform "
        "over --flows flows; `flows` below is the number of distinct 5-tuples in the file"
    ),
    "pinning": (
        "every subprocess runs under `taskset -c CPU` (nfpcapd's reader, flow and writer threads "
        "share that CPU); the benchmark process itself is pinned to CPU for the in-process runs"
    ),
    "wall": (
        "wall time of the whole subprocess from spawn to exit (interpreter start and imports "
        "included for netspectra); pps = packets / wall"
    ),
    "in_process": (
        "time.perf_counter around offline.analyze([file], config) in the benchmark process "
        "(walk + flow table + sketches + snapshot: heavy hitters and spreaders); walk = the "
        "Cython pass over the file alone (parse, totals, flows, sketches)"
    ),
    "rounds": (
        "one untimed warm-up round, then --rounds rounds, each running every measurement once in "
        "a rotating order; medians over rounds; ratios are computed from the medians"
    ),
    "outputs": (
        "netspectra table: the default report (top-N tables) on stdout; netspectra --json: every "
        "flow as JSON on stdout; nfpcapd: every flow record in an nfcapd file; tshark: the IPv4 "
        "and IPv6 conversation tables; stdout goes to /dev/null in timed rounds"
    ),
}


# --- the capture --------------------------------------------------------------


def generate(path: Path, packets: int, flows: int, seed: int) -> None:
    cmd = [sys.executable, "-m", "bench.gen_capture", str(path), "--packets", str(packets)]
    cmd += ["--flows", str(flows), "--seed", str(seed)]
    subprocess.run(cmd, cwd=REPO, check=True)


def write_prefix(src: Path, dst: Path, n: int) -> int:
    """Copy the global header and the first n records of a pcap (the
    generator's format: little-endian); returns the records copied."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        out.write(f.read(24))
        k = 0
        while k < n:
            hdr = f.read(16)
            if len(hdr) < 16:
                break
            incl = struct.unpack_from("<I", hdr, 8)[0]
            out.write(hdr + f.read(incl))
            k += 1
    return k


def warm_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


# --- the tools ----------------------------------------------------------------


def _run(cmd: list[str], capture: bool) -> tuple[float, subprocess.CompletedProcess]:
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    return dt, p


def _check(name: str, p: subprocess.CompletedProcess) -> None:
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise SystemExit(f"bench.offline: {name} exited {p.returncode}: {err[-1] if err else ''}")


def netspectra_cmd() -> list[str]:
    script = Path(sys.executable).parent / "netspectra"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from netspectra.cli import main; main()"]


def tool_version(cmd: list[str], pattern: str) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(pattern, p.stdout + p.stderr)
    return m.group(1) if m else None


def deb_version(pkg: str) -> str | None:
    try:
        p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    except OSError:
        return None
    return (p.stdout.strip() or None) if p.returncode == 0 else None


def nfpcapd_dir_flag(exe: str) -> str:
    """The output directory option: -w in nfdump 1.7 (older releases: -l)."""
    p = subprocess.run([exe, "-h"], capture_output=True, text=True)
    text = p.stdout + p.stderr
    return "-w" if re.search(r"^\s*-w\s+flowdir", text, re.M) else "-l"


class Measure:
    """One timed thing: a callable fn(warm) -> seconds, and its timed rounds."""

    def __init__(self, name: str, fn):
        self.name, self.fn = name, fn
        self.seconds: list[float] = []

    def run(self, timed: bool) -> None:
        dt = self.fn(not timed)
        if timed:
            self.seconds.append(dt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets in the capture [1000000]")
    ap.add_argument("--flows", type=int, default=200_000, help="flow population of the generator [200000]")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=1, help="CPU every tool is pinned to [1]")
    ap.add_argument(
        "--tshark-packets",
        type=int,
        default=0,
        help="run tshark on a prefix of this many packets and scale (0: the whole file) [0]",
    )
    ap.add_argument("--workdir", help="keep the capture and outputs here instead of a temporary directory")
    a = ap.parse_args()

    for tool in ("taskset",):
        if not shutil.which(tool):
            raise SystemExit(f"bench.offline: {tool} not found (util-linux)")
    nfpcapd, tshark = shutil.which("nfpcapd"), shutil.which("tshark")
    missing = [n for n, p in (("nfdump", nfpcapd), ("tshark", tshark)) if not p]
    if missing:
        log(f"bench.offline: not installed: {' '.join(missing)} (make deps, or apt-get install {' '.join(missing)})")

    cpu = pin_cpu(a.cpu)
    pin = ["taskset", "-c", str(cpu)]
    tmp = None
    if a.workdir:
        work = Path(a.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="netspectra-bench-")
        work = Path(tmp.name)
    try:
        result = _bench(a, work, cpu, pin, nfpcapd, tshark)
    finally:
        if tmp:
            tmp.cleanup()
    emit(result)


def _bench(a, work: Path, cpu: int, pin: list[str], nfpcapd: str | None, tshark: str | None) -> dict:
    cap = work / "capture.pcap"
    log(f"bench.offline: generating {a.packets} packets into {cap}")
    generate(cap, a.packets, a.flows, a.seed)
    warm_cache(cap)
    exact_yaml = work / "exact.yaml"
    exact_yaml.write_text("tasks: []\n")
    exact_cfg = Config(tasks=())

    # Reference numbers from one in-process pass: packets and distinct flows.
    rep = offline.analyze([str(cap)], exact_cfg)
    packets = int(rep.overall.counter("all")[0])
    flows = len(rep.overall.flows)
    if packets != a.packets:
        raise SystemExit(f"bench.offline: analyze counted {packets} packets, the capture has {a.packets}")

    ns = netspectra_cmd()
    measures: list[Measure] = []
    checks: dict[str, dict] = {}

    def inproc(cfg):
        def fn(_warm):
            t = time.perf_counter()
            offline.analyze([str(cap)], cfg)
            return time.perf_counter() - t

        return fn

    def walk(cfg):
        # The Cython pass alone, as analyze() sets it up (private API).
        def fn(_warm):
            f = offline._File(str(cap))
            try:
                run = offline._Run(offline._layout(cfg), 0, None, True)
                t = time.perf_counter()
                f.reader.run(run.eng)
                return time.perf_counter() - t
            finally:
                f.close()

        return fn

    def cli(name, args):
        cmd = [*pin, *ns, "analyze", *args, str(cap)]

        def fn(warm):
            dt, p = _run(cmd, capture=warm)
            _check(name, p)
            if warm:
                out = p.stdout.decode()
                if "--json" in args:
                    doc = json.loads(out)
                    checks[name] = {"packets": doc["overall"]["packets"], "flows": len(doc["overall"]["flows"])}
                else:
                    m = re.search(r"(\d+) packets\s+(\d+) flows", out)
                    checks[name] = {"packets": int(m.group(1)), "flows": int(m.group(2))} if m else {}
            return dt

        return fn

    for label, cfg, yaml_args in (("exact", exact_cfg, ["--config", str(exact_yaml)]), ("default", None, [])):
        measures.append(Measure(f"inproc_{label}", inproc(cfg)))
        measures.append(Measure(f"walk_{label}", walk(cfg)))
        measures.append(Measure(f"cli_table_{label}", cli(f"cli_table_{label}", yaml_args)))
        measures.append(Measure(f"cli_json_{label}", cli(f"cli_json_{label}", ["--json", *yaml_args])))

    if nfpcapd:
        outdir = work / "nfcapd"
        dflag = nfpcapd_dir_flag(nfpcapd)
        nf_cmd = [*pin, nfpcapd, "-r", str(cap), dflag, str(outdir)]

        def nf(warm):
            shutil.rmtree(outdir, ignore_errors=True)
            outdir.mkdir()
            dt, p = _run(nf_cmd, capture=True)
            _check("nfpcapd", p)
            text = (p.stdout + p.stderr).decode(errors="replace")
            m = re.search(r"Total: Processed: (\d+)", text)
            done = int(m.group(1)) if m else None
            files = [f for f in outdir.rglob("nfcapd.*") if f.is_file()]
            if done != packets or not files:
                raise SystemExit(
                    f"bench.offline: nfpcapd processed {done} of {packets} packets, wrote {len(files)} files: "
                    + " | ".join(text.strip().splitlines()[-3:])
                )
            if warm:
                m = re.search(r"Flows: (\d+)", text)
                checks["nfpcapd"] = {
                    "packets": done,
                    "flow_records": int(m.group(1)) if m else None,
                    "output_bytes": sum(f.stat().st_size for f in files),
                }
                nfdump = shutil.which("nfdump")
                if nfdump:  # records aggregated per 5-tuple: comparable to netspectra's flows
                    q = subprocess.run(
                        [nfdump, "-R", str(outdir), "-a", "-q", "-o", "csv"], capture_output=True, text=True
                    )
                    if q.returncode == 0:
                        checks["nfpcapd"]["flows_aggregated_5tuple"] = sum(1 for ln in q.stdout.splitlines() if ln)
            return dt

        measures.append(Measure("nfpcapd", nf))

    tshark_packets = packets
    if tshark:
        tfile = cap
        if a.tshark_packets and a.tshark_packets < packets:
            tfile = work / "prefix.pcap"
            tshark_packets = write_prefix(cap, tfile, a.tshark_packets)
            warm_cache(tfile)
        ts_cmd = [*pin, tshark, "-q", "-z", "conv,ip", "-r", str(tfile)]

        def ts(warm):
            dt, p = _run(ts_cmd, capture=warm)
            _check("tshark", p)
            if warm:
                rows = [ln for ln in p.stdout.decode(errors="replace").splitlines() if " <-> " in ln]
                checks["tshark"] = {"packets_input": tshark_packets, "conversations": len(rows)}
            return dt

        measures.append(Measure("tshark", ts))

    n = len(measures)
    for r in range(a.rounds + 1):
        timed = r > 0
        log(f"bench.offline: {'round ' + str(r) if timed else 'warm-up'} of {a.rounds}")
        for i in range(n):
            m = measures[(i + r) % n]
            m.run(timed)

    med = {m.name: summary(m.seconds, 4) for m in measures}

    def pps(name: str, npk: int = packets) -> float | None:
        s = med.get(name, {}).get("median")
        return npk / s if s else None

    def entry(name: str, npk: int = packets, **extra) -> dict:
        v = pps(name, npk)
        return {"wall_s": med[name], "mpps": round(v / 1e6, 3) if v else None, **extra}

    out: dict = {
        "benchmark": "offline",
        "machine": machine(),
        "cpu": cpu,
        "capture": {
            "packets": packets,
            "flows": flows,
            "bytes": cap.stat().st_size,
            "generator": f"bench.gen_capture --packets {a.packets} --flows {a.flows} --seed {a.seed}",
        },
        "rounds": a.rounds,
        "versions": {
            "netspectra": _netspectra_version(),
            "nfdump": deb_version("nfdump") or (nfpcapd and tool_version([nfpcapd, "-V"], r"Version:\s*(\S+)")),
            "tshark": deb_version("tshark") or (tshark and tool_version([tshark, "--version"], r"TShark.*?(\d\S*)")),
        },
        "netspectra": {},
        "checks": checks,
    }
    for label in ("exact", "default"):
        out["netspectra"][label] = {
            "config": "tasks: []" if label == "exact" else "default (all sketch tasks)",
            "in_process_analyze": entry(f"inproc_{label}"),
            "in_process_walk_only": entry(f"walk_{label}"),
            "cli_table": entry(
                f"cli_table_{label}",
                command=f"netspectra analyze {'--config exact.yaml ' if label == 'exact' else ''}FILE",
            ),
            "cli_json_all_flows": entry(
                f"cli_json_{label}",
                command=f"netspectra analyze --json {'--config exact.yaml ' if label == 'exact' else ''}FILE",
            ),
        }
    if nfpcapd:
        out["nfpcapd"] = entry("nfpcapd", command=f"nfpcapd -r FILE {nfpcapd_dir_flag(nfpcapd)} DIR")
    else:
        out["nfpcapd"] = {"skipped": "nfpcapd not installed (Debian package nfdump)"}
    if tshark:
        scaled = tshark_packets != packets
        out["tshark"] = entry(
            "tshark",
            tshark_packets,
            command="tshark -q -z conv,ip -r FILE",
            packets_input=tshark_packets,
            scaled_from_prefix=scaled,
        )
        if scaled:
            v = pps("tshark", tshark_packets)
            out["tshark"]["note"] = (
                f"run on the first {tshark_packets} packets; wall_s is the prefix's, mpps its rate; "
                f"estimated whole-file wall {packets / v:.2f} s at that rate. tshark's rate falls as its "
                "conversation table grows, so the scaled figure flatters tshark"
            )
    else:
        out["tshark"] = {"skipped": "tshark not installed"}

    # Ratios from the medians.
    ratios: dict = {}
    nf_s = med.get("nfpcapd", {}).get("median")
    ts_pps = pps("tshark", tshark_packets) if tshark else None
    for label in ("exact", "default"):
        r: dict = {}
        if nf_s:
            for mode in ("cli_table", "cli_json"):
                s = med[f"{mode}_{label}"]["median"]
                r[f"nfpcapd_wall_over_{mode}_wall"] = round(nf_s / s, 2)
        if ts_pps:
            for mode in ("inproc", "cli_table", "cli_json"):
                r[f"{mode}_pps_over_tshark_pps"] = round(pps(f"{mode}_{label}") / ts_pps, 1)
        ratios[label] = r
    ratios["note"] = (
        "nfpcapd_wall_over_X_wall > 1: netspectra finished first; X_pps_over_tshark_pps: how many "
        "times tshark's packet rate; cli_* include interpreter start-up"
    )
    out["ratios"] = ratios

    def goal(desc: str, value, target, measured_on: str) -> dict:
        within = None if value is None else bool(value >= target)
        return {"goal": desc, "value": value, "target": target, "measured_on": measured_on, "within": within}

    d_pps = pps("inproc_default")
    e_pps = pps("inproc_exact")
    goals = {
        "mpps_one_core_default": goal(
            ">= 3 Mpps on one core, all sketches on",
            round(d_pps / 1e6, 3),
            GOAL_MPPS,
            "in-process analyze(), default config",
        ),
        "mpps_one_core_exact": goal(
            ">= 3 Mpps on one core, exact flows only",
            round(e_pps / 1e6, 3),
            GOAL_MPPS,
            "in-process analyze(), tasks: []",
        ),
        "mpps_one_core_cli_default": goal(
            ">= 3 Mpps on one core, whole CLI process",
            round(pps("cli_table_default") / 1e6, 3),
            GOAL_MPPS,
            "netspectra analyze FILE (default config), wall incl. start-up",
        ),
    }
    if nf_s:
        goals["ahead_of_nfpcapd"] = goal(
            "netspectra analyze finishes before nfpcapd (wall)",
            ratios["default"]["nfpcapd_wall_over_cli_table_wall"],
            1.0,
            "nfpcapd wall / `netspectra analyze FILE` wall, default config (table output)",
        )
        goals["ahead_of_nfpcapd_json"] = goal(
            "netspectra analyze --json (every flow written) finishes before nfpcapd (wall)",
            ratios["default"]["nfpcapd_wall_over_cli_json_wall"],
            1.0,
            "nfpcapd wall / `netspectra analyze --json FILE` wall, default config",
        )
    if ts_pps:
        goals["over_100x_tshark"] = goal(
            "netspectra analyze over 100x tshark's packet rate",
            ratios["default"]["inproc_pps_over_tshark_pps"],
            GOAL_TSHARK_RATIO,
            "in-process analyze() pps, default config / tshark pps"
            + (" (tshark on a prefix, scaled)" if tshark_packets != packets else ""),
        )
        goals["over_100x_tshark_cli"] = goal(
            "netspectra analyze (whole CLI process) over 100x tshark's packet rate",
            ratios["default"]["cli_table_pps_over_tshark_pps"],
            GOAL_TSHARK_RATIO,
            "`netspectra analyze FILE` wall pps, default config / tshark pps"
            + (" (tshark on a prefix, scaled)" if tshark_packets != packets else ""),
        )
    out["goals"] = goals
    out["method"] = METHOD
    return out


def _netspectra_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("netspectra")
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
