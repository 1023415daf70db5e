"""bench/_common.percentiles: the one percentile helper of the benchmarks,
keeping each benchmark's JSON keys (http_connections: p50/p99/max in ms as
given; api_latency: seconds in, p50/p90/p99/max/mean in ms)."""

import numpy as np

from bench import api_latency, http_connections
from bench._common import percentiles


def test_http_connections_keys_and_values():
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.5, "p99": 99.01, "max": 100.0}
    assert percentiles([]) == {"p50": None, "p99": None, "max": None}
    assert "percentiles" in vars(http_connections) and "pct" not in vars(http_connections)


def test_api_latency_keys_and_values():
    seconds = np.arange(1, 101) / 1e3
    assert api_latency.pct(seconds) == {"p50": 50.5, "p90": 90.1, "p99": 99.01, "max": 100.0, "mean": 50.5}
    assert api_latency.pct(np.array([])) == dict.fromkeys(("p50", "p90", "p99", "max", "mean"))
