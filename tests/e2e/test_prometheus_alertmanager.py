"""Issue 4 end to end: the real sensor on a veth pair, scraped by a real
Prometheus that evaluates the shipped rules (exporters/prometheus/) and sends
to a real Alertmanager, which delivers to a webhook receiver run by the test.

Traffic: a heavy hitter (10.1.1.1, ~20 MB/s of 1514-byte frames, above the
rule's 12.5 MB/s) and a scanner (10.9.9.9 to 1024 distinct destinations, each
reached every epoch, above the rule's 500 per epoch).  Both alerts must fire
in Prometheus, reach Alertmanager and the receiver, and resolve once the
traffic stops.

The rules are used as shipped, `for: 30s` included: both alerts need their
condition to hold ~30 s, which keeps the test around a minute; the sending is
paced and capped (SEND_LIMIT seconds) so it stays bounded in time and count.
"""

from __future__ import annotations

import threading
import time

import pytest

from netspectra import packets as P
from tests.kernel.test_cli import finish, start, wait_attached, xdp_id

from .conftest import free_port, rules_copy

pytestmark = pytest.mark.root

EPOCH = "1s"
HEAVY_SRC, HEAVY_DST = "10.1.1.1", "10.2.2.2"
SCANNER = "10.9.9.9"
FRAME = 1514  # the largest frame the VethPair MTU passes
HEAVY_RATE = 20e6  # bytes/s; the rule fires above 12.5e6
SCAN_TARGETS = 1024  # distinct destinations per epoch; the rule fires above 500
SCAN_RATE = 2500  # scanner frames/s: every target about twice an epoch
SLICE = 0.02  # pacing step, seconds
SEND_LIMIT = 100.0  # seconds: the sender stops by then whatever happens
FIRE_TIMEOUT = 75.0  # from the start of the traffic (for: 30s plus scrape, epoch, evaluation delays)
RESOLVE_TIMEOUT = 30.0


class Sender:
    """Paced traffic out of dev_a in a thread, until stop() or SEND_LIMIT."""

    def __init__(self, veth):
        self.veth = veth
        self.heavy_frames = 0
        self.scan_frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sender:
        self.veth.sender()  # opened in ns_a by this thread, before the sending one starts
        self._thread.start()
        return self

    def _run(self) -> None:
        heavy = P.frame(HEAVY_SRC, HEAVY_DST, P.UDP, 4000, 5000, size=FRAME)
        scan = [P.frame(SCANNER, f"10.50.{i >> 8}.{i & 255}", P.TCP, 40000, 80) for i in range(SCAN_TARGETS)]
        heavy_per_slice = round(HEAVY_RATE * SLICE / FRAME)
        scan_per_slice = round(SCAN_RATE * SLICE)
        t0 = time.monotonic()
        step = 0
        while not self._stop.is_set() and time.monotonic() - t0 < SEND_LIMIT:
            self.heavy_frames += self.veth.send([heavy] * heavy_per_slice)
            first = (step * scan_per_slice) % SCAN_TARGETS
            batch = [scan[(first + i) % SCAN_TARGETS] for i in range(scan_per_slice)]
            self.scan_frames += self.veth.send(batch)
            step += 1
            delay = t0 + step * SLICE - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    """Poll check() until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


EXPECTED = {  # alertname -> (task, src_ip) that must fire
    "NetspectraHeavyHitter": ("src", HEAVY_SRC),
    "NetspectraSuperSpreader": ("spread_dst", SCANNER),
}


PUSHED = {  # the sensor's default rules -> src_ip that must fire
    "heavy_source": HEAVY_SRC,
    "scanner": SCANNER,
}


def ours(labels: dict, name: str) -> bool:
    """The shipped Prometheus rule's alert (the sensor pushes the same event under the same name, source=sensor)."""
    task, src = EXPECTED[name]
    return (
        labels.get("alertname") == name
        and labels.get("task") == task
        and labels.get("src_ip") == src
        and labels.get("source") == "prometheus"
    )


def test_shipped_rules_fire_reach_alertmanager_and_resolve(veth, tmp_path, receiver, alertmanager, start_prometheus):
    port = free_port(veth.ns_b)
    cfg = tmp_path / "sensor.yaml"
    # The sensor also pushes its own alerts (default rules) to the same Alertmanager.
    cfg.write_text(
        f"sensor:\n  epoch: {EPOCH}\n  metrics_address: '127.0.0.1:{port}'\n"
        f"alerts:\n  notifiers:\n    - {{kind: alertmanager, url: '{alertmanager.url}'}}\n"
    )
    proc = start(veth, "--config", str(cfg))
    sender = None
    try:
        wait_attached(veth, proc)
        prom = start_prometheus([f"127.0.0.1:{port}"], rules_copy(tmp_path / "netspectra.rules.yml"))

        # Prometheus scrapes the sensor, and the shipped rules loaded.
        up = wait_for(
            "up == 1",
            lambda: [r for r in prom.query('up{job="netspectra"}') if r["value"][1] == "1"],
            30,
        )
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{port}"
        wait_for(
            "an epoch scraped",
            lambda: prom.query(f'netspectra_epoch_duration_seconds{{interface="{veth.dev_b}"}}'),
            15,
        )
        assert not [a for a in prom.alerts() if a["labels"]["alertname"] in EXPECTED]  # quiet link: nothing

        sender = Sender(veth).start()
        t_traffic = time.monotonic()

        # Both shipped alerts fire in Prometheus...
        def firing_in_prometheus():
            alerts = [a for a in prom.alerts() if a["state"] == "firing"]
            found = {n: [a for a in alerts if ours(a["labels"], n)] for n in EXPECTED}
            return found if all(found.values()) else None

        found = wait_for("both alerts firing in Prometheus", firing_in_prometheus, FIRE_TIMEOUT)
        t_fired = time.monotonic() - t_traffic
        hh = found["NetspectraHeavyHitter"][0]
        assert float(hh["value"]) > 12.5e6
        assert hh["labels"]["interface"] == veth.dev_b and hh["labels"]["severity"] == "warning"
        assert HEAVY_SRC in hh["annotations"]["summary"]
        ss = found["NetspectraSuperSpreader"][0]
        assert 500 < float(ss["value"]) < 1.25 * SCAN_TARGETS
        # the scanner's bytes are far below the heavy-hitter threshold
        assert not [a for a in prom.alerts() if a["labels"]["alertname"] == "NetspectraHeavyHitter"
                    and a["labels"].get("src_ip") == SCANNER]  # fmt: skip

        # ... reach Alertmanager ...
        def active_in_alertmanager():
            alerts = [a for a in alertmanager.alerts() if a["status"]["state"] == "active"]
            return all(any(ours(a["labels"], n) for a in alerts) for n in EXPECTED)

        wait_for("both alerts active in Alertmanager", active_in_alertmanager, 20)

        # ... and are delivered to the webhook receiver.
        def delivered(status):
            def check():
                got = receiver.alerts(status)
                return all(any(a["status"] == status and ours(a["labels"], n) for _, a in got) for n in EXPECTED)

            return check

        wait_for("firing notifications at the receiver", delivered("firing"), 20)

        # The sensor's own alerts (rules heavy_source and scanner) arrive too.
        def pushed(status):
            def check():
                got = [a for _, a in receiver.alerts(status) if a["status"] == status]
                return all(
                    any(
                        a["labels"].get("rule") == rule
                        and a["labels"].get("src_ip") == src
                        and a["labels"].get("source") == "sensor"
                        for a in got
                    )
                    for rule, src in PUSHED.items()
                )

            return check

        wait_for("the sensor's own alerts at the receiver", pushed("firing"), 30)

        # Traffic stops: the next epoch has neither key, the alerts resolve.
        sender.stop()
        sent = (sender.heavy_frames, sender.scan_frames)
        wait_for("resolved notifications at the receiver", delivered("resolved"), RESOLVE_TIMEOUT)
        wait_for("the sensor's own alerts resolved", pushed("resolved"), RESOLVE_TIMEOUT)
        assert not [a for a in prom.alerts() if any(ours(a["labels"], n) for n in EXPECTED)]
        assert not [
            a
            for a in alertmanager.alerts()
            if a["status"]["state"] == "active" and any(ours(a["labels"], n) for n in EXPECTED)
        ]
        # of the shipped Prometheus rules, nothing but these two fired
        names = {a["labels"]["alertname"] for _, a in receiver.alerts()}
        assert {n for n in names if n.startswith("Netspectra")} == set(EXPECTED), names
        print(f"fired {t_fired:.1f}s after traffic start; sent {sent[0]} heavy + {sent[1]} scan frames")
    finally:
        if sender is not None:
            sender.stop()
        proc.terminate()
        out, err = finish(proc)
    assert proc.returncode == 0, err
    assert xdp_id(veth) == 0
