"""The alert engine (rules, lifecycle, dedup, history, spike baseline) and the
notifiers against real servers on 127.0.0.1 (HTTP and a minimal SMTP server
run by the test).  No root."""

import hashlib
import hmac
import json
import socket
import socketserver
import threading
import time
from email import message_from_bytes
from email import policy as email_policy

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from netspectra.alerts.engine import MAX_KEYS_PER_RULE, Engine, Event, render_active
from netspectra.alerts.notify import (
    SIGNATURE_HEADER,
    AlertmanagerNotifier,
    Dispatcher,
    EmailNotifier,
    WebhookNotifier,
    make_notifier,
    sign,
)
from netspectra.alerts.rules import AlertsConfig, NotifierSpec, Rule
from netspectra.config import Config, ConfigError, default_tasks, parse_config
from netspectra.metrics import SensorCollector
from tests.helpers.peers import Receiver
from tests.unit.test_metrics import LAY, hh, snapshot

NCPUS = 4
IF = "eth0"


def cfg(text: str) -> Config:
    return parse_config(text, "alerts.yaml", env={}, ncpus=NCPUS)


# --- configuration -------------------------------------------------------------

GOOD = """
alerts:
  rules:
    - {name: a, kind: flow_table}
    - {name: b, kind: sensor_health}
    - %s
"""


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("{name: x, kind: heavy_hitter, task: src, threshold: -5}", "alerts.rules[2].threshold: -5 is out of range (must be > 0)"),
        ("{name: x, kind: heavy_hitter, task: src, threshold: lots}", "alerts.rules[2].threshold: 'lots' is not a number"),
        ("{name: x, kind: heavy_hitter, task: src}", "alerts.rules[2]: missing 'threshold'"),
        ("{name: x, kind: heavy_hiter, task: src, threshold: 1}", "alerts.rules[2].kind: 'heavy_hiter' is not one of heavy_hitter, super_spreader, fan_in, traffic_spike, flow_table, sensor_health (did you mean 'heavy_hitter'?)"),
        ("{name: x, kind: heavy_hitter, task: nope, threshold: 1}", "alerts.rules[2].task: no task named 'nope' (tasks: src, flow, spread_dst, fanin_src, port_scan)"),
        ("{name: x, kind: heavy_hitter, task: spread_dst, threshold: 1}", "alerts.rules[2].task: 'spread_dst' is a superspread task; heavy_hitter needs a countmin task"),
        ("{name: x, kind: super_spreader, task: src, threshold: 1}", "alerts.rules[2].task: 'src' is a countmin task; super_spreader needs a superspread task"),
        ("{name: x, kind: heavy_hitter, task: src, threshold: 1, metric: pps}", "alerts.rules[2].metric: 'pps' is not one of packets, bytes, rate_bps"),
        ("{name: x, kind: heavy_hitter, task: src, threshold: 1, severity: fatal}", "alerts.rules[2].severity: 'fatal' is not one of info, warning, critical"),
        ("{name: x, kind: heavy_hitter, task: src, threshold: 1, for: 0}", "alerts.rules[2].for: 0 is out of range 1..1000000"),
        ("{name: x, kind: heavy_hitter, task: src, threshold: 1, factor: 2}", "alerts.rules[2].factor: unknown option (did you mean 'for'?)"),
        ("{name: x, kind: flow_table, threshold: 1.5}", "alerts.rules[2].threshold: 1.5 is out of range (must be > 0 and <= 1)"),
        ("{name: x, kind: traffic_spike, factor: 1}", "alerts.rules[2].factor: 1 is out of range (must be > 1)"),
        ("{name: x, kind: traffic_spike, metric: rate_bps}", "alerts.rules[2].metric: 'rate_bps' is not one of packets, bytes"),
        ("{name: x, kind: traffic_spike, warmup: 0}", "alerts.rules[2].warmup: 0 is out of range 1..1000000"),
        ("{name: a, kind: flow_table}", "alerts.rules[2].name: 'a' is also the name of alerts.rules[0]"),
        ("{name: Bad-Name, kind: flow_table}", "alerts.rules[2].name: 'Bad-Name' must match [a-z0-9_]+"),
        ("{kind: flow_table}", "alerts.rules[2]: missing 'name'"),
        ("[1, 2]", "alerts.rules[2]: expected a rule mapping, got a list"),
    ],
)  # fmt: skip
def test_rule_errors(rule, expected):
    with pytest.raises(ConfigError) as e:
        cfg(GOOD % rule)
    assert str(e.value) == f"alerts.yaml: {expected}"
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("alerts: {rules: {}}", "alerts.rules: expected a list of rules, got a mapping"),
        ("alerts: {repeat_interval: soon}", "alerts.repeat_interval: 'soon' is not a duration (use e.g. 5s, 100ms)"),
        ("alerts: {history: 0}", "alerts.history: 0 is out of range 1..1000000"),
        ("alerts: {reules: []}", "alerts.reules: unknown option (did you mean 'rules'?)"),
        ("alerts: {notifiers: [{kind: webhook}]}", "alerts.notifiers[0]: missing 'url'"),
        ("alerts: {notifiers: [{kind: webhook, url: 'ftp://x'}]}", "alerts.notifiers[0].url: 'ftp://x' is not an http:// or https:// URL"),
        ("alerts: {notifiers: [{kind: pager}]}", "alerts.notifiers[0].kind: 'pager' is not one of alertmanager, webhook, email"),
        ("alerts: {notifiers: [{kind: email, host: h, from: a@b}]}", "alerts.notifiers[0]: missing 'to'"),
        ("alerts: {notifiers: [{kind: email, host: h, from: a@b, to: c@d, username: u}]}", "alerts.notifiers[0]: username and password go together"),
        ("alerts: {notifiers: [{kind: email, host: h, from: a@b, to: c@d, port: 0}]}", "alerts.notifiers[0].port: 0 is out of range 1..65535"),
        ("alerts: {notifiers: [{kind: webhook, url: 'http://x', retries: -1}]}", "alerts.notifiers[0].retries: -1 is out of range 0..100"),
        ("alerts: {notifiers: [{kind: webhook, url: 'http://x'}, {kind: webhook, url: 'http://y'}]}", "alerts.notifiers[1].name: 'webhook' is also the name of alerts.notifiers[0]"),
    ],
)  # fmt: skip
def test_section_errors(text, expected):
    with pytest.raises(ConfigError) as e:
        cfg(text)
    assert str(e.value) == f"alerts.yaml: {expected}"


def test_defaults_and_parsing():
    names = [r.name for r in Config().alerts.rules]
    assert names == [
        "heavy_source",
        "heavy_flow",
        "scanner",
        "ddos_victim",
        "port_scan",
        "traffic_spike",
        "flow_table_full",
        "sensor_health",
    ]
    assert Config().alerts.repeat_interval == 300 and Config().alerts.history == 1000
    # default rules only for tasks that exist
    c = cfg("tasks: [{name: src, kind: countmin, key: [src_ip]}]")
    assert [r.name for r in c.alerts.rules] == ["heavy_source", "traffic_spike", "flow_table_full", "sensor_health"]
    assert cfg("alerts: {rules: []}").alerts.rules == ()
    c = cfg(
        """
alerts:
  repeat_interval: 1m
  history: 10
  rules:
    - {name: big, kind: heavy_hitter, task: flow, metric: bytes, threshold: 1e6, severity: critical, for: 3}
  notifiers:
    - {kind: alertmanager, url: 'http://127.0.0.1:9093'}
    - {name: hook, kind: webhook, url: 'https://h/x', secret: '${S:-k}', timeout: 2s, retries: 1, backoff: 100ms}
    - {kind: email, host: mail, from: a@b, to: [c@d, e@f], starttls: true, username: u, password: p}
"""
    )
    a = c.alerts
    assert (a.repeat_interval, a.history) == (60, 10)
    assert a.rules == (Rule("big", "heavy_hitter", "critical", 3, "flow", "bytes", 1e6),)
    assert [n.name for n in a.notifiers] == ["alertmanager", "hook", "email"]
    assert a.notifiers[1].secret == "k" and a.notifiers[1].timeout == 2 and a.notifiers[1].backoff == 0.1
    assert a.notifiers[2].to == ("c@d", "e@f") and a.notifiers[2].starttls and a.notifiers[2].port == 25


# --- the engine ----------------------------------------------------------------


def engine(*rules, repeat=60.0, history=1000, flow_capacity=100):
    return Engine(AlertsConfig(rules=rules, repeat_interval=repeat, history=history), IF, "host1", flow_capacity)


HH = Rule("hh", "heavy_hitter", "warning", 2, "src", "packets", 100.0)


def hot(packets=500, srcs=("10.0.0.1",), **kw):
    return snapshot(heavy={"src": hh(list(srcs), [packets] * len(srcs), [packets * 100] * len(srcs))}, **kw)


def test_lifecycle_pending_fire_repeat_resolve():
    e = engine(HH)
    assert e.evaluate(hot(), 0.0) == []  # pending (for: 2)
    assert e.active() == [] and len(e.pending()) == 1
    (ev,) = e.evaluate(hot(), 5.0)
    assert ev.status == "firing" and not ev.repeat
    assert ev.labels == {  # the labels the shipped Prometheus rule gives the same event
        "alertname": "NetspectraHeavyHitter",
        "rule": "hh",
        "sensor": "host1",
        "interface": IF,
        "task": "src",
        "src_ip": "10.0.0.1",
        "severity": "warning",
        "source": "sensor",
    }
    assert ev.key == "src_ip=10.0.0.1"
    assert (ev.value, ev.threshold, ev.starts_at, ev.ends_at) == (500.0, 100.0, 0.0, None)
    assert "10.0.0.1" in ev.summary
    assert e.evaluate(hot(600), 10.0) == []  # holding, not yet repeat_interval
    assert e.active()[0].value == 600.0
    (rep,) = e.evaluate(hot(), 65.0)
    assert rep.status == "firing" and rep.repeat and rep.starts_at == 0.0
    assert e.evaluate(hot(), 70.0) == []
    (res,) = e.evaluate(snapshot(), 75.0)
    assert res.status == "resolved" and res.ends_at == 75.0 and res.identity == ev.identity
    assert e.active() == [] and e.evaluate(snapshot(), 80.0) == []
    assert [x.status for x in e.history] == ["firing", "firing", "resolved"]


def test_pending_that_stops_is_not_notified():
    e = engine(HH)
    assert e.evaluate(hot(), 0.0) == []
    assert e.evaluate(snapshot(), 5.0) == []
    assert e.evaluate(hot(), 10.0) == []  # `for` counts consecutive epochs again


def test_below_threshold_and_bytes_rate():
    e = engine(HH)
    assert e.evaluate(hot(100), 0) == [] and e.pending() == []  # not over the threshold
    r = Rule("rate", "heavy_hitter", "info", 1, "src", "rate_bps", 1000.0)
    (ev,) = engine(r).evaluate(hot(10), 0)  # 1000 bytes in 5 s = 1600 bit/s
    assert ev.value == pytest.approx(1600.0)


def test_dedup_by_identity():
    e = engine(Rule("hh", "heavy_hitter", "warning", 1, "src", "packets", 100.0))
    evs = e.evaluate(hot(srcs=("10.0.0.1", "10.0.0.1", "10.0.0.2")), 0.0)
    assert sorted(ev.labels["src_ip"] for ev in evs) == ["10.0.0.1", "10.0.0.2"]
    assert len({ev.identity for ev in evs}) == 2
    for t in range(1, 10):  # holding: no duplicate notifications
        assert e.evaluate(hot(srcs=("10.0.0.2", "10.0.0.1")), t) == []
    assert len(e.active()) == 2
    # another interface or sensor is another alert
    other = Engine(e.config, "eth1", "host1")
    assert other.evaluate(hot(), 0.0)[0].identity != evs[0].identity


def test_keys_per_rule_bounded():
    srcs = [f"10.1.{i // 256}.{i % 256}" for i in range(MAX_KEYS_PER_RULE + 50)]
    e = engine(Rule("hh", "heavy_hitter", "warning", 1, "src", "packets", 1.0))
    assert len(e.evaluate(hot(srcs=srcs), 0.0)) == MAX_KEYS_PER_RULE


def test_history_bounded():
    e = engine(Rule("hh", "heavy_hitter", "warning", 1, "src", "packets", 100.0), history=5)
    for i in range(20):
        e.evaluate(hot() if i % 2 == 0 else snapshot(), float(i))
    assert len(e.history) == 5
    assert [ev.starts_at for ev in e.history][-1] == 18.0


def test_spreaders_and_fan_in():
    from tests.unit.test_metrics import keys

    k = keys(["10.0.0.9", "10.0.0.8"])
    v = keys(["0.0.0.0"], ["10.0.0.7"])
    snap = snapshot(spreaders={"spread_dst": (k, np.array([900.0, 50.0])), "fanin_src": (v, np.array([2000.0]))})
    e = engine(
        Rule("scan", "super_spreader", "warning", 1, "spread_dst", threshold=500.0),
        Rule("victim", "fan_in", "critical", 1, "fanin_src", threshold=1000.0),
    )
    evs = e.evaluate(snap, 0.0)
    assert [(ev.rule, ev.alertname, ev.key, ev.value) for ev in evs] == [
        ("scan", "NetspectraSuperSpreader", "src_ip=10.0.0.9", 900.0),
        ("victim", "NetspectraFanInVictim", "dst_ip=10.0.0.7", 2000.0),
    ]
    assert evs[1].labels["dst_ip"] == "10.0.0.7" and "src_ip" not in evs[1].labels


def rate_snap(pps: float, dur: float = 5.0):
    return snapshot(totals={"all": (int(pps * dur), int(pps * dur * 100))}, start=0.0, end=dur)


def test_spike_baseline():
    r = Rule(
        "spike", "traffic_spike", "warning", 1, metric="packets", factor=2.0, min_rate=0.0, warmup=3, smoothing=0.5
    )
    e = engine(r)
    assert e.evaluate(rate_snap(1000), 0) == []  # no baseline yet, whatever the rate
    for t in (1, 2):
        assert e.evaluate(rate_snap(100), t) == []  # warming up: baseline 1000 -> 550 -> 325
    assert e.evaluate(rate_snap(100), 3) == []  # 100 < 2 x 325
    (ev,) = e.evaluate(rate_snap(1000), 4)  # baseline 212.5: threshold 425
    assert ev.value == pytest.approx(1000.0) and ev.threshold == pytest.approx(425.0)
    # the baseline follows the new level (606.25 now): 1000 < 2 x 606.25 is no spike any more
    (res,) = e.evaluate(rate_snap(1000), 5)
    assert res.status == "resolved" and res.ends_at == 5
    # min_rate: a small rate is never a spike
    r2 = Rule("s2", "traffic_spike", "warning", 1, metric="packets", factor=2.0, min_rate=1e6, warmup=1)
    e2 = engine(r2)
    e2.evaluate(rate_snap(10), 0)
    assert e2.evaluate(rate_snap(1000), 1) == []


def test_flow_table_and_sensor_health():
    e = engine(
        Rule("ft", "flow_table", "warning", threshold=0.9), Rule("sh", "sensor_health", "critical", threshold=0.5)
    )
    assert e.evaluate(snapshot(nflows=150, fill=0.5), 0) == []  # 50% full, processing 0.25 s of 5 s
    evs = e.evaluate(snapshot(nflows=95, fill=0.95, totals={"flow_untracked": (7, 700), "cand_lost": (3, 0)}), 1)
    # rates per second over the 5 s epoch, like the Prometheus rules' rate()
    assert {(ev.rule, ev.alertname, ev.key, ev.value) for ev in evs} == {
        ("ft", "NetspectraFlowTableNearFull", "", 0.95),
        ("ft", "NetspectraFlowsUntracked", "", 1.4),
        ("sh", "NetspectraCandidatesLost", "", 0.6),
    }
    assert all("task" not in ev.labels for ev in evs)
    snap = snapshot()
    snap.processing_s = 4.0
    evs = e.evaluate(snap, 2)
    assert [ev.alertname for ev in evs if ev.status == "firing"] == ["NetspectraEpochProcessingSlow"]
    assert {ev.alertname for ev in evs if ev.status == "resolved"} == {
        "NetspectraFlowTableNearFull",
        "NetspectraFlowsUntracked",
        "NetspectraCandidatesLost",
    }
    assert "alerts firing: 1" in render_active(e.active())


def test_flow_table_rule_quiet_without_a_table():
    """flow_capacity 0 (sketches only): every packet is untracked by design."""
    e = engine(Rule("ft", "flow_table", "warning", threshold=0.9), flow_capacity=0)
    assert e.evaluate(snapshot(nflows=0, fill=0.0, totals={"flow_untracked": (7, 700)}), 0) == []


def test_metrics():
    reg = CollectorRegistry()
    c = SensorCollector(IF, LAY, 10, 100)
    reg.register(c)
    c.alerting([("hh", "warning")], ["hook"])
    assert reg.get_sample_value("netspectra_alerts_fired_total", {"interface": IF, "rule": "hh"}) == 0
    assert reg.get_sample_value("netspectra_notifications_failed_total", {"notifier": "hook"}) == 0
    e = engine(Rule("hh", "heavy_hitter", "warning", 1, "src", "packets", 100.0), repeat=1)
    for t in range(3):
        c.observe_alerts(e.evaluate(hot(), float(t)), e.active())  # fires, then repeats
    assert reg.get_sample_value("netspectra_alerts_fired_total", {"interface": IF, "rule": "hh"}) == 1
    assert reg.get_sample_value("netspectra_alerts_active", {"interface": IF, "rule": "hh", "severity": "warning"}) == 1
    c.observe_alerts(e.evaluate(snapshot(), 9.0), e.active())
    assert reg.get_sample_value("netspectra_alerts_active", {"interface": IF, "rule": "hh", "severity": "warning"}) == 0
    c.notification_failed("hook")
    assert reg.get_sample_value("netspectra_notifications_failed_total", {"notifier": "hook"}) == 1


# --- notifiers: a real HTTP server on 127.0.0.1 --------------------------------


@pytest.fixture
def receiver():
    made = []

    def make(*a, **kw):
        made.append(Receiver(*a, **kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def events():
    e = engine(Rule("hh", "heavy_hitter", "critical", 1, "src", "packets", 100.0))
    fired = e.evaluate(hot(), 1_700_000_000.0)
    resolved = e.evaluate(snapshot(), 1_700_000_030.0)
    return fired + resolved


def spec(kind, url="", **kw):
    return NotifierSpec(name=kw.pop("name", kind), kind=kind, url=url, **{"backoff": 0.01, "timeout": 2.0} | kw)


def run(notifier, evs, **kw):
    failed = []
    d = Dispatcher([notifier], on_failure=failed.append, log=None, **kw).start()
    d.submit(evs)
    assert d.join(10)
    d.close()
    return d, failed


def test_alertmanager_v2(receiver):
    r = receiver()
    n = AlertmanagerNotifier(
        spec("alertmanager", r.url + "/", generator_url="http://sensor:9781/metrics"),
        900.0,
        clock=lambda: 1_700_000_010.0,
    )
    d, failed = run(n, events())
    assert failed == [] and d.sent == {"alertmanager": 1}
    ((path, headers, body),) = r.requests
    assert path == "/api/v2/alerts" and headers["Content-Type"] == "application/json"
    firing, resolved = json.loads(body)
    assert firing["labels"] == {
        "alertname": "NetspectraHeavyHitter",
        "rule": "hh",
        "sensor": "host1",
        "interface": IF,
        "task": "src",
        "src_ip": "10.0.0.1",
        "severity": "critical",
        "source": "sensor",
    }
    assert "10.0.0.1" in firing["annotations"]["summary"] and firing["annotations"]["description"]
    assert firing["startsAt"] == "2023-11-14T22:13:20.000Z"
    assert firing["endsAt"] == "2023-11-14T22:28:30.000Z"  # now + 900 s: expires unless re-sent
    assert resolved["endsAt"] == "2023-11-14T22:13:50.000Z"
    assert firing["generatorURL"] == "http://sensor:9781/metrics"


def test_webhook_signature_and_body(receiver):
    r = receiver()
    d, failed = run(WebhookNotifier(spec("webhook", r.url + "/hook", secret="s3cret")), events())
    assert failed == [] and len(r.requests) == 2
    for (path, headers, body), status in zip(r.requests, ("firing", "resolved")):
        assert path == "/hook"
        want = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], want)
        doc = json.loads(body)
        assert doc["status"] == status and len(doc["alerts"]) == 1
        a = doc["alerts"][0]
        assert a["status"] == status and a["labels"]["rule"] == "hh" and a["value"] == 500.0
        assert a["threshold"] == 100.0 and a["starts_at"] == 1_700_000_000.0
    assert json.loads(r.requests[1][2])["alerts"][0]["ends_at"] == 1_700_000_030.0
    assert sign(b"x", "k") != sign(b"y", "k")


def test_webhook_unsigned_without_secret(receiver):
    r = receiver()
    run(WebhookNotifier(spec("webhook", r.url)), events()[:1])
    assert SIGNATURE_HEADER not in r.requests[0][1]


def test_retries_after_two_500s(receiver):
    r = receiver(codes=[500, 500])
    sleeps = []
    d, failed = run(WebhookNotifier(spec("webhook", r.url, retries=3, backoff=0.01)), events()[:1], sleep=sleeps.append)
    assert len(r.requests) == 3 and failed == [] and d.sent["webhook"] == 1
    assert sleeps == [0.01, 0.02]  # exponential backoff
    assert r.requests[0][2] == r.requests[2][2]


def test_gives_up_and_counts_when_unreachable():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    reg = CollectorRegistry()
    c = SensorCollector(IF, LAY, 10, 100)
    reg.register(c)
    n = WebhookNotifier(spec("webhook", f"http://127.0.0.1:{port}/", name="hook", retries=2))
    d = Dispatcher([n], on_failure=c.notification_failed, log=None).start()
    d.submit(events())
    assert d.join(10)
    d.close()
    assert d.failures == {"hook": 1} and d.sent == {"hook": 0}
    assert reg.get_sample_value("netspectra_notifications_failed_total", {"notifier": "hook"}) == 1


def test_enqueue_never_blocks(receiver):
    r = receiver(delay=1.0)
    failed = []
    n = WebhookNotifier(spec("webhook", r.url, retries=0, timeout=5.0))
    d = Dispatcher([n], on_failure=failed.append, log=None, queue_size=3).start()
    evs = events()
    t0 = time.monotonic()
    for _ in range(20):
        d.submit(evs)
    took = time.monotonic() - t0
    assert took < 0.2, took
    assert len(failed) >= 15  # queue full: dropped and counted, never waited for
    d.close(timeout=0.1)


# --- SMTP: a minimal server run by the test --------------------------------------


class SMTPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        self.mails = []
        super().__init__(("127.0.0.1", 0), SMTPHandler)


class SMTPHandler(socketserver.StreamRequestHandler):
    def reply(self, line: str):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 localhost test SMTP")
        mail = {"from": "", "to": [], "data": b""}
        while line := self.rfile.readline():
            cmd = line.decode().strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 localhost")
            elif verb == "MAIL":
                mail["from"] = cmd.split(":", 1)[1].strip()
                self.reply("250 OK")
            elif verb == "RCPT":
                mail["to"].append(cmd.split(":", 1)[1].strip())
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with .")
                data = []
                while (dl := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(dl[1:] if dl.startswith(b"..") else dl)
                mail["data"] = b"".join(data)
                self.server.mails.append(dict(mail))
                self.reply("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


def test_email():
    srv = SMTPServer()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        s = NotifierSpec(
            name="mail", kind="email", host="127.0.0.1", port=srv.server_address[1], sender="sensor@example.org",
            to=("ops@example.org", "sec@example.org"), timeout=5.0, retries=0,
        )  # fmt: skip
        n = make_notifier(s)
        assert isinstance(n, EmailNotifier)
        d, failed = run(n, events())
        assert failed == []
        (mail,) = srv.mails
        assert mail["from"] == "<sensor@example.org>"
        assert mail["to"] == ["<ops@example.org>", "<sec@example.org>"]
        msg = message_from_bytes(mail["data"], policy=email_policy.default)
        assert msg["Subject"] == "[netspectra] 1 firing, 1 resolved: hh on host1"
        assert msg.get_content_type() == "multipart/alternative"
        plain = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert "[FIRING] critical hh" in plain and "[RESOLVED] critical hh" in plain and "src_ip=10.0.0.1" in plain
        assert "(since 2023-11-14T22:13:20Z)" in plain and "ended 2023-11-14T22:13:50Z)" in plain  # UTC, said so
        assert "<table" in html and "src_ip=10.0.0.1" in html and "resolved" in html
    finally:
        srv.shutdown()
        srv.server_close()


def test_email_unreachable_counts_failure():
    s = NotifierSpec(
        name="mail", kind="email", host="127.0.0.1", port=1, sender="a@b", to=("c@d",), retries=1, backoff=0.01
    )
    d, failed = run(EmailNotifier(s), events())
    assert failed == ["mail"]


def test_event_json():
    ev = events()[0]
    assert isinstance(ev, Event)
    assert json.loads(json.dumps(ev.to_json()))["labels"]["severity"] == "critical"
    assert default_tasks()  # the default rules refer to these
