"""The query API end to end: a real ApiServer (gRPC and HTTP/JSON) on
127.0.0.1:0 over epochs analysed (netspectra.offline) from a capture planted
here, asked by real clients: every unary RPC, both streams, health,
reflection, bearer token, TLS and mutual TLS, every argument error, and the
HTTP/JSON routes.

Expected values come from the planted packets (the Model below), never from
the code under test.  No root needed; certificates are made with the openssl
CLI once per module."""

from __future__ import annotations

import base64
import dataclasses
import io
import ipaddress
import json
import math
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from netspectra import abi
from netspectra import packets as P
from netspectra.alerts.engine import Event
from netspectra.api.history import SUBSCRIBER_QUEUE, History, Subscription
from netspectra.api.queries import Queries, key_pb
from netspectra.api.server import ApiServer, ApiServerError
from netspectra.api.settings import ApiConfig, TlsConfig
from netspectra.api.v1 import sensor_pb2 as pb
from netspectra.api.v1 import sensor_pb2_grpc as pb_grpc
from netspectra.config import Config
from netspectra.metrics import version
from netspectra.offline import analyze
from netspectra.sketch import SketchSet
from netspectra.snapshot import derive
from netspectra.tasks import COUNTMIN, layout
from tests.unit.test_offline import pcap

TIMEOUT = 10  # seconds for any one call: a hang fails, it does not stall the suite
CONFIG = Config()
TOKEN = "t0ken-for-the-api-tests-0123456789"
SERVICE = "netspectra.v1.Sensor"
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]

# --- the planted traffic -----------------------------------------------------------

T0 = 1_000_000_000  # capture time (s) of the first packet: epoch k is [T0 + k, T0 + k + 1)
EPOCHS = 3
SYN, PSH, ACK = 0x02, 0x08, 0x10


@dataclass(frozen=True)
class Planted:
    """One 5-tuple: `packets[e]` frames of `size` bytes in epoch e (0: absent)."""

    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    size: int
    packets: tuple[int, ...]
    flags: int = ACK  # TCP flags of every packet ...
    syn_in: tuple[int, ...] = ()  # ... but the first packet of these epochs is a bare SYN

    @property
    def key(self) -> tuple:
        return (self.src, self.dst, self.sport, self.dport, self.proto)


SCANNER = "10.0.0.1"
SCAN = tuple(Planted(SCANNER, f"10.1.0.{i}", P.UDP, 40000, 53, 80, (1, 1, 1)) for i in range(150))
HEAVY = Planted("10.0.0.2", "10.9.9.9", P.TCP, 4000, 80, 1500, (700, 800, 900), ACK | PSH, syn_in=(0,))
WEB6 = Planted("2001:db8::1", "2001:db8:1::2", P.TCP, 5555, 443, 400, (10, 10, 10))
DNS6 = Planted("2001:db8::1", "2001:db8:2::3", P.UDP, 5353, 53, 200, (4, 0, 4))  # absent in epoch 1
PING6 = Planted("fd00::5", "2001:db8::1", P.ICMPV6, 0, 0, 100, (0, 3, 0))  # epoch 1 only
PING = Planted("10.0.0.3", "10.9.9.9", P.ICMP, 0, 0, 98, (0, 0, 2))  # epoch 2 only
ALT = Planted("10.0.0.4", "10.9.9.8", P.TCP, 5000, 8080, 1000, (0, 6, 0))  # epoch 1 only
NTP = Planted("192.168.1.10", SCANNER, P.UDP, 123, 123, 90, (5, 5, 5))
TLS = Planted("10.0.0.5", "10.9.9.9", P.TCP, 1024, 443, 700, (8, 0, 8))
PLANTED = (*SCAN, HEAVY, WEB6, DNS6, PING6, PING, ALT, NTP, TLS)


@dataclass
class Rec:
    """The truth about one flow in some epochs."""

    packets: int = 0
    bytes: int = 0
    first: int = 1 << 64
    last: int = 0
    flags: int = 0
    icmp_type: int = 0

    def add(self, other: Rec) -> Rec:
        return Rec(
            self.packets + other.packets,
            self.bytes + other.bytes,
            min(self.first, other.first),
            max(self.last, other.last),
            self.flags | other.flags,
            self.icmp_type or other.icmp_type,
        )


class Model:
    """The capture's frames and what they add up to, epoch by epoch."""

    def __init__(self):
        self.records: list[tuple[int, bytes]] = []
        self.epoch: list[dict[tuple, Rec]] = [defaultdict(Rec) for _ in range(EPOCHS)]
        for e in range(EPOCHS):
            us = 0  # every packet has its own microsecond: first/last seen orders are total
            for f in PLANTED:
                for j in range(f.packets[e]):
                    ts = (T0 + e) * 10**9 + us * 1000
                    us += 1
                    flags = SYN if (j == 0 and e in f.syn_in) else f.flags
                    self.records.append(
                        (ts, P.frame(f.src, f.dst, f.proto, f.sport, f.dport, size=f.size, flags=flags))
                    )
                    r = self.epoch[e][f.key]
                    r.packets += 1
                    r.bytes += f.size
                    r.first, r.last = min(r.first, ts), max(r.last, ts)
                    r.flags |= flags if f.proto == P.TCP else 0
                    r.icmp_type = {P.ICMP: 8, P.ICMPV6: 128}.get(f.proto, 0)
                us += 7
        self.epoch = [dict(d) for d in self.epoch]

    def flows(self, n: int = 1) -> dict[tuple, Rec]:
        """Flows of the last n epochs, summed per 5-tuple."""
        out: dict[tuple, Rec] = {}
        for d in self.epoch[EPOCHS - n :]:
            for k, r in d.items():
                out[k] = out[k].add(r) if k in out else r
        return out

    def totals(self, n: int = 1) -> tuple[int, int]:
        fl = self.flows(n).values()
        return sum(r.packets for r in fl), sum(r.bytes for r in fl)

    def by(self, n: int, key) -> dict:
        """Packets and bytes of the last n epochs per key(5-tuple)."""
        out: dict = defaultdict(lambda: [0, 0])
        for k, r in self.flows(n).items():
            out[key(k)][0] += r.packets
            out[key(k)][1] += r.bytes
        return {k: tuple(v) for k, v in out.items()}


def key5(k: pb.Key) -> tuple:
    return (k.src_ip, k.dst_ip, k.src_port, k.dst_port, k.proto)


def pb_key(t: tuple) -> pb.Key:
    return pb.Key(src_ip=t[0], dst_ip=t[1], src_port=t[2], dst_port=t[3], proto=t[4])


def ranked(counts: dict, metric: int) -> list:
    """Keys by bytes (metric 1) or packets (metric 2), largest first."""
    col = 1 if metric == pb.METRIC_BYTES else 0
    return sorted(counts, key=lambda k: counts[k][col], reverse=True)


def new_epoch(snaps: list, seq: int):
    """Another completed epoch (a copy of a planted one under a new number)."""
    return dataclasses.replace(snaps[seq % EPOCHS], seq=seq, start=float(T0 + seq), end=float(T0 + seq + 1))


@pytest.fixture(scope="module")
def model() -> Model:
    return Model()


@pytest.fixture(scope="module")
def snaps(model, tmp_path_factory) -> list:
    path = tmp_path_factory.mktemp("capture") / "planted.pcap"
    path.write_bytes(pcap(model.records))
    rep = analyze([str(path)], CONFIG, epoch_s=1.0)
    assert [s.seq for s in rep.epochs] == list(range(EPOCHS))
    return rep.epochs


# --- servers and clients ---------------------------------------------------------------

INFO = {
    "interface": "veth-api0",
    "ifindex": 7,
    "xdp_mode": "generic",
    "pid": 4242,
    "started": T0 - 60.5,
    "epoch_s": 1.0,
    "kernel_memory": {"flows": 3 << 30, "sketches": (1 << 53) + 1},  # a sum that needs 64 exact bits in JSON
}


class Api:
    """A running ApiServer on loopback over a History of the given epochs."""

    def __init__(self, snaps: list, keep: int = 4, max_streams: int = 32, http: bool = True, **cfg):
        self.history = History(keep, layout(CONFIG.tasks, 1), max_streams)
        for s in snaps:
            self.history.add(s)
        self.queries = Queries(self.history, {**INFO, "config": CONFIG})
        self.cfg = ApiConfig(
            address="127.0.0.1:0",
            http_address="127.0.0.1:0" if http else "",  # stopping the HTTP server takes 0.5 s
            keep_epochs=keep,
            max_streams=max_streams,
            **cfg,
        )
        self.log = io.StringIO()
        self.server = ApiServer(self.cfg, self.queries, self.history, log=self.log).start()
        self.target = f"127.0.0.1:{self.server.grpc_port}"
        self.channels: list[grpc.Channel] = []

    def channel(self, creds: grpc.ChannelCredentials | None = None) -> grpc.Channel:
        if creds is None:
            ch = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        else:
            ch = grpc.secure_channel(self.target, creds, options=CHANNEL_OPTIONS)
        self.channels.append(ch)
        return ch

    def stub(self, creds: grpc.ChannelCredentials | None = None) -> pb_grpc.SensorStub:
        return pb_grpc.SensorStub(self.channel(creds))

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.server.http_port}{path}"

    def close(self) -> None:
        for ch in self.channels:
            ch.close()
        self.server.stop(0)
        assert self.log.getvalue() == "", self.log.getvalue()  # no RPC failed with a bug (INTERNAL)


def planted_api(tmp_path_factory):
    """A server over the planted capture analysed in 1 s epochs (other modules' `api` fixture)."""
    path = tmp_path_factory.mktemp("capture") / "planted.pcap"
    path.write_bytes(pcap(Model().records))
    a = Api(analyze([str(path)], CONFIG, epoch_s=1.0).epochs)
    yield a
    a.close()  # asserts nothing was logged: no request failed as a bug (INTERNAL)


@pytest.fixture(scope="module")
def api(snaps):
    """The shared server: the three planted epochs, keep_epochs 4.  Read only."""
    a = Api(snaps)
    yield a
    a.close()


@pytest.fixture(scope="module")
def stub(api) -> pb_grpc.SensorStub:
    return api.stub()


@pytest.fixture
def start(snaps):
    """start(epochs=None, **Api kwargs): a server of one's own, stopped after the test."""
    made: list[Api] = []

    def make(epochs: list | None = None, **kw) -> Api:
        a = Api(snaps if epochs is None else epochs, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()


def rpc_error(method, req, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        method(req, timeout=TIMEOUT, **kw)
    return ei.value


def stream_error(method, req, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        next(method(req, timeout=TIMEOUT, **kw))
    return ei.value


def wait_for(cond, what: str, limit: float = 5.0):
    deadline = time.monotonic() + limit
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return got


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(url: str, method: str = "GET", token: str | None = None, context: ssl.SSLContext | None = None):
    """(status, headers, JSON body or None) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    opener = _OPENER
    if context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
    try:
        with opener.open(req, timeout=TIMEOUT) as r:
            status, headers, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    return status, headers, json.loads(raw) if raw else None


def get(api: Api, path: str, want: int = 200, **kw) -> dict:
    status, _, body = http(api.url(path), **kw)
    assert status == want, body
    return body


# --- GetStatus, ListTasks ----------------------------------------------------------------


def test_get_status(stub, model, snaps):
    st = stub.GetStatus(pb.GetStatusRequest(), timeout=TIMEOUT)
    assert st.version == version()
    assert (st.interface, st.ifindex, st.xdp_mode, st.pid) == ("veth-api0", 7, "generic", 4242)
    assert st.started.ToNanoseconds() == (T0 - 60) * 10**9 - 500_000_000
    assert st.epoch_length.ToNanoseconds() == 10**9
    assert (st.epochs_completed, st.epochs_kept, st.keep_epochs) == (3, 3, 4)
    assert dict(st.kernel_memory) == {"flows": 3 << 30, "sketches": (1 << 53) + 1}
    assert st.kernel_memory_total == (3 << 30) + (1 << 53) + 1
    # totals since start are the sum of the three epochs
    assert (st.total.packets, st.total.bytes) == model.totals(3) == (2930, 3_668_646)
    assert st.total.packets == sum(s.counter("all")[0] for s in snaps)
    assert (st.counters["all"].packets, st.counters["all"].bytes) == model.totals(3)
    assert (st.flow_untracked.packets, st.flow_untracked.bytes, st.candidates_lost) == (0, 0, 0)
    c = st.config
    assert (c.source, c.flow_capacity, c.ringbuf_pages, c.top) == ("<defaults>", 65536, 64, 10)
    assert (c.tasks, c.alert_rules) == (5, len(CONFIG.alerts.rules))
    assert (c.tls, c.client_auth, c.token_auth) == (False, False, False)
    # the latest epoch
    lt = st.latest
    assert lt.epoch == 2
    assert (lt.start.ToSeconds(), lt.end.ToSeconds()) == (T0 + 2, T0 + 3)
    assert (lt.total.packets, lt.total.bytes) == model.totals(1)
    assert lt.flows == len(model.epoch[2]) == 156
    assert lt.exact  # no packet untracked: heavy hitters and spreaders from the flows
    hh = lt.tasks["src"].heavy_hitters  # 10.0.0.2 sent 1.35 MB, over the 1 MB threshold
    assert [(k.key.src_ip, k.packets, k.bytes) for k in hh] == [("10.0.0.2", 900, 1_350_000)]
    assert [key5(k.key) for k in lt.tasks["flow"].heavy_hitters] == [HEAVY.key]
    sp = lt.tasks["spread_dst"].spreaders
    assert [(s.key.src_ip, s.distinct) for s in sp] == [(SCANNER, 150)]
    assert list(lt.tasks["fanin_src"].spreaders) == []


def test_list_tasks(stub):
    tasks = stub.ListTasks(pb.ListTasksRequest(), timeout=TIMEOUT).tasks
    assert (
        [t.name for t in tasks]
        == [s.name for s in CONFIG.tasks]
        == ["src", "flow", "spread_dst", "fanin_src", "port_scan"]
    )
    for t, s in zip(tasks, CONFIG.tasks):
        assert (t.kind, tuple(t.key), tuple(t.element), t.width) == (s.kind, s.key, s.element, s.width)
        if s.kind == COUNTMIN:
            assert (t.depth, t.heavy_hitter_packets, t.heavy_hitter_bytes) == (s.depth, s.hh_packets, s.hh_bytes)
            assert (t.spreader_threshold, t.registers_per_key) == (0, 0)
        else:
            assert (t.depth, t.spreader_threshold, t.registers_per_key) == (1, s.spread_threshold, s.registers)
            assert (t.heavy_hitter_packets, t.heavy_hitter_bytes) == (0, 0)
    assert (tasks[0].depth, tasks[0].width, tasks[0].heavy_hitter_bytes) == (4, 65536, 1_000_000)
    assert (tasks[2].registers_per_key, tasks[2].spreader_threshold, list(tasks[2].element)) == (512, 100, ["dst_ip"])


# --- TopKeys, EstimateKey, TopSpreaders -------------------------------------------------------


def src_of(k: tuple) -> str:
    return k[0]


@pytest.mark.parametrize("epochs", [0, 1, 2, 3])
@pytest.mark.parametrize("metric", [pb.METRIC_UNSPECIFIED, pb.METRIC_BYTES, pb.METRIC_PACKETS])
def test_top_keys_src(stub, model, epochs, metric):
    r = stub.TopKeys(pb.TopKeysRequest(task="src", metric=metric, epochs=epochs), timeout=TIMEOUT)
    n = epochs or 1
    truth = model.by(n, src_of)
    want = ranked(truth, metric or pb.METRIC_BYTES)
    assert r.task == "src" and r.metric == (metric or pb.METRIC_BYTES)
    assert [k.key.src_ip for k in r.keys] == want
    for k in r.keys:
        assert list(k.key.ListFields())[0][0].name == "src_ip" and len(k.key.ListFields()) == 1
        assert (k.packets, k.bytes) == truth[k.key.src_ip]
    assert (r.epochs.first, r.epochs.last) == (EPOCHS - n, EPOCHS - 1)
    assert (r.epochs.start.ToSeconds(), r.epochs.end.ToSeconds()) == (T0 + EPOCHS - n, T0 + EPOCHS)
    # every planted epoch is exact: sums from the flows, no error
    assert r.exact and (r.packets_error_bound, r.bytes_error_bound, r.confidence) == (0, 0, 1)


def test_top_keys_orders_and_sums(stub):
    """The planted numbers themselves: bytes and packets rank differently, and
    epochs=3 adds the three epochs up."""

    def top(**kw):
        r = stub.TopKeys(pb.TopKeysRequest(task="src", **kw), timeout=TIMEOUT)
        return [(k.key.src_ip, k.packets, k.bytes) for k in r.keys]

    assert top(limit=4) == [
        ("10.0.0.2", 900, 1_350_000),
        (SCANNER, 150, 12_000),
        ("10.0.0.5", 8, 5_600),
        ("2001:db8::1", 14, 4_800),
    ]
    assert top(limit=4, metric=pb.METRIC_PACKETS) == [
        ("10.0.0.2", 900, 1_350_000),
        (SCANNER, 150, 12_000),
        ("2001:db8::1", 14, 4_800),
        ("10.0.0.5", 8, 5_600),
    ]
    assert top(limit=2, epochs=3) == [("10.0.0.2", 2400, 3_600_000), (SCANNER, 450, 36_000)]
    assert top(epochs=3, metric=pb.METRIC_PACKETS)[2:] == [
        ("2001:db8::1", 38, 13_600),
        ("10.0.0.5", 16, 11_200),
        ("192.168.1.10", 15, 1_350),
        ("10.0.0.4", 6, 6_000),
        ("fd00::5", 3, 300),
        ("10.0.0.3", 2, 196),
    ]
    assert len(top()) == 6  # only six sources in the last epoch (default limit 10)
    assert len(top(limit=1)) == 1


@pytest.mark.parametrize("metric", [pb.METRIC_BYTES, pb.METRIC_PACKETS])
def test_top_keys_flow_task(stub, model, metric):
    r = stub.TopKeys(pb.TopKeysRequest(task="flow", metric=metric, limit=5, epochs=3), timeout=TIMEOUT)
    truth = model.by(3, lambda k: k)
    assert [key5(k.key) for k in r.keys] == ranked(truth, metric)[:5]
    assert all((k.packets, k.bytes) == truth[key5(k.key)] for k in r.keys)
    assert key5(r.keys[0].key) == HEAVY.key


def test_estimate_key_countmin(stub):
    def est(task, key, epochs=0):
        return stub.EstimateKey(pb.EstimateKeyRequest(task=task, key=key, epochs=epochs), timeout=TIMEOUT)

    r = est("src", pb.Key(src_ip=SCANNER))
    assert (r.task, r.kind, r.key.src_ip, r.packets, r.bytes) == ("src", "countmin", SCANNER, 150, 12_000)
    assert (r.epochs.first, r.epochs.last) == (2, 2)
    assert r.exact and (r.packets_error_bound, r.bytes_error_bound, r.confidence) == (0, 0, 1)
    assert (r.distinct, r.relative_error) == (0, 0)
    r = est("src", pb.Key(src_ip=SCANNER), epochs=3)
    assert (r.packets, r.bytes, r.epochs.first, r.epochs.last) == (450, 36_000, 0, 2)
    r = est("src", pb.Key(src_ip="2001:db8::1"), epochs=2)
    assert (r.packets, r.bytes) == (24, 8_800)
    # an IPv4-mapped address is the IPv4 key, and answered in IPv4 form
    r = est("src", pb.Key(src_ip="::ffff:10.0.0.2"), epochs=3)
    assert (r.key.src_ip, r.packets, r.bytes) == ("10.0.0.2", 2400, 3_600_000)
    r = est("src", pb.Key(src_ip="10.99.99.99"))
    assert (r.packets, r.bytes) == (0, 0)
    r = est("flow", pb_key(HEAVY.key), epochs=3)
    assert key5(r.key) == HEAVY.key
    assert (r.packets, r.bytes) == (2400, 3_600_000)
    r = est("flow", pb_key(PING.key), epochs=3)  # ports 0 are set fields
    assert (r.packets, r.bytes) == (2, 196)


def test_estimate_key_superspread(stub):
    def est(task, key, epochs=0):
        return stub.EstimateKey(pb.EstimateKeyRequest(task=task, key=key, epochs=epochs), timeout=TIMEOUT)

    r = est("spread_dst", pb.Key(src_ip=SCANNER))
    assert (r.task, r.kind, r.key.src_ip) == ("spread_dst", "superspread", SCANNER)
    assert (r.distinct, r.relative_error, r.exact) == (150, 0, True)  # exact: distinct destinations in the flows
    assert (r.packets, r.bytes, r.packets_error_bound, r.confidence) == (0, 0, 0, 0)
    # the scanner hits the same 150 destinations every epoch: distinct over the window, not added up
    r3 = est("spread_dst", pb.Key(src_ip=SCANNER), epochs=3)
    assert (r3.distinct, r3.exact) == (150, True)
    assert (r3.epochs.first, r3.epochs.last) == (0, 2)
    assert est("spread_dst", pb.Key(src_ip="10.0.0.2")).distinct == 1
    assert est("spread_dst", pb.Key(src_ip="10.99.99.99")).distinct == 0
    # 10.9.9.9 heard from 10.0.0.2, 10.0.0.3 and 10.0.0.5 in the last epoch, 10.0.0.2 only in epoch 1
    assert est("fanin_src", pb.Key(dst_ip="10.9.9.9")).distinct == 3
    assert est("fanin_src", pb.Key(dst_ip="10.9.9.9"), epochs=2).distinct == 3


def test_top_spreaders(stub, model):
    r = stub.TopSpreaders(pb.TopSpreadersRequest(task="spread_dst"), timeout=TIMEOUT)
    assert r.task == "spread_dst" and (r.epochs.first, r.epochs.last) == (2, 2)
    assert (r.exact, r.relative_error) == (True, 0)
    flows = defaultdict(int)  # exact flows per source in the last epoch
    for k in model.epoch[2]:
        flows[k[0]] += 1
    top = r.spreaders[0]
    assert (top.key.src_ip, top.flows, top.distinct) == (SCANNER, 150, 150)
    assert {s.key.src_ip: s.flows for s in r.spreaders} == flows
    assert [s.distinct for s in r.spreaders] == sorted((s.distinct for s in r.spreaders), reverse=True)
    for s in r.spreaders[1:]:  # each source's flows went to distinct hosts
        assert s.distinct == s.flows
    assert len(stub.TopSpreaders(pb.TopSpreadersRequest(task="spread_dst", limit=2), timeout=TIMEOUT).spreaders) == 2
    r = stub.TopSpreaders(pb.TopSpreadersRequest(task="fanin_src", limit=1, epochs=3), timeout=TIMEOUT)
    assert [(s.key.dst_ip, s.flows, s.distinct) for s in r.spreaders] == [("10.9.9.9", 3, 3)]
    assert (r.epochs.first, r.epochs.last) == (0, 2)
    r = stub.TopSpreaders(pb.TopSpreadersRequest(task="fanin_src", epochs=3, limit=10000), timeout=TIMEOUT)
    assert len(r.spreaders) == len({k[1] for k in model.flows(3)}) == 156


# --- exact and estimated answers ------------------------------------------------------------

FIELD = {"src_ip": 0, "dst_ip": 1, "src_port": 2, "dst_port": 3, "proto": 4}  # positions in a model 5-tuple
SPEC = {t.name: t for t in CONFIG.tasks}


def fields_of(k: tuple, names) -> tuple:
    """A model 5-tuple's values of the named key fields."""
    return tuple(k[FIELD[n]] for n in names)


def key_of(k: pb.Key, task: str) -> tuple:
    return tuple(getattr(k, n) for n in SPEC[task].key)


def distinct_truth(model: Model, n: int, task: str) -> dict:
    """Per key of a SuperSpread task over the last n epochs: (distinct elements, flows)."""
    elems, flows = defaultdict(set), defaultdict(int)
    for k in model.flows(n):
        key = fields_of(k, SPEC[task].key)
        elems[key].add(fields_of(k, SPEC[task].element))
        flows[key] += 1
    return {key: (len(elems[key]), flows[key]) for key in elems}


# keys no planted flow has (port_scan: a source and a destination that exist, never as a pair)
ABSENT = {
    "src": ("10.99.99.99",),
    "flow": ("10.0.0.2", "10.9.9.9", 4001, 80, P.TCP),
    "spread_dst": ("10.99.99.99",),
    "fanin_src": ("10.99.99.99",),
    "port_scan": (SCANNER, "10.9.9.9"),
}


@pytest.mark.parametrize("epochs", [1, 3])
@pytest.mark.parametrize("metric", [pb.METRIC_BYTES, pb.METRIC_PACKETS])
@pytest.mark.parametrize("task", ["src", "flow"])
def test_exact_top_keys_are_the_sums_of_the_flows(stub, model, task, metric, epochs):
    r = stub.TopKeys(pb.TopKeysRequest(task=task, metric=metric, epochs=epochs, limit=10000), timeout=TIMEOUT)
    truth = model.by(epochs, lambda k: fields_of(k, SPEC[task].key))
    assert {key_of(k.key, task): (k.packets, k.bytes) for k in r.keys} == truth  # every key, exactly
    ranks = [(k.bytes, k.packets) if metric == pb.METRIC_BYTES else (k.packets, k.bytes) for k in r.keys]
    assert ranks == sorted(ranks, reverse=True)
    assert r.exact and (r.packets_error_bound, r.bytes_error_bound, r.confidence) == (0, 0, 1)


@pytest.mark.parametrize("epochs", [1, 3])
@pytest.mark.parametrize("task", list(SPEC))
def test_exact_estimates_are_the_counts_of_the_flows(stub, model, task, epochs):
    names = SPEC[task].key
    if SPEC[task].kind == COUNTMIN:
        truth = model.by(epochs, lambda k: fields_of(k, names))
    else:
        truth = {k: (d,) for k, (d, _) in distinct_truth(model, epochs, task).items()}
    absent = (0, 0) if SPEC[task].kind == COUNTMIN else (0,)
    for values, want in [*truth.items(), (ABSENT[task], absent)]:
        req = pb.EstimateKeyRequest(task=task, key=pb.Key(**dict(zip(names, values))), epochs=epochs)
        r = stub.EstimateKey(req, timeout=TIMEOUT)
        assert r.exact and (r.packets_error_bound, r.bytes_error_bound, r.relative_error) == (0, 0, 0)
        if SPEC[task].kind == COUNTMIN:
            assert ((r.packets, r.bytes), r.confidence) == (want, 1), values
        else:
            assert (r.distinct,) == want, values
    assert ABSENT[task] not in truth


@pytest.mark.parametrize("epochs", [1, 3])
@pytest.mark.parametrize("task", ["spread_dst", "fanin_src", "port_scan"])
def test_exact_top_spreaders_are_the_distinct_counts_of_the_flows(stub, model, task, epochs):
    r = stub.TopSpreaders(pb.TopSpreadersRequest(task=task, epochs=epochs, limit=10000), timeout=TIMEOUT)
    assert (r.exact, r.relative_error) == (True, 0)
    assert {key_of(s.key, task): (s.distinct, s.flows) for s in r.spreaders} == distinct_truth(model, epochs, task)
    assert [s.distinct for s in r.spreaders] == sorted((s.distinct for s in r.spreaders), reverse=True)


# In the last epoch, flows a full table could not hold: counted in the totals and the sketch
# only.  Their sources still have tracked flows, so every true key of the src task is ranked.
UNTRACKED = (*SCAN[:50], DNS6)


def lossy_epoch(snaps: list, seq: int = 2):
    """The last planted epoch as if its flow table had been full: the flows of
    UNTRACKED are missing from its flows, its totals say so, and its sketch
    (the offline sketch of every packet) still counts them: an estimated epoch."""
    s = snaps[2]
    drop = {f.key for f in UNTRACKED}
    tracked = np.array([key5(key_pb(f["key"])) not in drop for f in s.flows])
    lost = s.flows[~tracked]
    totals = s.totals.copy()
    totals[abi.C["flow_untracked"]] = (lost["packets"].sum(), lost["bytes"].sum())
    snap = derive(seq, float(T0 + seq), float(T0 + seq + 1), totals, s.flows[tracked], s.sketch)
    assert not snap.exact and len(lost) == len(UNTRACKED)
    return snap


@pytest.fixture(scope="module")
def lossy(snaps):
    """A server over the planted epochs 0 and 1 and the lossy epoch 2."""
    a = Api([snaps[0], snaps[1], lossy_epoch(snaps)])
    yield a
    a.close()


@pytest.mark.parametrize("epochs", [1, 3])
@pytest.mark.parametrize("metric", [pb.METRIC_BYTES, pb.METRIC_PACKETS])
def test_estimated_top_keys(lossy, model, metric, epochs):
    """A window with untracked packets is answered from the sketches:
    estimates never below the truth, over it by no more than the bound."""
    r = lossy.stub().TopKeys(pb.TopKeysRequest(task="src", metric=metric, epochs=epochs), timeout=TIMEOUT)
    truth = model.by(epochs, src_of)
    packets, nbytes = model.totals(epochs)
    assert not r.exact
    assert r.packets_error_bound == pytest.approx(math.e / 65536 * packets) and packets > 0
    assert r.bytes_error_bound == pytest.approx(math.e / 65536 * nbytes) and nbytes > 0
    assert r.confidence == pytest.approx(1 - math.exp(-4))
    assert {k.key.src_ip for k in r.keys} == set(truth)
    for k in r.keys:
        p, b = truth[k.key.src_ip]
        # over by at most the bound with probability 1 - e^-4 per key; a handful of
        # keys in 65536 counters per row collide with none here (the hashes are fixed)
        assert p <= k.packets <= p + r.packets_error_bound
        assert b <= k.bytes <= b + r.bytes_error_bound


def test_estimated_estimates_and_spreaders(lossy, model):
    stub = lossy.stub()
    # the scanner's tracked flows hold 100 of its 150 packets; the sketch counts all of them
    tracked = all_flows(stub, filter=pb.FlowFilter(src=SCANNER))
    assert sum(f.packets for f in tracked.flows) == 100
    assert (tracked.untracked.packets, tracked.untracked.bytes) == (54, 50 * 80 + 4 * 200)
    for epochs in (1, 3):
        r = stub.EstimateKey(
            pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip=SCANNER), epochs=epochs), timeout=TIMEOUT
        )
        p, b = model.by(epochs, src_of)[SCANNER]
        assert not r.exact and r.confidence == pytest.approx(1 - math.exp(-4))
        assert 0 < r.packets_error_bound and p <= r.packets <= p + r.packets_error_bound
        assert 0 < r.bytes_error_bound and b <= r.bytes <= b + r.bytes_error_bound
        req = pb.EstimateKeyRequest(task="spread_dst", key=pb.Key(src_ip=SCANNER), epochs=epochs)
        r = stub.EstimateKey(req, timeout=TIMEOUT)
        assert not r.exact and r.relative_error == pytest.approx(1.04 / math.sqrt(512))
        assert r.distinct == pytest.approx(150, rel=0.15)
        r = stub.TopSpreaders(pb.TopSpreadersRequest(task="spread_dst", epochs=epochs), timeout=TIMEOUT)
        assert not r.exact and r.relative_error == pytest.approx(1.04 / math.sqrt(512))
        top = r.spreaders[0]
        assert (top.key.src_ip, top.flows) == (SCANNER, 100 if epochs == 1 else 150)  # exact flows held
        assert top.distinct == pytest.approx(150, rel=0.15)
    latest = stub.GetStatus(pb.GetStatusRequest(), timeout=TIMEOUT).latest
    assert (latest.epoch, latest.exact, latest.flow_untracked.packets) == (2, False, 54)
    it = stub.StreamEpochs(pb.StreamEpochsRequest(replay=True), timeout=TIMEOUT)
    assert [(m.epoch, m.exact) for m in (next(it) for _ in range(3))] == [(0, True), (1, True), (2, False)]
    it.cancel()


def test_a_window_is_exact_only_when_every_epoch_is(start, snaps):
    a = start(epochs=[lossy_epoch(snaps), new_epoch(snaps, 3)], http=False)
    stub = a.stub()
    for epochs, exact in ((1, True), (2, False)):
        top = stub.TopKeys(pb.TopKeysRequest(task="src", epochs=epochs), timeout=TIMEOUT)
        req = pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip=SCANNER), epochs=epochs)
        est = stub.EstimateKey(req, timeout=TIMEOUT)
        sp = stub.TopSpreaders(pb.TopSpreadersRequest(task="port_scan", epochs=epochs), timeout=TIMEOUT)
        assert (top.exact, est.exact, sp.exact) == (exact, exact, exact)
        assert (top.packets_error_bound > 0, est.packets_error_bound > 0, sp.relative_error > 0) == (not exact,) * 3
        assert (est.packets == 150 * epochs) if exact else (est.packets >= 150 * epochs)


LOSSY_ROUTES = [
    ("/v1/status", "GetStatus", pb.GetStatusRequest()),
    ("/v1/top?task=src&epochs=3", "TopKeys", pb.TopKeysRequest(task="src", epochs=3)),
    ("/v1/top?task=flow", "TopKeys", pb.TopKeysRequest(task="flow")),
    (
        "/v1/estimate?task=src&src_ip=10.0.0.1",
        "EstimateKey",
        pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip=SCANNER)),
    ),
    (
        "/v1/estimate?task=spread_dst&src_ip=10.0.0.1&epochs=2",
        "EstimateKey",
        pb.EstimateKeyRequest(task="spread_dst", key=pb.Key(src_ip=SCANNER), epochs=2),
    ),
    ("/v1/spreaders?task=port_scan", "TopSpreaders", pb.TopSpreadersRequest(task="port_scan")),
]


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "estimated"])
@pytest.mark.parametrize(("path", "rpc", "req"), LOSSY_ROUTES, ids=[r[0] for r in LOSSY_ROUTES])
def test_http_says_exact_as_grpc(api, lossy, path, rpc, req, exact):
    server = api if exact else lossy
    body = get(server, path)
    answer = getattr(server.stub(), rpc)(req, timeout=TIMEOUT)
    want = json_format.MessageToDict(
        answer, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    same_json(body, want)
    assert (body["latest"] if rpc == "GetStatus" else body)["exact"] is exact


# --- ListFlows -----------------------------------------------------------------------------


def addr_in(addr: str, net: str) -> bool:
    ip, n = ipaddress.ip_address(addr), ipaddress.ip_network(net, strict=False)
    if ip.version == 4 and n.version == 6:
        ip = ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + ip.packed)
    return ip.version == n.version and ip in n


def matches(k: tuple, f: pb.FlowFilter) -> bool:
    src, dst, sport, dport, proto = k
    ok = (not f.src or addr_in(src, f.src)) and (not f.dst or addr_in(dst, f.dst))
    ok = ok and (not f.host or addr_in(src, f.host) or addr_in(dst, f.host))
    for name, ports in (("src_port", (sport,)), ("dst_port", (dport,)), ("port", (sport, dport))):
        if f.HasField(name):
            r = getattr(f, name)
            ok = ok and any(r.lo <= p <= (r.hi or r.lo) for p in ports)
    return ok and (not f.HasField("proto") or proto == f.proto)


def all_flows(stub, **kw) -> pb.ListFlowsResponse:
    r = stub.ListFlows(pb.ListFlowsRequest(page_size=10000, **kw), timeout=TIMEOUT)
    assert r.next_page_token == "" and r.total == len(r.flows)
    return r


FILTERS = {
    "src-v4-net": pb.FlowFilter(src="10.0.0.0/24"),
    "src-ip": pb.FlowFilter(src="10.0.0.2"),
    "dst-net": pb.FlowFilter(dst="10.9.9.0/24"),
    "host-ip": pb.FlowFilter(host=SCANNER),
    "src-v6-prefix": pb.FlowFilter(src="2001:db8::/32"),
    "dst-v6-prefix": pb.FlowFilter(dst="2001:db8::/32"),
    "host-v6-prefix": pb.FlowFilter(host="2001:db8:1::/48"),
    "host-v6-ip": pb.FlowFilter(host="2001:db8::1"),
    "dst-v4-mapped": pb.FlowFilter(dst="::ffff:10.0.0.0/104"),
    "everything": pb.FlowFilter(src="::/0"),
    "v4-only": pb.FlowFilter(src="0.0.0.0/0"),
    "src-port": pb.FlowFilter(src_port=pb.PortRange(lo=4000)),
    "dst-port-53": pb.FlowFilter(dst_port=pb.PortRange(lo=53)),
    "dst-port-range": pb.FlowFilter(dst_port=pb.PortRange(lo=80, hi=443)),
    "port-either": pb.FlowFilter(port=pb.PortRange(lo=123)),
    "port-range": pb.FlowFilter(port=pb.PortRange(lo=5000, hi=6000)),
    "port-zero": pb.FlowFilter(port=pb.PortRange(lo=0, hi=0)),
    "tcp": pb.FlowFilter(proto=P.TCP),
    "udp": pb.FlowFilter(proto=P.UDP),
    "icmp": pb.FlowFilter(proto=P.ICMP),
    "icmpv6": pb.FlowFilter(proto=P.ICMPV6),
    "proto-0": pb.FlowFilter(proto=0),
    "combined": pb.FlowFilter(src="10.0.0.0/8", dst_port=pb.PortRange(lo=80, hi=443), proto=P.TCP),
    "nothing": pb.FlowFilter(src="10.0.0.2", dst="10.9.9.8"),
}


@pytest.mark.parametrize("epochs", [1, 3])
@pytest.mark.parametrize("name", FILTERS)
def test_list_flows_filters(stub, model, name, epochs):
    f = FILTERS[name]
    r = all_flows(stub, filter=f, epochs=epochs)
    want = {k for k in model.flows(epochs) if matches(k, f)}
    got = [key5(x.key) for x in r.flows]
    assert len(got) == len(set(got)) == r.total
    assert set(got) == want


def test_list_flows_filter_counts(stub):
    """A few of the filters above with the planted answer spelled out."""

    def keys(**kw):
        return {key5(x.key) for x in all_flows(stub, filter=pb.FlowFilter(**kw), epochs=3).flows}

    assert keys(src="2001:db8::/32") == {WEB6.key, DNS6.key}
    assert keys(host="2001:db8::1") == {WEB6.key, DNS6.key, PING6.key}
    assert keys(host=SCANNER) == {f.key for f in SCAN} | {NTP.key}
    assert keys(dst_port=pb.PortRange(lo=80, hi=443)) == {HEAVY.key, WEB6.key, TLS.key, NTP.key}  # 123 too
    assert keys(port=pb.PortRange(lo=5000, hi=6000)) == {WEB6.key, DNS6.key, ALT.key}
    assert keys(proto=P.TCP, dst="10.9.9.9") == {HEAVY.key, TLS.key}
    assert keys(proto=P.ICMPV6) == {PING6.key}
    assert keys(src="fd00::/8", proto=P.ICMPV6, port=pb.PortRange(lo=0)) == {PING6.key}
    assert keys(dst="::ffff:10.0.0.0/120", proto=P.UDP) == {NTP.key}  # 10.0.0.0/24
    assert len(keys(src="::/0")) == 150 + 8
    assert len(keys(src="0.0.0.0/0")) == 150 + 5


def test_list_flows_epochs_sum_per_five_tuple(stub, model):
    for n in (1, 2, 3):
        r = all_flows(stub, epochs=n)
        truth = model.flows(n)
        assert r.total == len(truth)
        assert (r.epochs.first, r.epochs.last) == (EPOCHS - n, EPOCHS - 1)
        assert (r.epochs.start.ToSeconds(), r.epochs.end.ToSeconds()) == (T0 + EPOCHS - n, T0 + EPOCHS)
        assert (r.untracked.packets, r.untracked.bytes) == (0, 0)
        for x in r.flows:
            t = truth[key5(x.key)]
            got = (x.packets, x.bytes, x.first_seen.ToNanoseconds(), x.last_seen.ToNanoseconds(), x.tcp_flags)
            assert got == (t.packets, t.bytes, t.first, t.last, t.flags), key5(x.key)
            assert (x.icmp_type, x.icmp_code) == (t.icmp_type, 0)
    heavy = {key5(x.key): x for x in all_flows(stub, epochs=3).flows}[HEAVY.key]
    assert (heavy.packets, heavy.bytes, heavy.tcp_flags) == (2400, 3_600_000, SYN | ACK | PSH)
    assert heavy.first_seen.ToNanoseconds() == model.epoch[0][HEAVY.key].first
    assert heavy.last_seen.ToNanoseconds() == model.epoch[2][HEAVY.key].last
    # the SYN was in epoch 0 only
    assert {key5(x.key): x for x in all_flows(stub, epochs=2).flows}[HEAVY.key].tcp_flags == ACK | PSH


ORDERS = {
    pb.FLOW_ORDER_UNSPECIFIED: "bytes",
    pb.FLOW_ORDER_BYTES: "bytes",
    pb.FLOW_ORDER_PACKETS: "packets",
    pb.FLOW_ORDER_FIRST_SEEN: "first",
    pb.FLOW_ORDER_LAST_SEEN: "last",
}


def flow_value(x: pb.Flow, col: str) -> int:
    if col == "first":
        return x.first_seen.ToNanoseconds()
    if col == "last":
        return x.last_seen.ToNanoseconds()
    return getattr(x, col)


@pytest.mark.parametrize("ascending", [False, True])
@pytest.mark.parametrize("order_by", list(ORDERS), ids=[pb.FlowOrder.Name(o) for o in ORDERS])
def test_list_flows_order(stub, model, order_by, ascending):
    col = ORDERS[order_by]
    truth = model.flows(3)
    r = all_flows(stub, order_by=order_by, ascending=ascending, epochs=3)
    values = [flow_value(x, col) for x in r.flows]
    assert values == sorted((getattr(t, col) for t in truth.values()), reverse=not ascending)
    assert {key5(x.key) for x in r.flows} == set(truth)
    if col in ("first", "last"):  # every flow has its own times: the order of keys is the truth's
        want = sorted(truth, key=lambda k: getattr(truth[k], col), reverse=not ascending)
        assert [key5(x.key) for x in r.flows] == want
    elif not ascending:
        assert key5(r.flows[0].key) == HEAVY.key
    else:
        assert key5(r.flows[-1].key) == HEAVY.key


PAGED = {
    "all-latest": {},
    "all-3-first-seen": {"epochs": 3, "order_by": pb.FLOW_ORDER_FIRST_SEEN},
    "udp-3-packets-asc": {"epochs": 3, "order_by": pb.FLOW_ORDER_PACKETS, "ascending": True, "filter": FILTERS["udp"]},
    "v6-last-seen": {"epochs": 2, "order_by": pb.FLOW_ORDER_LAST_SEEN, "filter": pb.FlowFilter(src="::/1")},
}


@pytest.mark.parametrize("name", PAGED)
def test_list_flows_paging(stub, model, name):
    kw = PAGED[name]
    whole = all_flows(stub, **kw)
    seen, token, pages = [], "", 0
    while True:
        r = stub.ListFlows(pb.ListFlowsRequest(page_size=7, page_token=token, **kw), timeout=TIMEOUT)
        pages += 1
        assert r.total == whole.total
        assert len(r.flows) == (7 if r.next_page_token else whole.total - 7 * (pages - 1))
        seen += [key5(x.key) for x in r.flows]
        token = r.next_page_token
        if not token:
            break
        assert pages < 100
    assert pages == max(1, math.ceil(whole.total / 7))
    assert len(seen) == len(set(seen)) == whole.total  # every matching flow exactly once ...
    assert seen == [key5(x.key) for x in whole.flows]  # ... in the order of the whole answer
    f = kw.get("filter", pb.FlowFilter())
    assert set(seen) == {k for k in model.flows(kw.get("epochs", 1)) if matches(k, f)}


def test_list_flows_defaults(stub, model):
    r = stub.ListFlows(pb.ListFlowsRequest(), timeout=TIMEOUT)  # latest epoch, by bytes, 100 a page
    assert r.total == len(model.epoch[2]) == 156
    assert len(r.flows) == 100 and r.next_page_token
    assert [key5(x.key) for x in r.flows[:3]] == [HEAVY.key, TLS.key, WEB6.key]
    r = stub.ListFlows(pb.ListFlowsRequest(page_token=r.next_page_token), timeout=TIMEOUT)
    assert len(r.flows) == 56 and r.next_page_token == ""
    r = stub.ListFlows(pb.ListFlowsRequest(filter=FILTERS["nothing"]), timeout=TIMEOUT)
    assert (r.total, len(r.flows), r.next_page_token) == (0, 0, "")


# --- TraceFlow -----------------------------------------------------------------------------


def trace(stub, key: pb.Key) -> pb.TraceFlowResponse:
    return stub.TraceFlow(pb.TraceFlowRequest(key=key), timeout=TIMEOUT)


@pytest.mark.parametrize("f", [HEAVY, DNS6, PING, WEB6, PING6, ALT], ids=lambda f: f"{f.src}-{f.proto}")
def test_trace_flow(stub, model, f):
    r = trace(stub, pb_key(f.key))
    assert key5(r.key) == f.key
    assert [e.epoch for e in r.epochs] == [0, 1, 2]
    for e in r.epochs:
        assert (e.start.ToSeconds(), e.end.ToSeconds()) == (T0 + e.epoch, T0 + e.epoch + 1)
        t = model.epoch[e.epoch].get(f.key)
        assert e.HasField("flow") == (t is not None) == (f.packets[e.epoch] > 0)
        if t is not None:
            x = e.flow
            assert key5(x.key) == f.key
            got = (x.packets, x.bytes, x.first_seen.ToNanoseconds(), x.last_seen.ToNanoseconds(), x.tcp_flags)
            assert got == (t.packets, t.bytes, t.first, t.last, t.flags)
            assert x.icmp_type == t.icmp_type
    assert (r.total.packets, r.total.bytes) == (sum(f.packets), sum(f.packets) * f.size)


def test_trace_flow_specifics(stub):
    r = trace(stub, pb_key(HEAVY.key))
    assert [(e.flow.packets, e.flow.bytes, e.flow.tcp_flags) for e in r.epochs] == [
        (700, 1_050_000, SYN | ACK | PSH),
        (800, 1_200_000, ACK | PSH),
        (900, 1_350_000, ACK | PSH),
    ]
    assert (r.total.packets, r.total.bytes) == (2400, 3_600_000)
    r = trace(stub, pb_key(DNS6.key))  # absent in epoch 1
    assert [e.HasField("flow") for e in r.epochs] == [True, False, True]
    assert (r.total.packets, r.total.bytes) == (8, 1600)
    # ICMP: the ports may be left out (they are 0)
    r = trace(stub, pb.Key(src_ip="10.0.0.3", dst_ip="10.9.9.9", proto=P.ICMP))
    assert key5(r.key) == PING.key
    assert [e.flow.icmp_type for e in r.epochs] == [0, 0, 8]
    assert (r.total.packets, r.total.bytes) == (2, 196)
    # a flow never seen: every epoch listed, none with a flow
    r = trace(stub, pb.Key(src_ip="10.0.0.2", dst_ip="10.9.9.9", src_port=4001, dst_port=80, proto=P.TCP))
    assert [(e.epoch, e.HasField("flow")) for e in r.epochs] == [(0, False), (1, False), (2, False)]
    assert (r.total.packets, r.total.bytes) == (0, 0)
    # the IPv4-mapped form finds the IPv4 flow
    r = trace(stub, pb.Key(src_ip="::ffff:10.0.0.2", dst_ip="::ffff:10.9.9.9", src_port=4000, dst_port=80, proto=6))
    assert key5(r.key) == HEAVY.key and r.total.packets == 2400


# --- argument errors -----------------------------------------------------------------------

FLOW_KEY = pb_key(HEAVY.key)


def _flow_key(**kw) -> pb.Key:
    k = pb.Key()
    k.CopyFrom(FLOW_KEY)
    for n, v in kw.items():
        if v is None:
            k.ClearField(n)
        else:
            setattr(k, n, v)
    return k


def _token(d) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")


ERRORS = [
    # tasks
    (
        "TopKeys",
        pb.TopKeysRequest(task="nope"),
        "task",
        "no task named 'nope' (tasks: src, flow, spread_dst, fanin_src, port_scan)",
    ),
    ("TopKeys", pb.TopKeysRequest(), "task", "required"),
    ("TopKeys", pb.TopKeysRequest(task="spread_dst"), "task", "is a superspread task; TopKeys needs a countmin task"),
    (
        "TopSpreaders",
        pb.TopSpreadersRequest(task="src"),
        "task",
        "is a countmin task; TopSpreaders needs a superspread",
    ),
    ("TopSpreaders", pb.TopSpreadersRequest(task="nope"), "task", "no task named 'nope'"),
    ("TopSpreaders", pb.TopSpreadersRequest(), "task", "required"),
    ("EstimateKey", pb.EstimateKeyRequest(task="nope", key=pb.Key(src_ip=SCANNER)), "task", "no task named"),
    ("EstimateKey", pb.EstimateKeyRequest(key=pb.Key(src_ip=SCANNER)), "task", "required"),
    # keys
    (
        "EstimateKey",
        pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip=SCANNER, dst_port=53)),
        "key.dst_port",
        "not a field of task 'src' (fields: src_ip)",
    ),
    ("EstimateKey", pb.EstimateKeyRequest(task="src"), "key.src_ip", "required by task 'src'"),
    (
        "EstimateKey",
        pb.EstimateKeyRequest(task="spread_dst", key=pb.Key(src_ip=SCANNER, dst_ip="10.1.0.1")),
        "key.dst_ip",
        "not a field of task 'spread_dst'",
    ),
    ("EstimateKey", pb.EstimateKeyRequest(task="fanin_src", key=pb.Key(src_ip=SCANNER)), "key.src_ip", "not a field"),
    ("EstimateKey", pb.EstimateKeyRequest(task="flow", key=_flow_key(proto=None)), "key.proto", "required by"),
    ("EstimateKey", pb.EstimateKeyRequest(task="flow", key=_flow_key(src_port=None)), "key.src_port", "required by"),
    (
        "EstimateKey",
        pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip="10.0.0.300")),
        "key.src_ip",
        "'10.0.0.300' is not an IP address",
    ),
    ("EstimateKey", pb.EstimateKeyRequest(task="flow", key=_flow_key(dst_ip="nope")), "key.dst_ip", "not an IP"),
    ("EstimateKey", pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip="")), "key.src_ip", "'' is not an IP"),
    (
        "EstimateKey",
        pb.EstimateKeyRequest(task="flow", key=_flow_key(dst_port=65536)),
        "key.dst_port",
        "65536 is out of range 0..65535",
    ),
    ("EstimateKey", pb.EstimateKeyRequest(task="flow", key=_flow_key(src_port=70000)), "key.src_port", "out of range"),
    ("EstimateKey", pb.EstimateKeyRequest(task="flow", key=_flow_key(proto=256)), "key.proto", "out of range 0..255"),
    ("TraceFlow", pb.TraceFlowRequest(key=_flow_key(proto=None)), "key.proto", "required by a flow"),
    ("TraceFlow", pb.TraceFlowRequest(), "key.src_ip", "required by a flow"),
    ("TraceFlow", pb.TraceFlowRequest(key=_flow_key(src_port=None)), "key.src_port", "required by a flow"),
    ("TraceFlow", pb.TraceFlowRequest(key=_flow_key(dst_port=None, proto=P.UDP)), "key.dst_port", "required by"),
    ("TraceFlow", pb.TraceFlowRequest(key=_flow_key(src_ip="10.0.0")), "key.src_ip", "not an IP address"),
    ("TraceFlow", pb.TraceFlowRequest(key=_flow_key(dst_port=65536)), "key.dst_port", "out of range 0..65535"),
    ("TraceFlow", pb.TraceFlowRequest(key=_flow_key(proto=300)), "key.proto", "out of range 0..255"),
    # limits
    ("TopKeys", pb.TopKeysRequest(task="src", limit=10001), "limit", "10001 is more than the maximum 10000"),
    ("TopSpreaders", pb.TopSpreadersRequest(task="spread_dst", limit=10001), "limit", "more than the maximum 10000"),
    ("ListFlows", pb.ListFlowsRequest(page_size=10001), "page_size", "10001 is more than the maximum 10000"),
    ("TopKeys", pb.TopKeysRequest(task="src", metric=7), "metric", "unknown value 7"),
    ("ListFlows", pb.ListFlowsRequest(order_by=9), "order_by", "unknown value 9"),
    # epochs beyond keep_epochs (4)
    (
        "TopKeys",
        pb.TopKeysRequest(task="src", epochs=5),
        "epochs",
        "5 is more than the epochs kept (4, api.keep_epochs)",
    ),
    ("TopSpreaders", pb.TopSpreadersRequest(task="spread_dst", epochs=5), "epochs", "more than the epochs kept"),
    ("EstimateKey", pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip=SCANNER), epochs=5), "epochs", "more than"),
    ("ListFlows", pb.ListFlowsRequest(epochs=5), "epochs", "5 is more than the epochs kept (4"),
    # filters
    (
        "ListFlows",
        pb.ListFlowsRequest(filter=pb.FlowFilter(src="10.0.0.0/33")),
        "filter.src",
        "'10.0.0.0/33' is not an IP address or CIDR prefix",
    ),
    ("ListFlows", pb.ListFlowsRequest(filter=pb.FlowFilter(dst="nope")), "filter.dst", "not an IP address or CIDR"),
    ("ListFlows", pb.ListFlowsRequest(filter=pb.FlowFilter(host="2001:db8::/129")), "filter.host", "not an IP"),
    (
        "ListFlows",
        pb.ListFlowsRequest(filter=pb.FlowFilter(port=pb.PortRange(lo=443, hi=80))),
        "filter.port",
        "empty range 443-80 (hi below lo)",
    ),
    (
        "ListFlows",
        pb.ListFlowsRequest(filter=pb.FlowFilter(dst_port=pb.PortRange(lo=2, hi=1))),
        "filter.dst_port",
        "hi below lo",
    ),
    (
        "ListFlows",
        pb.ListFlowsRequest(filter=pb.FlowFilter(src_port=pb.PortRange(lo=70000))),
        "filter.src_port",
        "70000 is out of range 0..65535",
    ),
    (
        "ListFlows",
        pb.ListFlowsRequest(filter=pb.FlowFilter(port=pb.PortRange(lo=1, hi=65536))),
        "filter.port",
        "65536 is out of range",
    ),
    ("ListFlows", pb.ListFlowsRequest(filter=pb.FlowFilter(proto=256)), "filter.proto", "256 is out of range 0..255"),
    # page tokens that were never next_page_token
    ("ListFlows", pb.ListFlowsRequest(page_token="not a token!"), "page_token", "malformed"),
    ("ListFlows", pb.ListFlowsRequest(page_token=_token([1, 2])), "page_token", "malformed"),
    ("ListFlows", pb.ListFlowsRequest(page_token=_token({"last": "2", "offset": 7})), "page_token", "malformed"),
    (
        "ListFlows",
        pb.ListFlowsRequest(page_token=_token({"first": 2, "last": 2, "offset": -7})),
        "page_token",
        "malformed",
    ),
    ("ListFlows", pb.ListFlowsRequest(page_token="é"), "page_token", "malformed"),
    # streams
    ("StreamEpochs", pb.StreamEpochsRequest(max_keys=1001), "max_keys", "1001 is more than the maximum 1000"),
]


@pytest.mark.parametrize(
    ("rpc", "req", "field", "why"), ERRORS, ids=[f"{e[0]}-{e[2]}-{i}" for i, e in enumerate(ERRORS)]
)
def test_invalid_argument(stub, rpc, req, field, why):
    call = getattr(stub, rpc)
    e = stream_error(call, req) if rpc.startswith("Stream") else rpc_error(call, req)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith(f"{field}: "), e.details()
    assert why in e.details()


def test_page_token_bound_to_its_request(stub):
    first = stub.ListFlows(pb.ListFlowsRequest(page_size=7, filter=FILTERS["udp"]), timeout=TIMEOUT)
    token = first.next_page_token
    assert token
    again = stub.ListFlows(pb.ListFlowsRequest(page_size=7, filter=FILTERS["udp"], page_token=token), timeout=TIMEOUT)
    assert len(again.flows) == 7
    for other in (
        pb.ListFlowsRequest(filter=FILTERS["tcp"]),
        pb.ListFlowsRequest(filter=pb.FlowFilter(proto=P.UDP, src="10.0.0.0/8")),
        pb.ListFlowsRequest(filter=FILTERS["udp"], order_by=pb.FLOW_ORDER_PACKETS),
        pb.ListFlowsRequest(filter=FILTERS["udp"], ascending=True),
        pb.ListFlowsRequest(filter=FILTERS["udp"], epochs=2),
        pb.ListFlowsRequest(),
    ):
        other.page_token = token
        e = rpc_error(stub.ListFlows, other)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.details().startswith("page_token: was made for a different filter, order, epochs, range or sensor")
    # page_size is not part of the binding
    r = stub.ListFlows(pb.ListFlowsRequest(page_size=3, filter=FILTERS["udp"], page_token=token), timeout=TIMEOUT)
    assert [key5(x.key) for x in r.flows] == [key5(x.key) for x in again.flows[:3]]


def test_page_token_expires_with_its_epoch(start, snaps):
    api = start(keep=3, http=False)
    st = api.stub()
    whole = all_flows(st)  # the latest epoch (2), by bytes
    r = st.ListFlows(pb.ListFlowsRequest(page_size=7), timeout=TIMEOUT)
    token = r.next_page_token
    for seq in (3, 4):  # epoch 2 is still kept: the token still pages through epoch 2
        api.history.add(new_epoch(snaps, seq))
        r2 = st.ListFlows(pb.ListFlowsRequest(page_size=7, page_token=token), timeout=TIMEOUT)
        assert [key5(x.key) for x in r2.flows] == [key5(x.key) for x in whole.flows[7:14]]
        assert (r2.epochs.first, r2.epochs.last, r2.total) == (2, 2, whole.total)
    api.history.add(new_epoch(snaps, 5))  # now it is not
    e = rpc_error(st.ListFlows, pb.ListFlowsRequest(page_size=7, page_token=token))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "page_token: expired: epoch 2 is no longer kept; ask again without page_token"
    fresh = st.ListFlows(pb.ListFlowsRequest(page_size=7), timeout=TIMEOUT)
    assert (fresh.epochs.first, fresh.epochs.last) == (5, 5)


def test_page_token_of_a_window_whose_first_epoch_is_gone(start, snaps):
    """A token over epochs=3 must not silently page through a smaller window
    once the window's oldest epoch is dropped."""
    api = start(keep=3, http=False)
    st = api.stub()
    req = pb.ListFlowsRequest(page_size=7, epochs=3)
    whole = all_flows(st, epochs=3)
    token = st.ListFlows(req, timeout=TIMEOUT).next_page_token
    api.history.add(new_epoch(snaps, 3))  # epoch 0 goes: the window 0..2 is no longer whole
    req.page_token = token
    e = rpc_error(st.ListFlows, req)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "page_token: expired: epoch 0 is no longer kept; ask again without page_token"
    # while both ends are kept, the token pages on through the same window
    token = st.ListFlows(pb.ListFlowsRequest(page_size=7, epochs=2), timeout=TIMEOUT).next_page_token
    whole = all_flows(st, epochs=2)
    api.history.add(new_epoch(snaps, 4))  # keeps 2, 3, 4: the window 2..3 is still whole
    r = st.ListFlows(pb.ListFlowsRequest(page_size=7, epochs=2, page_token=token), timeout=TIMEOUT)
    assert (r.epochs.first, r.epochs.last, r.total) == (2, 3, whole.total)
    assert [key5(x.key) for x in r.flows] == [key5(x.key) for x in whole.flows[7:14]]


# --- before the first epoch, oversized requests ---------------------------------------------------


def test_unavailable_before_the_first_epoch(start):
    api = start(epochs=[])
    st = api.stub()
    for method, req in (
        (st.TopKeys, pb.TopKeysRequest(task="src")),
        (st.EstimateKey, pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip=SCANNER))),
        (st.TopSpreaders, pb.TopSpreadersRequest(task="spread_dst")),
        (st.ListFlows, pb.ListFlowsRequest()),
        (st.TraceFlow, pb.TraceFlowRequest(key=FLOW_KEY)),
    ):
        e = rpc_error(method, req)
        assert e.code() == grpc.StatusCode.UNAVAILABLE, req
        assert e.details() == "no epoch has completed yet; try again after the first epoch"
    # argument errors are still argument errors
    assert rpc_error(st.TopKeys, pb.TopKeysRequest(task="nope")).code() == grpc.StatusCode.INVALID_ARGUMENT
    # status and tasks answer
    s = st.GetStatus(pb.GetStatusRequest(), timeout=TIMEOUT)
    assert not s.HasField("latest")
    assert (s.epochs_completed, s.epochs_kept, s.total.packets, s.total.bytes) == (0, 0, 0, 0)
    assert len(st.ListTasks(pb.ListTasksRequest(), timeout=TIMEOUT).tasks) == 5
    # HTTP: 503, health still fine
    body = get(api, "/v1/top?task=src", want=503)
    assert body == {"error": "no epoch has completed yet; try again after the first epoch", "code": "UNAVAILABLE"}
    assert get(api, "/v1/flows", want=503)["code"] == "UNAVAILABLE"
    assert get(api, "/healthz")["status"] == "SERVING"
    assert get(api, "/v1/status")["epochs_kept"] == 0


def test_oversized_request(stub):
    e = rpc_error(stub.TopKeys, pb.TopKeysRequest(task="x" * 100_000))
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    e = rpc_error(stub.ListFlows, pb.ListFlowsRequest(page_token="A" * 70_000))
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # just under the limit is an ordinary (bad) request, and its error does not echo 60 KB back
    e = rpc_error(stub.TopKeys, pb.TopKeysRequest(task="x" * 60_000))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith("task: no task named 'xxxx") and len(e.details()) < 300
    e = rpc_error(stub.EstimateKey, pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip="1" * 60_000)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith("key.src_ip: '1111") and len(e.details()) < 300
    e = rpc_error(stub.ListFlows, pb.ListFlowsRequest(filter=pb.FlowFilter(host="z" * 60_000)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith("filter.host: 'zzz") and len(e.details()) < 300
    assert stub.GetStatus(pb.GetStatusRequest(), timeout=TIMEOUT).epochs_kept == 3  # and the server lives on


# --- streams -------------------------------------------------------------------------------------


def check_summary(m: pb.EpochSummary, model: Model, e: int):
    truth = model.epoch[e]
    assert (m.start.ToSeconds(), m.end.ToSeconds()) == (T0 + e, T0 + e + 1)
    assert (m.total.packets, m.total.bytes) == (
        sum(r.packets for r in truth.values()),
        sum(r.bytes for r in truth.values()),
    )
    assert (m.counters["all"].packets, m.counters["all"].bytes) == (m.total.packets, m.total.bytes)
    assert m.flows == len(truth)
    assert (m.flow_untracked.packets, m.candidates_lost) == (0, 0)
    assert set(m.tasks) == {"src", "flow", "spread_dst", "fanin_src", "port_scan"}
    hv = truth[HEAVY.key]
    hh = m.tasks["src"].heavy_hitters
    assert [(k.key.src_ip, k.packets, k.bytes) for k in hh] == [("10.0.0.2", hv.packets, hv.bytes)]
    assert [(s.key.src_ip, s.distinct) for s in m.tasks["spread_dst"].spreaders] == [(SCANNER, 150)]
    assert m.exact


def test_stream_epochs_replay_then_live(start, snaps, model):
    api = start(keep=3, http=False)
    it = api.stub().StreamEpochs(pb.StreamEpochsRequest(replay=True), timeout=TIMEOUT)
    replayed = [next(it) for _ in range(3)]
    assert [m.epoch for m in replayed] == [0, 1, 2]
    for m in replayed:
        check_summary(m, model, m.epoch)
    api.history.add(new_epoch(snaps, 3))
    live = next(it)
    assert live.epoch == 3 and (live.start.ToSeconds(), live.end.ToSeconds()) == (T0 + 3, T0 + 4)
    assert (live.total.packets, live.total.bytes) == (replayed[0].total.packets, replayed[0].total.bytes)
    api.history.add(new_epoch(snaps, 4))
    assert next(it).epoch == 4
    it.cancel()
    # and the status followed
    s = api.stub().GetStatus(pb.GetStatusRequest(), timeout=TIMEOUT)
    assert (s.epochs_completed, s.epochs_kept, s.latest.epoch) == (5, 3, 4)
    assert s.total.packets == model.totals(3)[0] + replayed[0].total.packets + replayed[1].total.packets


def test_stream_epochs_without_replay_and_max_keys(start, snaps):
    api = start(http=False)
    it = api.stub().StreamEpochs(pb.StreamEpochsRequest(max_keys=1), timeout=TIMEOUT)
    wait_for(lambda: api.history._epoch_subs, "the stream to subscribe")  # no replay: nothing to read until then
    api.history.add(new_epoch(snaps, 3))
    m = next(it)
    assert m.epoch == 3  # not the kept epochs 0..2
    assert len(m.tasks["src"].heavy_hitters) == 1 and len(m.tasks["spread_dst"].spreaders) == 1
    it.cancel()


def alert_event(status: str, rule: str, key: str, value: float, repeat: bool = False, ends_at=None) -> Event:
    labels = {
        "alertname": f"Netspectra{rule.title()}",
        "rule": rule,
        "sensor": "host-a",
        "interface": "veth-api0",
        "task": "spread_dst",
        **dict(f.split("=") for f in key.split()),  # the key's fields, as the engine labels them
        "severity": "warning" if rule == "scan" else "critical",
        "source": "sensor",
    }
    return Event(
        status=status,
        labels=labels,
        value=value,
        threshold=100.0,
        starts_at=T0 + 1.25,
        ends_at=ends_at,
        summary=f"{rule} from {key}",
        description=f"{key} reached {value}",
        repeat=repeat,
        key=key,
    )


def check_alert(a: pb.Alert, ev: Event):
    lb = ev.labels
    assert (a.status, a.rule, a.severity, a.task, a.key) == (
        ev.status,
        lb["rule"],
        lb["severity"],
        lb["task"],
        ev.key,
    )
    assert (a.value, a.threshold, a.summary, a.description, a.repeat) == (
        ev.value,
        ev.threshold,
        ev.summary,
        ev.description,
        ev.repeat,
    )
    assert a.starts_at.ToNanoseconds() == int(round(ev.starts_at * 1e9))
    assert a.HasField("ends_at") == (ev.ends_at is not None)
    if ev.ends_at is not None:
        assert a.ends_at.ToNanoseconds() == int(round(ev.ends_at * 1e9))
    assert dict(a.labels) == lb


def test_stream_alerts_replay_then_live(start):
    api = start(http=False)
    scan = alert_event("firing", "scan", "src_ip=10.0.0.1", 147.5)
    flood = alert_event("firing", "flood", "src_ip=10.0.0.2", 1350000.0)
    api.history.alerts([scan, flood], [scan, flood])  # before the client: only the firing ones are replayed
    it = api.stub().StreamAlerts(pb.StreamAlertsRequest(replay=True), timeout=TIMEOUT)
    check_alert(next(it), scan)
    check_alert(next(it), flood)
    resolved = dataclasses.replace(scan, status="resolved", ends_at=T0 + 4.5)
    again = dataclasses.replace(flood, repeat=True, value=1400000.0)
    api.history.alerts([resolved, again], [flood])
    check_alert(next(it), resolved)
    check_alert(next(it), again)
    it.cancel()
    wait_for(lambda: not api.history._alert_subs, "the cancelled stream to unsubscribe")
    # a client without replay gets only what happens after it came
    it = api.stub().StreamAlerts(pb.StreamAlertsRequest(), timeout=TIMEOUT)
    wait_for(lambda: api.history._alert_subs, "the stream to subscribe")
    api.history.alerts([resolved], [])
    check_alert(next(it), resolved)
    it.cancel()


def test_max_streams(start):
    api = start(max_streams=2, http=False)
    st = api.stub()
    a = st.StreamEpochs(pb.StreamEpochsRequest(replay=True), timeout=TIMEOUT)
    b = st.StreamEpochs(pb.StreamEpochsRequest(replay=True), timeout=TIMEOUT)
    assert next(a).epoch == 0 and next(b).epoch == 0  # both subscribed
    for req, method in (
        (pb.StreamAlertsRequest(replay=True), st.StreamAlerts),
        (pb.StreamEpochsRequest(), st.StreamEpochs),
    ):
        e = stream_error(method, req)
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many open streams (api.max_streams = 2)" in e.details()
    # unary calls are not streams
    assert st.GetStatus(pb.GetStatusRequest(), timeout=TIMEOUT).epochs_kept == 3
    # a closed stream frees its slot
    a.cancel()

    def third():
        try:
            return next(st.StreamEpochs(pb.StreamEpochsRequest(replay=True), timeout=TIMEOUT)).epoch == 0
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return False

    wait_for(third, "a free stream slot")
    b.cancel()


def test_stop_ends_streams(start):
    api = start(http=False)
    st = api.stub()
    epochs = st.StreamEpochs(pb.StreamEpochsRequest(replay=True), timeout=TIMEOUT)
    api.history.alerts([], [alert_event("firing", "scan", "src_ip=10.0.0.1", 150.0)])
    alerts = st.StreamAlerts(pb.StreamAlertsRequest(replay=True), timeout=TIMEOUT)
    assert [next(epochs).epoch for _ in range(3)] == [0, 1, 2]
    assert next(alerts).status == "firing"
    t = time.monotonic()
    api.server.stop()
    for it in (epochs, alerts):
        assert list(it) == []  # the stream ends (OK), it does not hang until the deadline
        assert it.code() == grpc.StatusCode.OK
    assert time.monotonic() - t < 5


# --- health and reflection --------------------------------------------------------------------------


def test_health(api):
    h = health_pb2_grpc.HealthStub(api.channel())
    for service in ("", SERVICE):
        r = h.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    e = rpc_error(h.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def reflect(channel, metadata=None, **req) -> reflection_pb2.ServerReflectionResponse:
    st = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = list(
        st.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(**req)]), timeout=TIMEOUT, metadata=metadata
        )
    )
    assert len(answers) == 1
    return answers[0]


def test_reflection(api):
    ch = api.channel()
    names = {s.name for s in reflect(ch, list_services="").list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    r = reflect(ch, file_containing_symbol=SERVICE)
    files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in r.file_descriptor_response.file_descriptor_proto]
    fd = next(f for f in files if f.package == "netspectra.v1")
    assert fd.name == "netspectra/api/v1/sensor.proto"  # the import path of the stubs
    (svc,) = fd.service
    assert svc.name == "Sensor"
    assert [m.name for m in svc.method] == [
        "GetStatus",
        "ListTasks",
        "TopKeys",
        "EstimateKey",
        "TopSpreaders",
        "ListFlows",
        "TraceFlow",
        "StreamEpochs",
        "StreamAlerts",
    ]
    assert [m.name for m in svc.method if m.server_streaming] == ["StreamEpochs", "StreamAlerts"]
    r = reflect(ch, file_containing_symbol="netspectra.v1.NoSuchThing")
    assert r.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


# --- bearer token ---------------------------------------------------------------------------------------

AUTH = [("authorization", f"Bearer {TOKEN}")]


def test_token(start):
    api = start(token=TOKEN, http=False)
    st = api.stub()
    e = rpc_error(st.GetStatus, pb.GetStatusRequest())
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED
    assert e.details() == "missing bearer token (authorization: Bearer <token> metadata)"
    for wrong in (f"Bearer {TOKEN}x", TOKEN, f"bearer {TOKEN}", "Bearer", f"Basic {TOKEN}"):
        e = rpc_error(st.GetStatus, pb.GetStatusRequest(), metadata=[("authorization", wrong)])
        assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, "wrong bearer token")
    assert st.GetStatus(pb.GetStatusRequest(), timeout=TIMEOUT, metadata=AUTH).epochs_kept == 3
    r = st.TopKeys(pb.TopKeysRequest(task="src", limit=1), timeout=TIMEOUT, metadata=AUTH)
    assert r.keys[0].key.src_ip == "10.0.0.2"
    # argument errors come after the token check
    e = rpc_error(st.TopKeys, pb.TopKeysRequest(task="nope"))
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED
    e = rpc_error(st.TopKeys, pb.TopKeysRequest(task="nope"), metadata=AUTH)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    # streams: UNAUTHENTICATED (not INTERNAL) without, messages with
    for method, req in (
        (st.StreamEpochs, pb.StreamEpochsRequest(replay=True)),
        (st.StreamAlerts, pb.StreamAlertsRequest()),
    ):
        e = stream_error(method, req)
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e.details()
        e = stream_error(method, req, metadata=[("authorization", "Bearer nope")])
        assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, "wrong bearer token")
    it = st.StreamEpochs(pb.StreamEpochsRequest(replay=True), timeout=TIMEOUT, metadata=AUTH)
    assert next(it).epoch == 0
    it.cancel()
    # health checks need no token
    h = health_pb2_grpc.HealthStub(api.channel())
    assert h.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=TIMEOUT).status == 1
    # reflection is behind the token like the service it describes
    names = {s.name for s in reflect(api.channel(), metadata=AUTH, list_services="").list_services_response.service}
    assert SERVICE in names
    with pytest.raises(grpc.RpcError) as ei:
        reflect(api.channel(), list_services="")
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_token_http(start):
    api = start(token=TOKEN)
    status, headers, body = http(api.url("/v1/status"))
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert body == {"error": "missing bearer token (Authorization: Bearer <token>)", "code": "UNAUTHENTICATED"}
    status, headers, body = http(api.url("/v1/top?task=src"), token="not-the-token-at-all")
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert body == {"error": "wrong bearer token", "code": "UNAUTHENTICATED"}
    # unknown paths and bad parameters are not revealed before the token
    assert http(api.url("/v1/nope"))[0] == 401
    assert get(api, "/v1/status", token=TOKEN)["epochs_kept"] == 3
    assert get(api, "/v1/top?task=nope", want=400, token=TOKEN)["code"] == "INVALID_ARGUMENT"
    assert get(api, "/healthz")["status"] == "SERVING"


# --- TLS and mutual TLS ---------------------------------------------------------------------------------


def openssl(cwd, command: str) -> None:
    subprocess.run(["openssl", *command.split()], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """Two CAs; a server certificate for IP 127.0.0.1 and a client certificate
    from the first, a client certificate from the second.  {"ca_crt": path,
    "ca_crt_pem": bytes, "client_key": path, ...}"""
    d = tmp_path_factory.mktemp("pki")
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    for ca in ("ca", "other_ca"):
        openssl(
            d,
            f"req -x509 {ec} -keyout {ca}.key -out {ca}.crt -days 2 -subj /CN=netspectra-test-{ca}"
            " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
        )
    ids = "keyUsage=critical,digitalSignature\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" + ids)
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n" + ids)
    for name, ca, ext in (("server", "ca", "server"), ("client", "ca", "client"), ("stranger", "other_ca", "client")):
        openssl(d, f"req {ec} -keyout {name}.key -out {name}.csr -subj /CN={name}")
        openssl(
            d,
            f"x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial -out {name}.crt -days 2"
            f" -extfile {ext}.ext",
        )
    out = {}
    for p in d.iterdir():
        if p.suffix in (".crt", ".key"):
            out[f"{p.stem}_{p.suffix[1:]}"] = str(p)
            out[f"{p.stem}_{p.suffix[1:]}_pem"] = p.read_bytes()
    return out


def creds(pki, ca="ca", client: str | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=pki[f"{ca}_crt_pem"])
    return grpc.ssl_channel_credentials(
        root_certificates=pki[f"{ca}_crt_pem"],
        private_key=pki[f"{client}_key_pem"],
        certificate_chain=pki[f"{client}_crt_pem"],
    )


def tls_context(pki, ca="ca", client: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki[f"{ca}_crt"])
    if client is not None:
        ctx.load_cert_chain(pki[f"{client}_crt"], pki[f"{client}_key"])
    return ctx


def ok_status(api, c) -> bool:
    return api.stub(c).GetStatus(pb.GetStatusRequest(), timeout=TIMEOUT).epochs_kept == 3


def fails(api, c) -> grpc.StatusCode:
    return rpc_error(api.stub(c).GetStatus, pb.GetStatusRequest()).code()


def test_tls(start, pki):
    api = start(tls=TlsConfig(cert=pki["server_crt"], key=pki["server_key"]))
    assert ok_status(api, creds(pki))
    assert ok_status(api, creds(pki, client="client"))  # a certificate nobody asked for does no harm
    it = api.stub(creds(pki)).StreamEpochs(pb.StreamEpochsRequest(replay=True), timeout=TIMEOUT)
    assert next(it).epoch == 0
    it.cancel()
    assert fails(api, None) == grpc.StatusCode.UNAVAILABLE  # plaintext
    assert fails(api, creds(pki, ca="other_ca")) == grpc.StatusCode.UNAVAILABLE  # does not trust the server
    # HTTP
    status, _, body = http(api.url("/v1/status", "https"), context=tls_context(pki))
    assert status == 200 and body["epochs_kept"] == 3
    with pytest.raises(OSError):
        http(api.url("/v1/status"))  # plaintext
    with pytest.raises(urllib.error.URLError) as ei:
        http(api.url("/v1/status", "https"), context=tls_context(pki, ca="other_ca"))
    assert isinstance(ei.value.reason, ssl.SSLCertVerificationError)
    # the server still answers after the failed handshakes
    assert http(api.url("/healthz", "https"), context=tls_context(pki))[0] == 200


def test_mutual_tls(start, pki):
    api = start(tls=TlsConfig(cert=pki["server_crt"], key=pki["server_key"], client_ca=pki["ca_crt"]), token=TOKEN)
    st = api.stub(creds(pki, client="client"))
    assert st.GetStatus(pb.GetStatusRequest(), timeout=TIMEOUT, metadata=AUTH).epochs_kept == 3
    # the token is still required on top of the certificate
    assert rpc_error(st.GetStatus, pb.GetStatusRequest()).code() == grpc.StatusCode.UNAUTHENTICATED
    for c in (creds(pki), creds(pki, client="stranger"), None):  # no certificate, one from another CA, plaintext
        e = rpc_error(api.stub(c).GetStatus, pb.GetStatusRequest(), metadata=AUTH)
        assert e.code() == grpc.StatusCode.UNAVAILABLE
    # HTTP
    ctx = tls_context(pki, client="client")
    status, _, body = http(api.url("/v1/tasks", "https"), context=ctx, token=TOKEN)
    assert status == 200 and len(body["tasks"]) == 5
    assert http(api.url("/healthz", "https"), context=ctx)[0] == 200
    for bad in (tls_context(pki), tls_context(pki, client="stranger")):
        with pytest.raises(OSError):
            http(api.url("/v1/tasks", "https"), context=bad, token=TOKEN)
    assert http(api.url("/v1/tasks", "https"), context=ctx, token=TOKEN)[0] == 200


# --- HTTP/JSON --------------------------------------------------------------------------------------------

_DIGITS = re.compile(r"-?\d+")


def same_json(got, want, path="$"):
    """`got` (the HTTP body) is protobuf's JSON mapping `want` with 64-bit
    integers as numbers instead of strings."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (path, sorted(got), sorted(want))
        for k in want:
            same_json(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            same_json(g, w, f"{path}[{i}]")
    elif isinstance(want, str) and isinstance(got, int) and not isinstance(got, bool):
        assert want == str(got), path
    else:
        assert got == want and type(got) is type(want), (path, got, want)


def no_numeric_strings(body, path="$"):
    if isinstance(body, dict):
        for k, v in body.items():
            no_numeric_strings(v, f"{path}.{k}")
    elif isinstance(body, list):
        for i, v in enumerate(body):
            no_numeric_strings(v, f"{path}[{i}]")
    else:
        assert not (isinstance(body, str) and _DIGITS.fullmatch(body)), f"{path} is a string: {body!r}"


ROUTES = [
    ("/v1/status", "GetStatus", pb.GetStatusRequest()),
    ("/v1/tasks", "ListTasks", pb.ListTasksRequest()),
    ("/v1/top?task=src", "TopKeys", pb.TopKeysRequest(task="src")),
    (
        "/v1/top?task=src&metric=packets&limit=3&epochs=3",
        "TopKeys",
        pb.TopKeysRequest(task="src", metric=pb.METRIC_PACKETS, limit=3, epochs=3),
    ),
    ("/v1/top?task=flow&metric=BYTES&epochs=2", "TopKeys", pb.TopKeysRequest(task="flow", metric=1, epochs=2)),
    (
        "/v1/estimate?task=src&src_ip=10.0.0.1&epochs=3",
        "EstimateKey",
        pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip=SCANNER), epochs=3),
    ),
    (
        "/v1/estimate?task=flow&src_ip=10.0.0.2&dst_ip=10.9.9.9&src_port=4000&dst_port=80&proto=tcp",
        "EstimateKey",
        pb.EstimateKeyRequest(task="flow", key=FLOW_KEY),
    ),
    (
        "/v1/estimate?task=spread_dst&src_ip=10.0.0.1",
        "EstimateKey",
        pb.EstimateKeyRequest(task="spread_dst", key=pb.Key(src_ip=SCANNER)),
    ),
    ("/v1/spreaders?task=spread_dst", "TopSpreaders", pb.TopSpreadersRequest(task="spread_dst")),
    (
        "/v1/spreaders?task=fanin_src&limit=3&epochs=3",
        "TopSpreaders",
        pb.TopSpreadersRequest(task="fanin_src", limit=3, epochs=3),
    ),
    ("/v1/flows", "ListFlows", pb.ListFlowsRequest()),
    (
        "/v1/flows?src=10.0.0.0/8&dst_port=80-443&proto=tcp&order_by=packets&epochs=3",
        "ListFlows",
        pb.ListFlowsRequest(filter=FILTERS["combined"], order_by=pb.FLOW_ORDER_PACKETS, epochs=3),
    ),
    (
        "/v1/flows?host=2001:db8::/32&port=5000-6000&order_by=first_seen&ascending=true&page_size=2&epochs=3",
        "ListFlows",
        pb.ListFlowsRequest(
            filter=pb.FlowFilter(host="2001:db8::/32", port=pb.PortRange(lo=5000, hi=6000)),
            order_by=pb.FLOW_ORDER_FIRST_SEEN,
            ascending=True,
            page_size=2,
            epochs=3,
        ),
    ),
    (
        "/v1/flows?dst=10.9.9.9&src_port=4000&proto=6&ascending=0",
        "ListFlows",
        pb.ListFlowsRequest(filter=pb.FlowFilter(dst="10.9.9.9", src_port=pb.PortRange(lo=4000), proto=6)),
    ),
    (
        "/v1/flows?proto=icmpv6&epochs=3&order_by=last_seen",
        "ListFlows",
        pb.ListFlowsRequest(filter=pb.FlowFilter(proto=58), epochs=3, order_by=pb.FLOW_ORDER_LAST_SEEN),
    ),
    (
        "/v1/trace?src_ip=10.0.0.2&dst_ip=10.9.9.9&src_port=4000&dst_port=80&proto=tcp",
        "TraceFlow",
        pb.TraceFlowRequest(key=FLOW_KEY),
    ),
    (
        "/v1/trace?src_ip=2001:db8::1&dst_ip=2001:db8:2::3&src_port=5353&dst_port=53&proto=udp",
        "TraceFlow",
        pb.TraceFlowRequest(key=pb_key(DNS6.key)),
    ),
    (
        "/v1/trace?src_ip=10.0.0.3&dst_ip=10.9.9.9&proto=icmp",
        "TraceFlow",
        pb.TraceFlowRequest(key=pb.Key(src_ip="10.0.0.3", dst_ip="10.9.9.9", proto=1)),
    ),
]


@pytest.mark.parametrize(("path", "rpc", "req"), ROUTES, ids=[r[0] for r in ROUTES])
def test_http_same_as_grpc(api, stub, path, rpc, req):
    body = get(api, path)
    answer = getattr(stub, rpc)(req, timeout=TIMEOUT)
    want = json_format.MessageToDict(
        answer, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    if "next_page_token" in want:  # tokens are equal too: both bind the same request
        assert body["next_page_token"] == want["next_page_token"]
    same_json(body, want)
    no_numeric_strings(body)


def test_http_known_values(api, model):
    st = get(api, "/v1/status")
    assert (st["total"]["packets"], st["total"]["bytes"]) == model.totals(3)
    assert st["kernel_memory_total"] == (3 << 30) + (1 << 53) + 1  # exact: a JSON number, not a float
    assert st["kernel_memory"] == {"flows": 3 << 30, "sketches": (1 << 53) + 1}
    assert st["latest"]["epoch"] == 2 and st["epoch_length"] == "1s"
    assert st["latest"]["tasks"]["src"]["heavy_hitters"][0]["bytes"] == 1_350_000
    top = get(api, "/v1/top?task=src&metric=packets&limit=2&epochs=3")
    assert [(k["key"], k["packets"], k["bytes"]) for k in top["keys"]] == [
        ({"src_ip": "10.0.0.2"}, 2400, 3_600_000),
        ({"src_ip": SCANNER}, 450, 36_000),
    ]
    assert top["metric"] == "METRIC_PACKETS" and top["epochs"]["first"] == 0 and top["epochs"]["last"] == 2
    tr = get(api, "/v1/trace?src_ip=2001:db8::1&dst_ip=2001:db8:2::3&src_port=5353&dst_port=53&proto=17")
    assert [("flow" in e) for e in tr["epochs"]] == [True, False, True]
    assert tr["total"] == {"packets": 8, "bytes": 1600}
    fl = get(api, "/v1/flows?src=10.0.0.2&epochs=3")
    (f,) = fl["flows"]
    assert f["key"] == {"src_ip": "10.0.0.2", "dst_ip": "10.9.9.9", "src_port": 4000, "dst_port": 80, "proto": 6}
    assert (f["packets"], f["bytes"], f["tcp_flags"], fl["total"]) == (2400, 3_600_000, SYN | ACK | PSH, 1)
    first = model.epoch[0][HEAVY.key].first  # RFC 3339, like the protobuf JSON mapping
    assert f["first_seen"] == f"2001-09-09T01:46:40.{first % 10**9 // 1000:06d}Z"
    assert first // 10**9 == T0
    sp = get(api, "/v1/spreaders?task=spread_dst&limit=1")["spreaders"]
    assert sp[0]["key"] == {"src_ip": SCANNER} and sp[0]["flows"] == 150 and isinstance(sp[0]["distinct"], float)


def test_http_paging(api, model):
    seen, token, pages = [], "", 0
    while True:
        body = get(api, f"/v1/flows?proto=udp&epochs=3&page_size=7{'&page_token=' + token if token else ''}")
        pages += 1
        seen += [
            tuple(x["key"].get(n, 0) for n in ("src_ip", "dst_ip", "src_port", "dst_port", "proto"))
            for x in body["flows"]
        ]
        token = body["next_page_token"]
        if not token:
            break
    udp = {k for k in model.flows(3) if k[4] == P.UDP}
    assert len(seen) == len(set(seen)) == body["total"] == len(udp) == 152
    assert set(seen) == udp and pages == math.ceil(152 / 7)


HTTP_ERRORS = [
    ("/v1/nope", 404, "NOT_FOUND", "no such path /v1/nope (paths: "),
    ("/v2/status", 404, "NOT_FOUND", "no such path"),
    ("/v1/flows?bogus=1", 400, "INVALID_ARGUMENT", "bogus: unknown parameter for /v1/flows (parameters: src, dst"),
    (
        "/v1/status?verbose=1",
        400,
        "INVALID_ARGUMENT",
        "verbose: unknown parameter for /v1/status (parameters: since, until, sensor)",
    ),
    ("/v1/top?task=src&src_ip=10.0.0.1", 400, "INVALID_ARGUMENT", "src_ip: unknown parameter for /v1/top"),
    ("/v1/top?task=src&limit=1&limit=2", 400, "INVALID_ARGUMENT", "limit: given more than once"),
    ("/v1/top?task=src&task=flow", 400, "INVALID_ARGUMENT", "task: given more than once"),
    ("/v1/top?task=src&limit=ten", 400, "INVALID_ARGUMENT", "limit: 'ten' is not an integer 0..4294967295"),
    ("/v1/top?task=src&limit=-1", 400, "INVALID_ARGUMENT", "limit: '-1' is not an integer"),
    ("/v1/top?task=src&limit=", 400, "INVALID_ARGUMENT", "limit: '' is not an integer"),
    ("/v1/top?task=src&epochs=99999999999", 400, "INVALID_ARGUMENT", "epochs: '99999999999' is not an integer"),
    ("/v1/top?task=src&limit=10001", 400, "INVALID_ARGUMENT", "limit: 10001 is more than the maximum 10000"),
    ("/v1/top?task=src&epochs=5", 400, "INVALID_ARGUMENT", "epochs: 5 is more than the epochs kept (4"),
    ("/v1/top?task=src&metric=loudness", 400, "INVALID_ARGUMENT", "metric: 'loudness' is not one of bytes, packets"),
    ("/v1/top?task=src&metric=unspecified", 400, "INVALID_ARGUMENT", "metric: 'unspecified' is not one of"),
    ("/v1/top?task=nope", 400, "INVALID_ARGUMENT", "task: no task named 'nope'"),
    ("/v1/top", 400, "INVALID_ARGUMENT", "task: required"),
    ("/v1/top?task=spread_dst", 400, "INVALID_ARGUMENT", "task: 'spread_dst' is a superspread task"),
    ("/v1/spreaders?task=src", 400, "INVALID_ARGUMENT", "task: 'src' is a countmin task"),
    ("/v1/estimate?task=src&src_ip=10.0.0.1&dst_port=80", 400, "INVALID_ARGUMENT", "key.dst_port: not a field"),
    ("/v1/estimate?task=src&src_ip=bad", 400, "INVALID_ARGUMENT", "key.src_ip: 'bad' is not an IP address"),
    (
        "/v1/estimate?task=flow&src_ip=10.0.0.2&dst_ip=10.9.9.9&src_port=99999&dst_port=80&proto=6",
        400,
        "INVALID_ARGUMENT",
        "src_port: '99999' is not an integer 0..65535",
    ),
    ("/v1/flows?proto=tcpx", 400, "INVALID_ARGUMENT", "proto: 'tcpx' is not a protocol number 0..255 or one of icmp"),
    ("/v1/flows?proto=256", 400, "INVALID_ARGUMENT", "proto: '256' is not a protocol number"),
    ("/v1/flows?dst_port=80-x", 400, "INVALID_ARGUMENT", "dst_port: '80-x' is not a port or range (80, 1024-65535)"),
    ("/v1/flows?port=70000", 400, "INVALID_ARGUMENT", "port: '70000' is not a port or range"),
    ("/v1/flows?port=443-80", 400, "INVALID_ARGUMENT", "filter.port: empty range 443-80 (hi below lo)"),
    ("/v1/flows?src=10.0.0.0/33", 400, "INVALID_ARGUMENT", "filter.src: '10.0.0.0/33' is not an IP address or CIDR"),
    ("/v1/flows?order_by=size", 400, "INVALID_ARGUMENT", "order_by: 'size' is not one of bytes, packets, first_seen"),
    ("/v1/flows?ascending=maybe", 400, "INVALID_ARGUMENT", "ascending: 'maybe' is not true or false"),
    ("/v1/flows?page_size=10001", 400, "INVALID_ARGUMENT", "page_size: 10001 is more than the maximum 10000"),
    ("/v1/flows?page_token=garbage", 400, "INVALID_ARGUMENT", "page_token: malformed"),
    (
        "/v1/trace?src_ip=10.0.0.2&dst_ip=10.9.9.9&src_port=1&dst_port=2",
        400,
        "INVALID_ARGUMENT",
        "key.proto: required by a flow",
    ),
    ("/v1/trace?src_ip=10.0.0.2&dst_ip=10.9.9.9&proto=tcp", 400, "INVALID_ARGUMENT", "key.src_port: required"),
]


@pytest.mark.parametrize(("path", "status", "code", "why"), HTTP_ERRORS, ids=[e[0] for e in HTTP_ERRORS])
def test_http_errors(api, path, status, code, why):
    s, headers, body = http(api.url(path))
    assert s == status
    assert headers["Content-Type"] == "application/json"
    assert set(body) == {"error", "code"} and body["code"] == code
    assert body["error"].startswith(why), body["error"]


def test_http_page_token_of_another_filter(api):
    token = get(api, "/v1/flows?proto=udp&page_size=7")["next_page_token"]
    body = get(api, f"/v1/flows?proto=tcp&page_size=7&page_token={token}", want=400)
    assert body["error"].startswith("page_token: was made for a different filter")
    # and tokens from the gRPC side work over HTTP (the same request)
    token = (
        api.stub().ListFlows(pb.ListFlowsRequest(page_size=7, filter=FILTERS["udp"]), timeout=TIMEOUT).next_page_token
    )
    assert len(get(api, f"/v1/flows?proto=17&page_size=7&page_token={token}")["flows"]) == 7


def test_http_methods_and_health(api):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, body = http(api.url("/v1/status"), method=method)
        assert status == 405 and headers["Allow"] == "GET, HEAD", method
        assert body == {
            "error": f"method: {method} is not allowed (read-only: use GET or HEAD)",
            "code": "INVALID_ARGUMENT",
        }
    status, headers, body = http(api.url("/v1/status"), method="HEAD")
    assert status == 200 and body is None and int(headers["Content-Length"]) > 100
    status, headers, body = http(api.url("/healthz"))
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body["status"] == "SERVING" and "/v1/flows" in body["paths"]
    assert get(api, "/v1/tasks/")["tasks"][0]["name"] == "src"  # a trailing slash is the same route
    status, _, body = http(api.url("/v1/flows?" + "&".join(f"src={i}" for i in range(100))))
    assert status == 400 and body["code"] == "INVALID_ARGUMENT"


# --- starting, IPv6, concurrency, slow subscribers -----------------------------------------------------


def start_error(cfg: ApiConfig) -> tuple[str, ApiServer]:
    h = History(3, layout(CONFIG.tasks, 1))
    srv = ApiServer(cfg, Queries(h, {**INFO, "config": CONFIG}), h, log=io.StringIO())
    with pytest.raises(ApiServerError) as ei:
        srv.start()
    assert "\n" not in str(ei.value)
    assert srv.grpc_server is None and srv.http is None  # what did start is stopped again
    return str(ei.value), srv


def test_start_errors(api, pki, tmp_path):
    busy_grpc, busy_http = f"127.0.0.1:{api.server.grpc_port}", f"127.0.0.1:{api.server.http_port}"
    msg, _ = start_error(ApiConfig(address=busy_grpc, http_address=""))
    assert msg.startswith(f"cannot serve gRPC on {busy_grpc} (api.address): ")
    msg, _ = start_error(ApiConfig(address="127.0.0.1:0", http_address=busy_http))  # gRPC started, then stopped
    assert msg == f"cannot serve HTTP on {busy_http} (api.http_address): Address already in use"
    missing = str(tmp_path / "missing.crt")
    msg, _ = start_error(ApiConfig(address="127.0.0.1:0", http_address="", tls=TlsConfig(missing, pki["server_key"])))
    assert msg == f"cannot read TLS files (api.tls): No such file or directory: {missing}"
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    bad = [
        TlsConfig(str(not_pem), pki["server_key"]),  # not a certificate
        TlsConfig(pki["server_crt"], pki["client_key"]),  # the key of another certificate
        TlsConfig(pki["server_crt"], pki["server_key"], client_ca=str(not_pem)),
    ]
    for tls in bad:
        for grpc_addr, http_addr in (("127.0.0.1:0", ""), ("", "127.0.0.1:0")):
            msg, _ = start_error(ApiConfig(address=grpc_addr, http_address=http_addr, tls=tls))
            assert msg.startswith("cannot load TLS files (api.tls): "), (tls, grpc_addr, msg)
    # the ports given back: the shared server still answers on both
    assert api.stub().GetStatus(pb.GetStatusRequest(), timeout=TIMEOUT).epochs_kept == 3
    assert get(api, "/healthz")["status"] == "SERVING"


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_addresses(snaps):
    h = History(4, layout(CONFIG.tasks, 1))
    for s in snaps:
        h.add(s)
    cfg = ApiConfig(address="[::1]:0", http_address="[::1]:0")
    srv = ApiServer(cfg, Queries(h, {**INFO, "config": CONFIG}), h, log=io.StringIO()).start()
    try:
        with grpc.insecure_channel(f"[::1]:{srv.grpc_port}", options=CHANNEL_OPTIONS) as ch:
            r = pb_grpc.SensorStub(ch).TopKeys(pb.TopKeysRequest(task="src", limit=1), timeout=TIMEOUT)
            assert r.keys[0].key.src_ip == "10.0.0.2"
        status, _, body = http(f"http://[::1]:{srv.http_port}/v1/top?task=src&limit=1")
        assert status == 200 and body["keys"][0]["key"] == {"src_ip": "10.0.0.2"}
    finally:
        srv.stop(0)


def test_concurrent_clients_get_one_answer(start, model):
    """Many clients asking for the same new window at once (one computation,
    the others wait for it) all get the same, right answer."""
    api = start(http=False)
    stubs = [api.stub() for _ in range(4)]
    truth = model.flows(3)

    def ask(i):
        st = stubs[i % len(stubs)]
        fl = st.ListFlows(pb.ListFlowsRequest(epochs=3, page_size=10000), timeout=TIMEOUT)
        top = st.TopKeys(pb.TopKeysRequest(task="flow", epochs=2, limit=3), timeout=TIMEOUT)
        sp = st.TopSpreaders(pb.TopSpreadersRequest(task="spread_dst", epochs=3, limit=1), timeout=TIMEOUT)
        return (
            [(key5(x.key), x.packets, x.bytes) for x in fl.flows],
            [(key5(k.key), k.packets) for k in top.keys],
            [(s.key.src_ip, s.distinct, s.flows) for s in sp.spreaders],
        )

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(32)))
    assert all(a == answers[0] for a in answers)
    flows, top, spread = answers[0]
    assert {k: (p, b) for k, p, b in flows} == {k: (r.packets, r.bytes) for k, r in truth.items()}
    assert top[0] == (HEAVY.key, 1700)
    assert spread[0][0] == SCANNER and spread[0][2] == 150  # the same 150 flows every epoch


def test_a_subscriber_that_falls_behind_is_dropped(snaps):
    h = History(3, layout(CONFIG.tasks, 1))
    sub, backlog = h.subscribe("epochs", replay=True)
    assert backlog == []
    for seq in range(SUBSCRIBER_QUEUE + 1):
        h.add(new_epoch(snaps, seq))
    with pytest.raises(Subscription.Overflow):
        sub.get(0.1)
    h.unsubscribe(sub)
    sub, backlog = h.subscribe("epochs", replay=True)  # a new one starts from the kept epochs
    assert [s.seq for s in backlog] == [SUBSCRIBER_QUEUE - 2, SUBSCRIBER_QUEUE - 1, SUBSCRIBER_QUEUE]
    assert sub.get(0.01) is None
    h.close()
    with pytest.raises(Subscription.Closed):
        sub.get(0.1)


# --- publishing, warming and aggregation ------------------------------------------------


def test_publish_warms_then_shows_the_epoch(start, snaps):
    """ApiServer.publish (what the sensor calls each epoch): the epoch becomes
    visible with its rankings already computed, and answers equal cold ones."""
    a = start(epochs=[], http=False)
    for s in snaps:
        a.server.publish(s, [], [])
    assert a.server.flush()
    assert [s.seq for s in a.history.snapshots()] == [0, 1, 2]
    cached = set(a.history.answers.keys())
    for task in ("src", "flow"):
        assert ("top", task, 2, 2) in cached  # the newest epoch alone
        assert ("top", task, 0, 2) in cached  # every kept epoch
    assert ("spread", "spread_dst", 2, 2) in cached
    warm = a.stub().TopKeys(pb.TopKeysRequest(task="flow", epochs=3, limit=50), timeout=TIMEOUT)
    cold = start(http=False).stub().TopKeys(pb.TopKeysRequest(task="flow", epochs=3, limit=50), timeout=TIMEOUT)
    assert warm == cold and len(warm.keys) == 50


def lazy(snap):
    """The snapshot as the live agent makes an exact epoch: its sketch derived from its flows on first use."""
    return dataclasses.replace(snap, sketch=SketchSet.of_flows(snap.sketch.layout, snap.flows))


def test_exact_windows_leave_the_sketches_underived(api, snaps):
    """Warming and answering exact windows read only the flows: every epoch's
    lazy sketch stays underived, and the answers are those of epochs whose
    sketches exist."""
    h = History(4, layout(CONFIG.tasks, 1))
    q = Queries(h, {**INFO, "config": CONFIG})
    epochs = [lazy(s) for s in snaps]
    for s in epochs:
        q.warm(s, h.snapshots())
        h.add(s)
    assert [s.sketch.derived for s in epochs] == [False] * EPOCHS
    cached = set(h.answers.keys())
    for task in ("src", "flow"):
        assert {("top", task, 2, 2), ("top", task, 0, 2)} <= cached
    assert {("spread", t, 2, 2) for t in ("spread_dst", "fanin_src", "port_scan")} <= cached
    reqs = [("GetStatus", pb.GetStatusRequest()), ("TraceFlow", pb.TraceFlowRequest(key=pb_key(HEAVY.key)))]
    for n in (1, 2, 3):
        reqs += [
            ("TopKeys", pb.TopKeysRequest(task="src", epochs=n, limit=50)),
            ("TopKeys", pb.TopKeysRequest(task="flow", epochs=n, metric=pb.METRIC_PACKETS, limit=50)),
            ("EstimateKey", pb.EstimateKeyRequest(task="src", key=pb.Key(src_ip=SCANNER), epochs=n)),
            ("EstimateKey", pb.EstimateKeyRequest(task="flow", key=pb_key(HEAVY.key), epochs=n)),
            ("EstimateKey", pb.EstimateKeyRequest(task="fanin_src", key=pb.Key(dst_ip="10.9.9.9"), epochs=n)),
            ("TopSpreaders", pb.TopSpreadersRequest(task="spread_dst", epochs=n)),
            ("TopSpreaders", pb.TopSpreadersRequest(task="port_scan", epochs=n, limit=100)),
            ("ListFlows", pb.ListFlowsRequest(epochs=n, page_size=20)),
        ]
    for rpc, req in reqs:
        assert getattr(q, rpc)(req) == getattr(api.queries, rpc)(req), rpc
    assert [s.sketch.derived for s in epochs] == [False] * EPOCHS


def test_merge_flows_survives_hash_collisions(snaps, monkeypatch):
    """Merged flows are ordered by a 64-bit hash; when two 5-tuples share
    one, by key bytes among them, and the answer is unchanged."""
    from netspectra import snapshot

    parts = [s.flows for s in snaps]
    want = snapshot.merge_flows(parts)
    monkeypatch.setattr(snapshot, "_HASH_BITS", np.uint64(3))  # four hashes: collisions everywhere
    got = snapshot.merge_flows(parts)
    keys = np.ascontiguousarray(got["key"])
    hashes = snapshot._sketch.hash_keys(keys, snapshot._FLOW_WMASK, 0) & 3
    order = [(int(h), bytes(k)) for h, k in zip(hashes, keys.view(np.uint8).reshape(-1, 40))]
    assert order == sorted(order)  # by hash, then key bytes: one order, whatever the parts
    assert np.array_equal(snapshot.merge_flows(parts[::-1])["key"], got["key"])

    def by_key(fl):
        return sorted((bytes(f["key"].tobytes()), int(f["packets"]), int(f["bytes"]), int(f["first_ns"]),
                       int(f["last_ns"]), int(f["tcp_flags"])) for f in fl)  # fmt: skip

    assert by_key(got) == by_key(want)
    assert len(want) < sum(len(p) for p in parts)  # some flows span epochs: there was grouping to do
    assert sum(int(f["packets"]) for f in want) == sum(int(p["packets"].sum()) for p in parts)


def test_spread_with_a_precomputed_pool_is_identical(snaps):
    sk = snaps[0].sketch
    keys = snaps[0].flows["key"][:200]
    pool = sk.pool_estimate("spread_dst")
    assert np.array_equal(sk.spread("spread_dst", keys), sk.spread("spread_dst", keys, pool=pool))


def _select(obj, path: str):
    for part in path.split("."):
        obj = obj[part]
    return obj


def test_grafana_query_api_panels_read_real_answers(api):
    """Every dashboard panel on the query API: its URL (the sensor_api variable
    filled in) answers 200, and its root selector and every column exist."""
    d = json.loads((Path(__file__).parents[2] / "exporters" / "grafana" / "netspectra.json").read_text())
    targets = [t for p in d["panels"] for t in p.get("targets", ()) if "url" in t]
    assert len(targets) >= 2
    for t in targets:
        url = t["url"].replace("${sensor_api}", f"http://127.0.0.1:{api.server.http_port}")
        # the dashboard's time range, as Grafana fills it in: every kept epoch
        kept = api.history.snapshots()
        iso = "%Y-%m-%dT%H:%M:%S.000Z"
        url = url.replace("${__from:date:iso}", time.strftime(iso, time.gmtime(kept[0].start)))
        url = url.replace("${__to:date:iso}", time.strftime(iso, time.gmtime(kept[-1].end + 1)))
        status, _, body = http(url)
        assert status == 200, (url, body)
        rows = _select(body, t["root_selector"])
        assert rows, url
        for row in rows:
            for c in t["columns"]:
                v = _select(row, c["selector"])
                assert isinstance(v, int if c["type"] == "number" else str), (url, c, v)


def test_api_requests_are_exported_as_metrics(start):
    """The sensor's /metrics counts query API requests by transport, method and
    code (a token failure too), times unary requests, counts open streams and
    shows the memory it holds within api.max_memory (kept epochs, cached answers)."""
    from prometheus_client import generate_latest

    from netspectra.metrics import SensorCollector, registry_for

    a = start(token=TOKEN)
    col = SensorCollector("veth-api0", a.history.layout, 10, 1024)
    col.serving_api(a.server.stats, a.history.open_streams, [("veth-api0", a.history)])
    md = (("authorization", f"Bearer {TOKEN}"),)
    s = a.stub()
    s.TopKeys(pb.TopKeysRequest(task="src"), timeout=TIMEOUT, metadata=md)
    s.TopKeys(pb.TopKeysRequest(task="src"), timeout=TIMEOUT, metadata=md)
    rpc_error(s.TopKeys, pb.TopKeysRequest(task="nope"), metadata=md)
    rpc_error(s.GetStatus, pb.GetStatusRequest())  # no token
    assert http(a.url("/v1/tasks"), token=TOKEN)[0] == 200
    stream = s.StreamAlerts(pb.StreamAlertsRequest(), metadata=md)
    wait_for(lambda: a.history.open_streams() == 1, "the stream to open")
    text = generate_latest(registry_for(col)).decode()
    stream.cancel()

    def value(series: str) -> float:
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{series} not in\n{text}")

    req = 'netspectra_api_requests_total{code="%s",interface="veth-api0",method="%s",transport="%s"}'
    assert value(req % ("OK", "TopKeys", "grpc")) == 2
    assert value(req % ("INVALID_ARGUMENT", "TopKeys", "grpc")) == 1
    assert value(req % ("UNAUTHENTICATED", "GetStatus", "grpc")) == 1
    assert value(req % ("OK", "ListTasks", "http")) == 1
    assert value(req % ("OK", "StreamAlerts", "grpc")) == 1
    dur = 'netspectra_api_request_duration_seconds_%s{interface="veth-api0",method="TopKeys",transport="grpc"}'
    assert value(dur % "count") == 3
    assert 0 < value(dur % "sum") < 3 * TIMEOUT
    assert value('netspectra_api_streams{interface="veth-api0"}') == 1
    kept, epoch_bytes, answer_bytes = a.history.memory()
    assert value('netspectra_api_epochs_kept{interface="veth-api0"}') == kept > 0
    assert value('netspectra_api_memory_bytes{interface="veth-api0",part="epochs"}') == epoch_bytes > 0
    assert value('netspectra_api_memory_bytes{interface="veth-api0",part="answers"}') == answer_bytes > 0


def test_a_stream_client_that_does_not_read_is_dropped(start, snaps, monkeypatch):
    """A client that stops reading cannot make the sensor buffer epochs for it:
    once its feed overflows, the stream ends with RESOURCE_EXHAUSTED."""
    from netspectra.api import history

    monkeypatch.setattr(history, "SUBSCRIBER_QUEUE", 4)
    a = start(http=False, keep=4)
    stream = a.stub().StreamEpochs(pb.StreamEpochsRequest(max_keys=1000), timeout=3 * TIMEOUT)
    wait_for(lambda: a.history.open_streams() == 1, "the stream to open")
    for seq in range(EPOCHS, EPOCHS + 600):  # far more than transport buffers plus the queue hold
        a.history.add(new_epoch(snaps, seq))
    with pytest.raises(grpc.RpcError) as ei:
        for _ in stream:
            pass
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "fell too far behind" in ei.value.details()
    wait_for(lambda: a.history.open_streams() == 0, "the stream to be dropped")
