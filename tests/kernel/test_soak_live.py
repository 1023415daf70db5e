"""The soak of bench/soak.py, bounded for CI: the real sensor at 100 ms epochs
for ~20 s of mixed traffic, HTTP queries over every kept epoch and a webhook
receiver that trickles.  Every frame must be counted and the sensor's open fds
must not grow; RSS is reported, not asserted (its slope over 20 s is noise)."""

import pytest

from bench.soak import run_soak

pytestmark = pytest.mark.root


def test_soak_counts_every_frame_and_fds_stay_flat(veth, tmp_path):
    r = run_soak(veth, tmp_path, duration_s=20, rate=2000, query_threads=2, query_pause=0.05, sample_s=1.0, warmup_s=5)
    print(f"soak: rss {r['rss_mib']}, fds {r['fds']}, queries {r['queries']['latency_ms']}")
    assert r["frames_sent"] > 30_000
    assert r["every_frame_counted"], (r["frames_sent"], r["frames_counted"])
    assert r["epochs"] >= 150
    assert r["sink_epochs_dropped"] == 0
    # fds after warm-up: the query clients' and notifiers' sockets come and go, they do not pile up
    assert r["fds"]["max_after_warmup"] <= r["fds"]["after_warmup"] + 6, r["fds"]
    assert r["queries"]["errors"] == {} and set(r["queries"]["status"]) == {"200"}, r["queries"]
    assert r["alerts_fired"] >= 1 and r["notifications_failed"]["healthy"] == 0, r
    assert r["sensor_exit_code"] == 0, r["sensor_stderr_tail"]
