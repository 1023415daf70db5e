"""Network-wide windows (netspectra/fleet/windows.py): which sensor epochs
are merged together, when a window closes, and what is a duplicate or late.
Pure bookkeeping: epochs here are only an origin and a time range."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from netspectra.fleet.windows import ADDED, DUPLICATE, LATE, Windows
from netspectra.snapshot import Origin

W, G = 5.0, 10.0
T = 1_796_083_200.0  # aligned to the windows: window K starts at T
K = int(T // W)


def ep(sensor: str, start: float, length: float = W, interface: str = "eth0"):
    return SimpleNamespace(origin=Origin(sensor, "boot", interface, "L"), start=start, end=start + length)


def test_an_epoch_goes_to_the_window_its_start_falls_in_whatever_the_clocks():
    w = Windows(W, G, ("a", "b", "c"))
    assert w.add(ep("a", T), "ta").index == K
    assert w.add(ep("b", T + 2.3), "tb").index == K  # unaligned clock: [T+2.3, T+7.3) is still window K
    assert w.add(ep("c", T - 0.4), "tc").index == K - 1  # started just before: the window before
    assert w.add(ep("c", T + 4.6), "tc2").index == K
    assert w.open_windows() == 2
    assert w.index(T + W - 1e-6) == K and w.index(T + W) == K + 1
    assert w.bounds(K) == (T, T + W)


def test_a_window_closes_when_every_expected_sensor_reported_past_its_end():
    w = Windows(W, G, ("a", "b", "c"))
    for s in ("a", "b"):
        assert w.add(ep(s, T), f"t{s}").kind == ADDED
    assert w.close_ready(T + W) == []  # c has not reported
    assert w.missing(K) == ("c",)
    w.add(ep("c", T + 1.0), "tc")  # c's epoch ends at T + 6 > the window's end
    (c,) = w.close_ready(T + W)
    assert (c.index, c.start, c.end, c.how, c.missing) == (K, T, T + W, "complete", ())
    assert c.sensors == ("a", "b", "c")
    assert sorted(c.tokens) == ["ta", "tb", "tc"]
    assert [s.origin.sensor for s in c.epochs] == ["a", "b", "c"]
    assert (w.closed, w.closed_by["complete"], w.open_windows()) == (1, 1, 0)


def test_a_sensor_with_shorter_epochs_completes_a_window_with_the_epoch_that_reaches_its_end():
    w = Windows(W, G, ("a", "b"))
    w.add(ep("a", T), "a")
    w.add(ep("b", T, 2.5), "b1")
    assert w.close_ready(T + W) == []  # b's first half
    w.add(ep("b", T + 2.5, 2.5), "b2")
    (c,) = w.close_ready(T + W)
    assert c.how == "complete" and len(c.epochs) == 3  # both halves of b, merged into one window


def test_a_window_missing_a_sensor_closes_after_its_grace():
    w = Windows(W, G, ("a", "b", "c"))
    w.add(ep("a", T), "ta", now=T + W)
    w.add(ep("b", T), "tb", now=T + W)
    assert w.close_ready(T + W + G - 0.01) == []
    (c,) = w.close_ready(T + W + G)
    assert (c.how, c.missing, c.sensors) == ("grace", ("c",), ("a", "b"))
    assert w.closed_by == {"complete": 0, "grace": 1, "forced": 0}


def test_grace_counts_from_the_first_epoch_when_it_arrives_after_the_window_ended():
    """Epochs that come in a burst long after their window (a sensor's spool
    after a NATS outage) are merged together, not closed on the first one."""
    w = Windows(W, G, ("a", "b"))
    late_arrival = T + 600.0
    w.add(ep("a", T), "ta", now=late_arrival)
    assert w.close_ready(late_arrival) == []
    w.add(ep("b", T), "tb", now=late_arrival + 1)
    (c,) = w.close_ready(late_arrival + 1)
    assert c.how == "complete" and c.sensors == ("a", "b")
    w.add(ep("a", T + W), "ta2", now=late_arrival + 2)
    assert w.close_ready(late_arrival + 2 + G - 0.01) == []
    w.restart_grace(late_arrival + 100)  # the caller could not read for a while
    assert w.close_ready(late_arrival + 100 + G - 0.01) == []
    assert w.close_ready(late_arrival + 100 + G)[0].how == "grace"


def test_the_same_epoch_twice_is_a_duplicate_not_merged_twice():
    w = Windows(W, G, ("a", "b"))
    assert w.add(ep("a", T), "first") == (ADDED, K, None)
    assert w.add(ep("a", T), "again") == (DUPLICATE, K, "again")  # its token comes back, to be acked
    other_iface = ep("a", T, interface="eth1")  # another interface of the same sensor: another epoch
    assert w.add(other_iface, "eth1").kind == ADDED
    w.add(ep("b", T), "b")
    (c,) = w.close_ready(T + W)
    assert sorted(c.tokens) == ["b", "eth1", "first"]
    assert (w.received, w.duplicates, w.sensors["a"].received, w.sensors["a"].duplicates) == (4, 1, 3, 1)


def test_an_epoch_for_a_closed_window_is_late():
    w = Windows(W, G, ("a", "b"))
    w.add(ep("a", T), "a")
    w.add(ep("b", T), "b")
    w.close_ready(T + W)
    assert w.add(ep("a", T), "again") == (LATE, K, "again")  # a redelivery of a closed window: late too
    assert w.add(ep("b", T - 3 * W), "old") == (LATE, K - 3, "old")  # before the first window ever closed
    assert w.open_windows() == 0
    assert (w.late, w.sensors["a"].late, w.sensors["b"].late, w.duplicates) == (2, 1, 1, 0)
    assert w.add(ep("a", T + W), "next").kind == ADDED  # the next window is open as usual


def test_out_of_order_arrival_and_windows_close_in_order():
    w = Windows(W, G, ("a", "b"))
    # window K+1 fills up first; K still waits for b
    w.add(ep("b", T + W), "b1", now=T + 2 * W)
    w.add(ep("a", T + W), "a1", now=T + 2 * W)
    w.add(ep("a", T), "a0", now=T + 2 * W)
    assert w.missing(K + 1) == () and w.missing(K) == ()  # b's newest epoch already ends past K
    w2 = Windows(W, G, ("a", "b"))
    w2.add(ep("a", T + W), "a1", now=T + 2 * W)
    w2.add(ep("a", T), "a0", now=T + 2 * W)
    w2.add(ep("b", T + W + 0.5, W - 0.5), "b1", now=T + 2 * W)  # b skipped window K (clock drift)
    got = w2.close_ready(T + 2 * W)
    assert [c.index for c in got] == [K, K + 1]  # b reported past K's end: K is complete too
    assert [c.how for c in got] == ["complete", "complete"]
    assert (got[0].sensors, got[1].sensors) == (("a",), ("a", "b"))

    # a window past its grace waits for an older one whose grace runs later (it arrived later)
    w3 = Windows(W, G, ("a", "b"))
    w3.add(ep("a", T + W), "a1", now=T + 2 * W)
    w3.add(ep("a", T), "a0", now=T + 60)  # window K only now (from a spool, say)
    assert w3.close_ready(T + 2 * W + G) == []  # K+1's grace is over, K's is not
    got = w3.close_ready(T + 60 + G)
    assert [(c.index, c.how) for c in got] == [(K, "grace"), (K + 1, "grace")]


def test_without_expected_sensors_who_reports_is_learnt_first():
    w = Windows(W, G)  # sensors: whoever reports
    w.add(ep("a", T), "a0", now=T + W)
    assert w.close_ready(T + W) == []  # the first windows close by grace only: b may be on its way
    w.add(ep("b", T), "b0", now=T + W)
    for i in range(1, 4):
        w.add(ep("a", T + i * W), f"a{i}", now=T + (i + 1) * W)
        w.add(ep("b", T + i * W), f"b{i}", now=T + (i + 1) * W)
    got = w.close_ready(T + 4 * W)
    assert [(c.index - K, c.how) for c in got] == [(0, "grace"), (1, "grace"), (2, "complete"), (3, "complete")]
    assert got[0].sensors == ("a", "b")
    # b goes silent: the next window waits for it for a grace, then forgets it
    w.add(ep("a", T + 4 * W), "a4", now=T + 5 * W)
    assert w.close_ready(T + 5 * W) == [] and w.awaited(K + 4) == ("a", "b")
    assert w.close_ready(T + 5 * W + G)[0].missing == ("b",)
    for i in range(5, 8):
        w.add(ep("a", T + i * W), f"a{i}", now=T + (i + 1) * W)
    # b is awaited while its last epoch ended less than a grace before a window's start
    assert [c.how for c in w.close_ready(T + 6 * W + G)] == ["grace"]
    assert [c.how for c in w.close_ready(T + 7 * W + G)] == ["grace", "complete"]
    assert w.awaited(K + 7) == ("a",)


def test_too_many_open_windows_close_the_oldest():
    w = Windows(W, G, ("a", "b"), max_open=2)
    for i in range(3):
        w.add(ep("a", T + i * W), i, now=T)
    got = w.close_ready(T)
    assert [(c.index - K, c.how, c.missing) for c in got] == [(0, "forced", ("b",))]
    assert w.open_windows() == 2
    assert [c.index - K for c in w.close_oldest()] == [1]
    assert sorted(w.held()) == [2]
    assert [c.index - K for c in w.close_all()] == [2]


def test_bad_parameters():
    with pytest.raises(ValueError, match="window_s"):
        Windows(0, G)
    with pytest.raises(ValueError, match="grace_s"):
        Windows(W, -1)
