"""Counters of the query API for the sensor's /metrics (docs/metrics.md).

Label sets are bounded: transport (grpc, http) x the service's methods x
status codes; request durations go into fixed histogram buckets.
"""

from __future__ import annotations

import bisect
import threading

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)


class ApiStats:
    def __init__(self):
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}  # (transport, method, code) -> count
        self._hist: dict[tuple[str, str], list] = {}  # (transport, method) -> [bucket counts..., +Inf, sum]

    def observe(self, transport: str, method: str, code: str, seconds: float | None = None) -> None:
        """One finished request; seconds: its duration (None for streams, which are not timed)."""
        with self._lock:
            k = (transport, method, code)
            self._requests[k] = self._requests.get(k, 0) + 1
            if seconds is not None:
                h = self._hist.setdefault((transport, method), [0] * (len(BUCKETS) + 2))
                h[bisect.bisect_left(BUCKETS, seconds)] += 1
                h[-1] += seconds

    def snapshot(self) -> tuple[dict, dict]:
        """(requests, histograms) copies: histograms map (transport, method)
        to ([(le, cumulative count)...], sum)."""
        with self._lock:
            req = dict(self._requests)
            raw = {k: list(v) for k, v in self._hist.items()}
        hist = {}
        for k, h in raw.items():
            acc, buckets = 0, []
            for le, n in zip([*(str(b) for b in BUCKETS), "+Inf"], h[:-1]):
                acc += n
                buckets.append((le, acc))
            hist[k] = (buckets, h[-1])
        return req, hist
