"""HTTP/JSON API: many concurrent keep-alive clients against a live sensor.

    python -m bench.http_connections [--clients 500] [--requests 4] [--timeout 10]

Root.  The real sensor CLI (bench.soak.Sensor: `netspectra-sensor attach` on a
veth pair in throwaway namespaces, 100 ms epochs) serves its HTTP/JSON API
(netspectra/httpserve.py) while bench.soak.Traffic sends 3,000 frames/s of
mixed traffic, so the answers come from real, rolling epochs.  Then --clients
asyncio clients in this process (one TCP connection each, all opened at
once) each send --requests GETs back to back on their keep-alive connection,
cycling through /v1/status, /v1/top, /v1/flows and /v1/spreaders.  A request
that has no complete answer within --timeout s counts as timed out (its
connection is dropped).  The sensor is a separate process, so the clients do
not take its GIL; they do share the machine's CPUs.

Latency: from writing the request to the end of the body (time.monotonic);
connect_ms: the TCP connect of each client.  The issue measured the old
server (http.server, 5-slot backlog) at 500 connections: 127 timed out, p99
18.6 s.

Prints one JSON object on stdout; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from ._common import emit, log, machine, percentiles
from .soak import HTTP_PORT, Sensor, Traffic, sensor_config

PATHS = (
    "/v1/status",
    "/v1/top?task=src&limit=10",
    "/v1/flows?page_size=10",
    "/v1/spreaders?task=spread_dst&limit=10",
)


async def _one_request(reader, writer, path: str) -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _client(i: int, n: int, timeout: float, start: asyncio.Event, out: dict) -> None:
    await start.wait()
    t = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", HTTP_PORT), timeout)
    except (TimeoutError, OSError) as e:
        out["connect_errors"][type(e).__name__] = out["connect_errors"].get(type(e).__name__, 0) + 1
        return
    out["connect_ms"].append((time.monotonic() - t) * 1e3)
    try:
        for k in range(n):
            path = PATHS[(i + k) % len(PATHS)]
            t = time.monotonic()
            try:
                status = await asyncio.wait_for(_one_request(reader, writer, path), timeout)
            except TimeoutError:
                out["timeouts"] += 1
                return
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                out["errors"][type(e).__name__] = out["errors"].get(type(e).__name__, 0) + 1
                return
            out["latency_ms"].append((time.monotonic() - t) * 1e3)
            out["status"][str(status)] = out["status"].get(str(status), 0) + 1
    finally:
        writer.close()


async def _all(clients: int, n: int, timeout: float) -> dict:
    out = {"latency_ms": [], "connect_ms": [], "status": {}, "timeouts": 0, "errors": {}, "connect_errors": {}}
    start = asyncio.Event()
    tasks = [asyncio.create_task(_client(i, n, timeout, start, out)) for i in range(clients)]
    await asyncio.sleep(0.1)  # every client waiting on the start line
    t = time.monotonic()
    start.set()
    await asyncio.gather(*tasks)
    out["wall_s"] = time.monotonic() - t
    return out


def measure(v, clients: int, requests: int, timeout: float) -> dict:
    with v.inside_b():  # asyncio's sockets are made in this thread: the sensor's namespace
        out = asyncio.run(_all(clients, requests, timeout))
    return {
        "requests_answered": len(out["latency_ms"]),
        "requests_planned": clients * requests,
        "status": out["status"],
        "timeouts": out["timeouts"],
        "errors": out["errors"],
        "connect_errors": out["connect_errors"],
        "latency_ms": percentiles(out["latency_ms"]),
        "connect_ms": percentiles(out["connect_ms"]),
        "wall_s": round(out["wall_s"], 2),
    }


def main(argv=None) -> None:
    import resource

    from netspectra.netns import VethPair

    ap = argparse.ArgumentParser(prog="python -m bench.http_connections", description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=500, help="concurrent keep-alive connections [500]")
    ap.add_argument("--requests", type=int, default=4, help="requests per connection [4]")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request deadline, s [10]")
    ap.add_argument("--rounds", type=int, default=3, help="repeats of the whole burst [3]")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.rounds < 1 or args.timeout <= 0:
        ap.error("--clients, --requests and --rounds must be >= 1, --timeout > 0")
    if os.geteuid() != 0:
        ap.error("needs root (veth pairs, namespaces, XDP)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.clients + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.clients + 256), hard))
    rounds = []
    with tempfile.TemporaryDirectory(prefix="netspectra-httpconn-") as tmp, VethPair() as v:
        from tests.helpers.peers import Receiver

        with v.inside_b():
            hook = Receiver()
        sensor = Sensor(v, sensor_config(hook.url, hook.url, 12), "100ms", Path(tmp))
        try:
            sensor.wait_ready()
            traffic = Traffic(v, 3000).start()
            time.sleep(2.0)  # a dozen epochs of real traffic kept
            for r in range(args.rounds):
                log(f"bench.http_connections: round {r + 1}/{args.rounds}, {args.clients} clients")
                rounds.append(measure(v, args.clients, args.requests, args.timeout))
            traffic.stop()
        finally:
            code = sensor.stop()
            hook.close()
    emit(
        {
            "benchmark": "http_connections",
            "config": vars(args),
            "server": "the sensor's HTTP/JSON API (netspectra/httpserve.py), live, 100 ms epochs, 3,000 frames/s",
            "rounds": rounds,
            "timeouts_total": sum(r["timeouts"] for r in rounds),
            "sensor_exit_code": code,
            "issue_13_old_server": {"clients": 500, "timed_out": 127, "p99_ms": 18600},
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
