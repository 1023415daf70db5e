"""Crafted captures of what the corpus lacks, against tshark (the corpus oracle).

* Link types 12 and 14 (DLT_RAW as the BSDs number it): read as raw IPv4/IPv6,
  exactly like link type 101.
* Deep VLAN stacks, PPPoE and MPLS under tags (no capture of the corpus has
  3 or 4 tags, or PPPoE/MPLS under a tag): the flows tshark finds under the
  encapsulations the parser decodes (conftest.ONLY_ENCAP).
* pcapng sections of versions other than 1.0 and 1.2: refused in one line, as
  libpcap and tshark refuse them; a later such section stops the reading there.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess

import numpy as np
import pytest

from netspectra import abi
from netspectra import packets as P
from netspectra.offline import OfflineError, analyze
from tests.helpers.pcapfile import write_pcap

from .conftest import require

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


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _section(version: tuple[int, int], frame: bytes) -> bytes:
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, *version, -1))
    idb = _block(1, struct.pack("<HHI", 1, 0, 0))
    epb = _block(6, struct.pack("<IIIII", 0, 0, 0, len(frame), len(frame)) + frame)
    return shb + idb + epb


def _v4(sport: int, proto: int = P.UDP) -> bytes:
    return P.ipv4("10.0.0.1", "10.0.0.2", proto, P.l4(proto, sport, 53))


ENCAP_FRAMES = [
    P.eth(P.ETH_IP, (1, 2, 3)) + _v4(3),
    P.eth(P.ETH_IP, (1, 2, 3, 4)) + _v4(4),
    P.eth(P.ETH_IP, (1, 2, 3, 4, 5)) + _v4(5),  # fifth tag: non-IP for both
    P.eth(P.ETH_PPPOE_SES, (10, 20)) + P.pppoe(P.PPP_IP, _v4(6, P.TCP)),
    P.eth(P.ETH_PPPOE_SES, (10,))
    + P.pppoe(P.PPP_IPV6, P.ipv6("2001:db8::1", "2001:db8::2", P.UDP, P.l4(P.UDP, 7, 53))),
    P.eth(P.ETH_MPLS, (30,)) + P.mpls((100, 200), _v4(8)),
    P.eth(P.ETH_MPLS) + P.mpls((100, 200, 300), P.ipv6("2001:db8::1", "2001:db8::3", P.TCP, P.l4(P.TCP, 9, 80))),
]


def test_deep_vlan_pppoe_mpls_like_tshark(tmp_path, oracle):
    path = write_pcap(tmp_path / "encap.pcap", ENCAP_FRAMES)
    rep = analyze([str(path)])
    orc = oracle.run_on(path)
    assert orc["read_complete"]
    assert flows_of(rep.overall) == oracle_flows(orc)
    assert len(oracle_flows(orc)) == 6
    t = rep.overall.totals
    assert int(t[abi.C["out_vlan_depth"], 0]) == orc["totals"]["non_ip_packets"] == 1


def tshark_packets(path) -> tuple[int, bool]:
    """(packets tshark reads, whether it read the whole file)."""
    tshark = shutil.which("tshark")
    require(tshark is not None, "tshark not installed")
    r = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.number"], capture_output=True, text=True)
    return len(r.stdout.split()), r.returncode == 0


FRAME = P.frame("10.0.0.1", "10.0.0.2", P.UDP, 1, 2)


@pytest.mark.parametrize("version", [(1, 1), (1, 3), (2, 0), (0, 1)])
def test_pcapng_unsupported_version_refused(version, tmp_path):
    path = tmp_path / "v.pcapng"
    path.write_bytes(_section(version, FRAME))
    with pytest.raises(OfflineError) as e:
        analyze([str(path)])
    assert str(e.value) == f"{path}: byte 12: unsupported pcapng version {version[0]}.{version[1]}"
    assert tshark_packets(path) == (0, False)


@pytest.mark.parametrize("version", [(1, 1), (2, 0)])
def test_pcapng_later_section_unsupported_version_stops_there(version, tmp_path):
    path = tmp_path / "v.pcapng"
    first = _section((1, 0), FRAME)
    path.write_bytes(first + _section(version, FRAME))
    rep = analyze([str(path)])
    assert rep.errors == [f"{path}: byte {len(first) + 12}: unsupported pcapng version {version[0]}.{version[1]}"]
    assert rep.files[0]["packets"] == 1
    assert tshark_packets(path) == (1, False)


@pytest.mark.parametrize("version", [(1, 0), (1, 2)])
def test_pcapng_versions_read(version, tmp_path):
    path = tmp_path / "v.pcapng"
    path.write_bytes(_section(version, FRAME) + _section(version, FRAME))
    rep = analyze([str(path)])
    assert rep.errors == [] and rep.files[0]["packets"] == 2
    assert tshark_packets(path) == (2, True)
