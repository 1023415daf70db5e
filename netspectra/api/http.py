"""The read-only HTTP/JSON face of the query API, for curl and dashboards.

    GET /v1/status                  GetStatus
    GET /v1/tasks                   ListTasks
    GET /v1/top?task=src&metric=packets&limit=10&epochs=1
    GET /v1/estimate?task=src&src_ip=10.0.0.1
    GET /v1/spreaders?task=spread_dst&limit=10
    GET /v1/flows?src=10.0.0.0/8&dst_port=80-443&proto=tcp&order_by=packets&page_size=100&page_token=...
    GET /v1/trace?src_ip=..&dst_ip=..&src_port=..&dst_port=..&proto=tcp
    GET /healthz

Every windowed path (and status, for range totals) also takes a time range
instead of epochs: since=2h (ago), since=2026-12-01T10:00Z, until=... (the
sensor's clock; default now), answered from memory or from history; and, on
a collector, sensor=edge-1 (or edge-1/eth0) with a range: that sensor's own
epochs from the collector's store instead of the network-wide windows.

Answers are the gRPC response messages in protobuf's JSON mapping (field
names as in the .proto, times as RFC 3339), except that 64-bit integers are
JSON numbers rather than strings, so Grafana and jq can do arithmetic on
them.  Errors: {"error": "<field>: <why>", "code": "INVALID_ARGUMENT"} with
HTTP 400 (401 without the token, 404 for an unknown path, 405 for any method
but GET and HEAD, 503 before the first epoch).  The same TLS
and token settings as the gRPC server apply.
"""

from __future__ import annotations

import hmac
import json
import ssl
import time
from urllib.parse import parse_qs, urlsplit

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from ..httpserve import Request, Server, start
from .queries import ApiError, Queries
from .settings import ApiConfig, host_port
from .v1 import sensor_pb2 as pb

MAX_URL = 8192
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "NOT_FOUND": 404,
    "OUT_OF_RANGE": 400,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
}
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}  # fmt: skip
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "gre": 47}


# --- JSON -----------------------------------------------------------------------


def to_json(msg) -> dict:
    """protobuf JSON mapping, 64-bit integers as numbers, defaults included."""
    d = json_format.MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return _numbers(msg.DESCRIPTOR, d)


def _numbers(desc, d: dict) -> dict:
    for f in desc.fields:
        if f.name not in d:
            continue
        v = d[f.name]
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            vf = f.message_type.fields_by_name["value"]
            if vf.type in _INT64:
                d[f.name] = {k: int(x) for k, x in v.items()}
            elif vf.message_type is not None and not vf.message_type.full_name.startswith("google.protobuf."):
                d[f.name] = {k: _numbers(vf.message_type, x) for k, x in v.items()}
        elif f.type in _INT64:
            d[f.name] = [int(x) for x in v] if isinstance(v, list) else int(v)
        elif f.message_type is not None and not f.message_type.full_name.startswith("google.protobuf."):
            d[f.name] = [_numbers(f.message_type, x) for x in v] if isinstance(v, list) else _numbers(f.message_type, v)
    return d


# --- query parameters -> request messages -------------------------------------------


def _uint(name: str, text: str, hi: int = 1 << 32) -> int:
    # the length first: int() of thousands of digits is slow, then a ValueError
    if len(text) > len(str(hi)) or not text.isascii() or not text.isdigit() or int(text) >= hi:
        raise ApiError(name, f"{_short(text)} is not an integer 0..{hi - 1}")
    return int(text)


def _short(text: str) -> str:
    """A parameter's value quoted in an error, cut short: errors stay one short line."""
    return repr(text) if len(text) <= 40 else f"{text[:32]!r}... ({len(text)} characters)"


def _bool(name: str, text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "yes", "on", ""):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ApiError(name, f"{text!r} is not true or false")


def parse_proto(name: str, text: str) -> int:
    t = text.strip().lower()
    if t in PROTOCOLS:
        return PROTOCOLS[t]
    try:
        return _uint(name, t, 256)
    except ApiError:
        raise ApiError(
            name, f"{_short(text)} is not a protocol number 0..255 or one of {', '.join(PROTOCOLS)}"
        ) from None


def parse_ports(name: str, text: str) -> pb.PortRange:
    """'80' or '1024-65535'."""
    lo, sep, hi = text.partition("-")
    try:
        r = pb.PortRange(lo=_uint(name, lo.strip(), 65536), hi=_uint(name, hi.strip(), 65536) if sep else 0)
    except ApiError:
        raise ApiError(name, f"{_short(text)} is not a port or range (80, 1024-65535)") from None
    return r


def _enum(name: str, text: str, prefix: str, enum) -> int:
    key = f"{prefix}{text.strip().upper()}"
    names = [v.name[len(prefix) :].lower() for v in enum.DESCRIPTOR.values if not v.name.endswith("UNSPECIFIED")]
    if key not in enum.keys() or key.endswith("UNSPECIFIED"):
        raise ApiError(name, f"{text!r} is not one of {', '.join(names)}")
    return enum.Value(key)


def key_from_params(params: dict, key: pb.Key) -> None:
    """Set the Key fields named in params (text values: IPs, ports, protocol
    names or numbers); ApiError names a bad one.  HTTP and `netspectra query`."""
    for n in ("src_ip", "dst_ip"):
        if n in params:
            setattr(key, n, params[n])
    for n in ("src_port", "dst_port"):
        if n in params:
            setattr(key, n, _uint(n, params[n], 65536))
    if "proto" in params:
        key.proto = parse_proto("proto", params["proto"])


def _range(p, r) -> None:
    """since= and until= (2h, 2026-12-01T10:00Z, ...: configkit.parse_time, this host's clock) -> r.range."""
    from ..configkit import parse_time

    if "until" in p and "since" not in p:
        raise ApiError("until", "needs since")
    now = time.time()
    for name in ("since", "until"):
        if name in p:
            try:
                t = parse_time(p[name], now)
            except ValueError as e:
                raise ApiError(name, str(e)) from None
            getattr(r.range, name).FromNanoseconds(int(t * 1e9))


def _windowed(build):
    """A request builder that also takes since=, until= and sensor=."""

    def wrapped(p):
        r = build(p)
        _range(p, r)
        if "sensor" in p:
            r.sensor = p["sensor"]
        return r

    return wrapped


def _top(p):
    r = pb.TopKeysRequest(task=p.get("task", ""))
    if "metric" in p:
        r.metric = _enum("metric", p["metric"], "METRIC_", pb.Metric)
    r.limit = _uint("limit", p["limit"]) if "limit" in p else 0
    r.epochs = _uint("epochs", p["epochs"]) if "epochs" in p else 0
    return r


def _estimate(p):
    r = pb.EstimateKeyRequest(task=p.get("task", ""))
    key_from_params(p, r.key)
    r.epochs = _uint("epochs", p["epochs"]) if "epochs" in p else 0
    return r


def _spreaders(p):
    r = pb.TopSpreadersRequest(task=p.get("task", ""))
    r.limit = _uint("limit", p["limit"]) if "limit" in p else 0
    r.epochs = _uint("epochs", p["epochs"]) if "epochs" in p else 0
    return r


def _flows(p):
    r = pb.ListFlowsRequest()
    for n in ("src", "dst", "host"):
        if n in p:
            setattr(r.filter, n, p[n])
    for n in ("src_port", "dst_port", "port"):
        if n in p:
            getattr(r.filter, n).CopyFrom(parse_ports(n, p[n]))
    if "proto" in p:
        r.filter.proto = parse_proto("proto", p["proto"])
    if "order_by" in p:
        r.order_by = _enum("order_by", p["order_by"], "FLOW_ORDER_", pb.FlowOrder)
    if "ascending" in p:
        r.ascending = _bool("ascending", p["ascending"])
    r.page_size = _uint("page_size", p["page_size"]) if "page_size" in p else 0
    r.page_token = p.get("page_token", "")
    r.epochs = _uint("epochs", p["epochs"]) if "epochs" in p else 0
    return r


def _trace(p):
    r = pb.TraceFlowRequest()
    key_from_params(p, r.key)
    return r


_KEY_PARAMS = ("src_ip", "dst_ip", "src_port", "dst_port", "proto")
_RANGE = ("since", "until", "sensor")  # with the range, the sensor whose own epochs a collector reads
# path -> (Queries method, request builder, accepted parameters)
ROUTES = {
    "/v1/status": ("GetStatus", _windowed(lambda p: pb.GetStatusRequest()), _RANGE),
    "/v1/tasks": ("ListTasks", lambda p: pb.ListTasksRequest(), ()),
    "/v1/top": ("TopKeys", _windowed(_top), ("task", "metric", "limit", "epochs", *_RANGE)),
    "/v1/estimate": ("EstimateKey", _windowed(_estimate), ("task", *_KEY_PARAMS, "epochs", *_RANGE)),
    "/v1/spreaders": ("TopSpreaders", _windowed(_spreaders), ("task", "limit", "epochs", *_RANGE)),
    "/v1/flows": (
        "ListFlows",
        _windowed(_flows),
        (
            "src",
            "dst",
            "host",
            "src_port",
            "dst_port",
            "port",
            "proto",
            "order_by",
            "ascending",
            "page_size",
            "page_token",
            "epochs",
            *_RANGE,
        ),
    ),  # fmt: skip
    "/v1/trace": ("TraceFlow", _windowed(_trace), (*_KEY_PARAMS, *_RANGE)),
}


def answer(queries: Queries, target: str) -> tuple[int, dict]:
    """(HTTP status, JSON body) for a GET of `target` (path and query)."""
    url = urlsplit(target)
    if url.path in ("/healthz", "/"):
        return 200, {"status": "SERVING", "paths": sorted(ROUTES)}
    route = ROUTES.get(url.path.rstrip("/"))
    if route is None:
        return 404, {"error": f"no such path {url.path} (paths: {', '.join(sorted(ROUTES))})", "code": "NOT_FOUND"}
    method, build, accepted = route
    try:
        raw = parse_qs(url.query, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except ValueError as e:
        return 400, {"error": f"query string: {e}", "code": "INVALID_ARGUMENT"}
    try:
        params = {}
        for k, v in raw.items():
            if k not in accepted:
                valid = ", ".join(accepted) or "none"
                raise ApiError(k, f"unknown parameter for {url.path} (parameters: {valid})")
            if len(v) > 1:
                raise ApiError(k, "given more than once")
            params[k] = v[0]
        return 200, to_json(getattr(queries, method)(build(params)))
    except ApiError as e:
        return _HTTP_STATUS.get(e.code, 400), {"error": str(e), "code": e.code}


class _App:
    """The endpoint's request handler (httpserve.App): token, routes, stats."""

    def __init__(self, queries: Queries, stats, token: bytes):
        self.queries = queries
        self.stats = stats
        self.token = token

    def __call__(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        if req.method not in ("GET", "HEAD"):
            why = f"method: {req.method[:16]} is not allowed (read-only: use GET or HEAD)"
            return _reply(405, {"error": why, "code": "INVALID_ARGUMENT"}, {"Allow": "GET, HEAD"})
        if len(req.target) > MAX_URL:
            return _reply(414, {"error": f"URL longer than {MAX_URL} bytes", "code": "INVALID_ARGUMENT"})
        path = urlsplit(req.target).path
        route = ROUTES.get(path.rstrip("/"))
        if self.token and path != "/healthz":
            got = req.headers.get("authorization", "")
            if not (got and hmac.compare_digest(got.encode("latin-1"), self.token)):
                why = "wrong bearer token" if got else "missing bearer token (Authorization: Bearer <token>)"
                if self.stats is not None:
                    self.stats.observe("http", route[0] if route else "unknown", "UNAUTHENTICATED")
                return _reply(401, {"error": why, "code": "UNAUTHENTICATED"}, {"WWW-Authenticate": "Bearer"})
        t0 = time.perf_counter()
        try:
            status, body = answer(self.queries, req.target)
        except Exception as e:  # a bug: one line, keep serving
            status, body = 500, {"error": f"{type(e).__name__}: {e}", "code": "INTERNAL"}
        if route is not None and self.stats is not None:
            self.stats.observe("http", route[0], "OK" if status == 200 else body["code"], time.perf_counter() - t0)
        return _reply(status, body)


def _reply(status: int, body: dict, extra: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    data = (json.dumps(body, separators=(",", ":")) + "\n").encode()
    return (
        status,
        {"Content-Type": "application/json", "Cache-Control": "no-store", "Server": "netspectra"} | (extra or {}),
        data,
    )


def serve_http(cfg: ApiConfig, queries: Queries, stats=None) -> Server:
    """Start the HTTP/JSON server on cfg.http_address in a thread; raises
    ApiServerError (one line) when it cannot."""
    from .server import ApiServerError

    host, port = host_port(cfg.http_address)
    ctx = None
    if cfg.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(cfg.tls.cert, cfg.tls.key)
            if cfg.tls.client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(cfg.tls.client_ca)
        except (OSError, ssl.SSLError) as e:
            raise ApiServerError(f"cannot load TLS files (api.tls): {e}") from None
    app = _App(queries, stats, f"Bearer {cfg.token}".encode() if cfg.token else b"")
    try:
        # the TLS handshake, like the request head, runs in the selector: a slow client holds no slot
        srv = Server((host, port), app, ssl_context=ctx, name="api-http")
    except OSError as e:
        raise ApiServerError(f"cannot serve HTTP on {cfg.http_address} (api.http_address): {e.strerror or e}") from None
    start(srv, "api-http")
    return srv
