"""Write a synthetic pcap for the offline benchmark: many flows, Zipf-like sizes.

    python -m bench.gen_capture OUT.pcap [--packets 1000000] [--flows 200000] [--seed 1]

Frames come from netspectra.packets (TCP/UDP over IPv4, 1 in 8 over IPv6,
64..1514 bytes); flow popularity follows a Zipf law (s = 1.1), so the file
has a few heavy flows and a long tail.  Timestamps advance 1 µs per packet.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--flows", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
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
