"""codec: an epoch to bytes and back (as datasketches tests its sketches):
the decoded epoch answers every question like the original, exact and
estimated, merges like it, stays small, and damaged or foreign bytes are
refused with one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from netspectra import abi, codec
from netspectra.config import default_tasks
from netspectra.snapshot import Origin, merge
from netspectra.tasks import layout
from tests.helpers.epochs import TASKS, epoch, packets

V = np.dtype((np.void, 40))


def same(a, b) -> None:
    """b answers like a: every field of the record, flows, sketch, analysis."""
    for f in ("seq", "start", "end", "exact", "table_fill", "candidates", "processing_s", "origin"):
        assert getattr(a, f) == getattr(b, f), f
    assert np.array_equal(a.totals, b.totals)
    assert a.flows.tobytes() == b.flows.tobytes()
    assert a.sketch.layout == b.sketch.layout
    for n in a.heavy:
        assert a.heavy[n].keys.tobytes() == b.heavy[n].keys.tobytes()
        assert np.array_equal(a.heavy[n].packets, b.heavy[n].packets), n
        assert np.array_equal(a.heavy[n].bytes, b.heavy[n].bytes), n
    for n in a.spreaders:
        assert a.spreaders[n][0].tobytes() == b.spreaders[n][0].tobytes(), n
        assert np.array_equal(a.spreaders[n][1], b.spreaders[n][1]), n
    assert np.array_equal(a.sketch.cm, b.sketch.cm) and np.array_equal(a.sketch.ss, b.sketch.ss)


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_exact_epoch_round_trip_without_its_sketch(compression):
    rng = np.random.default_rng(1)
    keys, lengths = packets(rng, 6000)
    snap = epoch(keys, lengths, "edge-1", seq=41, t=1_796_000_000.25)
    snap.candidates, snap.table_fill, snap.processing_s = 3, 0.125, 0.0042
    data = codec.encode(snap, compression)
    back = codec.decode(data)
    assert back.exact and not back.sketch.derived  # the sketch of the flows, on first use
    assert "sketch.cm" not in {a.name for a in codec.pb.EpochRecord.FromString(data).arrays}
    same(snap, back)
    assert any(len(h.keys) for h in back.heavy.values()) and any(len(k) for k, _ in back.spreaders.values())


def test_estimated_epoch_round_trip_keeps_sketch_and_candidates():
    """With untracked packets the sketch travels, and the reported heavy
    hitters too: a key seen only in untracked packets is still found."""
    rng = np.random.default_rng(2)
    keys, lengths = packets(rng, 6000)
    lost = rng.random(len(keys)) < 0.4
    snap = epoch(keys, lengths, "edge-2", untracked=lost)
    assert not snap.exact
    back = codec.decode(codec.encode(snap))
    same(snap, back)
    tracked_src = set(snap.flows["key"]["src"][:, 15].tolist())
    only_untracked = [k for k in snap.heavy["src"].keys if int(k["src"][15]) not in tracked_src]
    assert all(k.tobytes() in set(back.heavy["src"].keys.view(V).tolist()) for k in only_untracked)


def test_decoded_epochs_merge_like_the_originals():
    rng = np.random.default_rng(3)
    keys, lengths = packets(rng, 8000)
    part = rng.integers(0, 3, len(keys))
    parts = [epoch(keys[part == i], lengths[part == i], f"s{i}", untracked=(rng.random(int((part == i).sum())) < 0.2)
                   if i == 2 else None) for i in range(3)]  # fmt: skip
    same(merge(parts), merge([codec.decode(codec.encode(p)) for p in parts]))


def test_an_underived_merge_decodes_to_the_merge():
    """merge(derived=False) keeps the parts' heavy-hitter keys as candidates and
    ranks nothing (the stores' rollups); decoded, it is merge() itself."""
    rng = np.random.default_rng(4)
    keys, lengths = packets(rng, 8000)
    part = rng.integers(0, 3, len(keys))
    parts = [epoch(keys[part == i], lengths[part == i], "s", untracked=(rng.random(int((part == i).sum())) < 0.3)
                   if i else None, seq=i, t=5.0 * i) for i in range(3)]  # fmt: skip
    raw = merge(parts, derived=False)
    assert raw.spreaders == {} and not raw.exact
    assert all(not h.packets.any() for h in raw.heavy.values())
    same(merge(parts), codec.decode(codec.encode(raw)))


def test_size_of_a_record():
    """100,000 flows: the exact record is the compressed flows (a few MiB),
    not the 20 MiB of sketch arrays; an estimated one adds the compressed sketch."""
    rng = np.random.default_rng(4)
    n = 100_000
    keys = np.zeros(n, abi.KEY)
    keys["src"][:, 10:12] = keys["dst"][:, 10:12] = 0xFF
    keys["src"][:, 12:] = rng.integers(0, 256, (n, 4))
    keys["dst"][:, 12:] = (10, 0, 0, 1)
    keys["sport"], keys["dport"], keys["proto"] = rng.integers(1024, 65536, n), 443, 6
    lengths = rng.integers(60, 1515, n).astype(np.uint64)
    lay = layout(default_tasks(), 2)
    snap = epoch(keys, lengths, "edge", lay=lay)
    exact = len(codec.encode(snap))
    raw = snap.flows.nbytes
    assert exact < raw * 0.8, (exact, raw)  # columns compress: ::ffff: prefixes, one dst, small counts
    lost = np.zeros(n, bool)
    lost[:10] = True
    est = len(codec.encode(epoch(keys, lengths, "edge", untracked=lost, lay=lay)))
    sk = snap.sketch.cm.nbytes + snap.sketch.ss.nbytes  # 20 MiB
    assert exact < est < exact + sk / 4, (exact, est, sk)


def test_foreign_or_damaged_bytes_are_refused_in_one_line():
    rng = np.random.default_rng(5)
    keys, lengths = packets(rng, 500)
    good = codec.encode(epoch(keys, lengths, "edge"))
    rec = codec.pb.EpochRecord.FromString(good)

    def variant(**change) -> bytes:
        r = codec.pb.EpochRecord()
        r.CopyFrom(rec)
        for k, v in change.items():
            setattr(r, k, v)
        return r.SerializeToString()

    cases = [
        (b"\xff\x01garbage", "not an epoch record"),
        (b"", "not an epoch record"),
        (variant(version=codec.VERSION + 1), f"version {codec.VERSION + 1} is newer than this reader"),
        (variant(compression="lz77"), "compressed with 'lz77'"),
        (variant(tasks_json="[{]"), "bad task specs"),
    ]
    r = codec.pb.EpochRecord()
    r.CopyFrom(rec)
    r.arrays[1].data = r.arrays[1].data[: len(r.arrays[1].data) // 2]
    cases.append((r.SerializeToString(), "array flows.key is damaged"))
    r = codec.pb.EpochRecord()
    r.CopyFrom(rec)
    other = dataclasses.replace(TASKS[0], seed=99)
    r.tasks_json = codec._json(codec.specs_to_json([other, *TASKS[1:]]))
    cases.append((r.SerializeToString(), "do not match its layout fingerprint"))
    for data, want in cases:
        with pytest.raises(codec.CodecError, match=want) as e:
            codec.decode(data)
        assert "\n" not in str(e.value)
    assert layout(TASKS).cm_cells  # the tasks themselves were fine
    assert codec.decode(good).origin == Origin("edge", "", "eth0", rec.origin.layout)


def test_sizes_are_reported(capsys):
    """The figures the closing note and docs/codec state, printed by `pytest -s`."""
    rng = np.random.default_rng(6)
    keys, lengths = packets(rng, 20000)
    lay = layout(default_tasks(), 2)
    for lost in (None, rng.random(len(keys)) < 0.05):
        snap = epoch(keys, lengths, "edge", untracked=lost, lay=lay)
        size = len(codec.encode(snap))
        assert size < (len(snap.flows) * 75 + (0 if snap.exact else 21 << 20))
        print(f"{'exact' if snap.exact else 'estimated'}: {len(snap.flows)} flows -> {size} bytes")
