"""exporters/: Prometheus rules (checked and unit-tested by promtool), the
example Prometheus and Alertmanager configs, the Grafana dashboard and the
systemd unit, all checked with the real tools.

promtool and amtool come from the Debian packages prometheus and
prometheus-alertmanager (scripts/deps.sh).  Without them these tests skip,
except under CI=true, where a missing tool is a failure.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

EXPORTERS = Path(__file__).resolve().parents[2] / "exporters"
RULES = EXPORTERS / "prometheus" / "netspectra.rules.yml"
RULES_TEST = EXPORTERS / "prometheus" / "netspectra.rules.test.yml"
PROMETHEUS = EXPORTERS / "prometheus" / "prometheus.example.yml"
ALERTMANAGER = EXPORTERS / "alertmanager" / "alertmanager.example.yml"
DASHBOARD = EXPORTERS / "grafana" / "netspectra.json"
UNIT = EXPORTERS / "systemd" / "netspectra-sensor@.service.in"  # paths filled in by scripts/install.sh

# The sensor's metric names (docs/metrics.md); the rules and the dashboard may
# use no other netspectra_* name.
METRICS = frozenset(
    {
        "netspectra_build_info",
        "netspectra_packets_total",
        "netspectra_bytes_total",
        "netspectra_parse_outcome_packets_total",
        "netspectra_packet_events_total",
        "netspectra_flows",
        "netspectra_flows_untracked_packets_total",
        "netspectra_candidates_lost_total",
        "netspectra_flow_table_fill_ratio",
        "netspectra_sketch_error_bound",
        "netspectra_epoch_duration_seconds",
        "netspectra_epoch_processing_seconds",
        "netspectra_last_epoch_timestamp_seconds",
        "netspectra_epochs_total",
        "netspectra_kernel_memory_bytes",
        "netspectra_heavy_hitter_packets",
        "netspectra_heavy_hitter_bytes",
        "netspectra_spreader_distinct",
        "netspectra_heavy_hitters",
        "netspectra_spreaders",
        "netspectra_alerts_fired_total",
        "netspectra_alerts_active",
        "netspectra_notifications_failed_total",
        "netspectra_api_requests_total",
        "netspectra_api_request_duration_seconds_bucket",
        "netspectra_api_streams",
        "netspectra_api_epochs_kept",
        "netspectra_api_memory_bytes",
        "netspectra_sink_epochs_delivered_total",
        "netspectra_sink_epochs_dropped_total",
        "netspectra_sink_epochs_failed_total",
        "netspectra_sink_errors_total",
        "netspectra_sink_queued_epochs",
        "netspectra_sink_queued_bytes",
        "netspectra_sink_up",
        "netspectra_fleet_epochs_published_total",
        "netspectra_fleet_epochs_dropped_total",
        "netspectra_fleet_duplicates_total",
        "netspectra_fleet_bytes_total",
        "netspectra_fleet_spool_epochs",
        "netspectra_fleet_spool_bytes",
        "netspectra_fleet_connected",
    }
)
ALERTS = {
    "NetspectraHeavyHitter",
    "NetspectraSuperSpreader",
    "NetspectraFanInVictim",
    "NetspectraPortScan",
    "NetspectraFlowTableNearFull",
    "NetspectraFlowsUntracked",
    "NetspectraTrafficSpike",
    "NetspectraCandidatesLost",
    "NetspectraEpochProcessingSlow",
    "NetspectraParseErrorsRising",
    "NetspectraEpochsLost",
    "NetspectraStoreDown",
    "NetspectraFleetEpochsLost",
    "NetspectraFleetDisconnected",
    "NetspectraSensorDown",
    "NetspectraSensorStale",
}
# A metric name: not preceded by a name character or ':' (recording rules
# such as interface:netspectra_packets:rate1m are not metric names).
METRIC_RE = re.compile(r"(?<![\w:])netspectra_[a-z0-9_]*[a-z0-9](?![\w:])")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} not installed (apt-get install prometheus prometheus-alertmanager; scripts/deps.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def run(*argv, cwd=None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{' '.join(map(str, argv))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    d = json.loads(DASHBOARD.read_text())
    out = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("expr", "definition") and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(d)
    return out


def test_promtool_check_rules():
    run(tool("promtool"), "check", "rules", RULES)


def test_promtool_test_rules():
    run(tool("promtool"), "test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)


def test_promtool_check_example_config():
    p = run(tool("promtool"), "check", "config", PROMETHEUS)
    assert "1 rule files found" in p.stdout + p.stderr


def test_example_config_sets_no_target_label_the_sensor_exposes():
    # The sensor's `sensor` label (netspectra_build_info) would become exported_sensor.
    cfg = yaml.safe_load(PROMETHEUS.read_text())
    for job in cfg["scrape_configs"]:
        for sc in job.get("static_configs", []):
            assert "sensor" not in sc.get("labels", {}), job["job_name"]


def test_every_alert_carries_the_sensor_id():
    # Joined from netspectra_build_info, like the sensor's own alerts carry it.
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    joined = ["netspectra_build_info"] + [
        r["record"] for r in rules if "record" in r and "netspectra_build_info" in r["expr"]
    ]
    for r in rules:
        if "alert" in r:
            assert any(j in r["expr"] for j in joined), r["alert"]


def test_amtool_check_config():
    run(tool("amtool"), "check-config", ALERTMANAGER)


def test_systemd_unit_verifies(tmp_path):
    """The template with its placeholders filled in (the installed unit, with
    the real binary, is verified by tests/install/test_make_install.py)."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    # A template is verified as an instance: link one up next to it; ExecStart
    # must name an executable, so point it at one that exists.
    text = UNIT.read_text().replace("@OPT@/bin/netspectra-sensor", "/bin/true")
    text = text.replace("@SYSCONFDIR@", "/etc").replace("@DOCDIR@", "/usr/share/doc/netspectra")
    (tmp_path / "netspectra-sensor@.service").write_text(text)
    inst = tmp_path / "netspectra-sensor@lo.service"
    inst.symlink_to("netspectra-sensor@.service")
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(inst)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values, but names the file in a warning.
    complaints = [ln for ln in (p.stdout + p.stderr).splitlines() if "netspectra-sensor@" in ln]
    assert p.returncode == 0 and not complaints, p.stdout + p.stderr


def test_systemd_unit_runs_the_sensor_with_bpf_capabilities():
    text = UNIT.read_text()
    # the binary itself, no shell wrapper: SIGTERM reaches the sensor
    assert re.search(r"^ExecStart=@OPT@/bin/netspectra-sensor attach %i \$NETSPECTRA_ARGS$", text, re.M)
    caps = {"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"}  # measured: docs/install.md
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        (line,) = re.findall(rf"^{key}=(.*)$", text, re.M)
        assert set(line.split()) == caps, key
    assert re.search(r"^Restart=on-failure$", text, re.M)
    for breaks_bpf in ("PrivateNetwork=yes", "MemoryDenyWriteExecute=yes", "PrivateUsers=yes"):
        assert not re.search(rf"^{breaks_bpf}$", text, re.M)


def test_every_alert_is_shipped_labelled_and_unit_tested():
    alerts = {r["alert"]: r for r in rules() if "alert" in r}  # NetspectraHeavyHitter: its last rule
    assert set(alerts) == ALERTS
    for name, r in alerts.items():
        assert r["labels"]["severity"] in ("info", "warning", "critical"), name
        assert r["labels"]["source"] == "prometheus", name
        assert {"summary", "description"} <= set(r["annotations"]), name
    tested = {
        t["alertname"]
        for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for t in case.get("alert_rule_test", [])
        if t["exp_alerts"]
    }
    assert tested == ALERTS
    per_key = {"NetspectraHeavyHitter", "NetspectraSuperSpreader", "NetspectraFanInVictim", "NetspectraPortScan"}
    for name in per_key:  # the key's fields as labels, never one `key` string
        assert (
            "$labels.src_ip" in alerts[name]["annotations"]["summary"]
            or "$labels.dst_ip" in alerts[name]["annotations"]["summary"]
        ), name
    assert not [r for r in rules() if "key" in r.get("labels", {}) or "$labels.key " in str(r)]


def test_dashboard_parses_and_uses_a_datasource_variable():
    d = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["api_datasource"]["query"] == "yesoreyeram-infinity-datasource"
    panels = [p for p in d["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in d["panels"]}) == len(d["panels"])
    for p in panels:
        # Prometheus panels, or the query API panels (JSON over HTTP: tests/unit/test_api_server.py)
        uid = "${api_datasource}" if p["datasource"]["type"] == "yesoreyeram-infinity-datasource" else "${datasource}"
        assert p["datasource"]["uid"] == uid, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == uid, p["title"]
    assert sum(p["datasource"]["uid"] == "${api_datasource}" for p in panels) >= 1
    types = {p["type"] for p in panels}
    assert {"timeseries", "table", "stat"} <= types


def test_dashboard_queries_are_valid_promql(tmp_path):
    """Each panel query, its Grafana variables filled in, must be accepted by
    promtool as a rule expression."""
    subst = {"$__rate_interval": "1m", "$__interval": "15s", "$instance": ".*", "$interface": ".*"}
    rule_list = []
    for i, e in enumerate(dashboard_exprs()):
        e = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", e)  # a variable's query: its selector
        for k, v in subst.items():
            e = e.replace(k, v)
        assert "$" not in e, e
        rule_list.append({"record": f"dashboard:query_{i}", "expr": e})
    f = tmp_path / "dashboard.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rule_list}]}))
    run(tool("promtool"), "check", "rules", f)


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_only_the_sensors_metric_names_are_used(source):
    if source == "rules":
        exprs = [r["expr"] for r in rules()]
    else:
        exprs = dashboard_exprs()
    used = {m for e in exprs for m in METRIC_RE.findall(e)}
    assert used, source
    assert used <= METRICS, sorted(used - METRICS)


def test_dashboard_covers_the_sensor():
    used = {m for e in dashboard_exprs() for m in METRIC_RE.findall(e)}
    assert METRICS - used == set()
