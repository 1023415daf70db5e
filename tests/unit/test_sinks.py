"""The sink seam: one bounded worker per sink, so a slow, stuck or failing
sink never delays the epoch loop or the other sinks (contract 10), and what
is lost is counted."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from netspectra import logline, sinks
from netspectra.sinks import Fanout, FuncSink, Queued, SinkRefused
from tests.helpers.sinks import FaultySink, InMemorySink


def epoch(seq: int, nbytes: int = 0):
    return SimpleNamespace(seq=seq, flows=np.zeros(nbytes, np.uint8), sketch=None)


@pytest.fixture(autouse=True)
def fast_retry(monkeypatch):
    monkeypatch.setattr(sinks, "RETRY_FIRST_S", 0.01)
    monkeypatch.setattr(sinks, "RETRY_MAX_S", 0.02)


def test_delivers_in_order_and_closes_the_sink():
    sink = InMemorySink()
    q = Queued(sink, "memory", max_epochs=1000, log=io.StringIO())
    for i in range(100):
        q.on_epoch(epoch(i))
    q.close()
    assert [e.seq for e in sink.epochs] == list(range(100))
    assert sink.closed
    st = q.stats()
    assert (st.delivered, st.dropped, st.failed, st.queued, st.queued_bytes) == (100, 0, 0, 0, 0)


def test_a_stuck_sink_never_blocks_and_overflow_is_counted():
    sink = FaultySink()
    sink.gate.clear()  # stuck inside on_epoch
    q = Queued(sink, "stuck", max_epochs=5, log=io.StringIO())
    t0 = time.perf_counter()
    for i in range(50):
        q.on_epoch(epoch(i))
    assert time.perf_counter() - t0 < 0.5  # never waits on the sink
    st = q.stats()
    # one epoch is inside the stuck sink (still queued at the head), four more wait
    assert st.queued == 5 and st.dropped == 45
    sink.gate.set()
    assert q.flush(5)
    assert [e.seq for e in sink.epochs] == [0, 1, 2, 3, 4]
    q.close()


def test_the_byte_bound_drops_too():
    q = Queued(FaultySink(), "bytes", max_epochs=100, max_bytes=10_000, log=io.StringIO())
    q.sink.gate.clear()
    for i in range(10):
        q.on_epoch(epoch(i, nbytes=3000))
    st = q.stats()
    assert st.queued == 2 and st.dropped == 8 and st.queued_bytes <= 10_000
    q.sink.gate.set()
    q.close()


def test_an_outage_is_retried_then_everything_is_delivered_in_order():
    sink = FaultySink()
    sink.error = OSError(28, "No space left on device")
    log = io.StringIO()
    q = Queued(sink, "store", max_epochs=100, log=log)
    for i in range(10):
        q.on_epoch(epoch(i))
    deadline = time.monotonic() + 5
    while sink.attempts < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    st = q.stats()
    assert not st.up and st.errors >= 3 and st.delivered == 0 and st.queued == 10
    sink.error = None
    assert q.flush(5)
    st = q.stats()
    assert st.up and st.delivered == 10 and st.dropped == 0
    assert [e.seq for e in sink.epochs] == list(range(10))
    text = log.getvalue()
    assert text.count("down (OSError") == 1 and "back up" in text  # said once, not per retry
    q.close()


def test_a_refused_epoch_is_counted_and_skipped():
    class Picky(InMemorySink):
        def on_epoch(self, snap):
            if snap.seq == 1:
                raise SinkRefused("another sketch layout")
            super().on_epoch(snap)

    sink = Picky()
    log = io.StringIO()
    q = Queued(sink, "picky", log=log)
    for i in range(3):
        q.on_epoch(epoch(i))
    q.close()
    assert [e.seq for e in sink.epochs] == [0, 2]
    assert q.stats().failed == 1 and "epoch 1 refused: another sketch layout" in log.getvalue()


def test_close_gives_a_down_sink_a_bounded_time_then_counts_the_rest():
    sink = FaultySink()
    sink.error = ConnectionRefusedError("store down")
    log = io.StringIO()
    q = Queued(sink, "store", log=log)
    for i in range(4):
        q.on_epoch(epoch(i))
    t0 = time.perf_counter()
    q.close(timeout=0.3)
    assert time.perf_counter() - t0 < 3
    assert q.stats().dropped == 4 and sink.closed
    assert "4 epochs still queued at exit were dropped" in log.getvalue()
    q.on_epoch(epoch(5))  # after close: dropped, not queued
    assert q.stats().dropped == 5


def test_fanout_isolates_a_failing_sink():
    good, log = InMemorySink(), io.StringIO()

    def boom(snap):
        raise RuntimeError("bad sink")

    f = Fanout([FuncSink("boom", boom), good], log=log)
    for i in range(3):
        f.on_epoch(epoch(i))
    f.close()
    assert [e.seq for e in good.epochs] == [0, 1, 2] and good.closed
    assert log.getvalue().count("boom: RuntimeError: bad sink") == 1


def test_fanout_lists_its_queued_sinks_for_the_metrics():
    q = Queued(InMemorySink(), "view", log=io.StringIO())
    f = Fanout([FuncSink("metrics", lambda s: None), q])
    assert f.queued() == [q]
    f.close()


@pytest.fixture
def full_pipe():
    """A real pipe filled to capacity that nobody reads (`attach --json 2>pipe`):
    its blocking write end as a text stream, and the read end."""
    r, w = os.pipe()
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(w, fcntl.F_SETFL, flags)  # blocking again, as stderr is
    log = os.fdopen(w, "w")
    yield log, r
    os.close(r)  # a writer a failing test left blocked gets EPIPE
    with contextlib.suppress(OSError):
        log.close()


def drain(r) -> bytes:
    os.set_blocking(r, False)
    got = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(r, 1 << 16):
            got += chunk
    return got


def test_warnings_to_an_unread_stderr_pipe_never_hold_the_epoch_loop(full_pipe, monkeypatch):
    log, r = full_pipe
    monkeypatch.setattr(logline, "dropped", 0)
    stuck = FaultySink()
    stuck.gate.clear()
    q = Queued(stuck, "stuck", max_epochs=1, log=log)

    def boom(snap):
        raise RuntimeError("bad sink")

    f = Fanout([FuncSink("boom", boom), q], log=log)
    done = threading.Event()

    def loop():  # the epoch loop: the full queue and the failing sink both warn
        for i in range(20):
            f.on_epoch(epoch(i))
        done.set()

    threading.Thread(target=loop, daemon=True).start()
    assert done.wait(2), "the epoch loop blocked writing a warning to stderr"
    assert q.stats().dropped == 19
    assert logline.dropped == 2  # "boom: RuntimeError" and "queue full", each said once
    drain(r)  # the reader comes back: the next line says what was lost
    assert logline.say(log, "netspectra: next")
    assert drain(r).decode().splitlines() == [
        "netspectra: 2 earlier warning lines were dropped (stderr was not writable)",
        "netspectra: next",
    ]
    stuck.gate.set()
    f.close()
