"""One alert story (issue 12): for the same epoch, the sensor's own alert
engine and the shipped Prometheus rules (evaluated by promtool on the sensor's
own exposition of that epoch) raise the same alerts with the same labels.

The only label that differs is `source` (who raised it: Alertmanager's example
inhibits the Prometheus copy with it); Prometheus adds job and instance, which
only a scrape knows.  promtool is the Debian package's (tests/unit/test_exporters.py).
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from netspectra import abi
from netspectra import packets as P
from netspectra.alerts.engine import Engine
from netspectra.config import load_config
from netspectra.metrics import SensorCollector
from netspectra.tasks import layout
from tests.helpers.epochs import epoch
from tests.unit.test_exporters import RULES, tool

SENSOR, IFACE = "edge-1", "eth0"
SCRAPE = {"job": "netspectra", "instance": "127.0.0.1:9781"}
HEAVY_SRC, HEAVY_DST, SCANNER = "10.1.1.1", "10.2.2.2", "10.9.9.9"


def traffic():
    """One 5 s epoch: 10.1.1.1 sends ~200 Mbit/s in one flow (over the src and
    flow heavy-hitter rules), 10.9.9.9 reaches 600 hosts (over the scanner rule)."""
    n_heavy, n_scan = 83_000, 600
    k = np.zeros(n_heavy + n_scan, abi.KEY)
    k["src"][:n_heavy] = np.frombuffer(P.mapped(HEAVY_SRC), np.uint8)
    k["dst"][:n_heavy] = np.frombuffer(P.mapped(HEAVY_DST), np.uint8)
    k["sport"][:n_heavy], k["dport"][:n_heavy] = 4000, 5000
    k["proto"][:n_heavy] = 17
    k["src"][n_heavy:] = np.frombuffer(P.mapped(SCANNER), np.uint8)
    for i in range(n_scan):
        k["dst"][n_heavy + i] = np.frombuffer(P.mapped(f"10.50.{i >> 8}.{i & 255}"), np.uint8)
    k["dport"][n_heavy:], k["proto"][n_heavy:] = 80, 6
    lengths = np.full(len(k), 1514, np.uint64)
    lengths[n_heavy:] = 60
    return k, lengths


def series(text: str) -> list[dict]:
    """The exposition as promtool input series, labelled as a scrape would."""
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in {**s.labels, **SCRAPE}.items())
            out.append({"series": f"{s.name}{{{labels}}}", "values": f"{s.value!r}x40"})
    return out


def test_sensor_alerts_and_prometheus_rules_agree(tmp_path):
    cfg = load_config(None)
    lay = layout(cfg.tasks, 2)
    snap = epoch(*traffic(), sensor=SENSOR, lay=lay)

    engine = Engine(cfg.alerts, interface=IFACE, sensor=SENSOR, flow_capacity=cfg.sensor.flow_capacity)
    events = engine.evaluate(snap, 1000.0)
    got = sorted((ev.alertname, ev.rule, ev.key) for ev in events)
    assert got == [  # the default rules that see this traffic, and nothing else
        ("NetspectraHeavyHitter", "heavy_flow", f"src_ip={HEAVY_SRC} dst_ip={HEAVY_DST} src_port=4000 dst_port=5000 proto=17"),
        ("NetspectraHeavyHitter", "heavy_source", f"src_ip={HEAVY_SRC}"),
        ("NetspectraSuperSpreader", "scanner", f"src_ip={SCANNER}"),
    ]  # fmt: skip
    assert all(ev.labels["source"] == "sensor" and ev.labels["sensor"] == SENSOR for ev in events)

    collector = SensorCollector(IFACE, lay, cfg.sensor.top, cfg.sensor.flow_capacity, sensor=SENSOR)
    reg = CollectorRegistry()
    reg.register(collector)
    collector.observe(snap)
    exposition = generate_latest(reg).decode()

    # What Prometheus must fire: the engine's labels, raised by "prometheus",
    # plus the scrape's job and instance.
    expected = []
    for ev in events:
        labels = {**ev.labels, "source": "prometheus", **SCRAPE, "alertstate": "firing"}
        expected.append({"labels": "ALERTS{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "value": 1})
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": series(exposition),
                "promql_expr_test": [
                    {"expr": 'ALERTS{alertstate="firing"}', "eval_time": "2m", "exp_samples": expected},
                ],
            }
        ],
    }
    path = tmp_path / "story.test.yml"
    path.write_text(json.dumps(test, indent=1))  # JSON is YAML
    p = subprocess.run([tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
