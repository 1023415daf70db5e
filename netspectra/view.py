"""The live console view of an epoch: plain text, one screen."""

from __future__ import annotations

from . import abi, analysis
from .packets import addr_str
from .snapshot import EpochSnapshot, key_json
from .tasks import spread_kind

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


def human(n: float, unit: str = "") -> str:
    for suffix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.1f}{suffix}{unit}" if suffix else f"{n:.0f}{unit}"
        n /= 1000
    return f"{n:.1f}P{unit}"


def human_bytes(n: float) -> str:
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.0f} {suffix}" if suffix == "B" else f"{n:.1f} {suffix}"
        n /= 1024
    return f"{n:.1f} PiB"


def flow_str(k) -> str:
    proto = PROTO_NAMES.get(int(k["proto"]), str(int(k["proto"])))
    src, dst = addr_str(k["src"]), addr_str(k["dst"])
    if k["sport"] or k["dport"]:
        if ":" in src:
            src, dst = f"[{src}]", f"[{dst}]"
        return f"{proto} {src}:{int(k['sport'])} -> {dst}:{int(k['dport'])}"
    return f"{proto} {src} -> {dst}"


def render(s: EpochSnapshot, iface: str, memory: dict[str, int] | None = None, top: int = 10) -> str:
    pk, by = s.counter("all")
    d = s.duration
    lines = [
        f"netspectra on {iface}  epoch {s.seq}  {d:.2f}s  "
        f"{human(pk / d, 'pps')}  {human(by * 8 / d, 'bps')}  {pk} packets  {len(s.flows)} flows",
    ]
    protos = ", ".join(
        f"{name[6:]} {s.counter(name)[0]}" for name in abi.PROTO_CLASSES if s.counter(name)[0]
    )  # fmt: skip
    outcomes = ", ".join(f"{n[4:]} {s.counter(n)[0]}" for n in abi.OUTCOMES if s.counter(n)[0])
    lines.append(f"  protocols: {protos or '-'}   parse: {outcomes or '-'}")
    loss = [
        f"untracked flows {s.counter('flow_untracked')[0]} pkts",
        f"candidates lost {s.counter('cand_lost')[0]}",
    ]
    lines.append("  loss: " + ", ".join(loss))
    lines.append(
        "  answers: exact (every packet in an exact flow)"
        if s.exact
        else "  answers: estimated from the sketches (~), the flow table did not hold every flow"
    )
    if memory:
        lines.append("  kernel memory: " + human_bytes(sum(memory.values())))

    for metric in ("bytes", "packets"):
        keys, p, b = analysis.top_by(s.flows, abi.F_SRC_IP, metric, top)
        lines.append(f"top sources by {metric}:")
        lines += [
            f"  {addr_str(k['src']):<40} {int(pp):>10} pkts {human_bytes(int(bb)):>12}" for k, pp, bb in zip(keys, p, b)
        ]
    for metric in ("bytes", "packets"):
        keys, p, b = analysis.top_by(s.flows, 0x1F, metric, top)
        lines.append(f"top flows by {metric}:")
        lines += [f"  {flow_str(k):<64} {int(pp):>10} pkts {human_bytes(int(bb)):>12}" for k, pp, bb in zip(keys, p, b)]
    about = " " if s.exact else "~"  # estimates are marked
    lay = s.sketch.layout
    for task, hh in s.heavy.items():
        lines.append(f"heavy hitters [{task}]: {len(hh.keys)}")
        for k, pp, bb in list(zip(hh.keys, hh.packets, hh.bytes))[:top]:
            desc = " ".join(f"{n}={v}" for n, v in key_json(k, lay, task).items())
            lines.append(f"  {desc:<64} {about}{int(pp):>9} pkts {about}{human_bytes(int(bb)):>11}")
    for task, (ks, es) in s.spreaders.items():
        t = lay.by_name(task).spec
        lines.append(f"{spread_kind(t)}s [{task}: distinct {'+'.join(t.element)} per {'+'.join(t.key)}]: {len(ks)}")
        for k, e in list(zip(ks, es))[:top]:
            desc = " ".join(f"{n}={v}" for n, v in key_json(k, lay, task).items())
            lines.append(f"  {desc:<64} {about}{e:.0f} distinct")
    return "\n".join(lines)
