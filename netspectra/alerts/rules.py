"""Alert rules and notifiers from the `alerts:` section of the config file.

parse_alerts() is called by netspectra.config with the tasks already parsed, so
a rule naming a task can be checked against it; every problem is a one-line
error naming the dotted key (alerts.rules[2].threshold: ...).  docs/alerts.md
is the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..configkit import NAME_RE, Invalid, Reader, parse_duration, show, typename
from ..tasks import COUNTMIN, SUPERSPREAD, TaskSpec

KINDS = ("heavy_hitter", "super_spreader", "fan_in", "traffic_spike", "flow_table", "sensor_health")
SEVERITIES = ("info", "warning", "critical")
NOTIFIER_KINDS = ("alertmanager", "webhook", "email")
HH_METRICS = ("packets", "bytes", "rate_bps")
SPIKE_METRICS = ("packets", "bytes")

DEFAULT_REPEAT_S = 300.0
DEFAULT_HISTORY = 1000
HISTORY_MAX = 1_000_000
DEFAULT_FILL = 0.9
DEFAULT_PROCESSING_FRACTION = 0.5
DEFAULT_FACTOR = 3.0
DEFAULT_WARMUP = 12
DEFAULT_SMOOTHING = 0.1

_COMMON = ("name", "kind", "severity", "for")
_RULE_KEYS = {
    "heavy_hitter": _COMMON + ("task", "metric", "threshold"),
    "super_spreader": _COMMON + ("task", "threshold"),
    "fan_in": _COMMON + ("task", "threshold"),
    "traffic_spike": _COMMON + ("metric", "factor", "min_rate", "warmup", "smoothing"),
    "flow_table": _COMMON + ("threshold",),
    "sensor_health": _COMMON + ("threshold",),
}
_SECTION_KEYS = ("rules", "notifiers", "repeat_interval", "history")
_NOTIFIER_COMMON = ("name", "kind", "timeout", "retries", "backoff")
_NOTIFIER_KEYS = {
    "alertmanager": _NOTIFIER_COMMON + ("url", "generator_url"),
    "webhook": _NOTIFIER_COMMON + ("url", "secret"),
    "email": _NOTIFIER_COMMON + ("host", "port", "from", "to", "starttls", "username", "password"),
}


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    severity: str = "warning"
    for_epochs: int = 1  # consecutive epochs the condition must hold before firing
    task: str = ""  # heavy_hitter, super_spreader, fan_in
    metric: str = ""  # heavy_hitter: packets|bytes|rate_bps; traffic_spike: packets|bytes (per second)
    threshold: float = 0.0  # flow_table: fill ratio; sensor_health: processing time / epoch length
    factor: float = DEFAULT_FACTOR  # traffic_spike: rate > factor x baseline
    min_rate: float = 0.0  # traffic_spike: and rate > min_rate
    warmup: int = DEFAULT_WARMUP  # traffic_spike: epochs of baseline before it can fire
    smoothing: float = DEFAULT_SMOOTHING  # traffic_spike: EWMA weight of the newest epoch


@dataclass(frozen=True)
class NotifierSpec:
    name: str
    kind: str
    url: str = ""
    secret: str = ""
    generator_url: str = ""
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 1.0  # first retry delay; doubles each retry
    host: str = ""
    port: int = 25
    sender: str = ""
    to: tuple[str, ...] = ()
    starttls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class AlertsConfig:
    rules: tuple[Rule, ...] = ()
    notifiers: tuple[NotifierSpec, ...] = ()
    repeat_interval: float = DEFAULT_REPEAT_S
    history: int = DEFAULT_HISTORY


# (name, kind, severity, options) of the default rules; a rule naming a task
# is kept only if the configuration has that task with the right kind.
DEFAULT_RULES = (
    ("heavy_source", "heavy_hitter", "warning", {"task": "src", "metric": "rate_bps", "threshold": 100e6}),
    ("heavy_flow", "heavy_hitter", "info", {"task": "flow", "metric": "rate_bps", "threshold": 50e6}),
    ("scanner", "super_spreader", "warning", {"task": "spread_dst", "threshold": 500.0}),
    ("ddos_victim", "fan_in", "critical", {"task": "fanin_src", "threshold": 1000.0}),
    ("port_scan", "super_spreader", "warning", {"task": "port_scan", "threshold": 100.0}),
    ("traffic_spike", "traffic_spike", "warning", {"metric": "bytes", "factor": 5.0, "min_rate": 1e6}),
    ("flow_table_full", "flow_table", "warning", {"threshold": DEFAULT_FILL}),
    ("sensor_health", "sensor_health", "critical", {"threshold": DEFAULT_PROCESSING_FRACTION}),
)
_TASK_KIND = {"heavy_hitter": COUNTMIN, "super_spreader": SUPERSPREAD, "fan_in": SUPERSPREAD}


def default_rules(tasks: tuple[TaskSpec, ...]) -> tuple[Rule, ...]:
    kinds = {t.name: t.kind for t in tasks}
    out = []
    for name, kind, severity, opts in DEFAULT_RULES:
        if "task" in opts and kinds.get(opts["task"]) != _TASK_KIND[kind]:
            continue
        out.append(Rule(name=name, kind=kind, severity=severity, **opts))
    return tuple(out)


def default_alerts(tasks: tuple[TaskSpec, ...]) -> AlertsConfig:
    return AlertsConfig(rules=default_rules(tasks))


def parse_alerts(b: Reader, value, tasks: tuple[TaskSpec, ...]) -> AlertsConfig:
    """The `alerts` section; `b` reads the values (configkit.Reader)."""
    m = b.mapping(value, "alerts", _SECTION_KEYS)
    kw = {}
    if "repeat_interval" in m:
        kw["repeat_interval"] = b.parsed(m["repeat_interval"], "alerts.repeat_interval", parse_duration)
        if kw["repeat_interval"] <= 0:
            raise Invalid("alerts.repeat_interval", "must be more than 0")
    if "history" in m:
        kw["history"] = b.integer(m["history"], "alerts.history", 1, HISTORY_MAX)
    if m.get("rules") is None:
        kw["rules"] = default_rules(tasks)
    else:
        raw = m["rules"]
        if not isinstance(raw, list):
            raise Invalid("alerts.rules", f"expected a list of rules, got {typename(raw)}")
        rules: list[Rule] = []
        for i, r in enumerate(raw):
            rule = _rule(b, r, f"alerts.rules[{i}]", tasks)
            for j, prev in enumerate(rules):
                if prev.name == rule.name:
                    raise Invalid(f"alerts.rules[{i}].name", f"{rule.name!r} is also the name of alerts.rules[{j}]")
            rules.append(rule)
        kw["rules"] = tuple(rules)
    raw = m.get("notifiers")
    if raw is not None:
        if not isinstance(raw, list):
            raise Invalid("alerts.notifiers", f"expected a list of notifiers, got {typename(raw)}")
        nots: list[NotifierSpec] = []
        for i, n in enumerate(raw):
            spec = _notifier(b, n, f"alerts.notifiers[{i}]")
            for j, prev in enumerate(nots):
                if prev.name == spec.name:
                    raise Invalid(
                        f"alerts.notifiers[{i}].name", f"{spec.name!r} is also the name of alerts.notifiers[{j}]"
                    )
            nots.append(spec)
        kw["notifiers"] = tuple(nots)
    return AlertsConfig(**kw)


def _number(b: Reader, value, path: str, lo: float, hi: float | None = None, lo_open: bool = False) -> float:
    value = b.expand(value, path)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise Invalid(path, f"{show(value)} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise Invalid(path, f"{show(value)} is not a number")
    value = float(value)
    if not math.isfinite(value):  # .inf: a rule that can never fire (or always does)
        raise Invalid(path, f"{show(value)} is not a finite number")
    if (value <= lo if lo_open else value < lo) or (hi is not None and value > hi):
        lo_txt = f"> {lo:g}" if lo_open else f">= {lo:g}"
        rng = f"{lo_txt} and <= {hi:g}" if hi is not None else lo_txt
        raise Invalid(path, f"{value:g} is out of range (must be {rng})")
    return value


def _str(b: Reader, value, path: str) -> str:
    value = b.expand(value, path)
    if not isinstance(value, str) or not value.strip():
        raise Invalid(path, f"{show(value)} is not a non-empty string")
    return value.strip()


def _rule(b: Reader, value, path: str, tasks: tuple[TaskSpec, ...]) -> Rule:
    if not isinstance(value, dict):
        b.mapping(value, path, (), "a rule mapping")  # raises the type error
    for req in ("name", "kind"):
        if req not in value:
            raise Invalid(path, f"missing {req!r}")
    kind = b.choice(value["kind"], f"{path}.kind", KINDS)
    m = b.mapping(value, path, _RULE_KEYS[kind], "a rule mapping")
    name = b.expand(m["name"], f"{path}.name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise Invalid(f"{path}.name", f"{show(name)} must match [a-z0-9_]+")
    kw = {"name": name, "kind": kind}
    if "severity" in m:
        kw["severity"] = b.choice(m["severity"], f"{path}.severity", SEVERITIES)
    if "for" in m:
        kw["for_epochs"] = b.integer(m["for"], f"{path}.for", 1, 1_000_000)
    if kind in _TASK_KIND:
        if "task" not in m:
            raise Invalid(path, f"missing 'task' (a {_TASK_KIND[kind]} task)")
        task = b.expand(m["task"], f"{path}.task")
        found = {t.name: t.kind for t in tasks}
        if task not in found:
            raise Invalid(f"{path}.task", f"no task named {show(task)} (tasks: {', '.join(found) or 'none'})")
        if found[task] != _TASK_KIND[kind]:
            raise Invalid(f"{path}.task", f"{task!r} is a {found[task]} task; {kind} needs a {_TASK_KIND[kind]} task")
        kw["task"] = task
    if kind == "heavy_hitter":
        kw["metric"] = b.choice(m.get("metric", "packets"), f"{path}.metric", HH_METRICS)
    if kind == "traffic_spike":
        kw["metric"] = b.choice(m.get("metric", "bytes"), f"{path}.metric", SPIKE_METRICS)
        if "factor" in m:
            kw["factor"] = _number(b, m["factor"], f"{path}.factor", 1.0, lo_open=True)
        if "min_rate" in m:
            kw["min_rate"] = _number(b, m["min_rate"], f"{path}.min_rate", 0.0)
        if "warmup" in m:
            kw["warmup"] = b.integer(m["warmup"], f"{path}.warmup", 1, 1_000_000)
        if "smoothing" in m:
            kw["smoothing"] = _number(b, m["smoothing"], f"{path}.smoothing", 0.0, 1.0, lo_open=True)
    if kind in ("heavy_hitter", "super_spreader", "fan_in"):
        if "threshold" not in m:
            raise Invalid(path, "missing 'threshold'")
        kw["threshold"] = _number(b, m["threshold"], f"{path}.threshold", 0.0, lo_open=True)
    elif kind == "flow_table":
        kw["threshold"] = _number(b, m.get("threshold", DEFAULT_FILL), f"{path}.threshold", 0.0, 1.0, lo_open=True)
    elif kind == "sensor_health":
        kw["threshold"] = _number(
            b, m.get("threshold", DEFAULT_PROCESSING_FRACTION), f"{path}.threshold", 0.0, 1.0, lo_open=True
        )
    return Rule(**kw)


def _notifier(b: Reader, value, path: str) -> NotifierSpec:
    if not isinstance(value, dict):
        b.mapping(value, path, (), "a notifier mapping")
    if "kind" not in value:
        raise Invalid(path, f"missing 'kind' ({', '.join(NOTIFIER_KINDS)})")
    kind = b.choice(value["kind"], f"{path}.kind", NOTIFIER_KINDS)
    m = b.mapping(value, path, _NOTIFIER_KEYS[kind], "a notifier mapping")
    name = b.expand(m.get("name", kind), f"{path}.name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise Invalid(f"{path}.name", f"{show(name)} must match [a-z0-9_]+")
    kw = {"name": name, "kind": kind}
    for opt in ("timeout", "backoff"):
        if opt in m:
            kw[opt] = b.parsed(m[opt], f"{path}.{opt}", parse_duration)
    if kw.get("timeout", 1.0) <= 0:
        raise Invalid(f"{path}.timeout", "must be more than 0")
    if "retries" in m:
        kw["retries"] = b.integer(m["retries"], f"{path}.retries", 0, 100)
    if kind in ("alertmanager", "webhook"):
        if "url" not in m:
            raise Invalid(path, "missing 'url'")
        url = _str(b, m["url"], f"{path}.url")
        if not url.startswith(("http://", "https://")):
            raise Invalid(f"{path}.url", f"{url!r} is not an http:// or https:// URL")
        kw["url"] = url
        if "secret" in m:
            kw["secret"] = _str(b, m["secret"], f"{path}.secret")
        if "generator_url" in m:
            kw["generator_url"] = _str(b, m["generator_url"], f"{path}.generator_url")
    else:
        for req in ("host", "from", "to"):
            if req not in m:
                raise Invalid(path, f"missing {req!r}")
        kw["host"] = _str(b, m["host"], f"{path}.host")
        kw["sender"] = _str(b, m["from"], f"{path}.from")
        to = b.expand(m["to"], f"{path}.to")
        to = [to] if isinstance(to, str) else to
        if not isinstance(to, list) or not to:
            raise Invalid(f"{path}.to", "expected an address or a list of addresses")
        kw["to"] = tuple(_str(b, a, f"{path}.to[{i}]") for i, a in enumerate(to))
        if "port" in m:
            kw["port"] = b.integer(m["port"], f"{path}.port", 1, 65535)
        if "starttls" in m:
            st = b.expand(m["starttls"], f"{path}.starttls")
            if not isinstance(st, bool):
                raise Invalid(f"{path}.starttls", f"{show(st)} is not true or false")
            kw["starttls"] = st
        for opt in ("username", "password"):
            if opt in m:
                kw[opt] = _str(b, m[opt], f"{path}.{opt}")
        if bool(kw.get("username")) != bool(kw.get("password")):
            raise Invalid(path, "username and password go together")
    return NotifierSpec(**kw)
