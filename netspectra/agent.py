"""The epoch loop: flip the kernel's map sets, read the idle one, analyse it.

The kernel side is anything with flip() and take_*() (kernel.program.Program
in production); the rest is pure and testable without root.
"""

from __future__ import annotations

import threading
import time

from . import abi
from .sketch import SketchSet
from .snapshot import EpochSnapshot, Origin, derive, layout_fingerprint
from .tasks import Layout

# The millisecond clock (timestamps: millisecond) costs a thread 1000 wake-ups a
# second (bench/epoch_read: ~2% of a CPU on the development VM); reading the
# kernel clock per packet costs ~25 ns (bench/kernel_cost).  So the clock runs
# while the packet rate makes it the cheaper of the two, with some hysteresis;
# below, the program reads the kernel clock itself (ns resolution).
CLOCK_ON_PPS = 200_000
CLOCK_OFF_PPS = 100_000


class Agent:
    def __init__(
        self, program, layout: Layout, clock=time.time, mono_ns=time.monotonic_ns, origin: Origin | None = None
    ):
        self.program = program
        self.layout = layout
        self.origin = origin or Origin(layout=layout_fingerprint(layout))
        self.clock = clock
        self.mono_ns = mono_ns
        self.seq = 0
        self.epoch_start = clock()

    def epoch(self) -> EpochSnapshot:
        """Close the current epoch: flip, then read and clear the idle set.
        Its sketch is the sketch of its flows plus the kernel's arrays, which
        hold only the packets the flow table could not (every packet with
        every_packet, and then the flows add nothing).  When nothing was
        untracked, the arrays are not even read, and the flows' sketch is
        derived on first use: every answer of such an epoch comes from its
        exact flows."""
        t0 = time.perf_counter()
        p = self.program
        idle = p.flip()
        end = self.clock()
        offset = int(end * 1e9) - self.mono_ns()
        totals = p.take_totals(idle)
        fill = p.table_fill(idle)
        flows = p.take_flows(idle, offset)
        cands = p.take_candidates(idle)
        if getattr(p, "every_packet", False):
            sk = SketchSet(self.layout)
        else:
            sk = SketchSet.of_flows(self.layout, flows)
        p.take_sketch(idle, sk, int(totals[abi.C["flow_untracked"], 0]))
        self._pace_clock(totals, end - self.epoch_start)
        snap = derive(self.seq, self.epoch_start, end, totals, flows, sk, cands)
        snap.table_fill = fill
        snap.origin = self.origin
        snap.processing_s = time.perf_counter() - t0
        self.seq += 1
        self.epoch_start = end
        return snap

    def _pace_clock(self, totals, seconds: float) -> None:
        """Run the program's millisecond clock only while packets come fast
        enough for it to cost less than a kernel clock read per packet."""
        p = self.program
        if getattr(p, "timestamps", None) != "millisecond":
            return
        pps = int(totals[abi.C["out_ipv4"], 0] + totals[abi.C["out_ipv6"], 0]) / max(seconds, 1e-9)
        if pps >= CLOCK_ON_PPS and not p.clock_running:
            p.start_clock()
        elif pps < CLOCK_OFF_PPS and p.clock_running:
            p.stop_clock()

    def run(self, epoch_s: float, on_snapshot, stop: threading.Event, poll_s: float = 0.1) -> None:
        """Call on_snapshot every epoch until `stop` is set, then once more
        for the last partial epoch (run_all() with this agent alone)."""
        run_all([self], epoch_s, lambda snaps: on_snapshot(snaps[0]), stop, poll_s)


def run_all(agents: list[Agent], epoch_s: float, on_epochs, stop: threading.Event, poll_s: float = 0.1) -> None:
    """Call on_epochs([snapshot of each agent]) every epoch until `stop` is
    set, then once more for the last partial epoch.  The agents (one per
    interface) flip one after the other at each deadline, so their epochs
    share a sequence number and (to the flip time) start and end: the epochs
    of one round merge into the epoch of every interface.  Between flips,
    drain the candidate ring buffers every poll_s so bursts of reports do not
    overflow them."""
    deadline = time.monotonic() + epoch_s
    polls = [p for p in (getattr(a.program, "poll", None) for a in agents) if p]
    while not stop.wait(max(0.0, min(poll_s, deadline - time.monotonic()))):
        if time.monotonic() < deadline:
            for poll in polls:
                poll()
            continue
        on_epochs([a.epoch() for a in agents])
        deadline += epoch_s
        if deadline < time.monotonic():  # fell behind: skip, do not burst
            deadline = time.monotonic() + epoch_s
    on_epochs([a.epoch() for a in agents])
