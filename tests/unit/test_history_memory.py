"""api.max_memory: the epochs kept for queries and the answers cached over
them stay within one byte budget (a quarter for the answers, the rest for the
epochs, oldest leaving first), and queries say when the range was cut for it."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.api.history import History, nbytes
from netspectra.api.queries import ApiError, Queries
from netspectra.api.v1 import sensor_pb2 as pb
from netspectra.config import ConfigError, parse_config
from tests.helpers.epochs import LAY, epoch, packets

T0 = 1_700_000_000.0


def snaps(n: int) -> list:
    rng = np.random.default_rng(7)
    return [epoch(*packets(rng, 2000), seq=i, t=T0 + 5 * i) for i in range(n)]


def test_nbytes_counts_the_arrays_of_a_real_snapshot_once():
    s = snaps(1)[0]
    arrays = s.flows.nbytes + s.totals.nbytes  # + the sketches once built, heavy hitters, spreads
    assert arrays < nbytes(s) < arrays + (8 << 20)
    assert nbytes([s, s]) == nbytes(s)


def budget(epochs: float, one: int) -> int:
    """A max_bytes whose epochs' share (3/4) holds `epochs` epochs of `one` bytes."""
    return int(epochs * one * 4 / 3)


def test_oldest_epochs_leave_first_to_stay_within_max_bytes():
    epochs = snaps(6)
    one = nbytes(epochs[0])
    h = History(12, LAY, max_bytes=budget(2.5, one))
    for s in epochs:
        h.add(s)
    assert [s.seq for s in h.snapshots()] == [4, 5]
    assert h.dropped_for_memory == 4
    assert 0 < h.kept_bytes <= h.epochs_max_bytes == h.max_bytes - h.max_bytes // 4
    assert h.answers.max_bytes == h.max_bytes // 4
    assert h.completed == 6  # every epoch still counted since start


def test_the_newest_epoch_stays_even_when_it_alone_is_larger():
    h = History(12, LAY, max_bytes=1)
    for s in snaps(3):
        h.add(s)
    assert [s.seq for s in h.snapshots()] == [2]


def test_without_a_budget_keep_epochs_alone_bounds():
    h = History(4, LAY)
    for s in snaps(6):
        h.add(s)
    assert len(h.snapshots()) == 4 and h.dropped_for_memory == 0 and h.cut_note() == ""


def test_a_range_query_says_it_was_cut_for_memory():
    epochs = snaps(6)
    h = History(12, LAY, max_bytes=budget(2.5, nbytes(epochs[0])))
    for s in epochs:
        h.add(s)
    r = pb.TimeRange()
    r.since.FromNanoseconds(int(T0 * 1e9))
    with pytest.raises(ApiError) as ei:
        Queries(h, {"interface": "eth0"}, clock=lambda: T0 + 60).TopKeys(pb.TopKeysRequest(task="src", range=r))
    assert "4 epochs left before api.keep_epochs for api.max_memory" in str(ei.value)


def test_max_memory_in_the_config():
    assert parse_config("api: {max_memory: 256MiB}").api.max_memory == 256 << 20
    assert parse_config("").api.max_memory == 1 << 30
    with pytest.raises(ConfigError, match="api.max_memory: 'lots' is not a size"):
        parse_config("api: {max_memory: lots}")


def estimated(n: int) -> list:
    """Epochs with untracked packets: answered from their sketches, which they keep."""
    rng = np.random.default_rng(11)
    out = []
    for i in range(n):
        keys, lengths = packets(rng, 2000)
        out.append(epoch(keys, lengths, untracked=rng.random(len(keys)) < 0.2, seq=i, t=T0 + 5 * i))
    return out


def test_kept_epochs_and_cached_answers_stay_within_max_bytes_together():
    epochs = estimated(8)
    h = History(12, LAY, max_bytes=budget(4, nbytes(epochs[0])))
    q = Queries(h, {"interface": "eth0"}, clock=lambda: T0 + 60)
    peak = 0
    for s in epochs:
        h.add(s)
        for n in range(1, 9):  # every window: each merges sketches and ranks keys, all cached
            q.TopKeys(pb.TopKeysRequest(task="src", epochs=n))
            q.TopSpreaders(pb.TopSpreadersRequest(task="scan", epochs=n))
            q.ListFlows(pb.ListFlowsRequest(epochs=n, page_size=10))
            kept, epoch_bytes, answer_bytes = h.memory()
            peak = max(peak, epoch_bytes + answer_bytes)
            assert epoch_bytes <= h.epochs_max_bytes or kept == 1
            assert answer_bytes <= h.answers.max_bytes
    assert 0 < h.answers.bytes and h.dropped_for_memory > 0  # both parts were used, and bounded
    assert peak <= h.max_bytes


def test_a_store_sources_answers_share_the_histories_budget():
    h = History(12, LAY, max_bytes=64 << 20)

    class Store:  # what Queries asks of a StoreSource here: only its cache
        cache = None

    src = Store()
    Queries(h, {"interface": "eth0"}, src)
    assert src.cache.get(("k",), lambda: np.zeros(1000, np.uint8)).nbytes == 1000
    assert h.answers.bytes == 1000 and h.answers.keys() == [("store", "k")]


def test_several_interfaces_share_max_memory_evenly():
    from netspectra.sensor import _queries

    cfg = parse_config("api: {max_memory: 300MiB}")
    _, kept = _queries(cfg, LAY, {}, None, share=3)  # two interfaces and their merge
    assert kept.max_bytes == 100 << 20 and kept.epochs_max_bytes + kept.answers.max_bytes == 100 << 20


def test_a_failing_computation_leaves_nothing_behind():
    from netspectra import source

    cache = source.Cache()

    def boom():
        raise ValueError("bad window")

    with pytest.raises(ValueError):
        cache.get(("w",), boom)
    assert cache._inflight == {} and cache.keys() == []
    assert cache.get(("w",), lambda: 3) == 3
