"""HTTP/JSON endpoint: latency of keep-alive requests against Connection: close.

    python -m bench.http_keepalive [--requests 300] [--path /healthz]

Serves the query API's HTTP face (serve_http, over an empty History: /healthz
and the 503 of a query before the first epoch go through the same app and
server as every answer) on 127.0.0.1:0 in this process, then times --requests
GETs of --path one after another: on one keep-alive connection, and each on a
new connection with Connection: close.  A response split in several writes
on a Nagle socket waits for the client's delayed ACK (~40 ms) on keep-alive
only, so the two columns side by side show it.

Prints one JSON object on stdout; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import time

from bench._common import emit
from netspectra.api.history import History
from netspectra.api.http import serve_http
from netspectra.api.queries import Queries
from netspectra.api.settings import ApiConfig
from netspectra.config import Config
from netspectra.tasks import layout


def stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {
        "requests": len(ms),
        "mean_ms": round(statistics.fmean(ms), 3),
        "p50_ms": round(ms[len(ms) // 2], 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
        "max_ms": round(ms[-1], 3),
    }


def keep_alive(port: int, path: str, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        out.append((time.perf_counter() - t0) * 1e3)
    conn.close()
    return out


def close_each(port: int, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path, headers={"Connection": "close"})
        conn.getresponse().read()
        conn.close()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--path", default="/healthz")
    args = ap.parse_args()
    history = History(2, layout(Config().tasks, 1), 4)
    srv = serve_http(ApiConfig(address="", http_address="127.0.0.1:0"), Queries(history, {}))
    port = srv.server_address[1]
    try:
        keep_alive(port, args.path, 20)  # warm up
        close_each(port, args.path, 20)
        ka = keep_alive(port, args.path, args.requests)
        cl = close_each(port, args.path, args.requests)
    finally:
        srv.shutdown()
        srv.server_close()
    emit({"benchmark": "http_keepalive", "path": args.path, "keep_alive": stats(ka), "connection_close": stats(cl)})


if __name__ == "__main__":
    main()
