"""The alert engine: pure evaluation of epoch snapshots against the rules.

Engine.evaluate(snapshot, now) returns the notification events of that epoch
(no threads, no I/O; the clock is the `now` argument).  An alert's identity is
its label set (alertname, rule, sensor, interface, task, the key's fields,
severity, source), the same labels the shipped Prometheus rules give the same
event (docs/alerts.md, "One alert story"); its lifecycle:

    pending   the condition holds for fewer than `for` consecutive epochs
    firing    it held `for` epochs: a "firing" event, repeated every
              repeat_interval while it keeps holding
    resolved  the condition stopped: a "resolved" event with ends_at (only
              for alerts that fired; a pending alert is just dropped)

Events are also kept in a bounded history (a deque of `history` entries).
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..tasks import spread_kind
from .rules import AlertsConfig, Rule

# Per rule and epoch, at most this many keys are considered (the largest
# values), so the set of active alerts stays bounded whatever the traffic.
MAX_KEYS_PER_RULE = 100

_UNITS = {"packets": "packets", "bytes": "bytes", "rate_bps": "bit/s"}

# The `source` label: who raised an alert.  The shipped Prometheus rules say
# "prometheus"; Alertmanager's example inhibits their copy of an event the
# sensor already raised (exporters/alertmanager/alertmanager.example.yml).
SOURCE = "sensor"

# alertname of each condition, as the shipped Prometheus rules name the same event.
ALERTNAMES = {
    "heavy_hitter": "NetspectraHeavyHitter",
    "super_spreader": "NetspectraSuperSpreader",
    "port_scan": "NetspectraPortScan",  # a super_spreader rule on a port-scan task (tasks.spread_kind)
    "fan_in": "NetspectraFanInVictim",
    "traffic_spike": "NetspectraTrafficSpike",
    "fill": "NetspectraFlowTableNearFull",
    "untracked": "NetspectraFlowsUntracked",
    "candidates_lost": "NetspectraCandidatesLost",
    "processing_time": "NetspectraEpochProcessingSlow",
}


def _over(vals: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the values above threshold, largest first, at most
    MAX_KEYS_PER_RULE (the bound on alerts per rule and epoch)."""
    idx = np.flatnonzero(vals > threshold)
    return idx[np.argsort(-vals[idx], kind="stable")][:MAX_KEYS_PER_RULE]


@dataclass(frozen=True)
class Event:
    """A notification: an alert starting or repeating (firing) or ending (resolved)."""

    status: str  # firing | resolved
    labels: dict  # alertname, rule, sensor, interface, [task, key fields], severity, source
    value: float
    threshold: float
    starts_at: float  # unix time the condition was first seen
    ends_at: float | None = None  # resolved: unix time it was seen gone
    summary: str = ""
    description: str = ""
    repeat: bool = False  # a repeat notification of an alert already firing
    key: str = ""  # the key's fields as text (src_ip=10.0.0.1 dst_port=80), for people

    @property
    def rule(self) -> str:
        return self.labels["rule"]

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]

    @property
    def identity(self) -> tuple:
        return tuple(sorted(self.labels.items()))

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "key": self.key,
            "value": self.value,
            "threshold": self.threshold,
            "starts_at": round(self.starts_at, 6),
            "ends_at": None if self.ends_at is None else round(self.ends_at, 6),
            "summary": self.summary,
            "description": self.description,
        }


@dataclass
class _Alert:
    labels: dict
    value: float
    threshold: float
    starts_at: float
    summary: str
    description: str
    key: str = ""
    held: int = 0  # consecutive epochs the condition held
    firing: bool = False
    last_sent: float = 0.0

    def event(self, status: str, ends_at: float | None = None, repeat: bool = False) -> Event:
        return Event(
            status,
            dict(self.labels),
            self.value,
            self.threshold,
            self.starts_at,
            ends_at,
            self.summary,
            self.description,
            repeat,
            self.key,
        )


@dataclass
class _Spike:
    baseline: float | None = None
    epochs: int = 0


@dataclass(frozen=True)
class _Hit:
    task: str
    key: str  # text, for people ("" without a key)
    value: float
    threshold: float
    summary: str
    description: str = ""
    condition: str = ""  # ALERTNAMES entry, when not the rule's kind
    fields: tuple = ()  # (name, value) of the key's fields: labels


def _fmt(v: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.4g}"


def _how(snap, estimate: str) -> str:
    """How a value of the epoch was counted."""
    return "exact, from the flows" if snap.exact else estimate


@dataclass
class Engine:
    config: AlertsConfig
    interface: str = ""
    sensor: str = field(default_factory=socket.gethostname)
    flow_capacity: int = 0  # flow_table rules need it

    def __post_init__(self):
        self._active: dict[tuple, _Alert] = {}
        self._spikes: dict[str, _Spike] = {r.name: _Spike() for r in self.config.rules}
        self.history: deque[Event] = deque(maxlen=self.config.history)

    # ------------------------------------------------------------ public

    def evaluate(self, snap, now: float) -> list[Event]:
        """Evaluate every rule on one epoch; the events to notify, in rule order."""
        repeat_s = self.config.repeat_interval
        seen: set[tuple] = set()
        events: list[Event] = []
        for rule in self.config.rules:
            for hit in self._check(rule, snap)[:MAX_KEYS_PER_RULE]:
                labels = self._labels(rule, hit)
                ident = tuple(sorted(labels.items()))
                if ident in seen:  # dedup: one alert per identity and epoch
                    continue
                seen.add(ident)
                a = self._active.get(ident)
                if a is None:
                    a = self._active[ident] = _Alert(labels, hit.value, hit.threshold, now, hit.summary, "", hit.key)
                a.value, a.threshold, a.summary = hit.value, hit.threshold, hit.summary
                a.description = hit.description or hit.summary
                a.held += 1
                if not a.firing and a.held >= rule.for_epochs:
                    a.firing, a.last_sent = True, now
                    events.append(a.event("firing"))
                elif a.firing and now - a.last_sent >= repeat_s:
                    a.last_sent = now
                    events.append(a.event("firing", repeat=True))
        for ident in [i for i in self._active if i not in seen]:
            a = self._active.pop(ident)
            if a.firing:
                events.append(a.event("resolved", ends_at=now))
        self.history.extend(events)
        return events

    def active(self) -> list[Event]:
        """Alerts firing now (as firing events), by rule then key."""
        return [a.event("firing") for a in self._active.values() if a.firing]

    def pending(self) -> list[Event]:
        return [a.event("pending") for a in self._active.values() if not a.firing]

    def _labels(self, rule: Rule, hit: _Hit) -> dict:
        """The labels of an alert: those the shipped Prometheus rules give the
        same event, so Alertmanager groups and inhibits the two as one."""
        labels = {
            "alertname": ALERTNAMES[hit.condition or rule.kind],
            "rule": rule.name,
            "sensor": self.sensor,
            "interface": self.interface,
        }
        if hit.task:
            labels["task"] = hit.task
        labels.update((name, str(value)) for name, value in hit.fields)
        labels["severity"] = rule.severity
        labels["source"] = SOURCE
        return labels

    # ------------------------------------------------------------ rules

    def _check(self, rule: Rule, snap) -> list[_Hit]:
        return getattr(self, "_" + rule.kind)(rule, snap)

    def _keys(self, snap, task: str, keys) -> list[tuple[str, tuple]]:
        """(text, label fields) of each key."""
        from ..snapshot import key_json

        out = []
        for k in keys:
            fields = tuple(key_json(k, snap.sketch.layout, task).items())
            out.append((" ".join(f"{n}={v}" for n, v in fields), fields))
        return out

    def _heavy_hitter(self, rule: Rule, snap) -> list[_Hit]:
        hh = snap.heavy.get(rule.task)
        if hh is None or not len(hh.keys):
            return []
        if rule.metric == "packets":
            vals = hh.packets.astype(np.float64)
        else:
            vals = hh.bytes.astype(np.float64)
            if rule.metric == "rate_bps":
                vals = vals * 8.0 / snap.duration
        idx = _over(vals, rule.threshold)
        unit = _UNITS[rule.metric]
        labels = self._keys(snap, rule.task, hh.keys[idx])
        return [
            _Hit(
                rule.task,
                key,
                float(vals[i]),
                rule.threshold,
                f"heavy hitter {key} ({rule.task}): {_fmt(vals[i])} {unit} > {_fmt(rule.threshold)} {unit}",
                f"Task {rule.task}: key {key} had {_fmt(vals[i])} {unit} in the epoch "
                f"({_how(snap, 'Count-Min estimate')}), over the threshold {_fmt(rule.threshold)} {unit} "
                f"of rule {rule.name}.",
                fields=fields,
            )
            for i, (key, fields) in zip(idx, labels)
        ]

    def _spread(self, rule: Rule, snap) -> list[_Hit]:
        keys, est = snap.spreaders.get(rule.task, (None, None))
        if keys is None or not len(keys):
            return []
        what = spread_kind(snap.sketch.layout.by_name(rule.task).spec)
        condition = "port_scan" if rule.kind == "super_spreader" and what == "port scan" else ""
        vals = np.asarray(est, np.float64)
        idx = _over(vals, rule.threshold)
        labels = self._keys(snap, rule.task, keys[idx])
        return [
            _Hit(
                rule.task,
                key,
                float(vals[i]),
                rule.threshold,
                f"{what} {key} ({rule.task}): {vals[i]:.0f} distinct > {rule.threshold:g}",
                f"Task {rule.task}: key {key} reached {vals[i]:.0f} distinct elements in the epoch "
                f"({_how(snap, 'estimate')}), over the threshold {rule.threshold:g} of rule {rule.name}.",
                condition,
                fields,
            )
            for i, (key, fields) in zip(idx, labels)
        ]

    def _super_spreader(self, rule: Rule, snap) -> list[_Hit]:
        return self._spread(rule, snap)

    def _fan_in(self, rule: Rule, snap) -> list[_Hit]:
        return self._spread(rule, snap)

    def _traffic_spike(self, rule: Rule, snap) -> list[_Hit]:
        st = self._spikes.setdefault(rule.name, _Spike())
        p, b = snap.counter("all")
        rate = (p if rule.metric == "packets" else b) / snap.duration
        hits = []
        if st.baseline is not None and st.epochs >= rule.warmup:
            limit = max(rule.factor * st.baseline, rule.min_rate)
            if rate > limit:
                unit = f"{rule.metric}/s"
                hits.append(
                    _Hit(
                        "",
                        "",
                        rate,
                        limit,
                        f"traffic spike: {_fmt(rate)} {unit} > {rule.factor:g} x baseline {_fmt(st.baseline)} {unit}",
                        f"The {rule.metric} rate {_fmt(rate)} {unit} is over {rule.factor:g} times the moving "
                        f"baseline {_fmt(st.baseline)} {unit} (and over min_rate {_fmt(rule.min_rate)}).",
                    )
                )
        st.baseline = rate if st.baseline is None else st.baseline + rule.smoothing * (rate - st.baseline)
        st.epochs += 1
        return hits

    def _flow_table(self, rule: Rule, snap) -> list[_Hit]:
        hits = []
        if not self.flow_capacity:  # sketch-only by configuration: every packet is untracked
            return hits
        fill = snap.table_fill
        if fill >= rule.threshold:
            hits.append(
                _Hit(
                    "",
                    "",
                    fill,
                    rule.threshold,
                    f"flow table {fill:.0%} full (threshold {rule.threshold:.0%})",
                    f"The fullest CPU's table holds {fill * self.flow_capacity:.0f} flows of "
                    f"{self.flow_capacity} (sensor.flow_capacity); {len(snap.flows)} flows in the epoch.",
                    "fill",
                )
            )
        untracked = snap.counter("flow_untracked")[0]
        if untracked > 0:
            hits.append(
                _Hit(  # per second, like the Prometheus rule's rate()
                    "",
                    "",
                    untracked / snap.duration,
                    0.0,
                    f"flow table overflowing: {_fmt(untracked / snap.duration)} packets/s untracked",
                    f"{untracked} packets found no room in the flow table in the epoch; heavy hitters and spreads "
                    "are estimates until it holds again; raise sensor.flow_capacity.",
                    "untracked",
                )
            )
        return hits

    def _sensor_health(self, rule: Rule, snap) -> list[_Hit]:
        hits = []
        lost = snap.counter("cand_lost")[0]
        if lost > 0:
            hits.append(
                _Hit(  # per second, like the Prometheus rule's rate()
                    "",
                    "",
                    lost / snap.duration,
                    0.0,
                    f"heavy-hitter candidate reports lost: {_fmt(lost / snap.duration)}/s",
                    f"{lost} candidate reports were lost in the epoch: the ring buffer was full; "
                    "raise sensor.ringbuf_pages.",
                    "candidates_lost",
                )
            )
        frac = snap.processing_s / snap.duration
        if frac > rule.threshold:
            hits.append(
                _Hit(
                    "",
                    "",
                    frac,
                    rule.threshold,
                    f"epoch processing took {frac:.0%} of the epoch (threshold {rule.threshold:.0%})",
                    f"Reading and analysing the epoch took {snap.processing_s:.3f}s of {snap.duration:.3f}s.",
                    "processing_time",
                )
            )
        return hits


def render_active(active: list[Event], top: int = 10) -> str:
    """The live view's alerts section."""
    lines = [f"alerts firing: {len(active)}"]
    order = sorted(active, key=lambda e: (-("info", "warning", "critical").index(e.labels["severity"]), e.rule))
    for ev in order[:top]:
        lines.append(f"  {ev.labels['severity']:<8} {ev.rule:<20} {ev.summary}")
    if len(active) > top:
        lines.append(f"  ... and {len(active) - top} more")
    return "\n".join(lines)
