"""The console view and the --json record, from a synthetic snapshot (no kernel)."""

import json

import numpy as np

from netspectra import abi, analysis
from netspectra import packets as P
from netspectra.config import default_tasks
from netspectra.sketch import SketchSet
from netspectra.snapshot import EpochSnapshot
from netspectra.tasks import layout
from netspectra.view import render


def snapshot():
    lay = layout(default_tasks())
    flows = np.zeros(3, analysis.FLOW_RECORD)
    for i, (src, dst, sp, dp, proto, pk, by) in enumerate(
        [
            ("10.0.0.1", "10.0.0.2", 1000, 80, 6, 5, 5000),
            ("10.0.0.1", "10.0.0.3", 1001, 53, 17, 50, 3000),
            ("2001:db8::1", "2001:db8::2", 0, 0, 58, 1, 100),
        ]
    ):
        k = flows[i]["key"]
        k["src"], k["dst"] = np.frombuffer(P.mapped(src), np.uint8), np.frombuffer(P.mapped(dst), np.uint8)
        k["sport"], k["dport"], k["proto"] = sp, dp, proto
        flows[i]["packets"], flows[i]["bytes"] = pk, by
        flows[i]["key"] = k
    totals = np.zeros((abi.NCOUNTERS, 2), np.uint64)
    totals[abi.C["all"]] = (56, 8100)
    totals[abi.C["flow_untracked"]] = (2, 120)
    sk = SketchSet(lay)
    sk.update(flows["key"], flows["bytes"])
    return EpochSnapshot(seq=3, start=100.0, end=105.0, totals=totals, flows=flows, sketch=sk)


def test_render_lists_top_sources_and_flows_both_ways():
    text = render(snapshot(), "eth0", {"countmin": 1 << 20}, top=2)
    assert "netspectra on eth0  epoch 3  5.00s" in text
    assert "top sources by bytes:\n  10.0.0.1 " in text
    by_bytes = text.split("top flows by bytes:\n")[1].splitlines()[0]
    by_packets = text.split("top flows by packets:\n")[1].splitlines()[0]
    assert by_bytes.strip().startswith("tcp 10.0.0.1:1000 -> 10.0.0.2:80")
    assert by_packets.strip().startswith("udp 10.0.0.1:1001 -> 10.0.0.3:53")
    assert "untracked flows 2 pkts" in text and "kernel memory: 1.0 MiB" in text


def test_json_record_fields():
    j = json.loads(json.dumps(snapshot().to_json()))
    assert (j["epoch"], j["packets"], j["bytes"]) == (3, 56, 8100)
    assert j["loss"] == {"flow_untracked_packets": 2, "flow_untracked_bytes": 120, "candidates_lost": 0}
    f = j["flows"][2]
    assert (f["src"], f["dst"], f["proto"], f["sport"], f["dport"], f["packets"], f["bytes"]) == (
        "2001:db8::1",
        "2001:db8::2",
        58,
        0,
        0,
        1,
        100,
    )
    assert set(j["totals"]) == set(abi.COUNTERS)


def test_unique_keys_counts_and_order():
    from netspectra.analysis import unique_keys

    keys = np.zeros(6, abi.KEY)
    keys["sport"] = [5, 3, 5, 9, 3, 5]
    u, c = unique_keys(keys, return_counts=True)
    assert list(u["sport"]) == [5, 3, 9] and list(c) == [3, 2, 1]
    assert list(unique_keys(keys)["sport"]) == [5, 3, 9]


def test_spreaders_skip_keys_with_too_few_flows_only_when_complete():
    from netspectra.analysis import spreaders
    from netspectra.tasks import TaskSpec

    lay = layout([TaskSpec("s", "superspread", ("src_ip",), ("dst_ip",), depth=1, width=1024, registers=64,
                           spread_threshold=5)])  # fmt: skip
    flows = np.zeros(7, analysis.FLOW_RECORD)
    flows["key"]["src"][:, 15] = [1, 1, 1, 1, 1, 2, 2]  # src 1: 5 flows, src 2: 2 flows
    flows["key"]["dst"][:, 15] = np.arange(7)
    # the sketch saw 300 destinations from each (as if flows had been lost)
    pkts = np.zeros(600, abi.KEY)
    pkts["src"][:, 15] = np.repeat([1, 2], 300)
    pkts["dst"][:, 14] = np.tile(np.arange(300) // 256, 2)
    pkts["dst"][:, 15] = np.tile(np.arange(300) % 256, 2)
    sk = SketchSet(lay)
    sk.update(pkts, 60)
    assert [int(k["src"][15]) for k in spreaders(sk, flows, complete=True)["s"][0]] == [1]
    assert sorted(int(k["src"][15]) for k in spreaders(sk, flows, complete=False)["s"][0]) == [1, 2]


def test_addr_strings_equal_addr_str_row_by_row():
    import ipaddress
    import random

    from netspectra.packets import addr_str, addr_strings, mapped

    rng = random.Random(3)
    addrs = ["0.0.0.0", "255.255.255.255", "10.0.0.1", "::", "::1", "::ffff:0.0.0.0", "2001:db8::1", "fe80::1:2"]
    addrs += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(300)]
    addrs += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(300)]
    addrs += addrs[:50]  # repeats
    rows = np.array([list(mapped(a)) for a in addrs], dtype=np.uint8)
    assert addr_strings(rows) == [addr_str(bytes(r)) for r in rows]
    assert addr_strings(rows[:0]) == []


def test_exact_and_estimated_answers_are_told_apart():
    """derive() over the same flows: complete flows give exact heavy hitters
    and spreads, shown without '~'; with untracked packets they are sketch
    estimates, marked '~'.  A port scan is named as one."""
    from netspectra.snapshot import derive

    lay = layout(default_tasks())
    flows = np.zeros(150, analysis.FLOW_RECORD)
    k = flows["key"]
    k["src"] = np.frombuffer(P.mapped("10.0.0.9"), np.uint8)
    k["dst"] = np.frombuffer(P.mapped("10.0.0.1"), np.uint8)
    k["sport"], k["dport"], k["proto"] = 40000, np.arange(1, 151), 6  # 150 ports of one host
    flows["packets"], flows["bytes"] = 10, 10_000
    totals = np.zeros((abi.NCOUNTERS, 2), np.uint64)
    totals[abi.C["all"]] = (1500, 1_500_000)
    exact = derive(0, 0.0, 5.0, totals, flows, SketchSet.of_flows(lay, flows))
    assert exact.exact and not exact.sketch.derived
    text = render(exact, "eth0")
    assert "answers: exact" in text
    assert "port scans [port_scan: distinct dst_port per src_ip+dst_ip]: 1" in text
    assert "src_ip=10.0.0.9 dst_ip=10.0.0.1" in text and "  150 distinct" in text
    assert "heavy hitters [src]: 1" in text and "1500 pkts" in text and "~" not in text
    j = exact.to_json()
    assert j["exact"] and j["spreaders"]["port_scan"][0]["distinct"] == 150
    assert j["heavy_hitters"]["src"][0]["packets"] == 1500

    totals[abi.C["flow_untracked"]] = (10, 10_000)  # one more flow the table could not hold
    lost = flows[:1].copy()
    lost["key"]["dport"] = 999
    sk = SketchSet.of_flows(lay, np.concatenate([flows, lost]))
    est = derive(0, 0.0, 5.0, totals, flows, sk)
    assert not est.exact and not est.to_json()["exact"]
    text = render(est, "eth0")
    assert "answers: estimated" in text and "~" in text
    assert est.heavy["src"].packets[0] >= 1510  # never below the truth
