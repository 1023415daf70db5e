"""The sensor configuration: one optional YAML file, validated, with defaults.

Every option has a default, so no file at all is a valid configuration.
String values may use ${VAR} and ${VAR:-default} (environment expansion, done
after YAML parsing, so only values are expanded, never keys or comments).
Unknown keys are errors, with a suggestion when one is close, and every error
is a single ConfigError line naming the file, the dotted key and the reason:

    config.yaml: tasks[1].widht: unknown option (did you mean 'width'?)

The sensor and tasks sections are read here; alerts, api, store and fleet by
their own packages, which use netspectra.configkit and never import this module.
docs/config.md is the reference of every option; defaults_yaml() prints the
whole default configuration as commented YAML.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from . import abi
from .alerts.rules import AlertsConfig, default_alerts, parse_alerts
from .api.settings import ApiConfig, parse_api
from .api.settings import defaults_yaml_lines as api_defaults_yaml_lines
from .configkit import (
    ID_RE,
    NAME_RE,
    Invalid,
    Reader,
    excerpt,
    file_kind,
    fmt_bytes,
    fmt_duration,
    parse_address,
    parse_duration,
    parse_size,
    show,
    typename,
)
from .fleet.config import FleetConfig, parse_fleet
from .fleet.config import defaults_yaml_lines as fleet_defaults_yaml_lines
from .store.config import StoreConfig, parse_store
from .store.config import defaults_yaml_lines as store_defaults_yaml_lines
from .tasks import COUNTMIN, SUPERSPREAD, Sizes, TaskSpec, layout

__all__ = [
    "DEFAULT_TASKS",
    "Config",
    "ConfigError",
    "SensorConfig",
    "default_tasks",
    "defaults_yaml",
    "derive_seed",
    "check_interfaces",
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

_TOP_KEYS = ("sensor", "tasks", "alerts", "api", "store", "fleet")
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
    "interfaces",
)
MAX_INTERFACES = 64  # programs one process attaches (each has its own maps: see kernel memory)
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
    interfaces: tuple[str, ...] = ()  # what `attach` with no interface argument attaches to

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
    store: StoreConfig = field(default_factory=StoreConfig)  # docs/history.md
    fleet: FleetConfig = field(default_factory=FleetConfig)  # docs/fleet.md

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


# --- scalar parsers (also for the CLI; the rest are configkit's) ----------------


def check_interfaces(names) -> tuple[str, ...]:
    """A list of interface names to attach to, in order: ValueError naming the
    bad one (not a name the kernel accepts, listed twice, too many)."""
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{show(name)} is not an interface name")
        # what no interface can be called; the rest (e.g. too long) is `no such interface` at attach
        if name in (".", "..") or any(c in name for c in "/: \t\n"):
            raise ValueError(f"{show(name)} is not an interface name (no '/', ':' or spaces)")
        if name in out:
            raise ValueError(f"{name!r} is listed twice")
        out.append(name)
    if len(out) > MAX_INTERFACES:
        raise ValueError(f"{len(out)} interfaces given, at most {MAX_INTERFACES}")
    return tuple(out)


def parse_epoch(value) -> float:
    """parse_duration() plus the epoch range check (100ms..1h), for --epoch."""
    secs = parse_duration(value)
    if not EPOCH_MIN_S <= secs <= EPOCH_MAX_S:
        raise ValueError(f"{show(value)} is out of range 100ms..1h")
    return secs


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


# A config file is a few KB; these bounds keep a hostile or mistaken one (an
# alias bomb, /dev/zero, deep nesting, a 5,000-digit number) to one error line
# in milliseconds instead of gigabytes, a RecursionError or a hang.
MAX_FILE_BYTES = 256 << 10
MAX_YAML_DEPTH = 32  # nesting of lists and mappings; the sections need 5
MAX_YAML_NODES = 20_000  # values, counting each alias as the copy it stands for
MAX_INT_CHARS = 40  # a 64-bit seed is 20 digits


class _Refused(yaml.MarkedYAMLError):
    """A document beyond the bounds above (raised while it is read)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (a silent override
    otherwise) and documents beyond the bounds above while composing them,
    before anything is built from them."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._weight: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases expanded

    def compose_node(self, parent, index):
        if self._depth >= MAX_YAML_DEPTH:
            raise _Refused(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark)
        start = self.peek_event().start_mark
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        weight = self._weight.get(id(node))
        if weight is None:  # a new node (an alias returns one already weighed)
            if isinstance(node, yaml.SequenceNode):
                weight = 1 + sum(self._weight[id(n)] for n in node.value)
            elif isinstance(node, yaml.MappingNode):
                weight = 1 + sum(self._weight[id(k)] + self._weight[id(v)] for k, v in node.value)
            else:
                weight = 1
            self._weight[id(node)] = weight
        if weight > MAX_YAML_NODES:
            raise _Refused(None, None, f"more than {MAX_YAML_NODES} values once aliases are expanded", start)
        return node


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
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {show(key)}", key_node.start_mark)
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


def _construct_int(loader, node):
    if len(node.value) > MAX_INT_CHARS:  # int() refuses > 4300 digits with a traceback, and is slow before
        raise _Refused(None, None, f"an integer of {len(node.value)} characters is too long", node.start_mark)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _read_text(path: str) -> str:
    """The file at `path` as text, read with the bounds above: a FIFO, a device
    (/dev/zero) or a directory is refused rather than waited on or read forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO without a writer would block
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    kind = file_kind(os.fstat(fd).st_mode)
    if kind:
        os.close(fd)
        raise ConfigError(f"{path}: cannot read: {kind}, not a regular file")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {fmt_bytes(MAX_FILE_BYTES)}, not a sensor configuration")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_config(path: str | None, env: Mapping[str, str] = os.environ, ncpus: int | None = None) -> Config:
    """Load and validate the YAML file at `path`; None gives the defaults.

    `ncpus` is the CPU count the memory guard assumes (default: possible_cpus()).
    Raises ConfigError."""
    if path is None:
        return parse_config("", "<defaults>", env, ncpus)
    return parse_config(_read_text(path), path, env, ncpus)


def parse_config(
    text: str, source: str = "<string>", env: Mapping[str, str] = os.environ, ncpus: int | None = None
) -> Config:
    """Like load_config() for YAML text; `source` names it in errors."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except _Refused as e:
        raise ConfigError(f"{source}:{e.problem_mark.line + 1}: refused: {e.problem}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        why = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise ConfigError(f"{where}: YAML syntax error: {excerpt(why, 200)}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: YAML syntax error: {excerpt(' '.join(str(e).split()), 200)}") from None
    return _Builder(source, env).build(data, ncpus)


class _Builder(Reader):
    def __init__(self, source: str, env: Mapping[str, str]):
        super().__init__(env)
        self.source = source

    def build(self, data, ncpus: int | None) -> Config:
        try:
            cfg = self._config(data)
            self._guard(cfg, possible_cpus() if ncpus is None else ncpus)
        except Invalid as e:
            raise ConfigError(f"{self.source}: {e}") from None
        return cfg

    def _fields(self, value, path: str) -> tuple[str, ...]:
        value = self.expand(value, path)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise Invalid(path, f"expected a list of fields, got {typename(value)}")
        if not value:
            raise Invalid(path, "must name at least one field")
        names = tuple(abi.FIELD_BITS)
        out = []
        for i, f in enumerate(value):
            p = f"{path}[{i}]"
            f = self.expand(f, p)
            if not isinstance(f, str) or f not in abi.FIELD_BITS:
                close = difflib.get_close_matches(str(f), names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "fields: " + ", ".join(names)
                raise Invalid(p, f"unknown field {show(f)} ({hint})")
            if f in out:
                raise Invalid(p, f"{f} is listed twice")
            out.append(f)
        return tuple(out)

    # --- sections

    def _config(self, data) -> Config:
        top = self.mapping(data, "", _TOP_KEYS, "a mapping with sensor, tasks, alerts, api, store and fleet")
        sensor = self._sensor(top.get("sensor"))
        raw_tasks = top.get("tasks")
        if raw_tasks is None:
            tasks = default_tasks()
        else:
            tasks = self._tasks(raw_tasks)
        alerts = parse_alerts(self, top.get("alerts"), tasks)
        api = parse_api(self, top.get("api"))
        store = parse_store(self, top.get("store"))
        return Config(sensor, tasks, self.source, alerts, api, store, parse_fleet(self, top.get("fleet")))

    def _sensor(self, value) -> SensorConfig:
        m = self.mapping(value, "sensor", _SENSOR_KEYS)
        kw = {}
        if "id" in m:
            sid = self.expand(m["id"], "sensor.id")
            if sid is None:
                sid = ""
            if not isinstance(sid, str) or not (sid == "" or ID_RE.fullmatch(sid)):
                raise Invalid("sensor.id", f"{show(sid)} must be 1-64 of A-Z a-z 0-9 . _ - (a host name will do)")
            kw["id"] = sid
        if "epoch" in m:
            kw["epoch_s"] = self.parsed(m["epoch"], "sensor.epoch", parse_epoch)
        if "mode" in m:
            kw["mode"] = self.choice(m["mode"], "sensor.mode", MODES)
        if "flow_capacity" in m:
            kw["flow_capacity"] = self.integer(m["flow_capacity"], "sensor.flow_capacity", 0, FLOW_CAPACITY_MAX)
        if "ringbuf_pages" in m:
            kw["ringbuf_pages"] = self.integer(m["ringbuf_pages"], "sensor.ringbuf_pages", 1, RINGBUF_PAGES_MAX, True)
        if "top" in m:
            kw["top"] = self.integer(m["top"], "sensor.top", 1, TOP_MAX)
        if "timestamps" in m:
            kw["timestamps"] = self.choice(m["timestamps"], "sensor.timestamps", TIMESTAMPS)
        if "sketch_mode" in m:
            kw["sketch_mode"] = self.choice(m["sketch_mode"], "sensor.sketch_mode", SKETCH_MODES)
        if "max_kernel_memory" in m:
            kw["max_kernel_memory"] = self.parsed(m["max_kernel_memory"], "sensor.max_kernel_memory", parse_size)
        if "metrics_address" in m:
            raw = self.expand(m["metrics_address"], "sensor.metrics_address")
            if raw is None:
                raw = ""
            if raw != "":
                try:
                    parse_address(raw)
                except ValueError as e:
                    raise Invalid("sensor.metrics_address", str(e)) from None
                raw = raw.strip()
            kw["metrics_address"] = raw
        if "interfaces" in m:
            raw = self.expand(m["interfaces"], "sensor.interfaces")
            if isinstance(raw, str):
                raw = [raw]
            if raw is None:
                raw = []
            if not isinstance(raw, list):
                raise Invalid("sensor.interfaces", f"expected a list of interface names, got {typename(raw)}")
            names = [self.expand(v, f"sensor.interfaces[{i}]") for i, v in enumerate(raw)]
            try:
                kw["interfaces"] = check_interfaces(names)
            except ValueError as e:
                raise Invalid("sensor.interfaces", str(e)) from None
        return SensorConfig(**kw)

    def _tasks(self, value) -> tuple[TaskSpec, ...]:
        if not isinstance(value, list):
            raise Invalid("tasks", f"expected a list of tasks, got {typename(value)}")
        if len(value) > abi.MAX_TASKS:
            raise Invalid("tasks", f"{len(value)} tasks given, at most {abi.MAX_TASKS}")
        out: list[TaskSpec] = []
        for i, raw in enumerate(value):
            spec = self._task(raw, f"tasks[{i}]")
            for j, prev in enumerate(out):
                if prev.name == spec.name:
                    raise Invalid(f"tasks[{i}].name", f"{spec.name!r} is also the name of tasks[{j}]")
            out.append(spec)
        try:
            layout(out)
        except ValueError as e:
            raise Invalid("tasks", str(e)) from None
        return tuple(out)

    def _task(self, value, path: str) -> TaskSpec:
        m = self.mapping(value, path, _TASK_KEYS, "a task mapping")
        for req, what in (("name", "[a-z0-9_]+"), ("kind", "countmin or superspread"), ("key", "a list of fields")):
            if req not in m:
                raise Invalid(path, f"missing {req!r} ({what})")
        name = self.expand(m["name"], f"{path}.name")
        if not isinstance(name, str):
            raise Invalid(f"{path}.name", f"{show(name)} is not a string (quote it)")
        if not NAME_RE.fullmatch(name):
            raise Invalid(f"{path}.name", f"{show(name)} must match [a-z0-9_]+")
        kind = self.choice(m["kind"], f"{path}.kind", (COUNTMIN, SUPERSPREAD))
        for opt, only in _ONLY_FOR.items():
            if opt in m and kind != only:
                raise Invalid(f"{path}.{opt}", f"only for {only} tasks")
        key = self._fields(m["key"], f"{path}.key")
        d = KIND_DEFAULTS[kind]
        if kind == COUNTMIN:
            depth = self.integer(m.get("depth", d["depth"]), f"{path}.depth", 1, DEPTH_MAX)
            width = self.integer(m.get("width", d["width"]), f"{path}.width", WIDTH_MIN, WIDTH_MAX, True)
        else:
            depth = 1
            width = self.integer(m.get("width", d["width"]), f"{path}.width", SS_WIDTH_MIN, SS_WIDTH_MAX, True)
        seed = self.integer(m["seed"], f"{path}.seed", 0, SEED_MAX) if "seed" in m else derive_seed(name)
        kw = {}
        if kind == SUPERSPREAD:
            if "element" not in m:
                raise Invalid(path, "missing 'element' (superspread tasks count distinct elements per key)")
            element = self._fields(m["element"], f"{path}.element")
            both = [f for f in element if f in key]
            if both:
                raise Invalid(f"{path}.element", f"{', '.join(both)} is also in the key")
            kw["element"] = element
            kw["registers"] = self.integer(
                m.get("registers", d["registers"]), f"{path}.registers", REGISTERS_MIN, REGISTERS_MAX, True
            )
            if kw["registers"] >= width:
                raise Invalid(
                    f"{path}.registers",
                    f"{kw['registers']} must be less than width {width} (the register pool shared by all keys)",
                )
            kw["elem_seed"] = (
                self.integer(m["elem_seed"], f"{path}.elem_seed", 0, SEED_MAX)
                if "elem_seed" in m
                else derive_seed(name + ":elem")
            )
            kw["spread_threshold"] = self.integer(
                m.get("spreader_threshold", DEFAULT_SPREADER_THRESHOLD), f"{path}.spreader_threshold", 1
            )
        else:
            hh = self.mapping(m.get("heavy_hitter"), f"{path}.heavy_hitter", _HH_KEYS)
            kw["hh_packets"] = self.integer(hh.get("packets", DEFAULT_HH_PACKETS), f"{path}.heavy_hitter.packets", 0)
            kw["hh_bytes"] = self.integer(hh.get("bytes", DEFAULT_HH_BYTES), f"{path}.heavy_hitter.bytes", 0)
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
                raise Invalid(path, f"too large for {ncpus} CPUs: an array would need 2^32 or more elements")
        mem = kernel_memory(cfg, ncpus)
        limit = cfg.sensor.max_kernel_memory
        if mem["total"] > limit:
            need, have = fmt_bytes(mem["total"]), fmt_bytes(limit)
            if need == have:  # too close to tell apart when rounded
                need, have = f"{need} ({mem['total']} B)", f"{have} ({limit} B)"
            raise Invalid(
                "",
                f"the maps need {need} of kernel memory on {ncpus} CPUs "
                f"(countmin {fmt_bytes(mem['countmin'])}, superspread {fmt_bytes(mem['superspread'])}, "
                f"flows {fmt_bytes(mem['flows'])}), more than sensor.max_kernel_memory {have}; "
                "lower the tasks' width, depth or registers or sensor.flow_capacity, "
                "or raise sensor.max_kernel_memory",
            )


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
        f"  epoch: {fmt_duration(DEFAULT_EPOCH_S)}",
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
        "  # Interfaces `netspectra-sensor attach` attaches to when none is given on",
        "  # the command line: one XDP program each, one metrics endpoint and query API.",
        "  interfaces: []",
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
        "",
        *store_defaults_yaml_lines(),
        "",
        *fleet_defaults_yaml_lines(),
    ]
    return "\n".join(lines) + "\n"
