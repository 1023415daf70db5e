"""`netspectra.offline.analyze` on every capture of the corpus, exact against tshark.

For each capture (../shared/pcaps, see its README.md) the oracle (tshark + a small
aggregator) is run with the parser's semantics (conftest.ORACLE_ARGS) and compared
with analyze():

* supported link types: every directional flow (src, dst, proto, sport, dport)
  with exact packets and bytes (frame.len), the totals, IPv4/IPv6/non-IP
  packet counts and fragment counts;
* unsupported link types (NFLOG, PPP, IPNET): nothing in totals or flows, every
  record in rep.skipped under its link type;
* damaged files: a one-line OfflineError naming file and byte offset, or
  rep.errors "FILE: byte N: ..." and exactly the packets before byte N; plus
  damaged copies of good captures, where tshark too reads up to the damage.

Where the parser legitimately differs from tshark, the difference is written
down per file and per packet class in EXPECTED_DIFFS (documented in
docs/offline-corpus.md): the oracle's counts are moved from the key tshark uses
to the key we use, and the result must then be exact.  A rule that no longer
applies fails the test, so the table cannot go stale.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from netspectra import abi

from .conftest import CORPUS, REPO, manifest_or_empty, require

C = abi.C

# Link types the analyzer decodes (issue 3): Ethernet, Linux cooked v1/v2,
# raw IP / LINKTYPE_IPV4 / LINKTYPE_IPV6, BSD NULL / LOOP.
SUPPORTED_LINKTYPES = {
    1: "EN10MB",
    113: "LINUX_SLL",
    276: "LINUX_SLL2",
    101: "RAW",
    12: "RAW (12)",
    14: "RAW (14)",
    228: "IPV4",
    229: "IPV6",
    0: "NULL",
    108: "LOOP",
}

MANIFEST = manifest_or_empty()
BY_NAME = {row["file"]: row for row in MANIFEST}


def linktypes(row: dict) -> set[int]:
    """Link types of a capture, from MANIFEST.tsv ("1 EN10MB,113 LINUX_SLL", "101 RAW (upper bits ...)")."""
    return {int(m) for m in re.findall(r"(?:^|,)\s*(\d+)\s+[A-Z]", row["linktype"])}


def tags(row: dict) -> set[str]:
    return set(row["tags"].split(";"))


def is_damaged_file(row: dict) -> bool:
    return "malformed-file" in tags(row) or bool(row["tshark_read_error"]) or row["wireshark_encap"] == "unreadable"


def kind(row: dict) -> str:
    if is_damaged_file(row):
        return "damaged"
    if linktypes(row) & SUPPORTED_LINKTYPES.keys():
        return "supported"
    return "unsupported"


SUPPORTED = sorted(r["file"] for r in MANIFEST if kind(r) == "supported")
UNSUPPORTED = sorted(r["file"] for r in MANIFEST if kind(r) == "unsupported")
DAMAGED = sorted(r["file"] for r in MANIFEST if kind(r) == "damaged")

Key = tuple  # (src, dst, proto, sport, dport), addresses as ipaddress strings


@dataclass(frozen=True)
class Diff:
    """One documented difference between tshark and the parser, for a class of packets
    of one capture: `packets`/`bytes` that the oracle counts under `oracle` (a flow key,
    or None: non-IP) and we count under `ours` (a flow key, or None: non-IP)."""

    rule: str
    oracle: Key | None
    ours: Key | None
    packets: int
    bytes: int
    # Our counters that differ from the oracle's matching totals because of it,
    # as (counter, delta): e.g. ("frag_later", 1) when we see a later fragment
    # that tshark could not read.
    counters: tuple[tuple[str, int], ...] = ()


# Rule names and their reasons: docs/offline-corpus.md, "Documented differences".
# Every entry is one packet class of one capture, checked exactly.
EXPECTED_DIFFS: dict[str, list[Diff]] = {
    # IPv4 under one MPLS label, IHL 15 (a 60-byte header) in the 42 bytes left
    # of the frame: tshark shows the addresses of the cut header (a later
    # fragment, offset 288); the parser reads no IP header it does not have
    # (`out_trunc_ip`, as for the Ethernet captures below).
    "pcpp__ip4_bad_fragment.pcap": [
        Diff(
            "ipv4-header-cut",
            ("0.0.0.1", "0.0.0.1", 29, 0, 0),
            None,
            1,
            60,
            counters=(("out_ipv4", -1), ("frag_later", -1)),
        ),
    ],
    # IPv6 payload length 0, next header Fragment, the fragment header captured:
    # tshark takes plen 0 as an empty payload and cannot read the fragment header
    # (oracle: proto 44, chain truncated); the parser reads plen 0 as "length
    # unknown" (BIG TCP / jumbogram convention, as the kernel sees it) and finds a
    # later fragment (offset 160) of protocol 2.
    "tcpdump__ipv6_frag6_negative_len.pcap": [
        Diff(
            "ipv6-plen-zero-ext-headers",
            ("7fff:ffff:c3b2:a102:1305:80:38:2949", "9675:86dd:7300:2c:1c7f:ffff:ffc3:b2a1", 44, 0, 0),
            ("7fff:ffff:c3b2:a102:1305:80:38:2949", "9675:86dd:7300:2c:1c7f:ffff:ffc3:b2a1", 2, 0, 0),
            1,
            32896,
            counters=(("frag_later", 1),),
        ),
    ],
}


# --------------------------------------------------------------------------- helpers


def norm_addr(a: str) -> str:
    return str(ipaddress.ip_address(a))


def oracle_flows(orc: dict) -> dict[Key, list[int]]:
    out: dict[Key, list[int]] = {}
    for f in orc["flows"]:
        k = (norm_addr(f["src"]), norm_addr(f["dst"]), f["proto"], f["sport"], f["dport"])
        assert k not in out, f"oracle lists {k} twice"
        out[k] = [f["packets"], f["bytes_frame"]]
    return out


def addr_str(b) -> str:
    ip = ipaddress.IPv6Address(bytes(b))
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)


def our_flows(flows: np.ndarray) -> dict[Key, list[int]]:
    out: dict[Key, list[int]] = {}
    for r in flows:
        k = r["key"]
        key = (addr_str(k["src"]), addr_str(k["dst"]), int(k["proto"]), int(k["sport"]), int(k["dport"]))
        assert key not in out, f"analyze() returns the flow {key} twice"
        out[key] = [int(r["packets"]), int(r["bytes"])]
    return out


def totals(rep, name: str) -> tuple[int, int]:
    t = rep.overall.totals
    return int(t[C[name], 0]), int(t[C[name], 1])


def skipped_sum(rep) -> tuple[int, int]:
    return sum(int(v[0]) for v in rep.skipped.values()), sum(int(v[1]) for v in rep.skipped.values())


def flows_diff(ours: dict, theirs: dict, limit: int = 25) -> str:
    lines = []
    for k in sorted(set(ours) | set(theirs), key=repr):
        a, b = ours.get(k), theirs.get(k)
        if a != b:
            lines.append(f"  {k}: ours {a} oracle {b}")
    more = f"\n  ... {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


def apply_diffs(name: str, orc: dict) -> tuple[dict[Key, list[int]], int, int]:
    """The oracle's flows and non-IP counts with the documented differences applied."""
    flows = oracle_flows(orc)
    non_ip_p, non_ip_b = orc["totals"]["non_ip_packets"], orc["totals"]["non_ip_bytes_frame"]
    for d in EXPECTED_DIFFS.get(name, []):
        if d.oracle is None:
            assert non_ip_p >= d.packets and non_ip_b >= d.bytes, f"{name}: rule {d.rule} is stale (oracle non-IP)"
            non_ip_p, non_ip_b = non_ip_p - d.packets, non_ip_b - d.bytes
        else:
            have = flows.get(d.oracle)
            assert have and have[0] >= d.packets and have[1] >= d.bytes, (
                f"{name}: rule {d.rule} is stale: oracle has {have} under {d.oracle}"
            )
            have[0] -= d.packets
            have[1] -= d.bytes
            if have == [0, 0]:
                del flows[d.oracle]
        if d.ours is None:
            non_ip_p, non_ip_b = non_ip_p + d.packets, non_ip_b + d.bytes
        else:
            f = flows.setdefault(d.ours, [0, 0])
            f[0] += d.packets
            f[1] += d.bytes
    return flows, non_ip_p, non_ip_b


_REPORTS: dict[str, object] = {}


def analyzed(name: str):
    if name not in _REPORTS:
        from netspectra.offline import analyze

        _REPORTS[name] = analyze([str(CORPUS / name)])
    return _REPORTS[name]


@pytest.fixture(scope="module")
def offline():
    """netspectra.offline (skipped while it is not built; a failure under CI=true)."""
    try:
        import netspectra.offline as mod
    except ImportError as ex:
        require(False, f"netspectra.offline not importable: {ex}")
    return mod


# --------------------------------------------------------------------------- captures of supported link types


def test_corpus_is_classified(corpus):
    assert MANIFEST, "MANIFEST.tsv is empty"
    assert {r["file"] for r in MANIFEST} == {p.name for p in corpus.iterdir() if p.is_file()} - {
        "MANIFEST.tsv",
        "README.md",
    }
    assert len(SUPPORTED) + len(UNSUPPORTED) + len(DAMAGED) == len(MANIFEST)


@pytest.mark.parametrize("name", SUPPORTED)
def test_flows_exact(name, oracle, offline):
    orc = oracle[name]
    assert orc["tshark_rc"] == 0 and orc["read_complete"], orc["tshark_stderr"]
    rep = analyzed(name)
    assert rep.errors == [], f"{name}: tshark reads the whole file, analyze() reports {rep.errors}"
    theirs, _, _ = apply_diffs(name, orc)
    ours = our_flows(rep.overall.flows)
    assert ours == theirs, f"{name}: flows differ (ours vs oracle after documented differences):\n" + flows_diff(
        ours, theirs
    )


@pytest.mark.parametrize("name", SUPPORTED)
def test_totals(name, oracle, offline):
    orc = oracle[name]
    t = orc["totals"]
    rep = analyzed(name)
    _, non_ip_p, non_ip_b = apply_diffs(name, orc)
    sk_p, sk_b = skipped_sum(rep)
    all_p, all_b = totals(rep, "all")
    # Every record once: in totals, or skipped for its link type.
    assert (all_p + sk_p, all_b + sk_b) == (t["packets"], t["bytes_frame"])
    if not (linktypes(BY_NAME[name]) - SUPPORTED_LINKTYPES.keys()):
        assert rep.skipped == {} or skipped_sum(rep) == (0, 0), rep.skipped
    v4, v6 = totals(rep, "out_ipv4"), totals(rep, "out_ipv6")
    ip_p, ip_b = v4[0] + v6[0], v4[1] + v6[1]
    # IP vs non-IP (non-IP here: every other outcome, plus skipped link types).
    assert (all_p - ip_p + sk_p, all_b - ip_b + sk_b) == (non_ip_p, non_ip_b)
    assert (ip_p, ip_b) == (t["packets"] - non_ip_p, t["bytes_frame"] - non_ip_b)
    # The flow table is complete and adds up to the IP outcomes.
    assert totals(rep, "flow_untracked") == (0, 0)
    f = rep.overall.flows
    assert (int(f["packets"].sum()), int(f["bytes"].sum())) == (ip_p, ip_b)
    # Families: the flows of each family add up to its outcome.
    fam4 = np.array([ipaddress.ip_address(addr_str(s)).version == 4 for s in f["key"]["src"]], dtype=bool)
    assert int(f["packets"][fam4].sum()) == v4[0] if len(f) else v4[0] == 0
    delta = Counter()
    for d in EXPECTED_DIFFS.get(name, []):
        delta.update(dict(d.counters))
    assert (v4[0], v6[0]) == (t["ipv4_packets"] + delta["out_ipv4"], t["ipv6_packets"] + delta["out_ipv6"])
    # Fragments: later ones (offset != 0) and first ones (offset 0, more
    # fragments), both families; IPv6 atomic fragments are neither on both sides.
    assert (
        totals(rep, "frag_later")[0]
        == t["ipv4_fragments_nonfirst"] + t["ipv6_fragments_nonfirst"] + delta["frag_later"]
    )
    assert totals(rep, "frag_first")[0] == t["ipv4_fragments_first"] + t["ipv6_fragments_first"] + delta["frag_first"]


# --------------------------------------------------------------------------- unsupported link types


def linktype_matches(key, lt: int) -> bool:
    if isinstance(key, (int, np.integer)):
        return int(key) == lt
    s = str(key).upper()
    return str(lt) in re.findall(r"\d+", s) or SKIP_NAMES.get(lt, "\0") in s


SKIP_NAMES = {9: "PPP", 226: "IPNET", 239: "NFLOG"}


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_unsupported_linktype_skipped(name, oracle, offline):
    orc = oracle[name]
    t = orc["totals"]
    rep = analyzed(name)
    assert rep.errors == []
    assert totals(rep, "all") == (0, 0)
    assert len(rep.overall.flows) == 0
    (lt,) = linktypes(BY_NAME[name])
    assert len(rep.skipped) == 1, rep.skipped
    (key, val) = next(iter(rep.skipped.items()))
    assert linktype_matches(key, lt), f"skipped under {key!r}, link type is {lt}"
    assert [int(val[0]), int(val[1])] == [t["packets"], t["bytes_frame"]]
    # tshark decodes IP under these link types; with our encapsulations only, it is all non-IP.
    assert t["non_ip_packets"] == t["packets"]


# --------------------------------------------------------------------------- damaged files

ERROR_RE = re.compile(r"^(?P<file>[^\n]+): byte (?P<off>\d+): (?P<what>[^\n]+)$")


def packet_records(path: Path) -> list[tuple[int, int]]:
    """(start, end) byte offsets of the packet records of a pcap or pcapng file, as
    far as their headers can be walked (an independent, minimal walk for the tests)."""
    data = path.read_bytes()
    out = []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = "<" if magic[0] in (0xD4, 0x4D) else ">"
        off = 24
        while off + 16 <= len(data):
            caplen = struct.unpack_from(e + "I", data, off + 8)[0]
            out.append((off, off + 16 + caplen))
            off += 16 + caplen
    elif magic == b"\x0a\x0d\x0d\x0a":
        off = 0
        e = "<"
        while off + 12 <= len(data):
            if data[off : off + 4] == b"\x0a\x0d\x0d\x0a":
                e = "<" if data[off + 8 : off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(e + "II", data, off)
            if blen < 12:
                break
            if btype in (2, 3, 6):
                out.append((off, off + blen))
            off += blen
    return out


def check_damage_report(path: Path, rep_or_exc, orc: dict | None):
    """The contract for a damaged file: OfflineError (one line, file and offset) or
    rep.errors "FILE: byte N: ..." with exactly the packets whose records end before N."""
    from netspectra.offline import OfflineError

    name = path.name
    if isinstance(rep_or_exc, OfflineError):
        msg = str(rep_or_exc)
        assert "\n" not in msg.strip(), f"multi-line error: {msg!r}"
        assert name in msg, f"error does not name the file: {msg!r}"
        assert re.search(r"\bbyte \d+\b", msg), f"error does not name the byte offset: {msg!r}"
        return None
    rep = rep_or_exc
    assert rep.errors, f"{name}: neither OfflineError nor rep.errors"
    assert len(rep.errors) == 1, rep.errors
    m = ERROR_RE.match(rep.errors[0])
    assert m, f"error not 'FILE: byte N: what': {rep.errors[0]!r}"
    assert m["file"].endswith(name), rep.errors[0]
    off = int(m["off"])
    before = [r for r in packet_records(path) if r[1] <= off]
    sk_p, _ = skipped_sum(rep)
    assert totals(rep, "all")[0] + sk_p == len(before), (
        f"{name}: damage at byte {off}, {len(before)} complete records before it, "
        f"analyze() counted {totals(rep, 'all')[0] + sk_p}"
    )
    if orc is not None:
        t = orc["totals"]
        assert (totals(rep, "all")[0] + sk_p, totals(rep, "all")[1] + skipped_sum(rep)[1]) == (
            t["packets"],
            t["bytes_frame"],
        )
        theirs, _, _ = apply_diffs(name, orc)
        ours = our_flows(rep.overall.flows)
        assert ours == theirs, f"{name}: flows before the damage differ:\n" + flows_diff(ours, theirs)
    return off


def analyze_or_error(path: Path):
    from netspectra.offline import OfflineError, analyze

    try:
        return analyze([str(path)])
    except OfflineError as ex:
        return ex


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_file(name, oracle, offline):
    orc = oracle[name]
    got = analyze_or_error(CORPUS / name)
    if orc["read_complete"] and not isinstance(got, offline.OfflineError) and not got.errors:
        # tshark reads it (caplen over snaplen, absurd frame.len, minor version 5 ...):
        # reading it the same way is as good as refusing it, but then exactly.
        theirs, _, _ = apply_diffs(name, orc)
        assert our_flows(got.overall.flows) == theirs
        sk = skipped_sum(got)
        t = orc["totals"]
        assert (totals(got, "all")[0] + sk[0], totals(got, "all")[1] + sk[1]) == (t["packets"], t["bytes_frame"])
        return
    # tshark refuses the file or stops: we must say where, and count what came before.
    check_damage_report(CORPUS / name, got, orc if not orc["read_complete"] else None)


# Damaged copies of good captures: tshark reads up to the damage, so the oracle
# on the copy gives the exact counts before it.


def _cut(src: Path, dst: Path, cut: int) -> None:
    dst.write_bytes(src.read_bytes()[:cut])


DAMAGE_CASES = {
    # name: (source capture, how to damage it)
    "pcap-cut-in-last-record-data": ("pcpp__4KHttpRequests.pcap", "cut_data"),
    "pcap-cut-in-last-record-header": ("pcpp__4KHttpRequests.pcap", "cut_header"),
    "pcapng-cut-in-last-block": ("pcpp__ipv6.pcapng", "cut_data"),
    "pcap-absurd-caplen-mid-file": ("pcpp__4KHttpRequests.pcap", "caplen"),
    "pcap-nsec-be-cut": ("pcpp__nanosecs_big_endian.pcap", "cut_data"),
    "sll2-cut": ("suricata__decode-sll2-02__input.pcap", "cut_data"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE_CASES))
def test_damaged_copy(case, oracle, offline, tmp_path):
    src_name, how = DAMAGE_CASES[case]
    src = CORPUS / src_name
    recs = packet_records(src)
    dst = tmp_path / f"{case}-{src_name}"
    if how == "cut_data":
        start, end = recs[-1]
        _cut(src, dst, end - 3)
        lo, hi = start, end - 3
    elif how == "cut_header":
        start, _ = recs[-1]
        _cut(src, dst, start + 7)
        lo, hi = start, start + 7
    else:  # caplen: record k claims 0x7fff0000 captured bytes
        k = len(recs) // 3
        start, _ = recs[k]
        data = bytearray(src.read_bytes())
        struct.pack_into("<I", data, start + 8, 0x7FFF0000)
        dst.write_bytes(bytes(data))
        lo, hi = start, start + 16
    orc = oracle.run_on(dst)
    assert not orc["read_complete"], "tshark was expected to stop at the damage"
    got = analyze_or_error(dst)
    assert not isinstance(got, offline.OfflineError), f"the packets before the damage must be reported: {got}"
    off = check_damage_report(dst, got, orc)
    assert lo <= off <= hi, f"damage is in bytes {lo}..{hi}, error says {off}"
    assert totals(got, "all")[0] == len([r for r in recs if r[1] <= lo])


# --------------------------------------------------------------------------- the document


def test_doc_lists_every_capture_and_rule():
    doc = (REPO / "docs" / "offline-corpus.md").read_text()
    missing = [r["file"] for r in MANIFEST if f"`{r['file']}`" not in doc]
    assert not missing, f"docs/offline-corpus.md does not list {missing}"
    rules = {d.rule for ds in EXPECTED_DIFFS.values() for d in ds}
    undocumented = [r for r in rules if f"`{r}`" not in doc]
    assert not undocumented, f"docs/offline-corpus.md does not document {undocumented}"
