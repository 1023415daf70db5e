"""The bounded CI sample of bench/parser_fuzz: 20,000 structure-aware mutated
frames (every encapsulation, truncations, bad lengths) through the real XDP
program and the offline parser, every invariant checked (about 2 s)."""

import pytest

from bench import parser_fuzz as F

pytestmark = pytest.mark.root


def test_fuzz_sample_has_no_violations():
    r = F.run(frames=20_000, seed=7)
    assert r["violation_count"] == 0, r["violations"]
    assert r["violating_frames_hex"] == []
    assert sum(r["outcomes"].values()) == 20_000
    # the sample reaches every outcome XDP can produce (not trunc_eth: test runs
    # need 14 bytes) and every mutation kind
    assert all(v > 0 for k, v in r["outcomes"].items() if k != "trunc_eth")
    assert all(v > 0 for v in r["mutations"].values())
    assert all(v > 0 for v in r["events"].values())


def test_fuzz_reports_a_disagreement(monkeypatch):
    """The checker bites: a reference walk that ignores the IP length bound
    disagrees with the kernel on some frames, which are reported in hex."""
    real = F._l4
    monkeypatch.setattr(F, "_l4", lambda b, l4, proto, room, *a: real(b, l4, proto, 1 << 32, *a))
    r = F.run(frames=4096, seed=7)
    assert r["violations"].get("keys", 0) > 0
    assert 0 < len(r["violating_frames_hex"]) <= F.MAX_HEX
    bad = bytes.fromhex(r["violating_frames_hex"][0]["hex"])
    assert len(bad) >= 14


def test_fuzz_reports_kernel_offline_difference(monkeypatch):
    """The kernel/offline comparison bites too: an offline side fed IPv6
    frames one byte short disagrees, and the culprits are IPv6 frames."""
    real = F._write_pcap

    def short_v6(path, frames):
        real(path, [f[:-1] if f[12:14] == b"\x86\xdd" and len(f) > 14 else f for f in frames])

    monkeypatch.setattr(F, "_write_pcap", short_v6)
    r = F.run(frames=4096, seed=7)
    assert r["violations"].get("kernel_offline", 0) > 0
    assert r["violating_frames_hex"]
    for v in r["violating_frames_hex"]:
        if v["invariant"] == "kernel_offline":
            assert bytes.fromhex(v["hex"])[12:14] == b"\x86\xdd"
