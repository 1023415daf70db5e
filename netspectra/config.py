"""The sensor configuration: one optional YAML file, validated, with defaults.

Every option has a default, so no file at all is a valid configuration.
String values may use ${VAR} and ${VAR:-default} (environment expansion, done
after YAML parsing, so only values are expanded, never keys or comments).
Unknown keys are errors, with a suggestion when one is close, and every error
is a single ConfigError line naming the file, the dotted key and the reason:

    config.yaml: tasks[1].widht: unknown option (did you mean 'width'?)

docs/config.md is the reference of every option; defaults_yaml() prints the
whole default configuration as commented YAML.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import yaml

from . import abi
from .alerts.rules import AlertsConfig, default_alerts, parse_alerts
from .api.settings import ApiConfig, parse_api
from .api.settings import defaults_yaml_lines as api_defaults_yaml_lines
from .tasks import COUNTMIN, SUPERSPREAD, Sizes, TaskSpec, layout

__all__ = [
    "DEFAULT_TASKS",
    "Config",
    "ConfigError",
    "SensorConfig",
    "default_tasks",
    "defaults_yaml",
    "derive_seed",
    "kernel_memory",
    "load_config",
    "parse_config",
    "parse_address",
    "parse_duration",
    "parse_epoch",
    "parse_size",
    "possible_cpus",
]


class ConfigError(Exception):
    """A configuration problem; str() is one line naming file, key and reason."""


# --- limits and defaults -----------------------------------------------------

EPOCH_MIN_S = 0.1
EPOCH_MAX_S = 3600.0
MODES = ("auto", "native", "generic")
FLOW_CAPACITY_MAX = 1 << 24  # flows per CPU
RINGBUF_PAGES_MAX = 1 << 16
TOP_MAX = 10000
DEPTH_MAX = abi.MAX_DEPTH
WIDTH_MIN, WIDTH_MAX = 64, 1 << 22  # Count-Min counters per row
# SuperSpread (virtual HyperLogLog): `width` is the pool of one-byte registers
# shared by all keys, `registers` the virtual registers of each key (< width).
SS_WIDTH_MIN, SS_WIDTH_MAX = 1 << 10, 1 << 26
REGISTERS_MIN, REGISTERS_MAX = 16, 4096
SEED_MAX = (1 << 64) - 1
PAGE_SIZE = 4096

DEFAULT_EPOCH_S = 5.0
DEFAULT_MODE = "auto"
DEFAULT_FLOW_CAPACITY = 65536  # flows per CPU and epoch
DEFAULT_RINGBUF_PAGES = 64
DEFAULT_TOP = 10
DEFAULT_MAX_KERNEL_MEMORY = 8 << 30

KIND_DEFAULTS = {
    COUNTMIN: {"depth": 4, "width": 65536},
    # 4 MiB pool per task, CPU and map set; 512 registers per key.  Measured
    # with bench/accuracy.py (320k distinct key-element pairs of background):
    # mean relative error ~4% for spreads >= 100.
    SUPERSPREAD: {"width": 1 << 22, "registers": 512},
}
DEFAULT_HH_PACKETS = 1000
DEFAULT_HH_BYTES = 1_000_000
DEFAULT_SPREADER_THRESHOLD = 100

# (name, kind, key, element, options) of the tasks used when the file gives no
# `tasks`.  Tasks cost the kernel nothing while the flow table holds an epoch
# (hybrid sketch mode), so a task earns a place by the questions it answers.
# port_scan: distinct destination ports per (source, destination), a vertical
# scan; the spreads' pool and registers (bench/accuracy: smaller pools missed
# the 5% mean error goal: 2 MiB 5.6%, 1 MiB with 256 registers 9%).
DEFAULT_TASKS = (
    ("src", COUNTMIN, ("src_ip",), (), {}),
    ("flow", COUNTMIN, ("src_ip", "dst_ip", "src_port", "dst_port", "proto"), (), {}),
    ("spread_dst", SUPERSPREAD, ("src_ip",), ("dst_ip",), {}),
    ("fanin_src", SUPERSPREAD, ("dst_ip",), ("src_ip",), {}),
    ("port_scan", SUPERSPREAD, ("src_ip", "dst_ip"), ("dst_port",), {}),
)

_TOP_KEYS = ("sensor", "tasks", "alerts", "api")
_SENSOR_KEYS = (
    "id",
    "epoch",
    "mode",
    "flow_capacity",
    "ringbuf_pages",
    "top",
    "max_kernel_memory",
    "timestamps",
    "sketch_mode",
    "metrics_address",
)
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9781"
TIMESTAMPS = ("millisecond", "precise", "coarse")
SKETCH_MODES = ("hybrid", "every_packet")
_TASK_KEYS = (
    "name",
    "kind",
    "key",
    "element",
    "depth",
    "width",
    "registers",
    "seed",
    "elem_seed",
    "heavy_hitter",
    "spreader_threshold",
)
_HH_KEYS = ("packets", "bytes")
# Task options that only one kind accepts.
_ONLY_FOR = {
    "element": SUPERSPREAD,
    "registers": SUPERSPREAD,
    "elem_seed": SUPERSPREAD,
    "spreader_threshold": SUPERSPREAD,
    "heavy_hitter": COUNTMIN,
    "depth": COUNTMIN,  # a SuperSpread task is one register pool (depth 1)
}
_NAME_RE = re.compile(r"[a-z0-9_]+")
_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


# --- the configuration -------------------------------------------------------


@dataclass(frozen=True)
class SensorConfig:
    epoch_s: float = DEFAULT_EPOCH_S
    mode: str = DEFAULT_MODE  # XDP attach mode: auto, native (driver) or generic (skb)
    flow_capacity: int = DEFAULT_FLOW_CAPACITY  # flows one CPU's exact table takes per epoch; 0 = none
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES  # candidate ring buffer, a power of two
    top: int = DEFAULT_TOP  # rows shown in views
    max_kernel_memory: int = DEFAULT_MAX_KERNEL_MEMORY  # bytes, guard on the maps (sketches and flows)
    timestamps: str = "millisecond"  # flow first/last seen: millisecond, precise (ns) or coarse (kernel tick)
    sketch_mode: str = "hybrid"  # hybrid: sketches count what the flow table cannot; every_packet: all
    metrics_address: str = DEFAULT_METRICS_ADDRESS  # Prometheus /metrics listen host:port; "" = off
    id: str = ""  # names the sensor on its epochs and alerts; "" = the host name

    @property
    def sensor_id(self) -> str:
        return self.id or socket.gethostname()


@dataclass(frozen=True)
class Config:
    sensor: SensorConfig = field(default_factory=SensorConfig)
    tasks: tuple[TaskSpec, ...] = field(default_factory=lambda: default_tasks())
    source: str = field(default="<defaults>", compare=False)  # file the config came from
    alerts: AlertsConfig = field(default_factory=lambda: default_alerts(default_tasks()))  # docs/alerts.md
    api: ApiConfig = field(default_factory=ApiConfig)  # docs/api.md

    @property
    def spreader_thresholds(self) -> dict[str, int]:
        """SuperSpread task name -> distinct count reported as a spreader."""
        return {t.name: t.spread_threshold for t in self.tasks if t.kind == SUPERSPREAD}

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)


def derive_seed(text: str) -> int:
    """A stable 64-bit seed: the first 8 bytes of sha256(text), little-endian."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


# --- scalar parsers (also for the CLI) ---------------------------------------

_DURATION_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(rf"({_NUM})\s*(ns|us|µs|ms|s|m|h)")
_DURATION_RE = re.compile(rf"(?:{_NUM}\s*(?:ns|us|µs|ms|s|m|h)\s*)+")


def parse_duration(value) -> float:
    """Seconds from "5s", "100ms", "1m", "1h", "1m30s", "2.5s" or a plain number
    of seconds (int, float or numeric string).  Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use e.g. 5s, 100ms)")
    if isinstance(value, (int, float)):
        secs = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            secs = float(Decimal(text))
        except InvalidOperation:
            if not text or not _DURATION_RE.fullmatch(text):
                raise ValueError(f"{value!r} is not a duration (use e.g. 5s, 100ms)") from None
            total = sum(Decimal(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
            secs = float(total)
    else:
        raise ValueError(f"{value!r} is not a duration (use e.g. 5s, 100ms)")
    if not math.isfinite(secs) or secs < 0:
        raise ValueError(f"{value!r} is not a duration (use e.g. 5s, 100ms)")
    return secs


def parse_epoch(value) -> float:
    """parse_duration() plus the epoch range check (100ms..1h), for --epoch."""
    secs = parse_duration(value)
    if not EPOCH_MIN_S <= secs <= EPOCH_MAX_S:
        raise ValueError(f"{_show(value)} is out of range 100ms..1h")
    return secs


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_SIZE_RE = re.compile(rf"({_NUM})\s*([a-zA-Z]*)")


def parse_size(value) -> int:
    """Bytes from an int or "512MiB", "1GiB", "2GB", "4096".  Raises ValueError."""
    bad = f"{_show(value)} is not a size in bytes (use e.g. 512MiB, 1GiB)"
    if isinstance(value, bool):
        raise ValueError(bad)
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _SIZE_RE.fullmatch(value.strip())
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(bad)
        n = Decimal(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
        if n != n.to_integral_value():
            raise ValueError(bad)
        n = int(n)
    else:
        raise ValueError(bad)
    if n <= 0:
        raise ValueError(f"{_show(value)} must be more than 0 bytes")
    return n


def parse_address(value) -> tuple[str, int]:
    """(host, port) from "host:port" or "[v6]:port"; port 1..65535.  Raises ValueError."""
    bad = f"{_show(value)} is not host:port (e.g. 127.0.0.1:9781, [::1]:9781, 0.0.0.0:9781)"
    if not isinstance(value, str):
        raise ValueError(bad)
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host or ":" not in host:
            raise ValueError(bad)
    elif ":" in host:
        raise ValueError(bad)
    if not sep or not host or not port.isascii() or not port.isdigit() or any(c.isspace() for c in host):
        raise ValueError(bad)
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"{_show(value)}: port {int(port)} is out of range 1..65535")
    return host, int(port)


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _fmt_duration(secs: float) -> str:
    if secs < 1:
        return f"{secs * 1000:g}ms"
    return f"{secs:g}s"


# --- kernel memory -------------------------------------------------------------


def possible_cpus() -> int:
    """Number of CPU slots the kernel sizes per-CPU data for (highest possible
    CPU id + 1), from /sys/devices/system/cpu/possible; os.cpu_count() else."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
        top = max(int(part.split("-")[-1]) for part in text.split(",") if part)
        return top + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


def kernel_memory(cfg: Config, ncpus: int) -> dict[str, int]:
    """Kernel memory in bytes of the sensor's maps for `ncpus` possible CPUs,
    by map (tasks.Sizes.memory: totals, countmin, superspread, flows, seen,
    candidates), plus `sketches` (countmin + superspread) and `total`: what
    sensor.max_kernel_memory limits."""
    lay = layout(cfg.tasks, ncpus)
    mem = Sizes(ncpus, lay.cm_cells, lay.ss_blocks, cfg.sensor.flow_capacity, cfg.sensor.ringbuf_pages).memory()
    return mem | {"sketches": mem["countmin"] + mem["superspread"], "total": sum(mem.values())}


# --- loading -------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (a silent override otherwise)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # keys merged in with << may be overridden
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # construct_mapping reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | None, env: Mapping[str, str] = os.environ, ncpus: int | None = None) -> Config:
    """Load and validate the YAML file at `path`; None gives the defaults.

    `ncpus` is the CPU count the memory guard assumes (default: possible_cpus()).
    Raises ConfigError."""
    if path is None:
        return parse_config("", "<defaults>", env, ncpus)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse_config(text, path, env, ncpus)


def parse_config(
    text: str, source: str = "<string>", env: Mapping[str, str] = os.environ, ncpus: int | None = None
) -> Config:
    """Like load_config() for YAML text; `source` names it in errors."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        why = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise ConfigError(f"{where}: YAML syntax error: {why}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: YAML syntax error: {' '.join(str(e).split())}") from None
    return _Builder(source, env).build(data, ncpus)


class _Fail(Exception):
    def __init__(self, path: str, why: str):
        super().__init__(f"{path}: {why}" if path else why)


_VAR_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Builder:
    def __init__(self, source: str, env: Mapping[str, str]):
        self.source = source
        self.env = env

    def build(self, data, ncpus: int | None) -> Config:
        try:
            cfg = self._config(data)
            self._guard(cfg, possible_cpus() if ncpus is None else ncpus)
        except _Fail as e:
            raise ConfigError(f"{self.source}: {e}") from None
        return cfg

    # --- helpers

    def _parsed(self, value, path: str, parse):
        """Expand `value`, then parse it with `parse` (which raises ValueError
        with the reason); failures name `path`."""
        try:
            return parse(self._expand(value, path))
        except ValueError as e:
            raise _Fail(path, str(e)) from None

    def _expand(self, value, path: str):
        if not isinstance(value, str) or "$" not in value:
            return value

        def sub(m: re.Match) -> str:
            if m.group(0) == "$${":
                return "${"
            body = m.group(1)
            if body is None:
                raise _Fail(path, "unterminated ${ (write $${ for a literal ${)")
            name, sep, default = body.partition(":-")
            if not _VAR_NAME.fullmatch(name):
                raise _Fail(path, f"bad variable reference ${{{body}}} (use ${{VAR}} or ${{VAR:-default}})")
            got = self.env.get(name)
            if sep:
                return got if got else default
            if got is None:
                raise _Fail(path, f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
            return got

        return _VAR_RE.sub(sub, value)

    def _mapping(self, value, path: str, allowed: tuple[str, ...], what: str = "a mapping") -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _Fail(path, f"expected {what}, got {_typename(value)}")
        for k in value:
            if k not in allowed:
                sub = _join(path, k)
                close = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "valid: " + ", ".join(allowed)
                raise _Fail(sub, f"unknown option ({hint})")
        return value

    def _int(self, value, path: str, lo: int, hi: int | None = None, pow2: bool = False) -> int:
        value = self._expand(value, path)
        if isinstance(value, str):
            try:
                value = int(value.strip(), 10)
            except ValueError:
                raise _Fail(path, f"{_show(value)} is not an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Fail(path, f"{_show(value)} is not an integer")
        if value < lo or (hi is not None and value > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise _Fail(path, f"{value} is out of range {rng}")
        if pow2 and value & (value - 1):
            near = 1 << (value.bit_length() - 1)
            raise _Fail(path, f"{value} is not a power of two (e.g. {near} or {near * 2})")
        return value

    def _choice(self, value, path: str, choices: tuple[str, ...]) -> str:
        value = self._expand(value, path)
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Fail(path, f"{_show(value)} is not one of {', '.join(choices)}{hint}")
        return value

    def _fields(self, value, path: str) -> tuple[str, ...]:
        value = self._expand(value, path)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise _Fail(path, f"expected a list of fields, got {_typename(value)}")
        if not value:
            raise _Fail(path, "must name at least one field")
        names = tuple(abi.FIELD_BITS)
        out = []
        for i, f in enumerate(value):
            p = f"{path}[{i}]"
            f = self._expand(f, p)
            if not isinstance(f, str) or f not in abi.FIELD_BITS:
                close = difflib.get_close_matches(str(f), names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "fields: " + ", ".join(names)
                raise _Fail(p, f"unknown field {_show(f)} ({hint})")
            if f in out:
                raise _Fail(p, f"{f} is listed twice")
            out.append(f)
        return tuple(out)

    # --- sections

    def _config(self, data) -> Config:
        top = self._mapping(data, "", _TOP_KEYS, "a mapping with sensor, tasks, alerts and api")
        sensor = self._sensor(top.get("sensor"))
        raw_tasks = top.get("tasks")
        if raw_tasks is None:
            tasks = default_tasks()
        else:
            tasks = self._tasks(raw_tasks)
        alerts = parse_alerts(self, top.get("alerts"), tasks)
        return Config(sensor, tasks, self.source, alerts, parse_api(self, top.get("api")))

    def _sensor(self, value) -> SensorConfig:
        m = self._mapping(value, "sensor", _SENSOR_KEYS)
        kw = {}
        if "id" in m:
            sid = self._expand(m["id"], "sensor.id")
            if sid is None:
                sid = ""
            if not isinstance(sid, str) or not (sid == "" or _ID_RE.fullmatch(sid)):
                raise _Fail("sensor.id", f"{_show(sid)} must be 1-64 of A-Z a-z 0-9 . _ - (a host name will do)")
            kw["id"] = sid
        if "epoch" in m:
            kw["epoch_s"] = self._parsed(m["epoch"], "sensor.epoch", parse_epoch)
        if "mode" in m:
            kw["mode"] = self._choice(m["mode"], "sensor.mode", MODES)
        if "flow_capacity" in m:
            kw["flow_capacity"] = self._int(m["flow_capacity"], "sensor.flow_capacity", 0, FLOW_CAPACITY_MAX)
        if "ringbuf_pages" in m:
            kw["ringbuf_pages"] = self._int(m["ringbuf_pages"], "sensor.ringbuf_pages", 1, RINGBUF_PAGES_MAX, True)
        if "top" in m:
            kw["top"] = self._int(m["top"], "sensor.top", 1, TOP_MAX)
        if "timestamps" in m:
            kw["timestamps"] = self._choice(m["timestamps"], "sensor.timestamps", TIMESTAMPS)
        if "sketch_mode" in m:
            kw["sketch_mode"] = self._choice(m["sketch_mode"], "sensor.sketch_mode", SKETCH_MODES)
        if "max_kernel_memory" in m:
            kw["max_kernel_memory"] = self._parsed(m["max_kernel_memory"], "sensor.max_kernel_memory", parse_size)
        if "metrics_address" in m:
            raw = self._expand(m["metrics_address"], "sensor.metrics_address")
            if raw is None:
                raw = ""
            if raw != "":
                try:
                    parse_address(raw)
                except ValueError as e:
                    raise _Fail("sensor.metrics_address", str(e)) from None
                raw = raw.strip()
            kw["metrics_address"] = raw
        return SensorConfig(**kw)

    def _tasks(self, value) -> tuple[TaskSpec, ...]:
        if not isinstance(value, list):
            raise _Fail("tasks", f"expected a list of tasks, got {_typename(value)}")
        if len(value) > abi.MAX_TASKS:
            raise _Fail("tasks", f"{len(value)} tasks given, at most {abi.MAX_TASKS}")
        out: list[TaskSpec] = []
        for i, raw in enumerate(value):
            spec = self._task(raw, f"tasks[{i}]")
            for j, prev in enumerate(out):
                if prev.name == spec.name:
                    raise _Fail(f"tasks[{i}].name", f"{spec.name!r} is also the name of tasks[{j}]")
            out.append(spec)
        try:
            layout(out)
        except ValueError as e:
            raise _Fail("tasks", str(e)) from None
        return tuple(out)

    def _task(self, value, path: str) -> TaskSpec:
        m = self._mapping(value, path, _TASK_KEYS, "a task mapping")
        for req, what in (("name", "[a-z0-9_]+"), ("kind", "countmin or superspread"), ("key", "a list of fields")):
            if req not in m:
                raise _Fail(path, f"missing {req!r} ({what})")
        name = self._expand(m["name"], f"{path}.name")
        if not isinstance(name, str):
            raise _Fail(f"{path}.name", f"{_show(name)} is not a string (quote it)")
        if not _NAME_RE.fullmatch(name):
            raise _Fail(f"{path}.name", f"{_show(name)} must match [a-z0-9_]+")
        kind = self._choice(m["kind"], f"{path}.kind", (COUNTMIN, SUPERSPREAD))
        for opt, only in _ONLY_FOR.items():
            if opt in m and kind != only:
                raise _Fail(f"{path}.{opt}", f"only for {only} tasks")
        key = self._fields(m["key"], f"{path}.key")
        d = KIND_DEFAULTS[kind]
        if kind == COUNTMIN:
            depth = self._int(m.get("depth", d["depth"]), f"{path}.depth", 1, DEPTH_MAX)
            width = self._int(m.get("width", d["width"]), f"{path}.width", WIDTH_MIN, WIDTH_MAX, True)
        else:
            depth = 1
            width = self._int(m.get("width", d["width"]), f"{path}.width", SS_WIDTH_MIN, SS_WIDTH_MAX, True)
        seed = self._int(m["seed"], f"{path}.seed", 0, SEED_MAX) if "seed" in m else derive_seed(name)
        kw = {}
        if kind == SUPERSPREAD:
            if "element" not in m:
                raise _Fail(path, "missing 'element' (superspread tasks count distinct elements per key)")
            element = self._fields(m["element"], f"{path}.element")
            both = [f for f in element if f in key]
            if both:
                raise _Fail(f"{path}.element", f"{', '.join(both)} is also in the key")
            kw["element"] = element
            kw["registers"] = self._int(
                m.get("registers", d["registers"]), f"{path}.registers", REGISTERS_MIN, REGISTERS_MAX, True
            )
            if kw["registers"] >= width:
                raise _Fail(
                    f"{path}.registers",
                    f"{kw['registers']} must be less than width {width} (the register pool shared by all keys)",
                )
            kw["elem_seed"] = (
                self._int(m["elem_seed"], f"{path}.elem_seed", 0, SEED_MAX)
                if "elem_seed" in m
                else derive_seed(name + ":elem")
            )
            kw["spread_threshold"] = self._int(
                m.get("spreader_threshold", DEFAULT_SPREADER_THRESHOLD), f"{path}.spreader_threshold", 1
            )
        else:
            hh = self._mapping(m.get("heavy_hitter"), f"{path}.heavy_hitter", _HH_KEYS)
            kw["hh_packets"] = self._int(hh.get("packets", DEFAULT_HH_PACKETS), f"{path}.heavy_hitter.packets", 0)
            kw["hh_bytes"] = self._int(hh.get("bytes", DEFAULT_HH_BYTES), f"{path}.heavy_hitter.bytes", 0)
        return TaskSpec(name=name, kind=kind, key=key, depth=depth, width=width, seed=seed, **kw)

    def _guard(self, cfg: Config, ncpus: int) -> None:
        lay = layout(cfg.tasks, ncpus)
        sizes = Sizes(ncpus, lay.cm_cells, lay.ss_blocks, cfg.sensor.flow_capacity, cfg.sensor.ringbuf_pages)
        for path, per_cpu in (
            ("sensor.flow_capacity", sizes.flow_slots),
            ("tasks", lay.cm_cells),
            ("tasks", lay.ss_blocks),
        ):  # the program indexes its arrays [set][cpu][...] with 32-bit numbers
            if abi.NSETS * ncpus * per_cpu >= 1 << 32:
                raise _Fail(path, f"too large for {ncpus} CPUs: an array would need 2^32 or more elements")
        mem = kernel_memory(cfg, ncpus)
        limit = cfg.sensor.max_kernel_memory
        if mem["total"] > limit:
            need, have = _fmt_bytes(mem["total"]), _fmt_bytes(limit)
            if need == have:  # too close to tell apart when rounded
                need, have = f"{need} ({mem['total']} B)", f"{have} ({limit} B)"
            raise _Fail(
                "",
                f"the maps need {need} of kernel memory on {ncpus} CPUs "
                f"(countmin {_fmt_bytes(mem['countmin'])}, superspread {_fmt_bytes(mem['superspread'])}, "
                f"flows {_fmt_bytes(mem['flows'])}), more than sensor.max_kernel_memory {have}; "
                "lower the tasks' width, depth or registers or sensor.flow_capacity, "
                "or raise sensor.max_kernel_memory",
            )


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _typename(value) -> str:
    if value is None:
        return "nothing"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    names.update({int: "an integer", float: "a number"})
    return names.get(type(value), f"a {type(value).__name__}")


def default_tasks() -> tuple[TaskSpec, ...]:
    """The tasks used when the file gives no `tasks`."""
    return tuple(_default_task(*t) for t in DEFAULT_TASKS)


def _default_task(name: str, kind: str, key: tuple[str, ...], element: tuple[str, ...], options: dict) -> TaskSpec:
    d = KIND_DEFAULTS[kind] | options
    depth = d["depth"] if kind == COUNTMIN else 1
    common = dict(name=name, kind=kind, key=key, depth=depth, width=d["width"], seed=derive_seed(name))
    if kind == SUPERSPREAD:
        return TaskSpec(
            **common,
            element=element,
            registers=d["registers"],
            elem_seed=derive_seed(name + ":elem"),
            spread_threshold=DEFAULT_SPREADER_THRESHOLD,
        )
    return TaskSpec(**common, hh_packets=DEFAULT_HH_PACKETS, hh_bytes=DEFAULT_HH_BYTES)


# --- the default configuration as YAML ----------------------------------------

_TASK_COMMENTS = {
    "src": "packets and bytes per source address (heavy sources)",
    "flow": "packets and bytes per 5-tuple (heavy flows)",
    "spread_dst": "distinct destinations per source (super-spreaders, scanners)",
    "fanin_src": "distinct sources per destination (DDoS victims)",
    "port_scan": "distinct destination ports per source and destination (port scans)",
}


def defaults_yaml() -> str:
    """The complete default configuration as commented YAML; loading it gives
    the same Config as loading no file."""
    cm, ss = KIND_DEFAULTS[COUNTMIN], KIND_DEFAULTS[SUPERSPREAD]
    lines = [
        "# netspectra sensor configuration (all values shown are the defaults).",
        "# String values may use ${VAR} or ${VAR:-default} from the environment.",
        "# Unknown keys are errors.  Reference: docs/config.md",
        "",
        "sensor:",
        "  # Names this sensor on its epochs and alerts (1-64 of A-Z a-z 0-9 . _ -);",
        '  # "" is the host name.',
        '  id: ""',
        "  # Epoch length: sketches and flows are read and reset once per epoch.",
        "  # A duration (100ms, 5s, 1m, 1h) or a number of seconds; 100ms..1h.",
        f"  epoch: {_fmt_duration(DEFAULT_EPOCH_S)}",
        "  # XDP attach mode: auto (native if the driver supports it, else generic),",
        "  # native (driver mode) or generic (skb mode).",
        f"  mode: {DEFAULT_MODE}",
        f"  # Flows each CPU's exact flow table takes per epoch (0..{FLOW_CAPACITY_MAX}; 0: no",
        "  # table, sketches only).  Packets of flows beyond it count as untracked and",
        "  # go to the sketches; nothing is evicted.  Memory: 168 bytes per flow, CPU",
        "  # and map set.",
        f"  flow_capacity: {DEFAULT_FLOW_CAPACITY}",
        "  # hybrid: sketch tasks count only the packets the flow table cannot hold",
        "  # (the agent adds the flows' share, bit for bit the same arrays);",
        "  # every_packet: every IP packet updates them in the kernel.",
        "  sketch_mode: hybrid",
        "  # Candidate ring buffer size in pages, a power of two.",
        f"  ringbuf_pages: {DEFAULT_RINGBUF_PAGES}",
        "  # Rows shown in views (top-K tables, exported label sets).",
        f"  top: {DEFAULT_TOP}",
        "  # Flow first/last seen: millisecond (at high packet rates a clock the agent",
        "  # advances every ms, free per packet; at low rates the kernel clock per",
        "  # packet), precise (CLOCK_MONOTONIC per packet, ns, ~25 ns more per packet)",
        "  # or coarse (the kernel tick: 1-10 ms by CONFIG_HZ).",
        "  timestamps: millisecond",
        "  # Refuse a configuration whose maps (sketches and flow tables, both sets,",
        "  # every possible CPU) need more kernel memory than this; 512MiB, 2GiB, ...",
        "  max_kernel_memory: 8GiB",
        "  # Prometheus metrics (docs/metrics.md) served at http://ADDRESS/metrics;",
        '  # host:port ([::1]:9781 for IPv6), "" to serve none.',
        f'  metrics_address: "{DEFAULT_METRICS_ADDRESS}"',
        "",
        f"# Sketch tasks, at most {abi.MAX_TASKS}.  Fields: {', '.join(abi.FIELD_BITS)}.",
        f"# `tasks: []` runs no sketches; leaving `tasks` out gives these {len(DEFAULT_TASKS)}.",
        "# seed (and elem_seed for superspread) default to a hash of the task name;",
        "# sensors whose sketches are merged must use the same name or seed.",
        "tasks:",
    ]
    for name, kind, key, element, options in DEFAULT_TASKS:
        d = (cm if kind == COUNTMIN else ss) | options
        lines.append(f"  # {_TASK_COMMENTS[name]}")
        lines.append(f"  - name: {name}")
        lines.append(f"    kind: {kind}")
        lines.append(f"    key: [{', '.join(key)}]")
        if kind == COUNTMIN:
            lines.append(f"    depth: {d['depth']}          # rows, 1..{DEPTH_MAX}")
            lines.append(f"    width: {d['width']}      # counters per row, a power of two")
            lines.append("    heavy_hitter:       # report keys reaching either per epoch; 0 = off")
            lines.append(f"      packets: {DEFAULT_HH_PACKETS}")
            lines.append(f"      bytes: {DEFAULT_HH_BYTES}")
        else:
            lines.append(f"    element: [{', '.join(element)}]")
            lines.append(
                f"    width: {d['width']}      # register pool shared by all keys (1 byte each), a power of two"
            )
            lines.append(
                f"    registers: {d['registers']}       # virtual registers per key, a power of two 16..4096, < width"
            )
            lines.append(f"    spreader_threshold: {DEFAULT_SPREADER_THRESHOLD}   # distinct count reported")
    lines += [
        "",
        "# Alert rules and notifiers (docs/alerts.md).  Leaving `rules` out gives",
        "# the default rules below (those whose task exists); `rules: []` none.",
        "alerts:",
        "  repeat_interval: 5m   # re-notify a firing alert this often while it holds",
        "  history: 1000         # alert events kept in memory",
        "  notifiers: []         # alertmanager, webhook, email; see docs/alerts.md",
        "  rules:",
        "    - {name: heavy_source, kind: heavy_hitter, severity: warning, task: src, metric: rate_bps, threshold: 100e6}",
        "    - {name: heavy_flow, kind: heavy_hitter, severity: info, task: flow, metric: rate_bps, threshold: 50e6}",
        "    - {name: scanner, kind: super_spreader, severity: warning, task: spread_dst, threshold: 500}",
        "    - {name: ddos_victim, kind: fan_in, severity: critical, task: fanin_src, threshold: 1000}",
        "    - {name: port_scan, kind: super_spreader, severity: warning, task: port_scan, threshold: 100}",
        "    - {name: traffic_spike, kind: traffic_spike, severity: warning, metric: bytes, factor: 5, min_rate: 1e6,",
        "       warmup: 12, smoothing: 0.1}",
        "    - {name: flow_table_full, kind: flow_table, severity: warning, threshold: 0.9}",
        "    - {name: sensor_health, kind: sensor_health, severity: critical, threshold: 0.5}",
        "",
        *api_defaults_yaml_lines(),
    ]
    return "\n".join(lines) + "\n"
