"""Slow and dead alert receivers beside a healthy one (real servers on loopback)."""

import io
import time

import pytest
from prometheus_client import CollectorRegistry

from netspectra.alerts.engine import Event
from netspectra.alerts.notify import AlertmanagerNotifier, Dispatcher, WebhookNotifier
from netspectra.alerts.rules import NotifierSpec
from netspectra.metrics import SensorCollector
from tests.helpers.peers import Receiver, Trickler, refused_url
from tests.unit.test_metrics import LAY


def batch(i: int) -> list[Event]:
    labels = {"alertname": "X", "rule": f"r{i}", "sensor": "s", "severity": "critical"}
    return [Event("firing", labels, 500.0, 100.0, 1_700_000_000.0 + i)]


@pytest.fixture
def peers():
    made = []
    yield made
    for p in made:
        p.close()


def test_slow_and_refusing_receivers_do_not_hold_back_a_healthy_one(peers):
    good, slow = Receiver(), Trickler()
    peers += [good, slow]
    reg = CollectorRegistry()
    c = SensorCollector("eth0", LAY, 10, 100)
    reg.register(c)
    log = io.StringIO()
    d = Dispatcher(
        [
            WebhookNotifier(NotifierSpec("trickle", "webhook", url=slow.url, timeout=0.4, retries=0)),
            AlertmanagerNotifier(NotifierSpec("am", "alertmanager", url=refused_url(), retries=1, backoff=0.01)),
            WebhookNotifier(NotifierSpec("good", "webhook", url=good.url + "/hook", timeout=2.0)),
        ],
        on_failure=c.notification_failed,
        queue_size=4,
        log=log,
    ).start()
    n = 8
    sent_at = []
    for i in range(n):
        sent_at.append(time.monotonic())
        d.submit(batch(i))
        time.sleep(0.05)
    deadline = time.monotonic() + 2
    while len(good.got) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    # every batch, each well within a second of its submission
    assert len(good.got) == n
    assert max(t - s for (t, _, _), s in zip(good.got, sent_at)) < 0.5
    d.close(timeout=1.0)
    # each batch that was not delivered is counted once: given up on (the
    # trickler within its 0.4 s total deadline), dropped (queue full) or dropped at shutdown
    assert d.failures == {"trickle": n, "am": n, "good": 0} and d.sent["good"] == n, log.getvalue()
    assert reg.get_sample_value("netspectra_notifications_failed_total", {"notifier": "trickle"}) == n
    assert reg.get_sample_value("netspectra_notifications_failed_total", {"notifier": "am"}) == n
    lines = log.getvalue().splitlines()
    trickle = [ln for ln in lines if ln.startswith("netspectra: notifier trickle: ")]
    assert any("no answer within the 0.4s deadline" in ln for ln in trickle), lines
    assert any("Connection refused" in ln for ln in lines if "notifier am:" in ln), lines
    assert not any("notifier good" in ln for ln in lines)
    assert all("Traceback" not in ln for ln in lines)


def test_total_deadline_not_per_read(peers):
    slow = Trickler(interval=0.1)  # every read succeeds well inside the timeout
    peers.append(slow)
    log = io.StringIO()
    d = Dispatcher([WebhookNotifier(NotifierSpec("t", "webhook", url=slow.url, timeout=0.5, retries=0))], log=log)
    d.start().submit(batch(0))
    t0 = time.monotonic()
    assert d.join(5)
    assert time.monotonic() - t0 < 1.5
    assert d.failures == {"t": 1}
    assert (
        log.getvalue()
        == f"netspectra: notifier t: giving up after 1 attempts: {slow.url}: no answer within the 0.5s deadline\n"
    )
    d.close()


def test_batches_queued_at_shutdown_are_counted(peers):
    slow = Trickler()
    peers.append(slow)
    log = io.StringIO()
    d = Dispatcher([WebhookNotifier(NotifierSpec("t", "webhook", url=slow.url, timeout=30, retries=0))], log=log)
    d.start()
    for i in range(5):
        d.submit(batch(i))
    t0 = time.monotonic()
    d.close(timeout=0.3)
    assert time.monotonic() - t0 < 1.5  # the attempt in flight is cut off too
    assert d.failures == {"t": 5}
    assert "netspectra: notifier t: dropped at shutdown (4 batches)\n" in log.getvalue()
