"""The gRPC server of the query API: the Sensor service, grpc.health.v1 and
server reflection, with optional TLS, mutual TLS and a bearer token.

    queries = Queries(history, info)
    api = ApiServer(cfg.api, queries, history).start()   # raises ApiServerError
    ...
    api.stop()

Argument problems come back as INVALID_ARGUMENT naming the field; requests are
bounded (64 KiB messages, page and limit maxima in queries.py, api.max_streams
open streams).  The health service answers without a token so probes work.
"""

from __future__ import annotations

import hmac
import queue
import socket
import ssl
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .history import History, Subscription
from .queries import ApiError, Queries, alert_pb
from .settings import ApiConfig, host_port
from .stats import ApiStats
from .v1 import sensor_pb2 as pb
from .v1 import sensor_pb2_grpc as pb_grpc

_SENSOR = pb.DESCRIPTOR.services_by_name["Sensor"]
SERVICE = _SENSOR.full_name
_METHODS = frozenset(m.name for m in _SENSOR.methods)
_STREAMS = frozenset(m.name for m in _SENSOR.methods if m.server_streaming)
MAX_REQUEST = 64 << 10
UNARY_WORKERS = 16
POLL_S = 0.5  # how often a stream checks that its client is still there


class ApiServerError(Exception):
    pass


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def check_tls(cfg: ApiConfig) -> None:
    """Load the TLS files with Python's ssl first: for a file that is not PEM
    (or a key that does not match) grpc only says it cannot bind the address."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cfg.tls.cert, cfg.tls.key)
        if cfg.tls.client_ca:
            ctx.load_verify_locations(cfg.tls.client_ca)
    except (OSError, ssl.SSLError) as e:
        raise ApiServerError(f"cannot load TLS files (api.tls): {e}") from None


class _Servicer(pb_grpc.SensorServicer):
    def __init__(self, queries: Queries, history: History, stats: ApiStats, log=sys.stderr):
        self.q = queries
        self.h = history
        self.stats = stats
        self.log = log

    def _answer(self, name: str, req, ctx):
        t0 = time.perf_counter()
        code = "OK"
        try:
            return getattr(self.q, name)(req)
        except ApiError as e:
            code = e.code
            ctx.abort(getattr(grpc.StatusCode, e.code), str(e))
        except Exception as e:  # a bug: say so in one line, keep serving
            code = "INTERNAL"
            print(f"netspectra: api: {name} failed: {type(e).__name__}: {e}", file=self.log, flush=True)
            ctx.abort(grpc.StatusCode.INTERNAL, f"{name} failed: {type(e).__name__}: {e}")
        finally:
            self.stats.observe("grpc", name, code, time.perf_counter() - t0)

    def StreamEpochs(self, req, ctx):
        try:
            max_keys = self.q.stream_max_keys(req.max_keys)
        except ApiError as e:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        yield from self._stream(ctx, "epochs", req.replay, lambda snap: self.q.summary(snap, max_keys))

    def StreamAlerts(self, req, ctx):
        yield from self._stream(ctx, "alerts", req.replay, alert_pb)

    def _stream(self, ctx, feed: str, replay: bool, convert):
        method = "StreamEpochs" if feed == "epochs" else "StreamAlerts"
        try:
            sub, backlog = self.h.subscribe(feed, replay)
        except OverflowError as e:
            self.stats.observe("grpc", method, "RESOURCE_EXHAUSTED")
            ctx.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        self.stats.observe("grpc", method, "OK")
        ctx.add_callback(sub.close)  # client gone or deadline: wake the loop below
        try:
            for item in backlog:
                yield convert(item)
            while ctx.is_active():
                try:
                    item = sub.get(POLL_S)
                except Subscription.Closed:
                    return
                except Subscription.Overflow:
                    ctx.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "client fell too far behind the stream; reconnect")
                if item is not None:
                    yield convert(item)
        finally:
            self.h.unsubscribe(sub)


def _unary(name: str):
    def method(self, req, ctx):
        return self._answer(name, req, ctx)

    method.__name__ = name
    return method


# every unary RPC of the service is Queries.<name>; the two streams are written out above
for _m in _SENSOR.methods:
    if not _m.server_streaming:
        setattr(_Servicer, _m.name, _unary(_m.name))


class _Malformed:
    """What a request that does not parse becomes; the handler refuses it."""

    def __init__(self, why: str):
        self.why = why


def _parser(cls):
    # grpc answers INTERNAL for a deserializer that raises; a bad request is INVALID_ARGUMENT
    def parse(data: bytes):
        try:
            return cls.FromString(data)
        except Exception:  # DecodeError; RecursionError for deeply nested groups
            return _Malformed(f"request: not a valid {cls.DESCRIPTOR.full_name} message")

    return parse


def _handlers(servicer: _Servicer) -> grpc.GenericRpcHandler:
    """The Sensor service's method handlers (what add_SensorServicer_to_server
    registers), with requests that do not parse refused as INVALID_ARGUMENT."""
    handlers = {}
    for m in _SENSOR.methods:
        fn = getattr(servicer, m.name)
        req_cls, resp_cls = GetMessageClass(m.input_type), GetMessageClass(m.output_type)

        def refuse(req, ctx, name=m.name):
            servicer.stats.observe("grpc", name, "INVALID_ARGUMENT")
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, req.why)

        if m.server_streaming:

            def stream(req, ctx, fn=fn, refuse=refuse):
                if isinstance(req, _Malformed):
                    refuse(req, ctx)
                yield from fn(req, ctx)

            handlers[m.name] = grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=_parser(req_cls), response_serializer=resp_cls.SerializeToString
            )
        else:

            def unary(req, ctx, fn=fn, refuse=refuse):
                if isinstance(req, _Malformed):
                    refuse(req, ctx)
                return fn(req, ctx)

            handlers[m.name] = grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=_parser(req_cls), response_serializer=resp_cls.SerializeToString
            )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


class _TokenAuth(grpc.ServerInterceptor):
    """Every call but health checks needs `authorization: Bearer <token>`."""

    def __init__(self, token: str, stats: ApiStats):
        self.expected = f"Bearer {token}".encode()
        self.stats = stats

    def intercept_service(self, continuation, details):
        if details.method.startswith("/grpc.health.v1.Health/"):
            return continuation(details)
        got = ""
        for k, v in details.invocation_metadata or ():
            if k == "authorization":
                got = v if isinstance(v, str) else v.decode(errors="replace")
        if got and hmac.compare_digest(got.encode(), self.expected):
            return continuation(details)
        why = "wrong bearer token" if got else "missing bearer token (authorization: Bearer <token> metadata)"
        name = details.method.rsplit("/", 1)[-1]
        self.stats.observe("grpc", name if name in _METHODS else "unknown", "UNAUTHENTICATED")

        def deny(request, ctx):
            ctx.abort(grpc.StatusCode.UNAUTHENTICATED, why)

        # the handler kind must match the method's, or streaming calls get INTERNAL
        if name in _STREAMS:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)


def _check_bindable(address: str) -> None:
    """Bind the address once ourselves: gRPC's own failure says only "Failed
    to bind"; the socket's error says why (in use, not a local address)."""
    host, port = host_port(address)
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        raise ApiServerError(f"cannot serve gRPC on {address} (api.address): {e.strerror or e}") from None


class ApiServer:
    """The gRPC server (api.address) and the HTTP/JSON endpoint (api.http_address)."""

    def __init__(self, cfg: ApiConfig, queries: Queries, history: History, log=sys.stderr):
        self.cfg = cfg
        self.queries = queries
        self.history = history
        self.log = log
        self.grpc_server = None
        self.health = None
        self.http = None
        self.grpc_port = 0
        self.http_port = 0
        self.stats = ApiStats()
        self._pending: queue.Queue = queue.Queue()
        self._backlog = 0  # epochs published, not yet visible
        self._backlog_lock = threading.Lock()
        self._publisher = threading.Thread(target=self._publish_loop, name="api-publish", daemon=True)
        self._publisher.start()

    def publish(self, snap, events=(), active=None) -> None:
        """Hand a completed epoch (and its alert events) to the API without
        blocking the epoch loop: a thread warms the query caches for it, then
        makes it visible (History.add) and forwards the alerts."""
        with self._backlog_lock:
            self._backlog += 1
        self._pending.put((snap, list(events), None if active is None else list(active)))

    def _publish_loop(self) -> None:
        while (item := self._pending.get()) is not None:
            if isinstance(item, threading.Event):  # flush() marker
                item.set()
                continue
            snap, events, active = item
            with self._backlog_lock:
                self._backlog -= 1
                behind = self._backlog > 0
            if not behind:  # when behind, skip warming and catch up
                try:
                    self.queries.warm(snap, self.history.snapshots())
                except Exception as e:  # queries compute on demand instead; say why
                    print(f"netspectra: api: warming epoch {snap.seq} failed: {type(e).__name__}: {e}", file=self.log)
            self.history.add(snap)
            if active is not None:
                self.history.alerts(events, active)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything published so far is visible."""
        done = threading.Event()
        self._pending.put(done)
        return done.wait(timeout)

    def start(self) -> ApiServer:
        try:
            if self.cfg.address:
                self._start_grpc()
            if self.cfg.http_address:
                from .http import serve_http

                self.http = serve_http(self.cfg, self.queries, self.stats)
                self.http_port = self.http.server_address[1]
        except BaseException:
            self.stop(0)
            raise
        return self

    def _start_grpc(self) -> None:
        cfg = self.cfg
        interceptors = [_TokenAuth(cfg.token, self.stats)] if cfg.token else []
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=UNARY_WORKERS + cfg.max_streams, thread_name_prefix="api"),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_REQUEST),
                ("grpc.so_reuseport", 0),  # a port in use is an error, not shared with another sensor
            ],
            maximum_concurrent_rpcs=UNARY_WORKERS * 8 + cfg.max_streams,
        )
        server.add_generic_rpc_handlers((_handlers(_Servicer(self.queries, self.history, self.stats, self.log)),))
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        _check_bindable(cfg.address)
        try:
            if cfg.tls:
                key, cert = read_file(cfg.tls.key), read_file(cfg.tls.cert)
                ca = read_file(cfg.tls.client_ca) if cfg.tls.client_ca else None
                check_tls(cfg)
                creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=bool(ca))
                port = server.add_secure_port(cfg.address, creds)
            else:
                port = server.add_insecure_port(cfg.address)
        except OSError as e:
            raise ApiServerError(f"cannot read TLS files (api.tls): {e.strerror or e}: {e.filename}") from None
        except RuntimeError as e:
            raise ApiServerError(f"cannot serve gRPC on {cfg.address} (api.address): {e}") from None
        if not port:
            raise ApiServerError(f"cannot serve gRPC on {cfg.address} (api.address): address in use or not local")
        server.start()
        for name in ("", SERVICE):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.grpc_server, self.grpc_port = server, port

    def stop(self, grace: float = 1.0) -> None:
        if self._publisher.is_alive():
            self._pending.put(None)
            self._publisher.join(10)
        self.history.close()  # ends open streams
        if self.health is not None:
            self.health.enter_graceful_shutdown()
        if self.grpc_server is not None:
            self.grpc_server.stop(grace).wait(grace + 1)
            self.grpc_server = None
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
            self.http = None
