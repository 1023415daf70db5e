"""Build Ethernet frames byte by byte: for parser tests, traffic generators and benchmarks.

No checksums are computed (nothing on the sensor's path verifies them) and
nothing here needs root.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_IP = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
ETH_8021Q = 0x8100
ETH_8021AD = 0x88A8
ETH_PPPOE_SES = 0x8864
ETH_MPLS = 0x8847
ETH_MPLS_MC = 0x8848
PPP_IP, PPP_IPV6 = 0x0021, 0x0057

TCP, UDP, ICMP, ICMPV6, SCTP, GRE = 6, 17, 1, 58, 132, 47

SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")


def eth(ethertype: int, vlans: tuple[int, ...] = (), outer_tpid: int = ETH_8021AD) -> bytes:
    """Ethernet header; `vlans` are VLAN IDs, outermost first (QinQ: outer 802.1ad)."""
    hdr = DST_MAC + SRC_MAC
    for i, vid in enumerate(vlans):
        tpid = outer_tpid if i == 0 and len(vlans) > 1 else ETH_8021Q
        hdr += struct.pack("!HH", tpid, vid & 0xFFF)
    return hdr + struct.pack("!H", ethertype)


def pppoe(ppp_proto: int, payload: bytes, session: int = 0x1234) -> bytes:
    """PPPoE session header (RFC 2516: version 1, type 1, code 0) + PPP protocol, then payload."""
    return struct.pack("!BBHHH", 0x11, 0, session, len(payload) + 2, ppp_proto) + payload


def mpls(labels: tuple[int, ...], payload: bytes, bottom: bool = True) -> bytes:
    """An MPLS label stack, outermost first; S set on the last label unless bottom=False."""
    out = b""
    for i, label in enumerate(labels):
        s = int(bottom and i == len(labels) - 1)
        out += struct.pack("!I", (label & 0xFFFFF) << 12 | s << 8 | 64)
    return out + payload


def l4(proto: int, sport: int = 0, dport: int = 0, flags: int = 0x02, icmp: tuple[int, int] = (8, 0)) -> bytes:
    if proto == TCP:
        return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    if proto == UDP:
        return struct.pack("!HHHH", sport, dport, 8, 0)
    if proto == SCTP:
        return struct.pack("!HHII", sport, dport, 0, 0)
    if proto in (ICMP, ICMPV6):
        return struct.pack("!BBHI", icmp[0], icmp[1], 0, 0)
    return b""


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    options: bytes = b"",
    frag_offset: int = 0,
    more_fragments: bool = False,
    ihl: int | None = None,
    version: int = 4,
    ident: int = 1,
) -> bytes:
    if ihl is None:
        ihl = 5 + len(options) // 4
    flags = (0x2000 if more_fragments else 0) | (frag_offset // 8)
    total = 20 + len(options) + len(payload)
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        (version << 4) | ihl,
        0,
        total,
        ident,
        flags,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return hdr + options + payload


def ipv6(src: str, dst: str, nexthdr: int, payload: bytes, version: int = 6) -> bytes:
    hdr = struct.pack(
        "!IHBB16s16s",
        version << 28,
        len(payload),
        nexthdr,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return hdr + payload


def ext(nexthdr: int, body_len8: int = 0) -> bytes:
    """A hop-by-hop/routing/destination-options header: (1 + body_len8) * 8 bytes."""
    return struct.pack("!BB", nexthdr, body_len8) + b"\x00" * (6 + 8 * body_len8)


def frag6(nexthdr: int, offset: int = 0, more: bool = False, ident: int = 7) -> bytes:
    return struct.pack("!BBHI", nexthdr, 0, (offset // 8) << 3 | int(more), ident)


def pad(frame: bytes, size: int = 60) -> bytes:
    """Pad to the Ethernet minimum (or `size`), as a NIC would."""
    return frame + b"\x00" * max(0, size - len(frame))


def frame(
    src: str,
    dst: str,
    proto: int = UDP,
    sport: int = 0,
    dport: int = 0,
    *,
    size: int = 0,
    vlans: tuple[int, ...] = (),
    flags: int = 0x02,
) -> bytes:
    """A well-formed frame of `size` bytes (at least the headers, at least 60)."""
    v6 = ":" in src
    p = l4(proto, sport, dport, flags, icmp=(128, 0) if v6 else (8, 0))
    if v6:
        pkt = eth(ETH_IPV6, vlans) + ipv6(src, dst, proto, p)
    else:
        pkt = eth(ETH_IP, vlans) + ipv4(src, dst, proto, p)
    body = max(size, 60) - len(pkt)
    if body > 0:
        # grow the payload (and the IP length fields) rather than padding
        if v6:
            pkt = eth(ETH_IPV6, vlans) + ipv6(src, dst, proto, p + b"\x00" * body)
        else:
            pkt = eth(ETH_IP, vlans) + ipv4(src, dst, proto, p + b"\x00" * body)
    return pkt


def mapped(addr: str) -> bytes:
    """The 16-byte key form of an address: IPv4 as ::ffff:a.b.c.d."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def addr_str(b: bytes) -> str:
    """Inverse of mapped(): '10.0.0.1' or '2001:db8::1'."""
    ip = ipaddress.IPv6Address(bytes(b))
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)


_V4_PREFIX = bytes(10) + b"\xff\xff"


def addr_strings(addrs) -> list[str]:
    """addr_str() of every row of an (n, 16) uint8 array, formatting each
    distinct address once (flow tables repeat addresses many times)."""
    import numpy as np

    a = np.ascontiguousarray(addrs, dtype=np.uint8).reshape(-1, 16)
    if len(a) == 0:
        return []
    uniq, inv = np.unique(a.view(np.dtype((np.void, 16))).reshape(-1), return_inverse=True)
    u = uniq.view(np.uint8).reshape(-1, 16)
    v4 = (u[:, :12] == np.frombuffer(_V4_PREFIX, np.uint8)).all(axis=1)
    text = [""] * len(u)
    for i, (b0, b1, b2, b3) in zip(np.flatnonzero(v4).tolist(), u[v4, 12:].tolist()):
        text[i] = f"{b0}.{b1}.{b2}.{b3}"
    for i in np.flatnonzero(~v4).tolist():
        text[i] = addr_str(u[i].tobytes())  # IPv6: the standard compressed form
    return [text[i] for i in inv.reshape(-1).tolist()]
