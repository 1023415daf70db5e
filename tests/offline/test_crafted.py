"""Crafted captures of what the corpus lacks, against tshark (the corpus oracle).

* Link types 12 and 14 (DLT_RAW as the BSDs number it): read as raw IPv4/IPv6,
  exactly like link type 101.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from netspectra import abi
from netspectra import packets as P
from netspectra.offline import analyze
from tests.helpers.pcapfile import write_pcap

RAW_FRAMES = [
    P.ipv4("10.0.0.1", "10.0.0.2", P.TCP, P.l4(P.TCP, 1000, 80)),
    P.ipv4("10.0.0.1", "10.0.0.2", P.TCP, P.l4(P.TCP, 1000, 80, flags=0x10) + b"x" * 100),
    P.ipv6("2001:db8::1", "2001:db8::2", P.UDP, P.l4(P.UDP, 5353, 53)),
    P.ipv4("10.0.0.1", "10.0.0.3", P.UDP, P.l4(P.UDP, 1, 2))[:30],  # UDP cut after its ports
    P.ipv4("10.0.0.9", "10.0.0.2", P.ICMP, P.l4(P.ICMP, icmp=(8, 0))),
    b"\x00" * 20,  # no IP version: non-IP
]


def addr(b) -> str:
    ip = ipaddress.IPv6Address(bytes(b))
    return str(ip.ipv4_mapped or ip)


def flows_of(snap) -> dict:
    f = snap.flows
    return {
        (addr(k["src"]), addr(k["dst"]), int(k["proto"]), int(k["sport"]), int(k["dport"])): [int(p), int(b)]
        for k, p, b in zip(f["key"], f["packets"], f["bytes"])
    }


def oracle_flows(orc: dict) -> dict:
    return {
        (
            str(ipaddress.ip_address(f["src"])),
            str(ipaddress.ip_address(f["dst"])),
            f["proto"],
            f["sport"],
            f["dport"],
        ): [
            f["packets"],
            f["bytes_frame"],
        ]
        for f in orc["flows"]
    }


@pytest.mark.parametrize("linktype", [12, 14])
def test_bsd_raw_linktypes_read_as_raw_ip(linktype, tmp_path, oracle):
    path = write_pcap(tmp_path / f"raw{linktype}.pcap", RAW_FRAMES, linktype)
    rep = analyze([str(path)])
    assert rep.skipped == {} and rep.errors == []
    assert rep.files[0]["linktypes"] == [linktype]
    # exactly what link type 101 gives
    ref = analyze([str(write_pcap(tmp_path / "raw101.pcap", RAW_FRAMES, 101))]).overall
    assert np.array_equal(rep.overall.totals, ref.totals)
    assert flows_of(rep.overall) == flows_of(ref)
    t = rep.overall.totals
    assert (int(t[abi.C["out_ipv4"], 0]), int(t[abi.C["out_ipv6"], 0]), int(t[abi.C["out_non_ip"], 0])) == (4, 1, 1)
    # and what tshark reads
    orc = oracle.run_on(path)
    assert orc["read_complete"] and orc["totals"]["packets"] == len(RAW_FRAMES)
    assert flows_of(rep.overall) == oracle_flows(orc)
    assert int(t[abi.C["out_non_ip"], 0]) == orc["totals"]["non_ip_packets"]
