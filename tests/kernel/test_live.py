"""The real program on a veth pair with real traffic (contract 1: exactness).

Frames leave one end of a veth pair through an AF_PACKET socket and the XDP
program counts them at the other end, while the agent flips the map sets every
50 ms.  Summed over epochs, every planted flow must have exactly the packets
and bytes sent: none lost, none counted twice across a flip.
"""

import random
import socket
import threading
import time

import numpy as np
import pytest

from netspectra import packets as P
from netspectra.agent import Agent
from netspectra.kernel import libbpf
from netspectra.netns import VethPair

from .conftest import load

pytestmark = pytest.mark.root


def flow_key(src, dst, proto, sport, dport):
    return (P.mapped(src), P.mapped(dst), proto, sport, dport)


def planted_flows(n_v4=300, n_v6=150, n_vlan=60, seed=7):
    """(key, frames) per flow: many flows, packet counts and sizes varying."""
    rng = random.Random(seed)
    out = []
    for i in range(n_v4 + n_v6 + n_vlan):
        if i < n_v4:
            src, dst, vl = f"10.{i // 250}.{i % 250}.1", "192.0.2.7", ()
        elif i < n_v4 + n_v6:
            src, dst, vl = f"2001:db8::{i:x}", "2001:db8:ffff::1", ()
        else:
            src, dst, vl = f"172.16.{i % 250}.9", "198.51.100.1", ((100 + i % 7,) if i % 2 else (10, 200 + i % 5))
        proto = (P.TCP, P.UDP)[i % 2]
        sport, dport = 1024 + i, 443 if proto == P.TCP else 53
        count = rng.randint(1, 40)
        frames = [P.frame(src, dst, proto, sport, dport, size=rng.randint(60, 1500), vlans=vl) for _ in range(count)]
        out.append((flow_key(src, dst, proto, sport, dport), frames))
    return out


def observed(snaps):
    got = {}
    for s in snaps:
        for f in s.flows:
            k = f["key"]
            key = (bytes(k["src"]), bytes(k["dst"]), int(k["proto"]), int(k["sport"]), int(k["dport"]))
            p, b = got.get(key, (0, 0))
            got[key] = (p + int(f["packets"]), b + int(f["bytes"]))
    return got


@pytest.fixture
def veth():
    with VethPair() as v:
        yield v


def attach(prog, v, mode="native"):
    with v.inside_b():
        return libbpf.xdp_link(prog.prog_fd, socket.if_nametoindex(v.dev_b), mode)


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_exact_per_flow_across_50ms_flips(veth, mode):
    flows = planted_flows()
    prog = load(flow_capacity=8192)
    link = attach(prog, veth, mode)
    agent = Agent(prog, prog.layout)
    snaps, stop = [], threading.Event()
    flipper = threading.Thread(target=agent.run, args=(0.05, snaps.append, stop))
    flipper.start()
    try:
        # interleave flows so every flip cuts through many of them
        frames = [f for _, fs in flows for f in fs]
        random.Random(1).shuffle(frames)
        rounds = 4
        for _ in range(rounds):
            veth.send(frames)
        time.sleep(0.3)
    finally:
        stop.set()
        flipper.join()
        libbpf.os.close(link)
        prog.close()

    assert len(snaps) >= 5, "the flips did not happen during the traffic"
    got = observed(snaps)
    missing, wrong = [], []
    for key, fs in flows:
        want = (rounds * len(fs), rounds * sum(len(f) for f in fs))
        if key not in got:
            missing.append(key)
        elif got[key] != want:
            wrong.append((key, got[key], want))
    assert not missing and not wrong, f"{len(missing)} flows missing, {len(wrong)} wrong, e.g. {(missing + wrong)[:2]}"
    # totals count exactly what was sent (the namespaces have IPv6 off: no ND chatter)
    sent = rounds * sum(len(fs) for _, fs in flows)
    total = sum(int(s.totals[0][0]) for s in snaps)
    assert total == sent
    assert sum(s.counter("flow_untracked")[0] for s in snaps) == 0


def test_heavy_hitters_and_spreaders_live(veth):
    from netspectra.tasks import TaskSpec

    tasks = [
        TaskSpec("src", "countmin", ("src_ip",), depth=4, width=4096, hh_packets=500, seed=11),
        TaskSpec(
            "spread",
            "superspread",
            ("src_ip",),
            ("dst_ip",),
            width=4096,  # pool registers (virtual HyperLogLog)
            registers=64,
            seed=12,
            elem_seed=13,
            spread_threshold=150,
        ),  # fmt: skip
    ]
    prog = load(tasks, flow_capacity=8192)
    link = attach(prog, veth)
    try:
        frames = []
        for i in range(2000):  # background: 400 sources, 5 packets each
            frames.append(P.frame(f"10.50.{i % 400 // 250}.{i % 250}", "192.0.2.1", P.UDP, 1000, 53))
        frames += [P.frame("10.66.0.1", "192.0.2.2", P.TCP, 4000, 80, size=900)] * 800  # heavy
        frames += [P.frame("10.66.0.2", "192.0.2.3", P.UDP, 4001, 53)] * 600  # heavy
        frames += [P.frame("10.77.0.1", f"10.{200 + i // 250}.{i % 250}.1", P.TCP, 5000, 22) for i in range(600)]
        random.Random(3).shuffle(frames)
        veth.send(frames)
        time.sleep(0.2)
        snap = Agent(prog, prog.layout).epoch()
    finally:
        libbpf.os.close(link)
        prog.close()
    hh = {P.addr_str(k["src"]): int(p) for k, p in zip(snap.heavy["src"].keys, snap.heavy["src"].packets)}
    assert hh.get("10.66.0.1", 0) >= 800 and hh.get("10.66.0.2", 0) >= 600
    assert all(p >= 500 for p in hh.values())
    keys, est = snap.spreaders["spread"]
    spread = {P.addr_str(k["src"]): e for k, e in zip(keys, est)}
    assert "10.77.0.1" in spread and 600 * 0.6 < spread["10.77.0.1"] < 600 * 1.4
    assert len(spread) == 1


def test_no_packet_lost_at_epoch_end(veth):
    """Frames in flight during the last flip land in the set read by the
    final (partial) epoch, never in a set nobody reads."""
    prog = load(flow_capacity=1024)
    link = attach(prog, veth)
    agent = Agent(prog, prog.layout)
    frame = P.frame("10.9.0.1", "10.9.0.2", P.UDP, 7, 7, size=200)
    snaps = []
    try:
        for _ in range(20):
            veth.send([frame] * 500)
            snaps.append(agent.epoch())
        time.sleep(0.1)
        snaps.append(agent.epoch())
    finally:
        libbpf.os.close(link)
        prog.close()
    got = observed(snaps)[flow_key("10.9.0.1", "10.9.0.2", P.UDP, 7, 7)]
    assert got == (20 * 500, 20 * 500 * 200)
    assert np.all([s.counter("cand_lost")[0] == 0 for s in snaps])
