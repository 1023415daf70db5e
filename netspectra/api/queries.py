"""The answers of the query API, as protobuf messages, from a History.

Transport-free: the gRPC servicer and the HTTP/JSON endpoint both call
Queries.<method>(request) and map ApiError to their own status codes.  Every
argument problem is an ApiError naming the request field.

Work that depends only on a window of epochs (merging its sketches, ranking
its keys, aggregating and sorting its flows) is cached under the window's
epoch numbers, so 50 clients asking for the top keys cost one ranking per
epoch, and a page token stays valid as long as its epochs are kept.

Exact or estimated: a window is exact when every epoch of it had all its
packets in exact flows (EpochSnapshot.exact).  Its TopKeys, EstimateKey and
TopSpreaders answers then come from the flows (exact sums and distinct
counts, bounds 0) and never read the epochs' sketches, which for such epochs
are only derived from the flows on first use.  Other windows are answered
from the merged sketches with their error bounds.

Per sensor (a collector): a request naming a `sensor` reads that sensor's own
series in the collector's store (a StoreSource of its own per series, kept
for the next request) instead of the merged windows; a sensor accepts only
its own id there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import math
import threading
import time
from collections import OrderedDict

import numpy as np

from .. import _sketch, abi, analysis
from ..configkit import fmt_time
from ..metrics import version
from ..packets import addr_str
from ..snapshot import key_json, layout_fingerprint, merge_flows
from ..source import Scoped, StoreSource, Window
from ..tasks import COUNTMIN, SUPERSPREAD
from .history import History
from .v1 import sensor_pb2 as pb

MAX_LIMIT = 10000  # keys or flows in one answer
DEFAULT_LIMIT = 10
DEFAULT_PAGE = 100
MAX_KEYS_STREAM = 1000
SPREAD_CANDIDATES = 10000  # keys (most exact flows first) whose spread is estimated for TopSpreaders
SENSOR_SOURCES = 16  # per-sensor series (of a collector's store) whose reads and rankings are kept
SERIES_TTL_S = 10.0  # the store's list of series is asked again after this (at once for a sensor not in it)
MAX_NAMES = 20  # sensors or series listed in an error message
KEY_FIELDS = ("src_ip", "dst_ip", "src_port", "dst_port", "proto")
PORT_PROTOCOLS = (6, 17, 132)  # protocols whose flows the parser keys by port


class ApiError(Exception):
    """A request that cannot be answered: code is a grpc.StatusCode name,
    field the request field at fault ("" when none)."""

    def __init__(self, field: str, message: str, code: str = "INVALID_ARGUMENT"):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.code = code


# --- conversions ------------------------------------------------------------------


def _ts(msg, seconds: float) -> None:
    msg.FromNanoseconds(int(round(seconds * 1e9)))


def key_pb(k, names=KEY_FIELDS) -> pb.Key:
    """abi.KEY record -> Key message with the named fields set."""
    out = pb.Key()
    for name in names:
        if name == "src_ip":
            out.src_ip = addr_str(k["src"])
        elif name == "dst_ip":
            out.dst_ip = addr_str(k["dst"])
        elif name == "src_port":
            out.src_port = int(k["sport"])
        elif name == "dst_port":
            out.dst_port = int(k["dport"])
        elif name == "proto":
            out.proto = int(k["proto"])
    return out


def _shown(text: str, limit: int = 64) -> str:
    """repr() of a request string for an error message, cut short: the message
    travels in a gRPC trailer, which clients refuse beyond 8-16 KiB."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def parse_ip(text: str, field: str) -> bytes:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ApiError(field, f"{_shown(text)} is not an IP address") from None
    return (b"\x00" * 10 + b"\xff\xff" + ip.packed) if ip.version == 4 else ip.packed


def _set_fields(m: pb.Key) -> list[str]:
    return [n for n in KEY_FIELDS if m.HasField(n)]


def key_from_pb(m: pb.Key, names: tuple[str, ...], field: str, what: str) -> np.ndarray:
    """A Key message giving exactly `names` -> (1,) abi.KEY (other fields zero)."""
    given = _set_fields(m)
    for n in given:
        if n not in names:
            raise ApiError(f"{field}.{n}", f"not a field of {what} (fields: {', '.join(names)})")
    for n in names:
        if n not in given:
            raise ApiError(f"{field}.{n}", f"required by {what} (fields: {', '.join(names)})")
    k = np.zeros(1, abi.KEY)
    if "src_ip" in names:
        k["src"][0] = np.frombuffer(parse_ip(m.src_ip, f"{field}.src_ip"), np.uint8)
    if "dst_ip" in names:
        k["dst"][0] = np.frombuffer(parse_ip(m.dst_ip, f"{field}.dst_ip"), np.uint8)
    for n, col, hi in (("src_port", "sport", 65535), ("dst_port", "dport", 65535), ("proto", "proto", 255)):
        if n in names:
            v = getattr(m, n)
            if v > hi:
                raise ApiError(f"{field}.{n}", f"{v} is out of range 0..{hi}")
            k[col] = v
    return k


def _epoch_range(snaps) -> pb.EpochRange:
    """What a window read: its epochs (or rollups), their time and where from."""
    first, last = snaps[0], snaps[-1]
    r = pb.EpochRange(first=first.seq, last=last.seq, source=getattr(snaps, "label", "memory"), records=len(snaps))
    origin = getattr(first, "origin", None)
    r.interface = origin.interface if origin is not None else ""
    _ts(r.start, min(s.start for s in snaps))
    _ts(r.end, max(s.end for s in snaps))
    return r


def _from_store(call, *args):
    """A call into the store (history): its outage is the API's UNAVAILABLE."""
    from ..store import StoreError

    try:
        return call(*args)
    except StoreError as e:
        raise ApiError("", f"history unavailable: {e}", "UNAVAILABLE") from None


def flow_pb(f) -> pb.Flow:
    out = pb.Flow(
        key=key_pb(f["key"]),
        packets=int(f["packets"]),
        bytes=int(f["bytes"]),
        tcp_flags=int(f["tcp_flags"]),
        icmp_type=int(f["icmp_type"]),
        icmp_code=int(f["icmp_code"]),
    )
    out.first_seen.FromNanoseconds(int(f["first_ns"]))
    out.last_seen.FromNanoseconds(int(f["last_ns"]))
    return out


def alert_pb(ev) -> pb.Alert:
    lb = ev.labels
    out = pb.Alert(
        status=ev.status,
        rule=lb.get("rule", ""),
        severity=lb.get("severity", ""),
        task=lb.get("task", ""),
        key=ev.key,
        value=float(ev.value),
        threshold=float(ev.threshold),
        summary=ev.summary,
        description=ev.description,
        repeat=ev.repeat,
        labels={k: str(v) for k, v in lb.items()},
    )
    _ts(out.starts_at, ev.starts_at)
    if ev.ends_at is not None:
        _ts(out.ends_at, ev.ends_at)
    return out


def _counter(row) -> pb.Counter:
    return pb.Counter(packets=int(row[0]), bytes=int(row[1]))


def _limit(value: int, field: str, default: int, hi: int = MAX_LIMIT) -> int:
    if value > hi:
        raise ApiError(field, f"{value} is more than the maximum {hi}")
    return value or default


def _names(items) -> str:
    items = list(items)
    shown = ", ".join(items[:MAX_NAMES]) or "none"
    return shown + (f", ... ({len(items)} in all)" if len(items) > MAX_NAMES else "")


class SeriesSource(StoreSource):
    """One sensor's series in a collector's store, read through the store of
    the collector's own StoreSource (`base`, which may reopen it), with a
    cache of its own.  Epochs of a sensor whose tasks have other names or
    thresholds (same arrays: the collector took them) are rebound to the
    collector's layout, as the collector merges them."""

    def __init__(self, base: StoreSource, series, layout):
        super().__init__(None, series, base.retention, base.clock)
        self.base = base
        self.layout = layout
        self.cache = Scoped(base.cache, ("series", series))  # one bound for every answer

    @property
    def store(self):
        return self.base.store

    def range(self, since: float, until: float) -> Window:
        w = super().range(since, until)
        if all(s.sketch.layout == self.layout for s in w):
            return w
        from ..snapshot import rebind

        snaps = self.cache.get(("rebound", *w.key), lambda: [rebind(s, self.layout) for s in w])
        return Window(snaps, self, w.key, w.label)


# --- flows ----------------------------------------------------------------------------


_VOID = np.dtype((np.void, abi.KEY.itemsize))
_ALL_FIELDS_WMASK = abi.field_wmask(0x1F)


def _exact(snaps: list) -> bool:
    """Every epoch of the window had all its packets in exact flows."""
    return all(s.exact for s in snaps)


def _key_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A lookup index of distinct keys: their 64-bit hashes, sorted, and that
    order (sorting hashes is several times faster than sorting 40-byte keys)."""
    h = _sketch.hash_keys(np.ascontiguousarray(keys), _ALL_FIELDS_WMASK, 0)
    order = np.argsort(h)
    return h[order], order


def _position(keys: np.ndarray, index: tuple, want: np.ndarray) -> int | None:
    """Where the key want ((1,) abi.KEY) is in keys, through _key_index(keys);
    None when absent.  Equal hashes are checked against the key bytes."""
    h, order = index
    wh = _sketch.hash_keys(want, _ALL_FIELDS_WMASK, 0)[0]
    raw = want[0].tobytes()
    for i in order[np.searchsorted(h, wh, "left") : np.searchsorted(h, wh, "right")]:
        if keys[i].tobytes() == raw:
            return int(i)
    return None


def _order(keys: np.ndarray, *cols, descending: bool = True, limit: int | None = None) -> np.ndarray:
    """Indices sorting rows by cols (the first decides, the next break ties)
    and then by key bytes: one order whatever order the rows came in, so a
    window answers the same from epochs or from their rollups.  limit: only
    the first `limit` of that order, found without sorting every row (the
    rows tied with the last one kept are all sorted, so the cut is exact)."""
    idx = None
    first = np.asarray(cols[0])
    if limit is not None and len(first) > 2 * limit:
        kth = (
            np.partition(first, len(first) - limit)[len(first) - limit]
            if descending
            else np.partition(first, limit - 1)[limit - 1]
        )
        idx = np.flatnonzero(first >= kth if descending else first <= kth)
        keys, cols = keys[idx], tuple(np.asarray(c)[idx] for c in cols)
    raw = np.ascontiguousarray(keys).view(_VOID).reshape(-1)
    rank = np.empty(len(raw), np.int64)
    rank[np.argsort(raw, kind="stable")] = np.arange(len(raw))
    if descending:  # largest first, ties by ascending key
        order = np.lexsort((-rank, *cols[::-1]))[::-1]
    else:
        order = np.lexsort((rank, *cols[::-1]))
    order = order if limit is None else order[:limit]
    return order if idx is None else idx[order]


def _count_of(keys: np.ndarray, counts: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """counts[i] of keys[i] == wanted[j] for each wanted key (0 when absent)."""
    out = np.zeros(len(wanted), np.uint64)
    if not len(keys) or not len(wanted):
        return out
    raw = np.ascontiguousarray(keys).view(_VOID).reshape(-1)
    order = np.argsort(raw)
    raw = raw[order]
    w = np.ascontiguousarray(wanted).view(_VOID).reshape(-1)
    i = np.minimum(np.searchsorted(raw, w), len(raw) - 1)
    hit = raw[i] == w
    out[hit] = counts[order[i[hit]]]
    return out


def _cidr(text: str, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(net, mask) as 16 bytes each for an IP or CIDR prefix in key form."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ApiError(field, f"{_shown(text)} is not an IP address or CIDR prefix (e.g. 10.0.0.0/8)") from None
    prefix = net.prefixlen + (96 if net.version == 4 else 0)
    packed = (
        (b"\x00" * 10 + b"\xff\xff" + net.network_address.packed) if net.version == 4 else net.network_address.packed
    )
    bits = np.unpackbits(np.frombuffer(packed, np.uint8))
    mask_bits = np.zeros(128, np.uint8)
    mask_bits[:prefix] = 1
    return np.packbits(bits & mask_bits), np.packbits(mask_bits)


def _in_cidr(addrs: np.ndarray, net_mask) -> np.ndarray:
    net, mask = net_mask
    return ((addrs & mask) == net).all(axis=1)


def _port_range(r: pb.PortRange, field: str) -> tuple[int, int]:
    lo, hi = r.lo, r.hi or r.lo
    if lo > 65535 or hi > 65535:
        raise ApiError(field, f"{max(lo, hi)} is out of range 0..65535")
    if hi < lo:
        raise ApiError(field, f"empty range {lo}-{hi} (hi below lo)")
    return lo, hi


def filter_flows(flows: np.ndarray, f: pb.FlowFilter) -> np.ndarray:
    """Indices of the flows matching every set field of the filter."""
    keep = np.ones(len(flows), bool)
    keys = flows["key"]
    for name, cols in (("src", ("src",)), ("dst", ("dst",)), ("host", ("src", "dst"))):
        text = getattr(f, name)
        if text:
            nm = _cidr(text, f"filter.{name}")
            hit = np.zeros(len(flows), bool)
            for c in cols:
                hit |= _in_cidr(keys[c], nm)
            keep &= hit
    for name, cols in (("src_port", ("sport",)), ("dst_port", ("dport",)), ("port", ("sport", "dport"))):
        if f.HasField(name):
            lo, hi = _port_range(getattr(f, name), f"filter.{name}")
            hit = np.zeros(len(flows), bool)
            for c in cols:
                hit |= (keys[c] >= lo) & (keys[c] <= hi)
            keep &= hit
    if f.HasField("proto"):
        if f.proto > 255:
            raise ApiError("filter.proto", f"{f.proto} is out of range 0..255")
        keep &= keys["proto"] == f.proto
    return np.flatnonzero(keep)


_ORDER_COLUMN = {
    pb.FLOW_ORDER_UNSPECIFIED: "bytes",
    pb.FLOW_ORDER_BYTES: "bytes",
    pb.FLOW_ORDER_PACKETS: "packets",
    pb.FLOW_ORDER_FIRST_SEEN: "first_ns",
    pb.FLOW_ORDER_LAST_SEEN: "last_ns",
}


def _encode_token(d: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(d, separators=(",", ":")).encode()).decode().rstrip("=")


MAX_TOKEN = 1024  # characters; the tokens we hand out are a few dozen


def _decode_token(token: str) -> dict:
    try:
        if len(token) > MAX_TOKEN:
            raise ValueError
        d = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(d, dict) or not all(isinstance(d.get(k), int) for k in ("first", "last", "offset")):
            raise ValueError
        if d["offset"] < 0:
            raise ValueError
        return d
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):  # deeply nested JSON
        raise ApiError("page_token", "malformed (pass next_page_token of the previous answer unchanged)") from None


# --- the queries ------------------------------------------------------------------------


class Queries:
    """Every RPC of the Sensor service, over the epochs a History keeps and,
    for time ranges it does not hold, a StoreSource (None: history is off).
    `info` is what the sensor knows statically: interface, ifindex,
    xdp_mode, pid, started, epoch_s, kernel_memory (dict), config (a Config)
    and history (a callable returning the store's delivery counters); a
    collector adds collector (its id): its store also holds every sensor's
    own series, which requests naming a `sensor` read."""

    def __init__(self, history: History, info: dict, store=None, clock=time.time):
        self.h = history
        self.info = info
        self.layout = history.layout
        self.store = store
        if store is not None:  # its answers count against the history's budget (api.max_memory) too
            store.cache = history.answers.scoped("store")
        self.clock = clock
        # warm() also ranks the window of every kept epoch; a collector, whose
        # merged windows hold every sensor's flows, ranks that on demand instead
        self.warm_union = True
        self._lock = threading.Lock()
        self._sources: OrderedDict = OrderedDict()  # Series -> SeriesSource (LRU)
        self._series: tuple[float, list] | None = None  # (when listed, the store's Series)

    # --- helpers

    def _cached(self, snaps, key: tuple, compute):
        """compute() once per window: keys name the epochs (or store records) read."""
        return snaps.source.cached((*key, *snaps.key), compute)

    def _select(self, req, last: int | None = None):
        """The window of a request: its range if it has one, else its last N epochs."""
        src = self._sensor(req)
        if req.HasField("range"):
            if req.epochs:
                raise ApiError("epochs", "give epochs or a range, not both")
            return self._range(req.range, source=src)
        return self._window(req.epochs, last=last)

    # --- one sensor's epochs (a collector)

    def _own_id(self) -> str:
        return self.info.get("collector") or self.info["config"].sensor.sensor_id

    def _sensor(self, req) -> StoreSource | None:
        """The source of a request's `sensor`: None for the answers of this
        sensor or collector itself (no sensor, or its own id), else (a
        collector) the series of that sensor in its store."""
        name = req.sensor
        if not name:
            return None
        own = self._own_id()
        if name in (own, f"{own}/{self.info.get('interface', '')}"):
            return None
        if not self.info.get("collector"):
            raise ApiError("sensor", f"this is sensor {own!r}; ask a collector for other sensors")
        if name.startswith("/"):  # `netspectra query --interface` alone asks for an interface of a sensor
            raise ApiError("sensor", f"{_shown(name)}: this is a collector; name the sensor too (--sensor ID)")
        if not req.HasField("range"):
            raise ApiError("sensor", "needs a range (since/until): a sensor's own epochs are read from the store")
        if self.store is None:
            raise ApiError(
                "sensor",
                "the collector keeps the sensors' own epochs only in its store, and its history is off (store.url: off)",
                "FAILED_PRECONDITION",
            )
        series = self._series_of(name)
        with self._lock:
            src = self._sources.get(series)
            if src is None:
                src = self._sources[series] = SeriesSource(self.store, series, self.layout)
                while len(self._sources) > SENSOR_SOURCES:
                    self._sources.popitem(last=False)
            self._sources.move_to_end(series)
        return src

    def _store_series(self, fresh: bool) -> list:
        """The series of the store (listed again after SERIES_TTL_S, or when fresh)."""
        now = time.monotonic()
        with self._lock:
            got = self._series
        if got is not None and not fresh and now - got[0] < SERIES_TTL_S:
            return got[1]
        series = [i.series for i in _from_store(lambda: self.store.store.series())]
        with self._lock:
            self._series = (now, series)
        return series

    def _series_of(self, name: str):
        """The one series of `name` ("sensor" or "sensor/interface") with this
        collector's sketch layout."""
        sensor, sep, iface = name.partition("/")
        if not sensor or (sep and not iface):
            raise ApiError("sensor", f"{_shown(name)} is not a sensor id or sensor/interface")
        fp = layout_fingerprint(self.layout)
        own = self._own_id()
        for fresh in (False, True):  # a sensor not in the list kept may have come since
            every = self._store_series(fresh)
            mine = [s for s in every if s.sensor == sensor and (not sep or s.interface == iface)]
            if mine:
                break
        if not mine:
            sensors = sorted({s.sensor for s in every if s.layout == fp and s.sensor != own})
            raise ApiError(
                "sensor",
                f"no epochs of sensor {_shown(name)} in the collector's store (sensors: {_names(sensors)})",
                "NOT_FOUND",
            )
        fit = [s for s in mine if s.layout == fp]
        if not fit:
            raise ApiError(
                "sensor",
                f"the epochs of {_shown(name)} in the collector's store have another sketch layout "
                f"({_names(str(s) for s in mine)}) than the collector's ({fp})",
                "NOT_FOUND",
            )
        if len(fit) > 1:
            raise ApiError(
                "sensor",
                f"sensor {_shown(sensor)} has several series in the collector's store; "
                f"give one as sensor/interface: {_names(f'{s.sensor}/{s.interface}' for s in fit)}",
            )
        return fit[0]

    def _range_bounds(self, r: pb.TimeRange) -> tuple[float, float]:
        now = self.clock()
        if not r.HasField("since"):
            raise ApiError("range.since", "required (the start of the range)")
        since = r.since.ToNanoseconds() / 1e9
        until = r.until.ToNanoseconds() / 1e9 if r.HasField("until") else math.inf
        if until <= since:
            raise ApiError("range.until", f"{fmt_time(until)} is not after range.since {fmt_time(since)}")
        if since > now:
            raise ApiError("range.since", f"{fmt_time(since)} is in the future (now {fmt_time(now)})")
        return since, until

    def _range(self, r: pb.TimeRange, empty_ok: bool = False, source: StoreSource | None = None):
        """The epochs starting in the range: from memory when it holds them
        all, else from the store; from `source` alone when given (one
        sensor's series)."""
        since, until = self._range_bounds(r)
        w = None if source is not None else self.h.range(since, until, complete=self.store is not None)
        if w is None:
            if self.store is None:
                kept = self.h.snapshots()
                if not kept:
                    raise ApiError("", "no epoch has completed yet; try again after the first epoch", "UNAVAILABLE")
                oldest = kept[0].start
                note = getattr(self.h, "cut_note", lambda: "")()
                cut = f"; {note}" if note else ""
                if self.info.get("merged"):
                    raise ApiError(
                        "range.since",
                        f"{fmt_time(since)} is before the oldest epoch kept ({fmt_time(oldest)}; api.keep_epochs = "
                        f"{self.h.keep}{cut}): the merged epochs of every interface are kept in memory only; ask one "
                        f"interface for its history (sensor: /{self.info['interfaces'][0]})",
                        "OUT_OF_RANGE",
                    )
                raise ApiError(
                    "range.since",
                    f"{fmt_time(since)} is before the oldest epoch kept ({fmt_time(oldest)}; api.keep_epochs = "
                    f"{self.h.keep}{cut}) and history is off (store.url: off)",
                    "OUT_OF_RANGE",
                )
            w = _from_store((source or self.store).range, since, until)
        if not w and not empty_ok:
            end = "now" if math.isinf(until) else fmt_time(until)
            of = f" of sensor {source.series.sensor}/{source.series.interface}" if source is not None else ""
            raise ApiError("range", f"no epoch{of} was recorded from {fmt_time(since)} to {end}", "NOT_FOUND")
        return w

    def _window(self, epochs: int, field: str = "epochs", last: int | None = None) -> list:
        if epochs > self.h.keep:
            raise ApiError(field, f"{epochs} is more than the epochs kept ({self.h.keep}, api.keep_epochs)")
        snaps = self.h.window(epochs or 1, last)
        if not snaps:
            if last is not None:
                raise ApiError("page_token", f"expired: epoch {last} is no longer kept; ask again without page_token")
            raise ApiError("", "no epoch has completed yet; try again after the first epoch", "UNAVAILABLE")
        return snaps

    def _task(self, name: str, kind: str | None, rpc: str):
        if not name:
            raise ApiError("task", f"required (tasks: {', '.join(t.spec.name for t in self.layout.tasks)})")
        try:
            t = self.layout.by_name(name)
        except KeyError:
            raise ApiError(
                "task", f"no task named {_shown(name)} (tasks: {', '.join(t.spec.name for t in self.layout.tasks)})"
            ) from None
        if kind and t.spec.kind != kind:
            fit = [x.spec.name for x in self.layout.kind(kind)]
            raise ApiError(
                "task", f"{name!r} is a {t.spec.kind} task; {rpc} needs a {kind} task ({', '.join(fit) or 'none'})"
            )
        return t

    def _sketch(self, snaps: list):
        if len(snaps) == 1:
            return snaps[0].sketch

        def merge():
            sk = snaps[0].sketch.copy()
            for s in snaps[1:]:
                sk.merge(s.sketch)
            return sk

        return self._cached(snaps, ("sketch",), merge)

    def _flows(self, snaps: list) -> np.ndarray:
        if len(snaps) == 1:
            return snaps[0].flows
        return self._cached(snaps, ("flows",), lambda: merge_flows([s.flows for s in snaps]))

    def _heavy_keys(self, snaps: list, task: str | None = None) -> np.ndarray:
        parts = [hh.keys for s in snaps for name, hh in s.heavy.items() if task in (None, name)]
        return np.concatenate(parts) if parts else np.zeros(0, abi.KEY)

    # --- status and tasks

    def GetStatus(self, req: pb.GetStatusRequest) -> pb.Status:
        src = self._sensor(req)  # argument errors before any work
        info, cfg = self.info, self.info["config"]
        mem = info.get("kernel_memory", {})
        completed, cum = self.h.since_start()
        out = pb.Status(
            version=version(),
            interface=info.get("interface", ""),
            interfaces=info.get("interfaces", [info["interface"]] if info.get("interface") else []),
            ifindex=info.get("ifindex", 0),
            xdp_mode=info.get("xdp_mode", ""),
            pid=info.get("pid", 0),
            epochs_completed=completed,
            epochs_kept=len(self.h.snapshots()),
            keep_epochs=self.h.keep,
            kernel_memory={k: int(v) for k, v in mem.items()},
            kernel_memory_total=int(sum(mem.values())),
            flow_untracked=_counter(cum[abi.C["flow_untracked"]]),
            candidates_lost=int(cum[abi.C["cand_lost"], 0]),
            total=_counter(cum[abi.C["all"]]),
            counters={name: _counter(row) for name, row in zip(abi.COUNTERS, cum)},
            config=pb.ConfigSummary(
                source=cfg.source,
                flow_capacity=cfg.sensor.flow_capacity,
                ringbuf_pages=cfg.sensor.ringbuf_pages,
                timestamps=cfg.sensor.timestamps,
                top=cfg.sensor.top,
                tasks=len(cfg.tasks),
                alert_rules=len(cfg.alerts.rules),
                metrics_address=cfg.sensor.metrics_address,
                tls=cfg.api.tls is not None,
                client_auth=bool(cfg.api.tls and cfg.api.tls.client_ca),
                token_auth=bool(cfg.api.token),
            ),
        )
        _ts(out.started, info.get("started", time.time()))
        out.epoch_length.FromNanoseconds(int(info.get("epoch_s", cfg.sensor.epoch_s) * 1e9))
        latest = self.h.latest()
        if latest is not None:
            out.latest.CopyFrom(self.summary(latest))
        hist = info.get("history")
        if hist is not None:
            h = hist()
            oldest = h.pop("oldest", None)
            out.history.CopyFrom(pb.HistoryStatus(**h))
            if oldest is not None:
                _ts(out.history.oldest, oldest)
        if req.HasField("range"):
            out.range.CopyFrom(self._range_totals(req.range, src))
        return out

    def _range_totals(self, r: pb.TimeRange, source: StoreSource | None = None) -> pb.RangeTotals:
        """Totals of a range: the kept epochs', or the store's (without reading
        flows); `source`'s alone when given (one sensor's series)."""
        since, until = self._range_bounds(r)
        w = None if source is not None else self.h.range(since, until, complete=self.store is not None)
        out = pb.RangeTotals()
        if w is None and (source or self.store) is None:  # history off: OUT_OF_RANGE, or what came meanwhile
            w = self._range(r, empty_ok=True)
        if w is not None:
            tot = sum((s.totals.astype(np.uint64) for s in w), np.zeros((abi.NCOUNTERS, 2), np.uint64))
            if w:
                out.epochs.CopyFrom(_epoch_range(w))
        else:
            t = _from_store((source or self.store).totals, since, until)
            tot = t.totals
            if t.records:
                out.epochs.source, out.epochs.records = "store", t.records
                _ts(out.epochs.start, t.start)
                _ts(out.epochs.end, t.end)
        out.total.CopyFrom(_counter(tot[abi.C["all"]]))
        out.flow_untracked.CopyFrom(_counter(tot[abi.C["flow_untracked"]]))
        for name, row in zip(abi.COUNTERS, tot):
            out.counters[name].CopyFrom(_counter(row))
        return out

    def ListTasks(self, req: pb.ListTasksRequest) -> pb.ListTasksResponse:
        out = pb.ListTasksResponse()
        for t in self.layout.tasks:
            s = t.spec
            cm = s.kind == COUNTMIN
            out.tasks.add(
                name=s.name,
                kind=s.kind,
                key=list(s.key),
                element=list(s.element),
                depth=s.depth if cm else 1,
                width=s.width,
                heavy_hitter_packets=s.hh_packets if cm else 0,
                heavy_hitter_bytes=s.hh_bytes if cm else 0,
                spreader_threshold=0 if cm else s.spread_threshold,
                registers_per_key=0 if cm else s.registers,
            )
        return out

    # --- sketches, or the flows where they are exact

    def _epoch_sums(self, snap, fields: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """An epoch's flows grouped by `fields`: (keys, packets, bytes, flows
        per key), exact.  The epoch's own groupings (EpochSnapshot.groups:
        derive() made those of its tasks already), so exact answers, the
        Count-Min keys to estimate and the spreader candidates share them."""
        keys, _, pk, by, n = snap.groups.by(fields)
        return keys, pk, by, n

    def _epoch_position(self, src, snap, fields: int, key: np.ndarray) -> int | None:
        """Where a key masked to `fields` is in _epoch_sums(snap, fields); None when absent."""
        keys = self._epoch_sums(snap, fields)[0]
        index = src.per_epoch(snap, ("index", fields), lambda: _key_index(keys))
        return _position(keys, index, key)

    def _exact_sums(self, fields: int, snaps: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, packets, bytes): the exact sums per key masked to `fields` of
        an exact window's flows; several epochs' sums are grouped once more."""
        parts = [self._epoch_sums(s, fields) for s in snaps]
        if len(parts) == 1:
            return parts[0][:3]
        keys, _, pk, by, _ = _sketch.group_keys(
            np.concatenate([p[0] for p in parts]),
            abi.field_wmask(fields),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )
        return keys, pk, by

    def _exact_spread(self, t, snaps: list) -> dict:
        """A SuperSpread task's keys in an exact window's flows (one record per
        5-tuple): exact distinct elements and flows per key, and a lookup
        index.  Tasks with the same key and element fields share it."""
        kf, ef = t.spec.fields, t.spec.elem_fields

        def compute():
            flows = self._flows(snaps)
            keys, key_of, _, _, nflows = _sketch.group_keys(flows, abi.field_wmask(kf))
            pairs, pair_of = _sketch.group_keys(flows, abi.field_wmask(kf | ef))[:2]
            # any one flow of each distinct (key, element) pair gives the pair's key
            flow_of_pair = np.empty(len(pairs), np.int64)
            flow_of_pair[pair_of] = np.arange(len(flows))
            distinct = np.bincount(key_of[flow_of_pair], minlength=len(keys))
            return {"keys": keys, "distinct": distinct, "flows": nflows, "index": _key_index(keys)}

        return self._cached(snaps, ("distinct", kf, ef), compute)

    def _ranked(self, t, snaps: list) -> dict:
        """Every key of a Count-Min task seen in the window, ranked both ways.
        Exact window: the exact sums of its flows.  Otherwise merged
        estimates of the exact flows' keys masked to the task's key, plus
        heavy-hitter candidates (which also cover untracked flows)."""
        name = t.spec.name

        def rank():
            if _exact(snaps):
                keys, pk, by = self._exact_sums(t.spec.fields, snaps)
            else:
                sk = self._sketch(snaps)
                pool = [self._epoch_sums(s, t.spec.fields)[0] for s in snaps if len(s.flows)]
                heavy = self._heavy_keys(snaps, name)
                if len(pool) == 1 and not len(heavy):
                    keys = pool[0]  # one epoch's keys: already distinct
                else:
                    keys = analysis.unique_keys(np.concatenate([*pool, heavy]))
                pk, by = sk.query(name, keys) if len(keys) else (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
            by_bytes = _order(keys, by, pk, limit=MAX_LIMIT)
            by_packets = _order(keys, pk, by, limit=MAX_LIMIT)
            kept = np.union1d(by_bytes, by_packets)  # cache only what an answer can show
            return {
                "keys": keys[kept],
                "packets": pk[kept],
                "bytes": by[kept],
                pb.METRIC_BYTES: np.searchsorted(kept, by_bytes),
                pb.METRIC_PACKETS: np.searchsorted(kept, by_packets),
            }

        return self._cached(snaps, ("top", name), rank)

    def _bounds(self, t, snaps: list) -> dict:
        """Per window and task: Count-Min error bounds, or the SuperSpread pool
        estimate.  Zeros for an exact window, whose sketches stay untouched."""
        name = t.spec.name
        if _exact(snaps):
            return {"packets": 0.0, "bytes": 0.0} if t.spec.kind == COUNTMIN else {"pool": 0.0}

        def compute():
            sk = self._sketch(snaps)
            if t.spec.kind == COUNTMIN:
                return {"packets": sk.error_bound(name), "bytes": sk.error_bound(name, bytes=True)}
            return {"pool": sk.pool_estimate(name)}

        return self._cached(snaps, ("bounds", name), compute)

    def TopKeys(self, req: pb.TopKeysRequest) -> pb.TopKeysResponse:
        t = self._task(req.task, COUNTMIN, "TopKeys")
        if req.metric not in (pb.METRIC_UNSPECIFIED, pb.METRIC_BYTES, pb.METRIC_PACKETS):
            raise ApiError("metric", f"unknown value {req.metric}")
        limit = _limit(req.limit, "limit", DEFAULT_LIMIT)
        snaps = self._select(req)
        metric = req.metric or pb.METRIC_BYTES
        exact = _exact(snaps)
        r = self._ranked(t, snaps)
        b = self._bounds(t, snaps)
        out = pb.TopKeysResponse(
            task=t.spec.name,
            metric=metric,
            epochs=_epoch_range(snaps),
            packets_error_bound=b["packets"],
            bytes_error_bound=b["bytes"],
            confidence=1.0 if exact else 1 - math.exp(-t.spec.depth),
            exact=exact,
        )
        for i in r[metric][:limit]:
            out.keys.add(key=key_pb(r["keys"][i], t.spec.key), packets=int(r["packets"][i]), bytes=int(r["bytes"][i]))
        return out

    def EstimateKey(self, req: pb.EstimateKeyRequest) -> pb.EstimateKeyResponse:
        t = self._task(req.task, None, "EstimateKey")
        key = key_from_pb(req.key, t.spec.key, "key", f"task {t.spec.name!r}")
        snaps = self._select(req)
        name = t.spec.name
        exact = _exact(snaps)
        out = pb.EstimateKeyResponse(
            task=name, kind=t.spec.kind, key=key_pb(key[0], t.spec.key), epochs=_epoch_range(snaps), exact=exact
        )
        if t.spec.kind == COUNTMIN and exact:  # the key's sums in each epoch (0 where absent)
            for s in snaps:
                i = self._epoch_position(snaps.source, s, t.spec.fields, key)
                if i is not None:
                    _, pk, by, _ = self._epoch_sums(s, t.spec.fields)
                    out.packets += int(pk[i])
                    out.bytes += int(by[i])
            out.confidence = 1.0
        elif t.spec.kind == COUNTMIN:
            pk, by = self._sketch(snaps).query(name, key)
            out.packets, out.bytes = int(pk[0]), int(by[0])
            b = self._bounds(t, snaps)
            out.packets_error_bound, out.bytes_error_bound = b["packets"], b["bytes"]
            out.confidence = 1 - math.exp(-t.spec.depth)
        elif exact:
            x = self._exact_spread(t, snaps)
            i = _position(x["keys"], x["index"], key)
            out.distinct = 0.0 if i is None else float(x["distinct"][i])
        else:
            out.distinct = float(self._sketch(snaps).spread(name, key, pool=self._bounds(t, snaps)["pool"])[0])
            out.relative_error = 1.04 / math.sqrt(t.spec.registers)
        return out

    def _spread_ranked(self, t, snaps: list) -> dict:
        name = t.spec.name

        def from_flows():  # every key of the flows: most distinct elements first, then most flows
            x = self._exact_spread(t, snaps)
            order = _order(x["keys"], x["distinct"], x["flows"], limit=MAX_LIMIT)
            return {"keys": x["keys"][order], "distinct": x["distinct"][order], "flows": x["flows"][order]}

        def from_sketch():
            sk = self._sketch(snaps)
            if len(snaps) == 1:
                keys, _, _, nflows = self._epoch_sums(snaps[0], t.spec.fields)
            else:  # distinct 5-tuples of the window per key
                keys, _, _, _, nflows = _sketch.group_keys(self._flows(snaps), abi.field_wmask(t.spec.fields))
            top = _order(keys, nflows, limit=SPREAD_CANDIDATES)
            extra = [s.spreaders[name][0] for s in snaps if name in s.spreaders]
            # heavy hitters of the Count-Min tasks keyed on (at least) this task's fields; masking
            # another task's keys would invent keys (src_ip keys -> dst_ip ::)
            fields = t.spec.fields
            hh = [
                self._heavy_keys(snaps, x.spec.name)
                for x in self.layout.kind(COUNTMIN)
                if x.spec.fields & fields == fields
            ]
            extra += [analysis.mask_keys(k, fields) for k in hh]
            cand = analysis.unique_keys(np.concatenate([keys[top], *extra]))
            est = sk.spread(name, cand, pool=self._bounds(t, snaps)["pool"]) if len(cand) else np.zeros(0)
            order = _order(cand, est, limit=MAX_LIMIT)
            cand, est = cand[order], est[order]
            # exact flow counts of the ranked keys (0 for keys only candidates saw)
            return {"keys": cand, "distinct": est, "flows": _count_of(keys, nflows, cand)}

        rank = from_flows if _exact(snaps) else from_sketch
        return self._cached(snaps, ("spread", name), rank)

    def TopSpreaders(self, req: pb.TopSpreadersRequest) -> pb.TopSpreadersResponse:
        t = self._task(req.task, SUPERSPREAD, "TopSpreaders")
        limit = _limit(req.limit, "limit", DEFAULT_LIMIT)
        snaps = self._select(req)
        exact = _exact(snaps)
        r = self._spread_ranked(t, snaps)
        out = pb.TopSpreadersResponse(
            task=t.spec.name,
            epochs=_epoch_range(snaps),
            relative_error=0.0 if exact else 1.04 / math.sqrt(t.spec.registers),
            exact=exact,
        )
        for k, d, n in zip(r["keys"][:limit], r["distinct"][:limit], r["flows"][:limit]):
            out.spreaders.add(key=key_pb(k, t.spec.key), distinct=round(float(d), 1), flows=int(n))
        return out

    # --- flows

    def ListFlows(self, req: pb.ListFlowsRequest) -> pb.ListFlowsResponse:
        size = _limit(req.page_size, "page_size", DEFAULT_PAGE)
        if req.order_by not in _ORDER_COLUMN:
            raise ApiError("order_by", f"unknown value {req.order_by}")
        # a page token is bound to its filter, order and window, and pins the window's epochs
        # (a range's open end is pinned too: the time of the first page)
        src = self._sensor(req)
        fp_src = (
            req.filter.SerializeToString(deterministic=True)
            + f"|{req.order_by}|{req.ascending}|{req.epochs}|".encode()
            + req.range.SerializeToString(deterministic=True)
            + (f"|{src.series}".encode() if src is not None else b"")
            # a sensor on several interfaces: a token of one interface is not another's
            + (f"|{self.info['interface']}".encode() if self.info.get("interfaces") else b"")
        )
        fp = hashlib.sha256(fp_src).hexdigest()[:16]
        first, last, offset, until = None, None, 0, None
        if req.page_token:
            tok = _decode_token(req.page_token)
            if tok.get("fp") != fp:
                raise ApiError(
                    "page_token",
                    "was made for a different filter, order, epochs, range or sensor; ask again without it",
                )
            first, last, offset, until = tok["first"], tok["last"], tok["offset"], tok.get("until")
        filter_flows(np.zeros(0, analysis.FLOW_RECORD), req.filter)  # argument errors before any work
        if req.HasField("range"):
            if req.epochs:
                raise ApiError("epochs", "give epochs or a range, not both")
            r = pb.TimeRange()
            r.CopyFrom(req.range)
            if until is None and not r.HasField("until"):
                until = int(self.clock() * 1e9)
            if until is not None:
                r.until.FromNanoseconds(int(until))
            snaps = self._range(r, source=src)
            first = last = 0
        else:
            snaps = self._window(req.epochs, last=last)
            if first is not None and snaps[0].seq != first:  # the window lost its oldest epoch: not the same flows
                raise ApiError("page_token", f"expired: epoch {first} is no longer kept; ask again without page_token")
            first, last = snaps[0].seq, snaps[-1].seq
        flows = self._flows(snaps)

        def select():
            idx = filter_flows(flows, req.filter)
            sub = flows[idx]
            return idx[_order(sub["key"], sub[_ORDER_COLUMN[req.order_by]], descending=not req.ascending)]

        sel = self._cached(snaps, ("flowsel", fp), select)
        page = sel[offset : offset + size]
        out = pb.ListFlowsResponse(total=len(sel), epochs=_epoch_range(snaps))
        unt = sum(s.totals[abi.C["flow_untracked"]].astype(np.uint64) for s in snaps)
        out.untracked.CopyFrom(_counter(unt))
        for i in page:
            out.flows.append(flow_pb(flows[i]))
        if offset + size < len(sel):
            tok = {"first": first, "last": last, "offset": offset + size, "fp": fp}
            out.next_page_token = _encode_token(tok | ({"until": until} if until is not None else {}))
        return out

    def TraceFlow(self, req: pb.TraceFlowRequest) -> pb.TraceFlowResponse:
        m = pb.Key()
        m.CopyFrom(req.key)
        if m.HasField("proto") and m.proto not in PORT_PROTOCOLS:  # ICMP and the like: no ports, 0 in the key
            for n in ("src_port", "dst_port"):
                if not m.HasField(n):
                    setattr(m, n, 0)
        key = key_from_pb(m, KEY_FIELDS, "key", "a flow (src_ip, dst_ip, proto, and ports for TCP/UDP/SCTP)")
        src = self._sensor(req)
        if req.HasField("range"):
            snaps = self._range(req.range, source=src)
        else:
            snaps = self.h.window(self.h.keep)
            if not snaps:
                raise ApiError("", "no epoch has completed yet; try again after the first epoch", "UNAVAILABLE")
        out = pb.TraceFlowResponse(key=key_pb(key[0]), range=_epoch_range(snaps))
        tp = tb = 0
        for s in snaps:
            fe = out.epochs.add(epoch=s.seq)
            _ts(fe.start, s.start)
            _ts(fe.end, s.end)
            i = self._epoch_position(snaps.source, s, 0x1F, key)
            if i is not None:
                hit = s.flows[i]
                fe.flow.CopyFrom(flow_pb(hit))
                tp += int(hit["packets"])
                tb += int(hit["bytes"])
        out.total.packets, out.total.bytes = tp, tb
        return out

    # --- warming

    def warm(self, snap, kept: list) -> None:
        """Before a new epoch becomes visible, compute what most queries of it
        need: for the window of the new epoch alone and the window of every
        kept epoch with it, each task's ranking and bounds (and the new
        epoch's spreader ranking).  Queries then find them cached instead of
        waiting on the first asker.  kept: the epochs kept before `snap`.
        Exact windows get exact rankings; their sketches stay underived."""
        windows = [self.h._window([snap])]
        if self.h.keep > 1 and kept and self.warm_union:
            windows.append(self.h._window([*kept, snap][-self.h.keep :]))
        for w in windows:
            for t in self.layout.tasks:
                self._bounds(t, w)
                if t.spec.kind == COUNTMIN:
                    self._ranked(t, w)
        for t in self.layout.kind(SUPERSPREAD):
            self._spread_ranked(t, windows[0])

    # --- epoch summaries and streams

    def summary(self, snap, max_keys: int = DEFAULT_LIMIT) -> pb.EpochSummary:
        out = pb.EpochSummary(
            epoch=snap.seq,
            total=_counter(snap.totals[abi.C["all"]]),
            counters={name: _counter(row) for name, row in zip(abi.COUNTERS, snap.totals)},
            flows=len(snap.flows),
            flow_untracked=_counter(snap.totals[abi.C["flow_untracked"]]),
            candidates=snap.candidates,
            candidates_lost=int(snap.totals[abi.C["cand_lost"], 0]),
            exact=snap.exact,
            interface=snap.origin.interface,
        )
        _ts(out.start, snap.start)
        _ts(out.end, snap.end)
        out.processing.FromNanoseconds(int(snap.processing_s * 1e9))
        for t in self.layout.tasks:
            name = t.spec.name
            tk = out.tasks[name]
            if name in snap.heavy:
                hh = snap.heavy[name]
                for k, p, b in zip(hh.keys[:max_keys], hh.packets[:max_keys], hh.bytes[:max_keys]):
                    tk.heavy_hitters.add(key=key_pb(k, t.spec.key), packets=int(p), bytes=int(b))
            if name in snap.spreaders:
                ks, es = snap.spreaders[name]
                for k, e in zip(ks[:max_keys], es[:max_keys]):
                    tk.spreaders.add(key=key_pb(k, t.spec.key), distinct=round(float(e), 1))
        return out

    def stream_max_keys(self, value: int) -> int:
        return _limit(value, "max_keys", DEFAULT_LIMIT, MAX_KEYS_STREAM)


class Interfaces:
    """The query API of a sensor on several interfaces: each interface's
    Queries over its own epochs, and `merged`, Queries over the epochs of
    every interface merged (snapshot.merge of the epochs of one epoch time).
    A request names one interface in its `sensor` field, as a collector is
    asked for one sensor's series: "<sensor id>/<interface>", or
    "/<interface>" (this sensor); anything else (empty, this sensor's id, a
    range of the merged epochs) is answered by `merged`, which refuses other
    sensors as a sensor does."""

    def __init__(self, merged: Queries, by_iface: dict[str, Queries]):
        self.merged = merged
        self.by_iface = dict(by_iface)
        self.info = merged.info
        self.h = merged.h
        self.layout = merged.layout

    def _route(self, req):
        sensor, sep, iface = req.sensor.partition("/")
        if not sep:
            return self.merged, req
        own = self.merged._own_id()
        if sensor not in ("", own):
            raise ApiError("sensor", f"this is sensor {own!r}; ask a collector for other sensors")
        q = self.by_iface.get(iface)
        if q is None:
            raise ApiError(
                "sensor", f"no interface {_shown(iface)} on this sensor (interfaces: {_names(self.by_iface)})"
            )
        one = type(req)()
        one.CopyFrom(req)
        one.sensor = ""
        return q, one

    def warm(self, snap, kept: list) -> None:
        self.merged.warm(snap, kept)

    def summary(self, snap, max_keys: int = DEFAULT_LIMIT) -> pb.EpochSummary:
        return self.merged.summary(snap, max_keys)

    def stream_max_keys(self, value: int) -> int:
        return self.merged.stream_max_keys(value)

    def ListTasks(self, req):
        return self.merged.ListTasks(req)


def _routed(name: str):
    def method(self, req):
        q, one = self._route(req)
        return getattr(q, name)(one)

    method.__name__ = name
    return method


for _name in ("GetStatus", "TopKeys", "EstimateKey", "TopSpreaders", "ListFlows", "TraceFlow"):
    setattr(Interfaces, _name, _routed(_name))


def key_text(k: pb.Key) -> str:
    """'src_ip=10.0.0.1 dst_port=80' for the set fields of a Key message."""
    return " ".join(f"{n}={getattr(k, n)}" for n in _set_fields(k))


__all__ = ["ApiError", "Interfaces", "Queries", "alert_pb", "filter_flows", "key_json", "key_pb", "key_text"]
