"""The fleet publisher (netspectra/fleet/publisher.py) against a real
nats-server with JetStream (the session fixture nats_server), and its disk
spool: order, chunking, de-duplication, outages, restarts (contracts 9, 10)."""

from __future__ import annotations

import asyncio
import io
import itertools
import time

import nats
import numpy as np
import pytest
from nats.js.api import StreamConfig

from netspectra import abi, codec
from netspectra.fleet import wire
from netspectra.fleet.config import FleetConfig
from netspectra.fleet.publisher import Publisher, start_publisher
from netspectra.fleet.spool import Spool, SpoolError, default_dir
from tests.helpers.epochs import epoch
from tests.helpers.nats import free_port
from tests.helpers.stores import same_records, series_of_epochs

_names = itertools.count()


# --- helpers -----------------------------------------------------------------------


async def _with_js(url: str, fn):
    nc = await nats.connect(url)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


def js_call(url: str, fn):
    """fn(js) on a connection of its own (the test's, not the publisher's)."""
    return asyncio.run(_with_js(url, fn))


def add_stream(url: str, name: str, prefix: str) -> None:
    js_call(
        url, lambda js: js.add_stream(StreamConfig(name=name, subjects=[wire.subjects(prefix)], duplicate_window=60))
    )


def stream_messages(url: str, name: str) -> int:
    async def count(js):
        return (await js.stream_info(name)).state.messages

    return js_call(url, count)


def stored(url: str, name: str) -> list:
    """The stream's messages, in order."""

    async def read(js):
        last = (await js.stream_info(name)).state.last_seq
        return [await js.get_msg(name, seq) for seq in range(1, last + 1)]

    return js_call(url, read)


def records(msgs) -> list[tuple[str, bytes]]:
    """(epoch id, record) of each epoch the messages carry, reassembled."""
    r, out = wire.Reassembly(), []
    for m in msgs:
        c = wire.parse(m.headers, m.data)
        whole = r.add(c)
        if whole is not None:
            out.append((c.epoch, whole))
    return out


def wait_until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def stream(nats_server):
    """A stream and subject prefix of this test's own: (name, prefix)."""
    n = next(_names)
    name, prefix = f"PUB{n}", f"pubtest{n}"
    add_stream(nats_server.url, name, prefix)
    return name, prefix


def config(url: str, stream: tuple[str, str], tmp_path, **kw) -> FleetConfig:
    name, prefix = stream
    return FleetConfig(servers=(url,), subject_prefix=prefix, stream=name, spool_dir=str(tmp_path / "spool"), **kw)


def publisher(cfg: FleetConfig, sensor: str = "s1") -> Publisher:
    return Publisher(cfg, sensor, log=io.StringIO(), reconnect_wait=0.1)


def eid_of(snap) -> str:
    return wire.epoch_id(snap.origin.sensor, snap.origin.interface, snap.start)


def big_epoch(n: int = 80_000):
    """An exact epoch of n random flows: its record (~1.6 MB) is larger than
    the server's 1 MiB max payload."""
    rng = np.random.default_rng(3)
    k = np.zeros(n, abi.KEY)
    k["src"][:, 10:12] = k["dst"][:, 10:12] = 0xFF
    k["src"][:, 12:16] = rng.integers(0, 256, (n, 4))
    k["dst"][:, 12:16] = rng.integers(0, 256, (n, 4))
    k["sport"], k["dport"], k["proto"] = rng.integers(0, 65536, n), rng.integers(0, 65536, n), 6
    return epoch(k, rng.integers(60, 1515, n).astype(np.uint64), sensor="s1", t=1_796_083_200.0)


# --- the spool ---------------------------------------------------------------------


def test_spool_keeps_order_across_reopen(tmp_path):
    s = Spool(tmp_path, 10)
    for i in range(3):
        assert s.append(f"e{i}", bytes([i]) * (100 + i))
    assert (len(s), s.peek()) == (3, ("e0", b"\0" * 100))
    s.remove()
    s.close()
    s = Spool(tmp_path, 10)
    assert len(s) == 2 and s.nbytes > 2 * 100
    assert s.append("e3", b"x")
    got = []
    while (head := s.peek()) is not None:
        got.append(head[0])
        s.remove()
    assert got == ["e1", "e2", "e3"] and (len(s), s.nbytes) == (0, 0)


def test_spool_bounds_records_and_bytes(tmp_path):
    s = Spool(tmp_path / "a", 2)
    assert [s.append(f"e{i}", b"r") for i in range(4)] == [True, True, False, False]
    assert (len(s), s.dropped) == (2, 2)
    s.remove()
    assert s.append("e4", b"r") and s.dropped == 2
    b = Spool(tmp_path / "b", 100, max_bytes=1000)
    assert b.append("e0", b"x" * 600) and not b.append("e1", b"x" * 600) and b.append("e2", b"x" * 100)
    assert (len(b), b.dropped) == (2, 1) and b.nbytes <= 1000


def test_spool_skips_damaged_and_partial_records(tmp_path):
    s = Spool(tmp_path, 10)
    for i in range(4):
        s.append(f"e{i}", bytes([i]) * 1000)
    s.close()
    recs = sorted(tmp_path.glob("*.rec"))
    flipped = bytearray(recs[1].read_bytes())
    flipped[-1] ^= 1
    recs[1].write_bytes(bytes(flipped))  # a bit flipped: the CRC tells
    recs[2].write_bytes(recs[2].read_bytes()[:500])  # cut short
    (tmp_path / "0000000000000009.tmp").write_bytes(b"half a rec")  # a write a crash interrupted
    s = Spool(tmp_path, 10)
    assert not list(tmp_path.glob("*.tmp")) and len(s) == 4
    assert s.peek()[0] == "e0"
    s.remove()
    assert s.peek() == ("e3", b"\3" * 1000) and s.damaged == 2 and len(s) == 1
    assert s.append("e4", b"y")  # numbered after the highest left on disk


def test_spool_has_one_owner_and_a_default_dir(tmp_path, monkeypatch):
    s = Spool(tmp_path, 10)
    with pytest.raises(SpoolError, match="in use by another process"):
        Spool(tmp_path, 10)
    s.close()
    Spool(tmp_path, 10).close()
    monkeypatch.setenv("NETSPECTRA_DATA_DIR", str(tmp_path / "data"))
    assert default_dir() == tmp_path / "data" / "fleet-spool"


# --- publishing --------------------------------------------------------------------


def test_epochs_arrive_in_order_and_decode(nats_server, stream, tmp_path):
    snaps = series_of_epochs(5)
    pub = publisher(config(nats_server.url, stream, tmp_path))
    try:
        for s in snaps:
            pub.on_epoch(s)
        wait_until(lambda: pub.stats().published == 5)
        st = pub.stats()
    finally:
        pub.close()
    msgs = stored(nats_server.url, stream[0])
    assert {m.subject for m in msgs} == {wire.subject(stream[1], "s1")}
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [f"{eid_of(s)}/0" for s in snaps]
    got = records(msgs)
    assert [e for e, _ in got] == [eid_of(s) for s in snaps]
    for s, (_, rec) in zip(snaps, got):
        back = codec.decode(rec)
        same_records(s, back)
        assert back.origin == s.origin
    assert (st.spooled, st.published, st.chunks, st.duplicates, st.dropped) == (5, 5, 5, 0, 0)
    assert st.bytes_sent == sum(len(r) for _, r in got) and (st.spool_depth, st.spool_bytes) == (0, 0)
    assert st.connected and st.last_error == ""
    assert "publishing to nats://127.0.0.1" in pub.log.getvalue()


def test_a_record_larger_than_max_payload_is_chunked(nats_server, stream, tmp_path):
    snap = big_epoch()
    record = codec.encode(snap)
    assert len(record) > 1 << 20
    pub = publisher(config(nats_server.url, stream, tmp_path))
    try:
        pub.on_epoch(snap)
        wait_until(lambda: pub.stats().published == 1)
        st = pub.stats()
    finally:
        pub.close()
    msgs = stored(nats_server.url, stream[0])
    assert len(msgs) == st.chunks == len(wire.chunks(record, 1 << 20)) >= 2
    assert all(len(m.data) <= (1 << 20) - wire.HEADROOM for m in msgs)
    assert [m.headers["Netspectra-Chunk"] for m in msgs] == [f"{i}/{len(msgs)}" for i in range(len(msgs))]
    assert records(reversed(msgs)) == [(eid_of(snap), record)]  # any order reassembles
    assert st.bytes_sent == len(record)


def test_a_republished_epoch_is_dropped_by_jetstream(nats_server, stream, tmp_path):
    snaps = series_of_epochs(2)
    cfg = config(nats_server.url, stream, tmp_path)
    pub = publisher(cfg)
    try:
        for s in snaps:
            pub.on_epoch(s)
        wait_until(lambda: pub.stats().published == 2)
        pub.on_epoch(snaps[0])  # the same epoch again (a replay)
        wait_until(lambda: pub.stats().published == 3)
        assert pub.stats().duplicates == 1
    finally:
        pub.close()
    assert stream_messages(nats_server.url, stream[0]) == 2
    # a crash after the ack and before the removal: the record is still on disk at the next start
    spool = Spool(cfg.spool_dir, 10)
    spool.append(eid_of(snaps[1]), codec.encode(snaps[1]))
    spool.close()
    pub = publisher(cfg)
    try:
        wait_until(lambda: pub.stats().published == 1)
        st = pub.stats()
    finally:
        pub.close()
    assert (st.duplicates, st.chunks, st.spool_depth) == (1, 1, 0)
    assert stream_messages(nats_server.url, stream[0]) == 2


def test_nats_down_epochs_wait_on_disk_within_the_bound(nats_server, stream, tmp_path):
    snaps = series_of_epochs(6)
    pub = publisher(config(nats_server.url, stream, tmp_path, spool=3))
    try:
        pub.on_epoch(snaps[0])
        wait_until(lambda: pub.stats().published == 1)
        nats_server.stop()
        try:
            wait_until(lambda: not pub.stats().connected)
            for s in snaps[1:]:
                t = time.perf_counter()
                pub.on_epoch(s)
                assert time.perf_counter() - t < 0.05
            st = pub.stats()
            assert (st.spooled, st.published, st.dropped, st.spool_depth) == (4, 1, 2, 3)
            assert st.spool_bytes > 0 and st.last_error
            time.sleep(0.3)  # reconnect attempts fail meanwhile
            assert pub.stats().published == 1
        finally:
            nats_server.start()
        wait_until(lambda: pub.stats().published == 4)
        st = pub.stats()
    finally:
        pub.close()
    assert st.connected and (st.dropped, st.spool_depth) == (2, 0)
    got = [e for e, _ in records(stored(nats_server.url, stream[0]))]
    assert got == [eid_of(s) for s in snaps[:4]]  # in order; the two beyond the bound were dropped
    log = pub.log.getvalue()
    assert log.count("NATS unreachable") == 1 and log.count("spool full") == 1
    assert log.count("publishing to") == 2 and "3 epochs waiting" in log


def test_closed_with_epochs_waiting_the_next_start_publishes_them(nats_server, tmp_path):
    n = next(_names)
    stream = (f"LATE{n}", f"late{n}")  # no such stream yet: the collector has not created it
    cfg = config(nats_server.url, stream, tmp_path)
    snaps = series_of_epochs(3)
    pub = publisher(cfg)
    for s in snaps:
        pub.on_epoch(s)
    wait_until(lambda: "does not exist" in pub.stats().last_error)
    t = time.monotonic()
    pub.close(timeout=0.3)
    assert time.monotonic() - t < 3
    st = pub.stats()
    assert (st.published, st.spool_depth, st.dropped) == (0, 3, 0)
    log = pub.log.getvalue()
    assert log.count(f"stream {stream[0]} does not exist yet") == 1
    assert "3 epochs left in the spool" in log
    add_stream(nats_server.url, *stream)
    pub = publisher(cfg)
    try:
        wait_until(lambda: pub.stats().published == 3)
    finally:
        pub.close()
    assert [e for e, _ in records(stored(nats_server.url, stream[0]))] == [eid_of(s) for s in snaps]


def test_off_and_unreachable(tmp_path):
    assert start_publisher(FleetConfig(), "s1") is None
    cfg = FleetConfig(servers=(f"nats://127.0.0.1:{free_port()}",), spool_dir=str(tmp_path / "spool"))
    log = io.StringIO()
    pub = start_publisher(cfg, "s1", log)
    snap = series_of_epochs(1)[0]
    t = time.perf_counter()
    pub.on_epoch(snap)
    assert time.perf_counter() - t < 0.05
    t = time.monotonic()
    pub.close(timeout=0.2)
    assert time.monotonic() - t < 3
    assert pub.stats().spool_depth == 1 and not pub.stats().connected
    assert "NATS unreachable" in log.getvalue() and "1 epochs left in the spool" in log.getvalue()
