"""Hostile requests to the query API: every bad one is a 4xx / INVALID_ARGUMENT
with one line naming what was wrong, never a 500, INTERNAL or an HTML page."""

import base64
import json
import socket

import grpc
import pytest

from netspectra.api.server import SERVICE
from netspectra.api.v1 import sensor_pb2 as pb
from tests.unit import test_api_server as base
from tests.unit.test_api_server import TIMEOUT, http, rpc_error

api = pytest.fixture(scope="module", name="api")(base.planted_api)  # the planted epochs of test_api_server


@pytest.fixture(scope="module")
def stub(api):
    return api.stub()


HUGE = "9" * 5000  # more digits than int() converts by default (4300)


def one_line_400(status, body, field: str) -> None:
    assert status == 400, body
    assert body["code"] == "INVALID_ARGUMENT"
    assert body["error"].startswith(f"{field}: ") and "\n" not in body["error"] and len(body["error"]) < 200, body


@pytest.mark.parametrize(
    "path, field",
    [
        ("/v1/top?task=src&limit=", "limit"),
        ("/v1/top?task=src&epochs=", "epochs"),
        ("/v1/spreaders?task=spread_dst&limit=", "limit"),
        ("/v1/estimate?task=src&src_ip=10.0.0.1&src_port=", "src_port"),
        ("/v1/flows?page_size=", "page_size"),
        ("/v1/flows?dst_port=", "dst_port"),
        ("/v1/flows?port=80-", "port"),
        ("/v1/flows?proto=", "proto"),
        ("/v1/trace?proto=", "proto"),
    ],
)
def test_huge_integers_over_http(api, path, field):
    status, _, body = http(api.url(path + HUGE))
    one_line_400(status, body, field)


def nested_token(depth: int) -> str:
    return base64.urlsafe_b64encode(("[" * depth + "]" * depth).encode()).decode().rstrip("=")


def test_nested_json_page_token(api, stub):
    e = rpc_error(stub.ListFlows, pb.ListFlowsRequest(page_token=nested_token(20000)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details().startswith("page_token: malformed"), e
    status, _, body = http(api.url("/v1/flows?page_token=" + nested_token(2500)))
    one_line_400(status, body, "page_token")


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x08" + b"\x80" * 11])
@pytest.mark.parametrize("method", ["TopKeys", "ListFlows", "StreamEpochs"])
def test_malformed_protobuf(api, raw, method):
    ch = api.channel()
    path = f"/{SERVICE}/{method}"
    if method.startswith("Stream"):
        call = ch.unary_stream(path)
        with pytest.raises(grpc.RpcError) as ei:
            next(call(raw, timeout=TIMEOUT))
    else:
        with pytest.raises(grpc.RpcError) as ei:
            ch.unary_unary(path)(raw, timeout=TIMEOUT)
    e = ei.value
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
    assert e.details().startswith("request: not a valid ") and "\n" not in e.details()


def raw_request(port: int, head: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(head)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    headers = dict(ln.split(": ", 1) for ln in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    "line",
    ["OPTIONS /v1/top HTTP/1.1", "OPTIONS * HTTP/1.1", "TRACE /v1/status HTTP/1.1", "CONNECT 127.0.0.1:80 HTTP/1.1",
     "BREW /v1/top HTTP/1.1", "POST /v1/top HTTP/1.1"],
)  # fmt: skip
def test_other_methods_are_405_json(api, line):
    status, headers, body = raw_request(
        api.server.http_port, f"{line}\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert status == 405 and headers["Content-Type"] == "application/json" and headers["Allow"] == "GET, HEAD"
    why = f"method: {line.split()[0]} is not allowed (read-only: use GET or HEAD)"
    assert json.loads(body) == {"error": why, "code": "INVALID_ARGUMENT"}
