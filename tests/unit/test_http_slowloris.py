"""Slowloris against the query API's HTTP endpoint and /metrics: slow-header
connections hold no handler slot, real requests are answered promptly, a head
that never completes is closed after the header deadline, and the listen
backlog is a real one (real clients on loopback)."""

import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry

from netspectra.httpserve import Server, start
from netspectra.metrics import SensorCollector, serve
from tests.helpers.peers import Slowloris, listen_backlog
from tests.unit import test_api_server as base
from tests.unit.test_metrics import LAY

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def eight_requests(url: str) -> list[tuple[int, float]]:
    def one(_):
        t0 = time.monotonic()
        with _OPENER.open(url, timeout=10) as r:
            r.read()
            return r.status, time.monotonic() - t0

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(8)))


api = pytest.fixture(scope="module", name="api")(base.planted_api)  # the planted epochs of test_api_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def metrics():
    reg = CollectorRegistry()
    reg.register(SensorCollector("eth0", LAY, 10, 100))
    port = free_port()
    server, _ = serve(f"127.0.0.1:{port}", reg)
    yield port
    server.shutdown()
    server.server_close()


def survives(port: int, path: str) -> None:
    slow = Slowloris(port, 70)
    try:
        time.sleep(0.3)
        answers = eight_requests(f"http://127.0.0.1:{port}{path}")
        assert [s for s, _ in answers] == [200] * 8
        assert max(t for _, t in answers) < 2.0, answers
        assert slow.open() == 70  # answered beside them, not by dropping them
    finally:
        slow.close()
    assert listen_backlog(port) >= 128


def test_query_endpoint_survives_slowloris(api):
    survives(api.server.http_port, "/v1/status")


def test_metrics_survives_slowloris(metrics):
    survives(metrics, "/metrics")


def test_header_deadline():
    srv = Server(("127.0.0.1", 0), lambda req: (200, {}, b"ok"), header_timeout=0.5)
    start(srv, "test-http")
    try:
        s = socket.create_connection(srv.server_address, timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        assert time.monotonic() - t0 < 2.0
        assert got.startswith(b"HTTP/1.1 408 ") and got.endswith(b'"code":"INVALID_ARGUMENT"}\n'), got
        s.close()
    finally:
        srv.shutdown()
        srv.server_close()


def test_keep_alive_answer_arrives_in_one_write(api):
    """Head and body in one send on a TCP_NODELAY socket: split in two on a
    Nagle socket, the body waits for the client's delayed ACK (~40 ms) on
    every keep-alive request after the first."""
    with socket.create_connection(("127.0.0.1", api.server.http_port), timeout=5) as s:
        for _ in range(5):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = s.recv(65536)  # whatever the first segment brought
            head, _, body = first.partition(b"\r\n\r\n")
            length = int(
                next(ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")).split(b":")[1]
            )
            assert len(body) == length, first
