"""The parser contract (netspectra/bpf/parse.h) on the real program, one crafted frame at a time.

Each frame goes through BPF_PROG_TEST_RUN; the totals and the exact flow
table of the active set then tell what the program made of it: the one
outcome slot, the protocol class, the events, the 5-tuple, TCP flags and
ICMP type/code.  Every frame is counted once in `all` and once in exactly one
outcome, with bytes = frame length.

BPF_PROG_TEST_RUN for XDP refuses input shorter than an Ethernet header
(EINVAL below 14 bytes: the kernel needs ETH_HLEN to build the xdp_buff), so
NS_C_OUT_TRUNC_ETH cannot be produced here; the 14-byte frames below are the
shortest the program can be given.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netspectra import abi
from netspectra import packets as P
from netspectra.kernel import libbpf
from netspectra.offline import analyze
from tests.helpers.pcapfile import write_pcap

from .conftest import load

pytestmark = pytest.mark.root

XDP_PASS = 2
AH, ESP, HOP, ROUTING, FRAG, DSTOPTS = 51, 50, 0, 43, 44, 60
EVENTS = ("frag_first", "frag_later", "l4_trunc", "ipv6_ext_trunc", "ipv6_ext_limit", "ipv4_options")
A4, B4 = "10.1.2.3", "192.0.2.77"
A6, B6 = "2001:db8::1", "2001:db8:ffff::2"


@pytest.fixture(scope="module")
def prog():
    p = load(flow_capacity=1024)
    yield p
    p.close()


def run(prog, frame: bytes):
    """One frame through the program: (totals (NCOUNTERS, 2), flow keys, flow
    records).  The set is read after a flip, as the agent reads it."""
    action, _ = libbpf.test_run(prog.prog_fd, frame)
    assert action == XDP_PASS
    s = prog.flip()
    tot = prog.take_totals(s)
    flows = prog.take_flows(s)
    return tot, flows["key"], flows


def key_bytes(src, dst, sport, dport, proto) -> bytes:
    k = np.zeros(1, abi.KEY)
    k["src"] = np.frombuffer(P.mapped(src), np.uint8)
    k["dst"] = np.frombuffer(P.mapped(dst), np.uint8)
    k["sport"], k["dport"], k["proto"] = sport, dport, proto
    return k.tobytes()


@dataclass
class Case:
    frame: bytes
    outcome: str
    proto_class: str | None = None  # for IP outcomes
    events: set = field(default_factory=set)
    key: tuple | None = None  # (src, dst, sport, dport, proto) for IP outcomes
    tcp_flags: int = 0
    icmp: tuple[int, int] = (0, 0)


def offline_of(tmp_path, frames: list[bytes]):
    """The same frames through `netspectra analyze` (the parser compiled for userspace)."""
    rep = analyze([str(write_pcap(tmp_path / "frames.pcap", frames))])
    assert not rep.errors and not rep.skipped
    return rep.overall


def flow_table(keys, vals) -> dict:
    return {
        keys[i : i + 1].tobytes(): (
            int(v["packets"]),
            int(v["bytes"]),
            int(v["tcp_flags"]),
            int(v["icmp_type"]),
            int(v["icmp_code"]),
        )
        for i, v in enumerate(vals)
    }


def check(prog, c: Case, tmp_path=None):
    tot, keys, vals = run(prog, c.frame)
    if tmp_path is not None:  # kernel and offline parser: bit-identical totals and flows
        off = offline_of(tmp_path, [c.frame])
        assert np.array_equal(tot, off.totals), "kernel and offline totals differ"
        assert flow_table(keys, vals) == flow_table(off.flows["key"], off.flows), "kernel and offline flows differ"
    n = len(c.frame)
    assert tuple(tot[abi.C["all"]]) == (1, n)
    got_out = [o for o in abi.OUTCOMES if tot[abi.C[o], 0]]
    assert got_out == [c.outcome], f"outcome {got_out}, expected {c.outcome}"
    assert tuple(tot[abi.C[c.outcome]]) == (1, n)
    got_proto = [p for p in abi.PROTO_CLASSES if tot[abi.C[p], 0]]
    got_ev = {e for e in EVENTS if tot[abi.C[e], 0]}
    for e in got_ev:
        assert tuple(tot[abi.C[e]]) == (1, n)
    assert got_ev == c.events, f"events {got_ev}, expected {c.events}"
    assert tot[abi.C["flow_untracked"], 0] == 0 and tot[abi.C["cand_lost"], 0] == 0
    if c.outcome not in ("out_ipv4", "out_ipv6"):
        assert got_proto == []
        assert len(keys) == 0, "a non-IP outcome must not create a flow"
        return
    assert got_proto == [c.proto_class]
    assert tuple(tot[abi.C[c.proto_class]]) == (1, n)
    assert len(keys) == 1
    got_key = keys[0]
    want = np.frombuffer(key_bytes(*c.key), abi.KEY)[0]
    assert (P.addr_str(got_key["src"]), P.addr_str(got_key["dst"])) == (
        P.addr_str(want["src"]),
        P.addr_str(want["dst"]),
    )
    assert (int(got_key["sport"]), int(got_key["dport"]), int(got_key["proto"])) == c.key[2:]
    assert keys[0:1].tobytes() == want.tobytes(), "key bytes (pad included) differ"
    v = vals[0]
    assert (int(v["packets"]), int(v["bytes"])) == (1, n)
    assert int(v["tcp_flags"]) == c.tcp_flags
    assert (int(v["icmp_type"]), int(v["icmp_code"])) == c.icmp
    assert 0 < int(v["first_ns"]) <= int(v["last_ns"])


# ------------------------------------------------------------------ frames


def v4(proto, payload, vlans=(), **kw):
    return P.eth(P.ETH_IP, vlans) + P.ipv4(A4, B4, proto, payload, **kw)


def v6(nexthdr, payload, vlans=()):
    return P.eth(P.ETH_IPV6, vlans) + P.ipv6(A6, B6, nexthdr, payload)


TCP_HDR = P.l4(P.TCP, 40000, 443, flags=0x12)
UDP_HDR = P.l4(P.UDP, 5353, 53)
# bytes that read as ports 0x1111/0x2222 and TCP flags 0x3f if parsed as L4
LOOKS_LIKE_L4 = struct.pack("!HH", 0x1111, 0x2222) + b"\x3f" * 28


def with_df(frame: bytes, off: int = 14) -> bytes:
    b = bytearray(frame)
    b[off + 6] |= 0x40  # IPv4 Don't Fragment
    return bytes(b)


CASES = {
    # --- IPv4 L4
    "v4_tcp": Case(P.pad(v4(P.TCP, TCP_HDR)), "out_ipv4", "proto_tcp", key=(A4, B4, 40000, 443, 6), tcp_flags=0x12),
    "v4_udp": Case(P.pad(v4(P.UDP, UDP_HDR)), "out_ipv4", "proto_udp", key=(A4, B4, 5353, 53, 17)),
    "v4_sctp": Case(
        P.pad(v4(P.SCTP, P.l4(P.SCTP, 2905, 2906))), "out_ipv4", "proto_sctp", key=(A4, B4, 2905, 2906, 132)
    ),
    "v4_icmp": Case(
        P.pad(v4(P.ICMP, P.l4(P.ICMP, icmp=(3, 13)))), "out_ipv4", "proto_icmp", key=(A4, B4, 0, 0, 1), icmp=(3, 13)
    ),
    "v4_gre": Case(P.pad(v4(P.GRE, LOOKS_LIKE_L4)), "out_ipv4", "proto_other", key=(A4, B4, 0, 0, 47)),
    "v4_ah": Case(P.pad(v4(AH, LOOKS_LIKE_L4)), "out_ipv4", "proto_other", key=(A4, B4, 0, 0, AH)),
    "v4_esp": Case(P.pad(v4(ESP, LOOKS_LIKE_L4)), "out_ipv4", "proto_other", key=(A4, B4, 0, 0, ESP)),
    "v4_big": Case(P.frame(A4, B4, P.UDP, 1, 2, size=1514), "out_ipv4", "proto_udp", key=(A4, B4, 1, 2, 17)),
    # --- IPv6 L4
    "v6_tcp": Case(v6(P.TCP, TCP_HDR), "out_ipv6", "proto_tcp", key=(A6, B6, 40000, 443, 6), tcp_flags=0x12),
    "v6_udp": Case(v6(P.UDP, UDP_HDR), "out_ipv6", "proto_udp", key=(A6, B6, 5353, 53, 17)),
    "v6_sctp": Case(v6(P.SCTP, P.l4(P.SCTP, 7, 9)), "out_ipv6", "proto_sctp", key=(A6, B6, 7, 9, 132)),
    "v6_icmpv6": Case(
        v6(P.ICMPV6, P.l4(P.ICMPV6, icmp=(135, 0))), "out_ipv6", "proto_icmpv6", key=(A6, B6, 0, 0, 58), icmp=(135, 0)
    ),
    "v6_esp": Case(v6(ESP, LOOKS_LIKE_L4), "out_ipv6", "proto_other", key=(A6, B6, 0, 0, ESP)),
    "v6_ah_terminal": Case(  # AH ends the walk even though its next header says TCP
        v6(AH, bytes([P.TCP, 4]) + LOOKS_LIKE_L4), "out_ipv6", "proto_other", key=(A6, B6, 0, 0, AH)
    ),
    "v6_gre_after_hop": Case(
        v6(HOP, P.ext(P.GRE) + LOOKS_LIKE_L4), "out_ipv6", "proto_other", key=(A6, B6, 0, 0, P.GRE)
    ),
    # --- VLAN
    "dot1q": Case(P.pad(v4(P.UDP, UDP_HDR, vlans=(100,))), "out_ipv4", "proto_udp", key=(A4, B4, 5353, 53, 17)),
    "qinq": Case(
        P.pad(v4(P.TCP, TCP_HDR, vlans=(100, 200))),
        "out_ipv4",
        "proto_tcp",
        key=(A4, B4, 40000, 443, 6),
        tcp_flags=0x12,
    ),
    "qinq_8100_8100": Case(
        P.eth(P.ETH_IPV6, (5, 6), outer_tpid=P.ETH_8021Q) + P.ipv6(A6, B6, P.UDP, UDP_HDR),
        "out_ipv6",
        "proto_udp",
        key=(A6, B6, 5353, 53, 17),
    ),
    "vlan_3_tags": Case(
        P.pad(v4(P.UDP, UDP_HDR, vlans=(1, 2, 3))), "out_ipv4", "proto_udp", key=(A4, B4, 5353, 53, 17)
    ),
    "vlan_4_tags": Case(
        v6(P.TCP, TCP_HDR, vlans=(1, 2, 3, 4)), "out_ipv6", "proto_tcp", key=(A6, B6, 40000, 443, 6), tcp_flags=0x12
    ),
    "vlan_5_tags": Case(P.pad(v4(P.UDP, UDP_HDR, vlans=(1, 2, 3, 4, 5))), "out_vlan_depth"),
    "vlan_trunc_fourth": Case(P.eth(P.ETH_IP, (1, 2, 3, 4))[:29], "out_trunc_vlan"),
    # --- PPPoE session (ethertype 0x8864), PPP IPv4 0x0021 / IPv6 0x0057
    "pppoe_v4_tcp": Case(
        P.pad(P.eth(P.ETH_PPPOE_SES) + P.pppoe(P.PPP_IP, P.ipv4(A4, B4, P.TCP, TCP_HDR))),
        "out_ipv4",
        "proto_tcp",
        key=(A4, B4, 40000, 443, 6),
        tcp_flags=0x12,
    ),
    "pppoe_v6_udp": Case(
        P.eth(P.ETH_PPPOE_SES) + P.pppoe(P.PPP_IPV6, P.ipv6(A6, B6, P.UDP, UDP_HDR)),
        "out_ipv6",
        "proto_udp",
        key=(A6, B6, 5353, 53, 17),
    ),
    "pppoe_under_qinq": Case(
        P.pad(P.eth(P.ETH_PPPOE_SES, (100, 200)) + P.pppoe(P.PPP_IP, P.ipv4(A4, B4, P.UDP, UDP_HDR))),
        "out_ipv4",
        "proto_udp",
        key=(A4, B4, 5353, 53, 17),
    ),
    "pppoe_lcp": Case(P.pad(P.eth(P.ETH_PPPOE_SES) + P.pppoe(0xC021, b"\x09\x01\x00\x08" + b"\x00" * 4)), "out_non_ip"),
    "pppoe_discovery": Case(P.pad(P.eth(0x8863) + b"\x11\x09\x00\x00\x00\x00"), "out_non_ip"),
    "pppoe_hdr_trunc": Case(P.eth(P.ETH_PPPOE_SES) + P.pppoe(P.PPP_IP, b"")[:7], "out_trunc_vlan"),
    "pppoe_ip_trunc": Case(P.eth(P.ETH_PPPOE_SES) + P.pppoe(P.PPP_IP, b"\x45" * 19), "out_trunc_ip"),
    # --- MPLS (0x8847 / 0x8848): labels to the bottom of stack, then the version nibble
    "mpls_v4_udp": Case(
        P.pad(P.eth(P.ETH_MPLS) + P.mpls((16,), P.ipv4(A4, B4, P.UDP, UDP_HDR))),
        "out_ipv4",
        "proto_udp",
        key=(A4, B4, 5353, 53, 17),
    ),
    "mpls_3_labels_v6_tcp": Case(
        P.eth(P.ETH_MPLS) + P.mpls((16, 17, 18), P.ipv6(A6, B6, P.TCP, TCP_HDR)),
        "out_ipv6",
        "proto_tcp",
        key=(A6, B6, 40000, 443, 6),
        tcp_flags=0x12,
    ),
    "mpls_mc_under_vlan": Case(
        P.pad(P.eth(P.ETH_MPLS_MC, (7,)) + P.mpls((100, 200), P.ipv4(A4, B4, P.ICMP, P.l4(P.ICMP, icmp=(8, 0))))),
        "out_ipv4",
        "proto_icmp",
        key=(A4, B4, 0, 0, 1),
        icmp=(8, 0),
    ),
    "mpls_8_labels": Case(
        P.eth(P.ETH_MPLS) + P.mpls(tuple(range(16, 24)), P.ipv4(A4, B4, P.UDP, UDP_HDR)),
        "out_ipv4",
        "proto_udp",
        key=(A4, B4, 5353, 53, 17),
    ),
    "mpls_9_labels": Case(
        P.eth(P.ETH_MPLS) + P.mpls(tuple(range(16, 25)), P.ipv4(A4, B4, P.UDP, UDP_HDR)), "out_vlan_depth"
    ),
    "mpls_no_bottom_cut": Case(P.eth(P.ETH_MPLS) + P.mpls((16, 17), b"", bottom=False), "out_trunc_vlan"),
    "mpls_label_trunc": Case(P.eth(P.ETH_MPLS) + P.mpls((16,), b"")[:3], "out_trunc_vlan"),
    "mpls_nothing_after": Case(P.eth(P.ETH_MPLS) + P.mpls((16,), b""), "out_trunc_ip"),
    "mpls_pw_control_word": Case(P.pad(P.eth(P.ETH_MPLS) + P.mpls((16,), b"\x00" * 4 + P.eth(P.ETH_IP))), "out_non_ip"),
    "mpls_v4_hdr_trunc": Case(P.eth(P.ETH_MPLS) + P.mpls((16,), P.ipv4(A4, B4, P.UDP, UDP_HDR)[:12]), "out_trunc_ip"),
    "vlan_trunc": Case(P.eth(P.ETH_8021Q)[:14] + b"\x00\x64", "out_trunc_vlan"),
    "vlan_trunc_second": Case(P.eth(P.ETH_IP, (1, 2))[:18] + b"\x00\x02\x81", "out_trunc_vlan"),
    "vlan_then_arp": Case(P.pad(P.eth(P.ETH_ARP, (7,)) + b"\x00" * 28), "out_non_ip"),
    # --- non-IP and minimum sizes
    "arp": Case(P.pad(P.eth(P.ETH_ARP) + b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20), "out_non_ip"),
    "min14_zero_type": Case(b"\x00" * 14, "out_non_ip"),
    "min14_ipv4": Case(P.eth(P.ETH_IP), "out_trunc_ip"),
    "min14_ipv6": Case(P.eth(P.ETH_IPV6), "out_trunc_ip"),
    "min14_vlan": Case(P.eth(P.ETH_8021Q), "out_trunc_vlan"),
    "min14_qinq": Case(P.eth(P.ETH_8021AD), "out_trunc_vlan"),
    # --- IPv4 header problems
    "v4_hdr_trunc": Case(v4(P.TCP, TCP_HDR)[: 14 + 19], "out_trunc_ip"),
    "v4_ihl4": Case(P.pad(v4(P.TCP, TCP_HDR, ihl=4)), "out_bad_ipv4"),
    "v4_ihl0": Case(P.pad(v4(P.TCP, TCP_HDR, ihl=0)), "out_bad_ipv4"),
    "v4_version6": Case(P.pad(v4(P.TCP, TCP_HDR, version=6)), "out_bad_ipv4"),
    "v6_version4": Case(v6(P.TCP, TCP_HDR)[:14] + bytes([0x45]) + v6(P.TCP, TCP_HDR)[15:], "out_bad_ipv6"),
    "v6_hdr_trunc": Case(v6(P.TCP, TCP_HDR)[: 14 + 39], "out_trunc_ip"),
    "v4_options": Case(
        P.pad(v4(P.TCP, TCP_HDR, options=b"\x01\x01\x01\x00" + b"\x94\x04\x00\x00")),
        "out_ipv4",
        "proto_tcp",
        {"ipv4_options"},
        key=(A4, B4, 40000, 443, 6),
        tcp_flags=0x12,
    ),
    "v4_options_max": Case(
        v4(P.UDP, UDP_HDR, options=b"\x01" * 40), "out_ipv4", "proto_udp", {"ipv4_options"}, key=(A4, B4, 5353, 53, 17)
    ),
    "v4_options_cut": Case(  # IHL 15 = 60 bytes, frame ends inside the options
        v4(P.TCP, b"", options=b"\x01" * 16, ihl=15) + b"\x01" * 8, "out_trunc_ip"
    ),
    "v4_options_no_l4": Case(  # options end exactly at the frame end: header whole, TCP missing
        v4(P.TCP, b"", options=b"\x01" * 28),
        "out_ipv4",
        "proto_tcp",
        {"ipv4_options", "l4_trunc"},
        key=(A4, B4, 0, 0, 6),
    ),
    # --- IPv4 fragments
    "v4_frag_first": Case(
        P.pad(v4(P.UDP, UDP_HDR + b"x" * 16, more_fragments=True)),
        "out_ipv4",
        "proto_udp",
        {"frag_first"},
        key=(A4, B4, 5353, 53, 17),
    ),
    "v4_frag_later": Case(
        P.pad(v4(P.TCP, LOOKS_LIKE_L4, frag_offset=1480, more_fragments=True)),
        "out_ipv4",
        "proto_tcp",
        {"frag_later"},
        key=(A4, B4, 0, 0, 6),
    ),
    "v4_frag_last": Case(  # offset > 0, MF = 0: still a later fragment
        P.pad(v4(P.UDP, LOOKS_LIKE_L4, frag_offset=8)), "out_ipv4", "proto_udp", {"frag_later"}, key=(A4, B4, 0, 0, 17)
    ),
    "v4_frag_later_short": Case(  # later fragment too short for ports: not an L4 truncation
        v4(P.TCP, b"\x11", frag_offset=16), "out_ipv4", "proto_tcp", {"frag_later"}, key=(A4, B4, 0, 0, 6)
    ),
    "v4_df_not_frag": Case(with_df(P.pad(v4(P.UDP, UDP_HDR))), "out_ipv4", "proto_udp", key=(A4, B4, 5353, 53, 17)),
    "v4_frag_later_options": Case(
        P.pad(v4(P.ICMP, LOOKS_LIKE_L4, options=b"\x01" * 4, frag_offset=64)),
        "out_ipv4",
        "proto_icmp",
        {"frag_later", "ipv4_options"},
        key=(A4, B4, 0, 0, 1),
    ),
    # --- IPv6 extension headers
    "v6_hop_rt_dst_tcp": Case(
        v6(HOP, P.ext(ROUTING) + P.ext(DSTOPTS, 1) + P.ext(P.TCP, 2) + TCP_HDR),
        "out_ipv6",
        "proto_tcp",
        key=(A6, B6, 40000, 443, 6),
        tcp_flags=0x12,
    ),
    "v6_six_ext_udp": Case(  # NS_MAX_IPV6_EXT headers exactly: still parsed
        v6(
            HOP,
            P.ext(DSTOPTS) + P.ext(ROUTING) + P.ext(DSTOPTS) + P.ext(FRAG) + P.frag6(DSTOPTS) + P.ext(P.UDP) + UDP_HDR,
        ),
        "out_ipv6",
        "proto_udp",
        key=(A6, B6, 5353, 53, 17),
    ),
    "v6_ext_limit": Case(  # seven: the 7th header's type is the protocol
        v6(HOP, P.ext(DSTOPTS) * 6 + P.ext(P.UDP) + UDP_HDR),
        "out_ipv6",
        "proto_other",
        {"ipv6_ext_limit"},
        key=(A6, B6, 0, 0, DSTOPTS),
    ),
    "v6_chain_cut_between": Case(  # hop-by-hop whole, routing header absent
        v6(HOP, P.ext(ROUTING)), "out_ipv6", "proto_other", {"ipv6_ext_trunc"}, key=(A6, B6, 0, 0, ROUTING)
    ),
    "v6_chain_cut_inside": Case(  # hop-by-hop of 24 bytes, 10 present; its next header (TCP) was read
        v6(HOP, P.ext(P.TCP, 2)[:10]), "out_ipv6", "proto_tcp", {"ipv6_ext_trunc"}, key=(A6, B6, 0, 0, 6)
    ),
    "v6_chain_cut_one_byte": Case(
        v6(HOP, P.ext(DSTOPTS) + b"\x06"), "out_ipv6", "proto_other", {"ipv6_ext_trunc"}, key=(A6, B6, 0, 0, DSTOPTS)
    ),
    "v6_frag_cut": Case(
        v6(FRAG, P.frag6(P.UDP)[:7]), "out_ipv6", "proto_other", {"ipv6_ext_trunc"}, key=(A6, B6, 0, 0, FRAG)
    ),
    "v6_frag_first": Case(
        v6(FRAG, P.frag6(P.TCP, 0, more=True) + TCP_HDR),
        "out_ipv6",
        "proto_tcp",
        {"frag_first"},
        key=(A6, B6, 40000, 443, 6),
        tcp_flags=0x12,
    ),
    "v6_frag_later": Case(
        v6(FRAG, P.frag6(P.TCP, 1448, more=True) + LOOKS_LIKE_L4),
        "out_ipv6",
        "proto_tcp",
        {"frag_later"},
        key=(A6, B6, 0, 0, 6),
    ),
    "v6_frag_last": Case(
        v6(HOP, P.ext(FRAG) + P.frag6(P.UDP, 8, more=False) + LOOKS_LIKE_L4),
        "out_ipv6",
        "proto_udp",
        {"frag_later"},
        key=(A6, B6, 0, 0, 17),
    ),
    "v6_atomic_frag": Case(  # offset 0, M = 0: not a fragment
        v6(FRAG, P.frag6(P.UDP, 0, more=False) + UDP_HDR), "out_ipv6", "proto_udp", key=(A6, B6, 5353, 53, 17)
    ),
    "v6_frag_first_then_dstopts": Case(
        v6(FRAG, P.frag6(DSTOPTS, 0, more=True) + P.ext(P.UDP) + UDP_HDR),
        "out_ipv6",
        "proto_udp",
        {"frag_first"},
        key=(A6, B6, 5353, 53, 17),
    ),
    # A later fragment's payload is the middle of the original packet, not a
    # header: its fragment header's next header is the protocol, even when that
    # names an extension header, and the payload is never walked.
    "v6_frag_later_next_dstopts": Case(
        v6(FRAG, P.frag6(DSTOPTS, 1448, more=True) + bytes([P.TCP, 0]) + LOOKS_LIKE_L4),
        "out_ipv6",
        "proto_other",
        {"frag_later"},
        key=(A6, B6, 0, 0, DSTOPTS),
    ),
    "v6_frag_later_short_payload": Case(
        v6(FRAG, P.frag6(ROUTING, 64, more=True) + b"\x06"),
        "out_ipv6",
        "proto_other",
        {"frag_later"},
        key=(A6, B6, 0, 0, ROUTING),
    ),
    # --- L4 cut off (l4_trunc): ports when their 4 bytes are inside frame and
    # datagram (as tshark reads them), else 0/0; TCP flags only from a whole header
    "v4_tcp_trunc": Case(v4(P.TCP, TCP_HDR[:19]), "out_ipv4", "proto_tcp", {"l4_trunc"}, key=(A4, B4, 40000, 443, 6)),
    "v4_udp_trunc": Case(v4(P.UDP, UDP_HDR[:7]), "out_ipv4", "proto_udp", {"l4_trunc"}, key=(A4, B4, 5353, 53, 17)),
    "v4_udp_ports_only": Case(
        v4(P.UDP, UDP_HDR[:4]), "out_ipv4", "proto_udp", {"l4_trunc"}, key=(A4, B4, 5353, 53, 17)
    ),
    "v4_tcp_3_bytes": Case(v4(P.TCP, TCP_HDR[:3]), "out_ipv4", "proto_tcp", {"l4_trunc"}, key=(A4, B4, 0, 0, 6)),
    # The IP length field bounds the L4 header: Ethernet padding is not a header.
    "v4_tcp_trunc_padded": Case(
        P.pad(v4(P.TCP, TCP_HDR[:12]), 80), "out_ipv4", "proto_tcp", {"l4_trunc"}, key=(A4, B4, 40000, 443, 6)
    ),
    "v4_udp_3_bytes_padded": Case(
        P.pad(v4(P.UDP, UDP_HDR[:3]), 80), "out_ipv4", "proto_udp", {"l4_trunc"}, key=(A4, B4, 0, 0, 17)
    ),
    "v6_udp_trunc_padded": Case(
        P.pad(v6(P.UDP, UDP_HDR[:6]), 80), "out_ipv6", "proto_udp", {"l4_trunc"}, key=(A6, B6, 5353, 53, 17)
    ),
    "v6_udp_3_bytes_padded": Case(
        P.pad(v6(P.UDP, UDP_HDR[:3]), 80), "out_ipv6", "proto_udp", {"l4_trunc"}, key=(A6, B6, 0, 0, 17)
    ),
    "v4_udp_padded_whole": Case(P.pad(v4(P.UDP, UDP_HDR)), "out_ipv4", "proto_udp", key=(A4, B4, 5353, 53, 17)),
    # total length 0 (TSO / BIG TCP): the frame bounds the header
    "v4_totlen_zero": Case(
        v4(P.TCP, TCP_HDR)[:16] + b"\x00\x00" + v4(P.TCP, TCP_HDR)[18:],
        "out_ipv4",
        "proto_tcp",
        key=(A4, B4, 40000, 443, 6),
        tcp_flags=0x12,
    ),
    "v4_sctp_trunc": Case(
        v4(P.SCTP, P.l4(P.SCTP, 1, 2)[:11]), "out_ipv4", "proto_sctp", {"l4_trunc"}, key=(A4, B4, 1, 2, 132)
    ),
    "v4_icmp_trunc": Case(
        v4(P.ICMP, P.l4(P.ICMP, icmp=(8, 0))[:3]), "out_ipv4", "proto_icmp", {"l4_trunc"}, key=(A4, B4, 0, 0, 1)
    ),
    "v6_tcp_trunc": Case(v6(P.TCP, TCP_HDR[:4]), "out_ipv6", "proto_tcp", {"l4_trunc"}, key=(A6, B6, 40000, 443, 6)),
    "v6_tcp_none": Case(v6(P.TCP, b""), "out_ipv6", "proto_tcp", {"l4_trunc"}, key=(A6, B6, 0, 0, 6)),
    "v6_ext_then_udp_trunc": Case(
        v6(HOP, P.ext(P.UDP) + UDP_HDR[:6]), "out_ipv6", "proto_udp", {"l4_trunc"}, key=(A6, B6, 5353, 53, 17)
    ),
    "v4_first_frag_tcp_trunc": Case(
        v4(P.TCP, TCP_HDR[:12], more_fragments=True),
        "out_ipv4",
        "proto_tcp",
        {"frag_first", "l4_trunc"},
        key=(A4, B4, 40000, 443, 6),
    ),
}


@pytest.mark.root
@pytest.mark.parametrize("name", list(CASES))
def test_frame(prog, name, tmp_path):
    check(prog, CASES[name], tmp_path)


@pytest.mark.root
def test_frames_have_the_lengths_claimed():
    """Guard the table above: the 'truncated' frames really are as short as
    their names say (a builder change must not silently turn them whole)."""
    assert len(CASES["v4_hdr_trunc"].frame) == 14 + 19
    assert len(CASES["v4_options_cut"].frame) < 14 + 60
    assert len(CASES["v4_tcp_trunc"].frame) == 14 + 20 + 19
    assert len(CASES["v6_hdr_trunc"].frame) == 14 + 39
    assert len(CASES["vlan_trunc"].frame) == 16
    for name in ("min14_zero_type", "min14_ipv4", "min14_vlan"):
        assert len(CASES[name].frame) == 14


@pytest.mark.root
@pytest.mark.parametrize("n", [0, 1, 13])
def test_shorter_than_ethernet_rejected(prog, n):
    """XDP test runs need ETH_HLEN bytes: shorter input is EINVAL and the
    program does not run (nothing counted)."""
    s = prog.active
    prog.take_totals(s)
    with pytest.raises(libbpf.BpfError) as ei:
        libbpf.test_run(prog.prog_fd, b"\x08" * n)
    assert ei.value.errno == errno.EINVAL
    assert not prog.take_totals(s).any()


@pytest.mark.root
def test_tcp_flags_or_and_first_icmp(prog):
    """A flow's tcp_flags are the OR over its packets; icmp type/code are the
    first packet's."""
    for fl in (0x02, 0x10, 0x18, 0x01):
        libbpf.test_run(prog.prog_fd, P.pad(v4(P.TCP, P.l4(P.TCP, 1, 2, flags=fl))))
    for ic in ((8, 0), (0, 0), (3, 3)):
        libbpf.test_run(prog.prog_fd, P.pad(v4(P.ICMP, P.l4(P.ICMP, icmp=ic))))
    s = prog.flip()
    flows = prog.take_flows(s)
    tot = prog.take_totals(s)
    assert tot[abi.C["all"], 0] == 7
    by_proto = {int(f["key"]["proto"]): f for f in flows}
    assert set(by_proto) == {6, 1}
    tcp, icmp = by_proto[6], by_proto[1]
    assert int(tcp["packets"]) == 4 and int(tcp["tcp_flags"]) == 0x1B
    assert int(icmp["packets"]) == 3
    assert (int(icmp["icmp_type"]), int(icmp["icmp_code"])) == (8, 0)


@pytest.mark.root
def test_every_truncation_kernel_equals_offline(prog, tmp_path):
    """Every case frame cut at every length from 14 bytes: the kernel's totals
    and flows equal the offline analyzer's, bit for bit."""
    frames = [c.frame[:n] for c in CASES.values() for n in range(14, len(c.frame) + 1)]
    for f in frames:
        libbpf.test_run(prog.prog_fd, f)
    s = prog.flip()
    tot, flows = prog.take_totals(s), prog.take_flows(s)
    assert tot[abi.C["flow_untracked"], 0] == 0
    off = offline_of(tmp_path, frames)
    assert np.array_equal(tot, off.totals)
    assert flow_table(flows["key"], flows) == flow_table(off.flows["key"], off.flows)


# ------------------------------------------------------------------ fuzz

SEEDS = [c.frame for c in CASES.values()]


@st.composite
def frames(draw):
    how = draw(st.sampled_from(["random", "mutate", "truncate", "both", "ethertype"]))
    if how == "random":
        return draw(st.binary(min_size=14, max_size=300))
    f = bytearray(draw(st.sampled_from(SEEDS)))
    if how == "ethertype":
        # a random IP/VLAN/PPPoE/MPLS ethertype in front of random bytes
        et = draw(
            st.sampled_from(
                [P.ETH_IP, P.ETH_IPV6, P.ETH_8021Q, P.ETH_8021AD, P.ETH_PPPOE_SES, P.ETH_MPLS, P.ETH_MPLS_MC]
            )
        )
        return P.eth(et) + draw(st.binary(max_size=200))
    if how in ("mutate", "both"):
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(f) - 1))
            f[i] = draw(st.integers(0, 255))
    if how in ("truncate", "both"):
        f = f[: draw(st.integers(14, len(f)))]
    return bytes(f)


@pytest.mark.root
@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=frames())
def test_fuzz_invariants(prog, frame, tmp_path):
    tot, keys, vals = run(prog, frame)
    off = offline_of(tmp_path, [frame])  # the offline parser agrees on every frame
    assert np.array_equal(tot, off.totals)
    assert flow_table(keys, vals) == flow_table(off.flows["key"], off.flows)
    n = len(frame)
    pk = tot[:, 0]
    assert tuple(tot[abi.C["all"]]) == (1, n)
    outs = [abi.C[o] for o in abi.OUTCOMES]
    assert pk[outs].sum() == 1 and tot[outs, 1].sum() == n
    ip = pk[abi.C["out_ipv4"]] + pk[abi.C["out_ipv6"]]
    protos = [abi.C[p] for p in abi.PROTO_CLASSES]
    assert pk[protos].sum() == ip
    assert all(pk[abi.C[e]] <= ip for e in EVENTS)
    assert pk[abi.C["frag_first"]] + pk[abi.C["frag_later"]] <= 1
    assert len(keys) == ip, "an IP frame makes exactly one flow, anything else none"
    if ip:
        k = keys[0]
        assert not k["pad"].any()
        assert vals["packets"].sum() == 1 and vals["bytes"].sum() == n
        if pk[abi.C["out_ipv4"]]:
            assert P.mapped(P.addr_str(k["src"])) == bytes(k["src"]) and bytes(k["src"][10:12]) == b"\xff\xff"
        if k["sport"] or k["dport"]:
            # ports only from the first 4 bytes of an L4 header, never a later fragment
            assert not pk[abi.C["frag_later"]]
            assert pk[abi.C["proto_tcp"]] + pk[abi.C["proto_udp"]] + pk[abi.C["proto_sctp"]] == 1
