"""Offline analysis (netspectra.offline) on synthetic captures written here
with struct: pcap (µs/ns, both byte orders), pcapng (sections, interfaces,
if_tsresol, EPB/SPB/PB), every supported link type, damage and epochs."""

from __future__ import annotations

import json
import os
import struct
import time

import numpy as np
import pytest
from click.testing import CliRunner

from netspectra import abi
from netspectra import packets as P
from netspectra.cli import main
from netspectra.config import Config
from netspectra.offline import OfflineError, analyze
from netspectra.sketch import SketchSet
from netspectra.tasks import COUNTMIN, SUPERSPREAD, TaskSpec, layout

# ---------------------------------------------------------------- writers


def pcap(records, linktype=1, order="<", nano=False, snaplen=65535, version=(2, 4)) -> bytes:
    """records: (ts_ns, data[, orig_len])."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)
    for rec in records:
        ts, data = rec[0], rec[1]
        orig = rec[2] if len(rec) > 2 else len(data)
        sec, frac = divmod(ts, 10**9)
        if not nano:
            frac //= 1000
        out += struct.pack(order + "IIII", sec, frac, len(data), orig) + data
    return out


def _pad4(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def block(order, btype, body) -> bytes:
    body = _pad4(body)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def option(order, code, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + _pad4(value)


def shb(order="<") -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order, linktype, tsresol=None, snaplen=0, tsoffset=None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += option(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += option(order, 14, struct.pack(order + "q", tsoffset))
    if opts:
        opts += struct.pack(order + "HH", 0, 0)
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(order, ifid, ts_units, data, orig=None) -> bytes:
    orig = len(data) if orig is None else orig
    hdr = struct.pack(order + "IIIII", ifid, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), orig)
    return block(order, 6, hdr + data)


def spb(order, data, orig=None) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(data) if orig is None else orig) + data)


def old_pb(order, ifid, ts_units, data) -> bytes:
    hdr = struct.pack(order + "HHIIII", ifid, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data))
    return block(order, 2, hdr + data)


def write(tmp_path, name, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


# ---------------------------------------------------------------- frames

F_TCP = P.frame("10.0.0.1", "10.0.0.2", P.TCP, 1000, 80, size=100, flags=0x12)
F_UDP6 = P.frame("2001:db8::1", "2001:db8::2", P.UDP, 53, 5353, size=120)
F_ICMP = P.frame("10.0.0.3", "10.0.0.4", P.ICMP, size=74)
F_ARP = P.pad(P.eth(P.ETH_ARP) + b"\x00" * 28)
IP4 = F_TCP[14:]  # the same packet without its Ethernet header
IP6 = F_UDP6[14:]
K_TCP = ("10.0.0.1", "10.0.0.2", 6, 1000, 80)
K_UDP6 = ("2001:db8::1", "2001:db8::2", 17, 53, 5353)
K_ICMP = ("10.0.0.3", "10.0.0.4", 1, 0, 0)


def flows(snap) -> dict:
    out = {}
    for f in snap.flows:
        k = f["key"]
        key = (P.addr_str(k["src"]), P.addr_str(k["dst"]), int(k["proto"]), int(k["sport"]), int(k["dport"]))
        out[key] = (int(f["packets"]), int(f["bytes"]))
    return out


def key_of(k) -> np.ndarray:
    a = np.zeros(1, abi.KEY)
    a["src"] = np.frombuffer(P.mapped(k[0]), np.uint8)
    a["dst"] = np.frombuffer(P.mapped(k[1]), np.uint8)
    a["proto"], a["sport"], a["dport"] = k[2], k[3], k[4]
    return a


SMALL = Config(
    tasks=(
        TaskSpec("src", COUNTMIN, ("src_ip",), depth=3, width=256, hh_packets=3),
        TaskSpec("flow", COUNTMIN, ("src_ip", "dst_ip", "src_port", "dst_port", "proto"), depth=2, width=512),
        TaskSpec("spread", SUPERSPREAD, ("src_ip",), ("dst_ip",), width=1024, registers=16),
    )
)

# ---------------------------------------------------------------- pcap


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path, order, nano):
    t0 = 1_700_000_000_123_456_789
    recs = [(t0, F_TCP), (t0 + 1_000, F_TCP), (t0 + 2_000_000, F_UDP6), (t0 + 3_000_000, F_ARP), (t0 + 4, F_TCP[:10])]
    path = write(tmp_path, "a.pcap", pcap(recs, order=order, nano=nano))
    rep = analyze([path])
    s = rep.overall
    assert flows(s) == {K_TCP: (2, 200), K_UDP6: (1, 120)}
    assert s.counter("all") == (5, 200 + 120 + 60 + 10)
    assert s.counter("out_ipv4") == (2, 200)
    assert s.counter("out_ipv6") == (1, 120)
    assert s.counter("out_non_ip") == (1, 60)
    assert s.counter("out_trunc_eth") == (1, 10)
    assert s.counter("proto_tcp") == (2, 200)
    assert s.counter("proto_udp") == (1, 120)
    assert rep.errors == [] and rep.skipped == {}
    assert rep.files == [{"path": path, "format": "pcap", "packets": 5, "bytes": 390, "linktypes": [1]}]
    f = s.flows[0]
    unit = 1 if nano else 1000
    assert int(f["first_ns"]) == t0 // unit * unit
    assert int(f["last_ns"]) == (t0 + 1_000) // unit * unit
    assert int(f["tcp_flags"]) == 0x12


def test_bytes_are_original_length(tmp_path):
    """A record cut by snaplen counts its on-the-wire length (frame.len); a TCP
    header cut after its ports keeps them (as tshark), cut before them not."""
    recs = [(0, F_TCP[:54], 1514), (1, F_TCP[:40], 1514), (2, F_TCP[:37], 1514)]
    path = write(tmp_path, "snap.pcap", pcap(recs, snaplen=54))
    s = analyze([path]).overall
    assert flows(s) == {K_TCP: (2, 3028), ("10.0.0.1", "10.0.0.2", 6, 0, 0): (1, 1514)}
    assert s.counter("l4_trunc") == (2, 3028)


def test_orig_len_below_caplen_is_kept_and_flagged(tmp_path):
    path = write(tmp_path, "odd.pcap", pcap([(0, F_TCP, 50)]))
    rep = analyze([path])
    assert flows(rep.overall) == {K_TCP: (1, 50)}
    assert rep.files[0]["orig_len_below_caplen"] == 1


# ---------------------------------------------------------------- link types


def sll(data_ip, ethertype=0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\x00\x00", ethertype) + data_ip


def sll2(data_ip, ethertype=0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", ethertype, 0, 3, 1, 0, 6, b"\x02" * 6 + b"\x00\x00") + data_ip


@pytest.mark.parametrize(
    "lt, frames, expect, outcomes",
    [
        (113, [sll(IP4), sll(IP6, 0x86DD), sll(b"\x00" * 28, 0x0806), sll(b"")[:12]],
         {K_TCP: (1, 16 + len(IP4)), K_UDP6: (1, 16 + len(IP6))}, {"out_non_ip": 1, "out_trunc_eth": 1}),
        (276, [sll2(IP4), sll2(IP6, 0x86DD), sll2(b"")[:19]],
         {K_TCP: (1, 20 + len(IP4)), K_UDP6: (1, 20 + len(IP6))}, {"out_trunc_eth": 1}),
        (101, [IP4, IP6, b"\x50" + IP4[1:]], {K_TCP: (1, len(IP4)), K_UDP6: (1, len(IP6))}, {"out_non_ip": 1}),
        (228, [IP4, IP4[:10]], {K_TCP: (1, len(IP4))}, {"out_trunc_ip": 1}),
        (229, [IP6], {K_UDP6: (1, len(IP6))}, {}),
        (0, [struct.pack("<I", 2) + IP4, struct.pack(">I", 2) + IP4, struct.pack("<I", 30) + IP6,
             struct.pack("<I", 10) + IP6, struct.pack("<I", 7) + IP4, b"\x02\x00"],
         {K_TCP: (2, 8 + 2 * len(IP4)), K_UDP6: (2, 8 + 2 * len(IP6))}, {"out_non_ip": 1, "out_trunc_eth": 1}),
        (108, [struct.pack(">I", 2) + IP4, struct.pack(">I", 24) + IP6, struct.pack("<I", 2) + IP4],
         {K_TCP: (1, 4 + len(IP4)), K_UDP6: (1, 4 + len(IP6))}, {"out_non_ip": 1}),
    ],
    ids=["sll", "sll2", "raw", "ipv4", "ipv6", "null", "loop"],
)  # fmt: skip
def test_link_types(tmp_path, lt, frames, expect, outcomes):
    path = write(tmp_path, f"lt{lt}.pcap", pcap([(i, f) for i, f in enumerate(frames)], linktype=lt))
    rep = analyze([path])
    s = rep.overall
    assert flows(s) == expect
    assert s.counter("all") == (len(frames), sum(len(f) for f in frames))
    for name, n in outcomes.items():
        assert s.counter(name)[0] == n, name
    assert rep.skipped == {} and rep.errors == []


def test_unsupported_link_type_is_skipped_not_counted(tmp_path):
    frames = [b"\x00" * 40, b"\x00" * 60]
    path = write(tmp_path, "ppp.pcap", pcap([(0, frames[0]), (1, frames[1])], linktype=9))
    rep = analyze([path])
    assert rep.skipped == {9: [2, 100]}
    assert rep.overall.counter("all") == (0, 0)
    assert len(rep.overall.flows) == 0
    assert rep.files[0]["packets"] == 2 and rep.files[0]["linktypes"] == [9]


def test_linktype_fcs_bits_are_ignored(tmp_path):
    path = write(tmp_path, "fcs.pcap", pcap([(0, IP4)], linktype=101 | 0x30000000))
    assert flows(analyze([path]).overall) == {K_TCP: (1, len(IP4))}


# ---------------------------------------------------------------- pcapng


def test_pcapng_interfaces_resolutions_sections(tmp_path):
    base = 1_600_000_000
    data = (
        shb("<")
        + idb("<", 1, tsresol=9)  # Ethernet, ns
        + idb("<", 101, tsresol=0x80 | 10)  # raw IP, 2^-10 s
        + epb("<", 0, base * 10**9 + 5, F_TCP)
        + block("<", 0x0BAD, b"custom block, skipped")
        + epb("<", 1, base * 1024 + 512, IP6)  # base + 0.5 s
        + old_pb("<", 0, base * 10**9 + 7, F_ICMP)
        + spb("<", F_TCP)  # no timestamp: the previous packet's
        + shb(">")  # a second section, big-endian, its own interfaces
        + idb(">", 228, tsoffset=10)  # IPv4, µs, +10 s
        + epb(">", 0, base * 10**6 + 1, IP4)
    )
    path = write(tmp_path, "multi.pcapng", data)
    rep = analyze([path])
    s = rep.overall
    assert rep.errors == []
    assert flows(s) == {K_TCP: (3, 200 + len(IP4)), K_UDP6: (1, len(IP6)), K_ICMP: (1, 74)}
    assert rep.files == [
        {"path": path, "format": "pcapng", "packets": 5, "bytes": 274 + len(IP6) + len(IP4), "linktypes": [1, 101, 228]}
    ]
    by = {k: f for k, f in zip(flows(s), s.flows)}
    assert int(by[K_UDP6]["first_ns"]) == base * 10**9 + 500_000_000
    assert int(by[K_ICMP]["first_ns"]) == base * 10**9 + 7
    assert int(by[K_TCP]["first_ns"]) == base * 10**9 + 5
    assert int(by[K_TCP]["last_ns"]) == (base + 10) * 10**9 + 1000


def test_pcapng_snaplen_applies_to_simple_packet_block(tmp_path):
    data = shb() + idb("<", 1, snaplen=54) + spb("<", F_TCP[:56], orig=1000)
    s = analyze([write(tmp_path, "spb.pcapng", data)]).overall
    assert flows(s) == {K_TCP: (1, 1000)}


# ---------------------------------------------------------------- damage


def test_truncated_last_record_keeps_earlier_packets(tmp_path):
    data = pcap([(0, F_TCP), (1, F_UDP6), (2, F_TCP)])
    cut = len(data) - 30
    path = write(tmp_path, "trunc.pcap", data[:cut])
    rep = analyze([path])
    off = 24 + 2 * 16 + len(F_TCP) + len(F_UDP6)
    assert rep.errors == [f"{path}: byte {off}: truncated record ({cut - off} of {16 + len(F_TCP)} bytes)"]
    assert flows(rep.overall) == {K_TCP: (1, 100), K_UDP6: (1, 120)}
    assert rep.files[0]["packets"] == 2


def test_truncated_record_header(tmp_path):
    data = pcap([(0, F_TCP)]) + b"\x00" * 7
    path = write(tmp_path, "hdr.pcap", data)
    rep = analyze([path])
    assert rep.errors == [f"{path}: byte {24 + 16 + 100}: truncated record header (7 of 16 bytes)"]
    assert flows(rep.overall) == {K_TCP: (1, 100)}


@pytest.mark.parametrize(
    "data, msg",
    [
        (b"GIF89a" + b"\x00" * 40, "byte 0: not a pcap or pcapng file (magic 0x38464947)"),
        (b"\xd4\xc3", "byte 0: not a pcap or pcapng file (only 2 bytes)"),
        (pcap([])[:20], "byte 0: truncated pcap file header (20 of 24 bytes)"),
        (pcap([], version=(1, 4)), "byte 4: unsupported pcap version 1.4"),
        (pcap([], linktype=0x00300000), "byte 20: link type field 0x00300000 has reserved bits set (0x00300000)"),
        (b"\x0a\x0d\x0d\x0a" + b"\x1c\x00\x00\x00" + b"\x00" * 20, "byte 8: bad pcapng byte-order magic 0x00000000"),
        (block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1)), "byte 12: unsupported pcapng version 2.0"),
        (b"", "byte 0: empty file, not a capture"),
    ],
    ids=["magic", "tiny", "short-header", "version", "reserved-bits", "bom", "pcapng-version", "empty"],
)
def test_unreadable_file_raises(tmp_path, data, msg):
    path = write(tmp_path, "bad.cap", data)
    with pytest.raises(OfflineError) as e:
        analyze([path])
    assert str(e.value) == f"{path}: {msg}"


def test_missing_file_raises(tmp_path):
    with pytest.raises(OfflineError, match="nope.pcap: cannot read"):
        analyze([str(tmp_path / "nope.pcap")])


def test_pcapng_damaged_block_keeps_earlier_packets(tmp_path):
    good = shb() + idb("<", 1) + epb("<", 0, 1, F_TCP)
    bad = bytearray(epb("<", 0, 2, F_UDP6))
    bad[-4:] = struct.pack("<I", 999)
    path = write(tmp_path, "dmg.pcapng", good + bytes(bad) + epb("<", 0, 3, F_TCP))
    rep = analyze([path])
    assert rep.errors == [f"{path}: byte {len(good)}: block length mismatch ({len(bad)} at start, 999 at end)"]
    assert flows(rep.overall) == {K_TCP: (1, 100)}


@pytest.mark.parametrize(
    "tail, what",
    [
        (epb("<", 3, 0, F_TCP), "packet of interface 3, but the section defines 1"),
        (block("<", 6, struct.pack("<IIIII", 0, 0, 0, 500, 500) + b"\x00" * 8), "captured length 500 exceeds the block's 8 data bytes"),
        (struct.pack("<II", 6, 30) + b"\x00" * 22, "bad block length 30"),
        (epb("<", 0, 0, F_TCP)[:50], "truncated block (50 of 132 bytes)"),
        (block("<", 1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 40)), "option 9 of length 40 overruns its block (0 bytes left)"),
    ],
    ids=["iface", "caplen", "blocklen", "truncated", "option"],
)  # fmt: skip
def test_pcapng_damage_messages(tmp_path, tail, what):
    head = shb() + idb("<", 1) + epb("<", 0, 1, F_TCP)
    path = write(tmp_path, "d.pcapng", head + tail)
    rep = analyze([path])
    assert len(rep.errors) == 1
    assert rep.errors[0].startswith(f"{path}: byte ") and rep.errors[0].endswith(what)
    assert flows(rep.overall) == {K_TCP: (1, 100)}


def test_damaged_file_does_not_stop_the_next(tmp_path):
    a = write(tmp_path, "a.pcap", pcap([(0, F_TCP), (1, F_TCP)])[:-5])
    b = write(tmp_path, "b.pcap", pcap([(2, F_UDP6)]))
    rep = analyze([a, b])
    assert len(rep.errors) == 1 and rep.errors[0].startswith(a)
    assert flows(rep.overall) == {K_TCP: (1, 100), K_UDP6: (1, 120)}


# ---------------------------------------------------------------- epochs


def test_epochs_split_by_capture_time(tmp_path):
    t0 = 5_000_000_000
    recs = [(t0, F_TCP), (t0 + 500_000_000, F_UDP6), (t0 + 1_200_000_000, F_TCP), (t0 + 3_700_000_000, F_ICMP)]
    a = write(tmp_path, "a.pcap", pcap(recs[:3], nano=True))
    b = write(tmp_path, "b.pcap", pcap(recs[3:], nano=True))
    rep = analyze([a, b], config=SMALL, epoch_s=1.0)
    assert [e.seq for e in rep.epochs] == [0, 1, 3]
    assert [e.start for e in rep.epochs] == [5.0, 6.0, 8.0]
    assert [flows(e) for e in rep.epochs] == [
        {K_TCP: (1, 100), K_UDP6: (1, 120)},
        {K_TCP: (1, 100)},
        {K_ICMP: (1, 74)},
    ]
    s = rep.overall
    assert flows(s) == {K_TCP: (2, 200), K_UDP6: (1, 120), K_ICMP: (1, 74)}
    assert (s.totals == sum(e.totals for e in rep.epochs)).all()
    tcp = s.flows[0]
    assert (int(tcp["first_ns"]), int(tcp["last_ns"])) == (t0, t0 + 1_200_000_000)
    assert (s.start, s.end) == (5.0, 8.7)
    # overall sketch = merge of the epochs' sketches = the sketch without epochs
    whole = analyze([a, b], config=SMALL).overall.sketch
    assert np.array_equal(s.sketch.cm, whole.cm) and np.array_equal(s.sketch.ss, whole.ss)
    merged = SketchSet(s.sketch.layout)
    for e in rep.epochs:
        merged.merge(e.sketch)
    assert np.array_equal(merged.cm, whole.cm) and np.array_equal(merged.ss, whole.ss)


def test_epoch_callback_without_keeping(tmp_path):
    path = write(tmp_path, "a.pcap", pcap([(0, F_TCP), (3 * 10**9, F_TCP)]))
    seen = []
    rep = analyze([path], config=SMALL, epoch_s=2.0, on_epoch=seen.append, keep_epochs=False)
    assert rep.epochs == [] and [e.seq for e in seen] == [0, 1]


# ---------------------------------------------------------------- sketches


def _mixed_frames(n=400):
    frames, keys, lengths = [], [], []
    for i in range(n):
        src = f"10.1.{i % 7}.{i % 13}"
        dst = f"10.2.{i % 11}.{i % 17}"
        if i % 5 == 0:
            src, dst = f"2001:db8::{i % 9:x}", f"2001:db8:1::{i % 23:x}"
        proto = (P.TCP, P.UDP, P.ICMP if ":" not in src else P.ICMPV6)[i % 3]
        f = P.frame(src, dst, proto, 1000 + i % 31, 80 + i % 3, size=64 + i % 200)
        frames.append(f)
        keys.append(key_of((src, dst, proto, 0 if proto in (P.ICMP, P.ICMPV6) else 1000 + i % 31,
                            0 if proto in (P.ICMP, P.ICMPV6) else 80 + i % 3)))  # fmt: skip
        lengths.append(len(f))
    frames.append(F_ARP)  # not IP: no sketch update
    return frames, np.concatenate(keys), np.array(lengths, dtype=np.uint64)


@pytest.mark.parametrize("config", [None, SMALL])
def test_sketch_arrays_equal_sketchset_update(tmp_path, config):
    frames, keys, lengths = _mixed_frames()
    path = write(tmp_path, "mix.pcap", pcap([(i * 1000, f) for i, f in enumerate(frames)]))
    rep = analyze([path], config=config)
    sk = rep.overall.sketch
    ref = SketchSet(layout(config.tasks if config else Config().tasks, 1))
    ref.update(keys, lengths)
    assert sk.layout == ref.layout
    assert np.array_equal(sk.cm, ref.cm)
    assert np.array_equal(sk.ss, ref.ss)
    assert sk.cm.view(np.uint64).any()


def test_heavy_hitters_and_spreaders(tmp_path):
    frames = [P.frame("10.9.9.9", f"10.0.{i}.1", P.UDP, 1, 2) for i in range(40)] + [F_TCP, F_TCP]
    path = write(tmp_path, "hh.pcap", pcap([(i, f) for i, f in enumerate(frames)]))
    cfg = Config(
        tasks=(
            TaskSpec("src", COUNTMIN, ("src_ip",), depth=4, width=1024, hh_packets=30),
            TaskSpec("spread", SUPERSPREAD, ("src_ip",), ("dst_ip",), width=4096, registers=64,
                     spread_threshold=20),
        )
    )  # fmt: skip
    s = analyze([path], config=cfg).overall
    hh = s.heavy["src"]
    assert [P.addr_str(k["src"]) for k in hh.keys] == ["10.9.9.9"]
    assert int(hh.packets[0]) >= 40
    keys, est = s.spreaders["spread"]
    assert [P.addr_str(k["src"]) for k in keys] == ["10.9.9.9"]
    assert 30 <= est[0] <= 50


def test_no_tasks_still_counts_exactly(tmp_path):
    path = write(tmp_path, "a.pcap", pcap([(0, F_TCP), (1, F_UDP6)]))
    s = analyze([path], config=Config(tasks=())).overall
    assert flows(s) == {K_TCP: (1, 100), K_UDP6: (1, 120)}
    assert not s.sketch.cm.view(np.uint64).any()


def test_saved_sketches_merge_to_the_sketch_of_both(tmp_path):
    frames, _, _ = _mixed_frames()
    a = write(tmp_path, "a.pcap", pcap([(i, f) for i, f in enumerate(frames[:150])]))
    b = write(tmp_path, "b.pcap", pcap([(i, f) for i, f in enumerate(frames[150:])], order=">", nano=True))
    analyze([a]).overall.sketch.save(tmp_path / "a.npz")
    analyze([b]).overall.sketch.save(tmp_path / "b.npz")
    both = analyze([a, b]).overall.sketch
    m = SketchSet.load(tmp_path / "a.npz").merge(SketchSet.load(tmp_path / "b.npz"))
    assert np.array_equal(m.cm, both.cm) and np.array_equal(m.ss, both.ss)
    # the same through the CLI
    r = CliRunner().invoke(
        main, ["merge-sketch", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "-o", str(tmp_path / "m.npz")]
    )
    assert r.exit_code == 0, r.output
    m2 = SketchSet.load(tmp_path / "m.npz")
    assert np.array_equal(m2.cm, both.cm) and np.array_equal(m2.ss, both.ss)


def test_merge_sketch_rejects_different_layouts(tmp_path):
    path = write(tmp_path, "a.pcap", pcap([(0, F_TCP)]))
    analyze([path]).overall.sketch.save(tmp_path / "a.npz")
    analyze([path], config=SMALL).overall.sketch.save(tmp_path / "b.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    r = CliRunner().invoke(
        main, ["merge-sketch", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "-o", str(tmp_path / "m.npz")]
    )
    assert r.exit_code == 1 and "sketch layout differs" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["merge-sketch", str(tmp_path / "junk.npz"), "-o", str(tmp_path / "m.npz")])
    assert r.exit_code == 1 and "not a netspectra sketch file" in r.output


# ---------------------------------------------------------------- CLI


def test_cli_analyze_text_json_and_exit_codes(tmp_path):
    good = write(tmp_path, "good.pcap", pcap([(0, F_TCP), (2 * 10**9, F_UDP6)]))
    r = CliRunner().invoke(main, ["analyze", good, "--top", "3"])
    assert r.exit_code == 0, r.output
    assert "good.pcap" in r.output and "tcp 10.0.0.1:1000 -> 10.0.0.2:80" in r.output

    r = CliRunner().invoke(main, ["analyze", good, "--json", "--epoch", "1s", "--save-sketch", str(tmp_path / "s.npz")])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert set(doc) == {"files", "overall", "epochs", "skipped_linktypes", "errors"}
    assert doc["overall"]["packets"] == 2 and doc["overall"]["bytes"] == 220
    assert [e["epoch"] for e in doc["epochs"]] == [0, 2]
    fl = {
        (f["src"], f["dst"], f["proto"], f["sport"], f["dport"]): (f["packets"], f["bytes"])
        for f in doc["overall"]["flows"]
    }
    assert fl == {K_TCP: (1, 100), K_UDP6: (1, 120)}
    assert SketchSet.load(tmp_path / "s.npz").cm.view(np.uint64).any()

    damaged = write(tmp_path, "dmg.pcap", pcap([(0, F_TCP), (1, F_TCP)])[:-1])
    r = CliRunner().invoke(main, ["analyze", damaged])
    assert r.exit_code == 1
    assert f"netspectra: {damaged}: byte 140: truncated record (115 of 116 bytes)" in r.output
    assert "1 packets" in r.output

    junk = write(tmp_path, "junk.pcap", b"hello world, not a capture")
    r = CliRunner().invoke(main, ["analyze", good, junk])
    assert r.exit_code == 2
    assert r.output.strip() == f"netspectra: {junk}: byte 0: not a pcap or pcapng file (magic 0x6c6c6568)"


# ---------------------------------------------------------------- faults (issue 13)

RUN_ANALYZE = """
import json, os, sys
from netspectra.offline import analyze
path, cut = sys.argv[1], int(sys.argv[2])
def on_epoch(snap):  # logrotate's copytruncate, while the rest of the file is still to be read
    if cut >= 0:
        os.truncate(path, cut)
rep = analyze([path], epoch_s=1.0, on_epoch=on_epoch)
print(json.dumps({"packets": rep.files[0]["packets"], "errors": rep.errors, "epochs": [e.seq for e in rep.epochs]}))
"""


def analyze_apart(path: str, cut: int = -1):
    """analyze() in a process of its own (a SIGBUS or a endless loop must not take pytest with it)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", RUN_ANALYZE, path, str(cut)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    return json.loads(r.stdout)


def test_a_capture_truncated_while_read_keeps_what_was_read(tmp_path):
    first = [(0, F_TCP)] * 40  # 40 x 116 bytes: the next epoch's records lie past the first page
    path = write(tmp_path, "rotated.pcap", pcap(first + [(2 * 10**9, F_UDP6)] * 40))
    size = os.path.getsize(path)
    out = analyze_apart(path, cut=1000)
    assert out["packets"] == 40 and out["epochs"] == [0]
    assert out["errors"] == [
        f"{path}: byte 1000: truncated while being read ({size} bytes when opened, 1000 now; "
        "what was read before is counted)"
    ]


def test_a_pcapng_packet_stamped_at_the_end_of_time_ends_the_walk(tmp_path):
    data = shb() + idb("<", 1, tsresol=9) + epb("<", 0, 10**9, F_TCP) + epb("<", 0, 2**64 - 1, F_UDP6)
    out = analyze_apart(write(tmp_path, "end.pcapng", data))
    assert out["packets"] == 2 and out["errors"] == []
    assert out["epochs"] == [0, (2**64 - 1 - 10**9) // 10**9]


def test_a_fifo_carrying_a_capture_is_read(tmp_path):
    import threading

    fifo = str(tmp_path / "cap.fifo")
    os.mkfifo(fifo)
    data = pcap([(0, F_TCP), (1, F_UDP6)] * 3000)  # more than a pipe holds: read while written

    def writer():
        with open(fifo, "wb") as f:
            f.write(data)

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # analyze refuses a FIFO nobody writes: wait for the writer
            try:
                rep = analyze([fifo])
                break
            except OfflineError as e:
                assert "no writer" in str(e)
                time.sleep(0.01)
    finally:
        t.join(10)
    assert rep.files[0]["packets"] == 6000 and rep.errors == []
    assert rep.overall.counter("all") == (6000, 3000 * (len(F_TCP) + len(F_UDP6)))


def test_a_fifo_with_no_writer_is_one_line_at_once(tmp_path):
    fifo = str(tmp_path / "idle.fifo")
    os.mkfifo(fifo)
    began = time.monotonic()
    with pytest.raises(OfflineError) as e:
        analyze([fifo])
    assert time.monotonic() - began < 2
    assert str(e.value) == f"{fifo}: a FIFO or pipe with no writer (nothing to read)"


def test_a_capture_on_stdin_is_read_by_the_cli(tmp_path):
    import subprocess
    import sys

    data = pcap([(0, F_TCP)] * 5)
    code = "from netspectra.cli import main; main()"
    r = subprocess.run([sys.executable, "-c", code, "analyze", "--json", "/dev/stdin"], input=data, capture_output=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"][0]["packets"] == 5


@pytest.mark.parametrize(
    "path, what", [("/dev/urandom", "a character device"), ("/dev/null", "a character device"), (".", "a directory")]
)
def test_non_regular_files_are_called_what_they_are(path, what):
    with pytest.raises(OfflineError) as e:
        analyze([path])
    assert str(e.value) == f"{path}: {what}, not a capture file"
