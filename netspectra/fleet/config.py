"""The `fleet:` section of the config: where a sensor publishes its epochs
(NATS JetStream), and how `netspectra collector` consumes and merges them.
Off (nothing published) while fleet.servers is empty.  docs/fleet.md.

parse_fleet() is called by netspectra.config (like store.config.parse_store);
every problem is a one-line error naming the dotted key.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..configkit import (
    ID_RE,
    Invalid,
    Reader,
    fmt_duration,
    parse_address,
    parse_duration,
    readable_file,
    show,
    typename,
    without_password,
)
from .wire import token

DEFAULT_PREFIX = "netspectra.v1"
DEFAULT_STREAM = "NETSPECTRA"
DEFAULT_SPOOL = 1000  # epochs on disk while NATS is unreachable
SPOOL_MAX = 1_000_000
DEFAULT_MAX_AGE_S = 86400.0  # the stream keeps epochs this long
MAX_AGE_MIN_S = 60.0
DEFAULT_DUPLICATE_WINDOW_S = 600.0  # JetStream drops a republished message id within this
DUPLICATE_WINDOW_MIN_S = 1.0
DEFAULT_DURABLE = "netspectra-collector"
DEFAULT_GRACE_S = 10.0
DEFAULT_WINDOW_S = 5.0
WINDOW_MIN_S, WINDOW_MAX_S = 0.1, 3600.0
GRACE_MAX_S = 3600.0
SCHEMES = ("nats", "tls")

_SECTION_KEYS = (
    "servers",
    "subject_prefix",
    "stream",
    "credentials",
    "token",
    "tls",
    "spool",
    "spool_dir",
    "max_age",
    "duplicate_window",
    "collector",
)
_TLS_KEYS = ("ca", "cert", "key")
_COLLECTOR_KEYS = ("durable", "window", "grace", "sensors", "id", "subjects", "publish", "source", "store_sensors")
SOURCES = ("epochs", "partials")  # what a collector consumes: sensors' epochs, or shard collectors' partial windows
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")  # JetStream stream and consumer names
_PREFIX_RE = re.compile(r"[^.*>\s]+(?:\.[^.*>\s]+)*")  # NATS subject tokens, no wildcards


@dataclass(frozen=True)
class FleetTLS:
    ca: str = ""  # PEM CA bundle to verify the servers
    cert: str = ""  # client certificate (mutual TLS), with key
    key: str = ""


@dataclass(frozen=True)
class CollectorConfig:
    durable: str = DEFAULT_DURABLE  # the collector's durable pull consumer (one per collector: windows are not split)
    window_s: float = DEFAULT_WINDOW_S  # network-wide window length: the sensors' epoch
    grace_s: float = DEFAULT_GRACE_S  # a window closes this long after its end (or when every expected sensor reported)
    sensors: tuple[str, ...] = ()  # the sensor ids expected in every window; () = whoever reports
    id: str = ""  # the collector's name on its merged epochs (default: "collector@<host>")
    subjects: tuple[str, ...] = ()  # sensor (or shard) ids, or "*"/">", under <prefix>.<source>.; () = all
    publish: bool = False  # publish each merged window as a partial on <prefix>.partials.<id> (a shard)
    store_sensors: bool = True  # store each sensor's epochs as its own series too (per-sensor history, --sensor)
    source: str = "epochs"  # "epochs": the sensors'; "partials": the shards' merged windows (the top collector)


@dataclass(frozen=True)
class FleetConfig:
    servers: tuple[str, ...] = ()  # NATS URLs (nats://host:4222, tls://...); () = off
    subject_prefix: str = DEFAULT_PREFIX  # epochs go to <prefix>.epochs.<sensor>
    stream: str = DEFAULT_STREAM  # the JetStream stream (the collector creates it when missing)
    credentials: str = ""  # a NATS .creds file
    token: str = ""  # or a token
    tls: FleetTLS | None = None
    spool: int = DEFAULT_SPOOL  # epochs kept on disk while NATS is unreachable; beyond, counted as lost
    spool_dir: str = ""  # default: <data directory>/fleet-spool (see store.default_path)
    max_age_s: float = DEFAULT_MAX_AGE_S
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
    collector: CollectorConfig = field(default_factory=CollectorConfig)

    @property
    def enabled(self) -> bool:
        return bool(self.servers)


def parse_fleet(b: Reader, value) -> FleetConfig:
    """The `fleet` section; `b` reads the values (configkit.Reader)."""
    m = b.mapping(value, "fleet", _SECTION_KEYS)
    kw = {}
    if "servers" in m:
        kw["servers"] = _servers(b, m["servers"])
    if "subject_prefix" in m:
        p = b.expand(m["subject_prefix"], "fleet.subject_prefix")
        if not isinstance(p, str) or not _PREFIX_RE.fullmatch(p):
            why = "is not a NATS subject prefix (tokens joined by dots, without spaces, * or >)"
            raise Invalid("fleet.subject_prefix", f"{show(p)} {why}")
        kw["subject_prefix"] = p
    if "stream" in m:
        kw["stream"] = _name(b, m["stream"], "fleet.stream", "a JetStream stream name")
    if m.get("credentials") not in (None, ""):
        kw["credentials"] = _file(b, m["credentials"], "fleet.credentials", "a NATS .creds file")
        if not _have_nkeys():
            raise Invalid("fleet.credentials", "needs the nkeys package (pip install nkeys)")
    if m.get("token") not in (None, ""):
        token = b.expand(m["token"], "fleet.token")
        if not isinstance(token, str) or not token or any(c.isspace() for c in token):
            raise Invalid("fleet.token", "must be a string without spaces")
        if "credentials" in kw:
            raise Invalid("fleet.token", "give credentials or a token, not both")
        kw["token"] = token
    if m.get("tls") is not None:
        t = b.mapping(m["tls"], "fleet.tls", _TLS_KEYS)
        files = {k: _file(b, t[k], f"fleet.tls.{k}", "a PEM file") for k in _TLS_KEYS if t.get(k) not in (None, "")}
        if ("cert" in files) != ("key" in files):
            raise Invalid("fleet.tls", "cert and key go together (a client certificate and its private key)")
        kw["tls"] = FleetTLS(**files) if files else None
    if "spool" in m:
        kw["spool"] = b.integer(m["spool"], "fleet.spool", 0, SPOOL_MAX)
    if m.get("spool_dir") is not None:
        d = b.expand(m["spool_dir"], "fleet.spool_dir")
        if not isinstance(d, str):
            raise Invalid("fleet.spool_dir", f'{show(d)} is not a directory path ("" for the default)')
        kw["spool_dir"] = d.strip()
    max_age = kw["max_age_s"] = _duration(b, m.get("max_age", DEFAULT_MAX_AGE_S), "fleet.max_age", MAX_AGE_MIN_S)
    if "duplicate_window" in m:
        path = "fleet.duplicate_window"
        raw = b.expand(m["duplicate_window"], path)
        win = kw["duplicate_window_s"] = _duration(b, raw, path, DUPLICATE_WINDOW_MIN_S)
        if win > max_age:  # JetStream refuses such a stream
            raise Invalid(path, f"{show(raw)} is longer than fleet.max_age ({fmt_duration(max_age)})")
    elif DEFAULT_DUPLICATE_WINDOW_S > max_age:
        kw["duplicate_window_s"] = max_age  # a short max_age alone: the default window cannot outlive the messages
    if m.get("collector") is not None:
        kw["collector"] = _collector(b, m["collector"])
    return FleetConfig(**kw)


def _servers(b: Reader, value) -> tuple[str, ...]:
    value = b.expand(value, "fleet.servers")
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise Invalid("fleet.servers", f"expected a list of NATS URLs, got {typename(value)}")
    out = []
    for i, raw in enumerate(value):
        path = f"fleet.servers[{i}]"
        url = b.expand(raw, path)
        bad = Invalid(path, f"{show(url)} is not a NATS URL (nats://host:4222, tls://host:4222 or host:port)")
        if not isinstance(url, str) or not url.strip():
            raise bad
        url = url.strip()
        if "://" not in url:  # host:port
            try:
                parse_address(url)
            except ValueError:
                raise bad from None
            url = "nats://" + url
        scheme = url.split("://", 1)[0].lower()
        if scheme not in SCHEMES:
            raise Invalid(path, f"unknown scheme {scheme + '://'!r} (accepted: nats://, tls://, host:port)")
        try:
            parts = urlsplit(url)
            port = parts.port  # ValueError when out of range or not a number
        except ValueError:
            port = 0
        if port == 0:
            raise Invalid(path, f"{show(url)} has a bad port (1..65535)")
        if not parts.hostname:
            raise Invalid(path, f"{show(url)} names no host")
        out.append(scheme + url[len(scheme) :])
    return tuple(out)


def _have_nkeys() -> bool:
    """nats-py signs with .creds files through nkeys, an optional dependency."""
    return importlib.util.find_spec("nkeys") is not None


def _name(b: Reader, value, path: str, what: str) -> str:
    value = b.expand(value, path)
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise Invalid(path, f"{show(value)} must match [A-Za-z0-9_-]+ ({what})")
    return value


def _file(b: Reader, value, path: str, what: str) -> str:
    """A file the sensor reads when it connects: read now, so a wrong path is a config error."""
    return readable_file(b.expand(value, path), path, what)


def _duration(b: Reader, value, path: str, lo: float, hi: float | None = None) -> float:
    raw = b.expand(value, path)
    secs = b.parsed(raw, path, parse_duration)
    if hi is not None and not lo <= secs <= hi:
        raise Invalid(path, f"{show(raw)} is out of range {fmt_duration(lo) if lo else 0}..{fmt_duration(hi)}")
    if secs < lo:
        raise Invalid(path, f"{show(raw)} is too short (at least {fmt_duration(lo)})")
    return secs


def _collector(b: Reader, value) -> CollectorConfig:
    m = b.mapping(value, "fleet.collector", _COLLECTOR_KEYS)
    kw = {}
    if "durable" in m:
        kw["durable"] = _name(b, m["durable"], "fleet.collector.durable", "a JetStream consumer name")
    if "window" in m:
        kw["window_s"] = _duration(b, m["window"], "fleet.collector.window", WINDOW_MIN_S, WINDOW_MAX_S)
    if "grace" in m:
        kw["grace_s"] = _duration(b, m["grace"], "fleet.collector.grace", 0.0, GRACE_MAX_S)
    if m.get("sensors") is not None:
        sensors = b.expand(m["sensors"], "fleet.collector.sensors")
        if isinstance(sensors, str):
            sensors = [sensors]
        if not isinstance(sensors, list):
            raise Invalid("fleet.collector.sensors", f"expected a list of sensor ids, got {typename(sensors)}")
        out: list[str] = []
        for i, s in enumerate(sensors):
            out.append(_id(b, s, f"fleet.collector.sensors[{i}]", allow_empty=False))
            if out[-1] in out[:-1]:
                raise Invalid(f"fleet.collector.sensors[{i}]", f"{out[-1]} is listed twice")
        kw["sensors"] = tuple(out)
    if "id" in m:
        kw["id"] = _id(b, m["id"], "fleet.collector.id", allow_empty=True)
    if m.get("subjects") is not None:
        kw["subjects"] = _subjects(b, m["subjects"], kw.get("sensors", ()))
    for key in ("publish", "store_sensors"):
        if m.get(key) is not None:
            flag = b.expand(m[key], f"fleet.collector.{key}")
            if not isinstance(flag, bool):
                raise Invalid(f"fleet.collector.{key}", f"{show(flag)} is not true or false")
            kw[key] = flag
    if m.get("source") is not None:
        kw["source"] = b.choice(m["source"], "fleet.collector.source", SOURCES)
    if kw.get("publish"):
        if not kw.get("id"):
            why = "needs fleet.collector.id (the shard's name: the top collector lists it in its sensors)"
            raise Invalid("fleet.collector.publish", why)
        if kw.get("source") == "partials":
            raise Invalid("fleet.collector.publish", "a collector of partials (source: partials) does not publish them")
    return CollectorConfig(**kw)


def _subjects(b: Reader, value, sensors: tuple[str, ...]) -> tuple[str, ...]:
    """Sensor ids (as subject tokens) or a wildcard, under <prefix>.<source>."""
    path = "fleet.collector.subjects"
    value = b.expand(value, path)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise Invalid(path, f"expected a list of sensor ids or a wildcard (* or >), got {typename(value)}")
    out: list[str] = []
    for i, raw in enumerate(value):
        s = b.expand(raw, f"{path}[{i}]")
        if s not in ("*", ">"):
            if not isinstance(s, str) or not ID_RE.fullmatch(s):  # NATS has no wildcard within a token
                raise Invalid(
                    f"{path}[{i}]", f"{show(s)} is neither a sensor id (1-64 of A-Z a-z 0-9 . _ -) nor * or >"
                )
            s = token(s)
        if s in out:
            raise Invalid(f"{path}[{i}]", f"{s} is listed twice")
        out.append(s)
    if len(out) > 1 and ({"*", ">"} & set(out)):
        raise Invalid(path, "a wildcard takes every sensor: list it alone (NATS refuses overlapping filters)")
    if out and out[0] not in ("*", ">"):
        for s in sensors:
            if token(s) not in out:
                raise Invalid(path, f"does not take sensor {s} of fleet.collector.sensors (it would never report)")
    return tuple(out) if out != [">"] else ()


def _id(b: Reader, value, path: str, allow_empty: bool) -> str:
    """A sensor or collector id, as sensor.id takes them."""
    v = b.expand(value, path)
    if v is None and allow_empty:
        v = ""
    if not isinstance(v, str) or not ((allow_empty and v == "") or ID_RE.fullmatch(v)):
        raise Invalid(path, f"{show(v)} must be 1-64 of A-Z a-z 0-9 . _ -")
    return v


def defaults_yaml_lines() -> list[str]:
    c = CollectorConfig()
    rows = [  # (option, comment): the comments line up
        ("servers: []", "nats://host:4222, tls://host:4222 or host:port; e.g. ${NATS_URL}"),
        (f"subject_prefix: {DEFAULT_PREFIX}", "epochs go to <prefix>.epochs.<sensor id>"),
        (f"stream: {DEFAULT_STREAM}", "the JetStream stream (a collector creates it)"),
        ('credentials: ""', "a NATS .creds file, or:"),
        ('token: ""', "a token, e.g. ${NATS_TOKEN}"),
        ("# tls: {ca: ca.pem, cert: client.pem, key: client.key}", "cert and key: mutual TLS"),
        (f"spool: {DEFAULT_SPOOL}", f"epochs waiting on disk while NATS is away (0..{SPOOL_MAX}, at most 2 GiB)"),
        ('spool_dir: ""', '"" = fleet-spool in the data directory'),
        (f"max_age: {fmt_duration(DEFAULT_MAX_AGE_S)}", "how long the stream keeps epochs (>= 1m)"),
        (f"duplicate_window: {fmt_duration(DEFAULT_DUPLICATE_WINDOW_S)}", "a republished epoch is dropped within it"),
        ("collector:", "`netspectra collector` only:"),
        (f"  durable: {c.durable}", "the collector's durable consumer (one collector per durable)"),
        (f"  window: {fmt_duration(c.window_s)}", "network-wide window, 100ms..1h: the sensors' epoch"),
        (f"  grace: {fmt_duration(c.grace_s)}", "how long a window waits for late sensors, 0..1h"),
        ("  sensors: []", "sensor ids expected in every window; [] = whoever reports"),
        ('  id: ""', 'names the merged epochs; "" = collector@<host>'),
        ("  subjects: []", "sensor ids (or shard ids) it consumes; [] = all"),
        ("  publish: false", "true: a shard, publishing partials on <prefix>.partials.<id>"),
        ("  source: epochs", "epochs (the sensors') or partials (the shards': top collector)"),
        ("  store_sensors: true", "also store every sensor's epochs (per-sensor history); false: the windows only"),
    ]
    return [
        "# Fleet (docs/fleet.md): publish every epoch to NATS JetStream, where",
        "# `netspectra collector` merges the epochs of many sensors.  Off while",
        "# `servers` is empty; epochs beyond `spool` are counted as lost.",
        "fleet:",
        *(f"  {opt:<32} # {why}" if not opt.startswith("#") else f"  {opt}   # {why}" for opt, why in rows),
    ]


def servers_text(fleet: FleetConfig) -> str:
    """The NATS servers, for messages (passwords left out)."""
    return ", ".join(without_password(url) for url in fleet.servers)
