"""`netspectra query`: a gRPC client of a running sensor, and its tables.

    c = Client("127.0.0.1:9782", token="...", tls=True, ca="ca.crt")
    resp = c.call("TopKeys", pb.TopKeysRequest(task="src"))
    c = Client("collector:9782", sensor="edge-1")   # a collector: that sensor's own epochs

Every failure is a QueryError with one line saying what went wrong and what
to try (unreachable sensor, refused token, bad argument).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc

from ..configkit import fmt_time
from ..view import human_bytes
from .queries import key_text
from .v1 import sensor_pb2 as pb
from .v1 import sensor_pb2_grpc as pb_grpc

DEFAULT_SERVER = "127.0.0.1:9782"


class QueryError(Exception):
    pass


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise QueryError(f"cannot read {what} {path}: {e.strerror or e}") from None


class Client:
    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        token: str = "",
        tls: bool = False,
        ca: str = "",
        cert: str = "",
        key: str = "",
        server_name: str = "",
        timeout: float = 5.0,
        sensor: str = "",
    ):
        self.server = server
        self.timeout = timeout
        self.sensor = sensor  # set as `sensor` on every request that has the field
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        tls = tls or bool(ca or cert or key or server_name)
        self.tls = tls
        if bool(cert) != bool(key):
            raise QueryError("--cert and --key go together (a client certificate and its private key)")
        if tls:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(ca, "CA file") if ca else None,
                private_key=_read(key, "key file") if key else None,
                certificate_chain=_read(cert, "certificate file") if cert else None,
            )
            opts = [("grpc.ssl_target_name_override", server_name)] if server_name else []
            self.channel = grpc.secure_channel(server, creds, options=opts)
        else:
            self.channel = grpc.insecure_channel(server)
        self.stub = pb_grpc.SensorStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _error(self, e: grpc.RpcError) -> QueryError:
        code, details = e.code(), e.details() or ""
        where = f"the sensor at {self.server}"
        if code == grpc.StatusCode.UNAVAILABLE and "no epoch has completed" in details:
            return QueryError(f"{where} has no data yet: {details}")
        if code == grpc.StatusCode.UNAVAILABLE:
            hint = "" if self.tls else " (if it serves TLS, add --tls and --ca)"
            why = (details.splitlines()[0] if details else "unavailable").rsplit(": ", 1)[-1]
            return QueryError(f"cannot reach {where}: {why}{hint}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return QueryError(f"no answer from {where} within {self.timeout:g}s (--timeout)")
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return QueryError(f"{where} refused the request: {details} (--token or NETSPECTRA_TOKEN)")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return QueryError(f"invalid request: {details}")
        return QueryError(f"{where}: {code.name}: {details}")

    def call(self, method: str, request):
        if self.sensor and "sensor" in request.DESCRIPTOR.fields_by_name:
            request.sensor = self.sensor
        try:
            return getattr(self.stub, method)(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            raise self._error(e) from None

    def stream(self, method: str, request) -> Iterator:
        """Messages of a server stream until it ends or the caller stops."""
        if self.sensor:
            raise QueryError(
                f"--sensor: live streams carry what the server at {self.server} closes itself "
                "(a collector: its merged windows); drop --sensor, or ask that sensor"
            )
        it = getattr(self.stub, method)(request, metadata=self.metadata)
        try:
            # fail fast when the sensor is not there (streams have no deadline)
            grpc.channel_ready_future(self.channel).result(timeout=self.timeout)
        except grpc.FutureTimeoutError:
            it.cancel()
            raise QueryError(f"cannot reach the sensor at {self.server} within {self.timeout:g}s") from None
        try:
            yield from it
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise self._error(e) from None
        finally:
            it.cancel()


class StoreClient:
    """The query API over a store, in this process (`netspectra query --store`):
    the requests and answers of a sensor's, for history no sensor has to be
    running for (a capture loaded with `analyze --store`, a stopped sensor's).
    A request without a range covers everything the series holds."""

    def __init__(self, url: str, sensor: str | None = None, interface: str | None = None):
        from ..config import Config
        from ..source import StoreSource
        from ..store import StoreError, describe, open_store
        from .history import History
        from .queries import Queries

        cfg = Config()
        retention = dict(cfg.store.retention)
        self.server = describe(url)
        if self.server.startswith("sqlite://") and not os.path.exists(self.server[len("sqlite://") :]):
            raise QueryError(f"no store at {self.server[len('sqlite://') :]}")
        try:
            self.store = open_store(url, retention)
            infos = [
                i
                for i in self.store.series()
                if sensor in (None, i.series.sensor) and interface in (None, i.series.interface)
            ]
        except StoreError as e:
            raise QueryError(str(e)) from None
        if not infos:
            self.store.close()
            want = " ".join(f"{k} {v!r}" for k, v in (("sensor", sensor), ("interface", interface)) if v is not None)
            raise QueryError(f"{self.server} holds no epochs" + (f" of {want}" if want else ""))
        if len({i.series for i in infos}) > 1:
            self.store.close()
            names = ", ".join(f"--sensor {i.series.sensor} --interface {i.series.interface}" for i in infos)
            raise QueryError(f"{self.server} holds several series; pick one: {names}")
        self.info = info = infos[0]
        try:
            snaps = self.store.read(info.series, "1h", info.last - 3600, info.last + 1) or self.store.read(
                info.series, "raw", info.last - 3600, info.last + 1
            )
        except StoreError as e:
            raise QueryError(str(e)) from None
        layout = snaps[-1].sketch.layout
        # time runs on the data's clock: a capture of years ago still reads at its finest resolution
        source = StoreSource(self.store, info.series, retention, clock=lambda: info.last)
        meta = {"config": cfg, "interface": info.series.interface, "history": self._history}
        self.queries = Queries(History(1, layout), meta, source, clock=lambda: info.last)

    def _history(self) -> dict:
        return {"store": self.server, "up": True, "oldest": self.info.first, "epochs_written": self.info.epochs}

    def call(self, method: str, request):
        from .queries import ApiError

        if "range" in request.DESCRIPTOR.fields_by_name and not request.HasField("range"):
            if getattr(request, "epochs", 0):
                raise QueryError("with --store, give a time range (--since/--until), not --epochs")
            if method != "GetStatus":
                request.range.since.FromNanoseconds(int(self.info.first * 1e9))
                request.range.until.FromNanoseconds(int(self.info.last * 1e9) + 1)
        try:
            return getattr(self.queries, method)(request)
        except ApiError as e:
            raise QueryError(f"invalid request: {e}" if e.code == "INVALID_ARGUMENT" else str(e)) from None

    def stream(self, method: str, request):
        raise QueryError("live streams need a running sensor (--server or --iface), not --store")

    def close(self) -> None:
        self.store.close()


# --- tables ----------------------------------------------------------------------


def _time(ts) -> str:
    """A protobuf Timestamp as local time of day with its offset (11:00:00.250+01:00)."""
    return fmt_time(ts.seconds + ts.nanos / 1e9, local=True, ms=True, date=False)


def _date_time(ts) -> str:
    return fmt_time(ts.seconds + ts.nanos / 1e9, local=True)


def _epochs(r: pb.EpochRange) -> str:
    if r.source.startswith("store"):  # a range read from history: its time and what was read
        res = r.source.split(":", 1)[1] if ":" in r.source else "raw"
        n = r.records
        what = f"{n} epoch{'s' * (n != 1)}" if res == "raw" else f"{n} rollup{'s' * (n != 1)} of {res}"
        return f"{_date_time(r.start)} - {_date_time(r.end)} (history: {what})"
    n = r.last - r.first + 1
    span = f"epoch {r.last}" if n == 1 else f"epochs {r.first}..{r.last}"
    return f"{span} ({_time(r.start)} - {_time(r.end)})"


def table(header: list[str], rows: list[list], right: set[int] = frozenset()) -> str:
    """Plain aligned columns; `right`: indices of numeric columns."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for r in cells:
        out.append(
            "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        )
    return "\n".join(out)


def _key_cols(k: pb.Key, names: list[str]) -> list[str]:
    out = []
    for n in names:
        v = getattr(k, n) if k.HasField(n) else ""
        out.append(_PROTO.get(v, v) if n == "proto" and v != "" else v)
    return out


_PROTO = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


def _exactness(exact: bool) -> str:
    return "exact" if exact else "estimated"


def render_status(s: pb.Status) -> str:
    if not s.pid and s.history.store:  # query --store: no sensor, a series of a store
        h = s.history
        lines = [
            f"history    {h.store}: {s.interface or '-'}, {h.epochs_written} epochs since {_date_time(h.oldest)}",
        ]
        return "\n".join(lines + _range_lines(s))
    c = s.config
    auth = [a for a, on in (("TLS", c.tls), ("client certificates", c.client_auth), ("token", c.token_auth)) if on]
    lines = [
        f"sensor     {s.interface} (ifindex {s.ifindex}, {s.xdp_mode or '?'} XDP), pid {s.pid}, version {s.version}",
        f"started    {_date_time(s.started)}, "
        f"epoch {s.epoch_length.ToTimedelta().total_seconds():g}s, {s.epochs_completed} epochs completed, "
        f"{s.epochs_kept} of {s.keep_epochs} kept for queries",
        f"config     {c.source}: {c.tasks} tasks, {c.alert_rules} alert rules, flow capacity {c.flow_capacity}, "
        f"timestamps {c.timestamps}",
        f"kernel     {human_bytes(s.kernel_memory_total)} "
        f"({', '.join(f'{k} {human_bytes(v)}' for k, v in sorted(s.kernel_memory.items()))})",
        f"traffic    {s.total.packets} packets, {human_bytes(s.total.bytes)} since start",
        f"loss       {s.flow_untracked.packets} packets untracked (flow table full), "
        f"{s.candidates_lost} candidate reports lost",
        f"api        {', '.join(auth) if auth else 'no TLS, no token'}",
    ]
    h = s.history
    if not h.store:
        lines.append("history    off (store.url: off)")
    else:
        since = f", since {_date_time(h.oldest)}" if h.HasField("oldest") else ""
        lines.append(
            f"history    {h.store} ({'up' if h.up else 'DOWN'}){since}: {h.epochs_written} epochs written, "
            f"{h.epochs_waiting} waiting, {h.epochs_lost} lost"
        )
    lines += _range_lines(s)
    if s.HasField("latest"):
        e = s.latest
        lines.append(
            f"latest     epoch {e.epoch}: {e.total.packets} packets, {human_bytes(e.total.bytes)}, {e.flows} flows, "
            f"{_exactness(e.exact)}, ended {_time(e.end)}"
        )
    return "\n".join(lines)


def _range_lines(s: pb.Status) -> list[str]:
    if not s.HasField("range"):
        return []
    r = s.range
    span = _epochs(r.epochs) if r.epochs.records else "no epoch in the range"
    return [
        f"range      {span}: {r.total.packets} packets, {human_bytes(r.total.bytes)}, "
        f"{r.flow_untracked.packets} untracked"
    ]


def render_tasks(r: pb.ListTasksResponse) -> str:
    rows = []
    for t in r.tasks:
        if t.kind == "countmin":
            size = f"{t.depth} x {t.width}"
            thr = f"{t.heavy_hitter_packets} pkts / {human_bytes(t.heavy_hitter_bytes)}"
        else:
            size = f"{t.width} regs, {t.registers_per_key}/key"
            thr = f"{t.spreader_threshold} distinct"
        elem = ",".join(t.element)
        rows.append([t.name, t.kind, ",".join(t.key), elem, size, thr])
    return table(["TASK", "KIND", "KEY", "ELEMENT", "SIZE", "THRESHOLD/EPOCH"], rows)


def render_top(r: pb.TopKeysResponse, key_names: list[str]) -> str:
    rows = [[*_key_cols(k.key, key_names), k.packets, human_bytes(k.bytes)] for k in r.keys]
    head = (
        f"top {len(r.keys)} of task {r.task} by {pb.Metric.Name(r.metric)[7:].lower()}, {_epochs(r.epochs)}, "
        f"{_exactness(r.exact)}"
    )
    if r.exact:
        foot = "exact sums of the flows: no packet of these epochs was untracked"
    else:
        foot = (
            f"Count-Min estimates, never below the truth; over by at most {r.packets_error_bound:.0f} packets / "
            f"{human_bytes(r.bytes_error_bound)} with probability {r.confidence:.3f}"
        )
    return "\n".join(
        [
            head,
            table([n.upper() for n in key_names] + ["PACKETS", "BYTES"], rows, {len(key_names), len(key_names) + 1}),
            foot,
        ]
    )


def render_estimate(r: pb.EstimateKeyResponse) -> str:
    head = f"task {r.task} ({r.kind}), {key_text(r.key)}, {_epochs(r.epochs)}"
    if r.kind == "countmin" and r.exact:
        body = f"packets {r.packets}, bytes {r.bytes} (exact)"
    elif r.kind == "countmin":
        body = (
            f"packets {r.packets} (+{r.packets_error_bound:.0f} at most), bytes {r.bytes} "
            f"(+{r.bytes_error_bound:.0f} at most), with probability {r.confidence:.3f}"
        )
    elif r.exact:
        body = f"distinct {r.distinct:.0f} (exact)"
    else:
        body = f"distinct ~{r.distinct:.1f} (standard error {r.relative_error:.1%})"
    return head + "\n" + body


def render_spreaders(r: pb.TopSpreadersResponse, key_names: list[str]) -> str:
    distinct = "{:.0f}" if r.exact else "~{:.1f}"
    rows = [[*_key_cols(s.key, key_names), distinct.format(s.distinct), s.flows] for s in r.spreaders]
    head = f"top {len(r.spreaders)} spreaders of task {r.task}, {_epochs(r.epochs)}, {_exactness(r.exact)}"
    if r.exact:
        foot = "exact distinct counts of the flows; FLOWS: exact flows of the key"
    else:
        foot = f"distinct counts: standard error about {r.relative_error:.1%}; FLOWS: exact flows of the key"
    n = len(key_names)
    return "\n".join([head, table([x.upper() for x in key_names] + ["DISTINCT", "FLOWS"], rows, {n, n + 1}), foot])


def flow_rows(flows) -> list[list]:
    return [
        [
            f.key.src_ip,
            f.key.src_port,
            f.key.dst_ip,
            f.key.dst_port,
            _PROTO.get(f.key.proto, f.key.proto),
            f.packets,
            human_bytes(f.bytes),
            _time(f.first_seen),
            _time(f.last_seen),
        ]
        for f in flows
    ]


FLOW_HEADER = ["SRC", "SPORT", "DST", "DPORT", "PROTO", "PACKETS", "BYTES", "FIRST", "LAST"]


def render_flows(r: pb.ListFlowsResponse, shown: int, flows) -> str:
    head = f"{shown} of {r.total} matching flows, {_epochs(r.epochs)}"
    lines = [head, table(FLOW_HEADER, flow_rows(flows), {1, 3, 5, 6})]
    if r.untracked.packets:
        lines.append(f"note: {r.untracked.packets} packets of these epochs were not tracked (flow table full)")
    if r.next_page_token:
        lines.append(f"more: --page-token {r.next_page_token} (or --all)")
    return "\n".join(lines)


def render_trace(r: pb.TraceFlowResponse) -> str:
    rows = []
    for e in r.epochs:
        if e.HasField("flow"):
            f = e.flow
            rows.append(
                [e.epoch, _time(e.end), f.packets, human_bytes(f.bytes), _time(f.first_seen), _time(f.last_seen)]
            )
        else:
            rows.append([e.epoch, _time(e.end), "-", "-", "", ""])
    where = _epochs(r.range) if r.range.source.startswith("store") else "kept epochs"
    head = f"flow {key_text(r.key)} in {len(r.epochs)} {where}: {r.total.packets} packets, {human_bytes(r.total.bytes)}"
    return head + "\n" + table(["EPOCH", "ENDED", "PACKETS", "BYTES", "FIRST", "LAST"], rows, {0, 2, 3})


def render_epoch(e: pb.EpochSummary) -> str:
    parts = [
        f"epoch {e.epoch} {_time(e.start)} - {_time(e.end)}: {e.total.packets} packets, {human_bytes(e.total.bytes)}, "
        f"{e.flows} flows, {_exactness(e.exact)}"
    ]
    if e.flow_untracked.packets or e.candidates_lost:
        parts.append(f"  loss: {e.flow_untracked.packets} untracked packets, {e.candidates_lost} candidates lost")
    for name, tk in sorted(e.tasks.items()):
        for k in tk.heavy_hitters:
            parts.append(f"  {name}: heavy {key_text(k.key)} {k.packets} packets {human_bytes(k.bytes)}")
        for s in tk.spreaders:
            parts.append(f"  {name}: spreader {key_text(s.key)} {'' if e.exact else '~'}{s.distinct:.0f} distinct")
    return "\n".join(parts)


def render_alert(a: pb.Alert) -> str:
    when = _time(a.ends_at if a.status == "resolved" else a.starts_at)
    tag = "RESOLVED" if a.status == "resolved" else ("REPEAT" if a.repeat else "FIRING")
    where = f" {a.key}" if a.key else ""
    return f"{when} {tag:8} {a.severity:8} {a.rule}{where}: {a.summary}"
