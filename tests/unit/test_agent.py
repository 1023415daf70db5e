"""Agent.epoch() over a fake kernel program (no root): what it reads, in which
order, what it skips, and how it paces the millisecond clock."""

from __future__ import annotations

import numpy as np

from netspectra import abi, analysis
from netspectra.agent import CLOCK_OFF_PPS, CLOCK_ON_PPS, Agent
from netspectra.config import default_tasks
from netspectra.sketch import SketchSet
from netspectra.snapshot import Origin, layout_fingerprint
from netspectra.tasks import layout

LAY = layout(default_tasks(), 2)


class FakeProgram:
    """kernel.program.Program's agent-facing surface, with scripted epochs."""

    timestamps = "millisecond"
    every_packet = False

    def __init__(self):
        self.set = 0
        self.packets = 0  # IP packets of the next epoch
        self.untracked = 0
        self.flows = np.zeros(0, analysis.FLOW_RECORD)
        self.calls: list[str] = []
        self.clock_running = False

    def flip(self):
        self.calls.append("flip")
        self.set ^= 1
        return self.set ^ 1

    def take_totals(self, s):
        self.calls.append("take_totals")
        t = np.zeros((abi.NCOUNTERS, 2), np.uint64)
        t[abi.C["all"], 0] = t[abi.C["out_ipv4"], 0] = self.packets
        t[abi.C["flow_untracked"], 0] = self.untracked
        return t

    def table_fill(self, s):
        return 0.25

    def take_flows(self, s, offset):
        self.calls.append("take_flows")
        return self.flows

    def take_candidates(self, s):
        return np.zeros(0, abi.CAND)

    def take_sketch(self, s, sk, untracked):
        self.calls.append(f"take_sketch({untracked})")
        return bool(untracked)

    def start_clock(self):
        self.clock_running = True

    def stop_clock(self):
        self.clock_running = False


def agent(prog, step=1.0):
    t = [1000.0]

    def clock():
        t[0] += step
        return t[0]

    return Agent(prog, LAY, clock=clock, mono_ns=lambda: 0)


def test_epoch_reads_the_idle_set_and_defers_the_sketch():
    p = FakeProgram()
    p.flows = np.zeros(3, analysis.FLOW_RECORD)
    p.flows["key"]["src"][:, 15] = (1, 2, 3)
    p.flows["packets"], p.flows["bytes"] = 5, 500
    p.packets = 15
    a = agent(p)
    s = a.epoch()
    assert p.calls == ["flip", "take_totals", "take_flows", "take_sketch(0)"]
    assert s.exact and s.table_fill == 0.25 and s.seq == 0 and (s.start, s.end) == (1001.0, 1002.0)
    assert isinstance(s.sketch, SketchSet) and not s.sketch.derived  # nothing read it
    assert s.origin == Origin(layout=layout_fingerprint(LAY))
    assert s.sketch.total("src") == (15, 1500)  # derived on first use, from the flows
    p.untracked = 7
    s = a.epoch()
    assert not s.exact and s.seq == 1 and p.calls[-1] == "take_sketch(7)"


def test_agent_stamps_its_origin():
    o = Origin("edge-1", "boot-x", "eth3", layout_fingerprint(LAY))
    a = Agent(FakeProgram(), LAY, origin=o)
    assert a.epoch().origin == o and a.epoch().to_json()["origin"] == {
        "sensor": "edge-1",
        "boot": "boot-x",
        "interface": "eth3",
        "layout": layout_fingerprint(LAY),
    }


def test_clock_runs_only_while_packets_come_fast():
    p = FakeProgram()
    a = agent(p, step=1.0)  # 1 s epochs: packets = pps
    for pps, running in (
        (CLOCK_ON_PPS - 1, False),
        (CLOCK_ON_PPS, True),
        (CLOCK_OFF_PPS, True),  # hysteresis: keeps running down to the off rate
        (CLOCK_OFF_PPS - 1, False),
        (CLOCK_ON_PPS * 10, True),
    ):
        p.packets = pps
        a.epoch()
        assert p.clock_running == running, pps
    p.timestamps = "precise"
    p.clock_running = False
    p.packets = CLOCK_ON_PPS * 10
    a.epoch()
    assert not p.clock_running  # only the millisecond source has a clock
