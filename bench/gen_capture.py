"""Write a synthetic pcap for the offline benchmark: many flows, Zipf-like sizes.

    python -m bench.gen_capture OUT.pcap [--packets 1000000] [--flows 200000] [--seed 1]
    python -m bench.gen_capture OUT.pcap --distinct N

Frames come from netspectra.packets (TCP/UDP over IPv4, 1 in 8 over IPv6,
64..1514 bytes); flow popularity follows a Zipf law (s = 1.1), so the file
has a few heavy flows and a long tail.  Timestamps advance 1 µs per packet.

--distinct N: N packets 1 µs apart, each its own flow (60-byte UDP over IPv4, source
10.0.0.0 + i, source port 1024 + i % 60000), written with numpy in about a
second per million: the capture for memory measurements, where the number
of flows is what counts (bench.analyze_json_memory, tests of analyze --json).
"""

from __future__ import annotations

import argparse
import struct

import numpy as np

from netspectra import packets as P


def frames(nflows: int, rng: np.random.Generator) -> list[bytes]:
    out = []
    sizes = rng.choice([64, 64, 64, 128, 256, 576, 1024, 1514], size=nflows)
    for i in range(nflows):
        proto = P.TCP if i % 3 else P.UDP
        sport, dport = 1024 + (i * 7919) % 60000, (80, 443, 53, 8080)[i % 4]
        if i % 8 == 7:
            src, dst = f"2001:db8:{i >> 16:x}::{i & 0xFFFF:x}", f"2001:db8:ffff::{(i * 31) & 0xFFFF:x}"
        else:
            src = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            dst = f"172.16.{(i * 31 >> 8) & 255}.{(i * 31) & 255}"
        out.append(P.frame(src, dst, proto, sport, dport, size=int(sizes[i])))
    return out


def distinct_flows(n: int, gap_us: int = 1) -> bytes:
    """A pcap of n packets gap_us µs apart, packet i the only one of flow i (n < 2**24)."""
    if not 0 <= n < 1 << 24:
        raise ValueError(f"n must be in [0, 2**24), got {n}")
    tmpl = np.frombuffer(P.frame("10.0.0.0", "172.16.0.1", P.UDP, 1024, 53, size=60), np.uint8)
    rec = np.empty((n, 16 + len(tmpl)), np.uint8)
    i = np.arange(n, dtype=np.uint32)
    t = np.uint64(1_700_000_000 * 1_000_000) + i.astype(np.uint64) * np.uint64(gap_us)
    hdr = rec[:, :16].view("<u4")
    hdr[:, 0] = t // 1_000_000
    hdr[:, 1] = t % 1_000_000
    hdr[:, 2] = hdr[:, 3] = len(tmpl)
    rec[:, 16:] = tmpl
    rec[:, 16 + 26 : 16 + 30] = ((0x0A000000 + i).astype(">u4")).view(np.uint8).reshape(n, 4)  # IPv4 source
    rec[:, 16 + 34 : 16 + 36] = ((1024 + i % 60000).astype(">u2")).view(np.uint8).reshape(n, 2)  # UDP source port
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + rec.tobytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--flows", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--distinct", type=int, metavar="N", help="N packets, each its own flow (ignores the rest)")
    a = ap.parse_args()
    if a.distinct is not None:
        with open(a.out, "wb") as fh:
            fh.write(distinct_flows(a.distinct))
        return
    rng = np.random.default_rng(a.seed)
    fr = frames(a.flows, rng)
    pick = (rng.zipf(1.1, size=a.packets) - 1) % a.flows
    pick = np.where(rng.random(a.packets) < 0.5, pick, rng.integers(0, a.flows, a.packets))  # plus a uniform half
    recs = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    t0 = 1_700_000_000 * 1_000_000
    for n, i in enumerate(pick.tolist()):
        f = fr[i]
        t = t0 + n
        recs.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(f), len(f)))
        recs.append(f)
    with open(a.out, "wb") as fh:
        fh.write(b"".join(recs))


if __name__ == "__main__":
    main()
