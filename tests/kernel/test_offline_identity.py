"""Contract 3, one sketch in three places: a capture replayed through a veth pair
into the attached XDP program gives bit-identical sketch arrays, and the same
exact flows, as `netspectra analyze` on the file.

tcpreplay sends every record of the file as a frame; the sensor counts them at
the other end of the pair.  Frames must fit the veth MTU (1600 here) and must
not be cut by the capture's snaplen, or the live and file byte counts differ.
"""

import contextlib
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from netspectra import packets as P
from netspectra.agent import Agent
from netspectra.kernel import libbpf
from netspectra.netns import VethPair
from netspectra.offline import analyze
from tests.helpers.replay import tcpreplay

from .conftest import load

pytestmark = pytest.mark.root

PCAPS = Path(__file__).resolve().parents[3] / "shared" / "pcaps"


def write_pcap(path: Path, frames: list[bytes]) -> None:
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000, len(fr), len(fr)))
            f.write(fr)


def generated(path: Path) -> Path:
    rng = np.random.default_rng(5)
    frames = []
    for i in range(3000):
        j = int(rng.zipf(1.3)) % 400
        if i % 3 == 0:
            frames.append(
                P.frame(f"2001:db8::{j:x}", "2001:db8:1::1", P.UDP, 1000 + j, 53, size=int(rng.integers(60, 1500)))
            )
        else:
            vl = (7,) if i % 5 == 0 else ()
            frames.append(P.frame(f"10.8.{j // 250}.{j % 250}", f"10.9.0.{i % 40}", (P.TCP, P.UDP)[i % 2], 2000 + j, 80,
                                  size=int(rng.integers(60, 1500)), vlans=vl))  # fmt: skip
    write_pcap(path, frames)
    return path


def flows_dict(flows):
    return {
        (bytes(k["src"]), bytes(k["dst"]), int(k["sport"]), int(k["dport"]), int(k["proto"])): (int(p), int(b))
        for k, p, b in zip(flows["key"], flows["packets"], flows["bytes"])
    }


@contextlib.contextmanager
def attached(prog):
    """prog attached (native XDP) to one end of a fresh veth pair; yields the
    pair and an agent whose sets start empty.  Detaches and closes prog."""
    try:
        with VethPair() as v:
            with v.inside_b():
                link = libbpf.xdp_link(prog.prog_fd, socket.if_nametoindex(v.dev_b), "native")
            try:
                agent = Agent(prog, prog.layout)
                agent.epoch()
                yield v, agent
            finally:
                libbpf.os.close(link)
    finally:
        prog.close()


def replay_and_compare(capture: Path):
    offline = analyze([str(capture)])
    assert not offline.errors
    with attached(load(flow_capacity=65536)) as (v, agent):
        tcpreplay(v, capture)
        time.sleep(0.3)
        live = agent.epoch()
    sent = int(offline.overall.totals[0][0])
    assert int(live.totals[0][0]) == sent, "not every frame of the file reached the sensor"
    assert np.array_equal(live.totals, offline.overall.totals)
    assert flows_dict(live.flows) == flows_dict(offline.overall.flows)
    assert np.array_equal(live.sketch.cm, offline.overall.sketch.cm), "Count-Min arrays differ"
    assert np.array_equal(live.sketch.ss, offline.overall.sketch.ss), "SuperSpread registers differ"
    assert live.sketch.cm["packets"].any() and live.sketch.ss.any()


def test_generated_capture_live_equals_offline(tmp_path):
    replay_and_compare(generated(tmp_path / "gen.pcap"))


@pytest.mark.parametrize(
    "name",
    [
        "zeek__wikipedia.pcap",
        "pcpp__VlanPackets.pcap",
        "pcpp__ip4_fragments.pcap",
        "zeek__pppoe.pcap",
        "zeek__mixed-vlan-mpls.pcap",
    ],
)
def test_real_capture_live_equals_offline(name):
    path = PCAPS / name
    assert path.exists(), f"{path} missing (../shared/pcaps)"
    replay_and_compare(path)


@pytest.mark.parametrize("every_packet", [False, True])
def test_tiny_table_flipping_every_50ms_merges_to_offline(tmp_path, every_packet):
    """A table far smaller than the capture's flows, flipped every 50 ms while
    the capture is replayed: in every epoch flows + untracked == what crossed,
    and the epochs' sketches, merged, equal `netspectra analyze` of the file
    bit for bit (the light part carried what the heavy part could not)."""
    import threading

    from netspectra import abi
    from netspectra.kernel.program import Program, possible_cpus
    from netspectra.tasks import layout

    capture = generated(tmp_path / "gen.pcap")
    offline = analyze([str(capture)])
    lay = layout([t.spec for t in offline.overall.sketch.layout.tasks], possible_cpus())
    snaps, stop = [], threading.Event()
    with attached(Program(lay, 64, 64, every_packet=every_packet)) as (v, agent):
        flipper = threading.Thread(target=agent.run, args=(0.05, snaps.append, stop))
        flipper.start()
        try:
            tcpreplay(v, capture, "--pps", "6000")
            time.sleep(0.3)
        finally:
            stop.set()
            flipper.join()
    assert len(snaps) >= 5, "the replay should span several epochs"
    totals = sum(s.totals for s in snaps)
    totals[abi.C["flow_untracked"]] = totals[abi.C["cand_lost"]] = 0  # the file's analysis tracks every flow
    assert np.array_equal(totals, offline.overall.totals)
    untracked = [int(s.totals[abi.C["flow_untracked"], 0]) for s in snaps]
    assert sum(untracked) > 0
    for s, u in zip(snaps, untracked, strict=True):
        ip = int(s.totals[abi.C["out_ipv4"], 0] + s.totals[abi.C["out_ipv6"], 0])
        assert int(s.flows["packets"].sum()) + u == ip
        assert s.exact == (u == 0)
    merged = snaps[0].sketch.copy()
    for s in snaps[1:]:
        merged.merge(s.sketch)
    assert np.array_equal(merged.cm, offline.overall.sketch.cm), "Count-Min arrays differ"
    assert np.array_equal(merged.ss, offline.overall.sketch.ss), "SuperSpread registers differ"
